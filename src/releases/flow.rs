//! Releases in the pipeline: keeping and recording what `up` deployed, the automatic
//! rollback when its health check fails, and the redeploy of a kept release that
//! `rollback`, `promote` and the automatic rollback share (no build: the release's own
//! bytes, fetched from the releases container, go through the ordinary deploy; with
//! `[deploy] slot`, a zip release the slot verifiably serves already is swapped back in
//! instead, see [`crate::deploy::slot::swap_back`]; an image release is rolled out again
//! by its digest from its registry, see [`crate::deploy::container_apps::redeploy`]).

use std::path::Path;

use serde_json::{Map, Value};

use super::{Kind, NewRecord, Record, Releases, short};
use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result};

/// The release an `up`, `rollback` or `promote` left live, for outputs and summaries.
#[derive(Debug, Clone)]
pub struct ReleaseNote {
    /// Short id (12 hex digits).
    pub id: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The release rolled back from (the one that failed), when a rollback happened.
    pub rolled_back_from: Option<String>,
}

impl ReleaseNote {
    /// `release_id`, `release_digest` and `rolled_back` in `$GITHUB_OUTPUT`.
    /// `rolled_back`: this run put an earlier release back (an automatic rollback, or
    /// `nubes rollback`).
    pub fn set_outputs(&self, gh: &crate::github::Github, rolled_back: bool) -> Result<()> {
        gh.set_output("release_id", &self.id)?;
        gh.set_output("release_digest", &self.digest)?;
        gh.set_output("rolled_back", if rolled_back { "true" } else { "false" })
    }
}

/// What `up` deployed, as the release hook needs it.
pub struct Shipped<'a> {
    pub target: &'a str,
    pub artifact: &'a Path,
    pub digest: Option<&'a str>,
    /// A static site's files as the sync read them (digests included), so keeping the
    /// release hashes nothing again.
    pub site: Option<std::sync::Arc<crate::deploy::SiteManifest>>,
    pub commit: Option<&'a str>,
    pub deployed: bool,
    /// It serves production now (a slot that was not swapped in, or was swapped back,
    /// does not).
    pub went_live: bool,
    pub healthy: Option<bool>,
}

/// The outcome of the automatic rollback after a failed health check.
#[derive(Debug)]
pub struct AutoRollback {
    pub failed: String,
    pub restored: String,
    /// The restored release's health verdict (`healthy`, `unhealthy`, or `failed` when
    /// its redeploy failed), with the error when there was one.
    pub verdict: &'static str,
    pub error: Option<String>,
}

impl AutoRollback {
    /// The message of the run's error: both releases and both verdicts.
    pub fn explain(&self, health: &Error) -> Error {
        let mut msg = format!(
            "release {} failed its health check ({health}); rolled back to release {}: {}",
            short(&self.failed),
            short(&self.restored),
            self.verdict
        );
        if let Some(e) = &self.error {
            msg.push_str(&format!(" ({e})"));
        }
        Error::failed(msg).hint(
            "the failing release is kept: fix it and push again, or inspect it with `nubes releases <env>`",
        )
    }
}

/// After `up` deployed (or failed to): keep the artifact, record the release, roll back
/// to the previous healthy release when the health check failed (and that is wanted),
/// prune. Storage trouble is reported and never fails the deploy itself.
pub async fn after_deploy(
    settings: &Settings,
    env: &EnvName,
    outputs: &Map<String, Value>,
    shipped: &Shipped<'_>,
) -> (Option<ReleaseNote>, Option<AutoRollback>) {
    let store = match Releases::open(settings) {
        Ok(Some(s)) => s,
        Ok(None) => return (None, None),
        Err(e) => {
            tracing::warn!("releases are not kept: {e}");
            return (None, None);
        }
    };
    let Some(hex) = shipped.digest.and_then(super::hex_of) else {
        return (None, None);
    };
    // An image stays in its registry: the record names where.
    let image = crate::deploy::container_apps::repository(settings, outputs);
    let size = if Kind::for_target(shipped.target) == Some(Kind::Image) {
        if image.is_none() {
            return (None, None);
        }
        None
    } else {
        match store
            .keep(
                env,
                shipped.target,
                shipped.artifact,
                &format!("sha256:{hex}"),
                shipped.commit,
                shipped.site.as_deref(),
            )
            .await
        {
            Ok(Some(size)) => Some(size),
            Ok(None) => return (None, None), // a target whose artifacts are not kept
            Err(e) => {
                tracing::warn!("the release could not be kept ({e}): it cannot be rolled back to");
                return (None, None);
            }
        }
    };
    // Read before recording, so the previous healthy release is another one.
    let before = store.records(env).await.unwrap_or_else(|e| {
        tracing::warn!("the releases of `{env}` could not be read: {e}");
        Vec::new()
    });
    let verdict = super::verdict(shipped.deployed, shipped.healthy);
    let record = NewRecord {
        digest: format!("sha256:{hex}"),
        commit: shipped.commit.map(str::to_string),
        target: shipped.target.to_string(),
        verdict,
        action: "deploy".into(),
        went_live: shipped.went_live,
        size,
        image: image.filter(|_| shipped.target == "container-apps"),
    };
    if let Err(e) = store.record(env, &record).await {
        tracing::warn!("the release could not be recorded: {e}");
    }
    let mut note = ReleaseNote {
        id: short(&hex).to_string(),
        digest: format!("sha256:{hex}"),
        rolled_back_from: None,
    };
    let mut rolled = None;
    // Only a failing release that serves production is rolled back (a slot that failed
    // was never swapped in, or was swapped back).
    if shipped.healthy == Some(false) && shipped.went_live {
        let previous = super::previous_healthy(&before, &hex).cloned();
        match (settings.deploy.rollback_on_failure, previous) {
            (Some(false), _) => tracing::info!(
                "[deploy] rollback_on_failure = false: release {} stays live",
                short(&hex)
            ),
            (_, None) => tracing::warn!(
                "`{env}` has no previous healthy release to roll back to: release {} stays live",
                short(&hex)
            ),
            (_, Some(prev)) => {
                tracing::warn!(
                    "release {} failed its health check: rolling back to release {}",
                    short(&hex),
                    prev.id
                );
                let outcome =
                    redeploy(settings, &store, env, outputs, &prev, "auto-rollback").await;
                let (verdict, error) = match &outcome {
                    Ok(r) => (r.verdict, None),
                    Err(e) => ("failed", Some(e.to_string())),
                };
                if outcome.as_ref().is_ok_and(|r| r.went_live) {
                    note = ReleaseNote {
                        id: prev.id.clone(),
                        digest: prev.digest.clone(),
                        rolled_back_from: Some(short(&hex).to_string()),
                    };
                }
                rolled = Some(AutoRollback {
                    failed: hex.clone(),
                    restored: prev.hex().to_string(),
                    verdict,
                    error,
                });
            }
        }
    }
    if let Err(e) = store.prune(settings.deploy.keep_releases).await {
        tracing::warn!("old releases could not be pruned: {e}");
    }
    (Some(note), rolled)
}

/// How a redeploy ended.
#[derive(Debug, Clone, Copy)]
pub struct Redeployed {
    /// `healthy`, `unhealthy` or `unchecked`.
    pub verdict: &'static str,
    /// The release serves production now (with a slot: it was swapped in and stayed).
    pub went_live: bool,
    /// It was put (or tried to be put) live by swapping the slot that served it back
    /// in: nothing fetched or uploaded.
    pub by_slot_swap: bool,
}

/// The swap-back of a zip release the environment's slot serves already (see
/// [`crate::deploy::slot::swap_back`]); `None` for other releases and targets.
async fn swap_back(
    settings: &Settings,
    outputs: &Map<String, Value>,
    release: &Record,
) -> Option<crate::deploy::slot::Shipment> {
    if Kind::for_target(&release.target) != Some(Kind::Zip) {
        return None;
    }
    crate::deploy::slot::swap_back(settings, outputs, &release.digest).await
}

/// Deploy kept release `release` into `env` (fetched into a temporary folder, no
/// build; or, when the environment's slot serves it already, swapped back in),
/// health-check it, and record it with `action`. Returns the health verdict and whether
/// it went live; a failed deploy is an error (and recorded).
pub async fn redeploy(
    settings: &Settings,
    store: &Releases,
    env: &EnvName,
    outputs: &Map<String, Value>,
    release: &Record,
    action: &str,
) -> Result<Redeployed> {
    let mut by_slot_swap = false;
    let (shipment, image) = if Kind::for_target(&release.target) == Some(Kind::Image) {
        let image = crate::deploy::container_apps::repository(settings, outputs);
        let shipment =
            crate::deploy::container_apps::redeploy(settings, env, outputs, release).await;
        (shipment, image)
    } else if let Some(shipment) = swap_back(settings, outputs, release).await {
        // The slot serves the release already: one swap, no fetch, no upload.
        by_slot_swap = true;
        (shipment, None)
    } else {
        let temp = tempfile::tempdir()
            .map_err(|e| Error::failed(format!("cannot make a temporary folder: {e}")))?;
        // Into a static site, only the files `$web` does not serve already are fetched.
        let site =
            crate::deploy::site_account(settings, outputs).map(|account_url| super::SiteTarget {
                account_url,
                options: crate::deploy::site_options(settings),
            });
        let fetched = store
            .materialise(release.hex(), temp.path(), site.as_ref())
            .await?;
        let shipment = crate::deploy::slot::ship(
            settings,
            env,
            &fetched.path,
            outputs,
            fetched.baseline,
            Some(&release.digest),
        )
        .await;
        (shipment, None)
    };
    let (deployed, health) = (shipment.deployed, shipment.health);
    let ok = matches!(deployed, Ok(Some(_)));
    let verdict = super::verdict(ok, health.as_ref().map(Result::is_ok));
    let record = NewRecord {
        digest: release.digest.clone(),
        commit: release.commit.clone(),
        target: release.target.clone(),
        verdict,
        action: action.to_string(),
        went_live: shipment.went_live,
        size: release.size,
        image,
    };
    if let Err(e) = store.record(env, &record).await {
        tracing::warn!("the release could not be recorded: {e}");
    }
    let done = Redeployed {
        verdict,
        went_live: shipment.went_live,
        by_slot_swap,
    };
    match deployed {
        Err(e) => Err(e.context(format!("redeploy of release {}", release.id))),
        Ok(None) => Err(Error::input(format!(
            "`{env}` has no deploy target: release {} was not deployed",
            release.id
        ))
        .hint("set [deploy] target, or output static_site_account_url / scm_url")),
        Ok(Some(d)) => {
            tracing::info!("release {} deployed: {}", release.id, d.detail);
            if let Some(Err(e)) = health {
                tracing::warn!("{e}");
            }
            Ok(done)
        }
    }
}
