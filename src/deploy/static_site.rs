//! The `static-site` deploy target: sync an artifact folder into the `$web` container of
//! a storage account (Azure Storage static website hosting).
//!
//! Like `az storage blob sync`, but decided by content: one paged List Blobs gives every
//! blob's size, Content-MD5, Cache-Control and Content-Type; a file whose digest and
//! headers already match is not sent. Changed files are uploaded (bounded parallelism,
//! with `x-ms-blob-content-md5` so the next sync can compare), pages (`.html`) after the
//! assets they reference, and blobs no longer in the artifact are deleted last, so a
//! visitor never meets a page whose assets are missing.
//!
//! Each file is read once and its digests computed once, in the same pass that uploads
//! it: a file under [`WHOLE_LIMIT`] is read whole, hashed, compared and (if changed)
//! sent in one Put Blob, holding one buffer permit per started [`BLOCK_SIZE`]; a larger
//! one whose size differs from the blob's is certainly changed, so it is hashed while
//! its blocks are staged (Put Block, in parallel) and committed with that MD5 (Put
//! Block List). Only a large file of the blob's very size is read twice when it did
//! change: once to compare, once to send. Memory is bounded by `parallel` buffers of at
//! most [`BLOCK_SIZE`], whatever the files' sizes.
//!
//! The same pass computes each file's SHA-256 beside its MD5, and the report carries
//! both ([`SiteReport::files`]): the artifact's digest and the kept release
//! ([`crate::deploy::site_manifest`], `releases::site`) are made from them, so `up`
//! does not read the folder again to hash it. Keeping the release, after the health
//! check, reads again only the files the releases container lacks (new content): the
//! site is synced and checked first, with no second stream of uploads beside it.
//!
//! A redeploy of a kept release ([`crate::releases`]) knows most of the content already:
//! it takes the listing first ([`listing`]), fetches only the files `$web` lacks, and
//! hands the sync a [`Baseline`] (that listing plus the names that already hold the
//! release's content), so the sync lists no more and leaves those names alone.
//!
//! Blob names are the artifact's relative paths with `/`. The SDK's `blob_client(name)`
//! percent-encodes a name as one path segment (`assets/app.js` travels as
//! `assets%2Fapp.js`); Azure Storage and Azurite both decode it to `assets/app.js`
//! (tests/it/static_site.rs checks the listed names and plain-URL GETs).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use azure_core::error::ErrorKind;
use azure_core::http::RequestContent;
use azure_core::http::{StatusCode, Url};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientUploadOptions, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientStageBlockOptions, BlockLookupList,
    DeleteSnapshotsOptionType,
};
use azure_storage_blob::{BlobContainerClient, BlockBlobClient};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::state::auth::{self, StorageAuth};
use crate::state::azure::{
    SINGLE_REQUEST_LIMIT_U64, container_options, content, error_code, http_client, source_chain,
};

/// The container Azure Storage serves a static website from.
pub const CONTAINER: &str = "$web";

/// A SAS for the site's storage account; without it the state credential chain is used.
pub const SAS_VAR: &str = "NUBES_SITE_SAS";

const DEFAULT_PARALLEL: usize = 8;

/// Files of [`WHOLE_LIMIT`] and more go in blocks of this size; also the unit of the
/// buffer budget (one permit per block in memory).
pub const BLOCK_SIZE: usize = 4 << 20;

/// Files under this size are read whole and go in one request (Put Blob), holding one
/// buffer permit per started [`BLOCK_SIZE`]: a 5 MiB file is one request, as the
/// Python SDK sends it, not two blocks and a commit, and the release keeper can take it
/// from the sync's read.
pub const WHOLE_LIMIT: u64 = 2 * BLOCK_SIZE as u64;

/// Buffer permits for a file of `size` bytes read whole: one per started
/// [`BLOCK_SIZE`], at least one and at most `total` (all of them), so the bytes held
/// never exceed `total` × [`BLOCK_SIZE`].
pub(crate) async fn buffers_for(
    buffers: &Semaphore,
    size: u64,
    total: usize,
) -> Result<tokio::sync::SemaphorePermit<'_>> {
    let n = size
        .div_ceil(BLOCK_SIZE as u64)
        .clamp(1, total.max(1) as u64);
    buffers
        .acquire_many(u32::try_from(n).unwrap_or(u32::MAX))
        .await
        .map_err(|e| Error::failed(e.to_string()))
}

/// Files never deployed: macOS Finder litter.
const SKIPPED: &[&str] = &[".DS_Store"];

#[derive(Debug, Clone)]
pub struct SiteOptions {
    /// `Cache-Control` for every uploaded blob (e.g. "public, max-age=300"); None = not set.
    pub cache_control: Option<String>,
    /// Uploads in flight at once (default 8).
    pub parallel: usize,
    /// Sync into this folder of `$web` only (e.g. `dashboard`): files land under
    /// `<prefix>/`, and only blobs under it are compared or deleted. None = the whole
    /// container.
    pub prefix: Option<String>,
    /// What `$web` holds, listed already, and the names that keep their content though
    /// the artifact folder lacks them (a kept release redeployed); None = list here.
    pub baseline: Option<Arc<Baseline>>,
}

impl Default for SiteOptions {
    fn default() -> Self {
        SiteOptions {
            cache_control: None,
            parallel: DEFAULT_PARALLEL,
            prefix: None,
            baseline: None,
        }
    }
}

/// The blobs of `$web` (under the options' prefix) as one listing found them.
#[derive(Debug, Clone)]
pub struct Listing {
    blobs: HashMap<String, RemoteBlob>,
    prefix: Option<String>,
}

impl Listing {
    /// Whether blob `name` already holds a file of `size` bytes and MD5 `md5`, with the
    /// headers a sync with `cache_control` gives it: a sync would leave it alone.
    pub fn holds(&self, name: &str, size: u64, md5: &[u8], cache_control: Option<&str>) -> bool {
        let name = match &self.prefix {
            Some(p) => format!("{p}{name}"),
            None => name.to_string(),
        };
        self.blobs.get(&name).is_some_and(|r| {
            r.headers_are(size, content_type(&name), cache_control) && r.md5.as_deref() == Some(md5)
        })
    }

    /// The baseline for a sync that leaves `names` (relative to the prefix) alone; names
    /// the listing does not hold are dropped (a sync cannot keep what is not there).
    pub fn keeping(self, names: impl IntoIterator<Item = String>) -> Baseline {
        let keep = names
            .into_iter()
            .map(|n| match &self.prefix {
                Some(p) => format!("{p}{n}"),
                None => n,
            })
            .filter(|n| self.blobs.contains_key(n))
            .collect();
        Baseline {
            listing: self,
            keep,
        }
    }
}

/// A listing taken before the sync and the blob names in it the sync leaves alone:
/// neither compared again nor deleted.
#[derive(Debug, Clone)]
pub struct Baseline {
    listing: Listing,
    keep: HashSet<String>,
}

impl Baseline {
    /// How many blobs the sync leaves alone.
    pub fn kept(&self) -> usize {
        self.keep.len()
    }
}

/// What a sync did. Names are blob names, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteReport {
    pub uploaded: Vec<String>,
    pub unchanged: usize,
    pub deleted: Vec<String>,
    /// Every file the sync read (uploaded or found unchanged), with the digests that one
    /// read gave, in no particular order. Files a baseline kept are not among them.
    pub files: Vec<SiteFile>,
}

/// One file of the artifact as the sync read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFile {
    /// Path relative to the artifact folder, with `/` (the blob name without prefix).
    pub rel: String,
    pub size: u64,
    pub md5: [u8; 16],
    pub sha256: [u8; 32],
}

impl SiteReport {
    /// "3 uploaded, 497 unchanged, 1 deleted"
    pub fn summary(&self) -> String {
        format!(
            "{} uploaded, {} unchanged, {} deleted",
            self.uploaded.len(),
            self.unchanged,
            self.deleted.len()
        )
    }
}

/// Sync `artifact` into `$web` of the account at `account_url` (e.g.
/// `https://stdemo.blob.core.windows.net` or `http://127.0.0.1:10000/devstoreaccount1`).
///
/// Auth: `NUBES_SITE_SAS` (a SAS for the site's account) if set, else the state storage
/// credential chain [`auth::from_env`]. `NUBES_STORAGE_CA_CERT` is trusted as for state.
pub async fn sync(account_url: &str, artifact: &Path, options: &SiteOptions) -> Result<SiteReport> {
    let (http, auth) = credentials()?;
    sync_with(account_url, http, auth, artifact, options).await
}

/// What `$web` of the account at `account_url` holds now (under `options.prefix`), for
/// a [`Baseline`]; credentials as for [`sync`].
pub async fn listing(account_url: &str, options: &SiteOptions) -> Result<Listing> {
    let (http, auth) = credentials()?;
    let site = Site::connect(account_url, http, &auth)?;
    let prefix = prefix_of(options);
    Ok(Listing {
        blobs: site.list(prefix.clone()).await?,
        prefix,
    })
}

/// `NUBES_SITE_SAS`, else the state storage credential chain.
fn credentials() -> Result<(reqwest::Client, StorageAuth)> {
    let http = http_client()?;
    let auth = match std::env::var(SAS_VAR).ok().filter(|v| !v.trim().is_empty()) {
        Some(sas) => StorageAuth::sas(&sas),
        None => auth::from_env(http.clone())?,
    };
    Ok((http, auth))
}

/// The options' folder of `$web` as a blob-name prefix (`dashboard/`), if any.
fn prefix_of(options: &SiteOptions) -> Option<String> {
    options
        .prefix
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}/"))
}

/// [`sync`] with the HTTP client and credential given explicitly (tests, callers that
/// resolved them already).
pub async fn sync_with(
    account_url: &str,
    http: reqwest::Client,
    auth: StorageAuth,
    artifact: &Path,
    options: &SiteOptions,
) -> Result<SiteReport> {
    let baseline = options.baseline.as_deref();
    let leave_alone = baseline.map_or(0, Baseline::kept);
    let mut files = local_files(artifact, leave_alone > 0).await?;
    let prefix = prefix_of(options);
    if let Some(prefix) = &prefix {
        for f in &mut files {
            f.name = format!("{prefix}{}", f.rel);
        }
    }
    let site = Site::connect(account_url, http, &auth)?;
    let mut remote = match baseline {
        Some(b) if b.listing.prefix != prefix => {
            return Err(Error::failed(
                "the site's listing was taken for another folder of `$web` than the sync's",
            ));
        }
        Some(b) => {
            let mut remote = b.listing.blobs.clone();
            remote.retain(|name, _| !b.keep.contains(name));
            remote
        }
        None => site.list(prefix).await?,
    };
    let mut report = upload_changed(&site, files, &mut remote, options).await?;
    report.unchanged += leave_alone;
    // What is left in the listing is no longer in the artifact.
    let stale: Vec<String> = remote.into_keys().collect();
    report.deleted = futures::stream::iter(stale)
        .map(|name| site.delete(name))
        .buffer_unordered(options.parallel.max(1))
        .try_collect()
        .await?;
    report.uploaded.sort();
    report.deleted.sort();
    tracing::info!("site: {}", report.summary());
    Ok(report)
}

/// Compare each file with its blob (taken out of `remote`) and upload the changed ones:
/// assets first, then the pages that reference them.
async fn upload_changed(
    site: &Site,
    files: Vec<LocalFile>,
    remote: &mut HashMap<String, RemoteBlob>,
    options: &SiteOptions,
) -> Result<SiteReport> {
    let parallel = options.parallel.max(1);
    // One permit per buffer of at most BLOCK_SIZE in memory, across all files.
    let buffers = Arc::new(Semaphore::new(parallel));
    let mut pages = Vec::new();
    let mut assets = Vec::new();
    for file in files {
        let blob = remote.remove(&file.name);
        if file.content_type.starts_with("text/html") {
            pages.push((file, blob));
        } else {
            assets.push((file, blob));
        }
    }
    let mut report = SiteReport::default();
    for batch in [assets, pages] {
        let done: Vec<(Option<String>, SiteFile)> = futures::stream::iter(batch)
            .map(|(file, blob)| {
                site.sync_file(
                    file,
                    blob,
                    options.cache_control.as_deref(),
                    (&buffers, parallel),
                )
            })
            .buffer_unordered(parallel)
            .try_collect()
            .await?;
        for (name, file) in done {
            match name {
                Some(name) => report.uploaded.push(name),
                None => report.unchanged += 1,
            }
            report.files.push(file);
        }
    }
    Ok(report)
}

/// One file of the artifact.
struct LocalFile {
    /// Blob name: the options' prefix and [`LocalFile::rel`].
    name: String,
    /// The path relative to the artifact, with `/`.
    rel: String,
    path: PathBuf,
    size: u64,
    content_type: &'static str,
}

/// Walk the artifact (blocking I/O, off the async threads). Files are hashed later, in
/// the pass that uploads them. An empty folder is an error unless `may_be_empty` (a
/// baseline keeps every file).
async fn local_files(artifact: &Path, may_be_empty: bool) -> Result<Vec<LocalFile>> {
    let artifact = artifact.to_path_buf();
    tokio::task::spawn_blocking(move || walk(&artifact, may_be_empty))
        .await
        .map_err(|e| Error::failed(format!("reading the artifact folder: {e}")))?
}

fn walk(artifact: &Path, may_be_empty: bool) -> Result<Vec<LocalFile>> {
    let hint = "build the site first, or point [build] artifact at the folder your build writes";
    if !artifact.is_dir() {
        let what = if artifact.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(Error::input(format!(
            "the artifact folder `{}` {what}",
            artifact.display()
        ))
        .hint(hint));
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(artifact)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(artifact).display().to_string();
            Error::failed(format!("reading the artifact folder at `{path}`: {e}"))
        })?;
        if !entry.file_type().is_file()
            || SKIPPED
                .iter()
                .any(|s| entry.file_name() == std::ffi::OsStr::new(s))
        {
            continue;
        }
        let path = entry.path().to_path_buf();
        let name = blob_name(artifact, &path)?;
        let size = fs_err::metadata(&path)?.len();
        files.push(LocalFile {
            content_type: content_type(&name),
            size,
            rel: name.clone(),
            name,
            path,
        });
    }
    if files.is_empty() && !may_be_empty {
        return Err(Error::input(format!(
            "the artifact folder `{}` is empty: nothing to deploy",
            artifact.display()
        ))
        .hint(hint));
    }
    Ok(files)
}

/// `assets/app.js` for `<artifact>/assets/app.js`.
fn blob_name(artifact: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(artifact).unwrap_or(path);
    let mut parts = Vec::new();
    for part in rel.components() {
        let part = part.as_os_str().to_str().ok_or_else(|| {
            Error::input(format!(
                "the artifact file `{}` has a name that is not UTF-8, so it cannot be a blob name",
                path.display()
            ))
        })?;
        parts.push(part);
    }
    Ok(parts.join("/"))
}

/// Content type by extension (what browsers need to render or run the file).
pub fn content_type(name: &str) -> &'static str {
    let file = name.rsplit('/').next().unwrap_or(name);
    let ext = file
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        // RFC 9239: text/javascript is the one registered type for JavaScript.
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// A blob as listed: the properties a sync compares.
#[derive(Debug, Clone)]
struct RemoteBlob {
    size: u64,
    md5: Option<Vec<u8>>,
    cache_control: Option<String>,
    content_type: Option<String>,
}

impl LocalFile {
    /// The file as the sync read it: `size` bytes with these digests.
    fn read(&self, size: u64, md5: [u8; 16], sha256: [u8; 32]) -> SiteFile {
        SiteFile {
            rel: self.rel.clone(),
            size,
            md5,
            sha256,
        }
    }
}

impl RemoteBlob {
    /// Everything but the content matches: the headers, and the size.
    fn headers_match(&self, file: &LocalFile, cache_control: Option<&str>) -> bool {
        self.headers_are(file.size, file.content_type, cache_control)
    }

    fn headers_are(&self, size: u64, content_type: &str, cache_control: Option<&str>) -> bool {
        self.size == size
            && self.md5.is_some()
            && self.cache_control.as_deref() == cache_control
            && self.content_type.as_deref() == Some(content_type)
    }

    fn matches(&self, file: &LocalFile, md5: &[u8; 16], cache_control: Option<&str>) -> bool {
        self.headers_match(file, cache_control) && self.md5.as_deref() == Some(&md5[..])
    }
}

/// MD5 and SHA-256 of the same bytes, fed in pieces.
#[derive(Default)]
struct Hashers {
    md5: Md5,
    sha256: Sha256,
}

impl Hashers {
    fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        self.sha256.update(bytes);
    }

    fn finish(self) -> ([u8; 16], [u8; 32]) {
        (self.md5.finalize().into(), self.sha256.finalize().into())
    }

    /// Both digests of `bytes` at once.
    fn of(bytes: &[u8]) -> ([u8; 16], [u8; 32]) {
        let mut h = Hashers::default();
        h.update(bytes);
        h.finish()
    }
}

/// The MD5 and SHA-256 of a file, read once in pieces on a blocking thread.
async fn file_digests(path: &Path) -> std::io::Result<([u8; 16], [u8; 32])> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || file_digests_blocking(&path).map(|(m, s, _)| (m, s)))
        .await
        .map_err(std::io::Error::other)?
}

/// The MD5, SHA-256 and size of a file, read once in pieces (blocking I/O).
pub(crate) fn file_digests_blocking(path: &Path) -> std::io::Result<([u8; 16], [u8; 32], u64)> {
    use std::io::Read as _;
    crate::deploy::reading_artifact_file();
    let mut file = fs_err::File::open(path)?;
    let mut hashers = Hashers::default();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            let (md5, sha256) = hashers.finish();
            return Ok((md5, sha256, size));
        }
        size += n as u64;
        hashers.update(&buf[..n]);
    }
}

/// A file read block by block on blocking threads, each block straight into a buffer of
/// its own (tokio's `File` would copy it through another buffer, up to 2 MiB per open
/// file, which several files in flight add to the peak) and hashed there.
struct BlockReader {
    file: std::fs::File,
    hashers: Hashers,
    /// Only the MD5 of the whole file is wanted (its digests are known).
    md5_only: bool,
}

impl BlockReader {
    /// The next block (empty at the end) and its own MD5, the whole file's digests
    /// updated with it.
    fn next_block(mut self) -> std::io::Result<(Self, Vec<u8>, [u8; 16])> {
        use std::io::Read as _;
        let mut buf = Vec::with_capacity(BLOCK_SIZE);
        (&mut self.file)
            .take(BLOCK_SIZE as u64)
            .read_to_end(&mut buf)?;
        if self.md5_only {
            self.hashers.md5.update(&buf);
        } else {
            self.hashers.update(&buf);
        }
        let md5 = Md5::digest(&buf).into();
        Ok((self, buf, md5))
    }
}

/// Why [`upload_blocks`] stopped.
#[derive(Debug)]
pub(crate) enum BlockError {
    /// Storage refused or could not be reached.
    Storage(azure_core::Error),
    /// Reading the file, or a task, failed.
    Local(String),
}

/// Upload the file at `path` to `blob` in blocks of [`BLOCK_SIZE`] as it is read
/// (several in flight, each holding one of `buffers`), hashing it on the way, then
/// commit them with `commit` (its Content-MD5 set here to the file's). When its digests
/// are `known` (an earlier read computed them) only the MD5 is computed, and a file
/// whose bytes no longer have it is not committed: storage checks each block's MD5 but
/// not the whole blob's, so a file changed since would otherwise be stored under
/// digests that are not its own. Returns the size sent and the digests (MD5, SHA-256).
/// Shared by the site sync and the release keeper (`releases::site`), so both hold at
/// most one buffer per permit.
pub(crate) async fn upload_blocks(
    blob: BlockBlobClient,
    path: &Path,
    known: Option<([u8; 16], [u8; 32])>,
    mut commit: BlockBlobClientCommitBlockListOptions<'_>,
    buffers: &Arc<Semaphore>,
) -> std::result::Result<(u64, [u8; 16], [u8; 32]), BlockError> {
    let local = |e: &dyn std::fmt::Display| BlockError::Local(e.to_string());
    let blob = Arc::new(blob);
    crate::deploy::reading_artifact_file();
    let file = tokio::fs::File::open(path).await.map_err(|e| local(&e))?;
    let mut reader = BlockReader {
        file: file.into_std().await,
        hashers: Hashers::default(),
        md5_only: known.is_some(),
    };
    let mut size = 0u64;
    let mut ids: Vec<Vec<u8>> = Vec::new();
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let permit = buffers
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| local(&e))?;
        // Read and hashed off the async workers: storage verifies each block's own
        // Content-MD5, and Azurite, given none, computes a CRC64 of it in JavaScript,
        // three times slower than the upload itself (issue 19).
        let (next, buf, md5) = tokio::task::spawn_blocking(move || reader.next_block())
            .await
            .map_err(|e| local(&e))?
            .map_err(|e| local(&e))?;
        reader = next;
        if buf.is_empty() {
            break;
        }
        let block = Bytes::from(buf);
        size += block.len() as u64;
        let id = format!("{:08}", ids.len()).into_bytes();
        ids.push(id.clone());
        let blob = blob.clone();
        in_flight.spawn(async move {
            let _permit = permit;
            blob.stage_block(
                &id,
                block.len() as u64,
                content(block),
                Some(BlockBlobClientStageBlockOptions {
                    transactional_content_md5: Some(md5.to_vec()),
                    ..Default::default()
                }),
            )
            .await
            .map(|_| ())
        });
        // Collect finished blocks as we go, so a failure stops the read early.
        while let Some(done) = in_flight.try_join_next() {
            done.map_err(|e| local(&e))?.map_err(BlockError::Storage)?;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done.map_err(|e| local(&e))?.map_err(BlockError::Storage)?;
    }
    let hashers = reader.hashers;
    let (md5, sha256) = match known {
        Some((md5, sha256)) => {
            if <[u8; 16]>::from(hashers.md5.finalize()) != md5 {
                return Err(BlockError::Local(format!(
                    "{} changed while it was being uploaded",
                    path.display()
                )));
            }
            (md5, sha256)
        }
        None => hashers.finish(),
    };
    commit.blob_content_md5 = Some(md5.to_vec());
    let list = RequestContent::try_from(BlockLookupList {
        latest: Some(ids),
        ..Default::default()
    })
    .map_err(BlockError::Storage)?;
    blob.commit_block_list(list, Some(commit))
        .await
        .map_err(BlockError::Storage)?;
    Ok((size, md5, sha256))
}

/// How long requests to the site's storage are retried.
const SITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The `$web` container of one account.
struct Site {
    container: BlobContainerClient,
    place: String,
    auth_kind: &'static str,
}

impl Site {
    fn connect(account_url: &str, http: reqwest::Client, auth: &StorageAuth) -> Result<Site> {
        let bad = |why: String| {
            Error::input(format!("the static site account URL `{account_url}` {why}")).hint(
                "use the storage account's blob endpoint, e.g. https://<account>.blob.core.windows.net \
                 (Terraform output `static_site_account_url`)",
            )
        };
        let mut url = Url::parse(&format!("{}/", account_url.trim_end_matches('/')))
            .map_err(|e| bad(format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("is not http(s)".into()));
        }
        url.path_segments_mut()
            .map_err(|_| bad("cannot hold a path".into()))?
            .pop_if_empty()
            .push(CONTAINER);
        let (credential, auth_kind) = match auth {
            StorageAuth::Sas(sas) => {
                url.set_query(Some(sas));
                (None, "SAS token")
            }
            StorageAuth::Token(cred, what) => {
                if url.scheme() != "https" {
                    return Err(bad(
                        "is not https: Entra ID tokens are only sent over HTTPS".into()
                    )
                    .hint(format!(
                        "use an https:// account URL, or a SAS ({SAS_VAR}) for plain-HTTP emulators"
                    )));
                }
                (Some(cred.clone()), *what)
            }
        };
        // The site's storage is not the state's: [state] timeout does not apply.
        let options = container_options(http, SITE_TIMEOUT);
        let container = BlobContainerClient::new(url, credential, Some(options))
            .map_err(|e| bad(format!("cannot be used: {e}")))?;
        Ok(Site {
            container,
            place: format!("{}/{CONTAINER}", account_url.trim_end_matches('/')),
            auth_kind,
        })
    }

    /// Every blob in `$web` (under `prefix`) by name; the container is created when
    /// missing (Azure creates it when static website hosting is enabled, Azurite never does).
    async fn list(&self, prefix: Option<String>) -> Result<HashMap<String, RemoteBlob>> {
        let doing = "listing the deployed site";
        let mut out = HashMap::new();
        let options = BlobContainerClientListBlobsOptions {
            prefix,
            ..Default::default()
        };
        let mut pages = self
            .container
            .list_blobs(Some(options))
            .map_err(|e| self.error(e, doing))?
            .into_pages();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if error_code(&e).as_deref() == Some("ContainerNotFound") => {
                    self.create().await?;
                    return Ok(HashMap::new());
                }
                Err(e) => return Err(self.error(e, doing)),
            };
            let page = page
                .into_model()
                .map_err(|e| self.error(e, "reading the blob list of the site"))?;
            for item in page.blob_items {
                let Some(name) = item.name else { continue };
                let props = item.properties.unwrap_or_default();
                let present = |v: Option<String>| v.filter(|v| !v.is_empty());
                out.insert(
                    name,
                    RemoteBlob {
                        size: props.content_length.unwrap_or(0),
                        md5: props.content_md5.filter(|m| !m.is_empty()),
                        cache_control: present(props.cache_control),
                        content_type: present(props.content_type),
                    },
                );
            }
        }
        Ok(out)
    }

    async fn create(&self) -> Result<()> {
        tracing::info!(
            "site: creating the `{CONTAINER}` container in {}",
            self.place
        );
        match self.container.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(self.error(e, "creating the `$web` container").hint(
                "enable static website hosting on the storage account (it creates `$web`), \
                 e.g. `az storage blob service-properties update --static-website --account-name <account>`",
            )),
        }
    }

    /// Bring one file's blob up to date: `Some(name)` when it was uploaded, `None` when
    /// it already matched; with the file's digests. The file is read once (see the
    /// module doc).
    async fn sync_file(
        &self,
        file: LocalFile,
        remote: Option<RemoteBlob>,
        cache_control: Option<&str>,
        (buffers, permits): (&Arc<Semaphore>, usize),
    ) -> Result<(Option<String>, SiteFile)> {
        let doing = format!(
            "uploading `{}` to blob `{}`",
            file.path.display(),
            file.name
        );
        let io = |e: std::io::Error| Error::failed(format!("{doing}: {e}"));
        if file.size < WHOLE_LIMIT {
            let _buffers = buffers_for(buffers, file.size, permits).await?;
            crate::deploy::reading_artifact_file();
            let bytes = tokio::fs::read(&file.path).await.map_err(io)?;
            // Hashed off the async workers (a file may be several MiB).
            let (bytes, (md5, sha256)) = tokio::task::spawn_blocking(move || {
                let digests = Hashers::of(&bytes);
                (bytes, digests)
            })
            .await
            .map_err(|e| Error::failed(format!("{doing}: {e}")))?;
            let read = file.read(bytes.len() as u64, md5, sha256);
            if remote.is_some_and(|r| r.matches(&file, &md5, cache_control)) {
                return Ok((None, read));
            }
            self.put_whole(&file, Bytes::from(bytes), md5, cache_control, &doing)
                .await?;
            return Ok((Some(file.name), read));
        }
        // A large file the size of its blob may be unchanged: compare first.
        let mut known = None;
        if let Some(r) = remote.filter(|r| r.headers_match(&file, cache_control)) {
            let (md5, sha256) = file_digests(&file.path).await.map_err(io)?;
            if r.md5.as_deref() == Some(&md5[..]) {
                return Ok((None, file.read(file.size, md5, sha256)));
            }
            known = Some((md5, sha256));
        }
        let (size, md5, sha256) = self
            .put_blocks(&file, known, cache_control, buffers, &doing)
            .await?;
        let read = file.read(size, md5, sha256);
        Ok((Some(file.name), read))
    }

    async fn put_whole(
        &self,
        file: &LocalFile,
        bytes: Bytes,
        md5: [u8; 16],
        cache_control: Option<&str>,
        doing: &str,
    ) -> Result<()> {
        tracing::debug!(
            "site: uploading {} ({} bytes, {})",
            file.name,
            bytes.len(),
            file.content_type
        );
        let options = BlobClientUploadOptions {
            blob_content_type: Some(file.content_type.to_string()),
            blob_content_md5: Some(md5.to_vec()),
            blob_cache_control: cache_control.map(str::to_string),
            partition_size: Some(SINGLE_REQUEST_LIMIT_U64),
            ..Default::default()
        };
        self.container
            .blob_client(&file.name)
            .upload(content(bytes), Some(options))
            .await
            .map_err(|e| self.error(e, doing))?;
        Ok(())
    }

    /// Stage the file in blocks as it is read (several in flight, each holding one of
    /// `buffers`), hashing it on the way unless its digests are `known`, then commit
    /// them. Returns the size sent and the digests (MD5, SHA-256).
    async fn put_blocks(
        &self,
        file: &LocalFile,
        known: Option<([u8; 16], [u8; 32])>,
        cache_control: Option<&str>,
        buffers: &Arc<Semaphore>,
        doing: &str,
    ) -> Result<(u64, [u8; 16], [u8; 32])> {
        tracing::debug!(
            "site: uploading {} ({} bytes in blocks, {})",
            file.name,
            file.size,
            file.content_type
        );
        let blob = self.container.blob_client(&file.name).block_blob_client();
        let commit = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(file.content_type.to_string()),
            blob_cache_control: cache_control.map(str::to_string),
            ..Default::default()
        };
        upload_blocks(blob, &file.path, known, commit, buffers)
            .await
            .map_err(|e| match e {
                BlockError::Storage(e) => self.error(e, doing),
                BlockError::Local(e) => Error::failed(format!("{doing}: {e}")),
            })
    }

    async fn delete(&self, name: String) -> Result<String> {
        tracing::debug!("site: deleting {name}");
        let options = BlobClientDeleteOptions {
            delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
            ..Default::default()
        };
        match self
            .container
            .blob_client(&name)
            .delete(Some(options))
            .await
        {
            Ok(_) => Ok(name),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(name),
            Err(e) => Err(self.error(e, &format!("deleting blob `{name}`"))),
        }
    }

    /// Turn an SDK error into one a user can act on (as the state store does).
    fn error(&self, e: azure_core::Error, doing: &str) -> Error {
        let status = e.http_status();
        let code = error_code(&e).unwrap_or_default();
        match status {
            Some(StatusCode::Forbidden | StatusCode::Unauthorized) => Error::input(format!(
                "{doing}: the storage account {} refused nubes's credentials ({}): {}",
                self.place,
                self.auth_kind,
                if code.is_empty() {
                    status.map(|s| s.to_string()).unwrap_or_default()
                } else {
                    code.clone()
                }
            ))
            .hint(format!(
                "set {SAS_VAR} to a SAS for the site's account (read, add, create, write, delete, list), \
                 or grant the identity `Storage Blob Data Contributor` on it; a state SAS \
                 (NUBES_STORAGE_SAS) only works when the site lives in the state account"
            )),
            Some(s) => Error::failed(format!(
                "{doing}: storage answered {s}{}",
                if code.is_empty() {
                    String::new()
                } else {
                    format!(" ({code})")
                }
            )),
            None if matches!(e.kind(), ErrorKind::Credential) => Error::input(format!(
                "{doing}: could not get an access token for the site's storage ({}): {}",
                self.auth_kind,
                source_chain(&e)
            ))
            .hint(format!(
                "{}; or set {SAS_VAR}",
                crate::state::auth::token_hint(&e, self.auth_kind)
            )),
            None => {
                let detail = match e.kind() {
                    ErrorKind::Io | ErrorKind::Connection => "cannot connect".to_string(),
                    other => other.to_string(),
                };
                Error::failed(format!(
                    "{doing}: {detail} to the site's storage at {}: {}",
                    self.place,
                    source_chain(&e)
                ))
                .hint("check the static site account URL and the network; nubes retried for up to 30 seconds")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("A/B.HTM"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("img/logo.png"), "image/png");
        assert_eq!(content_type("photo.JPEG"), "image/jpeg");
        assert_eq!(
            content_type("site.webmanifest"),
            "application/manifest+json"
        );
        assert_eq!(content_type("font.woff2"), "font/woff2");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert_eq!(content_type("archive.tar.gz"), "application/octet-stream");
        assert_eq!(content_type(".hidden/x"), "application/octet-stream");
    }

    #[test]
    fn blob_names_use_slashes() {
        let root = Path::new("/tmp/dist");
        assert_eq!(
            blob_name(root, &root.join("assets").join("app.js")).unwrap(),
            "assets/app.js"
        );
        assert_eq!(
            blob_name(root, &root.join("a b").join("é.txt")).unwrap(),
            "a b/é.txt"
        );
    }

    #[test]
    fn a_baseline_keeps_only_blobs_that_hold_the_content_with_the_syncs_headers() {
        let blob = |md5: &[u8], cc: Option<&str>| RemoteBlob {
            size: 3,
            md5: Some(md5.to_vec()),
            cache_control: cc.map(str::to_string),
            content_type: Some(content_type("a.js").to_string()),
        };
        let listing = Listing {
            blobs: HashMap::from([
                ("site/a.js".to_string(), blob(b"m1", None)),
                ("site/b.js".to_string(), blob(b"m2", Some("no-cache"))),
            ]),
            prefix: Some("site/".into()),
        };
        assert!(listing.holds("a.js", 3, b"m1", None));
        assert!(!listing.holds("a.js", 3, b"m2", None), "other content");
        assert!(!listing.holds("a.js", 4, b"m1", None), "other size");
        assert!(
            !listing.holds("b.js", 3, b"m2", None),
            "other Cache-Control"
        );
        assert!(!listing.holds("c.js", 3, b"m1", None), "absent");
        let baseline = listing.keeping(["a.js".to_string(), "gone.js".to_string()]);
        assert_eq!(baseline.kept(), 1);
        assert!(baseline.keep.contains("site/a.js"));
    }

    #[test]
    fn missing_and_empty_artifacts_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = walk(&dir.path().join("dist"), false).err().unwrap();
        assert_eq!(missing.exit_code(), 2);
        assert!(missing.hint_text().unwrap().contains("[build] artifact"));
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        std::fs::write(dir.path().join("empty/.DS_Store"), "x").unwrap();
        let empty = walk(&dir.path().join("empty"), false).err().unwrap();
        assert_eq!(empty.exit_code(), 2);
        assert!(empty.to_string().contains("is empty"));
    }
}
