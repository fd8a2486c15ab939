//! Every Azure credential path of README's "Azure credentials", end to end: a real
//! `nubes up` (state in Azurite over HTTPS with `--oauth basic`, a Flex Consumption
//! function app read from the Resource Manager fake and deployed through the Kudu fake)
//! with tokens from the in-test Entra ID (`entra`), reached through
//! `AZURE_AUTHORITY_HOST`. Each test starts from the environment a user would have,
//! asserts the scope asked for each service, what Terraform received for its own
//! `azurerm` provider (recorded by a wrapper that runs the real Terraform), and that no
//! secret was printed. Then the precedence of the chain, and refusals that say what to do.

use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::arm::fake::{FakeArm, SUBSCRIPTION, group_in, web_app};
use crate::entra::{self, App, EXCHANGE_AUDIENCE, Entra, GITHUB_ISSUER, K8S_ISSUER, TENANT};
use crate::kudu::fake::{APP_SERVICE_AUDIENCE, FakeKudu, Script, Site};
use crate::support::{Azurite, Out, Project};

const STORAGE: &str = "https://storage.azure.com/.default";
const ARM: &str = "https://management.azure.com/.default";
const APP_SERVICE: &str = "https://appservice.azure.com/.default";
const CLIENT: &str = "5a1c9e3b-7d2f-4b8a-9c6e-1f0a2b3c4d5e";
const SECRET: &str = "nubes-test-client-secret~Q8x.2vLw9";
const SUBJECT: &str = "repo:octo-org/octo-repo:ref:refs/heads/env-alice";

/// Azurite, the identity platform, Resource Manager, Kudu and a project wired to them,
/// with Terraform behind a wrapper that records its Azure variables.
struct World {
    az: Azurite,
    rt: tokio::runtime::Runtime,
    entra: Entra,
    arm: FakeArm,
    kudu: FakeKudu,
    p: Project,
    bin: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let az = Azurite::https();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let entra = rt.block_on(Entra::start());
        let kudu = rt.block_on(FakeKudu::start_with(
            Script::Succeed,
            Site {
                flex: true,
                ..Site::default()
            },
        ));
        // Resource Manager compares the whole token: the one the identity platform will
        // hand this client for Resource Manager's audience.
        let arm_token = entra.token_for(TENANT, CLIENT, "https://management.azure.com");
        let arm = rt.block_on(FakeArm::start(
            &arm_token,
            10,
            vec![group_in("rg-demo-alice", "eastus", &[])],
        ));
        arm.add_site(web_app(
            "rg-demo-alice",
            "func-demo-alice",
            "functionapp,linux",
            "FlexConsumption",
        ));
        let mut p = Project::on(
            &az,
            "[build]\ncommand = \"mkdir -p out && echo '{}' > out/host.json\"\nartifact = \"out\"\n\n[deploy]\ntarget = \"functions\"\n",
        );
        let stack = format!(
            "terraform {{\n  backend \"azurerm\" {{}}\n}}\nvariable \"environment\" {{\n  type = string\n}}\n\
             output \"scm_url\" {{\n  value = \"{}\"\n}}\noutput \"application_url\" {{\n  value = \"{}\"\n}}\n\
             output \"resource_group\" {{\n  value = \"rg-demo-alice\"\n}}\noutput \"app_name\" {{\n  value = \"func-demo-alice\"\n}}\n",
            kudu.scm_url, kudu.site_url
        );
        std::fs::write(p.path().join("terraform/main.tf"), stack).unwrap();
        // No static token: the chain must find the credential under test.
        p.unset_env("NUBES_STORAGE_TOKEN");
        let bin = tempfile::tempdir().unwrap();
        let bundle = entra::ca_bundle(bin.path(), &az.ca_pem, &entra);
        p.set_env("NUBES_STORAGE_CA_CERT", bundle.to_str().unwrap());
        p.set_env("AZURE_AUTHORITY_HOST", &entra.authority);
        p.set_env("NUBES_ARM_ENDPOINT", &arm.endpoint);
        terraform_wrapper(bin.path());
        p.set_env(
            "PATH",
            &format!(
                "{}:{}",
                bin.path().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        World {
            az,
            rt,
            entra,
            arm,
            kudu,
            p,
            bin,
        }
    }

    /// The variables the last Terraform run had (secrets as `sha256:<hex>`).
    fn terraform_saw(&self) -> Vec<String> {
        std::fs::read_to_string(self.bin.path().join("terraform-env"))
            .expect("Terraform ran")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `up alice` succeeded: state written, the site read once, the app deployed with an
    /// App Service token.
    #[track_caller]
    fn up(&self) -> Out {
        let out = self.p.run(&["up", "alice"]).ok();
        assert!(
            out.stdout.contains("OneDeploy (Flex Consumption)"),
            "{}",
            out.all()
        );
        assert_eq!(
            self.arm.requests_to("GET", "/sites/func-demo-alice").len(),
            1
        );
        assert_eq!(self.kudu.wwwroot(), ["host.json"]);
        let seen = self.kudu.requests();
        assert!(!seen.is_empty());
        for s in &seen {
            assert!(s.authorized, "{s:?}");
            assert_eq!(s.audience.as_deref(), Some(APP_SERVICE_AUDIENCE), "{s:?}");
        }
        let blobs = self.rt.block_on(self.az.blobs().list("tfstate", ""));
        assert!(blobs.contains("alice"), "{blobs}");
        out
    }

    /// No issued token, client secret or federated token in anything nubes wrote.
    #[track_caller]
    fn nothing_leaked(&self, out: &Out, more: &[&str]) {
        let all = out.all();
        for token in self
            .entra
            .handed_out()
            .iter()
            .map(String::as_str)
            .chain(more.iter().copied())
        {
            assert!(!all.contains(token), "a secret was printed:\n{all}");
            for file in walk(self.p.path()) {
                let text = std::fs::read(&file).unwrap_or_default();
                assert!(
                    !String::from_utf8_lossy(&text).contains(token),
                    "a secret is in {}",
                    file.display()
                );
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.path().components().any(|c| c.as_os_str() == "providers"))
        .map(|e| e.into_path())
        .collect()
}

fn sha(v: &str) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(v.as_bytes()))
}

/// A `terraform` that writes the Azure variables it was given (secrets hashed) to
/// `terraform-env` beside it, then runs the real Terraform.
fn terraform_wrapper(bin: &Path) {
    let real = which::which("terraform").expect("terraform on PATH (source .cache/tools/env.sh)");
    let log = bin.join("terraform-env");
    let script = format!(
        r#"#!/bin/sh
{{
for v in ARM_CLIENT_ID ARM_TENANT_ID ARM_SUBSCRIPTION_ID ARM_USE_OIDC ARM_OIDC_TOKEN_FILE_PATH ACTIONS_ID_TOKEN_REQUEST_URL; do
  eval "x=\${{$v-<unset>}}"; printf '%s=%s\n' "$v" "$x"
done
for v in ARM_CLIENT_SECRET ACTIONS_ID_TOKEN_REQUEST_TOKEN NUBES_STORAGE_TOKEN NUBES_STORAGE_SAS; do
  eval "x=\${{$v-}}"
  if [ -n "$x" ]; then printf '%s=sha256:%s\n' "$v" "$(printf %s "$x" | sha256sum | cut -c1-64)"; else printf '%s=<unset>\n' "$v"; fi
done
}} > '{}'
exec '{}' "$@"
"#,
        log.display(),
        real.display()
    );
    let path = bin.join("terraform");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A stand-in `az` that answers `az account get-access-token -o json --scope S` as the
/// Azure CLI documents it (`accessToken`, `expiresOn`, `expires_on`, `subscription`,
/// `tenant`, `tokenType`), with `tokens` per scope, and logs each call's arguments.
fn az_stand_in(bin: &Path, tokens: &[(&str, String)]) {
    let mut cases = String::new();
    for (scope, token) in tokens {
        cases.push_str(&format!("    '{scope}') token='{token}' ;;\n"));
    }
    let script = format!(
        r#"#!/bin/sh
echo "$*" >> '{log}'
[ "$1 $2" = "account get-access-token" ] || {{ echo "ERROR: stand-in knows only get-access-token" >&2; exit 2; }}
scope=''
while [ $# -gt 0 ]; do
  case "$1" in --scope) scope="$2"; shift ;; esac
  shift
done
case "$scope" in
{cases}    *) echo "ERROR: AADSTS70011: The provided value for scope $scope is not valid." >&2; exit 1 ;;
esac
exp=$(( $(date +%s) + 3600 ))
printf '{{"accessToken":"%s","expiresOn":"%s","expires_on":%s,"subscription":"{SUBSCRIPTION}","tenant":"{TENANT}","tokenType":"Bearer"}}\n' "$token" "$(date -d @$exp '+%Y-%m-%d %H:%M:%S.000000')" "$exp"
"#,
        log = bin.join("az-calls").display()
    );
    let path = bin.join("az");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The requests the identity platform saw all came from `client` with `auth`, and asked
/// for storage (state), Resource Manager (the site) and App Service (Kudu).
#[track_caller]
fn assert_tokens(entra: &Entra, auth: &str) {
    let seen = entra.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(
            (
                s.tenant.as_str(),
                s.client_id.as_str(),
                s.grant_type.as_str(),
                s.auth
            ),
            (TENANT, CLIENT, "client_credentials", auth),
            "{s:?}"
        );
        assert!(s.outcome.is_ok(), "{s:?}");
    }
    let mut scopes = entra.scopes();
    scopes.sort();
    assert_eq!(scopes, [APP_SERVICE, ARM, STORAGE]);
}

#[test]
fn azure_credentials_json_signs_in_every_service_and_terraform_gets_arm_variables() {
    let mut w = World::new();
    w.entra.add_app(
        TENANT,
        CLIENT,
        App {
            secret: Some(SECRET.into()),
            ..App::default()
        },
    );
    // NubesGen's secret, as `az ad sp create-for-rbac --sdk-auth` writes it.
    let json = serde_json::json!({
        "clientId": CLIENT,
        "clientSecret": SECRET,
        "subscriptionId": SUBSCRIPTION,
        "tenantId": TENANT,
        "activeDirectoryEndpointUrl": "https://login.microsoftonline.com",
        "resourceManagerEndpointUrl": "https://management.azure.com/",
        "activeDirectoryGraphResourceId": "https://graph.windows.net/",
        "sqlManagementEndpointUrl": "https://management.core.windows.net:8443/",
        "galleryEndpointUrl": "https://gallery.azure.com/",
        "managementEndpointUrl": "https://management.core.windows.net/"
    })
    .to_string();
    w.p.set_env("AZURE_CREDENTIALS", &json);
    let out = w.up();
    assert_tokens(&w.entra, "secret");
    let tf = w.terraform_saw();
    for want in [
        format!("ARM_CLIENT_ID={CLIENT}"),
        format!("ARM_TENANT_ID={TENANT}"),
        format!("ARM_SUBSCRIPTION_ID={SUBSCRIPTION}"),
        format!("ARM_CLIENT_SECRET={}", sha(SECRET)),
        "ARM_USE_OIDC=<unset>".into(),
        "NUBES_STORAGE_TOKEN=<unset>".into(),
    ] {
        assert!(tf.contains(&want), "{want} not in {tf:?}");
    }
    w.nothing_leaked(&out, &[SECRET, &json]);
}

#[test]
fn github_oidc_exchanges_the_job_token_and_terraform_can_do_the_same() {
    let mut w = World::new();
    w.entra.add_app(
        TENANT,
        CLIENT,
        App {
            federated: vec![(GITHUB_ISSUER.into(), SUBJECT.into())],
            ..App::default()
        },
    );
    let request_token = "ghs-oidc-request-token-7f3a9b2c1d";
    w.entra.github_job(request_token, SUBJECT);
    w.p.set_env("ACTIONS_ID_TOKEN_REQUEST_URL", &w.entra.github_url);
    w.p.set_env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", request_token);
    // The `AZURE_*` spellings: Terraform's provider reads only `ARM_*`.
    w.p.set_env("AZURE_CLIENT_ID", CLIENT);
    w.p.set_env("AZURE_TENANT_ID", TENANT);
    w.p.set_env("ARM_SUBSCRIPTION_ID", SUBSCRIPTION);
    let out = w.up();
    assert_tokens(&w.entra, "assertion");
    for s in w.entra.seen() {
        let claims = s.assertion.expect("an assertion");
        assert_eq!(claims["iss"], GITHUB_ISSUER);
        assert_eq!(claims["sub"], SUBJECT);
        assert_eq!(claims["aud"], EXCHANGE_AUDIENCE);
    }
    let tf = w.terraform_saw();
    for want in [
        format!("ARM_CLIENT_ID={CLIENT}"),
        format!("ARM_TENANT_ID={TENANT}"),
        "ARM_USE_OIDC=true".into(),
        format!("ACTIONS_ID_TOKEN_REQUEST_URL={}", w.entra.github_url),
        format!("ACTIONS_ID_TOKEN_REQUEST_TOKEN={}", sha(request_token)),
        "ARM_CLIENT_SECRET=<unset>".into(),
    ] {
        assert!(tf.contains(&want), "{want} not in {tf:?}");
    }
    w.nothing_leaked(&out, &[request_token]);
}

#[test]
fn workload_identity_reads_the_token_file_and_terraform_gets_its_path() {
    let mut w = World::new();
    let subject = "system:serviceaccount:deploy:nubes";
    w.entra.add_app(
        TENANT,
        CLIENT,
        App {
            federated: vec![(K8S_ISSUER.into(), subject.into())],
            ..App::default()
        },
    );
    let token = w.entra.mint_federated(K8S_ISSUER, subject, 3600);
    let file = w.bin.path().join("azure-identity-token");
    std::fs::write(&file, &token).unwrap();
    w.p.set_env("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap());
    w.p.set_env("AZURE_CLIENT_ID", CLIENT);
    w.p.set_env("AZURE_TENANT_ID", TENANT);
    w.p.set_env("ARM_SUBSCRIPTION_ID", SUBSCRIPTION);
    let out = w.up();
    assert_tokens(&w.entra, "assertion");
    for s in w.entra.seen() {
        assert_eq!(s.assertion.expect("an assertion")["sub"], subject);
    }
    let tf = w.terraform_saw();
    for want in [
        format!("ARM_CLIENT_ID={CLIENT}"),
        format!("ARM_TENANT_ID={TENANT}"),
        "ARM_USE_OIDC=true".into(),
        format!("ARM_OIDC_TOKEN_FILE_PATH={}", file.display()),
    ] {
        assert!(tf.contains(&want), "{want} not in {tf:?}");
    }
    w.nothing_leaked(&out, &[&token]);
}

#[test]
fn a_client_secret_signs_in_and_terraform_keeps_the_users_arm_variables() {
    let mut w = World::new();
    w.entra.add_app(
        TENANT,
        CLIENT,
        App {
            secret: Some(SECRET.into()),
            ..App::default()
        },
    );
    w.p.set_env("ARM_CLIENT_ID", CLIENT);
    w.p.set_env("ARM_TENANT_ID", TENANT);
    w.p.set_env("ARM_CLIENT_SECRET", SECRET);
    w.p.set_env("ARM_SUBSCRIPTION_ID", SUBSCRIPTION);
    let out = w.up();
    assert_tokens(&w.entra, "secret");
    let tf = w.terraform_saw();
    for want in [
        format!("ARM_CLIENT_ID={CLIENT}"),
        format!("ARM_TENANT_ID={TENANT}"),
        format!("ARM_CLIENT_SECRET={}", sha(SECRET)),
        "ARM_USE_OIDC=<unset>".into(),
    ] {
        assert!(tf.contains(&want), "{want} not in {tf:?}");
    }
    w.nothing_leaked(&out, &[SECRET]);
}

#[test]
fn the_azure_cli_is_asked_for_each_scope_and_terraform_is_left_to_it() {
    let mut w = World::new();
    // The CLI signs in on its own; the tokens are what it would hold for this client.
    let tokens = [
        (
            STORAGE,
            w.entra
                .token_for(TENANT, CLIENT, "https://storage.azure.com"),
        ),
        (
            ARM,
            w.entra
                .token_for(TENANT, CLIENT, "https://management.azure.com"),
        ),
        (
            APP_SERVICE,
            w.entra
                .token_for(TENANT, CLIENT, "https://appservice.azure.com"),
        ),
    ];
    az_stand_in(w.bin.path(), &tokens);
    w.p.set_env("ARM_SUBSCRIPTION_ID", SUBSCRIPTION);
    let out = w.up();
    assert!(w.entra.seen().is_empty(), "the CLI, not nubes, signs in");
    let calls = std::fs::read_to_string(w.bin.path().join("az-calls")).unwrap();
    let mut scopes: Vec<&str> = calls
        .lines()
        .map(|l| {
            assert!(
                l.starts_with("account get-access-token -o json --scope "),
                "{l}"
            );
            l.rsplit(' ').next().unwrap_or_default()
        })
        .collect();
    scopes.sort();
    scopes.dedup();
    assert_eq!(scopes, [APP_SERVICE, ARM, STORAGE]);
    let tf = w.terraform_saw();
    assert!(tf.contains(&"ARM_CLIENT_ID=<unset>".to_string()), "{tf:?}");
    let issued: Vec<&str> = tokens.iter().map(|(_, t)| t.as_str()).collect();
    w.nothing_leaked(&out, &issued);
}

/// README: AZURE_CREDENTIALS, then GitHub OIDC, then the token file, then the client
/// secret, then the Azure CLI; each step found by `nubes list` while everything below
/// it is set too.
#[test]
fn the_chain_takes_the_first_source_readme_lists() {
    let mut w = World::new();
    let sp_client = "11111111-2222-4333-8444-555555555555";
    w.entra.add_app(
        TENANT,
        sp_client,
        App {
            secret: Some("sp-secret-from-azure-credentials".into()),
            ..App::default()
        },
    );
    let subject = "system:serviceaccount:deploy:nubes";
    w.entra.add_app(
        TENANT,
        CLIENT,
        App {
            secret: Some(SECRET.into()),
            federated: vec![
                (GITHUB_ISSUER.into(), SUBJECT.into()),
                (K8S_ISSUER.into(), subject.into()),
            ],
        },
    );
    let request_token = "ghs-oidc-request-token-precedence";
    w.entra.github_job(request_token, SUBJECT);
    let file = w.bin.path().join("azure-identity-token");
    std::fs::write(&file, w.entra.mint_federated(K8S_ISSUER, subject, 3600)).unwrap();
    az_stand_in(w.bin.path(), &[]);
    w.p.set_env(
        "AZURE_CREDENTIALS",
        &serde_json::json!({"clientId": sp_client, "clientSecret": "sp-secret-from-azure-credentials", "tenantId": TENANT, "subscriptionId": SUBSCRIPTION}).to_string(),
    );
    w.p.set_env("ACTIONS_ID_TOKEN_REQUEST_URL", &w.entra.github_url);
    w.p.set_env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", request_token);
    w.p.set_env("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap());
    w.p.set_env("ARM_CLIENT_ID", CLIENT);
    w.p.set_env("ARM_TENANT_ID", TENANT);
    w.p.set_env("ARM_CLIENT_SECRET", SECRET);

    let last = |w: &World| {
        let out = w.p.run(&["list"]).ok();
        let seen = w.entra.seen();
        let s = seen.last().cloned().expect("a token request");
        assert_eq!(s.scope, STORAGE);
        assert!(s.outcome.is_ok(), "{s:?}");
        w.nothing_leaked(&out, &[SECRET, request_token]);
        s
    };
    let s = last(&w);
    assert_eq!((s.client_id.as_str(), s.auth), (sp_client, "secret"));

    w.p.unset_env("AZURE_CREDENTIALS");
    let s = last(&w);
    assert_eq!(s.auth, "assertion");
    assert_eq!(s.assertion.unwrap()["iss"], GITHUB_ISSUER);

    w.p.unset_env("ACTIONS_ID_TOKEN_REQUEST_URL");
    let s = last(&w);
    assert_eq!(s.assertion.unwrap()["iss"], K8S_ISSUER);

    w.p.unset_env("AZURE_FEDERATED_TOKEN_FILE");
    let s = last(&w);
    assert_eq!((s.client_id.as_str(), s.auth), (CLIENT, "secret"));

    // Last, the CLI: this stand-in knows no scope, so its refusal shows it was asked.
    w.p.unset_env("ARM_CLIENT_SECRET");
    let before = w.entra.seen().len();
    let out = w.p.run(&["list"]).code(2);
    assert_eq!(w.entra.seen().len(), before);
    assert!(
        out.stderr.contains("Azure CLI login") && out.stderr.contains("az login"),
        "{}",
        out.stderr
    );
}

/// A refusal by the identity platform, from `nubes list`: exit 2, the credential source
/// named, the AADSTS code, and `hint` (what to do).
#[track_caller]
fn refused(w: &World, source: &str, code: &str, hint: &[&str], secrets: &[&str]) {
    let out = w.p.run(&["list"]).code(2);
    assert!(
        out.stderr.contains(source) && out.stderr.contains(code),
        "{}",
        out.stderr
    );
    for h in hint {
        assert!(
            out.stderr.contains(h),
            "`{h}` missing from:\n{}",
            out.stderr
        );
    }
    w.nothing_leaked(&out, secrets);
}

#[test]
fn refusals_name_the_source_and_say_what_to_fix() {
    let mut w = World::new();
    w.entra.add_app(
        TENANT,
        CLIENT,
        App {
            secret: Some(SECRET.into()),
            federated: vec![(
                GITHUB_ISSUER.into(),
                "repo:octo-org/octo-repo:ref:refs/heads/main".into(),
            )],
        },
    );
    // A tenant Entra ID does not know.
    w.p.set_env("ARM_CLIENT_ID", CLIENT);
    w.p.set_env("ARM_TENANT_ID", "0b0b0b0b-1c1c-4d2d-8e3e-4f4f4f4f4f4f");
    w.p.set_env("ARM_CLIENT_SECRET", SECRET);
    refused(
        &w,
        "client secret",
        "AADSTS90002",
        &["ARM_TENANT_ID", "az account show"],
        &[SECRET],
    );

    // An application the tenant does not have.
    w.p.set_env("ARM_TENANT_ID", TENANT);
    w.p.set_env("ARM_CLIENT_ID", "99999999-8888-4777-8666-555555555555");
    refused(
        &w,
        "client secret",
        "AADSTS700016",
        &["ARM_CLIENT_ID"],
        &[SECRET],
    );

    // A wrong secret in AZURE_CREDENTIALS.
    let wrong = "not-the-secret-of-this-app-42";
    w.p.set_env(
        "AZURE_CREDENTIALS",
        &serde_json::json!({"clientId": CLIENT, "clientSecret": wrong, "tenantId": TENANT})
            .to_string(),
    );
    refused(
        &w,
        "AZURE_CREDENTIALS",
        "AADSTS7000215",
        &["clientSecret in the AZURE_CREDENTIALS secret"],
        &[SECRET, wrong],
    );
    w.p.unset_env("AZURE_CREDENTIALS");
    w.p.unset_env("ARM_CLIENT_SECRET");

    // GitHub sends the branch's subject; the app trusts only main's.
    let request_token = "ghs-oidc-request-token-refusals";
    w.entra.github_job(request_token, SUBJECT);
    w.p.set_env("ARM_CLIENT_ID", CLIENT);
    w.p.set_env("ACTIONS_ID_TOKEN_REQUEST_URL", &w.entra.github_url);
    w.p.set_env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", request_token);
    refused(
        &w,
        "GitHub OIDC",
        "AADSTS70021",
        &[&format!("subject `{SUBJECT}`"), "federated credential"],
        &[request_token],
    );
    w.p.unset_env("ACTIONS_ID_TOKEN_REQUEST_URL");

    // An expired token file.
    let subject = "system:serviceaccount:deploy:nubes";
    w.entra.add_app(
        TENANT,
        CLIENT,
        App {
            federated: vec![(K8S_ISSUER.into(), subject.into())],
            ..App::default()
        },
    );
    let expired = w.entra.mint_federated(K8S_ISSUER, subject, -120);
    let file = w.bin.path().join("expired-token");
    std::fs::write(&file, &expired).unwrap();
    w.p.set_env("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap());
    refused(
        &w,
        "workload identity",
        "AADSTS700024",
        &["AZURE_FEDERATED_TOKEN_FILE has expired"],
        &[&expired],
    );
    // And one for a subject the app does not trust.
    let other = w
        .entra
        .mint_federated(K8S_ISSUER, "system:serviceaccount:default:other", 3600);
    std::fs::write(&file, &other).unwrap();
    refused(
        &w,
        "workload identity",
        "AADSTS70021",
        &["subject `system:serviceaccount:default:other`"],
        &[&other],
    );
}

#[test]
fn doctor_reports_each_check_and_the_fix_for_a_failure() {
    let mut w = World::new();
    w.entra.add_app(
        TENANT,
        CLIENT,
        App {
            secret: Some(SECRET.into()),
            ..App::default()
        },
    );
    w.p.set_env("ARM_CLIENT_ID", CLIENT);
    w.p.set_env("ARM_TENANT_ID", TENANT);
    w.p.set_env("ARM_CLIENT_SECRET", SECRET);
    let out = w.p.run(&["doctor"]).ok();
    for want in [
        "config: ",
        &format!(
            "credentials: client secret, tenant {TENANT}, client {CLIENT}; token for {STORAGE} expires "
        ),
        "container `tfstate`: container, write, lease, read, delete permitted",
        "terraform: ",
        "build: ",
        "deploy target: functions ([deploy] target)",
    ] {
        assert!(
            out.stdout.contains(want),
            "`{want}` missing:\n{}",
            out.all()
        );
    }
    w.nothing_leaked(&out, &[SECRET]);
    let listing = w.rt.block_on(w.az.blobs().list("tfstate", ""));
    assert!(
        !listing.contains("nubes-doctor"),
        "probe blob left: {listing}"
    );

    let out = w.p.run(&["doctor", "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config",
            "credentials",
            "state storage",
            "terraform",
            "build",
            "deploy target"
        ]
    );

    // In Actions, a client ID without a secret is OIDC, which needs id-token: write; and
    // an unknown client is named with its fix.
    w.p.unset_env("ARM_CLIENT_SECRET");
    w.p.set_env("GITHUB_ACTIONS", "true");
    w.p.set_env("AZURE_CREDENTIALS", &serde_json::json!({"clientId": "99999999-8888-4777-8666-555555555555", "clientSecret": SECRET, "tenantId": TENANT}).to_string());
    let out = w.p.run(&["doctor", "--json"]).code(1);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let credentials = &doc["checks"][1];
    assert_eq!(credentials["ok"], false);
    assert!(
        credentials["detail"]
            .as_str()
            .unwrap()
            .contains("AADSTS700016")
            && credentials["fix"]
                .as_str()
                .unwrap()
                .contains("clientId in AZURE_CREDENTIALS"),
        "{credentials}"
    );
    w.nothing_leaked(&out, &[SECRET]);
    w.p.unset_env("AZURE_CREDENTIALS");
    let out = w.p.run(&["doctor"]).code(1);
    assert!(
        out.stdout.contains("FAIL actions permissions")
            && out.stdout.contains("permissions: id-token: write"),
        "{}",
        out.all()
    );
}
