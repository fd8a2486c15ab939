//! The local-folder backend with real Terraform.

use crate::support::{Project, STACK};

#[test]
fn local_backend_keeps_state_history_and_restores() {
    let p = Project::new(
        "[state]\nbackend = \"local\"\nhistory = 2\n",
        &[("main.tf", STACK)],
    );
    p.run(&["tf", "alice", "--", "init", "-input=false"]).ok();
    for n in ["1", "2", "3", "4"] {
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
    let hist = p.run(&["state", "history", "alice", "--json"]).ok().stdout;
    let doc: serde_json::Value = serde_json::from_str(&hist).unwrap();
    let versions = doc["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "history = 2 keeps two versions: {hist}");
    let serials: Vec<u64> = versions
        .iter()
        .map(|v| v["serial"].as_u64().unwrap())
        .collect();
    assert!(serials[0] > serials[1], "newest first: {serials:?}");
    let current = doc["current_serial"].as_u64().unwrap();

    p.run(&["state", "restore", "alice", &serials[1].to_string()])
        .ok();
    let state: serde_json::Value =
        serde_json::from_str(&p.run(&["state", "pull", "alice"]).ok().stdout).unwrap();
    assert_eq!(
        state["serial"].as_u64().unwrap(),
        current + 1,
        "restored as a new serial"
    );
    assert!(
        p.run(&["tf", "alice", "--", "output", "-raw", "value"])
            .ok()
            .stdout
            .contains("item-0-2")
    );
    assert!(p.path().join(".nubes/.gitignore").exists());
}
