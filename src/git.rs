//! The local git repository (outside GitHub Actions): current branch and commit.

use std::path::Path;

pub struct Head {
    /// `None` when HEAD is detached.
    pub branch: Option<String>,
    pub commit: Option<String>,
}

/// HEAD of the repository containing `dir`, or `None` when there is none.
pub fn head(dir: &Path) -> Option<Head> {
    let repo = git2::Repository::discover(dir).ok()?;
    let head = match repo.head() {
        Ok(h) => h,
        // An unborn branch (no commit yet) still has a name.
        Err(_) => {
            let reference = repo.find_reference("HEAD").ok()?;
            let name = reference
                .symbolic_target()
                .ok()
                .flatten()
                .map(str::to_string);
            return Some(Head {
                branch: name.and_then(|n| n.strip_prefix("refs/heads/").map(str::to_string)),
                commit: None,
            });
        }
    };
    Some(Head {
        branch: if head.is_branch() {
            head.shorthand().ok().map(str::to_string)
        } else {
            None
        },
        commit: head.target().map(|oid| oid.to_string()),
    })
}

/// Whether the repository containing `dir` has uncommitted changes (modified, staged,
/// deleted or untracked files; ignored ones do not count). `None` outside a repository.
pub fn is_dirty(dir: &Path) -> Option<bool> {
    let repo = git2::Repository::discover(dir).ok()?;
    if repo.is_bare() {
        return None;
    }
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut options)).ok()?;
    Some(!statuses.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_means_changed_or_untracked_but_not_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("init");
        std::fs::write(dir.path().join(".gitignore"), ".nubes/\n").expect("write");
        std::fs::write(dir.path().join("main.tf"), "# v1\n").expect("write");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.write().expect("index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        repo.commit(Some("HEAD"), &sig, &sig, "first", &tree, &[])
            .expect("commit");
        assert_eq!(is_dirty(dir.path()), Some(false));
        std::fs::create_dir_all(dir.path().join(".nubes/work")).expect("mkdir");
        std::fs::write(dir.path().join(".nubes/work/x"), "ignored").expect("write");
        assert_eq!(
            is_dirty(dir.path()),
            Some(false),
            "ignored files do not count"
        );
        std::fs::write(dir.path().join("main.tf"), "# v2\n").expect("write");
        assert_eq!(is_dirty(dir.path()), Some(true));
        assert_eq!(
            is_dirty(&std::env::temp_dir().join("no-such-repo-here")),
            None
        );
    }
}
