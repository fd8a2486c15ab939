//! `nubes::kudu`, deploying to App Service and Functions, against a fake Kudu ([`fake`])
//! as strict as the real one: token audience, OneDeploy's `type` semantics, the app's
//! health after a Java deployment, every status value, each documented cause of 409,
//! throttling, unavailability, a dropped connection and a deployment that never ends.

pub mod fake;

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use nubes::kudu::{APP_SERVICE_SCOPE, ARM_SCOPE, Api, ArchiveType, Hosting, Kudu, choose_api};
use sha2::Digest as _;

use fake::{AFFINITY, DEPLOYMENT_ID, FakeKudu, Script, Site, Stack};

const PATIENCE: Duration = Duration::from_secs(60);

/// Entra ID as far as nubes sees it: a token for the audience of the scope asked for
/// (v1 tokens carry the resource as `aud`), or AADSTS500011 for the App Service
/// audience in a tenant without its service principal.
#[derive(Debug, Default)]
pub struct Entra {
    pub refuse_app_service: bool,
    pub asked: Mutex<Vec<String>>,
}

impl Entra {
    pub fn scopes(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl TokenCredential for Entra {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let scope = scopes.first().copied().unwrap_or_default();
        self.asked.lock().expect("lock").push(scope.to_string());
        if self.refuse_app_service && scope.contains("appservice") {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "AADSTS500011: The resource principal named https://appservice.azure.com was \
                 not found in the tenant",
            ));
        }
        let audience = scope.strip_suffix(".default").unwrap_or(scope);
        let audience = if audience.ends_with("//") {
            &audience[..audience.len() - 1]
        } else {
            audience.trim_end_matches('/')
        };
        Ok(AccessToken::new(
            Secret::new(fake::token(audience)),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

pub(crate) fn client(fake: &FakeKudu) -> (Kudu, Arc<Entra>) {
    client_with(fake, Entra::default())
}

fn client_with(fake: &FakeKudu, entra: Entra) -> (Kudu, Arc<Entra>) {
    let entra = Arc::new(entra);
    let kudu = Kudu::new(&fake.scm_url, entra.clone()).expect("Kudu client");
    (kudu, entra)
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

/// A Spring Boot executable jar, shaped as spring-boot-maven-plugin writes it.
pub fn spring_boot_jar() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, content) in [
        (
            "META-INF/MANIFEST.MF",
            "Manifest-Version: 1.0\r\nMain-Class: org.springframework.boot.loader.launch.JarLauncher\r\n\
             Start-Class: com.example.demo.DemoApplication\r\nSpring-Boot-Version: 3.4.0\r\n\
             Spring-Boot-Classes: BOOT-INF/classes/\r\nSpring-Boot-Lib: BOOT-INF/lib/\r\n\r\n",
        ),
        (
            "org/springframework/boot/loader/launch/JarLauncher.class",
            "\u{00ca}\u{00fe}",
        ),
        (
            "BOOT-INF/classes/com/example/demo/DemoApplication.class",
            "\u{00ca}\u{00fe}",
        ),
        (
            "BOOT-INF/classes/application.properties",
            "server.port=80\n",
        ),
        ("BOOT-INF/lib/spring-boot-3.4.0.jar", "PK"),
    ] {
        zip.start_file(name, options).expect("entry");
        zip.write_all(content.as_bytes()).expect("write");
    }
    zip.finish().expect("jar").into_inner()
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
        assert!(r.authorized, "request without an accepted token: {r:?}");
    }
}

fn assert_no_token(e: &nubes::error::Error) {
    let shown = format!("{e} {}", e.hint_text().unwrap_or_default());
    assert!(!shown.contains("eyJ"), "a token leaked: {shown}");
}

async fn get_status(url: &str) -> u16 {
    reqwest::get(url)
        .await
        .expect("GET the app")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_folder_is_zipped_without_ignored_files_and_followed_to_success() {
    let fake = FakeKudu::start(Script::Succeed).await;
    let app = node_app();
    let (kudu, entra) = client(&fake);
    let api = choose_api(app.path(), Hosting::Dedicated).expect("api");
    assert_eq!(api, Api::ZipDeploy);
    let report = kudu
        .deploy(app.path(), api, PATIENCE)
        .await
        .expect("deployment");

    let expected_zip = nubes::kudu::zip_folder(app.path()).expect("zip");
    assert_eq!(report.deployment_id, DEPLOYMENT_ID);
    assert_eq!(report.bytes, expected_zip.len() as u64);
    assert_eq!(
        report.sha256,
        format!("{:x}", sha2::Sha256::digest(&expected_zip))
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
    let posts = fake.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].target,
        "/api/zipdeploy?isAsync=true&deployer=nubes"
    );
    assert_eq!(posts[0].content_type.as_deref(), Some("application/zip"));
    // The warm-up read of the last deployment set the affinity cookie; the upload and
    // all four polls (Received, Building, Deploying, Success) carried it.
    let requests = fake.requests();
    assert_eq!(requests[0].target, "/api/deployments/latest");
    assert_eq!(requests[0].cookie, None);
    let after: Vec<_> = requests[1..].to_vec();
    assert_eq!(after.len(), 5, "{after:?}");
    for r in &after {
        let cookie = r.cookie.as_deref().unwrap_or_default();
        assert!(cookie.contains(&format!("ARRAffinity={AFFINITY}")), "{r:?}");
    }
    assert!(after[1..].iter().all(|p| {
        p.target
            .starts_with("/api/deployments/latest?deployer=Push-Deployer")
    }));
    assert_all_authorized(&fake);
    assert!(entra.scopes().iter().all(|s| s == APP_SERVICE_SCOPE));
    assert_eq!(get_status(&fake.site_url).await, 200);
}

#[tokio::test]
async fn a_spring_boot_jar_goes_to_onedeploy_and_starts_while_zip_deploy_would_break_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jar = dir.path().join("demo-0.0.1-SNAPSHOT.jar");
    let bytes = spring_boot_jar();
    fs_err::write(&jar, &bytes).expect("write jar");
    let java = || Site {
        stack: Stack::JavaSe,
        ..Site::default()
    };

    let fake = FakeKudu::start_with(Script::Succeed, java()).await;
    assert_eq!(
        get_status(&fake.site_url).await,
        503,
        "nothing deployed yet"
    );
    let api = choose_api(&jar, Hosting::Dedicated).expect("api");
    assert_eq!(api, Api::OneDeploy(ArchiveType::Jar));
    let (kudu, _) = client(&fake);
    let report = kudu.deploy(&jar, api, PATIENCE).await.expect("deployment");
    assert_eq!(report.bytes, bytes.len() as u64);
    assert_eq!(report.sha256, format!("{:x}", sha2::Sha256::digest(&bytes)));
    let posts = fake.posts();
    assert_eq!(
        posts[0].target,
        "/api/publish?type=jar&async=true&restart=true&clean=false"
    );
    assert_eq!(fake.file("app.jar"), Some(bytes.clone()));
    assert_eq!(get_status(&fake.site_url).await, 200);

    // What nubes did before: the same jar through zip deploy. Kudu reports success, but
    // it unpacked the jar into wwwroot and the app cannot start.
    let fake = FakeKudu::start_with(Script::Succeed, java()).await;
    let (kudu, _) = client(&fake);
    kudu.deploy(&jar, Api::ZipDeploy, PATIENCE)
        .await
        .expect("Kudu reports the zip deployment a success");
    let files = fake.wwwroot();
    assert!(
        files.contains(&"META-INF/MANIFEST.MF".to_string()),
        "{files:?}"
    );
    assert!(!files.contains(&"app.jar".to_string()), "{files:?}");
    assert!(!fake.healthy());
    assert_eq!(get_status(&fake.site_url).await, 503);

    // OneDeploy keeps Kudu's stack check: a jar on a Node site is refused with 400.
    let fake = FakeKudu::start(Script::Succeed).await;
    let (kudu, _) = client(&fake);
    let e = kudu
        .deploy(&jar, api, PATIENCE)
        .await
        .expect_err("wrong stack");
    assert!(e.to_string().contains("stack = JAVA"), "{e}");
}

#[tokio::test]
async fn the_arm_audience_is_refused_and_named_while_the_app_service_audience_succeeds() {
    // A tenant that will not issue the App Service audience: nubes falls back to the
    // ARM audience, which this (current) Kudu refuses.
    let fake = FakeKudu::start(Script::Succeed).await;
    let app = node_app();
    let (kudu, entra) = client_with(
        &fake,
        Entra {
            refuse_app_service: true,
            ..Entra::default()
        },
    );
    let e = kudu
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect_err("refused");
    let message = e.to_string();
    assert_eq!(e.exit_code(), 2, "{message}");
    assert!(message.contains("401"), "{message}");
    assert!(
        message.contains("asked for the audience https://management.core.windows.net/"),
        "{message}"
    );
    assert!(
        message.contains("aud) is `https://management.core.windows.net/`"),
        "{message}"
    );
    let hint = e.hint_text().unwrap_or_default();
    assert!(hint.contains("https://appservice.azure.com"), "{hint}");
    assert_eq!(entra.scopes()[0], APP_SERVICE_SCOPE);
    assert!(entra.scopes()[1..].iter().all(|s| s == ARM_SCOPE));
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.status == 401 && !r.authorized));
    assert_eq!(
        requests[0].audience.as_deref(),
        Some("https://management.core.windows.net/")
    );
    assert!(fake.deployments().is_empty());
    assert_no_token(&e);

    // The App Service audience is accepted.
    let (kudu, entra) = client(&fake);
    kudu.deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect("deployment");
    assert!(entra.scopes().iter().all(|s| s == APP_SERVICE_SCOPE));
    assert_eq!(fake.deployments().len(), 1);

    // The documented fallback works where Kudu still takes ARM tokens.
    let legacy = FakeKudu::start_with(
        Script::Succeed,
        Site {
            legacy: true,
            ..Site::default()
        },
    )
    .await;
    let (kudu, _) = client_with(
        &legacy,
        Entra {
            refuse_app_service: true,
            ..Entra::default()
        },
    );
    kudu.deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect("deployment with the ARM audience");
    assert_eq!(legacy.deployments().len(), 1);
}

#[tokio::test]
async fn cancelled_conflict_and_partial_success_are_failures_even_when_complete() {
    let app = node_app();
    for (code, expected) in [
        (-1, "was cancelled (status -1 (Cancelled)"),
        (
            5,
            "was stopped by a conflicting deployment (status 5 (Conflict))",
        ),
        (6, "only partially succeeded (status 6 (PartialSuccess))"),
    ] {
        let fake = FakeKudu::start(Script::EndsWith(code)).await;
        let (kudu, _) = client(&fake);
        let e = kudu
            .deploy(app.path(), Api::ZipDeploy, PATIENCE)
            .await
            .expect_err("not a success");
        let message = e.to_string();
        assert_eq!(e.exit_code(), 1, "{message}");
        assert!(message.contains(expected), "{code}: {message}");
        assert!(message.contains(DEPLOYMENT_ID), "{message}");
    }
}

#[tokio::test]
async fn a_flex_consumption_site_gets_onedeploy_and_is_followed_by_id() {
    let fake = FakeKudu::start_with(
        Script::Succeed,
        Site {
            flex: true,
            ..Site::default()
        },
    )
    .await;
    let app = node_app();
    let api = choose_api(
        app.path(),
        Hosting::from_site(Some("functionapp,linux"), Some("FlexConsumption")),
    )
    .expect("api");
    assert_eq!(api, Api::FlexPublish);
    let (kudu, _) = client(&fake);
    let report = kudu
        .deploy(app.path(), api, PATIENCE)
        .await
        .expect("deployment");
    assert_eq!(report.deployment_id, DEPLOYMENT_ID);
    let posts = fake.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].target,
        "/api/publish?RemoteBuild=false&Deployer=nubes"
    );
    let polls: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.target == format!("/api/deployments/{DEPLOYMENT_ID}"))
        .collect();
    assert_eq!(polls.len(), 4, "{:?}", fake.requests());
    // Zip deploy does not exist there.
    let fake = FakeKudu::start_with(
        Script::Succeed,
        Site {
            flex: true,
            ..Site::default()
        },
    )
    .await;
    let (kudu, _) = client(&fake);
    let e = kudu
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect_err("no zip deploy on Flex");
    assert!(e.to_string().contains("404"), "{e}");
}

#[tokio::test]
async fn a_dropped_connection_after_the_upload_does_not_deploy_twice() {
    let fake = FakeKudu::start(Script::DropAfterUpload).await;
    let app = node_app();
    let (kudu, _) = client(&fake);
    let report = kudu
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect("the deployment the upload started");
    assert_eq!(report.deployment_id, DEPLOYMENT_ID);
    assert_eq!(fake.deployments().len(), 1);
    let posts = fake.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].status, 0, "the connection was dropped");
    assert!(fake.requests().iter().all(|r| r.status != 409));
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.target == format!("/api/deployments/{DEPLOYMENT_ID}"))
    );
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
    let fake = FakeKudu::start(script).await;
    let app = node_app();
    let (kudu, _) = client(&fake);
    let e = kudu
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect_err("the deployment fails");
    let message = e.to_string();
    assert_eq!(e.exit_code(), 1, "{message}");
    for expected in [
        DEPLOYMENT_ID,
        "failed (status 3 (Failed))",
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
async fn a_503_on_the_upload_is_retried_once_kudu_shows_no_deployment_from_it() {
    let fake = FakeKudu::start(Script::UnavailableFirst).await;
    let app = node_app();
    let (kudu, _) = client(&fake);
    let report = kudu
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect("deployment after a retry");
    assert_eq!(report.deployment_id, DEPLOYMENT_ID);
    assert_eq!(fake.posts().len(), 2);
    assert_eq!(fake.deployments().len(), 1);
    // Between the two uploads nubes looked for a deployment from the first.
    let targets: Vec<String> = fake.requests().into_iter().map(|r| r.target).collect();
    let first = targets
        .iter()
        .position(|t| t.starts_with("/api/zipdeploy"))
        .expect("post");
    assert_eq!(targets[first + 1], "/api/deployments/latest", "{targets:?}");
    assert_all_authorized(&fake);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let fake = FakeKudu::start(Script::ThrottledFirst).await;
    let app = node_app();
    let (kudu, _) = client(&fake);
    kudu.deploy(app.path(), Api::ZipDeploy, PATIENCE)
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
    let fake = FakeKudu::start(Script::Conflict(1)).await;
    let app = node_app();
    let (kudu, _) = client(&fake);
    let report = kudu
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect("deployment after the other one");
    assert_eq!(report.deployment_id, DEPLOYMENT_ID);
    assert_eq!(fake.posts().len(), 2);
}

#[tokio::test]
async fn a_deployment_that_never_ends_times_out_clearly() {
    let fake = FakeKudu::start(Script::Never).await;
    let app = node_app();
    let (kudu, _) = client(&fake);
    let e = kudu
        .deploy(app.path(), Api::ZipDeploy, Duration::from_secs(3))
        .await
        .expect_err("the deployment times out");
    let message = e.to_string();
    assert_eq!(e.exit_code(), 1, "{message}");
    assert!(message.contains(DEPLOYMENT_ID), "{message}");
    assert!(message.contains("did not finish within 3s"), "{message}");
    assert!(message.contains("may still finish in Azure"), "{message}");
    assert_no_token(&e);
}

#[tokio::test]
async fn a_refused_identity_is_a_configuration_error_naming_the_role() {
    let fake = FakeKudu::start(Script::Forbidden).await;
    let app = node_app();
    let (kudu, _) = client(&fake);
    let e = kudu
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect_err("refused");
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("403"), "{e}");
    assert!(
        e.to_string()
            .contains("asked for the audience https://appservice.azure.com"),
        "{e}"
    );
    let hint = e.hint_text().unwrap_or_default();
    assert!(hint.contains("Website Contributor"), "{hint}");
    assert_no_token(&e);
    // Refused at the first request, before any upload: no retries of a permission problem.
    assert_eq!(fake.requests().len(), 1);
    assert!(fake.posts().is_empty());
}

#[tokio::test]
async fn a_409_from_a_run_from_package_url_or_an_auto_swap_names_the_cause() {
    use crate::arm::fake::{FakeArm, group_in, web_app};
    let arm_token = "arm-token-for-the-409-test";
    let package =
        "https://stdemo.blob.core.windows.net/packages/app.zip?sv=2024-05-04&sig=SECRETSIG";
    let arm = FakeArm::start(
        arm_token,
        10,
        vec![group_in("rg-demo-alice", "eastus", &[])],
    )
    .await;
    let mut site = web_app("rg-demo-alice", "app-demo-alice", "app,linux", "Basic");
    site.app_settings = vec![
        ("WEBSITE_RUN_FROM_PACKAGE".into(), package.into()),
        ("OTHER".into(), "1".into()),
    ];
    arm.add_site(site);
    let access = || nubes::kudu::SiteAccess {
        arm: Arc::new(
            nubes::arm::Arm::new(
                &arm.endpoint,
                crate::arm::fake::SUBSCRIPTION,
                Arc::new(FixedArmToken(arm_token)),
            )
            .expect("arm"),
        ),
        group: "rg-demo-alice".into(),
        name: "app-demo-alice".into(),
    };
    let fake = FakeKudu::start_with(
        Script::Succeed,
        Site {
            run_from_package: Some(package.into()),
            ..Site::default()
        },
    )
    .await;
    let app = node_app();
    let (kudu, _) = client(&fake);
    let e = kudu
        .with_site(access())
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect_err("409");
    let message = e.to_string();
    assert_eq!(e.exit_code(), 1, "{message}");
    assert!(
        message.contains("WEBSITE_RUN_FROM_PACKAGE is set to a URL")
            && message.contains("https://stdemo.blob.core.windows.net/packages/app.zip"),
        "{message}"
    );
    assert!(!message.contains("SECRETSIG"), "{message}");
    assert!(
        e.hint_text()
            .unwrap_or_default()
            .contains("WEBSITE_RUN_FROM_PACKAGE"),
        "{e:?}"
    );
    // Not retried: waiting cannot help.
    assert_eq!(fake.posts().len(), 1);
    assert_eq!(arm.requests_to("POST", "/config/appsettings/list").len(), 1);

    // An auto swap in progress.
    let mut slot = web_app(
        "rg-demo-alice",
        "app-demo-alice-staging",
        "app,linux",
        "Basic",
    );
    slot.auto_swap_slot = Some("production".into());
    arm.add_site(slot);
    let fake = FakeKudu::start_with(
        Script::Succeed,
        Site {
            auto_swap_ongoing: true,
            ..Site::default()
        },
    )
    .await;
    let (kudu, _) = client(&fake);
    let mut site = access();
    site.name = "app-demo-alice-staging".into();
    let e = kudu
        .with_site(site)
        .deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect_err("409");
    assert!(
        e.to_string()
            .contains("an auto swap into slot `production` is running"),
        "{e}"
    );
    assert_eq!(fake.posts().len(), 1);
}

/// Resource Manager's token for the ARM fake (which compares it exactly).
#[derive(Debug)]
struct FixedArmToken(&'static str);

#[async_trait::async_trait]
impl TokenCredential for FixedArmToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://management.azure.com/.default"]);
        Ok(AccessToken::new(
            Secret::new(self.0),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

#[tokio::test]
async fn a_zip_deploy_records_the_release_as_its_message_and_onedeploy_records_its_own() {
    let app = tempfile::tempdir().expect("tempdir");
    write(app.path(), "server.js", "console.log(1)");
    let digest = format!("sha256:{}", "ab".repeat(32));
    let fake = FakeKudu::start(Script::Succeed).await;
    let (kudu, _) = client(&fake);
    assert_eq!(kudu.latest_deployment().await.expect("latest"), None);
    let kudu = kudu.with_message(nubes::kudu::release_message(&digest));
    kudu.deploy(app.path(), Api::ZipDeploy, PATIENCE)
        .await
        .expect("deployment");
    assert_eq!(
        fake.posts()[0].target,
        format!(
            "/api/zipdeploy?isAsync=true&deployer=nubes&message=nubes+release+sha256%3A{}",
            "ab".repeat(32)
        )
    );
    let latest = kudu
        .latest_deployment()
        .await
        .expect("latest")
        .expect("a deployment");
    assert_eq!(
        latest.message.as_deref(),
        Some(format!("nubes release {digest}").as_str())
    );
    assert!(
        latest.succeeded && latest.active == Some(true),
        "{latest:?}"
    );
    assert_eq!(fake.deployments()[0].deployer, "nubes");

    // OneDeploy takes no message (nubes sends none): the record says `OneDeploy`, so a
    // slot holding a jar is never taken for a release.
    let dir = tempfile::tempdir().expect("tempdir");
    let jar = dir.path().join("demo.jar");
    fs_err::write(&jar, spring_boot_jar()).expect("write jar");
    let fake = FakeKudu::start_with(
        Script::Succeed,
        Site {
            stack: Stack::JavaSe,
            ..Site::default()
        },
    )
    .await;
    let (kudu, _) = client(&fake);
    let kudu = kudu.with_message(nubes::kudu::release_message(&digest));
    kudu.deploy(&jar, Api::OneDeploy(ArchiveType::Jar), PATIENCE)
        .await
        .expect("deployment");
    assert!(!fake.posts()[0].target.contains("message="));
    let latest = kudu
        .latest_deployment()
        .await
        .expect("latest")
        .expect("a deployment");
    assert_eq!(latest.message.as_deref(), Some("OneDeploy"));
}
