//! nubes's GitHub REST client, shared by everything that talks to GitHub's API: `reap`'s
//! branch listing, `drift --issue`, plan comments on pull requests and deployments.
//!
//! * Credentials come from the environment only: `GITHUB_TOKEN`, else `GH_TOKEN`. The
//!   token is registered with [`crate::secrets`] at once, goes only to the API's own
//!   origin (a `link` header pointing elsewhere is refused) and never over plain HTTP
//!   except to a loopback address (the in-test server).
//! * `GITHUB_API_URL` (set by Actions; GitHub Enterprise Server uses
//!   `https://<host>/api/v3`) and `GITHUB_REPOSITORY` (`owner/name`).
//! * Retries: 5xx and connection failures with backoff, for idempotent methods only (a
//!   POST that timed out may have created the issue; sending it again would make a
//!   duplicate). Rate limits (429, or 403 with `retry-after`, `x-ratelimit-remaining: 0`
//!   or a "rate limit" message) for every method, since GitHub did not act on them: after
//!   `retry-after`, else until `x-ratelimit-reset`, else one minute, as GitHub's
//!   documentation asks. A wait longer than [`RetryPolicy::max_wait`] is not waited for:
//!   the error says when the limit resets.
//! * Errors say what was being done, what GitHub answered, and for 401/403/404 which
//!   workflow `permissions:` entry the call needs ([`Permission`]).
//! * Lists follow the `link` header's `rel="next"`, at most [`MAX_PAGES`] pages; a longer
//!   list is an error, never silently cut (reap would take missing branches for gone).
//!
//! Sources: <https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>,
//! <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>,
//! <https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>.

pub mod actions;
pub mod comments;
pub mod deployments;
pub mod issues;
pub mod repos;

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::env_name::escaped;
use crate::error::Error;
use crate::rest::{backoff, error_chain, retry_after};

/// The REST API version nubes is written against (sent as `X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";
/// Lists longer than this many pages (of 100) are refused rather than cut.
pub const MAX_PAGES: usize = 100;
const DEFAULT_API_URL: &str = "https://api.github.com";

/// The workflow `permissions:` entry a call needs, named in errors when GitHub refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission(pub &'static str);

impl Permission {
    pub const CONTENTS_READ: Permission = Permission("contents: read");
    pub const ISSUES_READ: Permission = Permission("issues: read");
    pub const ISSUES_WRITE: Permission = Permission("issues: write");
    pub const PULL_REQUESTS_WRITE: Permission = Permission("pull-requests: write");
    pub const DEPLOYMENTS_WRITE: Permission = Permission("deployments: write");
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// How long nubes keeps trying. The defaults ride out a short outage or a secondary
/// rate limit; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The longest single wait nubes accepts; a rate limit resetting later fails at once.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            max_wait: Duration::from_secs(60),
        }
    }
}

/// `owner/name` of the repository, validated so both are safe path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    pub fn parse(text: &str) -> Result<Repo, Error> {
        let bad = || {
            Error::input(format!(
                "GITHUB_REPOSITORY `{}` is not `owner/name`",
                escaped(text, 100)
            ))
            .hint("set GITHUB_REPOSITORY to the repository, e.g. octo-org/petclinic (Actions sets it)")
        };
        let (owner, name) = text.trim().split_once('/').ok_or_else(bad)?;
        let owner_ok = !owner.is_empty()
            && owner.len() <= 39
            && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let name_ok = !name.is_empty()
            && name.len() <= 100
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if owner_ok && name_ok {
            Ok(Repo {
                owner: owner.into(),
                name: name.into(),
            })
        } else {
            Err(bad())
        }
    }

    /// `/repos/{owner}/{name}`, the prefix of every repository endpoint.
    pub fn path(&self) -> String {
        format!("/repos/{}/{}", self.owner, self.name)
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A failed call: what GitHub answered (if it answered) and the message and hint shown.
#[derive(Debug)]
pub struct ApiError {
    pub status: Option<StatusCode>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        let err = Error::failed(e.message);
        match e.hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

/// One request: the path below the API root, query, JSON body, a description for
/// errors ("listing the branches of octo/app") and the permission it needs.
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'a str, String)>,
    pub body: Option<Value>,
    pub what: String,
    pub needs: Permission,
}

impl<'a> Call<'a> {
    pub fn get(path: String, what: String, needs: Permission) -> Call<'a> {
        Call {
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            what,
            needs,
        }
    }

    pub fn with_body(
        method: Method,
        path: String,
        body: Value,
        what: String,
        needs: Permission,
    ) -> Call<'a> {
        Call {
            method,
            path,
            query: Vec::new(),
            body: Some(body),
            what,
            needs,
        }
    }

    pub fn query(mut self, key: &'a str, value: impl Into<String>) -> Call<'a> {
        self.query.push((key, value.into()));
        self
    }
}

/// A response read whole (GitHub answers small JSON documents).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// The GitHub REST client for one repository.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// The API root without a trailing slash, e.g. `https://api.github.com`.
    base: String,
    token: String,
    repo: Repo,
    policy: RetryPolicy,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

fn env_var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// `GITHUB_TOKEN`, else `GH_TOKEN` (what the `gh` CLI reads).
fn token_from_env() -> Option<String> {
    env_var("GITHUB_TOKEN").or_else(|| env_var("GH_TOKEN"))
}

impl Api {
    /// The client `purpose` (e.g. "`drift --issue`") needs: token and repository from
    /// the environment, or an input error (exit 2) saying what to set.
    pub fn from_env(purpose: &str) -> Result<Api, Error> {
        let Some(token) = token_from_env() else {
            return Err(Error::input(format!("{purpose} needs a GitHub token")).hint(
                "set GITHUB_TOKEN (in a workflow, on the step: `env: GITHUB_TOKEN: ${{ github.token }}`) \
                 or GH_TOKEN",
            ));
        };
        crate::secrets::register(&token);
        let Some(repository) = env_var("GITHUB_REPOSITORY") else {
            return Err(Error::input(format!(
                "{purpose} needs GITHUB_REPOSITORY to know which repository to use"
            ))
            .hint("set GITHUB_REPOSITORY=owner/name (Actions sets it)"));
        };
        let api_url = env_var("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.into());
        Api::new(&api_url, &token, &repository)
    }

    /// The client, when both a token and `GITHUB_REPOSITORY` are set (as in Actions);
    /// `None` when either is missing, for callers that have another way (reap asks git).
    pub fn from_env_if_configured() -> Result<Option<Api>, Error> {
        if token_from_env().is_none() || env_var("GITHUB_REPOSITORY").is_none() {
            return Ok(None);
        }
        Api::from_env("GitHub access").map(Some)
    }

    /// A client for `repository` (`owner/name`) at `api_url`.
    pub fn new(api_url: &str, token: &str, repository: &str) -> Result<Api, Error> {
        crate::secrets::register(token);
        let repo = Repo::parse(repository)?;
        let url = Url::parse(api_url.trim()).map_err(|e| {
            Error::input(format!(
                "GITHUB_API_URL `{}` is not a URL: {e}",
                escaped(api_url, 200)
            ))
        })?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(Error::input(format!(
                "GITHUB_API_URL `{}` is not https: nubes sends the GitHub token only over HTTPS",
                escaped(api_url, 200)
            ))
            .hint(
                "use https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise Server",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(Error::input(format!(
                "GITHUB_API_URL `{}` must be a plain base URL (no credentials, query or fragment)",
                escaped(api_url, 200)
            )));
        }
        Ok(Api {
            http: crate::state::azure::http_client()?,
            base: url.as_str().trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            repo,
            policy: RetryPolicy::default(),
        })
    }

    /// Replace the retry policy (tests use short waits).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Api {
        self.policy = policy;
        self
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// One call; a JSON answer (or `null` for an empty body such as 204).
    pub async fn call(&self, call: Call<'_>) -> Result<Value, ApiError> {
        let url = self.url(&call.path, &call.query)?;
        let reply = self.send(&call, url).await?;
        parse_json(&call, &reply)
    }

    /// Every item of a list endpoint, following `link: <…>; rel="next"` (with
    /// `per_page=100` unless the call sets it).
    pub async fn list(&self, mut call: Call<'_>) -> Result<Vec<Value>, ApiError> {
        if !call.query.iter().any(|(k, _)| *k == "per_page") {
            call.query.push(("per_page", "100".into()));
        }
        let mut url = self.url(&call.path, &call.query)?;
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let reply = self.send(&call, url).await?;
            match parse_json(&call, &reply)? {
                Value::Array(page) => items.extend(page),
                _ => {
                    return Err(ApiError {
                        status: Some(reply.status),
                        message: format!("GitHub's answer to {} was not a list", call.what),
                        hint: None,
                    });
                }
            }
            match next_link(&reply.headers) {
                None => return Ok(items),
                Some(next) => url = self.same_origin(&next, &call)?,
            }
        }
        Err(ApiError {
            status: None,
            message: format!(
                "{} gave more than {MAX_PAGES} pages; nubes does not act on a partial list",
                call.what
            ),
            hint: None,
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ApiError> {
        let mut url = Url::parse(&format!("{}{path}", self.base)).map_err(|e| ApiError {
            status: None,
            message: format!("cannot form a GitHub API URL for {path}: {e}"),
            hint: None,
        })?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// A `link` target, accepted only below the API root (the token goes nowhere else).
    fn same_origin(&self, link: &str, call: &Call<'_>) -> Result<Url, ApiError> {
        let refused = || ApiError {
            status: None,
            message: format!(
                "GitHub's next-page link for {} points outside {}; not followed",
                call.what, self.base
            ),
            hint: None,
        };
        let url = Url::parse(link).map_err(|_| refused())?;
        let inside = url.as_str().starts_with(&format!("{}/", self.base));
        if inside { Ok(url) } else { Err(refused()) }
    }

    /// Send with retries (see the module doc) and map refusals to errors.
    async fn send(&self, call: &Call<'_>, url: Url) -> Result<Reply, ApiError> {
        let idempotent = call.method != Method::POST;
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self.send_once(call, &url).await;
            let wait = match &result {
                Ok(reply) => {
                    tracing::debug!(
                        "github {} {} -> {} ({} ms)",
                        call.method,
                        url.path(),
                        reply.status,
                        started.elapsed().as_millis()
                    );
                    if is_rate_limited(reply) {
                        let wait = rate_limit_wait(&reply.headers, time::OffsetDateTime::now_utc());
                        if wait > self.policy.max_wait {
                            return Err(rate_limit_error(call, reply, wait));
                        }
                        Some(wait)
                    } else if reply.status.is_server_error() && idempotent {
                        Some(retry_after(&reply.headers).unwrap_or_else(|| backoff(attempt)))
                    } else {
                        None
                    }
                }
                Err(e) => {
                    tracing::debug!(
                        "github {} {} -> {}",
                        call.method,
                        url.path(),
                        error_chain(e)
                    );
                    (idempotent || e.is_connect()).then(|| backoff(attempt))
                }
            };
            match (wait, result) {
                (Some(wait), result) if attempt < self.policy.max_attempts => {
                    let why = match &result {
                        Ok(r) if is_rate_limited(r) => "GitHub's rate limit".to_string(),
                        Ok(r) => format!("GitHub answered {}", r.status),
                        Err(_) => "GitHub could not be reached".to_string(),
                    };
                    tracing::info!(
                        "{why} while {}; trying again in {} s",
                        call.what,
                        wait.as_secs_f32().max(0.1)
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                (_, Ok(reply)) if reply.status.is_success() => return Ok(reply),
                (_, Ok(reply)) => return Err(refusal(call, &self.repo, &reply)),
                (_, Err(e)) => {
                    return Err(ApiError {
                        status: None,
                        message: format!(
                            "{} failed: GitHub's API at {} could not be reached: {}",
                            call.what,
                            self.base,
                            error_chain(&e.without_url())
                        ),
                        hint: Some(
                            "check GITHUB_API_URL and the network; nothing was changed on GitHub"
                                .into(),
                        ),
                    });
                }
            }
        }
    }

    async fn send_once(&self, call: &Call<'_>, url: &Url) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header(
                reqwest::header::USER_AGENT,
                concat!("nubes/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

fn parse_json(call: &Call<'_>, reply: &Reply) -> Result<Value, ApiError> {
    if reply.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&reply.body).map_err(|e| ApiError {
        status: Some(reply.status),
        message: format!("GitHub's answer to {} is not JSON: {e}", call.what),
        hint: None,
    })
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::trim)
}

/// GitHub's `message` (and the `errors` of a 422), shortened and made printable.
fn github_message(reply: &Reply) -> String {
    let doc: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let mut text = doc
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(errors) = doc.get("errors").and_then(Value::as_array) {
        let details: Vec<String> = errors
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!(
                            "{} {}",
                            other.get("field").and_then(Value::as_str).unwrap_or(""),
                            other.get("code").and_then(Value::as_str).unwrap_or("")
                        )
                    }),
            })
            .collect();
        if !details.is_empty() {
            text = format!("{text}: {}", details.join("; "));
        }
    }
    escaped(text.trim(), 300)
}

/// Primary or secondary rate limit, as GitHub signals them (429, or 403 with the headers
/// or message that only rate limiting produces).
fn is_rate_limited(reply: &Reply) -> bool {
    match reply.status {
        StatusCode::TOO_MANY_REQUESTS => true,
        StatusCode::FORBIDDEN => {
            header(&reply.headers, "retry-after").is_some()
                || header(&reply.headers, "x-ratelimit-remaining") == Some("0")
                || github_message(reply)
                    .to_ascii_lowercase()
                    .contains("rate limit")
        }
        _ => false,
    }
}

/// How long GitHub asks us to wait: `retry-after`, else until `x-ratelimit-reset` when
/// the quota is used up, else one minute (the documented rule for secondary limits).
fn rate_limit_wait(headers: &HeaderMap, now: time::OffsetDateTime) -> Duration {
    if let Some(seconds) = header(headers, "retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Duration::from_secs(seconds);
    }
    if header(headers, "x-ratelimit-remaining") == Some("0")
        && let Some(reset) =
            header(headers, "x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok())
    {
        let seconds = (reset - now.unix_timestamp()).max(0) as u64;
        // The reset time is whole seconds: one more so the quota has really been renewed.
        return Duration::from_secs(seconds + 1);
    }
    Duration::from_secs(60)
}

fn rate_limit_error(call: &Call<'_>, reply: &Reply, wait: Duration) -> ApiError {
    let until = time::OffsetDateTime::now_utc() + wait;
    let until = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    ApiError {
        status: Some(reply.status),
        message: format!(
            "GitHub's rate limit stopped {} ({} {}); it resets in {} s (at {until})",
            call.what,
            reply.status.as_u16(),
            github_message(reply),
            wait.as_secs()
        ),
        hint: Some(
            "run it again after the reset; other jobs using the same token share its limit".into(),
        ),
    }
}

/// The error for a final non-success answer, with the permission hint where it applies.
fn refusal(call: &Call<'_>, repo: &Repo, reply: &Reply) -> ApiError {
    let status = reply.status;
    let text = github_message(reply);
    let shown = if text.is_empty() {
        status.as_u16().to_string()
    } else {
        format!("{} {text}", status.as_u16())
    };
    let permission_hint = format!(
        "the token lacks `{}` on {repo}: give the workflow job `permissions:` `{}` \
         (a personal access token needs the same access)",
        call.needs, call.needs
    );
    let hint = match status {
        StatusCode::UNAUTHORIZED => Some(
            "the token in GITHUB_TOKEN/GH_TOKEN is invalid or expired; in a workflow pass \
             `${{ github.token }}`"
                .to_string(),
        ),
        StatusCode::FORBIDDEN => Some(permission_hint),
        // GitHub answers 404 rather than 403 when the token may not see what it asks for.
        StatusCode::NOT_FOUND => Some(format!(
            "{repo} or the object does not exist, or {permission_hint}"
        )),
        StatusCode::GONE => Some(format!(
            "the feature is turned off for {repo} (e.g. Issues disabled in the repository settings)"
        )),
        _ => None,
    };
    ApiError {
        status: Some(status),
        message: format!("GitHub refused {}: {shown}", call.what),
        hint,
    }
}

/// The `rel="next"` target of a `link` header (RFC 8288, as GitHub writes it).
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = header(headers, "link")?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_owner_slash_name_of_safe_characters() {
        let r = Repo::parse("octo-org/pet.clinic_2").expect("valid");
        assert_eq!(r.path(), "/repos/octo-org/pet.clinic_2");
        for bad in [
            "", "octo", "octo/", "/x", "a/b/c", "o/..", "o/a b", "o_o/x", "o/x?y",
        ] {
            let e = Repo::parse(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn the_token_goes_only_over_https_or_to_loopback() {
        assert!(Api::new("https://ghe.example.com/api/v3/", "tok-123456", "o/r").is_ok());
        assert!(Api::new("http://127.0.0.1:8080", "tok-123456", "o/r").is_ok());
        let e =
            Api::new("http://ghe.example.com/api/v3", "tok-123456", "o/r").expect_err("plain http");
        assert!(e.to_string().contains("only over HTTPS"), "{e}");
        assert!(Api::new("https://user:pw@ghe.example.com", "tok-123456", "o/r").is_err());
        let api = Api::new("https://ghe.example.com/api/v3/", "tok-123456", "o/r").expect("ghes");
        let url = api
            .url("/repos/o/r/issues", &[("labels", "a,b".into())])
            .expect("url");
        assert_eq!(
            url.as_str(),
            "https://ghe.example.com/api/v3/repos/o/r/issues?labels=a%2Cb"
        );
        let call = Call::get("/x".into(), "listing".into(), Permission::ISSUES_READ);
        assert!(
            api.same_origin(
                "https://ghe.example.com/api/v3/repos/o/r/issues?page=2",
                &call
            )
            .is_ok()
        );
        assert!(
            api.same_origin("https://ghe.example.com/api/v3evil/x", &call)
                .is_err()
        );
        assert!(
            api.same_origin("https://evil.example.com/api/v3/x", &call)
                .is_err()
        );
    }

    #[test]
    fn next_links_and_rate_limit_waits_follow_githubs_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=3>; rel=\"next\", <https://api.github.com/x?page=9>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/x?page=3")
        );
        h.insert(
            "link",
            HeaderValue::from_static("<https://api.github.com/x?page=9>; rel=\"last\""),
        );
        assert_eq!(next_link(&h), None);

        let now = time::OffsetDateTime::from_unix_timestamp(1_000_000).expect("time");
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_wait(&h, now), Duration::from_secs(60));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1000030"));
        assert_eq!(rate_limit_wait(&h, now), Duration::from_secs(31));
        h.insert("retry-after", HeaderValue::from_static("5"));
        assert_eq!(rate_limit_wait(&h, now), Duration::from_secs(5));
    }
}
