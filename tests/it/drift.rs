//! `nubes drift`: each environment judged against its own branch `env-<name>` (read
//! from a real git repository with branches), drift apart from pending changes, the
//! recorded verdict, and `--fix` (corrects from the branch, skips protected
//! environments unless named, never touches a locked one). Real Terraform, real
//! Azurite.
//!
//! The out-of-band change: the built-in `terraform_data` resource's refresh returns its
//! stored value unchanged (Terraform's `internal/builtin/providers/terraform`), so no
//! built-in resource can make Terraform's refresh find drift (`resource_drift`). The
//! tests instead change the object where Terraform keeps its record of it: the stored
//! state is edited (the value a refresh of a changed cloud object would have read), or
//! someone applies other values by hand with `nubes tf`; or a value the configuration
//! reads from outside (a `terraform_remote_state` data source over a local document)
//! moves. All leave the branch's configuration as it was applied, and the plan wants to
//! change the resource, which is what a refreshed real resource gives too.

use crate::support::{Azurite, Project, block_on, git_commit};

const STACK: &str = r#"
terraform {
  backend "azurerm" {}
}
variable "environment" {
  type = string
}
variable "size" {
  type    = string
  default = "S"
}
resource "terraform_data" "app" {
  input = "${var.environment}-${var.size}"
}
"#;

/// A checkout of a branch somewhere else (a CI runner), where `up` applies it.
fn ci_checkout(az: &Azurite, nubes_toml: &str, main_tf: &str) -> Project {
    let ci = Project::on(az, "");
    std::fs::write(ci.path().join("nubes.toml"), nubes_toml).unwrap();
    std::fs::write(ci.path().join("terraform/main.tf"), main_tf).unwrap();
    ci
}

fn state_of(az: &Azurite, env: &str) -> Vec<u8> {
    block_on(
        az.blobs()
            .get("tfstate", &format!("{env}.terraform.tfstate")),
    )
    .body
}

fn meta_of(az: &Azurite, env: &str, key: &str) -> Option<String> {
    let props = block_on(
        az.blobs()
            .properties("tfstate", &format!("{env}.terraform.tfstate")),
    );
    props.meta(key).map(str::to_string)
}

#[test]
fn drift_judges_each_environment_against_its_own_branch_and_fix_corrects_it() {
    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    let toml = std::fs::read_to_string(p.path().join("nubes.toml")).unwrap();
    std::fs::write(p.path().join("terraform/main.tf"), STACK).unwrap();
    // The default branch, checked out here; env-alice's Terraform differs from it.
    git_commit(
        p.path(),
        "refs/heads/main",
        &[("nubes.toml", &toml), ("terraform/main.tf", STACK)],
    );
    let alice_tf = STACK.replace("default = \"S\"", "default = \"M\"");
    let first = git_commit(
        p.path(),
        "refs/heads/env-alice",
        &[
            ("nubes.toml", &toml),
            ("terraform/main.tf", &alice_tf),
            ("src/app.js", "application code, not extracted"),
        ],
    );
    ci_checkout(&az, &toml, &alice_tf)
        .run(&["up", "alice"])
        .ok();
    // Judged against this checkout, alice would differ (the old behaviour).
    p.run(&["plan", "alice", "--detailed-exitcode"]).code(4);

    let summary = p.path().join("summary.md");
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let out = p.run(&["drift"]).ok();
    assert!(
        out.stdout
            .contains(&format!("alice: no drift (env-alice @ {})", &first[..12])),
        "{}",
        out.stdout
    );
    assert_eq!(
        meta_of(&az, "alice", "nubesdrift").as_deref(),
        Some("clean")
    );
    assert!(meta_of(&az, "alice", "nubesdriftat").is_some());
    let copy = p.path().join(".nubes/branches/alice");
    assert!(
        walkdir::WalkDir::new(&copy)
            .into_iter()
            .filter_map(Result::ok)
            .all(|e| !e.path().ends_with("app.js")),
        "only the configuration is extracted"
    );

    // Out of band: the object now holds another value (as a refresh of a changed cloud
    // object would read it). The state is edited and pushed as a new serial.
    let mut doc: serde_json::Value = serde_json::from_slice(&state_of(&az, "alice")).unwrap();
    doc["serial"] = (doc["serial"].as_u64().unwrap() + 1).into();
    let edited = doc.to_string().replace("alice-M", "alice-XXL");
    let file = p.path().join("edited.tfstate");
    std::fs::write(&file, &edited).unwrap();
    p.run(&["tf", "alice", "--", "state", "push", file.to_str().unwrap()])
        .ok();
    let before = state_of(&az, "alice");

    let out = p.run(&["drift", "--json"]).code(4);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout only");
    assert_eq!(doc["checked"], 1);
    assert_eq!(doc["drifted"], 1);
    let alice = &doc["environments"][0];
    assert_eq!(alice["environment"], "alice");
    assert_eq!(alice["verdict"], "drifted");
    assert_eq!(alice["branch"], "env-alice");
    assert_eq!(alice["reference"], "refs/heads/env-alice");
    assert_eq!(alice["commit"], first.as_str());
    assert_eq!(alice["drifted"][0]["address"], "terraform_data.app");
    assert_eq!(alice["drifted"][0]["action"], "update");
    let attrs = alice["drifted"][0]["attributes"].as_array().unwrap();
    assert!(attrs.contains(&"input".into()), "{attrs:?}");
    assert_eq!(alice["pending"], serde_json::json!([]));
    assert_eq!(state_of(&az, "alice"), before, "drift never applies");
    assert_eq!(
        meta_of(&az, "alice", "nubesdrift").as_deref(),
        Some("drifted")
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("**1 drifted**") && md.contains("`terraform_data.app` (input"),
        "{md}"
    );
    let out = p.run(&["drift", "alice", "--markdown"]).code(4);
    assert!(out.stdout.starts_with("### nubes drift"), "{}", out.stdout);

    // --fix re-applies alice from its own branch (size M), not from this checkout (S).
    let out = p.run(&["drift", "--fix"]).ok();
    assert!(
        out.stdout.contains("alice: DRIFTED")
            && out.stdout.contains("corrected: re-applied from env-alice"),
        "{}",
        out.stdout
    );
    let after = String::from_utf8(state_of(&az, "alice")).unwrap();
    assert!(
        after.contains("alice-M") && !after.contains("alice-XXL") && !after.contains("alice-S"),
        "{after}"
    );
    assert_eq!(
        meta_of(&az, "alice", "nubescommit").as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        meta_of(&az, "alice", "nubesbranch").as_deref(),
        Some("env-alice")
    );
    assert_eq!(
        meta_of(&az, "alice", "nubesdrift").as_deref(),
        Some("clean")
    );
    let out = p.run(&["drift"]).ok();
    assert!(out.stdout.contains("alice: no drift"), "{}", out.stdout);

    // A new commit on env-alice, not applied yet: pending, not drift.
    let extra =
        format!("{alice_tf}\nresource \"terraform_data\" \"extra\" {{\n  input = \"x\"\n}}\n");
    git_commit(
        p.path(),
        "refs/heads/env-alice",
        &[("nubes.toml", &toml), ("terraform/main.tf", &extra)],
    );
    let out = p.run(&["drift"]).ok();
    assert!(
        out.stdout.contains("alice: no drift, changes pending")
            && out
                .stdout
                .contains("1 pending change(s) on env-alice (--pending lists them)")
            && !out.stdout.contains("terraform_data.extra"),
        "{}",
        out.stdout
    );
    assert_eq!(
        meta_of(&az, "alice", "nubesdrift").as_deref(),
        Some("pending")
    );
    let out = p.run(&["drift", "--pending"]).code(4);
    assert!(
        out.stdout.contains("pending: Create terraform_data.extra"),
        "{}",
        out.stdout
    );
    // --fix leaves pending changes to the push that brings them (or --pending).
    let before = state_of(&az, "alice");
    let out = p.run(&["drift", "--fix"]).ok();
    assert!(
        out.stdout.contains("skipped: only pending changes"),
        "{}",
        out.stdout
    );
    assert_eq!(state_of(&az, "alice"), before);

    let out = p.run(&["drift", "Not_An_Env"]).code(2);
    assert!(out.stderr.contains("uppercase"), "{}", out.stderr);
}

#[test]
fn drift_fix_skips_protected_unless_named_never_touches_a_locked_one_and_reports_no_branch() {
    let az = Azurite::https();
    let p = Project::on(&az, "[environments.bob]\nprotected = true\n");
    let toml = std::fs::read_to_string(p.path().join("nubes.toml")).unwrap();
    std::fs::write(p.path().join("terraform/main.tf"), STACK).unwrap();
    let files = [("nubes.toml", toml.as_str()), ("terraform/main.tf", STACK)];
    git_commit(p.path(), "refs/heads/main", &files);
    // bob's branch as fetched in CI (remote-tracking), carol's as a local branch.
    let bob = git_commit(p.path(), "refs/remotes/origin/env-bob", &files);
    git_commit(p.path(), "refs/heads/env-carol", &files);
    let ci = ci_checkout(&az, &toml, STACK);
    for env in ["bob", "carol", "dave"] {
        ci.run(&["up", env]).ok();
    }
    // Someone applies other values by hand, behind the branch's back.
    for env in ["bob", "carol"] {
        p.run(&["tf", env, "--", "init", "-input=false"]).ok();
        p.run(&[
            "tf",
            env,
            "--",
            "apply",
            "-auto-approve",
            "-input=false",
            "-var",
            "size=XXL",
        ])
        .ok();
    }
    let lock = r#"{"ID":"99999999-8888-7777-6666-555555555555","Operation":"OperationTypeApply","Info":"","Who":"dave@ci","Version":"1.15.5","Created":"2026-11-22T09:00:00Z","Path":"tfstate/carol.terraform.tfstate"}"#;
    block_on(
        az.blobs()
            .terraform_lock("tfstate", "carol.terraform.tfstate", lock),
    );
    let bob_before = state_of(&az, "bob");
    let carol_before = state_of(&az, "carol");

    let out = p
        .run(&["--lock-timeout", "2s", "drift", "--fix", "--json"])
        .code(3);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let envs = doc["environments"].as_array().unwrap();
    let by = |name: &str| {
        envs.iter()
            .find(|e| e["environment"] == name)
            .unwrap()
            .clone()
    };
    let b = by("bob");
    assert_eq!(b["verdict"], "drifted");
    assert_eq!(b["reference"], "refs/remotes/origin/env-bob");
    assert_eq!(b["fix"]["outcome"], "skipped");
    assert!(
        b["fix"]["reason"].as_str().unwrap().contains("protected"),
        "{b}"
    );
    let c = by("carol");
    assert_eq!(c["verdict"], "failed");
    assert_eq!(c["exit_code"], 3);
    assert!(c["error"].as_str().unwrap().contains("dave@ci"), "{c}");
    assert_eq!(c["fix"]["outcome"], "skipped");
    let d = by("dave");
    assert_eq!(d["verdict"], "no-branch");
    assert_eq!(doc["corrected"], 0);
    assert_eq!(state_of(&az, "bob"), bob_before, "protected: not corrected");
    assert_eq!(state_of(&az, "carol"), carol_before, "locked: not touched");
    let props = block_on(az.blobs().properties("tfstate", "carol.terraform.tfstate"));
    assert_eq!(
        props.headers.get("x-ms-lease-state").map(String::as_str),
        Some("leased"),
        "the lock was not broken"
    );
    assert_eq!(
        meta_of(&az, "dave", "nubesdrift").as_deref(),
        Some("no-branch")
    );
    assert_eq!(
        meta_of(&az, "bob", "nubesdrift").as_deref(),
        Some("drifted")
    );

    // On a terminal, naming it is not enough: its name is asked again.
    let out = p
        .run_on_terminal(&["drift", "--fix", "bob"], "yes\n")
        .code(2);
    assert!(
        out.stdout.contains("`bob` is protected") && out.stdout.contains("not confirmed"),
        "{}",
        out.stdout
    );
    assert!(
        String::from_utf8(state_of(&az, "bob"))
            .unwrap()
            .contains("bob-XXL")
    );

    // Named (without a terminal, as in CI), the protected environment is corrected,
    // from its own branch.
    let out = p.run(&["drift", "--fix", "bob"]).ok();
    assert!(
        out.stdout.contains("corrected: re-applied from env-bob"),
        "{}",
        out.stdout
    );
    let after = String::from_utf8(state_of(&az, "bob")).unwrap();
    assert!(
        after.contains("bob-S") && !after.contains("bob-XXL"),
        "{after}"
    );
    assert_eq!(
        meta_of(&az, "bob", "nubescommit").as_deref(),
        Some(bob.as_str())
    );
    p.run(&["drift", "bob"]).ok();
    assert_eq!(meta_of(&az, "bob", "nubesdrift").as_deref(), Some("clean"));
}

/// A value read from outside the configuration moves: a `terraform_remote_state` data
/// source (local backend) reads a document the test then changes, and its value flows
/// into a resource. The branch's configuration is the one applied, so the change the
/// plan proposes is drift; `--fix` re-applies the branch, after which it is clean.
#[test]
fn a_value_read_from_outside_that_moved_is_drift_and_fix_reapplies_the_branch() {
    let az = Azurite::https();
    let p = Project::on(&az, "");
    let world = p.path().join("world.tfstate");
    let document = |sku: &str| {
        format!(
            r#"{{"version":4,"terraform_version":"1.15.5","serial":1,"lineage":"world","outputs":{{"sku":{{"value":"{sku}","type":"string"}}}},"resources":[]}}"#
        )
    };
    std::fs::write(&world, document("B1")).unwrap();
    let stack = format!(
        r#"
terraform {{
  backend "azurerm" {{}}
}}
variable "environment" {{
  type = string
}}
data "terraform_remote_state" "world" {{
  backend = "local"
  config = {{
    path = "{}"
  }}
}}
resource "terraform_data" "app" {{
  input = "${{var.environment}}-${{data.terraform_remote_state.world.outputs.sku}}"
}}
"#,
        world.display()
    );
    let toml = std::fs::read_to_string(p.path().join("nubes.toml")).unwrap();
    std::fs::write(p.path().join("terraform/main.tf"), STACK).unwrap();
    git_commit(
        p.path(),
        "refs/heads/main",
        &[("nubes.toml", &toml), ("terraform/main.tf", STACK)],
    );
    git_commit(
        p.path(),
        "refs/heads/env-erin",
        &[("nubes.toml", &toml), ("terraform/main.tf", &stack)],
    );
    ci_checkout(&az, &toml, &stack).run(&["up", "erin"]).ok();
    p.run(&["drift"]).ok();

    std::fs::write(&world, document("P1v3")).unwrap();
    let out = p.run(&["drift"]).code(4);
    assert!(
        out.stdout.contains("erin: DRIFTED")
            && out
                .stdout
                .contains("changed outside Terraform: Update terraform_data.app: input"),
        "{}",
        out.stdout
    );
    let out = p.run(&["drift", "--fix"]).ok();
    assert!(
        out.stdout.contains("corrected: re-applied from env-erin"),
        "{}",
        out.stdout
    );
    assert!(
        String::from_utf8(state_of(&az, "erin"))
            .unwrap()
            .contains("erin-P1v3")
    );
    let out = p.run(&["drift"]).ok();
    assert!(out.stdout.contains("erin: no drift"), "{}", out.stdout);
}
