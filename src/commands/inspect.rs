//! `nubes status <env>` and `nubes outputs <env>`: one environment's details and its
//! Terraform outputs, read straight from stored state and metadata (no Terraform, no lock).

use serde_json::{Value, json};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::pipeline;
use crate::state::{self, StateHead};

pub async fn status(settings: &Settings, env_arg: &str, json_out: bool) -> Result<()> {
    let env = settings.env_name(env_arg)?;
    let store = state::open(settings)?;
    let stored = store.read(&env).await?;
    let head = stored.as_ref().map(|s| StateHead::parse(&s.bytes));
    let meta = store.read_meta(&env).await?.unwrap_or_default();
    let holder = store.holder(&env).await?;
    let versions = store.history(&env).await?.len();
    let outputs = pipeline::stored_outputs(&*store, &env)
        .await
        .unwrap_or_default();
    let protected = settings.environment(&env).is_some_and(|e| e.protected);
    let m = |k: &str| meta.get(k).filter(|v| !v.is_empty()).cloned();
    let outputs_json: serde_json::Map<String, Value> = outputs
        .iter()
        .map(|(k, o)| {
            let v = if pipeline::is_sensitive(o) {
                json!("<sensitive>")
            } else {
                o.get("value").cloned().unwrap_or(Value::Null)
            };
            (k.clone(), v)
        })
        .collect();
    let doc = json!({
        "environment": env.as_str(),
        "exists": stored.is_some(),
        "location": store.location(&env),
        "serial": head.as_ref().and_then(|h| h.as_ref().ok()).map(|h| h.serial),
        "lineage": head.as_ref().and_then(|h| h.as_ref().ok()).map(|h| h.lineage.clone()),
        "resources": head.as_ref().and_then(|h| h.as_ref().ok()).map(|h| h.resources),
        "state_error": head.as_ref().and_then(|h| h.as_ref().err()).cloned(),
        "last_apply": {
            "at": m("nubesappliedat"), "commit": m("nubescommit"), "branch": m("nubesbranch"),
            "actor": m("nubesactor"), "nubes_version": m("nubesversion"),
        },
        "lock": holder.as_ref().map(|h| json!({
            "who": h.info.as_ref().map(|i| i.who.clone()),
            "operation": h.info.as_ref().map(|i| i.operation.clone()),
            "since": h.info.as_ref().map(|i| i.created.clone()),
            "info": h.info.as_ref().map(|i| i.info.clone()),
            "infinite": h.infinite,
        })),
        "protected": protected,
        "kept_versions": versions,
        "outputs": outputs_json,
    });
    if json_out {
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    if stored.is_none() {
        crate::outln!("environment `{env}`: no state at {}", store.location(&env));
        return Ok(());
    }
    crate::outln!(
        "environment `{env}`{}",
        if protected { " (protected)" } else { "" }
    );
    crate::outln!("  state:      {}", store.location(&env));
    match head {
        Some(Ok(h)) => crate::outln!(
            "  serial:     {} ({} resources, lineage {})",
            h.serial,
            h.resources,
            h.lineage
        ),
        Some(Err(e)) => crate::outln!("  state:      unreadable: {e}"),
        None => {}
    }
    match m("nubesappliedat") {
        Some(at) => crate::outln!(
            "  last apply: {at} by {} from {} at {}",
            m("nubesactor").unwrap_or_else(|| "?".into()),
            m("nubesbranch").unwrap_or_else(|| "?".into()),
            m("nubescommit")
                .map(|c| c.chars().take(12).collect::<String>())
                .unwrap_or_else(|| "?".into())
        ),
        None => crate::outln!("  last apply: never recorded by `nubes up`"),
    }
    match holder {
        Some(h) => crate::outln!("  lock:       held by {}", h.describe()),
        None => crate::outln!("  lock:       free"),
    }
    crate::outln!("  history:    {versions} kept versions");
    for line in pipeline::output_lines(&outputs) {
        crate::outln!("  output      {line}");
    }
    Ok(())
}

pub async fn outputs(
    settings: &Settings,
    env_arg: &str,
    json_out: bool,
    show_sensitive: bool,
) -> Result<()> {
    let env = settings.env_name(env_arg)?;
    let store = state::open(settings)?;
    if store.read(&env).await?.is_none() {
        return Err(
            Error::input(format!("environment `{env}` has no state, so no outputs"))
                .hint(format!("create it with `nubes up {env}`")),
        );
    }
    let outputs = pipeline::stored_outputs(&*store, &env).await?;
    if json_out {
        let doc: serde_json::Map<String, Value> = outputs
            .iter()
            .map(|(k, o)| {
                let sensitive = pipeline::is_sensitive(o);
                let value = if sensitive && !show_sensitive {
                    Value::Null
                } else {
                    o.get("value").cloned().unwrap_or(Value::Null)
                };
                (k.clone(), json!({ "value": value, "sensitive": sensitive }))
            })
            .collect();
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default()
        );
        return Ok(());
    }
    for (name, o) in &outputs {
        if pipeline::is_sensitive(o) && !show_sensitive {
            crate::outln!("{name} = <sensitive> (--show-sensitive to print)");
        } else {
            match o.get("value") {
                Some(Value::String(s)) => crate::outln!("{name} = {s}"),
                Some(v) => crate::outln!("{name} = {v}"),
                None => crate::outln!("{name} = null"),
            }
        }
    }
    Ok(())
}
