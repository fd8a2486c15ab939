//! A small Kudu (App Service SCM site) served on 127.0.0.1 for the tests, following the
//! documented zip deploy protocol: `POST /api/zipdeploy?isAsync=true` with a zip body
//! answers 202 and a `Location` to poll (`/api/deployments/latest?deployer=...`); the
//! status document carries `id`, numeric `status` (0 Pending, 1 Building, 2 Deploying,
//! 3 Failed, 4 Success), `complete`, `status_text` and `log_url`; the log is a JSON array
//! of `{log_time, id, message, type, details_url}` with nested entries at `details_url`.
//! Each upload is parsed as a zip and its entry names recorded. Every request is
//! recorded; one without the expected bearer token gets 401.

use std::convert::Infallible;
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const DEPLOYMENT_ID: &str = "7c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";

/// How the site answers.
#[derive(Clone, Debug)]
pub enum Script {
    /// 202, then Pending, Building, Deploying (one poll each), then Success.
    Succeed,
    /// 202, Building for two polls, then Failed with these log lines; the last line's
    /// `details_url` holds `details`. `{authorization}` in a line is replaced by the
    /// request's Authorization header, like a careless server echoing what it got.
    Fail {
        lines: Vec<String>,
        details: Vec<String>,
    },
    /// The first POST gets 503, then as `Succeed`.
    UnavailableFirst,
    /// The first POST gets 429 with `Retry-After: 1`, then as `Succeed`.
    ThrottledFirst,
    /// The first `n` POSTs get 409 (a deployment in progress), then as `Succeed`.
    Conflict(u32),
    /// 202, then Building forever.
    Never,
    /// Every request gets 403.
    Forbidden,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The Authorization header was exactly `Bearer <expected token>`.
    pub authorized: bool,
    pub content_type: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    posts: u32,
    polls: u32,
    /// Entry names of each accepted upload, or the error parsing it as a zip.
    uploads: Vec<Result<Vec<String>, String>>,
}

struct Shared {
    state: Mutex<State>,
    token: String,
    base: String,
    script: Script,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeKudu {
    /// `http://127.0.0.1:<port>`, the SCM URL for `Kudu::new`.
    pub scm_url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeKudu {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKudu {
    pub async fn start(token: &str, script: Script) -> FakeKudu {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let scm_url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            token: token.into(),
            base: scm_url.clone(),
            script,
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeKudu {
            scm_url,
            shared,
            task,
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

    /// Entry names of every upload the server received, in order.
    pub fn uploads(&self) -> Vec<Result<Vec<String>, String>> {
        self.shared.state().uploads.clone()
    }
}

type Reply = Response<Full<Bytes>>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header(hyper::header::AUTHORIZATION).unwrap_or_default();
    let seen = Seen {
        method: req.method().to_string(),
        target: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorized: authorization == format!("Bearer {}", shared.token),
        content_type: header(hyper::header::CONTENT_TYPE),
        at: Instant::now(),
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    shared.state().seen.push(seen.clone());
    if !seen.authorized {
        return Ok(text(401, "Unauthorized"));
    }
    if matches!(shared.script, Script::Forbidden) {
        return Ok(text(
            403,
            "Forbidden: the caller lacks permission on this site",
        ));
    }
    let reply = match (seen.method.as_str(), seen.target.as_str()) {
        ("POST", "/api/zipdeploy?isAsync=true") => zipdeploy(&shared, &body),
        ("GET", t) if t.starts_with("/api/deployments/latest") => status(&shared),
        ("GET", t) if t == format!("/api/deployments/{DEPLOYMENT_ID}/log") => {
            log(&shared, &authorization)
        }
        ("GET", t) if t == format!("/api/deployments/{DEPLOYMENT_ID}/log/details") => {
            details(&shared)
        }
        _ => text(404, "no such route"),
    };
    Ok(reply)
}

fn zipdeploy(shared: &Shared, body: &Bytes) -> Reply {
    let mut state = shared.state();
    state.posts += 1;
    let refuse = match shared.script {
        Script::UnavailableFirst if state.posts == 1 => Some((503, None)),
        Script::ThrottledFirst if state.posts == 1 => Some((429, Some("1"))),
        Script::Conflict(n) if state.posts <= n => Some((409, None)),
        _ => None,
    };
    if let Some((code, retry_after)) = refuse {
        let mut reply = text(code, "try again later");
        if let Some(seconds) = retry_after {
            reply
                .headers_mut()
                .insert("retry-after", seconds.parse().expect("header"));
        }
        return reply;
    }
    let parsed = zip::ZipArchive::new(Cursor::new(body.to_vec()))
        .map_err(|e| e.to_string())
        .and_then(|archive| {
            archive
                .file_names()
                .map(|n| n.map(|n| n.to_string()).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()
        });
    let valid = parsed.is_ok();
    state.uploads.push(parsed);
    if !valid {
        return text(400, "the body is not a zip file");
    }
    let mut reply = text(202, "");
    let location = format!(
        "{}/api/deployments/latest?deployer=Push-Deployer&time=2026-01-01_00-00-00Z",
        shared.base
    );
    reply
        .headers_mut()
        .insert("location", location.parse().expect("header"));
    reply
}

fn status(shared: &Shared) -> Reply {
    let mut state = shared.state();
    state.polls += 1;
    let polls = state.polls;
    let (status, text_, complete) = match &shared.script {
        Script::Never => (1, "Building", false),
        Script::Fail { .. } if polls <= 2 => (1, "Building", false),
        Script::Fail { .. } => (3, "Deployment failed: npm install exited with code 1", true),
        _ => match polls {
            1 => (0, "Received", false),
            2 => (1, "Building", false),
            3 => (2, "Deploying", false),
            _ => (4, "", true),
        },
    };
    json_reply(
        200,
        json!({
            "id": DEPLOYMENT_ID,
            "status": status,
            "status_text": text_,
            "author": "N/A",
            "deployer": "Push-Deployer",
            "message": "Created via a push deployment",
            "progress": "",
            "received_time": "2026-01-01T00:00:00.0000000Z",
            "start_time": "2026-01-01T00:00:01.0000000Z",
            "end_time": if complete { json!("2026-01-01T00:00:09.0000000Z") } else { json!(null) },
            "complete": complete,
            "active": complete && status == 4,
            "is_temp": false,
            "is_readonly": true,
            "url": format!("{}/api/deployments/{DEPLOYMENT_ID}", shared.base),
            "log_url": format!("{}/api/deployments/{DEPLOYMENT_ID}/log", shared.base),
            "site_name": "app-demo-alice",
        }),
    )
}

fn log(shared: &Shared, authorization: &str) -> Reply {
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
                    json!(format!("{}/api/deployments/{DEPLOYMENT_ID}/log/details", shared.base))
                } else {
                    json!(null)
                },
            })
        })
        .collect();
    json_reply(200, serde_json::Value::Array(entries))
}

fn details(shared: &Shared) -> Reply {
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
