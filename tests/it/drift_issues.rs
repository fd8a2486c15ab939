//! `drift --issue`: `commands::drift_issues::sync` against the in-test GitHub server
//! (every request validated against GitHub's OpenAPI description), then the real binary
//! end to end with real Terraform and Azurite.

use nubes::commands::drift_issues::{Action, EnvDrift, Judged, LABEL, Options, Outcome, sync};
use nubes::env_name::EnvName;

use crate::github::fake::{Access, FakeGithub, Grants, OWNER, REPO};
use crate::github::{TOKEN, client};
use crate::support::{Azurite, Project};

fn env(name: &str) -> EnvName {
    EnvName::parse(name, "env-").expect("env name")
}

fn options(complete: bool) -> Options {
    Options {
        complete,
        run_url: Some(format!("https://github.com/{OWNER}/{REPO}/actions/runs/42")),
        branch_prefix: "env-".into(),
    }
}

/// (env, action) of each outcome, failures as `Err(message)`.
fn actions(outcomes: &[Outcome]) -> Vec<(String, Result<Action, String>)> {
    outcomes
        .iter()
        .map(|o| (o.env.clone(), o.result.clone()))
        .collect()
}

fn open_issue_for(fake: &FakeGithub, name: &str) -> Vec<serde_json::Value> {
    let marker = format!("<!-- nubes-drift env={name} ");
    fake.issues()
        .into_iter()
        .filter(|i| i["pull_request"].is_null() && i["state"] == "open")
        .filter(|i| i["body"].as_str().is_some_and(|b| b.starts_with(&marker)))
        .collect()
}

const ALICE_REPORT: &str =
    "1 to change\n\n| resource | action |\n|---|---|\n| `terraform_data.app` | Update |\n";

#[tokio::test]
async fn drift_issues_are_opened_once_updated_in_place_and_closed_when_clean() {
    let fake = FakeGithub::start(TOKEN, 2);
    // Someone else's issues: one with the label but no marker, a pull request with both.
    let foreign = fake.add_issue("Flaky drift job", "nubes-drift fails sometimes", &[LABEL]);
    fake.add_pull_request(
        "copy of a drift issue",
        "<!-- nubes-drift env=alice digest=0 -->\nquoted",
        &[LABEL],
    );
    let api = client(&fake);
    let (alice, bob, carol) = (env("alice"), env("bob"), env("carol"));
    let carol_report =
        "1 to add\n\n| resource | action |\n|---|---|\n| `terraform_data.cache` | Create |\n";

    // Run 1: alice and carol drifted, bob clean.
    let out = sync(
        &api,
        &[
            EnvDrift {
                env: &alice,
                judged: Judged::Drifted,
                report: ALICE_REPORT,
            },
            EnvDrift {
                env: &bob,
                judged: Judged::Clean,
                report: "",
            },
            EnvDrift {
                env: &carol,
                judged: Judged::Drifted,
                report: carol_report,
            },
        ],
        &options(true),
    )
    .await
    .expect("sync");
    assert_eq!(
        actions(&out),
        [
            ("alice".into(), Ok(Action::Opened)),
            ("carol".into(), Ok(Action::Opened))
        ]
    );
    let alice_issue = open_issue_for(&fake, "alice");
    assert_eq!(alice_issue.len(), 1, "one issue for alice");
    let alice_number = alice_issue[0]["number"].as_u64().expect("number");
    assert_eq!(out[0].issue.as_ref().map(|(n, _)| *n), Some(alice_number));
    assert_eq!(alice_issue[0]["title"], "Drift in environment alice");
    assert_eq!(alice_issue[0]["labels"][0]["name"], LABEL);
    let body = alice_issue[0]["body"].as_str().expect("body");
    assert!(
        body.contains("`terraform_data.app`") && body.contains("`env-alice`"),
        "{body}"
    );
    assert!(body.contains("actions/runs/42"), "{body}");
    assert!(open_issue_for(&fake, "bob").is_empty());

    // Run 2: alice unchanged (no edit at all), carol's drift grew (edited in place).
    let patches_before = fake.requests_to("PATCH", "").len();
    let carol_more = format!("{carol_report}| `terraform_data.queue` | Create |\n");
    let out = sync(
        &api,
        &[
            EnvDrift {
                env: &alice,
                judged: Judged::Drifted,
                report: ALICE_REPORT,
            },
            EnvDrift {
                env: &bob,
                judged: Judged::Clean,
                report: "",
            },
            EnvDrift {
                env: &carol,
                judged: Judged::Drifted,
                report: &carol_more,
            },
        ],
        &options(true),
    )
    .await
    .expect("sync");
    assert_eq!(
        actions(&out),
        [
            ("alice".into(), Ok(Action::Unchanged)),
            ("carol".into(), Ok(Action::Updated))
        ]
    );
    let patches: Vec<_> = fake
        .requests_to("PATCH", "")
        .into_iter()
        .skip(patches_before)
        .collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let carol_issue = open_issue_for(&fake, "carol");
    assert_eq!(carol_issue.len(), 1, "still one issue for carol");
    assert!(
        carol_issue[0]["body"]
            .as_str()
            .expect("body")
            .contains("terraform_data.queue")
    );
    assert_eq!(
        fake.issues()
            .iter()
            .filter(|i| i["pull_request"].is_null())
            .count(),
        3
    );

    // Run 3: alice is clean again (comment, then closed as completed); carol could not
    // be checked (left alone).
    let out = sync(
        &api,
        &[
            EnvDrift {
                env: &alice,
                judged: Judged::Clean,
                report: "",
            },
            EnvDrift {
                env: &carol,
                judged: Judged::NotJudged,
                report: "",
            },
        ],
        &options(false),
    )
    .await
    .expect("sync");
    assert_eq!(actions(&out), [("alice".into(), Ok(Action::Closed))]);
    let closed = fake.issue(alice_number);
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["state_reason"], "completed");
    let comments = fake.comments_on(alice_number);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].contains("clean again"), "{comments:?}");
    assert_eq!(open_issue_for(&fake, "carol").len(), 1);

    // Run 4, every environment checked and carol gone from the storage: closed too.
    let out = sync(
        &api,
        &[EnvDrift {
            env: &bob,
            judged: Judged::Clean,
            report: "",
        }],
        &options(true),
    )
    .await
    .expect("sync");
    assert_eq!(actions(&out), [("carol".into(), Ok(Action::ClosedGone))]);
    let carol_number = carol_issue[0]["number"].as_u64().expect("number");
    assert_eq!(fake.issue(carol_number)["state_reason"], "not_planned");
    assert!(fake.comments_on(carol_number)[0].contains("no longer exists"));

    // Run 5: alice drifts again: a new issue (the closed one keeps its history).
    let out = sync(
        &api,
        &[EnvDrift {
            env: &alice,
            judged: Judged::Drifted,
            report: ALICE_REPORT,
        }],
        &options(false),
    )
    .await
    .expect("sync");
    assert_eq!(actions(&out), [("alice".into(), Ok(Action::Opened))]);
    assert_ne!(out[0].issue.as_ref().map(|(n, _)| *n), Some(alice_number));

    // Nobody else's issue or pull request was touched.
    assert_eq!(fake.issue(foreign)["state"], "open");
    assert!(fake.comments_on(foreign).is_empty());
    for r in fake.requests_to("PATCH", "") {
        assert!(!r.path.ends_with(&format!("/issues/{foreign}")), "{r:?}");
    }
    // Every listing asked for open issues with the label.
    for r in fake.requests_to("GET", "/issues") {
        assert!(r.query.contains(&("labels".into(), LABEL.into())), "{r:?}");
        assert!(r.query.contains(&("state".into(), "open".into())), "{r:?}");
    }
}

#[tokio::test]
async fn a_second_open_issue_for_one_environment_is_closed_as_a_duplicate() {
    let fake = FakeGithub::start(TOKEN, 30);
    let marker = "<!-- nubes-drift env=dave digest=0000000000000000 -->\nold report";
    let first = fake.add_issue("Drift in environment dave", marker, &[LABEL]);
    let second = fake.add_issue("Drift in environment dave", marker, &[LABEL]);
    let dave = env("dave");
    let out = sync(
        &client(&fake),
        &[EnvDrift {
            env: &dave,
            judged: Judged::Drifted,
            report: "new report",
        }],
        &options(false),
    )
    .await
    .expect("sync");
    assert_eq!(
        actions(&out),
        [
            ("dave".into(), Ok(Action::Updated)),
            ("dave".into(), Ok(Action::ClosedDuplicate))
        ]
    );
    assert_eq!(fake.issue(first)["state"], "open");
    assert!(
        fake.issue(first)["body"]
            .as_str()
            .expect("body")
            .contains("new report")
    );
    assert_eq!(fake.issue(second)["state"], "closed");
    assert!(fake.comments_on(second)[0].contains(&format!("Duplicate of #{first}")));
}

#[tokio::test]
async fn refusals_become_outcomes_naming_the_permission_and_a_failed_listing_changes_nothing() {
    let fake = FakeGithub::start(TOKEN, 30);
    fake.set_grants(Grants {
        issues: Access::Read,
        contents: Access::Read,
    });
    let alice = env("alice");
    let out = sync(
        &client(&fake),
        &[EnvDrift {
            env: &alice,
            judged: Judged::Drifted,
            report: ALICE_REPORT,
        }],
        &options(false),
    )
    .await
    .expect("listing works with read access");
    let (name, result) = &actions(&out)[0];
    assert_eq!(name, "alice");
    let e = result.as_ref().expect_err("cannot open");
    assert!(
        e.contains("issues: write") && e.contains("Resource not accessible by integration"),
        "{e}"
    );
    assert!(!e.contains(TOKEN));
    assert!(
        out[0]
            .describe()
            .starts_with("drift issue for alice: failed")
    );

    fake.set_grants(Grants {
        issues: Access::None,
        contents: Access::Read,
    });
    let e = sync(
        &client(&fake),
        &[EnvDrift {
            env: &alice,
            judged: Judged::Drifted,
            report: ALICE_REPORT,
        }],
        &options(false),
    )
    .await
    .expect_err("cannot list");
    assert!(e.to_string().contains("issues: read"), "{e}");
    assert!(fake.issues().is_empty());
}

const STACK: &str = r#"
terraform {
  backend "azurerm" {}
}
variable "environment" {
  type = string
}
variable "size" {
  type    = string
  default = "S"
}
resource "terraform_data" "app" {
  input = "${var.environment}-${var.size}"
}
"#;

/// The binary: `drift --issue` opens the issue when alice drifts, closes it when alice is
/// clean again, and a token without `issues: write` is a warning, not a failure.
/// Drift is made as `tests/it/drift.rs` makes it (an apply with another value behind
/// nubes's back, the branch unchanged); the rest of the command's reporting is that test's business.
#[test]
fn drift_issue_end_to_end_with_the_binary() {
    let az = Azurite::https();
    let fake = FakeGithub::start(TOKEN, 30);
    let mut p = Project::on(&az, "");
    std::fs::write(p.path().join("terraform/main.tf"), STACK).expect("write");
    // `drift` judges alice against its own branch: the same files, committed.
    let toml = std::fs::read_to_string(p.path().join("nubes.toml")).expect("read");
    crate::support::git_commit(
        p.path(),
        "refs/heads/env-alice",
        &[("nubes.toml", &toml), ("terraform/main.tf", STACK)],
    );
    p.run(&["up", "alice"]).ok();

    // Without a token: a usage error before anything is checked.
    let out = p.run(&["drift", "--issue"]).code(2);
    assert!(
        out.stderr.contains("needs a GitHub token") && out.stderr.contains("GITHUB_TOKEN"),
        "{}",
        out.stderr
    );

    p.set_env("GITHUB_TOKEN", TOKEN);
    p.set_env("GITHUB_REPOSITORY", &format!("{OWNER}/{REPO}"));
    p.set_env("GITHUB_API_URL", &fake.url);
    let summary = p.path().join("summary.md");
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().expect("utf-8"));
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "size=XXL",
    ])
    .ok();

    let out = p.run(&["-v", "drift", "--issue"]).code(4);
    let issues = open_issue_for(&fake, "alice");
    assert_eq!(issues.len(), 1, "{}", out.all());
    let number = issues[0]["number"].as_u64().expect("number");
    assert!(
        out.all()
            .contains(&format!("drift issue for alice: opened #{number}")),
        "{}",
        out.all()
    );
    assert!(
        issues[0]["body"]
            .as_str()
            .expect("body")
            .contains("terraform_data.app")
    );

    // Still drifted: the same issue, not edited.
    let out = p.run(&["drift", "--issue"]).code(4);
    assert!(out.all().contains("unchanged"), "{}", out.all());
    assert_eq!(fake.requests_to("POST", "/issues").len(), 1);

    // Corrected: clean, exit 0, the issue closed with a comment.
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
    ])
    .ok();
    let out = p.run(&["drift", "--issue"]).ok();
    assert!(out.all().contains("closed (clean again)"), "{}", out.all());
    assert_eq!(fake.issue(number)["state"], "closed");
    assert_eq!(fake.comments_on(number).len(), 1);

    // A token that may not write issues: drift still exits 4 (not 1), with a warning
    // that names the permission.
    fake.set_grants(Grants {
        issues: Access::Read,
        contents: Access::Read,
    });
    p.run(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "size=L",
    ])
    .ok();
    let out = p.run(&["drift", "--issue"]).code(4);
    assert!(
        out.stderr.contains("warning:") && out.stderr.contains("`issues: write`"),
        "{}",
        out.stderr
    );

    let md = std::fs::read_to_string(&summary).expect("summary");
    assert!(
        md.contains("#### Drift issues") && md.contains("issues: write"),
        "{md}"
    );
    for text in [&out.stdout, &out.stderr, &md] {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
}
