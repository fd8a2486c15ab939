//! Clean output: colour settings reach Terraform (no ESC byte anywhere with colour
//! off), a lock wait shows the holder once and then sparse progress lines, and the
//! `--json` documents of `up`, `down`, `run` and a failed `plan`.

use std::io::Write as _;

use crate::support::{Azurite, Out, Project, STACK, screen};

fn no_escape(out: &Out, what: &str) {
    assert!(
        !out.stdout.contains('\x1b') && !out.stderr.contains('\x1b'),
        "{what}: an ANSI escape in the output:\n{}",
        out.all().replace('\x1b', "<ESC>")
    );
}

/// `--color never`, `NO_COLOR=1` and `CI=true` each give output without a single escape
/// sequence, Terraform's included (it colours even into a pipe unless told -no-color).
#[test]
fn colour_off_reaches_terraform() {
    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    let out = p.run(&["--color", "never", "up", "alice"]).ok();
    assert!(out.stderr.contains("Apply complete"), "{}", out.stderr);
    no_escape(&out, "--color never");
    // Plain timing table at the end (not a terminal).
    let table = out
        .stderr
        .split("`nubes up alice` took:")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        table.contains("  terraform apply ") && table.contains("  total "),
        "{table}"
    );
    // Each variant really runs Terraform: --refresh skips the fast path.
    p.set_env("NO_COLOR", "1");
    let out = p.run(&["up", "alice", "--refresh"]).ok();
    assert!(out.stderr.contains("No changes"), "{}", out.stderr);
    no_escape(&out, "NO_COLOR=1");
    p.unset_env("NO_COLOR");
    p.set_env("CI", "true");
    let out = p.run(&["plan", "alice"]).ok();
    no_escape(&out, "CI=true");
    let out = p.run(&["down", "alice"]).ok();
    assert!(out.stderr.contains("Destroy complete"), "{}", out.stderr);
    no_escape(&out, "CI=true down");
}

/// While another process holds the lock, the holder is named once (not once a second
/// as its age changes), and a plain progress line follows after 10 s; exit 3 at the
/// timeout. Before that, `list` and `status` show the environment being created.
#[test]
fn a_lock_wait_names_the_holder_once() {
    let p = Project::new("[state]\nbackend = \"local\"\n", &[("main.tf", STACK)]);
    let dir = p.path().join(".nubes/state");
    std::fs::create_dir_all(&dir).unwrap();
    let mut lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("alice.terraform.tfstate.lock"))
        .unwrap();
    lock.try_lock().expect("the test holds the lock");
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let info = serde_json::json!({
        "ID": "5f0c", "Operation": "OperationTypeApply", "Who": "carol@ci",
        "Version": "1.15.5", "Created": created, "Path": "alice", "Info": ""
    });
    lock.write_all(info.to_string().as_bytes()).unwrap();
    lock.flush().unwrap();

    // The local backend shows an environment being created (locked, no state yet).
    let list = p.run(&["list"]).ok();
    assert!(
        list.stdout.contains("alice") && list.stdout.contains("carol@ci"),
        "{}",
        list.all()
    );
    let status = p.run(&["status", "alice"]).ok();
    assert!(
        status.stdout.contains("being created") && status.stdout.contains("carol@ci"),
        "{}",
        status.all()
    );

    let out = p
        .run(&["--lock-timeout", "12s", "tf", "alice", "--", "version"])
        .code(3);
    let held: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("is locked by carol@ci"))
        .collect();
    assert_eq!(held.len(), 1, "{}", out.stderr);
    let still: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("still waiting for the lock on `alice`"))
        .collect();
    assert_eq!(still.len(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    drop(lock);

    // The stack declares `backend "azurerm"`: with local state, one clear warning.
    let out = p.run(&["tf", "alice", "--", "version"]).ok();
    assert_eq!(
        out.stderr
            .matches("targets Azure (azurerm), but its state stays on this machine")
            .count(),
        1,
        "{}",
        out.stderr
    );
}

fn doc(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", out.all()))
}

/// `up`, `down`, `plan` and `run` with `--json`: one document on stdout, `"schema": 1`,
/// and an error object on stdout when the command fails.
#[test]
fn json_documents_of_up_plan_down_and_run() {
    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    let up = doc(&p.run(&["up", "alice", "--json"]).ok());
    assert_eq!(up["schema"], 1);
    assert_eq!(
        (&up["command"], &up["environment"], &up["ok"]),
        (&"up".into(), &"alice".into(), &true.into())
    );
    assert_eq!(up["fast_path"], false);
    assert_eq!(up["changes"], true);
    assert_eq!(up["plan"]["add"], 3, "{up}");
    assert_eq!(up["outputs"]["value"]["value"], "item-0-1", "{up}");
    assert_eq!(up["outputs"]["value"]["sensitive"], false);
    // The stages with their times, as the timing table on stderr shows them.
    let stages: Vec<&str> = up["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for stage in [
        "lock",
        "render",
        "terraform init",
        "terraform plan",
        "terraform apply",
    ] {
        assert!(stages.contains(&stage), "{stage}: {up}");
    }
    let again = doc(&p.run(&["up", "alice", "--json"]).ok());
    assert_eq!(
        (&again["fast_path"], &again["changes"]),
        (&true.into(), &false.into())
    );

    let plan = doc(&p.run(&["plan", "alice", "--json"]).ok());
    assert_eq!(
        (&plan["schema"], &plan["command"], &plan["changes"]),
        (&1.into(), &"plan".into(), &false.into())
    );

    // A failing plan (Terraform refuses the configuration): an error object on stdout,
    // the message on stderr as always.
    std::fs::write(
        p.path().join("terraform/broken.tf"),
        "resource \"terraform_data\" {\n",
    )
    .unwrap();
    let out = p.run(&["plan", "alice", "--json"]).code(1);
    let failed = doc(&out);
    assert_eq!(
        (&failed["schema"], &failed["command"], &failed["ok"]),
        (&1.into(), &"plan".into(), &false.into())
    );
    assert_eq!(failed["error"]["exit_code"], 1);
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("terraform"),
        "{failed}"
    );
    assert!(out.stderr.contains("error:"), "{}", out.stderr);
    // Refused input is an error object too (exit 2), before anything runs.
    let out = p.run(&["plan", "Alice_B", "--json"]).code(2);
    let bad = doc(&out);
    assert_eq!(
        (&bad["environment"], &bad["error"]["exit_code"]),
        (&"Alice_B".into(), &2.into())
    );
    std::fs::remove_file(p.path().join("terraform/broken.tf")).unwrap();

    // `run`: the dispatched command's document, or why there is nothing to do.
    let payload = p.path().join("push.json");
    std::fs::write(&payload, r#"{"ref":"refs/heads/main","deleted":false}"#).unwrap();
    p.set_env("GITHUB_ACTIONS", "true");
    p.set_env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567");
    p.set_env("GITHUB_EVENT_NAME", "push");
    p.set_env("GITHUB_EVENT_PATH", payload.to_str().unwrap());
    p.set_env("GITHUB_REF", "refs/heads/main");
    let nothing = doc(&p.run(&["run", "--json"]).ok());
    assert_eq!(
        (&nothing["command"], &nothing["action"]),
        (&"run".into(), &"nothing".into())
    );
    assert!(
        nothing["reason"].as_str().unwrap().contains("main"),
        "{nothing}"
    );
    std::fs::write(
        &payload,
        r#"{"ref":"refs/heads/env-alice","deleted":false}"#,
    )
    .unwrap();
    p.set_env("GITHUB_REF", "refs/heads/env-alice");
    let pushed = doc(&p.run(&["run", "--json"]).ok());
    assert_eq!(
        (&pushed["command"], &pushed["environment"]),
        (&"up".into(), &"alice".into())
    );
    for k in [
        "GITHUB_ACTIONS",
        "GITHUB_SHA",
        "GITHUB_EVENT_NAME",
        "GITHUB_EVENT_PATH",
        "GITHUB_REF",
    ] {
        p.unset_env(k);
    }

    let down = doc(&p.run(&["down", "alice", "--json"]).ok());
    assert_eq!(
        (&down["command"], &down["destroyed"]),
        (&"down".into(), &true.into())
    );
    assert!(
        down["tombstone"].as_str().unwrap().contains("tombstone"),
        "{down}"
    );
    let gone = doc(&p.run(&["down", "alice", "--json"]).ok());
    assert_eq!(gone["destroyed"], false);
}

/// On a terminal, `up` shows its stages live: each stage ends as a line with a tick and
/// its time, Terraform's own output appears above (before) the line of the stage that
/// printed it, nothing of Terraform's output is lost, and a failed stage ends with a
/// cross. The terminal's output is read through a real pseudo-terminal.
#[test]
fn on_a_terminal_up_shows_each_stage_live_with_terraform_output_above_it() {
    let az = Azurite::http();
    let p = Project::on(&az, "");
    let out = p.run_on_terminal(&["up", "alice"], "").ok();
    let text = screen(&out.stdout);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
    };
    for stage in [
        "lock",
        "render",
        "terraform init",
        "terraform plan",
        "terraform apply",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("✓ {stage:<22} ")))
            .unwrap_or_else(|| panic!("no finished `{stage}` line in:\n{text}"));
        assert!(line.trim_end().ends_with('s'), "{line}");
    }
    // Terraform's output came through whole, and above its stage's line.
    assert!(at("Plan: 3 to add, 0 to change, 0 to destroy.") < at("✓ terraform plan"));
    assert!(at("Apply complete! Resources: 3 added") < at("✓ terraform apply"));
    assert!(at("✓ terraform plan") < at("✓ terraform apply"));
    // The timing table follows the stages.
    assert!(at("✓ terraform apply") < at("`nubes up alice` took:"));

    // A plan that fails ends its stage with a cross, and the error follows.
    std::fs::write(
        p.path().join("terraform/main.tf"),
        format!("{STACK}\nresource \"terraform_data\" \"broken\" {{\n  input = var.missing\n}}\n"),
    )
    .unwrap();
    let out = p.run_on_terminal(&["up", "alice"], "").code(1);
    let text = screen(&out.stdout);
    assert!(
        text.contains("Reference to undeclared input variable"),
        "{text}"
    );
    let failed = text
        .lines()
        .find(|l| l.contains("✗ terraform "))
        .unwrap_or_else(|| panic!("no failed stage line in:\n{text}"));
    assert!(
        failed.contains("terraform plan") || failed.contains("terraform validate"),
        "{failed}"
    );
    assert!(!text.contains("✓ terraform apply"), "{text}");
    assert!(
        text.find("✗ terraform").unwrap() < text.find("error: stage infrastructure").unwrap(),
        "{text}"
    );
}
