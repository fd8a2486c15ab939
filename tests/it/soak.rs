//! Contention soak: waves of 20 concurrent `nubes up` on one environment and 20 on 20
//! other environments at the same time, each from its own checkout (as from separate
//! runners), repeated for `NUBES_SOAK_SECONDS` (default 60; `scripts/soak.sh` runs it
//! longer). Every run must succeed or exit 3 naming the holder; no update may be lost
//! and no lock may be left behind.
//!
//! Lost updates are detected through the state itself: the stack reads its own stored
//! outputs (a `terraform_remote_state` through nubes's gateway) and appends the run's ID,
//! so the final `runs` output is the list of every apply that built on the one before.
//! A run that planned from a stale state would drop the IDs written since.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Azurite, Out, Project, block_on};

const SEED_STACK: &str = r#"
terraform {
  backend "azurerm" {}
}

variable "run" {
  type = string
}

output "runs" {
  value = [var.run]
}
"#;

const LEDGER_STACK: &str = r#"
terraform {
  backend "azurerm" {}
}

variable "run" {
  type = string
}

# This environment's own stored state, read through nubes's gateway (the http backend
# takes its address and credentials from TF_HTTP_*).
data "terraform_remote_state" "self" {
  backend = "http"
  config  = {}
}

output "runs" {
  value = concat(try(data.terraform_remote_state.self.outputs.runs, []), [var.run])
}
"#;

const PER_WAVE: usize = 20;

fn toml(run: &str) -> String {
    format!(
        "[project]\nname = \"soak\"\n\n[state]\nlease_seconds = 15\nlock_timeout = \"10s\"\n\n\
         [terraform]\nvars = {{ run = \"{run}\" }}\n"
    )
}

fn checkout(az: &Azurite, stack: &str) -> Project {
    let mut p = Project::new(&toml("seed"), &[("main.tf", stack)]);
    for (k, v) in az.nubes_env() {
        p.set_env(&k, &v);
    }
    p
}

fn stored_runs(az: &Azurite, env: &str) -> Vec<String> {
    let r = block_on(
        az.blobs()
            .get("tfstate", &format!("{env}.terraform.tfstate")),
    );
    let doc: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("state of {env} is not JSON: {e}"));
    doc["outputs"]["runs"]["value"]
        .as_array()
        .unwrap_or_else(|| panic!("state of {env} has no runs output: {doc}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

fn wait(child: Child) -> Out {
    child.wait_with_output().expect("wait for nubes").into()
}

#[derive(Default)]
struct Tally {
    waves: usize,
    succeeded: usize,
    locked_out: usize,
}

#[test]
fn contention_soak_loses_no_update_and_leaves_no_lock() {
    let az = Azurite::http();
    let seconds: u64 = std::env::var("NUBES_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let solo_envs: Vec<String> = (0..PER_WAVE).map(|i| format!("solo{i}")).collect();
    let seed = checkout(&az, SEED_STACK);
    seed.run(&["up", "shared"]).ok();
    for env in &solo_envs {
        seed.run(&["up", env]).ok();
    }
    let shared: Vec<Project> = (0..PER_WAVE).map(|_| checkout(&az, LEDGER_STACK)).collect();
    let solo: Vec<Project> = (0..PER_WAVE).map(|_| checkout(&az, LEDGER_STACK)).collect();
    // Successful runs per environment, in no particular order.
    let mut applied: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tally = Tally::default();
    let started = Instant::now();
    while tally.waves == 0 || started.elapsed() < Duration::from_secs(seconds) {
        let wave = tally.waves;
        let mut running = Vec::new();
        for (i, p) in shared.iter().enumerate() {
            let run = format!("w{wave}-shared-{i}");
            std::fs::write(p.path().join("nubes.toml"), toml(&run)).unwrap();
            running.push(("shared".to_string(), run, p.spawn(&["up", "shared"])));
        }
        for (i, p) in solo.iter().enumerate() {
            let env = &solo_envs[i];
            let run = format!("w{wave}-{env}");
            std::fs::write(p.path().join("nubes.toml"), toml(&run)).unwrap();
            running.push((env.clone(), run, p.spawn(&["up", env])));
        }
        for (env, run, child) in running {
            let out = wait(child);
            match out.code {
                0 => {
                    tally.succeeded += 1;
                    applied.entry(env).or_default().push(run);
                }
                3 => {
                    tally.locked_out += 1;
                    assert!(
                        out.stderr.contains(&format!(
                            "waiting for the lock on environment `{env}` (held by "
                        )) && out.stderr.contains("nubes up"),
                        "{run}: exit 3 must name the holder:\n{}",
                        out.stderr
                    );
                }
                code => panic!(
                    "{run} on {env}: exit {code}; only 0 or 3 are acceptable\n{}",
                    out.all()
                ),
            }
        }
        tally.waves += 1;
    }

    let mut checked = 0;
    for env in std::iter::once("shared".to_string()).chain(solo_envs.iter().cloned()) {
        let ledger = stored_runs(&az, &env);
        let mine = applied.get(&env).cloned().unwrap_or_default();
        assert_eq!(
            ledger.first().map(String::as_str),
            Some("seed"),
            "{env}: {ledger:?}"
        );
        for run in &mine {
            assert_eq!(
                ledger.iter().filter(|r| *r == run).count(),
                1,
                "{env}: the update of successful run {run} was lost or duplicated: {ledger:?}"
            );
        }
        assert_eq!(
            ledger.len(),
            mine.len() + 1,
            "{env}: the ledger holds runs that did not succeed, or lost some: {ledger:?} vs {mine:?}"
        );
        // No stuck lock: the lease is free and no lock info is left.
        let props = block_on(
            az.blobs()
                .properties("tfstate", &format!("{env}.terraform.tfstate")),
        );
        assert_ne!(
            props.headers.get("x-ms-lease-state").map(String::as_str),
            Some("leased"),
            "{env}: still leased after every run ended"
        );
        assert_eq!(
            props.meta("terraformlockid"),
            None,
            "{env}: lock info left behind"
        );
        checked += ledger.len() - 1;
    }
    eprintln!(
        "soak: {} waves in {} s, {} runs: {} succeeded, {} exited 3 naming the holder; {checked} updates checked in final states, none lost; no lock left",
        tally.waves,
        started.elapsed().as_secs(),
        tally.waves * 2 * PER_WAVE,
        tally.succeeded,
        tally.locked_out
    );
}
