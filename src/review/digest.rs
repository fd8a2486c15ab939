//! The digest of a saved plan's changes, the thing a reviewed-plan check compares: for
//! every resource instance and output that the plan changes, its address, its actions
//! and SHA-256 hashes of its before, after and after-unknown values, read from
//! `terraform show -json` (<https://developer.hashicorp.com/terraform/internals/json-format>).
//! Two plans have the same digest exactly when they would make the same changes from the
//! same prior values: a state written in between (other values before) or other
//! configuration merged (other values after) gives another digest.
//!
//! Values are hashed in a canonical JSON form (object keys sorted), so the digest does
//! not depend on the order Terraform writes keys in. The hashes never leave nubes's
//! records, and a hash of a sensitive value says nothing usable about it.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Show {
    #[serde(default)]
    resource_changes: Vec<Resource>,
    #[serde(default)]
    output_changes: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct Resource {
    address: String,
    change: Value,
}

/// The digest of the changes in `terraform show -json` output, hex SHA-256.
pub fn of_show_json(bytes: &[u8]) -> Result<String> {
    let show: Show = serde_json::from_slice(bytes)
        .map_err(|e| Error::failed(format!("cannot read Terraform's JSON plan: {e}")))?;
    let mut lines: Vec<String> = Vec::new();
    for r in &show.resource_changes {
        if let Some(line) = change_line(&r.address, &r.change) {
            lines.push(line);
        }
    }
    for (name, change) in &show.output_changes {
        if let Some(line) = change_line(&format!("output.{name}"), change) {
            lines.push(line);
        }
    }
    lines.sort();
    let mut h = Sha256::new();
    for line in &lines {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    Ok(hex(&h.finalize()))
}

/// `address actions hash(before) hash(after) hash(after_unknown)`, or `None` for a no-op.
fn change_line(address: &str, change: &Value) -> Option<String> {
    let actions: Vec<&str> = change
        .get("actions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if actions.is_empty() || actions == ["no-op"] {
        return None;
    }
    let hash = |key: &str| {
        let mut text = String::new();
        canonical(change.get(key).unwrap_or(&Value::Null), &mut text);
        hex(&Sha256::digest(text.as_bytes()))
    };
    Some(format!(
        "{address} {} {} {} {}",
        actions.join(","),
        hash("before"),
        hash("after"),
        hash("after_unknown")
    ))
}

/// JSON with object keys sorted (serde_json here keeps insertion order).
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(before: &str, after: &str) -> Vec<u8> {
        format!(
            r#"{{"resource_changes":[
              {{"address":"terraform_data.a","change":{{"actions":["update"],"before":{before},"after":{after},"after_unknown":{{}}}}}},
              {{"address":"terraform_data.b","change":{{"actions":["no-op"],"before":{{"x":1}},"after":{{"x":1}}}}}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn the_digest_follows_changes_not_key_order_or_no_ops() {
        let a = of_show_json(&show(r#"{"x":1,"y":2}"#, r#"{"x":3,"y":2}"#)).unwrap();
        let reordered = of_show_json(&show(r#"{"y":2,"x":1}"#, r#"{"y":2,"x":3}"#)).unwrap();
        assert_eq!(a, reordered);
        let other_before = of_show_json(&show(r#"{"x":9,"y":2}"#, r#"{"x":3,"y":2}"#)).unwrap();
        let other_after = of_show_json(&show(r#"{"x":1,"y":2}"#, r#"{"x":4,"y":2}"#)).unwrap();
        assert_ne!(a, other_before);
        assert_ne!(a, other_after);
        assert_eq!(a.len(), 64);
        let empty = of_show_json(br#"{"resource_changes":[]}"#).unwrap();
        let only_noop = of_show_json(
            br#"{"resource_changes":[{"address":"x","change":{"actions":["no-op"]}}]}"#,
        )
        .unwrap();
        assert_eq!(empty, only_noop);
    }
}
