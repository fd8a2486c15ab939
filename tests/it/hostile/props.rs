//! Property tests (proptest) on every parser that sees hostile text: environment names
//! from branches, refs and arguments; GitHub event payloads; `nubes.toml`; Terraform
//! state documents and the write guard; lock info and blob names read from storage.
//! Each property runs a fixed number of cases (so the suite stays well under a minute)
//! and prints how many inputs it tried.

use std::path::Path;

use nubes::commands::run::{Action, action_for, parse_payload};
use nubes::config::{Overrides, load};
use nubes::env_name::EnvName;
use nubes::error::Error;
use nubes::state::head::{Refusal, check_write};
use nubes::state::{LockInfo, StateHead};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use super::strategies::{hostile_string, nested, wrong_json};
use super::{assert_shown_safely, is_canonical};

/// Run `strategy` through `test` for exactly `cases` inputs (fixed seed per run is not
/// needed: failures are shrunk and printed with the input).
fn check<S: Strategy>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |v| {
        test(v);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    println!("{name}: {cases} generated inputs, no failure");
}

/// A rejection must be an input error (exit 2) with a message that says what is wrong.
#[track_caller]
fn assert_input_error(e: &Error, input: &str, names: &[&str]) {
    assert_eq!(e.exit_code(), 2, "{input:?}: {e}");
    let text = e.to_string();
    assert!(!text.trim().is_empty(), "{input:?}: empty message");
    assert!(
        names.iter().any(|n| text.contains(n)),
        "{input:?}: the message names none of {names:?}: {text}"
    );
    assert!(
        text.len() < 4096,
        "{input:?}: message of {} bytes",
        text.len()
    );
    assert_shown_safely(&text, input);
    if let Some(hint) = e.hint_text() {
        assert_shown_safely(&hint, input);
    }
}

// ---------------------------------------------------------------------------------
// Environment names.

fn check_env_arg(arg: &str, prefix: &str) {
    for (how, result) in [
        ("from_arg", EnvName::from_arg(arg, prefix)),
        ("from_branch", EnvName::from_branch(arg, prefix)),
    ] {
        match result {
            Ok(env) => {
                let name = env.as_str();
                assert!(is_canonical(name), "{how}({arg:?}) accepted {name:?}");
                // Never normalised: the name is literally in the input.
                let spellings = [
                    name.to_string(),
                    format!("{prefix}{name}"),
                    format!("refs/heads/{prefix}{name}"),
                ];
                let allowed = if how == "from_arg" {
                    &spellings[..]
                } else {
                    &spellings[1..]
                };
                assert!(
                    allowed.iter().any(|s| s == arg),
                    "{how}({arg:?}) became {name:?}"
                );
            }
            Err(e) => assert_input_error(&e, arg, &["environment name", "branch", "prefix"]),
        }
    }
}

#[test]
fn env_names_from_hostile_branches_refs_and_arguments() {
    let input = prop_oneof![
        hostile_string(),
        hostile_string().prop_map(|s| format!("env-{s}")),
        hostile_string().prop_map(|s| format!("refs/heads/env-{s}")),
        "[a-z][a-z0-9-]{0,22}".prop_map(|s| format!("env-{s}")),
    ];
    check("env names", 20_000, input, |arg| {
        check_env_arg(&arg, "env-");
        check_env_arg(&arg, "preview-");
    });
}

#[test]
fn a_ten_megabyte_name_is_refused_without_panic() {
    for big in [
        "a".repeat(10 << 20),
        format!("env-{}", "a".repeat(10 << 20)),
        format!("refs/heads/env-{}", "\u{430}".repeat(5 << 20)),
        "/".repeat(10 << 20),
    ] {
        check_env_arg(&big, "env-");
        let e = EnvName::from_arg(&big, "env-").unwrap_err();
        assert!(e.to_string().len() < 1000);
    }
}

// ---------------------------------------------------------------------------------
// Event payloads.

fn check_payload(event: &str, text: &[u8]) {
    let shown = String::from_utf8_lossy(text);
    let payload = match parse_payload(text) {
        Ok(p) => p,
        Err(e) => return assert_input_error(&e, &shown, &["JSON", "object"]),
    };
    match action_for(event, &payload, "env-", None, None) {
        Ok(Action::Up(env, o) | Action::Plan(env, o) | Action::Down(env, o)) => {
            assert!(is_canonical(env.as_str()), "{event} {shown}: {env}");
            assert_eq!(o.branch, format!("env-{env}"));
            // Short branch names are taken literally (issue 12, D): the env's branch is
            // exactly the payload's `delete` ref or pull request base, never a stripped
            // `refs/heads/...`.
            let short = match event {
                "delete" => Some(&payload["ref"]),
                "pull_request" => Some(&payload["pull_request"]["base"]["ref"]),
                _ => None,
            };
            if let Some(short) = short {
                assert_eq!(short.as_str(), Some(o.branch.as_str()), "{event} {shown}");
            }
        }
        Ok(Action::Promote(from, to, o)) => {
            assert!(
                is_canonical(from.as_str()) && is_canonical(to.as_str()),
                "{event} {shown}: {from} -> {to}"
            );
            assert_eq!(o.branch, format!("env-{to}"));
        }
        Ok(Action::Nothing(why)) => assert_shown_safely(&why, &shown),
        Err(e) => assert_input_error(
            &e,
            &shown,
            &["payload", "environment name", "branch", "workflow_dispatch"],
        ),
    }
}

const EVENTS: &[&str] = &[
    "push",
    "delete",
    "pull_request",
    "pull_request_target",
    "workflow_dispatch",
    "schedule",
];

/// A payload with every field nubes reads, each either well-formed, hostile or of the
/// wrong type.
fn payload() -> impl Strategy<Value = Value> {
    let field = || {
        prop_oneof![
            2 => Just(None),
            2 => hostile_string().prop_map(|s| Some(json!(format!("refs/heads/env-{s}")))),
            1 => Just(Some(json!("refs/heads/env-alice"))),
            // Short names, as `delete` and `pull_request.base.ref` carry them.
            1 => hostile_string().prop_map(|s| Some(json!(format!("env-{s}")))),
            1 => Just(Some(json!("env-alice"))),
            2 => wrong_json().prop_map(Some),
        ]
    };
    (
        field(),
        field(),
        field(),
        field(),
        field(),
        field(),
        field(),
        field(),
        prop_oneof![
            1 => Just(None),
            3 => proptest::sample::select(&["opened", "synchronize", "closed", "labeled"][..])
                .prop_map(|a| Some(json!(a))),
            1 => wrong_json().prop_map(Some),
        ],
    )
        .prop_map(
            |(r, deleted, after, ref_type, base, head, envi, action, activity)| {
                let mut p = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        p.insert(k.into(), v);
                    }
                };
                put("ref", r);
                put("action", activity);
                put("deleted", deleted);
                put("after", after);
                put(
                    "ref_type",
                    ref_type.map(|v| if v.is_string() { json!("branch") } else { v }),
                );
                put(
                    "pull_request",
                    base.map(|b| json!({"base": {"ref": b}, "head": {"sha": head}})),
                );
                put(
                    "inputs",
                    envi.map(|e| json!({"environment": e, "action": action})),
                );
                Value::Object(p)
            },
        )
}

#[test]
fn event_payloads_with_hostile_values_and_wrong_types() {
    let input = (proptest::sample::select(EVENTS), payload());
    check("event payloads", 10_000, input, |(event, p)| {
        check_payload(event, p.to_string().as_bytes());
    });
}

#[test]
fn event_payloads_truncated_at_every_byte_or_deeply_nested() {
    let valid = json!({
        "ref": "refs/heads/env-alice", "after": "0123456789abcdef", "deleted": false,
        "ref_type": "branch", "pull_request": {"base": {"ref": "env-alice"}, "head": {"sha": "abc"}},
        "inputs": {"environment": "alice", "action": "plan"}
    })
    .to_string();
    let mut tried = 0;
    for cut in 0..valid.len() {
        for event in EVENTS {
            check_payload(event, &valid.as_bytes()[..cut]);
            tried += 1;
        }
    }
    for depth in [64, 127, 128, 129, 1_000, 100_000] {
        for doc in [
            nested(depth, "1"),
            format!("{{\"ref\":{}}}", nested(depth, "\"refs/heads/env-a\"")),
            "{\"a\":".repeat(depth) + &"}".repeat(depth),
        ] {
            for event in EVENTS {
                check_payload(event, doc.as_bytes());
                tried += 1;
            }
        }
    }
    for bytes in [
        &b"\xff\xfe{}"[..],
        b"",
        b"null",
        b"[]",
        b"\"push\"",
        b"{\"ref\":\"\\ud800\"}",
    ] {
        for event in EVENTS {
            check_payload(event, bytes);
            tried += 1;
        }
    }
    println!("event payloads (truncated, nested, odd): {tried} inputs, no failure");
}

#[test]
fn a_commit_that_is_not_a_hex_sha_is_refused() {
    // Regression: `after` / `pull_request.head.sha` were carried unchecked into blob
    // metadata (an HTTP header: a newline failed the write after the apply), tags and
    // templates.
    for (event, p) in [
        (
            "push",
            json!({"ref": "refs/heads/env-a", "after": "abc\ndef"}),
        ),
        (
            "push",
            json!({"ref": "refs/heads/env-a", "after": "\u{430}bc123"}),
        ),
        (
            "pull_request",
            json!({"pull_request": {"base": {"ref": "env-a"}, "head": {"sha": "$(id)"}}}),
        ),
    ] {
        let e = action_for(event, &p, "env-", None, None).unwrap_err();
        assert_input_error(&e, &p.to_string(), &["not a commit SHA"]);
    }
    let ok =
        json!({"ref": "refs/heads/env-a", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"});
    assert!(matches!(
        action_for("push", &ok, "env-", None, None),
        Ok(Action::Up(..))
    ));
}

#[test]
fn a_ten_megabyte_ref_is_refused_without_panic() {
    let p = json!({"ref": format!("refs/heads/env-{}", "a".repeat(10 << 20))});
    let e = action_for("push", &p, "env-", None, None).unwrap_err();
    assert_input_error(&e, "10 MB ref", &["environment name"]);
    assert!(e.to_string().len() < 1000);
}

#[test]
fn a_payload_field_of_the_wrong_type_is_refused_not_ignored() {
    for (event, p, field) in [
        ("push", json!({"ref": 5}), "`ref` is a number"),
        (
            "push",
            json!({"ref": "refs/heads/env-a", "deleted": "true"}),
            "`deleted` is a string",
        ),
        (
            "delete",
            json!({"ref_type": ["branch"], "ref": "env-a"}),
            "`ref_type` is an array",
        ),
        (
            "pull_request",
            json!({"pull_request": {"base": "env-a"}}),
            "`pull_request.base` is a string",
        ),
        (
            "workflow_dispatch",
            json!({"inputs": {"environment": 7}}),
            "`inputs.environment` is a number",
        ),
    ] {
        let e = action_for(event, &p, "env-", None, None).unwrap_err();
        assert_input_error(&e, &p.to_string(), &[field]);
    }
    let e = parse_payload(b"[1]").unwrap_err();
    assert_input_error(&e, "[1]", &["not a JSON object"]);
}

// ---------------------------------------------------------------------------------
// nubes.toml.

const VALID_TOML: &str = r#"[project]
name = "petclinic"
location = "eastus"
branch_prefix = "env-"

[state]
backend = "azure"
account_url = "https://stpetclinic.blob.core.windows.net"
container = "tfstate"
key = "{env}.terraform.tfstate"
lease_seconds = 60
lock_timeout = "10m"
history = 20

[terraform]
dir = "terraform"
binary = "terraform"
vars = { app_sku = "B1" }

[environments.prod]
protected = true
vars = { app_sku = "P1v3" }

[build]
command = "npm ci && npm run build"
artifact = "dist"
after_infra = false

[deploy]
target = "static-site"
health_path = "/"
health_timeout = "2m"
"#;

const KEYS: &[(&str, &str)] = &[
    ("project", "name"),
    ("project", "location"),
    ("project", "branch_prefix"),
    ("state", "backend"),
    ("state", "account_url"),
    ("state", "account"),
    ("state", "container"),
    ("state", "key"),
    ("state", "lease_seconds"),
    ("state", "lock_timeout"),
    ("state", "history"),
    ("state", "path"),
    ("terraform", "dir"),
    ("terraform", "binary"),
    ("terraform", "vars"),
    ("environments.prod", "protected"),
    ("environments.prod", "vars"),
    ("build", "command"),
    ("build", "after_infra"),
    ("deploy", "target"),
    ("deploy", "health_timeout"),
    ("deploy", "command"),
    ("state", "unknown_key"),
    ("nosuchtable", "x"),
];

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("5".to_string()),
        Just("-1".to_string()),
        Just("9223372036854775807".to_string()),
        Just("1.5".to_string()),
        Just("nan".to_string()),
        Just("true".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("[1, \"a\"]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("\"\"".to_string()),
        Just("\"azure\"".to_string()),
        Just("\"{env}/../x\"".to_string()),
        hostile_string().prop_map(|s| toml::Value::String(s).to_string()),
        hostile_string().prop_map(|s| toml::Value::String(format!("{{env}}{s}")).to_string()),
    ]
}

fn toml_doc() -> impl Strategy<Value = String> {
    proptest::collection::vec((proptest::sample::select(KEYS), toml_value()), 1..6).prop_map(
        |entries| {
            entries
                .iter()
                .map(|((table, key), value)| format!("[{table}]\n{key} = {value}\n"))
                .collect()
        },
    )
}

fn check_config(dir: &Path, text: &[u8]) {
    std::fs::write(dir.join("nubes.toml"), text).unwrap();
    if let Err(e) = load(dir, None, &Overrides::default()) {
        assert_input_error(&e, &String::from_utf8_lossy(text), &["nubes.toml"]);
    }
}

#[test]
fn config_files_with_wrong_types_unknown_keys_and_hostile_values() {
    let dir = tempfile::tempdir().unwrap();
    check("nubes.toml documents", 3_000, toml_doc(), |doc| {
        check_config(dir.path(), doc.as_bytes())
    });
}

#[test]
fn config_files_truncated_at_every_byte_or_deeply_nested() {
    let dir = tempfile::tempdir().unwrap();
    let mut tried = 0;
    for cut in 0..=VALID_TOML.len() {
        check_config(dir.path(), &VALID_TOML.as_bytes()[..cut]);
        tried += 1;
    }
    for depth in [10, 100, 1_000, 100_000] {
        for doc in [
            format!("[terraform]\nvars = {{ a = {} }}\n", nested(depth, "1")),
            format!(
                "[terraform]\nvars = {}\n",
                "{ a = ".repeat(depth) + &"}".repeat(depth)
            ),
            format!("[{}]\n", vec!["a"; depth].join(".")),
        ] {
            check_config(dir.path(), doc.as_bytes());
            tried += 1;
        }
    }
    for bytes in [
        &b"\xff\xfe[state]"[..],
        b"\0\0\0",
        b"[state]\nkey = \"\0{env}\"\n",
    ] {
        check_config(dir.path(), bytes);
        tried += 1;
    }
    println!("nubes.toml (truncated, nested, binary): {tried} inputs, no failure");
}

// ---------------------------------------------------------------------------------
// Terraform state documents and the write guard.

fn check_state_doc(bytes: &[u8]) {
    if let Err(why) = StateHead::parse(bytes) {
        assert!(why.contains("state document"), "{why}");
        assert!(why.len() < 4096, "message of {} bytes", why.len());
        assert_shown_safely(&why, &String::from_utf8_lossy(bytes));
    }
}

fn state_doc() -> impl Strategy<Value = Value> {
    let field = || {
        prop_oneof![
            1 => Just(None),
            2 => wrong_json().prop_map(Some),
        ]
    };
    (
        field(),
        field(),
        field(),
        field(),
        any::<i64>(),
        hostile_string(),
    )
        .prop_map(|(version, lineage, serial, resources, n, l)| {
            let mut d =
                json!({"version": 4, "serial": n, "lineage": l, "resources": [], "outputs": {}});
            for (k, v) in [
                ("version", version),
                ("lineage", lineage),
                ("serial", serial),
                ("resources", resources),
            ] {
                if let Some(v) = v {
                    d[k] = v;
                }
            }
            d
        })
}

#[test]
fn state_documents_with_wrong_types_negative_serials_and_odd_lineages() {
    check("state documents", 10_000, state_doc(), |doc| {
        check_state_doc(doc.to_string().as_bytes())
    });
}

#[test]
fn state_documents_truncated_at_every_byte_or_deeply_nested() {
    let valid = r#"{"version":4,"terraform_version":"1.11.4","serial":7,"lineage":"3f1c","outputs":{"x":{"value":"v","type":"string","sensitive":true}},"resources":[{"mode":"managed","type":"terraform_data","name":"a","instances":[{"attributes":{"id":"1"}}]}],"check_results":null}"#;
    let mut tried = 0;
    for cut in 0..valid.len() {
        check_state_doc(&valid.as_bytes()[..cut]);
        tried += 1;
    }
    for depth in [127, 128, 1_000, 100_000] {
        for doc in [
            nested(depth, "1"),
            format!(
                r#"{{"version":4,"serial":1,"lineage":"l","resources":{}}}"#,
                nested(depth, "{}")
            ),
            format!(
                r#"{{"version":4,"serial":1,"lineage":"l","resources":[{{"instances":{}}}]}}"#,
                nested(depth, "")
            ),
            format!(
                r#"{{"version":4,"serial":1,"lineage":"l","outputs":{}}}"#,
                "{\"a\":".repeat(depth) + &"}".repeat(depth)
            ),
        ] {
            check_state_doc(doc.as_bytes());
            tried += 1;
        }
    }
    println!("state documents (truncated, nested): {tried} inputs, no failure");
}

#[test]
fn the_write_guard_refuses_exactly_another_lineage_or_a_lower_serial() {
    let head = (
        proptest::sample::select(&["a", "b", "\u{430}", "a\0"][..]),
        0u64..5,
    );
    check(
        "write guard",
        2_000,
        (head.clone(), head),
        |((l1, s1), (l2, s2))| {
            let stored = StateHead {
                lineage: l1.into(),
                serial: s1,
                resources: 0,
            };
            let incoming = StateHead {
                lineage: l2.into(),
                serial: s2,
                resources: 0,
            };
            match check_write(Some(&stored), &incoming) {
                Ok(()) => assert!(l1 == l2 && s2 >= s1),
                Err(Refusal::Lineage { .. }) => assert_ne!(l1, l2),
                Err(Refusal::Serial { .. }) => assert!(l1 == l2 && s2 < s1),
            }
        },
    );
}

// ---------------------------------------------------------------------------------
// What other parties write into storage: lock info and blob names.

#[test]
fn lock_info_and_blob_names_from_storage() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    let lock = prop_oneof![
        hostile_string(),
        hostile_string().prop_map(|s| B64.encode(s)),
        (hostile_string(), hostile_string(), wrong_json()).prop_map(|(who, info, id)| {
            B64.encode(json!({"ID": id, "Who": who, "Info": info, "Operation": "x", "Created": "2020-01-01T00:00:00Z"}).to_string())
        }),
    ];
    check("lock info", 5_000, lock, |value| {
        if let Some(info) = LockInfo::from_metadata_value(&value) {
            assert_shown_safely(&info.describe(), &value);
        }
    });
    check("blob names", 5_000, hostile_string(), |name| {
        for key in ["{env}.terraform.tfstate", "states/{env}/tfstate", "{env}"] {
            if let Some(env) = nubes::state::env_of(key, &name, "env-") {
                assert!(is_canonical(env.as_str()), "{name:?} -> {env}");
                assert_eq!(key.replace("{env}", env.as_str()), name);
            }
        }
    });
}
