//! The `--json` documents of `up`, `plan`, `down` and `run`: one object on stdout, with
//! `"schema": 1` (a field is only ever added within a schema version; a change of shape
//! or meaning raises it) and `"ok"`. A failure prints an error object on stdout too, so
//! a script reading stdout always gets a document, besides the message on stderr.
//! README.md ("JSON output") documents the shapes.

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// The version of the documents' shape.
pub const SCHEMA: u32 = 1;

/// A document's common head: schema, command, environment, ok.
pub fn head(command: &str, env: Option<&str>, ok: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("schema".into(), json!(SCHEMA));
    m.insert("command".into(), json!(command));
    m.insert("environment".into(), json!(env));
    m.insert("ok".into(), json!(ok));
    m
}

pub fn print(doc: Map<String, Value>) {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default()
    );
}

/// The error object for `e` (message and hint redacted, as on stderr).
pub fn error_doc(command: &str, env: Option<&str>, e: &Error) -> Map<String, Value> {
    let mut doc = head(command, env, false);
    doc.insert(
        "error".into(),
        json!({
            "message": crate::secrets::redact(&e.to_string()),
            "hint": e.hint_text().map(|h| crate::secrets::redact(&h)),
            "exit_code": e.exit_code(),
        }),
    );
    doc
}

/// With `--json`, a failure also prints its error object on stdout. (A documented
/// non-zero exit that is no failure, `Quiet`, already printed its document.)
pub fn on_failure<T>(json: bool, command: &str, env: Option<&str>, r: Result<T>) -> Result<T> {
    if let (true, Err(e)) = (json, &r)
        && !matches!(e, Error::Quiet(_))
    {
        print(error_doc(command, env, e));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_object_carries_message_hint_and_exit_code() {
        let e = Error::input("bad name").hint("use alice");
        let doc = Value::Object(error_doc("plan", Some("Alice"), &e));
        assert_eq!(doc["schema"], 1);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["environment"], "Alice");
        assert_eq!(doc["error"]["message"], "bad name");
        assert_eq!(doc["error"]["hint"], "use alice");
        assert_eq!(doc["error"]["exit_code"], 2);
    }
}
