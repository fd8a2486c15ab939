//! A small Azure Resource Manager served on 127.0.0.1 for the tests: resource groups with
//! tags, the list call (a one-tag OData `$filter`, pages linked by `nextLink`), DELETE
//! with a scripted behaviour per group, and both long-running-operation styles
//! (`Azure-AsyncOperation` status documents and `Location` polling). For `nubes bootstrap`
//! it also answers GET on one resource group, storage account or blob container, and the
//! storage provider's `checkNameAvailability` (names are global: some may be taken
//! elsewhere). For the Kudu deployments it serves `Microsoft.Web/sites` (GET, with
//! `kind` and `properties.sku` as azure-cli's `get_raw_functionapp` reads them), the
//! POST `config/appsettings/list` and the GET `config/web` (`autoSwapSlotName`), API
//! version 2023-12-01 only (the REST reference's WebApps_Get, WebApps_ListApplicationSettings,
//! WebApps_GetConfiguration). Container Apps are served by `containerapps.rs`. It records every request, and answers 401 to any request without the
//! expected bearer token.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const SUBSCRIPTION: &str = "6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f";
const API_VERSION: &str = "api-version=2021-04-01";
const STORAGE_API_VERSION: &str = "2023-05-01";

/// How a group answers its DELETE.
#[derive(Clone, Debug)]
pub enum Script {
    /// 200 at once.
    Immediate,
    /// 200 after a pause (to watch concurrency).
    Slow(Duration),
    /// First 429 with `Retry-After: 1`, then 200.
    Throttled,
    /// First 503 (no `Retry-After`), then 200.
    Unavailable,
    /// 202 with `Azure-AsyncOperation` (and a `Location` that must not be used); the
    /// status is `InProgress` `in_progress` times, without `Retry-After`, then `end`.
    AsyncOperation { in_progress: u32, end: End },
    /// 202 with `Location` only; the poll answers 202 with `Retry-After: 1` `pending`
    /// times, then 200.
    LocationPolling { pending: u32 },
    /// 404: someone else deleted it between the list and the delete.
    Gone,
    /// 403 AuthorizationFailed.
    Forbidden,
}

#[derive(Clone, Debug)]
pub enum End {
    Succeeded,
    /// The operation fails with this message; `{authorization}` in it is replaced by the
    /// request's Authorization header, like a careless server echoing what it got.
    Failed(String),
}

pub struct Group {
    name: String,
    location: String,
    tags: Vec<(String, String)>,
    script: Script,
    deletes: u32,
    polls: u32,
    deleted: bool,
}

/// A group tagged the way `nubes up` tags them.
pub fn group(name: &str, env: &str, project: &str, script: Script) -> Group {
    group_with_tags(
        name,
        &[("nubes-env", env), ("nubes-project", project)],
        script,
    )
}

pub fn group_with_tags(name: &str, tags: &[(&str, &str)], script: Script) -> Group {
    Group {
        name: name.into(),
        location: "eastus".into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        script,
        deletes: 0,
        polls: 0,
        deleted: false,
    }
}

/// A group without tags in `location` (what `nubes bootstrap` looks for).
pub fn group_in(name: &str, location: &str, tags: &[(&str, &str)]) -> Group {
    let mut g = group_with_tags(name, tags, Script::Immediate);
    g.location = location.into();
    g
}

/// A storage account in a resource group.
#[derive(Clone, Debug)]
pub struct StorageAccount {
    pub group: String,
    pub name: String,
    pub location: String,
    /// e.g. `Standard_GRS`.
    pub sku: String,
    pub kind: String,
    pub infrastructure_encryption: bool,
    pub containers: Vec<String>,
}

/// A StorageV2 `Standard_GRS` account with infrastructure encryption, as bootstrap makes them.
pub fn storage_account(
    group: &str,
    name: &str,
    location: &str,
    containers: &[&str],
) -> StorageAccount {
    StorageAccount {
        group: group.into(),
        name: name.into(),
        location: location.into(),
        sku: "Standard_GRS".into(),
        kind: "StorageV2".into(),
        infrastructure_encryption: true,
        containers: containers.iter().map(|c| c.to_string()).collect(),
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Decoded query parameters.
    pub query: HashMap<String, String>,
    /// The Authorization header was exactly `Bearer <expected token>`.
    pub authorized: bool,
    pub at: Instant,
    pub body: String,
}

/// An App Service or Functions app.
#[derive(Clone, Debug)]
pub struct WebApp {
    pub group: String,
    pub name: String,
    /// `app,linux`, `functionapp,linux`, ...
    pub kind: String,
    /// `properties.sku`: `FlexConsumption`, `Dynamic`, `Basic`, ...
    pub sku: String,
    pub app_settings: Vec<(String, String)>,
    pub auto_swap_slot: Option<String>,
}

pub fn web_app(group: &str, name: &str, kind: &str, sku: &str) -> WebApp {
    WebApp {
        group: group.into(),
        name: name.into(),
        kind: kind.into(),
        sku: sku.into(),
        app_settings: vec![],
        auto_swap_slot: None,
    }
}

const WEB_API_VERSION: &str = "2023-12-01";

#[derive(Default)]
struct State {
    sites: Vec<WebApp>,
    groups: Vec<Group>,
    accounts: Vec<StorageAccount>,
    /// Account names held by someone else, somewhere in Azure.
    taken: Vec<String>,
    seen: Vec<Seen>,
    in_flight: usize,
    max_in_flight: usize,
    /// Deployment slots and their swaps (`super::slots`).
    slots: super::slots::Slots,
}

struct Shared {
    state: Mutex<State>,
    token: String,
    base: String,
    page_size: usize,
    /// Container Apps routes (`containerapps.rs`).
    apps: super::containerapps::Apps,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeArm {
    /// `http://127.0.0.1:<port>`, for `NUBES_ARM_ENDPOINT` / `Arm::new`.
    pub endpoint: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeArm {
    /// Serve `groups` on the current runtime, accepting only `Bearer <token>`, listing
    /// `page_size` groups per page.
    pub async fn start(token: &str, page_size: usize, groups: Vec<Group>) -> FakeArm {
        Self::start_with_storage(token, page_size, groups, vec![], &[]).await
    }

    /// Also serve storage `accounts`, and answer that the names in `taken` belong to
    /// someone else.
    pub async fn start_with_storage(
        token: &str,
        page_size: usize,
        groups: Vec<Group>,
        accounts: Vec<StorageAccount>,
        taken: &[&str],
    ) -> FakeArm {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                groups,
                accounts,
                taken: taken.iter().map(|t| t.to_string()).collect(),
                ..State::default()
            }),
            token: token.into(),
            base: endpoint.clone(),
            page_size,
            apps: Default::default(),
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
        FakeArm {
            endpoint,
            shared,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.state().seen.clone()
    }

    /// Requests whose method is `method` and whose path ends with `suffix`.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    /// Groups whose deletion the server completed, in its own order.
    pub fn deleted(&self) -> Vec<String> {
        let state = self.shared.state();
        state
            .groups
            .iter()
            .filter(|g| g.deleted)
            .map(|g| g.name.clone())
            .collect()
    }

    /// Serve this app as well.
    pub fn add_site(&self, site: WebApp) {
        self.shared.state().sites.push(site);
    }

    /// Serve this deployment slot's swap as well.
    pub fn add_slot(&self, slot: super::slots::SwapSlot) {
        self.shared.state().slots.add(slot);
    }

    /// The Container Apps this server holds.
    pub fn apps(&self) -> &super::containerapps::Apps {
        &self.shared.apps
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.state().max_in_flight
    }
}

pub(super) type Reply = Response<Full<Bytes>>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let body = http_body_util::BodyExt::collect(req.into_body())
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let seen = Seen {
        method,
        path,
        query,
        authorized: authorization == format!("Bearer {}", shared.token),
        at: Instant::now(),
        body,
    };
    {
        let mut state = shared.state();
        state.seen.push(seen.clone());
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
    }
    let (reply, pause) = if seen.authorized {
        route(&shared, &seen, &authorization)
    } else {
        let message = format!("The access token is invalid. Received: {authorization}");
        (error(401, "InvalidAuthenticationToken", &message), None)
    };
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    shared.state().in_flight -= 1;
    Ok(reply)
}

fn route(shared: &Shared, seen: &Seen, authorization: &str) -> (Reply, Option<Duration>) {
    let prefix = format!("/subscriptions/{SUBSCRIPTION}/");
    let Some(rest) = seen.path.strip_prefix(&prefix) else {
        return (
            error(
                404,
                "SubscriptionNotFound",
                "The subscription could not be found.",
            ),
            None,
        );
    };
    let segments: Vec<String> = rest.split('/').map(str::to_ascii_lowercase).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let Some(reply) = shared.apps.route(
        &shared.base,
        SUBSCRIPTION,
        &seen.method,
        &segments,
        &seen.query,
        &seen.body,
    ) {
        return (reply, None);
    }
    let mut state = shared.state();
    if let Some(reply) = super::slots::route(&mut state.slots, &shared.base, seen) {
        return (reply, None);
    }
    match (seen.method.as_str(), segments.as_slice()) {
        ("GET", ["resourcegroups"]) => (list(shared, &state, &seen.query), None),
        ("DELETE", ["resourcegroups", name]) if has_api_version(seen) => {
            delete(shared, &mut state, name)
        }
        ("GET", ["resourcegroups", name]) if has_api_version(seen) => {
            (get_group(&state, name), None)
        }
        (
            "GET",
            [
                "resourcegroups",
                rg,
                "providers",
                "microsoft.storage",
                "storageaccounts",
                account,
            ],
        ) if has_storage_api_version(seen) => (get_account(&state, rg, account, None), None),
        (
            "GET",
            [
                "resourcegroups",
                rg,
                "providers",
                "microsoft.storage",
                "storageaccounts",
                account,
                "blobservices",
                "default",
                "containers",
                container,
            ],
        ) if has_storage_api_version(seen) => {
            (get_account(&state, rg, account, Some(container)), None)
        }
        ("POST", ["providers", "microsoft.storage", "checknameavailability"])
            if has_storage_api_version(seen) =>
        {
            (check_name(&state, &seen.body), None)
        }
        (
            "GET",
            [
                "resourcegroups",
                rg,
                "providers",
                "microsoft.web",
                "sites",
                name,
            ],
        ) if has_web_api_version(seen) => (get_site(&state, rg, name, None), None),
        (
            "GET",
            [
                "resourcegroups",
                rg,
                "providers",
                "microsoft.web",
                "sites",
                name,
                "config",
                "web",
            ],
        ) if has_web_api_version(seen) => (get_site(&state, rg, name, Some("web")), None),
        (
            "POST",
            [
                "resourcegroups",
                rg,
                "providers",
                "microsoft.web",
                "sites",
                name,
                "config",
                "appsettings",
                "list",
            ],
        ) if has_web_api_version(seen) => (get_site(&state, rg, name, Some("appsettings")), None),
        ("GET", ["operationstatuses", name]) => {
            (operation_status(&mut state, name, authorization), None)
        }
        ("GET", ["operationresults", name]) => (operation_result(&mut state, name), None),
        _ => (error(400, "BadRequest", "Unexpected request."), None),
    }
}

fn has_web_api_version(seen: &Seen) -> bool {
    seen.query.get("api-version").map(String::as_str) == Some(WEB_API_VERSION)
}

/// The site, its `config/web` or its app settings.
fn get_site(state: &State, rg: &str, name: &str, part: Option<&str>) -> Reply {
    if live_group(state, rg).is_none() {
        return not_found(rg);
    }
    let Some(site) = state
        .sites
        .iter()
        .find(|s| s.group.eq_ignore_ascii_case(rg) && s.name.eq_ignore_ascii_case(name))
    else {
        return error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.Web/sites/{name}' under resource group '{rg}' was not found."
            ),
        );
    };
    let id = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/Microsoft.Web/sites/{}",
        site.group, site.name
    );
    let body = match part {
        None => json!({
            "id": id,
            "name": site.name,
            "type": "Microsoft.Web/sites",
            "kind": site.kind,
            "location": "East US",
            "properties": {
                "name": site.name,
                "state": "Running",
                "sku": site.sku,
                "reserved": site.kind.contains("linux"),
                "defaultHostName": format!("{}.azurewebsites.net", site.name),
            },
        }),
        Some("web") => json!({
            "id": format!("{id}/config/web"),
            "name": "web",
            "type": "Microsoft.Web/sites/config",
            "properties": { "autoSwapSlotName": site.auto_swap_slot },
        }),
        Some(_) => {
            let settings: serde_json::Map<String, serde_json::Value> = site
                .app_settings
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({
                "id": format!("{id}/config/appsettings"),
                "name": "appsettings",
                "type": "Microsoft.Web/sites/config",
                "properties": settings,
            })
        }
    };
    respond(200, &[], body.to_string())
}

fn has_storage_api_version(seen: &Seen) -> bool {
    seen.query.get("api-version").map(String::as_str) == Some(STORAGE_API_VERSION)
}

fn live_group<'a>(state: &'a State, name: &str) -> Option<&'a Group> {
    state
        .groups
        .iter()
        .find(|g| g.name.eq_ignore_ascii_case(name) && !g.deleted)
}

fn get_group(state: &State, name: &str) -> Reply {
    let Some(g) = live_group(state, name) else {
        return not_found(name);
    };
    let tags: serde_json::Map<_, _> = g.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let body = json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{}", g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "tags": tags,
        "properties": {"provisioningState": "Succeeded"},
    });
    respond(200, &[], body.to_string())
}

/// The account (or, with `container`, one of its containers), as the Storage resource
/// provider returns them.
fn get_account(state: &State, rg: &str, name: &str, container: Option<&str>) -> Reply {
    let Some(group) = live_group(state, rg) else {
        return not_found(rg);
    };
    let Some(a) = state
        .accounts
        .iter()
        .find(|a| a.group.eq_ignore_ascii_case(rg) && a.name == name)
    else {
        return error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.Storage/storageAccounts/{name}' under resource group '{rg}' was not found."
            ),
        );
    };
    let id = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
        group.name, a.name
    );
    if let Some(container) = container {
        if !a.containers.iter().any(|c| c == container) {
            return error(
                404,
                "ContainerNotFound",
                "The specified container does not exist.",
            );
        }
        let body = json!({
            "id": format!("{id}/blobServices/default/containers/{container}"),
            "name": container,
            "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
            "properties": {"publicAccess": "None", "deleted": false},
        });
        return respond(200, &[], body.to_string());
    }
    let (tier, _) = a.sku.split_once('_').unwrap_or(("Standard", ""));
    let body = json!({
        "id": id,
        "name": a.name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": a.location,
        "kind": a.kind,
        "sku": {"name": a.sku, "tier": tier},
        "properties": {
            "provisioningState": "Succeeded",
            "isHnsEnabled": false,
            "encryption": {"requireInfrastructureEncryption": a.infrastructure_encryption, "keySource": "Microsoft.Storage"},
            "primaryEndpoints": {"blob": format!("https://{}.blob.core.windows.net/", a.name)},
        },
    });
    respond(200, &[], body.to_string())
}

fn check_name(state: &State, body: &str) -> Reply {
    let request: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let (Some(name), Some("Microsoft.Storage/storageAccounts")) = (
        request.get("name").and_then(|n| n.as_str()),
        request.get("type").and_then(|t| t.as_str()),
    ) else {
        return error(400, "InvalidRequestContent", "name and type are required.");
    };
    let taken =
        state.taken.iter().any(|t| t == name) || state.accounts.iter().any(|a| a.name == name);
    let body = if taken {
        json!({
            "nameAvailable": false,
            "reason": "AlreadyExists",
            "message": format!("The storage account named {name} is already taken."),
        })
    } else {
        json!({"nameAvailable": true})
    };
    respond(200, &[], body.to_string())
}

fn has_api_version(seen: &Seen) -> bool {
    seen.query.get("api-version").map(String::as_str) == Some("2021-04-01")
}

fn list(shared: &Shared, state: &State, query: &HashMap<String, String>) -> Reply {
    if query.get("api-version").map(String::as_str) != Some("2021-04-01") {
        return error(
            400,
            "MissingApiVersionParameter",
            "The api-version is missing.",
        );
    }
    let Some((tag, value)) = query.get("$filter").and_then(|f| parse_filter(f)) else {
        return error(400, "InvalidFilter", "Unsupported $filter.");
    };
    let matching: Vec<&Group> = state
        .groups
        .iter()
        .filter(|g| !g.deleted)
        .filter(|g| {
            g.tags
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(&tag) && *v == value)
        })
        .collect();
    let skip: usize = query
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let value: Vec<_> = matching
        .iter()
        .skip(skip)
        .take(shared.page_size)
        .map(|g| {
            let tags: serde_json::Map<_, _> =
                g.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({
                "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{}", g.name),
                "name": g.name,
                "type": "Microsoft.Resources/resourceGroups",
                "location": g.location,
                "properties": {"provisioningState": "Succeeded"},
                "tags": tags,
            })
        })
        .collect();
    let mut body = json!({ "value": value });
    if skip + shared.page_size < matching.len() {
        let mut next = url::Url::parse(&format!(
            "{}/subscriptions/{SUBSCRIPTION}/resourcegroups",
            shared.base
        ))
        .expect("next link");
        next.query_pairs_mut()
            .append_pair("api-version", "2021-04-01")
            .append_pair("$filter", &query["$filter"])
            .append_pair("$skiptoken", &(skip + shared.page_size).to_string());
        body["nextLink"] = json!(next.as_str());
    }
    respond(200, &[], body.to_string())
}

/// `tagName eq '<name>' and tagValue eq '<value>'` with OData string literals.
fn parse_filter(filter: &str) -> Option<(String, String)> {
    let rest = filter.strip_prefix("tagName eq ")?;
    let (name, rest) = odata_literal(rest)?;
    let rest = rest.strip_prefix(" and tagValue eq ")?;
    let (value, rest) = odata_literal(rest)?;
    rest.is_empty().then_some((name, value))
}

fn odata_literal(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            out.push(c);
        } else if body[i + 1..].starts_with('\'') {
            out.push('\'');
            chars.next();
        } else {
            return Some((out, &body[i + 1..]));
        }
    }
    None
}

fn delete(shared: &Shared, state: &mut State, name: &str) -> (Reply, Option<Duration>) {
    let Some(group) = state
        .groups
        .iter_mut()
        .find(|g| g.name.eq_ignore_ascii_case(name) && !g.deleted)
    else {
        return (not_found(name), None);
    };
    group.deletes += 1;
    let operation = |kind: &str| {
        format!(
            "{}/subscriptions/{SUBSCRIPTION}/{kind}/{}?{API_VERSION}",
            shared.base, group.name
        )
    };
    let done = respond(200, &[], String::new());
    match group.script.clone() {
        Script::Immediate => {
            group.deleted = true;
            (done, None)
        }
        Script::Slow(pause) => {
            group.deleted = true;
            (done, Some(pause))
        }
        Script::Throttled if group.deletes == 1 => {
            let body = json!({"error": {"code": "TooManyRequests", "message": "Slow down."}});
            (
                respond(429, &[("Retry-After", "1")], body.to_string()),
                None,
            )
        }
        Script::Unavailable if group.deletes == 1 => {
            (error(503, "ServiceUnavailable", "Try again later."), None)
        }
        Script::Throttled | Script::Unavailable => {
            group.deleted = true;
            (done, None)
        }
        Script::AsyncOperation { .. } => {
            let headers = [
                ("Azure-AsyncOperation", operation("operationstatuses")),
                ("Location", operation("operationresults")),
                ("Retry-After", "0".into()),
            ];
            (accepted(&headers), None)
        }
        Script::LocationPolling { .. } => {
            let headers = [
                ("Location", operation("operationresults")),
                ("Retry-After", "0".into()),
            ];
            (accepted(&headers), None)
        }
        Script::Gone => (not_found(name), None),
        Script::Forbidden => (
            error(
                403,
                "AuthorizationFailed",
                "The client does not have authorization to perform action \
                 'Microsoft.Resources/subscriptions/resourcegroups/delete'.",
            ),
            None,
        ),
    }
}

fn operation_status(state: &mut State, name: &str, authorization: &str) -> Reply {
    let Some(group) = state.groups.iter_mut().find(|g| {
        g.name.eq_ignore_ascii_case(name)
            && g.deletes > 0
            && matches!(g.script, Script::AsyncOperation { .. })
    }) else {
        return error(404, "OperationNotFound", "No such operation.");
    };
    let Script::AsyncOperation { in_progress, end } = group.script.clone() else {
        return error(404, "OperationNotFound", "No such operation.");
    };
    group.polls += 1;
    let body = if group.polls <= in_progress {
        json!({"status": "InProgress"})
    } else {
        match end {
            End::Succeeded => {
                group.deleted = true;
                json!({"status": "Succeeded"})
            }
            End::Failed(message) => json!({
                "status": "Failed",
                "error": {
                    "code": "ResourceGroupDeletionBlocked",
                    "message": message.replace("{authorization}", authorization),
                },
            }),
        }
    };
    respond(200, &[], body.to_string())
}

fn operation_result(state: &mut State, name: &str) -> Reply {
    let Some(group) = state.groups.iter_mut().find(|g| {
        g.name.eq_ignore_ascii_case(name)
            && g.deletes > 0
            && matches!(g.script, Script::LocationPolling { .. })
    }) else {
        return error(404, "OperationNotFound", "No such operation.");
    };
    let Script::LocationPolling { pending } = group.script else {
        return error(404, "OperationNotFound", "No such operation.");
    };
    group.polls += 1;
    if group.polls <= pending {
        respond(202, &[("Retry-After", "1")], String::new())
    } else {
        group.deleted = true;
        respond(200, &[], String::new())
    }
}

fn accepted(headers: &[(&str, String)]) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    respond(202, &headers, String::new())
}

fn not_found(name: &str) -> Reply {
    error(
        404,
        "ResourceGroupNotFound",
        &format!("Resource group '{name}' could not be found."),
    )
}

pub(super) fn error(status: u16, code: &str, message: &str) -> Reply {
    let body = json!({"error": {"code": code, "message": message}});
    respond(status, &[], body.to_string())
}

pub(super) fn respond(status: u16, headers: &[(&str, &str)], body: String) -> Reply {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("Content-Type", "application/json; charset=utf-8");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}
