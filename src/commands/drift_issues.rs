//! `nubes drift --issue`: one GitHub issue per drifted environment, kept in step with the
//! drift checks.
//!
//! * A drifted environment without an open issue gets one (label [`LABEL`]); with one,
//!   its body is replaced when the report changed, and left alone when it did not (no
//!   edit, no notification).
//! * A clean environment's open issue gets a comment and is closed (`completed`).
//! * An environment that could not be judged (check failed, no branch) keeps its issue.
//! * When every environment was checked (`complete`), an open issue for an environment
//!   that no longer exists is closed (`not_planned`) with a comment.
//! * Two open issues for one environment (a retried create, a copied issue) are merged:
//!   the oldest is kept, the others are closed as duplicates.
//!
//! Issues are found by listing the open issues labelled [`LABEL`] and reading the hidden
//! marker on the first line of their body (`<!-- nubes-drift env=alice digest=… -->`),
//! which names the environment and a digest of the report it shows. Removing the label
//! detaches an issue from nubes (the next drift opens a new one).
//!
//! GitHub failures never fail the drift check: every environment gets an [`Outcome`],
//! and the caller reports failures as warnings.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::env_name::EnvName;
use crate::ghapi::issues::{CloseReason, Issue};
use crate::ghapi::{Api, ApiError};

/// The label every drift issue carries.
pub const LABEL: &str = "nubes-drift";
/// GitHub refuses issue bodies over 65,536 characters; the report is cut well before.
const BODY_LIMIT: usize = 60_000;

/// What the drift check concluded for one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Changes made outside Terraform: the environment needs an issue.
    Drifted,
    /// No drift (pending configuration is not drift): its issue, if any, is closed.
    Clean,
    /// Not judged (the check failed, no branch): its issue, if any, is left as it is.
    NotJudged,
}

/// One environment's verdict and its Markdown report (shown in the issue).
#[derive(Debug, Clone)]
pub struct EnvDrift<'a> {
    pub env: &'a EnvName,
    pub judged: Judged,
    pub report: &'a str,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Every environment in the state storage was checked: an open issue for any other
    /// environment is about one that no longer exists.
    pub complete: bool,
    /// The workflow run, linked from the issue and the closing comment.
    pub run_url: Option<String>,
    /// The branch prefix, to name an environment's branch (`env-`).
    pub branch_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Opened,
    Updated,
    /// An open issue already shows this report.
    Unchanged,
    /// The environment is clean again.
    Closed,
    /// The environment no longer exists.
    ClosedGone,
    /// A second open issue for the same environment.
    ClosedDuplicate,
}

impl Action {
    pub fn describe(self) -> &'static str {
        match self {
            Action::Opened => "opened",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Closed => "closed (clean again)",
            Action::ClosedGone => "closed (environment gone)",
            Action::ClosedDuplicate => "closed (duplicate)",
        }
    }
}

/// What happened to one environment's issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The environment's name (as the marker had it, for a gone environment).
    pub env: String,
    /// The issue concerned, when there is one.
    pub issue: Option<(u64, String)>,
    /// What was done, or why it failed (already redacted, printable).
    pub result: Result<Action, String>,
}

impl Outcome {
    /// One line for the terminal and the job summary.
    pub fn describe(&self) -> String {
        let issue = match &self.issue {
            Some((n, url)) => format!(" #{n} {url}"),
            None => String::new(),
        };
        match &self.result {
            Ok(a) => format!("drift issue for {}: {}{issue}", self.env, a.describe()),
            Err(e) => format!("drift issue for {}: failed{issue}: {e}", self.env),
        }
    }
}

/// The marker on an issue body's first line: environment and report digest.
fn marker(env: &str, digest: &str) -> String {
    format!("<!-- nubes-drift env={env} digest={digest} -->")
}

fn parse_marker(body: &str) -> Option<(EnvName, String)> {
    let line = body.lines().next()?.trim();
    let inner = line
        .strip_prefix("<!-- nubes-drift ")?
        .strip_suffix(" -->")?;
    let mut env = None;
    let mut digest = String::new();
    for part in inner.split_whitespace() {
        if let Some(v) = part.strip_prefix("env=") {
            env = EnvName::parse(v, "").ok();
        } else if let Some(v) = part.strip_prefix("digest=") {
            digest = v.to_string();
        }
    }
    Some((env?, digest))
}

fn digest(report: &str) -> String {
    let hash = Sha256::digest(report.as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn now_text() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

fn run_link(o: &Options) -> String {
    match &o.run_url {
        Some(url) => format!(" ([run]({url}))"),
        None => String::new(),
    }
}

pub fn title(env: &EnvName) -> String {
    format!("Drift in environment {env}")
}

/// The issue body: marker, what happened, the report (cut to fit), how it is maintained.
pub fn body(env: &EnvName, report: &str, o: &Options) -> String {
    let branch = env.branch(&o.branch_prefix);
    let mut shown = report.trim_end();
    let mut cut_note = "";
    if shown.len() > BODY_LIMIT {
        let mut cut = BODY_LIMIT;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        cut = shown[..cut].rfind('\n').unwrap_or(cut);
        shown = &shown[..cut];
        cut_note = "\n\n> **Cut**: the report is longer than an issue can hold; the run's job summary has all of it.";
    }
    format!(
        "{}\n### Environment `{env}` has drifted\n\n\
         nubes found changes made outside Terraform: the environment's resources no longer \
         match what branch `{branch}` applied.\n\n\
         {shown}{cut_note}\n\n---\n\
         <sub>Kept up to date by `nubes drift --issue`: last changed {}{}. It is closed when \
         the environment is clean again. To correct the drift, apply the environment again \
         from `{branch}`, or change the configuration there to match.</sub>\n",
        marker(env.as_str(), &digest(report)),
        now_text(),
        run_link(o),
    )
}

fn failed(e: ApiError) -> String {
    crate::secrets::redact(&e.to_string())
}

/// Bring the issues in line with `envs` (see the module doc). An error only when the
/// open issues could not be listed (then nothing was changed); otherwise one outcome per
/// issue touched or environment needing one, failures included.
pub async fn sync(api: &Api, envs: &[EnvDrift<'_>], o: &Options) -> Result<Vec<Outcome>, ApiError> {
    let mut open: BTreeMap<EnvName, Vec<(Issue, String)>> = BTreeMap::new();
    for issue in api.open_issues_labelled(LABEL).await? {
        if let Some((env, digest)) = issue.body.as_deref().and_then(parse_marker) {
            open.entry(env).or_default().push((issue, digest));
        }
    }
    for list in open.values_mut() {
        list.sort_by_key(|(i, _)| i.number);
    }
    let mut outcomes = Vec::new();
    let mut seen = BTreeSet::new();
    for e in envs {
        seen.insert(e.env.clone());
        let existing = open.remove(e.env).unwrap_or_default();
        match e.judged {
            Judged::Drifted => drifted(api, e, existing, o, &mut outcomes).await,
            Judged::Clean => {
                for (issue, _) in existing {
                    let text = format!(
                        "Environment `{}` is clean again: `nubes drift` found no drift on {}{}. Closing.",
                        e.env,
                        now_text(),
                        run_link(o)
                    );
                    outcomes.push(
                        close(
                            api,
                            e.env.as_str(),
                            issue,
                            &text,
                            CloseReason::Completed,
                            Action::Closed,
                        )
                        .await,
                    );
                }
            }
            Judged::NotJudged => {}
        }
    }
    if o.complete {
        for (env, issues) in open {
            if seen.contains(&env) {
                continue;
            }
            for (issue, _) in issues {
                let text = format!(
                    "Environment `{env}` no longer exists in the state storage (checked {}{}). Closing.",
                    now_text(),
                    run_link(o)
                );
                outcomes.push(
                    close(
                        api,
                        env.as_str(),
                        issue,
                        &text,
                        CloseReason::NotPlanned,
                        Action::ClosedGone,
                    )
                    .await,
                );
            }
        }
    }
    Ok(outcomes)
}

async fn drifted(
    api: &Api,
    e: &EnvDrift<'_>,
    existing: Vec<(Issue, String)>,
    o: &Options,
    outcomes: &mut Vec<Outcome>,
) {
    let env = e.env.as_str().to_string();
    let mut existing = existing.into_iter();
    let outcome = match existing.next() {
        Some((issue, old_digest)) if old_digest == digest(e.report) => Outcome {
            env: env.clone(),
            issue: Some((issue.number, issue.html_url)),
            result: Ok(Action::Unchanged),
        },
        Some((issue, _)) => {
            let result = api
                .edit_issue(issue.number, &title(e.env), &body(e.env, e.report, o))
                .await
                .map(|_| Action::Updated)
                .map_err(failed);
            Outcome {
                env: env.clone(),
                issue: Some((issue.number, issue.html_url)),
                result,
            }
        }
        None => match api
            .create_issue(&title(e.env), &body(e.env, e.report, o), &[LABEL])
            .await
        {
            Ok(issue) => Outcome {
                env: env.clone(),
                issue: Some((issue.number, issue.html_url)),
                result: Ok(Action::Opened),
            },
            Err(err) => Outcome {
                env: env.clone(),
                issue: None,
                result: Err(failed(err)),
            },
        },
    };
    let kept = outcome.issue.as_ref().map(|(n, _)| *n);
    outcomes.push(outcome);
    for (dup, _) in existing {
        let text = match kept {
            Some(n) => {
                format!("Duplicate of #{n}: nubes keeps one drift issue per environment. Closing.")
            }
            None => "Duplicate: nubes keeps one drift issue per environment. Closing.".to_string(),
        };
        outcomes.push(
            close(
                api,
                &env,
                dup,
                &text,
                CloseReason::NotPlanned,
                Action::ClosedDuplicate,
            )
            .await,
        );
    }
}

/// Comment, then close: the comment says why, and lands before the close event.
async fn close(
    api: &Api,
    env: &str,
    issue: Issue,
    text: &str,
    reason: CloseReason,
    action: Action,
) -> Outcome {
    let result = match api.comment_on_issue(issue.number, text).await {
        Ok(_) => api.close_issue(issue.number, reason).await.map(|_| action),
        Err(e) => Err(e),
    };
    Outcome {
        env: env.to_string(),
        issue: Some((issue.number, issue.html_url)),
        result: result.map_err(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_round_trips_and_foreign_bodies_are_ignored() {
        let env = EnvName::parse("alice", "env-").expect("name");
        let o = Options {
            branch_prefix: "env-".into(),
            ..Options::default()
        };
        let b = body(&env, "| r | a |\n", &o);
        let (parsed, d) = parse_marker(&b).expect("marker");
        assert_eq!(parsed, env);
        assert_eq!(d, digest("| r | a |\n"));
        assert!(b.contains("`env-alice`"), "{b}");
        for foreign in [
            "",
            "text <!-- nubes-drift env=alice digest=x -->",
            "<!-- nubes-drift env=Alice_1 digest=x -->",
            "<!-- nubes-drift digest=x -->",
        ] {
            assert_eq!(parse_marker(foreign), None, "{foreign}");
        }
        let long = "| `r` | update |\n".repeat(10_000);
        let b = body(&env, &long, &o);
        assert!(b.len() < 65_536 && b.contains("**Cut**"), "{}", b.len());
    }
}
