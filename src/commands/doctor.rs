//! `nubes doctor`: checks, in order, what every other command depends on (the config,
//! the credential and its identity, the state storage and the operations on it,
//! Terraform, the build and deploy target, and in GitHub Actions the job's permissions)
//! and prints each result with the fix for a failure. Never prints a secret. Exit 0 when
//! every check passes, 1 otherwise.

use serde_json::{Value, json};

use crate::config::{Backend, Settings};
use crate::error::{Error, Result};
use crate::state::auth::{self, StorageAuth};

/// The storage scope every state request asks for.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, e: &Error) -> Check {
        Check {
            name,
            ok: false,
            detail: crate::secrets::redact(&e.to_string()),
            fix: e.hint_text().map(|h| crate::secrets::redact(&h)),
        }
    }

    fn json(&self) -> Value {
        json!({ "check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix })
    }
}

pub async fn run(settings: Result<Settings>, json_out: bool) -> Result<()> {
    let mut checks = Vec::new();
    match settings {
        Err(e) => checks.push(Check::fail("config", &e)),
        Ok(settings) => {
            checks.push(Check::pass(
                "config",
                match &settings.config_file {
                    Some(f) => format!("{} is valid", f.display()),
                    None => "no nubes.toml; defaults and NUBES_* variables apply".into(),
                },
            ));
            storage(&settings, &mut checks).await;
            terraform(&settings, &mut checks).await;
            build_and_deploy(&settings, &mut checks);
        }
    }
    actions(&mut checks);

    let failed = checks.iter().filter(|c| !c.ok).count();
    if json_out {
        let doc = json!({
            "ok": failed == 0,
            "checks": checks.iter().map(Check::json).collect::<Vec<_>>(),
        });
        crate::outln!("{doc:#}");
    } else {
        for c in &checks {
            crate::outln!(
                "{} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(fix) = &c.fix {
                crate::outln!("     fix: {fix}");
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(Error::failed(format!(
            "{failed} of {} checks failed",
            checks.len()
        )))
    }
}

/// Credential, then the storage: reachable, container, write/lease/read/delete.
async fn storage(settings: &Settings, checks: &mut Vec<Check>) {
    if settings.state.backend == Backend::Local {
        checks.push(Check::pass(
            "credentials",
            "not needed: [state] backend = \"local\"",
        ));
        checks.push(Check::pass(
            "state storage",
            format!("local folder {}", settings.state.local_path.display()),
        ));
        return;
    }
    let credential = async {
        let identity = auth::identity()?;
        let http = crate::state::azure::http_client()?;
        let expiry = match auth::from_env(http)? {
            StorageAuth::Sas(sas) => sas_expiry(&sas)
                .map(|se| format!("expires {se}"))
                .unwrap_or_else(|| "expiry not stated in the SAS".into()),
            StorageAuth::Token(cred, what) => {
                let token = cred.get_token(&[STORAGE_SCOPE], None).await.map_err(|e| {
                    Error::input(format!(
                        "could not get a token for the state storage ({what}): {}",
                        crate::rest::error_chain(&e)
                    ))
                    .hint(auth::token_hint(&e, what))
                })?;
                crate::secrets::register(token.token.secret());
                let at = token
                    .expires_on
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                format!("token for {STORAGE_SCOPE} expires {at}")
            }
        };
        let mut detail = identity.source.to_string();
        if let Some(t) = &identity.tenant_id {
            detail.push_str(&format!(", tenant {}", crate::env_name::printable(t)));
        }
        if let Some(c) = &identity.client_id {
            detail.push_str(&format!(", client {}", crate::env_name::printable(c)));
        }
        Ok::<_, Error>(format!("{detail}; {expiry}"))
    }
    .await;
    match credential {
        Ok(detail) => checks.push(Check::pass("credentials", detail)),
        Err(e) => {
            checks.push(Check::fail("credentials", &e));
            return;
        }
    }
    let probed = async {
        let store = crate::state::open(settings)?;
        store.probe().await
    }
    .await;
    let account = settings.state.account_url.clone().unwrap_or_default();
    match probed {
        Ok(steps) => checks.push(Check::pass(
            "state storage",
            format!(
                "{account}, container `{}`: {} permitted (probe blob removed)",
                settings.state.container,
                steps.join(", ")
            ),
        )),
        Err(e) => checks.push(Check::fail("state storage", &e)),
    }
}

/// `se=` of a SAS: when it stops working.
fn sas_expiry(sas: &str) -> Option<String> {
    url::form_urlencoded::parse(sas.as_bytes())
        .find(|(k, _)| k == "se")
        .map(|(_, v)| crate::env_name::printable(&v))
}

async fn terraform(settings: &Settings, checks: &mut Vec<Check>) {
    let found = async {
        let tf = crate::terraform::locate(settings)?;
        let out = tokio::process::Command::new(&tf.path)
            .args(["version", "-json"])
            .current_dir(&settings.root)
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                Error::input(format!("cannot run {}: {e}", tf.path.display()))
                    .hint("check [terraform] binary")
            })?;
        let version = serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["terraform_version"].as_str().map(str::to_string))
            .ok_or_else(|| {
                Error::input(format!(
                    "{} did not say its version (`version -json`)",
                    tf.path.display()
                ))
                .hint("check [terraform] binary: it must be Terraform or OpenTofu")
            })?;
        Ok::<_, Error>(format!(
            "{} {}",
            tf.path.display(),
            crate::env_name::printable(&version)
        ))
    }
    .await;
    match found {
        Ok(detail) => checks.push(Check::pass("terraform", detail)),
        Err(e) => checks.push(Check::fail("terraform", &e)),
    }
}

fn build_and_deploy(settings: &Settings, checks: &mut Vec<Check>) {
    match crate::build::detect(settings) {
        Ok(Some(plan)) => checks.push(Check::pass(
            "build",
            format!(
                "{:?}: {} -> {}",
                plan.kind,
                plan.command.as_deref().unwrap_or("nothing to run"),
                plan.artifact.display()
            ),
        )),
        Ok(None) => checks.push(Check::pass("build", "no application: infrastructure only")),
        Err(e) => checks.push(Check::fail("build", &e)),
    }
    checks.push(Check::pass(
        "deploy target",
        match &settings.deploy.target {
            Some(t) => format!("{t} ([deploy] target)"),
            None => "chosen from the Terraform outputs at deploy time".into(),
        },
    ));
}

/// In GitHub Actions: what the job's token allows, as far as the environment tells.
/// OIDC needs `permissions: id-token: write`, which is what puts
/// `ACTIONS_ID_TOKEN_REQUEST_URL` in the job's environment.
fn actions(checks: &mut Vec<Check>) {
    if std::env::var("GITHUB_ACTIONS").as_deref() != Ok("true") {
        return;
    }
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let id_token = set("ACTIONS_ID_TOKEN_REQUEST_URL") && set("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
    let wants_oidc = (set("ARM_CLIENT_ID") || set("AZURE_CLIENT_ID"))
        && !set("ARM_CLIENT_SECRET")
        && !set("AZURE_CLIENT_SECRET")
        && !set("AZURE_CREDENTIALS")
        && !set("AZURE_FEDERATED_TOKEN_FILE")
        && !set("NUBES_STORAGE_SAS");
    let token = set("GITHUB_TOKEN") || set("GH_TOKEN");
    let detail = format!(
        "id-token: {}; GITHUB_TOKEN {}",
        if id_token { "write" } else { "none" },
        if token {
            "given (reap --gone-branches, drift --issue)"
        } else {
            "not given"
        }
    );
    if wants_oidc && !id_token {
        checks.push(Check {
            name: "actions permissions",
            ok: false,
            detail: format!(
                "{detail}: a client ID without a secret means OIDC, which this job cannot use"
            ),
            fix: Some(
                "add `permissions: id-token: write` to the job (and `contents: read`)".into(),
            ),
        });
    } else {
        checks.push(Check::pass("actions permissions", detail));
    }
}
