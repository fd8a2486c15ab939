//! Blue-green deploys through a deployment slot (`[deploy] slot`): the release goes to
//! the slot's own Kudu site (in-test Kudu, `kudu::fake`), the slot's URL is
//! health-checked, Resource Manager swaps it into production (in-test Resource Manager
//! with `slotsswap` and its long-running operation, `arm::slots`), and production is
//! health-checked; a failure on either side leaves production as it was.
//!
//! A swap exchanges the two slots' deployed content while each keeps its stack, as App
//! Service keeps slot-specific settings in place: so a release that starts on the
//! slot's stack but not on production's is healthy in the slot and unhealthy after the
//! swap.

use crate::arm::fake::{FakeArm, SUBSCRIPTION, group_in};
use crate::arm::slots::swap_slot;
use crate::kudu::fake::{self, FakeKudu, Script, Site, Stack};
use crate::support::{Azurite, Project};

const ARM_TOKEN: &str = "arm-token-for-the-slot-tests";

struct Slots {
    production: FakeKudu,
    staging: FakeKudu,
    arm: FakeArm,
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
fn slots(production: Site, staging: Site) -> Slots {
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
        "[build]\ncommand = \"mkdir -p out && echo 'console.log(1)' > out/server.js\"\nartifact = \"out\"\n\n\
         [deploy]\ntarget = \"app-service\"\nslot = \"staging\"\nhealth_timeout = \"4s\"\n",
    );
    std::fs::write(p.path().join("terraform/main.tf"), stack).unwrap();
    p.set_env("NUBES_KUDU_TOKEN", &fake::token(fake::APP_SERVICE_AUDIENCE));
    p.set_env("NUBES_ARM_ENDPOINT", &s.arm.endpoint);
    p.set_env("NUBES_ARM_TOKEN", ARM_TOKEN);
    p.set_env("ARM_SUBSCRIPTION_ID", SUBSCRIPTION);
    p
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
