//! Summaries of a saved Terraform plan, read from `terraform show -json <plan>`: counts of
//! add / change / destroy / replace and each changed resource with its action, as
//! text, stable JSON, and Markdown (for `$GITHUB_STEP_SUMMARY`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Replace,
    Read,
}

impl Action {
    fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
            Action::Read => "<=",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceChange {
    pub address: String,
    pub action: Action,
}

/// The stable `--json` shape of a plan summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanSummary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    /// Replacements are counted here only, not also as an add and a destroy.
    pub replace: usize,
    pub resources: Vec<ResourceChange>,
    /// Outputs whose value changes.
    pub outputs: Vec<String>,
}

#[derive(Deserialize)]
struct Show {
    #[serde(default)]
    resource_changes: Vec<ShowResource>,
    #[serde(default)]
    output_changes: std::collections::BTreeMap<String, ShowChange>,
}

#[derive(Deserialize)]
struct ShowResource {
    address: String,
    change: ShowChange,
}

#[derive(Deserialize)]
struct ShowChange {
    actions: Vec<String>,
}

impl PlanSummary {
    pub fn from_show_json(bytes: &[u8]) -> Result<Self> {
        let show: Show = serde_json::from_slice(bytes)
            .map_err(|e| Error::failed(format!("cannot read Terraform's JSON plan: {e}")))?;
        let mut s = PlanSummary::default();
        for r in show.resource_changes {
            let actions: Vec<&str> = r.change.actions.iter().map(String::as_str).collect();
            let action = match actions.as_slice() {
                ["create"] => Action::Create,
                ["update"] => Action::Update,
                ["delete"] => Action::Delete,
                ["delete", "create"] | ["create", "delete"] => Action::Replace,
                ["read"] => Action::Read,
                _ => continue, // no-op
            };
            match action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Delete => s.destroy += 1,
                Action::Replace => s.replace += 1,
                Action::Read => {}
            }
            s.resources.push(ResourceChange {
                address: r.address,
                action,
            });
        }
        s.outputs = show
            .output_changes
            .into_iter()
            .filter(|(_, c)| c.actions.iter().any(|a| a != "no-op"))
            .map(|(name, _)| name)
            .collect();
        Ok(s)
    }

    /// Whether applying the plan would change anything (resources or outputs).
    pub fn has_changes(&self) -> bool {
        self.add + self.change + self.destroy + self.replace > 0 || !self.outputs.is_empty()
    }

    pub fn counts(&self) -> String {
        format!(
            "{} to add, {} to change, {} to destroy, {} to replace",
            self.add, self.change, self.destroy, self.replace
        )
    }

    pub fn text(&self) -> String {
        if !self.has_changes() {
            return "No changes.\n".into();
        }
        let mut out = format!("Plan: {}.\n", self.counts());
        for r in &self.resources {
            out.push_str(&format!("  {:<3} {}\n", r.action.symbol(), r.address));
        }
        if !self.outputs.is_empty() {
            out.push_str(&format!(
                "  outputs changing: {}\n",
                self.outputs.join(", ")
            ));
        }
        out
    }

    pub fn markdown(&self, title: &str) -> String {
        let mut out = format!("### {title}\n\n");
        if !self.has_changes() {
            out.push_str("No changes.\n");
            return out;
        }
        out.push_str("| add | change | destroy | replace |\n|---:|---:|---:|---:|\n");
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n\n",
            self.add, self.change, self.destroy, self.replace
        ));
        if !self.resources.is_empty() {
            out.push_str("| action | resource |\n|---|---|\n");
            for r in &self.resources {
                out.push_str(&format!(
                    "| `{}` {:?} | `{}` |\n",
                    r.action.symbol(),
                    r.action,
                    r.address.replace('|', "\\|")
                ));
            }
        }
        if !self.outputs.is_empty() {
            out.push_str(&format!(
                "\nOutputs changing: {}\n",
                self.outputs
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_every_kind_of_change() {
        let show = br#"{"resource_changes":[
            {"address":"a.x","change":{"actions":["create"]}},
            {"address":"a.y","change":{"actions":["update"]}},
            {"address":"a.z","change":{"actions":["delete"]}},
            {"address":"a.w","change":{"actions":["delete","create"]}},
            {"address":"a.v","change":{"actions":["create","delete"]}},
            {"address":"a.u","change":{"actions":["no-op"]}},
            {"address":"data.d","change":{"actions":["read"]}}],
          "output_changes":{"o1":{"actions":["update"]},"o2":{"actions":["no-op"]}}}"#;
        let s = PlanSummary::from_show_json(show).unwrap();
        assert_eq!((s.add, s.change, s.destroy, s.replace), (1, 1, 1, 2));
        assert_eq!(s.resources.len(), 6);
        assert_eq!(s.outputs, ["o1"]);
        assert!(s.has_changes());
        assert!(s.text().contains("-/+ a.w"));
        let md = s.markdown("Plan for `alice`");
        assert!(
            md.contains("| 1 | 1 | 1 | 2 |") && md.contains("`a.v`"),
            "{md}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["resources"][3]["action"], "replace");
    }

    #[test]
    fn no_changes() {
        let s = PlanSummary::from_show_json(
            br#"{"resource_changes":[{"address":"a","change":{"actions":["no-op"]}}]}"#,
        )
        .unwrap();
        assert!(!s.has_changes());
        assert_eq!(s.text(), "No changes.\n");
    }
}
