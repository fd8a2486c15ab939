//! Kudu zip deploy, for the `app-service` and `functions` targets of `nubes up`: zip the
//! built artifact, POST it to the app's SCM site and follow the deployment to its end.
//!
//! The documented protocol (projectkudu/kudu, "Deploying from a zip file" and the REST
//! API; the fields of `DeployResult` and the `DeployStatus` enum in Kudu's source):
//!
//! * `POST <scm>/api/zipdeploy?isAsync=true` with the zip as body answers `202 Accepted`
//!   and a `Location` header to poll, e.g. `/api/deployments/latest?deployer=...`.
//! * The status document is JSON: `id`, `status` (0 Pending, 1 Building, 2 Deploying,
//!   3 Failed, 4 Success, 5 Complete), `complete`, `status_text`, `log_url`.
//! * `log_url` serves a JSON array of `{log_time, id, message, type, details_url}`;
//!   `details_url` holds the nested entries (where build errors usually are).
//!
//! Authentication is an Entra ID bearer token for Resource Manager's audience, which the
//! SCM site accepts from identities with a role such as Website Contributor on the app.
//! 429 waits `Retry-After`; 5xx and dropped connections back off; 409 (another
//! deployment in progress) backs off longer. All are bounded. Requests are logged at
//! debug level as method and path only; the token is registered with [`crate::secrets`],
//! goes only to the SCM site's own origin, and is scrubbed from every error.

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use bytes::Bytes;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;
use url::{Host, Url};

use crate::error::{Error, Result};
use crate::rest::{Reply, SendError, error_chain, retry_after};
use crate::secrets;
use crate::state::{auth, azure};

/// Kudu accepts Entra ID tokens issued for Resource Manager.
const SCOPE: &str = "https://management.azure.com/.default";
/// The ignore file, gitignore syntax, read from the artifact folder's root.
pub const IGNORE_FILE: &str = ".nubesignore";

/// Tries per request on 429, 5xx or a failed connection.
const MAX_ATTEMPTS: u32 = 4;
/// Tries of the upload while Kudu says another deployment is in progress (409).
const CONFLICT_ATTEMPTS: u32 = 4;
const CONFLICT_BACKOFF: Duration = Duration::from_secs(5);
const THROTTLED_WAIT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Log lines of a failed deployment shown in the error.
const LOG_TAIL: usize = 20;
/// Nested log documents (`details_url`) fetched for a failed deployment.
const MAX_DETAIL_FETCHES: usize = 5;

/// A Kudu (SCM site) client for one app.
pub struct Kudu {
    http: reqwest::Client,
    scm: Url,
    credential: Arc<dyn TokenCredential>,
    /// How the credential was found, when known (for messages).
    credential_kind: Option<&'static str>,
}

/// A finished, successful deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployReport {
    pub deployment_id: String,
    pub status_text: String,
    /// Size of the uploaded zip.
    pub bytes: u64,
}

impl Kudu {
    /// `scm_url`: e.g. `https://app-demo-alice.scm.azurewebsites.net` (https; plain http
    /// only on a loopback address, for tests).
    pub fn new(scm_url: &str, credential: Arc<dyn TokenCredential>) -> Result<Kudu> {
        Ok(Kudu {
            http: azure::http_client()?,
            scm: parse_scm_url(scm_url)?,
            credential,
            credential_kind: None,
        })
    }

    /// Credential from the chain of DESIGN.md with `NUBES_KUDU_TOKEN` as the static token.
    pub fn from_env(scm_url: &str) -> Result<Kudu> {
        let http = azure::http_client()?;
        let (credential, kind) = auth::token_credential(http.clone(), "NUBES_KUDU_TOKEN")?;
        Ok(Kudu {
            http,
            scm: parse_scm_url(scm_url)?,
            credential,
            credential_kind: Some(kind),
        })
    }

    /// Zip `artifact` (a folder, honouring `.nubesignore`; or an existing .zip/.jar/.war
    /// used as is), POST it to `api/zipdeploy?isAsync=true`, and follow the deployment
    /// until it succeeds, fails, or `timeout` passes (counted from Kudu's acceptance).
    pub async fn zip_deploy(&self, artifact: &Path, timeout: Duration) -> Result<DeployReport> {
        let body = package(artifact).await?;
        let bytes = body.len() as u64;
        tracing::info!(
            "uploading {} ({} bytes) to {}",
            artifact.display(),
            bytes,
            self.site()
        );
        let status_url = self.upload(body).await?;
        let deadline = Instant::now() + timeout;
        let status = self.follow(&status_url, deadline, timeout).await?;
        Ok(DeployReport {
            deployment_id: status.id.unwrap_or_default(),
            status_text: status.status_text.unwrap_or_default(),
            bytes,
        })
    }

    /// POST the zip; returns the URL of the deployment status to follow.
    async fn upload(&self, body: Bytes) -> Result<Url> {
        let doing = format!("deploying to {}", self.site());
        let mut url = self.url("api/zipdeploy");
        url.set_query(Some("isAsync=true"));
        let mut conflicts = 1;
        let reply = loop {
            let reply = self
                .call(Method::POST, &url, Some(body.clone()), &doing)
                .await?;
            if reply.status == StatusCode::CONFLICT && conflicts < CONFLICT_ATTEMPTS {
                let wait = retry_after(&reply.headers)
                    .unwrap_or_else(|| CONFLICT_BACKOFF.saturating_mul(conflicts));
                tracing::info!(
                    "another deployment is in progress on {}; trying again in {} s",
                    self.site(),
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                conflicts += 1;
                continue;
            }
            break reply;
        };
        match reply.status {
            // 200: Kudu deployed synchronously; the status URL still tells us the outcome.
            StatusCode::OK | StatusCode::ACCEPTED => {
                match reply.headers.get(LOCATION).and_then(|v| v.to_str().ok()) {
                    Some(link) if !link.trim().is_empty() => self.own_url(link.trim(), &doing),
                    _ => Ok(self.url("api/deployments/latest")),
                }
            }
            StatusCode::CONFLICT => Err(Error::failed(format!(
                "{doing}: another deployment is still in progress on the app after \
                 {CONFLICT_ATTEMPTS} tries ({})",
                server_said(&reply)
            ))
            .hint("wait for it to finish (see the Deployment Center of the app), then run again")),
            _ => Err(self.status_error(&doing, &reply)),
        }
    }

    /// Poll the deployment status until it is terminal or `deadline` passes.
    async fn follow(&self, url: &Url, deadline: Instant, timeout: Duration) -> Result<Status> {
        let doing = format!("following the deployment to {}", self.site());
        let mut last_id: Option<String> = None;
        let mut delay = POLL_INTERVAL;
        loop {
            let poll = async {
                tokio::time::sleep(delay).await;
                self.call(Method::GET, url, None, &doing).await
            };
            let reply = match tokio::time::timeout_at(deadline, poll).await {
                Ok(reply) => reply?,
                Err(_) => return Err(self.timed_out(last_id.as_deref(), timeout)),
            };
            delay = retry_after(&reply.headers).unwrap_or(POLL_INTERVAL);
            match reply.status {
                StatusCode::OK | StatusCode::ACCEPTED => {}
                // The deployment record may not exist yet right after the upload.
                StatusCode::NOT_FOUND if last_id.is_none() => continue,
                _ => return Err(self.status_error(&doing, &reply)),
            }
            let status: Status = serde_json::from_slice(&reply.body).map_err(|e| {
                Error::failed(format!(
                    "{doing}: Kudu answered {} with a status nubes does not understand: {e}",
                    reply.status
                ))
            })?;
            if status.id.is_some() {
                last_id.clone_from(&status.id);
            }
            match status.state() {
                State::Succeeded => return Ok(status),
                State::Failed => return Err(self.failure(&status).await),
                State::Running(what) => {
                    tracing::debug!("deployment {}: {what}", status.id.as_deref().unwrap_or("?"));
                }
            }
        }
    }

    /// The error for a failed deployment: Kudu's status text and the tail of its log.
    async fn failure(&self, status: &Status) -> Error {
        let id = status.id.as_deref().unwrap_or("(unknown id)");
        let mut message = format!("deployment {id} to {} failed", self.site());
        if let Some(text) = status
            .status_text
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        {
            message.push_str(": ");
            message.push_str(text.trim());
        }
        let lines = match status.log_url.as_deref() {
            Some(link) => self.log_lines(link).await,
            None => Vec::new(),
        };
        if !lines.is_empty() {
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            message.push_str("\nKudu's log (last lines):");
            for line in tail {
                message.push_str("\n  ");
                message.push_str(line);
            }
        }
        Error::failed(secrets::redact(&message)).hint(format!(
            "see the full log in the app's Deployment Center, or at {}api/deployments/{id}/log",
            self.scm
        ))
    }

    /// Messages of the deployment log, with the nested entries (`details_url`) of the
    /// last few entries that have them. Best effort: a log that cannot be read gives a
    /// note instead of hiding the failure itself.
    async fn log_lines(&self, link: &str) -> Vec<String> {
        let doing = "reading the deployment log";
        let entries = match self.log_entries(link, doing).await {
            Ok(entries) => entries,
            Err(e) => return vec![format!("(the log could not be read: {e})")],
        };
        let with_details: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.details_url.as_deref().is_some_and(|u| !u.is_empty()))
            .map(|(i, _)| i)
            .collect();
        let fetch_from = with_details.len().saturating_sub(MAX_DETAIL_FETCHES);
        let mut lines = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            if let Some(message) = entry.message.as_deref() {
                lines.extend(message.lines().map(str::to_string));
            }
            if !with_details[fetch_from..].contains(&i) {
                continue;
            }
            let Some(details) = entry.details_url.as_deref() else {
                continue;
            };
            if let Ok(nested) = self.log_entries(details, doing).await {
                for n in nested {
                    if let Some(message) = n.message.as_deref() {
                        lines.extend(message.lines().map(|l| format!("  {l}")));
                    }
                }
            }
        }
        lines.retain(|l| !l.trim().is_empty());
        lines
    }

    async fn log_entries(&self, link: &str, doing: &str) -> Result<Vec<LogEntry>> {
        let url = self.own_url(link, doing)?;
        let reply = self.call(Method::GET, &url, None, doing).await?;
        if !reply.status.is_success() {
            return Err(self.status_error(doing, &reply));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| Error::failed(format!("{doing}: not a Kudu log: {e}")))
    }

    fn timed_out(&self, id: Option<&str>, timeout: Duration) -> Error {
        let which = match id {
            Some(id) => format!("deployment {id}"),
            None => "the deployment".to_string(),
        };
        Error::failed(format!(
            "{which} to {} did not finish within {}; it may still finish in Azure",
            self.site(),
            humantime::format_duration(timeout)
        ))
        .hint(format!(
            "follow it in the app's Deployment Center (or {}api/deployments/latest), or raise the \
             deployment timeout",
            self.scm
        ))
    }

    /// One request, retried when throttled (after `Retry-After`), on 5xx and on
    /// connection failures (with backoff). The final reply is returned whatever its
    /// status; the caller decides what it means.
    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<Bytes>,
        doing: &str,
    ) -> Result<Reply> {
        crate::rest::with_retries("kudu", &method, url, MAX_ATTEMPTS, THROTTLED_WAIT, || {
            self.send(&method, url, body.clone())
        })
        .await
        .map_err(|e| self.send_error(e, doing))
    }

    async fn send(
        &self,
        method: &Method,
        url: &Url,
        body: Option<Bytes>,
    ) -> std::result::Result<Reply, SendError> {
        let body = body.map(|b| (b, "application/zip"));
        crate::rest::send(
            &self.http,
            &*self.credential,
            SCOPE,
            "kudu",
            method,
            url,
            body,
        )
        .await
    }

    fn send_error(&self, e: SendError, doing: &str) -> Error {
        match e {
            SendError::Token(e) => Error::input(secrets::redact(&format!(
                "{doing}: could not get an access token for the app's SCM site{}: {}",
                self.kind_suffix(),
                error_chain(&e)
            )))
            .hint(
                "log in again (`az login`), or check the service principal / federated credential \
                 settings (AZURE_CREDENTIALS, ARM_CLIENT_ID, ARM_TENANT_ID)",
            ),
            SendError::Transport(e) => Error::failed(secrets::redact(&format!(
                "{doing}: cannot reach {}: {}",
                self.site(),
                error_chain(&e.without_url())
            )))
            .hint(format!(
                "check the network and the app's SCM URL; nubes tried {MAX_ATTEMPTS} times"
            )),
        }
    }

    /// An unexpected status, as an error a user can act on.
    fn status_error(&self, doing: &str, reply: &Reply) -> Error {
        let said = server_said(reply);
        let role = format!(
            "the identity needs the Website Contributor role (or Contributor) on the app: \
             `az role assignment create --assignee <client-id> --role \"Website Contributor\" \
             --scope <the app's resource ID>`; the app must also allow Entra ID for its SCM \
             site ({})",
            self.site()
        );
        match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::input(format!(
                "{doing}: Kudu refused the access token{} ({said})",
                self.kind_suffix()
            ))
            .hint(role),
            _ => Error::failed(format!("{doing}: Kudu answered {said}")),
        }
    }

    fn kind_suffix(&self) -> String {
        self.credential_kind
            .map(|k| format!(" ({k})"))
            .unwrap_or_default()
    }

    /// The SCM site as `scheme://host[:port]`, for messages.
    fn site(&self) -> String {
        self.scm.origin().ascii_serialization()
    }

    fn url(&self, path: &str) -> Url {
        // Cannot fail: a relative path joined onto a base that ends with '/'.
        self.scm.join(path).unwrap_or_else(|_| self.scm.clone())
    }

    /// A URL Kudu handed us (`Location`, `log_url`, `details_url`). The bearer token goes
    /// only to the SCM site's own origin: a reply must not be able to send it elsewhere.
    fn own_url(&self, link: &str, doing: &str) -> Result<Url> {
        let url = self.scm.join(link).map_err(|e| {
            Error::failed(format!("{doing}: Kudu sent a link that is not a URL: {e}"))
        })?;
        if url.origin() != self.scm.origin() {
            return Err(Error::failed(format!(
                "{doing}: Kudu sent a link to {}, not to {}; nubes sends its access token only \
                 to the app's SCM site",
                url.origin().ascii_serialization(),
                self.site()
            )));
        }
        Ok(url)
    }
}

/// The body to upload: a folder zipped, or an archive read as is.
async fn package(artifact: &Path) -> Result<Bytes> {
    let path = artifact.to_path_buf();
    let zipped = tokio::task::spawn_blocking(move || package_blocking(&path))
        .await
        .map_err(|e| Error::failed(format!("zipping the artifact stopped: {e}")))??;
    Ok(Bytes::from(zipped))
}

fn package_blocking(artifact: &Path) -> Result<Vec<u8>> {
    let meta = fs_err::metadata(artifact).map_err(|e| {
        Error::input(format!("the artifact to deploy cannot be read: {e}"))
            .hint("build the app first, or set [build] artifact in nubes.toml")
    })?;
    if meta.is_dir() {
        return zip_folder(artifact);
    }
    let extension = artifact
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(extension.as_deref(), Some("zip" | "jar" | "war")) {
        return Err(Error::input(format!(
            "the artifact {} is neither a folder nor a .zip, .jar or .war file",
            artifact.display()
        )));
    }
    let bytes = fs_err::read(artifact)?;
    if !bytes.starts_with(b"PK") {
        return Err(Error::input(format!(
            "the artifact {} is not a zip archive",
            artifact.display()
        )));
    }
    Ok(bytes)
}

/// Zip a folder for Kudu: entries in a fixed (sorted) order with a fixed timestamp, so
/// the same files give the same bytes; unix permissions kept; `.nubesignore` (gitignore
/// syntax, in `dir`) applied, and itself left out. Symbolic links are followed.
pub fn zip_folder(dir: &Path) -> Result<Vec<u8>> {
    let ignore = ignore_rules(dir)?;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let base = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| {
            let Ok(relative) = entry.path().strip_prefix(dir) else {
                return false;
            };
            let is_dir = entry.file_type().is_dir();
            let own_rules = !is_dir && relative == Path::new(IGNORE_FILE);
            !own_rules && !ignore.matched(relative, is_dir).is_ignore()
        });
    let zip_error = |path: &Path, e: zip::result::ZipError| {
        Error::failed(format!("zipping {}: {e}", path.display()))
    };
    for entry in walk {
        let entry = entry.map_err(|e| {
            Error::failed(format!(
                "reading the artifact folder {}: {e}",
                dir.display()
            ))
        })?;
        let path = entry.path();
        let name = entry_name(dir, path)?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::failed(format!("reading {}: {e}", path.display())))?;
        let options = base
            .unix_permissions(mode(&meta))
            .large_file(meta.len() >= u64::from(u32::MAX));
        if meta.is_dir() {
            zip.add_directory(format!("{name}/"), options)
                .map_err(|e| zip_error(path, e))?;
        } else {
            zip.start_file(name, options)
                .map_err(|e| zip_error(path, e))?;
            let mut file = fs_err::File::open(path)?;
            std::io::copy(&mut file, &mut zip)?;
        }
    }
    zip.flush()?;
    let cursor = zip.finish().map_err(|e| zip_error(dir, e))?;
    Ok(cursor.into_inner())
}

/// The rules of `<dir>/.nubesignore`, or none.
fn ignore_rules(dir: &Path) -> Result<Gitignore> {
    let file = dir.join(IGNORE_FILE);
    let mut builder = GitignoreBuilder::new(dir);
    if file.is_file()
        && let Some(e) = builder.add(&file)
    {
        return Err(Error::input(format!("{}: {e}", file.display())));
    }
    builder
        .build()
        .map_err(|e| Error::input(format!("{}: {e}", file.display())))
}

/// The zip entry name: the path below `dir`, '/'-separated.
fn entry_name(dir: &Path, path: &Path) -> Result<String> {
    let relative: PathBuf = path
        .strip_prefix(dir)
        .map_err(|_| Error::failed(format!("{} is outside the artifact", path.display())))?
        .to_path_buf();
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    parts.map(|p| p.join("/")).ok_or_else(|| {
        Error::input(format!(
            "{} has a name that is not UTF-8, which a zip for Kudu cannot carry",
            path.display()
        ))
    })
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode(meta: &std::fs::Metadata) -> u32 {
    if meta.is_dir() { 0o755 } else { 0o644 }
}

fn parse_scm_url(raw: &str) -> Result<Url> {
    let hint = "the SCM URL of an app looks like https://<app>.scm.azurewebsites.net";
    let mut url = Url::parse(raw.trim()).map_err(|e| {
        Error::input(format!("the app's SCM URL `{raw}` is not a URL: {e}")).hint(hint)
    })?;
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    // Plain http would carry the bearer token in clear; only a loopback test server may.
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(Error::input(format!(
                "the app's SCM URL `{raw}` must use https (plain http only on a loopback address)"
            ))
            .hint(hint));
        }
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Kudu's deployment status document (`DeployResult`); only what nubes reads.
#[derive(Deserialize)]
struct Status {
    id: Option<String>,
    /// A number (`DeployStatus`), or its name from some front ends.
    status: Option<serde_json::Value>,
    status_text: Option<String>,
    #[serde(default)]
    complete: bool,
    log_url: Option<String>,
}

enum State {
    Running(&'static str),
    Failed,
    Succeeded,
}

impl Status {
    fn state(&self) -> State {
        let code = match &self.status {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "pending" => Some(0),
                "building" => Some(1),
                "deploying" => Some(2),
                "failed" => Some(3),
                "success" => Some(4),
                "complete" => Some(5),
                _ => None,
            },
            _ => None,
        };
        match code {
            Some(3) => State::Failed,
            Some(4) => State::Succeeded,
            // `complete` without a failure means done, whatever the number says.
            _ if self.complete => State::Succeeded,
            Some(0) => State::Running("pending"),
            Some(1) => State::Running("building"),
            Some(2) => State::Running("deploying"),
            _ => State::Running("in progress"),
        }
    }
}

/// One entry of a deployment log.
#[derive(Deserialize)]
struct LogEntry {
    message: Option<String>,
    details_url: Option<String>,
}

/// The status and a short excerpt of what the server said, scrubbed of secrets.
fn server_said(reply: &Reply) -> String {
    let text = String::from_utf8_lossy(&reply.body);
    let excerpt: String = text.trim().chars().take(300).collect();
    let excerpt = secrets::redact(&excerpt);
    if excerpt.is_empty() {
        reply.status.to_string()
    } else {
        format!("{}: {excerpt}", reply.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn write(dir: &Path, relative: &str, content: &str) {
        let path = dir.join(relative);
        fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs_err::write(path, content).expect("write");
    }

    fn names(zip: &[u8]) -> Vec<String> {
        let archive = zip::ZipArchive::new(Cursor::new(zip)).expect("zip");
        archive
            .file_names()
            .map(|n| n.expect("name").to_string())
            .collect()
    }

    fn sample(dir: &Path) {
        write(dir, "index.js", "console.log('hi')");
        write(dir, "package.json", "{}");
        write(dir, "lib/util.js", "module.exports = 1");
        write(dir, "lib/debug.log", "noise");
        write(dir, "node_modules/left-pad/index.js", "x");
        write(dir, "logs/keep.log", "kept by negation");
        write(dir, "b/z.txt", "z");
        write(dir, "a.txt", "a");
        write(
            dir,
            IGNORE_FILE,
            "# build leftovers\nnode_modules/\n*.log\n!logs/keep.log\n",
        );
    }

    #[test]
    fn nubesignore_is_applied_and_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        sample(dir.path());
        let zip = zip_folder(dir.path()).expect("zip");
        let files: Vec<String> = names(&zip)
            .into_iter()
            .filter(|n| !n.ends_with('/'))
            .collect();
        assert_eq!(
            files,
            [
                "a.txt",
                "b/z.txt",
                "index.js",
                "lib/util.js",
                "logs/keep.log",
                "package.json"
            ]
        );
        let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).expect("zip");
        let mut content = String::new();
        archive
            .by_name("lib/util.js")
            .expect("entry")
            .read_to_string(&mut content)
            .expect("read");
        assert_eq!(content, "module.exports = 1");
    }

    #[test]
    fn without_nubesignore_everything_is_zipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "node_modules/x.js", "x");
        write(dir.path(), "a.log", "a");
        let files = names(&zip_folder(dir.path()).expect("zip"));
        assert_eq!(files, ["a.log", "node_modules/", "node_modules/x.js"]);
    }

    #[test]
    fn zips_are_deterministic() {
        let one = tempfile::tempdir().expect("tempdir");
        let two = tempfile::tempdir().expect("tempdir");
        sample(one.path());
        // The same files written in another order, later.
        write(two.path(), "a.txt", "a");
        std::thread::sleep(Duration::from_millis(1100));
        sample(two.path());
        let first = zip_folder(one.path()).expect("zip");
        assert_eq!(first, zip_folder(one.path()).expect("zip again"));
        assert_eq!(first, zip_folder(two.path()).expect("zip of the copy"));
    }

    #[cfg(unix)]
    #[test]
    fn unix_permissions_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "run.sh", "#!/bin/sh\n");
        write(dir.path(), "data.txt", "d");
        fs_err::set_permissions(
            dir.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        fs_err::set_permissions(
            dir.path().join("data.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        let zip = zip_folder(dir.path()).expect("zip");
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("zip");
        let mode = |archive: &mut zip::ZipArchive<_>, name: &str| {
            archive
                .by_name(name)
                .expect("entry")
                .unix_mode()
                .expect("mode")
                & 0o7777
        };
        assert_eq!(mode(&mut archive, "run.sh"), 0o755);
        assert_eq!(mode(&mut archive, "data.txt"), 0o640);
    }

    #[test]
    fn archives_are_used_as_is_and_other_files_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "src/a.txt", "a");
        let zip = zip_folder(&dir.path().join("src")).expect("zip");
        let jar = dir.path().join("app.JAR");
        fs_err::write(&jar, &zip).expect("write");
        assert_eq!(package_blocking(&jar).expect("jar"), zip);
        let fake = dir.path().join("fake.zip");
        fs_err::write(&fake, "not a zip").expect("write");
        assert_eq!(package_blocking(&fake).expect_err("fake").exit_code(), 2);
        let text = dir.path().join("app.txt");
        fs_err::write(&text, "x").expect("write");
        assert_eq!(package_blocking(&text).expect_err("txt").exit_code(), 2);
        let missing = dir.path().join("missing");
        assert_eq!(
            package_blocking(&missing).expect_err("missing").exit_code(),
            2
        );
    }

    #[test]
    fn scm_urls_must_be_https_unless_loopback() {
        let url = parse_scm_url("https://app-demo-alice.scm.azurewebsites.net").expect("url");
        assert_eq!(
            url.as_str(),
            "https://app-demo-alice.scm.azurewebsites.net/"
        );
        assert!(parse_scm_url("http://127.0.0.1:8080").is_ok());
        for bad in [
            "http://app.scm.azurewebsites.net",
            "ftp://127.0.0.1",
            "nope",
        ] {
            assert_eq!(parse_scm_url(bad).expect_err(bad).exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn status_documents_map_to_states() {
        let state = |json: &str| -> &'static str {
            let status: Status = serde_json::from_str(json).expect("status");
            match status.state() {
                State::Running(_) => "running",
                State::Failed => "failed",
                State::Succeeded => "succeeded",
            }
        };
        assert_eq!(
            state(r#"{"id":"a","status":0,"complete":false}"#),
            "running"
        );
        assert_eq!(
            state(r#"{"id":"a","status":2,"complete":false}"#),
            "running"
        );
        assert_eq!(state(r#"{"id":"a","status":3,"complete":true}"#), "failed");
        assert_eq!(
            state(r#"{"id":"a","status":4,"complete":true}"#),
            "succeeded"
        );
        assert_eq!(
            state(r#"{"id":"a","status":5,"complete":true}"#),
            "succeeded"
        );
        assert_eq!(state(r#"{"status":"Failed"}"#), "failed");
        assert_eq!(state(r#"{}"#), "running");
    }
}
