//! `nubes run` against GitHub event payloads in the shapes GitHub documents (issue 12,
//! D to G): each `pull_request` activity type, `pull_request_target`, `delete` of a
//! branch literally named `refs/heads/env-alice`, `workflow_dispatch` from the wrong
//! branch or without `action`, and the messages for look-alike and empty names. The
//! payloads are in `tests/fixtures/events/` (see its README for where their shapes come
//! from); the real binary runs with real Terraform (through a wrapper that logs each
//! call) and real Azurite.

use std::path::Path;

use serde_json::Value;

use crate::pipeline::{app_project, event, fixture, state, terraform_calls};
use crate::support::{Azurite, Out, Project, block_on};

const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const HEAD_SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

/// The activity types GitHub documents for `pull_request` that nubes plans on.
const PLANNED: [&str; 4] = ["opened", "synchronize", "reopened", "ready_for_review"];

/// Every other documented activity type (GitHub's "Events that trigger workflows",
/// `pull_request`; one fixture each in tests/fixtures/events/pull_request/).
const NOT_PLANNED: [&str; 17] = [
    "assigned",
    "unassigned",
    "labeled",
    "unlabeled",
    "edited",
    "closed",
    "converted_to_draft",
    "locked",
    "unlocked",
    "enqueued",
    "dequeued",
    "milestoned",
    "demilestoned",
    "review_requested",
    "review_request_removed",
    "auto_merge_enabled",
    "auto_merge_disabled",
];

fn read(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// `nubes run` for `event` with the payload `doc` (written next to the project).
fn event_doc(p: &mut Project, name: &str, doc: &Value, sha: &str) -> (Out, String, String) {
    let path = p
        .path()
        .join(format!("payload-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, doc.to_string()).unwrap();
    event(p, name, &path, sha)
}

fn nothing_to_do_doc(p: &mut Project, name: &str, doc: &Value) -> String {
    let path = p
        .path()
        .join(format!("payload-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, doc.to_string()).unwrap();
    nothing_to_do(p, name, &path)
}

fn nothing_to_do(p: &mut Project, name: &str, file: &Path) -> String {
    let (out, outputs, summary) = event(p, name, file, "");
    let out = out.ok();
    assert!(
        out.stdout.starts_with("nothing to do: "),
        "{name}: {}",
        out.all()
    );
    assert!(
        outputs.is_empty() && summary.is_empty(),
        "{outputs}{summary}"
    );
    out.stdout
}

#[test]
fn pull_request_plans_only_on_the_activity_types_that_change_the_code() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    for activity in NOT_PLANNED {
        let file = fixture(&format!("pull_request/{activity}.json"));
        assert_eq!(
            read(&format!("pull_request/{activity}.json"))["action"],
            activity
        );
        let said = nothing_to_do(&mut p, "pull_request", &file);
        assert!(
            said.contains(&format!(
                "pull request activity `{activity}` does not change the code to plan (nubes plans on opened, synchronize, reopened, ready_for_review)"
            )),
            "{said}"
        );
    }
    assert!(terraform_calls(&p).is_empty(), "{:?}", terraform_calls(&p));

    for activity in PLANNED {
        let file = fixture(&format!("pull_request/{activity}.json"));
        let (out, _, summary) = event(&mut p, "pull_request", &file, HEAD_SHA);
        out.ok();
        assert!(
            summary.contains("Plan for `alice`"),
            "{activity}: {summary}"
        );
    }
    let calls = terraform_calls(&p);
    assert_eq!(
        calls.iter().filter(|c| *c == "plan").count(),
        4,
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c == "apply"), "{calls:?}");
    assert!(state(&az).is_none(), "a plan wrote state");
}

#[test]
fn a_branch_literally_named_refs_heads_env_alice_is_not_environment_alice() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    event(&mut p, "push", &fixture("push.json"), SHA).0.ok();
    let before = state(&az).expect("alice is up");
    let calls = terraform_calls(&p).len();

    // Its deletion: GitHub's `delete` payload carries the short name, here literally
    // `refs/heads/env-alice`.
    let file = fixture("delete_branch_named_refs_heads_env_alice.json");
    assert_eq!(
        read("delete_branch_named_refs_heads_env_alice.json")["ref"],
        "refs/heads/env-alice"
    );
    let said = nothing_to_do(&mut p, "delete", &file);
    assert_eq!(
        said,
        "nothing to do: deleted branch `refs/heads/env-alice` is not an `env-*` branch (this field holds a short branch name, so the branch is literally named so)\n"
    );

    // A push to it: the full ref is refs/heads/refs/heads/env-alice.
    let mut push = read("push.json");
    push["ref"] = "refs/heads/refs/heads/env-alice".into();
    let said = nothing_to_do_doc(&mut p, "push", &push);
    assert!(
        said.contains("push to `refs/heads/refs/heads/env-alice`, which is not an `env-*` branch"),
        "{said}"
    );

    // A pull request into it: `pull_request.base.ref` is a short name too.
    let mut pr = read("pull_request/opened.json");
    pr["pull_request"]["base"]["ref"] = "refs/heads/env-alice".into();
    let said = nothing_to_do_doc(&mut p, "pull_request", &pr);
    assert!(
        said.contains("the pull request's base `refs/heads/env-alice` is not an `env-*` branch"),
        "{said}"
    );

    assert_eq!(terraform_calls(&p).len(), calls, "Terraform ran");
    assert_eq!(state(&az), Some(before), "alice was touched");

    // Whereas deleting env-alice itself tears alice down.
    event(&mut p, "delete", &fixture("delete.json"), "").0.ok();
    assert!(state(&az).is_none());
}

#[test]
fn pull_request_target_is_refused_with_the_reason() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    // GitHub runs pull_request_target with the default branch's ref and commit.
    p.set_env("GITHUB_REF", "refs/heads/main");
    let (out, _, _) = event(
        &mut p,
        "pull_request_target",
        &fixture("pull_request_target.json"),
        SHA,
    );
    let out = out.code(2);
    for part in [
        "nubes does not plan on `pull_request_target`",
        "the default branch",
        "neither the pull request's nor its base branch's",
        "hint: trigger on `pull_request` (types: opened, synchronize, reopened, ready_for_review)",
        "with this repository's secrets",
        "::error",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    assert!(terraform_calls(&p).is_empty());
    assert!(state(&az).is_none());
}

#[test]
fn workflow_dispatch_needs_an_action_and_runs_up_or_plan_only_from_the_env_branch() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");

    // `up` and `plan` dispatched from the default branch would use its configuration.
    let (out, _, _) = event(
        &mut p,
        "workflow_dispatch",
        &fixture("workflow_dispatch_up_from_main.json"),
        SHA,
    );
    let out = out.code(2);
    for part in [
        "workflow_dispatch `up` of `alice` ran on `refs/heads/main`, not on `env-alice`",
        "it would apply that checkout's configuration as `alice`",
        "\"Use workflow from: env-alice\"",
        "`gh workflow run nubes.yml --ref env-alice -f environment=alice -f action=up`",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    let mut plan = read("workflow_dispatch_up_from_main.json");
    plan["inputs"]["action"] = "plan".into();
    let (out, _, _) = event_doc(&mut p, "workflow_dispatch", &plan, SHA);
    assert!(
        out.code(2)
            .stderr
            .contains("workflow_dispatch `plan` of `alice` ran on `refs/heads/main`")
    );
    // GITHUB_REF is the branch the run checked out, whatever the file says.
    p.set_env("GITHUB_REF", "refs/heads/main");
    let (out, _, _) = event(
        &mut p,
        "workflow_dispatch",
        &fixture("workflow_dispatch.json"),
        SHA,
    );
    assert!(out.code(2).stderr.contains("ran on `refs/heads/main`"));
    p.set_env("GITHUB_REF", "refs/heads/env-alice");

    // No `action` input: said so, nothing assumed.
    let (out, _, _) = event(
        &mut p,
        "workflow_dispatch",
        &fixture("workflow_dispatch_without_action.json"),
        SHA,
    );
    let out = out.code(2);
    assert!(
        out.stderr
            .contains("workflow_dispatch needs the input `action` to say what to do with `alice`"),
        "{}",
        out.stderr
    );
    assert!(terraform_calls(&p).is_empty(), "{:?}", terraform_calls(&p));
    assert!(state(&az).is_none());

    // From env-alice: up applies.
    let mut up = read("workflow_dispatch.json");
    up["inputs"]["action"] = "up".into();
    let (out, _, _) = event_doc(&mut p, "workflow_dispatch", &up, SHA);
    out.ok();
    assert!(state(&az).is_some());

    // `down` may come from anywhere, saying what Terraform needs from the checkout.
    p.set_env("GITHUB_REF", "refs/heads/main");
    let (out, _, summary) = event(
        &mut p,
        "workflow_dispatch",
        &fixture("workflow_dispatch_down_from_main.json"),
        SHA,
    );
    let out = out.ok();
    assert!(
        out.stderr.contains(
            "down `alice` was dispatched from `refs/heads/main`, not `env-alice`: `terraform destroy` uses the terraform/ checked out here"
        ) && out.stderr.contains("`nubes down alice --strategy resource-group` needs no configuration"),
        "{}",
        out.stderr
    );
    assert!(summary.contains("Torn down"), "{summary}");
    assert!(state(&az).is_none(), "alice was torn down");
    let props = block_on(az.blobs().list("tfstate", ""));
    assert!(props.contains("tombstone"), "{props}");
}

#[test]
fn messages_show_look_alike_and_empty_names_escaped() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    // Cyrillic е (U+0435) and three dashes that look like `-`: U+2010 HYPHEN, U+2011
    // NON-BREAKING HYPHEN, U+FF0D FULLWIDTH HYPHEN-MINUS.
    for (name, shown) in [
        ("\u{435}nv-alice", "\\u{435}nv-alice"),
        ("env\u{2010}alice", "env\\u{2010}alice"),
        ("env\u{2011}alice", "env\\u{2011}alice"),
        ("env\u{ff0d}alice", "env\\u{ff0d}alice"),
    ] {
        let mut push = read("push.json");
        push["ref"] = format!("refs/heads/{name}").into();
        let said = nothing_to_do_doc(&mut p, "push", &push);
        assert_eq!(
            said,
            format!(
                "nothing to do: push to `refs/heads/{shown}`, which is not an `env-*` branch\n"
            )
        );
        let mut delete = read("delete.json");
        delete["ref"] = name.into();
        let said = nothing_to_do_doc(&mut p, "delete", &delete);
        assert_eq!(
            said,
            format!("nothing to do: deleted branch `{shown}` is not an `env-*` branch\n")
        );
        let mut pr = read("pull_request/synchronize.json");
        pr["pull_request"]["base"]["ref"] = name.into();
        let said = nothing_to_do_doc(&mut p, "pull_request", &pr);
        assert_eq!(
            said,
            format!("nothing to do: the pull request's base `{shown}` is not an `env-*` branch\n")
        );
    }

    // Empty values read `(empty)`, never an empty pair of backticks.
    let mut delete = read("delete.json");
    delete["ref"] = "".into();
    let said = nothing_to_do_doc(&mut p, "delete", &delete);
    assert_eq!(
        said,
        "nothing to do: deleted branch (empty) is not an `env-*` branch\n"
    );
    let mut pr = read("pull_request/opened.json");
    pr["pull_request"]["base"]["ref"] = "".into();
    let said = nothing_to_do_doc(&mut p, "pull_request", &pr);
    assert!(said.contains("base (empty) is not"), "{said}");
    let mut pr = read("pull_request/opened.json");
    pr["action"] = "".into();
    let said = nothing_to_do_doc(&mut p, "pull_request", &pr);
    assert!(
        said.contains("pull request activity (empty) does not"),
        "{said}"
    );

    // A delete without `ref_type` is not called a tag; a tag deletion is.
    let said = nothing_to_do(&mut p, "delete", &fixture("delete_without_ref_type.json"));
    assert_eq!(
        said,
        "nothing to do: the delete event has no `ref_type`, so nothing says a branch was deleted\n"
    );
    let said = nothing_to_do(&mut p, "delete", &fixture("delete_tag.json"));
    assert_eq!(said, "nothing to do: a deleted tag has no environment\n");
    let said = nothing_to_do(&mut p, "create", &fixture("create.json"));
    assert!(said.contains("the `create` event does not change environments"));

    // An environment name in a dispatch is refused (exit 2) with the code point.
    let mut dispatch = read("workflow_dispatch.json");
    dispatch["inputs"]["environment"] = "\u{430}lice".into();
    let (out, _, _) = event_doc(&mut p, "workflow_dispatch", &dispatch, "");
    let out = out.code(2);
    assert!(
        out.stderr
            .contains("`\\u{430}lice` is not a valid environment name: it contains the non-ASCII character U+0430"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.is_ascii(), "{}", out.stderr);
    assert!(terraform_calls(&p).is_empty());
}

#[test]
fn a_dispatched_command_on_a_checkout_of_the_env_branch_records_that_commit() {
    // What the generated workflow's dispatch job does: started from the default branch
    // (GITHUB_SHA is its commit), it checks out env-alice and runs `nubes up alice`.
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    let repo = git2::Repository::init(p.path()).unwrap();
    let sig = git2::Signature::now("Alice", "alice@example.com").unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("nubes.toml")).unwrap();
    index.add_path(Path::new("terraform/main.tf")).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let commit = repo
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            "alice's configuration",
            &tree,
            &[],
        )
        .unwrap();
    repo.branch("env-alice", &repo.find_commit(commit).unwrap(), false)
        .unwrap();
    repo.set_head("refs/heads/env-alice").unwrap();
    p.set_env("GITHUB_EVENT_NAME", "workflow_dispatch");
    p.set_env("GITHUB_REF", "refs/heads/main");
    p.set_env("GITHUB_SHA", SHA);
    p.run(&["up", "alice"]).ok();
    let props = block_on(az.blobs().properties("tfstate", "alice.terraform.tfstate"));
    assert_eq!(
        props.meta("nubescommit").map(str::to_string),
        Some(commit.to_string())
    );
    assert_ne!(commit.to_string(), SHA);
}
