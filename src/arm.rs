//! Azure Resource Manager, for the one thing nubes asks of it: the `resource-group`
//! teardown strategy of `nubes down`, which deletes every resource group tagged with both
//! `nubes-env=<env>` and `nubes-project=<project>` instead of running `terraform destroy`.
//!
//! Plain REST on our own reqwest client (the one that trusts `NUBES_STORAGE_CA_CERT`):
//! there is no official 1.x Rust SDK for Resource Manager, and the three calls needed
//! here are small. The documented protocols are followed:
//!
//! * Listing is paged (`nextLink`) and filtered by the server on one tag only. Both tags
//!   are checked again here, so a filter a server or proxy ignored can never widen a
//!   teardown to other environments or projects.
//! * A DELETE answers 200 (done), 202 (started: follow `Azure-AsyncOperation` if given,
//!   else `Location`, waiting `Retry-After` between polls) or 404 (already gone).
//! * 429 waits `Retry-After`; 5xx and dropped connections back off. Both are bounded.
//!
//! Requests are logged at debug level as method and path only. The bearer token travels
//! in a header that is never printed, only to the configured endpoint's origin, and is
//! registered with [`crate::secrets`] so text a server echoes back is scrubbed as well.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::{Host, Url};

mod slots;

use crate::error::{Error, Result, exit};
use crate::rest::{Reply, SendError, error_chain, retry_after};
use crate::secrets;
use crate::state::{auth, azure};

/// Public-cloud Resource Manager; `NUBES_ARM_ENDPOINT` replaces it (tests, proxies).
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// The tags `nubes up` puts on everything it creates (DESIGN.md, the pipeline, step 2).
pub const ENV_TAG: &str = "nubes-env";
pub const PROJECT_TAG: &str = "nubes-project";

const SCOPE: &str = "https://management.azure.com/.default";
const API_VERSION: &str = "2021-04-01";
const ASYNC_OPERATION: &str = "azure-asyncoperation";

/// At most this many requests to Resource Manager at once. Requests are bounded rather
/// than whole deletions so that every deletion starts at once (Azure then works on them
/// in parallel, each taking minutes) while the polling stays well inside the
/// subscription's request limits.
const MAX_IN_FLIGHT: usize = 4;
/// Tries per request when throttled, on 5xx, or when the connection fails.
const MAX_ATTEMPTS: u32 = 5;
/// Throttled without a `Retry-After` (ARM always sends one, proxies may not).
const THROTTLED_WAIT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// A `nextLink` chain longer than this is a server bug, not a subscription.
const MAX_PAGES: usize = 1000;

/// A Resource Manager client for one subscription.
pub struct Arm {
    http: reqwest::Client,
    endpoint: Url,
    subscription: String,
    credential: Arc<dyn TokenCredential>,
    /// How the credential was found ("service principal from AZURE_CREDENTIALS"), when known.
    credential_kind: Option<&'static str>,
    in_flight: Semaphore,
}

/// What happened to one resource group. `Err` holds a message for the user (redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOutcome {
    pub name: String,
    pub result: std::result::Result<(), String>,
}

impl Arm {
    /// Endpoint: `NUBES_ARM_ENDPOINT` (used by tests; must be https unless it is a loopback
    /// address) or https://management.azure.com.
    /// Subscription: `ARM_SUBSCRIPTION_ID`, else `AZURE_SUBSCRIPTION_ID`, else
    /// `subscriptionId` in the AZURE_CREDENTIALS JSON.
    /// Credential: the chain of DESIGN.md with `NUBES_ARM_TOKEN` as the static token.
    pub fn from_env() -> Result<Arm> {
        let (subscription, source) = subscription_from(env_var)?;
        let subscription = parse_subscription(&subscription).map_err(|e| e.context(source))?;
        Arm::from_env_for(&subscription)
    }

    /// Like [`Arm::from_env`], for a subscription the caller already resolved (a flag).
    pub fn from_env_for(subscription: &str) -> Result<Arm> {
        let http = azure::http_client()?;
        let (credential, kind) = auth::token_credential(http.clone(), "NUBES_ARM_TOKEN")?;
        let endpoint = env_var("NUBES_ARM_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let mut arm = Arm::build(http, &endpoint, subscription, credential)?;
        arm.credential_kind = Some(kind);
        Ok(arm)
    }

    /// A client with everything given explicitly (tests; callers with their own settings).
    pub fn new(
        endpoint: &str,
        subscription: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Arm> {
        Arm::build(azure::http_client()?, endpoint, subscription, credential)
    }

    fn build(
        http: reqwest::Client,
        endpoint: &str,
        subscription: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Arm> {
        Ok(Arm {
            http,
            endpoint: parse_endpoint(endpoint)?,
            subscription: parse_subscription(subscription)?,
            credential,
            credential_kind: None,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Lists the matching groups (paged), deletes them all concurrently, and waits for
    /// every deletion to finish or `timeout` (counted from the end of the listing).
    /// Returns what happened per group, in listing order. A group already gone (404)
    /// counts as deleted.
    ///
    /// `Err` only when nothing was deleted: the listing failed, or every deletion was
    /// refused for lack of permission (exit 2). Other failures are per group.
    pub async fn delete_tagged_groups(
        &self,
        env: &str,
        project: &str,
        timeout: Duration,
    ) -> Result<Vec<GroupOutcome>> {
        let names = self.tagged_groups(env, project).await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        tracing::info!(
            "deleting resource groups tagged {ENV_TAG}={env}, {PROJECT_TAG}={project}: {}",
            names.join(", ")
        );
        let deadline = Instant::now() + timeout;
        let deletions = names
            .iter()
            .map(|name| self.delete_before(name, deadline, timeout));
        let results = futures::future::join_all(deletions).await;
        outcomes(names, results)
    }

    /// Names of the groups carrying both tags, across every page.
    async fn tagged_groups(&self, env: &str, project: &str) -> Result<Vec<String>> {
        let doing = format!("listing the resource groups of environment `{env}`");
        let mut next = Some(self.list_url(env));
        let mut names = Vec::new();
        for _ in 0..MAX_PAGES {
            let Some(url) = next.take() else {
                return Ok(names);
            };
            let reply = self.call(Method::GET, &url, &doing).await?;
            match reply.status {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Err(self.subscription_not_found(&doing, &reply)),
                _ => return Err(self.status_error(&doing, &reply)),
            }
            let page: GroupPage = parse_json(&reply, &doing)?;
            names.extend(
                page.value
                    .into_iter()
                    .filter(|g| g.is_tagged(env, project))
                    .map(|g| g.name),
            );
            next = match page.next_link.filter(|l| !l.is_empty()) {
                Some(link) => Some(self.own_url(&link, &doing)?),
                None => None,
            };
        }
        Err(Error::failed(format!(
            "{doing}: Resource Manager kept returning further pages (more than {MAX_PAGES})"
        )))
    }

    async fn delete_before(&self, name: &str, deadline: Instant, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, self.delete_group(name)).await {
            Ok(Ok(())) => {
                tracing::info!(
                    "deleted resource group `{name}` ({})",
                    humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
                );
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::failed(format!(
                "deleting resource group `{name}` did not finish within {}; Azure may still be \
                 deleting it (see `az group show --name {name}`)",
                humantime::format_duration(timeout)
            ))),
        }
    }

    async fn delete_group(&self, name: &str) -> Result<()> {
        let doing = format!("deleting resource group `{name}`");
        let reply = self
            .call(Method::DELETE, &self.group_url(name), &doing)
            .await?;
        match reply.status {
            StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            StatusCode::NOT_FOUND => {
                tracing::debug!("resource group `{name}` was already gone");
                Ok(())
            }
            StatusCode::ACCEPTED => self.wait_for_operation(&reply, &doing).await,
            _ => Err(self.status_error(&doing, &reply)),
        }
    }

    /// Follow a 202 to its end: `Azure-AsyncOperation` is preferred, as documented;
    /// `Location` is the fallback.
    async fn wait_for_operation(&self, accepted: &Reply, doing: &str) -> Result<()> {
        let delay = poll_delay(&accepted.headers);
        if let Some(url) = self.header_url(&accepted.headers, ASYNC_OPERATION, doing)? {
            self.poll_operation_status(url, delay, doing).await
        } else if let Some(url) = self.header_url(&accepted.headers, LOCATION.as_str(), doing)? {
            self.poll_location(url, delay, doing).await
        } else {
            Err(Error::failed(format!(
                "{doing}: Resource Manager accepted the request but sent neither an \
                 Azure-AsyncOperation nor a Location header to follow it by"
            )))
        }
    }

    /// `Azure-AsyncOperation`: 200 with `{"status": ...}` until a terminal status.
    async fn poll_operation_status(
        &self,
        url: Url,
        mut delay: Duration,
        doing: &str,
    ) -> Result<()> {
        loop {
            tokio::time::sleep(delay).await;
            let reply = self.call(Method::GET, &url, doing).await?;
            if !reply.status.is_success() {
                return Err(self.status_error(doing, &reply));
            }
            let operation: OperationStatus = parse_json(&reply, doing)?;
            let status = operation.status.as_str();
            if status.eq_ignore_ascii_case("Succeeded") {
                return Ok(());
            }
            // "Cancelled" too: some services spell it that way.
            if ["Failed", "Canceled", "Cancelled"]
                .iter()
                .any(|s| status.eq_ignore_ascii_case(s))
            {
                return Err(Error::failed(format!(
                    "{doing}: Azure reports the operation {status}: {}",
                    describe_error(operation.error.as_ref())
                        .unwrap_or_else(|| "no reason given".into())
                )));
            }
            // InProgress, or any service-specific state that is not terminal.
            delay = poll_delay(&reply.headers);
        }
    }

    /// `Location`: 202 while running, 200/204 when done, an error status on failure.
    async fn poll_location(&self, url: Url, mut delay: Duration, doing: &str) -> Result<()> {
        loop {
            tokio::time::sleep(delay).await;
            let reply = self.call(Method::GET, &url, doing).await?;
            match reply.status {
                StatusCode::ACCEPTED => delay = poll_delay(&reply.headers),
                s if s.is_success() => return Ok(()),
                _ => return Err(self.status_error(doing, &reply)),
            }
        }
    }

    /// GET a resource below the subscription (`segments` after `/subscriptions/<id>/`);
    /// `None` when Resource Manager answers 404 (the resource or its group does not exist).
    /// `permission` names the role a 401/403 hint should suggest.
    pub async fn get_resource(
        &self,
        segments: &[&str],
        api_version: &str,
        doing: &str,
        permission: &str,
    ) -> Result<Option<serde_json::Value>> {
        let url = self.resource_url(segments, api_version);
        let reply = self.call(Method::GET, &url, doing).await?;
        match reply.status {
            StatusCode::OK => parse_json(&reply, doing).map(Some),
            StatusCode::NOT_FOUND if is_subscription_not_found(&reply) => {
                Err(self.subscription_not_found(doing, &reply))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error_for(doing, &reply, permission)),
        }
    }

    /// POST a JSON body to an action below the subscription (e.g. a provider's
    /// `checkNameAvailability`) and return the JSON answer of a 200.
    pub async fn post_action(
        &self,
        segments: &[&str],
        api_version: &str,
        body: &serde_json::Value,
        doing: &str,
        permission: &str,
    ) -> Result<serde_json::Value> {
        let url = self.resource_url(segments, api_version);
        let body = bytes::Bytes::from(body.to_string());
        let reply = self
            .call_with(Method::POST, &url, Some(body), doing)
            .await?;
        match reply.status {
            StatusCode::OK => parse_json(&reply, doing),
            StatusCode::NOT_FOUND if is_subscription_not_found(&reply) => {
                Err(self.subscription_not_found(doing, &reply))
            }
            _ => Err(self.status_error_for(doing, &reply, permission)),
        }
    }

    /// PATCH (or PUT, POST) a JSON body to a resource below the subscription and wait for
    /// the change to finish: 200/201/204 are done; 202 is followed through
    /// `Azure-AsyncOperation` (else `Location`) as [`Arm::delete_tagged_groups`] does.
    /// Used by the Container Apps rollout (`deploy/container_apps.rs`).
    pub async fn change_resource(
        &self,
        method: Method,
        segments: &[&str],
        api_version: &str,
        body: Option<&serde_json::Value>,
        doing: &str,
        permission: &str,
    ) -> Result<()> {
        let url = self.resource_url(segments, api_version);
        let body = body.map(|b| bytes::Bytes::from(b.to_string()));
        let reply = self.call_with(method, &url, body, doing).await?;
        match reply.status {
            StatusCode::OK | StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(()),
            StatusCode::ACCEPTED => self.wait_for_operation(&reply, doing).await,
            StatusCode::NOT_FOUND if is_subscription_not_found(&reply) => {
                Err(self.subscription_not_found(doing, &reply))
            }
            _ => Err(self.status_error_for(doing, &reply, permission)),
        }
    }

    /// One Resource Manager call, retried when throttled (after `Retry-After`), on 5xx
    /// and on connection failures (with backoff). The final reply is returned whatever
    /// its status; the caller decides what it means.
    async fn call(&self, method: Method, url: &Url, doing: &str) -> Result<Reply> {
        self.call_with(method, url, None, doing).await
    }

    async fn call_with(
        &self,
        method: Method,
        url: &Url,
        body: Option<bytes::Bytes>,
        doing: &str,
    ) -> Result<Reply> {
        crate::rest::with_retries("arm", &method, url, MAX_ATTEMPTS, THROTTLED_WAIT, || {
            self.send(&method, url, body.clone())
        })
        .await
        .map_err(|e| self.send_error(e, doing))
    }

    async fn send(
        &self,
        method: &Method,
        url: &Url,
        body: Option<bytes::Bytes>,
    ) -> std::result::Result<Reply, SendError> {
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self.in_flight.acquire().await.ok();
        crate::rest::send(
            &self.http,
            &*self.credential,
            SCOPE,
            "arm",
            method,
            url,
            body.map(|b| (b, "application/json")),
        )
        .await
    }

    fn send_error(&self, e: SendError, doing: &str) -> Error {
        match e {
            SendError::Token(e) => Error::input(format!(
                "{doing}: could not get an access token for Azure Resource Manager{}: {}",
                self.kind_suffix(),
                error_chain(&e)
            ))
            .hint(crate::state::auth::token_hint(
                &e,
                self.credential_kind.unwrap_or_default(),
            )),
            SendError::Transport(e) => Error::failed(secrets::redact(&format!(
                "{doing}: cannot reach Azure Resource Manager at {}: {}",
                self.endpoint.origin().ascii_serialization(),
                error_chain(&e.without_url())
            )))
            .hint(format!(
                "check the network (and NUBES_ARM_ENDPOINT if set); nubes tried {MAX_ATTEMPTS} times"
            )),
        }
    }

    /// An unexpected status, as an error a user can act on.
    fn status_error(&self, doing: &str, reply: &Reply) -> Error {
        let sub = &self.subscription;
        let permission = format!(
            "the identity needs permission to delete resource groups in subscription {sub}, e.g. \
             the Contributor role: `az role assignment create --assignee <client-id> --role \
             Contributor --scope /subscriptions/{sub}`"
        );
        self.status_error_for(doing, reply, &permission)
    }

    /// An unexpected status; `permission` is the hint for 401 and 403.
    fn status_error_for(&self, doing: &str, reply: &Reply, permission: &str) -> Error {
        let sub = &self.subscription;
        let detail = server_error(reply);
        let permission = permission.to_string();
        match reply.status {
            StatusCode::UNAUTHORIZED => Error::input(format!(
                "{doing}: Azure Resource Manager did not accept the access token{} for \
                 subscription {sub} ({detail})",
                self.kind_suffix()
            ))
            .hint(format!(
                "check that the credential is valid, not expired and of the subscription's tenant; {permission}"
            )),
            StatusCode::FORBIDDEN => Error::input(format!(
                "{doing}: the identity{} is not allowed to do this in subscription {sub} ({detail})",
                self.kind_suffix()
            ))
            .hint(permission),
            _ => Error::failed(format!("{doing}: Azure Resource Manager answered {detail}")),
        }
    }

    fn subscription_not_found(&self, doing: &str, reply: &Reply) -> Error {
        Error::input(format!(
            "{doing}: subscription {} was not found ({})",
            self.subscription,
            server_error(reply)
        ))
        .hint("set ARM_SUBSCRIPTION_ID to the subscription that holds the environment (`az account show --query id -o tsv`)")
    }

    fn kind_suffix(&self) -> String {
        self.credential_kind
            .map(|k| format!(" ({k})"))
            .unwrap_or_default()
    }

    fn resource_url(&self, segments: &[&str], api_version: &str) -> Url {
        let mut path = vec!["subscriptions", self.subscription.as_str()];
        path.extend_from_slice(segments);
        self.url(&path, &format!("api-version={api_version}"))
    }

    fn list_url(&self, env: &str) -> Url {
        let query = format!(
            "api-version={API_VERSION}&$filter={}",
            encode_query_value(&tag_filter(ENV_TAG, env))
        );
        self.url(
            &["subscriptions", &self.subscription, "resourcegroups"],
            &query,
        )
    }

    fn group_url(&self, name: &str) -> Url {
        self.url(
            &["subscriptions", &self.subscription, "resourcegroups", name],
            &format!("api-version={API_VERSION}"),
        )
    }

    fn url(&self, segments: &[&str], query: &str) -> Url {
        let mut url = self.endpoint.clone();
        // Cannot fail: `parse_endpoint` only accepts http(s) URLs, which always have a path.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.set_query(Some(query));
        url
    }

    /// A URL the server handed us (`nextLink`, operation status). The bearer token goes
    /// only to the endpoint's own origin: a reply must not be able to send it elsewhere.
    fn own_url(&self, link: &str, doing: &str) -> Result<Url> {
        let url = self.endpoint.join(link).map_err(|e| {
            Error::failed(format!(
                "{doing}: Resource Manager sent a link that is not a URL: {e}"
            ))
        })?;
        if url.origin() != self.endpoint.origin() {
            return Err(Error::failed(format!(
                "{doing}: Resource Manager sent a link to {}, not to {}; nubes sends its access \
                 token only to the endpoint",
                url.origin().ascii_serialization(),
                self.endpoint.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    fn header_url(&self, headers: &HeaderMap, name: &str, doing: &str) -> Result<Option<Url>> {
        match headers.get(name).and_then(|v| v.to_str().ok()) {
            Some(link) if !link.trim().is_empty() => self.own_url(link.trim(), doing).map(Some),
            _ => Ok(None),
        }
    }
}

/// Per-group outcomes; or, when every deletion was refused for lack of permission,
/// that refusal: nothing changed, so it is a configuration problem (exit 2), not a
/// partial teardown.
fn outcomes(names: Vec<String>, results: Vec<Result<()>>) -> Result<Vec<GroupOutcome>> {
    let all_refused = results
        .iter()
        .all(|r| matches!(r, Err(e) if e.exit_code() == exit::USAGE));
    let mut results = results.into_iter();
    if all_refused && let Some(Err(e)) = results.next() {
        return Err(e);
    }
    Ok(names
        .into_iter()
        .zip(results)
        .map(|(name, result)| GroupOutcome {
            name,
            result: result.map_err(|e| explain(&e)),
        })
        .collect())
}

/// An error as one line for a per-group outcome, with its hint, scrubbed of secrets.
fn explain(e: &Error) -> String {
    let text = match e.hint_text() {
        Some(hint) => format!("{e} (hint: {hint})"),
        None => e.to_string(),
    };
    secrets::redact(&text)
}

#[derive(Deserialize)]
struct GroupPage {
    #[serde(default)]
    value: Vec<Group>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct Group {
    name: String,
    #[serde(default)]
    tags: Option<HashMap<String, serde_json::Value>>,
}

impl Group {
    /// Tag names compare case-insensitively and values exactly, as Azure treats them.
    fn tag(&self, name: &str) -> Option<&str> {
        let tags = self.tags.as_ref()?;
        tags.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }

    fn is_tagged(&self, env: &str, project: &str) -> bool {
        self.tag(ENV_TAG) == Some(env) && self.tag(PROJECT_TAG) == Some(project)
    }
}

#[derive(Deserialize)]
struct OperationStatus {
    status: String,
    error: Option<ErrorDetail>,
}

/// ARM's error body: `{"error": {"code": ..., "message": ...}}`.
#[derive(Deserialize)]
struct CloudError {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

fn describe_error(detail: Option<&ErrorDetail>) -> Option<String> {
    let detail = detail?;
    let text = match (detail.code.as_deref(), detail.message.as_deref()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(only), None) | (None, Some(only)) => only.to_string(),
        (None, None) => return None,
    };
    Some(secrets::redact(&text))
}

/// A 404 about the subscription itself, not about the resource asked for.
fn is_subscription_not_found(reply: &Reply) -> bool {
    serde_json::from_slice::<CloudError>(&reply.body)
        .ok()
        .and_then(|c| c.error?.code)
        .is_some_and(|code| code.eq_ignore_ascii_case("SubscriptionNotFound"))
}

/// The status and what the server said about it (ARM's error JSON, else a short excerpt).
fn server_error(reply: &Reply) -> String {
    let said = serde_json::from_slice::<CloudError>(&reply.body)
        .ok()
        .and_then(|c| describe_error(c.error.as_ref()))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&reply.body);
            secrets::redact(&text.trim().chars().take(200).collect::<String>())
        });
    if said.is_empty() {
        reply.status.to_string()
    } else {
        format!("{}: {said}", reply.status)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(reply: &Reply, doing: &str) -> Result<T> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        Error::failed(format!(
            "{doing}: Resource Manager answered {} with a body nubes does not understand: {e}",
            reply.status
        ))
    })
}

fn poll_delay(headers: &HeaderMap) -> Duration {
    retry_after(headers).unwrap_or(POLL_INTERVAL)
}

/// `tagName eq '<name>' and tagValue eq '<value>'`, OData string literals.
fn tag_filter(name: &str, value: &str) -> String {
    format!(
        "tagName eq {} and tagValue eq {}",
        odata_string(name),
        odata_string(value)
    )
}

/// An OData string literal: single-quoted, a quote inside doubled.
fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encode everything but RFC 3986's unreserved characters. Spaces become `%20`,
/// not the `+` of form encoding, which not every OData parser reads as a space.
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn parse_endpoint(raw: &str) -> Result<Url> {
    let hint =
        "set NUBES_ARM_ENDPOINT to an https URL, or unset it to use https://management.azure.com";
    let url = Url::parse(raw.trim()).map_err(|e| {
        Error::input(format!(
            "the Resource Manager endpoint `{raw}` is not a URL: {e}"
        ))
        .hint(hint)
    })?;
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    // Plain http would carry the bearer token in clear; only a loopback test server may.
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(Error::input(format!(
            "the Resource Manager endpoint `{raw}` must use https (plain http only on a loopback address)"
        ))
        .hint(hint)),
    }
}

/// Subscription IDs are GUIDs; checking that early turns a typo into a clear message
/// rather than a 404 from Azure (and keeps the path free of surprises).
fn parse_subscription(raw: &str) -> Result<String> {
    let id = raw.trim();
    uuid::Uuid::parse_str(id).map_err(|_| {
        Error::input(format!("`{id}` is not an Azure subscription ID (a GUID)"))
            .hint(SUBSCRIPTION_HINT)
    })?;
    Ok(id.to_string())
}

const SUBSCRIPTION_HINT: &str = "set ARM_SUBSCRIPTION_ID (or AZURE_SUBSCRIPTION_ID) to the subscription \
     that holds the environment's resource groups: `az account show --query id -o tsv`";

/// `ARM_SUBSCRIPTION_ID`, else `AZURE_SUBSCRIPTION_ID`, else `subscriptionId` in the
/// AZURE_CREDENTIALS JSON (NubesGen's setup stores it there).
/// Returns the ID and where it came from.
fn subscription_from(lookup: impl Fn(&str) -> Option<String>) -> Result<(String, &'static str)> {
    for name in ["ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID"] {
        if let Some(id) = lookup(name) {
            return Ok((id, name));
        }
    }
    lookup("AZURE_CREDENTIALS")
        .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
        .and_then(|v| v.get("subscriptionId")?.as_str().map(str::to_string))
        .filter(|id| !id.trim().is_empty())
        .map(|id| (id, "subscriptionId in AZURE_CREDENTIALS"))
        .ok_or_else(|| {
            Error::input(
                "no Azure subscription is set for deleting the environment's resource groups",
            )
            .hint(SUBSCRIPTION_HINT)
        })
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Microsoft.Web's API version for the calls below (the one azure-cli's
/// `get_raw_functionapp` uses).
const WEB_API_VERSION: &str = "2023-12-01";

/// What deploying to an App Service or Functions app needs to know about it (one GET of
/// the site: `kind` and `properties.sku`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSite {
    /// `app,linux`, `functionapp,linux`, ...
    pub kind: Option<String>,
    /// `FlexConsumption`, `Dynamic`, `ElasticPremium`, `Basic`, ...
    pub sku: Option<String>,
}

/// The app settings that make Kudu answer 409 to every deployment (Kudu's
/// `FetchDeploymentManager.FetchDeploy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConflictSettings {
    /// `WEBSITE_RUN_FROM_PACKAGE` (or the older `WEBSITE_RUN_FROM_ZIP`).
    pub run_from_package: Option<String>,
    /// `siteConfig.autoSwapSlotName`.
    pub auto_swap_slot: Option<String>,
}

const WEB_PERMISSION: &str = "the identity needs read access to the app, e.g. the Website \
     Contributor role on it (which deploying needs anyway)";

impl Arm {
    fn site_segments<'a>(group: &'a str, name: &'a str) -> [&'a str; 6] {
        [
            "resourceGroups",
            group,
            "providers",
            "Microsoft.Web",
            "sites",
            name,
        ]
    }

    /// One GET of `Microsoft.Web/sites/<name>`; `None` when it does not exist.
    pub async fn web_site(&self, group: &str, name: &str) -> Result<Option<WebSite>> {
        let doing = format!("reading the app {name} in resource group {group}");
        let site = self
            .get_resource(
                &Arm::site_segments(group, name),
                WEB_API_VERSION,
                &doing,
                WEB_PERMISSION,
            )
            .await?;
        Ok(site.map(|doc| WebSite {
            kind: doc.get("kind").and_then(|k| k.as_str()).map(str::to_string),
            sku: doc
                .get("properties")
                .and_then(|p| p.get("sku"))
                .and_then(|k| k.as_str())
                .map(str::to_string),
        }))
    }

    /// The app's run-from-package setting and slot auto-swap target: a POST to
    /// `config/appsettings/list` and a GET of `config/web`.
    pub async fn web_app_conflict_settings(
        &self,
        group: &str,
        name: &str,
    ) -> Result<ConflictSettings> {
        let doing = format!("reading the app settings of {name}");
        let mut segments = Arm::site_segments(group, name).to_vec();
        segments.extend(["config", "appsettings", "list"]);
        let settings = self
            .post_action(
                &segments,
                WEB_API_VERSION,
                &serde_json::json!({}),
                &doing,
                WEB_PERMISSION,
            )
            .await?;
        let setting = |key: &str| {
            settings
                .get("properties")
                .and_then(|p| p.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let run_from_package =
            setting("WEBSITE_RUN_FROM_PACKAGE").or_else(|| setting("WEBSITE_RUN_FROM_ZIP"));
        let mut segments = Arm::site_segments(group, name).to_vec();
        segments.extend(["config", "web"]);
        let config = self
            .get_resource(&segments, WEB_API_VERSION, &doing, WEB_PERMISSION)
            .await?;
        let auto_swap_slot = config
            .as_ref()
            .and_then(|c| c.get("properties"))
            .and_then(|p| p.get("autoSwapSlotName"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(ConflictSettings {
            run_from_package,
            auto_swap_slot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_quoted_and_encoded() {
        assert_eq!(odata_string("alice"), "'alice'");
        assert_eq!(odata_string("o'brien"), "'o''brien'");
        assert_eq!(odata_string("''"), "''''''");
        assert_eq!(
            tag_filter(ENV_TAG, "it's"),
            "tagName eq 'nubes-env' and tagValue eq 'it''s'"
        );
        assert_eq!(
            encode_query_value("a b'&=+%é"),
            "a%20b%27%26%3D%2B%25%C3%A9"
        );
    }

    #[test]
    fn list_url_carries_the_filter_percent_encoded() {
        let arm = test_arm("https://management.azure.com");
        let url = arm.list_url("o'brien");
        assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000001/\
             resourcegroups?api-version=2021-04-01&$filter=tagName%20eq%20%27nubes-env%27%20and\
             %20tagValue%20eq%20%27o%27%27brien%27"
        );
        let decoded: Vec<_> = url.query_pairs().collect();
        assert_eq!(
            decoded[1].1,
            "tagName eq 'nubes-env' and tagValue eq 'o''brien'"
        );
    }

    #[test]
    fn group_urls_keep_an_endpoint_path_and_encode_names() {
        let arm = test_arm("https://proxy.example/arm/");
        assert_eq!(
            arm.group_url("rg (a)#1").as_str(),
            "https://proxy.example/arm/subscriptions/00000000-0000-0000-0000-000000000001/\
             resourcegroups/rg%20(a)%231?api-version=2021-04-01"
        );
    }

    #[test]
    fn endpoints_must_be_https_unless_loopback() {
        for ok in [
            "https://management.azure.com",
            "http://127.0.0.1:8080",
            "http://[::1]:9",
            "http://localhost:1",
        ] {
            assert!(parse_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://management.azure.com",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            let e = parse_endpoint(bad).expect_err(bad);
            assert_eq!(e.exit_code(), exit::USAGE, "{bad}");
        }
    }

    #[test]
    fn subscription_comes_from_the_first_variable_set() {
        fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        }
        let creds =
            r#"{"clientId":"c","clientSecret":"s","tenantId":"t","subscriptionId":"from-json"}"#;
        let both = [
            ("ARM_SUBSCRIPTION_ID", "arm"),
            ("AZURE_SUBSCRIPTION_ID", "azure"),
        ];
        assert_eq!(
            subscription_from(vars(&both)).ok(),
            Some(("arm".into(), "ARM_SUBSCRIPTION_ID"))
        );
        let azure = [
            ("AZURE_SUBSCRIPTION_ID", "azure"),
            ("AZURE_CREDENTIALS", creds),
        ];
        assert_eq!(
            subscription_from(vars(&azure)).ok(),
            Some(("azure".into(), "AZURE_SUBSCRIPTION_ID"))
        );
        let json = [("AZURE_CREDENTIALS", creds)];
        assert_eq!(
            subscription_from(vars(&json)).ok(),
            Some(("from-json".into(), "subscriptionId in AZURE_CREDENTIALS"))
        );
        let not_json = [("AZURE_CREDENTIALS", "{oops")];
        assert!(subscription_from(vars(&not_json)).is_err());
        let e = subscription_from(vars(&[])).expect_err("none set");
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(
            e.hint_text()
                .is_some_and(|h| h.contains("ARM_SUBSCRIPTION_ID"))
        );
        assert!(parse_subscription("not-a-guid").is_err());
    }

    #[test]
    fn tags_match_names_case_insensitively_and_values_exactly() {
        let group = |tags: serde_json::Value| -> Group {
            serde_json::from_value(serde_json::json!({"name": "rg", "tags": tags})).expect("group")
        };
        assert!(
            group(serde_json::json!({"Nubes-Env": "alice", "nubes-project": "p"}))
                .is_tagged("alice", "p")
        );
        assert!(
            !group(serde_json::json!({"nubes-env": "Alice", "nubes-project": "p"}))
                .is_tagged("alice", "p")
        );
        assert!(!group(serde_json::json!({"nubes-env": "alice"})).is_tagged("alice", "p"));
        assert!(!group(serde_json::Value::Null).is_tagged("alice", "p"));
    }

    #[test]
    fn an_http_date_retry_after_polls_at_our_own_interval() {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(poll_delay(&headers), POLL_INTERVAL);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(poll_delay(&headers), Duration::from_secs(7));
    }

    #[test]
    fn links_to_other_origins_are_refused() {
        let arm = test_arm("https://management.azure.com");
        assert!(
            arm.own_url("https://management.azure.com/x?y=1", "t")
                .is_ok()
        );
        assert!(
            arm.own_url("/subscriptions/x/operationresults/1", "t")
                .is_ok()
        );
        assert!(arm.own_url("https://evil.example/x", "t").is_err());
        assert!(arm.own_url("http://management.azure.com/x", "t").is_err());
    }

    fn test_arm(endpoint: &str) -> Arm {
        #[derive(Debug)]
        struct NoToken;
        #[async_trait::async_trait]
        impl TokenCredential for NoToken {
            async fn get_token(
                &self,
                _: &[&str],
                _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
            ) -> azure_core::Result<azure_core::credentials::AccessToken> {
                Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "no token in unit tests",
                ))
            }
        }
        Arm::build(
            reqwest::Client::new(),
            endpoint,
            "00000000-0000-0000-0000-000000000001",
            Arc::new(NoToken),
        )
        .expect("arm")
    }
}
