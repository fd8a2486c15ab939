//! The plan comment on a pull request: its Markdown (rendered from `terraform show -json`
//! of the saved plan) and the hidden marker that finds it again.
//!
//! Layout: a first line warning loudly when anything is destroyed or replaced; the
//! counts; a table of changed resources; per resource, its attribute changes in a
//! collapsed `<details>`; output changes; the commit planned and the run. Values are
//! shown as Terraform shows them: `(sensitive value)` where `before_sensitive` /
//! `after_sensitive` mark one (never the value), `(known after apply)` where
//! `after_unknown` does. The body stays within GitHub's comment limit
//! ([`COMMENT_LIMIT`] characters: GitHub answers 422 "Body is too long" past it) by
//! leaving out attribute details first, then table rows, with a note saying so.

use serde::Deserialize;
use serde_json::Value;

use crate::env_name::EnvName;
use crate::plan::{Action, PlanSummary};

/// GitHub's limit on an issue or pull-request comment body, in characters.
pub const COMMENT_LIMIT: usize = 65_535;
/// The longest value shown in an attribute line (the rest is elided).
const VALUE_LIMIT: usize = 300;
const SENSITIVE: &str = "(sensitive value)";
const UNKNOWN: &str = "(known after apply)";

/// The hidden line that identifies the comment of `env` (one per environment).
pub fn marker(env: &EnvName) -> String {
    format!("<!-- nubes-plan env={env} -->")
}

/// Where the plan came from, for the footer.
pub struct Footer<'a> {
    pub commit: Option<&'a str>,
    pub run_url: Option<&'a str>,
}

#[derive(Deserialize)]
struct Show {
    #[serde(default)]
    resource_changes: Vec<ShowResource>,
    #[serde(default)]
    output_changes: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct ShowResource {
    address: String,
    change: Value,
}

/// The comment body for `summary`, with attribute details from `show` (the `show -json`
/// bytes; unreadable ones give a body without details).
pub fn render(env: &EnvName, summary: &PlanSummary, show: &[u8], footer: &Footer) -> String {
    render_within(env, summary, show, footer, COMMENT_LIMIT)
}

/// [`render`] with every detail, however long (for the job summary).
pub fn render_full(env: &EnvName, summary: &PlanSummary, show: &[u8], footer: &Footer) -> String {
    render_within(env, summary, show, footer, usize::MAX)
}

fn render_within(
    env: &EnvName,
    summary: &PlanSummary,
    show: &[u8],
    footer: &Footer,
    limit: usize,
) -> String {
    let parsed: Option<Show> = serde_json::from_slice(show).ok();
    let mut details: Vec<String> = Vec::new();
    if let Some(show) = &parsed {
        for r in &summary.resources {
            if let Some(sr) = show
                .resource_changes
                .iter()
                .find(|s| s.address == r.address)
            {
                details.push(resource_details(&r.address, r.action, &sr.change));
            }
        }
    }
    let outputs = parsed
        .as_ref()
        .map(|s| output_rows(&s.output_changes))
        .unwrap_or_default();
    fit(env, summary, &details, &outputs, footer, limit)
}

/// Assemble within [`COMMENT_LIMIT`]: everything if it fits, else the most details that
/// do (in table order), else the table cut too, each cut said in a note.
fn fit(
    env: &EnvName,
    summary: &PlanSummary,
    details: &[String],
    outputs: &[String],
    footer: &Footer,
    limit: usize,
) -> String {
    let rows: Vec<String> = summary
        .resources
        .iter()
        .map(|r| format!("| {:?} | {} |\n", r.action, code(&r.address)))
        .collect();
    let head = header(env, summary);
    let tail = tail(env, outputs, footer);
    let note_room = 400;
    let len = |s: &str| s.chars().count();
    let fixed = len(&head) + len(&tail) + note_room;
    let table_len: usize = rows.iter().map(|r| len(r)).sum::<usize>() + 40;
    let mut kept_rows = rows.len();
    if fixed.saturating_add(table_len) > limit {
        let mut used = fixed + 40;
        kept_rows = 0;
        for r in &rows {
            if used.saturating_add(len(r)) > limit {
                break;
            }
            used += len(r);
            kept_rows += 1;
        }
    }
    let mut budget =
        limit.saturating_sub(fixed + rows[..kept_rows].iter().map(|r| len(r)).sum::<usize>() + 40);
    let mut kept_details = Vec::new();
    if kept_rows == rows.len() {
        for d in details {
            let l = len(d);
            if l > budget {
                break;
            }
            budget -= l;
            kept_details.push(d.as_str());
        }
    }
    let mut out = head;
    if !rows.is_empty() {
        out.push_str("| action | resource |\n|---|---|\n");
        for r in &rows[..kept_rows] {
            out.push_str(r);
        }
        out.push('\n');
    }
    for d in &kept_details {
        out.push_str(d);
    }
    let summary_link = footer
        .run_url
        .map(|u| format!(" in the [job summary]({u})"))
        .unwrap_or_else(|| " in the job summary".into());
    if kept_rows < rows.len() {
        out.push_str(&format!(
            "\n> [!NOTE]\n> {} of {} changed resources and every attribute detail are left out here: \
             the comment would be longer than GitHub's {COMMENT_LIMIT} characters. The full plan is{summary_link}.\n",
            rows.len() - kept_rows,
            rows.len()
        ));
    } else if kept_details.len() < details.len() {
        out.push_str(&format!(
            "\n> [!NOTE]\n> Attribute details of {} of {} changed resources are left out here: the \
             comment would be longer than GitHub's {COMMENT_LIMIT} characters. The full plan is{summary_link}.\n",
            details.len() - kept_details.len(),
            details.len()
        ));
    }
    out.push_str(&tail);
    out
}

fn header(env: &EnvName, s: &PlanSummary) -> String {
    let mut out = String::new();
    if s.destroy + s.replace > 0 {
        let mut what = Vec::new();
        if s.destroy > 0 {
            what.push(format!("destroys {}", count(s.destroy, "resource")));
        }
        if s.replace > 0 {
            what.push(format!("replaces {}", count(s.replace, "resource")));
        }
        out.push_str(&format!(
            "> [!CAUTION]\n> **This plan {} in `{env}`.** Check the resources marked Delete or Replace below before merging.\n\n",
            what.join(" and ")
        ));
    }
    out.push_str(&format!("### nubes plan for `{env}`\n\n"));
    if s.has_changes() {
        out.push_str(&format!("**Plan: {}.**\n\n", s.counts()));
    } else {
        out.push_str("**No changes.** Merging this pull request changes no infrastructure.\n\n");
    }
    out
}

fn tail(env: &EnvName, outputs: &[String], footer: &Footer) -> String {
    let mut out = String::new();
    if !outputs.is_empty() {
        out.push_str("\n#### Output changes\n\n| output | change |\n|---|---|\n");
        for o in outputs {
            out.push_str(o);
        }
    }
    out.push('\n');
    let mut line = Vec::new();
    if let Some(c) = footer.commit {
        line.push(format!("Planned commit `{}`", printable_code(c)));
    }
    if let Some(u) = footer.run_url {
        line.push(format!("[run]({u})"));
    }
    if !line.is_empty() {
        out.push_str(&format!("<sub>{}</sub>\n", line.join(" · ")));
    }
    out.push('\n');
    out.push_str(&marker(env));
    out.push('\n');
    out
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Text safe inside a Markdown code span in a table cell: no backticks, pipes escaped,
/// control characters shown escaped.
fn printable_code(s: &str) -> String {
    shown(s).replace('`', "'").replace('|', "\\|")
}

/// Control characters escaped; long enough for any resource address (module paths and
/// keys), unlike messages' [`crate::env_name::printable`].
fn shown(s: &str) -> String {
    crate::env_name::escaped(s, 1000)
}

fn code(s: &str) -> String {
    format!("`{}`", printable_code(s))
}

/// One resource's `<details>` with its attribute changes as a diff block.
fn resource_details(address: &str, action: Action, change: &Value) -> String {
    let before = masked(change.get("before"), change.get("before_sensitive"), None);
    let after = masked(
        change.get("after"),
        change.get("after_sensitive"),
        change.get("after_unknown"),
    );
    let mut lines = Vec::new();
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut names = keys(&before);
    for k in keys(&after) {
        if !names.contains(&k) {
            names.push(k);
        }
    }
    names.sort();
    let get = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    match (before.is_object(), after.is_object()) {
        (true, true) => {
            for k in &names {
                let (b, a) = (get(&before, k), get(&after, k));
                if b == a {
                    continue;
                }
                let line = match (b.is_null(), a.is_null()) {
                    (true, false) => format!("+ {k} = {}", show_value(&a)),
                    (false, true) => format!("- {k} = {}", show_value(&b)),
                    _ => format!("! {k} = {} -> {}", show_value(&b), show_value(&a)),
                };
                lines.push(line);
            }
        }
        (false, true) => {
            for k in &names {
                let a = get(&after, k);
                if !a.is_null() {
                    lines.push(format!("+ {k} = {}", show_value(&a)));
                }
            }
        }
        (true, false) => {
            for k in &names {
                let b = get(&before, k);
                if !b.is_null() {
                    lines.push(format!("- {k} = {}", show_value(&b)));
                }
            }
        }
        (false, false) => {
            if before != after {
                lines.push(format!(
                    "! {} -> {}",
                    show_value(&before),
                    show_value(&after)
                ));
            }
        }
    }
    if let Some(paths) = change.get("replace_paths").and_then(Value::as_array)
        && !paths.is_empty()
    {
        let shown: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        lines.push(format!("# forces replacement: {}", shown.join(", ")));
    }
    if lines.is_empty() {
        lines.push("# no attribute changes".into());
    }
    let body = lines.join("\n").replace("```", "'''");
    format!(
        "<details><summary>{:?} <code>{}</code></summary>\n\n```diff\n{body}\n```\n\n</details>\n",
        action,
        html_text(address)
    )
}

/// Text safe inside HTML (the `<summary>`).
fn html_text(s: &str) -> String {
    shown(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `value` with every sensitive part replaced by the [`SENSITIVE`] marker and every
/// unknown part by [`UNKNOWN`], following the structure of Terraform's
/// `*_sensitive` / `after_unknown` documents (`true` at a node marks all of it).
fn masked(value: Option<&Value>, sensitive: Option<&Value>, unknown: Option<&Value>) -> Value {
    if sensitive == Some(&Value::Bool(true)) {
        return Value::String(marker_value(SENSITIVE));
    }
    if unknown == Some(&Value::Bool(true)) {
        return Value::String(marker_value(UNKNOWN));
    }
    let value = value.cloned().unwrap_or(Value::Null);
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            let mut keys: Vec<String> = map.keys().cloned().collect();
            if let Some(u) = unknown.and_then(Value::as_object) {
                keys.extend(u.keys().filter(|k| !map.contains_key(*k)).cloned());
            }
            for k in keys {
                let v = masked(
                    map.get(&k),
                    sensitive.and_then(|s| s.get(&k)),
                    unknown.and_then(|u| u.get(&k)),
                );
                out.insert(k, v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    masked(
                        Some(v),
                        sensitive.and_then(|s| s.get(i)),
                        unknown.and_then(|u| u.get(i)),
                    )
                })
                .collect(),
        ),
        Value::Null => match unknown {
            Some(Value::Object(_)) | Some(Value::Array(_)) => Value::String(marker_value(UNKNOWN)),
            _ => Value::Null,
        },
        other => other,
    }
}

/// Markers are strings no JSON value from Terraform starts with (a NUL), so they are told
/// from real strings when shown.
fn marker_value(text: &str) -> String {
    format!("\u{0}{text}")
}

fn show_value(v: &Value) -> String {
    let text = match v {
        Value::String(s) if s.starts_with('\u{0}') => s[1..].to_string(),
        other => {
            let json = other.to_string();
            // Markers nested inside objects and lists: unquote them.
            json.replace(&format!("\"\\u0000{SENSITIVE}\""), SENSITIVE)
                .replace(&format!("\"\\u0000{UNKNOWN}\""), UNKNOWN)
        }
    };
    if text.chars().count() > VALUE_LIMIT {
        let cut: String = text.chars().take(VALUE_LIMIT).collect();
        format!("{cut}… ({} characters)", text.chars().count())
    } else {
        text
    }
}

/// Table rows of the outputs that change.
fn output_rows(outputs: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut rows = Vec::new();
    for (name, change) in outputs {
        let actions: Vec<&str> = change
            .get("actions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if actions.is_empty() || actions == ["no-op"] {
            continue;
        }
        let before = masked(change.get("before"), change.get("before_sensitive"), None);
        let after = masked(
            change.get("after"),
            change.get("after_sensitive"),
            change.get("after_unknown"),
        );
        let shown = match actions.as_slice() {
            ["create"] => format!("+ {}", show_value(&after)),
            ["delete"] => format!("- {}", show_value(&before)),
            _ => format!("{} -> {}", show_value(&before), show_value(&after)),
        };
        rows.push(format!("| {} | {} |\n", code(name), code(&shown)));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> EnvName {
        EnvName::parse("prod", "env-").unwrap()
    }

    const SHOW: &str = r#"{"resource_changes":[
      {"address":"terraform_data.db","change":{"actions":["update"],
        "before":{"input":{"password":"hunter2-old","size":1},"id":"x"},
        "after":{"input":{"password":"hunter2-new","size":2},"id":"x"},
        "before_sensitive":{"input":{"password":true}},
        "after_sensitive":{"input":{"password":true}},
        "after_unknown":{}}},
      {"address":"terraform_data.gone","change":{"actions":["delete"],
        "before":{"input":"bye","id":"y"},"after":null,"before_sensitive":{},"after_sensitive":false}},
      {"address":"terraform_data.new","change":{"actions":["create"],
        "before":null,"after":{"input":"hi"},"after_unknown":{"id":true,"output":true},
        "before_sensitive":false,"after_sensitive":{}}}],
      "output_changes":{"secret":{"actions":["update"],"before":"s3cr3t-a","after":"s3cr3t-b",
        "before_sensitive":true,"after_sensitive":true},
        "url":{"actions":["create"],"before":null,"after":"https://x","after_unknown":false}}}"#;

    fn summary() -> PlanSummary {
        PlanSummary::from_show_json(SHOW.as_bytes()).unwrap()
    }

    #[test]
    fn the_comment_warns_first_masks_sensitive_values_and_ends_with_its_marker() {
        let body = render(
            &env(),
            &summary(),
            SHOW.as_bytes(),
            &Footer {
                commit: Some("abc123"),
                run_url: Some("https://github.com/o/r/actions/runs/1"),
            },
        );
        assert!(
            body.starts_with("> [!CAUTION]\n> **This plan destroys 1 resource in `prod`.**"),
            "{body}"
        );
        assert!(
            !body.contains("hunter2") && !body.contains("s3cr3t"),
            "{body}"
        );
        assert!(
            body.contains("! input = {\"password\":(sensitive value),\"size\":1} -> {\"password\":(sensitive value),\"size\":2}"),
            "{body}"
        );
        assert!(body.contains("+ id = (known after apply)"), "{body}");
        assert!(body.contains("- input = \"bye\""), "{body}");
        assert!(
            body.contains("| `secret` | `(sensitive value) -> (sensitive value)` |"),
            "{body}"
        );
        assert!(body.contains("Planned commit `abc123`"), "{body}");
        assert!(body.trim_end().ends_with(&marker(&env())));
    }

    #[test]
    fn a_comment_too_long_loses_details_first_with_a_note() {
        let mut changes = Vec::new();
        for i in 0..400 {
            changes.push(format!(
                r#"{{"address":"terraform_data.r{i}","change":{{"actions":["create"],"before":null,"after":{{"input":"{}"}},"after_unknown":{{}}}}}}"#,
                "v".repeat(250)
            ));
        }
        let show = format!(r#"{{"resource_changes":[{}]}}"#, changes.join(","));
        let s = PlanSummary::from_show_json(show.as_bytes()).unwrap();
        let footer = Footer {
            commit: None,
            run_url: Some("https://github.com/o/r/actions/runs/1"),
        };
        let body = render(&env(), &s, show.as_bytes(), &footer);
        assert!(body.chars().count() <= COMMENT_LIMIT, "{}", body.len());
        assert!(body.contains("`terraform_data.r399`"), "every row kept");
        assert!(body.contains("are left out here"), "note");
        assert!(body.contains("[job summary](https://github.com/o/r/actions/runs/1)"));
        assert!(body.trim_end().ends_with(&marker(&env())));
        // No details kept → the rows go too, with their own note, when even they don't fit.
        let long_name = "x".repeat(200);
        let mut many = Vec::new();
        for i in 0..400 {
            many.push(format!(
                r#"{{"address":"terraform_data.{long_name}{i}","change":{{"actions":["create"],"before":null,"after":{{}}}}}}"#
            ));
        }
        let show = format!(r#"{{"resource_changes":[{}]}}"#, many.join(","));
        let s = PlanSummary::from_show_json(show.as_bytes()).unwrap();
        let body = render(&env(), &s, show.as_bytes(), &footer);
        assert!(body.chars().count() <= COMMENT_LIMIT);
        assert!(body.contains("changed resources and every attribute detail are left out"));
    }

    #[test]
    fn no_changes_says_so() {
        let body = render(
            &env(),
            &PlanSummary::default(),
            b"{}",
            &Footer {
                commit: None,
                run_url: None,
            },
        );
        assert!(
            body.contains("**No changes.**") && !body.contains("CAUTION"),
            "{body}"
        );
    }
}
