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

/// The lifecycle objects of `status` and `list` JSON: `activity`, `deploy`, `health`,
/// `expiry` (values nubes never recorded are null; see `state::meta`, `expiry.rs`).
fn lifecycle_json(
    settings: &Settings,
    env: Option<&crate::env_name::EnvName>,
    meta: &std::collections::BTreeMap<String, String>,
    blob: crate::expiry::Blob,
    now: time::OffsetDateTime,
) -> serde_json::Map<String, Value> {
    use crate::state::meta as k;
    let m = |key: &str| meta.get(key).filter(|v| !v.is_empty()).cloned();
    let (rules, protected) = match env {
        Some(e) => (settings.expiry(e), settings.protected(e)),
        None => (settings.expiry, false),
    };
    let judged = crate::expiry::judge(meta, blob, rules, protected);
    let mut out = serde_json::Map::new();
    out.insert(
        "activity".into(),
        json!({
            "at": judged.last_activity.map(|(t, _)| crate::clock::format(t)),
            "source": judged.last_activity.map(|(_, s)| match s {
                crate::expiry::Source::Activity => "activity",
                crate::expiry::Source::Applied => "apply",
                crate::expiry::Source::Modified => "modified",
                crate::expiry::Source::Outside => "outside",
            }),
            "what": m(k::ACTIVITY),
            "actor": m(k::ACTOR),
            "run_url": m(k::RUN_URL),
            "dirty": m(k::DIRTY).is_some_and(|d| d == "true"),
            "created_at": judged.created.map(crate::clock::format),
        }),
    );
    out.insert(
        "deploy".into(),
        json!({
            "verdict": m(k::DEPLOY), "at": m(k::DEPLOY_AT), "commit": m(k::APP_COMMIT),
            "artifact": m(k::ARTIFACT), "target": m(k::TARGET), "application_url": m(k::APP_URL),
            // The live release's id (`nubes releases`): the artifact of the last deploy,
            // or of the release a rollback put back.
            "release": m(k::ARTIFACT).and_then(|a| crate::releases::hex_of(&a)).map(|h| crate::releases::short(&h).to_string()),
            "rolled_back": m(k::ROLLED_BACK).is_some_and(|v| v == "true"),
        }),
    );
    out.insert(
        "health".into(),
        json!({ "verdict": m(k::HEALTH), "at": m(k::HEALTH_AT) }),
    );
    out.insert(
        "expiry".into(),
        json!({
            "expires_at": judged.expires_at.map(crate::clock::format),
            "expired": judged.expired(now),
            "pinned_until": judged.pinned_until.map(crate::clock::format),
            "why": judged.why,
            "idle": rules.idle.map(|d| crate::clock::span(time::Duration::seconds(d.as_secs() as i64))),
            "max_age": rules.max_age.map(|d| crate::clock::span(time::Duration::seconds(d.as_secs() as i64))),
        }),
    );
    out.insert(
        "drift".into(),
        json!({ "verdict": m(k::DRIFT), "at": m(k::DRIFT_AT) }),
    );
    out
}

/// "3d 4h ago" for a recorded time, "-" when unknown.
fn ago(at: Option<&str>, now: time::OffsetDateTime) -> String {
    at.and_then(crate::clock::parse)
        .map(|t| format!("{} ago", crate::clock::span(now - t)))
        .unwrap_or_else(|| "-".into())
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
    let now = crate::clock::now();
    let outside = changed_outside(&*store, &env, head.as_ref(), &meta).await?;
    let blob = crate::expiry::Blob {
        last_modified: outside.as_deref().and_then(crate::clock::parse),
        created: None,
        written_outside: outside.is_some(),
    };
    let lifecycle = lifecycle_json(settings, Some(&env), &meta, blob, now);
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
    let mut doc = json!({
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
    if let Some(obj) = doc.as_object_mut() {
        obj.extend(lifecycle.clone());
    }
    if json_out {
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    if stored.is_none() {
        match &holder {
            // Locked with no state yet: a first `up` is creating it right now.
            Some(h) => crate::outln!(
                "environment `{env}`: being created (no state yet at {}); lock held by {}",
                store.location(&env),
                h.describe()
            ),
            None => crate::outln!("environment `{env}`: no state at {}", store.location(&env)),
        }
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
    status_lifecycle_lines(&lifecycle, now);
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

/// The activity, deploy, health, expiry and drift lines of `nubes status`.
fn status_lifecycle_lines(l: &serde_json::Map<String, Value>, now: time::OffsetDateTime) {
    let s = |v: &Value| {
        v.as_str()
            .filter(|t| !t.is_empty())
            .map(|t| crate::env_name::escaped(t, 200))
    };
    let a = &l["activity"];
    match s(&a["at"]) {
        Some(at) => crate::outln!(
            "  activity:   {at} ({}){}{}{}",
            ago(a["at"].as_str(), now),
            s(&a["what"]).map(|w| format!(", {w}")).unwrap_or_default(),
            s(&a["actor"])
                .map(|w| format!(" by {w}"))
                .unwrap_or_default(),
            if a["dirty"] == true {
                " from a dirty working tree"
            } else {
                ""
            }
        ),
        None => crate::outln!("  activity:   none recorded"),
    }
    if let Some(run) = s(&a["run_url"]) {
        crate::outln!("  run:        {run}");
    }
    let d = &l["deploy"];
    if let Some(verdict) = s(&d["verdict"]) {
        crate::outln!(
            "  deploy:     {verdict} at {} to {}: commit {}, release {}{}",
            s(&d["at"]).unwrap_or_else(|| "?".into()),
            s(&d["target"]).unwrap_or_else(|| "?".into()),
            s(&d["commit"])
                .map(|c| c.chars().take(12).collect::<String>())
                .unwrap_or_else(|| "?".into()),
            s(&d["release"]).unwrap_or_else(|| "?".into()),
            if d["rolled_back"] == serde_json::Value::Bool(true) {
                " (rolled back after a failed health check)"
            } else {
                ""
            },
        );
    }
    if let Some(url) = s(&d["application_url"]) {
        crate::outln!("  url:        {url}");
    }
    let h = &l["health"];
    if let Some(verdict) = s(&h["verdict"]) {
        crate::outln!(
            "  health:     {verdict} at {}",
            s(&h["at"]).unwrap_or_else(|| "?".into())
        );
    }
    let e = &l["expiry"];
    let when = match s(&e["expires_at"]) {
        None => "never".to_string(),
        Some(at) => {
            let t = crate::clock::parse(&at);
            match t {
                Some(t) if t <= now => {
                    format!("expired {} ago ({at})", crate::clock::span(now - t))
                }
                Some(t) => format!("in {} ({at})", crate::clock::span(t - now)),
                None => at,
            }
        }
    };
    crate::outln!("  expires:    {when}: {}", s(&e["why"]).unwrap_or_default());
    let dr = &l["drift"];
    if let Some(verdict) = s(&dr["verdict"]) {
        crate::outln!(
            "  drift:      {verdict} at {}",
            s(&dr["at"]).unwrap_or_else(|| "?".into())
        );
    }
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

/// The rows of `nubes list --json` (also `nubes env ls`'s), from one listing.
pub async fn rows(settings: &Settings, all: bool) -> Result<Vec<Value>> {
    let store = state::open(settings)?;
    let mut entries: Vec<state::Listed> = store
        .list()
        .await?
        .into_iter()
        .filter(|e| e.env.is_some() && (all || !e.tombstone))
        .collect();
    entries.sort_by(|a, b| (&a.env, a.tombstone, &a.name).cmp(&(&b.env, b.tombstone, &b.name)));
    let now = crate::clock::now();
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
            let mut row = json!({
                "name": env,
                "blob": e.name,
                "tombstone": e.tombstone,
                "serial": known(state::meta::SERIAL),
                "resources": known(state::meta::RESOURCES),
                "changed_outside": e.changed_outside.as_ref().map(|at| json!({ "at": at })),
                "last_apply": last_apply_json(&e.metadata),
                "lock": e.holder.as_ref().map(lock_json),
                "protected": protected,
            });
            if let Some(obj) = row.as_object_mut() {
                obj.extend(lifecycle_json(
                    settings,
                    e.env.as_ref(),
                    &e.metadata,
                    crate::expiry::Blob {
                        last_modified: e.last_modified,
                        created: e.created,
                        written_outside: e.changed_outside.is_some(),
                    },
                    now,
                ));
            }
            row
        })
        .collect();
    Ok(rows)
}

/// `nubes list`: every environment in the store, from one listing.
pub async fn list(settings: &Settings, json_out: bool, all: bool) -> Result<()> {
    let rows = rows(settings, all).await?;
    let now = crate::clock::now();
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
        "{:<20} {:>6} {:>5}  {:<14} {:<12} {:<10} {:<16} LOCK",
        "ENVIRONMENT",
        "SERIAL",
        "RES",
        "ACTIVE",
        "COMMIT",
        "HEALTH",
        "EXPIRES"
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
        let active = ago(r["activity"]["at"].as_str(), now);
        // The application commit deployed, else the configuration applied.
        let commit = s(&r["deploy"]["commit"])
            .or_else(|| s(&r["last_apply"]["commit"]))
            .map(|c| c.chars().take(12).collect::<String>())
            .map(|c| {
                if r["activity"]["dirty"] == true {
                    format!("{c}+")
                } else {
                    c
                }
            })
            .unwrap_or_else(|| "-".into());
        let health = match (s(&r["deploy"]["verdict"]), s(&r["health"]["verdict"])) {
            (Some(d), _) if d == "failed" => "deploy-fail".to_string(),
            (_, Some(h)) => h,
            _ => "-".into(),
        };
        let expires = match r["expiry"]["expires_at"]
            .as_str()
            .and_then(crate::clock::parse)
        {
            None => "never".to_string(),
            Some(t) if t <= now => "expired".to_string(),
            Some(t) => format!("in {}", crate::clock::span(t - now)),
        };
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
            "{:<20} {:>6} {:>5}  {:<14} {:<12} {:<10} {:<16} {lock}",
            name,
            r["serial"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            r["resources"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            active,
            commit,
            health,
            expires,
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
