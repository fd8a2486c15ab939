//! Build script: records what `nubes --version` prints besides the version, as
//! compile-time environment variables for `src/cli.rs`:
//! - `NUBES_BUILD_TARGET`: the target triple (only a build script is told it);
//! - `NUBES_BUILD_COMMIT`: the commit the binary is built from, taken from (first
//!   found) the `NUBES_BUILD_COMMIT` environment variable (the release workflow and
//!   the action's source build set it), `.cargo_vcs_info.json` (written by
//!   `cargo package`, so `cargo install nubes` knows it), or `git rev-parse HEAD`;
//!   else `unknown`.
//!
//! No dependencies: one `git` call, and a few lines of JSON read by hand.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=NUBES_BUILD_COMMIT");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=NUBES_BUILD_TARGET={target}");
    let commit = from_env()
        .or_else(from_vcs_info)
        .or_else(from_git)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NUBES_BUILD_COMMIT={commit}");
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn from_env() -> Option<String> {
    let v = std::env::var("NUBES_BUILD_COMMIT").ok()?;
    is_sha(v.trim()).then(|| v.trim().to_ascii_lowercase())
}

/// `{"git": {"sha1": "<40 hex>", ...}, "path_in_vcs": ""}` in a packaged crate.
fn from_vcs_info() -> Option<String> {
    let text = std::fs::read_to_string(watch(".cargo_vcs_info.json")?).ok()?;
    let (_, rest) = text.split_once("\"sha1\"")?;
    let sha = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let sha = sha.get(..40)?;
    is_sha(sha).then(|| sha.to_ascii_lowercase())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// HEAD of the checkout, rebuilt when HEAD moves: the files HEAD and the branch it
/// names are watched (`--git-path` finds them in a worktree too).
fn from_git() -> Option<String> {
    let sha = git(&["rev-parse", "HEAD"])?;
    let mut files = vec!["HEAD".to_string(), "packed-refs".to_string()];
    files.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for file in files {
        if let Some(p) = git(&["rev-parse", "--git-path", &file]) {
            watch(&p);
        }
    }
    is_sha(&sha).then_some(sha)
}

/// Rebuild when `path` changes; only for a file that exists (Cargo reruns a build
/// script on every build while a watched file is missing).
fn watch(path: &str) -> Option<&Path> {
    let path = Path::new(path);
    path.is_file().then(|| {
        println!("cargo:rerun-if-changed={}", path.display());
        path
    })
}
