//! Setting the repository variables with the GitHub CLI, when it can be done safely:
//! only on a terminal outside CI, only when `gh` is installed and logged in, only after
//! asking (or with `--yes`). `gh` gets its arguments as an argv, never through a shell.
//! The values are identifiers (client, tenant and subscription IDs): nothing secret.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::error::{Error, Result};

use super::report::Variable;

/// What nubes found of the GitHub CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gh {
    /// Not on PATH.
    Absent,
    /// Installed, but `gh auth status` fails.
    LoggedOut(PathBuf),
    Ready(PathBuf),
}

/// Look for `gh` on `path` (the PATH variable's value) and ask it whether it is logged in.
pub async fn detect(path: Option<&OsStr>) -> Gh {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let Ok(gh) = which::which_in("gh", path, cwd) else {
        return Gh::Absent;
    };
    let status = tokio::process::Command::new(&gh)
        .args(["auth", "status"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(std::time::Duration::from_secs(20), status).await {
        Ok(Ok(s)) if s.success() => Gh::Ready(gh),
        _ => Gh::LoggedOut(gh),
    }
}

/// `gh variable set NAME --body VALUE [--repo OWNER/NAME]` for each variable with a
/// known value. Stops at the first failure, saying which variable and what gh said.
pub async fn set_variables(gh: &Path, vars: &[Variable], repo: Option<&str>) -> Result<usize> {
    let mut set = 0;
    for var in vars {
        let Some(value) = &var.value else { continue };
        let mut cmd = tokio::process::Command::new(gh);
        cmd.args(["variable", "set", var.name, "--body", value]);
        if let Some(repo) = repo {
            cmd.args(["--repo", repo]);
        }
        let out = cmd
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::failed(format!("cannot run {}: {e}", gh.display())))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            return Err(Error::failed(format!(
                "gh variable set {} failed: {}",
                var.name,
                crate::secrets::redact(said.trim())
            ))
            .hint("set the remaining variables with the commands printed above"));
        }
        tracing::info!("set GitHub variable {} = {value}", var.name);
        set += 1;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gh_is_absent_from_a_path_without_it() {
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(detect(Some(empty.path().as_os_str())).await, Gh::Absent);
    }
}
