//! `nubes state history|pull|restore`: the kept versions of an environment's state.

use std::io::Write;

use bytes::Bytes;

use crate::cli::StateCommand;
use crate::config::Settings;
use crate::env_name::{EnvName, printable};
use crate::error::{Error, Result};
use crate::state::{self, StateHead, StateStore, Version, lock};

pub async fn run(settings: &Settings, cmd: &StateCommand) -> Result<()> {
    match cmd {
        StateCommand::History { env, json } => history(settings, env, *json).await,
        StateCommand::Pull { env, version_id } => pull(settings, env, version_id.as_deref()).await,
        StateCommand::Restore { env, version_id } => restore(settings, env, version_id).await,
    }
}

async fn history(settings: &Settings, env_arg: &str, json: bool) -> Result<()> {
    let env = settings.env_name(env_arg)?;
    let store = state::open(settings)?;
    let versions = store.history(&env).await?;
    let current = store.read(&env).await?;
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "environment": env.as_str(),
            "current_serial": current.as_ref().and_then(|c| StateHead::parse(&c.bytes).ok()).map(|h| h.serial),
            "versions": versions,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
        return Ok(());
    }
    match current.as_ref().map(|c| StateHead::parse(&c.bytes)) {
        Some(Ok(h)) => {
            let _ = writeln!(
                out,
                "current: serial {} ({} resources)",
                h.serial, h.resources
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "current: unreadable ({e})");
        }
        None => {
            let _ = writeln!(out, "current: no state");
        }
    }
    if versions.is_empty() {
        let _ = writeln!(out, "no previous versions kept for `{env}`");
        return Ok(());
    }
    let _ = writeln!(
        out,
        "{:<8} {:<30} {:>10}  {:<36}  VERSION",
        "SERIAL", "REPLACED AT", "BYTES", "LINEAGE"
    );
    for v in &versions {
        let serial = v
            .serial
            .map(|s| s.to_string())
            .unwrap_or_else(|| "?".into());
        let lineage = v
            .lineage
            .as_deref()
            .map(|l| printable(l).to_string())
            .unwrap_or_else(|| "? (unreadable)".into());
        let _ = writeln!(
            out,
            "{serial:<8} {:<30} {:>10}  {lineage:<36}  {}",
            v.saved_at, v.size, v.id
        );
    }
    Ok(())
}

/// A version given as its ID, or as a serial when exactly one kept version has it (the
/// serial is read from the version's content, so it names what `history` lists). Two
/// versions can share a serial (plain Terraform wrote one, or a state was pushed
/// again): then only the ID says which, and the candidates are listed.
fn find<'a>(versions: &'a [Version], wanted: &str, env: &EnvName) -> Result<&'a Version> {
    if let Some(v) = versions.iter().find(|v| v.id == wanted) {
        return Ok(v);
    }
    if let Ok(serial) = wanted.parse::<u64>() {
        let same: Vec<&Version> = versions
            .iter()
            .filter(|v| v.serial == Some(serial))
            .collect();
        match same.as_slice() {
            [one] => return Ok(one),
            [] => {}
            many => {
                let candidates: Vec<String> = many
                    .iter()
                    .map(|v| {
                        format!(
                            "{} (replaced at {}, {} bytes)",
                            printable(&v.id),
                            printable(&v.saved_at),
                            v.size
                        )
                    })
                    .collect();
                return Err(Error::input(format!(
                    "{} kept versions of `{env}` have serial {serial}: {}",
                    many.len(),
                    candidates.join("; ")
                ))
                .hint("name the version by its ID (the last column of `nubes state history`)"));
            }
        }
    }
    Err(Error::input(format!(
        "environment `{env}` has no kept version `{}`",
        printable(wanted)
    ))
    .hint(format!(
        "list the versions with `nubes state history {env}`"
    )))
}

async fn version_bytes(store: &dyn StateStore, env: &EnvName, wanted: &str) -> Result<Bytes> {
    let versions = store.history(env).await?;
    let v = find(&versions, wanted, env)?;
    store.read_version(env, &v.id).await
}

async fn pull(settings: &Settings, env_arg: &str, version: Option<&str>) -> Result<()> {
    let env = settings.env_name(env_arg)?;
    let store = state::open(settings)?;
    let bytes = match version {
        Some(v) => version_bytes(&*store, &env, v).await?,
        None => match store.read(&env).await? {
            Some(s) => s.bytes,
            None => {
                return Err(Error::input(format!("environment `{env}` has no state"))
                    .hint("`nubes state history` lists kept versions"));
            }
        },
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&bytes).and_then(|_| {
        if bytes.ends_with(b"\n") {
            Ok(())
        } else {
            out.write_all(b"\n")
        }
    }) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Into::into),
    }
}

async fn restore(settings: &Settings, env_arg: &str, version: &str) -> Result<()> {
    let env = settings.env_name(env_arg)?;
    let store = state::open(settings)?;
    let held = lock::acquire(
        store.clone(),
        &env,
        "nubes state restore",
        settings.state.lock_timeout,
    )
    .await?;
    let result = async {
        let versions = store.history(&env).await?;
        let v = find(&versions, version, &env)?;
        let old = store.read_version(&env, &v.id).await?;
        let old_head = StateHead::parse(&old).map_err(|e| Error::input(format!("version `{}` cannot be restored: {e}", printable(version))))?;
        let current = store.read(&env).await?;
        let current_head = current.as_ref().map(|c| StateHead::parse(&c.bytes).map_err(|e| Error::failed(format!("the current state of `{env}` is unreadable: {e}"))))
        .transpose();
        // A corrupt current state is exactly when a restore is needed: allow it.
        let current_head = current_head.unwrap_or_default();
        if let Some(cur) = &current_head
            && cur.lineage != old_head.lineage {
                return Err(Error::input(format!(
                    "version `{}` has lineage {} but the current state has lineage {}: it belongs to another state history",
                    printable(version), printable(&old_head.lineage), printable(&cur.lineage)
                )));
            }
        let next_serial = match &current_head {
            // A hostile or corrupt current state may carry the largest serial there is.
            Some(h) => h.serial.checked_add(1).ok_or_else(|| Error::input(format!(
                "the current state of `{env}` has serial {}, the largest possible, so no restored version can be newer", h.serial
            )).hint(format!("inspect it with `nubes state pull {env}`")))?,
            None => old_head.serial,
        }.max(old_head.serial);
        let mut doc: serde_json::Value = serde_json::from_slice(&old).map_err(|e| Error::input(format!("version is not JSON: {e}")))?;
        doc["serial"] = serde_json::Value::from(next_serial);
        let bytes = Bytes::from(serde_json::to_vec_pretty(&doc).unwrap_or_default());
        let head = StateHead { serial: next_serial, ..old_head.clone() };
        let expected = current.as_ref().map(|c| c.etag.as_str());
        match store.write(held.token(), bytes, expected, &head).await? {
            Ok(_) => {
                crate::outln!("restored version {} (serial {}) of `{env}` as serial {next_serial}", printable(&v.id), old_head.serial);
                Ok(())
            }
            Err(conflict) => Err(Error::failed(format!("restore of `{env}` refused: {conflict}"))),
        }
    }
    .await;
    let released = held.release().await;
    result.and(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, serial: Option<u64>) -> Version {
        Version {
            id: id.into(),
            serial,
            lineage: Some("l".into()),
            saved_at: "t".into(),
            size: 1,
        }
    }

    #[test]
    fn versions_by_id_or_by_an_unambiguous_serial_only() {
        let env = EnvName::parse("alice", "env-").unwrap();
        let vs = [
            v("a", Some(3)),
            v("b", Some(3)),
            v("c", Some(2)),
            v("4", Some(1)),
        ];
        assert_eq!(find(&vs, "c", &env).unwrap().id, "c");
        assert_eq!(find(&vs, "2", &env).unwrap().id, "c");
        // An ID wins over a serial that reads the same.
        assert_eq!(find(&vs, "4", &env).unwrap().id, "4");
        let e = find(&vs, "3", &env).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.contains("2 kept versions of `alice` have serial 3"),
            "{text}"
        );
        assert!(
            text.contains("a (replaced") && text.contains("b (replaced"),
            "{text}"
        );
        assert!(find(&vs, "9", &env).is_err());
    }
}
