//! What `nubes drift` finds for one environment, as data ([`EnvDrift`]), and how it is
//! read from one Terraform plan of the environment's own branch.
//!
//! Two questions, answered separately:
//! * **drifted**: objects changed outside Terraform. Terraform refreshes every managed
//!   object before planning and lists those whose real value differs from the stored
//!   one as `resource_drift` in `show -json` (the same list a `plan -refresh-only`
//!   shows; a normal plan only leaves out objects that merely moved: Terraform's
//!   `internal/command/jsonplan/plan.go`). A normal plan also answers the second
//!   question, so one plan per environment serves both.
//! * **pending**: configuration on the branch that is not applied yet, i.e. the plan's
//!   `resource_changes`.
//!
//! The two overlap: a drifted object also shows up as a planned change (back to the
//! configuration). The fast-path fingerprint of `up` separates them: when the branch's
//! rendered configuration is exactly the one last applied (same fingerprint), nothing
//! on the branch is pending, so every change the plan proposes comes from outside the
//! configuration (an object changed by hand, a state edited or applied by someone
//! else, a data source whose value moved) and is reported as drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::env_name::EnvName;
use crate::error::{Error, Result};
use crate::plan::Action;

/// The verdict of one environment, as recorded in metadata (`nubesdrift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Matches its branch.
    Clean,
    /// Objects changed outside Terraform (there may be pending changes too).
    Drifted,
    /// Only configuration on the branch not applied yet.
    Pending,
    /// No `env-<name>` branch in the repository (reap's business).
    NoBranch,
    /// Not checked: the check failed or the lock stayed held.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Drifted => "drifted",
            Verdict::Pending => "pending",
            Verdict::NoBranch => "no-branch",
            Verdict::Failed => "failed",
        }
    }
}

/// One resource that drifted or has a pending change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceChange {
    pub address: String,
    pub action: Action,
    /// The attributes whose value differs (paths such as `tags.owner`, `site[0].sku`);
    /// never the values, which may be secrets.
    pub attributes: Vec<String>,
}

/// What `drift --fix` did for an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "lowercase")]
pub enum Fix {
    /// Re-applied from its branch.
    Corrected,
    Failed(String),
    Skipped(String),
}

/// The result of checking one environment.
#[derive(Debug, Clone)]
pub struct EnvDrift {
    pub env: EnvName,
    pub verdict: Verdict,
    /// The branch it was judged against, e.g. `env-alice`.
    pub branch: String,
    /// The reference and commit read (absent with no branch).
    pub reference: Option<String>,
    pub commit: Option<String>,
    pub drifted: Vec<ResourceChange>,
    pub pending: Vec<ResourceChange>,
    /// Outputs whose value would change with the pending configuration.
    pub pending_outputs: Vec<String>,
    /// Why the check failed (already redacted) and the exit code that failure maps to
    /// (3 for a lock that stayed held).
    pub error: Option<(String, i32)>,
    /// Set by `--fix` for every environment it considered.
    pub fix: Option<Fix>,
}

impl EnvDrift {
    pub fn new(env: EnvName, branch: String) -> EnvDrift {
        EnvDrift {
            env,
            verdict: Verdict::Clean,
            branch,
            reference: None,
            commit: None,
            drifted: vec![],
            pending: vec![],
            pending_outputs: vec![],
            error: None,
            fix: None,
        }
    }

    pub fn failed(mut self, e: &Error) -> EnvDrift {
        self.verdict = Verdict::Failed;
        self.error = Some((crate::secrets::redact(&e.to_string()), e.exit_code()));
        self
    }

    /// Drift that is still there after this run (a corrected environment has none).
    pub fn drift_remains(&self) -> bool {
        self.verdict == Verdict::Drifted && self.fix != Some(Fix::Corrected)
    }

    pub fn pending_remains(&self) -> bool {
        self.has_pending() && self.fix != Some(Fix::Corrected)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.pending_outputs.is_empty()
    }

    /// A Markdown section about this environment (an issue body, or one part of the
    /// job summary): verdict, branch and commit, each drifted resource with the
    /// attributes that changed, then the pending changes.
    pub fn markdown(&self) -> String {
        let mut md = format!("#### `{}`: {}\n\n", self.env, self.verdict.as_str());
        match (&self.reference, &self.commit) {
            (Some(r), Some(c)) => md.push_str(&format!(
                "Judged against `{}` ({r}) at `{}`.\n\n",
                self.branch,
                short(c)
            )),
            _ => md.push_str(&format!(
                "There is no branch `{}` in the repository.\n\n",
                self.branch
            )),
        }
        if let Some((msg, _)) = &self.error {
            md.push_str(&format!("Not checked: {}\n\n", md_text(msg)));
        }
        if !self.drifted.is_empty() {
            md.push_str("Changed outside Terraform:\n\n");
            md.push_str(&resource_list(&self.drifted));
        }
        if self.has_pending() {
            md.push_str(&format!(
                "Pending on `{}` (not applied yet):\n\n",
                self.branch
            ));
            md.push_str(&resource_list(&self.pending));
            for o in &self.pending_outputs {
                md.push_str(&format!("- output `{}`\n", md_code(o)));
            }
            md.push('\n');
        }
        if let Some(fix) = &self.fix {
            md.push_str(&match fix {
                Fix::Corrected => format!("Corrected: re-applied from `{}`.\n\n", self.branch),
                Fix::Failed(why) => format!("Correction failed: {}\n\n", md_text(why)),
                Fix::Skipped(why) => format!("Not corrected: {}\n\n", md_text(why)),
            });
        }
        md
    }
}

fn resource_list(list: &[ResourceChange]) -> String {
    let mut md = String::new();
    for r in list {
        md.push_str(&format!("- {:?} `{}`", r.action, md_code(&r.address)));
        if !r.attributes.is_empty() {
            let attrs: Vec<String> = r
                .attributes
                .iter()
                .map(|a| format!("`{}`", md_code(a)))
                .collect();
            md.push_str(&format!(": {}", attrs.join(", ")));
        }
        md.push('\n');
    }
    md.push('\n');
    md
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// A resource address or attribute path (from the branch's configuration: `for_each`
/// keys are anything) made safe for one line of a terminal or log.
pub fn shown(s: &str) -> String {
    crate::env_name::escaped(s, 200)
}

/// Text for inside a Markdown code span (no backticks, one line).
pub fn md_code(s: &str) -> String {
    shown(s).replace('`', "'")
}

/// Text for a Markdown table cell or paragraph (one line, no table breaks).
pub fn md_text(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

// ---------------------------------------------------------------------------------
// Reading the plan.

#[derive(Deserialize)]
struct Show {
    #[serde(default)]
    resource_drift: Vec<ShowResource>,
    #[serde(default)]
    resource_changes: Vec<ShowResource>,
    #[serde(default)]
    output_changes: BTreeMap<String, ShowChange>,
}

#[derive(Deserialize)]
struct ShowResource {
    address: String,
    change: ShowChange,
}

#[derive(Deserialize)]
struct ShowChange {
    actions: Vec<String>,
    #[serde(default)]
    before: Value,
    #[serde(default)]
    after: Value,
    #[serde(default)]
    after_unknown: Value,
}

impl ShowChange {
    fn action(&self) -> Option<Action> {
        let actions: Vec<&str> = self.actions.iter().map(String::as_str).collect();
        match actions.as_slice() {
            ["create"] => Some(Action::Create),
            ["update"] => Some(Action::Update),
            ["delete"] => Some(Action::Delete),
            ["delete", "create"] | ["create", "delete"] => Some(Action::Replace),
            _ => None, // no-op, read
        }
    }
}

/// What one plan of the branch's configuration says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub drifted: Vec<ResourceChange>,
    pub pending: Vec<ResourceChange>,
    pub pending_outputs: Vec<String>,
}

impl Findings {
    pub fn verdict(&self) -> Verdict {
        if !self.drifted.is_empty() {
            Verdict::Drifted
        } else if !self.pending.is_empty() || !self.pending_outputs.is_empty() {
            Verdict::Pending
        } else {
            Verdict::Clean
        }
    }
}

/// Read `terraform show -json <plan>`. `config_applied`: the branch's rendered
/// configuration is the one last applied (see the module doc).
pub fn findings(show_json: &[u8], config_applied: bool) -> Result<Findings> {
    let show: Show = serde_json::from_slice(show_json)
        .map_err(|e| Error::failed(format!("cannot read Terraform's JSON plan: {e}")))?;
    let mut f = Findings::default();
    for r in &show.resource_drift {
        if let Some(action) = r.change.action() {
            f.drifted.push(ResourceChange {
                address: r.address.clone(),
                action,
                attributes: changed_attributes(&r.change),
            });
        }
    }
    for r in &show.resource_changes {
        let Some(action) = r.change.action() else {
            continue;
        };
        let change = ResourceChange {
            address: r.address.clone(),
            action,
            attributes: changed_attributes(&r.change),
        };
        if !config_applied {
            f.pending.push(change);
        } else if !f.drifted.iter().any(|d| d.address == r.address) {
            f.drifted.push(change);
        }
    }
    if !config_applied {
        f.pending_outputs = show
            .output_changes
            .iter()
            .filter(|(_, c)| c.actions.iter().any(|a| a != "no-op"))
            .map(|(name, _)| name.clone())
            .collect();
    }
    Ok(f)
}

/// At most this many attribute paths per resource (then `…`).
const MAX_ATTRIBUTES: usize = 20;
/// Nested deeper than this, the enclosing path is named.
const MAX_DEPTH: usize = 4;

fn changed_attributes(c: &ShowChange) -> Vec<String> {
    let mut out = Vec::new();
    // A created or deleted object changes as a whole: naming attributes adds nothing.
    if c.before.is_null() || c.after.is_null() {
        return out;
    }
    diff("", &c.before, &c.after, &c.after_unknown, 0, &mut out);
    if out.len() > MAX_ATTRIBUTES {
        out.truncate(MAX_ATTRIBUTES);
        out.push("…".into());
    }
    out
}

fn diff(
    path: &str,
    before: &Value,
    after: &Value,
    unknown: &Value,
    depth: usize,
    out: &mut Vec<String>,
) {
    if unknown == &Value::Bool(true) {
        // Known only after apply: it changes (to a value not known yet).
        out.push(path.to_string());
        return;
    }
    match (before, after) {
        (Value::Object(b), Value::Object(a)) if depth < MAX_DEPTH => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &p,
                    b.get(k).unwrap_or(&Value::Null),
                    a.get(k).unwrap_or(&Value::Null),
                    unknown.get(k).unwrap_or(&Value::Null),
                    depth + 1,
                    out,
                );
            }
        }
        (Value::Array(b), Value::Array(a)) if depth < MAX_DEPTH && b.len() == a.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                diff(
                    &format!("{path}[{i}]"),
                    bv,
                    av,
                    unknown.get(i).unwrap_or(&Value::Null),
                    depth + 1,
                    out,
                );
            }
        }
        _ if before != after && !path.is_empty() => out.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `terraform show -json` for a plan after someone changed an App
    /// Service plan's SKU and a tag in the portal (format: Terraform's
    /// `internal/command/jsonplan/plan.go`, `resource_drift` / `resource_changes`).
    const PORTAL_EDIT: &str = r#"{
      "format_version": "1.2",
      "resource_drift": [
        { "address": "azurerm_service_plan.app", "mode": "managed", "type": "azurerm_service_plan", "name": "app",
          "change": { "actions": ["update"],
            "before": { "sku_name": "B1", "tags": { "nubes-env": "alice" }, "worker_count": 1 },
            "after":  { "sku_name": "P1v3", "tags": { "nubes-env": "alice", "owner": "bob" }, "worker_count": 1 },
            "after_unknown": {} } },
        { "address": "azurerm_storage_container.gone", "mode": "managed", "type": "azurerm_storage_container", "name": "gone",
          "change": { "actions": ["delete"], "before": { "name": "x" }, "after": null, "after_unknown": {} } }
      ],
      "resource_changes": [
        { "address": "azurerm_service_plan.app",
          "change": { "actions": ["update"],
            "before": { "sku_name": "P1v3", "tags": { "nubes-env": "alice", "owner": "bob" }, "worker_count": 1 },
            "after":  { "sku_name": "B1", "tags": { "nubes-env": "alice" }, "worker_count": 1 },
            "after_unknown": {} } },
        { "address": "azurerm_storage_container.gone",
          "change": { "actions": ["create"], "before": null, "after": { "name": "x" }, "after_unknown": { "id": true } } },
        { "address": "azurerm_linux_web_app.app",
          "change": { "actions": ["update"],
            "before": { "site_config": [ { "always_on": false } ], "id": "a" },
            "after":  { "site_config": [ { "always_on": true } ] },
            "after_unknown": { "id": true } } },
        { "address": "terraform_data.same", "change": { "actions": ["no-op"], "before": {}, "after": {} } }
      ],
      "output_changes": { "url": { "actions": ["update"] }, "same": { "actions": ["no-op"] } }
    }"#;

    #[test]
    fn refresh_drift_is_drift_with_its_attributes_and_pending_is_the_rest() {
        let f = findings(PORTAL_EDIT.as_bytes(), false).unwrap();
        assert_eq!(f.verdict(), Verdict::Drifted);
        assert_eq!(
            f.drifted,
            vec![
                ResourceChange {
                    address: "azurerm_service_plan.app".into(),
                    action: Action::Update,
                    attributes: vec!["sku_name".into(), "tags.owner".into()],
                },
                ResourceChange {
                    address: "azurerm_storage_container.gone".into(),
                    action: Action::Delete,
                    attributes: vec![],
                },
            ]
        );
        let pending: Vec<_> = f.pending.iter().map(|p| p.address.as_str()).collect();
        assert_eq!(
            pending,
            [
                "azurerm_service_plan.app",
                "azurerm_storage_container.gone",
                "azurerm_linux_web_app.app"
            ]
        );
        assert_eq!(f.pending[2].attributes, ["id", "site_config[0].always_on"]);
        assert_eq!(f.pending_outputs, ["url"]);
    }

    #[test]
    fn with_the_configuration_applied_every_planned_change_is_drift_and_nothing_is_pending() {
        let f = findings(PORTAL_EDIT.as_bytes(), true).unwrap();
        let drifted: Vec<_> = f.drifted.iter().map(|p| p.address.as_str()).collect();
        assert_eq!(
            drifted,
            [
                "azurerm_service_plan.app",
                "azurerm_storage_container.gone",
                "azurerm_linux_web_app.app"
            ]
        );
        assert!(f.pending.is_empty() && f.pending_outputs.is_empty());

        let nothing = r#"{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["no-op"]}}]}"#;
        assert_eq!(
            findings(nothing.as_bytes(), false).unwrap().verdict(),
            Verdict::Clean
        );
        assert!(findings(b"not json", false).is_err());
    }

    #[test]
    fn markdown_escapes_what_it_did_not_write() {
        let mut d = EnvDrift::new(EnvName::parse("alice", "env-").unwrap(), "env-alice".into());
        d.verdict = Verdict::Drifted;
        d.reference = Some("refs/heads/env-alice".into());
        d.commit = Some("0123456789abcdef".into());
        d.drifted.push(ResourceChange {
            address: "x.y[\"a`b\"]".into(),
            action: Action::Update,
            attributes: vec!["tags.`|\n".into()],
        });
        d.fix = Some(Fix::Failed("a | b\nc".into()));
        let md = d.markdown();
        assert!(md.contains("`x.y[\"a'b\"]`"), "{md}");
        assert!(md.contains("`tags.'|\\n`"), "{md}");
        assert!(md.contains("a \\| b c"), "{md}");
        assert!(md.contains("`0123456789ab`"), "{md}");
    }
}
