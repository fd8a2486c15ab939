//! `nubes::kudu`, the zip deploy of the `app-service` and `functions` targets, against a
//! fake Kudu ([`fake`]) that follows the documented protocol: the upload, the deployment
//! status, the log of a failed deployment, throttling, unavailability, conflicts,
//! permissions and a deployment that never ends.

pub mod fake;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use nubes::kudu::{DeployReport, Kudu};

use fake::{DEPLOYMENT_ID, FakeKudu, Script};

const TOKEN: &str = "eyJhbGciOiJub25lIn0.fake-kudu-token.c2lnbmF0dXJl";
const PATIENCE: Duration = Duration::from_secs(60);

/// A credential that hands out one fixed token, and checks the scope it is asked for.
#[derive(Debug)]
struct FixedToken(&'static str);

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://management.azure.com/.default"]);
        Ok(AccessToken::new(
            self.0,
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

fn client(fake: &FakeKudu, token: &'static str) -> Kudu {
    Kudu::new(&fake.scm_url, Arc::new(FixedToken(token))).expect("Kudu client")
}

fn write(dir: &Path, relative: &str, content: &str) {
    let path = dir.join(relative);
    fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs_err::write(path, content).expect("write");
}

/// A built Node app with leftovers that `.nubesignore` keeps out.
fn node_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "package.json", r#"{"name":"demo"}"#);
    write(
        root,
        "server.js",
        "require('http').createServer().listen(8080)",
    );
    write(root, "public/index.html", "<h1>hi</h1>");
    write(root, "public/css/site.css", "h1{}");
    write(root, "node_modules/express/index.js", "module.exports = {}");
    write(root, "npm-debug.log", "noise");
    write(root, "public/build.log", "noise");
    write(root, ".nubesignore", "node_modules/\n*.log\n");
    dir
}

fn files_only(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| !n.ends_with('/'))
        .cloned()
        .collect()
}

fn assert_all_authorized(fake: &FakeKudu) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(r.authorized, "request without the bearer token: {r:?}");
    }
}

fn assert_no_token(e: &nubes::error::Error) {
    let shown = format!("{e} {}", e.hint_text().unwrap_or_default());
    assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
    assert!(
        !shown.contains("fake-kudu-token"),
        "the token leaked: {shown}"
    );
}

#[tokio::test]
async fn a_folder_is_zipped_without_ignored_files_and_followed_to_success() {
    let fake = FakeKudu::start(TOKEN, Script::Succeed).await;
    let app = node_app();
    let report = client(&fake, TOKEN)
        .zip_deploy(app.path(), PATIENCE)
        .await
        .expect("deployment");

    let expected_zip = nubes::kudu::zip_folder(app.path()).expect("zip");
    assert_eq!(
        report,
        DeployReport {
            deployment_id: DEPLOYMENT_ID.into(),
            status_text: String::new(),
            bytes: expected_zip.len() as u64,
        }
    );
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let names = uploads[0].clone().expect("the upload is a valid zip");
    assert_eq!(
        files_only(&names),
        [
            "package.json",
            "public/css/site.css",
            "public/index.html",
            "server.js"
        ]
    );
    assert!(
        !names.iter().any(|n| n.starts_with("node_modules")),
        "{names:?}"
    );
    let posts = fake.posts();
    assert_eq!(posts[0].target, "/api/zipdeploy?isAsync=true");
    assert_eq!(posts[0].content_type.as_deref(), Some("application/zip"));
    // Received, Building, Deploying, then Success: four polls of the Location.
    let polls: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(polls.len(), 4, "{polls:?}");
    assert!(polls.iter().all(|p| {
        p.target
            .starts_with("/api/deployments/latest?deployer=Push-Deployer")
    }));
    assert_all_authorized(&fake);
}

#[tokio::test]
async fn an_archive_is_uploaded_as_is() {
    let fake = FakeKudu::start(TOKEN, Script::Succeed).await;
    let app = node_app();
    let dir = tempfile::tempdir().expect("tempdir");
    let jar = dir.path().join("app.jar");
    let zip = nubes::kudu::zip_folder(app.path()).expect("zip");
    fs_err::write(&jar, &zip).expect("write jar");
    let report = client(&fake, TOKEN)
        .zip_deploy(&jar, PATIENCE)
        .await
        .expect("deployment");
    assert_eq!(report.bytes, zip.len() as u64);
    assert_eq!(fake.uploads().len(), 1);
}

#[tokio::test]
async fn a_failed_deployment_shows_kudus_status_and_log() {
    let script = Script::Fail {
        lines: vec![
            "Updating submodules.".into(),
            "Preparing deployment for commit id 'abc'.".into(),
            "Running oryx build (caller said {authorization}).".into(),
        ],
        details: vec![
            "npm ERR! code E404".into(),
            "npm ERR! 404 Not Found - GET https://registry.npmjs.org/left-padd".into(),
        ],
    };
    let fake = FakeKudu::start(TOKEN, script).await;
    let app = node_app();
    let e = client(&fake, TOKEN)
        .zip_deploy(app.path(), PATIENCE)
        .await
        .expect_err("the deployment fails");
    let message = e.to_string();
    assert_eq!(e.exit_code(), 1, "{message}");
    for expected in [
        DEPLOYMENT_ID,
        "Deployment failed: npm install exited with code 1",
        "Updating submodules.",
        "Running oryx build",
        "npm ERR! code E404",
        "npm ERR! 404 Not Found - GET https://registry.npmjs.org/left-padd",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    assert_no_token(&e);
    assert!(
        message.contains("***"),
        "the echoed token is masked: {message}"
    );
    assert_all_authorized(&fake);
}

#[tokio::test]
async fn a_503_on_the_upload_is_retried() {
    let fake = FakeKudu::start(TOKEN, Script::UnavailableFirst).await;
    let app = node_app();
    let report = client(&fake, TOKEN)
        .zip_deploy(app.path(), PATIENCE)
        .await
        .expect("deployment after a retry");
    assert_eq!(report.deployment_id, DEPLOYMENT_ID);
    assert_eq!(fake.posts().len(), 2);
    // Only accepted uploads are recorded: the retry carried the whole zip again.
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].is_ok(), "{uploads:?}");
    assert_all_authorized(&fake);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let fake = FakeKudu::start(TOKEN, Script::ThrottledFirst).await;
    let app = node_app();
    client(&fake, TOKEN)
        .zip_deploy(app.path(), PATIENCE)
        .await
        .expect("deployment after throttling");
    let posts = fake.posts();
    assert_eq!(posts.len(), 2);
    let waited = posts[1].at.duration_since(posts[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {waited:?}"
    );
    assert_all_authorized(&fake);
}

#[tokio::test]
async fn a_deployment_in_progress_is_waited_for() {
    let fake = FakeKudu::start(TOKEN, Script::Conflict(1)).await;
    let app = node_app();
    let report = client(&fake, TOKEN)
        .zip_deploy(app.path(), PATIENCE)
        .await
        .expect("deployment after the other one");
    assert_eq!(report.deployment_id, DEPLOYMENT_ID);
    assert_eq!(fake.posts().len(), 2);
}

#[tokio::test]
async fn a_deployment_that_never_ends_times_out_clearly() {
    let fake = FakeKudu::start(TOKEN, Script::Never).await;
    let app = node_app();
    let started = std::time::Instant::now();
    let e = client(&fake, TOKEN)
        .zip_deploy(app.path(), Duration::from_secs(3))
        .await
        .expect_err("the deployment times out");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let message = e.to_string();
    assert_eq!(e.exit_code(), 1, "{message}");
    assert!(message.contains(DEPLOYMENT_ID), "{message}");
    assert!(message.contains("did not finish within 3s"), "{message}");
    assert!(message.contains("may still finish in Azure"), "{message}");
    assert_no_token(&e);
}

#[tokio::test]
async fn a_refused_identity_is_a_configuration_error_naming_the_role() {
    let fake = FakeKudu::start(TOKEN, Script::Forbidden).await;
    let app = node_app();
    let e = client(&fake, TOKEN)
        .zip_deploy(app.path(), PATIENCE)
        .await
        .expect_err("refused");
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("403"), "{e}");
    let hint = e.hint_text().unwrap_or_default();
    assert!(hint.contains("Website Contributor"), "{hint}");
    assert_no_token(&e);
    // Refused at once: no retries of a permission problem.
    assert_eq!(fake.posts().len(), 1);
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_not_shown() {
    let fake = FakeKudu::start(TOKEN, Script::Succeed).await;
    let app = node_app();
    let e = client(&fake, "eyJ0eXAiOiJKV1QifQ.a-wrong-token.c2ln")
        .zip_deploy(app.path(), PATIENCE)
        .await
        .expect_err("refused");
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("a-wrong-token"), "{e}");
    assert!(fake.uploads().is_empty());
}
