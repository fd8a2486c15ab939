//! Terraform state per environment, behind one trait with two implementations:
//! Azure Blob Storage ([`azure`]) and a local folder ([`local`]).
//!
//! Everything a store must guarantee is stated on [`StateStore`]; the policy on top of
//! it (waiting for locks, renewing leases, the lineage/serial guard) lives in
//! [`lock`] and [`head`] so both stores share it.

pub mod auth;
pub mod azure;
pub mod head;
pub mod local;
pub mod lock;
pub mod lockinfo;
pub mod meta;

use async_trait::async_trait;
use bytes::Bytes;

use crate::env_name::EnvName;
use crate::error::Result;
pub use head::StateHead;
pub use lockinfo::LockInfo;

/// Proof that this process holds an environment's lock.
#[derive(Debug, Clone)]
pub struct LockToken {
    pub env: EnvName,
    /// The lease ID (Azure) or lock ID (local); equal to `info.id`.
    pub lease_id: String,
    pub info: LockInfo,
}

/// Who holds a lock, as far as the store can tell.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The lock info, when the holder wrote one we can read.
    pub info: Option<LockInfo>,
    /// An infinite lease (plain Terraform's azurerm backend): it never expires by itself.
    pub infinite: bool,
}

impl Holder {
    pub fn describe(&self) -> String {
        let who = match &self.info {
            Some(i) => i.describe(),
            None => "a holder that left no lock info".into(),
        };
        if self.infinite {
            format!("{who} [infinite lease: it will not expire by itself]")
        } else {
            who
        }
    }
}

pub enum Attempt {
    Acquired(LockToken),
    Held(Holder),
}

/// A state document as stored, with the ETag a conditional write must match.
#[derive(Debug, Clone)]
pub struct Stored {
    pub bytes: Bytes,
    pub etag: String,
}

/// One kept previous version of an environment's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Version {
    /// Opaque ID accepted by `state pull/restore` (a blob snapshot time, or a file name).
    pub id: String,
    pub serial: Option<u64>,
    /// When this version was replaced by a newer one.
    pub saved_at: String,
    pub size: u64,
}

/// One entry of [`StateStore::list`]: a state blob (or a tombstone) and its metadata.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The environment, when the name matches the key template.
    pub env: Option<EnvName>,
    /// The blob (or file) name.
    pub name: String,
    pub tombstone: bool,
    pub size: u64,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Who holds the lock, read from the listing itself.
    pub holder: Option<Holder>,
    /// Kept previous versions, when the listing counted them
    /// ([`StateStore::list_with_versions`]); `None` from a plain [`StateStore::list`].
    pub versions: Option<usize>,
}

/// The environment a state name belongs to, given the key template (`{env}` once).
pub fn env_of(key_template: &str, name: &str, prefix: &str) -> Option<EnvName> {
    let (before, after) = key_template.split_once("{env}")?;
    let middle = name.strip_prefix(before)?.strip_suffix(after)?;
    EnvName::parse(middle, prefix).ok()
}

/// Why a conditional write did not happen.
#[derive(Debug)]
pub enum WriteConflict {
    /// The stored document changed since it was read (ETag mismatch).
    Changed,
    /// The lock was lost (lease expired or broken).
    LockLost,
}

impl std::fmt::Display for WriteConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteConflict::Changed => f.write_str(
                "the stored state changed since nubes read it (someone wrote it outside the lock)",
            ),
            WriteConflict::LockLost => {
                f.write_str("nubes no longer holds the lock (its lease expired or was broken)")
            }
        }
    }
}

/// Where Terraform state lives. Implementations must make every write conditional on
/// the ETag the caller read, keep the previous version before overwriting, and lock with
/// leases that expire by themselves if the holder dies.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Where the env's state lives, for messages (never contains credentials).
    fn location(&self, env: &EnvName) -> String;
    /// `Path` recorded in lock info, as Terraform would: `<container>/<key>`.
    fn lock_path(&self, env: &EnvName) -> String;
    /// How often the lock must be renewed, if it expires at all.
    fn renew_every(&self) -> Option<std::time::Duration>;

    /// One attempt to take the env's lock, creating the state blob empty if missing.
    async fn try_lock(&self, env: &EnvName, info: &LockInfo) -> Result<Attempt>;
    /// Extend the lease. `Ok(false)` when the lock is no longer ours.
    async fn renew(&self, token: &LockToken) -> Result<bool>;
    /// Release the lock and clear the lock info.
    async fn unlock(&self, token: &LockToken) -> Result<()>;
    /// Who holds the env's lock, or `None` when it is free.
    async fn holder(&self, env: &EnvName) -> Result<Option<Holder>>;
    /// Break someone else's lock, recording who broke it. Returns the broken holder.
    async fn break_lock(&self, env: &EnvName, by: &LockInfo) -> Result<Option<Holder>>;

    /// The current state, or `None` when there is none (missing or empty blob).
    async fn read(&self, env: &EnvName) -> Result<Option<Stored>>;
    /// Replace the state, keeping the previous version, if the stored ETag still equals
    /// `expected` (`None`: there was no state). Returns the new ETag.
    async fn write(
        &self,
        token: &LockToken,
        bytes: Bytes,
        expected: Option<&str>,
        head: &StateHead,
    ) -> Result<std::result::Result<String, WriteConflict>>;
    /// Keep the final state as a tombstone, then delete the state (and the lock with it).
    /// Returns the tombstone's name, or `None` when there was no state.
    async fn delete(&self, token: &LockToken) -> Result<Option<String>>;
    /// nubes's metadata on the env's state (`nubes*` keys: fingerprint, commit, ...);
    /// `None` when there is no state.
    async fn read_meta(
        &self,
        env: &EnvName,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>>;
    /// Merge `entries` into the env's metadata, under the lock.
    async fn write_meta(&self, token: &LockToken, entries: &[(&str, String)]) -> Result<()>;
    /// Every environment in the store, from one listing (no per-env requests).
    async fn list(&self) -> Result<Vec<Listed>>;
    /// [`list`](StateStore::list) with each entry's kept-version count, still from one
    /// listing (Azure: snapshots included in it, so the listing grows with `history`).
    async fn list_with_versions(&self) -> Result<Vec<Listed>> {
        self.list().await
    }
    /// Kept previous versions, newest first.
    async fn history(&self, env: &EnvName) -> Result<Vec<Version>>;
    /// The content of one kept version.
    async fn read_version(&self, env: &EnvName, id: &str) -> Result<Bytes>;
}

/// Open the store the settings describe.
pub fn open(settings: &crate::config::Settings) -> Result<std::sync::Arc<dyn StateStore>> {
    use crate::config::Backend;
    let s = &settings.state;
    if s.backend == Backend::Local && !s.backend_explicit && crate::ui::is_ci() {
        return Err(crate::error::Error::input(
            "no state storage is configured, and on CI nubes will not fall back to the local folder .nubes/state: \
             the state would vanish with the runner, orphaning every resource Terraform creates",
        )
        .hint("set [state] account_url (or NUBES_STATE_ACCOUNT_URL) to your state storage account; if you really want throw-away state, set [state] backend = \"local\""));
    }
    Ok(match s.backend {
        Backend::Local => std::sync::Arc::new(local::LocalStore::new(
            s.local_path.clone(),
            s.key.clone(),
            s.history,
        )),
        Backend::Azure => std::sync::Arc::new(azure::AzureStore::new(azure::AzureSettings {
            account_url: s.account_url.clone().unwrap_or_default(),
            container: s.container.clone(),
            key_template: s.key.clone(),
            lease_seconds: s.lease_seconds,
            history: s.history,
            timeout: s.timeout,
        })?),
    })
}
