//! `nubes releases`, `nubes rollback` and `nubes promote`: the kept releases of an
//! environment (see `releases.rs`), and redeploying one of them without building.
//!
//! Promotion into a protected environment needs `--force`, or a run from that
//! environment's own branch (`env-<to>` checked out, or `GITHUB_REF` naming it): the
//! same people who may push to the branch may promote into it.

use crate::config::Settings;
use crate::env_name::EnvName;
use crate::error::{Error, Result};
use crate::pipeline::{self, Activity, Context, Locked};
use crate::releases::{self, Record, Releases, flow::ReleaseNote};

fn open(settings: &Settings) -> Result<Releases> {
    Releases::open(settings)?.ok_or_else(|| {
        Error::input("releases are kept only in Azure state storage; the local backend keeps none")
            .hint("set [state] account_url (or NUBES_STATE_ACCOUNT_URL) to your state storage account")
    })
}

/// `nubes releases <env> [--json]`.
pub async fn list(settings: &Settings, env: &str, json: bool) -> Result<()> {
    let env = settings.env_name(env)?;
    let store = open(settings)?;
    let records = store.records(&env).await?;
    if json {
        let mut doc = super::json::head("releases", Some(env.as_str()), true);
        doc.insert("releases".into(), serde_json::json!(records));
        super::json::print(doc);
        return Ok(());
    }
    if records.is_empty() {
        crate::outln!("`{env}` has no kept releases yet (each deploy keeps one)");
        return Ok(());
    }
    crate::outln!(
        "{:<4} {:<12}  {:<20}  {:<12}  {:<9}  {:<14}  ACTION",
        "",
        "RELEASE",
        "TIME",
        "COMMIT",
        "VERDICT",
        "TARGET"
    );
    for r in &records {
        crate::outln!(
            "{:<4} {:<12}  {:<20}  {:<12}  {:<9}  {:<14}  {}",
            if r.live { "live" } else { "" },
            r.id,
            r.at,
            r.commit.as_deref().map_or("-", |c| &c[..c.len().min(12)]),
            r.verdict,
            r.target,
            crate::env_name::printable(&r.action)
        );
    }
    Ok(())
}

/// Report a redeployed release on the terminal, in `$GITHUB_OUTPUT` and the summary.
/// How a rollback or promote ended, for the terminal (or `--json`), `$GITHUB_OUTPUT`
/// and the job summary. `doc` is the `--json` document (without the release), or
/// `None` for text.
fn report(
    ctx: &Context<'_>,
    env: &EnvName,
    what: &str,
    note: &ReleaseNote,
    verdict: &str,
    live: bool,
    doc: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<()> {
    let rolled_back = note.rolled_back_from.is_some() || what.starts_with("rollback");
    match doc {
        // An unhealthy verdict is a failure: its error object is the document.
        Some(mut doc) if verdict != "unhealthy" => {
            use serde_json::json;
            doc.insert(
                "release".into(),
                json!({ "id": note.id, "digest": note.digest }),
            );
            doc.insert("verdict".into(), json!(verdict));
            doc.insert("rolled_back".into(), json!(rolled_back));
            doc.insert("infrastructure".into(), json!("untouched"));
            super::json::print(doc);
        }
        Some(_) => {}
        None if !live => crate::outln!(
            "{what}: release {} ({}) was not put live in `{env}` ({verdict}): production keeps the release it served",
            note.id,
            note.digest
        ),
        None => {
            crate::outln!(
                "{what}: release {} ({}) is live in `{env}`, {verdict}",
                note.id,
                note.digest
            );
            crate::outln!(
                "infrastructure untouched: `nubes state history {env}` and `nubes state restore {env} <version>` bring back an earlier Terraform state"
            );
        }
    }
    ctx.gh.set_output("environment", env.as_str())?;
    note.set_outputs(&ctx.gh, rolled_back)?;
    ctx.gh.summary(&format!(
        "### nubes {what} `{env}`\n\nRelease `{}` (`{}`) deployed without a build; health: **{verdict}**.\n",
        note.id, note.digest
    ))
}

/// ` through slot `<slot>``, when the environment ships through one.
fn through_slot(settings: &Settings) -> String {
    settings
        .deploy
        .slot
        .as_deref()
        .map(|s| format!(" through slot `{s}`"))
        .unwrap_or_default()
}

/// `nubes rollback <env> [--to <release>]`: redeploy a kept release under the lock.
pub async fn rollback(
    ctx: &Context<'_>,
    env: &EnvName,
    to: Option<&str>,
    json: bool,
) -> Result<()> {
    let store = open(ctx.settings)?;
    let locked = Locked::acquire(ctx.settings, env, "nubes rollback").await?;
    let mut activity = Activity {
        action: Some("rollback".into()),
        ..Activity::default()
    };
    let result = async {
        let records = store.records(env).await?;
        let live = releases::live(&records).map(|r| r.hex().to_string());
        let release: Record = match to {
            Some(wanted) => releases::find(&records, wanted, env)?.clone(),
            None => releases::previous_healthy(&records, live.as_deref().unwrap_or(""))
                .cloned()
                .ok_or_else(|| {
                    Error::input(format!(
                        "`{env}` has no earlier healthy release to roll back to"
                    ))
                    .hint(format!(
                        "`nubes releases {env}` lists its kept releases; name one with --to"
                    ))
                })?,
        };
        let outputs = pipeline::stored_outputs(&*locked.store, env).await?;
        activity.app_url = pipeline::output_str(&outputs, "application_url");
        let done =
            releases::flow::redeploy(ctx.settings, &store, env, &outputs, &release, "rollback")
                .await;
        // A slot that was not swapped in (or was swapped back) left production's
        // release, and its record, as they were.
        if done.as_ref().is_ok_and(|d| d.went_live) || done.is_err() {
            activity.deploy = Some((
                release.target.clone(),
                Some(release.digest.clone()),
                done.is_ok(),
            ));
        }
        let done = done?;
        let verdict = done.verdict;
        activity.healthy = (verdict != "unchecked").then_some(verdict == "healthy");
        if let Err(e) = store.prune(ctx.settings.deploy.keep_releases).await {
            tracing::warn!("old releases could not be pruned: {e}");
        }
        Ok::<_, Error>((release, done))
    }
    .await;
    let ok = matches!(&result, Ok((_, d)) if d.verdict != "unhealthy");
    // The record names the rolled-back release's commit, not the checkout's.
    let record_ctx = Context {
        settings: ctx.settings,
        gh: ctx.gh.clone(),
        origin: crate::render::Origin {
            branch: ctx.origin.branch.clone(),
            commit: result.as_ref().ok().and_then(|(r, _)| r.commit.clone()),
        },
        actor: ctx.actor.clone(),
        quiet: ctx.quiet,
        review: Default::default(),
    };
    let record = activity.record(&record_ctx, ok);
    let released = locked.held.release_recording(&record).await;
    let (release, done) = result?;
    released?;
    let verdict = done.verdict;
    let note = ReleaseNote {
        id: release.id.clone(),
        digest: release.digest.clone(),
        rolled_back_from: None,
    };
    let doc = json.then(|| {
        let mut doc = super::json::head("rollback", Some(env.as_str()), true);
        doc.insert("to".into(), serde_json::json!(to));
        doc.insert("commit".into(), serde_json::json!(release.commit));
        doc.insert("target".into(), serde_json::json!(release.target));
        doc.insert("by_slot_swap".into(), serde_json::json!(done.by_slot_swap));
        doc
    });
    report(ctx, env, "rollback", &note, verdict, done.went_live, doc)?;
    if verdict == "unhealthy" && !done.went_live {
        return Err(Error::failed(format!(
            "release {} failed its health check{} and was not put live: production keeps the release it served",
            release.id,
            through_slot(ctx.settings)
        ))
        .hint(format!(
            "see the verdicts above; `nubes releases {env}` lists other releases to roll back to"
        )));
    }
    if verdict == "unhealthy" {
        return Err(Error::failed(format!(
            "release {} is live in `{env}` but failed its health check",
            release.id
        ))
        .hint(format!(
            "`nubes releases {env}` lists other releases to roll back to"
        )));
    }
    Ok(())
}

/// Whether this run comes from `env`'s own branch (checked out, or GitHub's ref).
fn on_branch(settings: &Settings, env: &EnvName) -> bool {
    let branch = env.branch(&settings.branch_prefix);
    let github = std::env::var("GITHUB_REF")
        .ok()
        .is_some_and(|r| r == format!("refs/heads/{branch}"));
    let head = crate::git::head(&settings.root).and_then(|h| h.branch);
    github || head.as_deref() == Some(branch.as_str())
}

/// `nubes promote <from> <to> [--force]`.
pub async fn promote(
    ctx: &Context<'_>,
    from: &EnvName,
    to: &EnvName,
    force: bool,
    json: bool,
) -> Result<()> {
    if from == to {
        return Err(Error::input(format!("cannot promote `{from}` into itself"))
            .hint("to redeploy an earlier release of one environment, use `nubes rollback`"));
    }
    if ctx.settings.protected(to) && !force && !on_branch(ctx.settings, to) {
        return Err(Error::input(format!(
            "environment `{to}` is protected: nothing was promoted into it"
        ))
        .hint(format!(
            "run from its branch `{}` (e.g. the workflow's `action: promote` dispatched on it), or pass --force",
            to.branch(&ctx.settings.branch_prefix)
        )));
    }
    let store = open(ctx.settings)?;
    let state = crate::state::open(ctx.settings)?;
    let health = state
        .read_meta(from)
        .await?
        .and_then(|m| m.get(crate::state::meta::HEALTH).cloned());
    let records = store.records(from).await?;
    let Some(live) = releases::live(&records).cloned() else {
        return Err(
            Error::input(format!("`{from}` has no live release to promote"))
                .hint(format!("deploy it first (`nubes up {from}`)")),
        );
    };
    let verdict = health.unwrap_or_else(|| live.verdict.clone());
    if verdict != "healthy" || live.verdict != "healthy" {
        return Err(Error::input(format!(
            "`{from}`'s last health verdict is {}: release {} is not promoted",
            crate::env_name::printable(&verdict),
            live.id
        ))
        .hint(format!(
            "fix `{from}` until its health check passes (`nubes up {from}`), then promote"
        )));
    }
    let action = format!("promote from {from}");
    let (up, done) = pipeline::up_with_release(ctx, to, &store, &live, &action).await?;
    let verdict = done.verdict;
    if let Err(e) = store.prune(ctx.settings.deploy.keep_releases).await {
        tracing::warn!("old releases could not be pruned: {e}");
    }
    if !json {
        for line in pipeline::output_lines(&up.outputs) {
            crate::outln!("  {line}");
        }
    }
    let note = up.release.clone().unwrap_or(ReleaseNote {
        id: live.id.clone(),
        digest: live.digest.clone(),
        rolled_back_from: None,
    });
    // `up`'s document (infrastructure stage, outputs, deploy, health), as promote.
    let doc = json.then(|| {
        let mut doc = super::pipeline::up_doc(to, &up);
        doc.insert("command".into(), serde_json::json!("promote"));
        doc.insert("from".into(), serde_json::json!(from.as_str()));
        doc.insert("by_slot_swap".into(), serde_json::json!(done.by_slot_swap));
        doc
    });
    report(
        ctx,
        to,
        &format!("promote from {from}"),
        &note,
        verdict,
        done.went_live,
        doc,
    )?;
    if verdict == "unhealthy" && !done.went_live {
        return Err(Error::failed(format!(
            "release {} failed its health check{} and was not put live in `{to}`: production keeps the release it served",
            live.id,
            through_slot(ctx.settings)
        ))
        .hint("see the verdicts above"));
    }
    if verdict == "unhealthy" {
        return Err(Error::failed(format!(
            "release {} was promoted into `{to}` but failed its health check there",
            live.id
        ))
        .hint(format!(
            "`nubes rollback {to}` puts back its previous release"
        )));
    }
    Ok(())
}
