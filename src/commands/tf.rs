//! `nubes tf <env> -- <args>`: any Terraform command against the env's remote state,
//! through the gateway, under the env lock.

use std::ffi::OsString;
use std::sync::Arc;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::state::{self, StateStore, lock};
use crate::{signals, terraform};

pub async fn run(settings: &Settings, env_arg: &str, args: &[OsString]) -> Result<()> {
    let env = settings.env_name(env_arg)?;
    let tf = terraform::locate(settings)?;
    let store: Arc<dyn StateStore> = state::open(settings)?;
    let sub = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let operation = format!("nubes tf {sub}");
    let held = lock::acquire(store.clone(), &env, &operation, settings.state.lock_timeout).await?;
    tracing::info!("holding the lock on `{env}` ({})", store.location(&env));

    let result = async {
        let origin = crate::app::origin(settings, &env);
        let dir = crate::render::render(settings, &env, &origin)?.dir;
        let gateway = Gateway::start(store.clone(), held.token().clone()).await?;
        let mut env_vars = gateway.terraform_env();
        env_vars.extend(crate::state::auth::terraform_env());
        if std::env::var_os("TF_IN_AUTOMATION").is_none() && crate::ui::is_ci() {
            env_vars.push(("TF_IN_AUTOMATION", "1".into()));
        }
        let outcome = terraform::run(
            &tf,
            &dir,
            args,
            &env_vars,
            &format!("terraform {sub} for env {env}"),
        )
        .await;
        let report = gateway.stop().await;
        let outcome = outcome?;
        if let Some(sig) = outcome.interrupted {
            return Err(Error::failed(format!(
                "interrupted by {}: Terraform stopped{}",
                sig.name(),
                if report.writes > 0 {
                    " after saving its state"
                } else {
                    ""
                }
            )));
        }
        if !report.problems.is_empty() && !outcome.status.success() {
            return Err(Error::failed(format!(
                "terraform {sub} for env {env} failed: {}",
                report.problems.join("; ")
            )));
        }
        if !outcome.status.success() {
            return Err(Error::ChildExit {
                what: format!("terraform {sub}"),
                code: outcome.code(),
            });
        }
        Ok(())
    }
    .await;

    let released = held.release().await;
    if signals::caught().is_some() && result.is_ok() {
        return Err(Error::failed("interrupted"));
    }
    result.and(released)
}
