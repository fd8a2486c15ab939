//! Building the application: detection from the repository (Maven, Gradle, npm, Python,
//! .NET, Dockerfile, static site), overridable by `[build]`, and execution with its
//! output streamed live, each line prefixed `[build]` so it stays readable beside
//! Terraform's. A failure carries the tail of the output.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::Settings;
use crate::error::{Error, Result};

/// Lines of output kept for the error message of a failed build.
const TAIL_LINES: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Maven,
    Gradle,
    Npm,
    Python,
    Dotnet,
    Docker,
    Static,
    /// `[build] command` from nubes.toml.
    Custom,
}

/// What to build and where the result lands.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub kind: Kind,
    /// A shell command line (the repository's own build, from nubes.toml or detection),
    /// or `None` when nothing needs building (a static site, Python sources).
    pub command: Option<String>,
    /// The folder (or file) to deploy, relative to the project root.
    pub artifact: PathBuf,
    /// Build after the infrastructure (the build needs Terraform outputs).
    pub after_infra: bool,
    /// The artifact is a Java build's output folder (Maven `target/`, Gradle
    /// `build/libs/`): after the build, the one runnable .jar/.war in it is deployed.
    pub java_archive: bool,
}

fn exists(root: &Path, name: &str) -> bool {
    root.join(name).exists()
}

/// Decide what to build. `None`: no application here (infrastructure only).
pub fn detect(settings: &Settings) -> Result<Option<BuildPlan>> {
    let root = &settings.root;
    let configured = settings.build.clone();
    let after_infra = configured.as_ref().is_some_and(|b| b.after_infra);
    let artifact_override = configured.as_ref().and_then(|b| b.artifact.clone());
    if let Some(command) = configured.as_ref().and_then(|b| b.command.clone()) {
        let artifact = artifact_override.clone().ok_or_else(|| {
            Error::input("[build] command is set but [build] artifact is not")
                .hint("say which folder (or file) the build produces, e.g. artifact = \"dist\"")
        })?;
        return Ok(Some(BuildPlan {
            kind: Kind::Custom,
            command: Some(command),
            artifact: artifact.into(),
            after_infra,
            java_archive: false,
        }));
    }
    let detected = if exists(root, "pom.xml") {
        let mvn = if exists(root, "mvnw") {
            "./mvnw"
        } else {
            "mvn"
        };
        Some((
            Kind::Maven,
            Some(format!("{mvn} -B -q package -DskipTests")),
            "target",
        ))
    } else if exists(root, "build.gradle") || exists(root, "build.gradle.kts") {
        let gradle = if exists(root, "gradlew") {
            "./gradlew"
        } else {
            "gradle"
        };
        Some((
            Kind::Gradle,
            Some(format!("{gradle} --no-daemon -q build -x test")),
            "build/libs",
        ))
    } else if exists(root, "package.json") {
        Some((Kind::Npm, Some(npm_command(root)?), "dist"))
    } else if exists(root, "requirements.txt") || exists(root, "pyproject.toml") {
        // App Service builds Python apps on deployment (Oryx): ship the sources.
        Some((Kind::Python, None, "."))
    } else if has_extension(root, "csproj") {
        Some((
            Kind::Dotnet,
            Some("dotnet publish -c Release -o .nubes/publish".to_string()),
            ".nubes/publish",
        ))
    } else if exists(root, "Dockerfile") {
        // Built by `crate::image` with the container engine (once; the image is what is
        // deployed), not by a shell command.
        Some((Kind::Docker, None, "."))
    } else if exists(root, "index.html") {
        Some((Kind::Static, None, "."))
    } else {
        None
    };
    let java = artifact_override.is_none();
    Ok(detected.map(|(kind, command, artifact)| BuildPlan {
        kind,
        command,
        java_archive: java && matches!(kind, Kind::Maven | Kind::Gradle),
        artifact: artifact_override
            .map(PathBuf::from)
            .unwrap_or_else(|| artifact.into()),
        after_infra,
    }))
}

fn has_extension(root: &Path, ext: &str) -> bool {
    std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == ext))
        })
        .unwrap_or(false)
}

/// `npm ci` when there is a lock file, then `npm run build` when there is a build script.
fn npm_command(root: &Path) -> Result<String> {
    let text = fs_err::read_to_string(root.join("package.json"))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("package.json is not valid JSON: {e}")))?;
    let install = if exists(root, "package-lock.json") {
        "npm ci"
    } else {
        "npm install"
    };
    let has_build = doc.get("scripts").and_then(|s| s.get("build")).is_some();
    Ok(if has_build {
        format!("{install} && npm run build")
    } else {
        install.to_string()
    })
}

/// When the build started and ended (for reports and the concurrency benchmark).
#[derive(Debug, Clone)]
pub struct Built {
    pub artifact: PathBuf,
    pub took: Duration,
    /// The image, for a Dockerfile build.
    pub image: Option<crate::image::Image>,
}

/// Run the build in the project root. `env` adds variables (e.g. Terraform outputs for a
/// build after the infrastructure). The artifact must exist afterwards.
pub async fn run(settings: &Settings, plan: &BuildPlan, env: &[(String, String)]) -> Result<Built> {
    let started = Instant::now();
    // Recorded (and shown as failed) if the build returns early with an error.
    let stage = crate::ui::stage("build");
    let artifact = settings.root.join(&plan.artifact);
    if plan.kind == Kind::Docker {
        let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let engine =
            crate::image::Engine::find(settings.build.as_ref().and_then(|b| b.engine.as_deref()))?;
        let tag = crate::image::tag_for(var("NUBES_ENV").unwrap_or("local"), var("NUBES_COMMIT"));
        let project = var("NUBES_PROJECT").unwrap_or("app");
        let image = crate::image::build(&settings.root, engine, project, &tag, env).await?;
        stage.done();
        return Ok(Built {
            artifact,
            took: started.elapsed(),
            image: Some(image),
        });
    }
    if let Some(command) = &plan.command {
        tracing::info!("build ({:?}): {command}", plan.kind);
        execute(&settings.root, command, env).await?;
    }
    if !artifact.exists() {
        return Err(Error::input(format!(
            "the build artifact {} does not exist{}",
            artifact.display(),
            if plan.command.is_some() {
                " after the build"
            } else {
                ""
            }
        ))
        .hint("set [build] artifact to the folder (or file) your build produces"));
    }
    let artifact = if plan.java_archive && artifact.is_dir() {
        runnable_archive(&artifact)?
    } else {
        artifact
    };
    stage.done();
    Ok(Built {
        artifact,
        took: started.elapsed(),
        image: None,
    })
}

/// The one runnable archive a Java build left in `dir` (Maven `target/`, Gradle
/// `build/libs/`): the `.jar` or `.war` files directly in it, without the side artifacts
/// builds put beside it (`-sources`, `-javadoc`, `-tests`, Gradle's `-plain` jar, the
/// shade plugin's `original-*`; Spring Boot's `.jar.original` has another extension).
/// App Service runs one archive (OneDeploy stores it as `app.jar`/`app.war`), so several
/// candidates are refused rather than guessed between.
pub fn runnable_archive(dir: &Path) -> Result<PathBuf> {
    const SIDE: [&str; 5] = ["-sources", "-javadoc", "-tests", "-test", "-plain"];
    let mut found: Vec<PathBuf> = fs_err::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            matches!(ext.as_deref(), Some("jar" | "war"))
        })
        .filter(|p| {
            let stem = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_ascii_lowercase();
            !stem.starts_with("original-") && !SIDE.iter().any(|s| stem.ends_with(s))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::input(format!(
            "the Java build left no .jar or .war in {}",
            dir.display()
        ))
        .hint("package the app as a runnable jar (spring-boot-maven-plugin) or a war, or set [build] artifact")),
        _ => {
            let names: Vec<String> = found
                .iter()
                .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
                .collect();
            Err(Error::input(format!(
                "the Java build left {} archives in {}: {}; App Service runs one",
                names.len(),
                dir.display(),
                names.join(", ")
            ))
            .hint(format!(
                "set [build] artifact to the one to deploy, e.g. artifact = \"{}\"",
                dir.file_name()
                    .and_then(|d| d.to_str())
                    .map(|d| format!("{d}/{}", names[0]))
                    .unwrap_or_else(|| names[0].clone())
            )))
        }
    }
}

/// Environment variables a build or deploy command must never see.
pub(crate) const WITHHELD_ENV: &[&str] = &[
    "NUBES_STORAGE_SAS",
    "NUBES_STORAGE_TOKEN",
    "NUBES_SITE_SAS",
    "NUBES_ARM_TOKEN",
    "NUBES_KUDU_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "AZURE_CREDENTIALS",
    "ARM_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
];

async fn execute(root: &Path, command: &str, env: &[(String, String)]) -> Result<()> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_streamed(cmd, &format!("build (`{command}`)"), "build").await
}

/// Run a child with no stdin, its stdout and stderr streamed line by line to our stderr
/// with a `[prefix]`, secrets withheld from its environment, dying with nubes. A failure
/// carries the last lines of its output.
pub(crate) async fn run_streamed(
    mut cmd: tokio::process::Command,
    what: &str,
    prefix: &str,
) -> Result<()> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in WITHHELD_ENV {
        cmd.env_remove(k);
    }
    // SAFETY: prctl is async-signal-safe; the child dies with nubes.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "is the program installed and on PATH?"
        } else {
            ""
        };
        Error::failed(format!("{what}: cannot start: {e}")).hint(hint)
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    while let Some(line) = rx.recv().await {
        let line = crate::secrets::redact(&line);
        crate::ui::eprint_line(&format!("[{prefix}] {line}"));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| Error::failed(format!("{what}: waiting failed: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let code = status.code().unwrap_or(1);
    let tail: Vec<String> = tail.into_iter().collect();
    // 127 is the shell's "command not found".
    let hint = if code == 127 {
        "a program the build needs is not installed or not on PATH; install it, or set [build] command"
    } else {
        "the build's own output is above; fix the build, or set [build] command"
    };
    Err(Error::failed(format!(
        "{what} failed with exit code {code}; last lines:\n{}",
        tail.join("\n")
    ))
    .hint(hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_in(dir: &Path) -> Settings {
        crate::config::load(dir, None, &Default::default()).unwrap()
    }

    #[test]
    fn detects_each_kind() {
        for (file, content, kind, artifact) in [
            ("pom.xml", "<project/>", Kind::Maven, "target"),
            ("build.gradle.kts", "", Kind::Gradle, "build/libs"),
            (
                "package.json",
                r#"{"scripts":{"build":"node build.js"}}"#,
                Kind::Npm,
                "dist",
            ),
            ("requirements.txt", "flask\n", Kind::Python, "."),
            ("app.csproj", "<Project/>", Kind::Dotnet, ".nubes/publish"),
            ("Dockerfile", "FROM scratch\n", Kind::Docker, "."),
            ("index.html", "<h1>hi</h1>", Kind::Static, "."),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(file), content).unwrap();
            let plan = detect(&settings_in(dir.path())).unwrap().unwrap();
            assert_eq!(plan.kind, kind, "{file}");
            assert_eq!(plan.artifact, PathBuf::from(artifact), "{file}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(detect(&settings_in(dir.path())).unwrap().is_none());
    }

    #[test]
    fn the_one_runnable_java_archive_is_picked_and_several_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        for f in [
            "demo-0.0.1-SNAPSHOT.jar",
            "demo-0.0.1-SNAPSHOT.jar.original",
            "demo-0.0.1-SNAPSHOT-sources.jar",
            "demo-0.0.1-SNAPSHOT-javadoc.jar",
            "original-demo.jar",
            "demo-plain.jar",
        ] {
            std::fs::write(target.join(f), "PK").unwrap();
        }
        std::fs::create_dir(target.join("classes")).unwrap();
        assert_eq!(
            runnable_archive(target).unwrap(),
            target.join("demo-0.0.1-SNAPSHOT.jar")
        );
        std::fs::write(target.join("other.war"), "PK").unwrap();
        let e = runnable_archive(target).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("demo-0.0.1-SNAPSHOT.jar, other.war"),
            "{e}"
        );
        assert!(
            e.hint_text()
                .unwrap_or_default()
                .contains("[build] artifact")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(runnable_archive(empty.path()).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn npm_uses_ci_with_a_lock_file_and_runs_the_build_script() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"scripts":{"build":"x"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("package-lock.json"), "{}").unwrap();
        let plan = detect(&settings_in(dir.path())).unwrap().unwrap();
        assert_eq!(plan.command.as_deref(), Some("npm ci && npm run build"));
    }

    #[test]
    fn configured_command_needs_an_artifact() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("nubes.toml"),
            "[build]\ncommand = \"make\"\n",
        )
        .unwrap();
        let e = detect(&settings_in(dir.path())).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[tokio::test]
    async fn a_failed_build_reports_its_tail_and_a_missing_tool() {
        let dir = tempfile::tempdir().unwrap();
        let e = execute(dir.path(), "echo one; echo two >&2; exit 3", &[])
            .await
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("code 3") && m.contains("one") && m.contains("two"),
            "{m}"
        );
        let e = execute(dir.path(), "no-such-build-tool-here", &[])
            .await
            .unwrap_err();
        assert!(e.hint_text().unwrap().contains("not installed"), "{e}");
        assert_eq!(e.exit_code(), 1);
    }
}
