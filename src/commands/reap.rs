//! `nubes reap`: tear down environments whose `env-*` branch is gone from the remote
//! (`--gone-branches`), that are past their expiry (`--expired`: `[expiry]` rules and
//! `nubes keep` pins, judged by `expiry.rs`), or that saw no activity for longer than
//! `--older-than`; `--warn` lists what expires soon without tearing anything down.
//! Activity is every `up` (fast path included), deploy and health check, never just the
//! last apply. Protected environments are never touched, pinned ones are kept until
//! their date; `--dry-run` only says what it would do and why; one environment's
//! failure does not stop the others.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result, exit};
use crate::expiry;
use crate::github::Github;
use crate::pipeline::{self, Context, DownReport, Strategy};
use crate::state;

pub struct Options {
    pub gone_branches: bool,
    pub expired: bool,
    pub older_than: Option<Duration>,
    /// List what expires within this window (never tears down by itself).
    pub warn: Option<Duration>,
    pub dry_run: bool,
    pub jobs: usize,
    pub json: bool,
}

enum Verdict {
    Keep(String),
    Reap(String),
}

/// An environment that expires within the `--warn` window.
struct Expiring {
    env: EnvName,
    at: time::OffsetDateTime,
    why: String,
}

pub async fn run(settings: &Settings, o: &Options) -> Result<()> {
    if !o.gone_branches && !o.expired && o.older_than.is_none() && o.warn.is_none() {
        return Err(Error::input("nothing selects environments to reap").hint(
            "pass --expired, --gone-branches, --older-than <duration> (e.g. 7d), or --warn <duration> to only list what expires soon",
        ));
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
    let now = crate::clock::now();
    let mut decisions: Vec<(EnvName, Verdict)> = Vec::new();
    let mut expiring = Vec::new();
    for l in &listed {
        let Some(env) = l.env.clone() else { continue };
        let protected = settings.protected(&env);
        let judged = expiry::judge(
            &l.metadata,
            expiry::Blob {
                last_modified: l.last_modified,
                created: l.created,
                written_outside: l.changed_outside.is_some(),
            },
            settings.expiry(&env),
            protected,
        );
        let branch = env.branch(&settings.branch_prefix);
        let mut reasons = Vec::new();
        if let Some(branches) = &branches
            && !branches.contains(&branch)
        {
            reasons.push(format!("branch `{branch}` is gone from the remote"));
        }
        if o.expired && judged.expired(now) {
            reasons.push(format!("expired: {}", judged.why));
        }
        if let Some(limit) = o.older_than {
            match judged.last_activity {
                Some((at, source)) if (now - at).whole_seconds() > limit.as_secs() as i64 => {
                    reasons.push(format!(
                        "no activity for {} (last: {}, {})",
                        crate::clock::span(now - at),
                        crate::clock::format(at),
                        source.as_str()
                    ));
                }
                Some(_) => {}
                None => tracing::warn!(
                    "`{env}`: no activity recorded and no modification time, so --older-than cannot judge it"
                ),
            }
        }
        if let Some(window) = o.warn
            && judged.expires_within(now, window)
            && let Some(at) = judged.expires_at
        {
            expiring.push(Expiring {
                env: env.clone(),
                at,
                why: judged.why.clone(),
            });
        }
        let verdict = if reasons.is_empty() {
            Verdict::Keep(match judged.expires_at {
                Some(_) => format!("still wanted; expires {}", judged.expires_text(now)),
                None => format!("still wanted; {}", judged.why),
            })
        } else if protected {
            Verdict::Keep(format!("protected ({})", reasons.join("; ")))
        } else if judged.pinned(now) {
            Verdict::Keep(format!(
                "pinned by `nubes keep` until {} ({})",
                judged
                    .pinned_until
                    .map(crate::clock::format)
                    .unwrap_or_default(),
                reasons.join("; ")
            ))
        } else {
            Verdict::Reap(reasons.join("; "))
        };
        decisions.push((env, verdict));
    }
    decisions.sort_by(|a, b| a.0.cmp(&b.0));
    expiring.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.env.cmp(&b.env)));
    // --warn alone only warns: nothing else selected an environment for teardown.
    let warn_only = !o.gone_branches && !o.expired && o.older_than.is_none();

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
    report(&gh, o, &decisions, &outcomes, &expiring, warn_only, now)?;
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
    expiring: &[Expiring],
    warn_only: bool,
    now: time::OffsetDateTime,
) -> Result<()> {
    let outcome_of = |env: &EnvName| outcomes.iter().find(|(e, _, _)| e == env);
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    let mut md = String::new();
    if let Some(window) = o.warn {
        md.push_str(&format!(
            "### nubes: environments expiring within {}\n\n",
            humantime::format_duration(window)
        ));
        if expiring.is_empty() {
            md.push_str("None.\n\n");
        } else {
            md.push_str("| environment | expires | why |\n|---|---|---|\n");
        }
        for x in expiring {
            let when = format!("in {}", crate::clock::span(x.at - now));
            let keep = format!("nubes keep {} --until 7d", x.env);
            if !o.json {
                crate::outln!(
                    "{}: expires {when}, at {} ({}); to keep it: `{keep}`",
                    x.env,
                    crate::clock::format(x.at),
                    x.why
                );
            }
            gh.warning(&format!(
                "environment `{}` expires {when} ({}): push to its branch, or run `{keep}`",
                x.env,
                crate::clock::format(x.at)
            ));
            md.push_str(&format!(
                "| `{}` | {when} ({}) | {} |\n",
                x.env,
                crate::clock::format(x.at),
                x.why.replace('|', "\\|")
            ));
            warnings.push(json!({
                "environment": x.env.as_str(),
                "expires_at": crate::clock::format(x.at),
                "why": x.why,
            }));
        }
        if !o.json && expiring.is_empty() {
            crate::outln!(
                "no environment expires within {}",
                humantime::format_duration(window)
            );
        }
        md.push('\n');
    }
    if warn_only {
        if o.json {
            let doc = json!({ "dry_run": o.dry_run, "torn_down": 0, "failed": 0, "environments": [], "expiring": warnings });
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        return gh.summary(&md);
    }
    md.push_str(&format!(
        "### nubes reap{}\n\n| environment | action | why |\n|---|---|---|\n",
        if o.dry_run { " (dry run)" } else { "" }
    ));
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
        let doc = json!({ "dry_run": o.dry_run, "torn_down": reaped, "failed": failed, "environments": Value::Array(rows), "expiring": warnings });
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
