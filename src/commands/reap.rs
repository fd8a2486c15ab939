//! `nubes reap`: tear down environments whose `env-*` branch is gone from the remote
//! (`--gone-branches`) and/or that were not applied for longer than `--older-than`.
//! Protected environments are never touched; `--dry-run` only says what it would do and
//! why; one environment's failure does not stop the others.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result, exit};
use crate::github::Github;
use crate::pipeline::{self, Context, DownReport, Strategy};
use crate::state;

pub struct Options {
    pub gone_branches: bool,
    pub older_than: Option<Duration>,
    pub dry_run: bool,
    pub jobs: usize,
    pub json: bool,
}

enum Verdict {
    Keep(String),
    Reap(String),
}

pub async fn run(settings: &Settings, o: &Options) -> Result<()> {
    if !o.gone_branches && o.older_than.is_none() {
        return Err(Error::input("nothing selects environments to reap")
            .hint("pass --gone-branches, --older-than <duration> (e.g. 7d), or both"));
    }
    let store = state::open(settings)?;
    let listed: Vec<state::Listed> = store
        .list()
        .await?
        .into_iter()
        .filter(|l| !l.tombstone && l.env.is_some())
        .collect();
    let branches = if o.gone_branches {
        Some(remote_branches(settings).await?)
    } else {
        None
    };
    let now = time::OffsetDateTime::now_utc();
    let mut decisions: Vec<(EnvName, Verdict)> = Vec::new();
    for l in &listed {
        let Some(env) = l.env.clone() else { continue };
        let branch = env.branch(&settings.branch_prefix);
        let mut reasons = Vec::new();
        if let Some(branches) = &branches
            && !branches.contains(&branch)
        {
            reasons.push(format!("branch `{branch}` is gone from the remote"));
        }
        if let Some(limit) = o.older_than {
            let applied = l.metadata.get("nubesappliedat").and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            });
            if let Some(at) = applied {
                let age = now - at;
                if age.whole_seconds() > limit.as_secs() as i64 {
                    reasons.push(format!(
                        "last applied {} ago",
                        humantime::format_duration(Duration::from_secs(
                            age.whole_hours().max(0) as u64 * 3600
                        ))
                    ));
                }
            }
        }
        let verdict = if reasons.is_empty() {
            Verdict::Keep("still wanted".into())
        } else if settings.environment(&env).is_some_and(|e| e.protected) {
            Verdict::Keep(format!("protected ({})", reasons.join("; ")))
        } else {
            Verdict::Reap(reasons.join("; "))
        };
        decisions.push((env, verdict));
    }
    decisions.sort_by(|a, b| a.0.cmp(&b.0));

    let gh = Github::from_env();
    let to_reap: Vec<(EnvName, String)> = decisions
        .iter()
        .filter_map(|(e, v)| match v {
            Verdict::Reap(why) => Some((e.clone(), why.clone())),
            Verdict::Keep(_) => None,
        })
        .collect();
    let outcomes: Vec<(EnvName, String, Option<Result<DownReport>>)> = if o.dry_run {
        to_reap.into_iter().map(|(e, why)| (e, why, None)).collect()
    } else {
        futures::stream::iter(to_reap)
            .map(|(env, why)| {
                let gh = gh.clone();
                async move {
                    let ctx = Context::quiet_for(settings, gh, &env);
                    let result = pipeline::down(&ctx, &env, false, Strategy::Terraform).await;
                    (env, why, Some(result))
                }
            })
            .buffer_unordered(o.jobs.clamp(1, 16))
            .collect()
            .await
    };
    report(&gh, o, &decisions, &outcomes)?;
    if outcomes.iter().any(|(_, _, r)| matches!(r, Some(Err(_)))) {
        return Err(Error::Quiet(exit::FAILED));
    }
    Ok(())
}

fn report(
    gh: &Github,
    o: &Options,
    decisions: &[(EnvName, Verdict)],
    outcomes: &[(EnvName, String, Option<Result<DownReport>>)],
) -> Result<()> {
    let outcome_of = |env: &EnvName| outcomes.iter().find(|(e, _, _)| e == env);
    let mut rows = Vec::new();
    let mut md = format!(
        "### nubes reap{}\n\n| environment | action | why |\n|---|---|---|\n",
        if o.dry_run { " (dry run)" } else { "" }
    );
    for (env, verdict) in decisions {
        let (action, why) = match verdict {
            Verdict::Keep(why) => ("kept".to_string(), why.clone()),
            Verdict::Reap(why) => match outcome_of(env).and_then(|(_, _, r)| r.as_ref()) {
                None => ("would tear down".to_string(), why.clone()),
                Some(Ok(_)) => ("torn down".to_string(), why.clone()),
                Some(Err(e)) => (
                    format!("failed: {}", crate::secrets::redact(&e.to_string())),
                    why.clone(),
                ),
            },
        };
        if !o.json {
            crate::outln!("{env}: {action} ({why})");
        }
        md.push_str(&format!(
            "| `{env}` | {} | {} |\n",
            action.replace('|', "\\|").replace('\n', " "),
            why
        ));
        rows.push(json!({ "environment": env.as_str(), "action": action, "why": why }));
    }
    let reaped = outcomes
        .iter()
        .filter(|(_, _, r)| matches!(r, Some(Ok(_))))
        .count();
    let failed = outcomes
        .iter()
        .filter(|(_, _, r)| matches!(r, Some(Err(_))))
        .count();
    if o.json {
        let doc = json!({ "dry_run": o.dry_run, "torn_down": reaped, "failed": failed, "environments": Value::Array(rows) });
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if o.dry_run {
        crate::outln!(
            "dry run: {} would be torn down, nothing was changed",
            outcomes.len()
        );
    } else {
        crate::outln!(
            "{reaped} torn down, {failed} failed, {} kept",
            decisions.len() - outcomes.len()
        );
    }
    gh.summary(&md)
}

/// Branch names on the remote: from the GitHub API when a token and `GITHUB_REPOSITORY`
/// are set (as in Actions), else from `origin` with git2.
async fn remote_branches(settings: &Settings) -> Result<BTreeSet<String>> {
    if let Some(api) = crate::ghapi::Api::from_env_if_configured()? {
        return Ok(api.branch_names().await?);
    }
    let root = settings.root.clone();
    tokio::task::spawn_blocking(move || git_branches(&root))
        .await
        .map_err(|e| Error::failed(format!("listing remote branches failed: {e}")))?
}

fn git_branches(root: &std::path::Path) -> Result<BTreeSet<String>> {
    let repo = git2::Repository::discover(root).map_err(|e| {
        Error::input(format!(
            "--gone-branches needs a git repository: {}",
            e.message()
        ))
        .hint(
            "run nubes in the repository, or set GITHUB_TOKEN and GITHUB_REPOSITORY to ask GitHub",
        )
    })?;
    let mut remote = repo.find_remote("origin").map_err(|e| {
        Error::input(format!(
            "the repository has no remote `origin`: {}",
            e.message()
        ))
    })?;
    remote.connect(git2::Direction::Fetch).map_err(|e| {
        Error::failed(format!("cannot list the branches of `origin`: {}", e.message())).hint(
            "this build of nubes reaches local and file remotes through git; for GitHub, set GITHUB_TOKEN \
             and GITHUB_REPOSITORY (Actions does) so nubes asks GitHub's API",
        )
    })?;
    let heads = remote.list().map_err(|e| {
        Error::failed(format!(
            "cannot list the branches of `origin`: {}",
            e.message()
        ))
    })?;
    Ok(heads
        .iter()
        .filter_map(|h| h.name().strip_prefix("refs/heads/").map(str::to_string))
        .collect())
}
