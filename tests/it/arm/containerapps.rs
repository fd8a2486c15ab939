//! Container Apps in the fake Resource Manager ([`super::fake`]): `Microsoft.App/
//! containerApps` GET and PATCH, revisions GET and `deactivate`, and the long-running
//! operation a PATCH starts, as Microsoft's REST reference for 2024-03-01 describes them
//! (azure-rest-api-specs `specification/app/resource-manager/Microsoft.App/ContainerApps/
//! stable/2024-03-01/ContainerApps.json`: ContainerApps_Get, ContainerApps_Update → 200 or
//! 202 with `Azure-AsyncOperation` pointing at `…/locations/{l}/containerappOperationResults/{id}`;
//! `ContainerAppsRevisions.json`: GetRevision, DeactivateRevision → 200), plus the apps'
//! own HTTP endpoint for health checks.
//!
//! As strict as the service where nubes could get it wrong:
//! * PATCH is a JSON merge patch: `template.containers` and `ingress.traffic` replace the
//!   whole list, so a container without `name` or `image` is refused (400).
//! * `revisionSuffix` must be lower-case letters, digits and `-`, and a revision of that name
//!   must not exist yet (400).
//! * Traffic: weights 0..=100 summing to 100, every `revisionName` an existing revision,
//!   labels unique (400 otherwise). Traffic that follows `latestRevision` moves to a new
//!   revision as soon as it is created, as in Azure; so does everything in Single mode,
//!   where the previous revision is deactivated.
//! * Deactivating a revision that still has traffic is refused (400), as the service does.
//! * A new revision is `Provisioning` at its first GET, then `Provisioned` (or `Failed`,
//!   for an image listed as failing).
//!
//! The app endpoint (`FakeApps::http`) answers by `Host`: `{app}---{label}.{domain}` is the
//! labelled revision, `{app}.{domain}` the app, which fails (503) when any revision with
//! traffic runs an image (or has a name) listed as unhealthy.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

pub const API_VERSION: &str = "2024-03-01";
/// Apps answer as `{app}.{DOMAIN}` (tests map the suffix to the app endpoint).
pub const DOMAIN: &str = "happy-hill.eastus.apps.test";

#[derive(Clone, Debug)]
pub struct Revision {
    pub name: String,
    pub image: String,
    pub active: bool,
    pub state: String,
    polled: bool,
}

#[derive(Clone, Debug)]
pub struct App {
    pub group: String,
    pub name: String,
    pub mode: String,
    pub revisions: Vec<Revision>,
    /// The stored traffic list, as the API returns it.
    pub traffic: Vec<Value>,
    pub latest: String,
    containers: Value,
}

/// An app with one running revision `{name}--first` whose traffic follows the latest
/// revision (as Terraform's azurerm_container_app sets it by default).
pub fn app(group: &str, name: &str, mode: &str) -> App {
    let first = format!("{name}--first");
    App {
        group: group.into(),
        name: name.into(),
        mode: mode.into(),
        revisions: vec![Revision {
            name: first.clone(),
            image: "mcr.microsoft.com/k8se/quickstart:latest".into(),
            active: true,
            state: "Provisioned".into(),
            polled: true,
        }],
        traffic: vec![json!({"latestRevision": true, "weight": 100})],
        latest: first,
        containers: json!([{"name": name, "image": "mcr.microsoft.com/k8se/quickstart:latest",
            "resources": {"cpu": 0.25, "memory": "0.5Gi"}}]),
    }
}

#[derive(Default)]
struct State {
    apps: Vec<App>,
    unhealthy: HashSet<String>,
    failing: HashSet<String>,
    /// Operation id → polls left while `InProgress`.
    operations: HashMap<String, u32>,
    next_op: u32,
    /// Each accepted traffic list, as (revision, weight) pairs.
    traffic_log: Vec<Vec<(String, u64)>>,
}

#[derive(Default, Clone)]
pub struct Apps {
    state: Arc<Mutex<State>>,
}

impl Apps {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, app: App) {
        self.state().apps.push(app);
    }

    /// Revisions running an image containing `needle`, or named with it (a commit in the
    /// revision suffix), fail their health checks.
    pub fn unhealthy(&self, needle: &str) {
        self.state().unhealthy.insert(needle.into());
    }

    /// Revisions running an image containing `needle` fail to provision.
    pub fn failing(&self, needle: &str) {
        self.state().failing.insert(needle.into());
    }

    pub fn get(&self, name: &str) -> App {
        self.state()
            .apps
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .expect("app")
    }

    pub fn traffic_log(&self) -> Vec<Vec<(String, u64)>> {
        self.state().traffic_log.clone()
    }

    /// The app endpoint's answer for `host` (health checks).
    pub fn http(&self, host: &str) -> (u16, String) {
        let state = self.state();
        let host = host.split(':').next().unwrap_or_default();
        // A bare address stands for the one app (release-build benchmarks, which cannot
        // map host names: single-revision mode, no label hosts).
        let bare = state
            .apps
            .first()
            .map(|a| a.name.clone())
            .filter(|_| state.apps.len() == 1);
        let (name, label) = match host.strip_suffix(&format!(".{DOMAIN}")) {
            Some(prefix) => match prefix.split_once("---") {
                Some((n, l)) => (n.to_string(), Some(l)),
                None => (prefix.to_string(), None),
            },
            None if host.parse::<std::net::IpAddr>().is_ok() && bare.is_some() => {
                (bare.unwrap_or_default(), None)
            }
            None => return (404, "unknown host".into()),
        };
        let Some(app) = state.apps.iter().find(|a| a.name == name) else {
            return (404, "no such app".into());
        };
        let serving: Vec<&Revision> = match label {
            Some(label) => app
                .traffic
                .iter()
                .filter(|t| t.get("label").and_then(Value::as_str) == Some(label))
                .filter_map(|t| revision_named(app, t))
                .collect(),
            None => app
                .traffic
                .iter()
                .filter(|t| t.get("weight").and_then(Value::as_u64).unwrap_or(0) > 0)
                .filter_map(|t| revision_named(app, t))
                .collect(),
        };
        if serving.is_empty() {
            return (404, "no revision serves this host".into());
        }
        match serving.iter().find(|r| {
            !r.active
                || state
                    .unhealthy
                    .iter()
                    .any(|u| r.image.contains(u) || r.name.contains(u))
        }) {
            Some(bad) => (503, format!("revision {} is not healthy", bad.name)),
            None => (200, format!("ok from {}", serving[0].name)),
        }
    }

    /// Container Apps requests (segments lower-cased, after `/subscriptions/<id>/`).
    pub fn route(
        &self,
        base: &str,
        subscription: &str,
        method: &str,
        segments: &[&str],
        query: &HashMap<String, String>,
        body: &str,
    ) -> Option<Reply> {
        let versioned = query.get("api-version").map(String::as_str) == Some(API_VERSION);
        let mut state = self.state();
        let reply = match (method, segments) {
            (
                "GET",
                [
                    "providers",
                    "microsoft.app",
                    "locations",
                    _,
                    "containerappoperationresults",
                    id,
                ],
            ) if versioned => operation(&mut state, id),
            (_, ["resourcegroups", _, "providers", "microsoft.app", ..]) if !versioned => error(
                400,
                "InvalidApiVersionParameter",
                "The api-version is not supported.",
            ),
            (
                "GET",
                [
                    "resourcegroups",
                    rg,
                    "providers",
                    "microsoft.app",
                    "containerapps",
                    name,
                ],
            ) => match find(&state, rg, name) {
                Some(i) => respond(200, &[], app_json(&state.apps[i]).to_string()),
                None => not_found(name),
            },
            (
                "PATCH",
                [
                    "resourcegroups",
                    rg,
                    "providers",
                    "microsoft.app",
                    "containerapps",
                    name,
                ],
            ) => match find(&state, rg, name) {
                Some(i) => patch(&mut state, i, body, base, subscription),
                None => not_found(name),
            },
            (
                "GET",
                [
                    "resourcegroups",
                    rg,
                    "providers",
                    "microsoft.app",
                    "containerapps",
                    name,
                    "revisions",
                    rev,
                ],
            ) => match find(&state, rg, name) {
                Some(i) => get_revision(&mut state, i, rev),
                None => not_found(name),
            },
            (
                "POST",
                [
                    "resourcegroups",
                    rg,
                    "providers",
                    "microsoft.app",
                    "containerapps",
                    name,
                    "revisions",
                    rev,
                    "deactivate",
                ],
            ) => match find(&state, rg, name) {
                Some(i) => deactivate(&mut state, i, rev),
                None => not_found(name),
            },
            _ => return None,
        };
        Some(reply)
    }
}

pub type Reply = Response<Full<Bytes>>;

fn revision_named<'a>(app: &'a App, t: &Value) -> Option<&'a Revision> {
    let name = match t.get("revisionName").and_then(Value::as_str) {
        Some(n) => n.to_string(),
        None if t.get("latestRevision").and_then(Value::as_bool) == Some(true) => {
            app.latest.clone()
        }
        None => return None,
    };
    app.revisions
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(&name))
}

fn find(state: &State, rg: &str, name: &str) -> Option<usize> {
    state
        .apps
        .iter()
        .position(|a| a.group.eq_ignore_ascii_case(rg) && a.name.eq_ignore_ascii_case(name))
}

fn app_json(app: &App) -> Value {
    json!({
        "id": format!("/subscriptions/x/resourceGroups/{}/providers/Microsoft.App/containerApps/{}", app.group, app.name),
        "name": app.name,
        "type": "Microsoft.App/containerApps",
        "location": "East US",
        "properties": {
            "provisioningState": "Succeeded",
            "latestRevisionName": app.latest,
            "latestReadyRevisionName": app.latest,
            "configuration": {
                "activeRevisionsMode": app.mode,
                "ingress": {"fqdn": format!("{}.{DOMAIN}", app.name), "external": true,
                    "targetPort": 8080, "traffic": app.traffic},
            },
            "template": {"containers": app.containers},
        }
    })
}

fn patch(state: &mut State, i: usize, body: &str, base: &str, subscription: &str) -> Reply {
    let Ok(doc) = serde_json::from_str::<Value>(body) else {
        return error(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized.",
        );
    };
    let props = doc.get("properties").cloned().unwrap_or_default();
    let mut app = state.apps[i].clone();
    // Traffic first: it may only name revisions that exist before this request.
    if let Some(traffic) = props.pointer("/configuration/ingress/traffic") {
        if let Err(why) = check_traffic(&app, traffic) {
            return error(400, "ContainerAppInvalidTrafficConfiguration", &why);
        }
        app.traffic = traffic.as_array().cloned().unwrap_or_default();
    }
    if let Some(template) = props.get("template") {
        let containers = template
            .get("containers")
            .cloned()
            .unwrap_or(app.containers.clone());
        let ok = containers.as_array().is_some_and(|cs| {
            !cs.is_empty()
                && cs.iter().all(|c| {
                    c.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| !n.is_empty())
                        && c.get("image")
                            .and_then(Value::as_str)
                            .is_some_and(|n| !n.is_empty())
                })
        });
        if !ok {
            return error(
                400,
                "ContainerAppInvalidContainers",
                "Each container needs a name and an image.",
            );
        }
        let suffix = template
            .get("revisionSuffix")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if suffix.is_empty()
            || !suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || suffix.starts_with('-')
        {
            return error(
                400,
                "ContainerAppInvalidRevisionSuffix",
                "Invalid revision suffix.",
            );
        }
        let name = format!("{}--{suffix}", app.name);
        if app.revisions.iter().any(|r| r.name == name) {
            return error(
                400,
                "ContainerAppRevisionAlreadyExists",
                &format!("Revision {name} already exists."),
            );
        }
        let image = containers[0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let failing = state.failing.iter().any(|f| image.contains(f));
        app.revisions.push(Revision {
            name: name.clone(),
            image,
            active: true,
            state: if failing { "Failed" } else { "Provisioning" }.into(),
            polled: false,
        });
        app.containers = containers;
        app.latest = name.clone();
        if app.mode == "Single" {
            for r in app.revisions.iter_mut().filter(|r| r.name != name) {
                r.active = false;
            }
            app.traffic = vec![json!({"latestRevision": true, "weight": 100})];
        }
    }
    let log: Vec<(String, u64)> = app
        .traffic
        .iter()
        .filter_map(|t| {
            let r = revision_named(&app, t)?;
            Some((
                r.name.clone(),
                t.get("weight").and_then(Value::as_u64).unwrap_or(0),
            ))
        })
        .collect();
    state.traffic_log.push(log);
    state.apps[i] = app;
    state.next_op += 1;
    let id = format!("op{}", state.next_op);
    state.operations.insert(id.clone(), 1);
    let status = format!(
        "{base}/subscriptions/{subscription}/providers/Microsoft.App/locations/eastus/containerappOperationResults/{id}?api-version={API_VERSION}"
    );
    respond(
        202,
        &[("Azure-AsyncOperation", status.as_str())],
        String::new(),
    )
}

fn check_traffic(app: &App, traffic: &Value) -> Result<(), String> {
    let list = traffic.as_array().ok_or("traffic must be a list")?;
    let mut sum = 0;
    let mut labels = HashSet::new();
    for t in list {
        let w = t
            .get("weight")
            .and_then(Value::as_u64)
            .ok_or("every entry needs a weight")?;
        if w > 100 {
            return Err(format!("weight {w} is out of range"));
        }
        sum += w;
        let named = t.get("revisionName").and_then(Value::as_str);
        if let Some(n) = named
            && !app.revisions.iter().any(|r| r.name.eq_ignore_ascii_case(n))
        {
            return Err(format!("revision {n} does not exist"));
        }
        if named.is_none() && t.get("latestRevision").and_then(Value::as_bool) != Some(true) {
            return Err("an entry names neither a revision nor latestRevision".into());
        }
        if let Some(l) = t.get("label").and_then(Value::as_str)
            && !labels.insert(l.to_string())
        {
            return Err(format!("label {l} is used twice"));
        }
    }
    if sum != 100 {
        return Err(format!("traffic weights sum to {sum}, not 100"));
    }
    Ok(())
}

fn operation(state: &mut State, id: &str) -> Reply {
    match state.operations.get_mut(id) {
        Some(0) => respond(
            200,
            &[],
            json!({"id": id, "status": "Succeeded"}).to_string(),
        ),
        Some(left) => {
            *left -= 1;
            respond(
                200,
                &[("Retry-After", "0")],
                json!({"id": id, "status": "InProgress"}).to_string(),
            )
        }
        None => error(404, "OperationNotFound", "No such operation."),
    }
}

fn get_revision(state: &mut State, i: usize, rev: &str) -> Reply {
    let app = &mut state.apps[i];
    let weights: HashMap<String, u64> = app
        .traffic
        .iter()
        .filter_map(|t| {
            Some((
                revision_named(app, t)?.name.clone(),
                t.get("weight")?.as_u64()?,
            ))
        })
        .collect();
    let Some(r) = app
        .revisions
        .iter_mut()
        .find(|r| r.name.eq_ignore_ascii_case(rev))
    else {
        return error(
            404,
            "ContainerAppRevisionNotFound",
            &format!("Revision {rev} not found."),
        );
    };
    // Provisioning at the first look, provisioned after.
    if r.state == "Provisioning" && r.polled {
        r.state = "Provisioned".into();
    }
    r.polled = true;
    let body = json!({
        "name": r.name,
        "type": "Microsoft.App/containerApps/revisions",
        "properties": {
            "active": r.active,
            "provisioningState": r.state,
            "provisioningError": if r.state == "Failed" { "Image pull failed: manifest unknown" } else { "" },
            "trafficWeight": weights.get(&r.name).copied().unwrap_or(0),
            "template": {"containers": [{"image": r.image}]},
        }
    });
    respond(200, &[], body.to_string())
}

fn deactivate(state: &mut State, i: usize, rev: &str) -> Reply {
    let app = &state.apps[i];
    let weight: u64 = app
        .traffic
        .iter()
        .filter(|t| revision_named(app, t).is_some_and(|r| r.name.eq_ignore_ascii_case(rev)))
        .filter_map(|t| t.get("weight").and_then(Value::as_u64))
        .sum();
    if weight > 0 {
        return error(
            400,
            "ContainerAppRevisionHasTraffic",
            &format!("Revision {rev} has {weight}% of traffic and cannot be deactivated."),
        );
    }
    let app = &mut state.apps[i];
    match app
        .revisions
        .iter_mut()
        .find(|r| r.name.eq_ignore_ascii_case(rev))
    {
        Some(r) => {
            r.active = false;
            respond(200, &[], String::new())
        }
        None => error(
            404,
            "ContainerAppRevisionNotFound",
            &format!("Revision {rev} not found."),
        ),
    }
}

fn not_found(name: &str) -> Reply {
    error(
        404,
        "ResourceNotFound",
        &format!("The Resource 'Microsoft.App/containerApps/{name}' was not found."),
    )
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    respond(
        status,
        &[],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

fn respond(status: u16, headers: &[(&str, &str)], body: String) -> Reply {
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

/// Serve the apps' own endpoint (health checks) on 127.0.0.1; answers by `Host`.
pub async fn serve_http(apps: Apps) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let apps = apps.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let host = req
                            .headers()
                            .get(hyper::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let (status, text) = apps.http(&host);
                        async move { Ok::<_, std::convert::Infallible>(respond(status, &[], text)) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}
