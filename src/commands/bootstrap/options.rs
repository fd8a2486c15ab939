//! `nubes bootstrap`'s flags, checked and completed before anything touches Azure: the
//! Azure naming rules (exit 2 with the rule when broken), defaults derived from
//! nubes.toml, and the GitHub repository from the environment or the `origin` remote.

use sha2::{Digest, Sha256};

use crate::cli::{BootstrapArgs, Replication};
use crate::config::Settings;
use crate::error::{Error, Result};

/// Everything `nubes bootstrap` needs to know, resolved (flags > environment > nubes.toml
/// > defaults). Location and replication may still be completed from what exists in Azure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub subscription: String,
    pub resource_group: String,
    pub account: String,
    /// Whether the account name was given (not derived), for the hint when it is taken.
    pub account_explicit: bool,
    /// `--location`, else `[project] location`.
    pub location: Option<String>,
    pub location_from: &'static str,
    pub container: String,
    pub soft_delete_days: u16,
    pub replication: Option<Replication>,
    /// `owner/name` on GitHub, when known.
    pub repo: Option<String>,
    /// The repository's default branch (where `delete`, `schedule` and
    /// `workflow_dispatch` runs start): `origin/HEAD`, else `main`.
    pub default_branch: String,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    /// `[state] key` (with `{env}`), printed in the `[state]` section.
    pub key: String,
    pub project: Option<String>,
    pub plan_only: bool,
    pub yes: bool,
}

impl Options {
    /// Check the flags against Azure's rules and fill in the defaults. `lookup` reads an
    /// environment variable (tests pass their own).
    pub fn resolve(
        args: &BootstrapArgs,
        settings: &Settings,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Options> {
        let subscription = match &args.subscription {
            Some(s) => guid(s, "--subscription")?,
            None => match first(&lookup, &["ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID"]) {
                Some((s, from)) => guid(&s, from)?,
                None => {
                    return Err(Error::input("no Azure subscription given").hint(
                        "pass --subscription <id> or set ARM_SUBSCRIPTION_ID; \
                         `az account show --query id -o tsv` prints the current one",
                    ));
                }
            },
        };
        let project = settings.project_name.clone();
        let resource_group = match &args.resource_group {
            Some(g) => resource_group(g)?,
            None => default_resource_group(project.as_deref()),
        };
        let (account, account_explicit) = match &args.account {
            Some(a) => (account_name(a)?, true),
            None => (default_account(project.as_deref(), &subscription), false),
        };
        let (location, location_from) = match (&args.location, &settings.location) {
            (Some(l), _) => (Some(location(l, "--location")?), "--location"),
            (None, Some(l)) => (
                Some(location(l, "[project] location in nubes.toml")?),
                "[project] location",
            ),
            (None, None) => (None, ""),
        };
        let container = match &args.container {
            Some(c) => container(c)?,
            None => settings.state.container.clone(),
        };
        let repo = match &args.repo {
            Some(r) => Some(repo(r, "--repo")?),
            None => match lookup("GITHUB_REPOSITORY").filter(|r| !r.trim().is_empty()) {
                Some(r) => Some(repo(&r, "GITHUB_REPOSITORY")?),
                None => origin_repo(&settings.root),
            },
        };
        let client_id = match &args.client_id {
            Some(c) => Some(guid(c, "--client-id")?),
            None => first(&lookup, &["ARM_CLIENT_ID", "AZURE_CLIENT_ID"])
                .map(|(c, from)| guid(&c, from))
                .transpose()?,
        };
        let tenant_id = match &args.tenant_id {
            Some(t) => Some(guid(t, "--tenant-id")?),
            None => first(&lookup, &["ARM_TENANT_ID", "AZURE_TENANT_ID"])
                .map(|(t, from)| guid(&t, from))
                .transpose()?,
        };
        Ok(Options {
            subscription,
            resource_group,
            account,
            account_explicit,
            location,
            location_from,
            container,
            soft_delete_days: args.soft_delete_days,
            replication: args.replication,
            repo,
            default_branch: default_branch(&settings.root),
            client_id,
            tenant_id,
            key: settings.state.key.clone(),
            project,
            plan_only: args.plan,
            yes: args.yes,
        })
    }
}

fn first(
    lookup: &impl Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Option<(String, &'static str)> {
    names
        .iter()
        .find_map(|n| lookup(n).filter(|v| !v.trim().is_empty()).map(|v| (v, *n)))
}

fn guid(raw: &str, from: &str) -> Result<String> {
    let id = raw.trim();
    uuid::Uuid::parse_str(id)
        .map(|_| id.to_ascii_lowercase())
        .map_err(|_| {
            Error::input(format!("{from}: `{id}` is not a GUID")).hint(
                "subscription, tenant and client IDs look like 00000000-0000-0000-0000-000000000000 \
                 (`az account show` prints the subscription and tenant)",
            )
        })
}

/// Azure: 3 to 24 characters, lowercase letters and digits only, globally unique.
pub fn account_name(raw: &str) -> Result<String> {
    let ok = (3..=24).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(raw.to_string())
    } else {
        Err(Error::input(format!(
            "--account: `{raw}` is not a valid storage account name"
        ))
        .hint(
            "Azure storage account names are 3 to 24 characters, lowercase letters and \
                 digits only (no hyphens), and unique across all of Azure",
        ))
    }
}

/// Azure: 1 to 90 letters, digits, `-`, `_`, `.`, `(` and `)`, not ending with `.`.
fn resource_group(raw: &str) -> Result<String> {
    let ok = (1..=90).contains(&raw.chars().count())
        && raw
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.()".contains(c))
        && !raw.ends_with('.');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(Error::input(format!(
            "--resource-group: `{raw}` is not a valid resource group name"
        ))
        .hint(
            "resource group names are 1 to 90 letters, digits, '-', '_', '.', '(' and ')', \
                     and do not end with '.'",
        ))
    }
}

/// A region's programmatic name, as Terraform and the REST API write it (`westeurope`,
/// `eastus2`). Display names (`West Europe`) are refused with the name to use, rather
/// than guessed at.
fn location(raw: &str, from: &str) -> Result<String> {
    let ok = (3..=40).contains(&raw.len())
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        return Ok(raw.to_string());
    }
    let canonical: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    let suggestion = if canonical != raw && canonical.bytes().all(|b| b.is_ascii_alphanumeric()) {
        format!("did you mean `{canonical}`? ")
    } else {
        String::new()
    };
    Err(
        Error::input(format!("{from}: `{raw}` is not an Azure region name")).hint(format!(
            "{suggestion}use the programmatic name, lowercase without spaces, e.g. eastus or \
             westeurope (`az account list-locations --query [].name -o tsv` lists them)"
        )),
    )
}

/// Azure: 3 to 63 lowercase letters, digits and single hyphens, starting and ending with
/// a letter or digit.
fn container(raw: &str) -> Result<String> {
    let ok = (3..=63).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !raw.starts_with('-')
        && !raw.ends_with('-')
        && !raw.contains("--");
    if ok {
        Ok(raw.to_string())
    } else {
        Err(Error::input(format!(
            "--container: `{raw}` is not a valid container name"
        ))
        .hint(
            "container names are 3 to 63 lowercase letters, digits and single hyphens, \
                 starting and ending with a letter or digit",
        ))
    }
}

fn repo(raw: &str, from: &str) -> Result<String> {
    let raw = raw.trim();
    let valid_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match raw.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => Ok(raw.to_string()),
        _ => Err(
            Error::input(format!("{from}: `{raw}` is not a GitHub repository"))
                .hint("write it as owner/name, e.g. octo-org/petclinic"),
        ),
    }
}

/// `rg-<project>-tfstate`, or `rg-nubes-tfstate` without a project name.
fn default_resource_group(project: Option<&str>) -> String {
    let project: String = project
        .unwrap_or("nubes")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(70)
        .collect();
    let project = project.trim_matches('-');
    let project = if project.is_empty() { "nubes" } else { project };
    format!("rg-{project}-tfstate")
}

/// `st` + the project's letters and digits (at most 14) + 8 hex digits of a hash of the
/// subscription and project: valid, likely to be globally unique, and the same on every
/// run (so a second run finds and adopts the first run's account).
pub fn default_account(project: Option<&str>, subscription: &str) -> String {
    let stem: String = project
        .unwrap_or("nubes")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(14)
        .collect();
    let stem = if stem.is_empty() {
        "nubes".to_string()
    } else {
        stem
    };
    let digest = Sha256::digest(format!("{subscription}/{}", project.unwrap_or("")).as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("st{stem}{hash}")
}

/// `owner/name` of the `origin` remote when it is on github.com.
fn origin_repo(root: &std::path::Path) -> Option<String> {
    let repo = git2::Repository::discover(root).ok()?;
    let remote = repo.find_remote("origin").ok()?;
    github_repo_of(remote.url().ok()?)
}

/// The branch `origin/HEAD` points at (the remote's default branch), else `main`.
fn default_branch(root: &std::path::Path) -> String {
    git2::Repository::discover(root)
        .ok()
        .and_then(|repo| {
            let head = repo.find_reference("refs/remotes/origin/HEAD").ok()?;
            let target = head.symbolic_target().ok().flatten()?;
            target
                .strip_prefix("refs/remotes/origin/")
                .map(str::to_string)
        })
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".to_string())
}

/// `owner/name` from a github.com remote URL (https, ssh or scp-like), else `None`.
pub fn github_repo_of(url: &str) -> Option<String> {
    let url = url.trim();
    let path = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("http://github.com/"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))
        .or_else(|| url.strip_prefix("git@github.com:"))?;
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    repo(path, "origin").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;

    fn args() -> BootstrapArgs {
        BootstrapArgs {
            subscription: None,
            resource_group: None,
            account: None,
            location: None,
            container: None,
            soft_delete_days: 7,
            replication: None,
            repo: None,
            client_id: None,
            tenant_id: None,
            plan: false,
            yes: false,
        }
    }

    fn settings(toml: &str) -> (tempfile::TempDir, Settings) {
        let dir = tempfile::tempdir().expect("tempdir");
        fs_err::write(dir.path().join("nubes.toml"), toml).expect("write");
        let s = crate::config::load(dir.path(), None, &Default::default()).expect("config");
        (dir, s)
    }

    const SUB: &str = "6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f";

    #[test]
    fn flags_win_over_the_environment_which_wins_over_nubes_toml() {
        let (_dir, s) = settings(
            "[project]\nname = \"petclinic\"\nlocation = \"westeurope\"\n[state]\ncontainer = \"states\"\n",
        );
        let env = |name: &str| match name {
            "ARM_SUBSCRIPTION_ID" => Some(SUB.to_uppercase()),
            "AZURE_SUBSCRIPTION_ID" => Some("00000000-0000-0000-0000-000000000009".into()),
            "AZURE_CLIENT_ID" => Some("11111111-2222-3333-4444-555555555555".into()),
            "GITHUB_REPOSITORY" => Some("octo-org/petclinic".into()),
            _ => None,
        };
        let o = Options::resolve(&args(), &s, env).expect("options");
        assert_eq!(o.subscription, SUB, "ARM_ first, lowercased");
        assert_eq!(o.resource_group, "rg-petclinic-tfstate");
        assert_eq!(o.account, default_account(Some("petclinic"), SUB));
        assert!(!o.account_explicit);
        assert_eq!(o.location.as_deref(), Some("westeurope"));
        assert_eq!(o.container, "states");
        assert_eq!(o.repo.as_deref(), Some("octo-org/petclinic"));
        assert_eq!(
            o.client_id.as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(o.tenant_id, None);
        assert_eq!(o.key, "{env}.terraform.tfstate");

        let mut a = args();
        a.subscription = Some("00000000-0000-0000-0000-000000000001".into());
        a.location = Some("eastus".into());
        a.account = Some("stmine".into());
        a.container = Some("tfstate".into());
        a.repo = Some("me/app".into());
        let o = Options::resolve(&a, &s, env).expect("options");
        assert_eq!(o.subscription, "00000000-0000-0000-0000-000000000001");
        assert_eq!(
            (o.location.as_deref(), o.location_from),
            (Some("eastus"), "--location")
        );
        assert_eq!((o.account.as_str(), o.account_explicit), ("stmine", true));
        assert_eq!(o.container, "tfstate");
        assert_eq!(o.repo.as_deref(), Some("me/app"));

        let e = Options::resolve(&args(), &s, |_| None).expect_err("no subscription");
        assert_eq!(e.exit_code(), exit::USAGE);
        let bad = |name: &str| (name == "AZURE_CLIENT_ID").then(|| "nope".to_string());
        let mut a = args();
        a.subscription = Some(SUB.into());
        let e = Options::resolve(&a, &s, bad).expect_err("bad client id");
        assert!(e.to_string().starts_with("AZURE_CLIENT_ID:"), "{e}");
    }

    #[test]
    fn account_names_follow_azure_rules() {
        for ok in ["abc", "stpetclinic01", "a23456789012345678901234"] {
            assert_eq!(account_name(ok).ok().as_deref(), Some(ok));
        }
        for bad in [
            "ab",
            "St-petclinic",
            "st_petclinic",
            "a234567890123456789012345",
            "stpétclinic",
            "",
        ] {
            let e = account_name(bad).expect_err(bad);
            assert_eq!(e.exit_code(), exit::USAGE);
            assert!(
                e.hint_text().is_some_and(|h| h.contains("3 to 24")),
                "{bad}"
            );
        }
    }

    #[test]
    fn derived_account_names_are_valid_stable_and_distinct() {
        let sub = "6d4f1c2e-9a3b-4c5d-8e7f-0a1b2c3d4e5f";
        let a = default_account(Some("Pet Clinic (EU)"), sub);
        assert!(account_name(&a).is_ok(), "{a}");
        assert!(a.starts_with("stpetclinic"), "{a}");
        assert_eq!(a, default_account(Some("Pet Clinic (EU)"), sub));
        assert_ne!(
            a,
            default_account(
                Some("Pet Clinic (EU)"),
                "00000000-0000-0000-0000-000000000001"
            )
        );
        let long = default_account(Some("a-very-long-project-name-indeed-yes"), sub);
        assert_eq!(long.len(), 24, "{long}");
        assert!(account_name(&long).is_ok());
        let none = default_account(None, sub);
        assert!(
            none.starts_with("stnubes") && account_name(&none).is_ok(),
            "{none}"
        );
        let symbols = default_account(Some("---"), sub);
        assert!(symbols.starts_with("stnubes"), "{symbols}");
    }

    #[test]
    fn resource_groups_and_containers_follow_azure_rules() {
        assert!(resource_group("rg-petclinic_state.(1)").is_ok());
        assert!(resource_group("rg.").is_err());
        assert!(resource_group("rg petclinic").is_err());
        assert!(resource_group(&"r".repeat(91)).is_err());
        assert_eq!(
            default_resource_group(Some("Pet Clinic")),
            "rg-pet-clinic-tfstate"
        );
        assert_eq!(default_resource_group(None), "rg-nubes-tfstate");
        assert!(resource_group(&default_resource_group(Some(&"x".repeat(200)))).is_ok());
        assert!(container("tfstate").is_ok());
        for bad in ["tf", "TFstate", "-tfstate", "tf--state", "tfstate-"] {
            assert!(container(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locations_are_programmatic_names() {
        assert_eq!(
            location("westeurope", "--location").ok().as_deref(),
            Some("westeurope")
        );
        assert!(location("eastus2", "--location").is_ok());
        let e = location("West Europe", "--location").expect_err("display name");
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(
            e.hint_text()
                .is_some_and(|h| h.contains("did you mean `westeurope`"))
        );
        assert!(location("east-us", "--location").is_err());
        assert!(location("2east", "--location").is_err());
    }

    #[test]
    fn github_remotes_give_owner_and_name() {
        for url in [
            "https://github.com/octo-org/petclinic.git",
            "https://github.com/octo-org/petclinic",
            "git@github.com:octo-org/petclinic.git",
            "ssh://git@github.com/octo-org/petclinic.git",
        ] {
            assert_eq!(
                github_repo_of(url).as_deref(),
                Some("octo-org/petclinic"),
                "{url}"
            );
        }
        assert_eq!(
            github_repo_of("https://gitlab.com/octo-org/petclinic.git"),
            None
        );
        assert_eq!(github_repo_of("https://github.com/octo-org"), None);
        assert!(repo("octo-org/petclinic", "--repo").is_ok());
        assert!(repo("octo org/petclinic", "--repo").is_err());
        assert!(repo("octo-org/../x", "--repo").is_err());
    }
}
