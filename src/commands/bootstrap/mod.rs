//! `nubes bootstrap`: create, or adopt, the storage that keeps every environment's state.
//!
//! The steps, each finished before the next starts:
//! 1. resolve the flags ([`options`]; exit 2 on anything Azure would refuse);
//! 2. ask Resource Manager what already exists ([`azure`]), refusing (exit 2) what would
//!    need the account replaced;
//! 3. render the embedded module with its variables and an import block per existing
//!    resource into `.nubes/bootstrap/` ([`module`]);
//! 4. `terraform init`, `plan`, and (after confirmation when Azure would change) `apply`;
//! 5. print the `[state]` section, the GitHub variables, roles and federated credentials
//!    from the module's outputs ([`report`]), and offer to set the variables with `gh`
//!    ([`github`]).
//!
//! The module's own state is not kept: every run imports what exists, so a second run
//! plans no change and says so, and nothing of the state (which holds the account's
//! keys) outlives the run.

pub mod azure;
pub mod github;
pub mod module;
pub mod options;
pub mod report;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::Deserialize;

use crate::cli::BootstrapArgs;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::terraform::{self, Io, Terraform};

use azure::{Existing, Target};
use options::Options;

pub async fn run(settings: &Settings, args: &BootstrapArgs) -> Result<()> {
    let o = Options::resolve(args, settings, |name| std::env::var(name).ok())?;
    let tf = terraform::locate(settings)?;
    let arm = crate::arm::Arm::from_env_for(&o.subscription)?;
    tracing::info!(
        "looking for the state storage in subscription {} (resource group `{}`, account `{}`)",
        o.subscription,
        o.resource_group,
        o.account
    );
    let existing = azure::discover(&arm, &o).await?;
    let target = azure::reconcile(&o, &existing)?;
    let steps = steps(&o, &existing, &target);
    if o.plan_only {
        crate::out!("{steps}");
    } else {
        for line in steps.lines().skip(1) {
            tracing::info!("{}", line.trim());
        }
    }

    let dir = module::workdir(&settings.root);
    let imports = module::imports(&o, &existing);
    module::render(&dir, &module::variables(&o, &target, &existing), &imports)?;
    let result = apply(&tf, &dir, &o).await;
    // The bootstrap state is rebuilt by import on every run; none is kept.
    let cleaned = module::remove_state(&dir);
    let Some(outputs) = result? else {
        return cleaned;
    };
    cleaned?;

    crate::out!("{}", report::render(&outputs, &o));
    offer_gh(&o).await
}

/// What will happen to each resource, as a short table.
fn steps(o: &Options, existing: &Existing, target: &Target) -> String {
    let group_where = target.group_location.as_deref().unwrap_or(&target.location);
    let group = match &existing.group_location {
        Some(l) => format!("exists in {l}: adopt"),
        None => format!("create in {group_where}"),
    };
    let account = match &existing.account {
        Some(_) => format!(
            "exists in {}: adopt, and enforce the settings ({} redundancy)",
            target.location, target.replication
        ),
        None => format!(
            "create in {} ({} redundancy, infrastructure encryption)",
            target.location, target.replication
        ),
    };
    let container = if existing.container {
        "exists: adopt, and make sure it is private".to_string()
    } else {
        "create (private)".to_string()
    };
    format!(
        "State storage in subscription {}:\n  resource group   {:<24} {group}\n  storage account  {:<24} {account}\n  container        {:<24} {container}\n  soft delete      {} days for blobs and containers, blob versioning on\n",
        o.subscription, o.resource_group, o.account, o.container, o.soft_delete_days
    )
}

/// init, plan, confirm, apply, outputs. `None` with `--plan`.
async fn apply(tf: &Terraform, dir: &Path, o: &Options) -> Result<Option<report::Outputs>> {
    let env = [
        ("TF_IN_AUTOMATION", "1".to_string()),
        ("TF_INPUT", "0".to_string()),
    ];
    tracing::info!(
        "terraform init in {} (the first run downloads the azurerm provider)",
        dir.display()
    );
    let what = "terraform init of the bootstrap module";
    let (outcome, _, stderr) = terraform::run_captured(
        tf,
        dir,
        &args(&["init", "-input=false", "-no-color"]),
        &env,
        what,
        Io::Silent,
    )
    .await?;
    if !outcome.status.success() {
        return Err(init_error(&String::from_utf8_lossy(&stderr)));
    }
    let plan_args = args(&[
        "plan",
        "-input=false",
        &format!("-out={}", module::PLAN_FILE),
    ]);
    let what = "terraform plan of the state storage";
    let (outcome, _) = terraform::run_with(tf, dir, &plan_args, &env, what, Io::Stream).await?;
    if !outcome.status.success() {
        return Err(Error::failed(format!("{what} failed (exit {})", outcome.code()))
            .hint("Terraform's own error is above; `az login` (or ARM_* credentials) must reach the subscription"));
    }
    let what = "terraform show of the bootstrap plan";
    let (outcome, json) = terraform::run_with(
        tf,
        dir,
        &args(&["show", "-json", module::PLAN_FILE]),
        &env,
        what,
        Io::Capture,
    )
    .await?;
    if !outcome.status.success() {
        return Err(Error::failed(format!(
            "{what} failed (exit {})",
            outcome.code()
        )));
    }
    let plan = Changes::from_show_json(&json)?;
    if o.plan_only {
        crate::outln!("Terraform: {}", plan.text());
        return Ok(None);
    }
    if plan.changes_azure() {
        confirm(o, &plan)?;
    } else {
        tracing::info!(
            "nothing to change in Azure: the state storage already exists with these settings \
             ({} existing resources adopted into a throwaway state)",
            plan.import
        );
    }
    let what = "terraform apply of the state storage";
    let apply_args = args(&["apply", "-input=false", "-auto-approve", module::PLAN_FILE]);
    let (outcome, _) = terraform::run_with(tf, dir, &apply_args, &env, what, Io::Stream).await?;
    if !outcome.status.success() {
        return Err(Error::failed(format!("{what} failed (exit {})", outcome.code()))
            .hint("Terraform's own error is above; run `nubes bootstrap` again once it is fixed: what was created is adopted"));
    }
    let what = "terraform output of the state storage";
    let (outcome, json) = terraform::run_with(
        tf,
        dir,
        &args(&["output", "-json"]),
        &env,
        what,
        Io::Capture,
    )
    .await?;
    if !outcome.status.success() {
        return Err(Error::failed(format!(
            "{what} failed (exit {})",
            outcome.code()
        )));
    }
    if plan.changes_azure() {
        tracing::info!("state storage {}", plan.text());
    }
    report::Outputs::from_json(&json).map(Some)
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// A failed `terraform init` as a clear error: the usual cause here is a provider that
/// cannot be downloaded.
pub fn init_error(stderr: &str) -> Error {
    let excerpt = error_excerpt(stderr);
    let provider = [
        "Failed to query available provider packages",
        "Failed to install provider",
        "could not connect to registry",
        "not found in any of the search locations",
        "Failed to download",
    ]
    .iter()
    .any(|s| stderr.contains(s));
    if provider {
        Error::failed(format!(
            "Terraform could not install the azurerm provider (hashicorp/azurerm) that the \
             bootstrap module needs: {excerpt}"
        ))
        .hint(
            "`terraform init` downloads it from registry.terraform.io and releases.hashicorp.com: \
             check the network and proxy (HTTPS_PROXY), or point Terraform at a provider mirror \
             (provider_installation in the CLI configuration, TF_CLI_CONFIG_FILE) or a \
             TF_PLUGIN_CACHE_DIR that holds it; nothing was changed in Azure",
        )
    } else {
        Error::failed(format!(
            "terraform init of the bootstrap module failed: {excerpt}"
        ))
        .hint("nothing was changed in Azure")
    }
}

/// Terraform's error text from its first `Error:` on, on one line, without the box
/// drawing, cut to a readable length and scrubbed of secrets.
fn error_excerpt(stderr: &str) -> String {
    let from = stderr.find("Error:").unwrap_or(0);
    let text: Vec<&str> = stderr[from..]
        .lines()
        .map(|l| l.trim_start_matches(['│', '╷', '╵', ' ']).trim())
        .filter(|l| !l.is_empty())
        .collect();
    let mut line = text.join(" ");
    if line.chars().count() > 600 {
        line = line.chars().take(600).collect::<String>() + "...";
    }
    if line.is_empty() {
        line = "no error text".into();
    }
    crate::secrets::redact(&line)
}

/// What a bootstrap plan would do, from `terraform show -json`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub import: usize,
    pub create: usize,
    pub update: usize,
    pub destroy: usize,
}

#[derive(Deserialize)]
struct Show {
    #[serde(default)]
    resource_changes: Vec<ShowResource>,
}

#[derive(Deserialize)]
struct ShowResource {
    change: ShowChange,
}

#[derive(Deserialize)]
struct ShowChange {
    actions: Vec<String>,
    #[serde(default)]
    importing: Option<serde_json::Value>,
}

impl Changes {
    pub fn from_show_json(bytes: &[u8]) -> Result<Changes> {
        let show: Show = serde_json::from_slice(bytes)
            .map_err(|e| Error::failed(format!("cannot read Terraform's JSON plan: {e}")))?;
        let mut c = Changes::default();
        for r in show.resource_changes {
            if r.change.importing.is_some() {
                c.import += 1;
            }
            for action in &r.change.actions {
                match action.as_str() {
                    "create" => c.create += 1,
                    "update" => c.update += 1,
                    "delete" => c.destroy += 1,
                    _ => {}
                }
            }
        }
        Ok(c)
    }

    /// Whether applying would change anything in Azure (an import alone does not).
    pub fn changes_azure(&self) -> bool {
        self.create + self.update + self.destroy > 0
    }

    pub fn text(&self) -> String {
        format!(
            "{} to adopt, {} to create, {} to update, {} to destroy",
            self.import, self.create, self.update, self.destroy
        )
    }
}

fn interactive() -> bool {
    crate::ui::interactive()
}

fn confirm(o: &Options, plan: &Changes) -> Result<()> {
    if o.yes {
        return Ok(());
    }
    if !interactive() {
        return Err(Error::input(format!(
            "refusing to change Azure without confirmation ({})",
            plan.text()
        ))
        .hint("review the plan above and rerun with --yes, or on a terminal to be asked"));
    }
    eprint!(
        "Apply these changes to the state storage ({})? [y/N] ",
        plan.text()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::input("not confirmed; nothing was changed in Azure"))
    }
}

/// Set the repository variables with gh: only on a terminal outside CI, with gh logged
/// in, after asking. Otherwise say how (the commands are printed above).
async fn offer_gh(o: &Options) -> Result<()> {
    let vars: Vec<report::Variable> = report::variables(o)
        .into_iter()
        .filter(|v| v.value.is_some())
        .collect();
    if !interactive() {
        tracing::info!("not on a terminal: set the GitHub variables with the commands above");
        return Ok(());
    }
    let gh = match github::detect(std::env::var_os("PATH").as_deref()).await {
        github::Gh::Ready(gh) => gh,
        github::Gh::Absent => {
            tracing::info!(
                "the GitHub CLI (gh) is not installed: set the variables with the commands above, or in the repository settings"
            );
            return Ok(());
        }
        github::Gh::LoggedOut(_) => {
            tracing::info!(
                "gh is not logged in (`gh auth login`): set the variables with the commands above"
            );
            return Ok(());
        }
    };
    let names: Vec<&str> = vars.iter().map(|v| v.name).collect();
    let repo = o.repo.as_deref();
    if !o.yes {
        eprint!(
            "Set {} on {} with gh now? [y/N] ",
            names.join(", "),
            repo.unwrap_or("the current repository")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            tracing::info!("GitHub variables left unset");
            return Ok(());
        }
    }
    github::set_variables(&gh, &vars, repo).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `terraform init` on this machine, where registry.terraform.io cannot be reached.
    const NO_REGISTRY: &str = "\nError: Failed to query available provider packages\n\nCould not retrieve the list of available versions for provider\nhashicorp/azurerm: could not connect to registry.terraform.io: failed to\nrequest discovery document: Get\n\"https://registry.terraform.io/.well-known/terraform.json\": dial tcp: lookup\nregistry.terraform.io on 10.255.255.53:53: no such host\n\nTo see which modules are currently depending on hashicorp/azurerm and what\nversions are specified, run the following command:\n    terraform providers\n";
    /// The same with a provider mirror that does not hold it.
    const NO_MIRROR: &str = "There are some problems with the CLI configuration:\n╷\n│ Warning: Unable to open CLI configuration file\n╵\n\nError: Failed to query available provider packages\n\nCould not retrieve the list of available versions for provider\nhashicorp/azurerm: provider registry.terraform.io/hashicorp/azurerm was not\nfound in any of the search locations\n\n  - /tmp/emptymirror\n";

    #[test]
    fn provider_download_failures_say_what_to_check() {
        for stderr in [NO_REGISTRY, NO_MIRROR] {
            let e = init_error(stderr);
            assert_eq!(e.exit_code(), crate::error::exit::FAILED);
            let text = e.to_string();
            assert!(
                text.starts_with("Terraform could not install the azurerm provider"),
                "{text}"
            );
            assert!(
                text.contains("Failed to query available provider packages"),
                "{text}"
            );
            assert!(
                !text.contains("Warning"),
                "the excerpt starts at the error: {text}"
            );
            let hint = e.hint_text().expect("hint");
            assert!(
                hint.contains("registry.terraform.io") && hint.contains("TF_CLI_CONFIG_FILE"),
                "{hint}"
            );
        }
        let other = init_error("\nError: Unsupported block type\n\n  on main.tf line 1\n");
        assert!(
            other.to_string().contains(
                "terraform init of the bootstrap module failed: Error: Unsupported block type"
            ),
            "{other}"
        );
    }

    #[test]
    fn imports_alone_change_nothing_in_azure() {
        let adopt = br#"{"resource_changes":[
            {"address":"azurerm_resource_group.state","change":{"actions":["no-op"],"importing":{"id":"/x"}}},
            {"address":"azurerm_storage_account.state","change":{"actions":["update"],"importing":{"id":"/y"}}},
            {"address":"azurerm_storage_container.state","change":{"actions":["create"]}}]}"#;
        let c = Changes::from_show_json(adopt).expect("plan");
        assert_eq!(
            c,
            Changes {
                import: 2,
                create: 1,
                update: 1,
                destroy: 0
            }
        );
        assert!(c.changes_azure());
        let again = br#"{"resource_changes":[
            {"address":"azurerm_resource_group.state","change":{"actions":["no-op"],"importing":{"id":"/x"}}}]}"#;
        let c = Changes::from_show_json(again).expect("plan");
        assert!(!c.changes_azure());
        assert_eq!(
            c.text(),
            "1 to adopt, 0 to create, 0 to update, 0 to destroy"
        );
        assert!(Changes::from_show_json(b"{").is_err());
    }
}
