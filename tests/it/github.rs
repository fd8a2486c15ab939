//! `nubes::ghapi`, the GitHub REST client, against the in-test GitHub server
//! ([`fake`]), which validates every request against GitHub's published OpenAPI
//! description ([`openapi`]). The first tests prove the validator refuses what GitHub
//! would (so a passing test means something); the others cover paging, retries, rate
//! limits, permission errors and the token's secrecy.

pub mod actions;
pub mod fake;
pub mod openapi;

use std::time::Duration;

use nubes::ghapi::{Api, RetryPolicy};
use serde_json::json;

use fake::{Access, FakeGithub, Fault, Grants, OWNER, REPO};

pub const TOKEN: &str = "ghs_fakeInstallationToken0123456789abcdef";

pub fn client(fake: &FakeGithub) -> Api {
    Api::new(&fake.url, &fake.token, &format!("{OWNER}/{REPO}"))
        .expect("client")
        .with_policy(RetryPolicy {
            max_attempts: 3,
            max_wait: Duration::from_secs(5),
        })
}

/// A raw request, bypassing nubes's client, to probe the server itself.
async fn raw(
    fake: &FakeGithub,
    method: reqwest::Method,
    path_and_query: &str,
    body: Option<serde_json::Value>,
) -> reqwest::StatusCode {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path_and_query}", fake.url))
        .bearer_auth(&fake.token)
        .header("user-agent", "nubes-tests");
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&b).expect("json"));
    }
    req.send().await.expect("send").status()
}

#[tokio::test]
async fn the_server_refuses_requests_githubs_description_does_not_allow() {
    use reqwest::Method;
    let fake = FakeGithub::start(TOKEN, 30);
    let issues = format!("/repos/{OWNER}/{REPO}/issues");

    // A valid request leaves no violation.
    let ok = raw(
        &fake,
        Method::POST,
        &issues,
        Some(json!({ "title": "t", "body": "b", "labels": ["x"] })),
    )
    .await;
    assert_eq!(ok, 201);
    assert!(fake.take_violations().is_empty());

    let cases: Vec<(Method, String, Option<serde_json::Value>, u16, &str)> = vec![
        (
            Method::GET,
            format!("/repos/{OWNER}/{REPO}/issuez"),
            None,
            404,
            "no operation",
        ),
        (
            Method::DELETE,
            format!("{issues}/1"),
            None,
            404,
            "no operation",
        ),
        (
            Method::POST,
            issues.clone(),
            Some(json!({ "title": true })),
            422,
            "body/title",
        ),
        (
            Method::POST,
            issues.clone(),
            Some(json!({ "body": "no title" })),
            422,
            "\"title\" is a required property",
        ),
        (
            Method::POST,
            issues.clone(),
            Some(json!({ "title": "t", "labels": "bug" })),
            422,
            "body/labels",
        ),
        (
            Method::POST,
            issues.clone(),
            Some(json!({ "title": "t", "titel": "typo" })),
            422,
            "titel",
        ),
        (
            Method::PATCH,
            format!("{issues}/1"),
            Some(json!({ "state": "done" })),
            422,
            "body/state",
        ),
        (
            Method::PATCH,
            format!("{issues}/one"),
            Some(json!({ "state": "closed" })),
            422,
            "issue_number",
        ),
        (
            Method::GET,
            format!("{issues}?state=opened"),
            None,
            422,
            "parameter `state`",
        ),
        (
            Method::GET,
            format!("{issues}?label=bug"),
            None,
            422,
            "unknown query parameter `label`",
        ),
        (
            Method::GET,
            format!("{issues}?per_page=many"),
            None,
            422,
            "parameter `per_page`",
        ),
        (
            Method::GET,
            issues.clone(),
            Some(json!({ "state": "open" })),
            422,
            "takes none",
        ),
        (
            Method::GET,
            "/search/issues".to_string(),
            None,
            422,
            "required query parameter `q`",
        ),
    ];
    for (method, path, body, status, expected) in cases {
        let got = raw(&fake, method.clone(), &path, body.clone()).await;
        assert_eq!(got.as_u16(), status, "{method} {path} {body:?}");
        let violations = fake.take_violations();
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "{method} {path} {body:?}: expected a violation mentioning {expected:?}, got {violations:?}"
        );
    }

    // GitHub's own refusals, which are not description violations.
    let no_auth = reqwest::Client::new()
        .get(format!("{}{issues}", fake.url))
        .header("user-agent", "nubes-tests")
        .send()
        .await
        .expect("send");
    assert_eq!(no_auth.status(), 401);
    let wrong = reqwest::Client::new()
        .get(format!("{}{issues}", fake.url))
        .bearer_auth("ghs_someoneElsesToken")
        .header("user-agent", "nubes-tests")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let doc: serde_json::Value =
        serde_json::from_slice(&wrong.bytes().await.expect("body")).expect("json");
    assert_eq!(doc["message"], "Bad credentials");
    let no_agent = reqwest::Client::new()
        .get(format!("{}{issues}", fake.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(no_agent.status(), 403);
    assert_eq!(
        raw(
            &fake,
            Method::GET,
            &format!("/repos/{OWNER}/other/issues"),
            None
        )
        .await,
        404
    );
    assert!(fake.take_violations().is_empty());

    // The fake's own answers are checked the same way.
    let spec = openapi::Spec::get();
    let list = spec
        .find("GET", &format!("/repos/{OWNER}/{REPO}/branches"))
        .expect("operation")
        .op;
    assert!(
        spec.check_response(&list, 200, &json!([{ "name": "main", "protected": false }]))
            .iter()
            .any(|v| v.contains("\"commit\" is a required property"))
    );
    assert!(!spec.check_response(&list, 418, &json!({})).is_empty());
}

#[tokio::test]
async fn branch_lists_follow_the_link_header_to_the_last_page() {
    let fake = FakeGithub::start(TOKEN, 30);
    let names: Vec<String> = (0..250).map(|i| format!("env-b{i}")).collect();
    fake.add_branches(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let got = client(&fake).branch_names().await.expect("branches");
    assert_eq!(got.len(), 250);
    assert!(got.contains("env-b0") && got.contains("env-b249"));
    let lists = fake.requests_to("GET", "/branches");
    assert_eq!(lists.len(), 3, "100 per page: {lists:?}");
    let pages: Vec<Option<&str>> = lists
        .iter()
        .map(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "page")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert_eq!(pages, [None, Some("2"), Some("3")]);
    for r in fake.requests() {
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_but_a_create_is_never_sent_twice() {
    let fake = FakeGithub::start(TOKEN, 30);
    fake.add_branches(&["main"]);
    let api = client(&fake);

    fake.fail_next("GET", "/branches", Fault::Status(503));
    fake.fail_next("GET", "/branches", Fault::Status(502));
    assert_eq!(api.branch_names().await.expect("third time").len(), 1);
    assert_eq!(fake.requests_to("GET", "/branches").len(), 3);

    // A 502 on POST may hide a created issue: reported, not repeated.
    fake.fail_next("POST", "/issues", Fault::Status(502));
    let e = api
        .create_issue("t", "b", &["nubes-drift"])
        .await
        .expect_err("502");
    assert_eq!(e.status.map(|s| s.as_u16()), Some(502));
    assert!(
        e.message.contains("opening an issue in octo-org/petclinic"),
        "{e}"
    );
    assert_eq!(fake.requests_to("POST", "/issues").len(), 1);

    // Out of attempts: the last answer is the error.
    for _ in 0..3 {
        fake.fail_next("GET", "/branches", Fault::Status(500));
    }
    let e = api.branch_names().await.expect_err("500s");
    assert!(
        e.message
            .contains("GitHub refused listing the branches of octo-org/petclinic: 500"),
        "{e}"
    );
}

#[tokio::test]
async fn rate_limits_are_waited_out_when_short_and_reported_when_long() {
    let fake = FakeGithub::start(TOKEN, 30);
    let api = client(&fake);

    // Secondary limit (retry-after) and primary limit (reset time): GitHub did not act,
    // so even a POST is sent again.
    fake.fail_next(
        "POST",
        "/issues",
        Fault::SecondaryRateLimit { retry_after: 1 },
    );
    fake.fail_next("POST", "/issues", Fault::PrimaryRateLimit { reset_in: 1 });
    let issue = api
        .create_issue("t", "b", &[])
        .await
        .expect("after the limits");
    assert_eq!(issue.number, 1);
    let statuses: Vec<u16> = fake
        .requests_to("POST", "/issues")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [403, 403, 201]);
    assert_eq!(fake.issues().len(), 1, "one issue, not three");

    // A reset an hour away is beyond max_wait: no wait, a clear error.
    fake.fail_next("GET", "/issues", Fault::PrimaryRateLimit { reset_in: 3600 });
    let e = api
        .open_issues_labelled("nubes-drift")
        .await
        .expect_err("limited");
    assert!(
        e.message.contains("rate limit") && e.message.contains("resets in"),
        "{e}"
    );
    assert_eq!(fake.requests_to("GET", "/issues").len(), 1);
}

#[tokio::test]
async fn refusals_name_the_missing_permission_and_never_the_token() {
    let fake = FakeGithub::start(TOKEN, 30);
    fake.set_grants(Grants {
        issues: Access::Read,
        contents: Access::Read,
    });
    let api = client(&fake);
    assert!(
        api.open_issues_labelled("nubes-drift")
            .await
            .expect("read")
            .is_empty()
    );
    let e = api
        .create_issue("t", "b", &[])
        .await
        .expect_err("read-only token");
    let text = nubes::error::Error::from(e);
    let shown = format!("{text} {}", text.hint_text().unwrap_or_default());
    assert!(
        shown.contains("Resource not accessible by integration"),
        "{shown}"
    );
    assert!(
        shown.contains("`issues: write`") && shown.contains("permissions:"),
        "{shown}"
    );
    assert!(!shown.contains(TOKEN), "{shown}");

    fake.set_grants(Grants {
        issues: Access::Write,
        contents: Access::None,
    });
    let e = api.branch_names().await.expect_err("no contents access");
    assert!(e.to_string().contains("404"), "{e}");

    let wrong = Api::new(
        &fake.url,
        "ghs_revokedToken0000000000",
        &format!("{OWNER}/{REPO}"),
    )
    .expect("client");
    let e = wrong.branch_names().await.expect_err("bad token");
    assert_eq!(e.status.map(|s| s.as_u16()), Some(401));
    assert!(
        e.to_string().contains("Bad credentials") && e.to_string().contains("invalid or expired"),
        "{e}"
    );
    assert!(!e.to_string().contains("ghs_revokedToken"), "{e}");
}

#[tokio::test]
async fn an_unreachable_api_is_an_error_that_says_so() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let api = Api::new(&format!("http://127.0.0.1:{port}"), TOKEN, "o/r")
        .expect("client")
        .with_policy(RetryPolicy {
            max_attempts: 2,
            max_wait: Duration::from_secs(1),
        });
    let e = api.branch_names().await.expect_err("nothing there");
    assert!(e.status.is_none());
    assert!(e.message.contains("could not be reached"), "{e}");
    assert!(!e.to_string().contains(TOKEN));
}

/// `reap --gone-branches` asks GitHub for the branch list when a token and
/// `GITHUB_REPOSITORY` are set (as in Actions): paged, authenticated, validated.
#[test]
fn reap_gone_branches_reads_the_branch_list_from_github() {
    use crate::support::{Azurite, Project};
    let az = Azurite::https();
    let fake = FakeGithub::start(TOKEN, 30);
    let mut p = Project::on(&az, "");
    for env in ["a", "b"] {
        p.run(&["up", env]).ok();
    }
    // 150 branches (two pages of 100); env-b is not among them.
    let mut names: Vec<String> = (0..149).map(|i| format!("feature-{i}")).collect();
    names.push("env-a".into());
    fake.add_branches(&names.iter().map(String::as_str).collect::<Vec<_>>());
    p.set_env("GH_TOKEN", TOKEN);
    p.set_env("GITHUB_REPOSITORY", &format!("{OWNER}/{REPO}"));
    p.set_env("GITHUB_API_URL", &fake.url);
    let out = p.run(&["-vv", "reap", "--gone-branches", "--dry-run"]).ok();
    assert!(
        out.stdout.contains("a: kept (still wanted;"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("b: would tear down (branch `env-b` is gone from the remote)"),
        "{}",
        out.stdout
    );
    assert_eq!(fake.requests_to("GET", "/branches").len(), 2);
    assert!(!out.all().contains(TOKEN), "{}", out.all());

    // A token GitHub refuses: the reap fails (exit 1) before touching anything, saying
    // which permission the branch list needs.
    fake.set_grants(Grants {
        issues: Access::None,
        contents: Access::None,
    });
    let out = p.run(&["reap", "--gone-branches"]).code(1);
    assert!(out.stderr.contains("`contents: read`"), "{}", out.stderr);
}
