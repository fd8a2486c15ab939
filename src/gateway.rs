//! The loopback gateway: Terraform's `http` state backend protocol served on
//! `127.0.0.1:<random port>` for the duration of one command, backed by a
//! [`StateStore`] under the env lock nubes already holds.
//!
//! GET → 200 state / 404 none; POST `?ID=` → write (409 when the lineage/serial guard
//! or the ETag condition refuses it); DELETE → tombstone + delete; LOCK/UNLOCK → 200,
//! or 423 with the holder's lock info. Every request must carry the per-run random
//! credentials (HTTP basic auth), which reach Terraform only through `TF_HTTP_*`
//! environment variables; anything else gets 401.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::secrets;
use crate::state::head::{HeadFeed, StateHead, check_write};
use crate::state::{BodyHint, LockInfo, LockToken, StateStore, StoredStream, WriteConflict};

/// Largest state document accepted (Terraform states of a few hundred MiB exist; this
/// stops a runaway client from filling storage: bodies stream, so memory is not at stake).
const MAX_BODY: u64 = 1 << 30;
/// Largest LOCK/UNLOCK body (lock info JSON), read into memory.
const MAX_LOCK_BODY: usize = 1 << 20;
/// Stored states up to this size are read whole (one request, parsed in memory); larger
/// ones stream to Terraform.
const SMALL_STATE: u64 = 4 << 20;

/// Every response body: small ones whole, stored states streamed.
type GwBody = UnsyncBoxBody<Bytes, std::io::Error>;
const USERNAME: &str = "nubes";

pub struct Gateway {
    addr: SocketAddr,
    path: String,
    password: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

/// What happened through the gateway, for the command's own report.
#[derive(Debug, Default)]
pub struct Report {
    pub writes: usize,
    /// Requests nubes refused or could not serve, each with the reason shown to the user.
    pub problems: Vec<String>,
}

/// What nubes last saw stored: the ETag the next write must match and the head the
/// guard compares with. `None` until the first read.
#[derive(Clone)]
struct Known {
    etag: Option<String>,
    head: Option<StateHead>,
}

struct Shared {
    store: Arc<dyn StateStore>,
    token: LockToken,
    path: String,
    expected_auth: String,
    /// Terraform's own lock, taken inside nubes's env lock.
    inner_lock: Mutex<Option<LockInfo>>,
    known: Mutex<Option<Known>>,
    report: std::sync::Mutex<Report>,
}

impl Gateway {
    pub async fn start(store: Arc<dyn StateStore>, token: LockToken) -> Result<Gateway> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::failed(format!("cannot open the loopback state gateway: {e}")))?;
        let addr = listener.local_addr()?;
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let password = URL_SAFE_NO_PAD.encode(raw);
        secrets::register(&password);
        if crate::ui::in_github_actions() {
            // nubes scrubs its own output, but Terraform writes to the job log directly
            // (a provisioner could print its environment): have GitHub hide it too.
            eprintln!("::add-mask::{password}");
        }
        let expected_auth = format!("Basic {}", B64.encode(format!("{USERNAME}:{password}")));
        secrets::register(&expected_auth);
        let path = format!("/state/{}", token.env);
        let shared = Arc::new(Shared {
            store,
            token,
            path: path.clone(),
            expected_auth,
            inner_lock: Mutex::new(None),
            known: Mutex::new(None),
            report: std::sync::Mutex::new(Report::default()),
        });
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, shared.clone(), rx));
        tracing::debug!("state gateway listening on {addr}");
        Ok(Gateway {
            addr,
            path,
            password,
            shutdown: Some(tx),
            task,
            shared,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// The environment that points Terraform's `http` backend at this gateway.
    pub fn terraform_env(&self) -> Vec<(&'static str, String)> {
        let url = self.url();
        vec![
            ("TF_HTTP_ADDRESS", url.clone()),
            ("TF_HTTP_LOCK_ADDRESS", url.clone()),
            ("TF_HTTP_UNLOCK_ADDRESS", url),
            ("TF_HTTP_LOCK_METHOD", "LOCK".into()),
            ("TF_HTTP_UNLOCK_METHOD", "UNLOCK".into()),
            ("TF_HTTP_UPDATE_METHOD", "POST".into()),
            ("TF_HTTP_USERNAME", USERNAME.into()),
            ("TF_HTTP_PASSWORD", self.password.clone()),
            // nubes already retries storage for up to `[state] timeout` behind each
            // request. Terraform's own retries (2, backing off up to 30 s) could only help
            // when the gateway is gone, i.e. nubes died: then they keep an orphaned
            // Terraform alive for seconds before it saves errored.tfstate and exits.
            ("TF_HTTP_RETRY_MAX", "0".into()),
        ]
    }

    /// Problems so far (refused or failed requests), for an error message while the
    /// gateway still runs.
    pub fn problems(&self) -> Vec<String> {
        self.shared
            .report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .problems
            .clone()
    }

    /// Stop listening and return what happened.
    pub async fn stop(mut self) -> Report {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        std::mem::take(&mut *self.shared.report.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    // Terraform has exited by now; drop any idle keep-alive connections.
    connections.shutdown().await;
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<GwBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

fn json_reply(status: StatusCode, info: &LockInfo) -> Response<GwBody> {
    let mut r = reply(status, serde_json::to_vec(info).unwrap_or_default());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<GwBody> {
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .is_some_and(|v| constant_time_eq(v.as_bytes(), shared.expected_auth.as_bytes()));
    if !authorized {
        let mut r = reply(StatusCode::UNAUTHORIZED, "unauthorized\n");
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"nubes\""),
        );
        return r;
    }
    if req.uri().path() != shared.path {
        return reply(StatusCode::NOT_FOUND, "not found\n");
    }
    let method = req.method().as_str().to_string();
    let id = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "ID")
            .map(|(_, v)| v.to_string())
    });
    let md5 = req
        .headers()
        .get("content-md5")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req.into_body();
    // hyper holds the body to its Content-Length: exact when one was sent.
    let len = hyper::body::Body::size_hint(&body).exact();
    match method.as_str() {
        "GET" => get(shared).await,
        // The state document streams through to storage as it arrives.
        "POST" => post(&shared, id, md5, len, body).await,
        "DELETE" => delete(&shared).await,
        "LOCK" | "UNLOCK" => {
            let body = match Limited::new(body, MAX_LOCK_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {e}\n"),
                    );
                }
            };
            if method == "LOCK" {
                lock(&shared, body).await
            } else {
                unlock(&shared, body).await
            }
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

/// A storage error's hint, to go with it into Terraform's error and nubes's report.
fn hint_of(e: &Error) -> String {
    e.hint_text().map(|h| format!(" ({h})")).unwrap_or_default()
}

impl Shared {
    fn problem(&self, text: String) {
        tracing::error!("{text}");
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .problems
            .push(text);
    }

    fn env(&self) -> &str {
        self.token.env.as_str()
    }
}

/// The stored state, ready to stream, with the verdict on its head: from the store when
/// it can vouch for it, otherwise read once through the parser before it is served.
async fn open(shared: &Shared) -> crate::error::Result<Option<Opened>> {
    let env = &shared.token.env;
    for _ in 0..3 {
        let Some(stored) = shared.store.read_stream(env).await? else {
            return Ok(None);
        };
        if let Some(head) = stored.head.clone() {
            return Ok(Some(Opened::Stream(stored, Ok(head))));
        }
        if stored.len <= SMALL_STATE {
            let etag = stored.etag;
            let bytes: Vec<Bytes> = stored.body.try_collect().await?;
            let bytes = Bytes::from(bytes.concat());
            let head = StateHead::parse(&bytes);
            return Ok(Some(Opened::Whole(etag, bytes, head)));
        }
        // Larger, and not vouched for (written outside nubes): read it through the
        // parser first, then serve it if it did not change meanwhile.
        let etag = stored.etag.clone();
        let mut feed = HeadFeed::start();
        let mut body = stored.body;
        while let Some(piece) = body.try_next().await? {
            if feed.feed(piece).await.is_err() {
                break; // refused already: the verdict is all that is needed
            }
        }
        let head = feed.finish().await;
        match shared.store.read_stream(env).await? {
            None => return Ok(None),
            Some(again) if again.etag == etag => return Ok(Some(Opened::Stream(again, head))),
            Some(_) => continue,
        }
    }
    Err(Error::failed(format!(
        "reading the state of `{env}`: it kept changing while nubes read it"
    )))
}

enum Opened {
    Whole(String, Bytes, Result<StateHead, String>),
    Stream(StoredStream, Result<StateHead, String>),
}

impl Opened {
    fn etag(&self) -> &str {
        match self {
            Opened::Whole(etag, ..) => etag,
            Opened::Stream(s, _) => &s.etag,
        }
    }

    fn head(&self) -> &Result<StateHead, String> {
        match self {
            Opened::Whole(.., head) | Opened::Stream(_, head) => head,
        }
    }
}

async fn get(shared: Arc<Shared>) -> Response<GwBody> {
    let mut known = shared.known.lock().await;
    let opened = match open(&shared).await {
        Ok(Some(opened)) => opened,
        Ok(None) => {
            *known = Some(Known {
                etag: None,
                head: None,
            });
            return reply(StatusCode::NOT_FOUND, "");
        }
        Err(e) => {
            let text = format!(
                "reading the state of `{}` failed: {e}{}",
                shared.env(),
                hint_of(&e)
            );
            shared.problem(text.clone());
            return reply(StatusCode::SERVICE_UNAVAILABLE, text);
        }
    };
    let head = match opened.head() {
        Ok(head) => head.clone(),
        Err(why) => {
            let text = format!(
                "the stored state of `{}` is corrupt ({why}); nubes will not hand it to Terraform. \
                 Restore a kept version: `nubes state history {0}` then `nubes state restore {0} <VERSION>`",
                shared.env()
            );
            shared.problem(text.clone());
            return reply(StatusCode::INTERNAL_SERVER_ERROR, text);
        }
    };
    *known = Some(Known {
        etag: Some(opened.etag().to_string()),
        head: Some(head),
    });
    drop(known);
    let mut r = match opened {
        Opened::Whole(_, bytes, _) => reply(StatusCode::OK, bytes),
        Opened::Stream(stored, _) => {
            let len = stored.len;
            let failed = shared.clone();
            let body = stored.body.map_ok(Frame::data).map_err(move |e| {
                // Terraform sees the connection break off; the user sees why.
                failed.problem(format!(
                    "serving the state of `{}` failed: {e}",
                    failed.env()
                ));
                std::io::Error::other(e.to_string())
            });
            let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(body)));
            r.headers_mut().insert(
                hyper::header::CONTENT_LENGTH,
                hyper::header::HeaderValue::from(len),
            );
            r
        }
    };
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Terraform's POST body on its way to storage: every piece is counted, MD5-hashed and
/// fed to the head parser as it passes, so the whole document is checked without being
/// held.
struct Received {
    body: Incoming,
    len: u64,
    /// Hashing as it passes, unless storage checks the declared MD5.
    md5: Option<Md5>,
    feed: HeadFeed,
    /// Why the body could not be read, when it could not.
    failed: Option<String>,
}

impl Received {
    /// Reads what is left of the body and drops it, up to [`MAX_BODY`] in all.
    async fn drain(&mut self) {
        while self.len <= MAX_BODY {
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(piece) = frame.into_data() {
                        self.len += piece.len() as u64;
                    }
                }
                _ => return,
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::state::Body for Received {
    async fn next_piece(&mut self) -> crate::error::Result<Option<Bytes>> {
        loop {
            let frame = match self.body.frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    let why = format!("cannot read the request body: {e}");
                    self.failed = Some(why.clone());
                    return Err(Error::failed(why));
                }
            };
            let Ok(piece) = frame.into_data() else {
                continue; // trailers
            };
            if piece.is_empty() {
                continue;
            }
            self.len += piece.len() as u64;
            if self.len > MAX_BODY {
                let why = format!(
                    "the state document is larger than {} MiB, more than nubes accepts",
                    MAX_BODY >> 20
                );
                self.failed = Some(why.clone());
                return Err(Error::failed(why));
            }
            if let Some(md5) = &mut self.md5 {
                md5.update(&piece);
            }
            // A document the parser has refused goes no further: not one more block of
            // it is sent to storage (and nothing staged is ever committed).
            if let Err(why) = self.feed.feed(piece.clone()).await {
                self.failed = Some(why.clone());
                return Err(Error::input(why));
            }
            return Ok(Some(piece));
        }
    }
}

async fn post(
    shared: &Shared,
    id: Option<String>,
    md5: Option<String>,
    len: Option<u64>,
    body: Incoming,
) -> Response<GwBody> {
    // Terraform declares every document's MD5. Storage that checks a declared MD5 itself
    // spares nubes hashing the document; otherwise nubes hashes it as it passes.
    let declared = match md5.as_deref() {
        None => None,
        Some(m) => match B64
            .decode(m.trim())
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
        {
            Some(m) => Some(m),
            None => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Content-MD5 is not the base64 of an MD5 (16 bytes)\n",
                );
            }
        },
    };
    let hint = BodyHint { len, md5: declared };
    let hash_here = hint.declared().is_none() || !shared.store.verifies_declared_md5();
    {
        let inner = shared.inner_lock.lock().await;
        if let Some(held) = inner.as_ref()
            && id.as_deref() != Some(held.id.as_str())
        {
            return json_reply(StatusCode::LOCKED, held);
        }
    }
    // One write at a time, against what was last seen.
    let mut known = shared.known.lock().await;
    let current = match known.clone() {
        Some(k) => k,
        None => match open(shared).await {
            Ok(None) => Known {
                etag: None,
                head: None,
            },
            Ok(Some(opened)) => Known {
                etag: Some(opened.etag().to_string()),
                head: opened.head().clone().ok(),
            },
            Err(e) => {
                let text = format!(
                    "reading the state of `{}` before writing failed: {e}{}",
                    shared.env(),
                    hint_of(&e)
                );
                shared.problem(text.clone());
                return reply(StatusCode::SERVICE_UNAVAILABLE, text);
            }
        },
    };
    let mut received = Received {
        body,
        len: 0,
        md5: hash_here.then(Md5::new),
        feed: HeadFeed::start(),
        failed: None,
    };
    // Staged, not yet the state: whatever goes wrong before the commit below leaves the
    // stored state as it was.
    let staged = match shared
        .store
        .stage(&shared.token, &mut received, &hint)
        .await
    {
        Ok(Ok(staged)) => staged,
        Ok(Err(conflict)) => return lost(shared, &mut known, conflict),
        Err(e) => {
            if let Some(why) = received.failed.take() {
                let text = format!("refused a state write for `{}`: {why}", shared.env());
                shared.problem(text.clone());
                if e.exit_code() == 2 {
                    // Refused by the parser part-way: the rest is read and dropped (not
                    // stored) so Terraform, still sending, gets this answer rather than
                    // a reset connection.
                    received.drain().await;
                }
                return reply(StatusCode::BAD_REQUEST, text);
            }
            let text = format!(
                "writing the state of `{}` failed: {e}{}; the stored state was kept",
                shared.env(),
                hint_of(&e)
            );
            shared.problem(text.clone());
            return reply(StatusCode::SERVICE_UNAVAILABLE, text);
        }
    };
    let parsed = received.feed.finish().await;
    let digest: [u8; 16] = match (received.md5.take(), declared) {
        (Some(hasher), declared) => {
            let digest: [u8; 16] = hasher.finalize().into();
            if declared.is_some_and(|d| d != digest) {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Content-MD5 does not match the body\n",
                );
            }
            digest
        }
        // Checked by storage at the commit (a mismatch is refused there, nothing stored).
        (None, Some(declared)) => declared,
        (None, None) => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "nubes neither hashed the document nor had its MD5\n",
            );
        }
    };
    let head = match parsed {
        Ok(h) => h,
        Err(why) => {
            let text = format!("refused a state write for `{}`: {why}", shared.env());
            shared.problem(text.clone());
            return reply(StatusCode::BAD_REQUEST, text);
        }
    };
    if let Err(refusal) = check_write(current.head.as_ref(), &head) {
        let text = format!("refused a state write for `{}`: {refusal}", shared.env());
        shared.problem(text.clone());
        return reply(StatusCode::CONFLICT, text);
    }
    match shared
        .store
        .commit(
            &shared.token,
            staged,
            current.etag.as_deref(),
            &head,
            digest,
        )
        .await
    {
        Ok(Ok(etag)) => {
            *known = Some(Known {
                etag: Some(etag),
                head: Some(head),
            });
            shared
                .report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .writes += 1;
            reply(StatusCode::OK, "")
        }
        Ok(Err(conflict)) => lost(shared, &mut known, conflict),
        Err(e) => {
            let text = format!(
                "writing the state of `{}` failed: {e}{}",
                shared.env(),
                hint_of(&e)
            );
            shared.problem(text.clone());
            reply(StatusCode::SERVICE_UNAVAILABLE, text)
        }
    }
}

/// A write storage refused: the document changed under nubes, the lock was lost, or
/// the body does not match its declared MD5.
fn lost(shared: &Shared, known: &mut Option<Known>, conflict: WriteConflict) -> Response<GwBody> {
    let status = match conflict {
        WriteConflict::Changed => StatusCode::CONFLICT,
        WriteConflict::LockLost => StatusCode::LOCKED,
        // Terraform's own check, as when nubes hashes the body: storage kept nothing.
        WriteConflict::Md5Mismatch => {
            return reply(
                StatusCode::BAD_REQUEST,
                "Content-MD5 does not match the body\n",
            );
        }
    };
    let text = format!(
        "refused a state write for `{}`: {conflict}; the stored state was kept",
        shared.env()
    );
    shared.problem(text.clone());
    // Force a fresh read next time.
    *known = None;
    reply(status, text)
}

async fn delete(shared: &Shared) -> Response<GwBody> {
    let mut known = shared.known.lock().await;
    match shared.store.delete(&shared.token).await {
        Ok(tombstone) => {
            if let Some(t) = tombstone {
                tracing::info!("kept the final state of `{}` as {t}", shared.env());
            }
            *known = Some(Known {
                etag: None,
                head: None,
            });
            reply(StatusCode::OK, "")
        }
        Err(e) => {
            let text = format!(
                "deleting the state of `{}` failed: {e}{}",
                shared.env(),
                hint_of(&e)
            );
            shared.problem(text.clone());
            reply(StatusCode::SERVICE_UNAVAILABLE, text)
        }
    }
}

async fn lock(shared: &Shared, body: Bytes) -> Response<GwBody> {
    let Ok(info) = serde_json::from_slice::<LockInfo>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "the lock request body is not lock info JSON\n",
        );
    };
    let mut inner = shared.inner_lock.lock().await;
    match inner.as_ref() {
        Some(held) if held.id != info.id => json_reply(StatusCode::LOCKED, held),
        _ => {
            *inner = Some(info);
            reply(StatusCode::OK, "")
        }
    }
}

async fn unlock(shared: &Shared, body: Bytes) -> Response<GwBody> {
    let info = serde_json::from_slice::<LockInfo>(&body).ok();
    let mut inner = shared.inner_lock.lock().await;
    match (inner.as_ref(), info) {
        (None, _) => reply(StatusCode::OK, ""),
        (Some(held), Some(info)) if held.id == info.id => {
            *inner = None;
            reply(StatusCode::OK, "")
        }
        (Some(held), _) => json_reply(StatusCode::LOCKED, held),
    }
}

#[cfg(test)]
mod tests {
    //! The gateway over real HTTP on loopback, backed by a real local store.
    use super::*;
    use crate::env_name::EnvName;
    use crate::state::local::LocalStore;
    use crate::state::{Attempt, StateStore};

    struct Client {
        base: String,
        auth: Option<String>,
    }

    async fn request(c: &Client, method: &str, path: &str, body: &str) -> (u16, String) {
        request_with(c, method, path, "", body).await
    }

    /// [`request`] with extra header lines (`Name: value\r\n` each).
    async fn request_with(
        c: &Client,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = c
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let auth = c
            .auth
            .as_ref()
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    async fn setup() -> (tempfile::TempDir, Gateway, Client, String) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(LocalStore::new(
            dir.path().into(),
            "{env}.tfstate".into(),
            5,
        ));
        let env = EnvName::parse("alice", "env-").unwrap();
        let info = LockInfo::new("test", "x");
        let Attempt::Acquired(token) = store.try_lock(&env, &info).await.unwrap() else {
            panic!("not locked")
        };
        let gw = Gateway::start(store, token).await.unwrap();
        let vars: std::collections::HashMap<_, _> = gw.terraform_env().into_iter().collect();
        let auth = format!(
            "Basic {}",
            B64.encode(format!(
                "{}:{}",
                vars["TF_HTTP_USERNAME"], vars["TF_HTTP_PASSWORD"]
            ))
        );
        let client = Client {
            base: vars["TF_HTTP_ADDRESS"].clone(),
            auth: Some(auth),
        };
        (dir, gw, client, "/state/alice".into())
    }

    fn state(lineage: &str, serial: i64) -> String {
        format!(
            r#"{{"version":4,"terraform_version":"1.15.5","serial":{serial},"lineage":"{lineage}","outputs":{{}},"resources":[]}}"#
        )
    }

    #[tokio::test]
    async fn listens_on_loopback_only() {
        let (_d, gw, c, _) = setup().await;
        assert!(c.base.starts_with("http://127.0.0.1:"));
        assert!(gw.addr.ip().is_loopback());
    }

    #[tokio::test]
    async fn requests_without_or_with_wrong_credentials_are_refused() {
        let (_d, _gw, c, path) = setup().await;
        let none = Client {
            base: c.base.clone(),
            auth: None,
        };
        let wrong = Client {
            base: c.base.clone(),
            auth: Some(format!("Basic {}", B64.encode("nubes:guess"))),
        };
        for client in [&none, &wrong] {
            for method in ["GET", "POST", "DELETE", "LOCK", "UNLOCK"] {
                let (status, _) = request(client, method, &path, &state("l", 1)).await;
                assert_eq!(status, 401, "{method}");
            }
        }
        // Nothing was written by the refused requests.
        assert_eq!(request(&c, "GET", &path, "").await.0, 404);
    }

    #[tokio::test]
    async fn every_wrong_credential_gets_401_with_a_basic_challenge() {
        let (_d, gw, c, path) = setup().await;
        let vars: std::collections::HashMap<_, _> = gw.terraform_env().into_iter().collect();
        let password = vars["TF_HTTP_PASSWORD"].clone();
        for auth in [
            None,
            Some(format!(
                "Basic {}",
                B64.encode(format!("terraform:{password}"))
            )),
            Some(format!("Basic {}", B64.encode("nubes:"))),
            Some(format!(
                "Basic {}",
                B64.encode(format!("nubes:{password}x"))
            )),
            Some(format!("Basic {}", B64.encode(&password))),
            Some(format!("Bearer {password}")),
            Some(format!("basic {}", B64.encode(format!("nubes:{password}")))),
            Some(format!(
                "Basic  {}",
                B64.encode(format!("nubes:{password}"))
            )),
            Some("Basic !!!not-base64!!!".into()),
            Some(String::new()),
        ] {
            let client = Client {
                base: c.base.clone(),
                auth: auth.clone(),
            };
            let raw = raw_request(&client, "GET", &path).await;
            assert!(raw.starts_with("HTTP/1.1 401"), "{auth:?}: {raw}");
            assert!(
                raw.to_ascii_lowercase()
                    .contains("www-authenticate: basic realm=\"nubes\""),
                "{auth:?}: {raw}"
            );
        }
    }

    #[tokio::test]
    async fn an_unauthenticated_body_is_never_read() {
        // A client without credentials announcing 2 GB gets its 401 at once: the
        // gateway refuses before reading (or buffering) any of the body.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (_d, _gw, c, path) = setup().await;
        let addr = c
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2000000000\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    }

    /// The raw response (status line and headers) to a request with `c`'s credentials.
    async fn raw_request(c: &Client, method: &str, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = c
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let auth = c
            .auth
            .as_ref()
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        resp
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_refused() {
        let (_d, _gw, c, _) = setup().await;
        assert_eq!(request(&c, "GET", "/state/bob", "").await.0, 404);
        assert_eq!(request(&c, "GET", "/", "").await.0, 404);
        assert_eq!(request(&c, "PUT", "/state/alice", "").await.0, 405);
    }

    #[tokio::test]
    async fn guard_refuses_other_lineage_and_lower_serial_with_409() {
        let (_d, gw, c, path) = setup().await;
        assert_eq!(request(&c, "POST", &path, &state("aaa", 3)).await.0, 200);
        assert_eq!(request(&c, "GET", &path, "").await, (200, state("aaa", 3)));
        let (status, body) = request(&c, "POST", &path, &state("bbb", 9)).await;
        assert_eq!(status, 409);
        assert!(body.contains("lineage"), "{body}");
        let (status, body) = request(&c, "POST", &path, &state("aaa", 2)).await;
        assert_eq!(status, 409);
        assert!(body.contains("lower than the stored serial 3"), "{body}");
        assert_eq!(request(&c, "POST", &path, &state("aaa", -1)).await.0, 400);
        assert_eq!(request(&c, "POST", &path, "{\"version\":4,").await.0, 400);
        assert_eq!(
            request(&c, "GET", &path, "").await,
            (200, state("aaa", 3)),
            "stored state kept"
        );
        assert_eq!(request(&c, "POST", &path, &state("aaa", 4)).await.0, 200);
        let report = gw.stop().await;
        assert_eq!(report.writes, 2);
        assert_eq!(report.problems.len(), 4);
    }

    #[tokio::test]
    async fn a_content_md5_that_is_not_an_md5_or_not_the_bodys_is_refused_with_nothing_stored() {
        let (_d, _gw, c, path) = setup().await;
        let body = state("aaa", 3);
        let right = B64.encode(Md5::digest(body.as_bytes()));
        let wrong = B64.encode(Md5::digest(b"another body"));
        for (md5, want) in [
            ("not base64!", "is not the base64 of an MD5"),
            ("AAAA", "is not the base64 of an MD5"),
            (wrong.as_str(), "Content-MD5 does not match the body"),
        ] {
            let header = format!("Content-MD5: {md5}\r\n");
            let (status, text) = request_with(&c, "POST", &path, &header, &body).await;
            assert_eq!(status, 400, "{md5}: {text}");
            assert!(text.contains(want), "{md5}: {text}");
            assert_eq!(request(&c, "GET", &path, "").await.0, 404, "nothing stored");
        }
        let header = format!("Content-MD5: {right}\r\n");
        assert_eq!(request_with(&c, "POST", &path, &header, &body).await.0, 200);
        assert_eq!(request(&c, "GET", &path, "").await, (200, body));
    }

    #[tokio::test]
    async fn terraform_lock_inside_nubes_hold_and_423_for_another() {
        let (_d, _gw, c, path) = setup().await;
        let a = r#"{"ID":"a","Operation":"OperationTypeApply","Who":"tf"}"#;
        let b = r#"{"ID":"b","Operation":"OperationTypePlan","Who":"other"}"#;
        assert_eq!(request(&c, "LOCK", &path, a).await.0, 200);
        let (status, body) = request(&c, "LOCK", &path, b).await;
        assert_eq!(status, 423);
        let held: LockInfo = serde_json::from_str(&body).unwrap();
        assert_eq!(held.id, "a");
        // A write under the wrong lock ID is refused; under the right one it lands.
        assert_eq!(
            request(&c, "POST", &format!("{path}?ID=b"), &state("l", 1))
                .await
                .0,
            423
        );
        assert_eq!(
            request(&c, "POST", &format!("{path}?ID=a"), &state("l", 1))
                .await
                .0,
            200
        );
        assert_eq!(request(&c, "UNLOCK", &path, b).await.0, 423);
        assert_eq!(request(&c, "UNLOCK", &path, a).await.0, 200);
        assert_eq!(request(&c, "LOCK", &path, b).await.0, 200);
    }

    #[tokio::test]
    async fn stops_listening_when_stopped() {
        let (_d, gw, c, _) = setup().await;
        let addr = c
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        gw.stop().await;
        assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    }
}
