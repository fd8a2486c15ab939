//! `nubes bootstrap` and the `terraform/bootstrap` module, with real parts where they can
//! run here: the real binary, the real Terraform (fmt, init, output), real checkov, and
//! Resource Manager through the fake of `arm::fake` (GET on groups, accounts, containers;
//! checkNameAvailability).
//!
//! What cannot run here: the azurerm provider cannot be downloaded, so `terraform init`
//! of the module fails. Tests point Terraform at an empty provider mirror (so they behave
//! the same with or without network) and check that nubes reports that clearly, after
//! checking Azure and rendering the module with its import blocks; plan and apply
//! against Azure are not exercised.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arm::fake::{self, FakeArm, StorageAccount, group_in, storage_account};
use crate::support::{Out, Project};

const TOKEN: &str = "eyJhbGciOiJub25lIn0.fake-bootstrap-token.c2lnbmF0dXJl";
const SUB: &str = fake::SUBSCRIPTION;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Resource Manager fake on its own runtime, alive while the test runs the binary.
struct Arm {
    fake: FakeArm,
    _rt: tokio::runtime::Runtime,
}

fn arm(groups: Vec<fake::Group>, accounts: Vec<StorageAccount>, taken: &[&str]) -> Arm {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = rt.block_on(FakeArm::start_with_storage(
        TOKEN, 100, groups, accounts, taken,
    ));
    Arm { fake, _rt: rt }
}

/// A project folder (nubes.toml with `toml`, or none when `None`) whose nubes reaches the
/// fake, and whose Terraform looks for providers in an empty mirror only.
fn project(toml: Option<&str>, arm: &Arm) -> Project {
    let mut p = Project::new(toml.unwrap_or(""), &[]);
    if toml.is_none() {
        std::fs::remove_file(p.path().join("nubes.toml")).expect("remove nubes.toml");
    }
    let mirror = p.path().join("empty-mirror");
    std::fs::create_dir_all(&mirror).expect("mirror");
    let rc = p.path().join("terraformrc");
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/hashicorp/azurerm\"]\n  }}\n}}\n",
            mirror.display()
        ),
    )
    .expect("terraformrc");
    p.set_env("TF_CLI_CONFIG_FILE", &rc.display().to_string());
    p.set_env("NUBES_ARM_ENDPOINT", &arm.fake.endpoint);
    p.set_env("NUBES_ARM_TOKEN", TOKEN);
    p
}

fn workdir(p: &Project) -> PathBuf {
    p.path().join(".nubes/bootstrap")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[track_caller]
fn assert_provider_failure(out: &Out) {
    assert!(
        out.stderr.contains(
            "error: Terraform could not install the azurerm provider (hashicorp/azurerm)"
        ),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains("hint:") && out.stderr.contains("registry.terraform.io"),
        "{}",
        out.all()
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.all());
}

/// Nothing but reads (and the name check, a POST that changes nothing) reached Azure.
#[track_caller]
fn assert_read_only(arm: &Arm) {
    for r in arm.fake.requests() {
        assert!(r.authorized, "request without the token: {r:?}");
        assert!(
            r.method == "GET" || r.path.ends_with("/checkNameAvailability"),
            "bootstrap changed something through Resource Manager: {r:?}"
        );
    }
}

#[test]
fn bad_flags_are_refused_before_azure_is_asked() {
    let arm = arm(vec![], vec![], &[]);
    let p = project(None, &arm);
    let sub = ["--subscription", SUB];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--account", "St-Petclinic"],
            "is not a valid storage account name",
        ),
        (
            vec!["--account", "ab"],
            "is not a valid storage account name",
        ),
        (
            vec!["--account", "a234567890123456789012345"],
            "is not a valid storage account name",
        ),
        (
            vec!["--location", "West Europe"],
            "did you mean `westeurope`",
        ),
        (
            vec!["--resource-group", "rg with spaces"],
            "is not a valid resource group name",
        ),
        (vec!["--container", "TF"], "is not a valid container name"),
        (vec!["--repo", "not-a-repo"], "is not a GitHub repository"),
        (vec!["--client-id", "nope"], "is not a GUID"),
        (vec!["--soft-delete-days", "3"], "3 is not in 7..=365"),
        (vec!["--replication", "LRS"], "invalid value 'LRS'"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["bootstrap"];
        args.extend(sub);
        args.extend(&flags);
        let out = p.run(&args).code(2);
        assert!(out.stderr.contains(expected), "{flags:?}: {}", out.all());
    }
    let out = p
        .run(&["bootstrap", "--subscription", "not-a-guid"])
        .code(2);
    assert!(
        out.stderr
            .contains("--subscription: `not-a-guid` is not a GUID"),
        "{}",
        out.all()
    );
    let out = p.run(&["bootstrap"]).code(2);
    assert!(
        out.stderr.contains("no Azure subscription given"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("ARM_SUBSCRIPTION_ID"), "{}", out.all());
    assert!(arm.fake.requests().is_empty(), "{:?}", arm.fake.requests());
    assert!(!workdir(&p).exists());
}

#[test]
fn existing_storage_is_adopted_with_import_blocks_and_a_missing_provider_is_explained() {
    let arm = arm(
        vec![group_in(
            "rg-demo-tfstate",
            "westeurope",
            &[("team", "web")],
        )],
        vec![storage_account(
            "rg-demo-tfstate",
            "stdemostate",
            "westeurope",
            &["tfstate"],
        )],
        &[],
    );
    let mut p = project(None, &arm);
    p.set_env("ARM_SUBSCRIPTION_ID", SUB);
    let out = p
        .run(&[
            "bootstrap",
            "--resource-group",
            "rg-demo-tfstate",
            "--account",
            "stdemostate",
            "--yes",
        ])
        .code(1);
    assert_provider_failure(&out);
    assert!(
        out.stderr.contains("resource group   rg-demo-tfstate"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains("exists in westeurope: adopt"),
        "{}",
        out.all()
    );

    // Resource Manager was asked for each resource, read only; the name check is not
    // needed for an account that is already ours.
    assert_read_only(&arm);
    let base = format!("/subscriptions/{SUB}/resourceGroups/rg-demo-tfstate");
    let account = format!("{base}/providers/Microsoft.Storage/storageAccounts/stdemostate");
    let container = format!("{account}/blobServices/default/containers/tfstate");
    let paths: Vec<String> = arm.fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect::<Vec<_>>(),
        [&base, &account, &container].map(|p| p.to_ascii_lowercase())
    );

    let work = workdir(&p);
    let imports = read(&work.join("nubes_imports.tf"));
    for (to, id) in [
        ("azurerm_resource_group.state", &base),
        ("azurerm_storage_account.state", &account),
        ("azurerm_storage_container.state", &container),
    ] {
        assert!(
            imports.contains(&format!("import {{\n  to = {to}\n  id = \"{id}\"\n}}")),
            "{imports}"
        );
    }
    let vars: serde_json::Value =
        serde_json::from_str(&read(&work.join("nubes.auto.tfvars.json"))).expect("tfvars");
    assert_eq!(
        vars["location"], "westeurope",
        "the existing account's region is kept"
    );
    assert_eq!(vars["replication_type"], "GRS");
    assert_eq!(vars["account_name"], "stdemostate");
    assert_eq!(vars["subscription_id"], SUB);
    assert_eq!(
        vars["resource_group_tags"]["team"], "web",
        "an adopted group keeps its tags"
    );
    assert_eq!(vars["resource_group_tags"]["managed-by"], "nubes");
    assert!(!work.join("terraform.tfstate").exists());

    // What nubes generated is formatted as Terraform formats it.
    let fmt = Command::new("terraform")
        .args(["fmt", "-check", "-diff", "."])
        .current_dir(&work)
        .output()
        .expect("terraform fmt");
    assert!(
        fmt.status.success(),
        "terraform fmt -check on the rendered module:\n{}{}",
        String::from_utf8_lossy(&fmt.stdout),
        String::from_utf8_lossy(&fmt.stderr)
    );
    // And, with its variables and import blocks, it is as clean for checkov.
    assert_eq!(checkov_clean(&work), SKIPPED);
}

#[test]
fn plan_mode_shows_what_would_be_created_and_derives_names_from_the_project() {
    let arm = arm(vec![], vec![], &[]);
    let mut p = project(
        Some("[project]\nname = \"petclinic\"\nlocation = \"westeurope\"\n"),
        &arm,
    );
    p.set_env("AZURE_SUBSCRIPTION_ID", SUB);
    let out = p
        .run(&["bootstrap", "--plan", "--replication", "ragrs"])
        .code(1);
    assert_provider_failure(&out);
    assert!(
        out.stdout.contains("resource group   rg-petclinic-tfstate"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout
            .contains("create in westeurope (RAGRS redundancy"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("container        tfstate"),
        "{}",
        out.all()
    );

    assert_read_only(&arm);
    let checks = arm.fake.requests_to("POST", "/checkNameAvailability");
    assert_eq!(checks.len(), 1, "{:?}", arm.fake.requests());
    let asked: serde_json::Value = serde_json::from_str(&checks[0].body).expect("body");
    let name = asked["name"].as_str().expect("name");
    assert!(
        name.starts_with("stpetclinic") && name.len() <= 24,
        "{name}"
    );
    assert_eq!(asked["type"], "Microsoft.Storage/storageAccounts");

    let work = workdir(&p);
    assert!(!work.join("nubes_imports.tf").exists(), "nothing to adopt");
    let vars: serde_json::Value =
        serde_json::from_str(&read(&work.join("nubes.auto.tfvars.json"))).expect("tfvars");
    assert_eq!(vars["account_name"], name);
    assert_eq!(vars["soft_delete_days"], 7);

    // The same name on every run: a second run finds what the first created.
    let again = p.run(&["bootstrap", "--plan"]).code(1);
    assert!(again.stdout.contains(name), "{}", again.all());
}

#[test]
fn an_account_name_held_elsewhere_is_refused() {
    let arm = arm(
        vec![group_in("rg-demo-tfstate", "westeurope", &[])],
        vec![],
        &["sttaken"],
    );
    let p = project(None, &arm);
    let out = p
        .run(&[
            "bootstrap",
            "--subscription",
            SUB,
            "--resource-group",
            "rg-demo-tfstate",
            "--account",
            "sttaken",
        ])
        .code(2);
    assert!(
        out.stderr
            .contains("storage account name `sttaken` is already taken"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr
            .contains("The storage account named sttaken is already taken."),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains("choose another name with --account"),
        "{}",
        out.all()
    );
    assert_read_only(&arm);
    assert!(!workdir(&p).exists(), "Terraform was not started");
}

#[test]
fn an_existing_account_is_not_moved_to_another_region() {
    let arm = arm(
        vec![group_in("rg-demo-tfstate", "westeurope", &[])],
        vec![storage_account(
            "rg-demo-tfstate",
            "stdemostate",
            "westeurope",
            &[],
        )],
        &[],
    );
    let p = project(None, &arm);
    let out = p
        .run(&[
            "bootstrap",
            "--subscription",
            SUB,
            "--resource-group",
            "rg-demo-tfstate",
            "--account",
            "stdemostate",
            "--location",
            "eastus",
        ])
        .code(2);
    assert!(
        out.stderr
            .contains("already exists in westeurope, but --location asks for eastus"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains("--location westeurope"),
        "{}",
        out.all()
    );
    assert_read_only(&arm);
}

#[test]
fn resource_manager_refusals_are_explained() {
    let arm = arm(vec![], vec![], &[]);
    let mut p = project(None, &arm);
    p.set_env("NUBES_ARM_TOKEN", "a-token-the-fake-refuses");
    let out = p
        .run(&[
            "bootstrap",
            "--subscription",
            SUB,
            "--location",
            "westeurope",
        ])
        .code(2);
    assert!(
        out.stderr
            .contains("looking for resource group `rg-nubes-tfstate`"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains("did not accept the access token"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("Reader role"), "{}", out.all());
    assert!(
        !out.all().contains("a-token-the-fake-refuses"),
        "{}",
        out.all()
    );
}

// ---------------------------------------------------------------------------------
// The module itself.

fn module_dir() -> PathBuf {
    repo().join("terraform/bootstrap")
}

fn checkov() -> PathBuf {
    let path = std::env::var_os("NUBES_TEST_CHECKOV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/tools/venv-lint/bin/checkov"));
    assert!(
        path.is_file(),
        "checkov not found at {}: run scripts/install-prereqs.sh (scripts/test.sh does it), \
         which writes $NUBES_TEST_CHECKOV into .cache/tools/env.sh",
        path.display()
    );
    path
}

#[test]
fn module_is_formatted_and_parses_as_hcl() {
    let fmt = Command::new("terraform")
        .args(["fmt", "-check", "-diff", "-recursive"])
        .arg(module_dir())
        .output()
        .expect("terraform fmt");
    assert!(
        fmt.status.success(),
        "terraform fmt -check terraform/bootstrap:\n{}",
        String::from_utf8_lossy(&fmt.stdout)
    );
    let mut files = 0;
    for entry in std::fs::read_dir(module_dir()).expect("module dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tf") {
            let text = read(&path);
            hcl::from_str::<hcl::Body>(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            files += 1;
        }
    }
    assert_eq!(files, 4);
}

/// checkov's JSON report on `dir`, asserting there is no failed check and each skip
/// carries a reason; returns the skipped check IDs, sorted.
fn checkov_clean(dir: &Path) -> Vec<String> {
    let out = Command::new(checkov())
        .args(["--directory"])
        .arg(dir)
        .args([
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("run checkov");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov did not print JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
        .collect();
    assert!(
        failed.is_empty(),
        "checkov failed checks in {}: {failed:#?}",
        dir.display()
    );
    assert!(
        results["passed_checks"]
            .as_array()
            .is_some_and(|p| p.len() >= 10),
        "checkov passed fewer checks than expected: {}",
        report["summary"]
    );
    let mut skipped: Vec<String> = Vec::new();
    for check in results["skipped_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let id = check["check_id"].as_str().unwrap_or_default().to_string();
        let reason = check["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.len() > 40,
            "{id} is skipped without a real reason: {reason:?}"
        );
        skipped.push(id);
    }
    skipped.sort();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    skipped
}

/// Each exception is deliberate: a new one must be added here too.
const SKIPPED: [&str; 5] = [
    "CKV2_AZURE_1",
    "CKV2_AZURE_21",
    "CKV2_AZURE_33",
    "CKV_AZURE_33",
    "CKV_AZURE_59",
];

#[test]
fn module_passes_checkov_with_each_exception_reasoned() {
    assert_eq!(checkov_clean(&module_dir()), SKIPPED);
}

/// The report reads what `terraform output -json` really prints: a stand-in configuration
/// with the module's outputs (same names, values the module would produce) is applied by
/// the real Terraform, which needs no provider for outputs.
#[test]
fn report_reads_real_terraform_output_json() {
    let declared: Vec<String> = hcl::from_str::<hcl::Body>(&read(&module_dir().join("outputs.tf")))
        .expect("outputs.tf")
        .blocks()
        .filter(|b| b.identifier() == "output")
        .filter_map(|b| b.labels().first().map(|l| l.as_str().to_string()))
        .collect();
    let account_id = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-demo-tfstate/providers/Microsoft.Storage/storageAccounts/stdemostate"
    );
    let values = [
        ("resource_group", "rg-demo-tfstate"),
        ("account_name", "stdemostate"),
        ("account_id", account_id.as_str()),
        ("account_url", "https://stdemostate.blob.core.windows.net"),
        ("container", "tfstate"),
    ];
    let mut names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
    names.sort();
    let mut declared_sorted = declared.clone();
    declared_sorted.sort();
    assert_eq!(
        declared_sorted, names,
        "the stand-in has the module's outputs"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let config: String = values
        .iter()
        .map(|(n, v)| format!("output \"{n}\" {{\n  value = \"{v}\"\n}}\n"))
        .collect();
    std::fs::write(dir.path().join("main.tf"), config).expect("write");
    let tf = |args: &[&str]| {
        let out = Command::new("terraform")
            .args(args)
            .current_dir(dir.path())
            .env("TF_IN_AUTOMATION", "1")
            .output()
            .expect("terraform");
        assert!(
            out.status.success(),
            "terraform {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    tf(&["init", "-input=false"]);
    tf(&["apply", "-input=false", "-auto-approve"]);
    let json = tf(&["output", "-json"]);

    let outputs = nubes::commands::bootstrap::report::Outputs::from_json(&json).expect("outputs");
    assert_eq!(
        outputs.account_url,
        "https://stdemostate.blob.core.windows.net"
    );
    assert_eq!(outputs.account_id, account_id);
    let options = nubes::commands::bootstrap::options::Options {
        subscription: SUB.into(),
        resource_group: "rg-demo-tfstate".into(),
        account: "stdemostate".into(),
        account_explicit: true,
        location: Some("westeurope".into()),
        location_from: "--location",
        container: "tfstate".into(),
        soft_delete_days: 7,
        replication: None,
        repo: Some("octo-org/petclinic".into()),
        default_branch: "main".into(),
        client_id: None,
        tenant_id: Some("99999999-8888-7777-6666-555555555555".into()),
        key: "{env}.terraform.tfstate".into(),
        project: None,
        plan_only: false,
        yes: false,
    };
    let text = nubes::commands::bootstrap::report::render(&outputs, &options);
    assert!(
        text.contains("    account_url = \"https://stdemostate.blob.core.windows.net\""),
        "{text}"
    );
    assert!(
        text.contains("    key = \"{env}.terraform.tfstate\""),
        "{text}"
    );
    assert!(
        text.contains("gh variable set AZURE_TENANT_ID --body 99999999-8888-7777-6666-555555555555 --repo octo-org/petclinic"),
        "{text}"
    );
    assert!(text.contains(&format!("--scope {account_id}")), "{text}");
}
