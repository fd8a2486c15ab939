//! The working copy Terraform runs in: `.nubes/work/<env>/`, a copy of the project's
//! Terraform folder plus the backend override that points it at the loopback gateway.
//! It is kept between runs so `.terraform/` (providers, modules) is reused, and the
//! user's own folder is never modified.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::Result;

pub const OVERRIDE_FILE: &str = "nubes_backend_override.tf";
pub const OVERRIDE: &str = "# Written by nubes: state goes through nubes's loopback gateway (Terraform's\n\
# \"http\" backend), which replaces the backend block of the project. Do not edit.\n\
terraform {\n  backend \"http\" {}\n}\n";

/// Files nubes writes into the working copy, and Terraform's own, which a sync must keep.
fn is_generated(rel: &Path) -> bool {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first == ".terraform"
        || first == OVERRIDE_FILE
        || first == ".terraform.lock.hcl"
        || first == "nubes.auto.tfvars.json"
        || first.ends_with(".tfplan")
        // Terraform's unsaved state of an interrupted run, and copies set aside by
        // recover.rs: the only record of resources no state knows about.
        || first.starts_with(crate::recover::ERRORED)
}

/// Skipped when copying: local state and caches that must not leak into the copy.
pub fn is_skipped(rel: &Path) -> bool {
    rel.components().any(|c| {
        let s = c.as_os_str().to_string_lossy();
        s == ".terraform"
            || s == ".git"
            || s.ends_with(".tfstate")
            || s.ends_with(".tfstate.backup")
            || s == ".nubes"
    })
}

pub fn path(settings: &Settings, env: &EnvName) -> PathBuf {
    settings.root.join(".nubes").join("work").join(env.as_str())
}

/// Remove what the project no longer has (renamed or deleted files), keeping what
/// Terraform and nubes generate.
pub fn remove_stale(dst: &Path, wanted: &std::collections::BTreeSet<PathBuf>) -> Result<()> {
    for entry in WalkDir::new(dst).min_depth(1).contents_first(true) {
        let Ok(entry) = entry else { continue };
        let rel = entry
            .path()
            .strip_prefix(dst)
            .unwrap_or(entry.path())
            .to_path_buf();
        if wanted.contains(&rel) || is_generated(&rel) {
            continue;
        }
        if entry.file_type().is_dir() {
            let _ = fs_err::remove_dir(entry.path()); // only if empty
        } else {
            fs_err::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Leaves unchanged files alone, so Terraform's and our own change detection stay quiet.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs_err::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    fs_err::write(path, bytes)?;
    Ok(())
}

/// `.nubes/` holds working copies and possibly local state: never commit it.
pub fn ignore_nubes_folder(settings: &Settings) -> Result<()> {
    let ignore = settings.root.join(".nubes").join(".gitignore");
    if !ignore.exists() {
        write_if_changed(
            &ignore,
            b"# Written by nubes: working copies and local state, never committed.\n*\n",
        )?;
    }
    Ok(())
}
