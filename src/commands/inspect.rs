//! `nubes status <env>` and `nubes outputs <env>`: one environment's details and its
//! Terraform outputs, read straight from stored state and metadata (no Terraform, no lock).

use serde_json::{Value, json};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::pipeline;
use crate::state::{self, StateHead};

/// The `last_apply` object of `status` and `list` JSON, from nubes's blob metadata
/// (values nubes never recorded are null).
fn last_apply_json(meta: &std::collections::BTreeMap<String, String>) -> Value {
    let m = |k: &str| meta.get(k).filter(|v| !v.is_empty()).cloned();
    json!({
        "at": m("nubesappliedat"), "commit": m("nubescommit"), "branch": m("nubesbranch"),
        "actor": m("nubesactor"), "nubes_version": m("nubesversion"),
    })
}

/// The `lock` object of `status` and `list` JSON.
fn lock_json(h: &state::Holder) -> Value {
    json!({
        "who": h.info.as_ref().map(|i| i.who.clone()),
        "operation": h.info.as_ref().map(|i| i.operation.clone()),
        "since": h.info.as_ref().map(|i| i.created.clone()),
        "info": h.info.as_ref().map(|i| i.info.clone()),
        "infinite": h.infinite,
    })
}

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
    let outside = changed_outside(&*store, &env, head.as_ref(), &meta).await?;
    let m = |k: &str| {
        meta.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| crate::env_name::escaped(v, 200))
    };
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
        "changed_outside": outside.as_ref().map(|at| json!({ "at": at })),
        "last_apply": last_apply_json(&meta),
        "lock": holder.as_ref().map(lock_json),
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
            crate::env_name::printable(&h.lineage)
        ),
        Some(Err(e)) => crate::outln!("  state:      unreadable: {e}"),
        None => {}
    }
    if let Some(at) = &outside {
        crate::outln!(
            "  written:    changed outside nubes at {} (plain Terraform?): serial and resources above are read from the state itself",
            crate::env_name::escaped(at, 64)
        );
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

/// When the stored state changed since nubes last wrote it, if it did. States written
/// before nubes recorded what it wrote are judged by the serial it recorded instead.
async fn changed_outside(
    store: &dyn state::StateStore,
    env: &crate::env_name::EnvName,
    head: Option<&std::result::Result<StateHead, String>>,
    meta: &std::collections::BTreeMap<String, String>,
) -> Result<Option<String>> {
    if let Some(at) = store.changed_outside(env).await? {
        return Ok(Some(at));
    }
    let recorded = meta
        .get(state::meta::SERIAL)
        .and_then(|s| s.parse::<u64>().ok());
    Ok(match (head, recorded) {
        (Some(Ok(h)), Some(r)) if !meta.contains_key(state::meta::WRITTEN_MD5) && h.serial != r => {
            Some("an unknown time".into())
        }
        _ => None,
    })
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

/// `nubes list`: every environment in the store, from one listing.
pub async fn list(settings: &Settings, json_out: bool, all: bool) -> Result<()> {
    let store = state::open(settings)?;
    let mut entries: Vec<state::Listed> = store
        .list()
        .await?
        .into_iter()
        .filter(|e| e.env.is_some() && (all || !e.tombstone))
        .collect();
    entries.sort_by(|a, b| (&a.env, a.tombstone, &a.name).cmp(&(&b.env, b.tombstone, &b.name)));
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let env = e.env.as_ref().map(|n| n.to_string()).unwrap_or_default();
            let m = |k: &str| e.metadata.get(k).filter(|v| !v.is_empty()).cloned();
            let num = |k: &str| m(k).and_then(|v| v.parse::<u64>().ok());
            let protected = e
                .env
                .as_ref()
                .and_then(|n| settings.environment(n))
                .is_some_and(|s| s.protected);
            // After a write outside nubes the recorded serial describes an older state:
            // withheld rather than shown wrong (`status` reads the state itself).
            let known = |k: &str| num(k).filter(|_| e.changed_outside.is_none());
            json!({
                "name": env,
                "blob": e.name,
                "tombstone": e.tombstone,
                "serial": known(state::meta::SERIAL),
                "resources": known(state::meta::RESOURCES),
                "changed_outside": e.changed_outside.as_ref().map(|at| json!({ "at": at })),
                "last_apply": last_apply_json(&e.metadata),
                "lock": e.holder.as_ref().map(lock_json),
                "protected": protected,
            })
        })
        .collect();
    if json_out {
        let doc = json!({ "count": rows.len(), "environments": rows });
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    if rows.is_empty() {
        crate::outln!("no environments");
        return Ok(());
    }
    crate::outln!(
        "{:<20} {:>6} {:>5}  {:<20} {:<16} {:<12} LOCK",
        "ENVIRONMENT",
        "SERIAL",
        "RES",
        "LAST APPLY",
        "BY",
        "COMMIT"
    );
    for r in &rows {
        // Lock info and metadata were written by whoever held or applied: shown escaped.
        let s = |v: &Value| v.as_str().map(|t| crate::env_name::escaped(t, 200));
        let mut name = r["name"].as_str().unwrap_or_default().to_string();
        if r["tombstone"] == true {
            name.push_str(" (deleted)");
        } else if r["protected"] == true {
            name.push_str(" (protected)");
        }
        let applied = s(&r["last_apply"]["at"])
            .map(|a| a.chars().take(19).collect::<String>())
            .unwrap_or_else(|| "-".into());
        let lock = match &r["lock"] {
            Value::Null => "-".to_string(),
            l => format!(
                "{} ({}, since {})",
                s(&l["who"]).unwrap_or_else(|| "?".into()),
                s(&l["operation"]).unwrap_or_else(|| "?".into()),
                s(&l["since"])
                    .map(|t| t.chars().take(19).collect::<String>())
                    .unwrap_or_else(|| "?".into())
            ),
        };
        crate::outln!(
            "{:<20} {:>6} {:>5}  {:<20} {:<16} {:<12} {lock}",
            name,
            r["serial"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            r["resources"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            applied,
            s(&r["last_apply"]["actor"]).unwrap_or_else(|| "-".into()),
            s(&r["last_apply"]["commit"])
                .map(|c| c.chars().take(12).collect::<String>())
                .unwrap_or_else(|| "-".into()),
        );
        if let Some(at) = s(&r["changed_outside"]["at"]) {
            crate::outln!(
                "{:<20} changed outside nubes at {at}: serial unknown here (`nubes status {}` reads it)",
                "",
                r["name"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
