//! The Azure Blob Storage state store (official `azure_storage_blob` 1.x).
//!
//! Layout (DESIGN.md "State"): state for env E in `<container>/<key with {env}=E>`,
//! exactly where Terraform's `azurerm` backend keeps it. The lock is a finite, renewed
//! lease on that blob with the lock ID as proposed lease ID, plus `terraformlockid`
//! metadata. Each overwrite first snapshots the previous version (snapshots carry the
//! version's serial in metadata); `history` snapshots are kept. `delete` copies the
//! final state to a tombstone blob `<key>.tombstone.<UTC time>` first.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::{
    AsyncRawResponse, Body as HttpBody, ClientMethodOptions, ClientOptions, Context as CallContext,
    Etag, ExponentialRetryOptions, HttpClient, NoFormat, Request, RequestContent, RetryOptions,
    StatusCode, Transport, Url,
};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientBreakLeaseOptions, BlobClientCreateSnapshotOptions,
    BlobClientCreateSnapshotResultHeaders, BlobClientDeleteOptions, BlobClientDownloadOptions,
    BlobClientGetPropertiesOptions, BlobClientGetPropertiesResultHeaders,
    BlobClientReleaseLeaseOptions, BlobClientSetMetadataOptions, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions, BlobItem, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientCommitBlockListResultHeaders, BlockBlobClientStageBlockOptions, BlockLookupList,
    DeleteSnapshotsOptionType, LeaseDuration, LeaseState, ListBlobsIncludeItem,
};
use azure_storage_blob::{
    BlobClient, BlobContainerClient, BlobContainerClientOptions, BlockBlobClient,
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use super::auth::StorageAuth;
use super::lockinfo::{self, LOCK_META_KEY, LockInfo};
use super::{
    Attempt, Holder, LockToken, StagedKind, StateHead, StateStore, Stored, Version, WriteConflict,
    meta,
};
use crate::env_name::EnvName;
use crate::error::{Error, Result};

mod stream;
pub use stream::PendingPut;
use stream::{ContentMd5, ContentMd5Policy, PieceStream};

/// Metadata nubes keeps on state blobs (and hence on their snapshots): see `meta`.
pub use super::meta::{
    LAST_BREAK as META_LAST_BREAK, LINEAGE as META_LINEAGE, RESOURCES as META_RESOURCES,
    SAVED_AT as META_SAVED_AT, SERIAL as META_SERIAL, TOMBSTONE as META_TOMBSTONE,
};
pub const TOMBSTONE_INFIX: &str = ".tombstone.";

/// Whole-document transfers (tombstones, `state pull`) up to this size move in one
/// request each way rather than the SDK's parallel 4 MiB ranges, which were slower on
/// state-sized payloads. The gateway's path streams instead: [`BLOCK_SIZE`].
const SINGLE_REQUEST_LIMIT: std::num::NonZero<usize> =
    std::num::NonZero::<usize>::MIN.saturating_add((256 << 20) - 1);
pub(crate) const SINGLE_REQUEST_LIMIT_U64: std::num::NonZero<u64> =
    std::num::NonZero::<u64>::MIN.saturating_add((256 << 20) - 1);

/// A state written through the gateway that is larger than this streams as one Put
/// Blob when its length and MD5 were declared (`stream`; Put Blob takes up to 5000 MiB,
/// the gateway 1 GiB); otherwise it is staged in blocks of
/// this size as it arrives (Put Block), at most [`BLOCKS_IN_FLIGHT`] at a time, and
/// committed with one Put Block List once the whole document has arrived and passed the
/// checks: nubes holds at most `(BLOCKS_IN_FLIGHT + 1) × BLOCK_SIZE` of it, whatever
/// its size, and an outage or a refusal part-way leaves only uncommitted blocks, which
/// are invisible and which storage discards. Smaller states go in one Put Blob.
const BLOCK_SIZE: usize = 4 << 20;
const BLOCKS_IN_FLIGHT: usize = 4;

/// A streamed read asks for the whole blob in one response (the SDK would otherwise
/// split it into ranges it buffers, 2 × parallel of them): states never approach this.
const STREAM_PARTITION: std::num::NonZero<usize> =
    std::num::NonZero::<usize>::MIN.saturating_add((1 << 40) - 1);

/// Every HTTP request nubes makes to storage, counted (benchmarks report it) and logged
/// at debug level without the query string (where a SAS would be).
static REQUESTS: AtomicU64 = AtomicU64::new(0);

pub fn requests_made() -> u64 {
    REQUESTS.load(Ordering::Relaxed)
}

#[derive(Debug)]
struct LoggingClient(reqwest::Client);

#[async_trait]
impl HttpClient for LoggingClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = self.0.execute_request(request).await;
        let status = match &result {
            Ok(r) => match r.headers().get_optional_str(
                &azure_core::http::headers::HeaderName::from_static("x-ms-error-code"),
            ) {
                Some(code) => format!("{} {code}", r.status()),
                None => r.status().to_string(),
            },
            Err(e) => format!("error: {}", e.kind()),
        };
        tracing::debug!(
            "storage {} {} -> {status} ({} ms)",
            request.method(),
            request.url().path(),
            started.elapsed().as_millis()
        );
        result
    }
}

/// The HTTP client used for storage: our own reqwest so an extra CA
/// (`NUBES_STORAGE_CA_CERT`) can be trusted, with bounded connect/read times.
pub fn http_client() -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = std::env::var_os("NUBES_STORAGE_CA_CERT").filter(|v| !v.is_empty()) {
        let ca = ca.to_string_lossy().into_owned();
        let pem = if ca.trim_start().starts_with("-----BEGIN") {
            ca.into_bytes()
        } else {
            fs_err::read(&ca).map_err(|e| {
                Error::input(format!("NUBES_STORAGE_CA_CERT: {e}"))
                    .hint("set it to a PEM file with the CA certificate(s) to trust")
            })?
        };
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::input(format!(
                "NUBES_STORAGE_CA_CERT is not a PEM certificate bundle: {e}"
            ))
        })?;
        if certs.is_empty() {
            return Err(Error::input(
                "NUBES_STORAGE_CA_CERT holds no PEM certificate",
            ));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| Error::failed(format!("cannot set up the HTTPS client: {e}")))
}

/// SDK client options shared by every nubes storage client: our reqwest as the
/// transport (wrapped in [`LoggingClient`]) and the retry policy of ARCHITECTURE.md:
/// exponential backoff (0.2 s doubling to 5 s) for as long as `timeout` allows.
pub(crate) fn container_options(
    http: reqwest::Client,
    timeout: Duration,
) -> BlobContainerClientOptions {
    BlobContainerClientOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(LoggingClient(http)))),
            retry: retry_options(timeout),
            per_call_policies: vec![Arc::new(ContentMd5Policy)],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Exponential backoff from 0.2 s, bounded by time, not by count, so that an outage of
/// `timeout` is ridden out and a request gives up within `timeout`: the SDK checks the
/// elapsed time before each sleep, so its budget is `timeout` less the longest sleep.
/// That sleep is 5 s, shorter for short timeouts (a quarter of them) and longer for
/// long ones (a fortieth, at most 15 s) so that 50 retries span them: the SDK computes
/// 2^retries, which overflows past 2^56.
fn retry_options(timeout: Duration) -> RetryOptions {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let max_delay = (timeout / 40)
        .clamp(Duration::from_secs(5), Duration::from_secs(15))
        .min(timeout / 4);
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(200.min(ms(max_delay))),
        max_retries: 50,
        max_total_elapsed: azure_core::time::Duration::milliseconds(ms(timeout - max_delay)),
        max_delay: azure_core::time::Duration::milliseconds(ms(max_delay)),
    })
}

pub struct AzureSettings {
    /// `https://<account>.blob.core.windows.net`, no trailing slash.
    pub account_url: String,
    pub container: String,
    pub key_template: String,
    pub lease_seconds: u32,
    pub history: usize,
    /// `[state] timeout`: how long requests are retried.
    pub timeout: Duration,
}

pub struct AzureStore {
    container: BlobContainerClient,
    settings: AzureSettings,
    auth_kind: &'static str,
}

impl AzureStore {
    pub fn new(settings: AzureSettings) -> Result<Self> {
        let http = http_client()?;
        let auth = super::auth::from_env(http.clone())?;
        let auth_kind = auth.describe();
        let mut url = Url::parse(&format!("{}/", settings.account_url.trim_end_matches('/')))
            .map_err(|e| {
                Error::input(format!(
                    "[state] account_url `{}` is not a URL: {e}",
                    settings.account_url
                ))
            })?;
        url.path_segments_mut()
            .map_err(|_| {
                Error::input(format!(
                    "[state] account_url `{}` cannot hold a path",
                    settings.account_url
                ))
            })?
            .pop_if_empty()
            .push(&settings.container);
        let credential = match &auth {
            StorageAuth::Sas(sas) => {
                url.set_query(Some(sas));
                None
            }
            StorageAuth::Token(cred, _) => {
                if url.scheme() != "https" {
                    return Err(Error::input(format!(
                        "[state] account_url `{}` is not https: Entra ID tokens are only sent over HTTPS",
                        settings.account_url
                    ))
                    .hint("use an https:// account URL, or a SAS token (NUBES_STORAGE_SAS) for plain-HTTP emulators"));
                }
                Some(cred.clone())
            }
        };
        let container = BlobContainerClient::new(
            url,
            credential,
            Some(container_options(http, settings.timeout)),
        )
        .map_err(|e| Error::input(format!("cannot use the state storage: {e}")))?;
        Ok(AzureStore {
            container,
            settings,
            auth_kind,
        })
    }

    fn key(&self, env: &EnvName) -> String {
        self.settings.key_template.replace("{env}", env.as_str())
    }

    fn blob(&self, env: &EnvName) -> BlobClient {
        self.container.blob_client(&self.key(env))
    }

    /// Turn an SDK error into one a user can act on.
    fn error(&self, e: azure_core::Error, doing: &str) -> Error {
        let status = e.http_status();
        let code = error_code(&e).unwrap_or_default();
        let place = format!("{}/{}", self.settings.account_url, self.settings.container);
        match (status, code.as_str()) {
            (Some(StatusCode::NotFound), "ContainerNotFound") => Error::input(format!(
                "{doing}: the container `{}` does not exist in {}",
                self.settings.container, self.settings.account_url
            ))
            .hint(format!(
                "create it (`az storage container create --name {} --account-name <account> --auth-mode login`) \
                 or run `nubes bootstrap`, or fix [state] container",
                self.settings.container
            )),
            (Some(StatusCode::Forbidden | StatusCode::Unauthorized), _) => Error::input(format!(
                "{doing}: the storage account {place} refused nubes's credentials ({}): {}",
                self.auth_kind,
                if code.is_empty() { status.map(|s| s.to_string()).unwrap_or_default() } else { code.clone() }
            ))
            .hint(format!(
                "check that the credential is valid and not expired, and that it may read and write blobs: \
                 the role `Storage Blob Data Contributor` on the storage account {} (`az role assignment \
                 create --role \"Storage Blob Data Contributor\" --assignee <client-id> --scope <the \
                 account's resource ID>`), or a SAS with read, add, create, write, delete and list",
                account_name(&self.settings.account_url)
            )),
            (Some(s), _) => Error::failed(format!("{doing}: storage answered {s}{}", if code.is_empty() { String::new() } else { format!(" ({code})") })),
            (None, _) => {
                let detail = match e.kind() {
                    ErrorKind::Io | ErrorKind::Connection => "cannot connect".to_string(),
                    ErrorKind::Credential => "could not get an access token".to_string(),
                    other => other.to_string(),
                };
                let mut err = Error::failed(format!("{doing}: {detail} to the state storage at {place}: {}", source_chain(&e)));
                if matches!(e.kind(), ErrorKind::Credential) {
                    err = Error::input(format!("{doing}: could not get an access token for the state storage ({}): {}", self.auth_kind, source_chain(&e)))
                        .hint(super::auth::token_hint(&e, self.auth_kind));
                } else {
                    err = err.hint(format!(
                        "check [state] account_url and the network; nubes retried for {} ([state] timeout)",
                        humantime::format_duration(self.settings.timeout)
                    ));
                }
                err
            }
        }
    }

    async fn properties(
        &self,
        blob: &BlobClient,
        lease_id: Option<&str>,
        doing: &str,
    ) -> Result<Option<Props>> {
        let options = BlobClientGetPropertiesOptions {
            lease_id: lease_id.map(str::to_string),
            ..Default::default()
        };
        match blob.get_properties(Some(options)).await {
            Ok(r) => Ok(Some(Props {
                etag: r
                    .etag()
                    .ok()
                    .flatten()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                len: r.content_length().ok().flatten().unwrap_or(0),
                metadata: meta::normalise(r.metadata().unwrap_or_default()),
                leased: matches!(r.lease_state(), Ok(Some(LeaseState::Leased))),
                infinite: matches!(r.duration(), Ok(Some(LeaseDuration::Infinite))),
                content_md5: r.content_md5().ok().flatten().map(|m| b64(&m)),
                last_modified: r.last_modified().ok().flatten(),
            })),
            Err(e)
                if error_code(&e).as_deref() == Some("BlobNotFound")
                    || (e.http_status() == Some(StatusCode::NotFound)
                        && error_code(&e).is_none()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error(e, doing)),
        }
    }

    fn holder_of(props: &Props) -> Holder {
        Holder {
            info: props
                .metadata
                .get(LOCK_META_KEY)
                .and_then(|v| LockInfo::from_metadata_value(v)),
            infinite: props.infinite,
        }
    }

    async fn create_empty(&self, blob: &BlobClient) -> Result<()> {
        let options = BlobClientUploadOptions {
            if_none_match: Some(Etag::from("*")),
            blob_content_type: Some("application/json".into()),
            partition_size: Some(SINGLE_REQUEST_LIMIT_U64),
            ..Default::default()
        };
        match blob.upload(content(Bytes::new()), Some(options)).await {
            Ok(_) => Ok(()),
            // Someone else created it meanwhile: fine.
            Err(e)
                if matches!(
                    e.http_status(),
                    Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(e, "creating the state blob")),
        }
    }

    /// Every state blob and tombstone from one paged List Blobs; with `versions`,
    /// snapshots are included in that listing and counted per blob.
    async fn listing(&self, versions: bool) -> Result<Vec<super::Listed>> {
        let (before, _) = self
            .settings
            .key_template
            .split_once("{env}")
            .unwrap_or(("", ""));
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!before.is_empty()).then(|| before.to_string()),
            include: Some(if versions {
                vec![
                    ListBlobsIncludeItem::Snapshots,
                    ListBlobsIncludeItem::Metadata,
                ]
            } else {
                vec![ListBlobsIncludeItem::Metadata]
            }),
            ..Default::default()
        };
        let doing = "listing the environments";
        let mut pages = self
            .container
            .list_blobs(Some(options))
            .map_err(|e| self.error(e, doing))?
            .into_pages();
        let mut out = Vec::new();
        let mut snapshots: HashMap<String, usize> = HashMap::new();
        while let Some(page) = pages.try_next().await.map_err(|e| self.error(e, doing))? {
            let page = page.into_model().map_err(|e| self.error(e, doing))?;
            for item in page.blob_items {
                let Some(name) = item.name else { continue };
                if item.snapshot.is_some() {
                    *snapshots.entry(name).or_default() += 1;
                    continue;
                }
                let metadata: std::collections::BTreeMap<String, String> =
                    meta::normalise(item.metadata.and_then(|m| m.values).unwrap_or_default());
                let props = item.properties;
                let leased = props.as_ref().and_then(|p| p.lease_state) == Some(LeaseState::Leased);
                let holder = leased.then(|| Holder {
                    info: metadata
                        .get(LOCK_META_KEY)
                        .and_then(|v| LockInfo::from_metadata_value(v)),
                    infinite: props.as_ref().and_then(|p| p.lease_duration)
                        == Some(LeaseDuration::Infinite),
                });
                let (state_name, tombstone) = match name.split_once(TOMBSTONE_INFIX) {
                    Some((base, _)) => (base.to_string(), true),
                    None => (name.clone(), false),
                };
                let size = props.as_ref().and_then(|p| p.content_length).unwrap_or(0);
                let changed_outside = if tombstone || size == 0 {
                    None
                } else {
                    let md5 = props
                        .as_ref()
                        .and_then(|p| p.content_md5.as_deref())
                        .map(b64);
                    super::changed_outside(&metadata, md5.as_deref(), || {
                        rfc3339(props.as_ref().and_then(|p| p.last_modified))
                    })
                };
                out.push(super::Listed {
                    env: super::env_of(&self.settings.key_template, &state_name, ""),
                    size,
                    last_modified: props.as_ref().and_then(|p| p.last_modified),
                    created: props.as_ref().and_then(|p| p.creation_time),
                    name,
                    tombstone,
                    metadata,
                    holder,
                    changed_outside,
                    versions: None,
                });
            }
        }
        if versions {
            for l in &mut out {
                l.versions = Some(snapshots.get(&l.name).copied().unwrap_or(0));
            }
        }
        Ok(out)
    }

    /// Snapshots of this env's blob, newest first.
    async fn snapshots(&self, env: &EnvName) -> Result<Vec<BlobItem>> {
        let key = self.key(env);
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(key.clone()),
            include: Some(vec![
                ListBlobsIncludeItem::Snapshots,
                ListBlobsIncludeItem::Metadata,
            ]),
            ..Default::default()
        };
        let mut pages = self
            .container
            .list_blobs(Some(options))
            .map_err(|e| self.error(e, "listing state versions"))?
            .into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| self.error(e, "listing state versions"))?
        {
            let page = page
                .into_model()
                .map_err(|e| self.error(e, "reading the state version list"))?;
            out.extend(
                page.blob_items
                    .into_iter()
                    .filter(|b| b.snapshot.is_some() && b.name.as_deref() == Some(key.as_str())),
            );
        }
        // Snapshot IDs are RFC 3339 times with 7 fractional digits: they sort as strings.
        out.sort_by(|a, b| b.snapshot.cmp(&a.snapshot));
        Ok(out)
    }

    async fn prune(&self, env: &EnvName) -> Result<()> {
        let snapshots = self.snapshots(env).await?;
        for old in snapshots.iter().skip(self.settings.history) {
            let Some(id) = &old.snapshot else { continue };
            let options = BlobClientDeleteOptions {
                snapshot: Some(id.clone()),
                ..Default::default()
            };
            if let Err(e) = self.blob(env).delete(Some(options)).await
                && e.http_status() != Some(StatusCode::NotFound)
            {
                tracing::warn!(
                    "could not drop old state version {id} of `{env}`: {}",
                    self.error(e, "pruning history")
                );
            }
        }
        Ok(())
    }

    async fn download(&self, blob: &BlobClient, doing: &str) -> Result<Option<Stored>> {
        let options = BlobClientDownloadOptions {
            partition_size: Some(SINGLE_REQUEST_LIMIT),
            ..Default::default()
        };
        match blob.download(Some(options)).await {
            Ok(r) => {
                let etag = r
                    .properties
                    .etag
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                let bytes = r.body.collect().await.map_err(|e| self.error(e, doing))?;
                if bytes.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Stored { bytes, etag }))
            }
            Err(e)
                if e.http_status() == Some(StatusCode::NotFound)
                    && error_code(&e).as_deref() != Some("ContainerNotFound") =>
            {
                Ok(None)
            }
            // A ranged read of an empty blob.
            Err(e) if e.http_status() == Some(StatusCode::RequestedRangeNotSatisfiable) => Ok(None),
            Err(e) => Err(self.error(e, doing)),
        }
    }

    async fn clear_lock_and_release(
        &self,
        blob: &BlobClient,
        token: &LockToken,
        entries: &[(&str, String)],
    ) -> Result<()> {
        let doing = format!("releasing the lock on `{}`", token.env);
        let Some(props) = self.properties(blob, Some(&token.lease_id), &doing).await? else {
            return Ok(()); // deleted under the lock (down): the lease went with it
        };
        if props.len == 0 {
            // Nothing was ever stored: remove the placeholder made for the lock.
            let options = BlobClientDeleteOptions {
                lease_id: Some(token.lease_id.clone()),
                delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
                ..Default::default()
            };
            return match blob.delete(Some(options)).await {
                Ok(_) => Ok(()),
                Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
                Err(e) => Err(self.error(e, &doing)),
            };
        }
        let mut meta = props.metadata;
        meta.remove(LOCK_META_KEY);
        super::meta::merge(&mut meta, entries);
        let options = BlobClientSetMetadataOptions {
            lease_id: Some(token.lease_id.clone()),
            ..Default::default()
        };
        blob.set_metadata(&meta, Some(options))
            .await
            .map_err(|e| self.error(e, &doing))?;
        blob.release_lease(
            token.lease_id.clone(),
            Some(BlobClientReleaseLeaseOptions::default()),
        )
        .await
        .map_err(|e| self.error(e, &doing))?;
        Ok(())
    }
}

/// A blob's properties, metadata names normalised ([`meta::normalise`]).
struct Props {
    etag: String,
    len: u64,
    metadata: HashMap<String, String>,
    leased: bool,
    infinite: bool,
    /// Base64 Content-MD5, as storage holds it.
    content_md5: Option<String>,
    last_modified: Option<time::OffsetDateTime>,
}

/// Fill `buf` up to one block from `carry`, then from `body`; what does not fit stays in
/// `carry` for the next block. `true` when the body has ended.
async fn fill(body: &mut dyn super::Body, buf: &mut BytesMut, carry: &mut Bytes) -> Result<bool> {
    loop {
        let n = carry.len().min(BLOCK_SIZE - buf.len());
        buf.extend_from_slice(&carry.split_to(n));
        if buf.len() == BLOCK_SIZE {
            return Ok(false);
        }
        match body.next_piece().await? {
            Some(piece) => *carry = piece,
            None => return Ok(true),
        }
    }
}

type BlockDone = (Vec<u8>, Bytes, [u8; 16], azure_core::Result<()>);

/// One Put Block of a staged write, on its own task so blocks travel while the body is
/// still arriving; it hands its block back so the caller can send it again.
///
/// Each block carries its own Content-MD5 (computed once, kept for a resend): storage
/// then verifies the block against it and refuses a block damaged on the way, and it is
/// also what keeps Azurite fast: without a Content-MD5 it computes a CRC64 of every
/// staged block in JavaScript, which made staging three times slower than one Put Blob
/// of the same bytes (see BENCHMARKS.md, issue 19).
fn spawn_block(
    set: &mut tokio::task::JoinSet<BlockDone>,
    blob: &Arc<BlockBlobClient>,
    token: &LockToken,
    id: Vec<u8>,
    block: Bytes,
    md5: Option<[u8; 16]>,
) {
    let blob = blob.clone();
    let lease_id = token.lease_id.clone();
    set.spawn(async move {
        let md5 = match md5 {
            Some(m) => m,
            // A block's hash is CPU work (a few ms per MiB): off the async workers.
            None => {
                let b = block.clone();
                match tokio::task::spawn_blocking(move || <[u8; 16]>::from(Md5::digest(&b))).await {
                    Ok(m) => m,
                    Err(e) => {
                        let e = azure_core::Error::with_message(
                            ErrorKind::Other,
                            format!("hashing a block stopped: {e}"),
                        );
                        return (id, block, [0; 16], Err(e));
                    }
                }
            }
        };
        let options = BlockBlobClientStageBlockOptions {
            lease_id: Some(lease_id),
            transactional_content_md5: Some(md5.to_vec()),
            ..Default::default()
        };
        let outcome = blob
            .stage_block(
                &id,
                block.len() as u64,
                content(block.clone()),
                Some(options),
            )
            .await
            .map(|_| ());
        (id, block, md5, outcome)
    });
}

/// A state document's Put Blob: conditional on `if_match`, under the lease, with
/// `meta`, in one request up to `partition` bytes, and with `md5` both stored as the
/// blob's Content-MD5 and sent as the request's `Content-MD5` ([`ContentMd5`]), so
/// storage checks the body against it (declared by Terraform, or computed by nubes) and
/// stores nothing on a mismatch.
fn state_put_options(
    if_match: Etag,
    lease_id: String,
    md5: [u8; 16],
    meta: HashMap<String, String>,
    partition: std::num::NonZero<u64>,
) -> BlobClientUploadOptions<'static> {
    BlobClientUploadOptions {
        if_match: Some(if_match),
        lease_id: Some(lease_id),
        blob_content_md5: Some(md5.to_vec()),
        metadata: Some(meta),
        blob_content_type: Some("application/json".into()),
        partition_size: Some(partition),
        method_options: ClientMethodOptions {
            context: CallContext::new().with_value(ContentMd5(md5)),
        },
        ..Default::default()
    }
}

/// The head of a stored state from its metadata alone, when nubes wrote that metadata
/// together with exactly this content ([`meta::WRITTEN_MD5`] equals the blob's MD5).
fn vouched_head(metadata: &HashMap<String, String>, md5: Option<&str>) -> Option<StateHead> {
    let written = metadata.get(meta::WRITTEN_MD5)?;
    if md5 != Some(written.as_str()) {
        return None;
    }
    Some(StateHead {
        serial: metadata.get(META_SERIAL)?.parse().ok()?,
        lineage: metadata
            .get(META_LINEAGE)
            .filter(|l| !l.is_empty())?
            .clone(),
        resources: metadata.get(META_RESOURCES)?.parse().ok()?,
    })
}

/// What a streamed read says when storage breaks off part-way (the store itself is not
/// at hand inside the stream).
struct StreamError {
    place: String,
    doing: String,
}

impl StreamError {
    fn of(&self, e: &azure_core::Error) -> Error {
        Error::failed(format!(
            "{}: the transfer from the state storage at {} broke off: {}",
            self.doing,
            self.place,
            source_chain(e)
        ))
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "an unknown time".into())
}

/// `RequestContent::from` is an inherent fn taking `Vec<u8>`; this avoids the copy.
pub(crate) fn content(bytes: Bytes) -> RequestContent<Bytes, NoFormat> {
    bytes.into()
}

pub(crate) fn error_code(e: &azure_core::Error) -> Option<String> {
    match e.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
        _ => None,
    }
}

pub(crate) use crate::rest::error_chain as source_chain;

/// The account name of `https://<account>.blob.core.windows.net` (or the path's first
/// segment for an emulator's `https://127.0.0.1:10000/<account>`), for messages.
fn account_name(account_url: &str) -> String {
    let Ok(url) = Url::parse(account_url) else {
        return crate::env_name::printable(account_url);
    };
    let host = url.host_str().unwrap_or_default();
    let name = match host.split_once(".blob.") {
        Some((name, _)) => name.to_string(),
        None => url
            .path_segments()
            .and_then(|mut s| s.next())
            .filter(|s| !s.is_empty())
            .unwrap_or(host)
            .to_string(),
    };
    format!("`{}`", crate::env_name::printable(&name))
}

fn is_lease_lost(e: &azure_core::Error) -> bool {
    matches!(
        error_code(e).as_deref(),
        Some(
            "LeaseIdMismatchWithLeaseOperation"
                | "LeaseNotPresentWithLeaseOperation"
                | "LeaseIdMismatchWithBlobOperation"
                | "LeaseNotPresentWithBlobOperation"
                | "LeaseLost"
                | "LeaseIdMissing"
                | "BlobNotFound"
        )
    )
}

fn utc_compact() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    now.format(&f)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[async_trait]
impl StateStore for AzureStore {
    fn location(&self, env: &EnvName) -> String {
        format!(
            "{}/{}/{}",
            self.settings.account_url,
            self.settings.container,
            self.key(env)
        )
    }

    fn lock_path(&self, env: &EnvName) -> String {
        format!("{}/{}", self.settings.container, self.key(env))
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(
            u64::from(self.settings.lease_seconds) / 3,
        ))
    }

    async fn try_lock(&self, env: &EnvName, info: &LockInfo) -> Result<Attempt> {
        let blob = self.blob(env);
        let doing = format!("locking environment `{env}`");
        for _ in 0..5 {
            let options = BlobClientAcquireLeaseOptions {
                proposed_lease_id: Some(info.id.clone()),
                ..Default::default()
            };
            match blob
                .acquire_lease(self.settings.lease_seconds as i32, Some(options))
                .await
            {
                Ok(_) => {
                    let token = LockToken {
                        env: env.clone(),
                        lease_id: info.id.clone(),
                        info: info.clone(),
                    };
                    if let Err(e) = self.write_lock_info(&blob, &token).await {
                        let _ = blob.release_lease(token.lease_id.clone(), None).await;
                        return Err(e);
                    }
                    return Ok(Attempt::Acquired(token));
                }
                Err(e) if error_code(&e).as_deref() == Some("BlobNotFound") => {
                    self.create_empty(&blob).await?
                }
                Err(e) if e.http_status() == Some(StatusCode::Conflict) => {
                    match self.properties(&blob, None, &doing).await? {
                        Some(props) if props.leased => {
                            return Ok(Attempt::Held(Self::holder_of(&props)));
                        }
                        _ => continue, // released or deleted meanwhile: try again
                    }
                }
                Err(e) => return Err(self.error(e, &doing)),
            }
        }
        // The blob kept changing under us; report it as held so the caller waits.
        Ok(Attempt::Held(Holder {
            info: None,
            infinite: false,
        }))
    }

    async fn renew(&self, token: &LockToken) -> Result<bool> {
        match self
            .blob(&token.env)
            .renew_lease(token.lease_id.clone(), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_lease_lost(&e) || e.http_status() == Some(StatusCode::Conflict) => {
                Ok(false)
            }
            Err(e) => Err(self.error(e, "renewing the lock lease")),
        }
    }

    async fn unlock(&self, token: &LockToken) -> Result<()> {
        self.clear_lock_and_release(&self.blob(&token.env), token, &[])
            .await
    }

    /// One metadata write does both: the lock info goes, the record comes.
    async fn unlock_recording(&self, token: &LockToken, entries: &[(&str, String)]) -> Result<()> {
        self.clear_lock_and_release(&self.blob(&token.env), token, entries)
            .await
    }

    async fn holder(&self, env: &EnvName) -> Result<Option<Holder>> {
        let props = self
            .properties(&self.blob(env), None, "reading the lock")
            .await?;
        Ok(props.filter(|p| p.leased).map(|p| Self::holder_of(&p)))
    }

    async fn break_lock(&self, env: &EnvName, by: &LockInfo) -> Result<Option<Holder>> {
        let blob = self.blob(env);
        let doing = format!("breaking the lock on `{env}`");
        let Some(holder) = self.holder(env).await? else {
            return Ok(None);
        };
        let options = BlobClientBreakLeaseOptions {
            break_period: Some(0),
            ..Default::default()
        };
        blob.break_lease(Some(options))
            .await
            .map_err(|e| self.error(e, &doing))?;
        // Take the lock briefly to clear the stale lock info and record the break.
        if let Attempt::Acquired(token) = self.try_lock(env, by).await? {
            let record = serde_json::json!({
                "by": by.who,
                "at": lockinfo::now_rfc3339(),
                "holder": holder.info,
            });
            let value = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                record.to_string(),
            );
            self.clear_lock_and_release(&blob, &token, &[(META_LAST_BREAK, value)])
                .await?;
        }
        Ok(Some(holder))
    }

    async fn read(&self, env: &EnvName) -> Result<Option<Stored>> {
        self.download(&self.blob(env), &format!("reading the state of `{env}`"))
            .await
    }

    async fn read_stream(&self, env: &EnvName) -> Result<Option<super::StoredStream>> {
        let doing = format!("reading the state of `{env}`");
        let options = BlobClientDownloadOptions {
            partition_size: Some(STREAM_PARTITION),
            ..Default::default()
        };
        let r = match self.blob(env).download(Some(options)).await {
            Ok(r) => r,
            Err(e)
                if e.http_status() == Some(StatusCode::NotFound)
                    && error_code(&e).as_deref() != Some("ContainerNotFound") =>
            {
                return Ok(None);
            }
            Err(e) if e.http_status() == Some(StatusCode::RequestedRangeNotSatisfiable) => {
                return Ok(None);
            }
            Err(e) => return Err(self.error(e, &doing)),
        };
        let p = &r.properties;
        let len = p.content_length.unwrap_or(0);
        if len == 0 {
            return Ok(None);
        }
        let etag = p.etag.as_ref().map(|e| e.to_string()).unwrap_or_default();
        let metadata: HashMap<String, String> = meta::normalise(p.metadata.clone());
        // A ranged read carries the whole blob's MD5 in x-ms-blob-content-md5.
        let md5 = p
            .blob_content_md5
            .as_deref()
            .or(p.content_md5.as_deref())
            .map(b64);
        let head = vouched_head(&metadata, md5.as_deref());
        let error = StreamError {
            place: format!("{}/{}", self.settings.account_url, self.settings.container),
            doing,
        };
        let body = r.body.map_err(move |e| error.of(&e)).boxed();
        Ok(Some(super::StoredStream {
            etag,
            len,
            head,
            body,
        }))
    }

    fn verifies_declared_md5(&self) -> bool {
        true
    }

    async fn stage(
        &self,
        token: &LockToken,
        body: &mut dyn super::Body,
        hint: &super::BodyHint,
    ) -> Result<std::result::Result<super::Staged, WriteConflict>> {
        let env = &token.env;
        let doing = format!("writing the state of `{env}`");
        // Larger than a block, with its length and MD5 declared (Terraform's case): one
        // Put Blob, started at once, that streams as the body arrives, storage checking
        // the MD5 (`stream`).
        if let Some((total, md5)) = hint.declared().filter(|(n, _)| *n > BLOCK_SIZE as u64) {
            return self.stream_put(token, body, total, md5, &doing).await;
        }
        let mut carry = Bytes::new();
        let mut buf = BytesMut::with_capacity(BLOCK_SIZE);
        let mut len = 0u64;
        // Up to one block is kept in memory: a document that ends within it is stored
        // with a single request at commit, as before.
        let mut ended = fill(body, &mut buf, &mut carry).await?;
        if ended {
            return Ok(Ok(super::Staged {
                len: buf.len() as u64,
                kind: StagedKind::Memory(buf.freeze()),
            }));
        }
        // Larger: blocks staged as the body arrives (Put Block), committed only when the
        // whole document has arrived and been checked. Nothing of it is visible before.
        let blob = Arc::new(self.blob(env).block_blob_client());
        let prefix = uuid::Uuid::new_v4().simple().to_string();
        let mut ids = Vec::new();
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            if !buf.is_empty() {
                // Each block is its own allocation of one block: a block in flight pins
                // nothing else.
                let block =
                    std::mem::replace(&mut buf, BytesMut::with_capacity(BLOCK_SIZE)).freeze();
                len += block.len() as u64;
                // Equal-length IDs, as Put Block List requires; unique per write, so
                // an abandoned write's blocks never mix with this one's.
                let id = format!("{prefix}{:08}", ids.len()).into_bytes();
                ids.push(id.clone());
                spawn_block(&mut in_flight, &blob, token, id, block, None);
            }
            let last = ended;
            while in_flight.len() >= BLOCKS_IN_FLIGHT || (last && !in_flight.is_empty()) {
                let Some(done) = in_flight.join_next().await else {
                    break;
                };
                let (id, block, md5, outcome) = done
                    .map_err(|e| Error::failed(format!("{doing}: a block upload stopped: {e}")))?;
                match outcome {
                    Ok(()) => {}
                    // The lease expired while storage was unreachable (longer than the
                    // lease); renewed only if nobody took the lock meanwhile.
                    Err(e)
                        if is_lease_lost(&e)
                            && error_code(&e).as_deref() != Some("BlobNotFound") =>
                    {
                        if !matches!(self.renew(token).await, Ok(true)) {
                            return Ok(Err(WriteConflict::LockLost));
                        }
                        spawn_block(&mut in_flight, &blob, token, id, block, Some(md5));
                    }
                    Err(e) => return Err(self.error(e, &doing)),
                }
            }
            if last {
                break;
            }
            ended = fill(body, &mut buf, &mut carry).await?;
        }
        Ok(Ok(super::Staged {
            len,
            kind: StagedKind::Blocks(ids),
        }))
    }

    async fn commit(
        &self,
        token: &LockToken,
        staged: super::Staged,
        expected: Option<&str>,
        head: &StateHead,
        md5: [u8; 16],
    ) -> Result<std::result::Result<String, WriteConflict>> {
        // A streamed write cannot be sent again: it commits once, or not at all.
        let staged = match staged.kind {
            StagedKind::Streaming(pending) => {
                return self
                    .commit_streamed(token, pending, expected, head, md5)
                    .await;
            }
            kind => super::Staged {
                len: staged.len,
                kind,
            },
        };
        match self
            .commit_once(token, &staged, expected, head, md5)
            .await?
        {
            // The lease expired while storage was unreachable (longer than the lease).
            // Azure renews an expired lease only if nobody leased or changed the blob
            // since, so a successful renewal proves the lock was never someone else's.
            Err(WriteConflict::LockLost) if matches!(self.renew(token).await, Ok(true)) => {
                tracing::warn!(
                    "the lease on `{}` had expired while storage was unreachable; nobody took \
                     the lock meanwhile, so nubes renewed it and wrote the state",
                    token.env
                );
                self.commit_once(token, &staged, expected, head, md5).await
            }
            other => Ok(other),
        }
    }

    async fn delete(&self, token: &LockToken) -> Result<Option<String>> {
        self.delete_blob(token).await
    }

    async fn read_meta(
        &self,
        env: &EnvName,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        let props = self
            .properties(
                &self.blob(env),
                None,
                &format!("reading the metadata of `{env}`"),
            )
            .await?;
        Ok(props.filter(|p| p.len > 0).map(|p| {
            p.metadata
                .into_iter()
                .filter(|(k, _)| k.starts_with("nubes"))
                .collect()
        }))
    }

    async fn write_meta(&self, token: &LockToken, entries: &[(&str, String)]) -> Result<()> {
        let doing = format!("recording the metadata of `{}`", token.env);
        let blob = self.blob(&token.env);
        let props = self
            .properties(&blob, Some(&token.lease_id), &doing)
            .await?
            .ok_or_else(|| Error::failed(format!("{doing}: there is no state")))?;
        let mut meta = props.metadata;
        super::meta::merge(&mut meta, entries);
        let options = BlobClientSetMetadataOptions {
            lease_id: Some(token.lease_id.clone()),
            if_match: Some(Etag::from(props.etag)),
            ..Default::default()
        };
        blob.set_metadata(&meta, Some(options))
            .await
            .map_err(|e| self.error(e, &doing))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<super::Listed>> {
        self.listing(false).await
    }

    async fn list_with_versions(&self) -> Result<Vec<super::Listed>> {
        self.listing(true).await
    }

    /// Serial and lineage come from a snapshot's metadata only when its
    /// [`meta::WRITTEN_MD5`] matches the snapshot's Content-MD5 (nubes wrote that very
    /// content); otherwise (plain Terraform wrote it, keeping nubes's older metadata)
    /// from the snapshot's content, one read each.
    async fn history(&self, env: &EnvName) -> Result<Vec<Version>> {
        let mut out = Vec::new();
        for b in self.snapshots(env).await? {
            let Some(id) = b.snapshot else { continue };
            let meta: HashMap<String, String> =
                meta::normalise(b.metadata.and_then(|m| m.values).unwrap_or_default());
            let props = b.properties;
            let md5 = props
                .as_ref()
                .and_then(|p| p.content_md5.as_deref())
                .map(b64);
            let verified = md5.is_some() && meta.get(meta::WRITTEN_MD5) == md5.as_ref();
            let (serial, lineage) = match (
                verified,
                meta.get(META_SERIAL).and_then(|s| s.parse().ok()),
                meta.get(META_LINEAGE),
            ) {
                (true, Some(serial), Some(lineage)) => (Some(serial), Some(lineage.clone())),
                _ => match self
                    .read_version(env, &id)
                    .await
                    .map(|b| StateHead::parse(&b))
                {
                    Ok(Ok(h)) => (Some(h.serial), Some(h.lineage)),
                    Ok(Err(_)) => (None, None),
                    Err(e) => return Err(e),
                },
            };
            out.push(Version {
                saved_at: meta
                    .get(META_SAVED_AT)
                    .cloned()
                    .unwrap_or_else(|| id.clone()),
                serial,
                lineage,
                size: props.and_then(|p| p.content_length).unwrap_or(0),
                id,
            });
        }
        Ok(out)
    }

    async fn changed_outside(&self, env: &EnvName) -> Result<Option<String>> {
        let props = self
            .properties(
                &self.blob(env),
                None,
                &format!("reading the state of `{env}`"),
            )
            .await?;
        Ok(props.filter(|p| p.len > 0).and_then(|p| {
            super::changed_outside(&p.metadata, p.content_md5.as_deref(), || {
                rfc3339(p.last_modified)
            })
        }))
    }

    async fn probe(&self) -> Result<Vec<&'static str>> {
        self.container
            .get_properties(None)
            .await
            .map_err(|e| self.error(e, "reading the state container"))?;
        // A name no environment's key can have (env names hold no `.` or `/`).
        let blob = self
            .container
            .blob_client(&format!(".nubes-doctor/probe-{}", uuid::Uuid::new_v4()));
        let options = BlobClientUploadOptions {
            partition_size: Some(SINGLE_REQUEST_LIMIT_U64),
            ..Default::default()
        };
        blob.upload(
            content(Bytes::from_static(b"nubes doctor probe")),
            Some(options),
        )
        .await
        .map_err(|e| self.error(e, "writing a probe blob"))?;
        let lease = uuid::Uuid::new_v4().to_string();
        let checked = async {
            let options = BlobClientAcquireLeaseOptions {
                proposed_lease_id: Some(lease.clone()),
                ..Default::default()
            };
            blob.acquire_lease(15, Some(options))
                .await
                .map_err(|e| self.error(e, "leasing a probe blob"))?;
            let options = BlobClientGetPropertiesOptions {
                lease_id: Some(lease.clone()),
                ..Default::default()
            };
            let read = blob.get_properties(Some(options)).await;
            let _ = blob.release_lease(lease.clone(), None).await;
            read.map_err(|e| self.error(e, "reading a probe blob"))?;
            Ok::<_, Error>(())
        }
        .await;
        let deleted = blob
            .delete(None)
            .await
            .map_err(|e| self.error(e, "deleting a probe blob"));
        checked?;
        deleted?;
        Ok(vec!["container", "write", "lease", "read", "delete"])
    }

    async fn read_version(&self, env: &EnvName, id: &str) -> Result<Bytes> {
        let blob = self
            .blob(env)
            .with_snapshot(id)
            .map_err(|e| Error::input(format!("`{id}` is not a version ID: {e}")))?;
        match self
            .download(&blob, &format!("reading version {id} of `{env}`"))
            .await
        {
            Ok(Some(s)) => Ok(s.bytes),
            Ok(None) => Err(Error::input(format!(
                "environment `{env}` has no kept version `{id}`"
            ))
            .hint(format!(
                "list the versions with `nubes state history {env}`"
            ))),
            Err(e) => Err(e),
        }
    }
}

impl AzureStore {
    async fn write_lock_info(&self, blob: &BlobClient, token: &LockToken) -> Result<()> {
        let doing = format!("recording the lock on `{}`", token.env);
        let props = self
            .properties(blob, Some(&token.lease_id), &doing)
            .await?
            .ok_or_else(|| Error::failed(format!("{doing}: the state blob vanished")))?;
        let mut meta = props.metadata;
        meta.insert(LOCK_META_KEY.into(), token.info.to_metadata_value());
        let options = BlobClientSetMetadataOptions {
            lease_id: Some(token.lease_id.clone()),
            ..Default::default()
        };
        blob.set_metadata(&meta, Some(options))
            .await
            .map_err(|e| self.error(e, &doing))?;
        Ok(())
    }
}

impl AzureStore {
    /// The state blob's properties read under the lease: `Err` when the lease is gone.
    async fn leased_props(
        &self,
        token: &LockToken,
        blob: &BlobClient,
        doing: &str,
    ) -> Result<std::result::Result<Props, WriteConflict>> {
        let options = BlobClientGetPropertiesOptions {
            lease_id: Some(token.lease_id.clone()),
            ..Default::default()
        };
        match blob.get_properties(Some(options)).await {
            Ok(r) => Ok(Ok(Props {
                etag: r
                    .etag()
                    .ok()
                    .flatten()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                len: r.content_length().ok().flatten().unwrap_or(0),
                metadata: meta::normalise(r.metadata().unwrap_or_default()),
                leased: true,
                infinite: false,
                content_md5: None,
                last_modified: None,
            })),
            Err(e)
                if is_lease_lost(&e) || e.http_status() == Some(StatusCode::PreconditionFailed) =>
            {
                Ok(Err(WriteConflict::LockLost))
            }
            Err(e) => Err(self.error(e, doing)),
        }
    }

    /// Before an overwrite: the stored version (ETag `etag`, with content or not,
    /// metadata `meta`) must still be the one the caller read (`expected`; `None`: no
    /// state), and is kept as a snapshot when it has content. Returns the snapshot's ID.
    async fn keep_previous(
        &self,
        blob: &BlobClient,
        expected: Option<&str>,
        etag: &str,
        has_content: bool,
        meta: &HashMap<String, String>,
    ) -> Result<std::result::Result<Option<String>, WriteConflict>> {
        match expected {
            Some(e) if e != etag => return Ok(Err(WriteConflict::Changed)),
            None if has_content => return Ok(Err(WriteConflict::Changed)),
            _ => {}
        }
        if !has_content {
            return Ok(Ok(None));
        }
        let mut snap_meta = meta.clone();
        snap_meta.remove(LOCK_META_KEY);
        snap_meta.insert(META_SAVED_AT.into(), lockinfo::now_rfc3339());
        let options = BlobClientCreateSnapshotOptions {
            if_match: Some(Etag::from(etag.to_string())),
            metadata: Some(snap_meta),
            ..Default::default()
        };
        match blob.create_snapshot(Some(options)).await {
            Ok(r) => Ok(Ok(r.snapshot().ok().flatten())),
            Err(e) if e.http_status() == Some(StatusCode::PreconditionFailed) => {
                Ok(Err(WriteConflict::Changed))
            }
            Err(e) => Err(self.error(e, "keeping the previous state version")),
        }
    }

    /// A snapshot taken for a write that storage then refused is not a version: drop it.
    async fn drop_snapshot(&self, env: &EnvName, id: Option<String>) {
        let Some(id) = id else { return };
        let options = BlobClientDeleteOptions {
            snapshot: Some(id.clone()),
            ..Default::default()
        };
        if let Err(e) = self.blob(env).delete(Some(options)).await {
            tracing::warn!(
                "could not drop the state version {id} of `{env}` kept for a write that failed: {}",
                self.error(e, "dropping a snapshot")
            );
        }
    }

    /// What a refused state write means to the gateway.
    fn write_refused(
        &self,
        e: azure_core::Error,
        doing: &str,
    ) -> Result<std::result::Result<String, WriteConflict>> {
        if e.http_status() == Some(StatusCode::PreconditionFailed) && is_lease_lost(&e) {
            return Ok(Err(WriteConflict::LockLost));
        }
        if e.http_status() == Some(StatusCode::PreconditionFailed) {
            return Ok(Err(WriteConflict::Changed));
        }
        if is_lease_lost(&e) {
            return Ok(Err(WriteConflict::LockLost));
        }
        if error_code(&e).as_deref() == Some("Md5Mismatch") {
            return Ok(Err(WriteConflict::Md5Mismatch));
        }
        Err(self.error(e, doing))
    }

    /// The metadata a new state is written with: what the blob had (the lock, nubes's
    /// records) without the previous document's own entries, plus `entries`.
    fn state_meta(
        base: &HashMap<String, String>,
        entries: Vec<(&'static str, String)>,
    ) -> HashMap<String, String> {
        let mut meta = base.clone();
        for key in [
            META_LINEAGE,
            META_SAVED_AT,
            META_SERIAL,
            META_RESOURCES,
            meta::WRITTEN_MD5,
        ] {
            meta.remove(key);
        }
        for (k, v) in entries {
            meta.insert(k.into(), v);
        }
        meta
    }

    /// [`StateStore::stage`] of a document whose length and MD5 were declared: one Put
    /// Blob streaming as the body arrives, all but its last piece (see `stream`).
    async fn stream_put(
        &self,
        token: &LockToken,
        body: &mut dyn super::Body,
        total: u64,
        md5: [u8; 16],
        doing: &str,
    ) -> Result<std::result::Result<super::Staged, WriteConflict>> {
        let env = &token.env;
        let blob = self.blob(env);
        let mut props = self.leased_props(token, &blob, doing).await?;
        // The lease expired while storage was unreachable: renewed only if nobody took
        // the lock meanwhile (as `commit` does).
        if matches!(props, Err(WriteConflict::LockLost))
            && matches!(self.renew(token).await, Ok(true))
        {
            props = self.leased_props(token, &blob, doing).await?;
        }
        let props = match props {
            Ok(p) => p,
            Err(conflict) => return Ok(Err(conflict)),
        };
        let Some(size) = std::num::NonZero::new(total) else {
            return Err(Error::failed(format!(
                "{doing}: an empty document cannot stream"
            )));
        };
        // Until the head is recorded after the write (`commit_streamed`), the blob says
        // only which content nubes wrote: readers then take the head from the content.
        let put_meta = Self::state_meta(&props.metadata, vec![(meta::WRITTEN_MD5, b64(&md5))]);
        let (tx, rx) = tokio::sync::mpsc::channel(stream::PIECES_QUEUED);
        let client = blob.block_blob_client();
        let if_match = Etag::from(props.etag.clone());
        let lease_id = token.lease_id.clone();
        let task = tokio::spawn(async move {
            // One request, whatever the size (never the SDK's partitioning).
            let options = state_put_options(if_match, lease_id, md5, put_meta, size);
            let body: RequestContent<Bytes, NoFormat> =
                HttpBody::SeekableStream(Box::new(PieceStream::new(rx, total))).into();
            client
                .upload(body, Some(options))
                .await
                .map(|r| r.etag.map(|e| e.to_string()).unwrap_or_default())
        });
        let mut pending = PendingPut {
            tx: Some(tx),
            last: Bytes::new(),
            task: Some(task),
            etag: props.etag,
            had_content: props.len > 0,
            metadata: props.metadata,
        };
        // Each piece goes out when the next one has arrived: the last is held back.
        let mut held = Bytes::new();
        let mut len = 0u64;
        while let Some(piece) = body.next_piece().await? {
            len += piece.len() as u64;
            if len > total {
                return Err(Error::input(format!(
                    "{doing}: the body is longer than the {total} bytes its Content-Length declared"
                )));
            }
            let out = std::mem::replace(&mut held, piece);
            if out.is_empty() {
                continue;
            }
            let sent = match &pending.tx {
                Some(tx) => tx.send(out).await.is_ok(),
                None => false,
            };
            if !sent {
                // The request ended before its body did: storage's answer says why.
                return match pending.outcome().await {
                    Ok(_) => Err(Error::failed(format!(
                        "{doing}: storage answered before the whole document was sent"
                    ))),
                    Err(e) => match self.write_refused(e, doing)? {
                        Ok(_) => Err(Error::failed(format!("{doing}: the upload ended early"))),
                        Err(conflict) => Ok(Err(conflict)),
                    },
                };
            }
        }
        if len != total {
            return Err(Error::input(format!(
                "{doing}: the body ended after {len} of the {total} bytes its Content-Length declared"
            )));
        }
        pending.last = held;
        Ok(Ok(super::Staged {
            len,
            kind: StagedKind::Streaming(pending),
        }))
    }

    /// [`StateStore::commit`] of a streamed write: keep the previous version, send the
    /// last piece (storage then stores the document, or refuses it whole), then record
    /// the head.
    async fn commit_streamed(
        &self,
        token: &LockToken,
        pending: PendingPut,
        expected: Option<&str>,
        head: &StateHead,
        md5: [u8; 16],
    ) -> Result<std::result::Result<String, WriteConflict>> {
        let env = &token.env;
        let doing = format!("writing the state of `{env}`");
        let blob = self.blob(env);
        let snapshot = match self
            .keep_previous(
                &blob,
                expected,
                &pending.etag,
                pending.had_content,
                &pending.metadata,
            )
            .await?
        {
            Ok(id) => id,
            Err(conflict) => return Ok(Err(conflict)),
        };
        let meta = Self::state_meta(&pending.metadata, super::head_entries_md5(md5, head));
        let put_etag = match pending.finish().await {
            Ok(etag) => etag,
            Err(e) => {
                self.drop_snapshot(env, snapshot).await;
                return self.write_refused(e, &doing);
            }
        };
        // The document is the state now. Its head goes into the metadata; should that
        // fail, readers take the head from the content (the metadata vouches for
        // nothing it does not match).
        let options = BlobClientSetMetadataOptions {
            lease_id: Some(token.lease_id.clone()),
            if_match: Some(Etag::from(put_etag.clone())),
            ..Default::default()
        };
        let new_etag = match blob.set_metadata(&meta, Some(options)).await {
            Ok(r) => r
                .headers()
                .get_optional_str(&azure_core::http::headers::ETAG)
                .map_or(put_etag, str::to_string),
            Err(e) => {
                tracing::warn!(
                    "the state of `{env}` was written, but recording its serial in the blob's metadata failed: {}",
                    self.error(e, &doing)
                );
                put_etag
            }
        };
        if let Err(e) = self.prune(env).await {
            tracing::warn!("could not prune old versions of `{env}`: {e}");
        }
        Ok(Ok(new_etag))
    }

    /// One attempt of [`StateStore::commit`].
    async fn commit_once(
        &self,
        token: &LockToken,
        staged: &super::Staged,
        expected: Option<&str>,
        head: &StateHead,
        md5: [u8; 16],
    ) -> Result<std::result::Result<String, WriteConflict>> {
        let env = &token.env;
        let doing = format!("writing the state of `{env}`");
        let blob = self.blob(env);
        let props = match self.leased_props(token, &blob, &doing).await? {
            Ok(p) => p,
            Err(conflict) => return Ok(Err(conflict)),
        };
        let snapshot = match self
            .keep_previous(&blob, expected, &props.etag, props.len > 0, &props.metadata)
            .await?
        {
            Ok(id) => id,
            Err(conflict) => return Ok(Err(conflict)),
        };
        // What nubes wrote (serial, lineage, resources, MD5), so a later write by anyone
        // else shows (`changed_outside`).
        let meta = Self::state_meta(&props.metadata, super::head_entries_md5(md5, head));
        let written = match &staged.kind {
            StagedKind::Memory(bytes) => {
                let options = state_put_options(
                    Etag::from(props.etag.clone()),
                    token.lease_id.clone(),
                    md5,
                    meta,
                    SINGLE_REQUEST_LIMIT_U64,
                );
                blob.upload(content(bytes.clone()), Some(options))
                    .await
                    .map(|r| r.etag.map(|e| e.to_string()).unwrap_or_default())
            }
            StagedKind::Blocks(ids) => {
                let options = BlockBlobClientCommitBlockListOptions {
                    if_match: Some(Etag::from(props.etag.clone())),
                    lease_id: Some(token.lease_id.clone()),
                    // Stored as the blob's Content-MD5: the MD5 of the whole document,
                    // computed as it arrived.
                    blob_content_md5: Some(md5.to_vec()),
                    metadata: Some(meta),
                    blob_content_type: Some("application/json".into()),
                    ..Default::default()
                };
                let list = BlockLookupList {
                    latest: Some(ids.clone()),
                    ..Default::default()
                };
                match RequestContent::try_from(list) {
                    Ok(list) => blob
                        .block_blob_client()
                        .commit_block_list(list, Some(options))
                        .await
                        .and_then(|r| {
                            r.etag()
                                .map(|e| e.map(|e| e.to_string()).unwrap_or_default())
                        }),
                    Err(e) => Err(e),
                }
            }
            StagedKind::File(_) | StagedKind::Streaming(_) => {
                return Err(Error::failed(format!(
                    "{doing}: a document staged by another store cannot be committed here"
                )));
            }
        };
        let new_etag = match written {
            Ok(etag) => etag,
            Err(e) => {
                if error_code(&e).as_deref() == Some("Md5Mismatch") {
                    self.drop_snapshot(env, snapshot).await;
                }
                return self.write_refused(e, &doing);
            }
        };
        if let Err(e) = self.prune(env).await {
            tracing::warn!("could not prune old versions of `{env}`: {e}");
        }
        Ok(Ok(new_etag))
    }

    async fn delete_blob(&self, token: &LockToken) -> Result<Option<String>> {
        let env = &token.env;
        let blob = self.blob(env);
        let doing = format!("deleting the state of `{env}`");
        let Some(props) = self
            .properties(&blob, Some(&token.lease_id), &doing)
            .await?
        else {
            return Ok(None);
        };
        let mut tombstone = None;
        if props.len > 0 {
            let Some(current) = self.download(&blob, &doing).await? else {
                return Ok(None);
            };
            let name = format!("{}{TOMBSTONE_INFIX}{}", self.key(env), utc_compact());
            let mut meta = props.metadata.clone();
            meta.remove(LOCK_META_KEY);
            meta.insert(META_TOMBSTONE.into(), "true".into());
            meta.insert(super::meta::DELETED_AT.into(), lockinfo::now_rfc3339());
            meta.insert(super::meta::DELETED_BY.into(), token.info.who.clone());
            let options = BlobClientUploadOptions {
                metadata: Some(meta),
                blob_content_type: Some("application/json".into()),
                partition_size: Some(SINGLE_REQUEST_LIMIT_U64),
                ..Default::default()
            };
            self.container
                .blob_client(&name)
                .upload(content(current.bytes), Some(options))
                .await
                .map_err(|e| self.error(e, "writing the tombstone copy of the final state"))?;
            tombstone = Some(name);
        }
        let options = BlobClientDeleteOptions {
            lease_id: Some(token.lease_id.clone()),
            if_match: Some(Etag::from(props.etag)),
            delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
            ..Default::default()
        };
        match blob.delete(Some(options)).await {
            Ok(_) => Ok(tombstone),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(tombstone),
            Err(e) => Err(self.error(e, &doing)),
        }
    }
}
