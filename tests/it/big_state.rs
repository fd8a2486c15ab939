//! States of 100 MiB through the gateway (issue 19): the document streams through nubes
//! to storage and back (one Put Blob whose last piece is held back until the whole body
//! has arrived and passed the checks, or, without a declared MD5, staged blocks committed
//! only then), so these pin what streaming must not lose: the bytes arrive
//! byte-for-byte, the lineage/serial guard and the Content-MD5 check still refuse on a
//! streamed body with nothing stored, a storage outage in the middle of a streamed
//! write leaves the stored state as it was, and a body the parser refuses goes to
//! storage no further than where it was refused, with nothing of it committed. The
//! client is `gateway_client.py`, run as a stand-in Terraform binary by `nubes tf`,
//! against real Azurite. Speed and memory are measured by `scripts/bench.sh state`,
//! not here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::Value;

use crate::crash::spawn_in_own_group;
use crate::support::{Azurite, Project, block_on};

const BLOB: &str = "alice.terraform.tfstate";

fn client() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/gateway_client.py")
}

fn project(az: &Azurite, report: &Path, state: &str) -> Project {
    let mut p = Project::on(az, "");
    let toml = format!(
        "[project]\nname = \"demo\"\n[state]\n{state}\n[terraform]\nbinary = \"{}\"\n",
        client().display()
    );
    std::fs::write(p.path().join("nubes.toml"), toml).unwrap();
    p.set_env("GATEWAY_REPORT", report.to_str().unwrap());
    p
}

fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the gateway client wrote no report");
    serde_json::from_str(&text).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

#[test]
fn a_100_mib_state_streams_through_byte_for_byte_and_is_still_guarded() {
    let az = Azurite::http();
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let p = project(&az, &report_file, "");
    let out = p.run(&["tf", "alice", "--", "big"]);
    let report = read_report(&report_file);
    assert!(!out.all().contains("panicked"), "{}", out.all());
    let status = |k: &str| report[k]["status"].as_u64();

    // Written and read back whole.
    let sent = &report["sent"];
    assert!(sent["len"].as_u64().unwrap() >= 100 << 20, "{sent}");
    assert_eq!(status("write"), Some(200), "{report:#}\n{}", out.all());
    assert_eq!(report["read"]["status"], 200);
    assert_eq!(report["read"]["len"], sent["len"]);
    assert_eq!(
        report["read"]["sha256"], sent["sha256"],
        "read back other bytes"
    );

    // The guard and the Content-MD5 check refuse streamed bodies as they refuse small ones.
    assert_eq!(status("other lineage"), Some(409), "{report:#}");
    assert!(
        report["other lineage"]["body"]
            .as_str()
            .unwrap()
            .contains("lineage big-lineagf"),
        "{report:#}"
    );
    assert_eq!(status("lower serial"), Some(409), "{report:#}");
    assert!(
        report["lower serial"]["body"]
            .as_str()
            .unwrap()
            .contains("lower than the stored serial 5"),
        "{report:#}"
    );
    assert_eq!(status("wrong md5"), Some(400), "{report:#}");
    assert!(
        report["wrong md5"]["body"]
            .as_str()
            .unwrap()
            .contains("Content-MD5 does not match"),
        "{report:#}"
    );
    assert_eq!(status("truncated"), Some(400), "{report:#}");
    assert_eq!(report["after"]["sha256"], sent["sha256"], "{report:#}");

    // Storage holds exactly what was written first, with its Content-MD5 and nubes's
    // record of it; none of the refused bodies (all larger than a block, so they were
    // staged) became the state.
    let expected = std::fs::read(dir.path().join("report.json.sent")).unwrap();
    let blob = block_on(az.blobs().get("tfstate", BLOB));
    assert_eq!(blob.status, 200);
    assert!(
        blob.body == expected,
        "the stored state differs from the one written"
    );
    let md5 = b64(&Md5::digest(&expected));
    assert_eq!(blob.headers.get("content-md5"), Some(&md5));
    assert_eq!(blob.meta("nubeswrittenmd5"), Some(md5.as_str()));
    assert_eq!(blob.meta("nubesserial"), Some("5"));
    assert_eq!(blob.meta("nubeslineage"), Some("big-lineage"));
    // The first write had no previous version to keep, and no refused write left one:
    // the one kept for the body storage refused (its MD5) was dropped again.
    assert_eq!(snapshots(&az), 0);
}

#[test]
fn a_storage_outage_in_the_middle_of_a_streamed_write_leaves_the_stored_state_as_it_was() {
    outage_part_way(true);
}

#[test]
fn a_storage_outage_in_the_middle_of_a_staged_write_leaves_the_stored_state_as_it_was() {
    outage_part_way(false);
}

/// Storage stops while the second state is half sent: with its MD5 declared (one
/// streamed Put Blob) or not (staged blocks).
fn outage_part_way(declared_md5: bool) {
    let mut az = Azurite::http();
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let half = dir.path().join("report.json.half");
    let go = dir.path().join("report.json.go");
    let mut p = project(&az, &report_file, "timeout = \"3s\"\nlease_seconds = 15");
    if !declared_md5 {
        p.set_env("OUTAGE_NO_MD5", "1");
    }
    let mut run = spawn_in_own_group(p.cmd(&["tf", "alice", "--", "outage"]));
    let started = Instant::now();
    while !half.exists() {
        if let Some(status) = run.child.try_wait().unwrap() {
            panic!(
                "nubes ended ({status}) before the client sent half its state:\n{}",
                run.lines.lock().unwrap().join("\n")
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no half-way mark"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Half of the second state has gone through the gateway; let storage fail now.
    std::thread::sleep(Duration::from_millis(500));
    az.pause();
    std::fs::write(&go, "").unwrap();
    let status = run.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = run.lines.lock().unwrap().join("\n");
    az.resume();

    let report = read_report(&report_file);
    assert_eq!(report["first"]["status"], 200, "{report:#}\n{out}");
    assert_ne!(report["second"]["status"], 200, "{report:#}\n{out}");
    assert!(
        out.contains("writing the state of `alice` failed"),
        "nubes says the write failed:\n{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    eprintln!("nubes ended {status}");

    // The stored state is the first one, whole; the second left nothing (a Put Blob cut
    // off) or only uncommitted blocks.
    let blob = block_on(az.blobs().get("tfstate", BLOB));
    assert_eq!(blob.status, 200);
    let doc: Value = serde_json::from_slice(&blob.body).expect("stored state is whole JSON");
    assert_eq!(doc["serial"], 1);
    assert_eq!(doc["lineage"], "outage-lineage");
    assert_eq!(
        blob.headers.get("content-md5").map(String::as_str),
        blob.meta("nubeswrittenmd5")
    );
    let blocks = block_on(az.blobs().send(
        "GET",
        &format!("tfstate/{BLOB}"),
        "comp=blocklist&blocklisttype=uncommitted",
        &[],
        vec![],
    ));
    let listing = String::from_utf8_lossy(&blocks.body);
    if declared_md5 {
        assert!(
            listing.contains("<UncommittedBlocks/>"),
            "a streamed write stages no blocks: {listing}"
        );
    } else {
        assert!(
            listing.contains("<UncommittedBlocks><Block>"),
            "the outage came part-way through the staged write: {listing}"
        );
    }
    // The previous version is kept only when a write commits: none was.
    assert_eq!(snapshots(&az), 0);

    // Storage is back: the environment's lock can be taken again (released, or its
    // lease expired) and the state written.
    let again = p.run(&["tf", "alice", "--", "odd_lineage"]);
    let report = read_report(&report_file);
    assert_eq!(
        report["first"]["status"],
        409,
        "{report:#}\n{}",
        again.all()
    );
}

/// How many snapshots (kept previous versions) the state blob has.
fn snapshots(az: &Azurite) -> usize {
    let r = block_on(az.blobs().send(
        "GET",
        "tfstate",
        "restype=container&comp=list&include=snapshots",
        &[],
        vec![],
    ));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    String::from_utf8_lossy(&r.body)
        .matches("<Snapshot>")
        .count()
}

/// The committed and the uncommitted blocks of the state blob, and the uncommitted
/// blocks' total size.
fn block_lists(az: &Azurite) -> (String, String, u64) {
    let r = block_on(az.blobs().send(
        "GET",
        &format!("tfstate/{BLOB}"),
        "comp=blocklist&blocklisttype=all",
        &[],
        vec![],
    ));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let xml = String::from_utf8_lossy(&r.body).into_owned();
    let section = |tag: &str| {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        match (xml.find(&open), xml.find(&close)) {
            (Some(a), Some(b)) if a < b => xml[a + open.len()..b].to_string(),
            _ => String::new(),
        }
    };
    let uncommitted = section("UncommittedBlocks");
    let size: u64 = uncommitted
        .split("<Size>")
        .skip(1)
        .filter_map(|s| s.split("</Size>").next()?.parse::<u64>().ok())
        .sum();
    (section("CommittedBlocks"), uncommitted, size)
}

#[test]
fn a_body_the_parser_refuses_stops_there_and_nothing_of_it_is_committed() {
    let az = Azurite::http();
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let p = project(&az, &report_file, "");
    let first = p.run(&["tf", "alice", "--", "valid"]);
    assert_eq!(
        read_report(&report_file)["write"]["status"],
        200,
        "{}",
        first.all()
    );
    let before = block_on(az.blobs().get("tfstate", BLOB));
    assert_eq!(before.status, 200);
    let (committed_before, _, _) = block_lists(&az);

    // Sent as Terraform sends them (MD5 declared: one streamed Put Blob), then without
    // an MD5 (staged blocks).
    let mut p = p;
    for declared_md5 in [true, false] {
        if !declared_md5 {
            p.set_env("GATEWAY_NO_MD5", "1");
        }
        let out = p.run(&["tf", "alice", "--", "invalid"]);
        let report = read_report(&report_file);
        assert!(!out.all().contains("panicked"), "{}", out.all());
        // Each is refused with the parser's reason, read by Terraform (not a reset
        // connection) although the body was still arriving.
        for case in ["not json", "broken"] {
            assert_eq!(
                report[case]["status"],
                400,
                "{case} (MD5 declared: {declared_md5}): {report:#}\n{}",
                out.all()
            );
            assert!(
                report[case]["body"]
                    .as_str()
                    .unwrap()
                    .contains("not a Terraform state document"),
                "{case}: {report:#}"
            );
        }

        // Storage holds the first state, unchanged: same bytes, same Content-MD5 and
        // record of it, same committed blocks, no version kept for a refused write. (Not
        // the same ETag: taking and releasing the lock writes the blob's lock metadata.)
        let after = block_on(az.blobs().get("tfstate", BLOB));
        assert_eq!(after.status, 200);
        assert!(after.body == before.body, "the stored state changed");
        assert_eq!(
            after.headers.get("content-md5"),
            before.headers.get("content-md5")
        );
        assert_eq!(after.meta("nubesserial"), Some("1"));
        assert_eq!(
            after.meta("nubeswrittenmd5"),
            before.meta("nubeswrittenmd5")
        );
        assert_eq!(snapshots(&az), 0);
        let (committed_after, uncommitted, staged) = block_lists(&az);
        assert_eq!(committed_after, committed_before);
        // Sending stopped where the parser refused: the body that was not JSON from its
        // first byte is refused before its first block is full, and the one that broke
        // 6 MiB in left at most the blocks under way then (4 MiB each): together far
        // from the 48 MiB each of them was. (A streamed write stages no blocks: its
        // request is cut off, and storage keeps nothing of it.)
        let broken_len = report["broken"]["len"].as_u64().unwrap();
        assert!(
            staged <= 16 << 20 && staged < broken_len / 2,
            "{staged} bytes of a {broken_len}-byte refused body were staged: {uncommitted}"
        );
        if declared_md5 {
            assert_eq!(staged, 0, "{uncommitted}");
        }
    }
}
