//! What `nubes bootstrap` prints once the state storage exists, computed from the
//! module's `terraform output -json`: the `[state]` section for nubes.toml, the GitHub
//! repository variables (identifiers, not secrets: with OIDC nothing secret is stored),
//! the role assignments the CI identity needs, and the federated credentials that let
//! GitHub Actions log in.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

use super::options::Options;

/// The module's outputs nubes reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    pub resource_group: String,
    pub account_name: String,
    pub account_id: String,
    pub account_url: String,
    pub container: String,
}

#[derive(Deserialize)]
struct Output {
    value: Value,
}

impl Outputs {
    /// Parse `terraform output -json` (`{"name": {"sensitive": .., "type": .., "value": ..}}`).
    pub fn from_json(bytes: &[u8]) -> Result<Outputs> {
        let all: std::collections::BTreeMap<String, Output> = serde_json::from_slice(bytes)
            .map_err(|e| {
                Error::failed(format!(
                    "cannot read the bootstrap module's outputs (terraform output -json): {e}"
                ))
            })?;
        let get = |name: &str| -> Result<String> {
            match all.get(name).map(|o| &o.value) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(Error::failed(format!(
                    "the bootstrap module's output `{name}` is missing or not a string"
                ))),
            }
        };
        Ok(Outputs {
            resource_group: get("resource_group")?,
            account_name: get("account_name")?,
            account_id: get("account_id")?,
            account_url: get("account_url")?.trim_end_matches('/').to_string(),
            container: get("container")?,
        })
    }
}

/// A GitHub repository variable to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    /// `None` when not known here (printed as a placeholder, never set).
    pub value: Option<String>,
    pub what: &'static str,
}

/// The repository variables the generated workflow reads.
pub fn variables(o: &Options) -> Vec<Variable> {
    vec![
        Variable {
            name: "AZURE_CLIENT_ID",
            value: o.client_id.clone(),
            what: "client ID of the app registration (or managed identity) GitHub Actions logs in as",
        },
        Variable {
            name: "AZURE_TENANT_ID",
            value: o.tenant_id.clone(),
            what: "its Entra ID tenant",
        },
        Variable {
            name: "AZURE_SUBSCRIPTION_ID",
            value: Some(o.subscription.clone()),
            what: "the subscription environments are created in",
        },
    ]
}

/// A `gh variable set` command line for display (values are identifiers; quoted only
/// when they would need it).
pub fn gh_command(var: &Variable, repo: Option<&str>) -> String {
    let value = var
        .value
        .clone()
        .unwrap_or_else(|| format!("<{}>", var.name.to_ascii_lowercase().replace('_', "-")));
    let mut cmd = format!("gh variable set {} --body {}", var.name, shell_word(&value));
    if let Some(repo) = repo {
        let _ = write!(cmd, " --repo {}", shell_word(repo));
    }
    cmd
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `[state]` section for nubes.toml.
pub fn state_section(out: &Outputs, key: &str) -> String {
    format!(
        "[state]\nbackend = \"azure\"\naccount_url = {}\ncontainer = {}\nkey = {}\n",
        toml_string(&out.account_url),
        toml_string(&out.container),
        toml_string(key)
    )
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Everything printed after a successful bootstrap.
pub fn render(out: &Outputs, o: &Options) -> String {
    let mut text = String::new();
    let repo = o.repo.as_deref();
    let repo_shown = repo.unwrap_or("<owner>/<repo>");
    let client = o.client_id.as_deref().unwrap_or("<client-id>");
    let sub = &o.subscription;

    let _ = writeln!(
        text,
        "State storage ready: account {} in resource group {}, container {}.\n",
        out.account_name, out.resource_group, out.container
    );
    let _ = writeln!(text, "1. Put this in nubes.toml:\n");
    for line in state_section(out, &o.key).lines() {
        let _ = writeln!(text, "    {line}");
    }

    let _ = writeln!(
        text,
        "\n2. Set these GitHub repository variables (Settings > Secrets and variables > Actions >\n   \
         Variables). They are identifiers, not secrets: with OpenID Connect there is no\n   \
         password to store.\n"
    );
    for var in variables(o) {
        let value = var.value.as_deref().unwrap_or("(not known here)");
        let _ = writeln!(text, "    {:<22} {value}  -- {}", var.name, var.what);
    }
    let _ = writeln!(text, "\n   With the GitHub CLI:\n");
    for var in variables(o) {
        let _ = writeln!(text, "    {}", gh_command(&var, repo));
    }

    let _ = writeln!(
        text,
        "\n3. Let that identity use the state and create environments (Owner or User Access\n   \
         Administrator may grant roles):\n"
    );
    let _ = writeln!(
        text,
        "    az role assignment create --assignee {client} --role \"Storage Blob Data Contributor\" --scope {}",
        out.account_id
    );
    let _ = writeln!(
        text,
        "    az role assignment create --assignee {client} --role Contributor --scope /subscriptions/{sub}"
    );
    let _ = writeln!(
        text,
        "\n   Contributor on the subscription lets environments create their resource groups;\n   \
         scope it to resource groups you create yourself if you prefer. You need Storage Blob\n   \
         Data Contributor too to run nubes from your own shell (shared keys are disabled)."
    );

    let _ = writeln!(
        text,
        "\n4. Trust GitHub Actions of {repo_shown} (OIDC federated credentials). Entra ID matches\n   \
         a credential's subject exactly: one per branch, at most 20 per app. Pull requests, and\n   \
         the default branch (branch deletions, scheduled and manual runs start there):\n"
    );
    let branch = &o.default_branch;
    let credentials = [
        (
            "nubes-pull-requests".to_string(),
            format!("repo:{repo_shown}:pull_request"),
        ),
        (
            format!("nubes-{}", credential_name(branch)),
            format!("repo:{repo_shown}:ref:refs/heads/{branch}"),
        ),
        (
            "nubes-env-<name>".to_string(),
            format!("repo:{repo_shown}:ref:refs/heads/env-<name>"),
        ),
    ];
    for (i, (name, subject)) in credentials.iter().enumerate() {
        if i == 2 {
            let _ = writeln!(text, "\n   and one for each environment branch:\n");
        }
        let _ = writeln!(
            text,
            "    az ad app federated-credential create --id {client} --parameters {}",
            shell_word(&credential_json(name, subject))
        );
    }
    let _ = writeln!(
        text,
        "\n   To cover every env-* branch with one credential instead, use a flexible federated\n   identity credential \
         (preview; app registrations only), created through Microsoft Graph:\n"
    );
    let _ = writeln!(
        text,
        "    az rest --method post --url \"https://graph.microsoft.com/beta/applications(appId='{client}')/federatedIdentityCredentials\" --body {}",
        shell_word(&flexible_json(repo_shown))
    );
    let _ = writeln!(
        text,
        "\n   Jobs that use a GitHub environment present `repo:{repo_shown}:environment:<name>`\n   \
         instead; see README.md, \"nubes bootstrap\"."
    );
    text
}

/// A credential name from a branch: letters, digits, `-` and `_`.
fn credential_name(branch: &str) -> String {
    branch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn credential_json(name: &str, subject: &str) -> String {
    serde_json::json!({
        "name": name,
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": subject,
        "audiences": ["api://AzureADTokenExchange"],
    })
    .to_string()
}

fn flexible_json(repo: &str) -> String {
    serde_json::json!({
        "name": "nubes-env-branches",
        "issuer": "https://token.actions.githubusercontent.com",
        "audiences": ["api://AzureADTokenExchange"],
        "claimsMatchingExpression": {
            "value": format!("claims['sub'] matches 'repo:{repo}:ref:refs/heads/env-*'"),
            "languageVersion": 1,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `terraform output -json` of the module, as Terraform prints it.
    pub const OUTPUT_JSON: &str = r#"{
  "account_id": {"sensitive": false, "type": "string",
    "value": "/subscriptions/6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f/resourceGroups/rg-demo-tfstate/providers/Microsoft.Storage/storageAccounts/stdemo1a2b3c4d"},
  "account_name": {"sensitive": false, "type": "string", "value": "stdemo1a2b3c4d"},
  "account_url": {"sensitive": false, "type": "string", "value": "https://stdemo1a2b3c4d.blob.core.windows.net"},
  "container": {"sensitive": false, "type": "string", "value": "tfstate"},
  "resource_group": {"sensitive": false, "type": "string", "value": "rg-demo-tfstate"}
}"#;

    fn options() -> Options {
        Options {
            subscription: "6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f".into(),
            resource_group: "rg-demo-tfstate".into(),
            account: "stdemo1a2b3c4d".into(),
            account_explicit: false,
            location: Some("westeurope".into()),
            location_from: "--location",
            container: "tfstate".into(),
            soft_delete_days: 7,
            replication: None,
            repo: Some("octo-org/demo".into()),
            default_branch: "main".into(),
            client_id: Some("11111111-2222-3333-4444-555555555555".into()),
            tenant_id: None,
            key: "{env}.terraform.tfstate".into(),
            project: Some("demo".into()),
            plan_only: false,
            yes: false,
        }
    }

    #[test]
    fn state_section_is_valid_toml_nubes_accepts() {
        let out = Outputs::from_json(OUTPUT_JSON.as_bytes()).expect("outputs");
        let section = state_section(&out, "{env}.terraform.tfstate");
        let dir = tempfile::tempdir().expect("tempdir");
        fs_err::write(dir.path().join("nubes.toml"), &section).expect("write");
        let settings =
            crate::config::load(dir.path(), None, &Default::default()).expect("nubes accepts it");
        assert_eq!(settings.state.backend, crate::config::Backend::Azure);
        assert_eq!(
            settings.state.account_url.as_deref(),
            Some("https://stdemo1a2b3c4d.blob.core.windows.net")
        );
        assert_eq!(settings.state.container, "tfstate");
        assert_eq!(settings.state.key, "{env}.terraform.tfstate");
    }

    #[test]
    fn report_names_variables_roles_and_credentials() {
        let out = Outputs::from_json(OUTPUT_JSON.as_bytes()).expect("outputs");
        let text = render(&out, &options());
        for expected in [
            "    [state]",
            "    account_url = \"https://stdemo1a2b3c4d.blob.core.windows.net\"",
            "gh variable set AZURE_CLIENT_ID --body 11111111-2222-3333-4444-555555555555 --repo octo-org/demo",
            "gh variable set AZURE_TENANT_ID --body '<azure-tenant-id>' --repo octo-org/demo",
            "gh variable set AZURE_SUBSCRIPTION_ID --body 6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f",
            "--role \"Storage Blob Data Contributor\" --scope /subscriptions/6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f/resourceGroups/rg-demo-tfstate/providers/Microsoft.Storage/storageAccounts/stdemo1a2b3c4d",
            "--role Contributor --scope /subscriptions/6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f",
            r#""subject":"repo:octo-org/demo:pull_request""#,
            r#""name":"nubes-main","issuer":"https://token.actions.githubusercontent.com","subject":"repo:octo-org/demo:ref:refs/heads/main""#,
            r#""subject":"repo:octo-org/demo:ref:refs/heads/env-<name>""#,
            r#"--body '{"name":"nubes-env-branches","issuer":"https://token.actions.githubusercontent.com","audiences":["api://AzureADTokenExchange"],"claimsMatchingExpression":{"value":"claims['\''sub'\''] matches '\''repo:octo-org/demo:ref:refs/heads/env-*'\''","languageVersion":1}}'"#,
            "repo:octo-org/demo:environment:<name>",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn printed_json_survives_the_shell() {
        // What a user pastes goes through sh: the quoted body must come out as the JSON.
        let body = flexible_json("octo-org/demo");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_word(&body)))
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), body);
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            parsed["claimsMatchingExpression"]["value"],
            "claims['sub'] matches 'repo:octo-org/demo:ref:refs/heads/env-*'"
        );
    }

    #[test]
    fn unknown_values_are_placeholders() {
        let out = Outputs::from_json(OUTPUT_JSON.as_bytes()).expect("outputs");
        let mut o = options();
        o.repo = None;
        o.client_id = None;
        let text = render(&out, &o);
        assert!(text.contains("--assignee <client-id>"), "{text}");
        assert!(text.contains("repo:<owner>/<repo>:pull_request"), "{text}");
        assert!(!text.contains("--repo"), "{text}");
    }

    #[test]
    fn missing_outputs_are_an_error_not_a_panic() {
        let e = Outputs::from_json(br#"{"account_name": {"value": "x"}}"#).expect_err("missing");
        assert!(e.to_string().contains("resource_group"), "{e}");
        assert!(Outputs::from_json(b"not json").is_err());
        assert!(Outputs::from_json(br#"{"resource_group": {"value": 3}}"#).is_err());
    }
}
