//! The action's installer, `scripts/install-action.sh`, run as action.yml runs it
//! (same environment variables: the inputs, `github.action_*`, `RUNNER_*`,
//! `GITHUB_PATH`, `GITHUB_OUTPUT`) against a local release server (`release.rs`)
//! serving a release built from the test binary: the asset for each OS/architecture,
//! a checksum mismatch refused, a missing asset falling back to a source build (of a
//! one-file crate named nubes, built by the real `cargo install`), and a second job
//! finding its install in the tool cache. `act.rs` runs the whole action under a
//! real Actions runner.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::release::{self, Server, TARGETS};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A runner's job: its tool cache (shared between jobs, as on one runner or after
/// actions/cache restored it) and the files it hands each step.
struct Job {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    all: String,
    path: String,
    outputs: String,
}

impl Ran {
    fn output(&self, key: &str) -> Option<&str> {
        self.outputs
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
    }
}

impl Job {
    fn new(tool_cache: &Path) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("RUNNER_OS".into(), "Linux".into()),
            ("RUNNER_ARCH".into(), "X64".into()),
            ("RUNNER_TOOL_CACHE".into(), tool_cache.display().to_string()),
            ("ACTION_PATH".into(), repo().display().to_string()),
        ];
        Job { dir, env }
    }

    fn set(mut self, k: &str, v: &str) -> Job {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }

    fn run(&self, args: &[&str]) -> Ran {
        let (path_file, out_file) = (self.dir.path().join("path"), self.dir.path().join("out"));
        std::fs::write(&path_file, "").unwrap();
        std::fs::write(&out_file, "").unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("scripts/install-action.sh"))
            .args(args)
            .env_remove("GH_TOKEN")
            .env_remove("INPUT_VERSION")
            .env_remove("INPUT_RELEASE_URL")
            .env_remove("ACTION_REF")
            .env_remove("ACTION_REPOSITORY")
            .env("GITHUB_PATH", &path_file)
            .env("GITHUB_OUTPUT", &out_file)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null());
        let out = cmd.output().expect("run install-action.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Ran {
            code: out.status.code(),
            all: format!(
                "{stdout}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            stdout,
            path: std::fs::read_to_string(&path_file).unwrap(),
            outputs: std::fs::read_to_string(&out_file).unwrap(),
        }
    }
}

fn release_with(targets: &[&str]) -> (tempfile::TempDir, Server) {
    let root = tempfile::tempdir().unwrap();
    release::layout(root.path(), targets);
    let server = Server::start(root.path());
    (root, server)
}

fn all_targets() -> Vec<&'static str> {
    TARGETS.iter().map(|t| t.2).collect()
}

fn fetched(server: &Server) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /download/"))
        .collect()
}

#[test]
fn installs_the_asset_of_each_runner_os_and_architecture() {
    let (_root, server) = release_with(&all_targets());
    let v = release::version();
    for (os, arch, target) in TARGETS {
        server.clear();
        let cache = tempfile::tempdir().unwrap();
        let r = Job::new(cache.path())
            .set("RUNNER_OS", os)
            .set("RUNNER_ARCH", arch)
            .set("INPUT_VERSION", v)
            .set("INPUT_RELEASE_URL", &server.url())
            .run(&[]);
        assert_eq!(r.code, Some(0), "{os}/{arch}: {}", r.all);
        assert_eq!(
            fetched(&server),
            [
                format!("GET /download/v{v}/SHA256SUMS"),
                format!("GET /download/v{v}/{}", release::asset(target)),
            ],
            "{os}/{arch}"
        );
        let exe = if os == "Windows" {
            "nubes.exe"
        } else {
            "nubes"
        };
        let bin_dir = cache.path().join(format!("nubes/{v}/{target}/bin"));
        assert_eq!(r.path, format!("{}\n", bin_dir.display()), "{os}/{arch}");
        assert!(bin_dir.join(exe).is_file(), "{os}/{arch}: no {exe}");
        assert!(
            r.stdout.contains(&format!(
                "{}: SHA-256 {} matches SHA256SUMS",
                release::asset(target),
                release::sha256_hex(
                    &_root
                        .path()
                        .join(format!("v{v}/{}", release::asset(target)))
                )
            )),
            "{}",
            r.all
        );
        assert_eq!(r.output("build"), Some(""), "{}", r.all);
    }
}

#[test]
fn a_checksum_mismatch_is_refused_naming_the_file_and_both_sums() {
    let target = "x86_64-unknown-linux-musl";
    let (root, server) = release_with(&[target]);
    let v = release::version();
    let asset = release::asset(target);
    let real = release::sha256_hex(&root.path().join(format!("v{v}/{asset}")));
    let listed = "0".repeat(64);
    std::fs::write(
        root.path().join(format!("v{v}/SHA256SUMS")),
        format!("{listed}  {asset}\n"),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let r = Job::new(cache.path())
        .set("INPUT_VERSION", v)
        .set("INPUT_RELEASE_URL", &server.url())
        .run(&[]);
    assert_eq!(r.code, Some(1), "{}", r.all);
    assert!(
        r.stdout.contains(&format!(
            "::error title=nubes::checksum mismatch for {asset}: SHA256SUMS says {listed}, the downloaded file has {real}"
        )),
        "{}",
        r.all
    );
    assert_eq!(r.path, "", "nothing may go on PATH");
    assert!(
        !cache
            .path()
            .join(format!("nubes/{v}/{target}/bin/nubes"))
            .exists(),
        "the refused binary was installed"
    );
}

/// A one-file crate named nubes, standing in for the action's source: `cargo install`
/// really builds it, in a second rather than the minutes the real nubes takes.
fn tiny_source(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"nubes\"\nversion = \"{version}\"\nedition = \"2021\"\n\n[workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Cargo.lock"),
        format!("version = 4\n\n[[package]]\nname = \"nubes\"\nversion = \"{version}\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("src/main.rs"),
        // The first line goes out on its own and the second after a pause, as a
        // binary printing line by line may: the installer must read the whole
        // answer (a `| head -n 1` under pipefail failed here on CI when the pipe
        // closed before the second line).
        "use std::io::Write;\n\
         fn main() {\n\
         \x20   println!(\"nubes {}\", env!(\"CARGO_PKG_VERSION\"));\n\
         \x20   let _ = std::io::stdout().flush();\n\
         \x20   std::thread::sleep(std::time::Duration::from_millis(200));\n\
         \x20   println!(\"commit: {}\", option_env!(\"NUBES_BUILD_COMMIT\").unwrap_or(\"unknown\"));\n\
         }\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_missing_asset_falls_back_to_a_source_build_and_the_next_job_reuses_it() {
    // The release has macOS assets only; the commit the workflow pinned is built.
    let v = release::version();
    let (_root, server) = release_with(&["aarch64-apple-darwin"]);
    let source = tiny_source(v);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let cache = tempfile::tempdir().unwrap();
    let job = || {
        Job::new(cache.path())
            .set("ACTION_PATH", &source.path().display().to_string())
            .set("ACTION_REF", commit)
            .set("INPUT_RELEASE_URL", &server.url())
    };

    let r = job().run(&[]);
    assert_eq!(r.code, Some(0), "{}", r.all);
    let asset = release::asset("x86_64-unknown-linux-musl");
    assert!(
        r.stdout.contains(&format!(
            "::notice title=nubes::building nubes {v} from source: release v{v} has no {asset}"
        )),
        "{}",
        r.all
    );
    assert_eq!(r.output("build"), Some("path"), "{}", r.all);
    assert_eq!(r.output("commit"), Some(commit));
    let root = PathBuf::from(r.output("root").expect("root output"));
    assert!(root.starts_with(cache.path().join("nubes")), "{root:?}");
    let key = r.output("key").unwrap();
    assert!(
        key.starts_with("nubes-src-") && key.ends_with("-x86_64-unknown-linux-musl"),
        "{key}"
    );
    assert_eq!(r.path, format!("{}\n", root.join("bin").display()));
    assert_eq!(
        fetched(&server),
        [format!("GET /download/v{v}/SHA256SUMS")],
        "only the checksums are fetched"
    );

    // action.yml's build step (on an actions/cache miss), with the outputs above.
    let b = job()
        .set("BUILD", "path")
        .set("ROOT", &root.display().to_string())
        .set("BUILD_VERSION", v)
        .set("BUILD_COMMIT", commit)
        .run(&["build"]);
    assert_eq!(b.code, Some(0), "{}", b.all);
    let built = Command::new(root.join("bin/nubes"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&built.stdout),
        format!("nubes {v}\ncommit: {commit}\n"),
        "the build records the pinned commit"
    );

    // The next job: the build is found (in the tool cache, or restored by
    // actions/cache into the same root), nothing is built.
    let again = job().run(&[]);
    assert_eq!(again.code, Some(0), "{}", again.all);
    assert_eq!(again.output("build"), Some(""), "{}", again.all);
    assert!(
        again
            .stdout
            .contains(&format!("nubes {v} built from source"))
            && again.stdout.contains("found in the tool cache"),
        "{}",
        again.all
    );
    assert!(!again.stdout.contains("::notice"), "{}", again.all);
    assert_eq!(again.path, r.path);
}

#[test]
fn a_second_job_finds_the_release_in_the_tool_cache_without_downloading() {
    let (_root, server) = release_with(&["x86_64-unknown-linux-musl"]);
    let v = release::version();
    let cache = tempfile::tempdir().unwrap();
    let job = || {
        Job::new(cache.path())
            .set("INPUT_VERSION", v)
            .set("INPUT_RELEASE_URL", &server.url())
    };
    let first = job().run(&[]);
    assert_eq!(first.code, Some(0), "{}", first.all);
    assert_eq!(fetched(&server).len(), 2, "{:?}", server.requests());
    server.clear();
    let second = job().run(&[]);
    assert_eq!(second.code, Some(0), "{}", second.all);
    assert!(
        second.stdout.contains(&format!(
            "nubes {v} (x86_64-unknown-linux-musl) found in the tool cache"
        )),
        "{}",
        second.all
    );
    assert_eq!(
        server.requests(),
        Vec::<String>::new(),
        "a cache hit downloads nothing"
    );
    assert_eq!(second.path, first.path);
}

/// A workflow pinned to a commit SHA gets the release only when the release's binary
/// was built from that commit (`nubes --version` says); another commit is built.
#[test]
fn a_commit_pin_uses_the_release_only_when_it_was_built_from_that_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_nubes"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let built_from = text
        .lines()
        .find_map(|l| l.strip_prefix("commit: "))
        .unwrap_or_else(|| panic!("no commit line in --version:\n{text}"));
    assert!(
        built_from.len() == 40 && built_from.bytes().all(|b| b.is_ascii_hexdigit()),
        "the test binary does not know its commit ({built_from}): it is built from a git checkout"
    );
    let (_root, server) = release_with(&["x86_64-unknown-linux-musl"]);
    let v = release::version();

    let cache = tempfile::tempdir().unwrap();
    let same = Job::new(cache.path())
        .set("ACTION_REF", built_from)
        .set("INPUT_RELEASE_URL", &server.url())
        .run(&[]);
    assert_eq!(same.code, Some(0), "{}", same.all);
    assert!(
        same.stdout
            .contains(&format!("installed from release v{v}")),
        "{}",
        same.all
    );
    assert_eq!(same.output("build"), Some(""));

    let other = "f".repeat(40);
    let cache = tempfile::tempdir().unwrap();
    let later = Job::new(cache.path())
        .set("ACTION_REF", &other)
        .set("INPUT_RELEASE_URL", &server.url())
        .run(&[]);
    assert_eq!(later.code, Some(0), "{}", later.all);
    assert!(
        later.stdout.contains(&format!(
            "::notice title=nubes::building nubes {v} from source: release v{v} was built from commit {built_from}, and the action is pinned to {other}"
        )),
        "{}",
        later.all
    );
    assert_eq!(later.output("build"), Some("path"));
    assert_eq!(later.output("commit"), Some(other.as_str()));
}

#[test]
fn a_version_input_that_is_not_a_version_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let r = Job::new(cache.path())
        .set("INPUT_VERSION", "1.2; rm -rf /")
        .run(&[]);
    assert_eq!(r.code, Some(2), "{}", r.all);
    assert!(
        r.stdout
            .contains("input 'version' must be an exact version such as 1.2.3"),
        "{}",
        r.all
    );
    assert_eq!(r.path, "");
}
