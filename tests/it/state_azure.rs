//! The Azure Blob state store against real Azurite, with real Terraform: DESIGN.md
//! "State" and "The loopback gateway", and issue 2's must-holds.

use std::time::{Duration, Instant};

use crate::support::{Azurite, Project, block_on};

const KEY: &str = "alice.terraform.tfstate";

fn state_json(az: &Azurite) -> serde_json::Value {
    let r = block_on(az.blobs().get("tfstate", KEY));
    assert_eq!(r.status, 200, "state blob missing");
    serde_json::from_slice(&r.body).expect("stored state is JSON")
}

#[test]
fn tf_apply_writes_nubesgen_compatible_blob_keeps_lineage_history_and_restores() {
    let az = Azurite::https();
    let p = Project::on(&az, "");
    p.run(&["tf", "alice", "--", "init", "-input=false"]).ok();
    p.run(&[
        "tf",
        "env-alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
    ])
    .ok();
    let first = state_json(&az);
    assert_eq!(
        first["resources"][0]["instances"].as_array().unwrap().len(),
        3
    );

    p.run(&[
        "tf",
        "refs/heads/env-alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "n=2",
    ])
    .ok();
    let second = state_json(&az);
    assert_eq!(second["lineage"], first["lineage"], "lineage kept");
    assert!(
        second["serial"].as_u64() > first["serial"].as_u64(),
        "serial raised"
    );

    // The lock is released and its info cleared; nubes's metadata is there.
    let props = block_on(az.blobs().properties("tfstate", KEY));
    assert_eq!(
        props.headers.get("x-ms-lease-state").map(String::as_str),
        Some("available")
    );
    assert!(props.meta("terraformlockid").is_none());
    assert_eq!(
        props.meta("nubesserial").map(str::to_string),
        Some(second["serial"].to_string())
    );

    let hist: serde_json::Value =
        serde_json::from_str(&p.run(&["state", "history", "alice", "--json"]).ok().stdout).unwrap();
    let versions = hist["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "one previous version: {hist}");
    assert_eq!(versions[0]["serial"], first["serial"]);
    let id = versions[0]["id"].as_str().unwrap().to_string();

    let pulled: serde_json::Value =
        serde_json::from_str(&p.run(&["state", "pull", "alice", &id]).ok().stdout).unwrap();
    assert_eq!(
        pulled, first,
        "the kept version is the first state, byte for byte in content"
    );

    p.run(&["state", "restore", "alice", &id]).ok();
    let restored = state_json(&az);
    assert_eq!(restored["lineage"], first["lineage"]);
    assert_eq!(
        restored["serial"].as_u64().unwrap(),
        second["serial"].as_u64().unwrap() + 1
    );
    assert_eq!(restored["resources"], first["resources"]);
    let out = p
        .run(&["tf", "alice", "--", "output", "-raw", "value"])
        .ok();
    assert_eq!(out.stdout, "item-0-1");
}

#[test]
fn plain_terraform_azurerm_lock_is_reported_and_respected_until_unlocked() {
    let az = Azurite::https();
    let p = Project::on(&az, "");
    let lock = r#"{"ID":"2b1c9a52-7a3e-4c1e-9a52-7a3e4c1e9a52","Operation":"OperationTypeApply","Info":"","Who":"bob@laptop","Version":"1.15.5","Created":"2026-11-01T10:00:00.000000Z","Path":"tfstate/alice.terraform.tfstate"}"#;
    block_on(az.blobs().terraform_lock("tfstate", KEY, lock));

    let started = Instant::now();
    let out = p
        .run(&[
            "--lock-timeout",
            "2s",
            "tf",
            "alice",
            "--",
            "init",
            "-input=false",
        ])
        .code(3);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        out.stderr.contains("bob@laptop") && out.stderr.contains("OperationTypeApply"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("infinite lease"), "{}", out.stderr);

    let out = p.run(&["unlock", "alice"]).code(2);
    assert!(
        out.stderr.contains("--yes"),
        "no terminal: confirmation required: {}",
        out.stderr
    );
    let out = p.run(&["unlock", "alice", "--yes"]).ok();
    assert!(
        out.stdout.contains("broke the lock") && out.stdout.contains("bob@laptop"),
        "{}",
        out.stdout
    );
    p.run(&["tf", "alice", "--", "init", "-input=false"]).ok();
    p.run(&["unlock", "alice", "--yes"])
        .ok()
        .stdout
        .contains("not locked");
}

#[test]
fn nubes_lock_is_seen_by_terraforms_own_azurerm_format() {
    // While nubes holds the lock, the blob carries a lease and terraformlockid metadata
    // in Terraform's format, which is what plain `terraform` (azurerm) checks.
    let az = Azurite::https();
    let slow = slow_project(&az, "");
    let mut child = slow.spawn(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "sleep=4",
    ]);
    let info = wait_for_lock_info(&az, Duration::from_secs(30));
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(info["Operation"], "nubes tf apply");
    assert!(info["ID"].as_str().unwrap().len() == 36);
    assert_eq!(info["Path"], "tfstate/alice.terraform.tfstate");
    let props = block_on(az.blobs().properties("tfstate", KEY));
    assert_eq!(
        props.headers.get("x-ms-lease-duration").map(String::as_str),
        Some("fixed"),
        "a finite lease"
    );
    assert!(child.wait().unwrap().success());
}

/// A project whose Terraform is [`SLOW_STACK`], initialised for env `alice`.
fn slow_project(az: &Azurite, toml: &str) -> Project {
    let mut p = Project::on(az, toml);
    p.set_env("NUBES_TERRAFORM_DIR", "slow");
    std::fs::create_dir_all(p.path().join("slow")).unwrap();
    std::fs::write(p.path().join("slow/main.tf"), SLOW_STACK).unwrap();
    p.run(&["tf", "alice", "--", "init", "-input=false"]).ok();
    p
}

pub const SLOW_STACK: &str = r#"
terraform {
  backend "azurerm" {}
}
variable "sleep" {
  type    = string
  default = "0"
}
variable "n" {
  type    = string
  default = "1"
}
resource "terraform_data" "slow" {
  input            = "${var.n}-${var.sleep}"
  triggers_replace = [var.n, var.sleep] # replaced, so the provisioner runs again
  provisioner "local-exec" {
    command = "sleep ${var.sleep}"
  }
}
output "value" {
  value = terraform_data.slow.output
}
"#;

fn wait_for_lock_info(az: &Azurite, within: Duration) -> Vec<u8> {
    use base64::Engine as _;
    let start = Instant::now();
    loop {
        let props = block_on(az.blobs().properties("tfstate", KEY));
        if let Some(v) = props.meta("terraformlockid") {
            return base64::engine::general_purpose::STANDARD.decode(v).unwrap();
        }
        assert!(start.elapsed() < within, "nubes never took the lock");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn eight_concurrent_applies_on_one_env_all_succeed_and_none_loses_a_write() {
    let az = Azurite::https();
    let p = Project::on(&az, "[state]\nhistory = 50\n");
    p.run(&["tf", "alice", "--", "init", "-input=false"]).ok();
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "n=0",
    ])
    .ok();
    let lineage = state_json(&az)["lineage"].clone();
    let children: Vec<_> = (1..=8)
        .map(|i| {
            p.spawn(&[
                "tf",
                "alice",
                "--",
                "apply",
                "-auto-approve",
                "-input=false",
                "-var",
                &format!("n=run{i}"),
            ])
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "run {} failed:\n{}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = state_json(&az);
    assert_eq!(last["lineage"], lineage, "lineage unchanged");
    // Every run's write is in the history (or is the current state).
    let mut seen: Vec<String> = vec![
        last["resources"][0]["instances"][0]["attributes"]["input"]["value"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    let hist: serde_json::Value =
        serde_json::from_str(&p.run(&["state", "history", "alice", "--json"]).ok().stdout).unwrap();
    for v in hist["versions"].as_array().unwrap() {
        let doc: serde_json::Value = serde_json::from_str(
            &p.run(&["state", "pull", "alice", v["id"].as_str().unwrap()])
                .ok()
                .stdout,
        )
        .unwrap();
        assert_eq!(doc["lineage"], lineage);
        if let Some(input) =
            doc["resources"][0]["instances"][0]["attributes"]["input"]["value"].as_str()
        {
            seen.push(input.to_string());
        }
    }
    for i in 1..=8 {
        assert!(
            seen.iter().any(|s| s == &format!("item-0-run{i}")),
            "run {i}'s write is missing: {seen:?}"
        );
    }
    let serials: Vec<u64> = hist["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["serial"].as_u64())
        .collect();
    let mut sorted = serials.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        serials.len(),
        "no serial written twice: {serials:?}"
    );
}

#[test]
fn a_killed_holder_leaves_a_lock_that_expires_by_itself() {
    let az = Azurite::https();
    let p = slow_project(&az, "[state]\nlease_seconds = 15\n");
    // A sleep value no other test uses, to find this run's processes.
    let mut victim = p.spawn(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "sleep=67",
    ]);
    wait_for_lock_info(&az, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500)); // let Terraform start its provisioner
    // SAFETY: killing our own child.
    unsafe { libc::kill(victim.id() as i32, libc::SIGKILL) };
    let _ = victim.wait();
    let killed_at = Instant::now();

    let out = p
        .run(&[
            "--lock-timeout",
            "60s",
            "tf",
            "alice",
            "--",
            "plan",
            "-input=false",
        ])
        .ok();
    let waited = killed_at.elapsed();
    assert!(
        out.stderr.contains("is locked by"),
        "the next run saw the stale lock: {}",
        out.stderr
    );
    assert!(
        waited < Duration::from_secs(15 + 20),
        "lock expired within the lease: {waited:?}"
    );
    // Terraform itself dies with its parent (PR_SET_PDEATHSIG: SIGTERM, after which it
    // spends a few seconds failing to save state to the vanished gateway). Its
    // provisioner's shell may outlive it, as with Terraform alone: clean that up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left;
    loop {
        let out = std::process::Command::new("pgrep")
            .args(["-af", "sleep=67"])
            .output()
            .unwrap();
        left = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 67"])
        .status();
    assert!(
        left.is_empty(),
        "Terraform of the killed run is still running: {left}"
    );
}

#[test]
fn writes_with_another_lineage_or_lower_serial_are_refused_and_state_kept() {
    let az = Azurite::https();
    let p = Project::on(&az, "");
    p.run(&["tf", "alice", "--", "init", "-input=false"]).ok();
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
    ])
    .ok();
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "n=2",
    ])
    .ok();
    let before = block_on(az.blobs().get("tfstate", KEY)).body;
    let doc: serde_json::Value = serde_json::from_slice(&before).unwrap();

    let mut other = doc.clone();
    other["lineage"] = "00000000-1111-2222-3333-444444444444".into();
    other["serial"] = (doc["serial"].as_u64().unwrap() + 5).into();
    std::fs::write(p.path().join("other.tfstate"), other.to_string()).unwrap();
    let out = p.run(&[
        "tf",
        "alice",
        "--",
        "state",
        "push",
        "-force",
        "../../../other.tfstate",
    ]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(out.all().contains("lineage"), "{}", out.all());
    assert_eq!(
        block_on(az.blobs().get("tfstate", KEY)).body,
        before,
        "stored state byte-for-byte unchanged"
    );

    let mut older = doc.clone();
    // Terraform adds one to the serial of a pushed state before writing it, so push 0:
    // it arrives as 1, lower than the stored serial (at least 2 after two applies).
    assert!(doc["serial"].as_u64().unwrap() >= 2);
    older["serial"] = 0.into();
    std::fs::write(p.path().join("older.tfstate"), older.to_string()).unwrap();
    let out = p.run(&[
        "tf",
        "alice",
        "--",
        "state",
        "push",
        "-force",
        "../../../older.tfstate",
    ]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.all().contains("lower than the stored serial"),
        "{}",
        out.all()
    );
    assert_eq!(
        block_on(az.blobs().get("tfstate", KEY)).body,
        before,
        "stored state byte-for-byte unchanged"
    );
}

#[test]
fn sas_over_http_works_end_to_end() {
    let az = Azurite::http();
    let p = Project::on(&az, "");
    p.run(&["tf", "alice", "--", "init", "-input=false"]).ok();
    p.run(&[
        "-v",
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
    ])
    .ok();
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "n=3",
    ])
    .ok();
    let hist = p.run(&["state", "history", "alice"]).ok().stdout;
    assert!(hist.contains("SERIAL"), "{hist}");
    assert_eq!(
        state_json(&az)["resources"][0]["instances"][0]["attributes"]["input"]["value"],
        "item-0-3"
    );
}

#[test]
fn secrets_never_appear_in_output() {
    for az in [Azurite::https(), Azurite::http()] {
        let p = Project::on(&az, "");
        let mut outputs = String::new();
        for args in [
            &["-vv", "tf", "alice", "--", "init", "-input=false"][..],
            &[
                "-vv",
                "tf",
                "alice",
                "--",
                "apply",
                "-auto-approve",
                "-input=false",
            ],
            &["-vv", "state", "history", "alice"],
            &["-vv", "--lock-timeout", "1s", "unlock", "alice", "--yes"],
        ] {
            outputs.push_str(&p.run(args).all());
        }
        // An error path too: a request the server rejects.
        let mut bad = Project::on(&az, "");
        bad.set_env("NUBES_STATE_CONTAINER", "nosuchcontainer");
        outputs.push_str(&bad.run(&["-vv", "tf", "alice", "--", "init"]).all());
        let sig = az.sas.split("sig=").nth(1).unwrap().to_string();
        for secret in [
            az.token.as_str(),
            az.token.split('.').nth(2).unwrap(),
            sig.as_str(),
        ] {
            assert!(!outputs.contains(secret), "secret leaked into output");
        }
        assert!(
            outputs.contains("storage PUT"),
            "verbose mode really logged requests"
        );
    }
}

#[test]
fn sigterm_during_apply_interrupts_terraform_keeps_state_and_releases_the_lock() {
    let az = Azurite::https();
    let p = slow_project(&az, "");
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
    ])
    .ok();
    let before = state_json(&az);

    let child = p.spawn(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "sleep=30",
        "-var",
        "n=2",
    ]);
    wait_for_lock_info(&az, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2)); // Terraform is inside the provisioner now
    let sent = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out: crate::support::Out = child.wait_with_output().unwrap().into();
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "Terraform stopped promptly: {:?}",
        sent.elapsed()
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("interrupted by SIGTERM"),
        "{}",
        out.stderr
    );
    assert!(
        out.all().contains("Interrupt received") || out.all().contains("Stopping operation"),
        "Terraform got an interrupt: {}",
        out.all()
    );

    // The lock was released at once (not left to expire), and the state is consistent.
    let props = block_on(az.blobs().properties("tfstate", KEY));
    assert_eq!(
        props.headers.get("x-ms-lease-state").map(String::as_str),
        Some("available")
    );
    assert!(props.meta("terraformlockid").is_none());
    let after = state_json(&az);
    assert_eq!(after["lineage"], before["lineage"]);
    assert!(after["serial"].as_u64() >= before["serial"].as_u64());
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 30"])
        .status();
    p.run(&["tf", "alice", "--", "plan", "-input=false"]).ok();
}

#[test]
fn states_over_4_mib_are_written_again_and_again() {
    // Regression: the SDK split uploads over 4 MiB into staged blocks, which Azurite
    // refuses under a lease, so the second write of a large state failed.
    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    p.set_env("NUBES_TERRAFORM_DIR", "big");
    std::fs::create_dir_all(p.path().join("big")).unwrap();
    std::fs::write(
        p.path().join("big/main.tf"),
        "terraform {\n  backend \"azurerm\" {}\n}\nvariable \"n\" {\n  type = string\n}\n\
         resource \"terraform_data\" \"big\" {\n  input = \"${var.n}-${format(\"%06000000d\", 1)}\"\n}\n",
    )
    .unwrap();
    p.run(&["tf", "alice", "--", "init", "-input=false"]).ok();
    for n in ["1", "2", "3"] {
        p.run(&[
            "tf",
            "alice",
            "--",
            "apply",
            "-auto-approve",
            "-input=false",
            "-var",
            &format!("n={n}"),
        ])
        .ok();
    }
    let state = block_on(az.blobs().get("tfstate", KEY));
    assert!(
        state.body.len() > 8 << 20,
        "state is {} bytes",
        state.body.len()
    );
    let doc: serde_json::Value = serde_json::from_slice(&state.body).unwrap();
    assert!(
        doc["resources"][0]["instances"][0]["attributes"]["input"]["value"]
            .as_str()
            .unwrap()
            .starts_with("3-")
    );
    let hist: serde_json::Value =
        serde_json::from_str(&p.run(&["state", "history", "alice", "--json"]).ok().stdout).unwrap();
    assert_eq!(hist["versions"].as_array().unwrap().len(), 2);
}
