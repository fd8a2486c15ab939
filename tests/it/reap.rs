//! `nubes reap` against a real git remote in a temp dir.

use std::path::Path;

use crate::support::{Azurite, Project, block_on};

const STACK: &str = r#"
terraform {
  backend "azurerm" {}
}
variable "environment" {
  type = string
}
resource "terraform_data" "app" {
  input = var.environment
}
"#;

/// A bare repository with one commit and a branch per name, as `origin`.
fn bare_origin(dir: &Path, branches: &[&str]) -> git2::Repository {
    let repo = git2::Repository::init_bare(dir).unwrap();
    let sig = git2::Signature::now("Dev", "dev@example.com").unwrap();
    let tree_id = repo.treebuilder(None).unwrap().write().unwrap();
    let commit = {
        let tree = repo.find_tree(tree_id).unwrap();
        repo.commit(None, &sig, &sig, "init", &tree, &[]).unwrap()
    };
    for b in branches.iter().chain(["main"].iter()) {
        repo.reference(&format!("refs/heads/{b}"), commit, true, "test")
            .unwrap();
    }
    repo
}

#[test]
fn reap_gone_branches_tears_down_exactly_those_and_never_a_protected_one() {
    let az = Azurite::https();
    let p = Project::on(&az, "[environments.e]\nprotected = true\n");
    std::fs::write(p.path().join("terraform/main.tf"), STACK).unwrap();
    for env in ["a", "b", "c", "d", "e", "f"] {
        p.run(&["up", env]).ok();
    }
    let origin_dir = tempfile::tempdir().unwrap();
    let origin = bare_origin(
        origin_dir.path(),
        &["env-a", "env-b", "env-c", "env-d", "env-e", "env-f"],
    );
    let local = git2::Repository::init(p.path()).unwrap();
    local
        .remote("origin", origin_dir.path().to_str().unwrap())
        .unwrap();
    for gone in ["env-b", "env-c", "env-d", "env-e"] {
        origin
            .find_reference(&format!("refs/heads/{gone}"))
            .unwrap()
            .delete()
            .unwrap();
    }

    let out = p.run(&["reap", "--gone-branches", "--dry-run"]).ok();
    assert!(
        out.stdout
            .contains("b: would tear down (branch `env-b` is gone from the remote)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("e: kept (protected"), "{}", out.stdout);
    assert!(
        out.stdout.contains("a: kept (still wanted;"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("3 would be torn down, nothing was changed"),
        "{}",
        out.stdout
    );
    let listed: serde_json::Value =
        serde_json::from_str(&p.run(&["list", "--json"]).ok().stdout).unwrap();
    assert_eq!(listed["count"], 6, "a dry run changes nothing");

    let summary = p.path().join("summary.md");
    let mut p = p;
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let out = p
        .run(&["reap", "--gone-branches", "--json", "--jobs", "3"])
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["torn_down"], 3, "{doc}");
    assert_eq!(doc["failed"], 0);
    let listed: serde_json::Value =
        serde_json::from_str(&p.run(&["list", "--json"]).ok().stdout).unwrap();
    let left: Vec<&str> = listed["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["a", "e", "f"]);
    let blobs = block_on(az.blobs().list("tfstate", ""));
    for gone in ["b", "c", "d"] {
        assert!(
            blobs.contains(&format!("{gone}.terraform.tfstate.tombstone.")),
            "tombstone for {gone}: {blobs}"
        );
    }
    assert!(
        std::fs::read_to_string(summary)
            .unwrap()
            .contains("| `b` | torn down |")
    );

    // Nothing is older than an hour; and reap needs a selector.
    let out = p.run(&["reap", "--older-than", "1h"]).ok();
    assert!(out.stdout.contains("0 torn down"), "{}", out.stdout);
    assert!(p.run(&["reap"]).code(2).stderr.contains("--gone-branches"));
    assert!(
        p.run(&["reap", "--older-than", "soon"])
            .code(2)
            .stderr
            .contains("not a duration")
    );
}
