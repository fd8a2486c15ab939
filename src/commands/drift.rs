//! `nubes drift [<env>...]`: plan every (or the named) environment, a few at a time, and
//! report which would change. Never applies. Each plan takes the env's lock like any
//! other command, so drift never races an apply and never breaks a lock.

use futures::StreamExt;
use serde_json::{Value, json};

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result, exit};
use crate::github::Github;
use crate::pipeline::{self, Context};
use crate::plan::PlanSummary;
use crate::state;

struct Checked {
    env: EnvName,
    result: Result<PlanSummary>,
}

pub async fn run(
    settings: &Settings,
    names: &[String],
    jobs: usize,
    json_out: bool,
    markdown: bool,
    issue: bool,
) -> Result<()> {
    // Checked before any plan: a missing token is a usage error (exit 2).
    let api = issue
        .then(|| crate::ghapi::Api::from_env("`drift --issue`"))
        .transpose()?;
    let envs = targets(settings, names).await?;
    if envs.is_empty() {
        crate::outln!("no environments to check");
        return Ok(());
    }
    let gh = Github::from_env();
    let jobs = jobs.clamp(1, 16);
    tracing::info!(
        "checking {} environments for drift, {jobs} at a time",
        envs.len()
    );
    let mut checked: Vec<Checked> = futures::stream::iter(envs)
        .map(|env| {
            let gh = gh.clone();
            async move {
                let ctx = Context::quiet_for(settings, gh, &env);
                let result = pipeline::plan(&ctx, &env).await;
                Checked { env, result }
            }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    checked.sort_by(|a, b| a.env.cmp(&b.env));
    report(&gh, &checked, json_out, markdown)?;
    if let Some(api) = &api {
        issues_on_github(settings, &gh, api, &checked, names.is_empty()).await?;
    }
    // Failures first (the check is incomplete), then lock timeouts, then drift.
    let code = if checked.iter().any(|c| {
        c.result
            .as_ref()
            .is_err_and(|e| e.exit_code() != exit::LOCKED)
    }) {
        exit::FAILED
    } else if checked.iter().any(|c| c.result.is_err()) {
        exit::LOCKED
    } else if checked
        .iter()
        .any(|c| c.result.as_ref().is_ok_and(PlanSummary::has_changes))
    {
        exit::CHANGES
    } else {
        exit::OK
    };
    if code == exit::OK {
        Ok(())
    } else {
        Err(Error::Quiet(code))
    }
}

async fn targets(settings: &Settings, names: &[String]) -> Result<Vec<EnvName>> {
    if !names.is_empty() {
        return names.iter().map(|n| settings.env_name(n)).collect();
    }
    let store = state::open(settings)?;
    let mut envs: Vec<EnvName> = store
        .list()
        .await?
        .into_iter()
        .filter(|l| !l.tombstone)
        .filter_map(|l| l.env)
        .collect();
    envs.sort();
    envs.dedup();
    Ok(envs)
}

fn report(gh: &Github, checked: &[Checked], json_out: bool, markdown: bool) -> Result<()> {
    let drifted = checked
        .iter()
        .filter(|c| c.result.as_ref().is_ok_and(PlanSummary::has_changes))
        .count();
    let failed = checked.iter().filter(|c| c.result.is_err()).count();
    if json_out {
        let rows: Vec<Value> = checked
            .iter()
            .map(|c| match &c.result {
                Ok(s) => json!({ "environment": c.env.as_str(), "drifted": s.has_changes(), "summary": s }),
                Err(e) => json!({ "environment": c.env.as_str(), "drifted": null,
                                  "error": crate::secrets::redact(&e.to_string()), "exit_code": e.exit_code() }),
            })
            .collect();
        let doc = json!({ "checked": checked.len(), "drifted": drifted, "failed": failed, "environments": rows });
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if markdown {
        crate::out!("{}", markdown_report(checked, drifted, failed));
    } else {
        for c in checked {
            match &c.result {
                Ok(s) if s.has_changes() => {
                    crate::outln!("{}: DRIFTED ({})", c.env, s.counts());
                    for r in &s.resources {
                        crate::outln!("    {:?} {}", r.action, r.address);
                    }
                }
                Ok(_) => crate::outln!("{}: no drift", c.env),
                Err(e) => crate::outln!(
                    "{}: not checked: {}",
                    c.env,
                    crate::secrets::redact(&e.to_string())
                ),
            }
        }
        crate::outln!(
            "{} checked, {drifted} drifted, {failed} not checked",
            checked.len()
        );
    }
    gh.summary(&markdown_report(checked, drifted, failed))
}

fn markdown_report(checked: &[Checked], drifted: usize, failed: usize) -> String {
    let mut md = format!(
        "### nubes drift\n\n{} checked, **{drifted} drifted**, {failed} not checked.\n\n",
        checked.len()
    );
    md.push_str("| environment | verdict | changes |\n|---|---|---|\n");
    for c in checked {
        let (verdict, detail) = match &c.result {
            Ok(s) if s.has_changes() => (
                "drifted".to_string(),
                s.resources
                    .iter()
                    .map(|r| format!("{:?} `{}`", r.action, r.address))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            ),
            Ok(_) => ("no drift".to_string(), String::new()),
            Err(e) => (
                "not checked".to_string(),
                crate::secrets::redact(&e.to_string())
                    .replace('|', "\\|")
                    .replace('\n', " "),
            ),
        };
        md.push_str(&format!("| `{}` | {verdict} | {detail} |\n", c.env));
    }
    md
}

/// `--issue`: hand each environment's verdict and report to `drift_issues::sync`. GitHub
/// failures are warnings (in the log and the job summary), never the command's result.
async fn issues_on_github(
    settings: &Settings,
    gh: &Github,
    api: &crate::ghapi::Api,
    checked: &[Checked],
    complete: bool,
) -> Result<()> {
    use super::drift_issues::{self, EnvDrift, Judged};
    let reports: Vec<String> = checked
        .iter()
        .map(|c| match &c.result {
            Ok(s) if s.has_changes() => {
                let mut md = format!("{}\n\n| resource | action |\n|---|---|\n", s.counts());
                for r in &s.resources {
                    md.push_str(&format!("| `{}` | {:?} |\n", r.address, r.action));
                }
                md
            }
            _ => String::new(),
        })
        .collect();
    let envs: Vec<EnvDrift> = checked
        .iter()
        .zip(&reports)
        .map(|(c, report)| EnvDrift {
            env: &c.env,
            judged: match &c.result {
                Ok(s) if s.has_changes() => Judged::Drifted,
                Ok(_) => Judged::Clean,
                Err(_) => Judged::NotJudged,
            },
            report,
        })
        .collect();
    let run = crate::state::lockinfo::run_info();
    let options = drift_issues::Options {
        // Only a check of every environment may close the issues of vanished ones, and
        // only when none failed to be listed or checked.
        complete: complete && checked.iter().all(|c| c.result.is_ok()),
        run_url: run.starts_with("http").then_some(run),
        branch_prefix: settings.branch_prefix.clone(),
    };
    let lines: Vec<String> = match drift_issues::sync(api, &envs, &options).await {
        Ok(outcomes) => outcomes
            .iter()
            .map(|o| {
                if o.result.is_err() {
                    tracing::warn!("{}", o.describe());
                } else {
                    tracing::info!("{}", o.describe());
                }
                o.describe()
            })
            .collect(),
        Err(e) => {
            let e: Error = e.into();
            let text = crate::secrets::redact(&format!(
                "drift issues were not updated: {e}{}",
                e.hint_text().map(|h| format!(" ({h})")).unwrap_or_default()
            ));
            tracing::warn!("{text}");
            vec![text]
        }
    };
    if lines.is_empty() {
        return Ok(());
    }
    let mut md = String::from("\n#### Drift issues\n\n");
    for line in lines {
        md.push_str(&format!("- {}\n", line.replace('\n', " ")));
    }
    gh.summary(&md)
}
