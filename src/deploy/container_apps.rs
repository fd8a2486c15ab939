//! The `container-apps` deploy target: push the image built once ([`crate::image`]) to
//! the environment's registry ([`crate::registry`]), then roll a new Container Apps
//! revision out through Resource Manager, by digest.
//!
//! Outputs used: `container_app_id` (the app's resource ID), `container_registry_login_server`,
//! `application_url` (the app's URL; its scheme and port are kept for the label URL).
//!
//! API shapes, from Microsoft's REST reference for `Microsoft.App` 2024-03-01
//! (azure-rest-api-specs, `specification/app/resource-manager/Microsoft.App/ContainerApps/
//! stable/2024-03-01/ContainerApps.json` and `ContainerAppsRevisions.json`;
//! <https://learn.microsoft.com/rest/api/resource-manager/containerapps/container-apps/update>,
//! <https://learn.microsoft.com/rest/api/resource-manager/containerapps/container-apps-revisions>):
//! * `ContainerApps_Get` GET `…/providers/Microsoft.App/containerApps/{name}`: `properties.
//!   configuration.activeRevisionsMode` (`Single` | `Multiple`), `configuration.ingress.
//!   {fqdn, traffic[]}` (`{revisionName | latestRevision, weight, label}`),
//!   `template.containers[]`, `latestRevisionName`.
//! * `ContainerApps_Update` PATCH (JSON merge patch: an array is replaced whole, so the
//!   containers and the traffic list are always sent complete): 200, or 202 with
//!   `Azure-AsyncOperation`, followed as [`crate::arm`] follows any long-running operation.
//!   `template.revisionSuffix` names the new revision `{app}--{suffix}`.
//! * `ContainerAppsRevisions_GetRevision` GET `…/revisions/{revision}`:
//!   `properties.provisioningState` (`Provisioning`, `Provisioned`, `Failed`, …),
//!   `provisioningError`, `active`.
//! * `ContainerAppsRevisions_DeactivateRevision` POST `…/revisions/{revision}/deactivate`: 200.
//! * A label's URL is `{app}---{label}.{environment domain}` (Container Apps docs,
//!   "Traffic splitting": <https://learn.microsoft.com/azure/container-apps/traffic-splitting>).
//!
//! Rollout, multiple-revision mode: pin traffic that follows `latestRevision` to the
//! revision serving now (so creating a revision moves no traffic); create the revision
//! (PATCH image by digest + suffix) and wait until it is provisioned; give it 0% and the
//! label `next`; health-check the label URL; then for each `[deploy] traffic_steps` value
//! shift that share to it and health-check the app URL; finally deactivate the old
//! revisions. Any failure puts the traffic back where it was (and deactivates the new
//! revision), and the run fails. Single-revision mode: PATCH; the caller then health-checks
//! the app URL (Container Apps keeps the old revision serving until the new one is ready),
//! and a failure there is the automatic rollback's cue (`releases::flow`).
//!
//! Redeploying a kept release (rollback, promote, automatic rollback; [`redeploy`]) builds
//! nothing: the image named by the release record (`<login server>/<repository>` and the
//! manifest digest) is made available in the environment's registry
//! ([`crate::registry::ensure`]: nothing to do when it is there, else manifest and missing
//! blobs copied from the record's registry), then rolled out as a new revision (its suffix
//! `r<8 of the digest>-<time>`, since Container Apps refuses a revision suffix used before).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::arm::Arm;
use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result};
use crate::image::Image;

pub const API_VERSION: &str = "2024-03-01";
/// The label the revision under test gets (moved to each new revision).
pub const LABEL: &str = "next";
const PERMISSION: &str = "the identity needs the Contributor role (or Container Apps Contributor) on the container app's resource group";

/// What the rollout did, for the report.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub revision: String,
    pub mode: String,
    /// Traffic shares the new revision went through (multiple-revision mode).
    pub steps: Vec<u8>,
    pub deactivated: Vec<String>,
}

/// The app's resource ID, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppId {
    pub subscription: String,
    pub group: String,
    pub name: String,
}

impl AppId {
    pub fn parse(id: &str) -> Result<AppId> {
        let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
        let ok = parts.len() == 8
            && parts[0].eq_ignore_ascii_case("subscriptions")
            && parts[2].eq_ignore_ascii_case("resourceGroups")
            && parts[4].eq_ignore_ascii_case("providers")
            && parts[5].eq_ignore_ascii_case("Microsoft.App")
            && parts[6].eq_ignore_ascii_case("containerApps")
            && parts.iter().all(|p| !p.is_empty());
        if !ok {
            return Err(Error::input(format!(
                "the output container_app_id {} is not a container app's resource ID",
                crate::env_name::quoted(id)
            ))
            .hint("output azurerm_container_app.<name>.id (/subscriptions/…/resourceGroups/…/providers/Microsoft.App/containerApps/…)"));
        }
        Ok(AppId {
            subscription: parts[1].to_string(),
            group: parts[3].to_string(),
            name: parts[7].to_string(),
        })
    }

    fn segments(&self) -> [&str; 6] {
        [
            "resourceGroups",
            &self.group,
            "providers",
            "Microsoft.App",
            "containerApps",
            &self.name,
        ]
    }
}

/// The revision suffix for an image: the commit's first 12 characters and 6 of the
/// digest (lower-case letters, digits and `-`, as revision suffixes must be), so the
/// same commit rebuilt differently still gets a new revision.
pub fn revision_suffix(commit: Option<&str>, digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    let commit: String = commit
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    if commit.is_empty() {
        format!("d{}", &hex[..hex.len().min(12)])
    } else {
        format!("{commit}-{}", &hex[..hex.len().min(6)])
    }
}

/// The revision suffix of a redeployed release (rollback, promote): `r`, 8 hex digits of
/// the digest, and the time in base-36 milliseconds, so rolling back to an image that ran
/// before still makes a revision of a new name.
pub fn redeploy_suffix(digest: &str, unix_millis: u128) -> String {
    let hex = digest.trim_start_matches("sha256:");
    let mut n = unix_millis;
    let mut time = Vec::new();
    loop {
        time.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    time.reverse();
    format!(
        "r{}-{}",
        &hex[..hex.len().min(8)],
        String::from_utf8_lossy(&time)
    )
}

/// Which container of the app's template runs the built image: the one `[deploy]
/// container` names; else the only one; else the one named like the app. Several
/// containers and no way to tell (sidecars) is an error naming them: putting the image
/// into a sidecar would break the app while every check said it deployed.
fn app_container(containers: &[Value], app: &str, wanted: Option<&str>) -> Result<usize> {
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let listed = || {
        names
            .iter()
            .map(|n| format!("`{}`", crate::env_name::printable(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(wanted) = wanted {
        return names.iter().position(|n| *n == wanted).ok_or_else(|| {
            Error::input(format!(
                "[deploy] container `{}` is not a container of container app `{app}` (it has {})",
                crate::env_name::printable(wanted),
                if names.is_empty() { "none".to_string() } else { listed() }
            ))
            .hint("set [deploy] container to the name of the container (in the app's Terraform template) that runs your image")
        });
    }
    match names.len() {
        0 => Err(Error::input(format!("container app `{app}` has no container to update"))
            .hint("declare one container in the app's template (Terraform) for nubes to put the image into")),
        1 => Ok(0),
        _ => names.iter().position(|n| *n == app).ok_or_else(|| {
            Error::input(format!(
                "container app `{app}` has {} containers ({}): nubes cannot tell which one runs your image",
                names.len(),
                listed()
            ))
            .hint("set [deploy] container = \"<name>\" in nubes.toml (the others, e.g. sidecars, keep their images)")
        }),
    }
}

/// Roll `image_ref` (`<login server>/<repo>@<digest>`, pushed already) out as revision
/// `{app}--{suffix}`. In multiple-revision mode the new revision is health-checked behind
/// its label and at each traffic step; in single-revision mode (and when the app runs the
/// image as that revision already) the caller health-checks the app URL.
pub async fn roll_out(
    settings: &Settings,
    arm: &Arm,
    app: &AppId,
    image_ref: &str,
    suffix: &str,
    app_url: Option<&str>,
) -> Result<Rollout> {
    let doing = format!("reading container app `{}`", app.name);
    let found = arm
        .get_resource(&app.segments(), API_VERSION, &doing, PERMISSION)
        .await?
        .ok_or_else(|| {
            Error::input(format!(
                "container app `{}` was not found in resource group `{}`",
                app.name, app.group
            ))
            .hint("check the output container_app_id (was the app created by this environment's Terraform?)")
        })?;
    let props = found.get("properties").cloned().unwrap_or_default();
    let mode = props
        .pointer("/configuration/activeRevisionsMode")
        .and_then(Value::as_str)
        .unwrap_or("Single")
        .to_string();
    let mut containers = props
        .pointer("/template/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // When the app runs this image as this revision already (a re-run of the same
    // commit), there is nothing to roll out.
    let revision = format!("{}--{suffix}", app.name);
    let index = app_container(&containers, &app.name, settings.deploy.container.as_deref())?;
    let running = containers
        .get(index)
        .and_then(|c| c.get("image"))
        .and_then(Value::as_str)
        == Some(image_ref)
        && (props
            .pointer("/template/revisionSuffix")
            .and_then(Value::as_str)
            == Some(suffix)
            || props.get("latestRevisionName").and_then(Value::as_str) == Some(revision.as_str()));
    if let Some(c) = containers.get_mut(index).and_then(Value::as_object_mut) {
        c.insert("image".into(), Value::String(image_ref.to_string()));
    }
    let app_url = app_url.map(str::to_string).or_else(|| {
        props
            .pointer("/configuration/ingress/fqdn")
            .and_then(Value::as_str)
            .map(|f| format!("https://{f}"))
    });
    let d = &settings.deploy;
    if running {
        let serving = current_shares(&props)
            .iter()
            .filter(|s| s.revision == revision)
            .map(|s| u32::from(s.weight))
            .sum::<u32>();
        let single = !mode.eq_ignore_ascii_case("Multiple");
        if !single && serving < 100 {
            return Err(Error::failed(format!(
                "container app `{}` already has revision `{revision}` for this commit and image, \
                 but it serves {serving}% of the traffic (an earlier rollout of it failed)",
                app.name
            ))
            .hint(
                "push a new commit (it gets a revision of its own), or move the traffic by hand: \
                 az containerapp ingress traffic set --revision-weight <revision>=100",
            ));
        }
        tracing::info!(
            "container app `{}` already runs {image_ref} as revision `{revision}`: nothing to roll out",
            app.name
        );
        return Ok(Rollout {
            revision,
            mode,
            steps: vec![],
            deactivated: vec![],
        });
    }
    if mode.eq_ignore_ascii_case("Multiple") {
        let app_url = app_url.ok_or_else(|| {
            Error::input(format!(
                "container app `{}` has no ingress: nothing to health-check or shift traffic on",
                app.name
            ))
            .hint("enable ingress on the app, or output application_url")
        })?;
        multiple(arm, app, &props, containers, suffix, &revision, &app_url, d).await
    } else {
        if d.traffic_steps.len() > 1 {
            tracing::warn!(
                "[deploy] traffic_steps has {} steps, but container app `{}` is in Single revision mode, \
                 where a new revision takes all traffic at once: set revision_mode = \"Multiple\" on \
                 the app (`nubes init` does when nubes.toml has more than one step)",
                d.traffic_steps.len(),
                app.name
            );
        }
        let patch = json!({"properties": {"template": {"revisionSuffix": suffix, "containers": containers}}});
        let doing = format!("updating container app `{}` to {image_ref}", app.name);
        arm.change_resource(
            Method::PATCH,
            &app.segments(),
            API_VERSION,
            Some(&patch),
            &doing,
            PERMISSION,
        )
        .await?;
        Ok(Rollout {
            revision,
            mode,
            steps: vec![],
            deactivated: vec![],
        })
    }
}

/// The whole target: push `image`, roll it out, and say what was done.
pub async fn deploy(
    settings: &Settings,
    image: &Image,
    outputs: &Map<String, Value>,
    commit: Option<&str>,
) -> Result<super::Deployed> {
    let out = |name: &str| super::output(outputs, name);
    let login = out("container_registry_login_server").ok_or_else(|| {
        Error::input("deploy target `container-apps` needs the Terraform output `container_registry_login_server`")
            .hint("output the registry's login server, e.g. azurerm_container_registry.<name>.login_server")
    })?;
    let (app_id, app) = app_of(outputs)?;
    let pushed = crate::registry::push(image, &login, &repository_name(settings)).await?;
    let arm = Arm::from_env_for(&app.subscription)?;
    let suffix = revision_suffix(commit, &image.digest);
    let rollout = roll_out(
        settings,
        &arm,
        &app,
        &pushed.reference,
        &suffix,
        out("application_url").as_deref(),
    )
    .await?;
    let uploads = format!(
        "{} blob(s) uploaded ({} bytes), {} already in the registry",
        pushed.uploaded, pushed.bytes_uploaded, pushed.skipped
    );
    Ok(deployed(
        &pushed.reference,
        &rollout,
        &uploads,
        &image.digest,
        app_id,
    ))
}

/// The report of a rollout.
fn deployed(
    reference: &str,
    rollout: &Rollout,
    registry: &str,
    digest: &str,
    app_id: String,
) -> super::Deployed {
    let steps = if rollout.steps.is_empty() {
        String::new()
    } else {
        format!(
            ", traffic {}%",
            rollout
                .steps
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join("% → ")
        )
    };
    super::Deployed {
        target: "container-apps".into(),
        detail: format!(
            "{reference} as revision {} ({} mode{steps}); {registry}",
            rollout.revision, rollout.mode,
        ),
        sha256: Some(digest.trim_start_matches("sha256:").to_string()),
        destination: Some(app_id),
        site: None,
    }
}

/// The registry repository images of this project go to (per-environment tags).
fn repository_name(settings: &Settings) -> String {
    crate::render::project_name(settings).to_ascii_lowercase()
}

/// The output `container_app_id`, and parsed.
fn app_of(outputs: &Map<String, Value>) -> Result<(String, AppId)> {
    let app_id = super::output(outputs, "container_app_id").ok_or_else(|| {
        Error::input("deploy target `container-apps` needs the Terraform output `container_app_id`")
            .hint("output azurerm_container_app.<name>.id")
    })?;
    let app = AppId::parse(&app_id)?;
    Ok((app_id, app))
}

/// `<login server>/<repository>` the environment's images go to (what a release record
/// names), from the output `container_registry_login_server`.
pub fn repository(settings: &Settings, outputs: &Map<String, Value>) -> Option<String> {
    let login = super::output(outputs, "container_registry_login_server")?;
    let login = crate::registry::host(&login).ok()?;
    Some(format!("{login}/{}", repository_name(settings)))
}

/// After a rollout: the app URL's health check (output `application_url`), as the
/// pipeline does after any deploy; a deploy that succeeded went live.
pub async fn checked(
    settings: &Settings,
    outputs: &Map<String, Value>,
    deployed: Result<Option<super::Deployed>>,
) -> super::slot::Shipment {
    let health = match (&deployed, super::output(outputs, "application_url")) {
        (Ok(Some(_)), Some(url)) => {
            let d = &settings.deploy;
            Some(crate::health::check(&url, &d.health_path, d.health_timeout).await)
        }
        _ => None,
    };
    super::slot::Shipment {
        went_live: matches!(deployed, Ok(Some(_))),
        deployed,
        health,
    }
}

/// Roll kept release `release` (an image release: its record names the registry and the
/// digest) out into `env` again, no build: copied into the environment's registry when
/// it lives elsewhere (a promotion across registries), then a new revision by digest,
/// health-checked as after any deploy.
pub async fn redeploy(
    settings: &Settings,
    env: &EnvName,
    outputs: &Map<String, Value>,
    release: &crate::releases::Record,
) -> super::slot::Shipment {
    let deployed = async {
        let source = release.image.as_deref().ok_or_else(|| {
            Error::failed(format!(
                "release {} does not name the registry its image is in (recorded by an older nubes)",
                release.id
            ))
            .hint("deploy it again with `nubes up`")
        })?;
        let login = super::output(outputs, "container_registry_login_server").ok_or_else(|| {
            Error::input("deploy target `container-apps` needs the Terraform output `container_registry_login_server`")
                .hint("output the registry's login server, e.g. azurerm_container_registry.<name>.login_server")
        })?;
        let (app_id, app) = app_of(outputs)?;
        let tag = crate::image::tag_for(env.as_str(), release.commit.as_deref());
        let ensured = crate::registry::ensure(
            source,
            &release.digest,
            &login,
            &repository_name(settings),
            &tag,
        )
        .await?;
        let arm = Arm::from_env_for(&app.subscription)?;
        let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let suffix = redeploy_suffix(&release.digest, millis.max(0).unsigned_abs());
        let rollout = roll_out(
            settings,
            &arm,
            &app,
            &ensured.reference,
            &suffix,
            super::output(outputs, "application_url").as_deref(),
        )
        .await?;
        Ok(Some(deployed(
            &ensured.reference,
            &rollout,
            &ensured.describe(),
            &release.digest,
            app_id,
        )))
    }
    .await;
    checked(settings, outputs, deployed).await
}

/// One traffic entry, by revision name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Share {
    revision: String,
    weight: u8,
    label: Option<String>,
}

fn traffic_json(shares: &[Share]) -> Value {
    Value::Array(
        shares
            .iter()
            .map(|s| {
                let mut m = Map::new();
                m.insert("revisionName".into(), json!(s.revision));
                m.insert("weight".into(), json!(s.weight));
                if let Some(l) = &s.label {
                    m.insert("label".into(), json!(l));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// The current traffic, with `latestRevision` entries pinned to the latest revision's
/// name, the label `next` dropped (it moves to the new revision), weights as they are.
fn current_shares(props: &Value) -> Vec<Share> {
    let latest = props
        .get("latestRevisionName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut out: Vec<Share> = Vec::new();
    for t in props
        .pointer("/configuration/ingress/traffic")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = match t.get("revisionName").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ if t.get("latestRevision").and_then(Value::as_bool) == Some(true) => latest.clone(),
            _ => continue,
        };
        if name.is_empty() {
            continue;
        }
        let weight = t
            .get("weight")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(100) as u8;
        let label = t
            .get("label")
            .and_then(Value::as_str)
            .filter(|l| *l != LABEL)
            .map(str::to_string);
        match out.iter_mut().find(|s| s.revision == name) {
            Some(s) => s.weight = s.weight.saturating_add(weight).min(100),
            None => out.push(Share {
                revision: name,
                weight,
                label,
            }),
        }
    }
    out
}

/// Old shares scaled to `100 - new`, the rounding remainder on the largest, plus the new
/// revision's share with the label.
fn step_shares(old: &[Share], new_revision: &str, new: u8) -> Vec<Share> {
    let total: u32 = old.iter().map(|s| u32::from(s.weight)).sum();
    let rest = u32::from(100 - new);
    let mut shares: Vec<Share> = old
        .iter()
        .filter(|s| s.revision != new_revision)
        .map(|s| Share {
            weight: (u32::from(s.weight) * rest).checked_div(total).unwrap_or(0) as u8,
            ..s.clone()
        })
        .collect();
    // An old revision left with nothing (and no label of its own) leaves the list.
    shares.retain(|s| s.weight > 0 || s.label.is_some() || new == 0);
    let given: u32 = shares.iter().map(|s| u32::from(s.weight)).sum();
    if let Some(largest) = shares.iter_mut().max_by_key(|s| s.weight) {
        largest.weight += (rest - given) as u8;
    }
    shares.push(Share {
        revision: new_revision.to_string(),
        weight: new,
        label: Some(LABEL.into()),
    });
    shares
}

#[allow(clippy::too_many_arguments)]
async fn multiple(
    arm: &Arm,
    app: &AppId,
    props: &Value,
    containers: Vec<Value>,
    suffix: &str,
    revision: &str,
    app_url: &str,
    d: &crate::config::DeploySettings,
) -> Result<Rollout> {
    let before = current_shares(props);
    let segments = app.segments();
    let patch_traffic = |shares: Vec<Share>, doing: String| async move {
        let body = json!({"properties": {"configuration": {"ingress": {"traffic": traffic_json(&shares)}}}});
        arm.change_resource(
            Method::PATCH,
            &segments,
            API_VERSION,
            Some(&body),
            &doing,
            PERMISSION,
        )
        .await
    };
    // 1. The new revision, with traffic pinned to the old ones by name.
    let body = json!({"properties": {
        "configuration": {"ingress": {"traffic": traffic_json(&before)}},
        "template": {"revisionSuffix": suffix, "containers": containers},
    }});
    let doing = format!("creating revision `{revision}`");
    arm.change_resource(
        Method::PATCH,
        &segments,
        API_VERSION,
        Some(&body),
        &doing,
        PERMISSION,
    )
    .await?;
    let outcome = async {
        wait_provisioned(arm, app, revision, d.health_timeout).await?;
        // 2. 0% and the label; health of the label URL.
        patch_traffic(
            step_shares(&before, revision, 0),
            format!("labelling revision `{revision}` `{LABEL}`"),
        )
        .await?;
        let label_url = label_url(app_url, &app.name, LABEL)?;
        crate::health::check(&label_url, &d.health_path, d.health_timeout)
            .await
            .map_err(|e| e.context(format!("revision `{revision}` behind its label")))?;
        // 3. Traffic steps, each health-checked.
        for &step in &d.traffic_steps {
            patch_traffic(
                step_shares(&before, revision, step),
                format!("shifting {step}% of traffic to `{revision}`"),
            )
            .await?;
            tracing::info!("traffic: {step}% on {revision}");
            crate::health::check(app_url, &d.health_path, d.health_timeout)
                .await
                .map_err(|e| e.context(format!("the app with {step}% on `{revision}`")))?;
        }
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = outcome {
        tracing::warn!(
            "rollout of `{revision}` failed; returning traffic to the previous revisions"
        );
        let back = patch_traffic(
            before.clone(),
            format!("returning traffic from `{revision}`"),
        )
        .await;
        let deactivate = deactivate(arm, app, revision).await;
        return Err(match (back, deactivate) {
            (Ok(()), Ok(())) => e.hint(format!("traffic is back on the previous revision(s); `{revision}` was deactivated")),
            (Err(b), _) => e.hint(format!("returning the traffic failed too ({b}): check the app's traffic in the portal")),
            (Ok(()), Err(x)) => e.hint(format!("traffic is back on the previous revision(s); deactivating `{revision}` failed ({x})")),
        });
    }
    // 4. The old revisions carry nothing now: deactivate them.
    let mut deactivated = Vec::new();
    for old in before.iter().filter(|s| s.revision != revision) {
        match deactivate(arm, app, &old.revision).await {
            Ok(()) => deactivated.push(old.revision.clone()),
            Err(e) => tracing::warn!(
                "could not deactivate the old revision `{}`: {e}",
                old.revision
            ),
        }
    }
    Ok(Rollout {
        revision: revision.to_string(),
        mode: "Multiple".into(),
        steps: d.traffic_steps.clone(),
        deactivated,
    })
}

async fn deactivate(arm: &Arm, app: &AppId, revision: &str) -> Result<()> {
    let mut segments = app.segments().to_vec();
    segments.extend(["revisions", revision, "deactivate"]);
    arm.change_resource(
        Method::POST,
        &segments,
        API_VERSION,
        None,
        &format!("deactivating revision `{revision}`"),
        PERMISSION,
    )
    .await
}

/// Poll the revision until it is provisioned (or failed, or `timeout`).
async fn wait_provisioned(arm: &Arm, app: &AppId, revision: &str, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let mut segments = app.segments().to_vec();
    segments.extend(["revisions", revision]);
    let doing = format!("reading revision `{revision}`");
    let mut wait = Duration::from_millis(500);
    loop {
        let found = arm
            .get_resource(&segments, API_VERSION, &doing, PERMISSION)
            .await?;
        let state = found
            .as_ref()
            .and_then(|r| r.pointer("/properties/provisioningState"))
            .and_then(Value::as_str)
            .unwrap_or("Provisioning")
            .to_string();
        match state.as_str() {
            "Provisioned" => return Ok(()),
            "Failed" | "Deprovisioned" | "Deprovisioning" => {
                let why = found
                    .as_ref()
                    .and_then(|r| r.pointer("/properties/provisioningError"))
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                return Err(Error::failed(format!(
                    "revision `{revision}` could not be provisioned ({state}): {}",
                    crate::env_name::printable(why)
                ))
                .hint("check that the image runs (its port matches the ingress target port) and that the app can pull from the registry (AcrPull)"));
            }
            _ => {}
        }
        if started.elapsed() + wait > timeout {
            return Err(Error::failed(format!(
                "revision `{revision}` was still {state} after {}",
                humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
            ))
            .hint("raise [deploy] health_timeout if the image takes longer to start"));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// `{scheme}://{app}---{label}.{domain}[:port]` from the app URL
/// `{scheme}://{app}.{domain}[:port]`.
pub fn label_url(app_url: &str, app: &str, label: &str) -> Result<String> {
    let mut url = url::Url::parse(app_url).map_err(|e| {
        Error::input(format!(
            "the application URL {} is not a URL: {e}",
            crate::env_name::quoted(app_url)
        ))
    })?;
    let host = url.host_str().unwrap_or_default().to_string();
    let domain = host
        .strip_prefix(&format!("{app}."))
        .ok_or_else(|| {
            Error::input(format!(
                "the application URL's host `{host}` is not `{app}.<environment domain>`, so the label URL is unknown"
            ))
            .hint("output application_url as \"https://${azurerm_container_app.<name>.ingress[0].fqdn}\"")
        })?;
    url.set_host(Some(&format!("{app}---{label}.{domain}")))
        .map_err(|e| Error::failed(format!("label URL: {e}")))?;
    url.set_path("/");
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_suffixes_and_label_urls() {
        let id = AppId::parse(
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.App/containerApps/web",
        )
        .unwrap();
        assert_eq!(
            (
                id.subscription.as_str(),
                id.group.as_str(),
                id.name.as_str()
            ),
            ("s1", "rg", "web")
        );
        assert_eq!(
            AppId::parse("/subscriptions/s1/resourceGroups/rg")
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            revision_suffix(Some("ABCDEF0123456789"), "sha256:99887766"),
            "abcdef012345-998877"
        );
        assert_eq!(
            revision_suffix(None, "sha256:0011223344556677"),
            "d001122334455"
        );
        assert_eq!(
            label_url(
                "https://web.happy.eastus.azurecontainerapps.io",
                "web",
                "next"
            )
            .unwrap(),
            "https://web---next.happy.eastus.azurecontainerapps.io/"
        );
        assert!(label_url("https://other.x.io", "web", "next").is_err());
        // A redeploy's suffix: a new name each time, valid as a revision suffix.
        let s = redeploy_suffix("sha256:0011223344556677", 1_780_000_000_000);
        assert!(s.starts_with("r00112233-"), "{s}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        assert_ne!(
            s,
            redeploy_suffix("sha256:0011223344556677", 1_780_000_000_001)
        );
    }

    #[test]
    fn traffic_is_pinned_then_scaled_to_the_step() {
        let props = json!({"latestRevisionName": "web--a",
            "configuration": {"ingress": {"traffic": [{"latestRevision": true, "weight": 100}]}}});
        let before = current_shares(&props);
        assert_eq!(
            before,
            vec![Share {
                revision: "web--a".into(),
                weight: 100,
                label: None
            }]
        );
        let s = step_shares(&before, "web--b", 10);
        assert_eq!(s.iter().map(|s| s.weight).collect::<Vec<_>>(), vec![90, 10]);
        assert_eq!(s[1].label.as_deref(), Some(LABEL));
        let two = vec![
            Share {
                revision: "a".into(),
                weight: 67,
                label: None,
            },
            Share {
                revision: "b".into(),
                weight: 33,
                label: Some("blue".into()),
            },
        ];
        let s = step_shares(&two, "c", 50);
        assert_eq!(s.iter().map(|s| u32::from(s.weight)).sum::<u32>(), 100);
        assert_eq!(s[2].weight, 50);
    }

    #[test]
    fn the_image_goes_into_the_container_that_runs_the_app_never_a_sidecar() {
        let c = |names: &[&str]| -> Vec<Value> {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "x"}))
                .collect()
        };
        assert_eq!(app_container(&c(&["web"]), "app", None).unwrap(), 0);
        assert_eq!(
            app_container(&c(&["envoy", "app"]), "app", None).unwrap(),
            1
        );
        assert_eq!(
            app_container(&c(&["envoy", "web"]), "app", Some("web")).unwrap(),
            1
        );
        let e = app_container(&c(&["envoy", "web"]), "app", None).unwrap_err();
        assert!(
            e.to_string().contains("2 containers (`envoy`, `web`)"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
        let e = app_container(&c(&["envoy", "web"]), "app", Some("api")).unwrap_err();
        assert!(
            e.to_string()
                .contains("[deploy] container `api` is not a container"),
            "{e}"
        );
        assert!(app_container(&[], "app", None).is_err());
    }
}
