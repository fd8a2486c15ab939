//! `nubes env new|rm|open|ls`: the real binary and the real git CLI against a real bare
//! `origin`, GitHub's API served by the in-test server (`github/fake.rs` +
//! `github/actions.rs`, every request validated against GitHub's description), which
//! turns what the pushes change in `origin` into runs as GitHub would; state in Azurite.

use std::path::Path;
use std::process::Command;

use crate::github::TOKEN;
use crate::github::actions::Outcome;
use crate::github::fake::{FakeGithub, OWNER, REPO};
use crate::support::{Azurite, Out, Project, block_on};

const URL: &str = "https://app-petclinic-alice.azurewebsites.net";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The branches of a repository: name → commit.
fn branches(dir: &Path) -> Vec<(String, String)> {
    let out = git(
        dir,
        &[
            "for-each-ref",
            "--format=%(refname:short) %(objectname)",
            "refs/heads",
        ],
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A project that is a git checkout of `main` with a bare `origin`, wired to the fake
/// GitHub (which watches `origin`) as a developer's shell would be with a token.
struct World {
    project: Project,
    origin: tempfile::TempDir,
    github: FakeGithub,
}

impl World {
    fn new(project: Project, login: Option<&str>) -> World {
        let origin = tempfile::tempdir().expect("tempdir");
        git(origin.path(), &["init", "--quiet", "--bare", "-b", "main"]);
        let dir = project.path();
        std::fs::write(dir.join(".gitignore"), ".nubes/\n").expect("write");
        git(dir, &["init", "--quiet", "-b", "main"]);
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "--quiet", "-m", "first"]);
        git(
            dir,
            &[
                "remote",
                "add",
                "origin",
                &origin.path().display().to_string(),
            ],
        );
        git(dir, &["push", "--quiet", "-u", "origin", "main"]);
        let github = FakeGithub::start(TOKEN, 30);
        github.actions(|a| a.watch(origin.path().to_path_buf(), "main", login));
        let mut world = World {
            project,
            origin,
            github,
        };
        world.set("GITHUB_TOKEN", TOKEN);
        world.set("GITHUB_API_URL", &world.github.url.clone());
        world.set("GITHUB_REPOSITORY", &format!("{OWNER}/{REPO}"));
        world.set("NUBES_TEST_POLL_MS", "5");
        world
    }

    fn plain(toml: &str) -> World {
        World::new(
            Project::new(toml, &[("main.tf", crate::support::STACK)]),
            Some("octocat"),
        )
    }

    fn set(&mut self, k: &str, v: &str) {
        self.project.set_env(k, v);
    }

    fn run(&self, args: &[&str]) -> Out {
        self.project.run(args)
    }

    fn head(&self) -> String {
        git(self.project.path(), &["rev-parse", "HEAD"])
    }

    fn on_origin(&self, branch: &str) -> Option<String> {
        branches(self.origin.path())
            .into_iter()
            .find(|(b, _)| b == branch)
            .map(|(_, sha)| sha)
    }
}

fn no_token_anywhere(out: &Out) {
    assert!(
        !out.all().contains(TOKEN),
        "the token was printed:\n{}",
        out.all()
    );
}

#[test]
fn new_pushes_the_branch_follows_the_run_and_prints_the_deployment_url() {
    let w = World::plain("[project]\nname = \"petclinic\"\n");
    w.github.actions(|a| {
        a.script(
            "env-alice",
            Outcome {
                conclusion: "success".into(),
                url: Some(URL.into()),
            },
        )
    });
    let out = w.run(&["-vv", "env", "new", "alice"]).ok();
    no_token_anywhere(&out);
    // stdout is the URL alone (scripts take it); progress went to stderr, stage by stage.
    assert_eq!(out.stdout.trim(), URL, "{}", out.stderr);
    for line in [
        "pushed env-alice",
        "queued: https://github.com/octo-org/petclinic/actions/runs/",
        "nubes: Check out: success",
        "nubes: nubes run ...",
        "nubes: nubes run: success",
        "completed: success",
        "environment `alice` is ready",
    ] {
        assert!(
            out.stderr.contains(line),
            "missing {line:?}:\n{}",
            out.stderr
        );
    }
    assert_eq!(w.on_origin("env-alice"), Some(w.head()));
    // The local branch exists too, at the same commit; the checkout stayed on main.
    assert!(branches(w.project.path()).contains(&("env-alice".into(), w.head())));
    assert_eq!(git(w.project.path(), &["branch", "--show-current"]), "main");
    // The run was found by branch, event and commit, and followed to its end.
    let listed = w.github.requests_to("GET", "/actions/runs");
    assert!(
        listed
            .iter()
            .any(|r| r.query.contains(&("head_sha".into(), w.head()))
                && r.query.contains(&("event".into(), "push".into()))
                && r.query.contains(&("branch".into(), "env-alice".into())))
    );
    assert_eq!(
        w.github.actions(|a| a.runs()),
        vec![("push".to_string(), "env-alice".to_string(), true)]
    );
    assert!(
        w.github
            .requests_to("GET", "/statuses")
            .iter()
            .all(|r| r.status == 200)
    );
}

#[test]
fn a_failed_run_exits_1_and_points_at_its_log() {
    let w = World::plain("[project]\nname = \"petclinic\"\n");
    w.github.actions(|a| {
        a.script(
            "env-dave",
            Outcome {
                conclusion: "failure".into(),
                url: None,
            },
        )
    });
    let out = w.run(&["env", "new", "dave"]).code(1);
    assert!(out.stderr.contains("nubes run: failure"), "{}", out.stderr);
    assert!(out.stderr.contains("ended `failure`"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("https://github.com/octo-org/petclinic/actions/runs/")
    );
    assert!(out.stdout.trim().is_empty());
    no_token_anywhere(&out);
}

#[test]
fn no_wait_returns_right_after_the_push() {
    let w = World::plain("[project]\nname = \"petclinic\"\n");
    w.run(&["env", "new", "bob", "--no-wait"]).ok();
    assert_eq!(w.on_origin("env-bob"), Some(w.head()));
    assert!(w.github.requests().is_empty(), "{:?}", w.github.requests());
}

#[test]
fn a_bad_name_exits_2_before_any_git_change() {
    let w = World::plain("[project]\nname = \"petclinic\"\n");
    let before_local = branches(w.project.path());
    let before_origin = branches(w.origin.path());
    let out = w.run(&["env", "new", "Alice_B"]).code(2);
    // The same words as `nubes env-name` for the same name (which names the branch too).
    let named = w.run(&["env-name", "env-Alice_B"]).code(2);
    for line in out.stderr.lines().filter(|l| !l.trim().is_empty()) {
        let words = line.trim_start_matches("error: ");
        assert!(
            named.stderr.contains(words),
            "{words:?} not in:\n{}",
            named.stderr
        );
    }
    assert!(
        out.stderr.contains("canonical name would be `alice-b`"),
        "{}",
        out.stderr
    );
    for bad in ["a".repeat(21).as_str(), "x-", "x--y", "ﬁx"] {
        w.run(&["env", "new", bad]).code(2);
    }
    assert_eq!(branches(w.project.path()), before_local);
    assert_eq!(branches(w.origin.path()), before_origin);
    assert!(w.github.requests().is_empty());
}

#[test]
fn without_a_token_the_run_page_is_printed_and_the_exit_code_is_0() {
    let mut w = World::plain("[project]\nname = \"petclinic\"\n");
    w.project.unset_env("GITHUB_TOKEN");
    // No `gh` either: a PATH with git only.
    let git_dir = which::which("git").expect("git");
    let bin = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&git_dir, bin.path().join("git")).expect("symlink");
    w.set("PATH", &bin.path().display().to_string());
    let out = w.run(&["env", "new", "carol"]).ok();
    assert_eq!(
        out.stdout.trim(),
        "https://github.com/octo-org/petclinic/actions?query=branch%3Aenv-carol"
    );
    assert!(out.stderr.contains("no GitHub token"), "{}", out.stderr);
    assert_eq!(w.on_origin("env-carol"), Some(w.head()));
    assert!(w.github.requests().is_empty());
}

#[test]
fn rm_on_a_terminal_needs_the_typed_name_then_deletes_the_branch_and_follows_the_teardown() {
    let w = World::plain("[project]\nname = \"petclinic\"\n");
    w.run(&["env", "new", "alice", "--no-wait"]).ok();
    assert!(w.on_origin("env-alice").is_some());
    w.github.actions(|a| a.sync());

    // Not a terminal, no --yes: refused.
    let out = w.run(&["env", "rm", "alice"]).code(2);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    // A wrong answer: nothing deleted.
    let out = w
        .project
        .run_on_terminal(&["env", "rm", "alice"], "alce\n")
        .code(2);
    assert!(
        out.stdout.contains("Type the environment's name (alice)"),
        "{}",
        out.stdout
    );
    assert!(w.on_origin("env-alice").is_some());

    let out = w
        .project
        .run_on_terminal(&["env", "rm", "alice"], "alice\n")
        .ok();
    assert_eq!(w.on_origin("env-alice"), None);
    assert!(
        out.stdout.contains("deleted env-alice on origin"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("completed: success"), "{}", out.stdout);
    assert!(
        out.stdout.contains("environment `alice` is torn down"),
        "{}",
        out.stdout
    );
    no_token_anywhere(&out);
    // GitHub runs a deletion on the default branch: the `delete` run was the one followed.
    let runs = w.github.actions(|a| a.runs());
    assert!(
        runs.contains(&("delete".to_string(), "main".to_string(), true)),
        "{runs:?}"
    );
    let listed = w.github.requests_to("GET", "/actions/runs");
    assert!(
        listed
            .iter()
            .any(|r| r.query.contains(&("event".into(), "delete".into())))
    );
}

#[test]
fn rm_refuses_a_protected_environment_and_a_missing_branch() {
    let w =
        World::plain("[project]\nname = \"petclinic\"\n\n[environments.prod]\nprotected = true\n");
    git(
        w.project.path(),
        &["push", "--quiet", "origin", "main:env-prod"],
    );
    let out = w
        .project
        .run_on_terminal(&["env", "rm", "prod"], "prod\n")
        .code(2);
    assert!(out.stdout.contains("is protected"), "{}", out.stdout);
    w.run(&["env", "rm", "prod", "--yes"]).code(2);
    w.run(&["env", "rm", "prod", "--local", "--yes"]).code(2);
    assert!(w.on_origin("env-prod").is_some());
    let out = w.run(&["env", "rm", "zoe", "--yes"]).code(2);
    assert!(
        out.stderr.contains("origin has no branch env-zoe"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--local"), "{}", out.stderr);
}

/// A state document with an `application_url` output.
fn state_with_url(url: &str) -> Vec<u8> {
    serde_json::json!({
        "version": 4, "terraform_version": "1.15.5", "serial": 3,
        "lineage": "5a4b3c2d-0000-4000-8000-000000000001",
        "outputs": { "application_url": { "value": url, "type": "string" } },
        "resources": [],
    })
    .to_string()
    .into_bytes()
}

#[test]
fn open_prints_the_url_from_stored_state_and_refuses_what_is_not_a_web_address() {
    let az = Azurite::https();
    let blobs = az.blobs();
    block_on(async {
        blobs
            .put(
                "tfstate",
                "alice.terraform.tfstate",
                state_with_url("https://old.example.net"),
                &[("nubesappurl", URL)],
            )
            .await;
        blobs
            .put(
                "tfstate",
                "bob.terraform.tfstate",
                state_with_url("https://bob.example.net/"),
                &[],
            )
            .await;
        blobs
            .put(
                "tfstate",
                "eve.terraform.tfstate",
                state_with_url("javascript:alert(1)"),
                &[],
            )
            .await;
    });
    let mut p = Project::on(&az, "");
    // No display, no $BROWSER: printed only.
    for k in ["DISPLAY", "WAYLAND_DISPLAY", "BROWSER"] {
        p.set_env(k, "");
    }
    let out = p.run(&["env", "open", "alice"]).ok();
    assert_eq!(out.stdout.trim(), format!("{URL}/"));
    let out = p.run(&["env", "open", "bob"]).ok();
    assert_eq!(out.stdout.trim(), "https://bob.example.net/");
    let out = p.run(&["env", "open", "eve"]).code(1);
    assert!(
        out.stderr.contains("not an http(s) address"),
        "{}",
        out.stderr
    );
    let out = p.run(&["env", "open", "nobody"]).code(2);
    assert!(out.stderr.contains("no URL recorded"), "{}", out.stderr);
    // A $BROWSER is handed the URL (a script standing in for one).
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = dir.path().join("seen");
    let browser = dir.path().join("browser");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", seen.display()),
    )
    .expect("write");
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    p.set_env("BROWSER", &browser.display().to_string());
    p.run(&["env", "open", "bob"]).ok();
    let mut opened = String::new();
    for _ in 0..200 {
        opened = std::fs::read_to_string(&seen).unwrap_or_default();
        if !opened.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(opened, "https://bob.example.net/");
}

#[test]
fn ls_lists_the_environments_of_the_current_user_with_url_and_expiry() {
    let az = Azurite::https();
    let project = Project::on(&az, "[expiry]\nidle = \"7d\"\n");
    let mut w = World::new(project, Some("octocat"));
    for (k, v) in az.nubes_env() {
        w.set(&k, &v);
    }
    // bob's branch was created by octocat (GitHub records it), its last run by someone else.
    w.run(&["env", "new", "bob", "--no-wait"]).ok();
    let blobs = az.blobs();
    let now = "2026-11-29T10:00:00Z";
    block_on(async {
        for (env, actor, url) in [
            ("alice", "octocat", URL),
            ("bob", "mona", "https://bob.example.net"),
            ("carol", "mona", "https://carol.example.net"),
        ] {
            blobs
                .put(
                    "tfstate",
                    &format!("{env}.terraform.tfstate"),
                    state_with_url(url),
                    &[
                        ("nubesactor", actor),
                        ("nubesactivityat", now),
                        ("nubescreatedat", now),
                        ("nubesappurl", url),
                    ],
                )
                .await;
        }
    });
    w.set("NUBES_TEST_NOW", "2026-11-30T10:00:00Z");
    let out = w.run(&["env", "ls", "--json"]).ok();
    no_token_anywhere(&out);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let names: Vec<&str> = doc["environments"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(doc["users"][0], "octocat");
    assert_eq!(doc["environments"][0]["deploy"]["application_url"], URL);
    // Expiry as `nubes list` judges it (7 days idle, from the last write or activity).
    let listed = w.run(&["list", "--json"]).ok();
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    let expires = &doc["environments"][0]["expiry"]["expires_at"];
    assert!(expires.is_string(), "{doc}");
    assert_eq!(*expires, listed["environments"][0]["expiry"]["expires_at"]);
    let out = w.run(&["env", "ls"]).ok();
    let alice = out
        .stdout
        .lines()
        .find(|l| l.starts_with("alice"))
        .expect("alice's row");
    assert!(
        alice.contains(URL) && alice.contains(" in "),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("carol"), "{}", out.stdout);
    // Someone else's view.
    let out = w.run(&["env", "ls", "--user", "mona", "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(doc["count"], 2);
}
