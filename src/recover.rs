//! Bringing back the state an interrupted Terraform could not save.
//!
//! When Terraform cannot write its state (nubes was killed, so the gateway is gone; or
//! the storage stayed unreachable past `[state] timeout`), it saves what it knows to
//! `errored.tfstate` in the working copy and exits. That file is the only record of the
//! resources the run created after its last successful write: dropping it leaves them
//! running in the cloud, unknown to the next plan. So before any Terraform command, under
//! the env lock, nubes looks for it and pushes it as the new state when it still
//! continues the stored history (same lineage, higher serial). A file that does not
//! (another lineage, or a later run already wrote past it) is set aside with a warning
//! naming it, never pushed over newer state.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::env_name::EnvName;
use crate::error::{Error, Result};
use crate::state::head::StateHead;
use crate::state::{LockToken, StateStore};

/// Terraform's name for the state it could not save.
pub const ERRORED: &str = "errored.tfstate";

/// What [`errored_state`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No `errored.tfstate`.
    Nothing,
    /// Pushed as the new state with this serial.
    Pushed { serial: u64, resources: usize },
    /// Not pushed; moved to this path, for the reason given.
    SetAside { to: PathBuf, why: String },
}

/// Look for `errored.tfstate` in `dir` and push it, or set it aside (see module docs).
/// The caller holds the env lock (`token`).
pub async fn errored_state(
    store: &dyn StateStore,
    token: &LockToken,
    env: &EnvName,
    dir: &Path,
) -> Result<Recovery> {
    let path = dir.join(ERRORED);
    let bytes = match fs_err::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recovery::Nothing),
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot read the state an interrupted run left: {e}"
            ))
            .hint("fix the file's permissions, or move it away after checking its resources"));
        }
    };
    let head = match StateHead::parse(&bytes) {
        Ok(h) => h,
        Err(e) => return set_aside(&path, format!("it is unreadable ({e})")),
    };
    let current = store.read(env).await?;
    let stored = match current.as_ref().map(|c| StateHead::parse(&c.bytes)) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            // Do not guess which of two damaged documents is right: leave both alone.
            return Err(Error::failed(format!(
                "`{env}` has an unreadable stored state ({e}) and the working copy holds `{ERRORED}` from an interrupted run"
            ))
            .hint(format!(
                "inspect {} and the stored versions (`nubes state history {env}`), then `nubes state restore` \
                 the right one and move the file away",
                path.display()
            )));
        }
    };
    if let Some(stored) = &stored {
        if stored.lineage != head.lineage {
            return set_aside(
                &path,
                format!(
                    "its lineage {} is not the stored state's ({})",
                    head.lineage, stored.lineage
                ),
            );
        }
        if head.serial <= stored.serial {
            return set_aside(
                &path,
                format!(
                    "the stored state (serial {}) is newer than it (serial {}): another run wrote since",
                    stored.serial, head.serial
                ),
            );
        }
    }
    let expected = current.as_ref().map(|c| c.etag.as_str());
    match store
        .write(token, Bytes::from(bytes), expected, &head)
        .await?
    {
        Ok(_) => {
            fs_err::remove_file(&path)?;
            tracing::warn!(
                "recovered the state an interrupted run of `{env}` could not save ({ERRORED}, serial {}, {} resources): \
                 the resources it created are tracked again",
                head.serial,
                head.resources
            );
            Ok(Recovery::Pushed {
                serial: head.serial,
                resources: head.resources,
            })
        }
        Err(conflict) => Err(Error::failed(format!(
            "pushing {ERRORED} of an interrupted run of `{env}` was refused: {conflict}"
        ))),
    }
}

/// Move `path` to `errored.tfstate.<unix time>.kept` beside it, so it is looked at by a
/// person rather than pushed or lost.
fn set_aside(path: &Path, why: String) -> Result<Recovery> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = path.with_file_name(format!("{ERRORED}.{stamp}.kept"));
    fs_err::rename(path, &to)?;
    tracing::warn!(
        "found {ERRORED} from an interrupted run but did not push it: {why}; kept it as {} \
         (it may list resources no state knows about: check them, then delete the file)",
        to.display()
    );
    Ok(Recovery::SetAside { to, why })
}
