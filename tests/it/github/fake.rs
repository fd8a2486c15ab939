//! A small GitHub REST API served on 127.0.0.1 for the tests: one repository's issues
//! (list with `state`/`labels`/`sort`/`direction` and `page`/`per_page` paging linked by a
//! `link` header, get, create, update, comment), its branches (paged), issue and
//! pull-request comments (list, create, update:
//! <https://docs.github.com/en/rest/issues/comments>), deployments and their statuses
//! (<https://docs.github.com/en/rest/deployments/deployments>,
//! <https://docs.github.com/en/rest/deployments/statuses>) and the pull requests of a
//! commit (<https://docs.github.com/en/rest/commits/commits#list-pull-requests-associated-with-a-commit>).
//!
//! Beyond the description, as GitHub does: a comment body over 65,536 characters is
//! refused with 422 ("Body is too long (maximum is 65536 characters)"); a deployment of a
//! ref the repository does not have is refused with 422 ("No ref found for: ..."); a
//! comment is written with `issues: write` or `pull-requests: write`, a deployment or
//! status with `deployments: write`
//! (<https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps>).
//!
//! It is held to GitHub's published description ([`super::openapi`]): every request is
//! matched to an operation and validated (path, query, body) before anything else, and
//! every answer is checked against the response schema; documents are built from the
//! description's own examples. Anything that does not conform is recorded as a violation,
//! and dropping the server panics while violations are left (a test that expects some
//! takes them with [`FakeGithub::take_violations`]). An unknown operation is answered 404
//! and an invalid one 422, as GitHub does.
//!
//! As GitHub: requests without `Authorization: Bearer <token>` get 401 ("Requires
//! authentication"), a wrong token 401 ("Bad credentials"); no `User-Agent` gets 403
//! (<https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api#user-agent>);
//! an unsupported `X-GitHub-Api-Version` 400; a write the token's permissions do not cover
//! 403 "Resource not accessible by integration" (what a workflow's `GITHUB_TOKEN` gets);
//! another repository 404. Scripted faults: 5xx, and primary and secondary rate limits
//! with the headers of
//! <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::openapi::Spec;

pub const OWNER: &str = "octo-org";
pub const REPO: &str = "petclinic";
/// The login of a workflow's `GITHUB_TOKEN`.
const BOT: &str = "github-actions[bot]";
const SUPPORTED_API_VERSIONS: &[&str] = &["2022-11-28"];

/// What the token may do, as a workflow's `permissions:` grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
}

#[derive(Debug, Clone, Copy)]
pub struct Grants {
    pub issues: Access,
    pub contents: Access,
}

impl Grants {
    pub fn all() -> Grants {
        Grants {
            issues: Access::Write,
            contents: Access::Read,
        }
    }
}

/// A scripted answer replacing the next matching request's.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with GitHub's JSON error body.
    Status(u16),
    /// 403 with `retry-after` (a secondary rate limit).
    SecondaryRateLimit { retry_after: u64 },
    /// 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` this many seconds ahead.
    PrimaryRateLimit { reset_in: i64 },
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub authorization: Option<String>,
    pub operation: Option<String>,
    pub status: u16,
}

#[derive(Default)]
pub struct State {
    issues: Vec<Value>,
    comments: Vec<Value>,
    branches: Vec<String>,
    seen: Vec<Seen>,
    violations: Vec<String>,
    faults: VecDeque<(String, String, Fault)>,
    grants: Option<Grants>,
    next_id: u64,
    /// `pull-requests:` and `deployments:` grants (write unless a test lowers them).
    pull_requests: Option<Access>,
    deployments_grant: Option<Access>,
    /// Commits the repository has (deployments refer to them).
    commits: Vec<String>,
    /// (commit, pull request) as `commits/{sha}/pulls` answers them.
    commit_pulls: Vec<(String, Value)>,
    deployments: Vec<Value>,
    /// (deployment id, status).
    statuses: Vec<(u64, Value)>,
    /// Runs, deployments and activity `nubes env` reads (`super::actions`).
    actions: super::actions::ActionsState,
}

struct Shared {
    state: Mutex<State>,
    token: String,
    base: String,
    page_size: usize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeGithub {
    /// The API root to put in `GITHUB_API_URL`.
    pub url: String,
    pub token: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGithub {
    /// Serve on a thread of its own (usable from plain and async tests), accepting only
    /// `Bearer <token>`, `page_size` items per page unless `per_page` says otherwise.
    pub fn start(token: &str, page_size: usize) -> FakeGithub {
        // Parse the description before the first request, not inside its handler.
        Spec::get();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                grants: Some(Grants::all()),
                next_id: 1,
                ..State::default()
            }),
            token: token.into(),
            base: url.clone(),
            page_size,
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { break };
                            let shared = serving.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        FakeGithub {
            url,
            token: token.into(),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn set_grants(&self, grants: Grants) {
        self.shared.state().grants = Some(grants);
    }

    /// The token's `pull-requests:` and `deployments:` permissions.
    pub fn set_review_grants(&self, pull_requests: Access, deployments: Access) {
        let mut state = self.shared.state();
        state.pull_requests = Some(pull_requests);
        state.deployments_grant = Some(deployments);
    }

    /// A commit the repository has (what a push brought).
    pub fn add_commit(&self, sha: &str) {
        self.shared.state().commits.push(sha.to_string());
    }

    /// Record pull request `number` (from [`FakeGithub::add_pull_request`]) as merged into
    /// `base` from head commit `head`, as merge commit `merge`: `commits/{merge}/pulls`
    /// then lists it.
    pub fn merge_pull_request(&self, number: u64, head: &str, base: &str, merge: &str) {
        let base_url = self.shared.base.clone();
        let mut pr = Spec::get().example("pull-request-simple-items")[0].clone();
        let html = format!("https://github.com/{OWNER}/{REPO}/pull/{number}");
        let api = format!("{base_url}/repos/{OWNER}/{REPO}");
        // The description's example lists a requested team without the `type` its own
        // schema requires; review requests are irrelevant here, so the fake has none.
        pr["requested_teams"] = json!([]);
        pr["requested_reviewers"] = json!([]);
        pr["number"] = json!(number);
        pr["url"] = json!(format!("{api}/pulls/{number}"));
        pr["html_url"] = json!(html);
        pr["issue_url"] = json!(format!("{api}/issues/{number}"));
        pr["state"] = json!("closed");
        pr["merged_at"] = json!(now_text());
        pr["closed_at"] = json!(now_text());
        pr["merge_commit_sha"] = json!(merge);
        pr["head"]["sha"] = json!(head);
        pr["head"]["ref"] = json!(format!("pr-{number}"));
        pr["head"]["label"] = json!(format!("{OWNER}:pr-{number}"));
        pr["base"]["ref"] = json!(base);
        pr["base"]["label"] = json!(format!("{OWNER}:{base}"));
        let mut state = self.shared.state();
        state.commits.extend([head.to_string(), merge.to_string()]);
        state.commit_pulls.push((merge.to_string(), pr));
    }

    /// Every deployment, oldest first.
    pub fn deployments(&self) -> Vec<Value> {
        self.shared.state().deployments.clone()
    }

    /// The statuses of deployment `id`, oldest first.
    pub fn statuses_of(&self, id: u64) -> Vec<Value> {
        self.shared
            .state()
            .statuses
            .iter()
            .filter(|(d, _)| *d == id)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Every comment (on issues and pull requests), in order, as GitHub stores them.
    pub fn all_comments(&self) -> Vec<Value> {
        self.shared.state().comments.clone()
    }

    pub fn add_branches(&self, names: &[&str]) {
        self.shared
            .state()
            .branches
            .extend(names.iter().map(|n| n.to_string()));
    }

    /// An issue someone else opened (as GitHub would store it); returns its number.
    pub fn add_issue(&self, title: &str, body: &str, labels: &[&str]) -> u64 {
        let mut state = self.shared.state();
        let labels: Vec<Value> = labels.iter().map(|l| json!(l)).collect();
        let issue = new_issue(
            &self.shared,
            &mut state,
            title,
            Some(body),
            &labels,
            "octocat",
        );
        let number = issue["number"].as_u64().expect("number");
        state.issues.push(issue);
        number
    }

    /// A pull request (which the issue list also returns) with these labels and body.
    pub fn add_pull_request(&self, title: &str, body: &str, labels: &[&str]) -> u64 {
        let mut state = self.shared.state();
        let labels: Vec<Value> = labels.iter().map(|l| json!(l)).collect();
        let mut issue = new_issue(
            &self.shared,
            &mut state,
            title,
            Some(body),
            &labels,
            "octocat",
        );
        let number = issue["number"].as_u64().expect("number");
        let html = format!("https://github.com/{OWNER}/{REPO}/pull/{number}");
        issue["pull_request"] = json!({
            "url": format!("{}/repos/{OWNER}/{REPO}/pulls/{number}", self.shared.base),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
        });
        state.issues.push(issue);
        number
    }

    /// Answer the next request whose method is `method` and whose path ends with
    /// `suffix` with `fault` (queued in order).
    pub fn fail_next(&self, method: &str, suffix: &str, fault: Fault) {
        self.shared
            .state()
            .faults
            .push_back((method.into(), suffix.into(), fault));
    }

    /// Every issue (pull requests included), as GitHub would return them.
    pub fn issues(&self) -> Vec<Value> {
        self.shared.state().issues.clone()
    }

    pub fn issue(&self, number: u64) -> Value {
        self.issues()
            .into_iter()
            .find(|i| i["number"] == number)
            .unwrap_or_else(|| panic!("no issue #{number}"))
    }

    /// Comment bodies on issue `number`, in order.
    pub fn comments_on(&self, number: u64) -> Vec<String> {
        let suffix = format!("/issues/{number}");
        self.shared
            .state()
            .comments
            .iter()
            .filter(|c| {
                c["issue_url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(&suffix))
            })
            .map(|c| c["body"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.state().seen.clone()
    }

    /// Requests with `method` whose path ends with `suffix`.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    /// The runs, deployments and activity `nubes env` reads (see `super::actions`).
    pub fn actions<R>(&self, f: impl FnOnce(&mut super::actions::ActionsState) -> R) -> R {
        f(&mut self.shared.state().actions)
    }

    /// The violations recorded so far, cleared (for tests that provoke them).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.state().violations)
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let violations = self.take_violations();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "the GitHub API server saw requests (or made answers) that GitHub's description does not allow:\n{}",
                violations.join("\n")
            );
        }
    }
}

type Reply = Response<Full<Bytes>>;

pub(super) struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

pub(super) fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        headers: Vec::new(),
    }
}

/// GitHub's error document.
pub(super) fn error(status: u16, message: &str, doc: &str) -> Answer {
    answer(
        status,
        json!({ "message": message, "documentation_url": doc, "status": status.to_string() }),
    )
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization");
    let user_agent = header("user-agent");
    let api_version = header("x-github-api-version");
    let content_type = header("content-type");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();

    let spec = Spec::get();
    let (matched, problems) =
        spec.check_request(&method, &path, &query, content_type.as_deref(), &body);
    let mut state = shared.state();
    state.violations.extend(problems.iter().cloned());
    let operation = matched.as_ref().map(|m| m.op.operation_id.clone());

    let answer = if authorization.is_none() {
        error(
            401,
            "Requires authentication",
            "https://docs.github.com/rest",
        )
    } else if authorization.as_deref() != Some(format!("Bearer {}", shared.token).as_str()) {
        error(401, "Bad credentials", "https://docs.github.com/rest")
    } else if user_agent.is_none_or(|u| u.trim().is_empty()) {
        error(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            "https://docs.github.com/rest/using-the-rest-api/getting-started-with-the-rest-api#user-agent",
        )
    } else if api_version
        .as_deref()
        .is_some_and(|v| !SUPPORTED_API_VERSIONS.contains(&v))
    {
        error(
            400,
            "Unsupported API version",
            "https://docs.github.com/rest/about-the-rest-api/api-versions",
        )
    } else if matched.is_none() {
        error(404, "Not Found", "https://docs.github.com/rest")
    } else if !problems.is_empty() {
        let mut a = error(422, "Invalid request.", "https://docs.github.com/rest");
        a.body["errors"] = json!(problems);
        a
    } else if let Some(fault) = take_fault(&mut state, &method, &path) {
        fault_answer(fault)
    } else {
        #[allow(clippy::unnecessary_unwrap)] // checked by the branch above
        let m = matched.as_ref().expect("matched");
        let document: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        route(
            &shared,
            &mut state,
            &m.op.operation_id,
            &m.path_params,
            &query,
            &document,
            &path,
        )
    };

    // The fake's own answers must be what GitHub's description says they are.
    if let Some(m) = &matched
        && (200..300).contains(&answer.status)
    {
        let wrong = spec.check_response(&m.op, answer.status, &answer.body);
        state.violations.extend(wrong);
    }
    state.seen.push(Seen {
        method,
        path,
        query,
        body: serde_json::from_slice(&body).ok(),
        authorization,
        operation,
        status: answer.status,
    });
    drop(state);

    let mut response = Response::builder()
        .status(answer.status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-github-api-version-selected", SUPPORTED_API_VERSIONS[0]);
    for (k, v) in &answer.headers {
        response = response.header(k, v);
    }
    let bytes = if answer.body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(serde_json::to_vec(&answer.body).expect("json"))
    };
    Ok(response.body(Full::new(bytes)).expect("response"))
}

fn take_fault(state: &mut State, method: &str, path: &str) -> Option<Fault> {
    let i = state
        .faults
        .iter()
        .position(|(m, suffix, _)| m == method && path.ends_with(suffix.as_str()))?;
    state.faults.remove(i).map(|(_, _, f)| f)
}

fn fault_answer(fault: Fault) -> Answer {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match fault {
        Fault::Status(status) => error(status, "Server Error", "https://docs.github.com/rest"),
        Fault::SecondaryRateLimit { retry_after } => {
            let mut a = error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            );
            a.headers
                .push(("retry-after".into(), retry_after.to_string()));
            a
        }
        Fault::PrimaryRateLimit { reset_in } => {
            let mut a = error(
                403,
                "API rate limit exceeded for installation ID 1.",
                "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api",
            );
            a.headers.extend([
                ("x-ratelimit-limit".into(), "1000".into()),
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-used".into(), "1000".into()),
                ("x-ratelimit-reset".into(), (now + reset_in).to_string()),
                ("x-ratelimit-resource".into(), "core".into()),
            ]);
            a
        }
    }
}

pub(super) fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// A user object from the description's example, renamed.
pub(super) fn user(login: &str) -> Value {
    let mut u = Spec::get().example("issue")["user"].clone();
    u["login"] = json!(login);
    if login.ends_with("[bot]") {
        u["type"] = json!("Bot");
        u["id"] = json!(41898282);
    }
    u
}

fn label_object(base: &str, name: &str, id: u64) -> Value {
    let mut l = Spec::get().example("issue")["labels"][0].clone();
    l["id"] = json!(id);
    l["name"] = json!(name);
    l["url"] = json!(format!("{base}/repos/{OWNER}/{REPO}/labels/{name}"));
    l["description"] = Value::Null;
    l["default"] = json!(false);
    l
}

/// Label names from a request's `labels` (strings or `{name}` objects).
fn label_names(labels: &[Value]) -> Vec<String> {
    labels
        .iter()
        .filter_map(|l| {
            l.as_str()
                .or_else(|| l["name"].as_str())
                .map(str::to_string)
        })
        .collect()
}

/// An issue built from the description's example.
fn new_issue(
    shared: &Shared,
    state: &mut State,
    title: &str,
    body: Option<&str>,
    labels: &[Value],
    login: &str,
) -> Value {
    let number = state.issues.len() as u64 + 1;
    let id = state.next_id;
    state.next_id += 10;
    let api = format!("{}/repos/{OWNER}/{REPO}", shared.base);
    let now = now_text();
    let mut issue = Spec::get().example("issue");
    let obj = issue.as_object_mut().expect("issue example");
    obj.remove("pull_request");
    issue["id"] = json!(id);
    issue["node_id"] = json!(format!("I_kwDO{id:08}"));
    issue["url"] = json!(format!("{api}/issues/{number}"));
    issue["repository_url"] = json!(api);
    issue["labels_url"] = json!(format!("{api}/issues/{number}/labels{{/name}}"));
    issue["comments_url"] = json!(format!("{api}/issues/{number}/comments"));
    issue["events_url"] = json!(format!("{api}/issues/{number}/events"));
    issue["html_url"] = json!(format!("https://github.com/{OWNER}/{REPO}/issues/{number}"));
    issue["number"] = json!(number);
    issue["state"] = json!("open");
    issue["state_reason"] = Value::Null;
    issue["title"] = json!(title);
    issue["body"] = body.map_or(Value::Null, |b| json!(b));
    issue["user"] = user(login);
    issue["labels"] = json!(
        label_names(labels)
            .iter()
            .enumerate()
            .map(|(i, n)| label_object(&shared.base, n, id + i as u64 + 1))
            .collect::<Vec<_>>()
    );
    issue["assignee"] = Value::Null;
    issue["assignees"] = json!([]);
    issue["milestone"] = Value::Null;
    issue["locked"] = json!(false);
    issue["active_lock_reason"] = Value::Null;
    issue["comments"] = json!(0);
    issue["closed_at"] = Value::Null;
    issue["closed_by"] = Value::Null;
    issue["created_at"] = json!(now);
    issue["updated_at"] = json!(now);
    issue["author_association"] = json!("NONE");
    issue
}

/// `?page=` and `?per_page=` as GitHub reads them, and the `link` header for the page.
fn paged(shared: &Shared, path: &str, query: &[(String, String)], items: Vec<Value>) -> Answer {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let per_page = get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(shared.page_size)
        .clamp(1, 100);
    let page = get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let link_to = |p: usize| {
        let mut q: Vec<(String, String)> =
            query.iter().filter(|(k, _)| k != "page").cloned().collect();
        q.push(("page".into(), p.to_string()));
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish();
        format!("<{}{path}?{q}>", shared.base)
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
        links.push(format!("{}; rel=\"first\"", link_to(1)));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    let mut a = answer(200, Value::Array(slice));
    if !links.is_empty() {
        a.headers.push(("link".into(), links.join(", ")));
    }
    a
}

/// Comments on issues need `issues: write`; on pull requests, that or `pull-requests: write`.
fn may_comment(state: &State, grants: Grants, issue_url: &str) -> bool {
    let on_pull_request = state
        .issues
        .iter()
        .any(|i| !i["pull_request"].is_null() && i["url"].as_str() == Some(issue_url));
    grants.issues == Access::Write
        || (on_pull_request && state.pull_requests.unwrap_or(Access::Write) == Access::Write)
}

/// GitHub's limit on a comment body (characters).
fn body_too_long(body: &Value) -> Option<Answer> {
    let n = body["body"].as_str().map_or(0, |b| b.chars().count());
    (n > 65_536).then(|| {
        let mut a = error(422, "Validation Failed", "https://docs.github.com/rest/issues/comments");
        a.body["errors"] = json!([{ "resource": "IssueComment", "code": "custom", "field": "body", "message": "Body is too long (maximum is 65536 characters)" }]);
        a
    })
}

fn forbidden(doc: &str) -> Answer {
    error(403, "Resource not accessible by integration", doc)
}

fn route(
    shared: &Shared,
    state: &mut State,
    operation: &str,
    params: &std::collections::BTreeMap<String, String>,
    query: &[(String, String)],
    body: &Value,
    path: &str,
) -> Answer {
    let from_actions =
        super::actions::route(&shared.base, &mut state.actions, operation, params, query);
    // Deployments that runs `nubes env` follows left behind join the one store.
    for (d, statuses) in std::mem::take(&mut state.actions.new_deployments) {
        let id = d["id"].as_u64().unwrap_or(0);
        state.deployments.push(d);
        state
            .statuses
            .extend(statuses.into_iter().map(|status| (id, status)));
    }
    if let Some(a) = from_actions {
        return a;
    }
    if params.get("owner").map(String::as_str) != Some(OWNER)
        || params.get("repo").map(String::as_str) != Some(REPO)
    {
        return error(404, "Not Found", "https://docs.github.com/rest");
    }
    let grants = state.grants.unwrap_or(Grants::all());
    let number = params
        .get("issue_number")
        .and_then(|n| n.parse::<u64>().ok());
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match operation {
        "repos/list-branches" => {
            if grants.contents == Access::None {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/branches/branches#list-branches",
                );
            }
            // The description's example (`short-branch-with-protection-items`) carries a
            // `protection` object its own schema rejects (no `checks`); the field is
            // optional, so the fake leaves it out.
            let template = Spec::get().example("short-branch-with-protection-items")[0].clone();
            let items = state
                .branches
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let sha = format!("{:040x}", i + 1);
                    let mut b = template.clone();
                    b.as_object_mut().expect("branch").remove("protection");
                    b["name"] = json!(name);
                    b["commit"] = json!({ "sha": sha, "url": format!("{}/repos/{OWNER}/{REPO}/commits/{sha}", shared.base) });
                    b["protected"] = json!(false);
                    b["protection_url"] = json!(format!("{}/repos/{OWNER}/{REPO}/branches/{name}/protection", shared.base));
                    b
                })
                .collect();
            paged(shared, path, query, items)
        }
        "issues/list-for-repo" => {
            if grants.issues == Access::None {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/issues/issues#list-repository-issues",
                );
            }
            let state_filter = get("state").unwrap_or_else(|| "open".into());
            let wanted: Vec<String> = get("labels")
                .map(|l| {
                    l.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let mut items: Vec<Value> = state
                .issues
                .iter()
                .filter(|i| state_filter == "all" || i["state"] == state_filter.as_str())
                .filter(|i| {
                    let names: Vec<String> = i["labels"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l["name"].as_str().map(str::to_ascii_lowercase))
                        .collect();
                    wanted.iter().all(|w| names.contains(w))
                })
                .cloned()
                .collect();
            let key = match get("sort").as_deref() {
                Some("updated") => "updated_at",
                Some("comments") => "comments",
                _ => "number",
            };
            items.sort_by(|a, b| {
                let (a, b) = (&a[key], &b[key]);
                a.as_u64()
                    .cmp(&b.as_u64())
                    .then(a.as_str().cmp(&b.as_str()))
            });
            if get("direction").as_deref() != Some("asc") {
                items.reverse();
            }
            paged(shared, path, query, items)
        }
        "issues/get" => match state
            .issues
            .iter()
            .find(|i| Some(i["number"].as_u64().unwrap_or(0)) == number)
        {
            Some(i) if grants.issues != Access::None => answer(200, i.clone()),
            _ => error(
                404,
                "Not Found",
                "https://docs.github.com/rest/issues/issues#get-an-issue",
            ),
        },
        "issues/create" => {
            if grants.issues != Access::Write {
                return forbidden("https://docs.github.com/rest/issues/issues#create-an-issue");
            }
            let title = match &body["title"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let labels = body["labels"].as_array().cloned().unwrap_or_default();
            let issue = new_issue(shared, state, &title, body["body"].as_str(), &labels, BOT);
            state.issues.push(issue.clone());
            let mut a = answer(201, issue.clone());
            a.headers.push((
                "location".into(),
                issue["url"].as_str().unwrap_or_default().into(),
            ));
            a
        }
        "issues/update" => {
            if grants.issues != Access::Write {
                return forbidden("https://docs.github.com/rest/issues/issues#update-an-issue");
            }
            let base = shared.base.clone();
            let Some(issue) = state
                .issues
                .iter_mut()
                .find(|i| Some(i["number"].as_u64().unwrap_or(0)) == number)
            else {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/issues/issues#update-an-issue",
                );
            };
            let now = now_text();
            if let Some(t) = body.get("title").filter(|t| !t.is_null()) {
                issue["title"] = json!(
                    t.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| t.to_string())
                );
            }
            if let Some(b) = body.get("body") {
                issue["body"] = b.clone();
            }
            if let Some(labels) = body.get("labels").and_then(Value::as_array) {
                let id = issue["id"].as_u64().unwrap_or(0);
                issue["labels"] = json!(
                    label_names(labels)
                        .iter()
                        .enumerate()
                        .map(|(i, n)| label_object(&base, n, id + i as u64 + 1))
                        .collect::<Vec<_>>()
                );
            }
            if let Some(s) = body.get("state").and_then(Value::as_str) {
                let was = issue["state"].as_str().unwrap_or_default().to_string();
                if s != was {
                    issue["state"] = json!(s);
                    if s == "closed" {
                        issue["closed_at"] = json!(now);
                        issue["closed_by"] = user(BOT);
                        issue["state_reason"] = body
                            .get("state_reason")
                            .filter(|r| !r.is_null())
                            .cloned()
                            .unwrap_or(json!("completed"));
                    } else {
                        issue["closed_at"] = Value::Null;
                        issue["state_reason"] = json!("reopened");
                    }
                }
            }
            issue["updated_at"] = json!(now);
            answer(200, issue.clone())
        }
        "issues/list-comments" => {
            let may_read = grants.issues != Access::None
                || state.pull_requests.unwrap_or(Access::Write) != Access::None;
            let Some(n) = number.filter(|n| state.issues.iter().any(|i| i["number"] == *n)) else {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/issues/comments#list-issue-comments",
                );
            };
            if !may_read {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/issues/comments#list-issue-comments",
                );
            }
            let suffix = format!("/issues/{n}");
            let items: Vec<Value> = state
                .comments
                .iter()
                .filter(|c| {
                    c["issue_url"]
                        .as_str()
                        .is_some_and(|u| u.ends_with(&suffix))
                })
                .cloned()
                .collect();
            paged(shared, path, query, items)
        }
        "issues/update-comment" => {
            let doc = "https://docs.github.com/rest/issues/comments#update-an-issue-comment";
            if let Some(too_long) = body_too_long(body) {
                return too_long;
            }
            let id = params.get("comment_id").and_then(|n| n.parse::<u64>().ok());
            let issue_url = state
                .comments
                .iter()
                .find(|c| c["id"].as_u64() == id)
                .and_then(|c| c["issue_url"].as_str())
                .unwrap_or_default()
                .to_string();
            if !may_comment(state, grants, &issue_url) {
                return forbidden(doc);
            }
            let Some(c) = state.comments.iter_mut().find(|c| c["id"].as_u64() == id) else {
                return error(404, "Not Found", doc);
            };
            c["body"] = body["body"].clone();
            c["updated_at"] = json!(now_text());
            answer(200, c.clone())
        }
        "repos/create-deployment" => {
            let doc = "https://docs.github.com/rest/deployments/deployments#create-a-deployment";
            if state.deployments_grant.unwrap_or(Access::Write) != Access::Write {
                return forbidden(doc);
            }
            let reference = body["ref"].as_str().unwrap_or_default().to_string();
            if !state.commits.contains(&reference) && !state.branches.contains(&reference) {
                let mut a = error(422, &format!("No ref found for: {reference}"), doc);
                a.body["errors"] = json!([]);
                return a;
            }
            if body.get("required_contexts").is_none() {
                // The pending checks of the very run that asks would make GitHub refuse.
                return error(409, "Conflict: Commit status checks failed for main.", doc);
            }
            let id = state.next_id;
            state.next_id += 10;
            let now = now_text();
            let api = format!("{}/repos/{OWNER}/{REPO}", shared.base);
            let environment = body["environment"]
                .as_str()
                .unwrap_or("production")
                .to_string();
            let mut d = Spec::get().example("deployment-simple-example");
            d["id"] = json!(id);
            d["node_id"] = json!(format!("DE_kwDO{id:08}"));
            d["url"] = json!(format!("{api}/deployments/{id}"));
            d["statuses_url"] = json!(format!("{api}/deployments/{id}/statuses"));
            d["repository_url"] = json!(api);
            d["sha"] = json!(reference);
            d["ref"] = json!(reference);
            d["task"] = json!(body["task"].as_str().unwrap_or("deploy"));
            d["payload"] = body.get("payload").cloned().unwrap_or(json!({}));
            d["environment"] = json!(environment);
            d["original_environment"] = json!(environment);
            d["description"] = body.get("description").cloned().unwrap_or(Value::Null);
            d["creator"] = user(BOT);
            d["created_at"] = json!(now);
            d["updated_at"] = json!(now);
            d["transient_environment"] =
                json!(body["transient_environment"].as_bool().unwrap_or(false));
            d["production_environment"] = json!(
                body["production_environment"]
                    .as_bool()
                    .unwrap_or(environment == "production")
            );
            state.deployments.push(d.clone());
            answer(201, d)
        }
        "repos/list-deployments" => {
            if state.deployments_grant.unwrap_or(Access::Write) == Access::None {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/deployments/deployments#list-deployments",
                );
            }
            let environment = get("environment");
            let sha = get("sha");
            let reference = get("ref");
            // Newest first, as GitHub lists them.
            let items: Vec<Value> = state
                .deployments
                .iter()
                .rev()
                .filter(|d| environment.as_deref().is_none_or(|e| d["environment"] == e))
                .filter(|d| sha.as_deref().is_none_or(|s| d["sha"] == s))
                .filter(|d| reference.as_deref().is_none_or(|r| d["ref"] == r))
                .cloned()
                .collect();
            paged(shared, path, query, items)
        }
        "repos/list-deployment-statuses" => {
            let id = params
                .get("deployment_id")
                .and_then(|n| n.parse::<u64>().ok());
            if !state.deployments.iter().any(|d| d["id"].as_u64() == id) {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/deployments/statuses#list-deployment-statuses",
                );
            }
            // Newest first, as GitHub lists them.
            let items: Vec<Value> = state
                .statuses
                .iter()
                .rev()
                .filter(|(d, _)| Some(*d) == id)
                .map(|(_, s)| s.clone())
                .collect();
            paged(shared, path, query, items)
        }
        "repos/create-deployment-status" => {
            let doc =
                "https://docs.github.com/rest/deployments/statuses#create-a-deployment-status";
            if state.deployments_grant.unwrap_or(Access::Write) != Access::Write {
                return forbidden(doc);
            }
            let id = params
                .get("deployment_id")
                .and_then(|n| n.parse::<u64>().ok());
            let Some(d) = state
                .deployments
                .iter()
                .find(|d| d["id"].as_u64() == id)
                .cloned()
            else {
                return error(404, "Not Found", doc);
            };
            let sid = state.next_id;
            state.next_id += 10;
            let now = now_text();
            let mut s = Spec::get().example("deployment-status");
            let durl = d["url"].as_str().unwrap_or_default().to_string();
            s["id"] = json!(sid);
            s["node_id"] = json!(format!("DES_kwDO{sid:08}"));
            s["url"] = json!(format!("{durl}/statuses/{sid}"));
            s["deployment_url"] = json!(durl);
            s["repository_url"] = d["repository_url"].clone();
            s["state"] = body["state"].clone();
            s["creator"] = user(BOT);
            s["description"] = json!(body["description"].as_str().unwrap_or(""));
            s["environment"] = d["environment"].clone();
            let log = body
                .get("log_url")
                .or_else(|| body.get("target_url"))
                .and_then(Value::as_str)
                .unwrap_or("");
            // `target_url` is always there (empty when not given); `log_url` and
            // `environment_url` are URIs, left out when not given.
            s["target_url"] = json!(log);
            let obj = s.as_object_mut().expect("status");
            obj.remove("log_url");
            obj.remove("environment_url");
            if !log.is_empty() {
                s["log_url"] = json!(log);
            }
            if let Some(url) = body["environment_url"].as_str() {
                s["environment_url"] = json!(url);
            }
            s["created_at"] = json!(now);
            s["updated_at"] = json!(now);
            state.statuses.push((id.unwrap_or(0), s.clone()));
            answer(201, s)
        }
        "repos/list-pull-requests-associated-with-commit" => {
            if grants.contents == Access::None {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/commits/commits#list-pull-requests-associated-with-a-commit",
                );
            }
            let sha = params.get("commit_sha").cloned().unwrap_or_default();
            if !state.commits.contains(&sha) {
                return error(
                    422,
                    &format!("No commit found for SHA: {sha}"),
                    "https://docs.github.com/rest/commits/commits#list-pull-requests-associated-with-a-commit",
                );
            }
            let items: Vec<Value> = state
                .commit_pulls
                .iter()
                .filter(|(c, _)| *c == sha)
                .map(|(_, p)| p.clone())
                .collect();
            paged(shared, path, query, items)
        }
        "issues/create-comment" => {
            if let Some(too_long) = body_too_long(body) {
                return too_long;
            }
            let issue_url = format!(
                "{}/repos/{OWNER}/{REPO}/issues/{}",
                shared.base,
                number.unwrap_or(0)
            );
            if !may_comment(state, grants, &issue_url) {
                return forbidden(
                    "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
                );
            }
            let Some(n) = number.filter(|n| state.issues.iter().any(|i| i["number"] == *n)) else {
                return error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
                );
            };
            let id = state.next_id;
            state.next_id += 10;
            let now = now_text();
            let mut c = Spec::get().example("issue-comment");
            c["id"] = json!(id);
            c["node_id"] = json!(format!("IC_kwDO{id:08}"));
            c["url"] = json!(format!(
                "{}/repos/{OWNER}/{REPO}/issues/comments/{id}",
                shared.base
            ));
            c["html_url"] = json!(format!(
                "https://github.com/{OWNER}/{REPO}/issues/{n}#issuecomment-{id}"
            ));
            c["issue_url"] = json!(format!("{}/repos/{OWNER}/{REPO}/issues/{n}", shared.base));
            c["body"] = body["body"].clone();
            c["user"] = user(BOT);
            c["created_at"] = json!(now);
            c["updated_at"] = json!(now);
            c["author_association"] = json!("NONE");
            state.comments.push(c.clone());
            if let Some(issue) = state.issues.iter_mut().find(|i| i["number"] == n) {
                issue["comments"] = json!(issue["comments"].as_u64().unwrap_or(0) + 1);
                issue["updated_at"] = json!(now);
            }
            let mut a = answer(201, c.clone());
            a.headers.push((
                "location".into(),
                c["url"].as_str().unwrap_or_default().into(),
            ));
            a
        }
        other => {
            state.violations.push(format!(
                "{other}: a valid GitHub operation this fake does not implement (add it)"
            ));
            error(404, "Not Found", "https://docs.github.com/rest")
        }
    }
}
