//! Clear messages and the right exit code for every way the state storage can fail.

use crate::support::{Azurite, Project, block_on};

#[test]
fn storage_unreachable_is_an_operational_failure() {
    let mut az = Azurite::https();
    let p = Project::on(&az, "");
    az.stop();
    let out = p
        .run(&["tf", "alice", "--", "init", "-input=false"])
        .code(1);
    assert!(
        out.stderr.contains("cannot connect") && out.stderr.contains("127.0.0.1"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"));
}

#[test]
fn missing_container_is_a_configuration_error() {
    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    p.set_env("NUBES_STATE_CONTAINER", "nosuchcontainer");
    let out = p
        .run(&["tf", "alice", "--", "init", "-input=false"])
        .code(2);
    assert!(
        out.stderr
            .contains("container `nosuchcontainer` does not exist"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
}

#[test]
fn wrong_credentials_are_a_configuration_error() {
    let az = Azurite::http();
    let mut p = Project::on(&az, "");
    let forged = az.sas.replace("sig=", "sig=AAAA");
    p.set_env("NUBES_STORAGE_SAS", &forged);
    let out = p
        .run(&["tf", "alice", "--", "init", "-input=false"])
        .code(2);
    assert!(
        out.stderr.contains("refused nubes's credentials"),
        "{}",
        out.stderr
    );
    assert!(
        !out.all().contains(forged.split("sig=").nth(1).unwrap()),
        "the SAS signature leaked"
    );

    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    p.set_env("NUBES_STORAGE_TOKEN", "not-a-jwt-at-all");
    let out = p
        .run(&["tf", "alice", "--", "init", "-input=false"])
        .code(2);
    assert!(
        out.stderr.contains("refused nubes's credentials"),
        "{}",
        out.stderr
    );

    if which::which("az").is_err() {
        p.unset_env("NUBES_STORAGE_TOKEN");
        let out = p.run(&["tf", "alice", "--", "init"]).code(2);
        assert!(
            out.stderr.contains("no Azure credentials found"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn untrusted_certificate_is_reported() {
    let az = Azurite::https();
    let mut p = Project::on(&az, "");
    p.unset_env("NUBES_STORAGE_CA_CERT");
    let out = p.run(&["tf", "alice", "--", "init", "-input=false"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    p.set_env("NUBES_STORAGE_CA_CERT", "/nonexistent/ca.pem");
    let out = p
        .run(&["tf", "alice", "--", "init", "-input=false"])
        .code(2);
    assert!(
        out.stderr.contains("NUBES_STORAGE_CA_CERT"),
        "{}",
        out.stderr
    );
}

#[test]
fn corrupt_state_blob_is_reported_not_handed_to_terraform() {
    let az = Azurite::https();
    let p = Project::on(&az, "");
    block_on(az.blobs().put(
        "tfstate",
        "alice.terraform.tfstate",
        b"{\"version\":4,\"serial\":3,\"lin".to_vec(),
        &[],
    ));
    let out = p.run(&["tf", "alice", "--", "init", "-input=false"]);
    assert_ne!(out.code, 0);
    assert!(
        out.all().contains("corrupt") && out.all().contains("nubes state restore"),
        "{}",
        out.all()
    );
    assert!(!out.all().contains("panicked"));
    assert_eq!(
        block_on(az.blobs().get("tfstate", "alice.terraform.tfstate")).body,
        b"{\"version\":4,\"serial\":3,\"lin"
    );
}

#[test]
fn missing_terraform_binary_is_a_configuration_error() {
    let az = Azurite::https();
    let p = Project::on(
        &az,
        "[terraform]\nbinary = \"terraform-that-does-not-exist\"\n",
    );
    let out = p.run(&["tf", "alice", "--", "init"]).code(2);
    assert!(
        out.stderr
            .contains("`terraform-that-does-not-exist` was not found on PATH"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_terraform_folder_is_a_configuration_error() {
    let p = Project::new("[state]\nbackend = \"local\"\n", &[]);
    let out = p.run(&["tf", "alice", "--", "init"]).code(2);
    assert!(
        out.stderr.contains("no Terraform configuration"),
        "{}",
        out.stderr
    );
}
