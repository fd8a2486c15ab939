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
