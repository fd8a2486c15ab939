//! Deploying to App Service and Azure Functions through Kudu, the app's SCM site, for
//! the `app-service` and `functions` targets of `nubes up`: package the built artifact,
//! send it to the deployment API the app's hosting plan and the artifact call for, and
//! follow the deployment to its end.
//!
//! Which API ([`choose_api`]), as Microsoft's own clients choose it (azure-cli's
//! `appservice` module, azure/webapps-deploy, Azure/functions-action's content preparer):
//!
//! * `.jar`, `.war`, `.ear` on App Service: OneDeploy, `POST /api/publish?type=jar|war|ear
//!   &async=true&restart=true&clean=...`. Kudu stores the archive as `app.jar`/`app.war`/
//!   `app.ear` (projectkudu/kudu `PushDeploymentController.OneDeploy`); zip deploy would
//!   unpack it into wwwroot, where the Java runtime finds nothing to start.
//! * A folder or `.zip` on a dedicated, Premium or Windows Consumption plan: zip deploy,
//!   `POST /api/zipdeploy?isAsync=true`.
//! * Flex Consumption: `POST /api/publish?RemoteBuild=false&Deployer=nubes` (Flex has no
//!   zip deploy; azure-cli `enable_zip_deploy_flex`, functions-action `oneDeployFlex`).
//! * Linux Consumption: refused with a hint. Its packages are mounted from a blob URL in
//!   the app setting `WEBSITE_RUN_FROM_PACKAGE`; writing that setting from nubes would
//!   fight Terraform, which owns the app's settings (README, "Deploy targets").
//!
//! The protocol (projectkudu/kudu): an accepted upload answers `202` with a `Location`
//! to poll (`/api/deployments/latest?deployer=...`); Flex answers `202` with the
//! deployment ID as body. The status document carries `id`, `status`, `complete`,
//! `status_text` and `log_url`; [`Outcome`] maps every status value classic Kudu (0–4,
//! `DeployStatus.cs`) and the newer SCM sites (−1 Cancelled, 5 Conflict, 6
//! PartialSuccess: functions-action `KUDU_DEPLOYMENT_CONSTANTS`, core-tools
//! `DeployStatus`) emit. `complete` never turns a failure code into a success.
//!
//! Authentication: an Entra ID token for the App Service audience
//! (`https://appservice.azure.com/.default`, `.us` for Azure Government), which
//! Microsoft's clients now ask for Kudu (vscode-azuretools PR #2258, azure-cli PR
//! #31988, azure-pipelines-tasks PR #22416; ARM-audience tokens for Kudu are
//! deprecated). When Entra ID will not issue it, or Kudu answers 401 to it, nubes falls
//! back once to the ARM audience (`https://management.core.windows.net/`, what azure-cli
//! has asked for since PR #29631), as azure-pipelines-tasks does. A refusal names the
//! audience asked for, the token's own `aud` and the credential source.
//!
//! Before the upload nubes reads `/api/deployments/latest` (this also warms the SCM
//! site up, and its `ARRAffinity` cookie pins every later request to that instance, as
//! azure-cli and functions-action do). An upload whose reply is lost (dropped
//! connection, 5xx) is only sent again after `/api/deployments/latest` shows that it did
//! not start a deployment; if it did, nubes follows that one. A 409 that persists is
//! diagnosed: `WEBSITE_RUN_FROM_PACKAGE` set to a URL, a slot auto-swap, or another
//! deployment in progress (Kudu's `FetchDeploymentManager.FetchDeploy`).
//!
//! Release names: a zip deploy carries `message=nubes release sha256:<hex>` ([`release_message`])
//! when nubes knows the release it ships. Kudu's `ZipPushDeploy` takes `message`,
//! `author`, `authorEmail` and `deployer` from the query (PushDeploymentController.cs
//! lines 66-94); the message becomes the commit of the site's `NullRepository`
//! (`CommitRepo`, line 914) and from there the deployment record's `message`
//! (DeploymentManager.cs line 596; `DeployResult` serialises it as `message`), which
//! `GET /api/deployments/latest` returns. OneDeploy (`/api/publish`, jar/war/ear) takes
//! no message: its record always says `OneDeploy` (lines 232-244). The Flex
//! Consumption publish endpoint is not Kudu's public source, and Flex has no deployment
//! slots, so nothing is sent there. [`Kudu::latest_deployment`] reads the record back:
//! `deploy::slot` swaps a slot back in only when it names the wanted release.
//!
//! Requests are logged at debug level as method and path only; the token is registered
//! with [`crate::secrets`], goes only to the SCM site's own origin, and is scrubbed from
//! every error.

pub mod package;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
use url::{Host, Url};

use crate::error::{Error, Result};
use crate::rest::{Reply, SendError, backoff, error_chain, retry_after};
use crate::secrets;
use crate::state::{auth, azure};

/// The App Service audience Microsoft's clients ask for Kudu (public cloud).
pub const APP_SERVICE_SCOPE: &str = "https://appservice.azure.com/.default";
/// The same for Azure Government (`*.azurewebsites.us`).
pub const APP_SERVICE_SCOPE_US: &str = "https://appservice.azure.us/.default";
/// The fallback: Resource Manager's audience, which Kudu has accepted so far.
pub const ARM_SCOPE: &str = "https://management.core.windows.net//.default";
use package::package;
pub use package::{IGNORE_FILE, zip_folder};

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
/// Kudu's 409 texts (Kudu.Services/Resources.resx), to tell the causes apart.
const RUN_FROM_ZIP_TEXT: &str = "run-from-zip is set to a remote url";
const AUTO_SWAP_TEXT: &str = "auto swap deployment currently ongoing";

/// How the app is hosted, as far as deploying to it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosting {
    /// App Service plans (Free to Premium, Isolated) and Functions Elastic Premium.
    Dedicated,
    /// Functions Flex Consumption (`FC1`).
    FlexConsumption,
    /// Functions Consumption (`Y1`, `Dynamic`) on Linux.
    LinuxConsumption,
    /// Functions Consumption on Windows (Kudu zip deploy works there).
    WindowsConsumption,
}

impl Hosting {
    /// From a site's `kind` (`app,linux`, `functionapp,linux`, ...) and `properties.sku`
    /// (`FlexConsumption`, `Dynamic`, `ElasticPremium`, `Basic`, ...) or a plan's SKU name
    /// (`FC1`, `Y1`, `EP1`, `P1v3`, ...), as functions-action's `FunctionSkuUtil` reads them.
    pub fn from_site(kind: Option<&str>, sku: Option<&str>) -> Hosting {
        let sku = sku.unwrap_or_default().trim().to_ascii_lowercase();
        let linux = kind.is_some_and(|k| {
            k.to_ascii_lowercase()
                .split(',')
                .any(|part| part.trim() == "linux")
        });
        if sku.starts_with("flexconsumption") || sku == "fc1" {
            Hosting::FlexConsumption
        } else if sku.starts_with("dynamic") || sku == "y1" {
            if linux {
                Hosting::LinuxConsumption
            } else {
                Hosting::WindowsConsumption
            }
        } else {
            Hosting::Dedicated
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Hosting::Dedicated => "a dedicated or Premium plan",
            Hosting::FlexConsumption => "the Flex Consumption plan",
            Hosting::LinuxConsumption => "the Linux Consumption plan",
            Hosting::WindowsConsumption => "the Windows Consumption plan",
        }
    }
}

/// OneDeploy's `type` for an archive (Kudu's `ArtifactType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveType {
    Zip,
    Jar,
    War,
    Ear,
}

impl ArchiveType {
    /// From the artifact: a folder is zipped; a file by its extension.
    pub fn of(artifact: &Path) -> ArchiveType {
        if artifact.is_dir() {
            return ArchiveType::Zip;
        }
        match artifact
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("jar") => ArchiveType::Jar,
            Some("war") => ArchiveType::War,
            Some("ear") => ArchiveType::Ear,
            _ => ArchiveType::Zip,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ArchiveType::Zip => "zip",
            ArchiveType::Jar => "jar",
            ArchiveType::War => "war",
            ArchiveType::Ear => "ear",
        }
    }
}

/// The deployment API used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /api/zipdeploy?isAsync=true`.
    ZipDeploy,
    /// `POST /api/publish?type=<type>&async=true&restart=true` (OneDeploy).
    OneDeploy(ArchiveType),
    /// `POST /api/publish?RemoteBuild=false&Deployer=nubes` on Flex Consumption.
    FlexPublish,
}

impl Api {
    pub fn describe(self) -> String {
        match self {
            Api::ZipDeploy => "zip deploy".into(),
            Api::OneDeploy(t) => format!("OneDeploy (type={})", t.name()),
            Api::FlexPublish => "OneDeploy (Flex Consumption)".into(),
        }
    }

    /// Path and query of the upload.
    fn target(self) -> (&'static str, String) {
        match self {
            Api::ZipDeploy => ("api/zipdeploy", "isAsync=true&deployer=nubes".into()),
            // Kudu names the flag `async` for OneDeploy; `clean` defaults to true only for
            // type=zip, and a Java app's old archive must go, so it is always explicit.
            Api::OneDeploy(t) => (
                "api/publish",
                format!(
                    "type={}&async=true&restart=true&clean={}",
                    t.name(),
                    matches!(t, ArchiveType::Zip)
                ),
            ),
            Api::FlexPublish => ("api/publish", "RemoteBuild=false&Deployer=nubes".into()),
        }
    }
}

/// The API for `artifact` on an app hosted on `hosting`, or why there is none.
pub fn choose_api(artifact: &Path, hosting: Hosting) -> Result<Api> {
    let archive = ArchiveType::of(artifact);
    match hosting {
        Hosting::LinuxConsumption => Err(Error::input(
            "the app runs on the Linux Consumption plan, whose deployments are packages the app \
             mounts from a blob URL (the app setting WEBSITE_RUN_FROM_PACKAGE); Kudu takes no \
             uploads there, and nubes does not rewrite app settings that Terraform manages",
        )
        .hint(
            "move the function app to the Flex Consumption plan (sku_name = \"FC1\", the \
             successor Microsoft recommends; nubes deploys it with OneDeploy) or to an Elastic \
             Premium plan, or deploy it with [deploy] target = \"command\" (e.g. `az functionapp \
             deployment source config-zip`)",
        )),
        Hosting::FlexConsumption => match archive {
            ArchiveType::Zip => Ok(Api::FlexPublish),
            other => Err(Error::input(format!(
                "the artifact {} is a .{} archive, but a Flex Consumption function app takes a \
                 function app package (a folder or .zip with host.json)",
                artifact.display(),
                other.name()
            ))
            .hint(
                "for Java functions, deploy the staging folder azure-functions-maven-plugin \
                 writes (target/azure-functions/<app>): set [build] artifact to it",
            )),
        },
        Hosting::Dedicated | Hosting::WindowsConsumption => Ok(match archive {
            ArchiveType::Zip => Api::ZipDeploy,
            other => Api::OneDeploy(other),
        }),
    }
}

/// The app's resource in Resource Manager, for diagnosing a 409 (its app settings and
/// slot auto-swap configuration).
pub struct SiteAccess {
    pub arm: Arc<crate::arm::Arm>,
    pub group: String,
    pub name: String,
}

/// A Kudu (SCM site) client for one app.
pub struct Kudu {
    http: reqwest::Client,
    scm: Url,
    credential: Arc<dyn TokenCredential>,
    /// How the credential was found, when known (for messages).
    credential_kind: Option<&'static str>,
    /// The App Service audience for this SCM host.
    primary_scope: &'static str,
    /// The scope tokens are asked for now: the primary one, or [`ARM_SCOPE`] after a refusal.
    scope: Mutex<&'static str>,
    /// `ARRAffinity*` cookies the SCM front end set: sent back so that the upload and the
    /// polls reach the same instance.
    cookies: Mutex<Vec<(String, String)>>,
    /// The `aud` claim of the last token sent, when it is a readable JWT (for messages).
    last_audience: Mutex<Option<String>>,
    site: Option<SiteAccess>,
    /// The `message` a zip deploy records (see [`release_message`]).
    message: Option<String>,
}

/// The `message` nubes gives a zip deploy of release `digest` (`sha256:<hex>`), and
/// looks for in a slot's latest deployment before swapping it back in.
pub fn release_message(digest: &str) -> String {
    format!("nubes release {digest}")
}

/// A site's latest deployment as Kudu records it (`GET /api/deployments/latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestDeployment {
    pub id: Option<String>,
    /// The caller's `message` (zip deploy), or Kudu's own text.
    pub message: Option<String>,
    /// `status` 4 (Success).
    pub succeeded: bool,
    /// Kudu's `active`: the deployment the site runs now.
    pub active: Option<bool>,
    /// `status 4 (Success)`, for messages.
    pub status: String,
}

/// A finished, successful deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployReport {
    pub deployment_id: String,
    pub status_text: String,
    /// Size of the uploaded body.
    pub bytes: u64,
    /// SHA-256 of the uploaded body, lowercase hex.
    pub sha256: String,
    pub api: Api,
}

impl Kudu {
    /// `scm_url`: e.g. `https://app-demo-alice.scm.azurewebsites.net` (https; plain http
    /// only on a loopback address, for tests).
    pub fn new(scm_url: &str, credential: Arc<dyn TokenCredential>) -> Result<Kudu> {
        Kudu::build(azure::http_client()?, scm_url, credential, None)
    }

    /// Credential from the chain of DESIGN.md with `NUBES_KUDU_TOKEN` as the static token.
    pub fn from_env(scm_url: &str) -> Result<Kudu> {
        let http = azure::http_client()?;
        let (credential, kind) = auth::token_credential(http.clone(), "NUBES_KUDU_TOKEN")?;
        Kudu::build(http, scm_url, credential, Some(kind))
    }

    fn build(
        http: reqwest::Client,
        scm_url: &str,
        credential: Arc<dyn TokenCredential>,
        credential_kind: Option<&'static str>,
    ) -> Result<Kudu> {
        let scm = parse_scm_url(scm_url)?;
        let primary_scope = match scm.host_str() {
            Some(h) if h.to_ascii_lowercase().ends_with(".azurewebsites.us") => {
                APP_SERVICE_SCOPE_US
            }
            _ => APP_SERVICE_SCOPE,
        };
        Ok(Kudu {
            http,
            scm,
            credential,
            credential_kind,
            primary_scope,
            scope: Mutex::new(primary_scope),
            cookies: Mutex::new(Vec::new()),
            last_audience: Mutex::new(None),
            site: None,
            message: None,
        })
    }

    /// Record `message` with every zip deploy (OneDeploy takes none; see the module doc).
    pub fn with_message(mut self, message: String) -> Kudu {
        self.message = Some(message);
        self
    }

    /// The site's latest deployment, `None` when it has none (404).
    pub async fn latest_deployment(&self) -> Result<Option<LatestDeployment>> {
        let doing = format!("reading the latest deployment of {}", self.site());
        Ok(self.latest(&doing).await?.map(|status| LatestDeployment {
            succeeded: status.outcome() == Outcome::Succeeded,
            status: status.code_text(),
            id: status.id,
            message: status.message,
            active: status.active,
        }))
    }

    /// `GET /api/deployments/latest`: `None` when the app has no deployment (404).
    async fn latest(&self, doing: &str) -> Result<Option<Status>> {
        let url = self.url("api/deployments/latest");
        let reply = self.call(Method::GET, &url, doing).await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => serde_json::from_slice(&reply.body).map(Some).map_err(|e| {
                Error::failed(format!(
                    "{doing}: Kudu answered {s} with a status nubes does not understand: {e}"
                ))
            }),
            _ => Err(self.status_error(doing, &reply)),
        }
    }

    /// Lets a persistent 409 be diagnosed from the app's settings in Resource Manager.
    pub fn with_site(mut self, site: SiteAccess) -> Kudu {
        self.site = Some(site);
        self
    }

    /// Package `artifact` (a folder zipped, honouring `.nubesignore`; or an archive as is),
    /// send it with `api`, and follow the deployment until it succeeds, fails, or
    /// `timeout` passes (counted from Kudu's acceptance).
    pub async fn deploy(
        &self,
        artifact: &Path,
        api: Api,
        timeout: Duration,
    ) -> Result<DeployReport> {
        let body = package(artifact).await?;
        let bytes = body.len() as u64;
        let sha256 = format!("{:x}", Sha256::digest(&body));
        // Also the warm-up: the SCM site starts, and sets the affinity cookie.
        let before = self.latest_id("reading the app's last deployment").await?;
        tracing::info!(
            "uploading {} ({} bytes, sha256 {}) to {} with {}",
            artifact.display(),
            bytes,
            &sha256[..12],
            self.site(),
            api.describe()
        );
        let status_url = self.upload(body, api, before.as_deref()).await?;
        let deadline = Instant::now() + timeout;
        let status = self.follow(&status_url, deadline, timeout).await?;
        Ok(DeployReport {
            deployment_id: status.id.unwrap_or_default(),
            status_text: status.status_text.unwrap_or_default(),
            bytes,
            sha256,
            api,
        })
    }

    /// The ID of the app's latest deployment, `None` when it has none (404).
    async fn latest_id(&self, doing: &str) -> Result<Option<String>> {
        Ok(self.latest(doing).await?.and_then(|status| status.id))
    }

    /// POST the package; returns the URL of the deployment status to follow. Never sends
    /// it twice to a Kudu that already started a deployment from it.
    async fn upload(&self, body: Bytes, api: Api, before: Option<&str>) -> Result<Url> {
        let doing = format!("deploying to {}", self.site());
        let (path, query) = api.target();
        let mut url = self.url(path);
        url.set_query(Some(&query));
        if let (Api::ZipDeploy, Some(message)) = (api, &self.message) {
            url.query_pairs_mut().append_pair("message", message);
        }
        let content_type = match api {
            Api::OneDeploy(ArchiveType::Jar | ArchiveType::War | ArchiveType::Ear) => {
                "application/octet-stream"
            }
            _ => "application/zip",
        };
        let mut attempt = 0;
        let mut conflicts = 0;
        loop {
            attempt += 1;
            let sent = self
                .send(&Method::POST, &url, Some((body.clone(), content_type)))
                .await;
            let reply = match sent {
                Ok(reply) => reply,
                Err(SendError::Transport(e)) if !e.is_builder() => {
                    tracing::info!(
                        "the upload to {} got no answer ({}); checking whether it reached Kudu",
                        self.site(),
                        error_chain(&e)
                    );
                    if let Some(found) = self.started_since(before, attempt, &doing).await? {
                        return Ok(found);
                    }
                    if attempt < MAX_ATTEMPTS {
                        continue;
                    }
                    return Err(self.send_error(SendError::Transport(e), &doing));
                }
                Err(e) => return Err(self.send_error(e, &doing)),
            };
            match reply.status {
                StatusCode::OK | StatusCode::ACCEPTED => return self.status_link(&reply, &doing),
                StatusCode::UNAUTHORIZED if self.fall_back_after_refusal() => {}
                StatusCode::CONFLICT => {
                    conflicts += 1;
                    let text = String::from_utf8_lossy(&reply.body).to_ascii_lowercase();
                    // Waiting never helps a run-from-URL app, and an auto swap takes
                    // minutes: both are named at once.
                    if text.contains(RUN_FROM_ZIP_TEXT)
                        || text.contains(AUTO_SWAP_TEXT)
                        || conflicts >= CONFLICT_ATTEMPTS
                    {
                        return Err(self.conflict_error(&doing, &reply).await);
                    }
                    let wait = retry_after(&reply.headers)
                        .unwrap_or_else(|| CONFLICT_BACKOFF.saturating_mul(conflicts));
                    tracing::info!(
                        "{} answered 409 ({}); trying again in {} s",
                        self.site(),
                        server_said(&reply),
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                }
                StatusCode::TOO_MANY_REQUESTS if attempt < MAX_ATTEMPTS => {
                    // Throttled by the front end: Kudu never saw the upload.
                    let wait = retry_after(&reply.headers).unwrap_or(THROTTLED_WAIT);
                    tokio::time::sleep(wait).await;
                }
                s if s.is_server_error() => {
                    // A gateway error may come after Kudu took the upload.
                    if let Some(found) = self.started_since(before, attempt, &doing).await? {
                        return Ok(found);
                    }
                    if attempt >= MAX_ATTEMPTS {
                        return Err(self.status_error(&doing, &reply));
                    }
                }
                _ => return Err(self.status_error(&doing, &reply)),
            }
        }
    }

    /// After an upload whose answer was lost: wait the backoff of `attempt`, then look at
    /// the app's latest deployment. A deployment other than `before` is the upload's own
    /// (Kudu records it before it answers 202): its status URL is returned.
    async fn started_since(
        &self,
        before: Option<&str>,
        attempt: u32,
        doing: &str,
    ) -> Result<Option<Url>> {
        tokio::time::sleep(backoff(attempt)).await;
        let latest = self
            .latest_id(&format!("{doing}: checking for the upload's deployment"))
            .await?;
        match latest {
            Some(id) if Some(id.as_str()) != before => {
                tracing::info!(
                    "the upload reached {}: following deployment {}",
                    self.site(),
                    crate::env_name::printable(&id)
                );
                Ok(Some(self.deployment_url(&id, doing)?))
            }
            _ => Ok(None),
        }
    }

    /// Where to follow an accepted upload: `Location`, else the deployment ID a Flex site
    /// answers with, else the latest deployment.
    fn status_link(&self, reply: &Reply, doing: &str) -> Result<Url> {
        if let Some(link) = reply.headers.get(LOCATION).and_then(|v| v.to_str().ok())
            && !link.trim().is_empty()
        {
            return self.own_url(link.trim(), doing);
        }
        let body = String::from_utf8_lossy(&reply.body);
        let id = body.trim().trim_matches('"');
        if !id.is_empty() && is_deployment_id(id) {
            return self.deployment_url(id, doing);
        }
        Ok(self.url("api/deployments/latest"))
    }

    fn deployment_url(&self, id: &str, doing: &str) -> Result<Url> {
        if !is_deployment_id(id) {
            return Err(Error::failed(format!(
                "{doing}: Kudu named a deployment `{}` that is not a deployment ID",
                crate::env_name::printable(id)
            )));
        }
        Ok(self.url(&format!("api/deployments/{id}")))
    }

    /// Poll the deployment status until it is terminal or `deadline` passes.
    async fn follow(&self, url: &Url, deadline: Instant, timeout: Duration) -> Result<Status> {
        let doing = format!("following the deployment to {}", self.site());
        let mut last_id: Option<String> = None;
        let mut delay = POLL_INTERVAL;
        loop {
            let poll = async {
                tokio::time::sleep(delay).await;
                self.call(Method::GET, url, &doing).await
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
            match status.outcome() {
                Outcome::Succeeded => return Ok(status),
                Outcome::Running(what) => {
                    tracing::debug!("deployment {}: {what}", status.id.as_deref().unwrap_or("?"));
                }
                ended => return Err(self.failure(&status, ended).await),
            }
        }
    }

    /// The error for a deployment that ended without success: what its status means,
    /// Kudu's status text and the tail of its log.
    async fn failure(&self, status: &Status, outcome: Outcome) -> Error {
        let id = crate::env_name::printable(status.id.as_deref().unwrap_or("(unknown id)"));
        let code = status.code_text();
        let (what, hint) = match outcome {
            Outcome::Cancelled => (
                format!("was cancelled ({code}; core-tools calls this value Unknown)"),
                "see the app's Deployment Center for who or what cancelled it, then run again",
            ),
            Outcome::Conflict => (
                format!("was stopped by a conflicting deployment ({code})"),
                "another deployment started on the app meanwhile; let it finish, then run again",
            ),
            Outcome::Partial => (
                format!(
                    "only partially succeeded ({code}): the app may run a mix of old and new files"
                ),
                "see the log for what failed, then run again",
            ),
            _ => (
                format!("failed ({code})"),
                "see the full log in the app's Deployment Center",
            ),
        };
        let mut message = format!("deployment {id} to {} {what}", self.site());
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
            "{hint} (log: {}api/deployments/{id}/log)",
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
        let reply = self.call(Method::GET, &url, doing).await?;
        if !reply.status.is_success() {
            return Err(self.status_error(doing, &reply));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| Error::failed(format!("{doing}: not a Kudu log: {e}")))
    }

    /// A 409 that waiting did not resolve, with its real cause: Kudu's own text, the
    /// app's `WEBSITE_RUN_FROM_PACKAGE` and auto-swap settings (when Resource Manager can
    /// be asked), or the deployment in progress.
    async fn conflict_error(&self, doing: &str, reply: &Reply) -> Error {
        let said = server_said(reply);
        let text = String::from_utf8_lossy(&reply.body).to_ascii_lowercase();
        let settings = match &self.site {
            Some(site) => Some(
                site.arm
                    .web_app_conflict_settings(&site.group, &site.name)
                    .await,
            ),
            None => None,
        };
        let run_from = settings
            .as_ref()
            .and_then(|s| s.as_ref().ok())
            .and_then(|s| s.run_from_package.clone())
            .filter(|v| v.trim().to_ascii_lowercase().starts_with("http"));
        if text.contains(RUN_FROM_ZIP_TEXT) || run_from.is_some() {
            let shown = run_from
                .map(|u| format!(" (`{}`)", without_query(&u)))
                .unwrap_or_default();
            return Error::failed(format!(
                "{doing}: the app runs from a package URL: its app setting \
                 WEBSITE_RUN_FROM_PACKAGE is set to a URL{shown}, so Kudu refuses every \
                 deployment ({said})"
            ))
            .hint(
                "remove WEBSITE_RUN_FROM_PACKAGE from the app's app_settings in Terraform (or \
                 set it to 1 to run from the package Kudu deploys), apply, then run again",
            );
        }
        let auto_swap = settings
            .as_ref()
            .and_then(|s| s.as_ref().ok())
            .and_then(|s| s.auto_swap_slot.clone())
            .filter(|v| !v.trim().is_empty());
        if text.contains(AUTO_SWAP_TEXT) || auto_swap.is_some() {
            let slot = auto_swap
                .map(|s| format!(" into slot `{}`", crate::env_name::printable(&s)))
                .unwrap_or_default();
            return Error::failed(format!(
                "{doing}: an auto swap{slot} is running on the app, and Kudu takes no \
                 deployment until it ends ({said})"
            ))
            .hint(
                "wait for the swap to finish (Deployment slots in the portal), or remove \
                 auto_swap_slot_name from the slot's site_config if nubes should deploy \
                 without swapping, then run again",
            );
        }
        let latest = self.latest_summary().await;
        let note = match &settings {
            Some(Err(e)) => {
                format!("\n(nubes could not read the app's settings to rule out other causes: {e})")
            }
            _ => String::new(),
        };
        Error::failed(format!(
            "{doing}: another deployment is still in progress on the app after \
             {CONFLICT_ATTEMPTS} tries ({said}){latest}{note}"
        ))
        .hint("wait for it to finish (see the Deployment Center of the app), then run again")
    }

    /// `; the latest deployment is <id> (<deployer>, <status>)`, or nothing.
    async fn latest_summary(&self) -> String {
        let url = self.url("api/deployments/latest");
        let Ok(reply) = self
            .call(Method::GET, &url, "reading the app's last deployment")
            .await
        else {
            return String::new();
        };
        let Ok(status) = serde_json::from_slice::<Status>(&reply.body) else {
            return String::new();
        };
        format!(
            "; the latest deployment is {} (by {}, {})",
            crate::env_name::printable(status.id.as_deref().unwrap_or("?")),
            crate::env_name::printable(status.deployer.as_deref().unwrap_or("?")),
            status.code_text()
        )
    }

    fn timed_out(&self, id: Option<&str>, timeout: Duration) -> Error {
        let which = match id {
            Some(id) => format!("deployment {}", crate::env_name::printable(id)),
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

    /// One idempotent request (a GET), retried when throttled (after `Retry-After`), on
    /// 5xx and on connection failures (with backoff), and once with the fallback audience
    /// after a 401. The final reply is returned whatever its status.
    async fn call(&self, method: Method, url: &Url, doing: &str) -> Result<Reply> {
        loop {
            let reply = crate::rest::with_retries(
                "kudu",
                &method,
                url,
                MAX_ATTEMPTS,
                THROTTLED_WAIT,
                || self.send(&method, url, None),
            )
            .await
            .map_err(|e| self.send_error(e, doing))?;
            if reply.status == StatusCode::UNAUTHORIZED && self.fall_back_after_refusal() {
                continue;
            }
            return Ok(reply);
        }
    }

    /// After a 401 to a token for the App Service audience: ask for the ARM audience
    /// from now on. `false` when that was done already, or when the token is a fixed one
    /// (`NUBES_KUDU_TOKEN`), which no scope changes.
    fn fall_back_after_refusal(&self) -> bool {
        let fixed = self
            .credential_kind
            .is_some_and(|k| k.contains("NUBES_KUDU_TOKEN"));
        let mut scope = lock(&self.scope);
        if fixed || *scope == ARM_SCOPE {
            return false;
        }
        tracing::warn!(
            "{} refused the token for {}; trying the Resource Manager audience ({})",
            self.site(),
            audience_of(*scope),
            audience_of(ARM_SCOPE)
        );
        *scope = ARM_SCOPE;
        true
    }

    async fn token(&self) -> std::result::Result<String, SendError> {
        let scope = *lock(&self.scope);
        let token = match self.credential.get_token(&[scope], None).await {
            Ok(token) => token,
            Err(e) if scope != ARM_SCOPE => {
                // Entra ID will not issue the App Service audience in every tenant or
                // cloud (AADSTS500011): the ARM audience Kudu has accepted so far.
                tracing::warn!(
                    "no token for {} ({}); asking for {} instead",
                    audience_of(scope),
                    secrets::redact(&error_chain(&e)),
                    audience_of(ARM_SCOPE)
                );
                *lock(&self.scope) = ARM_SCOPE;
                self.credential
                    .get_token(&[ARM_SCOPE], None)
                    .await
                    .map_err(SendError::Token)?
            }
            Err(e) => return Err(SendError::Token(e)),
        };
        let secret = token.token.secret().to_string();
        secrets::register(&secret);
        *lock(&self.last_audience) = jwt_audience(&secret);
        Ok(secret)
    }

    /// One authenticated request to the SCM site, read whole, with the affinity cookies;
    /// new `ARRAffinity*` cookies in the answer are kept.
    async fn send(
        &self,
        method: &Method,
        url: &Url,
        body: Option<(Bytes, &'static str)>,
    ) -> std::result::Result<Reply, SendError> {
        let token = self.token().await?;
        let cookie = cookie_header(&lock(&self.cookies));
        let reply =
            crate::rest::send_with_token(&self.http, &token, "kudu", method, url, body, cookie)
                .await?;
        keep_affinity(&mut lock(&self.cookies), &reply.headers);
        Ok(reply)
    }

    fn send_error(&self, e: SendError, doing: &str) -> Error {
        match e {
            SendError::Token(e) => Error::input(secrets::redact(&format!(
                "{doing}: could not get an access token for the app's SCM site (audience {}, then \
                 {}){}: {}",
                audience_of(self.primary_scope),
                audience_of(ARM_SCOPE),
                self.kind_suffix(),
                error_chain(&e)
            )))
            .hint(crate::state::auth::token_hint(
                &e,
                self.credential_kind.unwrap_or_default(),
            )),
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
        let current = *lock(&self.scope);
        let mut asked = format!("nubes asked for the audience {}", audience_of(current));
        if current == ARM_SCOPE && self.primary_scope != ARM_SCOPE {
            asked.push_str(&format!(
                " (the fallback: the App Service audience {} was refused, or not issued)",
                audience_of(self.primary_scope)
            ));
        }
        if let Some(aud) = lock(&self.last_audience).as_deref() {
            asked.push_str(&format!(
                ", and the token's audience (aud) is `{}`",
                crate::env_name::printable(aud)
            ));
        }
        match reply.status {
            StatusCode::UNAUTHORIZED => Error::input(format!(
                "{doing}: Kudu refused the access token{}: {asked} ({said})",
                self.kind_suffix()
            ))
            .hint(format!(
                "Kudu accepts tokens for the App Service audience {}; a token from \
                 NUBES_KUDU_TOKEN must be issued for it (`az account get-access-token \
                 --scope {}`); otherwise {role}",
                audience_of(self.primary_scope),
                self.primary_scope
            )),
            StatusCode::FORBIDDEN => Error::input(format!(
                "{doing}: Kudu refused the access token{}: {asked} ({said})",
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `https://appservice.azure.com/.default` -> `https://appservice.azure.com`.
fn audience_of(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

/// The `aud` claim of a JWT, read without checking anything (only for messages).
fn jwt_audience(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match claims.get("aud")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

/// Keep the `ARRAffinity*` cookies of `headers` (replacing older values).
fn keep_affinity(cookies: &mut Vec<(String, String)>, headers: &HeaderMap) {
    for value in headers.get_all(SET_COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        let pair = text.split(';').next().unwrap_or_default();
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if !name.starts_with("ARRAffinity") || value.is_empty() {
            continue;
        }
        cookies.retain(|(n, _)| n != name);
        cookies.push((name.to_string(), value.to_string()));
    }
}

fn cookie_header(cookies: &[(String, String)]) -> Option<String> {
    if cookies.is_empty() {
        return None;
    }
    Some(
        cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Kudu's deployment IDs are hex (classic) or GUIDs (Flex): nothing that changes a path.
fn is_deployment_id(id: &str) -> bool {
    id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A URL without its query (a package URL's query is usually a SAS).
fn without_query(raw: &str) -> String {
    let shown = match Url::parse(raw.trim()) {
        Ok(mut url) => {
            url.set_query(None);
            url.to_string()
        }
        Err(_) => raw.split('?').next().unwrap_or_default().to_string(),
    };
    crate::env_name::printable(&shown)
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
    deployer: Option<String>,
    message: Option<String>,
    active: Option<bool>,
}

/// What a status document says about the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Running(&'static str),
    Succeeded,
    Failed,
    /// −1: Cancelled (functions-action), Unknown (core-tools).
    Cancelled,
    /// 5: another deployment took over (newer SCM sites; classic Kudu never sends 5).
    Conflict,
    /// 6: PartialSuccess.
    Partial,
}

/// Every `DeployStatus` value: classic Kudu's 0–4 and the newer SCM sites' −1, 5, 6.
const STATUS_NAMES: [(i64, &str); 8] = [
    (-1, "Cancelled"),
    (0, "Pending"),
    (1, "Building"),
    (2, "Deploying"),
    (3, "Failed"),
    (4, "Success"),
    (5, "Conflict"),
    (6, "PartialSuccess"),
];

impl Status {
    /// The numeric status, also from its name (some front ends send names).
    fn code(&self) -> Option<i64> {
        match &self.status {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => {
                let s = s.trim();
                s.parse().ok().or_else(|| {
                    let lower = s.to_ascii_lowercase();
                    let lower = match lower.as_str() {
                        "canceled" | "unknown" => "cancelled",
                        other => other,
                    };
                    STATUS_NAMES
                        .iter()
                        .find(|(_, name)| name.eq_ignore_ascii_case(lower))
                        .map(|(code, _)| *code)
                })
            }
            _ => None,
        }
    }

    /// `status 5 (Conflict)`, for messages.
    fn code_text(&self) -> String {
        match self.code() {
            Some(code) => {
                let name = STATUS_NAMES
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map_or("unknown to nubes", |(_, n)| n);
                format!("status {code} ({name})")
            }
            None => "no status".to_string(),
        }
    }

    /// The status decides; `complete` only ends a deployment whose status is not a
    /// terminal one (and then it did not succeed: Kudu sets `complete` with 3 or 4).
    fn outcome(&self) -> Outcome {
        match self.code() {
            Some(4) => Outcome::Succeeded,
            Some(3) => Outcome::Failed,
            Some(-1) => Outcome::Cancelled,
            Some(5) => Outcome::Conflict,
            Some(6) => Outcome::Partial,
            _ if self.complete => Outcome::Failed,
            Some(0) => Outcome::Running("pending"),
            Some(1) => Outcome::Running("building"),
            Some(2) => Outcome::Running("deploying"),
            _ => Outcome::Running("in progress"),
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
    fn every_status_value_maps_and_complete_never_hides_a_failure() {
        let outcome = |json: &str| -> Outcome {
            let status: Status = serde_json::from_str(json).expect("status");
            status.outcome()
        };
        for (json, expected) in [
            (
                r#"{"id":"a","status":0,"complete":false}"#,
                Outcome::Running("pending"),
            ),
            (
                r#"{"id":"a","status":1,"complete":false}"#,
                Outcome::Running("building"),
            ),
            (
                r#"{"id":"a","status":2,"complete":false}"#,
                Outcome::Running("deploying"),
            ),
            (r#"{"id":"a","status":3,"complete":true}"#, Outcome::Failed),
            (
                r#"{"id":"a","status":4,"complete":true}"#,
                Outcome::Succeeded,
            ),
            (
                r#"{"id":"a","status":-1,"complete":true}"#,
                Outcome::Cancelled,
            ),
            (
                r#"{"id":"a","status":5,"complete":true}"#,
                Outcome::Conflict,
            ),
            (r#"{"id":"a","status":6,"complete":true}"#, Outcome::Partial),
            (
                r#"{"id":"a","status":5,"complete":false}"#,
                Outcome::Conflict,
            ),
            // Complete with a non-terminal status did not succeed.
            (r#"{"id":"a","status":2,"complete":true}"#, Outcome::Failed),
            (r#"{"id":"a","status":9,"complete":true}"#, Outcome::Failed),
            (r#"{"id":"a","complete":true}"#, Outcome::Failed),
            (r#"{"status":"Failed"}"#, Outcome::Failed),
            (r#"{"status":"PartialSuccess"}"#, Outcome::Partial),
            (r#"{"status":"Canceled"}"#, Outcome::Cancelled),
            (r#"{}"#, Outcome::Running("in progress")),
        ] {
            assert_eq!(outcome(json), expected, "{json}");
        }
        let status: Status = serde_json::from_str(r#"{"status":5}"#).expect("status");
        assert_eq!(status.code_text(), "status 5 (Conflict)");
    }

    #[test]
    fn hosting_comes_from_kind_and_sku() {
        use Hosting::*;
        for (kind, sku, expected) in [
            (
                Some("functionapp,linux"),
                Some("FlexConsumption"),
                FlexConsumption,
            ),
            (Some("functionapp,linux"), Some("FC1"), FlexConsumption),
            (Some("functionapp,linux"), Some("Dynamic"), LinuxConsumption),
            (Some("functionapp"), Some("Dynamic"), WindowsConsumption),
            (Some("functionapp,linux"), Some("ElasticPremium"), Dedicated),
            (Some("app,linux"), Some("Basic"), Dedicated),
            (None, Some("Y1"), WindowsConsumption),
            (None, None, Dedicated),
        ] {
            assert_eq!(Hosting::from_site(kind, sku), expected, "{kind:?} {sku:?}");
        }
    }

    #[test]
    fn the_api_follows_the_artifact_and_the_plan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jar = dir.path().join("demo.jar");
        let war = dir.path().join("demo.WAR");
        let zip = dir.path().join("site.zip");
        for f in [&jar, &war, &zip] {
            fs_err::write(f, "PK").expect("write");
        }
        let folder = dir.path();
        assert_eq!(
            choose_api(&jar, Hosting::Dedicated).expect("jar"),
            Api::OneDeploy(ArchiveType::Jar)
        );
        assert_eq!(
            choose_api(&war, Hosting::Dedicated).expect("war"),
            Api::OneDeploy(ArchiveType::War)
        );
        assert_eq!(
            choose_api(&zip, Hosting::Dedicated).expect("zip"),
            Api::ZipDeploy
        );
        assert_eq!(
            choose_api(folder, Hosting::WindowsConsumption).expect("dir"),
            Api::ZipDeploy
        );
        assert_eq!(
            choose_api(folder, Hosting::FlexConsumption).expect("flex"),
            Api::FlexPublish
        );
        assert_eq!(
            choose_api(&jar, Hosting::FlexConsumption)
                .expect_err("jar on flex")
                .exit_code(),
            2
        );
        let refused = choose_api(folder, Hosting::LinuxConsumption).expect_err("linux consumption");
        assert_eq!(refused.exit_code(), 2);
        assert!(
            refused.to_string().contains("WEBSITE_RUN_FROM_PACKAGE"),
            "{refused}"
        );
        assert!(
            refused
                .hint_text()
                .unwrap_or_default()
                .contains("Flex Consumption")
        );
        assert_eq!(
            Api::OneDeploy(ArchiveType::Jar).target(),
            (
                "api/publish",
                "type=jar&async=true&restart=true&clean=false".to_string()
            )
        );
    }

    #[test]
    fn affinity_cookies_are_kept_and_sent_back() {
        let mut headers = HeaderMap::new();
        headers.append(
            SET_COOKIE,
            "ARRAffinity=abc; Path=/; HttpOnly; Secure"
                .parse()
                .expect("h"),
        );
        headers.append(
            SET_COOKIE,
            "ARRAffinitySameSite=abc; Path=/; SameSite=None; Secure"
                .parse()
                .expect("h"),
        );
        headers.append(SET_COOKIE, "tracking=1; Path=/".parse().expect("h"));
        let mut cookies = Vec::new();
        keep_affinity(&mut cookies, &headers);
        assert_eq!(
            cookie_header(&cookies).as_deref(),
            Some("ARRAffinity=abc; ARRAffinitySameSite=abc")
        );
        let mut newer = HeaderMap::new();
        newer.append(SET_COOKIE, "ARRAffinity=def; Path=/".parse().expect("h"));
        keep_affinity(&mut cookies, &newer);
        assert_eq!(
            cookie_header(&cookies).as_deref(),
            Some("ARRAffinitySameSite=abc; ARRAffinity=def")
        );
    }

    #[test]
    fn the_audience_of_a_token_is_read_for_messages_only() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"aud":"https://management.core.windows.net/","tid":"t"}"#);
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        assert_eq!(
            jwt_audience(&token).as_deref(),
            Some("https://management.core.windows.net/")
        );
        assert_eq!(jwt_audience("opaque"), None);
        assert_eq!(
            audience_of(APP_SERVICE_SCOPE),
            "https://appservice.azure.com"
        );
        assert_eq!(
            without_query("https://st.blob.core.windows.net/p/app.zip?sv=2022&sig=SECRET"),
            "https://st.blob.core.windows.net/p/app.zip"
        );
        assert!(is_deployment_id("7c1a2b3c-4d5e"));
        assert!(!is_deployment_id("../x"));
    }
}
