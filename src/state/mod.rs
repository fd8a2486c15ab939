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

/// A stored state document on its way out in pieces ([`StateStore::read_stream`]), so
/// that a state of any size passes through nubes in bounded memory.
pub struct StoredStream {
    pub etag: String,
    pub len: u64,
    /// The document's head, when the store can vouch for it without reading the
    /// document (Azure: metadata nubes wrote with exactly this content, see
    /// [`meta::WRITTEN_MD5`]); `None` when it must be read from the content.
    pub head: Option<StateHead>,
    pub body: futures::stream::BoxStream<'static, Result<Bytes>>,
}

/// A state document arriving in pieces (the gateway's request body), read by
/// [`StateStore::stage`].
#[async_trait]
pub trait Body: Send {
    /// The next piece, `None` after the last. An error means the document could not be
    /// received (the sender failed), not that storage did.
    async fn next_piece(&mut self) -> Result<Option<Bytes>>;
}

/// A whole document in memory as a [`Body`] of one piece.
pub struct Whole(pub Option<Bytes>);

#[async_trait]
impl Body for Whole {
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        Ok(self.0.take().filter(|b| !b.is_empty()))
    }
}

/// What the sender declared about a document before sending it (the gateway's
/// `Content-Length` and `Content-MD5`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyHint {
    pub len: Option<u64>,
    pub md5: Option<[u8; 16]>,
}

impl BodyHint {
    /// Both length and MD5 declared: a store that [verifies declared
    /// MD5s](StateStore::verifies_declared_md5) can send the document on as it arrives
    /// and leave the MD5 check to storage.
    pub fn declared(&self) -> Option<(u64, [u8; 16])> {
        Some((self.len?, self.md5?))
    }
}

/// A document received by [`StateStore::stage`] but not yet the state: nothing a reader
/// of the state can see. Dropping it abandons it (Azure: uncommitted blocks, which
/// storage discards, or a Put Blob cut off before its last bytes, which storage never
/// stores; local: a temporary file, deleted).
pub struct Staged {
    pub len: u64,
    pub(crate) kind: StagedKind,
}

pub(crate) enum StagedKind {
    /// Small enough to have been kept in memory: stored with one request at commit.
    Memory(Bytes),
    /// Azure blocks already uploaded (Put Block), committed by their IDs (Put Block List).
    Blocks(Vec<Vec<u8>>),
    /// An Azure Put Blob under way, all of it sent but its last piece: sending that
    /// piece is the commit.
    Streaming(azure::PendingPut),
    /// The local store's temporary file beside the state.
    File(tempfile::TempPath),
}

/// One kept previous version of an environment's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Version {
    /// Opaque ID accepted by `state pull/restore` (a blob snapshot time, or a file name).
    pub id: String,
    /// Serial and lineage of the version's content: read from it, or from metadata
    /// verified against it (see [`meta::WRITTEN_MD5`]); `None` when it is unreadable.
    pub serial: Option<u64>,
    pub lineage: Option<String>,
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
    /// When the blob (or file) last changed, and when it was created.
    pub last_modified: Option<time::OffsetDateTime>,
    pub created: Option<time::OffsetDateTime>,
    /// Who holds the lock, read from the listing itself.
    pub holder: Option<Holder>,
    /// Kept previous versions, when the listing counted them
    /// ([`StateStore::list_with_versions`]); `None` from a plain [`StateStore::list`].
    pub versions: Option<usize>,
    /// When the state was last modified, if it changed since nubes last wrote it (plain
    /// Terraform wrote it): then the `nubes*` values in `metadata` describe an older state.
    pub changed_outside: Option<String>,
}

/// Whether a stored state changed since nubes last wrote it, from its metadata (names
/// normalised), the base64 Content-MD5 storage holds for it and when it was last
/// modified: `Some(last modified)` when it did. A state nubes never wrote (no `nubes*`
/// serial) was written outside nubes; one written before nubes recorded
/// [`meta::WRITTEN_MD5`] cannot be judged from metadata alone and counts as nubes's.
pub fn changed_outside<M: MetaGet>(
    meta: &M,
    content_md5: Option<&str>,
    last_modified: impl FnOnce() -> String,
) -> Option<String> {
    let changed = match meta.meta(meta::WRITTEN_MD5) {
        Some(written) => content_md5 != Some(written),
        None => meta.meta(meta::SERIAL).is_none(),
    };
    changed.then(last_modified)
}

/// Metadata describing `stored` as the state nubes knows: its serial, lineage, number of
/// resources and MD5. Written with every state write, and after a plan or apply under
/// the lock has confirmed a state someone else wrote (it is then nubes's again).
pub fn head_entries(stored: &[u8], head: &StateHead) -> Vec<(&'static str, String)> {
    use md5::Digest as _;
    head_entries_md5(md5::Md5::digest(stored).into(), head)
}

/// [`head_entries`] for a document whose MD5 is already known (it was computed while the
/// document streamed by).
pub fn head_entries_md5(md5: [u8; 16], head: &StateHead) -> Vec<(&'static str, String)> {
    let md5 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, md5);
    let mut entries = vec![
        (meta::SERIAL, head.serial.to_string()),
        (meta::RESOURCES, head.resources.to_string()),
        (meta::WRITTEN_MD5, md5),
    ];
    if lineage_fits(&head.lineage) {
        entries.push((meta::LINEAGE, head.lineage.clone()));
    }
    entries
}

/// Metadata travels in HTTP headers (printable ASCII, 8 KiB in all). Terraform writes
/// UUIDs, but a state may carry any lineage string; an unfit one is left out of the
/// (informational) metadata rather than failing the write.
pub fn lineage_fits(lineage: &str) -> bool {
    lineage.len() <= 128 && lineage.bytes().all(|b| b.is_ascii_graphic())
}

/// Read access to a normalised metadata map, whichever map type a store keeps.
pub trait MetaGet {
    fn meta(&self, key: &str) -> Option<&str>;
}

impl MetaGet for std::collections::HashMap<String, String> {
    fn meta(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl MetaGet for std::collections::BTreeMap<String, String> {
    fn meta(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
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
    /// Storage refused the document: it does not match the MD5 its sender declared.
    Md5Mismatch,
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
            WriteConflict::Md5Mismatch => f.write_str(
                "Content-MD5 does not match the body (storage checked it and stored nothing)",
            ),
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
    /// Merge `entries` into the metadata (see [`meta::merge`]), then release the lock.
    /// Stores that can do both in one write override this (the activity record of a
    /// fast-path `up` then costs no extra request).
    async fn unlock_recording(&self, token: &LockToken, entries: &[(&str, String)]) -> Result<()> {
        if !entries.is_empty() && self.read_meta(&token.env).await?.is_some() {
            self.write_meta(token, entries).await?;
        }
        self.unlock(token).await
    }
    /// Who holds the env's lock, or `None` when it is free.
    async fn holder(&self, env: &EnvName) -> Result<Option<Holder>>;
    /// Break someone else's lock, recording who broke it. Returns the broken holder.
    async fn break_lock(&self, env: &EnvName, by: &LockInfo) -> Result<Option<Holder>>;

    /// The current state, or `None` when there is none (missing or empty blob).
    async fn read(&self, env: &EnvName) -> Result<Option<Stored>>;
    /// [`read`](StateStore::read) in pieces, for documents of any size.
    async fn read_stream(&self, env: &EnvName) -> Result<Option<StoredStream>>;
    /// Receive a new state document from `body` (every piece, in order) without making
    /// it the state: [`commit`](StateStore::commit) does that once the caller has
    /// checked the whole document. `Ok(Err(..))` when the lock was lost meanwhile.
    /// `hint` is what the sender declared; with both length and MD5 declared and
    /// [`verifies_declared_md5`](StateStore::verifies_declared_md5), the caller does
    /// not hash the document and `commit` gets the declared MD5, which storage checks.
    async fn stage(
        &self,
        token: &LockToken,
        body: &mut dyn Body,
        hint: &BodyHint,
    ) -> Result<std::result::Result<Staged, WriteConflict>>;
    /// Whether storage itself checks a document against the MD5 its sender declared
    /// (both length and MD5 in [`BodyHint`]), refusing a mismatch with
    /// [`WriteConflict::Md5Mismatch`] and storing nothing: the caller then need not
    /// hash it.
    fn verifies_declared_md5(&self) -> bool {
        false
    }
    /// Make `staged` the state, keeping the previous version, if the stored ETag still
    /// equals `expected` (`None`: there was no state). `md5` is the document's MD5 (kept
    /// as its Content-MD5 and in [`meta::WRITTEN_MD5`]). Returns the new ETag.
    async fn commit(
        &self,
        token: &LockToken,
        staged: Staged,
        expected: Option<&str>,
        head: &StateHead,
        md5: [u8; 16],
    ) -> Result<std::result::Result<String, WriteConflict>>;
    /// Replace the state with a document held in memory: [`stage`](StateStore::stage)
    /// then [`commit`](StateStore::commit).
    async fn write(
        &self,
        token: &LockToken,
        bytes: Bytes,
        expected: Option<&str>,
        head: &StateHead,
    ) -> Result<std::result::Result<String, WriteConflict>> {
        use md5::Digest as _;
        let md5: [u8; 16] = md5::Md5::digest(&bytes).into();
        match self
            .stage(token, &mut Whole(Some(bytes)), &BodyHint::default())
            .await?
        {
            Ok(staged) => self.commit(token, staged, expected, head, md5).await,
            Err(conflict) => Ok(Err(conflict)),
        }
    }
    /// Keep the final state as a tombstone, then delete the state (and the lock with it).
    /// Returns the tombstone's name, or `None` when there was no state.
    async fn delete(&self, token: &LockToken) -> Result<Option<String>>;
    /// nubes's metadata on the env's state (`nubes*` keys: fingerprint, commit, ...);
    /// `None` when there is no state.
    async fn read_meta(
        &self,
        env: &EnvName,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>>;
    /// Merge `entries` into the env's metadata, under the lock (see [`meta::merge`]).
    async fn write_meta(&self, token: &LockToken, entries: &[(&str, String)]) -> Result<()>;
    /// `Some(last modified)` when the env's state changed since nubes last wrote it
    /// (plain Terraform wrote it); `None` when it did not, or there is no state.
    async fn changed_outside(&self, env: &EnvName) -> Result<Option<String>>;
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
    /// For `nubes doctor`: that the container exists and that a throw-away blob can be
    /// written, leased, read and deleted (the operations every command needs). Returns
    /// what was checked; the local folder needs no probe.
    async fn probe(&self) -> Result<Vec<&'static str>> {
        Ok(vec![])
    }
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
