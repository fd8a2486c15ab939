//! `docs/migrating-from-nubesgen.md`, followed step by step on a NubesGen-shaped
//! repository (`tests/fixtures/nubesgen-gitops/`) whose environment `alice` was first
//! created the way NubesGen's workflow creates it: plain Terraform with its own `azurerm`
//! backend, `-backend-config` for account, container `tfstate` and key
//! `alice.terraform.tfstate`, and `-var terraform_storage_account=… -var environment=alice`
//! (microsoft/nubesgen-actions, `gitops-apply-terraform`). The state is on Azurite, which
//! plain Terraform reaches as described in `interop.rs`.
//!
//! The guide's own text is the input: its `toml` block becomes the repository's
//! `nubes.toml`, and the workflow it names (`examples/workflows/nubes.yml`) replaces
//! NubesGen's. What is not exercised here: the deploy to the app NubesGen's
//! `application_name` output names (its Kudu is `https://<name>.scm.azurewebsites.net`,
//! which a test cannot reach); that name's use is a unit test in `src/deploy/mod.rs`, and
//! the deploy itself is `kudu.rs` and `deploy.rs`.

use std::path::{Path, PathBuf};

use crate::interop::{ACCOUNT, Plain, World, copy_tree};
use crate::pipeline::{event, fixture};
use crate::support::{Project, block_on};

const KEY: &str = "alice.terraform.tfstate";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced blocks of `lang` in a Markdown text.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    let mut found = vec![];
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let end = body.find("\n```").expect("a closed block");
        found.push(body[..end + 1].to_string());
        rest = &body[end..];
    }
    found
}

fn serial_and_lineage(world: &World) -> (u64, String) {
    let blob = block_on(world.blobs().get("tfstate", KEY));
    assert_eq!(blob.status, 200, "state {KEY}");
    let doc: serde_json::Value = serde_json::from_slice(&blob.body).expect("state JSON");
    (
        doc["serial"].as_u64().expect("serial"),
        doc["lineage"].as_str().expect("lineage").to_string(),
    )
}

/// A step output in `$GITHUB_OUTPUT`'s multi-line form (`name<<DELIMITER`, value lines,
/// `DELIMITER`).
fn step_output(file: &str, name: &str) -> Option<String> {
    let mut lines = file.lines();
    while let Some(line) = lines.next() {
        if let Some(delimiter) = line.strip_prefix(&format!("{name}<<")) {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            return Some(value.join("\n"));
        }
    }
    None
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_nubesgen_gitops_repository_moves_to_nubes_by_the_guide() {
    let guide = std::fs::read_to_string(root().join("docs/migrating-from-nubesgen.md"))
        .expect("the migration guide");
    let fixture_repo = root().join("tests/fixtures/nubesgen-gitops");
    let world = World::start();
    let tf = which::which("terraform")
        .expect("terraform on PATH (scripts/install-prereqs.sh installs one)");

    // Before: NubesGen's workflow created env-alice on a runner's checkout.
    let runner = Plain::with_folder(&world, &tf, &fixture_repo.join("terraform"), KEY);
    let out = runner.run(&["init", "-input=false"]);
    assert_eq!(out.code, 0, "terraform init: {}", out.all());
    let out = runner.run(&[
        "apply",
        "-input=false",
        "-auto-approve",
        &format!("-var=terraform_storage_account={ACCOUNT}"),
        "-var=environment=alice",
    ]);
    assert_eq!(out.code, 0, "terraform apply: {}", out.all());
    let (serial, lineage) = serial_and_lineage(&world);

    // The application's repository, on branch env-alice.
    let mut p = Project::new("", &[]);
    std::fs::remove_file(p.path().join("nubes.toml")).unwrap();
    copy_tree(&fixture_repo, p.path());
    git(p.path(), &["init", "-q", "-b", "main"]);
    git(p.path(), &["add", "-A"]);
    git(p.path(), &["commit", "-qm", "NubesGen GitOps project"]);
    git(p.path(), &["switch", "-qc", "env-alice"]);
    for (k, v) in world.nubes_env() {
        p.set_env(&k, &v);
    }

    // Step 2: the guide's nubes.toml. The test's storage is given through
    // NUBES_STATE_ACCOUNT_URL (an Azurite URL), so the guide's account line goes.
    let tomls = blocks(&guide, "toml");
    assert_eq!(tomls.len(), 1, "the guide shows one nubes.toml");
    let toml = &tomls[0];
    assert!(
        toml.contains("[deploy]\ntarget = \"app-service\""),
        "the guide sets the deploy target: {toml}"
    );
    assert!(
        !toml.contains("[project]"),
        "the guide must not set [project] name: it would rename NubesGen's resources"
    );
    let account_line = toml
        .lines()
        .find(|l| l.starts_with("account = "))
        .expect("the guide's [state] account line");
    std::fs::write(
        p.path().join("nubes.toml"),
        toml.replace(&format!("{account_line}\n"), ""),
    )
    .unwrap();

    // "nubes plan alice: an environment NubesGen created: No changes."
    let out = p.run(&["plan", "alice", "--json"]).ok();
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(
        plan["changes"], false,
        "NubesGen's environment adopted as it is: {plan}"
    );
    let out = p.run(&["list", "--json"]).ok();
    assert!(out.stdout.contains("\"alice\""), "{}", out.stdout);

    // Step 3: the workflow.
    std::fs::remove_file(p.path().join(".github/workflows/gitops.yml")).unwrap();
    std::fs::copy(
        root().join("examples/workflows/nubes.yml"),
        p.path().join(".github/workflows/nubes.yml"),
    )
    .unwrap();
    git(p.path(), &["add", "-A"]);
    git(p.path(), &["commit", "-qm", "nubes"]);

    // Step 4: the push. Nothing to change; the same state, now with nubes's records.
    let (out, outputs, summary) = event(&mut p, "push", &fixture("push.json"), "");
    let out = out.ok();
    for (name, value) in [
        ("changes", "false"),
        (
            "application_url",
            "https://app-petclinic-gitops-alice-001.azurewebsites.net",
        ),
        ("resource_group", "rg-petclinic-gitops-alice"),
    ] {
        assert_eq!(
            step_output(&outputs, name).as_deref(),
            Some(value),
            "output {name}: {outputs}\n{}",
            out.all()
        );
    }
    assert!(!summary.is_empty(), "a job summary");
    let (after, after_lineage) = serial_and_lineage(&world);
    assert_eq!(after_lineage, lineage, "the same state, never a new one");
    assert_eq!(
        after, serial,
        "no changes applied to NubesGen's environment"
    );
    let blob = block_on(world.blobs().get("tfstate", KEY));
    assert!(
        blob.meta("nubesfingerprint").is_some(),
        "nubes recorded its fingerprint for the next push's fast path"
    );

    // What is new: a pull request plans and never applies...
    let (out, _, summary) = event(&mut p, "pull_request", &fixture("pull_request.json"), "");
    out.ok();
    assert!(summary.contains("alice"), "{summary}");
    assert_eq!(serial_and_lineage(&world).0, serial);

    // ...and deleting the branch tears the environment down, keeping a tombstone.
    let (out, _, _) = event(&mut p, "delete", &fixture("delete.json"), "");
    let out = out.ok();
    assert_eq!(
        block_on(world.blobs().get("tfstate", KEY)).status,
        404,
        "state removed: {}",
        out.all()
    );
    let listing = block_on(world.blobs().list("tfstate", ""));
    assert!(
        listing.contains(&format!("<Name>{KEY}.tombstone.")),
        "tombstone kept: {listing}"
    );
}
