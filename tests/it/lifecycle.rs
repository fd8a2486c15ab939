//! Environment lifecycle: activity recorded by every `up` (fast path included), expiry
//! (`[expiry]`, `nubes keep`, protected), `reap --expired / --older-than / --warn`, and
//! provenance (commit, artifact digest, deploy and health verdicts, dirty trees).
//! Time moves through `NUBES_TEST_NOW` (honoured by debug builds only), never a sleep.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{Azurite, Project, block_on};

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
"#;

fn at(p: &mut Project, when: &str) {
    p.set_env("NUBES_TEST_NOW", when);
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn env_row<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

fn names(list: &Value) -> Vec<String> {
    list["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fast_path_activity_keeps_an_environment_and_idle_pinned_protected_ones_are_judged_right() {
    let az = Azurite::https();
    let mut p = Project::on(
        &az,
        "[expiry]\nidle = \"14d\"\n[environments.prot]\nprotected = true\n",
    );
    std::fs::write(p.path().join("terraform/main.tf"), STACK).unwrap();
    at(&mut p, "2026-01-01T00:00:00Z");
    for env in ["busy", "idle", "prot", "pinned"] {
        p.run(&["up", env]).ok();
    }
    // Day 10: only `busy` is pushed again; nothing changed, so it takes the fast path.
    at(&mut p, "2026-01-11T00:00:00Z");
    let out = p.run(&["up", "busy"]).ok();
    assert!(out.stderr.contains("is up to date"), "{}", out.stderr);
    let out = p.run(&["keep", "pinned", "--until", "2026-02-15"]).ok();
    assert!(
        out.stdout
            .contains("`pinned` is kept until 2026-02-16T00:00:00Z"),
        "{}",
        out.stdout
    );

    // Day 20.
    at(&mut p, "2026-01-21T00:00:00Z");
    let list = json(&p.run(&["list", "--json"]).ok().stdout);
    let busy = env_row(&list, "busy");
    assert_eq!(busy["activity"]["at"], "2026-01-11T00:00:00Z", "{busy}");
    assert_eq!(busy["activity"]["source"], "activity");
    assert_eq!(busy["activity"]["created_at"], "2026-01-01T00:00:00Z");
    assert_eq!(busy["expiry"]["expires_at"], "2026-01-25T00:00:00Z");
    assert_eq!(
        busy["last_apply"]["at"], "2026-01-01T00:00:00Z",
        "the fast path applied nothing"
    );
    assert_eq!(env_row(&list, "idle")["expiry"]["expired"], true);
    assert_eq!(env_row(&list, "prot")["expiry"]["expires_at"], Value::Null);
    assert_eq!(
        env_row(&list, "pinned")["expiry"]["pinned_until"],
        "2026-02-16T00:00:00Z"
    );
    let text = p.run(&["list"]).ok().stdout;
    assert!(text.contains("EXPIRES"), "{text}");
    let idle_line = text.lines().find(|l| l.starts_with("idle ")).unwrap();
    assert!(idle_line.contains("expired"), "{idle_line}");

    let out = p.run(&["reap", "--expired", "--dry-run"]).ok().stdout;
    assert!(
        out.contains("idle: would tear down (expired: idle 14d after its last activity at 2026-01-01T00:00:00Z"),
        "{out}"
    );
    assert!(
        out.contains("busy: kept (still wanted; expires in 4d)"),
        "{out}"
    );
    assert!(
        out.contains("prot: kept (still wanted; protected: never expires)"),
        "{out}"
    );
    assert!(
        out.contains("pinned: kept (still wanted; expires in 26d)"),
        "{out}"
    );
    // --older-than measures activity, not the last apply (both were applied on day 0).
    let out = p
        .run(&["reap", "--older-than", "14d", "--dry-run"])
        .ok()
        .stdout;
    assert!(
        out.contains("idle: would tear down (no activity for 20d"),
        "{out}"
    );
    assert!(out.contains("busy: kept"), "{out}");
    assert!(
        out.contains("prot: kept (protected (no activity for 20d"),
        "{out}"
    );
    assert!(
        out.contains("pinned: kept (pinned by `nubes keep` until 2026-02-16T00:00:00Z"),
        "{out}"
    );

    // --warn only lists; in Actions it also annotates and writes the job summary.
    let summary = p.path().join("summary.md");
    p.set_env("GITHUB_ACTIONS", "true");
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let out = p.run(&["reap", "--warn", "5d"]).ok();
    assert!(
        out.stdout
            .contains("busy: expires in 4d, at 2026-01-25T00:00:00Z"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("idle:"),
        "already expired is not 'expiring': {}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("::warning::environment `busy` expires in 4d"),
        "{}",
        out.stderr
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| `busy` | in 4d"), "{md}");
    assert!(
        !md.contains("nubes reap"),
        "a warning run tears nothing down: {md}"
    );
    p.unset_env("GITHUB_ACTIONS");
    p.unset_env("GITHUB_STEP_SUMMARY");
    assert_eq!(
        names(&json(&p.run(&["list", "--json"]).ok().stdout)).len(),
        4
    );

    // The real thing: only `idle` goes.
    let doc = json(&p.run(&["reap", "--expired", "--json"]).ok().stdout);
    assert_eq!(doc["torn_down"], 1, "{doc}");
    assert_eq!(
        names(&json(&p.run(&["list", "--json"]).ok().stdout)),
        ["busy", "pinned", "prot"]
    );

    // Day 50: `busy` idled out, the pin ended; `prot` stays forever.
    at(&mut p, "2026-02-20T00:00:00Z");
    let doc = json(&p.run(&["reap", "--expired", "--json"]).ok().stdout);
    assert_eq!(doc["torn_down"], 2, "{doc}");
    assert_eq!(
        names(&json(&p.run(&["list", "--json"]).ok().stdout)),
        ["prot"]
    );
}

#[test]
fn keep_refuses_the_past_garbage_and_missing_environments_and_now_removes_a_pin() {
    let az = Azurite::http();
    let mut p = Project::on(&az, "[expiry]\nidle = \"1d\"\n");
    at(&mut p, "2026-03-01T00:00:00Z");
    p.run(&["up", "alice"]).ok();
    let e = p.run(&["keep", "alice", "--until", "2020-01-01"]).code(2);
    assert!(e.stderr.contains("in the past"), "{}", e.stderr);
    let e = p.run(&["keep", "alice", "--until", "whenever"]).code(2);
    assert!(e.stderr.contains("`now` to remove the pin"), "{}", e.stderr);
    let e = p.run(&["keep", "ghost", "--until", "3d"]).code(2);
    assert!(e.stderr.contains("does not exist"), "{}", e.stderr);
    let e = p.run(&["keep", "Bad_Name", "--until", "3d"]).code(2);
    assert!(
        e.stderr.contains("env-bad-name") || e.stderr.contains("canonical"),
        "{}",
        e.stderr
    );

    p.run(&["keep", "alice", "--until", "30d"]).ok();
    let st = json(&p.run(&["status", "alice", "--json"]).ok().stdout);
    assert_eq!(st["expiry"]["expires_at"], "2026-03-31T00:00:00Z", "{st}");
    let out = p.run(&["keep", "alice", "--until", "now"]).ok();
    assert!(out.stdout.contains("no longer pinned"), "{}", out.stdout);
    let st = json(&p.run(&["status", "alice", "--json"]).ok().stdout);
    assert_eq!(st["expiry"]["pinned_until"], Value::Null);
    assert_eq!(st["expiry"]["expires_at"], "2026-03-02T00:00:00Z");
    // The pin was written under the lock, which is free again.
    assert_eq!(st["lock"], Value::Null);

    // Bad [expiry] values are configuration errors naming the key.
    std::fs::write(
        p.path().join("nubes.toml"),
        "[project]\nname = \"demo\"\n[expiry]\nidle = \"soon\"\n",
    )
    .unwrap();
    let e = p.run(&["list"]).code(2);
    assert!(
        e.stderr.contains("[expiry] idle") && e.stderr.contains("never"),
        "{}",
        e.stderr
    );
}

#[test]
fn a_state_only_plain_terraform_wrote_is_judged_by_its_last_modified_time() {
    let az = Azurite::https();
    let mut p = Project::on(&az, "[expiry]\nidle = \"7d\"\n");
    let state = br#"{"version":4,"terraform_version":"1.11.4","serial":3,"lineage":"4a1c0e4e-0000-4000-8000-000000000001","outputs":{},"resources":[]}"#;
    block_on(az.blobs().create_container("tfstate"));
    block_on(
        az.blobs()
            .put("tfstate", "plain.terraform.tfstate", state.to_vec(), &[]),
    );
    // No nubes record at all: idle counts from the blob's Last-Modified (just now).
    let list = json(&p.run(&["list", "--json"]).ok().stdout);
    let row = env_row(&list, "plain");
    assert_eq!(row["activity"]["source"], "modified", "{row}");
    assert_eq!(row["expiry"]["expired"], false);
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(8);
    at(
        &mut p,
        &later
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    );
    let out = p.run(&["reap", "--expired", "--dry-run"]).ok().stdout;
    assert!(
        out.contains("plain: would tear down (expired: idle 7d after its last activity at")
            && out.contains("(state last modified)"),
        "{out}"
    );
}

fn app_stack(url: &str) -> String {
    format!("{STACK}\noutput \"application_url\" {{\n  value = \"{url}\"\n}}\n")
}

fn commit_all(repo: &git2::Repository, message: &str) -> String {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("Dev", "dev@example.com").unwrap();
    let parents: Vec<git2::Commit> = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .into_iter()
        .collect();
    let parents: Vec<&git2::Commit> = parents.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
        .to_string()
}

#[test]
fn provenance_records_commit_digest_verdicts_and_dirty_trees() {
    let az = Azurite::https();
    let healthy = crate::deploy::http_server(200, "ok", 50);
    let p = Project::on(
        &az,
        "[build]\ncommand = \"mkdir -p out && printf built > out/app.txt\"\nartifact = \"out\"\n\
         [deploy]\ntarget = \"command\"\ncommand = [\"true\"]\nhealth_timeout = \"2s\"\n",
    );
    std::fs::write(p.path().join("terraform/main.tf"), app_stack(&healthy)).unwrap();
    std::fs::write(p.path().join(".gitignore"), "out/\n").unwrap();
    let repo = git2::Repository::init(p.path()).unwrap();
    let commit = commit_all(&repo, "first");

    p.run(&["up", "alice"]).ok();
    let st = json(&p.run(&["status", "alice", "--json"]).ok().stdout);
    // The folder digest: sorted `path NUL sha256(content) LF` lines, hashed.
    let file = format!("{:x}", Sha256::digest(b"built"));
    let expected = format!("sha256:{:x}", Sha256::digest(format!("app.txt\0{file}\n")));
    assert_eq!(st["deploy"]["verdict"], "succeeded", "{st}");
    assert_eq!(st["deploy"]["commit"], commit.as_str());
    assert_eq!(st["deploy"]["artifact"], expected.as_str());
    assert_eq!(st["deploy"]["target"], "command");
    assert_eq!(st["deploy"]["application_url"], healthy.as_str());
    assert_eq!(st["health"]["verdict"], "healthy");
    assert_eq!(st["activity"]["dirty"], false);
    assert_eq!(st["activity"]["what"], "up");

    // An uncommitted edit: applied and recorded as dirty, with a warning.
    let unhealthy = crate::deploy::http_server(503, "warming up", 200);
    std::fs::write(p.path().join("terraform/main.tf"), app_stack(&unhealthy)).unwrap();
    let out = p.run(&["up", "alice"]).code(1);
    assert!(out.stderr.contains("uncommitted changes"), "{}", out.stderr);
    assert!(out.stderr.contains("stage health check"), "{}", out.stderr);
    let st = json(&p.run(&["status", "alice", "--json"]).ok().stdout);
    assert_eq!(st["activity"]["dirty"], true, "{st}");
    assert_eq!(st["activity"]["what"], "up (failed)");
    assert_eq!(st["deploy"]["verdict"], "succeeded");
    assert_eq!(st["health"]["verdict"], "unhealthy");
    let text = p.run(&["status", "alice"]).ok().stdout;
    assert!(text.contains("health:     unhealthy"), "{text}");
    assert!(text.contains("from a dirty working tree"), "{text}");
    let list = p.run(&["list"]).ok().stdout;
    let line = list.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(
        line.contains(&format!("{}+", &commit[..12])) && line.contains("unhealthy"),
        "{line}"
    );

    // Committed again: clean, healthy, and the dirty mark is gone.
    std::fs::write(p.path().join("terraform/main.tf"), app_stack(&healthy)).unwrap();
    let second = commit_all(&repo, "second");
    p.run(&["up", "alice"]).ok();
    let st = json(&p.run(&["status", "alice", "--json"]).ok().stdout);
    assert_eq!(st["activity"]["dirty"], false, "{st}");
    assert_eq!(st["deploy"]["commit"], second.as_str());
    assert_eq!(st["health"]["verdict"], "healthy");
    assert_eq!(st["last_apply"]["commit"], second.as_str());
}

/// `down` on a terminal says what it will destroy and asks for the environment's name;
/// a wrong answer destroys nothing (exit 2); scripts and CI are never asked.
#[test]
fn down_on_a_terminal_asks_for_the_name_and_a_wrong_answer_destroys_nothing() {
    let az = Azurite::https();
    let p = Project::on(&az, "[environments.prod]\nprotected = true\n");
    let stack = format!(
        "{STACK}\nresource \"terraform_data\" \"more\" {{\n  count = 2\n  input = var.environment\n}}\n"
    );
    std::fs::write(p.path().join("terraform/main.tf"), stack).unwrap();
    p.run(&["up", "alice"]).ok();
    p.run(&["up", "prod"]).ok();

    let out = p.run_on_terminal(&["down", "alice"], "bob\n").code(2);
    assert!(
        out.stdout.contains("will destroy environment `alice`")
            && out.stdout.contains("3 resources with `terraform destroy`")
            && out.stdout.contains("tombstone"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("not confirmed: nothing was destroyed"),
        "{}",
        out.stdout
    );
    let list = json(&p.run(&["list", "--json"]).ok().stdout);
    assert_eq!(names(&list), ["alice", "prod"], "nothing was destroyed");
    assert_eq!(
        env_row(&list, "alice")["lock"],
        Value::Null,
        "no lock was taken"
    );

    // A protected environment is refused before anyone is asked.
    let out = p.run_on_terminal(&["down", "prod"], "prod\n").code(2);
    assert!(out.stdout.contains("is protected"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("Type the environment's name"),
        "{}",
        out.stdout
    );

    let out = p.run_on_terminal(&["down", "alice"], "alice\n").ok();
    assert!(out.stdout.contains("torn down"), "{}", out.stdout);
    // --yes, and no terminal at all, are never asked.
    p.run(&["up", "alice"]).ok();
    let out = p.run_on_terminal(&["down", "alice", "--yes"], "").ok();
    assert!(
        !out.stdout.contains("Type the environment's name"),
        "{}",
        out.stdout
    );
    p.run(&["up", "alice"]).ok();
    let out = p.run(&["down", "alice"]).ok();
    assert!(
        !out.stderr.contains("Type the environment's name"),
        "{}",
        out.stderr
    );
    assert_eq!(
        names(&json(&p.run(&["list", "--json"]).ok().stdout)),
        ["prod"]
    );
}
