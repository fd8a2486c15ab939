//! Pieces shared by nubes's small REST clients for Azure services that are not
//! storage (`arm.rs` for Resource Manager, `kudu.rs` for App Service deployments): the
//! captured reply, why a send failed, `Retry-After` and backoff, and error chains.

use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, Url};

/// First retry delay after a transient failure; doubles per attempt.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest nubes waits between two attempts, whatever `Retry-After` says.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// A response read whole (these APIs answer small JSON documents).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request got no reply.
pub(crate) enum SendError {
    Token(azure_core::Error),
    Transport(reqwest::Error),
}

/// One authenticated request, read whole. The bearer token (for `scope`) is registered
/// as a secret before use; the debug log shows `label`, method, path and status only,
/// never the query or headers. `body` is the payload and its content type.
pub(crate) async fn send(
    http: &reqwest::Client,
    credential: &dyn TokenCredential,
    scope: &str,
    label: &str,
    method: &Method,
    url: &Url,
    body: Option<(Bytes, &'static str)>,
) -> Result<Reply, SendError> {
    let token = credential
        .get_token(&[scope], None)
        .await
        .map_err(SendError::Token)?;
    let token = token.token.secret();
    crate::secrets::register(token);
    send_with_token(http, token, label, method, url, body, None).await
}

/// [`send`] with a token already at hand (registered as a secret by the caller) and
/// optionally a `Cookie` header (Kudu's ARR affinity).
pub(crate) async fn send_with_token(
    http: &reqwest::Client,
    token: &str,
    label: &str,
    method: &Method,
    url: &Url,
    body: Option<(Bytes, &'static str)>,
    cookie: Option<String>,
) -> Result<Reply, SendError> {
    let started = Instant::now();
    let mut request = http
        .request(method.clone(), url.clone())
        .bearer_auth(token)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(cookie) = cookie {
        request = request.header(reqwest::header::COOKIE, cookie);
    }
    if let Some((body, content_type)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{label} {method} {} -> error", url.path());
            return Err(SendError::Transport(e));
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(SendError::Transport)?;
    tracing::debug!(
        "{label} {method} {} -> {status} ({} ms)",
        url.path(),
        started.elapsed().as_millis()
    );
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// `Retry-After` in seconds, capped at [`MAX_WAIT`]. An HTTP date (allowed by RFC
/// 9110, unused by these services) gives `None`, so the caller's own interval applies.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_WAIT))
}

/// Delay before retry `attempt` (1-based): [`FIRST_BACKOFF`] doubling, capped.
pub(crate) fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_WAIT)
}

/// How long to wait before retrying `reply`, if at all: 429 after `Retry-After` (else
/// `throttled`), 5xx after `Retry-After` (else the backoff of `attempt`).
fn retry_wait(reply: &Reply, attempt: u32, throttled: Duration) -> Option<Duration> {
    if reply.status == StatusCode::TOO_MANY_REQUESTS {
        Some(retry_after(&reply.headers).unwrap_or(throttled))
    } else if reply.status.is_server_error() {
        Some(retry_after(&reply.headers).unwrap_or_else(|| backoff(attempt)))
    } else {
        None
    }
}

/// Send with `attempt` up to `max_attempts` times: again after 429 and 5xx (see
/// [`retry_wait`]) and after connection failures (with backoff). The final reply is
/// returned whatever its status; the caller decides what it means. `label` names the
/// service in the debug log.
pub(crate) async fn with_retries<F, Fut>(
    label: &str,
    method: &Method,
    url: &Url,
    max_attempts: u32,
    throttled: Duration,
    mut attempt_once: F,
) -> Result<Reply, SendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Reply, SendError>>,
{
    let mut attempt = 1;
    loop {
        let result = attempt_once().await;
        let wait = match &result {
            Ok(reply) => retry_wait(reply, attempt, throttled),
            Err(SendError::Transport(e)) if !e.is_builder() => Some(backoff(attempt)),
            Err(_) => None,
        };
        match wait {
            Some(wait) if attempt < max_attempts => {
                tracing::debug!(
                    "{label} {method} {}: retrying in {} ms",
                    url.path(),
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            _ => return result,
        }
    }
}

/// An error and its sources on one line, each part once: reqwest's and the SDK's own
/// messages ("error sending request") say nothing without their sources, and often
/// repeat them.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_capped_and_backoff_doubles() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, "86400".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(MAX_WAIT));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers), None);
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(3), FIRST_BACKOFF * 4);
        assert_eq!(backoff(30), MAX_WAIT);
    }
}
