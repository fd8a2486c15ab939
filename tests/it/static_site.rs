//! The `static-site` deploy target (`nubes::deploy::static_site`) against real Azurite:
//! bearer token over HTTPS and SAS over HTTP. Storage is inspected with raw Blob REST
//! (`support::Blobs`), independently of the SDK nubes uses.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use nubes::deploy::static_site::{self, SiteOptions, SiteReport};
use nubes::error::Result;
use nubes::state::auth::StorageAuth;

use crate::support::{Azurite, Blobs, block_on};

const CACHE: &str = "public, max-age=300";

/// Sync `dir` into this Azurite's `$web`, with the credential its mode uses.
fn sync(az: &Azurite, dir: &Path, options: &SiteOptions) -> Result<SiteReport> {
    let mut http = reqwest::Client::builder();
    if az.https {
        let pem = std::fs::read(&az.ca_pem).unwrap();
        http = http.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap());
    }
    let auth = if az.https {
        StorageAuth::bearer(&az.token, "test bearer token")
    } else {
        StorageAuth::sas(&az.sas)
    };
    block_on(static_site::sync_with(
        &az.account_url(),
        http.build().unwrap(),
        auth,
        dir,
        options,
    ))
}

fn options() -> SiteOptions {
    SiteOptions {
        cache_control: Some(CACHE.into()),
        parallel: 4,
        prefix: None,
        baseline: None,
    }
}

/// A blob name as a URL path: each segment percent-encoded, `/` kept.
fn url_path(name: &str) -> String {
    let mut url = url::Url::parse("http://x/").unwrap();
    url.path_segments_mut()
        .unwrap()
        .pop_if_empty()
        .extend(name.split('/'));
    url.path().trim_start_matches('/').to_string()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// ~20 files in nested folders, including a name with a space and one with non-ASCII
/// letters. Returns name → bytes (what the site must hold).
fn make_site(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..=255u8).cycle().take(3000));
    let mut files: BTreeMap<String, Vec<u8>> = [
        ("index.html", b"<!doctype html><h1>home</h1>".to_vec()),
        (
            "about/index.html",
            b"<!doctype html><h1>about</h1>".to_vec(),
        ),
        ("assets/app.js", b"console.log('app');".to_vec()),
        ("assets/style.css", b"body { color: red }".to_vec()),
        ("assets/app.js.map", b"{\"version\":3}".to_vec()),
        ("img/logo.png", png),
        (
            "img/icon.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
        ),
        ("docs/read me.txt", b"a name with a space".to_vec()),
        (
            "docs/\u{fc}n\u{ef}code \u{e9}t\u{e9}.txt",
            "unicode name".as_bytes().to_vec(),
        ),
        ("a/b/c/deep.txt", b"deep".to_vec()),
        ("empty.txt", Vec::new()),
        ("site.webmanifest", b"{}".to_vec()),
        ("robots.txt", b"User-agent: *".to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for i in 0..8 {
        files.insert(
            format!("data/part-{i}.json"),
            format!("{{\"part\":{i}}}").into_bytes(),
        );
    }
    for (name, bytes) in &files {
        write(dir, name, bytes);
    }
    write(dir, ".DS_Store", b"finder"); // never deployed
    files
}

/// ETag of every blob in `$web`, by name (from a raw listing).
fn etags(blobs: &Blobs) -> BTreeMap<String, String> {
    let xml = block_on(blobs.list("$web", ""));
    let mut out = BTreeMap::new();
    for part in xml.split("<Blob>").skip(1) {
        let field = |tag: &str| {
            let start = part.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
            let end = part.find(&format!("</{tag}>")).unwrap();
            part[start..end].to_string()
        };
        let name = field("Name")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        out.insert(name, field("Etag"));
    }
    out
}

#[track_caller]
fn check_served(blobs: &Blobs, files: &BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        let r = block_on(blobs.get("$web", &url_path(name)));
        assert_eq!(r.status, 200, "GET {name}");
        assert_eq!(&r.body, bytes, "content of {name}");
        assert_eq!(
            r.headers.get("cache-control").map(String::as_str),
            Some(CACHE),
            "Cache-Control of {name}"
        );
    }
}

fn content_type(blobs: &Blobs, name: &str) -> String {
    let r = block_on(blobs.properties("$web", &url_path(name)));
    assert_eq!(r.status, 200, "HEAD {name}");
    r.headers.get("content-type").cloned().unwrap_or_default()
}

/// First sync uploads everything; a re-sync after changing one file and deleting another
/// writes exactly one blob and deletes exactly one; the rest keep their ETags.
fn full_cycle(az: &Azurite) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = make_site(dir.path());
    let blobs = az.blobs();

    let report = sync(az, dir.path(), &options()).unwrap();
    assert_eq!(report.uploaded, files.keys().cloned().collect::<Vec<_>>());
    assert_eq!((report.unchanged, report.deleted.len()), (0, 0));

    // Names are stored with real `/` and unescaped spaces/unicode.
    let before = etags(&blobs);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>()
    );
    check_served(&blobs, &files);
    assert!(content_type(&blobs, "index.html").starts_with("text/html"));
    assert!(content_type(&blobs, "about/index.html").starts_with("text/html"));
    let js = content_type(&blobs, "assets/app.js");
    assert!(
        js.starts_with("text/javascript") || js.starts_with("application/javascript"),
        "{js}"
    );
    assert!(content_type(&blobs, "assets/style.css").starts_with("text/css"));
    assert_eq!(content_type(&blobs, "img/logo.png"), "image/png");
    assert_eq!(content_type(&blobs, "img/icon.svg"), "image/svg+xml");

    // Change one file, delete another.
    let changed = "assets/style.css";
    let removed = "docs/read me.txt";
    files.insert(changed.into(), b"body { color: blue }".to_vec());
    write(dir.path(), changed, &files[changed]);
    files.remove(removed);
    std::fs::remove_file(dir.path().join(removed)).unwrap();

    let report = sync(az, dir.path(), &options()).unwrap();
    assert_eq!(report.uploaded, vec![changed.to_string()]);
    assert_eq!(report.deleted, vec![removed.to_string()]);
    assert_eq!(report.unchanged, files.len() - 1);
    let after = etags(&blobs);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>()
    );
    for (name, etag) in &after {
        if name == changed {
            assert_ne!(etag, &before[name], "{name} was not rewritten");
        } else {
            assert_eq!(etag, &before[name], "{name} was rewritten");
        }
    }
    check_served(&blobs, &files);

    // Nothing changed: nothing written.
    let report = sync(az, dir.path(), &options()).unwrap();
    assert_eq!(
        (report.uploaded, report.unchanged, report.deleted),
        (vec![], files.len(), vec![])
    );
    assert_eq!(etags(&blobs), after);
}

#[test]
fn syncs_over_https_with_a_bearer_token() {
    let az = Azurite::https();
    full_cycle(&az);
}

#[test]
fn syncs_over_http_with_a_sas() {
    let az = Azurite::http();
    full_cycle(&az);
}

#[test]
fn creates_web_and_removes_blobs_it_did_not_write() {
    let az = Azurite::http();
    let blobs = az.blobs();
    let r = block_on(blobs.send("GET", "$web", "restype=container", &[], vec![]));
    assert_eq!(r.status, 404, "Azurite has no $web until nubes creates it");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", b"<h1>hi</h1>");
    let report = sync(&az, dir.path(), &SiteOptions::default()).unwrap();
    assert_eq!(report.uploaded, vec!["index.html".to_string()]);
    // Default options: no Cache-Control.
    let r = block_on(blobs.properties("$web", "index.html"));
    assert_eq!(r.headers.get("cache-control"), None);

    // A blob someone else left there is not in the artifact: deleted.
    block_on(blobs.put("$web", "old/stale.html", b"old".to_vec(), &[]));
    let report = sync(&az, dir.path(), &SiteOptions::default()).unwrap();
    assert_eq!(report.deleted, vec!["old/stale.html".to_string()]);
    assert_eq!(report.unchanged, 1);
    assert_eq!(block_on(blobs.get("$web", "old/stale.html")).status, 404);

    // A new Cache-Control re-uploads what has a different one.
    let report = sync(&az, dir.path(), &options()).unwrap();
    assert_eq!(report.uploaded, vec!["index.html".to_string()]);
    let r = block_on(blobs.properties("$web", "index.html"));
    assert_eq!(
        r.headers.get("cache-control").map(String::as_str),
        Some(CACHE)
    );
}

#[test]
fn large_files_go_in_blocks_with_their_md5_and_are_compared_by_content() {
    // Files over one block (4 MiB) are staged in blocks as they are read and hashed on
    // the way; the whole file's MD5 is kept as the blob's Content-MD5, so the next sync
    // skips an unchanged one and rewrites one changed in place at the same size.
    use md5::{Digest, Md5};
    let az = Azurite::http();
    let blobs = az.blobs();
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..(9 << 20) + 12345)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let exact: Vec<u8> = vec![7; 8 << 20]; // exactly two blocks
    write(dir.path(), "media/big.bin", &big);
    write(dir.path(), "media/exact.bin", &exact);
    write(dir.path(), "index.html", b"<h1>hi</h1>");
    let report = sync(&az, dir.path(), &options()).unwrap();
    assert_eq!(report.uploaded.len(), 3, "{report:?}");
    for (name, bytes) in [("media/big.bin", &big), ("media/exact.bin", &exact)] {
        let r = block_on(blobs.get("$web", name));
        assert_eq!(r.status, 200, "GET {name}");
        assert!(r.body == *bytes, "content of {name}");
        let md5 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            Md5::digest(bytes),
        );
        assert_eq!(r.headers.get("content-md5"), Some(&md5), "{name}");
        assert_eq!(
            r.headers.get("cache-control").map(String::as_str),
            Some(CACHE)
        );
        let blocks = block_on(blobs.send(
            "GET",
            &format!("$web/{name}"),
            "comp=blocklist",
            &[],
            vec![],
        ));
        let committed = String::from_utf8_lossy(&blocks.body)
            .matches("<Block>")
            .count();
        assert!(committed >= 2, "{name} went in blocks: {committed}");
    }
    let before = etags(&blobs);

    // Unchanged: nothing is sent.
    let report = sync(&az, dir.path(), &options()).unwrap();
    assert_eq!(
        (report.uploaded.len(), report.unchanged),
        (0, 3),
        "{report:?}"
    );
    assert_eq!(etags(&blobs), before);

    // Same size, one byte different: found by content and rewritten.
    let mut changed = big.clone();
    changed[5 << 20] ^= 1;
    write(dir.path(), "media/big.bin", &changed);
    let report = sync(&az, dir.path(), &options()).unwrap();
    assert_eq!(report.uploaded, vec!["media/big.bin".to_string()]);
    let r = block_on(blobs.get("$web", "media/big.bin"));
    assert!(r.body == changed, "the changed content was stored");
    assert_eq!(etags(&blobs)["media/exact.bin"], before["media/exact.bin"]);
}

#[test]
fn a_missing_or_empty_artifact_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    for artifact in [dir.path().join("dist"), dir.path().to_path_buf()] {
        let err = block_on(static_site::sync_with(
            "http://127.0.0.1:9/devstoreaccount1",
            http.clone(),
            StorageAuth::sas("sv=x&sig=unused-signature"),
            &artifact,
            &SiteOptions::default(),
        ))
        .unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(
            err.to_string().contains(&artifact.display().to_string()),
            "{err}"
        );
        assert!(err.hint_text().unwrap().contains("[build] artifact"));
    }
}

#[test]
fn refused_credentials_are_a_usage_error_naming_the_account() {
    let az = Azurite::http();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", b"<h1>hi</h1>");
    let bad_sas = az.sas.replace("sig=", "sig=AAAA");
    let err = block_on(static_site::sync_with(
        &az.account_url(),
        reqwest::Client::new(),
        StorageAuth::sas(&bad_sas),
        dir.path(),
        &SiteOptions::default(),
    ))
    .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains(&az.account_url()), "{err}");
    assert!(err.hint_text().unwrap().contains("NUBES_SITE_SAS"));
}

#[test]
fn an_unreachable_account_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", b"<h1>hi</h1>");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound then dropped: nothing listens
    let err = block_on(static_site::sync_with(
        &format!("http://127.0.0.1:{port}/devstoreaccount1"),
        reqwest::Client::new(),
        StorageAuth::sas("sv=x&sig=unused-signature"),
        dir.path(),
        &SiteOptions::default(),
    ))
    .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// `VmHWM` (peak resident set) of process `pid` in MiB, from `/proc/<pid>/status`;
/// None once it has exited.
fn vm_hwm_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib / 1024.0)
}

/// The site's "application": a loopback HTTP server answering nubes's health check,
/// which comes right after the sync. At each request it notes the time and the `VmHWM`
/// of the nubes process being measured (`pid`), i.e. nubes's own peak up to the end of
/// the sync.
struct HealthProbe {
    url: String,
    pid: std::sync::Arc<std::sync::atomic::AtomicU32>,
    hits: std::sync::Arc<std::sync::Mutex<Vec<(Instant, f64)>>>,
}

impl HealthProbe {
    fn start() -> HealthProbe {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let pid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (p, h) = (pid.clone(), hits.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let at = Instant::now();
                let hwm = vm_hwm_mib(p.load(Ordering::SeqCst)).unwrap_or(f64::NAN);
                h.lock().unwrap().push((at, hwm));
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        HealthProbe { url, pid, hits }
    }
}

/// One `nubes up` measured from outside: seconds to the health check (the sync done),
/// seconds to exit (the release kept too), nubes's own `VmHWM` at the health check and
/// at the end (polled from `/proc/<pid>/status` every 2 ms while it runs), and its
/// stderr.
struct UpRun {
    synced: f64,
    total: f64,
    hwm_synced: f64,
    hwm_total: f64,
    stderr: String,
}

fn timed_up(p: &crate::support::Project, nubes: &Path, probe: &HealthProbe) -> UpRun {
    use std::io::Read as _;
    probe.hits.lock().unwrap().clear();
    let mut cmd = p.cmd_of(nubes, &["up", "bench"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    probe.pid.store(pid, std::sync::atomic::Ordering::SeqCst);
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut hwm_total = 0f64;
    let status = loop {
        if let Some(v) = vm_hwm_mib(pid) {
            hwm_total = hwm_total.max(v);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let total = t0.elapsed().as_secs_f64();
    let stderr = reader.join().unwrap();
    assert!(status.success(), "nubes up failed:\n{stderr}");
    let hits = probe.hits.lock().unwrap().clone();
    let (at, hwm_synced) = *hits
        .first()
        .unwrap_or_else(|| panic!("no health check:\n{stderr}"));
    UpRun {
        synced: at.duration_since(t0).as_secs_f64(),
        total,
        hwm_synced,
        hwm_total: hwm_total.max(hwm_synced),
        stderr,
    }
}

/// A project deploying folder `site` to `az`'s `$web` with state in `az` (releases
/// kept there), or in the project folder when `local` (no releases: a sync like the
/// peers'), health-checked at `probe`, on which `nubes up bench` has run once
/// (Terraform applied) with a one-file site whose blob is then deleted: the timed `up`s
/// take the fast path (no Terraform) and find `$web` empty.
fn bench_project(
    az: &Azurite,
    nubes: &Path,
    probe: &HealthProbe,
    local: bool,
) -> crate::support::Project {
    let mut p = crate::support::Project::on(
        az,
        "[build]\ncommand = \"true\"\nartifact = \"site\"\n\n\
         [deploy]\ntarget = \"static-site\"\nhealth_path = \"/health\"\n",
    );
    std::fs::write(
        p.path().join("terraform/main.tf"),
        format!(
            "terraform {{\n  backend \"azurerm\" {{}}\n}}\n\
             variable \"environment\" {{\n  type = string\n}}\n\
             output \"static_site_account_url\" {{\n  value = \"{}\"\n}}\n\
             output \"application_url\" {{\n  value = \"{}\"\n}}\n",
            az.account_url(),
            probe.url
        ),
    )
    .unwrap();
    if local {
        p.set_env("NUBES_STATE_BACKEND", "local");
    }
    write(&p.path().join("site"), "warm-up.txt", b"warm-up");
    timed_up(&p, nubes, probe);
    std::fs::remove_dir_all(p.path().join("site")).unwrap();
    let r = block_on(
        az.blobs()
            .send("DELETE", "$web/warm-up.txt", "", &[], vec![]),
    );
    assert_eq!(r.status, 202, "deleting the warm-up blob");
    p
}

/// Time a peer (`NUBES_BENCH_PEER_BIN`: the benchmark's virtualenv) uploading `dir` into
/// container `container` of `az`: the 8-thread Python uploader (`scripts/peer_site_upload.py`)
/// or `az storage blob upload-batch`.
fn peer(az: &Azurite, bin: &Path, which: &str, container: &str, dir: &Path) -> f64 {
    let url = az.account_url();
    let mut cmd = if which == "python" {
        let mut c = std::process::Command::new(bin.join("python"));
        c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peer_site_upload.py"))
            .arg(format!("{url}/{container}?{}", az.sas))
            .arg(dir);
        c
    } else {
        block_on(az.blobs().create_container(container));
        let mut c = std::process::Command::new(bin.join("az"));
        c.args([
            "storage",
            "blob",
            "upload-batch",
            "--overwrite",
            "--only-show-errors",
        ])
        .args(["--destination", container, "--blob-endpoint", &url])
        .args(["--sas-token", &az.sas, "--max-connections", "8", "--source"])
        .arg(dir);
        c
    };
    cmd.env("AZURE_CONFIG_DIR", dir.with_extension("az"))
        .env("AZURE_CORE_COLLECT_TELEMETRY", "no")
        .stdout(std::process::Stdio::null());
    let t = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

/// `scripts/bench.sh site`: 500 small files (first upload, then a re-sync with one
/// change) and 20 files of 5 MiB, against Azurite over HTTP + SAS: a real `nubes up`
/// process (`NUBES_BENCH_NUBES`, a release build; else this test build's) on an
/// environment whose infrastructure is unchanged (fast path, no Terraform), whose
/// outputs name the site and a health check URL; once with local state (no release
/// kept: the like-for-like figure for the peers) and once with state in Azurite (the
/// release kept as well), each into an Azurite of its own; and, with
/// `NUBES_BENCH_PEER_BIN`, its peers alternating with it. nubes's figures are its own:
/// time to the health check (the sync done), to exit, and its `VmHWM` (at the health
/// check, and the highest polled until exit). Prints Markdown; `NUBES_BENCH_RUNS` runs
/// (default 3).
#[test]
#[ignore = "benchmark: run by scripts/bench.sh site"]
fn bench_site_sync_500_files() {
    let runs: usize = std::env::var("NUBES_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let peers = std::env::var_os("NUBES_BENCH_PEER_BIN").map(std::path::PathBuf::from);
    let nubes = std::env::var_os("NUBES_BENCH_NUBES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_nubes").into());
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let small_site = |dir: &Path, run: usize| {
        for i in 0..500 {
            let body = format!(
                "<p>page {i} of run {run}</p>{}",
                "x".repeat(1000 + i % 7 * 300)
            );
            let ext = ["html", "css", "js", "json", "svg"][i % 5];
            write(dir, &format!("d{}/f{i}.{ext}", i % 10), body.as_bytes());
        }
    };
    let big_site = |dir: &Path, run: usize| {
        for i in 0..20u8 {
            let mut bytes = vec![i; 5 << 20];
            bytes[..8].copy_from_slice(&(run as u64).to_le_bytes());
            write(dir, &format!("media/v{i}.mp4"), &bytes);
        }
    };
    let mut t: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut rss: BTreeMap<String, f64> = BTreeMap::new();
    let mut note = |k: &str, up: &UpRun| {
        t.entry(format!("{k} synced")).or_default().push(up.synced);
        t.entry(format!("{k} total")).or_default().push(up.total);
        for (what, v) in [("synced", up.hwm_synced), ("total", up.hwm_total)] {
            let e = rss.entry(format!("{k} {what}")).or_insert(0.0);
            *e = e.max(v);
        }
    };
    let mut peer_t: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in 0..runs {
        for (kind, local) in [("local", true), ("kept", false)] {
            let az = Azurite::http();
            let probe = HealthProbe::start();
            let p = bench_project(&az, &nubes, &probe, local);
            let small = p.path().join("site");
            small_site(&small, run);
            let up = timed_up(&p, &nubes, &probe);
            assert!(up.stderr.contains("500 uploaded"), "{}", up.stderr);
            note(&format!("{kind} first"), &up);
            write(&small, "d3/f3.json", b"{\"changed\":true}"); // one of the 500
            let up = timed_up(&p, &nubes, &probe);
            assert!(
                up.stderr.contains("1 uploaded, 499 unchanged"),
                "{}",
                up.stderr
            );
            note(&format!("{kind} resync"), &up);
            if let (Some(bin), true) = (&peers, local) {
                peer_t
                    .entry("python first")
                    .or_default()
                    .push(peer(&az, bin, "python", "pyupload", &small));
                write(&small, "d3/f3.json", b"{\"changed\":2}");
                peer_t
                    .entry("python resync")
                    .or_default()
                    .push(peer(&az, bin, "python", "pyupload", &small));
                peer_t
                    .entry("az first")
                    .or_default()
                    .push(peer(&az, bin, "az", "azbatch", &small));
                peer_t
                    .entry("az resync")
                    .or_default()
                    .push(peer(&az, bin, "az", "azbatch", &small));
            }

            // 20 × 5 MiB, into a fresh Azurite.
            let big_az = Azurite::http();
            let big_probe = HealthProbe::start();
            let bp = bench_project(&big_az, &nubes, &big_probe, local);
            let big = bp.path().join("site");
            big_site(&big, run);
            let up = timed_up(&bp, &nubes, &big_probe);
            assert!(up.stderr.contains("20 uploaded"), "{}", up.stderr);
            note(&format!("{kind} big"), &up);
            if let (Some(bin), true) = (&peers, local) {
                peer_t
                    .entry("python big")
                    .or_default()
                    .push(peer(&big_az, bin, "python", "pyupload", &big));
                peer_t
                    .entry("az big")
                    .or_default()
                    .push(peer(&big_az, bin, "az", "azbatch", &big));
            }
        }
    }
    let mut m: BTreeMap<String, f64> = t.iter_mut().map(|(k, v)| (k.clone(), median(v))).collect();
    for (k, v) in peer_t.iter_mut() {
        m.insert(k.to_string(), median(v));
    }
    let ms = |k: &str| {
        m.get(k)
            .map(|v| format!("{:.0} ms", v * 1000.0))
            .unwrap_or_else(|| "—".into())
    };
    let ratio = |k: &str, n: &str| {
        m.get(k)
            .map(|v| format!("**{:.2}×**", v / m[n]))
            .unwrap_or_else(|| "—".into())
    };
    let mib = |k: &str| rss.get(k).map(|v| format!("{v:.1}")).unwrap_or_default();
    println!(
        "| static-site deploy, Azurite over HTTP + SAS, median of {runs} alternating runs | `nubes up`, local state (no release kept): to the synced site | 8-thread Python uploader | `az storage blob upload-batch` | Python / nubes | az / nubes | `nubes up`, releases kept: to the synced site / to exit | nubes's own VmHWM, MiB: local state / releases kept (synced; exit) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (case, label) in [
        ("first", "500 small files, first upload"),
        ("resync", "re-sync, 1 of 500 changed"),
        ("big", "20 files of 5 MiB, first upload"),
    ] {
        println!(
            "| {label} | {} | {} | {}{} | {} | {} | {} / {} | {} / {}; {} |",
            ms(&format!("local {case} synced")),
            ms(&format!("python {case}")),
            ms(&format!("az {case}")),
            if case == "resync" {
                " (re-uploads all)"
            } else {
                ""
            },
            ratio(&format!("python {case}"), &format!("local {case} synced")),
            ratio(&format!("az {case}"), &format!("local {case} synced")),
            ms(&format!("kept {case} synced")),
            ms(&format!("kept {case} total")),
            mib(&format!("local {case} total")),
            mib(&format!("kept {case} synced")),
            mib(&format!("kept {case} total")),
        );
    }
}
