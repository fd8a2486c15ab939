//! Releases: every deployed artifact kept content-addressed in the state storage
//! account, so a rollback or a promotion ships the exact bytes again without building.
//!
//! Layout, in the container `[deploy] releases_container` (default `nubes-releases`) of
//! the state account, reached with the state credential:
//!
//! - `<project>/<sha256 hex>`: the artifact. For `app-service` / `functions` the package
//!   as Kudu receives it (a folder zipped the way `kudu::package` zips it, or the
//!   archive); for `static-site` a manifest of `path NUL sha256 LF` lines, the very
//!   lines [`crate::deploy::digest`] hashes, so the blob's name is the artifact's
//!   recorded digest. Metadata: kind, size, target, commit, first environment, time.
//! - `<project>/files/<sha256 hex>`: one file of a site, stored once whichever release
//!   and environment use it.
//! - `<project>/envs/<env>/<unix nanoseconds>`: an empty blob per deploy, rollback or
//!   promotion of that environment (its metadata is the record: release, commit, target,
//!   verdict, action, whether it went live), so `nubes releases <env>` is one paged
//!   List Blobs call.
//!
//! - A `container-apps` release keeps no artifact blob: the image stays in the registry it
//!   was pushed to, and the record names it (`<login server>/<repository>` in its
//!   metadata, with the manifest digest as the release). Pruning deletes only records
//!   for it, never an image: registries have retention policies of their own.
//!
//! The live release of an environment is the newest record that went live. Pruning
//! (`[deploy] keep_releases`, after every recorded release) keeps per environment the
//! records of its newest `keep` distinct releases (the live one always), then deletes
//! the artifacts no kept record names and the site files no kept manifest lists. A
//! deploy in another environment of the same project that stores a release at the very
//! moment one prunes may lose an artifact it shares; its rollback then says so (the
//! files are checked before anything is deployed) and the deploy itself is unaffected.
//!
//! The local state backend (`.nubes/state`) keeps no releases: it is for throw-away
//! experiments, and rollback and promotion say so.

pub mod flow;
mod site;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use azure_core::http::{StatusCode, Url};
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientDownloadOptions, BlobClientSetMetadataOptions,
    BlobClientUploadOptions, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, ListBlobsIncludeItem,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::config::{Backend, Settings};
use crate::env_name::{EnvName, printable};
use crate::error::{Error, Result};
use crate::state::auth::{self, StorageAuth};
use crate::state::azure::{
    SINGLE_REQUEST_LIMIT_U64, container_options, content, error_code, http_client, source_chain,
};
use crate::state::meta;

/// Requests in flight at once when storing or fetching a site's files.
const PARALLEL: usize = 8;

/// Whether `name` is a valid blob container name (3–63 of `a-z0-9-`, no leading,
/// trailing or doubled hyphen).
pub fn container_name_ok(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The hex of a `sha256:<hex>` digest (or of bare hex), if it is one.
pub fn hex_of(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The 32 bytes of a lower-case hex SHA-256 (as `hex_of` gives), if it is one.
fn hex_bytes(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The short id a release is shown and named by: the first 12 hex digits of its digest.
pub fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// How a release's artifact is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Zip,
    Site,
    /// A container image, by manifest digest; kept in its registry, not here.
    Image,
}

impl Kind {
    pub fn for_target(target: &str) -> Option<Kind> {
        match target {
            "static-site" => Some(Kind::Site),
            "app-service" | "functions" => Some(Kind::Zip),
            "container-apps" => Some(Kind::Image),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Zip => "zip",
            Kind::Site => "site",
            Kind::Image => "image",
        }
    }
}

/// One environment's record of a release, as `nubes releases --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The short id (12 hex digits) `--to` accepts.
    pub id: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub at: String,
    pub commit: Option<String>,
    pub target: String,
    /// `healthy` | `unhealthy` | `unchecked` | `failed` (the deploy itself failed).
    pub verdict: String,
    /// `deploy` | `rollback` | `auto-rollback` | `promote from <env>`.
    pub action: String,
    /// Whether this record put the release live (a slot that failed its health check,
    /// or a failed deploy, did not).
    pub went_live: bool,
    /// Whether it is the environment's live release now.
    pub live: bool,
    pub size: Option<u64>,
    /// `<login server>/<repository>` of a `container-apps` release's image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip)]
    name: String,
}

impl Record {
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// What a new record says.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub digest: String,
    pub commit: Option<String>,
    pub target: String,
    pub verdict: &'static str,
    pub action: String,
    pub went_live: bool,
    pub size: Option<u64>,
    /// `<login server>/<repository>` of an image release.
    pub image: Option<String>,
}

/// The verdict of a deploy and its health check.
pub fn verdict(deployed: bool, healthy: Option<bool>) -> &'static str {
    match (deployed, healthy) {
        (false, _) => "failed",
        (true, Some(true)) => "healthy",
        (true, Some(false)) => "unhealthy",
        (true, None) => "unchecked",
    }
}

/// The releases container of the state account.
pub struct Releases {
    container: BlobContainerClient,
    project: String,
    place: String,
    auth_kind: &'static str,
}

impl std::fmt::Debug for Releases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Releases")
            .field("place", &self.place)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

/// A blob as listed: name, metadata (names lower-cased), size, Content-MD5.
struct Listed {
    name: String,
    meta: BTreeMap<String, String>,
    size: u64,
    md5: Option<Vec<u8>>,
}

/// A kept release fetched for a redeploy: the artifact to deploy, and for a static site
/// redeployed into a static site, the `$web` listing and the names already serving the
/// release's content (the folder holds only the other files).
pub struct Materialised {
    pub path: PathBuf,
    pub baseline: Option<std::sync::Arc<crate::deploy::static_site::Baseline>>,
}

/// Where a site release is going: the account whose `$web` serves it, and the sync's
/// options (their Cache-Control decides what already matches).
pub struct SiteTarget {
    pub account_url: String,
    pub options: crate::deploy::static_site::SiteOptions,
}

impl Releases {
    /// The store of `settings`, `None` on the local state backend (no releases kept).
    pub fn open(settings: &Settings) -> Result<Option<Releases>> {
        if settings.state.backend != Backend::Azure {
            return Ok(None);
        }
        let account = settings.state.account_url.clone().unwrap_or_default();
        let http = http_client()?;
        let auth = auth::from_env(http.clone())?;
        let container_name = &settings.deploy.releases_container;
        let bad = |why: String| Error::input(format!("[state] account_url `{account}` {why}"));
        let mut url = Url::parse(&format!("{}/", account.trim_end_matches('/')))
            .map_err(|e| bad(format!("is not a URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| bad("cannot hold a path".into()))?
            .pop_if_empty()
            .push(container_name);
        let auth_kind = auth.describe();
        let credential = match auth {
            StorageAuth::Sas(sas) => {
                url.set_query(Some(&sas));
                None
            }
            StorageAuth::Token(cred, _) => {
                if url.scheme() != "https" {
                    return Err(bad(
                        "is not https: Entra ID tokens are only sent over HTTPS".into(),
                    ));
                }
                Some(cred)
            }
        };
        let container = BlobContainerClient::new(
            url,
            credential,
            Some(container_options(http, settings.state.timeout)),
        )
        .map_err(|e| Error::input(format!("cannot use the releases container: {e}")))?;
        Ok(Some(Releases {
            container,
            project: crate::render::project_name(settings),
            place: format!("{}/{container_name}", account.trim_end_matches('/')),
            auth_kind,
        }))
    }

    fn artifact_name(&self, hex: &str) -> String {
        format!("{}/{hex}", self.project)
    }

    fn file_name(&self, hex: &str) -> String {
        format!("{}/files/{hex}", self.project)
    }

    fn env_prefix(&self, env: &str) -> String {
        format!("{}/envs/{env}/", self.project)
    }

    /// Keep `artifact` (deployed to `target`, digest `digest`) unless it is kept
    /// already. Returns the release's size in bytes; `None` for a target whose artifacts
    /// are not kept here (`command`; `container-apps`, whose image stays in its registry).
    pub async fn keep(
        &self,
        env: &EnvName,
        target: &str,
        artifact: &Path,
        digest: &str,
        commit: Option<&str>,
        read: Option<&crate::deploy::SiteManifest>,
    ) -> Result<Option<u64>> {
        let Some(kind) = Kind::for_target(target).filter(|k| *k != Kind::Image) else {
            return Ok(None);
        };
        let hex = hex_of(digest)
            .ok_or_else(|| Error::failed(format!("`{digest}` is not a sha256 digest")))?;
        let name = self.artifact_name(&hex);
        if let Some(size) = self.touch(&name).await? {
            tracing::info!("release {} is kept already", short(&hex));
            return Ok(Some(size));
        }
        // A new artifact: the container may not exist yet (the first release).
        self.create().await?;
        let (body, size, archive) = match kind {
            Kind::Zip => {
                let archive = crate::kudu::ArchiveType::of(artifact).name();
                let body = zip_package(artifact).await?;
                let size = body.len() as u64;
                (body, size, Some(archive))
            }
            Kind::Site => {
                let (manifest, size) = site::keep_files(self, artifact, &hex, read).await?;
                (manifest, size, None)
            }
            Kind::Image => return Ok(None),
        };
        let mut m = HashMap::new();
        let entries = [
            (meta::RELEASE, hex.clone()),
            (meta::RELEASE_KIND, kind.name().to_string()),
            (
                meta::RELEASE_ARCHIVE,
                archive.unwrap_or_default().to_string(),
            ),
            (meta::RELEASE_SIZE, size.to_string()),
            (meta::RELEASE_AT, crate::clock::now_rfc3339()),
            (meta::RELEASE_ENV, env.to_string()),
            (meta::TARGET, target.to_string()),
            (meta::COMMIT, commit.unwrap_or_default().to_string()),
        ];
        meta::merge(&mut m, &entries);
        self.put(&name, body, m).await?;
        tracing::info!(
            "kept release {} ({size} bytes) in {}",
            short(&hex),
            self.place
        );
        Ok(Some(size))
    }

    /// Append a record to `env`'s releases.
    pub async fn record(&self, env: &EnvName, r: &NewRecord) -> Result<()> {
        let hex = hex_of(&r.digest)
            .ok_or_else(|| Error::failed(format!("`{}` is not a sha256 digest", r.digest)))?;
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let name = format!("{}{nanos:020}", self.env_prefix(env.as_str()));
        let mut m = HashMap::new();
        let entries = [
            (meta::RELEASE, hex),
            (meta::RELEASE_AT, crate::clock::now_rfc3339()),
            (meta::RELEASE_ACTION, r.action.clone()),
            (meta::RELEASE_LIVE, r.went_live.to_string()),
            (
                meta::RELEASE_SIZE,
                r.size.map(|s| s.to_string()).unwrap_or_default(),
            ),
            (meta::COMMIT, r.commit.clone().unwrap_or_default()),
            (meta::TARGET, r.target.clone()),
            (meta::HEALTH, r.verdict.to_string()),
            (meta::RELEASE_IMAGE, r.image.clone().unwrap_or_default()),
        ];
        meta::merge(&mut m, &entries);
        self.put(&name, Bytes::new(), m).await
    }

    /// `env`'s records, newest first, the live one marked.
    pub async fn records(&self, env: &EnvName) -> Result<Vec<Record>> {
        let listed = self.list(&self.env_prefix(env.as_str())).await?;
        Ok(records_of(listed))
    }

    /// Every environment's records, by environment.
    async fn all_records(&self) -> Result<BTreeMap<String, Vec<Record>>> {
        let prefix = format!("{}/envs/", self.project);
        let mut by_env: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
        for l in self.list(&prefix).await? {
            let rest = &l.name[prefix.len()..];
            if let Some((env, _)) = rest.split_once('/') {
                by_env.entry(env.to_string()).or_default().push(l);
            }
        }
        Ok(by_env
            .into_iter()
            .map(|(env, listed)| (env, records_of(listed)))
            .collect())
    }

    /// Fetch release `hex` into `dir`: the site's files, or the package
    /// (`release.<archive>`). A site release going to `site` fetches only the files its
    /// `$web` does not serve already (see [`site::fetch_needed`]).
    pub async fn materialise(
        &self,
        hex: &str,
        dir: &Path,
        site: Option<&SiteTarget>,
    ) -> Result<Materialised> {
        let name = self.artifact_name(hex);
        let Some((body, m)) = self.get(&name).await? else {
            return Err(Error::failed(format!(
                "release {} is no longer kept in {} (pruned, or never stored)",
                short(hex),
                self.place
            ))
            .hint("`nubes releases <env>` lists the releases that can be redeployed"));
        };
        match m.get(meta::RELEASE_KIND).map(String::as_str) {
            Some("site") => {
                let folder = dir.join("site");
                let baseline = match site {
                    Some(target) => Some(std::sync::Arc::new(
                        site::fetch_needed(self, &body, &folder, target).await?,
                    )),
                    None => {
                        site::fetch_files(self, &body, &folder).await?;
                        None
                    }
                };
                Ok(Materialised {
                    path: folder,
                    baseline,
                })
            }
            Some("zip") => {
                let archive = m
                    .get(meta::RELEASE_ARCHIVE)
                    .map(String::as_str)
                    .filter(|a| matches!(*a, "zip" | "jar" | "war" | "ear"))
                    .unwrap_or("zip");
                let path = dir.join(format!("release.{archive}"));
                tokio::fs::write(&path, &body)
                    .await
                    .map_err(|e| io_error(&path, e))?;
                Ok(Materialised {
                    path,
                    baseline: None,
                })
            }
            other => Err(Error::failed(format!(
                "release {} has an unknown kind `{}`",
                short(hex),
                printable(other.unwrap_or(""))
            ))),
        }
    }

    /// Keep the newest `keep` releases of every environment (the live one always) and
    /// delete what nothing kept refers to. Returns the number of blobs deleted.
    pub async fn prune(&self, keep: usize) -> Result<usize> {
        let all = self.all_records().await?;
        let mut doomed = Vec::new();
        let mut referenced = HashSet::new();
        for records in all.values() {
            let live = records.iter().find(|r| r.live).map(|r| r.hex().to_string());
            let mut kept: Vec<String> = Vec::new();
            for r in records {
                let hex = r.hex().to_string();
                let keep_it = kept.contains(&hex)
                    || live.as_deref() == Some(hex.as_str())
                    || kept.len() < keep;
                if keep_it {
                    if !kept.contains(&hex) {
                        kept.push(hex.clone());
                    }
                    referenced.insert(hex);
                } else {
                    doomed.push(r.name.clone());
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        // Artifacts (and manifests) no kept record names.
        let top = format!("{}/", self.project);
        let mut manifests = Vec::new();
        for l in self.list_flat(&top).await? {
            let rest = &l.name[top.len()..];
            if rest.contains('/') {
                continue;
            }
            if referenced.contains(rest) {
                if l.meta.get(meta::RELEASE_KIND).map(String::as_str) == Some("site") {
                    manifests.push(l.name.clone());
                }
            } else {
                doomed.push(l.name.clone());
            }
        }
        // Site files no kept manifest lists.
        let mut used = HashSet::new();
        for m in &manifests {
            if let Some((body, _)) = self.get(m).await? {
                used.extend(site::file_hexes(&body));
            }
        }
        let files = format!("{}/files/", self.project);
        for l in self.list_flat(&files).await? {
            if !used.contains(&l.name[files.len()..]) {
                doomed.push(l.name);
            }
        }
        let n = doomed.len();
        futures::stream::iter(doomed)
            .map(|name| async move { self.delete(&name).await })
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        tracing::info!("releases: pruned {n} blobs (keep_releases = {keep})");
        Ok(n)
    }

    // --- blob operations --------------------------------------------------------------

    /// If `name` exists, refresh its last-modified time (a concurrent prune sees it as
    /// in use) and return its size.
    async fn touch(&self, name: &str) -> Result<Option<u64>> {
        let blob = self.container.blob_client(name);
        let props = match blob.get_properties(None).await {
            Ok(p) => p,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(e) => return Err(self.error(e, "reading a kept release")),
        };
        use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders as _;
        let m: HashMap<String, String> = meta::normalise(props.metadata().unwrap_or_default());
        let size = m
            .get(meta::RELEASE_SIZE)
            .and_then(|s| s.parse().ok())
            .or_else(|| props.content_length().ok().flatten())
            .unwrap_or(0);
        blob.set_metadata(&m, Some(BlobClientSetMetadataOptions::default()))
            .await
            .map_err(|e| self.error(e, "refreshing a kept release"))?;
        Ok(Some(size))
    }

    async fn put(&self, name: &str, body: Bytes, m: HashMap<String, String>) -> Result<()> {
        let options = BlobClientUploadOptions {
            metadata: Some(m.clone()),
            partition_size: Some(SINGLE_REQUEST_LIMIT_U64),
            ..Default::default()
        };
        let doing = format!("storing `{}` in the releases container", printable(name));
        match self
            .container
            .blob_client(name)
            .upload(content(body.clone()), Some(options.clone()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e).as_deref() == Some("ContainerNotFound") => {
                self.create().await?;
                self.container
                    .blob_client(name)
                    .upload(content(body), Some(options))
                    .await
                    .map(|_| ())
                    .map_err(|e| self.error(e, &doing))
            }
            Err(e) => Err(self.error(e, &doing)),
        }
    }

    /// Store one file of a site release under its SHA-256 unless it is there already
    /// ([`Self::put_absent`]): read whole under `WHOLE_LIMIT`, else sent in blocks
    /// as it is read, each buffer holding one of `buffers`. Its MD5, when the entry has
    /// it (the sync computed it), is not computed again.
    async fn put_file(
        &self,
        entry: &crate::deploy::FileDigest,
        buffers: &std::sync::Arc<tokio::sync::Semaphore>,
    ) -> Result<()> {
        use crate::deploy::static_site::{self, BlockError, WHOLE_LIMIT};
        let name = self.file_name(&entry.hex);
        if entry.size < WHOLE_LIMIT {
            let _buffers = static_site::buffers_for(buffers, entry.size, PARALLEL).await?;
            crate::deploy::reading_artifact_file();
            let bytes = tokio::fs::read(&entry.path)
                .await
                .map_err(|err| io_error(&entry.path, err))?;
            return self.put_absent(&name, Bytes::from(bytes), entry.md5).await;
        }
        let options = BlockBlobClientCommitBlockListOptions {
            if_none_match: Some(azure_core::http::Etag::from("*")),
            ..Default::default()
        };
        let blob = self.container.blob_client(&name).block_blob_client();
        let known = entry.md5.zip(hex_bytes(&entry.hex));
        match static_site::upload_blocks(blob, &entry.path, known, options, buffers).await {
            Ok(_) => Ok(()),
            Err(BlockError::Storage(e))
                if matches!(
                    e.http_status(),
                    Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                ) =>
            {
                Ok(())
            }
            Err(BlockError::Storage(e)) => Err(self.error(e, "storing a file of a release")),
            Err(BlockError::Local(e)) => Err(Error::failed(format!(
                "storing {} as a file of a release: {e}",
                entry.path.display()
            ))),
        }
    }

    /// Upload `body` as `name` unless a blob of that name exists (content-addressed:
    /// the same name holds the same bytes). Its Content-MD5 (`md5`, else computed here)
    /// is set, so a listing tells a rollback which files `$web` already serves.
    async fn put_absent(&self, name: &str, body: Bytes, md5: Option<[u8; 16]>) -> Result<()> {
        use md5::Digest as _;
        let md5 = md5.unwrap_or_else(|| md5::Md5::digest(&body).into());
        let options = BlobClientUploadOptions {
            if_none_match: Some(azure_core::http::Etag::from("*")),
            blob_content_md5: Some(md5.to_vec()),
            partition_size: Some(SINGLE_REQUEST_LIMIT_U64),
            ..Default::default()
        };
        match self
            .container
            .blob_client(name)
            .upload(content(body), Some(options))
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.http_status(),
                    Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(e, "storing a file of a release")),
        }
    }

    async fn create(&self) -> Result<()> {
        match self.container.create(None).await {
            Ok(_) => {
                tracing::info!("releases: created the container {}", self.place);
                Ok(())
            }
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(self.error(e, "creating the releases container")),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<(Bytes, HashMap<String, String>)>> {
        let options = BlobClientDownloadOptions {
            partition_size: Some(std::num::NonZero::<usize>::MIN.saturating_add((256 << 20) - 1)),
            ..Default::default()
        };
        let doing = format!("reading `{}` from the releases container", printable(name));
        match self
            .container
            .blob_client(name)
            .download(Some(options))
            .await
        {
            Ok(r) => {
                let m = meta::normalise(r.properties.metadata.clone());
                let bytes = r.body.collect().await.map_err(|e| self.error(e, &doing))?;
                Ok(Some((bytes, m)))
            }
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(self.error(e, &doing)),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let options = BlobClientDeleteOptions::default();
        match self.container.blob_client(name).delete(Some(options)).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(self.error(
                e,
                &format!("deleting `{}` from the releases container", printable(name)),
            )),
        }
    }

    /// Blobs under `prefix`, with metadata; a missing container lists nothing.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_string()),
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        self.list_with(options).await
    }

    /// Blobs under `prefix`, names only.
    async fn list_flat(&self, prefix: &str) -> Result<Vec<Listed>> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_string()),
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        self.list_with(options).await
    }

    async fn list_with(
        &self,
        options: BlobContainerClientListBlobsOptions<'_>,
    ) -> Result<Vec<Listed>> {
        let doing = "listing the releases";
        let mut pages = self
            .container
            .list_blobs(Some(options))
            .map_err(|e| self.error(e, doing))?
            .into_pages();
        let mut out = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if error_code(&e).as_deref() == Some("ContainerNotFound") => {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(self.error(e, doing)),
            };
            let page = page.into_model().map_err(|e| self.error(e, doing))?;
            for item in page.blob_items {
                let Some(name) = item.name else { continue };
                let props = item.properties.unwrap_or_default();
                out.push(Listed {
                    name,
                    meta: meta::normalise(item.metadata.and_then(|m| m.values).unwrap_or_default()),
                    size: props.content_length.unwrap_or(0),
                    md5: props.content_md5.filter(|m| !m.is_empty()),
                });
            }
        }
        Ok(out)
    }

    fn error(&self, e: azure_core::Error, doing: &str) -> Error {
        match e.http_status() {
            Some(StatusCode::Forbidden | StatusCode::Unauthorized) => Error::input(format!(
                "{doing}: the storage account {} refused nubes's credentials ({})",
                self.place, self.auth_kind
            ))
            .hint(
                "releases are kept in the state storage account: the credential needs to read, \
                 write and delete blobs there (role `Storage Blob Data Contributor`, or a SAS \
                 for the whole account, not only the state container)",
            ),
            Some(s) => Error::failed(format!(
                "{doing}: storage answered {s}{}",
                error_code(&e)
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            )),
            None => Error::failed(format!(
                "{doing}: cannot reach {}: {}",
                self.place,
                source_chain(&e)
            )),
        }
    }
}

/// Records from a listing of one environment's prefix, newest first, the live one
/// marked.
fn records_of(mut listed: Vec<Listed>) -> Vec<Record> {
    // Names end in zero-padded nanoseconds: their order is the records' order.
    listed.sort_by(|a, b| b.name.cmp(&a.name));
    let mut out: Vec<Record> = listed
        .into_iter()
        .filter_map(|l| {
            let hex = hex_of(l.meta.get(meta::RELEASE)?)?;
            let get = |k: &str| l.meta.get(k).filter(|v| !v.is_empty()).cloned();
            Some(Record {
                id: short(&hex).to_string(),
                digest: format!("sha256:{hex}"),
                at: get(meta::RELEASE_AT).unwrap_or_default(),
                commit: get(meta::COMMIT),
                target: get(meta::TARGET).unwrap_or_default(),
                verdict: get(meta::HEALTH).unwrap_or_else(|| "unchecked".into()),
                action: get(meta::RELEASE_ACTION).unwrap_or_else(|| "deploy".into()),
                went_live: get(meta::RELEASE_LIVE).as_deref() == Some("true"),
                live: false,
                size: get(meta::RELEASE_SIZE).and_then(|s| s.parse().ok()),
                image: get(meta::RELEASE_IMAGE),
                name: l.name,
            })
        })
        .collect();
    if let Some(r) = out.iter_mut().find(|r| r.went_live) {
        r.live = true;
    }
    out
}

/// The live record.
pub fn live(records: &[Record]) -> Option<&Record> {
    records.iter().find(|r| r.live)
}

/// The newest release other than `not` (the live or failing one) that passed its
/// health check, or was deployed where there is none (`unchecked`).
pub fn previous_healthy<'a>(records: &'a [Record], not: &str) -> Option<&'a Record> {
    records
        .iter()
        .find(|r| matches!(r.verdict.as_str(), "healthy" | "unchecked") && r.hex() != not)
}

/// The release named by `wanted` (a digest, or a prefix of at least 7 hex digits).
pub fn find<'a>(records: &'a [Record], wanted: &str, env: &EnvName) -> Result<&'a Record> {
    let w = wanted
        .trim()
        .strip_prefix("sha256:")
        .unwrap_or(wanted.trim())
        .to_ascii_lowercase();
    if w.len() < 7 || w.len() > 64 || !w.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::input(format!(
            "--to {}: not a release id",
            crate::env_name::quoted(wanted)
        ))
        .hint(format!(
            "give a release id (at least 7 hex digits) or digest from `nubes releases {env}`"
        )));
    }
    let mut hits: Vec<&Record> = records.iter().filter(|r| r.hex().starts_with(&w)).collect();
    hits.dedup_by(|a, b| a.hex() == b.hex());
    let mut distinct: Vec<&Record> = Vec::new();
    for h in hits {
        if !distinct.iter().any(|d| d.hex() == h.hex()) {
            distinct.push(h);
        }
    }
    match distinct.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::input(format!(
            "`{env}` has no kept release {}",
            crate::env_name::quoted(wanted)
        ))
        .hint(format!("`nubes releases {env}` lists its releases"))),
        _ => Err(Error::input(format!(
            "release id {} is ambiguous in `{env}`",
            crate::env_name::quoted(wanted)
        ))
        .hint("give more hex digits")),
    }
}

/// An I/O error naming its path.
fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::failed(format!("{}: {e}", path.display()))
}

/// The package Kudu receives for `artifact` (see `kudu::package`).
async fn zip_package(artifact: &Path) -> Result<Bytes> {
    let path = artifact.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || {
        if path.is_dir() {
            crate::kudu::package::zip_folder(&path)
        } else {
            Ok(fs_err::read(&path)?)
        }
    })
    .await
    .map_err(|e| Error::failed(format!("packaging the release stopped: {e}")))??;
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(n: u64, hex: char, live: bool, verdict: &str) -> Listed {
        let mut meta = BTreeMap::new();
        meta.insert(meta::RELEASE.to_string(), hex.to_string().repeat(64));
        meta.insert(meta::RELEASE_LIVE.to_string(), live.to_string());
        meta.insert(meta::HEALTH.to_string(), verdict.to_string());
        Listed {
            name: format!("p/envs/e/{n:020}"),
            meta,
            size: 0,
            md5: None,
        }
    }

    #[test]
    fn the_newest_record_that_went_live_is_live() {
        let r = records_of(vec![
            listed(1, 'a', true, "healthy"),
            listed(3, 'c', false, "unhealthy"),
            listed(2, 'b', true, "healthy"),
        ]);
        assert_eq!(
            r.iter().map(|r| &r.id[..1]).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        assert_eq!(live(&r).map(|r| &r.id[..1]), Some("b"));
        assert_eq!(
            previous_healthy(&r, &"b".repeat(64)).map(|r| &r.id[..1]),
            Some("a")
        );
        let env = EnvName::parse("e", "env-").expect("env");
        assert_eq!(find(&r, "bbbbbbb", &env).expect("found").id, "b".repeat(12));
        assert_eq!(find(&r, "ddddddd", &env).expect_err("none").exit_code(), 2);
        assert_eq!(find(&r, "bb", &env).expect_err("short").exit_code(), 2);
    }

    #[test]
    fn container_names_follow_azure_rules() {
        assert!(container_name_ok("nubes-releases"));
        for bad in ["ab", "Nubes", "-a-b", "a--b", "a_b", "ab-"] {
            assert!(!container_name_ok(bad), "{bad}");
        }
    }
}
