//! `nubes drift`: plans environments, reports drift, never applies, never breaks a lock.

use crate::support::{Azurite, Project, block_on};

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

#[test]
fn drift_detects_changes_made_behind_nubes_back_and_never_applies_or_breaks_locks() {
    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    std::fs::write(p.path().join("terraform/main.tf"), STACK).unwrap();
    p.run(&["up", "alice"]).ok();
    p.run(&["up", "bob"]).ok();

    let out = p.run(&["drift"]).ok();
    assert!(
        out.stdout.contains("alice: no drift") && out.stdout.contains("bob: no drift"),
        "{}",
        out.stdout
    );

    // Someone applies another value by hand.
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "size=XXL",
    ])
    .ok();
    let before = block_on(az.blobs().get("tfstate", "alice.terraform.tfstate")).body;
    let summary = p.path().join("summary.md");
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let out = p.run(&["drift", "--json"]).code(4);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout only");
    assert_eq!(doc["checked"], 2);
    assert_eq!(doc["drifted"], 1);
    let alice = &doc["environments"][0];
    assert_eq!(alice["environment"], "alice");
    assert_eq!(alice["drifted"], true);
    assert_eq!(
        alice["summary"]["resources"][0]["address"],
        "terraform_data.app"
    );
    assert_eq!(alice["summary"]["resources"][0]["action"], "update");
    assert_eq!(doc["environments"][1]["drifted"], false);
    assert_eq!(
        block_on(az.blobs().get("tfstate", "alice.terraform.tfstate")).body,
        before,
        "drift never applies"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("**1 drifted**") && md.contains("`terraform_data.app`"),
        "{md}"
    );
    let out = p.run(&["drift", "alice", "--markdown"]).code(4);
    assert!(out.stdout.starts_with("### nubes drift"), "{}", out.stdout);

    // A locked environment is waited for up to the lock timeout, reported, not broken.
    let lock = r#"{"ID":"99999999-8888-7777-6666-555555555555","Operation":"OperationTypeApply","Info":"","Who":"dave@ci","Version":"1.15.5","Created":"2026-11-22T09:00:00Z","Path":"tfstate/bob.terraform.tfstate"}"#;
    block_on(
        az.blobs()
            .terraform_lock("tfstate", "bob.terraform.tfstate", lock),
    );
    let out = p.run(&["--lock-timeout", "2s", "drift", "bob"]).code(3);
    assert!(
        out.stdout.contains("bob: not checked") && out.stdout.contains("dave@ci"),
        "{}",
        out.all()
    );
    let props = block_on(az.blobs().properties("tfstate", "bob.terraform.tfstate"));
    assert_eq!(
        props.headers.get("x-ms-lease-state").map(String::as_str),
        Some("leased"),
        "the lock was not broken"
    );

    let out = p.run(&["drift", "Not_An_Env"]).code(2);
    assert!(out.stderr.contains("uppercase"), "{}", out.stderr);
}
