//! Shipping an artifact into an environment: deploy, then health-check; or, with
//! `[deploy] slot` on `app-service` / `functions`, blue-green through a deployment slot:
//!
//! 1. deploy to the slot through the slot's own Kudu site (output `slot_scm_url`, else
//!    `https://<app_name>-<slot>.scm.azurewebsites.net`);
//! 2. health-check the slot's own URL (output `slot_url`, else
//!    `https://<app_name>-<slot>.azurewebsites.net`): unhealthy, and nothing is swapped,
//!    production untouched;
//! 3. swap the slot into production through Resource Manager (`arm::Arm::swap_slot`,
//!    outputs `resource_group` and `app_name`, `ARM_SUBSCRIPTION_ID`);
//! 4. health-check production (`application_url`): unhealthy, and the same swap runs
//!    again at once, which puts the previous production back (App Service exchanges the
//!    two slots' content), and both verdicts are reported.
//!
//! `up`, `rollback`, `promote` and the automatic rollback all ship through [`ship`].
//!
//! **Swap-back** ([`swap_back`]): after a healthy release is swapped in, the slot holds
//! the previous production release. App Service's guide ("Set up staging environments",
//! <https://learn.microsoft.com/en-us/azure/app-service/deploy-staging-slots>): "After a
//! swap, the slot with previously staged app now has the previous production app. If
//! the changes swapped into the production slot aren't as you expect, you can perform
//! the same swap immediately to get your 'last known good site' back"; the swap ends by
//! "switching routing rules for the two slots", so each slot's SCM host name (publishing
//! endpoints are slot-specific, not swapped) then reaches the other site, with its files
//! and its Kudu deployment records (kept in the site's own file system,
//! `site/deployments`: projectkudu/kudu `IEnvironment.DeploymentsPath`). So a rollback
//! (or promote, or the automatic rollback: all go through `releases::flow::redeploy`)
//! whose release the slot serves is put live by one swap, with no upload and no Kudu
//! deployment. "Serves" is verified, never assumed: every zip deploy records
//! `nubes release sha256:<hex>` as its Kudu `message` (`kudu::release_message`), and the
//! slot's own `GET /api/deployments/latest` must name the wanted release with status
//! Success (and not say it is inactive). Then the slot's URL is health-checked, the slot
//! swapped in, production health-checked (unhealthy: swapped back at once, both
//! verdicts, as step 4). Anything else falls back to the path above (the kept zip
//! deployed to the slot, checked, swapped): the slot's latest deployment names another
//! release, is not a success, or carries no message nubes wrote (OneDeploy of a
//! jar/war/ear records its own fixed `OneDeploy`; Flex Consumption has no slots); the
//! slot's Kudu cannot be read; the slot answers unhealthy (a fresh deploy restarts it).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::Deployed;
use super::static_site::Baseline;
use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result};
use crate::health::Healthy;

/// What shipping did.
pub struct Shipment {
    /// The deploy (to the slot, with a slot).
    pub deployed: Result<Option<Deployed>>,
    /// The health verdict that decides the run: production's (after a swap), or the
    /// slot's when it failed; `None` when nothing was checked.
    pub health: Option<Result<Healthy>>,
    /// Whether what was deployed now serves production.
    pub went_live: bool,
}

fn output(outputs: &Map<String, Value>, name: &str) -> Option<String> {
    crate::pipeline::output_str(outputs, name)
}

/// The slot `[deploy] slot` names, when the target swaps slots.
fn slot_for<'a>(settings: &'a Settings, outputs: &Map<String, Value>) -> Option<&'a str> {
    let slot = settings.deploy.slot.as_deref()?;
    match super::target(settings, outputs).as_deref() {
        Some("app-service" | "functions") => Some(slot),
        _ => None,
    }
}

/// Deploy `artifact` and health-check it, through the slot when one is configured.
/// `baseline`: see [`super::deploy`] (a static site has no slots). `release`: the
/// release's digest, recorded with a zip deploy (see [`super::deploy`]).
pub async fn ship(
    settings: &Settings,
    env: &EnvName,
    artifact: &Path,
    outputs: &Map<String, Value>,
    baseline: Option<Arc<Baseline>>,
    release: Option<&str>,
) -> Shipment {
    if let Some(slot) = slot_for(settings, outputs) {
        return blue_green(settings, env, artifact, outputs, slot, release).await;
    }
    let deployed = super::deploy(settings, env, artifact, outputs, baseline, release).await;
    let health = match (&deployed, output(outputs, "application_url")) {
        (Ok(Some(_)), Some(url)) => Some(check(settings, &url).await),
        _ => None,
    };
    let went_live = matches!(deployed, Ok(Some(_)));
    Shipment {
        deployed,
        health,
        went_live,
    }
}

async fn check(settings: &Settings, url: &str) -> Result<Healthy> {
    let d = &settings.deploy;
    crate::health::check(url, &d.health_path, d.health_timeout).await
}

/// Where the slot lives: its Kudu site, its URL, the app and its group.
struct SlotPlace {
    scm: String,
    url: String,
    app: String,
    group: String,
}

fn place(outputs: &Map<String, Value>, slot: &str) -> Result<SlotPlace> {
    let app = output(outputs, "app_name");
    let group = output(outputs, "resource_group");
    let (Some(app), Some(group)) = (app, group) else {
        return Err(Error::input(format!(
            "[deploy] slot = \"{slot}\" needs the Terraform outputs `app_name` and `resource_group` to swap the slot"
        ))
        .hint("output the app's name and resource group (and optionally slot_scm_url and slot_url)"));
    };
    let scm = output(outputs, "slot_scm_url")
        .unwrap_or_else(|| format!("https://{app}-{slot}.scm.azurewebsites.net"));
    let url = output(outputs, "slot_url")
        .unwrap_or_else(|| format!("https://{app}-{slot}.azurewebsites.net"));
    Ok(SlotPlace {
        scm,
        url,
        app,
        group,
    })
}

async fn blue_green(
    settings: &Settings,
    env: &EnvName,
    artifact: &Path,
    outputs: &Map<String, Value>,
    slot: &str,
    release: Option<&str>,
) -> Shipment {
    let failed = |e: Error| Shipment {
        deployed: Err(e),
        health: None,
        went_live: false,
    };
    let place = match place(outputs, slot) {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let arm = match crate::arm::Arm::from_env() {
        Ok(a) => a,
        Err(e) => {
            return failed(e.context(format!("swapping slot `{slot}` needs Resource Manager")));
        }
    };
    // The slot's own Kudu site: the deploy goes there, production is not touched.
    let mut slot_outputs = outputs.clone();
    slot_outputs.insert(
        "scm_url".into(),
        serde_json::json!({ "value": place.scm, "sensitive": false }),
    );
    tracing::info!("deploying to slot `{slot}` ({})", place.scm);
    let deployed = super::deploy(settings, env, artifact, &slot_outputs, None, release).await;
    let Ok(Some(d)) = &deployed else {
        return Shipment {
            deployed,
            health: None,
            went_live: false,
        };
    };
    let detail = d.detail.clone();
    let verdict =
        |deployed: Result<Option<Deployed>>, health: Result<Healthy>, live: bool| Shipment {
            deployed,
            health: Some(health),
            went_live: live,
        };
    if let Err(e) = check(settings, &place.url).await {
        let e = Error::failed(format!(
            "slot `{slot}` is unhealthy ({e}): not swapped, production untouched"
        ))
        .hint("fix the release and push again; the slot keeps it for inspection");
        return verdict(deployed, Err(e), false);
    }
    tracing::info!("slot `{slot}` is healthy ({detail}); swapping it into production");
    swap_in(settings, &arm, &place, slot, outputs, deployed).await
}

/// Swap the healthy `slot` into production and health-check production; unhealthy, and
/// the same swap runs again at once. `deployed`: what the slot serves, for the record.
async fn swap_in(
    settings: &Settings,
    arm: &crate::arm::Arm,
    place: &SlotPlace,
    slot: &str,
    outputs: &Map<String, Value>,
    deployed: Result<Option<Deployed>>,
) -> Shipment {
    let verdict =
        |deployed: Result<Option<Deployed>>, health: Result<Healthy>, live: bool| Shipment {
            deployed,
            health: Some(health),
            went_live: live,
        };
    if let Err(e) = arm.swap_slot(&place.group, &place.app, slot).await {
        return verdict(deployed, Err(e.context("swap")), false);
    }
    let Some(prod_url) = output(outputs, "application_url") else {
        return Shipment {
            deployed,
            health: None,
            went_live: true,
        };
    };
    match check(settings, &prod_url).await {
        Ok(h) => verdict(deployed, Ok(h), true),
        Err(e) => {
            tracing::warn!("production is unhealthy after the swap ({e}): swapping back");
            let back = arm.swap_slot(&place.group, &place.app, slot).await;
            let restored = match &back {
                Ok(()) => "swapped back, the previous release serves production again".to_string(),
                Err(b) => {
                    format!("swapping back FAILED ({b}): production serves the unhealthy release")
                }
            };
            let e = Error::failed(format!(
                "slot `{slot}`: healthy; production after the swap: unhealthy ({e}); {restored}"
            ))
            .hint("production-only settings differ from the slot's: compare the app's settings marked as slot settings");
            verdict(deployed, Err(e), back.is_err())
        }
    }
}

/// With `[deploy] slot`: put release `digest` live by swapping the slot back in, when
/// the slot's own Kudu shows that it serves that release (see the module doc). `None`:
/// it cannot be verified, or the slot is unhealthy; the caller deploys the kept release
/// through the slot instead (the reason is logged).
pub async fn swap_back(
    settings: &Settings,
    outputs: &Map<String, Value>,
    digest: &str,
) -> Option<Shipment> {
    let slot = slot_for(settings, outputs)?;
    let fall_back = |why: String| {
        tracing::info!(
            "{why}: deploying the kept release to slot `{slot}` instead of swapping it back"
        );
    };
    let place = match place(outputs, slot) {
        Ok(p) => p,
        Err(e) => {
            fall_back(e.to_string());
            return None;
        }
    };
    let id = match serving(&place, digest).await {
        Ok(id) => id,
        Err(why) => {
            fall_back(format!(
                "slot `{slot}` is not known to serve release {digest}: {why}"
            ));
            return None;
        }
    };
    let arm = match crate::arm::Arm::from_env() {
        Ok(a) => a,
        Err(e) => {
            fall_back(format!(
                "swapping slot `{slot}` needs Resource Manager ({e})"
            ));
            return None;
        }
    };
    if let Err(e) = check(settings, &place.url).await {
        fall_back(format!(
            "slot `{slot}` serves release {digest} (Kudu deployment {id}) but is unhealthy ({e})"
        ));
        return None;
    }
    tracing::info!(
        "slot `{slot}` serves release {digest} (Kudu deployment {id}) and is healthy: swapping it into production, nothing uploaded"
    );
    let deployed = Deployed {
        target: super::target(settings, outputs).unwrap_or_else(|| "app-service".into()),
        detail: format!(
            "swapped slot `{slot}` into production (it served the release: Kudu deployment {id}); nothing uploaded"
        ),
        sha256: None,
        destination: Some(place.scm.clone()),
        site: None,
    };
    Some(swap_in(settings, &arm, &place, slot, outputs, Ok(Some(deployed))).await)
}

/// The ID of the slot's latest deployment when it is release `digest`, deployed
/// successfully by nubes; otherwise why not.
async fn serving(place: &SlotPlace, digest: &str) -> std::result::Result<String, String> {
    let kudu = crate::kudu::Kudu::from_env(&place.scm).map_err(|e| e.to_string())?;
    let latest = kudu
        .latest_deployment()
        .await
        .map_err(|e| format!("its Kudu could not be read ({e})"))?
        .ok_or_else(|| "it has no deployment".to_string())?;
    let id = crate::env_name::printable(latest.id.as_deref().unwrap_or("?"));
    let said = latest.message.as_deref().unwrap_or_default();
    if said != crate::kudu::release_message(digest) {
        return Err(format!(
            "its latest deployment {id} says {}",
            crate::env_name::quoted(said)
        ));
    }
    if !latest.succeeded || latest.active == Some(false) {
        return Err(format!(
            "its latest deployment {id} is {}{}",
            latest.status,
            if latest.active == Some(false) {
                ", not active"
            } else {
                ""
            }
        ));
    }
    Ok(id)
}
