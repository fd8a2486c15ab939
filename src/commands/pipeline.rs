//! `nubes up`, `plan` and `down`: run the pipeline stage and report it on the terminal,
//! in `$GITHUB_OUTPUT` and in `$GITHUB_STEP_SUMMARY`.

use crate::env_name::EnvName;
use crate::error::{Error, Result, exit};
use crate::pipeline::{self, Context, DownReport, Strategy};

pub async fn up(ctx: &Context<'_>, env: &EnvName, refresh: bool, json: bool) -> Result<()> {
    let started = std::time::Instant::now();
    // GitHub's deployment is reported around the pipeline; its failures only warn.
    let deployment = crate::review::deployments::start(ctx, env).await;
    let result = pipeline::up(ctx, env, refresh).await;
    let outcome = match &result {
        Ok(r) => Ok((
            pipeline::output_str(&r.outputs, "application_url"),
            &r.review,
        )),
        Err(_) => Err(()),
    };
    crate::review::deployments::finish(ctx, deployment, outcome).await;
    // The timing table, on stderr, whatever the outcome (a failure's stages included).
    let stages = crate::ui::stages();
    if !stages.is_empty() {
        tracing::info!(
            "`nubes up {env}` took:\n{}",
            crate::ui::timing_table(&stages, started.elapsed()).trim_end()
        );
    }
    match result {
        Ok(report) => {
            if json {
                super::json::print(up_doc(env, &report));
            }
            report_up(ctx, env, &report, json)
        }
        Err(e) => {
            // The summary says which stage failed (the message starts with it).
            let text = crate::secrets::redact(&e.to_string());
            let _ = ctx.gh.summary(&format!(
                "### nubes up `{env}` failed\n\n```\n{text}\n```\n"
            ));
            let _ = ctx.gh.set_output("environment", env.as_str());
            Err(e)
        }
    }
}

/// `up --json` (schema 1, README.md "JSON output").
pub(super) fn up_doc(
    env: &EnvName,
    report: &pipeline::UpReport,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{Value, json};
    let mut doc = super::json::head("up", Some(env.as_str()), true);
    let changes = report.plan.as_ref().is_some_and(|p| p.has_changes());
    let outputs: serde_json::Map<String, Value> = report
        .outputs
        .iter()
        .map(|(name, o)| {
            let sensitive = o.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
            let value = if sensitive {
                Value::Null
            } else {
                o.get("value").cloned().unwrap_or(Value::Null)
            };
            (
                name.clone(),
                json!({ "value": value, "sensitive": sensitive }),
            )
        })
        .collect();
    let secs = |d: std::time::Duration| (d.as_millis() as f64) / 1000.0;
    doc.insert("fast_path".into(), json!(report.fast_path));
    doc.insert(
        "stages".into(),
        json!(
            crate::ui::stages()
                .iter()
                .map(|(stage, took)| json!({ "stage": stage, "seconds": secs(*took) }))
                .collect::<Vec<_>>()
        ),
    );
    doc.insert("changes".into(), json!(changes));
    doc.insert("plan".into(), json!(report.plan));
    doc.insert(
        "application_url".into(),
        json!(pipeline::output_str(&report.outputs, "application_url")),
    );
    doc.insert(
        "resource_group".into(),
        json!(pipeline::output_str(&report.outputs, "resource_group")),
    );
    doc.insert("outputs".into(), Value::Object(outputs));
    doc.insert(
        "build".into(),
        json!(report.built.as_ref().map(|b| json!({
            "artifact": b.artifact.display().to_string(),
            "seconds": secs(b.took),
        }))),
    );
    doc.insert(
        "deploy".into(),
        json!(report.deployed.as_ref().map(|d| json!({
            "target": d.target,
            "detail": d.detail,
            "sha256": d.sha256,
            "destination": d.destination,
        }))),
    );
    doc.insert(
        "health".into(),
        json!(report.health.as_ref().map(|h| json!({
            "url": h.url,
            "status": h.status,
            "seconds": secs(h.took),
        }))),
    );
    doc
}

fn report_up(
    ctx: &Context<'_>,
    env: &EnvName,
    report: &pipeline::UpReport,
    json: bool,
) -> Result<()> {
    pipeline::mask_sensitive(&ctx.gh, &report.outputs);
    let changes = report.plan.as_ref().is_some_and(|p| p.has_changes());
    if !json {
        print_up(env, report);
    }
    report_up_to_github(ctx, env, report, changes)
}

/// The text report of `up` on stdout.
fn print_up(env: &EnvName, report: &pipeline::UpReport) {
    match (&report.plan, report.fast_path) {
        (_, true) => crate::outln!(
            "environment `{env}` infrastructure is up to date (fast path: no Terraform run)"
        ),
        (Some(plan), false) => crate::out!("environment `{env}`: {}", plan.text()),
        (None, false) => {}
    }
    for line in pipeline::output_lines(&report.outputs) {
        crate::outln!("  {line}");
    }
    if let Some(built) = &report.built {
        crate::outln!(
            "built {} in {}",
            built.artifact.display(),
            humantime::format_duration(std::time::Duration::from_millis(
                built.took.as_millis() as u64
            ))
        );
    }
    if let Some(d) = &report.deployed {
        crate::outln!("deployed to {}: {}", d.target, d.detail);
    }
    if let Some(h) = &report.health {
        crate::outln!("healthy: {} answered {}", h.url, h.status);
    }
}

fn report_up_to_github(
    ctx: &Context<'_>,
    env: &EnvName,
    report: &pipeline::UpReport,
    changes: bool,
) -> Result<()> {
    let url = pipeline::output_str(&report.outputs, "application_url").unwrap_or_default();
    let rg = pipeline::output_str(&report.outputs, "resource_group").unwrap_or_default();
    ctx.gh.set_output("environment", env.as_str())?;
    ctx.gh.set_output("application_url", &url)?;
    ctx.gh.set_output("resource_group", &rg)?;
    ctx.gh
        .set_output("changes", if changes { "true" } else { "false" })?;
    let mut md = match (&report.plan, report.fast_path) {
        (Some(plan), _) => plan.markdown(&format!("nubes up `{env}`")),
        _ => format!(
            "### nubes up `{env}`\n\nInfrastructure up to date: nothing changed since the last apply (no Terraform run).\n"
        ),
    };
    if let Some(d) = &report.deployed {
        md.push_str(&format!("\nDeployed to **{}**: {}.\n", d.target, d.detail));
    }
    match &report.health {
        Some(h) => md.push_str(&format!(
            "\nHealth check: **healthy**, {} answered {}.\n",
            h.url, h.status
        )),
        None if !url.is_empty() => md.push_str(&format!("\nApplication: {url}\n")),
        None => {}
    }
    report_release(ctx, report, &mut md)?;
    if let Some(commit) = &ctx.origin.commit {
        md.push_str(&format!(
            "\nCommit `{commit}` on `{}`.\n",
            ctx.origin.branch
        ));
    }
    if let Some(line) = report.review.markdown() {
        md.push_str(&line);
    }
    ctx.gh.summary(&md)
}

/// The release `up` left live (see `releases.rs`): terminal, outputs and summary.
fn report_release(ctx: &Context<'_>, report: &pipeline::UpReport, md: &mut String) -> Result<()> {
    let Some(r) = &report.release else {
        return Ok(());
    };
    crate::outln!("release {} ({}) is live", r.id, r.digest);
    r.set_outputs(&ctx.gh, r.rolled_back_from.is_some())?;
    md.push_str(&format!("\nRelease `{}` (`{}`) is live.\n", r.id, r.digest));
    Ok(())
}

pub async fn plan(
    ctx: &Context<'_>,
    env: &EnvName,
    json: bool,
    markdown: bool,
    detailed_exitcode: bool,
) -> Result<()> {
    let (summary, show) = pipeline::plan_with_show(ctx, env).await?;
    if json {
        let mut doc = super::json::head("plan", Some(env.as_str()), true);
        doc.insert("changes".into(), serde_json::json!(summary.has_changes()));
        doc.insert("summary".into(), serde_json::json!(summary));
        super::json::print(doc);
    } else if markdown {
        crate::out!("{}", summary.markdown(&format!("Plan for `{env}`")));
    } else {
        crate::out!("{}", summary.text());
    }
    ctx.gh.set_output("environment", env.as_str())?;
    ctx.gh.set_output(
        "changes",
        if summary.has_changes() {
            "true"
        } else {
            "false"
        },
    )?;
    ctx.gh
        .summary(&summary.markdown(&format!("Plan for `{env}`")))?;
    if ctx.review.pull_request.is_some() && summary.has_changes() {
        // Every attribute change goes to the job summary too, which the pull request's
        // comment links to when it had to leave details out.
        let full = crate::review::comment::render_full(
            env,
            &summary,
            &show,
            &crate::review::comment::Footer {
                commit: ctx.origin.commit.as_deref(),
                run_url: None,
            },
        );
        ctx.gh.summary(&format!(
            "<details><summary>Attribute changes</summary>\n\n{full}\n</details>\n"
        ))?;
    }
    crate::review::post_plan_comment(ctx, env, &summary, &show).await;
    if detailed_exitcode && summary.has_changes() {
        return Err(Error::Quiet(exit::CHANGES));
    }
    Ok(())
}

/// On a terminal, before `down`: say what will be destroyed (resources in state, the
/// resource groups, the tombstone the state becomes) and ask for the environment's name.
/// Read without the lock, so nobody waits on a person; the teardown then takes it.
pub async fn confirm_down(ctx: &Context<'_>, env: &EnvName, strategy: Strategy) -> Result<()> {
    use std::io::{BufRead, Write};
    let store = crate::state::open(ctx.settings)?;
    let Some(stored) = store.read(env).await? else {
        return Ok(()); // nothing to destroy: `down` says so
    };
    let what = describe_state(&stored.bytes);
    eprintln!("`nubes down {env}` will destroy environment `{env}`:");
    match strategy {
        Strategy::Terraform => eprintln!(
            "  - {} with `terraform destroy`{}",
            what.resources_text(),
            what.groups_text()
        ),
        Strategy::ResourceGroup => eprintln!(
            "  - every resource group tagged nubes-env={env} and nubes-project={} in the subscription \
             (Resource Manager), whatever Terraform knows ({} in state{})",
            crate::render::project_name(ctx.settings),
            what.resources_text(),
            what.groups_text()
        ),
    }
    eprintln!(
        "  - its state {} (serial {}), kept afterwards only as a tombstone copy `<key>.tombstone.<time>`",
        store.location(env),
        what.serial
            .map_or_else(|| "unknown".to_string(), |s| s.to_string())
    );
    eprint!("Type the environment's name ({env}) to destroy it, anything else to stop: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != env.as_str() {
        return Err(
            Error::input(format!("not confirmed: nothing was destroyed in `{env}`")).hint(format!(
                "type `{env}` at the prompt, or pass --yes (scripts and CI are never asked)"
            )),
        );
    }
    Ok(())
}

/// What a state holds, for the `down` prompt.
struct StateContents {
    serial: Option<u64>,
    resources: usize,
    groups: Vec<String>,
}

impl StateContents {
    fn resources_text(&self) -> String {
        match self.resources {
            1 => "1 resource".into(),
            n => format!("{n} resources"),
        }
    }

    fn groups_text(&self) -> String {
        if self.groups.is_empty() {
            String::new()
        } else {
            format!(", in resource groups {}", self.groups.join(", "))
        }
    }
}

/// Managed resource instances and the names of `azurerm_resource_group`s in a state
/// document (shown escaped: the state is whoever wrote it).
fn describe_state(bytes: &[u8]) -> StateContents {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let mut out = StateContents {
        serial: doc.get("serial").and_then(serde_json::Value::as_u64),
        resources: 0,
        groups: Vec::new(),
    };
    let resources = doc
        .get("resources")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in &resources {
        if r.get("mode").and_then(serde_json::Value::as_str) != Some("managed") {
            continue;
        }
        let instances = r
            .get("instances")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        out.resources += instances.len();
        if r.get("type").and_then(serde_json::Value::as_str) == Some("azurerm_resource_group") {
            for i in &instances {
                if let Some(name) = i
                    .pointer("/attributes/name")
                    .and_then(serde_json::Value::as_str)
                {
                    out.groups
                        .push(format!("`{}`", crate::env_name::printable(name)));
                }
            }
        }
    }
    out
}

pub async fn down(
    ctx: &Context<'_>,
    env: &EnvName,
    force: bool,
    strategy: Strategy,
    json: bool,
) -> Result<()> {
    let report = pipeline::down(ctx, env, force, strategy).await?;
    if json {
        let mut doc = super::json::head("down", Some(env.as_str()), true);
        let (destroyed, tombstone) = match &report {
            DownReport::NothingToDo => (false, None),
            DownReport::Destroyed { tombstone } => (true, tombstone.clone()),
        };
        doc.insert("destroyed".into(), serde_json::json!(destroyed));
        doc.insert("tombstone".into(), serde_json::json!(tombstone));
        super::json::print(doc);
    }
    let say = |line: String| {
        if !json {
            crate::outln!("{line}");
        }
    };
    match report {
        DownReport::NothingToDo => {
            say(format!(
                "environment `{env}` has no state: nothing to tear down"
            ));
            ctx.gh.summary(&format!(
                "### nubes down `{env}`\n\nNothing to tear down: the environment has no state.\n"
            ))?;
            crate::review::deployments::deactivate(ctx, env).await;
        }
        DownReport::Destroyed { tombstone } => {
            let kept = tombstone
                .map(|t| format!(" (final state kept as `{t}`)"))
                .unwrap_or_default();
            say(format!(
                "environment `{env}` torn down and its state removed{kept}"
            ));
            ctx.gh.summary(&format!(
                "### nubes down `{env}`\n\nTorn down and state removed{kept}.\n"
            ))?;
            crate::review::deployments::deactivate(ctx, env).await;
        }
    }
    ctx.gh.set_output("environment", env.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_down_prompt_counts_managed_instances_and_names_resource_groups() {
        let state = br#"{"version":4,"serial":7,"lineage":"x","resources":[
          {"mode":"managed","type":"azurerm_resource_group","name":"rg","instances":[{"attributes":{"name":"rg-shop-alice"}}]},
          {"mode":"managed","type":"terraform_data","name":"d","instances":[{},{}]},
          {"mode":"data","type":"azurerm_client_config","name":"c","instances":[{}]}]}"#;
        let c = describe_state(state);
        assert_eq!((c.serial, c.resources), (Some(7), 3));
        assert_eq!(c.groups_text(), ", in resource groups `rg-shop-alice`");
        let garbage = describe_state(b"[1,2");
        assert_eq!((garbage.serial, garbage.resources), (None, 0));
        assert_eq!(garbage.resources_text(), "0 resources");
    }
}
