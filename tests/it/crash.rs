//! Crash consistency: `nubes up` killed with SIGKILL at random points of a run whose
//! apply takes a few seconds. After each kill, nubes's process group must empty by
//! itself (Terraform dies with its parent), the next `nubes up` must succeed without a
//! manual unlock once the lease has expired, and the stored state must be valid JSON
//! with the same lineage and a serial no lower than before the kill.
//!
//! The kill points come from a seeded generator; the seed is printed and
//! `NUBES_CRASH_SEED` replays a run. `NUBES_CRASH_KILLS` changes the number of kills
//! (default 20).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::support::{Azurite, Project, block_on};

/// Three resources applied one after another, each replaced on every change of `n` and
/// taking a second to create: an apply of about three seconds with state writes between.
pub const SLOW_STACK: &str = r#"
terraform {
  backend "azurerm" {}
}

variable "n" {
  type    = string
  default = "0"
}

resource "terraform_data" "first" {
  triggers_replace = var.n
  provisioner "local-exec" {
    command = "sleep 1"
  }
}

resource "terraform_data" "second" {
  triggers_replace = var.n
  depends_on       = [terraform_data.first]
  provisioner "local-exec" {
    command = "sleep 1"
  }
}

resource "terraform_data" "third" {
  triggers_replace = var.n
  depends_on       = [terraform_data.second]
  provisioner "local-exec" {
    command = "sleep 1"
  }
}

output "n" {
  value = var.n
}
"#;

/// A project on `az` whose stack is [`SLOW_STACK`], applying `n`.
pub fn slow_project(az: &Azurite, n: &str) -> Project {
    let mut p = Project::new(&toml(n), &[("main.tf", SLOW_STACK)]);
    for (k, v) in az.nubes_env() {
        p.set_env(&k, &v);
    }
    p
}

fn toml(n: &str) -> String {
    format!(
        "[project]\nname = \"crash\"\n\n[state]\nlease_seconds = 15\nlock_timeout = \"90s\"\n\n\
         [terraform]\nvars = {{ n = \"{n}\" }}\n"
    )
}

/// The stored state of `env`: (lineage, serial, output n), or None when there is none.
pub fn stored(az: &Azurite, env: &str) -> Option<(String, i64, String)> {
    let r = block_on(
        az.blobs()
            .get("tfstate", &format!("{env}.terraform.tfstate")),
    );
    if r.status == 404 || r.body.is_empty() {
        return None;
    }
    assert_eq!(r.status, 200, "reading the state of {env}");
    let doc: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "the state of {env} is not valid JSON ({e}):\n{}",
            String::from_utf8_lossy(&r.body)
        )
    });
    Some((
        doc["lineage"].as_str().expect("lineage").to_string(),
        doc["serial"].as_i64().expect("serial"),
        doc["outputs"]["n"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ))
}

/// Processes still alive (not zombies) in process group `pgid`, as "pid comm" lines.
pub fn group_members(pgid: u32) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').map_or(0, |i| i + 1)..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            found.push(format!("{pid} {comm}"));
        }
    }
    found
}

/// Wait until process group `pgid` has no live member; panics after `within`.
pub fn wait_for_empty_group(pgid: u32, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let left = group_members(pgid);
        if left.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what}: processes of the killed nubes's group still run after {within:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `nubes up` started as the leader of its own process group, its stderr collected
/// line by line (so the stage it was killed in can be told).
pub struct Running {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

pub fn spawn_in_own_group(mut cmd: Command) -> Running {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn nubes");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Running { child, lines }
}

/// The stage a run had reached, from its output so far.
pub fn stage(lines: &[String]) -> &'static str {
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    if has("Apply complete") {
        "after apply (recording)"
    } else if has("Creating...") || has("Destroying...") {
        "apply"
    } else if has("Plan:") || has("Refreshing state") || has("will be created") {
        "plan"
    } else if has("Initializing") || has("Terraform has been successfully initialized") {
        "terraform init"
    } else if lines.is_empty() {
        "start-up"
    } else {
        "lock / render"
    }
}

fn kills() -> usize {
    std::env::var("NUBES_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn seed() -> u64 {
    std::env::var("NUBES_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// One worker: `rounds` kills on environment `env`, in sequence.
fn kill_rounds(az: &Azurite, env: &str, seed: u64, rounds: usize) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let p = slow_project(az, "base");
    p.run(&["up", env]).ok();
    let (lineage, _, _) = stored(az, env).expect("state after the first apply");
    let mut log = Vec::new();
    let mut killed = 0;
    let mut round = 0;
    // A run that ends before its kill point does not count: draw again.
    while killed < rounds {
        round += 1;
        assert!(
            round <= rounds * 3,
            "seed {seed}: runs keep ending before their kill point"
        );
        let n = format!("{env}-{round}");
        std::fs::write(p.path().join("nubes.toml"), toml(&n)).unwrap();
        let (_, serial_before, _) = stored(az, env).expect("state before the kill");
        // Kill anywhere from start-up to the end of the apply (~4.7 s for the whole run).
        let after = Duration::from_millis(rng.random_range(0..4000));
        let mut run = spawn_in_own_group(p.cmd(&["up", env]));
        let pgid = run.child.id();
        let started = Instant::now();
        let finished = loop {
            if let Some(status) = run.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if started.elapsed() >= after {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let at = stage(&run.lines.lock().unwrap());
        let outcome = match finished {
            Some(status) => format!("finished before the kill ({status})"),
            None => {
                killed += 1;
                run.child.kill().expect("SIGKILL nubes");
                let _ = run.child.wait();
                let gone = wait_for_empty_group(pgid, Duration::from_secs(60), &n);
                let errored = p
                    .path()
                    .join(".nubes/work")
                    .join(env)
                    .join("errored.tfstate");
                format!(
                    "killed; group empty {} ms later{}",
                    gone.as_millis(),
                    if errored.exists() {
                        "; errored.tfstate left"
                    } else {
                        ""
                    }
                )
            }
        };
        // The next run must get through without `nubes unlock`, waiting out the lease.
        let t = Instant::now();
        let out = p.run(&["up", env]);
        assert_eq!(
            out.code,
            0,
            "seed {seed}, {env} round {round} (killed after {after:?}, in {at}): the next up failed\n{}",
            out.all()
        );
        let errored = p
            .path()
            .join(".nubes/work")
            .join(env)
            .join("errored.tfstate");
        assert!(
            !errored.exists(),
            "seed {seed}, {n}: errored.tfstate is still there after the next up"
        );
        let recovered = out
            .stderr
            .contains("recovered the state an interrupted run");
        let (lin, serial, applied) = stored(az, env).expect("state after the rerun");
        assert_eq!(lin, lineage, "seed {seed}, {n}: lineage changed");
        assert!(
            serial >= serial_before,
            "seed {seed}, {n}: serial went from {serial_before} to {serial}"
        );
        assert_eq!(applied, n, "seed {seed}, {n}: the rerun did not apply");
        log.push(format!(
            "{n}: kill after {} ms in {at}: {outcome}; next up ok in {} ms{}; serial {serial_before} -> {serial}",
            after.as_millis(),
            t.elapsed().as_millis(),
            if recovered { " (pushed errored.tfstate first)" } else { "" }
        ));
    }
    log
}

/// Issue 6 (1): twenty SIGKILLs at seeded random points, four environments at a time.
#[test]
fn up_survives_sigkill_at_random_points() {
    let az = Azurite::http();
    let seed = seed();
    let total = kills();
    let workers = 4.min(total.max(1));
    eprintln!("crash test: seed {seed} (replay with NUBES_CRASH_SEED={seed}), {total} kills");
    let logs: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let az = &az;
                let rounds = total / workers + usize::from(w < total % workers);
                s.spawn(move || {
                    kill_rounds(
                        az,
                        &format!("crash{w}"),
                        seed.wrapping_add(w as u64),
                        rounds,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let lines: Vec<&String> = logs.iter().flatten().collect();
    for l in &lines {
        eprintln!("{l}");
    }
    let killed = lines.iter().filter(|l| l.contains("killed;")).count();
    let recovered = lines
        .iter()
        .filter(|l| l.contains("pushed errored"))
        .count();
    eprintln!(
        "crash test: {killed} SIGKILLs ({} runs), every next run succeeded without unlock; \
         {recovered} errored.tfstate pushed; lineage kept, serial never lower",
        lines.len()
    );
    assert_eq!(killed, total);
}

/// The stored state document of `env`, parsed.
fn stored_doc(az: &Azurite, env: &str) -> Value {
    let r = block_on(
        az.blobs()
            .get("tfstate", &format!("{env}.terraform.tfstate")),
    );
    serde_json::from_slice(&r.body).expect("state JSON")
}

/// A project on `az` with the quick [`crate::support::STACK`], applied once to `env`;
/// returns it with the path of its `errored.tfstate`.
fn applied_once(az: &Azurite, env: &str) -> (Project, std::path::PathBuf) {
    let p = Project::on(az, "");
    p.run(&["up", env]).ok();
    let errored = p
        .path()
        .join(".nubes/work")
        .join(env)
        .join("errored.tfstate");
    (p, errored)
}

/// Regression (caught by the crash test): Terraform killed with its parent writes the
/// state it could not save to errored.tfstate, which the next run's sync of the working
/// copy deleted, forgetting the resources the killed run had created.
#[test]
fn errored_state_of_a_killed_run_is_pushed_before_the_next_plan() {
    let az = Azurite::http();
    let (p, errored) = applied_once(&az, "dev");
    let mut doc = stored_doc(&az, "dev");
    let serial = doc["serial"].as_i64().unwrap();
    doc["serial"] = (serial + 3).into();
    doc["resources"][0]["instances"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"index_key": 9, "schema_version": 0, "attributes": {"id": "made-by-the-killed-run"}}));
    std::fs::write(&errored, serde_json::to_vec(&doc).unwrap()).unwrap();

    let out = p.run(&["up", "dev", "--refresh"]).ok();
    assert!(
        out.stderr
            .contains("recovered the state an interrupted run of `dev` could not save"),
        "{}",
        out.stderr
    );
    assert!(
        !errored.exists(),
        "errored.tfstate was pushed, so it is gone"
    );
    // The pushed state was the plan's starting point: the instance only it knew about was
    // planned for destruction (Terraform would otherwise never have heard of it).
    assert!(out.stderr.contains("item[9]"), "{}", out.stderr);
    let after = stored_doc(&az, "dev");
    assert!(after["serial"].as_i64().unwrap() > serial + 3);
    assert!(!after.to_string().contains("made-by-the-killed-run"));
}

#[test]
fn errored_state_of_another_lineage_is_set_aside_not_pushed() {
    let az = Azurite::http();
    let (p, errored) = applied_once(&az, "dev");
    let before = stored_doc(&az, "dev");
    let mut doc = before.clone();
    doc["lineage"] = "another-history".into();
    doc["serial"] = 99.into();
    std::fs::write(&errored, serde_json::to_vec(&doc).unwrap()).unwrap();

    let out = p.run(&["up", "dev"]).ok();
    assert!(
        out.stderr
            .contains("did not push it: its lineage another-history is not the stored state's"),
        "{}",
        out.stderr
    );
    assert!(!errored.exists());
    let kept: Vec<_> = std::fs::read_dir(errored.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".kept"))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "the file is kept beside, for a person to check"
    );
    assert_eq!(
        stored_doc(&az, "dev"),
        before,
        "the stored state is untouched"
    );
    // A later run neither pushes nor deletes the kept copy.
    p.run(&["up", "dev", "--refresh"]).ok();
    assert!(kept[0].path().exists());
}

#[test]
fn errored_state_older_than_the_stored_state_is_set_aside() {
    let az = Azurite::http();
    let (p, errored) = applied_once(&az, "dev");
    let mut doc = stored_doc(&az, "dev");
    let serial = doc["serial"].as_i64().unwrap();
    doc["outputs"]["value"]["value"] = "stale".into();
    std::fs::write(&errored, serde_json::to_vec(&doc).unwrap()).unwrap();

    let out = p.run(&["up", "dev"]).ok();
    assert!(
        out.stderr.contains(&format!(
            "the stored state (serial {serial}) is newer than it (serial {serial})"
        )),
        "{}",
        out.stderr
    );
    assert!(!stored_doc(&az, "dev").to_string().contains("stale"));
}

#[test]
fn unreadable_errored_state_is_set_aside() {
    let az = Azurite::http();
    let (p, errored) = applied_once(&az, "dev");
    std::fs::write(&errored, b"{\"version\": 4, \"lin").unwrap();
    let out = p.run(&["up", "dev"]).ok();
    assert!(
        out.stderr.contains("did not push it: it is unreadable"),
        "{}",
        out.stderr
    );
}

#[test]
fn errored_state_beside_an_unreadable_stored_state_is_left_for_a_person() {
    let az = Azurite::http();
    let (p, errored) = applied_once(&az, "dev");
    let doc = stored_doc(&az, "dev");
    std::fs::write(&errored, serde_json::to_vec(&doc).unwrap()).unwrap();
    block_on(az.blobs().put(
        "tfstate",
        "dev.terraform.tfstate",
        b"{\"version\": 4, \"lin".to_vec(),
        &[],
    ));

    let out = p.run(&["up", "dev"]).code(1);
    assert!(
        out.stderr.contains("has an unreadable stored state")
            && out.stderr.contains("nubes state history dev"),
        "{}",
        out.stderr
    );
    assert!(errored.exists(), "neither document is touched");
}
