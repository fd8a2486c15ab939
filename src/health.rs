//! The health check after a deploy: GET `application_url + health_path` until it answers
//! 2xx, with backoff, until `health_timeout`; on failure the last status and a short body.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Healthy {
    pub url: String,
    pub status: u16,
    pub took: Duration,
}

pub fn url(application_url: &str, health_path: &str) -> String {
    let base = application_url.trim_end_matches('/');
    let path = health_path.trim_start_matches('/');
    if path.is_empty() {
        format!("{base}/")
    } else {
        format!("{base}/{path}")
    }
}

pub async fn check(application_url: &str, health_path: &str, timeout: Duration) -> Result<Healthy> {
    let url = url(application_url, health_path);
    let http = client_for(&url)?;
    let started = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        let last = match http.get(&url).timeout(Duration::from_secs(10)).send().await {
            Ok(resp) if resp.status().is_success() => {
                let status = resp.status().as_u16();
                tracing::info!("health check: {url} answered {status}");
                return Ok(Healthy {
                    url,
                    status,
                    took: started.elapsed(),
                });
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let short: String = body.chars().take(200).collect();
                format!("HTTP {status}: {}", short.trim())
            }
            // reqwest's own text ("error sending request") hides the cause (connection
            // refused, DNS, TLS): show the whole chain.
            Err(e) => crate::rest::error_chain(&e.without_url()),
        };
        if started.elapsed() + wait > timeout {
            return Err(Error::failed(format!(
                "health check of {url} failed after {}: last answer {last}",
                humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
            ))
            .hint("check the application's logs; raise [deploy] health_timeout or fix [deploy] health_path if it needs longer or answers elsewhere"));
        }
        tracing::debug!("health check of {url}: {last}; retrying in {wait:?}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// The HTTP client for `url`. Debug builds (the tests) honour `NUBES_TEST_RESOLVE` =
/// `<host suffix>=<ip:port>`: hosts ending in the suffix connect to that address, so an
/// in-test server can answer for names such as a Container Apps label host
/// (`app---next.<domain>`) that no resolver here knows.
fn client_for(url: &str) -> Result<reqwest::Client> {
    // Release builds read no test hook, so the URL is not needed there.
    #[cfg(not(debug_assertions))]
    let _ = url;
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var("NUBES_TEST_RESOLVE")
        && let Some((suffix, addr)) = spec.split_once('=')
        && let Ok(addr) = addr.parse::<std::net::SocketAddr>()
        && let Some(host) = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
        && host.ends_with(suffix)
    {
        return reqwest::Client::builder()
            .resolve(&host, addr)
            .build()
            .map_err(|e| Error::failed(format!("test resolver: {e}")));
    }
    crate::state::azure::http_client()
}

#[cfg(test)]
mod tests {
    #[test]
    fn joins_url_and_path() {
        assert_eq!(
            super::url("https://a.test/", "/health"),
            "https://a.test/health"
        );
        assert_eq!(super::url("https://a.test", "/"), "https://a.test/");
    }

    /// A refused connection is named as such, not as "error sending request".
    #[tokio::test]
    async fn a_refused_connection_shows_its_cause() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let Err(err) = super::check(
            &format!("http://127.0.0.1:{port}"),
            "/",
            std::time::Duration::from_millis(100),
        )
        .await
        else {
            panic!("nothing listens on {port}");
        };
        let text = err.to_string().to_lowercase();
        assert!(text.contains("connection refused"), "{text}");
        assert_eq!(
            super::url("http://h/acct/$web", "index.html"),
            "http://h/acct/$web/index.html"
        );
    }
}
