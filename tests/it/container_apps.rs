//! The Container Apps rollout (`nubes::deploy::container_apps::roll_out`) against the fake
//! Resource Manager extended with Container Apps and revisions (`arm/containerapps.rs`),
//! with health checks answered by the fake apps' own endpoint: a healthy revision takes
//! all the traffic and the old one is deactivated; an unhealthy one leaves the traffic
//! where it was (exit 1); stepped traffic visits each step; single-revision mode; a
//! revision that cannot be provisioned.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use nubes::arm::Arm;
use nubes::deploy::container_apps::{AppId, revision_suffix, roll_out};

use crate::arm::containerapps::{self, DOMAIN, app};
use crate::arm::fake::{FakeArm, SUBSCRIPTION};

const TOKEN: &str = "eyJhbGciOiJub25lIn0.fake-arm-token.c2lnbmF0dXJl";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Debug)]
struct FixedToken;

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://management.azure.com/.default"]);
        Ok(AccessToken::new(
            TOKEN,
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

struct World {
    fake: FakeArm,
    _http: tokio::task::JoinHandle<()>,
    app_url: String,
    dir: tempfile::TempDir,
}

async fn world(mode: &str) -> World {
    let fake = FakeArm::start(TOKEN, 10, vec![]).await;
    fake.apps().add(app("rg-alice", "web", mode));
    let (addr, http) = containerapps::serve_http(fake.apps().clone()).await;
    // SAFETY: nextest runs every test in its own process, and this runs before the
    // test starts any other thread.
    unsafe { std::env::set_var("NUBES_TEST_RESOLVE", format!("{DOMAIN}={addr}")) };
    World {
        fake,
        _http: http,
        app_url: format!("http://web.{DOMAIN}:{}", addr.port()),
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl World {
    fn settings(&self, deploy_toml: &str) -> nubes::config::Settings {
        std::fs::write(
            self.dir.path().join("nubes.toml"),
            format!(
                "[deploy]\ntarget = \"container-apps\"\nhealth_timeout = \"3s\"\n{deploy_toml}"
            ),
        )
        .expect("write");
        nubes::config::load(self.dir.path(), None, &Default::default()).expect("settings")
    }

    fn arm(&self) -> Arm {
        Arm::new(&self.fake.endpoint, SUBSCRIPTION, Arc::new(FixedToken)).expect("arm")
    }

    fn id(&self) -> AppId {
        AppId::parse(&format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-alice/providers/Microsoft.App/containerApps/web"
        ))
        .expect("id")
    }

    async fn roll(
        &self,
        settings: &nubes::config::Settings,
        hex: &str,
    ) -> nubes::error::Result<nubes::deploy::container_apps::Rollout> {
        let digest = format!("sha256:{hex}");
        let reference = format!("reg.example/web@{digest}");
        roll_out(
            settings,
            &self.arm(),
            &self.id(),
            &reference,
            &revision_suffix(Some(COMMIT), &digest),
            Some(self.app_url.as_str()),
        )
        .await
    }
}

fn weights(app: &containerapps::App) -> Vec<(String, u64)> {
    app.traffic
        .iter()
        .map(|t| {
            (
                t["revisionName"].as_str().unwrap_or("(latest)").to_string(),
                t["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

const GOOD: &str = "aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";
const BAD: &str = "baad0000baad0000baad0000baad0000baad0000baad0000baad0000baad0000";

#[tokio::test]
async fn a_healthy_revision_takes_all_the_traffic_and_the_old_one_is_deactivated() {
    let w = world("Multiple").await;
    let settings = w.settings("");
    let done = w.roll(&settings, GOOD).await.expect("rollout");
    assert_eq!(done.revision, "web--0123456789ab-aaaa11");
    let app = w.fake.apps().get("web");
    assert_eq!(weights(&app), vec![(done.revision.clone(), 100)]);
    assert_eq!(app.traffic[0]["label"], "next");
    let old = app
        .revisions
        .iter()
        .find(|r| r.name == "web--first")
        .expect("old");
    assert!(!old.active, "the old revision is deactivated");
    let new = app
        .revisions
        .iter()
        .find(|r| r.name == done.revision)
        .expect("new");
    assert!(
        new.active && new.image == format!("reg.example/web@sha256:{GOOD}"),
        "{new:?}"
    );
    assert_eq!(done.deactivated, vec!["web--first".to_string()]);
    // Creating the revision did not move traffic: it was pinned to the old one first.
    let log = w.fake.apps().traffic_log();
    assert_eq!(log[0], vec![("web--first".to_string(), 100)]);
    assert_eq!(
        log[1],
        vec![("web--first".to_string(), 100), (done.revision.clone(), 0)]
    );
    // Every PATCH was followed through its Azure-AsyncOperation to the end.
    let patches = w.fake.requests_to("PATCH", "/containerApps/web").len();
    let polls = w
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("containerappOperationResults"))
        .count();
    assert_eq!(
        polls,
        patches * 2,
        "one InProgress and one Succeeded per operation"
    );
    assert!(w.fake.requests().iter().all(|r| r.authorized));
    // A redeploy from the same state moves the label on and leaves one active revision.
    let again = w
        .roll(&settings, "cafe".repeat(16).as_str())
        .await
        .expect("second rollout");
    let app = w.fake.apps().get("web");
    assert_eq!(weights(&app), vec![(again.revision.clone(), 100)]);
    assert_eq!(app.revisions.iter().filter(|r| r.active).count(), 1);
}

#[tokio::test]
async fn an_unhealthy_revision_leaves_the_traffic_on_the_old_one_and_fails() {
    let w = world("Multiple").await;
    w.fake.apps().unhealthy(BAD);
    let settings = w.settings("traffic_steps = [50, 100]\n");
    let e = w
        .roll(&settings, BAD)
        .await
        .expect_err("an unhealthy revision fails");
    assert_eq!(e.exit_code(), 1);
    let text = format!("{e} {}", e.hint_text().unwrap_or_default());
    assert!(
        text.contains("health check") && text.contains("traffic is back"),
        "{text}"
    );
    let app = w.fake.apps().get("web");
    assert_eq!(weights(&app), vec![("web--first".to_string(), 100)]);
    let first = app
        .revisions
        .iter()
        .find(|r| r.name == "web--first")
        .expect("old");
    assert!(first.active);
    let bad = app
        .revisions
        .iter()
        .find(|r| r.image.contains(BAD))
        .expect("new");
    assert!(!bad.active, "the failed revision is deactivated");
    // It never got a share of live traffic: it failed behind its label.
    assert!(
        w.fake.apps().traffic_log().iter().all(|l| l
            .iter()
            .all(|(r, weight)| !r.contains("baad") || *weight == 0)),
        "{:?}",
        w.fake.apps().traffic_log()
    );
}

#[tokio::test]
async fn stepped_traffic_visits_each_step() {
    let w = world("Multiple").await;
    let settings = w.settings("traffic_steps = [10, 50, 100]\n");
    let done = w.roll(&settings, GOOD).await.expect("rollout");
    let shares: Vec<u64> = w
        .fake
        .apps()
        .traffic_log()
        .iter()
        .filter_map(|l| {
            l.iter()
                .find(|(r, _)| *r == done.revision)
                .map(|(_, weight)| *weight)
        })
        .collect();
    assert_eq!(shares, vec![0, 10, 50, 100]);
    let olds: Vec<u64> = w
        .fake
        .apps()
        .traffic_log()
        .iter()
        .filter_map(|l| {
            l.iter()
                .find(|(r, _)| r == "web--first")
                .map(|(_, weight)| *weight)
        })
        .collect();
    assert_eq!(
        olds,
        vec![100, 100, 90, 50],
        "the old revision keeps the rest until the end"
    );
}

#[tokio::test]
async fn single_revision_mode_updates_and_checks_the_app() {
    let w = world("Single").await;
    let settings = w.settings("");
    let done = w.roll(&settings, GOOD).await.expect("rollout");
    assert_eq!(done.mode, "Single");
    let app = w.fake.apps().get("web");
    assert_eq!(app.latest, done.revision);
    assert_eq!(app.revisions.iter().filter(|r| r.active).count(), 1);
    // No traffic or label requests in single mode: one PATCH.
    assert_eq!(w.fake.requests_to("PATCH", "/containerApps/web").len(), 1);
    // The same commit and image again (a re-run of the job): the app runs them already,
    // so nothing is rolled out (a second PATCH would repeat the revision suffix, which
    // Container Apps refuses) and the app is health-checked as after any deploy.
    let again = w.roll(&settings, GOOD).await.expect("re-run");
    assert_eq!(again.revision, done.revision);
    assert_eq!(w.fake.requests_to("PATCH", "/containerApps/web").len(), 1);
    // An unhealthy image: the PATCH succeeds (single mode has no label to test behind)
    // and the app's health check, which the caller runs, fails; that is what the
    // automatic rollback of `nubes up` acts on (see `container_rollback.rs`).
    w.fake.apps().unhealthy("dead");
    w.roll(&settings, &"dead".repeat(16))
        .await
        .expect("rolled out");
    let e = nubes::health::check(&w.app_url, "/", Duration::from_secs(2))
        .await
        .expect_err("unhealthy");
    assert_eq!(e.exit_code(), 1);
}

#[tokio::test]
async fn a_revision_that_cannot_be_provisioned_fails_with_the_reason_and_moves_no_traffic() {
    let w = world("Multiple").await;
    w.fake.apps().failing(BAD);
    let settings = w.settings("");
    let e = w.roll(&settings, BAD).await.expect_err("fails");
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("manifest unknown"), "{e}");
    assert_eq!(
        weights(&w.fake.apps().get("web")),
        vec![("web--first".to_string(), 100)]
    );
}

/// `nubes init --target container-apps --runtime docker` on a sample app writes a
/// configuration whose deploy is nubes's own (no `az`, no second build); then `nubes up`
/// of a project with that configuration (its Terraform a stand-in with the same outputs:
/// the azurerm provider cannot be downloaded here) builds the image once with buildah,
/// pushes it to the real registry, and rolls it out on the fake Resource Manager, whose
/// app endpoint (a stand-in for the running container) answers the health checks.
#[test]
fn init_then_up_builds_once_pushes_and_rolls_out_by_digest() {
    use crate::registry::{Registry, counting_buildah, sample_app};
    use crate::support::{Azurite, Project};

    let sample = Project::new("", &[]);
    std::fs::remove_file(sample.path().join("nubes.toml")).expect("rm");
    sample_app(sample.path(), "<h1>hi</h1>");
    // --shared-registry belongs to container-apps only.
    let refused = sample
        .run(&[
            "init",
            "--name",
            "web",
            "--target",
            "static-site",
            "--runtime",
            "static",
            "--shared-registry",
            "rg-shared/crshared",
        ])
        .code(2);
    assert!(
        refused.stderr.contains("--target container-apps"),
        "{}",
        refused.stderr
    );
    sample
        .run(&[
            "init",
            "--name",
            "web",
            "--target",
            "container-apps",
            "--runtime",
            "docker",
            "--shared-registry",
            "rg-shared/crshared",
        ])
        .ok();
    let main = std::fs::read_to_string(sample.path().join("terraform/main.tf")).expect("main.tf");
    assert!(main.contains("shared_registry = {"), "{main}");
    let fmt = std::process::Command::new("terraform")
        .args(["fmt", "-check", "-recursive", "terraform"])
        .current_dir(sample.path())
        .output()
        .expect("terraform fmt");
    assert!(
        fmt.status.success(),
        "{}",
        String::from_utf8_lossy(&fmt.stdout)
    );
    let toml = std::fs::read_to_string(sample.path().join("nubes.toml")).expect("nubes.toml");
    assert!(
        toml.contains("target = \"container-apps\"") && !toml.contains("command ="),
        "{toml}"
    );
    let workflow = std::fs::read_to_string(sample.path().join(".github/workflows/nubes.yml"))
        .expect("workflow");
    assert!(
        !workflow.contains("az acr")
            && !workflow.contains("az containerapp")
            && !workflow.contains("azure/login"),
        "{workflow}"
    );
    let outputs =
        std::fs::read_to_string(sample.path().join("terraform/outputs.tf")).expect("outputs");
    assert!(
        outputs.contains("container_app_id") && outputs.contains("container_registry_login_server")
    );

    let registry = Registry::start("");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(FakeArm::start(TOKEN, 10, vec![]));
    fake.apps().add(app("rg-web-alice", "web", "Multiple"));
    let (addr, _http) = runtime.block_on(containerapps::serve_http(fake.apps().clone()));
    let app_id = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-web-alice/providers/Microsoft.App/containerApps/web"
    );
    let app_url = format!("http://web.{DOMAIN}:{}", addr.port());
    let stack = format!(
        "terraform {{\n  backend \"azurerm\" {{}}\n}}\nvariable \"environment\" {{\n  type = string\n}}\n\
         output \"container_app_id\" {{\n  value = \"{app_id}\"\n}}\n\
         output \"container_registry_login_server\" {{\n  value = \"{}\"\n}}\n\
         output \"application_url\" {{\n  value = \"{app_url}\"\n}}\n",
        registry.addr
    );
    let az = Azurite::https();
    let mut p = Project::on(
        &az,
        "[build]\nengine = \"buildah\"\n\n[deploy]\ntarget = \"container-apps\"\nhealth_timeout = \"10s\"\n",
    );
    std::fs::write(p.path().join("terraform/main.tf"), stack).expect("stack");
    sample_app(p.path(), "<h1>hi</h1>");
    // A buildah that logs its subcommands, to count the builds.
    let (calls, _engine) = counting_buildah(&mut p);
    p.set_env("NUBES_ARM_ENDPOINT", &fake.endpoint);
    p.set_env("NUBES_ARM_TOKEN", TOKEN);
    p.set_env("NUBES_TEST_RESOLVE", &format!("{DOMAIN}={addr}"));

    let out = p.run(&["up", "alice"]).ok();
    assert!(
        out.stdout.contains("deployed to container-apps"),
        "{}",
        out.all()
    );
    let calls = std::fs::read_to_string(&calls).expect("calls");
    assert_eq!(
        calls.lines().filter(|l| *l == "bud").count(),
        1,
        "built exactly once: {calls}"
    );
    // Deployed by digest: the revision runs <registry>/demo@sha256:…, and the registry's
    // manifest under the env's tag has that digest.
    let deployed = fake.apps().get("web");
    let revision = deployed.revisions.last().expect("revision");
    let (_, digest) = revision.image.split_once('@').expect("by digest");
    assert!(
        revision
            .image
            .starts_with(&format!("{}/demo@sha256:", registry.addr)),
        "{}",
        revision.image
    );
    let manifest = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{}/v2/demo/manifests/alice", registry.addr))
            .header("Accept", nubes::image::MANIFEST_MEDIA_TYPE)
            .send()
            .await
            .expect("pull")
            .bytes()
            .await
            .expect("body")
    });
    assert_eq!(
        format!("sha256:{}", nubes::image::sha256_hex(&manifest)),
        digest
    );
    assert_eq!(weights(&deployed), vec![(revision.name.clone(), 100)]);
    // The digest is the environment's recorded artifact.
    let status = p.run(&["status", "alice", "--json"]).ok();
    assert!(status.stdout.contains(digest), "{}", status.stdout);
}

/// Driver of `scripts/bench.sh image`: build + push + rollout of a small image through
/// `nubes up` (buildah, the real registry, the fake Resource Manager), first deploy vs a
/// redeploy with one changed layer; prints a Markdown table (medians of
/// `NUBES_BENCH_RUNS` runs, default 3). Single-revision mode: one PATCH and a health check.
#[test]
#[ignore = "benchmark: run by scripts/bench.sh image"]
fn bench_image_deploy() {
    use crate::registry::{Registry, buildah_env, sample_app};
    use crate::support::{Azurite, Project};
    let runs: usize = std::env::var("NUBES_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let az = Azurite::https();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // (seconds, blobs uploaded, bytes uploaded, registry requests, ARM requests) per deploy.
    let mut first = vec![];
    let mut second = vec![];
    for run in 0..runs {
        let registry = Registry::start("");
        let fake = runtime.block_on(FakeArm::start(TOKEN, 10, vec![]));
        // Single-revision mode at the app's bare address: a release build (as the benchmark
        // runs) does not honour NUBES_TEST_RESOLVE, so no label host can be reached.
        fake.apps().add(app("rg-demo-bench", "web", "Single"));
        let (addr, _http) = runtime.block_on(containerapps::serve_http(fake.apps().clone()));
        let stack = format!(
            "terraform {{\n  backend \"azurerm\" {{}}\n}}\nvariable \"environment\" {{\n  type = string\n}}\n\
             output \"container_app_id\" {{\n  value = \"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-demo-bench/providers/Microsoft.App/containerApps/web\"\n}}\n\
             output \"container_registry_login_server\" {{\n  value = \"{}\"\n}}\n\
             output \"application_url\" {{\n  value = \"http://{addr}\"\n}}\n",
            registry.addr,
        );
        let mut p = Project::on(
            &az,
            "[build]\nengine = \"buildah\"\n\n[deploy]\ntarget = \"container-apps\"\n",
        );
        std::fs::write(p.path().join("terraform/main.tf"), stack).expect("stack");
        sample_app(p.path(), "<h1>one</h1>");
        let engine = tempfile::tempdir().expect("tempdir");
        for (k, v) in buildah_env(engine.path()) {
            p.set_env(&k, &v);
        }
        p.set_env("NUBES_ARM_ENDPOINT", &fake.endpoint);
        p.set_env("NUBES_ARM_TOKEN", TOKEN);
        let env = format!("bench{run}");
        let requests = |r: &Registry| {
            r.log()
                .lines()
                .filter(|l| {
                    l.contains("\"HEAD /v2")
                        || l.contains("\"GET /v2")
                        || l.contains("\"PUT /v2")
                        || l.contains("\"POST /v2")
                        || l.contains("\"PATCH /v2")
                })
                .count()
        };
        for (page, into) in [("<h1>one</h1>", &mut first), ("<h1>two</h1>", &mut second)] {
            std::fs::write(p.path().join("www/index.html"), page).expect("page");
            let (uploads, reg, arm) = (
                registry.blob_uploads(),
                requests(&registry),
                fake.requests().len(),
            );
            let started = std::time::Instant::now();
            let out = p.run(&["up", &env]).ok();
            let took = started.elapsed().as_secs_f64();
            let bytes: u64 = out
                .stdout
                .split("blob(s) uploaded (")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .expect("bytes in the report");
            into.push((
                took,
                registry.blob_uploads() - uploads,
                bytes,
                requests(&registry) - reg,
                fake.requests().len() - arm,
            ));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "| deploy | wall time (median of {runs}) | blobs uploaded | bytes uploaded | registry requests | ARM requests |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, rows) in [
        ("first deploy (empty registry)", &first),
        ("redeploy, one changed layer", &second),
    ] {
        let mut t: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let r = &rows[0];
        println!(
            "| {name} | {:.2} s | {} | {} | {} | {} |",
            median(&mut t),
            r.1,
            r.2,
            r.3,
            r.4
        );
    }
}

/// `nubes init --target container-apps --traffic-steps 10,50,100` makes the app's revision
/// mode Multiple (traffic can only shift between revisions side by side) and writes the
/// steps to nubes.toml; steps added to nubes.toml by hand do the same on the next init;
/// bad steps, or steps for another target, are refused (exit 2). A container project's
/// `.dockerignore` keeps nubes's working folder out of the build context: created, or
/// merged into the user's own without losing a line, also on re-init.
#[test]
fn init_makes_traffic_steps_multiple_revisions_and_keeps_nubes_out_of_the_image() {
    use crate::support::Project;
    let p = Project::new("", &[]);
    std::fs::remove_file(p.path().join("nubes.toml")).expect("rm");
    crate::registry::sample_app(p.path(), "<h1>hi</h1>");
    std::fs::write(p.path().join(".dockerignore"), "target\n# mine\n*.log").expect("ignore");
    let init = |extra: &[&str]| {
        let mut args = vec![
            "init",
            "--name",
            "web",
            "--target",
            "container-apps",
            "--runtime",
            "docker",
        ];
        args.extend_from_slice(extra);
        p.run(&args)
    };
    let read = |path: &str| std::fs::read_to_string(p.path().join(path)).expect(path);
    let bad = init(&["--traffic-steps", "50,10"]).code(2);
    assert!(bad.stderr.contains("--traffic-steps"), "{}", bad.stderr);
    let other = p
        .run(&[
            "init",
            "--name",
            "web",
            "--target",
            "static-site",
            "--runtime",
            "static",
            "--traffic-steps",
            "10,100",
        ])
        .code(2);
    assert!(
        other.stderr.contains("--target container-apps"),
        "{}",
        other.stderr
    );

    init(&[]).ok();
    assert!(!read("terraform/main.tf").contains("revision_mode"));
    assert_eq!(
        read(".dockerignore"),
        "target\n# mine\n*.log\n# nubes's working folder (Terraform working copies, exported images): not part of the image\n.nubes\n"
    );
    // The module's default stays Single.
    assert!(
        read("terraform/modules/container-apps/main.tf")
            .contains("revision_mode                = var.revision_mode")
    );

    init(&["--traffic-steps", "10,50,100"]).ok();
    let main = read("terraform/main.tf");
    assert!(main.contains("  revision_mode = \"Multiple\"\n"), "{main}");
    let toml = read("nubes.toml");
    assert!(toml.contains("\ntraffic_steps = [10, 50, 100]\n"), "{toml}");
    let fmt = std::process::Command::new("terraform")
        .args(["fmt", "-check", "-recursive", "terraform"])
        .current_dir(p.path())
        .output()
        .expect("terraform fmt");
    assert!(
        fmt.status.success(),
        "{}",
        String::from_utf8_lossy(&fmt.stdout)
    );
    // A re-init without the flag keeps the recorded steps; a line the user adds to the
    // ignore file meanwhile stays, and nothing is appended twice.
    std::fs::write(
        p.path().join(".dockerignore"),
        format!("{}dist\n", read(".dockerignore")),
    )
    .expect("edit");
    init(&[]).ok();
    assert!(read("terraform/main.tf").contains("revision_mode = \"Multiple\""));
    let ignore = read(".dockerignore");
    assert!(ignore.ends_with(".nubes\ndist\n"), "{ignore}");
    assert_eq!(ignore.matches(".nubes\n").count(), 1, "{ignore}");

    // Steps written into nubes.toml by hand (another project, no recorded choice).
    let q = Project::new("", &[]);
    std::fs::remove_file(q.path().join("nubes.toml")).expect("rm");
    crate::registry::sample_app(q.path(), "<h1>hi</h1>");
    let args = [
        "init",
        "--name",
        "web",
        "--target",
        "container-apps",
        "--runtime",
        "docker",
    ];
    q.run(&args).ok();
    let toml = std::fs::read_to_string(q.path().join("nubes.toml")).expect("toml");
    std::fs::write(
        q.path().join("nubes.toml"),
        toml.replace("[deploy]\n", "[deploy]\ntraffic_steps = [25, 100]\n"),
    )
    .expect("edit");
    q.run(&args).ok();
    let main = std::fs::read_to_string(q.path().join("terraform/main.tf")).expect("main");
    assert!(main.contains("revision_mode = \"Multiple\""), "{main}");
    let refused = q
        .run(&[
            "init",
            "--name",
            "web",
            "--target",
            "container-apps",
            "--runtime",
            "docker",
            "--traffic-steps",
            "10,100",
        ])
        .code(2);
    assert!(
        refused
            .stderr
            .contains("sets [deploy] traffic_steps already"),
        "{}",
        refused.stderr
    );
}
