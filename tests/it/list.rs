//! `nubes list` over many environments, straight from one listing.

use std::time::Instant;

use crate::support::{Azurite, Project, block_on};

#[test]
fn a_thousand_environments_are_listed_correctly_in_one_command() {
    let az = Azurite::https();
    let blobs = az.blobs();
    block_on(async {
        let mut pending = futures::stream::FuturesUnordered::new();
        for i in 0..1000 {
            let name = format!("env{i:04}.terraform.tfstate");
            let meta = [
                ("nubesserial", (i % 17 + 1).to_string()),
                ("nubesresources", (i % 5).to_string()),
                (
                    "nubesappliedat",
                    format!("2026-11-{:02}T10:00:00Z", i % 28 + 1),
                ),
                ("nubescommit", format!("{i:040x}")),
                ("nubesbranch", format!("env-env{i:04}")),
                ("nubesactor", format!("dev{}", i % 7)),
                ("nubesversion", "0.1.0".to_string()),
            ];
            let blobs = &blobs;
            pending.push(async move {
                let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
                blobs
                    .put("tfstate", &name, b"{\"version\":4}".to_vec(), &meta)
                    .await;
            });
            if pending.len() >= 32 {
                futures::StreamExt::next(&mut pending).await;
            }
        }
        while futures::StreamExt::next(&mut pending).await.is_some() {}
        // A tombstone and a blob that is not an environment.
        blobs
            .put(
                "tfstate",
                "gone.terraform.tfstate.tombstone.20261101T000000Z",
                b"{}".to_vec(),
                &[],
            )
            .await;
        blobs
            .put("tfstate", "notes.txt", b"hello".to_vec(), &[])
            .await;
    });
    let lock = r#"{"ID":"11111111-2222-3333-4444-555555555555","Operation":"OperationTypeApply","Info":"","Who":"carol@laptop","Version":"1.15.5","Created":"2026-11-22T09:00:00Z","Path":"tfstate/env0042.terraform.tfstate"}"#;
    block_on(blobs.terraform_lock("tfstate", "env0042.terraform.tfstate", lock));

    let p = Project::on(&az, "[environments.env0007]\nprotected = true\n");
    let started = Instant::now();
    let out = p.run(&["-v", "list", "--json"]).ok();
    let took = started.elapsed();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        doc["count"], 1000,
        "tombstones and other blobs are not environments"
    );
    let envs = doc["environments"].as_array().unwrap();
    for (i, e) in envs.iter().enumerate() {
        assert_eq!(e["name"], format!("env{i:04}"));
        assert_eq!(e["serial"], (i % 17 + 1) as u64, "{e}");
        assert_eq!(e["resources"], (i % 5) as u64);
        assert_eq!(e["last_apply"]["commit"], format!("{i:040x}"));
        assert_eq!(e["last_apply"]["actor"], format!("dev{}", i % 7));
    }
    assert_eq!(envs[42]["lock"]["who"], "carol@laptop");
    assert_eq!(envs[42]["lock"]["infinite"], true);
    assert!(envs[41]["lock"].is_null());
    assert_eq!(envs[7]["protected"], true);
    // One listing: the request log shows a single List Blobs call.
    let listings = out
        .stderr
        .matches("storage GET /devstoreaccount1/tfstate ->")
        .count();
    assert_eq!(listings, 1, "{}", out.stderr);
    eprintln!("listed 1000 environments in {took:?}");

    let all: serde_json::Value =
        serde_json::from_str(&p.run(&["list", "--json", "--all"]).ok().stdout).unwrap();
    assert_eq!(all["count"], 1001);
    let table = p.run(&["list"]).ok().stdout;
    assert!(
        table.contains("env0042") && table.contains("carol@laptop (OperationTypeApply"),
        "{table}"
    );
    assert!(table.contains("env0007 (protected)"));
}
