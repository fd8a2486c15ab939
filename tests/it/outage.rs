//! Storage outages: Azurite stopped in the middle of an apply and started again (the same
//! data on the same port), and Azurite down from the start. nubes retries storage with
//! backoff for `[state] timeout`; Terraform's state writes either land or the run fails
//! loudly with the stored state intact, and the next run recovers.

use std::time::{Duration, Instant};

use crate::crash::{Running, slow_project, spawn_in_own_group, stored};
use crate::support::{Azurite, Project};

/// Wait until the run's output has a line containing `what`; panics if it ends first.
fn wait_for_line(run: &mut Running, what: &str) {
    let started = Instant::now();
    loop {
        if run.lines.lock().unwrap().iter().any(|l| l.contains(what)) {
            return;
        }
        if let Some(status) = run.child.try_wait().expect("try_wait") {
            panic!(
                "nubes ended ({status}) before printing `{what}`:\n{}",
                run.lines.lock().unwrap().join("\n")
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no `{what}` within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for the run to end; its exit code and output.
fn finish(mut run: Running) -> (i32, String) {
    let status = run.child.wait().expect("wait");
    // The stderr reader ends with the pipe; give it a moment to take the last lines.
    std::thread::sleep(Duration::from_millis(200));
    let out = run.lines.lock().unwrap().join("\n");
    (status.code().unwrap_or(-1), out)
}

fn set_timeout(p: &Project, timeout: &str, n: &str) {
    let path = p.path().join("nubes.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let toml = toml
        .replace(
            "lease_seconds = 15\n",
            &format!("lease_seconds = 15\ntimeout = \"{timeout}\"\n"),
        )
        .replace("n = \"base\"", &format!("n = \"{n}\""));
    std::fs::write(path, toml).unwrap();
}

#[test]
fn storage_outage_mid_apply_is_ridden_out() {
    let mut az = Azurite::http();
    let p = slow_project(&az, "base");
    p.run(&["up", "dev"]).ok();
    let (lineage, serial, _) = stored(&az, "dev").unwrap();

    set_timeout(&p, "60s", "after-outage");
    let mut run = spawn_in_own_group(p.cmd(&["-v", "up", "dev"]));
    wait_for_line(&mut run, "Creating...");
    let started = Instant::now();
    // Azurite forgets leases when it restarts, so to nubes this is an outage longer
    // than the 15 s lease in which nobody else took the lock.
    az.pause();
    let stopped = started.elapsed();
    std::thread::sleep(Duration::from_secs(8));
    az.resume();
    let outage = started.elapsed();
    eprintln!(
        "Azurite stopped in {} ms, back after {} ms",
        stopped.as_millis(),
        outage.as_millis()
    );
    let (code, out) = finish(run);
    assert_eq!(
        code, 0,
        "the run should ride out a {outage:?} outage:\n{out}"
    );
    let failed = out
        .lines()
        .filter(|l| l.contains("storage ") && l.contains("-> error"))
        .count();
    assert!(
        failed >= 2,
        "storage requests were retried with backoff:\n{out}"
    );
    eprintln!(
        "rode out a {} ms outage; {failed} storage requests failed and were retried",
        outage.as_millis()
    );

    let (lin, after, n) = stored(&az, "dev").unwrap();
    assert_eq!(lin, lineage);
    assert!(after > serial, "serial {serial} -> {after}");
    assert_eq!(n, "after-outage", "the apply's state write landed");
}

#[test]
fn storage_outage_longer_than_the_timeout_fails_loudly_with_state_intact() {
    let mut az = Azurite::http();
    let p = slow_project(&az, "base");
    p.run(&["up", "dev"]).ok();
    let (lineage, serial, _) = stored(&az, "dev").unwrap();

    set_timeout(&p, "3s", "lost");
    let mut run = spawn_in_own_group(p.cmd(&["up", "dev"]));
    wait_for_line(&mut run, "Creating...");
    az.pause();
    let (code, out) = finish(run);
    az.resume();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("cannot connect to the state storage"),
        "the error names the storage:\n{out}"
    );
    assert!(
        out.contains("[state] timeout"),
        "and the setting to raise:\n{out}"
    );
    assert!(!out.contains("panicked"), "{out}");

    let (lin, now, _) = stored(&az, "dev").expect("state still there, valid JSON");
    assert_eq!(lin, lineage);
    assert!(now >= serial, "serial {serial} -> {now}");

    // Storage is back: the next run gets the lock (the old lease has expired or was
    // released) and applies, pushing Terraform's unsaved state first if it left one.
    let again = p.run(&["up", "dev"]);
    assert_eq!(again.code, 0, "{}", again.all());
    let (lin, last, n) = stored(&az, "dev").unwrap();
    assert_eq!(lin, lineage);
    assert!(last > now);
    assert_eq!(n, "lost");
}

#[test]
fn storage_down_from_the_start_is_a_clear_error_within_the_timeout() {
    let mut az = Azurite::http();
    let mut p = Project::on(&az, "[state]\ntimeout = \"4s\"\n");
    az.stop();
    for args in [
        &["up", "dev"][..],
        &["plan", "dev"],
        &["list"],
        &["status", "dev"],
    ] {
        let started = Instant::now();
        let out = p.run(args).code(1);
        let took = started.elapsed();
        assert!(
            out.stderr.contains("cannot connect to the state storage"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("nubes retried for 4s ([state] timeout)"),
            "{args:?}: {}",
            out.stderr
        );
        // Not a speed target but the promise of [state] timeout: each attempt fails at
        // once on a closed port, so nubes gives up within the 4 s (plus start-up; the
        // margin is for loaded machines).
        assert!(took < Duration::from_secs(7), "{args:?} took {took:?}");
        eprintln!("{args:?}: exit 1 after {} ms", took.as_millis());
    }
    assert!(
        !p.path().join(".nubes/work/dev").exists(),
        "nothing was rendered without the lock"
    );
    // The same through the environment variable.
    p.set_env("NUBES_STATE_TIMEOUT", "2s");
    let out = p.run(&["list"]).code(1);
    assert!(
        out.stderr.contains("nubes retried for 2s"),
        "{}",
        out.stderr
    );
}
