//! Releases (issue 15) on real Azurite and real Terraform: every deploy kept
//! content-addressed in the state account, `nubes releases`, `rollback` (also after a
//! SIGKILL), the automatic rollback after a failed health check, and `promote` without
//! a build.
//!
//! The site is a static site in Azurite's `$web` container made publicly readable, so
//! the health check reads what was really deployed: `health.txt` answers 200 when the
//! release carries it and 404 when it does not.

use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::support::{Azurite, LoggedRequest, Project, block_on};

/// Lower-case hex SHA-256: the name a kept file is stored under.
fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kept files (`nubes-releases/demo/files/<sha256>`) among `requests` fetched by GET.
fn files_fetched(requests: &[LoggedRequest]) -> Vec<String> {
    let prefix = format!("/{}/nubes-releases/demo/files/", crate::support::ACCOUNT);
    requests
        .iter()
        .filter(|r| r.method == "GET")
        .filter_map(|r| r.path.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// Requests to `$web`: (List Blobs calls, blob PUTs, blob DELETEs).
fn web_calls(requests: &[LoggedRequest]) -> (usize, usize, usize) {
    let container = format!("/{}/$web", crate::support::ACCOUNT);
    let blob = format!("{container}/");
    let count = |f: &dyn Fn(&LoggedRequest) -> bool| requests.iter().filter(|r| f(r)).count();
    (
        count(&|r| r.method == "GET" && r.path == container && r.query.contains("comp=list")),
        count(&|r| r.method == "PUT" && r.path.starts_with(&blob)),
        count(&|r| r.method == "DELETE" && r.path.starts_with(&blob)),
    )
}

fn stack(az: &Azurite) -> String {
    let url = az.account_url();
    format!(
        r#"
terraform {{
  backend "azurerm" {{}}
}}
variable "environment" {{
  type = string
}}
output "static_site_account_url" {{
  value = "{url}"
}}
output "application_url" {{
  value = "{url}/$web"
}}
"#
    )
}

fn toml(extra_deploy: &str, extra: &str) -> String {
    format!(
        "[state]\nlease_seconds = 15\nlock_timeout = \"2m\"\n\n\
         [build]\ncommand = \"rm -rf dist && cp -r site dist && touch build-ran\"\nartifact = \"dist\"\n\n\
         [deploy]\ntarget = \"static-site\"\nhealth_path = \"/health.txt\"\nhealth_timeout = \"5s\"\n{extra_deploy}\n{extra}"
    )
}

/// A project whose state and site both live in `az` (plain HTTP + SAS), `$web` public.
fn project(az: &Azurite, extra_deploy: &str, extra: &str) -> Project {
    let p = Project::on(az, &toml(extra_deploy, extra));
    std::fs::write(p.path().join("terraform/main.tf"), stack(az)).unwrap();
    let r = block_on(az.blobs().send(
        "PUT",
        "$web",
        "restype=container",
        &[("x-ms-blob-public-access", "blob".to_string())],
        vec![],
    ));
    assert!(
        r.status == 201 || r.status == 409,
        "create $web: {}",
        r.status
    );
    p
}

/// Replace the site's source with `files`.
fn site(p: &Project, files: &[(&str, &str)]) {
    let dir = p.path().join("site");
    let _ = std::fs::remove_dir_all(&dir);
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn v1() -> Vec<(String, String)> {
    let mut files = vec![
        ("health.txt".to_string(), "ok".to_string()),
        ("index.html".to_string(), "<h1>v1</h1>".to_string()),
    ];
    for i in 0..20 {
        files.push((format!("assets/f{i}.js"), format!("console.log({i});")));
    }
    files
}

fn as_refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn releases(p: &Project, env: &str) -> Vec<Value> {
    let out = p.run(&["releases", env, "--json"]).ok();
    json(&out.stdout)["releases"].as_array().unwrap().clone()
}

fn served(az: &Azurite, name: &str) -> (u16, Vec<u8>, String) {
    let r = block_on(az.blobs().get("$web", name));
    let etag = r.headers.get("etag").cloned().unwrap_or_default();
    (r.status, r.body, etag)
}

#[test]
fn rollback_serves_v1_again_uploading_only_what_differs_and_releases_mark_the_live_one() {
    // Azurite's own request log shows what the rollback fetched and sent.
    let az = Azurite::http_logged();
    let p = project(&az, "", "");
    let v1 = v1();
    site(&p, &as_refs(&v1));
    p.run(&["up", "alice"]).ok();
    let (_, _, asset_etag) = served(&az, "assets/f0.js");

    let mut v2 = v1.clone();
    v2[1].1 = "<h1>v2</h1>".into();
    v2.push(("new.js".into(), "new".into()));
    site(&p, &as_refs(&v2));
    p.run(&["up", "alice"]).ok();
    assert_eq!(served(&az, "index.html").1, b"<h1>v2</h1>");

    let listed = releases(&p, "alice");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["live"], true);
    assert_eq!(listed[1]["live"], false);
    assert_eq!(listed[0]["verdict"], "healthy");
    assert_ne!(listed[0]["digest"], listed[1]["digest"]);
    let v1_digest = listed[1]["digest"].clone();
    // The digest is the one `up` records as the environment's artifact.
    let status = json(&p.run(&["status", "alice", "--json"]).ok().stdout);
    assert_eq!(
        status["deploy"]["artifact"], listed[0]["digest"],
        "{status}"
    );

    std::fs::remove_file(p.path().join("build-ran")).unwrap();
    let before = az.mark();
    let out = p.run(&["rollback", "alice"]).ok();
    let requests = az.requests_between(before, az.mark());
    assert!(
        out.stdout.contains("infrastructure untouched"),
        "{}",
        out.all()
    );
    // Only the one file `$web` did not serve (v1's index.html) was fetched from the
    // release; `$web` was listed once, one blob uploaded and v2's extra file deleted.
    assert_eq!(
        files_fetched(&requests),
        [sha256("<h1>v1</h1>")],
        "{requests:#?}"
    );
    assert_eq!(web_calls(&requests), (1, 1, 1), "{requests:#?}");
    assert!(
        !p.path().join("build-ran").exists(),
        "rollback must not build"
    );
    // The served bytes are v1's, every file; v2's extra file is gone.
    for (name, text) in &v1 {
        let (status, body, _) = served(&az, name);
        assert_eq!((status, body), (200, text.as_bytes().to_vec()), "{name}");
    }
    assert_eq!(served(&az, "new.js").0, 404);
    // An unchanged file was not uploaded again (same ETag since the first deploy).
    assert_eq!(served(&az, "assets/f0.js").2, asset_etag);
    assert!(
        out.stderr.contains("1 uploaded, 21 unchanged, 1 deleted"),
        "{}",
        out.all()
    );

    let listed = releases(&p, "alice");
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0]["digest"], v1_digest);
    assert_eq!(listed[0]["action"], "rollback");
    assert_eq!(listed[0]["live"], true);
    assert!(listed[1..].iter().all(|r| r["live"] == false));
    let status = json(&p.run(&["status", "alice", "--json"]).ok().stdout);
    assert_eq!(status["deploy"]["artifact"], v1_digest, "{status}");
    assert_eq!(status["activity"]["what"], "rollback", "{status}");
    let text = p.run(&["releases", "alice"]).ok().stdout;
    let live_line = text.lines().find(|l| l.starts_with("live")).unwrap();
    assert!(
        live_line.contains(&v1_digest.as_str().unwrap()[7..19]),
        "{text}"
    );

    // --to names any kept release (here with --json: one document on stdout); a bad
    // one is a usage error, and its error object is the document.
    let v2_id = listed[1]["id"].as_str().unwrap().to_string();
    let out = p.run(&["rollback", "alice", "--to", &v2_id, "--json"]).ok();
    assert_eq!(served(&az, "index.html").1, b"<h1>v2</h1>");
    let doc = json(&out.stdout);
    assert_eq!(doc["schema"], 1, "{doc}");
    assert_eq!(doc["command"], "rollback", "{doc}");
    assert_eq!(doc["environment"], "alice", "{doc}");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["to"], v2_id.as_str(), "{doc}");
    assert_eq!(doc["release"]["id"], v2_id.as_str(), "{doc}");
    assert_eq!(doc["release"]["digest"], listed[1]["digest"], "{doc}");
    assert_eq!(doc["verdict"], "healthy", "{doc}");
    assert_eq!(doc["rolled_back"], true, "{doc}");
    assert_eq!(doc["infrastructure"], "untouched", "{doc}");
    assert_eq!(doc["target"], "static-site", "{doc}");
    assert_eq!(doc["by_slot_swap"], false, "{doc}");
    assert!(
        !out.stdout.contains("infrastructure untouched:"),
        "{}",
        out.stdout
    );
    let bad = p
        .run(&["rollback", "alice", "--to", "0000000", "--json"])
        .code(2);
    assert!(bad.stderr.contains("no kept release"), "{}", bad.all());
    let doc = json(&bad.stdout);
    assert_eq!(
        (doc["ok"].clone(), doc["error"]["exit_code"].clone()),
        (Value::Bool(false), 2.into()),
        "{doc}"
    );
}

#[test]
fn a_rollback_whose_kept_file_is_missing_or_corrupt_stops_before_deploying_anything() {
    let az = Azurite::http();
    let p = project(&az, "", "");
    site(&p, &as_refs(&v1()));
    p.run(&["up", "frank"]).ok();
    let mut v2 = v1();
    v2[1].1 = "<h1>v2</h1>".into();
    site(&p, &as_refs(&v2));
    p.run(&["up", "frank"]).ok();
    let live = releases(&p, "frank")[0]["digest"].clone();
    let unchanged = |what: &str| {
        assert_eq!(served(&az, "index.html").1, b"<h1>v2</h1>", "{what}");
        let listed = releases(&p, "frank");
        assert_eq!(listed.len(), 2, "{what}: {listed:?}");
        assert_eq!(listed[0]["digest"], live, "{what}");
        assert_eq!(listed[0]["live"], true, "{what}");
    };
    let kept = |text: &str| format!("demo/files/{}", sha256(text));
    let tamper = |text: &str, with: &str| {
        block_on(
            az.blobs()
                .put("nubes-releases", &kept(text), with.as_bytes().to_vec(), &[]),
        );
    };

    // The file `$web` lacks (v1's index.html) holds other bytes under its name.
    tamper("<h1>v1</h1>", "<h1>tampered</h1>");
    let out = p.run(&["rollback", "frank"]).code(1);
    assert!(
        out.stderr
            .contains("kept file for index.html does not match its digest")
            && out.stderr.contains("choose another with --to"),
        "{}",
        out.all()
    );
    unchanged("corrupt file $web lacks");
    tamper("<h1>v1</h1>", "<h1>v1</h1>");

    // A file `$web` serves already: its kept blob no longer matches, so it is fetched
    // and checked too.
    tamper("console.log(3);", "console.log(666);");
    let out = p.run(&["rollback", "frank"]).code(1);
    assert!(
        out.stderr
            .contains("kept file for assets/f3.js does not match its digest"),
        "{}",
        out.all()
    );
    unchanged("corrupt file $web serves");
    tamper("console.log(3);", "console.log(3);");

    // A kept file deleted from the container.
    let gone = block_on(az.blobs().send(
        "DELETE",
        &format!("nubes-releases/{}", kept("console.log(7);")),
        "",
        &[],
        vec![],
    ));
    assert_eq!(gone.status, 202);
    let out = p.run(&["rollback", "frank"]).code(1);
    assert!(
        out.stderr
            .contains("the release's file assets/f7.js (sha256 ")
            && out
                .stderr
                .contains("is missing from the releases container"),
        "{}",
        out.all()
    );
    unchanged("missing file");
}

#[test]
fn a_failed_health_check_redeploys_the_previous_release_and_exits_1_naming_both() {
    let az = Azurite::http();
    let mut p = project(&az, "", "");
    let summary = p.path().join("summary.md");
    p.set_env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    site(&p, &as_refs(&v1()));
    let up = p.run(&["up", "bob"]).ok();
    let listed = releases(&p, "bob");
    assert_eq!(listed.len(), 1, "{}", up.all());
    let good = listed[0]["id"].as_str().unwrap().to_string();

    // v2 lacks health.txt: the health check answers 404.
    let broken: Vec<(String, String)> = v1()
        .into_iter()
        .filter(|(n, _)| n != "health.txt")
        .map(|(n, t)| {
            if n == "index.html" {
                (n, "<h1>broken</h1>".into())
            } else {
                (n, t)
            }
        })
        .collect();
    site(&p, &as_refs(&broken));
    let outputs = p.path().join("github-output");
    p.set_env("GITHUB_OUTPUT", outputs.to_str().unwrap());
    let out = p.run(&["up", "bob"]).code(1);
    let listed = releases(&p, "bob");
    let bad = listed
        .iter()
        .find(|r| r["action"] == "deploy" && r["verdict"] == "unhealthy")
        .unwrap_or_else(|| panic!("{listed:?}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.stderr
            .contains(&format!("release {bad} failed its health check"))
            && out
                .stderr
                .contains(&format!("rolled back to release {good}: healthy")),
        "{}",
        out.all()
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains(&bad) && md.contains(&good) && md.contains("healthy"),
        "{md}"
    );
    // The previous release serves again, and is the live one.
    assert_eq!(served(&az, "index.html").1, b"<h1>v1</h1>");
    assert_eq!(served(&az, "health.txt").1, b"ok");
    assert_eq!(listed[0]["id"], good.as_str());
    assert_eq!(listed[0]["action"], "auto-rollback");
    // The run failed, yet the workflow's later steps learn what is live.
    let written = std::fs::read_to_string(&outputs).unwrap_or_default();
    let output = |name: &str| crate::pipeline::gh_output(&written, name);
    assert_eq!(
        output("release_id").as_deref(),
        Some(good.as_str()),
        "{written}"
    );
    assert_eq!(
        output("release_digest").as_deref(),
        listed[0]["digest"].as_str(),
        "{written}"
    );
    assert_eq!(output("rolled_back").as_deref(), Some("true"), "{written}");
    assert_eq!(output("environment").as_deref(), Some("bob"), "{written}");
    assert_eq!(listed[0]["live"], true);
    let status = json(&p.run(&["status", "bob", "--json"]).ok().stdout);
    assert_eq!(status["deploy"]["release"], good.as_str(), "{status}");
    assert_eq!(status["deploy"]["rolled_back"], true, "{status}");
    assert_eq!(status["health"]["verdict"], "healthy", "{status}");
}

#[test]
fn promote_ships_the_candidates_digest_without_building_and_refuses_an_unhealthy_candidate() {
    let az = Azurite::http();
    let p = project(
        &az,
        "rollback_on_failure = false",
        "[environments.production]\nprotected = true\n",
    );
    site(&p, &as_refs(&v1()));
    p.run(&["up", "candidate"]).ok();
    let candidate = releases(&p, "candidate")[0].clone();

    std::fs::remove_file(p.path().join("build-ran")).unwrap();
    // A protected environment needs --force from another branch.
    let refused = p.run(&["promote", "candidate", "production"]).code(2);
    assert!(refused.stderr.contains("protected"), "{}", refused.all());
    let out = p
        .run(&["promote", "candidate", "production", "--force", "--json"])
        .ok();
    assert!(
        !p.path().join("build-ran").exists(),
        "promote must not start a build: {}",
        out.all()
    );
    // `up`'s document as promote's: the infrastructure stage, the release, the verdict.
    let doc = json(&out.stdout);
    assert_eq!(doc["schema"], 1, "{doc}");
    assert_eq!(doc["command"], "promote", "{doc}");
    assert_eq!(doc["environment"], "production", "{doc}");
    assert_eq!(doc["from"], "candidate", "{doc}");
    assert_eq!(doc["release"]["digest"], candidate["digest"], "{doc}");
    assert_eq!(doc["verdict"], "healthy", "{doc}");
    assert_eq!(doc["changes"], true, "{doc}");
    assert!(
        doc["application_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/$web")),
        "{doc}"
    );
    let promoted = releases(&p, "production");
    assert_eq!(promoted[0]["digest"], candidate["digest"]);
    assert_eq!(promoted[0]["action"], "promote from candidate");
    assert_eq!(promoted[0]["verdict"], "healthy");
    let status = json(&p.run(&["status", "production", "--json"]).ok().stdout);
    assert_eq!(
        status["deploy"]["artifact"], candidate["digest"],
        "{status}"
    );
    assert_eq!(
        status["activity"]["what"], "promote from candidate",
        "{status}"
    );
    // Promotion brought production's infrastructure up (its own state exists).
    assert_eq!(
        block_on(
            az.blobs()
                .properties("tfstate", "production.terraform.tfstate")
        )
        .status,
        200
    );

    // An unhealthy candidate is not promoted.
    let broken: Vec<(String, String)> = v1()
        .into_iter()
        .filter(|(n, _)| n != "health.txt")
        .collect();
    site(&p, &as_refs(&broken));
    p.run(&["up", "candidate"]).code(1);
    let refused = p
        .run(&["promote", "candidate", "production", "--force"])
        .code(2);
    assert!(
        refused.stderr.contains("last health verdict is unhealthy"),
        "{}",
        refused.all()
    );
    assert_eq!(releases(&p, "production").len(), 1);
}

/// Wait until the state blob of `env` is leased (the command holds the lock).
fn wait_for_lock(az: &Azurite, env: &str, child: &mut std::process::Child) {
    let started = Instant::now();
    loop {
        let r = block_on(
            az.blobs()
                .properties("tfstate", &format!("{env}.terraform.tfstate")),
        );
        if r.headers.get("x-ms-lease-state").map(String::as_str) == Some("leased") {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the rollback ended before it was killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the rollback never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_rollback_leaves_a_lock_that_expires_and_the_next_rollback_and_up_complete() {
    let az = Azurite::http();
    let p = project(&az, "", "");
    site(&p, &as_refs(&v1()));
    p.run(&["up", "carol"]).ok();
    let mut v2 = v1();
    v2[1].1 = "<h1>v2</h1>".into();
    site(&p, &as_refs(&v2));
    p.run(&["up", "carol"]).ok();

    let mut child = p.spawn(&["rollback", "carol"]);
    wait_for_lock(&az, "carol", &mut child);
    child.kill().expect("SIGKILL the rollback");
    let _ = child.wait();

    // The next rollback waits for the lease to expire (lease_seconds = 15), then runs.
    let out = p.run(&["rollback", "carol"]).ok();
    assert!(out.stdout.contains("is live in `carol`"), "{}", out.all());
    assert_eq!(served(&az, "index.html").1, b"<h1>v1</h1>");
    p.run(&["up", "carol"]).ok();
    assert_eq!(served(&az, "index.html").1, b"<h1>v2</h1>");
}

/// The blob names of a container listing (for the pruning test).
fn names(listing: &str) -> Vec<String> {
    listing
        .split("<Name>")
        .skip(1)
        .filter_map(|s| s.split("</Name>").next())
        .map(str::to_string)
        .collect()
}

#[test]
fn keep_releases_prunes_old_releases_but_never_a_live_one() {
    let az = Azurite::http();
    let p = project(&az, "keep_releases = 2", "");
    let mut firsts = Vec::new();
    for i in 0..4 {
        let mut files = v1();
        files[1].1 = format!("<h1>v{i}</h1>");
        files.push((format!("only-{i}.txt"), format!("{i}")));
        site(&p, &as_refs(&files));
        p.run(&["up", "dave"]).ok();
        if i == 0 {
            // Another environment keeps release 0 live: it must survive dave's pruning.
            p.run(&["up", "erin"]).ok();
        }
        firsts.push(releases(&p, "dave")[0]["digest"].as_str().unwrap()[7..].to_string());
    }
    let listed = releases(&p, "dave");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let blobs = names(&block_on(az.blobs().list("nubes-releases", "metadata")));
    let artifact = |hex: &str| blobs.iter().any(|b| b == &format!("demo/{hex}"));
    assert!(artifact(&firsts[0]), "live in erin: {blobs:?}");
    assert!(!artifact(&firsts[1]), "pruned: {blobs:?}");
    assert!(artifact(&firsts[2]) && artifact(&firsts[3]), "{blobs:?}");
    // Files only release 1 used are gone; shared ones stay once.
    let files: Vec<&String> = blobs
        .iter()
        .filter(|b| b.starts_with("demo/files/"))
        .collect();
    // 20 assets + health.txt, 3 index.html variants (0, 2, 3), only-0/2/3.
    assert_eq!(files.len(), 21 + 3 + 3, "{files:?}");
}

/// `len` bytes that do not compress (xorshift64 from `seed`): a packaged app's
/// binaries and assets, so the zip nubes sends is as big as the folder.
fn incompressible(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Benchmark driver (`scripts/bench.sh releases`): rollback vs build + deploy of the
/// same release for an App Service app of 50 MB through the in-test Kudu server
/// (`kudu::fake`, the deployment polled to Success as Kudu reports it), state and
/// releases on Azurite. v1 is deployed, then v2 (`server.js` changed); then (a)
/// `nubes rollback` puts v1 back from its kept zip, no build, and (b) `nubes up` builds
/// v1 again and deploys it. The build is `sleep S; cp -r src out`
/// (`NUBES_BENCH_BUILD_SECONDS`, default 10), standing in for `npm ci && npm run build`.
/// Prints a Markdown table; `NUBES_BENCH_RUNS` runs (default 3), medians.
/// `NUBES_BENCH_BIN`: the nubes binary to measure (default: this test build's).
#[test]
#[ignore = "benchmark driver: scripts/bench.sh releases"]
fn bench_app_service_rollback_50mb() {
    use crate::kudu::fake::{self, FakeKudu, Script};
    let env_num = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let runs = env_num("NUBES_BENCH_RUNS", 3.0).max(1.0) as usize;
    let build_seconds = env_num("NUBES_BENCH_BUILD_SECONDS", 10.0);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let bin = std::env::var_os("NUBES_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_nubes").into());
    let nubes = |p: &Project, args: &[&str]| -> crate::support::Out {
        crate::support::Out::from(p.cmd_of(&bin, args).output().expect("run nubes")).ok()
    };
    let (mut rollback, mut rebuild) = (Vec::new(), Vec::new());
    let mut zip_size = 0u64;
    for run in 0..runs {
        let az = Azurite::http();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let kudu = runtime.block_on(FakeKudu::start(Script::Succeed));
        let mut p = Project::on(
            &az,
            &format!(
                "[build]\ncommand = \"sleep {build_seconds}; rm -rf out && cp -r src out\"\nartifact = \"out\"\n\n\
                 [deploy]\ntarget = \"app-service\"\nhealth_timeout = \"30s\"\n"
            ),
        );
        std::fs::write(
            p.path().join("terraform/main.tf"),
            format!(
                "terraform {{\n  backend \"azurerm\" {{}}\n}}\nvariable \"environment\" {{\n  type = string\n}}\n\
                 output \"scm_url\" {{\n  value = \"{}\"\n}}\noutput \"application_url\" {{\n  value = \"{}\"\n}}\n",
                kudu.scm_url, kudu.site_url
            ),
        )
        .unwrap();
        p.set_env("NUBES_KUDU_TOKEN", &fake::token(fake::APP_SERVICE_AUDIENCE));
        let src = p.path().join("src");
        std::fs::create_dir_all(src.join("assets")).unwrap();
        for i in 0..50u64 {
            std::fs::write(
                src.join(format!("assets/blob{i:02}.bin")),
                incompressible(i + 1, 1_000_000),
            )
            .unwrap();
        }
        let version = |v: &str| {
            std::fs::write(src.join("server.js"), format!("console.log('{v}');\n")).unwrap();
        };
        let env = format!("app{run}");
        version("v1");
        nubes(&p, &["up", &env]);
        version("v2");
        nubes(&p, &["up", &env]);
        let listed = releases(&p, &env);
        zip_size = listed[0]["size"].as_u64().unwrap_or(0);
        let v2_id = listed[0]["id"].as_str().unwrap().to_string();

        let t = Instant::now();
        nubes(&p, &["rollback", &env]);
        rollback.push(t.elapsed().as_secs_f64());
        assert_eq!(
            kudu.file("server.js").as_deref(),
            Some(&b"console.log('v1');\n"[..])
        );

        // Back to v2, then v1 again the way it is done without releases.
        nubes(&p, &["rollback", &env, "--to", &v2_id]);
        version("v1");
        let t = Instant::now();
        nubes(&p, &["up", &env]);
        rebuild.push(t.elapsed().as_secs_f64());
        assert_eq!(
            kudu.file("server.js").as_deref(),
            Some(&b"console.log('v1');\n"[..])
        );
    }
    let (r, u) = (median(&mut rollback), median(&mut rebuild));
    println!(
        "| App Service, {:.1} MB zip (in-test Kudu, Azurite over HTTP + SAS; build = sleep {build_seconds} s + copy) | median of {runs} |",
        zip_size as f64 / 1e6
    );
    println!("|---|---|");
    println!(
        "| `nubes up` of v1 again: build + package + deploy | {:.0} ms |",
        u * 1000.0
    );
    println!(
        "| `nubes rollback` to v1: fetch the kept zip, deploy it, no build | {:.0} ms |",
        r * 1000.0
    );
    println!(
        "| ratio rollback / (build + deploy) | **{:.2}** (target ≤ 0.2) |",
        r / u
    );
}

/// Benchmark driver (`scripts/bench.sh releases`): the App Service rollback of
/// [`bench_app_service_rollback_50mb`] with `[deploy] slot = "staging"`. Production
/// and the slot are two in-test Kudu servers, swapped by the in-test Resource Manager
/// (`arm::slots`: `slotsswap` answers 202, its operation 202 once more, then 200, each
/// with `Retry-After: 1`, which nubes honours, so a swap takes about 2 s here; a real
/// swap warms the slot's instances first and can take minutes). v1 and v2 go live
/// through the slot (the slot then serves v1); (a) `nubes rollback` swaps the slot back
/// in (its Kudu's latest deployment names v1: no fetch, no upload), and (b) `nubes up`
/// builds v1 again, deploys it to the slot and swaps. Same variables as the other driver.
#[test]
#[ignore = "benchmark driver: scripts/bench.sh releases"]
fn bench_app_service_slot_rollback_50mb() {
    use crate::arm::fake::SUBSCRIPTION;
    use crate::blue_green::{ARM_TOKEN, slots};
    use crate::kudu::fake::{self, FakeKudu, Site};
    let env_num = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let runs = env_num("NUBES_BENCH_RUNS", 3.0).max(1.0) as usize;
    let build_seconds = env_num("NUBES_BENCH_BUILD_SECONDS", 10.0);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let bin = std::env::var_os("NUBES_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_nubes").into());
    let nubes = |p: &Project, args: &[&str]| -> crate::support::Out {
        crate::support::Out::from(p.cmd_of(&bin, args).output().expect("run nubes")).ok()
    };
    let (mut rollback, mut rebuild) = (Vec::new(), Vec::new());
    let mut zip_size = 0u64;
    for run in 0..runs {
        let az = Azurite::http();
        let slots = slots(Site::default(), Site::default());
        let (production, staging, arm) = (&slots.production, &slots.staging, &slots.arm);
        let mut p = Project::on(
            &az,
            &format!(
                "[build]\ncommand = \"sleep {build_seconds}; rm -rf out && cp -r src out\"\nartifact = \"out\"\n\n\
                 [deploy]\ntarget = \"app-service\"\nslot = \"staging\"\nhealth_timeout = \"30s\"\n"
            ),
        );
        let mut stack = "terraform {\n  backend \"azurerm\" {}\n}\nvariable \"environment\" {\n  type = string\n}\n".to_string();
        for (name, value) in [
            ("scm_url", production.scm_url.as_str()),
            ("application_url", production.site_url.as_str()),
            ("slot_scm_url", staging.scm_url.as_str()),
            ("slot_url", staging.site_url.as_str()),
            ("resource_group", "rg-demo"),
            ("app_name", "app-demo"),
        ] {
            stack.push_str(&format!(
                "output \"{name}\" {{\n  value = \"{value}\"\n}}\n"
            ));
        }
        std::fs::write(p.path().join("terraform/main.tf"), stack).unwrap();
        p.set_env("NUBES_KUDU_TOKEN", &fake::token(fake::APP_SERVICE_AUDIENCE));
        p.set_env("NUBES_ARM_ENDPOINT", &arm.endpoint);
        p.set_env("NUBES_ARM_TOKEN", ARM_TOKEN);
        p.set_env("ARM_SUBSCRIPTION_ID", SUBSCRIPTION);
        let src = p.path().join("src");
        std::fs::create_dir_all(src.join("assets")).unwrap();
        for i in 0..50u64 {
            std::fs::write(
                src.join(format!("assets/blob{i:02}.bin")),
                incompressible(i + 1, 1_000_000),
            )
            .unwrap();
        }
        let version = |v: &str| {
            std::fs::write(src.join("server.js"), format!("console.log('{v}');\n")).unwrap();
        };
        let serves = |k: &FakeKudu| k.file("server.js");
        let v1 = Some(b"console.log('v1');\n".to_vec());
        let env = format!("slot{run}");
        version("v1");
        nubes(&p, &["up", &env]);
        version("v2");
        nubes(&p, &["up", &env]);
        let listed = releases(&p, &env);
        zip_size = listed[0]["size"].as_u64().unwrap_or(0);
        let v2_id = listed[0]["id"].as_str().unwrap().to_string();

        let uploads = production.posts().len() + staging.posts().len();
        let t = Instant::now();
        let out = nubes(&p, &["rollback", &env]);
        rollback.push(t.elapsed().as_secs_f64());
        assert_eq!(serves(production), v1, "{}", out.all());
        assert_eq!(
            production.posts().len() + staging.posts().len(),
            uploads,
            "the rollback swapped: {}",
            out.all()
        );

        // Back to v2 (one more swap), then v1 again the way it is done without releases.
        nubes(&p, &["rollback", &env, "--to", &v2_id]);
        version("v1");
        let t = Instant::now();
        nubes(&p, &["up", &env]);
        rebuild.push(t.elapsed().as_secs_f64());
        assert_eq!(serves(production), v1);
    }
    let (r, u) = (median(&mut rollback), median(&mut rebuild));
    println!(
        "| App Service with a slot, {:.1} MB zip (in-test Kudu ×2 and Resource Manager, Azurite over HTTP + SAS; build = sleep {build_seconds} s + copy) | median of {runs} |",
        zip_size as f64 / 1e6
    );
    println!("|---|---|");
    println!(
        "| `nubes up` of v1 again: build + package + deploy to the slot + swap | {:.0} ms |",
        u * 1000.0
    );
    println!(
        "| `nubes rollback` to v1: the slot serves it, one swap, nothing uploaded | {:.0} ms |",
        r * 1000.0
    );
    println!(
        "| ratio rollback / (build + deploy) | **{:.2}** (target ≤ 0.2) |",
        r / u
    );
}

/// The number in nubes's debug line "N artifact file reads" (logged at exit).
fn artifact_reads(stderr: &str) -> usize {
    stderr
        .lines()
        .find_map(|l| {
            let (before, _) = l.split_once(" artifact file reads")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no artifact read count in:\n{stderr}"))
}

#[test]
fn one_up_keeps_the_release_byte_for_byte_as_web_serves_it_hashing_each_file_once() {
    use base64::Engine as _;
    use md5::Digest as _;
    let az = Azurite::http();
    let mut p = project(&az, "", "");
    p.set_env("NUBES_LOG", "nubes=debug");
    // Larger than a block (4 MiB: three blocks, the last one short), small files, two
    // files with the same content (stored once), and a `.DS_Store`, which the digest
    // counts and `$web` never gets.
    let big: Vec<u8> = (0..(9 << 20) + 12_345u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("health.txt".into(), b"ok".to_vec()),
        ("index.html".into(), b"<h1>one</h1>".to_vec()),
        ("media/big.bin".into(), big),
        ("assets/a.js".into(), b"same".to_vec()),
        ("assets/b.js".into(), b"same".to_vec()),
        (".DS_Store".into(), b"finder".to_vec()),
    ];
    for i in 0..10 {
        files.push((
            format!("assets/f{i}.css"),
            format!("p{{order:{i}}}").into_bytes(),
        ));
    }
    let write_site = |files: &[(String, Vec<u8>)]| {
        let dir = p.path().join("site");
        let _ = std::fs::remove_dir_all(&dir);
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    };
    write_site(&files);
    let out = p.run(&["up", "alice"]).ok();

    // The recorded digest is the one nubes always gave this folder (the manifest's
    // SHA-256, walked and hashed separately here).
    let expected = nubes::deploy::digest(&p.path().join("dist")).unwrap();
    let listed = releases(&p, "alice");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["digest"], expected.as_str());
    let status = json(&p.run(&["status", "alice", "--json"]).ok().stdout);
    assert_eq!(status["deploy"]["artifact"], expected.as_str(), "{status}");
    let hex = expected.trim_start_matches("sha256:");
    let manifest = block_on(az.blobs().get("nubes-releases", &format!("demo/{hex}")));
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest
            .body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        files.len()
    );

    // Every file: `$web` and the kept release hold its very bytes, each with the
    // Content-MD5 of those bytes.
    for (name, bytes) in &files {
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes));
        let sha = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let kept = block_on(
            az.blobs()
                .get("nubes-releases", &format!("demo/files/{sha}")),
        );
        assert_eq!(kept.status, 200, "{name} not kept");
        assert!(kept.body == *bytes, "{name}: kept bytes differ");
        assert_eq!(kept.headers.get("content-md5"), Some(&md5), "{name} kept");
        let served = block_on(az.blobs().get("$web", name));
        if name == ".DS_Store" {
            assert_eq!(served.status, 404, "{name} must not be deployed");
            continue;
        }
        assert_eq!(served.status, 200, "{name}");
        assert!(served.body == *bytes, "{name}: served bytes differ");
        assert_eq!(
            served.headers.get("content-md5"),
            Some(&md5),
            "{name} served"
        );
    }

    // Reads: the sync reads each file it deploys once (MD5 and SHA-256 from that one
    // read); the digest is made from those digests (only `.DS_Store`, which the sync
    // skips, is read for it). After the health check, the release keeper reads each
    // content its container lacks once (15 distinct contents: the two `same` files are
    // stored once). Before, `up` read every file for the digest, again to sync, again
    // to keep the release, and each new one once more to store it (16 + 15 + 16 + 15
    // = 62 here).
    let distinct = 15;
    assert_eq!(
        artifact_reads(&out.stderr),
        (files.len() - 1) + 1 + distinct,
        "{}",
        out.stderr
    );

    // One file changed: the sync reads every file once, the keeper only the new one.
    files[1].1 = b"<h1>two</h1>".to_vec();
    write_site(&files);
    let out = p.run(&["up", "alice"]).ok();
    assert_eq!(
        artifact_reads(&out.stderr),
        files.len() + 1,
        "{}",
        out.stderr
    );
    let listed = releases(&p, "alice");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        listed[0]["digest"],
        nubes::deploy::digest(&p.path().join("dist"))
            .unwrap()
            .as_str()
    );
    assert_eq!(
        block_on(az.blobs().get("$web", "index.html")).body,
        b"<h1>two</h1>"
    );

    // And the first release still rolls back from what was kept.
    p.run(&["rollback", "alice"]).ok();
    for (name, bytes) in files.iter().filter(|(n, _)| n != ".DS_Store") {
        let want = if name == "index.html" {
            b"<h1>one</h1>".to_vec()
        } else {
            bytes.clone()
        };
        assert!(
            block_on(az.blobs().get("$web", name)).body == want,
            "{name}"
        );
    }
}
