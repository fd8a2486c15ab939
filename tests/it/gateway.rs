//! Gateway exposure (issue 6, item 6), through the real binary: during a real run, a
//! client without the run's credentials, with wrong ones, or asking for another path or
//! method is refused; the gateway is bound to loopback only and stops listening when the
//! command ends; writes of a foreign state are refused with 409 and change nothing.
//! The client is `gateway_client.py`, run from Terraform's `local-exec` (real Terraform)
//! or as a stand-in Terraform binary.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{Azurite, Project, block_on};

fn client() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/gateway_client.py")
}

const PROBE_STACK: &str = r#"
terraform {
  backend "azurerm" {}
}

resource "terraform_data" "probe" {
  provisioner "local-exec" {
    command = "python3 \"$GATEWAY_CLIENT\" probe"
  }
}
"#;

fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the gateway client wrote no report");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn during_a_real_run_only_the_runs_credentials_path_and_methods_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let mut p = Project::new(
        "[state]\nbackend = \"local\"\n",
        &[("main.tf", PROBE_STACK)],
    );
    p.set_env("GATEWAY_CLIENT", client().to_str().unwrap());
    p.set_env("GATEWAY_REPORT", report_file.to_str().unwrap());
    p.run(&["up", "alice"]).ok();
    let report = read_report(&report_file);
    let r = report.as_object().unwrap();

    assert_eq!(report["host"], "127.0.0.1", "{report:#}");
    let mut refused = 0;
    for (name, result) in r {
        let status = result["status"].as_u64();
        if [
            "none ",
            "wrong_user ",
            "wrong_password ",
            "empty_password ",
            "bearer_password ",
            "password_only ",
        ]
        .iter()
        .any(|p| name.starts_with(p))
        {
            assert_eq!(status, Some(401), "{name}: {result}");
            assert_eq!(
                result["www_authenticate"], "Basic realm=\"nubes\"",
                "{name}"
            );
            assert_eq!(result["body"], "unauthorized\n", "{name}");
            refused += 1;
        } else if name.starts_with("other path ") {
            assert_eq!(status, Some(404), "{name}: {result}");
            refused += 1;
        } else if name.starts_with("method ") {
            assert_eq!(status, Some(405), "{name}: {result}");
            refused += 1;
        }
    }
    assert_eq!(refused, 6 * 7 + 9 + 5, "{report:#}");

    // Bound to 127.0.0.1 only, per the kernel's socket table (0100007F = 127.0.0.1).
    let port = report["port"].as_u64().unwrap() as u16;
    let listening: Vec<&str> = report["listening"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listening, [format!("0100007F:{port:04X}")], "{report:#}");
    // And the machine's own address, when it has one, does not reach it.
    match report["own_address_connect"].as_str() {
        Some(outcome) => {
            assert!(outcome.starts_with("refused"), "{report:#}");
            println!("own address {}: {outcome}", report["own_address"]);
        }
        None => println!("no non-loopback address: {}", report["own_address"]),
    }

    // Only while the command runs: the port is closed now.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // The refused writes (lineage "x", serial 999) left no trace.
    let stored = std::fs::read(p.path().join(".nubes/state/alice.terraform.tfstate")).unwrap();
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert_ne!(stored["lineage"], "x");
    assert_ne!(stored["serial"], 999);
}

/// A project whose "Terraform" is the hostile client, against Azurite (the real Azure
/// store).
fn client_as_terraform(az: &Azurite, report: &Path) -> Project {
    let mut p = Project::on(az, "");
    let toml = format!(
        "[project]\nname = \"demo\"\n[terraform]\nbinary = \"{}\"\n",
        client().display()
    );
    std::fs::write(p.path().join("nubes.toml"), toml).unwrap();
    p.set_env("GATEWAY_REPORT", report.to_str().unwrap());
    p
}

#[test]
fn foreign_lineages_lower_or_negative_serials_and_non_states_are_refused_and_change_nothing() {
    let az = Azurite::https();
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let mut p = client_as_terraform(&az, &report_file);
    p.set_env("GATEWAY_EXIT", "1");
    let out = p.run(&["tf", "alice", "--", "guard"]).code(1);
    assert!(!out.all().contains("panicked"), "{}", out.all());
    let report = read_report(&report_file);
    let status = |k: &str| report[k]["status"].as_u64().unwrap();
    assert_eq!(status("first"), 200, "{report:#}");
    for (k, want) in [
        ("other lineage", 409),
        ("lower serial", 409),
        ("lineage newline", 409),
        ("lineage lookalike", 409),
        // Not a state document at all: a bad request rather than a conflict.
        ("negative serial", 400),
        ("array", 400),
        ("truncated", 400),
        ("nested", 400),
    ] {
        assert_eq!(status(k), want, "{k}: {report:#}");
    }
    assert!(
        report["other lineage"]["body"]
            .as_str()
            .unwrap()
            .contains("lineage bbb")
    );
    assert!(
        report["negative serial"]["body"]
            .as_str()
            .unwrap()
            .contains("non-negative")
    );
    // The refusal names the hostile lineage escaped, not raw.
    let body = report["lineage newline"]["body"].as_str().unwrap();
    assert!(
        body.contains("aaa\\n::warning::x") && !body.contains('\n'),
        "{body}"
    );
    // Each refusal was reported to the user too.
    assert!(
        out.stderr.contains("refused a state write"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("\n::warning::x"), "{}", out.stderr);

    // The command failed, and its gateway is gone all the same.
    let port = report["port"].as_u64().unwrap() as u16;
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    let first = r#"{"version": 4, "serial": 3, "lineage": "aaa", "outputs": {}, "resources": []}"#;
    assert_eq!(report["after"]["body"], first);
    let blob = block_on(az.blobs().get("tfstate", "alice.terraform.tfstate"));
    assert_eq!(
        String::from_utf8_lossy(&blob.body),
        first,
        "the stored state changed"
    );
}

#[test]
fn a_state_whose_lineage_is_not_header_safe_is_stored_not_refused_with_a_header_error() {
    // Regression: the lineage went into blob metadata (an HTTP header) as it was, so a
    // state whose lineage held a newline or non-ASCII failed to write with "failed to
    // parse header value" (503 to Terraform), though the local store accepted it.
    let az = Azurite::https();
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let p = client_as_terraform(&az, &report_file);
    let out = p.run(&["tf", "alice", "--", "odd_lineage"]).ok();
    assert!(!out.all().contains("panicked"), "{}", out.all());
    let report = read_report(&report_file);
    assert_eq!(report["first"]["status"], 200, "{report:#}\n{}", out.all());
    let blob = block_on(az.blobs().get("tfstate", "alice.terraform.tfstate"));
    let stored: Value = serde_json::from_slice(&blob.body).unwrap();
    assert_eq!(stored["lineage"], "a\n::warning::x\u{202e}");
    assert_eq!(blob.meta("nubesserial"), Some("1"));
    assert_eq!(blob.meta("nubeslineage"), None);
    let out = p.run(&["status", "alice"]).ok();
    assert!(
        out.stdout.contains("lineage a\\n::warning::x\\u{202e}"),
        "{}",
        out.stdout
    );
}
