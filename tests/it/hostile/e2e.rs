//! The nastiest hostile inputs through the real binary: arguments, event payloads,
//! `nubes.toml`, and state documents planted in storage. Each must end with exit 2 and
//! a clear `error:` line, never a panic, and must leave nothing written.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::support::{Out, Project, STACK};

use super::assert_shown_safely;
use super::strategies::nested;

const LOCAL: &str = "[state]\nbackend = \"local\"\n";

/// Exit 2, an `error:` line mentioning `what`, no panic, nothing on stdout.
#[track_caller]
fn refused(out: Out, what: &str) -> Out {
    let out = out.code(2);
    assert!(!out.all().contains("panicked"), "{}", out.all());
    assert!(out.stderr.contains("error: "), "{}", out.stderr);
    assert!(
        out.stderr.contains(what),
        "wanted {what:?} in: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    assert!(
        out.stderr.len() < 8192,
        "stderr of {} bytes",
        out.stderr.len()
    );
    assert_shown_safely(&out.stderr, what);
    out
}

/// Nothing of the environment was created: no working copy, no state.
#[track_caller]
fn nothing_written(p: &Project) {
    assert!(!p.path().join(".nubes").exists(), "nubes wrote .nubes/");
    assert!(!p.path().join("pwned").exists());
}

#[test]
fn hostile_arguments_are_refused_through_the_binary() {
    let p = Project::new(LOCAL, &[("main.tf", STACK)]);
    // The kernel caps one argument at 128 KiB; 100 000 characters is near that limit.
    let long = format!("env-{}", "a".repeat(100_000));
    for (arg, what) in [
        (long.as_str(), "100000 characters"),
        ("env-\u{202e}cilA", "U+202E"),
        ("env-\u{430}lice", "U+0430"),
        ("env-alice\u{200d}", "U+200D"),
        ("env-a\nb", "control character"),
        ("env-a\x1b[2Jb", "control character"),
        ("env-$(touch pwned)", "`$`"),
        ("env-`touch pwned`", "`"),
        ("env-a;touch pwned", "`;`"),
        ("env-../../etc", "`.`"),
        ("refs/heads/env-a/../b", "`/`"),
        ("refs/tags/env-a", "not a branch"),
    ] {
        refused(p.run(&["env-name", arg]), what);
        for cmd in ["up", "plan", "down", "status", "outputs", "unlock"] {
            refused(p.run(&[cmd, arg]), what);
        }
        refused(p.run(&["tf", arg, "--", "plan"]), what);
        refused(p.run(&["state", "restore", arg, "1"]), what);
    }
    nothing_written(&p);
}

#[test]
fn invalid_utf8_in_an_argument_is_exit_2() {
    let p = Project::new(LOCAL, &[("main.tf", STACK)]);
    for cmd in ["env-name", "up", "status"] {
        let out: Out = p
            .cmd(&[cmd])
            .arg(OsStr::from_bytes(b"env-\xff\xfe"))
            .output()
            .unwrap()
            .into();
        let out = out.code(2);
        assert!(out.stderr.contains("invalid UTF-8"), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"));
    }
    nothing_written(&p);
}

fn run_with_payload(p: &mut Project, event: &str, payload: &Path) -> Out {
    p.set_env("GITHUB_ACTIONS", "true");
    p.set_env("GITHUB_EVENT_NAME", event);
    p.set_env("GITHUB_EVENT_PATH", payload.to_str().unwrap());
    p.run(&["run"])
}

#[test]
fn hostile_event_payloads_are_refused_through_the_binary() {
    let mut p = Project::new(LOCAL, &[("main.tf", STACK)]);
    let dir = tempfile::tempdir().unwrap();
    let ten_mb_ref = format!("{{\"ref\":\"refs/heads/env-{}\"}}", "a".repeat(10 << 20));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("push", nested(100_000, "").into_bytes(), "not valid JSON"),
        (
            "push",
            format!("{{\"ref\":{}}}", nested(100_000, "")).into_bytes(),
            "recursion limit",
        ),
        (
            "push",
            b"{\"ref\":\"refs/heads/env-ali".to_vec(),
            "not valid JSON",
        ),
        ("push", b"\xff\xfe{}".to_vec(), "not valid JSON"),
        (
            "push",
            b"[\"refs/heads/env-a\"]".to_vec(),
            "not a JSON object",
        ),
        ("push", b"{\"ref\":5}".to_vec(), "`ref` is a number"),
        (
            "push",
            b"{\"ref\":\"refs/heads/env-a\",\"deleted\":\"yes\"}".to_vec(),
            "`deleted` is a string",
        ),
        ("push", ten_mb_ref.into_bytes(), "10485760 characters"),
        (
            "push",
            b"{\"ref\":\"refs/heads/env-a\\u0000b\"}".to_vec(),
            "U+0000",
        ),
        (
            "push",
            b"{\"ref\":\"refs/heads/env-$(touch pwned)\"}".to_vec(),
            "`$`",
        ),
        (
            "push",
            b"{\"ref\":\"refs/heads/env-\\u202ecila\"}".to_vec(),
            "U+202E",
        ),
        (
            "delete",
            b"{\"ref_type\":\"branch\",\"ref\":\"env-a\\nb\"}".to_vec(),
            "control character",
        ),
        (
            "delete",
            b"{\"ref_type\":{},\"ref\":\"env-a\"}".to_vec(),
            "`ref_type` is an object",
        ),
        (
            "pull_request",
            b"{\"pull_request\":{\"base\":{\"ref\":[]}}}".to_vec(),
            "`pull_request.base.ref` is an array",
        ),
        (
            "workflow_dispatch",
            b"{\"inputs\":{\"environment\":\"../x\"}}".to_vec(),
            "`.`",
        ),
        (
            "workflow_dispatch",
            b"{\"inputs\":{\"environment\":\"a\",\"action\":\"rm -rf\"}}".to_vec(),
            "`action`",
        ),
    ];
    for (i, (event, bytes, what)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("event-{i}.json"));
        std::fs::write(&file, bytes).unwrap();
        refused(run_with_payload(&mut p, event, &file), what);
    }
    // A payload that cannot be read at all.
    refused(
        run_with_payload(&mut p, "push", &dir.path().join("missing.json")),
        "event payload",
    );
    refused(
        run_with_payload(&mut p, "push", dir.path()),
        "event payload",
    );
    let looped = dir.path().join("loop.json");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    refused(run_with_payload(&mut p, "push", &looped), "event payload");
    nothing_written(&p);
}

#[test]
fn a_corrupt_nubes_toml_is_refused_with_its_position() {
    let deep = format!("[terraform]\nvars = {{ a = {} }}\n", nested(100_000, "1"));
    for (text, what) in [
        (&b"[state]\nbackend = \"loc"[..], "nubes.toml:2:"),
        (b"[state]\nlease_seconds = \"60\"\n", "nubes.toml:2:17"),
        (
            b"[state]\nkey = \"{env}/../../x\"\n",
            "not a valid blob name",
        ),
        (b"[state]\ncontainer = \"a\\u0000b\"\n", "\\0"),
        (
            b"[project]\nbranch_prefix = \"env-\\n::warning::x\"\n",
            "\\n::warning::x",
        ),
        (b"[deploy]\ntarget = \"\\u001b[2J\"\n", "\\u{1b}[2J"),
        (b"\xff\xfe\x00", "nubes.toml"),
        (deep.as_bytes(), "nubes.toml:2:"),
    ] {
        let p = Project::new("", &[("main.tf", STACK)]);
        std::fs::write(p.path().join("nubes.toml"), text).unwrap();
        refused(p.run(&["up", "alice"]), what);
        refused(p.run(&["env-name", "env-alice"]), what);
        nothing_written(&p);
    }
    // A directory where nubes.toml should be.
    let p = Project::new("", &[("main.tf", STACK)]);
    std::fs::remove_file(p.path().join("nubes.toml")).unwrap();
    std::fs::create_dir(p.path().join("nubes.toml")).unwrap();
    refused(p.run(&["up", "alice"]), "cannot read the configuration");
    nothing_written(&p);
    // One that cannot be read (tests run as root, where permissions do not stop a read:
    // a symlink loop does).
    std::fs::remove_dir(p.path().join("nubes.toml")).unwrap();
    std::os::unix::fs::symlink("nubes.toml", p.path().join("nubes.toml")).unwrap();
    refused(p.run(&["up", "alice"]), "cannot read the configuration");
    nothing_written(&p);
}

/// A local-backend project whose current state and one kept version are planted as given.
fn planted(current: &[u8], version: &[u8]) -> Project {
    let p = Project::new(LOCAL, &[("main.tf", STACK)]);
    let state = p.path().join(".nubes/state");
    std::fs::create_dir_all(state.join("alice.terraform.tfstate.history")).unwrap();
    std::fs::write(state.join("alice.terraform.tfstate"), current).unwrap();
    std::fs::write(
        state.join("alice.terraform.tfstate.history/1700000000000000000-s1.tfstate"),
        version,
    )
    .unwrap();
    p
}

fn current(p: &Project) -> Vec<u8> {
    std::fs::read(p.path().join(".nubes/state/alice.terraform.tfstate")).unwrap()
}

#[test]
fn restoring_hostile_state_documents_is_refused_and_changes_nothing() {
    let good = br#"{"version":4,"serial":5,"lineage":"aaa","outputs":{},"resources":[]}"#;
    for (cur, version, what) in [
        (
            &good[..],
            &br#"{"version":4,"serial":1,"lineage":"bbb"}"#[..],
            "another state history",
        ),
        (
            good,
            br#"{"version":4,"serial":-1,"lineage":"aaa"}"#,
            "non-negative",
        ),
        (
            good,
            br#"{"version":4,"serial":1,"lineage":"a\u202eaa"}"#,
            "\\u{202e}",
        ),
        (
            good,
            br#"{"version":4,"serial":1,"lin"#,
            "not a Terraform state document",
        ),
        (good, br#"[4, "aaa", 1]"#, "not a JSON object"),
        (
            good,
            nested(100_000, "").as_bytes(),
            "not a Terraform state document",
        ),
        (good, b"", "not a Terraform state document"),
    ] {
        let p = planted(cur, version);
        refused(p.run(&["state", "restore", "alice", "1"]), what);
        assert_eq!(current(&p), cur, "the current state was changed");
    }
}

#[test]
fn a_state_document_that_is_a_json_array_is_refused_without_panic() {
    // serde reads a struct from an array, so `[4, "aaa", 1]` once passed as a state
    // document and `state restore` then panicked indexing it as an object.
    let cur = br#"{"version":4,"serial":5,"lineage":"aaa"}"#;
    let p = planted(cur, br#"[4, "aaa", 1, []]"#);
    refused(
        p.run(&["state", "restore", "alice", "1"]),
        "not a JSON object",
    );
    assert_eq!(current(&p), cur);
}

#[test]
fn restoring_over_the_largest_serial_is_refused_without_overflow() {
    let cur = br#"{"version":4,"serial":18446744073709551615,"lineage":"aaa"}"#;
    let p = planted(cur, br#"{"version":4,"serial":1,"lineage":"aaa"}"#);
    refused(
        p.run(&["state", "restore", "alice", "1"]),
        "the largest possible",
    );
    assert_eq!(current(&p), cur);
}

#[test]
fn pulling_and_listing_hostile_state_documents_does_not_panic() {
    for doc in [
        nested(100_000, "").into_bytes(),
        br#"{"version":4,"serial":1,"lineage":"\u202e\n\u001b[2J"}"#.to_vec(),
        br#"{"version":"4","serial":{},"lineage":[]}"#.to_vec(),
        b"\xff\xfe\x00".to_vec(),
    ] {
        let p = planted(&doc, &doc);
        for args in [
            &["state", "pull", "alice"][..],
            &["state", "pull", "alice", "1"],
            &["state", "history", "alice"],
            &["status", "alice"],
            &["status", "alice", "--json"],
            &["outputs", "alice"],
            &["list"],
        ] {
            let out = p.run(args);
            assert!(!out.all().contains("panicked"), "{args:?}: {}", out.all());
            assert!(matches!(out.code, 0..=2), "{args:?}: exit {}", out.code);
            // `state pull` prints the document as it is and `--json` keeps values exact
            // (JSON escapes control characters itself); text for people is escaped.
            if args.get(1) != Some(&"pull") && !args.contains(&"--json") {
                assert_shown_safely(&out.all(), "hostile lineage");
            }
        }
        assert_eq!(current(&p), doc);
    }
}

#[test]
fn hostile_environment_variables_and_flags_are_refused_and_shown_escaped() {
    let big = "9".repeat(100_000);
    for (var, value, what) in [
        (
            "NUBES_STATE_LEASE_SECONDS",
            "99999999999999999999",
            "not a whole number",
        ),
        (
            "NUBES_STATE_LEASE_SECONDS",
            big.as_str(),
            "100000 characters",
        ),
        ("NUBES_STATE_HISTORY", "-1", "out of range"),
        (
            "NUBES_STATE_KEY",
            "{env}/../../etc/x",
            "not a valid blob name",
        ),
        ("NUBES_STATE_KEY", "state\n::warning::x", "\\n::warning::x"),
        ("NUBES_BRANCH_PREFIX", "env /", "not a usable branch prefix"),
        (
            "NUBES_STATE_ACCOUNT_URL",
            "https://acct.blob.core.windows.net/?sig=s3cr3t",
            "no query string",
        ),
        (
            "NUBES_STATE_ACCOUNT",
            "\u{430}ccount",
            "not a storage account name",
        ),
        ("NUBES_STATE_CONTAINER", "a\x1b[2Jb", "\\u{1b}[2J"),
        ("NUBES_STATE_LOCK_TIMEOUT", "soon\r\n", "not a duration"),
        ("NUBES_DEPLOY_TARGET", "k8s\u{202e}", "\\u{202e}"),
    ] {
        let mut p = Project::new(LOCAL, &[("main.tf", STACK)]);
        p.set_env(var, value);
        let out = refused(p.run(&["up", "alice"]), what);
        nothing_written(&p);
        assert!(
            !out.stderr.contains("s3cr3t"),
            "a SAS in the account URL was echoed"
        );
    }
    let p = Project::new(LOCAL, &[("main.tf", STACK)]);
    refused(
        p.run(&["-C", "/no/such\n::warning::x", "list"]),
        "such\\n::warning::x",
    );
    refused(p.run(&["--lock-timeout", "1\x1b[2J", "list"]), "\\u{1b}[2J");
    refused(
        p.run(&["reap", "--older-than", "7d\n::warning::x"]),
        "7d\\n::warning::x",
    );
    nothing_written(&p);
}

#[test]
fn an_account_url_with_a_sas_is_refused_without_echoing_it() {
    // Regression: the refusal quoted the whole URL, SAS signature included.
    let url = "https://acct.blob.core.windows.net?sv=2021-08-06&sig=c2VjcmV0LXNpZw%3D%3D";
    let mut p = Project::new(
        &format!("[state]\naccount_url = \"{url}\"\n"),
        &[("main.tf", STACK)],
    );
    let out = refused(p.run(&["list"]), "is not an account URL");
    assert!(!out.stderr.contains("c2VjcmV0"), "{}", out.stderr);
    assert!(out.stderr.contains("NUBES_STORAGE_SAS"), "{}", out.stderr);
    p.set_env("NUBES_STATE_ACCOUNT_URL", url);
    let out = refused(p.run(&["list"]), "NUBES_STATE_ACCOUNT_URL");
    assert!(!out.stderr.contains("c2VjcmV0"), "{}", out.stderr);
}

#[test]
fn a_lock_held_by_a_hostile_holder_is_described_escaped() {
    // Lock info is whatever the holder wrote (plain Terraform writes it too); `list`
    // showed its `Who` and `Operation` raw.
    let az = crate::support::Azurite::https();
    let p = Project::on(&az, "");
    let info = r#"{"ID":"5c0ffee0-0000-4000-8000-000000000001","Operation":"OperationTypeApply\u001b[2J","Who":"mallory\n::warning::pwned\u202e","Info":"\u200dhttps://example.com","Version":"1.11.4","Created":"2020-01-01T00:00:00Z","Path":"x"}"#;
    crate::support::block_on(az.blobs().put(
        "tfstate",
        "alice.terraform.tfstate",
        br#"{"version":4,"serial":1,"lineage":"aaa"}"#.to_vec(),
        &[],
    ));
    crate::support::block_on(
        az.blobs()
            .terraform_lock("tfstate", "alice.terraform.tfstate", info),
    );
    for args in [
        &["list"][..],
        &["status", "alice"],
        &["--lock-timeout", "1s", "up", "alice"],
        &["--lock-timeout", "1s", "tf", "alice", "--", "plan"],
        &["unlock", "alice", "--yes"],
    ] {
        let out = p.run(args);
        assert!(!out.all().contains("panicked"), "{args:?}: {}", out.all());
        assert!(
            out.all().contains("mallory\\n::warning::pwned"),
            "{args:?}: {}",
            out.all()
        );
        assert_shown_safely(&out.all(), "hostile lock info");
        assert!(
            !out.all().contains("\n::warning::pwned"),
            "{args:?}: {}",
            out.all()
        );
    }
}

#[test]
fn a_lock_timeout_beyond_what_terraform_accepts_is_refused_as_input() {
    // Regression: `--lock-timeout 99999999999y` passed validation and reached Terraform
    // as `-lock-timeout=3155695200000000000s`, which it rejects: exit 1 after taking the
    // lock, not exit 2 up front.
    let p = Project::new(LOCAL, &[("main.tf", STACK)]);
    refused(
        p.run(&["--lock-timeout", "99999999999y", "plan", "alice"]),
        "too long",
    );
    let mut p = Project::new(
        "[state]\nbackend = \"local\"\n[deploy]\nhealth_timeout = \"300y\"\n",
        &[("main.tf", STACK)],
    );
    refused(
        p.run(&["up", "alice"]),
        "nubes.toml:4:18: [deploy] health_timeout",
    );
    p.set_env("NUBES_STATE_LOCK_TIMEOUT", "8d");
    refused(p.run(&["up", "alice"]), "NUBES_STATE_LOCK_TIMEOUT");
    nothing_written(&p);
}
