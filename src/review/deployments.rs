//! GitHub Deployments for `up` and `down`: `up` creates a deployment of the commit to
//! the GitHub environment `env-<name>` (transient; production for protected
//! environments), marks it `in_progress`, then `success` with `environment_url` (the
//! `application_url` output) and `log_url` (the run), or `failure`; `down` marks the
//! environment's deployments `inactive` (GitHub then shows it as destroyed). The pull
//! request and the repository's Environments page show "View deployment".
//!
//! Runs only in GitHub Actions with a token and `GITHUB_REPOSITORY` (see the module doc
//! of [`super`]); every failure is a warning: the infrastructure stages never depend on
//! GitHub answering.

use serde_json::json;

use super::{Verdict, api, run_url, warn};
use crate::env_name::EnvName;
use crate::ghapi::Api;
use crate::ghapi::deployments::{DeploymentState, NewDeployment};
use crate::pipeline::Context;

/// A deployment being reported.
pub struct Deployment {
    api: Api,
    id: u64,
}

/// Before `up` starts: create the deployment and mark it in progress. `None` when not in
/// Actions, without a token or commit, or when GitHub refused (warned).
pub async fn start(ctx: &Context<'_>, env: &EnvName) -> Option<Deployment> {
    let api = api(ctx)?;
    let sha = ctx.origin.commit.as_deref()?;
    let environment = env.branch(&ctx.settings.branch_prefix);
    let accepted = ctx.review.accept_unreviewed;
    let description = if accepted {
        format!("nubes up {env} (--accept-unreviewed)")
    } else {
        format!("nubes up {env}")
    };
    let created = api
        .create_deployment(&NewDeployment {
            sha,
            environment: &environment,
            description: &description,
            production: ctx.settings.protected(env),
            payload: json!({ "nubes": { "environment": env.as_str(), "accept_unreviewed": accepted } }),
        })
        .await;
    let id = match created {
        Ok(id) => id,
        Err(e) => {
            warn(ctx, "no GitHub deployment was recorded", &e);
            return None;
        }
    };
    let run = run_url();
    if let Err(e) = api
        .deployment_status(
            id,
            DeploymentState::InProgress,
            "applying",
            None,
            run.as_deref(),
        )
        .await
    {
        warn(ctx, "the GitHub deployment's status was not set", &e);
    }
    Some(Deployment { api, id })
}

/// After `up`: `success` with the application's URL, or `failure`.
pub async fn finish(
    ctx: &Context<'_>,
    deployment: Option<Deployment>,
    outcome: Result<(Option<String>, &Verdict), ()>,
) {
    let Some(d) = deployment else {
        return;
    };
    let run = run_url();
    let result = match outcome {
        Ok((url, verdict)) => {
            let description = match verdict {
                Verdict::Accepted { .. } => "applied an unreviewed plan (--accept-unreviewed)",
                Verdict::Reviewed { .. } => "applied the reviewed plan",
                _ => "applied",
            };
            d.api
                .deployment_status(
                    d.id,
                    DeploymentState::Success,
                    description,
                    url.as_deref(),
                    run.as_deref(),
                )
                .await
        }
        Err(()) => {
            d.api
                .deployment_status(
                    d.id,
                    DeploymentState::Failure,
                    "nubes up failed; see the run",
                    None,
                    run.as_deref(),
                )
                .await
        }
    };
    if let Err(e) = result {
        warn(ctx, "the GitHub deployment's status was not set", &e);
    }
}

/// After `down`: every recent deployment to the environment becomes `inactive`.
pub async fn deactivate(ctx: &Context<'_>, env: &EnvName) {
    let Some(api) = api(ctx) else {
        return;
    };
    let environment = env.branch(&ctx.settings.branch_prefix);
    let run = run_url();
    let result = async {
        for id in api.deployments_to(&environment).await? {
            api.deployment_status(
                id,
                DeploymentState::Inactive,
                "environment torn down by nubes down",
                None,
                run.as_deref(),
            )
            .await?;
        }
        Ok::<_, crate::ghapi::ApiError>(())
    }
    .await;
    if let Err(e) = result {
        warn(ctx, "the GitHub deployments were not marked inactive", &e);
    }
}
