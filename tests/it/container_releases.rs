//! Releases of `container-apps` environments are images by digest: `nubes releases` lists
//! them, `nubes rollback` rolls the Container App back to an earlier image without a build
//! (a new revision running that digest), `nubes up` whose new revision fails the app's
//! health check rolls back by itself (exit 1, naming both releases), and `nubes promote`
//! into an environment with another registry copies the image there (manifest and the
//! blobs it lacks) and runs the very same digest.
//!
//! Real parts: buildah (behind a wrapper that logs its subcommands, to count builds), the
//! real `docker-registry`, Azurite for state and the release records, Terraform; the
//! Container Apps API is the fake Resource Manager (`arm/containerapps.rs`), whose app
//! endpoint answers the health checks (a stand-in for the running container: no engine
//! here can run the image with networking).

use std::path::PathBuf;

use serde_json::Value;

use crate::arm::containerapps::{self, DOMAIN, app};
use crate::arm::fake::{FakeArm, SUBSCRIPTION};
use crate::registry::{Registry, counting_buildah, sample_app};
use crate::support::{Azurite, Project};

const TOKEN: &str = "eyJhbGciOiJub25lIn0.fake-arm-token.c2lnbmF0dXJl";

struct World {
    p: Project,
    fake: FakeArm,
    calls: PathBuf,
    _runtime: tokio::runtime::Runtime,
    _http: tokio::task::JoinHandle<()>,
    _engine: tempfile::TempDir,
    az: Azurite,
}

/// A `container-apps` project (Single revision mode) whose Terraform stand-in outputs, per
/// environment, the app `web-<env>` in `rg-web-<env>`, the registry `registry_for(env)`
/// and the app's URL; buildah logs its subcommands to `calls`.
fn world(registry_expr: &str, apps: &[&str]) -> World {
    let az = Azurite::https();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(FakeArm::start(TOKEN, 10, vec![]));
    for env in apps {
        fake.apps().add(app(
            &format!("rg-web-{env}"),
            &format!("web-{env}"),
            "Single",
        ));
    }
    let (addr, http) = runtime.block_on(containerapps::serve_http(fake.apps().clone()));
    let stack = format!(
        "terraform {{\n  backend \"azurerm\" {{}}\n}}\nvariable \"environment\" {{\n  type = string\n}}\n\
         output \"container_app_id\" {{\n  value = \"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-web-${{var.environment}}/providers/Microsoft.App/containerApps/web-${{var.environment}}\"\n}}\n\
         output \"container_registry_login_server\" {{\n  value = {registry_expr}\n}}\n\
         output \"application_url\" {{\n  value = \"http://web-${{var.environment}}.{DOMAIN}:{}\"\n}}\n",
        addr.port()
    );
    let mut p = Project::on(
        &az,
        "[build]\nengine = \"buildah\"\n\n[deploy]\ntarget = \"container-apps\"\nhealth_timeout = \"4s\"\n",
    );
    std::fs::write(p.path().join("terraform/main.tf"), stack).expect("stack");
    sample_app(p.path(), "<h1>one</h1>");
    let (calls, engine) = counting_buildah(&mut p);
    p.set_env("NUBES_ARM_ENDPOINT", &fake.endpoint);
    p.set_env("NUBES_ARM_TOKEN", TOKEN);
    p.set_env("NUBES_TEST_RESOLVE", &format!("{DOMAIN}={addr}"));
    World {
        p,
        fake,
        calls,
        _runtime: runtime,
        _http: http,
        _engine: engine,
        az,
    }
}

impl World {
    fn builds(&self) -> usize {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "bud")
            .count()
    }

    /// The image the app's latest revision runs (its template's image), and the revision.
    fn running(&self, env: &str) -> (String, String) {
        let app = self.fake.apps().get(&format!("web-{env}"));
        let latest = app
            .revisions
            .iter()
            .find(|r| r.name == app.latest)
            .expect("latest revision");
        (latest.image.clone(), latest.name.clone())
    }

    fn up(&mut self, env: &str, commit_char: char, page: &str) -> crate::support::Out {
        std::fs::write(self.p.path().join("www/index.html"), page).expect("page");
        self.p
            .set_env("GITHUB_SHA", &commit_char.to_string().repeat(40));
        self.p.run(&["up", env])
    }

    fn releases(&self, env: &str) -> Vec<Value> {
        let out = self.p.run(&["releases", env, "--json"]).ok();
        let doc: Value = serde_json::from_str(&out.stdout).expect("json");
        doc["releases"].as_array().cloned().unwrap_or_default()
    }
}

fn digest_of(image: &str) -> String {
    image.split_once('@').expect("by digest").1.to_string()
}

fn short(digest: &str) -> &str {
    &digest["sha256:".len().."sha256:".len() + 12]
}

#[test]
fn rollback_and_a_failed_health_check_run_an_earlier_image_by_digest_without_building() {
    let registry = Registry::start("");
    let mut w = world(&format!("\"{}\"", registry.addr), &["alice"]);
    let repo = format!("{}/demo", registry.addr);
    w.up("alice", '1', "<h1>one</h1>").ok();
    let (v1, _) = w.running("alice");
    w.up("alice", '2', "<h1>two</h1>").ok();
    let (v2, _) = w.running("alice");
    let (d1, d2) = (digest_of(&v1), digest_of(&v2));
    assert_ne!(d1, d2);
    assert_eq!(v2, format!("{repo}@{d2}"));
    assert_eq!(w.builds(), 2);

    // Both are listed as image releases, v2 live; no artifact blob is kept for them.
    let listed = w.releases("alice");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["digest"], d2.as_str());
    assert_eq!(listed[0]["live"], true);
    assert_eq!(listed[1]["digest"], d1.as_str());
    for r in &listed {
        assert_eq!(r["target"], "container-apps");
        assert_eq!(r["image"], repo.as_str());
        assert_eq!(r["verdict"], "healthy");
    }
    let text = w.p.run(&["releases", "alice"]).ok().stdout;
    assert!(
        text.contains(short(&d1)) && text.contains("container-apps"),
        "{text}"
    );

    // Rollback: a new revision running v1's digest; nothing built.
    let out = w.p.run(&["rollback", "alice"]).ok();
    assert!(out.stdout.contains(short(&d1)), "{}", out.all());
    let (now, revision) = w.running("alice");
    assert_eq!(now, format!("{repo}@{d1}"));
    assert!(
        revision.starts_with(&format!("web-alice--r{}", &short(&d1)[..8])),
        "{revision}"
    );
    assert_eq!(w.builds(), 2, "a rollback builds nothing");
    let listed = w.releases("alice");
    assert_eq!(listed[0]["digest"], d1.as_str());
    assert_eq!(listed[0]["action"], "rollback");
    assert_eq!(listed[0]["live"], true);
    // `--to` names a release: forward to v2 again.
    w.p.run(&["rollback", "alice", "--to", short(&d2)]).ok();
    assert_eq!(w.running("alice").0, format!("{repo}@{d2}"));

    // A release whose revision fails the app's health check: the previous healthy image
    // (v2) runs again, the run fails naming both.
    w.fake.apps().unhealthy("dddddddddddd");
    let failed = w.up("alice", 'd', "<h1>three</h1>").code(1);
    assert_eq!(w.builds(), 3);
    let listed = w.releases("alice");
    let d3 = listed
        .iter()
        .find(|r| r["action"] == "deploy" && r["verdict"] == "unhealthy")
        .and_then(|r| r["digest"].as_str())
        .expect("the failing release is recorded")
        .to_string();
    assert!(
        failed.stderr.contains(short(&d3)) && failed.stderr.contains(short(&d2)),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("rolled back"), "{}", failed.stderr);
    assert_eq!(w.running("alice").0, format!("{repo}@{d2}"));
    assert_eq!(listed[0]["action"], "auto-rollback");
    assert_eq!(listed[0]["digest"], d2.as_str());
    assert_eq!(listed[0]["live"], true);
    assert_eq!(listed[0]["verdict"], "healthy");
    // Releases of an image keep nothing in the releases container but records.
    let listing = crate::support::block_on(w.az.blobs().list("nubes-releases", "metadata"));
    let blobs: Vec<&str> = listing
        .split("<Name>")
        .skip(1)
        .filter_map(|s| s.split("</Name>").next())
        .filter(|n| !n.contains("/envs/"))
        .collect();
    assert!(listing.contains("/envs/alice/"), "{listing}");
    assert!(blobs.is_empty(), "{blobs:?}");
}

#[test]
fn promote_into_another_registry_copies_the_image_and_runs_the_same_digest() {
    let first = Registry::start("");
    let second = Registry::start("");
    let mut w = world(
        &format!(
            "var.environment == \"prod\" ? \"{}\" : \"{}\"",
            second.addr, first.addr
        ),
        &["alice", "prod"],
    );
    w.up("alice", '1', "<h1>one</h1>").ok();
    let d1 = digest_of(&w.running("alice").0);
    let before = second.blob_uploads();
    let out = w.p.run(&["promote", "alice", "prod"]).ok();
    assert!(out.stdout.contains(short(&d1)), "{}", out.all());
    assert_eq!(w.builds(), 1, "a promotion builds nothing");
    // The same digest runs in prod, from prod's registry, which now holds the manifest
    // (byte for byte: its digest is the release) and every blob of the image.
    assert_eq!(w.running("prod").0, format!("{}/demo@{d1}", second.addr));
    let manifest = pulled(&second.addr, &d1);
    assert_eq!(
        format!("sha256:{}", nubes::image::sha256_hex(&manifest)),
        d1
    );
    let m: Value = serde_json::from_slice(&manifest).expect("manifest");
    let blobs = 1 + m["layers"].as_array().map_or(0, Vec::len);
    assert_eq!(second.blob_uploads() - before, blobs);
    let listed = w.releases("prod");
    assert_eq!(listed[0]["action"], "promote from alice");
    assert_eq!(listed[0]["digest"], d1.as_str());
    assert_eq!(listed[0]["image"], format!("{}/demo", second.addr).as_str());
    // Promoting the same release again copies nothing: prod's registry has it.
    let uploads = second.blob_uploads();
    w.p.run(&["promote", "alice", "prod"]).ok();
    assert_eq!(second.blob_uploads(), uploads);
    assert_eq!(w.builds(), 1);
}

/// The manifest `digest` of `demo` in the registry at `addr`, as pulled.
fn pulled(addr: &str, digest: &str) -> Vec<u8> {
    crate::support::block_on(async {
        let answer = reqwest::Client::new()
            .get(format!("http://{addr}/v2/demo/manifests/{digest}"))
            .header("Accept", nubes::image::MANIFEST_MEDIA_TYPE)
            .send()
            .await
            .expect("pull");
        assert_eq!(answer.status(), 200);
        answer.bytes().await.expect("body").to_vec()
    })
}
