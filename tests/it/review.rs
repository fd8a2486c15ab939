//! The review loop on GitHub, end to end with the real binary, real Terraform and
//! Azurite, against the in-test GitHub server (every request validated against GitHub's
//! OpenAPI description): the plan comment on pull requests, GitHub Deployments from `up`
//! and `down`, the reviewed-plan guarantee, and GitHub being down or refusing.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::github::TOKEN;
use crate::github::fake::{Access, FakeGithub, Grants, OWNER, REPO};
use crate::support::{Azurite, Out, Project};

/// A sensitive value the configuration holds: it must never appear anywhere nubes writes.
const SECRET: &str = "Sup3r-S3cret-Value-4711";

/// A stack with a sensitive variable; `extra` is appended.
fn stack(extra: &str) -> String {
    format!(
        r#"
terraform {{
  backend "azurerm" {{}}
}}

variable "db_password" {{
  type      = string
  default   = "{SECRET}"
  sensitive = true
}}

resource "terraform_data" "keep" {{
  input = "kept"
}}

output "application_url" {{
  value = "https://app.example.com"
}}

output "password" {{
  value     = var.db_password
  sensitive = true
}}
{extra}
"#
    )
}

const DB: &str = r#"
resource "terraform_data" "db" {
  input = { password = var.db_password, size = 1 }
}
"#;

const OLD: &str = r#"
resource "terraform_data" "old" {
  input = "to be removed"
}
"#;

/// Many resources with long values: their details exceed a comment's 65,535 characters.
const MANY: &str = r#"
resource "terraform_data" "many" {
  count = 150
  input = "${count.index}-${join("", [for i in range(45) : "abcdefghi"])}"
}
"#;

fn sha(n: u32) -> String {
    format!("{n:040x}")
}

fn write_stack(p: &Project, text: &str) {
    std::fs::write(p.path().join("terraform/main.tf"), text).expect("main.tf");
}

/// The project on `az` with the GitHub Actions environment pointing at `fake`.
fn project(az: &Azurite, fake: &FakeGithub, toml: &str) -> Project {
    let mut p = Project::on(az, toml);
    p.set_env("GITHUB_ACTIONS", "true");
    p.set_env("CI", "true");
    p.set_env("GITHUB_ACTOR", "octocat");
    p.set_env("GITHUB_RUN_ID", "4242");
    p.set_env("GITHUB_SERVER_URL", "https://github.com");
    p.set_env("GITHUB_REPOSITORY", &format!("{OWNER}/{REPO}"));
    p.set_env("GITHUB_API_URL", &fake.url);
    p.set_env("GITHUB_TOKEN", TOKEN);
    p
}

const RUN_URL: &str = "https://github.com/octo-org/petclinic/actions/runs/4242";

/// `nubes args` with a fresh job summary; (output, summary).
fn run_with_summary(p: &mut Project, args: &[&str]) -> (Out, String) {
    let file = p.path().join(format!("summary-{}", uuid::Uuid::new_v4()));
    p.set_env("GITHUB_STEP_SUMMARY", file.to_str().expect("utf-8"));
    let out = p.run(args);
    let summary = std::fs::read_to_string(&file).unwrap_or_default();
    (out, summary)
}

/// `nubes run` for a `pull_request` event of pull request `number` into `base` at `head`.
fn pull_request(p: &mut Project, number: u64, base: &str, head: &str) -> (Out, String) {
    let payload = json!({
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "base": { "ref": base, "sha": sha(999) },
            "head": { "ref": format!("pr-{number}"), "sha": head },
        },
        "repository": { "full_name": format!("{OWNER}/{REPO}") },
    });
    event(p, "pull_request", &payload, head)
}

/// `nubes run` for a push of `after` to `branch`.
fn push(p: &mut Project, branch: &str, after: &str) -> (Out, String) {
    let payload = json!({
        "ref": format!("refs/heads/{branch}"),
        "before": sha(998),
        "after": after,
        "deleted": false,
        "repository": { "full_name": format!("{OWNER}/{REPO}") },
    });
    event(p, "push", &payload, after)
}

fn event(p: &mut Project, name: &str, payload: &Value, sha: &str) -> (Out, String) {
    let file: PathBuf = p
        .path()
        .join(format!("event-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec(payload).expect("json")).expect("payload");
    p.set_env("GITHUB_EVENT_NAME", name);
    p.set_env("GITHUB_EVENT_PATH", file.to_str().expect("utf-8"));
    p.set_env("GITHUB_SHA", sha);
    run_with_summary(p, &["run"])
}

fn plan_comments(fake: &FakeGithub, env: &str) -> Vec<Value> {
    let marker = format!("<!-- nubes-plan env={env} -->");
    fake.all_comments()
        .into_iter()
        .filter(|c| c["body"].as_str().is_some_and(|b| b.contains(&marker)))
        .collect()
}

/// Every file below `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_file()
            && let Ok(bytes) = std::fs::read(entry.path())
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(entry.path().to_path_buf());
        }
    }
    found
}

fn resources_in_state(az: &Azurite, env: &str) -> Vec<String> {
    let body = crate::support::block_on(
        az.blobs()
            .get("tfstate", &format!("{env}.terraform.tfstate")),
    )
    .body;
    let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    doc["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn three_pushes_to_a_pull_request_edit_one_comment_warn_of_destroys_cut_long_plans_and_hide_secrets()
 {
    let az = Azurite::https();
    let fake = FakeGithub::start(TOKEN, 30);
    let number = fake.add_pull_request("Add a database", "please review", &[]);
    let mut p = project(&az, &fake, "");
    // The environment as the base branch has it: `keep` and `old`.
    write_stack(&p, &stack(OLD));
    p.unset_env("GITHUB_ACTIONS");
    p.run(&["up", "alice"]).ok();
    p.set_env("GITHUB_ACTIONS", "true");

    // Push 1: a database holding the sensitive value.
    write_stack(&p, &stack(&format!("{OLD}{DB}")));
    let (out1, summary1) = pull_request(&mut p, number, "env-alice", &sha(1));
    let out1 = out1.ok();
    let comments = plan_comments(&fake, "alice");
    assert_eq!(comments.len(), 1, "{}", out1.stderr);
    let first = comments[0]["body"].as_str().expect("body").to_string();
    assert!(
        first.contains("**Plan: 1 to add, 0 to change, 0 to destroy, 0 to replace.**"),
        "{first}"
    );
    assert!(!first.contains("CAUTION"), "{first}");
    assert!(
        first.contains("Create <code>terraform_data.db</code>"),
        "{first}"
    );
    assert!(
        first.contains("+ input = {\"password\":(sensitive value),\"size\":1}"),
        "{first}"
    );
    assert!(
        first.contains(&format!("Planned commit `{}`", sha(1))),
        "{first}"
    );
    assert!(first.contains(&format!("[run]({RUN_URL})")), "{first}");

    // Push 2: `old` goes: the comment is edited and warns first.
    write_stack(&p, &stack(DB));
    let (out2, summary2) = pull_request(&mut p, number, "env-alice", &sha(2));
    out2.ok();
    let comments = plan_comments(&fake, "alice");
    assert_eq!(comments.len(), 1, "edited, not duplicated");
    let second = comments[0]["body"].as_str().expect("body").to_string();
    assert!(
        second.starts_with("> [!CAUTION]\n> **This plan destroys 1 resource in `alice`.**"),
        "{second}"
    );
    assert!(
        second.contains("Delete <code>terraform_data.old</code>"),
        "{second}"
    );

    // Push 3: a plan whose details exceed GitHub's limit is cut, with the note.
    write_stack(&p, &stack(&format!("{DB}{MANY}")));
    let (out3, summary3) = pull_request(&mut p, number, "env-alice", &sha(3));
    out3.ok();
    let comments = plan_comments(&fake, "alice");
    assert_eq!(comments.len(), 1, "edited, not duplicated");
    let third = comments[0]["body"].as_str().expect("body").to_string();
    assert!(third.chars().count() <= 65_535, "{}", third.len());
    assert!(third.contains("are left out here"), "note missing");
    assert!(third.contains(&format!("[job summary]({RUN_URL})")));
    assert!(
        third.contains("`terraform_data.many[149]`"),
        "every row is kept"
    );
    assert!(summary3.contains("terraform_data.many[149]"));

    assert_eq!(
        fake.requests_to("POST", &format!("/issues/{number}/comments"))
            .len(),
        1
    );
    let edits = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/issues/comments/"))
        .count();
    assert_eq!(edits, 2);
    // The sensitive value and the token appear nowhere nubes wrote.
    for text in [&first, &second, &third, &summary1, &summary2, &summary3] {
        assert!(!text.contains(SECRET));
        assert!(!text.contains(TOKEN));
    }
    for out in [&out1.stdout, &out1.stderr] {
        assert!(!out.contains(SECRET) && !out.contains(TOKEN));
    }
    let leaked: Vec<PathBuf> = files_containing(p.path(), TOKEN);
    assert!(leaked.is_empty(), "the token is in {leaked:?}");
    let summary_files: Vec<PathBuf> = files_containing(p.path(), SECRET)
        .into_iter()
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("summary-"))
        })
        .collect();
    assert!(summary_files.is_empty(), "{summary_files:?}");
}

#[test]
fn a_later_plan_without_changes_edits_the_comment_and_never_creates_one() {
    let az = Azurite::https();
    let fake = FakeGithub::start(TOKEN, 30);
    let quiet = fake.add_pull_request("Docs only", "", &[]);
    let mut p = project(&az, &fake, "");
    write_stack(&p, &stack(""));
    p.unset_env("GITHUB_ACTIONS");
    p.run(&["up", "alice"]).ok();
    p.set_env("GITHUB_ACTIONS", "true");
    // No changes, no comment yet: none is created.
    pull_request(&mut p, quiet, "env-alice", &sha(10)).0.ok();
    assert!(plan_comments(&fake, "alice").is_empty());
    // A change comments; reverting it edits that comment to say so.
    write_stack(&p, &stack(DB));
    pull_request(&mut p, quiet, "env-alice", &sha(11)).0.ok();
    write_stack(&p, &stack(""));
    pull_request(&mut p, quiet, "env-alice", &sha(12)).0.ok();
    let comments = plan_comments(&fake, "alice");
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("**No changes.**")),
        "{}",
        comments[0]["body"]
    );
}

#[test]
fn up_then_down_report_a_github_deployment_with_the_environment_url() {
    let az = Azurite::https();
    let fake = FakeGithub::start(TOKEN, 30);
    let commit = sha(20);
    fake.add_commit(&commit);
    let mut p = project(&az, &fake, "");
    write_stack(&p, &stack(""));
    p.set_env("GITHUB_SHA", &commit);
    let (out, summary) = run_with_summary(&mut p, &["up", "alice"]);
    let out = out.ok();
    let deployments = fake.deployments();
    assert_eq!(deployments.len(), 1, "{}", out.stderr);
    let d = &deployments[0];
    assert_eq!(d["environment"], "env-alice");
    assert_eq!(d["sha"], commit.as_str());
    assert_eq!(d["transient_environment"], true);
    assert_eq!(d["production_environment"], false);
    let id = d["id"].as_u64().expect("id");
    let statuses = fake.statuses_of(id);
    let states: Vec<&str> = statuses
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(states, ["in_progress", "success"]);
    assert_eq!(statuses[1]["environment_url"], "https://app.example.com");
    assert_eq!(statuses[1]["log_url"], RUN_URL);
    assert!(!summary.contains(TOKEN));

    let out = p.run(&["down", "alice"]).ok();
    let statuses = fake.statuses_of(id);
    let states: Vec<&str> = statuses
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["in_progress", "success", "inactive"],
        "{}",
        out.stderr
    );
}

#[test]
fn a_protected_environment_applies_only_the_plan_reviewed_on_its_pull_request() {
    let az = Azurite::https();
    let fake = FakeGithub::start(TOKEN, 30);
    let mut p = project(&az, &fake, "[environments.prod]\nprotected = true\n");
    // The environment exists (a pull request's reviewed plan is kept with its state, so
    // there must be one): made from a shell, where the check is only a warning.
    write_stack(&p, &stack(""));
    p.unset_env("GITHUB_ACTIONS");
    let out = p.run(&["up", "prod"]).ok();
    assert!(
        out.stderr.contains("checked only in GitHub Actions"),
        "{}",
        out.stderr
    );
    p.set_env("GITHUB_ACTIONS", "true");

    // PR #1 adds the database; its plan is recorded as reviewed; the merge applies it.
    write_stack(&p, &stack(DB));
    let first = fake.add_pull_request("Database", "", &[]);
    pull_request(&mut p, first, "env-prod", &sha(31)).0.ok();
    fake.merge_pull_request(first, &sha(31), "env-prod", &sha(32));
    let (out, summary) = push(&mut p, "env-prod", &sha(32));
    let out = out.ok();
    assert!(
        summary.contains("the plan applied is the one reviewed on pull request #1"),
        "{summary}\n{}",
        out.stderr
    );
    assert_eq!(resources_in_state(&az, "prod"), ["db", "keep"]);
    let d = fake.deployments();
    assert_eq!(
        d.last().expect("deployment")["production_environment"],
        true
    );

    // PR #2 adds `old`, planned against that state.
    write_stack(&p, &stack(&format!("{DB}{OLD}")));
    let second = fake.add_pull_request("Old", "", &[]);
    pull_request(&mut p, second, "env-prod", &sha(41)).0.ok();

    // Meanwhile someone applies something else by hand: the database goes away.
    write_stack(&p, &stack(""));
    let hand = sha(40);
    fake.add_commit(&hand);
    p.set_env("GITHUB_EVENT_NAME", "workflow_dispatch");
    p.set_env("GITHUB_SHA", &hand);
    let refused = run_with_summary(&mut p, &["up", "prod"]).0.code(1);
    assert!(
        refused.stderr.contains("no reviewed plan is recorded"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--accept-unreviewed"),
        "{}",
        refused.stderr
    );
    let (accepted, summary) = run_with_summary(&mut p, &["up", "prod", "--accept-unreviewed"]);
    accepted.ok();
    assert!(summary.contains("**Unreviewed plan applied**"), "{summary}");
    let overridden = fake.deployments().last().cloned().expect("deployment");
    assert_eq!(overridden["payload"]["nubes"]["accept_unreviewed"], true);
    let statuses = fake.statuses_of(overridden["id"].as_u64().expect("id"));
    assert_eq!(
        statuses.last().expect("status")["description"],
        "applied an unreviewed plan (--accept-unreviewed)"
    );
    assert_eq!(resources_in_state(&az, "prod"), ["keep"]);

    // PR #2 is merged: its reviewed plan no longer matches (the state changed).
    write_stack(&p, &stack(&format!("{DB}{OLD}")));
    fake.merge_pull_request(second, &sha(41), "env-prod", &sha(42));
    let (out, _) = push(&mut p, "env-prod", &sha(42));
    let out = out.code(1);
    assert!(
        out.stderr
            .contains("the state of `prod` changed since the review"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("pull request #2"), "{}", out.stderr);
    assert_eq!(resources_in_state(&az, "prod"), ["keep"], "nothing applied");
    let failed = fake.deployments().last().cloned().expect("deployment");
    let statuses = fake.statuses_of(failed["id"].as_u64().expect("id"));
    assert_eq!(statuses.last().expect("status")["state"], "failure");
}

#[test]
fn github_refusing_or_down_never_fails_the_environment_and_the_token_stays_secret() {
    let az = Azurite::https();
    let fake = FakeGithub::start(TOKEN, 30);
    let number = fake.add_pull_request("Change", "", &[]);
    let commit = sha(50);
    fake.add_commit(&commit);
    // A workflow that granted too little.
    fake.set_grants(Grants {
        issues: Access::Read,
        contents: Access::Read,
    });
    fake.set_review_grants(Access::Read, Access::Read);
    let mut p = project(&az, &fake, "");
    write_stack(&p, &stack(DB));
    let (out, _) = pull_request(&mut p, number, "env-alice", &commit);
    let out = out.ok();
    assert!(
        out.stderr.contains("the plan comment was not posted")
            && out.stderr.contains("permissions:` `pull-requests: write`"),
        "{}",
        out.stderr
    );
    p.set_env("GITHUB_SHA", &commit);
    let (out, summary) = run_with_summary(&mut p, &["up", "alice"]);
    let out = out.ok();
    assert!(
        out.stderr.contains("no GitHub deployment was recorded")
            && out.stderr.contains("`deployments: write`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("::warning::"),
        "an annotation: {}",
        out.stderr
    );
    assert_eq!(resources_in_state(&az, "alice"), ["db", "keep"]);

    // GitHub's API unreachable: still applied, with a warning.
    let closed = format!("http://127.0.0.1:{}", crate::support::free_port());
    p.set_env("GITHUB_API_URL", &closed);
    write_stack(&p, &stack(""));
    let (down_out, summary2) = run_with_summary(&mut p, &["up", "alice"]);
    let down_out = down_out.ok();
    assert!(
        down_out.stderr.contains("could not be reached"),
        "{}",
        down_out.stderr
    );
    assert_eq!(resources_in_state(&az, "alice"), ["keep"]);

    for text in [
        &out.stdout,
        &out.stderr,
        &summary,
        &down_out.stdout,
        &down_out.stderr,
        &summary2,
    ] {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
    let leaked = files_containing(p.path(), TOKEN);
    assert!(leaked.is_empty(), "the token is in {leaked:?}");
}
