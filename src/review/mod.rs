//! The review loop on GitHub: the plan comment on pull requests into `env-*`
//! ([`comment`]), the reviewed-plan guarantee ([`check`], with the digests of [`digest`]
//! kept as [`record`]s) and GitHub Deployments ([`deployments`]).
//!
//! Everything that talks to GitHub's API runs only in GitHub Actions (`GITHUB_ACTIONS`)
//! with a token (`GITHUB_TOKEN`/`GH_TOKEN`) and `GITHUB_REPOSITORY`; from a shell, or
//! without a token, it is skipped silently (the pipeline itself does not need GitHub).
//! Its failures are warnings naming the missing `permissions:` entry: a comment or a
//! deployment status never fails or rolls back the infrastructure.
//!
//! The reviewed-plan check is different: it decides whether to apply at all, so where it
//! is required (`require_reviewed_plan`) and nubes runs in Actions, a plan it cannot match
//! to a reviewed one is refused (exit 1) unless `--accept-unreviewed` is given.

pub mod comment;
pub mod deployments;
pub mod digest;
pub mod record;

use serde_json::Value;

use crate::env_name::EnvName;
use crate::error::{Error, Result};
use crate::ghapi::Api;
use crate::pipeline::{Context, Session};
use crate::plan::PlanSummary;
use crate::state::meta;

/// What a command knows about review: the pull request it plans, and the override.
#[derive(Debug, Clone, Default)]
pub struct Review {
    /// Set when planning for a `pull_request` event.
    pub pull_request: Option<PullRequest>,
    /// `up --accept-unreviewed`: apply even without a matching reviewed plan (recorded).
    pub accept_unreviewed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    /// The head commit planned (`pull_request.head.sha`).
    pub head: String,
}

impl PullRequest {
    /// The pull request of a `pull_request` event payload (`number`, `pull_request.head.sha`).
    pub fn from_payload(payload: &Value) -> Option<PullRequest> {
        let number = payload
            .get("number")
            .or_else(|| payload.pointer("/pull_request/number"))
            .and_then(Value::as_u64)?;
        let head = payload
            .pointer("/pull_request/head/sha")
            .and_then(Value::as_str)
            .filter(|s| s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()))?;
        Some(PullRequest {
            number,
            head: head.to_ascii_lowercase(),
        })
    }
}

/// How an `up` stood with respect to review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Verdict {
    /// The environment does not require a reviewed plan, or nothing was applied.
    #[default]
    NotRequired,
    /// Required, but not checked: not running in GitHub Actions.
    Unchecked,
    /// The plan applied is the one reviewed on this pull request / commit.
    Reviewed { pr: Option<u64>, commit: String },
    /// Applied without a matching reviewed plan, by `--accept-unreviewed`: why it did not
    /// match.
    Accepted { why: String },
}

impl Verdict {
    /// A line for the job summary, when there is something to say.
    pub fn markdown(&self) -> Option<String> {
        match self {
            Verdict::NotRequired => None,
            Verdict::Unchecked => {
                Some("\nReviewed plan: **not checked** (outside GitHub Actions).\n".to_string())
            }
            Verdict::Reviewed { pr, commit } => Some(format!(
                "\nReviewed plan: the plan applied is the one reviewed on {}.\n",
                pr.map_or_else(
                    || format!("commit `{commit}`"),
                    |n| format!("pull request #{n} (commit `{commit}`)")
                )
            )),
            Verdict::Accepted { why } => Some(format!(
                "\n> [!WARNING]\n> **Unreviewed plan applied** (`--accept-unreviewed`): {}\n",
                why.replace('\n', " ")
            )),
        }
    }
}

/// Warn about a GitHub call that failed: on the terminal and as an annotation.
pub(crate) fn warn(ctx: &Context<'_>, what: &str, e: &dyn std::fmt::Display) {
    let text = format!("{what}: {e}");
    tracing::warn!("{text}");
    ctx.gh.warning(&text);
}

/// The API client, when nubes runs in Actions with a token and a repository.
pub(crate) fn api(ctx: &Context<'_>) -> Option<Api> {
    if !ctx.gh.active {
        return None;
    }
    match Api::from_env_if_configured() {
        Ok(api) => api,
        Err(e) => {
            warn(ctx, "GitHub's API is not usable", &e);
            None
        }
    }
}

/// The Actions run's page, when running in Actions.
pub fn run_url() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if !crate::ui::in_github_actions() {
        return None;
    }
    Some(format!(
        "{}/{}/actions/runs/{}",
        var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into()),
        var("GITHUB_REPOSITORY")?,
        var("GITHUB_RUN_ID")?
    ))
}

/// After a pull request's plan: create or edit its comment (`[github] comment`).
/// Failures are warnings.
pub async fn post_plan_comment(
    ctx: &Context<'_>,
    env: &EnvName,
    summary: &PlanSummary,
    show: &[u8],
) {
    use crate::config::CommentMode;
    let Some(pr) = &ctx.review.pull_request else {
        return;
    };
    if ctx.settings.comment == CommentMode::Never {
        return;
    }
    let Some(api) = api(ctx) else {
        return;
    };
    let run = run_url();
    let body = comment::render(
        env,
        summary,
        show,
        &comment::Footer {
            commit: Some(&pr.head),
            run_url: run.as_deref(),
        },
    );
    let marker = comment::marker(env);
    let result = async {
        let existing = api
            .pull_request_comments(pr.number)
            .await?
            .into_iter()
            .find(|c| {
                c.body
                    .as_deref()
                    .is_some_and(|b| b.trim_end().ends_with(&marker))
            });
        match existing {
            Some(c) => api
                .update_comment(c.id, &body)
                .await
                .map(|c| Some(c.html_url)),
            None if summary.has_changes() || ctx.settings.comment == CommentMode::Always => api
                .create_pull_request_comment(pr.number, &body)
                .await
                .map(|c| Some(c.html_url)),
            None => Ok(None),
        }
    }
    .await;
    match result {
        Ok(Some(url)) => tracing::info!("plan comment: {url}"),
        Ok(None) => {}
        Err(e) => warn(ctx, "the plan comment was not posted", &e),
    }
}

/// The metadata entry recording a pull request's plan as reviewed (`None` when the
/// environment does not require reviewed plans or this is not a pull request's plan).
pub async fn record_entry(
    ctx: &Context<'_>,
    s: &Session,
    summary: &PlanSummary,
    show: &[u8],
) -> Result<Option<(&'static str, String)>> {
    let env = &s.locked.env;
    let Some(pr) = &ctx.review.pull_request else {
        return Ok(None);
    };
    if !ctx.settings.requires_reviewed_plan(env) {
        return Ok(None);
    }
    let existing = s.locked.store.read_meta(env).await?;
    let entry = record::Reviewed {
        commit: pr.head.clone(),
        digest: digest::of_show_json(show)?,
        pr: Some(pr.number),
        serial: current_serial(s).await?,
        counts: [
            summary.add,
            summary.change,
            summary.destroy,
            summary.replace,
        ],
        at: crate::clock::now_rfc3339(),
    };
    let list = record::parse(
        existing
            .as_ref()
            .and_then(|m| m.get(meta::REVIEWED))
            .map(String::as_str),
    );
    tracing::info!(
        "recorded this plan of `{env}` as reviewed on pull request #{} (commit {})",
        pr.number,
        pr.head
    );
    Ok(Some((meta::REVIEWED, record::add(list, entry))))
}

async fn current_serial(s: &Session) -> Result<u64> {
    Ok(s.locked
        .store
        .read(&s.locked.env)
        .await?
        .and_then(|stored| crate::state::StateHead::parse(&stored.bytes).ok())
        .map_or(0, |h| h.serial))
}

/// Whether `up` must check the plan against a reviewed one before applying.
pub fn required(ctx: &Context<'_>, env: &EnvName) -> bool {
    ctx.settings.requires_reviewed_plan(env)
}

/// Before applying the saved plan of a `require_reviewed_plan` environment: find the
/// reviewed plan of the commit being applied (the commit itself, its merged parents, or
/// the merged pull request GitHub associates with it) and compare digests.
pub async fn check(
    ctx: &Context<'_>,
    s: &Session,
    summary: &PlanSummary,
    show: &[u8],
) -> Result<Verdict> {
    let env = &s.locked.env;
    if !ctx.gh.active {
        tracing::warn!(
            "`{env}` requires a reviewed plan; that is checked only in GitHub Actions, so this run applies its own plan"
        );
        return Ok(Verdict::Unchecked);
    }
    let now = digest::of_show_json(show)?;
    let stored = s.locked.store.read_meta(env).await?;
    let records = record::parse(
        stored
            .as_ref()
            .and_then(|m| m.get(meta::REVIEWED))
            .map(String::as_str),
    );
    let candidates = candidates(ctx, env).await;
    let found = candidates.iter().find_map(|(commit, pr)| {
        records
            .iter()
            .find(|r| &r.commit == commit)
            .map(|r| (r, pr.or(r.pr)))
    });
    let counts = [
        summary.add,
        summary.change,
        summary.destroy,
        summary.replace,
    ];
    let current = record::Reviewed {
        commit: String::new(),
        digest: now.clone(),
        pr: None,
        serial: current_serial(s).await?,
        counts,
        at: String::new(),
    };
    let applying = ctx.origin.commit.as_deref().unwrap_or("(unknown commit)");
    let why = match found {
        Some((r, pr)) if r.digest == now => {
            tracing::info!(
                "the plan of `{env}` is the one reviewed on {}",
                pr.map_or_else(
                    || format!("commit {}", r.commit),
                    |n| format!("pull request #{n}")
                )
            );
            return Ok(Verdict::Reviewed {
                pr,
                commit: r.commit.clone(),
            });
        }
        Some((r, pr)) => {
            let on = pr.map_or_else(
                || format!("commit {}", r.commit),
                |n| format!("pull request #{n} (commit {})", r.commit),
            );
            if r.serial != current.serial {
                format!(
                    "the plan differs from the one reviewed on {on}: the state of `{env}` changed since \
                     the review (serial {} then, {} now: another apply in between); reviewed: {}; now: {}",
                    r.serial,
                    current.serial,
                    r.counts_text(),
                    current.counts_text()
                )
            } else {
                format!(
                    "the plan differs from the one reviewed on {on}: the merge brought other changes \
                     than the pull request's plan showed (the base branch moved since it was planned?); \
                     reviewed: {}; now: {}",
                    r.counts_text(),
                    current.counts_text()
                )
            }
        }
        None => format!(
            "no reviewed plan is recorded for commit {applying}{}: nothing shows that this plan ({}) was reviewed",
            match candidates.iter().filter_map(|(_, pr)| *pr).next() {
                Some(n) => format!(" (pull request #{n})"),
                None => " or a pull request it came from".into(),
            },
            current.counts_text()
        ),
    };
    if ctx.review.accept_unreviewed {
        let text = format!("applying an unreviewed plan of `{env}` (--accept-unreviewed): {why}");
        tracing::warn!("{text}");
        ctx.gh.warning(&text);
        return Ok(Verdict::Accepted { why });
    }
    let branch = env.branch(&ctx.settings.branch_prefix);
    Err(Error::failed(format!("`{env}` requires a reviewed plan and was not applied: {why}")).hint(format!(
        "get a fresh reviewed plan: open a pull request into `{branch}` (an empty commit will do), let \
         nubes plan it, review the comment and merge it; or, to apply this plan anyway, run the \
         workflow by hand with `up {env} --accept-unreviewed` (recorded in the deployment and the summary)"
    )))
}

/// The commits whose reviewed plan the applied commit may carry, with their pull request
/// when known: the commit itself (a fast-forward merge), the other parents of a merge
/// commit (a deep enough checkout), and the head of the merged pull request into the
/// env's branch that GitHub associates with it (squash and rebase merges).
async fn candidates(ctx: &Context<'_>, env: &EnvName) -> Vec<(String, Option<u64>)> {
    let Some(commit) = ctx.origin.commit.clone() else {
        return Vec::new();
    };
    let mut out = vec![(commit.clone(), None)];
    if let Ok(repo) = git2::Repository::discover(&ctx.settings.root)
        && let Ok(oid) = git2::Oid::from_str(&commit)
        && let Ok(c) = repo.find_commit(oid)
    {
        for parent in c.parent_ids().skip(1) {
            out.push((parent.to_string(), None));
        }
    }
    if let Some(api) = api(ctx) {
        let branch = env.branch(&ctx.settings.branch_prefix);
        match api.pulls_of_commit(&commit).await {
            Ok(pulls) => {
                for p in pulls
                    .into_iter()
                    .filter(|p| p.base.name == branch && p.merged_at.is_some())
                {
                    out.push((p.head.sha.to_ascii_lowercase(), Some(p.number)));
                }
            }
            Err(e) => warn(ctx, "cannot ask GitHub which pull request was merged", &e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pull_request_comes_from_the_payload() {
        let sha = "a".repeat(40);
        let p = serde_json::json!({"number": 7, "pull_request": {"head": {"sha": sha}}});
        assert_eq!(
            PullRequest::from_payload(&p),
            Some(PullRequest {
                number: 7,
                head: sha
            })
        );
        let bad = serde_json::json!({"number": 7, "pull_request": {"head": {"sha": "main"}}});
        assert_eq!(PullRequest::from_payload(&bad), None);
    }
}
