//! What `nubes init` proposes for a repository: the runtime (for Java also the
//! framework, read from the build file), the target, and a project name. The same files
//! as the build detection of `build.rs` are looked at, in the same order, so the
//! runtime proposed here is the one nubes will build.

use std::path::Path;

use super::matrix::{Runtime, Target};

/// The proposal, and which file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub runtime: Option<Runtime>,
    pub target: Option<Target>,
    /// The file the proposal is based on (for the message).
    pub evidence: Option<String>,
    pub has_dockerfile: bool,
}

fn read(root: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(root.join(name)).ok()
}

fn exists(root: &Path, name: &str) -> bool {
    root.join(name).exists()
}

/// The Java framework a build file uses.
fn java_framework(build_file: &str) -> Runtime {
    if build_file.contains("spring-boot") || build_file.contains("org.springframework.boot") {
        Runtime::SpringBoot
    } else if build_file.contains("io.quarkus") {
        Runtime::Quarkus
    } else if build_file.contains("io.micronaut") {
        Runtime::Micronaut
    } else {
        Runtime::Java
    }
}

/// A package.json that only builds files (a build script, no start script, no server
/// entry point) and has an index.html is a static site.
fn is_static_npm(root: &Path, package_json: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(package_json) else {
        return false;
    };
    let scripts = doc.get("scripts");
    let has = |name: &str| scripts.and_then(|s| s.get(name)).is_some();
    has("build")
        && !has("start")
        && doc.get("main").is_none()
        && ["index.html", "src/index.html", "public/index.html"]
            .iter()
            .any(|p| exists(root, p))
}

pub fn scan(root: &Path) -> Scan {
    let has_dockerfile = exists(root, "Dockerfile");
    let functions = exists(root, "host.json");
    let app_target = if functions {
        Target::Functions
    } else {
        Target::AppService
    };
    let found = |runtime, target, evidence: &str| Scan {
        runtime: Some(runtime),
        target: Some(target),
        evidence: Some(evidence.to_string()),
        has_dockerfile,
    };
    for file in ["pom.xml", "build.gradle", "build.gradle.kts"] {
        if let Some(text) = read(root, file) {
            let runtime = java_framework(&text);
            // Frameworks are not function apps; host.json only matters for plain Java.
            let target = if runtime == Runtime::Java {
                app_target
            } else {
                Target::AppService
            };
            return found(runtime, target, file);
        }
    }
    if let Some(text) = read(root, "package.json") {
        if is_static_npm(root, &text) {
            return found(Runtime::Node, Target::StaticSite, "package.json");
        }
        return found(Runtime::Node, app_target, "package.json");
    }
    for file in ["requirements.txt", "pyproject.toml"] {
        if exists(root, file) {
            return found(Runtime::Python, app_target, file);
        }
    }
    let csproj = std::fs::read_dir(root).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".csproj"))
    });
    if let Some(name) = csproj {
        return found(Runtime::Dotnet, app_target, &name);
    }
    if has_dockerfile {
        return found(Runtime::Docker, Target::ContainerApps, "Dockerfile");
    }
    if exists(root, "index.html") {
        return found(Runtime::Static, Target::StaticSite, "index.html");
    }
    Scan {
        runtime: None,
        target: None,
        evidence: None,
        has_dockerfile,
    }
}

/// A project name usable in Azure resource names: lowercase letters, digits and single
/// hyphens, starting with a letter, at most [`MAX_NAME`] characters.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !name.is_empty()
        && name.len() <= MAX_NAME
        && b[0].is_ascii_lowercase()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
}

pub const MAX_NAME: usize = 24;

/// The folder's name made into a valid project name, if anything is left of it.
pub fn name_from_folder(root: &Path) -> Option<String> {
    let raw = root.file_name()?.to_string_lossy().to_lowercase();
    let mut name = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (name.is_empty() || name.ends_with('-')) {
            continue;
        }
        name.push(c);
    }
    let name = name.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    let name: String = name.chars().take(MAX_NAME).collect();
    let name = name.trim_end_matches('-').to_string();
    valid_name(&name).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_files(files: &[(&str, &str)]) -> Scan {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        scan(dir.path())
    }

    #[test]
    fn java_frameworks_come_from_the_build_file() {
        for (file, text, runtime) in [
            (
                "pom.xml",
                "<parent><groupId>org.springframework.boot</groupId><artifactId>spring-boot-starter-parent</artifactId></parent>",
                Runtime::SpringBoot,
            ),
            (
                "pom.xml",
                "<dependency><groupId>io.quarkus</groupId></dependency>",
                Runtime::Quarkus,
            ),
            (
                "build.gradle",
                "plugins { id 'io.micronaut.application' version '4.4.0' }",
                Runtime::Micronaut,
            ),
            (
                "build.gradle.kts",
                "plugins { id(\"org.springframework.boot\") version \"3.3.0\" }",
                Runtime::SpringBoot,
            ),
            ("pom.xml", "<project/>", Runtime::Java),
        ] {
            let s = scan_files(&[(file, text)]);
            assert_eq!(s.runtime, Some(runtime), "{file}: {text}");
            assert_eq!(s.target, Some(Target::AppService));
            assert_eq!(s.evidence.as_deref(), Some(file));
        }
    }

    #[test]
    fn other_runtimes_and_targets() {
        let s = scan_files(&[("package.json", r#"{"scripts":{"start":"node app.js"}}"#)]);
        assert_eq!(
            (s.runtime, s.target),
            (Some(Runtime::Node), Some(Target::AppService))
        );
        let s = scan_files(&[
            ("package.json", r#"{"scripts":{"build":"vite build"}}"#),
            ("index.html", "<h1>hi</h1>"),
        ]);
        assert_eq!(
            (s.runtime, s.target),
            (Some(Runtime::Node), Some(Target::StaticSite))
        );
        let s = scan_files(&[("requirements.txt", "flask\n"), ("host.json", "{}")]);
        assert_eq!(
            (s.runtime, s.target),
            (Some(Runtime::Python), Some(Target::Functions))
        );
        let s = scan_files(&[("api.csproj", "<Project/>")]);
        assert_eq!(s.runtime, Some(Runtime::Dotnet));
        let s = scan_files(&[("Dockerfile", "FROM scratch\n")]);
        assert_eq!(
            (s.runtime, s.target),
            (Some(Runtime::Docker), Some(Target::ContainerApps))
        );
        assert!(s.has_dockerfile);
        let s = scan_files(&[("index.html", "<h1>hi</h1>")]);
        assert_eq!(
            (s.runtime, s.target),
            (Some(Runtime::Static), Some(Target::StaticSite))
        );
        let s = scan_files(&[("README.md", "hi")]);
        assert_eq!(s.runtime, None);
    }

    #[test]
    fn names_from_folders() {
        let n = |s: &str| name_from_folder(Path::new(s));
        assert_eq!(n("/x/Pet_Clinic").as_deref(), Some("pet-clinic"));
        assert_eq!(n("/x/9lives--app-").as_deref(), Some("lives-app"));
        assert_eq!(n("/x/___"), None);
        assert_eq!(
            n("/x/a-very-long-project-name-indeed-yes").as_deref(),
            Some("a-very-long-project-name")
        );
        assert!(valid_name("petclinic") && !valid_name("Pet") && !valid_name("a--b"));
    }
}
