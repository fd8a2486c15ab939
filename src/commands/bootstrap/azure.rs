//! What of the state storage already exists, asked of Azure Resource Manager before
//! Terraform runs: the resource group, the account (and whether its name is free
//! anywhere in Azure), the container. Existing resources are adopted with import blocks;
//! their fixed properties (region, kind, infrastructure encryption) are kept, and a
//! request that would need the account replaced is refused here with exit 2, before
//! Terraform could plan it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::arm::Arm;
use crate::cli::Replication;
use crate::error::{Error, Result};

use super::options::Options;

/// Resource groups API (the version `arm.rs` uses for its listing and deletion).
const GROUPS_API: &str = "2021-04-01";
/// Microsoft.Storage API for accounts, containers and name checks.
const STORAGE_API: &str = "2023-05-01";

const READ_PERMISSION: &str = "the identity needs at least the Reader role on the subscription \
     to look for existing state storage, and Contributor (on the subscription or the resource \
     group) to create it";

/// The state storage as found in Azure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// The resource group's region, when the group exists.
    pub group_location: Option<String>,
    /// Its tags (kept when it is adopted).
    pub group_tags: BTreeMap<String, String>,
    pub account: Option<Account>,
    pub container: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub location: String,
    pub kind: String,
    /// The redundancy part of the SKU (`GRS` of `Standard_GRS`).
    pub replication: String,
    pub tier: String,
    pub infrastructure_encryption: bool,
    pub hierarchical_namespace: bool,
    pub tags: BTreeMap<String, String>,
}

impl Existing {
    pub fn nothing(&self) -> bool {
        self.group_location.is_none() && self.account.is_none() && !self.container
    }
}

/// Look the three resources up. When the account is not in the group, its name is
/// checked across Azure: a name someone else holds is exit 2, with what to do.
pub async fn discover(arm: &Arm, o: &Options) -> Result<Existing> {
    let rg = o.resource_group.as_str();
    let mut found = Existing::default();
    let group = arm
        .get_resource(
            &["resourcegroups", rg],
            GROUPS_API,
            &format!("looking for resource group `{rg}`"),
            READ_PERMISSION,
        )
        .await?;
    if let Some(group) = group {
        found.group_location = Some(string_at(&group, "/location"));
        found.group_tags = tags_of(&group);
        let account_path = [
            "resourceGroups",
            rg,
            "providers",
            "Microsoft.Storage",
            "storageAccounts",
            o.account.as_str(),
        ];
        let account = arm
            .get_resource(
                &account_path,
                STORAGE_API,
                &format!("looking for storage account `{}`", o.account),
                READ_PERMISSION,
            )
            .await?;
        if let Some(account) = account {
            found.account = Some(parse_account(&account));
            let mut container_path = account_path.to_vec();
            container_path.extend(["blobServices", "default", "containers", &o.container]);
            found.container = arm
                .get_resource(
                    &container_path,
                    STORAGE_API,
                    &format!("looking for container `{}`", o.container),
                    READ_PERMISSION,
                )
                .await?
                .is_some();
        }
    }
    if found.account.is_none() {
        check_name_free(arm, o).await?;
    }
    Ok(found)
}

fn string_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A resource's string tags (Azure tags are strings; anything else is skipped).
fn tags_of(v: &Value) -> BTreeMap<String, String> {
    v.get("tags")
        .and_then(Value::as_object)
        .map(|tags| {
            tags.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_account(v: &Value) -> Account {
    let sku = string_at(v, "/sku/name");
    let (tier, replication) = sku.split_once('_').unwrap_or(("", sku.as_str()));
    Account {
        location: string_at(v, "/location"),
        kind: string_at(v, "/kind"),
        replication: replication.to_ascii_uppercase(),
        tier: tier.to_string(),
        infrastructure_encryption: v
            .pointer("/properties/encryption/requireInfrastructureEncryption")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        hierarchical_namespace: v
            .pointer("/properties/isHnsEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        tags: tags_of(v),
    }
}

/// Storage account names are global: one that is not in our group may belong to anyone.
async fn check_name_free(arm: &Arm, o: &Options) -> Result<()> {
    let answer = arm
        .post_action(
            &["providers", "Microsoft.Storage", "checkNameAvailability"],
            STORAGE_API,
            &json!({"name": o.account, "type": "Microsoft.Storage/storageAccounts"}),
            &format!("checking that the account name `{}` is free", o.account),
            READ_PERMISSION,
        )
        .await?;
    if answer.get("nameAvailable").and_then(Value::as_bool) != Some(false) {
        return Ok(());
    }
    let reason = string_at(&answer, "/reason");
    let said = string_at(&answer, "/message");
    let what = if reason.eq_ignore_ascii_case("AlreadyExists") {
        format!(
            "storage account name `{}` is already taken (in another resource group, \
             subscription or organisation), and resource group `{}` does not hold it",
            o.account, o.resource_group
        )
    } else {
        format!("Azure refuses the storage account name `{}`", o.account)
    };
    let detail = if said.is_empty() {
        String::new()
    } else {
        format!(" ({said})")
    };
    Err(Error::input(format!("{what}{detail}")).hint(if o.account_explicit {
        "if the account is yours, pass the --resource-group that holds it; otherwise choose \
         another name with --account"
    } else {
        "choose a name with --account (3 to 24 lowercase letters and digits); if the account is \
         yours, also pass the --resource-group that holds it"
    }))
}

/// The values the module is applied with, once what exists is taken into account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub location: String,
    /// The existing group's region when it differs from the account's.
    pub group_location: Option<String>,
    pub replication: String,
    pub infrastructure_encryption: bool,
}

/// Decide region, redundancy and encryption: an existing account keeps what Azure cannot
/// change in place; flags that contradict it are refused (exit 2) rather than planned as a
/// replacement of the account that holds every environment's state.
pub fn reconcile(o: &Options, existing: &Existing) -> Result<Target> {
    let account = existing.account.as_ref();
    if let Some(a) = account {
        if !a.kind.eq_ignore_ascii_case("StorageV2") {
            return Err(Error::input(format!(
                "storage account `{}` exists but is of kind {}, not StorageV2",
                o.account, a.kind
            ))
            .hint("nubes bootstrap manages StorageV2 accounts only; choose another --account"));
        }
        if !a.tier.eq_ignore_ascii_case("Standard") {
            return Err(Error::input(format!(
                "storage account `{}` exists with the {} tier, not Standard",
                o.account, a.tier
            ))
            .hint("choose another --account"));
        }
        if a.hierarchical_namespace {
            return Err(Error::input(format!(
                "storage account `{}` has a hierarchical namespace (Data Lake Gen2), which \
                 cannot be turned off",
                o.account
            ))
            .hint("choose another --account for the state"));
        }
    }
    let location = match (account, &o.location) {
        (Some(a), Some(wanted)) if !a.location.eq_ignore_ascii_case(wanted) => {
            return Err(Error::input(format!(
                "storage account `{}` already exists in {}, but {} asks for {wanted}",
                o.account, a.location, o.location_from
            ))
            .hint(format!(
                "an account cannot move between regions: pass --location {} to adopt it, or \
                 choose another --account",
                a.location
            )));
        }
        (Some(a), _) => a.location.clone(),
        (None, Some(wanted)) => wanted.clone(),
        (None, None) => match &existing.group_location {
            Some(l) => l.clone(),
            None => {
                return Err(Error::input("no Azure region given for the new state storage")
                    .hint("pass --location (e.g. --location westeurope), or set [project] location in nubes.toml"));
            }
        },
    };
    let group_location = existing
        .group_location
        .clone()
        .filter(|g| !g.eq_ignore_ascii_case(&location));
    let replication = match (o.replication, account) {
        (Some(r), _) => r.as_str().to_string(),
        (None, Some(a)) => {
            if a.replication.eq_ignore_ascii_case("LRS") {
                return Err(Error::input(format!(
                    "storage account `{}` keeps a single copy of the state (LRS)",
                    o.account
                ))
                .hint("pass --replication GRS (or ZRS) to adopt it with redundancy; Azure converts the account in place"));
            }
            a.replication.clone()
        }
        (None, None) => Replication::Grs.as_str().to_string(),
    };
    Ok(Target {
        location,
        group_location,
        replication,
        infrastructure_encryption: account.is_none_or(|a| a.infrastructure_encryption),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;

    fn options() -> Options {
        Options {
            subscription: "6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f".into(),
            resource_group: "rg-demo-tfstate".into(),
            account: "stdemo".into(),
            account_explicit: true,
            location: None,
            location_from: "",
            container: "tfstate".into(),
            soft_delete_days: 7,
            replication: None,
            repo: None,
            default_branch: "main".into(),
            client_id: None,
            tenant_id: None,
            key: "{env}.terraform.tfstate".into(),
            project: None,
            plan_only: false,
            yes: false,
        }
    }

    fn account(json: Value) -> Existing {
        Existing {
            group_location: Some("westeurope".into()),
            account: Some(parse_account(&json)),
            container: true,
            ..Existing::default()
        }
    }

    #[test]
    fn reads_what_resource_manager_returns_for_an_account() {
        let a = parse_account(&json!({
            "kind": "StorageV2", "location": "westeurope",
            "sku": {"name": "Standard_RAGRS", "tier": "Standard"},
            "properties": {"encryption": {"requireInfrastructureEncryption": true}, "isHnsEnabled": false},
            "tags": {"team": "web", "odd": 3}
        }));
        assert_eq!(
            a,
            Account {
                location: "westeurope".into(),
                kind: "StorageV2".into(),
                replication: "RAGRS".into(),
                tier: "Standard".into(),
                infrastructure_encryption: true,
                hierarchical_namespace: false,
                tags: BTreeMap::from([("team".to_string(), "web".to_string())]),
            }
        );
    }

    #[test]
    fn a_new_account_needs_a_region_and_gets_geo_redundancy() {
        let e = reconcile(&options(), &Existing::default()).expect_err("no region");
        assert_eq!(e.exit_code(), exit::USAGE);
        let mut o = options();
        o.location = Some("eastus".into());
        let t = reconcile(&o, &Existing::default()).expect("target");
        assert_eq!(
            t,
            Target {
                location: "eastus".into(),
                group_location: None,
                replication: "GRS".into(),
                infrastructure_encryption: true,
            }
        );
        // A group that exists elsewhere keeps its own region.
        let group_only = Existing {
            group_location: Some("westeurope".into()),
            ..Existing::default()
        };
        let t = reconcile(&o, &group_only).expect("target");
        assert_eq!(t.group_location.as_deref(), Some("westeurope"));
        o.location = None;
        assert_eq!(
            reconcile(&o, &group_only).expect("target").location,
            "westeurope"
        );
    }

    #[test]
    fn an_existing_account_keeps_what_cannot_change_in_place() {
        let existing = account(json!({"kind": "StorageV2", "location": "westeurope",
            "sku": {"name": "Standard_ZRS"}, "properties": {}}));
        let t = reconcile(&options(), &existing).expect("adopt");
        assert_eq!(t.location, "westeurope");
        assert_eq!(t.replication, "ZRS");
        assert!(!t.infrastructure_encryption, "kept as created");
        assert_eq!(t.group_location, None);

        let mut o = options();
        o.location = Some("eastus".into());
        o.location_from = "--location";
        let e = reconcile(&o, &existing).expect_err("moving regions");
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(
            e.to_string().contains("already exists in westeurope"),
            "{e}"
        );
        assert!(
            e.hint_text()
                .is_some_and(|h| h.contains("--location westeurope"))
        );

        o.location = Some("westeurope".into());
        o.replication = Some(Replication::Gzrs);
        assert_eq!(reconcile(&o, &existing).expect("adopt").replication, "GZRS");
    }

    #[test]
    fn accounts_that_cannot_hold_the_state_as_configured_are_refused() {
        for (json, why) in [
            (
                json!({"kind": "BlobStorage", "location": "westeurope", "sku": {"name": "Standard_GRS"}}),
                "kind",
            ),
            (
                json!({"kind": "StorageV2", "location": "westeurope", "sku": {"name": "Premium_LRS"}}),
                "tier",
            ),
            (
                json!({"kind": "StorageV2", "location": "westeurope", "sku": {"name": "Standard_GRS"},
                    "properties": {"isHnsEnabled": true}}),
                "hierarchical namespace",
            ),
            (
                json!({"kind": "StorageV2", "location": "westeurope", "sku": {"name": "Standard_LRS"}}),
                "LRS",
            ),
        ] {
            let e = reconcile(&options(), &account(json)).expect_err(why);
            assert_eq!(e.exit_code(), exit::USAGE, "{why}");
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        // LRS with an explicit redundancy is adopted and converted.
        let mut o = options();
        o.replication = Some(Replication::Grs);
        let lrs = account(
            json!({"kind": "StorageV2", "location": "westeurope", "sku": {"name": "Standard_LRS"}}),
        );
        assert_eq!(reconcile(&o, &lrs).expect("convert").replication, "GRS");
    }
}
