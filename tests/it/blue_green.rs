//! Blue-green deploys through a deployment slot (`[deploy] slot`): the release goes to
//! the slot's own Kudu site (in-test Kudu, `kudu::fake`), the slot's URL is
//! health-checked, Resource Manager swaps it into production (in-test Resource Manager
//! with `slotsswap` and its long-running operation, `arm::slots`), and production is
//! health-checked; a failure on either side leaves production as it was.
//!
//! A swap exchanges the two slots' deployed content and Kudu deployment records while
//! each keeps its stack, as App Service keeps slot-specific settings in place: so a
//! release that starts on the slot's stack but not on production's is healthy in the
//! slot and unhealthy after the swap.
//!
//! Rollback with a slot: after v1 and v2 went live through the slot, the slot serves
//! v1, and its Kudu's latest deployment record names it (`nubes release sha256:...`); a
//! rollback to v1 is then one swap, nothing uploaded. When the slot holds something
//! else, or its Kudu cannot be read, the kept zip goes through the slot as a deploy.

use crate::arm::fake::{FakeArm, SUBSCRIPTION, group_in};
use crate::arm::slots::swap_slot;
use crate::kudu::fake::{self, FakeKudu, Script, Site, Stack};
use crate::support::{Azurite, Project};

pub(crate) const ARM_TOKEN: &str = "arm-token-for-the-slot-tests";

pub(crate) struct Slots {
    pub(crate) production: FakeKudu,
    pub(crate) staging: FakeKudu,
    pub(crate) arm: FakeArm,
    _runtime: tokio::runtime::Runtime,
}

fn java() -> Site {
    Site {
        stack: Stack::JavaSe,
        ..Site::default()
    }
}

/// Production and a `staging` slot of app `app-demo` (their stacks given), and the
/// Resource Manager that swaps them.
pub(crate) fn slots(production: Site, staging: Site) -> Slots {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let production = runtime.block_on(FakeKudu::start_with(Script::Succeed, production));
    let staging = runtime.block_on(FakeKudu::start_with(Script::Succeed, staging));
    let arm = runtime.block_on(FakeArm::start(
        ARM_TOKEN,
        10,
        vec![group_in("rg-demo", "eastus", &[])],
    ));
    arm.add_slot(swap_slot(
        "rg-demo",
        "app-demo",
        "staging",
        staging.swapper(&production),
    ));
    Slots {
        production,
        staging,
        arm,
        _runtime: runtime,
    }
}

fn project(az: &Azurite, s: &Slots) -> Project {
    let outputs = [
        ("scm_url", s.production.scm_url.as_str()),
        ("application_url", s.production.site_url.as_str()),
        ("slot_scm_url", s.staging.scm_url.as_str()),
        ("slot_url", s.staging.site_url.as_str()),
        ("resource_group", "rg-demo"),
        ("app_name", "app-demo"),
    ];
    let mut stack = "terraform {\n  backend \"azurerm\" {}\n}\nvariable \"environment\" {\n  type = string\n}\n".to_string();
    for (name, value) in outputs {
        stack.push_str(&format!(
            "output \"{name}\" {{\n  value = \"{value}\"\n}}\n"
        ));
    }
    let mut p = Project::on(
        az,
        "[build]\ncommand = \"rm -rf out && cp -r src out\"\nartifact = \"out\"\n\n\
         [deploy]\ntarget = \"app-service\"\nslot = \"staging\"\nhealth_timeout = \"4s\"\n",
    );
    std::fs::write(p.path().join("terraform/main.tf"), stack).unwrap();
    version(&p, "1");
    p.set_env("NUBES_KUDU_TOKEN", &fake::token(fake::APP_SERVICE_AUDIENCE));
    p.set_env("NUBES_ARM_ENDPOINT", &s.arm.endpoint);
    p.set_env("NUBES_ARM_TOKEN", ARM_TOKEN);
    p.set_env("ARM_SUBSCRIPTION_ID", SUBSCRIPTION);
    p
}

/// The app's source: one `server.js` naming `v`.
fn version(p: &Project, v: &str) {
    let src = p.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("server.js"), format!("console.log({v})\n")).unwrap();
}

fn serves(kudu: &FakeKudu) -> String {
    String::from_utf8(kudu.file("server.js").unwrap_or_default()).unwrap()
}

fn releases(p: &Project, env: &str) -> Vec<serde_json::Value> {
    let out = p.run(&["releases", env, "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    doc["releases"].as_array().unwrap().clone()
}

/// v1 then v2 deployed through the slot; returns their digests.
fn v1_then_v2(p: &Project, s: &Slots, env: &str) -> (String, String) {
    version(p, "1");
    p.run(&["up", env]).ok();
    version(p, "2");
    p.run(&["up", env]).ok();
    assert_eq!(serves(&s.production), "console.log(2)\n");
    assert_eq!(serves(&s.staging), "console.log(1)\n");
    let listed = releases(p, env);
    let digest = |i: usize| listed[i]["digest"].as_str().unwrap().to_string();
    (digest(1), digest(0))
}

/// POSTs to either Kudu site (uploads), and swaps.
fn counts(s: &Slots) -> (usize, usize, usize) {
    (
        s.production.posts().len(),
        s.staging.posts().len(),
        swaps(s).len(),
    )
}

fn swaps(s: &Slots) -> Vec<String> {
    s.arm
        .requests_to("POST", "/sites/app-demo/slots/staging/slotsswap")
        .into_iter()
        .map(|r| r.body)
        .collect()
}

#[test]
fn a_healthy_slot_is_swapped_in_and_production_serves_the_release() {
    let az = Azurite::https();
    let s = slots(Site::default(), Site::default());
    let p = project(&az, &s);
    let out = p.run(&["up", "alice"]).ok();
    // Deployed through the slot's Kudu only; the swap put it into production.
    assert_eq!(s.staging.posts().len(), 1, "{}", out.all());
    assert!(s.production.posts().is_empty());
    let bodies = swaps(&s);
    assert_eq!(bodies.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(body["targetSlot"], "production");
    assert_eq!(body["preserveVnet"], true);
    assert_eq!(s.production.wwwroot(), ["server.js"]);
    assert!(s.production.healthy());
    assert!(out.stdout.contains("healthy"), "{}", out.all());
}

#[test]
fn an_unhealthy_slot_is_not_swapped_and_production_is_untouched() {
    let az = Azurite::https();
    // The slot runs Java SE: a folder without app.jar does not start there.
    let s = slots(Site::default(), java());
    let p = project(&az, &s);
    let out = p.run(&["up", "bob"]).code(1);
    assert!(
        out.stderr.contains("slot `staging` is unhealthy")
            && out.stderr.contains("not swapped, production untouched"),
        "{}",
        out.all()
    );
    assert_eq!(s.staging.posts().len(), 1);
    assert!(swaps(&s).is_empty());
    assert!(s.production.wwwroot().is_empty());
    assert!(s.production.posts().is_empty());
}

#[test]
fn production_unhealthy_after_the_swap_is_swapped_back_and_both_verdicts_reported() {
    let az = Azurite::https();
    // Production runs Java SE, the slot Node: healthy in the slot, not in production.
    let s = slots(java(), Site::default());
    let p = project(&az, &s);
    let out = p.run(&["up", "carol"]).code(1);
    assert!(
        out.stderr.contains("slot `staging`: healthy")
            && out.stderr.contains("production after the swap: unhealthy")
            && out.stderr.contains("swapped back"),
        "{}",
        out.all()
    );
    assert_eq!(swaps(&s).len(), 2, "swapped in, then back");
    // Production has its previous content again (none); the release sits in the slot.
    assert!(s.production.wwwroot().is_empty());
    assert_eq!(s.staging.wwwroot(), ["server.js"]);
}

#[test]
fn a_rollback_to_the_release_the_slot_serves_swaps_it_back_and_uploads_nothing() {
    let az = Azurite::https();
    let s = slots(Site::default(), Site::default());
    let p = project(&az, &s);
    let (v1, v2) = v1_then_v2(&p, &s, "dave");
    // Every zip deploy named its release; the swap carried v1's record into the slot.
    let latest = |k: &FakeKudu| k.deployments().last().unwrap().message.clone();
    assert_eq!(latest(&s.staging), format!("nubes release {v1}"));
    assert_eq!(latest(&s.production), format!("nubes release {v2}"));

    let before = counts(&s);
    let out = p.run(&["rollback", "dave"]).ok();
    assert_eq!(
        counts(&s),
        (before.0, before.1, before.2 + 1),
        "one swap, no upload: {}",
        out.all()
    );
    assert!(
        out.stderr
            .contains("swapped slot `staging` into production")
            && out.stderr.contains("nothing uploaded"),
        "{}",
        out.all()
    );
    assert_eq!(serves(&s.production), "console.log(1)\n");
    assert_eq!(serves(&s.staging), "console.log(2)\n");
    assert!(s.production.healthy());
    let listed = releases(&p, "dave");
    assert_eq!(listed[0]["digest"], v1.as_str(), "{listed:?}");
    assert_eq!(listed[0]["action"], "rollback");
    assert_eq!(listed[0]["verdict"], "healthy");
    assert_eq!(listed[0]["live"], true);

    // And forward again: the slot now serves v2 (`--json` says it was a swap).
    let before = counts(&s);
    let out = p
        .run(&["rollback", "dave", "--to", &v2[7..19], "--json"])
        .ok();
    assert_eq!(counts(&s), (before.0, before.1, before.2 + 1));
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(doc["by_slot_swap"], true, "{doc}");
    assert_eq!(doc["verdict"], "healthy", "{doc}");
    assert_eq!(serves(&s.production), "console.log(2)\n");
    assert_eq!(releases(&p, "dave")[0]["digest"], v2.as_str());
}

#[test]
fn a_rollback_when_the_slot_holds_another_deployment_deploys_the_kept_zip_to_the_slot_first() {
    let az = Azurite::https();
    let s = slots(Site::default(), Site::default());
    let p = project(&az, &s);
    let (v1, _) = v1_then_v2(&p, &s, "erin");
    // Someone deploys a build of their own to the slot (no release message).
    let hand = tempfile::tempdir().unwrap();
    std::fs::write(hand.path().join("server.js"), "console.log('by hand')\n").unwrap();
    let (kudu, _) = crate::kudu::client(&s.staging);
    crate::support::block_on(kudu.deploy(
        hand.path(),
        nubes::kudu::Api::ZipDeploy,
        std::time::Duration::from_secs(60),
    ))
    .unwrap();

    let before = counts(&s);
    let out = p.run(&["rollback", "erin"]).ok();
    assert!(
        out.stderr.contains(&format!(
            "slot `staging` is not known to serve release {v1}"
        )) && out.stderr.contains("says `Created via a push deployment`"),
        "{}",
        out.all()
    );
    // The kept zip went to the slot (its Kudu only), then one swap.
    assert_eq!(
        counts(&s),
        (before.0, before.1 + 1, before.2 + 1),
        "{}",
        out.all()
    );
    assert_eq!(serves(&s.production), "console.log(1)\n");
    assert_eq!(
        s.production.deployments().last().unwrap().message,
        format!("nubes release {v1}")
    );
    let listed = releases(&p, "erin");
    assert_eq!(listed[0]["digest"], v1.as_str());
    assert_eq!(listed[0]["live"], true);
}

#[test]
fn a_rollback_whose_slot_kudu_cannot_be_read_never_swaps_blindly() {
    let az = Azurite::https();
    let s = slots(Site::default(), Site::default());
    let p = project(&az, &s);
    v1_then_v2(&p, &s, "frank");
    s.staging.stop();
    let before = swaps(&s).len();
    let out = p.run(&["rollback", "frank"]).code(1);
    assert!(
        out.stderr.contains("its Kudu could not be read") && out.stderr.contains("cannot reach"),
        "{}",
        out.all()
    );
    assert_eq!(swaps(&s).len(), before, "no swap: {}", out.all());
    assert_eq!(serves(&s.production), "console.log(2)\n");
}

#[test]
fn a_swap_back_whose_production_is_unhealthy_is_swapped_back_again_with_both_verdicts() {
    let az = Azurite::https();
    let s = slots(Site::default(), Site::default());
    let p = project(&az, &s);
    let (v1, v2) = v1_then_v2(&p, &s, "gina");
    // Production's runtime changed since: v1 (a Node app) no longer starts there.
    s.production.set_stack(Stack::JavaSe);
    let before = counts(&s);
    let out = p.run(&["rollback", "gina"]).code(1);
    assert!(
        out.stderr.contains("slot `staging`: healthy")
            && out.stderr.contains("production after the swap: unhealthy")
            && out.stderr.contains("swapped back"),
        "{}",
        out.all()
    );
    assert_eq!(
        counts(&s),
        (before.0, before.1, before.2 + 2),
        "swapped in, then back"
    );
    assert_eq!(serves(&s.production), "console.log(2)\n");
    assert_eq!(serves(&s.staging), "console.log(1)\n");
    let listed = releases(&p, "gina");
    assert_eq!(listed[0]["digest"], v1.as_str());
    assert_eq!(listed[0]["verdict"], "unhealthy");
    assert_eq!(listed[0]["live"], false);
    let live = listed.iter().find(|r| r["live"] == true).unwrap();
    assert_eq!(live["digest"], v2.as_str());
    assert!(
        out.stdout.contains("was not put live in `gina`")
            && out
                .stderr
                .contains("production keeps the release it served"),
        "{}",
        out.all()
    );
    // The environment's record still names the release production serves.
    let status = p.run(&["status", "gina", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["deploy"]["artifact"], v2.as_str(), "{status}");
}
