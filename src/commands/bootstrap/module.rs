//! The `terraform/bootstrap` module, embedded in the binary so `nubes bootstrap` works
//! from any folder, and its rendering into the working folder `.nubes/bootstrap/`: the
//! module's files, the variables (`nubes.auto.tfvars.json`) and the import blocks that
//! adopt what already exists (`nubes_imports.tf`).
//!
//! The working folder keeps `.terraform/` (the provider download) between runs, but
//! never a state: the bootstrap state is rebuilt on every run by importing what exists,
//! so it can be neither lost nor stale, and nothing it holds (the provider records the
//! account's keys in it) outlives the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

use super::azure::{Existing, Target};
use super::options::Options;

/// The module's files, as shipped in `terraform/bootstrap/`.
pub const FILES: &[(&str, &str)] = &[
    (
        "versions.tf",
        include_str!("../../../terraform/bootstrap/versions.tf"),
    ),
    (
        "variables.tf",
        include_str!("../../../terraform/bootstrap/variables.tf"),
    ),
    (
        "main.tf",
        include_str!("../../../terraform/bootstrap/main.tf"),
    ),
    (
        "outputs.tf",
        include_str!("../../../terraform/bootstrap/outputs.tf"),
    ),
];

pub const IMPORTS_FILE: &str = "nubes_imports.tf";
pub const VARS_FILE: &str = "nubes.auto.tfvars.json";
pub const PLAN_FILE: &str = "bootstrap.tfplan";

/// Terraform addresses of the module's resources.
pub const GROUP: &str = "azurerm_resource_group.state";
pub const ACCOUNT: &str = "azurerm_storage_account.state";
pub const CONTAINER: &str = "azurerm_storage_container.state";

pub fn workdir(root: &Path) -> PathBuf {
    root.join(".nubes").join("bootstrap")
}

/// Resource IDs as Resource Manager (and the azurerm provider's importer) spell them.
pub fn group_id(o: &Options) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}",
        o.subscription, o.resource_group
    )
}

pub fn account_id(o: &Options) -> String {
    format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{}",
        group_id(o),
        o.account
    )
}

pub fn container_id(o: &Options) -> String {
    format!(
        "{}/blobServices/default/containers/{}",
        account_id(o),
        o.container
    )
}

/// One import block per existing resource (Terraform >= 1.5). An import of a resource
/// already in state is a no-op, and the state is rebuilt every run anyway.
pub fn imports(o: &Options, existing: &Existing) -> Vec<(&'static str, String)> {
    let mut list = Vec::new();
    if existing.group_location.is_some() {
        list.push((GROUP, group_id(o)));
    }
    if existing.account.is_some() {
        list.push((ACCOUNT, account_id(o)));
    }
    if existing.container {
        list.push((CONTAINER, container_id(o)));
    }
    list
}

/// `nubes_imports.tf`, formatted as `terraform fmt` would.
pub fn imports_tf(imports: &[(&str, String)]) -> String {
    let mut out = String::from(
        "# Written by nubes bootstrap: these resources already exist in Azure and are adopted\n\
         # (imported into the state) instead of created. Regenerated on every run.\n",
    );
    for (to, id) in imports {
        out.push_str(&format!(
            "\nimport {{\n  to = {to}\n  id = {}\n}}\n",
            hcl_string(id)
        ));
    }
    out
}

/// An HCL string literal. IDs are made of checked names, but quotes, backslashes and
/// template sequences are escaped anyway so no input can change the configuration.
fn hcl_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Tags: an adopted resource's own, plus nubes's (`managed-by`, `nubes-project`), so
/// adopting never drops a tag someone set.
fn tags(own: Option<&BTreeMap<String, String>>, o: &Options) -> Map<String, Value> {
    let mut tags: Map<String, Value> = own
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    tags.insert("managed-by".into(), json!("nubes"));
    if let Some(p) = &o.project {
        tags.insert("nubes-project".into(), json!(p));
    }
    tags
}

/// The module's variables. Only variables `variables.tf` declares are set.
pub fn variables(o: &Options, target: &Target, existing: &Existing) -> Value {
    let group_tags = existing
        .group_location
        .is_some()
        .then_some(&existing.group_tags);
    let account_tags = existing.account.as_ref().map(|a| &a.tags);
    json!({
        "subscription_id": o.subscription,
        "resource_group_name": o.resource_group,
        "resource_group_location": target.group_location,
        "account_name": o.account,
        "location": target.location,
        "container_name": o.container,
        "replication_type": target.replication,
        "infrastructure_encryption": target.infrastructure_encryption,
        "soft_delete_days": o.soft_delete_days,
        "resource_group_tags": tags(group_tags, o),
        "account_tags": tags(account_tags, o),
    })
}

/// Write the module, variables and imports into `dir`, removing what an earlier run
/// left that must not be reused: state files, a saved plan, stale imports.
pub fn render(dir: &Path, vars: &Value, imports: &[(&str, String)]) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    remove_leftovers(dir)?;
    for (name, text) in FILES {
        write_if_changed(&dir.join(name), text)?;
    }
    let vars = serde_json::to_string_pretty(vars)
        .map_err(|e| Error::failed(format!("cannot write the bootstrap variables: {e}")))?;
    write_if_changed(&dir.join(VARS_FILE), &format!("{vars}\n"))?;
    if !imports.is_empty() {
        write_if_changed(&dir.join(IMPORTS_FILE), &imports_tf(imports))?;
    }
    Ok(())
}

/// Remove what an earlier run left: state, saved plan, generated and stale `.tf` files.
/// `.terraform/` (providers) and the lock file are kept.
pub fn remove_leftovers(dir: &Path) -> Result<()> {
    remove_matching(dir, |name| {
        is_state(name)
            || name == IMPORTS_FILE
            || (name.ends_with(".tf") && !FILES.iter().any(|(f, _)| *f == name))
    })
}

/// Remove the state and the saved plan, at the end of a run: the bootstrap state is
/// rebuilt on every run, and what the provider recorded in it must not stay on disk.
pub fn remove_state(dir: &Path) -> Result<()> {
    remove_matching(dir, is_state)
}

fn is_state(name: &str) -> bool {
    name.ends_with(".tfstate") || name.ends_with(".tfstate.backup") || name == PLAN_FILE
}

fn remove_matching(dir: &Path, stale: impl Fn(&str) -> bool) -> Result<()> {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if stale(&name) && entry.file_type()?.is_file() {
            fs_err::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Unchanged files keep their modification time (Terraform does not care, people
/// comparing runs do).
fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if fs_err::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs_err::write(path, text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::bootstrap::azure::Account;

    fn options() -> Options {
        Options {
            subscription: "6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f".into(),
            resource_group: "rg-demo-tfstate".into(),
            account: "stdemo".into(),
            account_explicit: true,
            location: Some("westeurope".into()),
            location_from: "--location",
            container: "tfstate".into(),
            soft_delete_days: 14,
            replication: None,
            repo: None,
            default_branch: "main".into(),
            client_id: None,
            tenant_id: None,
            key: "{env}.terraform.tfstate".into(),
            project: Some("demo".into()),
            plan_only: false,
            yes: false,
        }
    }

    fn all_exist() -> Existing {
        Existing {
            group_location: Some("westeurope".into()),
            account: Some(Account {
                location: "westeurope".into(),
                kind: "StorageV2".into(),
                replication: "GRS".into(),
                tier: "Standard".into(),
                infrastructure_encryption: true,
                hierarchical_namespace: false,
                tags: BTreeMap::from([("team".to_string(), "web".to_string())]),
            }),
            container: true,
            ..Existing::default()
        }
    }

    #[test]
    fn imports_name_each_existing_resource_by_its_resource_id() {
        let o = options();
        assert!(imports(&o, &Existing::default()).is_empty());
        let list = imports(&o, &all_exist());
        let sub =
            "/subscriptions/6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f/resourceGroups/rg-demo-tfstate";
        assert_eq!(
            list,
            vec![
                (GROUP, sub.to_string()),
                (
                    ACCOUNT,
                    format!("{sub}/providers/Microsoft.Storage/storageAccounts/stdemo")
                ),
                (
                    CONTAINER,
                    format!(
                        "{sub}/providers/Microsoft.Storage/storageAccounts/stdemo/blobServices/default/containers/tfstate"
                    )
                ),
            ]
        );
        let only_group = Existing {
            group_location: Some("westeurope".into()),
            ..Existing::default()
        };
        assert_eq!(imports(&o, &only_group).len(), 1);
    }

    #[test]
    fn import_blocks_are_valid_hcl_with_escaped_strings() {
        let text = imports_tf(&[
            (GROUP, "/subscriptions/x/resourceGroups/rg".to_string()),
            (ACCOUNT, "a\"b\\c${x}%{y}".to_string()),
        ]);
        let body: hcl::Body = hcl::from_str(&text).expect("parses");
        let blocks: Vec<_> = body.blocks().collect();
        assert_eq!(blocks.len(), 2);
        assert!(blocks.iter().all(|b| b.identifier() == "import"));
        let ids: Vec<String> = blocks
            .iter()
            .map(|b| {
                let id = b.body().attributes().find(|a| a.key() == "id").expect("id");
                match id.expr() {
                    hcl::Expression::String(s) => s.clone(),
                    other => panic!("id is not a plain string: {other:?}"),
                }
            })
            .collect();
        assert_eq!(ids[0], "/subscriptions/x/resourceGroups/rg");
        assert_eq!(ids[1], "a\"b\\c${x}%{y}", "template sequences stay literal");
    }

    #[test]
    fn variables_are_the_ones_the_module_declares() {
        let declared: Vec<String> = FILES
            .iter()
            .filter_map(|(_, text)| hcl::from_str::<hcl::Body>(text).ok())
            .flat_map(|body| {
                body.blocks()
                    .filter(|b| b.identifier() == "variable")
                    .filter_map(|b| b.labels().first().map(|l| l.as_str().to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            declared.contains(&"account_name".to_string()),
            "{declared:?}"
        );
        let target = Target {
            location: "westeurope".into(),
            group_location: None,
            replication: "GRS".into(),
            infrastructure_encryption: true,
        };
        let vars = variables(&options(), &target, &all_exist());
        let set: Vec<&String> = vars.as_object().expect("object").keys().collect();
        for name in &set {
            assert!(
                declared.contains(name),
                "`{name}` is not declared by the module"
            );
        }
        assert_eq!(set.len(), declared.len(), "every variable is set: {set:?}");
        assert_eq!(vars["soft_delete_days"], 14);
        assert_eq!(vars["account_tags"]["nubes-project"], "demo");
        assert_eq!(
            vars["account_tags"]["team"], "web",
            "an adopted account keeps its tags"
        );
        assert_eq!(vars["resource_group_tags"]["managed-by"], "nubes");
        assert!(vars["resource_group_tags"].get("team").is_none());
        assert!(vars["resource_group_location"].is_null());
    }

    #[test]
    fn render_leaves_no_state_and_no_stale_imports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("w");
        fs_err::create_dir_all(work.join(".terraform")).expect("mkdir");
        for leftover in [
            "terraform.tfstate",
            "terraform.tfstate.backup",
            PLAN_FILE,
            "old.tf",
            IMPORTS_FILE,
        ] {
            fs_err::write(work.join(leftover), "x").expect("write");
        }
        render(&work, &json!({"a": 1}), &[]).expect("render");
        let mut names: Vec<String> = fs_err::read_dir(&work)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".terraform",
                "main.tf",
                "nubes.auto.tfvars.json",
                "outputs.tf",
                "variables.tf",
                "versions.tf"
            ]
        );
        render(&work, &json!({"a": 1}), &[(GROUP, "/x".into())]).expect("render");
        assert!(work.join(IMPORTS_FILE).is_file());
        fs_err::write(work.join("terraform.tfstate"), "{}").expect("write");
        remove_state(&work).expect("clean");
        assert!(!work.join("terraform.tfstate").exists());
        assert!(work.join(IMPORTS_FILE).is_file(), "kept for inspection");
    }
}
