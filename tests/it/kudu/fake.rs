//! A Kudu (App Service SCM site) and the app it deploys to, served on 127.0.0.1 for the
//! tests, as strict as the real service in what nubes relies on. Sources (projectkudu/kudu
//! at 7e7e310, Azure/functions-action at c50a234, azure-functions-core-tools at 3ee97a6):
//!
//! * Authentication: only an Entra ID token whose `aud` is the App Service audience
//!   (`https://appservice.azure.com`, or its app ID) and that has not expired; anything
//!   else gets 401, as vscode-azuretools PR #2258 says Kudu will for ARM tokens. A
//!   `legacy` site also takes the ARM audience (what Kudu accepted so far).
//! * `POST /api/zipdeploy` (Kudu.Services/Deployment/PushDeploymentController.cs
//!   `ZipPushDeploy`, lines 64-105): the body must be a zip; it is unpacked into wwwroot
//!   (`Fetch = LocalZipHandler`, lines 89 and 638-673), whatever its extension, so a jar
//!   lands as `META-INF/`, `BOOT-INF/`, ... and no `app.jar`. `isAsync=true` answers 202
//!   and a `Location` of `/api/deployments/latest?deployer=...&time=...` (lines 575-580);
//!   without it the deployment runs first (200, lines 598-599).
//! * `POST /api/publish` (`OneDeploy`, lines 170-437): `type` decides (line 220, parsed
//!   case-insensitively; unknown -> 400 `type='x' not recognized`, missing -> 400 line
//!   428): `jar` -> `app.jar` (lines 303-310; Java SE stack only unless `ignorestack`,
//!   OneDeployHelper.cs `EnsureValidStack` lines 39-53 and its message), `war` -> `app.war`
//!   (lines 255-301, no `path`), `ear` -> `app.ear` (JBoss only, 312-319), `zip` -> unpacked,
//!   clean by default (386-419), `static` -> the file at `path`, which is required and may
//!   not end in `/` (347-384), `startup` -> the startup script (331-334). The query flag is
//!   `async` (line 172), not `isAsync`.
//! * Flex Consumption sites (functions-action `oneDeployFlex`, azure-cli
//!   `enable_zip_deploy_flex`): `/api/publish` takes the package and answers 202 with the
//!   deployment ID as body; there is no `/api/zipdeploy` (404).
//! * 409 (Kudu.Core/Deployment/FetchDeploymentManager.cs `FetchDeploy`, lines 63-142;
//!   PushDeploymentController.cs lines 589-610; texts from Kudu.Services/Resources.resx
//!   lines 279-317): `WEBSITE_RUN_FROM_PACKAGE` (or `WEBSITE_RUN_FROM_ZIP`) set to a URL
//!   refuses every deployment (line 81; DeploymentSettingsExtension.cs lines 334-352); an
//!   ongoing auto swap (line 114; PostDeploymentHelper.cs `IsAutoSwapOngoing`, 461-471); a
//!   deployment in progress (lines 104-105 and 140: a real one, or scripted).
//! * Status documents (`DeployResult`): `status` 0 Pending ... 4 Success from classic Kudu
//!   (Kudu.Contracts/Deployment/DeployStatus.cs lines 3-10), and on demand the newer values
//!   -1, 5, 6 (functions-action src/appservice-rest/Kudu/azure-app-kudu-service.ts lines
//!   10-16, core-tools src/Cli/func/Common/DeployStatus.cs lines 6-16), `complete = true`.
//! * Deployment records (`GET /api/deployments/{id|latest}`, `DeployResult`): a zip
//!   deploy records the query's `message`, `author` and `deployer` (`ZipPushDeploy`,
//!   lines 66-94; defaults `Created via a push deployment`, Kudu's unknown value `N/A`,
//!   `ZipDeploy`; query names bind case-insensitively, as ASP.NET Web API's do), which
//!   reach the record through the `NullRepository` commit (line 914, DeploymentManager.cs
//!   line 596). OneDeploy takes none of them: its record says `OneDeploy` (lines
//!   232-244). For Flex Consumption, whose service is not Kudu's public source, only
//!   `Deployer` is recorded.
//! * ARR affinity: a request without the `ARRAffinity` cookie gets `Set-Cookie`
//!   `ARRAffinity` and `ARRAffinitySameSite`, as App Service's front end does.
//!
//! The app itself ([`FakeKudu::site_url`]) answers 200 when what was deployed can start:
//! a Java SE site needs `app.jar` in wwwroot with a `Main-Class` in its manifest (App
//! Service runs `java -jar /home/site/wwwroot/app.jar`); other sites need any file.
//! Otherwise 503, the "Application Error" page.

use std::collections::BTreeMap;
use std::io::{Cursor, Read as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The first deployment's ID; later ones get other IDs.
pub const DEPLOYMENT_ID: &str = "7c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";
pub const APP_SERVICE_AUDIENCE: &str = "https://appservice.azure.com";
/// The App Service audience's application ID (vscode-azuretools PR #2258).
pub const APP_SERVICE_APP_ID: &str = "abfa0a7c-a6b6-4736-8310-5855508787cd";
pub const ARM_AUDIENCE: &str = "https://management.core.windows.net/";
/// The affinity cookie value the front end hands out.
pub const AFFINITY: &str = "b2f5c0ffee0instance1";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// An unsigned JWT for `audience`, shaped like Entra ID's (what Azurite and these fakes
/// read; signatures cannot be checked without Entra ID).
pub fn token(audience: &str) -> String {
    let claims = json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "tid": TENANT,
        "oid": "0e9b1c2d-3f4a-5b6c-7d8e-9f0a1b2c3d4e",
        "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 3600,
    });
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims.to_string()),
        b64("signature")
    )
}

/// How deployments go.
#[derive(Clone, Debug)]
pub enum Script {
    /// Pending, Building, Deploying (one poll each), then Success.
    Succeed,
    /// Building for two polls, then Failed with these log lines; the last line's
    /// `details_url` holds `details`. `{authorization}` in a line is replaced by the
    /// request's Authorization header, like a careless server echoing what it got.
    Fail {
        lines: Vec<String>,
        details: Vec<String>,
    },
    /// The first upload gets 503, then as `Succeed`.
    UnavailableFirst,
    /// The first upload gets 429 with `Retry-After: 1`, then as `Succeed`.
    ThrottledFirst,
    /// The first `n` uploads get 409 (another deployment in progress), then as `Succeed`.
    Conflict(u32),
    /// Building forever.
    Never,
    /// Every request gets 403.
    Forbidden,
    /// Building for one poll, then this status with `complete = true`.
    EndsWith(i64),
    /// The first upload is taken (its deployment starts and succeeds) but the connection
    /// is dropped before any answer.
    DropAfterUpload,
}

/// What runs the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    JavaSe,
    Node,
}

/// The app and its settings.
#[derive(Clone, Debug)]
pub struct Site {
    pub stack: Stack,
    /// Flex Consumption: `/api/publish` only.
    pub flex: bool,
    /// `WEBSITE_RUN_FROM_PACKAGE`.
    pub run_from_package: Option<String>,
    /// An auto swap is running (its lock file is fresh).
    pub auto_swap_ongoing: bool,
    /// Also accepts ARM-audience tokens.
    pub legacy: bool,
}

impl Default for Site {
    fn default() -> Site {
        Site {
            stack: Stack::Node,
            flex: false,
            run_from_package: None,
            auto_swap_ongoing: false,
            legacy: false,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The bearer token was accepted.
    pub authorized: bool,
    /// The token's `aud`, when it was a JWT.
    pub audience: Option<String>,
    pub content_type: Option<String>,
    /// The `Cookie` header.
    pub cookie: Option<String>,
    /// The answer (0: the connection was dropped).
    pub status: u16,
    pub at: Instant,
}

/// One deployment Kudu recorded.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub id: String,
    /// `zipdeploy`, `publish?type=jar`, ...
    pub via: String,
    /// The record's `message`, `author` and `deployer`.
    pub message: String,
    pub author: String,
    pub deployer: String,
    polls: u32,
}

/// What a deployment's record says about who made it (see the module doc).
struct Recorded {
    message: String,
    author: String,
    deployer: String,
}

impl Recorded {
    fn fixed(message: &str, deployer: &str) -> Recorded {
        Recorded {
            message: message.into(),
            author: UNKNOWN.into(),
            deployer: deployer.into(),
        }
    }

    /// `ZipPushDeploy`'s query parameters and their defaults.
    fn zip_deploy(query: &BTreeMap<String, String>) -> Recorded {
        let get = |k: &str, default: &str| query.get(k).cloned().unwrap_or_else(|| default.into());
        Recorded {
            message: get("message", "Created via a push deployment"),
            author: get("author", UNKNOWN),
            deployer: get("deployer", "ZipDeploy"),
        }
    }
}

/// Kudu's `Resources.Deployment_UnknownValue`.
const UNKNOWN: &str = "N/A";

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    uploads_tried: u32,
    /// Entry names of each accepted zip upload, or the error parsing it as a zip.
    uploads: Vec<Result<Vec<String>, String>>,
    deployments: Vec<Deployment>,
    wwwroot: BTreeMap<String, Vec<u8>>,
    startup: Option<Vec<u8>>,
    /// The stack, when changed since the start ([`FakeKudu::set_stack`]).
    stack: Option<Stack>,
}

struct Shared {
    state: Mutex<State>,
    base: String,
    script: Script,
    site: Site,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeKudu {
    /// `http://127.0.0.1:<port>`, the SCM URL for `Kudu::new`.
    pub scm_url: String,
    /// `http://127.0.0.1:<port>`, the app itself.
    pub site_url: String,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeKudu {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeKudu {
    /// A Node site on a dedicated plan.
    pub async fn start(script: Script) -> FakeKudu {
        Self::start_with(script, Site::default()).await
    }

    pub async fn start_with(script: Script, site: Site) -> FakeKudu {
        let scm = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let app = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let scm_url = format!("http://{}", scm.local_addr().expect("addr"));
        let site_url = format!("http://{}", app.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            base: scm_url.clone(),
            script,
            site,
        });
        let tasks = vec![
            serve(scm, shared.clone(), |s, r| Box::pin(handle(s, r))),
            serve(app, shared.clone(), |s, r| Box::pin(app_page(s, r))),
        ];
        FakeKudu {
            scm_url,
            site_url,
            shared,
            tasks,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.state().seen.clone()
    }

    pub fn posts(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    /// Entry names of every zip the server unpacked, in order.
    pub fn uploads(&self) -> Vec<Result<Vec<String>, String>> {
        self.shared.state().uploads.clone()
    }

    pub fn deployments(&self) -> Vec<Deployment> {
        self.shared.state().deployments.clone()
    }

    /// The files of wwwroot.
    pub fn wwwroot(&self) -> Vec<String> {
        self.shared.state().wwwroot.keys().cloned().collect()
    }

    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        self.shared.state().wwwroot.get(name).cloned()
    }

    /// What a slot swap does to two slots' apps: their sites change places, so each
    /// SCM host name and app URL reaches the other's deployed content and deployment
    /// records (Kudu keeps them in the site's own `site/deployments`); the stack, a
    /// setting of each slot, and the requests each endpoint saw stay. For the in-test
    /// Resource Manager.
    pub fn swapper(&self, other: &FakeKudu) -> impl Fn() + Send + Sync + 'static {
        let (a, b) = (self.shared.clone(), other.shared.clone());
        move || {
            let mut x = a.state();
            let mut y = b.state();
            std::mem::swap(&mut x.wwwroot, &mut y.wwwroot);
            std::mem::swap(&mut x.startup, &mut y.startup);
            std::mem::swap(&mut x.deployments, &mut y.deployments);
        }
    }

    /// Stop answering: the SCM site and the app refuse connections from now on (their
    /// state stays, e.g. for a swap).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Change the app's stack (a slot-specific setting), e.g. production's runtime
    /// changed after a release was deployed.
    pub fn set_stack(&self, stack: Stack) {
        self.shared.state().stack = Some(stack);
    }

    /// Whether the app would start from what is deployed.
    pub fn healthy(&self) -> bool {
        healthy(&self.shared)
    }
}

type Reply = Response<Full<Bytes>>;
type Handler = fn(
    Arc<Shared>,
    Request<Incoming>,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Reply, std::io::Error>> + Send>,
>;

fn serve(listener: TcpListener, shared: Arc<Shared>, handler: Handler) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handler(shared.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// The `aud` of a bearer JWT that has not expired.
fn audience(authorization: &str) -> Option<String> {
    let token = authorization.strip_prefix("Bearer ")?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    if exp <= time::OffsetDateTime::now_utc().unix_timestamp() {
        return None;
    }
    claims.get("aud")?.as_str().map(str::to_string)
}

fn accepted_audience(site: &Site, aud: &str) -> bool {
    let aud = aud.trim_end_matches('/');
    aud == APP_SERVICE_AUDIENCE
        || aud == APP_SERVICE_APP_ID
        || (site.legacy
            && (aud == ARM_AUDIENCE.trim_end_matches('/') || aud == "https://management.azure.com"))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, std::io::Error> {
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header(hyper::header::AUTHORIZATION).unwrap_or_default();
    let aud = audience(&authorization);
    let cookie = header(hyper::header::COOKIE);
    let mut seen = Seen {
        method: req.method().to_string(),
        target: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorized: aud
            .as_deref()
            .is_some_and(|a| accepted_audience(&shared.site, a)),
        audience: aud,
        content_type: header(hyper::header::CONTENT_TYPE),
        cookie: cookie.clone(),
        status: 0,
        at: Instant::now(),
    };
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let reply = if !seen.authorized {
        Some(text(
            401,
            "Unauthorized: the token's audience is not accepted by this site",
        ))
    } else if matches!(shared.script, Script::Forbidden) {
        Some(text(
            403,
            "Forbidden: the caller lacks permission on this site",
        ))
    } else {
        route(&shared, &seen.method, &path, &query, &body, &authorization)
    };
    let Some(mut reply) = reply else {
        // The upload was taken; the answer is lost with the connection.
        shared.state().seen.push(seen);
        return Err(std::io::Error::other("connection dropped after the upload"));
    };
    if !cookie
        .as_deref()
        .is_some_and(|c| c.contains("ARRAffinity="))
    {
        for c in [
            format!("ARRAffinity={AFFINITY};Path=/;HttpOnly;Secure;Domain=127.0.0.1"),
            format!(
                "ARRAffinitySameSite={AFFINITY};Path=/;HttpOnly;SameSite=None;Secure;Domain=127.0.0.1"
            ),
        ] {
            reply
                .headers_mut()
                .append("set-cookie", c.parse().expect("header"));
        }
    }
    seen.status = reply.status().as_u16();
    shared.state().seen.push(seen);
    Ok(reply)
}

/// `None`: drop the connection without answering.
fn route(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
    authorization: &str,
) -> Option<Reply> {
    let deployments = "/api/deployments/";
    Some(match (method, path) {
        ("POST" | "PUT", "/api/zipdeploy") if shared.site.flex => text(404, "Not Found"),
        ("POST" | "PUT", "/api/zipdeploy") => {
            let is_async = flag(query, "isasync");
            let recorded = Recorded::zip_deploy(query);
            return upload(shared, body, "zipdeploy", is_async, recorded, |state| {
                unpack(state, body, false)
            });
        }
        ("POST" | "PUT", "/api/publish") => return publish(shared, query, body),
        ("GET", p) if p.starts_with(deployments) => {
            let rest = &p[deployments.len()..];
            let parts: Vec<&str> = rest.split('/').collect();
            match parts.as_slice() {
                [id] => status(shared, id),
                [id, "log"] => log(shared, id, authorization),
                [id, "log", "details"] => details(shared, id),
                _ => text(404, "no such route"),
            }
        }
        _ => text(404, "no such route"),
    })
}

fn flag(query: &BTreeMap<String, String>, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn publish(shared: &Shared, query: &BTreeMap<String, String>, body: &Bytes) -> Option<Reply> {
    if shared.site.flex {
        // Flex: the package is a zip; no `type`, the answer is the deployment ID.
        if let Some(t) = query.get("type").filter(|t| !t.eq_ignore_ascii_case("zip")) {
            return Some(text(400, &format!("Artifact type '{t}' not supported")));
        }
        let deployer = query.get("deployer").map_or("OneDeploy", String::as_str);
        let recorded = Recorded::fixed("Created via a push deployment", deployer);
        return upload(shared, body, "publish (flex)", true, recorded, |state| {
            unpack(state, body, true)
        })
        .map(|reply| {
            if reply.status() != StatusCode::ACCEPTED {
                return reply;
            }
            let id = shared
                .state()
                .deployments
                .last()
                .map(|d| d.id.clone())
                .unwrap_or_default();
            text(202, &id)
        });
    }
    let is_async = flag(query, "async");
    let ignore_stack = flag(query, "ignorestack");
    let clean = query.get("clean").map(|c| c.eq_ignore_ascii_case("true"));
    let Some(kind) = query.get("type").map(|t| t.to_ascii_lowercase()) else {
        return Some(text(400, "Artifact type '' not supported"));
    };
    let body = body.clone();
    let stack = stack_of(shared);
    let via = format!("publish?type={kind}");
    let one = || Recorded::fixed("OneDeploy", "OneDeploy");
    let store = |name: &'static str| {
        let body = body.clone();
        move |state: &mut State| -> Result<(), String> {
            if clean == Some(true) {
                state.wwwroot.clear();
            }
            state.wwwroot.insert(name.to_string(), body.to_vec());
            Ok(())
        }
    };
    match kind.as_str() {
        "jar" if stack != Stack::JavaSe && !ignore_stack => Some(text(
            400,
            "Artifact type = 'Jar' cannot be deployed to stack = 'NODE'. Site should be \
             configured to run with stack = JAVA",
        )),
        "jar" => upload(shared, &body, &via, is_async, one(), store("app.jar")),
        "war" if stack != Stack::JavaSe && !ignore_stack => Some(text(
            400,
            "Artifact type = 'War' cannot be deployed to stack = 'NODE'. Site should be \
             configured to run with stack = TOMCAT or JBOSSEAP or JAVA",
        )),
        "war" => upload(shared, &body, &via, is_async, one(), store("app.war")),
        "ear" if !ignore_stack => Some(text(
            400,
            "Artifact type = 'Ear' cannot be deployed to stack = 'NODE'. Site should be \
             configured to run with stack = JBOSSEAP",
        )),
        "ear" => upload(shared, &body, &via, is_async, one(), store("app.ear")),
        "zip" => {
            let clean = clean.unwrap_or(true);
            upload(shared, &body.clone(), &via, is_async, one(), move |state| {
                unpack(state, &body, clean)
            })
        }
        "static" => {
            let Some(path) = query.get("path").cloned().filter(|p| !p.trim().is_empty()) else {
                return Some(text(400, "Path must be defined for type=static"));
            };
            if path.ends_with('/') {
                return Some(text(400, "Path cannot end with a '/'"));
            }
            upload(shared, &body.clone(), &via, is_async, one(), move |state| {
                state.wwwroot.insert(path, body.to_vec());
                Ok(())
            })
        }
        "startup" => upload(shared, &body.clone(), &via, is_async, one(), move |state| {
            state.startup = Some(body.to_vec());
            Ok(())
        }),
        other => Some(text(400, &format!("type='{other}' not recognized"))),
    }
}

/// The checks of `FetchDeploy`, then the deployment is recorded and `apply` runs on the
/// site's files. `None`: the connection is to be dropped (the upload was taken).
fn upload(
    shared: &Shared,
    body: &Bytes,
    via: &str,
    is_async: bool,
    recorded: Recorded,
    apply: impl FnOnce(&mut State) -> Result<(), String>,
) -> Option<Reply> {
    let mut state = shared.state();
    state.uploads_tried += 1;
    let n = state.uploads_tried;
    let refuse = match shared.script {
        Script::UnavailableFirst if n == 1 => Some((503, "Service Unavailable", None)),
        Script::ThrottledFirst if n == 1 => Some((429, "Too Many Requests", Some("1"))),
        _ => None,
    };
    if let Some((code, body, retry_after)) = refuse {
        let mut reply = text(code, body);
        if let Some(seconds) = retry_after {
            reply
                .headers_mut()
                .insert("retry-after", seconds.parse().expect("header"));
        }
        return Some(reply);
    }
    if shared
        .site
        .run_from_package
        .as_deref()
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("http"))
    {
        return Some(text(
            409,
            "Run-From-Zip is set to a remote URL using WEBSITE_USE_ZIP app setting. Deployment \
             is not supported in this configuration.",
        ));
    }
    if shared.site.auto_swap_ongoing {
        return Some(text(
            409,
            "There is an auto swap deployment currently ongoing please try again when it \
             completes.",
        ));
    }
    let scripted_conflict = matches!(shared.script, Script::Conflict(c) if n <= c);
    let running = state
        .deployments
        .last()
        .is_some_and(|d| !is_complete(&shared.script, d.polls));
    if scripted_conflict || running {
        return Some(text(
            409,
            "There is a deployment currently in progress. Please try again when it completes.",
        ));
    }
    if body.is_empty() {
        return Some(text(400, "the request body is empty"));
    }
    if let Err(e) = apply(&mut state) {
        return Some(text(400, &e));
    }
    let id = if state.deployments.is_empty() {
        DEPLOYMENT_ID.to_string()
    } else {
        format!("{:040x}", state.deployments.len() + 1)
    };
    state.deployments.push(Deployment {
        id,
        via: via.to_string(),
        message: recorded.message,
        author: recorded.author,
        deployer: recorded.deployer,
        polls: 0,
    });
    if matches!(shared.script, Script::DropAfterUpload) && n == 1 {
        return None;
    }
    if !is_async {
        return Some(text(200, ""));
    }
    let mut reply = text(202, "");
    let location = format!(
        "{}/api/deployments/latest?deployer=Push-Deployer&time=2026-01-01_00-00-00Z",
        shared.base
    );
    reply
        .headers_mut()
        .insert("location", location.parse().expect("header"));
    Some(reply)
}

/// Unpack a zip into wwwroot, as Kudu's `LocalZipHandler` does with any body.
fn unpack(state: &mut State, body: &Bytes, clean: bool) -> Result<(), String> {
    let parsed = entries(body);
    state
        .uploads
        .push(parsed.clone().map(|e| e.into_keys().collect()));
    let files = parsed.map_err(|_| "the body is not a zip file".to_string())?;
    if clean {
        state.wwwroot.clear();
    }
    for (name, bytes) in files {
        if !name.ends_with('/') {
            state.wwwroot.insert(name, bytes);
        }
    }
    Ok(())
}

fn entries(body: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(body.to_vec())).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        let name = file.name().map_err(|e| e.to_string())?.to_string();
        out.insert(name, bytes);
    }
    Ok(out)
}

/// The app's stack now.
fn stack_of(shared: &Shared) -> Stack {
    shared.state().stack.unwrap_or(shared.site.stack)
}

fn healthy(shared: &Shared) -> bool {
    let stack = stack_of(shared);
    let state = shared.state();
    match stack {
        Stack::JavaSe => state.wwwroot.get("app.jar").is_some_and(|jar| {
            entries(jar).ok().is_some_and(|files| {
                files.get("META-INF/MANIFEST.MF").is_some_and(|m| {
                    String::from_utf8_lossy(m)
                        .lines()
                        .any(|l| l.starts_with("Main-Class:"))
                })
            })
        }),
        Stack::Node => !state.wwwroot.is_empty(),
    }
}

async fn app_page(shared: Arc<Shared>, _req: Request<Incoming>) -> Result<Reply, std::io::Error> {
    Ok(if healthy(&shared) {
        text(200, "Whitelabel: the app is up")
    } else {
        text(503, ":( Application Error")
    })
}

/// The status sequence of the script: `(status, text, complete)` at poll `polls` (1-based).
fn progress(script: &Script, polls: u32) -> (i64, &'static str, bool) {
    match script {
        Script::Never => (1, "Building", false),
        Script::Fail { .. } if polls <= 2 => (1, "Building", false),
        Script::Fail { .. } => (3, "Deployment failed: npm install exited with code 1", true),
        Script::EndsWith(_) if polls <= 1 => (1, "Building", false),
        Script::EndsWith(code) => (*code, "Deployment ended", true),
        _ => match polls {
            1 => (0, "Received", false),
            2 => (1, "Building", false),
            3 => (2, "Deploying", false),
            _ => (4, "", true),
        },
    }
}

fn is_complete(script: &Script, polls: u32) -> bool {
    // Polls stand in for time: a deployment nobody polled yet has just started.
    polls >= 1 && progress(script, polls).2
}

fn status(shared: &Shared, which: &str) -> Reply {
    let mut state = shared.state();
    let index = if which == "latest" {
        state.deployments.len().checked_sub(1)
    } else {
        state.deployments.iter().position(|d| d.id == which)
    };
    let Some(index) = index else {
        return text(404, "Not Found");
    };
    let deployment = &mut state.deployments[index];
    deployment.polls += 1;
    let (code, text_, complete) = progress(&shared.script, deployment.polls);
    let id = deployment.id.clone();
    let (author, deployer, message) = (
        deployment.author.clone(),
        deployment.deployer.clone(),
        deployment.message.clone(),
    );
    json_reply(
        200,
        json!({
            "id": id,
            "status": code,
            "status_text": text_,
            "author": author,
            "deployer": deployer,
            "message": message,
            "progress": "",
            "received_time": "2026-01-01T00:00:00.0000000Z",
            "start_time": "2026-01-01T00:00:01.0000000Z",
            "end_time": if complete { json!("2026-01-01T00:00:09.0000000Z") } else { json!(null) },
            "complete": complete,
            "active": complete && code == 4,
            "is_temp": false,
            "is_readonly": true,
            "url": format!("{}/api/deployments/{id}", shared.base),
            "log_url": format!("{}/api/deployments/{id}/log", shared.base),
            "site_name": "app-demo-alice",
        }),
    )
}

fn log(shared: &Shared, id: &str, authorization: &str) -> Reply {
    let Script::Fail { lines, .. } = &shared.script else {
        return json_reply(200, json!([]));
    };
    let last = lines.len().saturating_sub(1);
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            json!({
                "log_time": "2026-01-01T00:00:05.0000000Z",
                "id": format!("entry-{i}"),
                "message": line.replace("{authorization}", authorization),
                "type": if i == last { 2 } else { 0 },
                "details_url": if i == last {
                    json!(format!("{}/api/deployments/{id}/log/details", shared.base))
                } else {
                    json!(null)
                },
            })
        })
        .collect();
    json_reply(200, serde_json::Value::Array(entries))
}

fn details(shared: &Shared, _id: &str) -> Reply {
    let Script::Fail { details, .. } = &shared.script else {
        return json_reply(200, json!([]));
    };
    let entries: Vec<serde_json::Value> = details
        .iter()
        .map(|line| {
            json!({
                "log_time": "2026-01-01T00:00:06.0000000Z",
                "id": "detail",
                "message": line,
                "type": 2,
                "details_url": null,
            })
        })
        .collect();
    json_reply(200, serde_json::Value::Array(entries))
}

fn text(code: u16, body: &str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = StatusCode::from_u16(code).expect("status");
    reply
}

fn json_reply(code: u16, value: serde_json::Value) -> Reply {
    let mut reply = text(code, &value.to_string());
    reply
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    reply
}
