//! An environment's own branch, read from the local git repository with git2 (no
//! network, no checkout): `refs/remotes/origin/<branch>`, else `refs/heads/<branch>`.
//! `drift` extracts the files nubes needs from that branch's commit (the configuration
//! file and the Terraform folder) into a folder of their own, so an environment is
//! judged against its own branch and never against the checkout nubes runs in.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The local repository, and where the project folder sits inside it.
pub struct Repo {
    repo: git2::Repository,
    /// The project folder (`-C`) relative to the repository's top folder (often empty).
    prefix: PathBuf,
}

/// The tip of an environment's branch.
#[derive(Debug, Clone)]
pub struct Tip {
    /// The full reference it was read from, e.g. `refs/remotes/origin/env-alice`.
    pub reference: String,
    pub commit: String,
}

impl Repo {
    /// The repository containing the project folder `root`.
    pub fn discover(root: &Path) -> Result<Repo> {
        let repo = git2::Repository::discover(root).map_err(|e| {
            Error::input(format!(
                "{} is not in a git repository ({})",
                root.display(),
                e.message()
            ))
            .hint(
                "drift reads each environment's branch env-<name> from the local repository: \
                 run it in a clone (in Actions, fetch the env-* branches first, see README)",
            )
        })?;
        let top = repo.workdir().ok_or_else(|| {
            Error::input(format!(
                "the repository at {} has no working tree",
                repo.path().display()
            ))
        })?;
        let top = fs_err::canonicalize(top)?;
        let root = fs_err::canonicalize(root)?;
        let prefix = root
            .strip_prefix(&top)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        Ok(Repo { repo, prefix })
    }

    /// The tip of `branch` (remote-tracking first, as fetched in CI; then local), or
    /// `None` when the repository has neither.
    pub fn tip(&self, branch: &str) -> Result<Option<Tip>> {
        for reference in [
            format!("refs/remotes/origin/{branch}"),
            format!("refs/heads/{branch}"),
        ] {
            match self.repo.find_reference(&reference) {
                Ok(r) => {
                    let commit = r.peel_to_commit().map_err(|e| {
                        Error::failed(format!("cannot read {reference}: {}", e.message()))
                    })?;
                    return Ok(Some(Tip {
                        reference,
                        commit: commit.id().to_string(),
                    }));
                }
                Err(e) if e.code() == git2::ErrorCode::NotFound => {}
                Err(e) => {
                    return Err(Error::failed(format!(
                        "cannot read {reference}: {}",
                        e.message()
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Write the files under `paths` (relative to the project folder) of `commit` into
    /// `dest` (which stands for the project folder), as the commit has them: files that
    /// are no longer in the commit are removed, unchanged ones are left alone (so
    /// Terraform's change detection stays quiet), and `keep` (relative to `dest`, e.g.
    /// the working copy inside it) is never touched. A path the commit lacks is skipped.
    pub fn extract(&self, commit: &str, paths: &[PathBuf], dest: &Path, keep: &Path) -> Result<()> {
        let oid = git2::Oid::from_str(commit)
            .map_err(|e| Error::failed(format!("`{commit}` is not a commit id: {e}")))?;
        let tree = self
            .repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(|e| Error::failed(format!("cannot read commit {commit}: {}", e.message())))?;
        let mut wanted = BTreeSet::new();
        for rel in paths {
            if !is_plain_relative(rel) {
                return Err(
                    Error::input(format!("`{}` leaves the project folder", rel.display()))
                        .hint("keep [terraform] dir inside the repository"),
                );
            }
            let in_repo = self.prefix.join(rel);
            let entry = match tree.get_path(&in_repo) {
                Ok(e) => e,
                Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
                Err(e) => {
                    return Err(Error::failed(format!(
                        "cannot read {} at {commit}: {}",
                        in_repo.display(),
                        e.message()
                    )));
                }
            };
            self.write_entry(&entry, rel, dest, &mut wanted)?;
        }
        remove_unwanted(dest, &wanted, keep)
    }

    fn write_entry(
        &self,
        entry: &git2::TreeEntry<'_>,
        rel: &Path,
        dest: &Path,
        wanted: &mut BTreeSet<PathBuf>,
    ) -> Result<()> {
        let object = entry.to_object(&self.repo).map_err(|e| {
            Error::failed(format!("cannot read {}: {}", rel.display(), e.message()))
        })?;
        match entry.kind() {
            Some(git2::ObjectType::Tree) => {
                let Some(tree) = object.as_tree() else {
                    return Ok(());
                };
                fs_err::create_dir_all(dest.join(rel))?;
                mark(wanted, rel);
                for child in tree.iter() {
                    let Ok(name) = child.name() else {
                        tracing::warn!(
                            "{}: a file name that is not UTF-8 was skipped",
                            rel.display()
                        );
                        continue;
                    };
                    self.write_entry(&child, &rel.join(name), dest, wanted)?;
                }
            }
            Some(git2::ObjectType::Blob) => {
                let Some(blob) = object.as_blob() else {
                    return Ok(());
                };
                // Symbolic links (mode 120000) would let a branch point the copy at any
                // file of the machine; nubes's own rendering follows links, so they are
                // left out, as a working copy could not use them the same way anyway.
                if entry.filemode() == 0o120000 {
                    tracing::warn!(
                        "{}: a symbolic link in the branch's configuration was skipped",
                        rel.display()
                    );
                    return Ok(());
                }
                let path = dest.join(rel);
                crate::workdir::write_if_changed(&path, blob.content())?;
                set_executable(&path, entry.filemode() == 0o100755)?;
                mark(wanted, rel);
            }
            // Submodules (commits) are not part of a Terraform folder nubes can render.
            _ => {}
        }
        Ok(())
    }
}

/// `rel` and all its parents are wanted.
fn mark(wanted: &mut BTreeSet<PathBuf>, rel: &Path) {
    let mut p = Some(rel);
    while let Some(cur) = p.filter(|c| !c.as_os_str().is_empty()) {
        wanted.insert(cur.to_path_buf());
        p = cur.parent();
    }
}

/// Relative, without `..`, `.` or a root: a path that stays inside the folder it is
/// joined to.
pub fn is_plain_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

fn set_executable(path: &Path, executable: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    let current = fs_err::metadata(path)?.permissions();
    if current.mode() & 0o777 != mode {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Remove from `dest` what is neither wanted nor under `keep`.
fn remove_unwanted(dest: &Path, wanted: &BTreeSet<PathBuf>, keep: &Path) -> Result<()> {
    let walker = walkdir::WalkDir::new(dest)
        .min_depth(1)
        .contents_first(true)
        .into_iter()
        .filter_entry(|e| {
            let rel = e.path().strip_prefix(dest).unwrap_or(e.path());
            !rel.starts_with(keep)
        });
    for entry in walker {
        let Ok(entry) = entry else { continue };
        let rel = entry.path().strip_prefix(dest).unwrap_or(entry.path());
        if wanted.contains(rel) || keep.starts_with(rel) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(repo: &git2::Repository, reference: &str, files: &[(&str, &str, i32)]) -> String {
        let mut builder = git2::build::TreeUpdateBuilder::new();
        for (path, text, mode) in files {
            let oid = repo.blob(text.as_bytes()).unwrap();
            builder.upsert(*path, oid, mode_of(*mode));
        }
        let empty = repo.treebuilder(None).unwrap().write().unwrap();
        let base = repo.find_tree(empty).unwrap();
        let tree = builder.create_updated(repo, &base).unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some(reference), &sig, &sig, "c", &tree, &[])
            .unwrap()
            .to_string()
    }

    fn mode_of(mode: i32) -> git2::FileMode {
        match mode {
            0o100755 => git2::FileMode::BlobExecutable,
            0o120000 => git2::FileMode::Link,
            _ => git2::FileMode::Blob,
        }
    }

    #[test]
    fn extracts_only_the_asked_paths_of_the_branch_and_keeps_the_working_copy() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        commit(
            &repo,
            "refs/heads/main",
            &[("terraform/main.tf", "main", 0o100644)],
        );
        let c = commit(
            &repo,
            "refs/remotes/origin/env-alice",
            &[
                ("nubes.toml", "[project]\n", 0o100644),
                ("terraform/main.tf", "alice", 0o100644),
                ("terraform/modules/x/run.sh", "#!/bin/sh\n", 0o100755),
                ("terraform/link.tf", "/etc/passwd", 0o120000),
                ("src/app.js", "app code", 0o100644),
            ],
        );
        let r = Repo::discover(dir.path()).unwrap();
        assert!(r.tip("env-bob").unwrap().is_none());
        let tip = r.tip("env-alice").unwrap().unwrap();
        assert_eq!(tip.reference, "refs/remotes/origin/env-alice");
        assert_eq!(tip.commit, c);

        let dest = dir.path().join(".nubes/branches/alice/p");
        let keep = Path::new(".nubes");
        fs_err::create_dir_all(dest.join(".nubes/work/alice/.terraform")).unwrap();
        fs_err::write(dest.join("stale.txt"), "old").unwrap();
        let paths = [
            PathBuf::from("nubes.toml"),
            PathBuf::from("terraform"),
            PathBuf::from("absent"),
        ];
        r.extract(&tip.commit, &paths, &dest, keep).unwrap();
        assert_eq!(
            fs_err::read_to_string(dest.join("terraform/main.tf")).unwrap(),
            "alice"
        );
        assert!(dest.join("nubes.toml").is_file());
        assert!(!dest.join("src").exists(), "only the asked paths");
        assert!(
            !dest.join("terraform/link.tf").exists(),
            "links are skipped"
        );
        assert!(
            !dest.join("stale.txt").exists(),
            "files not in the commit are removed"
        );
        assert!(
            dest.join(".nubes/work/alice/.terraform").is_dir(),
            "the working copy is kept"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs_err::metadata(dest.join("terraform/modules/x/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "executable bit kept");

        let e = r
            .extract(&tip.commit, &[PathBuf::from("../outside")], &dest, keep)
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
