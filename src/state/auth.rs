//! Azure credentials for the state account, in the order of DESIGN.md:
//! `NUBES_STORAGE_SAS`, `AZURE_CREDENTIALS` (NubesGen's service-principal JSON), GitHub
//! OIDC, a workload identity token file, a client secret, `NUBES_STORAGE_TOKEN`, and
//! finally the Azure CLI. Every secret is registered for redaction as soon as it is read.
//! Also what Terraform's `azurerm` provider needs to sign in as the same identity
//! ([`terraform_env`]), who that identity is for `nubes doctor` ([`identity`]), and what
//! to do when Entra ID refuses it ([`token_hint`]).

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientMethodOptions, ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, ClientAssertion, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::secrets;

/// How requests to the state account are authorised.
pub enum StorageAuth {
    /// A SAS token appended to every URL (no `?`).
    Sas(String),
    /// An Entra ID token credential, with a description for messages.
    Token(Arc<dyn TokenCredential>, &'static str),
}

impl StorageAuth {
    pub fn describe(&self) -> &'static str {
        match self {
            StorageAuth::Sas(_) => "SAS token (NUBES_STORAGE_SAS)",
            StorageAuth::Token(_, what) => what,
        }
    }
}

impl StorageAuth {
    /// A SAS token given directly (registered for redaction; a leading `?` is dropped).
    pub fn sas(token: &str) -> StorageAuth {
        secrets::register_sas(token);
        StorageAuth::Sas(token.trim().trim_start_matches('?').to_string())
    }

    /// A bearer token given directly (registered for redaction), e.g. from
    /// `az account get-access-token`, or a test's token for Azurite.
    pub fn bearer(token: &str, what: &'static str) -> StorageAuth {
        secrets::register(token);
        StorageAuth::Token(
            Arc::new(StaticToken(Secret::new(token.trim().to_string()))),
            what,
        )
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn first_var(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| var(n))
}

/// Pick the first credential source present in the environment for the state
/// storage: a SAS, else the token chain with `NUBES_STORAGE_TOKEN` as its static token.
pub fn from_env(http: reqwest::Client) -> Result<StorageAuth> {
    if let Some(sas) = var("NUBES_STORAGE_SAS") {
        secrets::register_sas(&sas);
        return Ok(StorageAuth::Sas(sas.trim_start_matches('?').to_string()));
    }
    let (cred, what) = token_credential(http, "NUBES_STORAGE_TOKEN")?;
    Ok(StorageAuth::Token(cred, what))
}

/// Which step of the token chain the environment selects, with what it needs (secrets
/// already registered for redaction).
enum Source {
    ServicePrincipal(ServicePrincipal),
    GitHubOidc {
        url: String,
        request_token: String,
        client_id: String,
        tenant_id: String,
    },
    WorkloadIdentity {
        file: String,
        client_id: Option<String>,
        tenant_id: Option<String>,
    },
    ClientSecret {
        secret: String,
        client_id: String,
        tenant_id: String,
    },
    Static(String),
    Cli,
}

/// The first source of the chain present in the environment (DESIGN.md's order).
fn select(static_token_var: &str) -> Result<Source> {
    let client_id = first_var(&["ARM_CLIENT_ID", "AZURE_CLIENT_ID"]);
    let tenant_id = first_var(&["ARM_TENANT_ID", "AZURE_TENANT_ID"]);
    if let Some(json) = var("AZURE_CREDENTIALS") {
        secrets::register(&json);
        let sp: ServicePrincipal = serde_json::from_str(&json).map_err(|e| {
            Error::input(format!("AZURE_CREDENTIALS is not the service-principal JSON nubes expects: {}", e))
                .hint("it must hold clientId, clientSecret and tenantId, as written by `az ad sp create-for-rbac --sdk-auth`")
        })?;
        secrets::register(&sp.client_secret);
        return Ok(Source::ServicePrincipal(sp));
    }
    if let (Some(url), Some(request_token)) = (
        var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) && let (Some(client_id), Some(tenant_id)) = (client_id.clone(), tenant_id.clone())
    {
        secrets::register(&request_token);
        return Ok(Source::GitHubOidc {
            url,
            request_token,
            client_id,
            tenant_id,
        });
    }
    if let Some(file) = var("AZURE_FEDERATED_TOKEN_FILE") {
        return Ok(Source::WorkloadIdentity {
            file,
            client_id,
            tenant_id,
        });
    }
    if let Some(secret) = first_var(&["ARM_CLIENT_SECRET", "AZURE_CLIENT_SECRET"]) {
        secrets::register(&secret);
        let (Some(client_id), Some(tenant_id)) = (client_id, tenant_id) else {
            return Err(Error::input(
                "a client secret is set but the client ID or tenant ID is missing",
            )
            .hint("set ARM_CLIENT_ID and ARM_TENANT_ID (or AZURE_CLIENT_ID and AZURE_TENANT_ID)"));
        };
        return Ok(Source::ClientSecret {
            secret,
            client_id,
            tenant_id,
        });
    }
    if let Some(token) = var(static_token_var) {
        secrets::register(&token);
        return Ok(Source::Static(token));
    }
    if which::which("az").is_ok() {
        return Ok(Source::Cli);
    }
    Err(Error::input("no Azure credentials found").hint(format!(
        "set one of: NUBES_STORAGE_SAS (state storage only), AZURE_CREDENTIALS, GitHub OIDC (id-token: write + \
         ARM_CLIENT_ID + ARM_TENANT_ID), AZURE_FEDERATED_TOKEN_FILE, ARM_CLIENT_SECRET, {static_token_var}, or log \
         in with `az login`; or use [state] backend = \"local\" to try nubes without Azure"
    )))
}

/// SDK options whose transport is nubes's own reqwest client, so that the identity
/// platform is reached through the same TLS settings as storage (`NUBES_STORAGE_CA_CERT`
/// for a TLS-inspecting proxy, or the tests' CA) and `AZURE_AUTHORITY_HOST` still applies.
fn client_options(http: reqwest::Client) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        ..Default::default()
    }
}

/// The Entra ID token chain of DESIGN.md (everything but the SAS): `AZURE_CREDENTIALS`,
/// GitHub OIDC, workload identity file, client secret, then a static bearer token from
/// `static_token_var` (e.g. `NUBES_STORAGE_TOKEN`, or `NUBES_ARM_TOKEN` for Resource
/// Manager), then the Azure CLI. Each credential asks for the scope its caller needs.
pub fn token_credential(
    http: reqwest::Client,
    static_token_var: &str,
) -> Result<(Arc<dyn TokenCredential>, &'static str)> {
    match select(static_token_var)? {
        Source::ServicePrincipal(sp) => {
            let cred = ClientSecretCredential::new(
                &sp.tenant_id,
                sp.client_id,
                Secret::new(sp.client_secret),
                Some(ClientSecretCredentialOptions {
                    client_options: client_options(http),
                }),
            )
            .map_err(|e| Error::input(format!("AZURE_CREDENTIALS cannot be used: {e}")))?;
            Ok((cred, AZURE_CREDENTIALS_SOURCE))
        }
        Source::GitHubOidc {
            url,
            request_token,
            client_id,
            tenant_id,
        } => {
            let assertion = GitHubOidc {
                url,
                request_token,
                http: http.clone(),
            };
            let cred = ClientAssertionCredential::new(
                tenant_id,
                client_id,
                assertion,
                Some(ClientAssertionCredentialOptions {
                    client_options: client_options(http),
                }),
            )
            .map_err(|e| Error::input(format!("GitHub OIDC credential cannot be used: {e}")))?;
            Ok((cred, GITHUB_OIDC_SOURCE))
        }
        Source::WorkloadIdentity {
            file,
            client_id,
            tenant_id,
        } => {
            let options = WorkloadIdentityCredentialOptions {
                client_id,
                tenant_id,
                token_file_path: Some(file.into()),
                credential_options: ClientAssertionCredentialOptions {
                    client_options: client_options(http),
                },
            };
            let cred = WorkloadIdentityCredential::new(Some(options)).map_err(|e| {
                Error::input(format!(
                    "workload identity (AZURE_FEDERATED_TOKEN_FILE) cannot be used: {e}"
                ))
                .hint("set ARM_CLIENT_ID and ARM_TENANT_ID (or AZURE_CLIENT_ID and AZURE_TENANT_ID) beside it")
            })?;
            Ok((cred, WORKLOAD_IDENTITY_SOURCE))
        }
        Source::ClientSecret {
            secret,
            client_id,
            tenant_id,
        } => {
            let cred = ClientSecretCredential::new(
                &tenant_id,
                client_id,
                Secret::new(secret),
                Some(ClientSecretCredentialOptions {
                    client_options: client_options(http),
                }),
            )
            .map_err(|e| Error::input(format!("client secret credential cannot be used: {e}")))?;
            Ok((cred, CLIENT_SECRET_SOURCE))
        }
        Source::Static(token) => {
            let what = match static_token_var {
                "NUBES_STORAGE_TOKEN" => "bearer token (NUBES_STORAGE_TOKEN)",
                "NUBES_KUDU_TOKEN" => "bearer token (NUBES_KUDU_TOKEN)",
                _ => "bearer token (NUBES_ARM_TOKEN)",
            };
            Ok((Arc::new(StaticToken(Secret::new(token))), what))
        }
        Source::Cli => {
            let cred = AzureCliCredential::new(None)
                .map_err(|e| Error::input(format!("Azure CLI credential cannot be used: {e}")))?;
            Ok((cred, CLI_SOURCE))
        }
    }
}

/// Who nubes signs in as for the state storage, for `nubes doctor` (never a secret).
pub struct Identity {
    pub source: &'static str,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
}

/// The source [`from_env`] would use, with its tenant and client ID when it has them.
pub fn identity() -> Result<Identity> {
    if var("NUBES_STORAGE_SAS").is_some() {
        return Ok(Identity {
            source: "SAS token (NUBES_STORAGE_SAS)",
            tenant_id: None,
            client_id: None,
        });
    }
    let (source, tenant_id, client_id) = match select("NUBES_STORAGE_TOKEN")? {
        Source::ServicePrincipal(sp) => (
            AZURE_CREDENTIALS_SOURCE,
            Some(sp.tenant_id),
            Some(sp.client_id),
        ),
        Source::GitHubOidc {
            client_id,
            tenant_id,
            ..
        } => (GITHUB_OIDC_SOURCE, Some(tenant_id), Some(client_id)),
        Source::WorkloadIdentity {
            client_id,
            tenant_id,
            ..
        } => (WORKLOAD_IDENTITY_SOURCE, tenant_id, client_id),
        Source::ClientSecret {
            client_id,
            tenant_id,
            ..
        } => (CLIENT_SECRET_SOURCE, Some(tenant_id), Some(client_id)),
        Source::Static(_) => ("bearer token (NUBES_STORAGE_TOKEN)", None, None),
        Source::Cli => (CLI_SOURCE, None, None),
    };
    Ok(Identity {
        source,
        tenant_id,
        client_id,
    })
}

pub const AZURE_CREDENTIALS_SOURCE: &str = "service principal from AZURE_CREDENTIALS";
pub const GITHUB_OIDC_SOURCE: &str = "GitHub OIDC federated credential";
pub const WORKLOAD_IDENTITY_SOURCE: &str = "workload identity token file";
pub const CLIENT_SECRET_SOURCE: &str = "client secret";
pub const CLI_SOURCE: &str = "Azure CLI login";

/// The `ARM_*` variables Terraform's `azurerm` provider needs to sign in as the identity
/// nubes found, where the user gave it in a form the provider does not read itself
/// (`AZURE_CREDENTIALS`, the `AZURE_*` spellings, a workload identity file). A variable
/// already set in the environment is left to Terraform as it is; secrets go through the
/// environment only, never a command line or file. The Azure CLI and a static token add
/// nothing (the provider calls `az` itself; a bare token cannot be handed on).
pub fn terraform_env() -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut add = |name: &'static str, value: String| {
        if var(name).is_none() && !value.is_empty() {
            out.push((name, value));
        }
    };
    match select("NUBES_ARM_TOKEN") {
        Ok(Source::ServicePrincipal(sp)) => {
            add("ARM_CLIENT_ID", sp.client_id);
            add("ARM_CLIENT_SECRET", sp.client_secret);
            add("ARM_TENANT_ID", sp.tenant_id);
            if let Some(sub) = sp.subscription_id {
                add("ARM_SUBSCRIPTION_ID", sub);
            }
        }
        Ok(Source::GitHubOidc {
            client_id,
            tenant_id,
            ..
        }) => {
            add("ARM_CLIENT_ID", client_id);
            add("ARM_TENANT_ID", tenant_id);
            add("ARM_USE_OIDC", "true".into());
        }
        Ok(Source::WorkloadIdentity {
            file,
            client_id,
            tenant_id,
        }) => {
            add("ARM_CLIENT_ID", client_id.unwrap_or_default());
            add("ARM_TENANT_ID", tenant_id.unwrap_or_default());
            add("ARM_USE_OIDC", "true".into());
            add("ARM_OIDC_TOKEN_FILE_PATH", file);
        }
        Ok(Source::ClientSecret {
            secret,
            client_id,
            tenant_id,
        }) => {
            add("ARM_CLIENT_ID", client_id);
            add("ARM_CLIENT_SECRET", secret);
            add("ARM_TENANT_ID", tenant_id);
        }
        Ok(Source::Static(_) | Source::Cli) | Err(_) => {}
    }
    if let Some(sub) = var("AZURE_SUBSCRIPTION_ID") {
        add("ARM_SUBSCRIPTION_ID", sub);
    }
    out
}

/// The subject, issuer and expiry of the last federated token nubes presented (GitHub's
/// OIDC token), kept for error messages: none of them is secret.
fn last_federated() -> &'static std::sync::Mutex<Option<FederatedClaims>> {
    static LAST: std::sync::OnceLock<std::sync::Mutex<Option<FederatedClaims>>> =
        std::sync::OnceLock::new();
    LAST.get_or_init(|| std::sync::Mutex::new(None))
}

#[derive(Clone, Debug, Default, Deserialize)]
struct FederatedClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    iss: String,
    #[serde(default)]
    exp: Option<i64>,
}

/// The claims of a JWT, read without checking its signature (only to explain a refusal).
fn claims_of(jwt: &str) -> Option<FederatedClaims> {
    use base64::Engine as _;
    let payload = jwt.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What to do about a token request Entra ID (or the Azure CLI) refused, from the AADSTS
/// code in its answer (codes listed in Microsoft's "Microsoft Entra authentication and
/// authorization error codes"). `source` is the credential nubes used.
pub fn token_hint(e: &azure_core::Error, source: &str) -> String {
    let text = crate::rest::error_chain(e);
    let code = text
        .split("AADSTS")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .unwrap_or_default();
    let (client_var, tenant_var) = if source == AZURE_CREDENTIALS_SOURCE {
        (
            "clientId in AZURE_CREDENTIALS",
            "tenantId in AZURE_CREDENTIALS",
        )
    } else {
        (
            "ARM_CLIENT_ID (or AZURE_CLIENT_ID)",
            "ARM_TENANT_ID (or AZURE_TENANT_ID)",
        )
    };
    match code.as_str() {
        "90002" => format!(
            "Entra ID knows no such tenant: set {tenant_var} to the directory (tenant) ID of the \
             subscription (`az account show --query tenantId -o tsv`)"
        ),
        "700016" => format!(
            "no application with that client ID exists in the tenant: check {client_var} (the \
             app registration's Application (client) ID) and that it belongs to the tenant in \
             {tenant_var}"
        ),
        "7000215" | "7000222" => {
            let place = if source == AZURE_CREDENTIALS_SOURCE {
                "clientSecret in the AZURE_CREDENTIALS secret"
            } else {
                "ARM_CLIENT_SECRET (or AZURE_CLIENT_SECRET)"
            };
            format!(
                "the client secret is wrong or has expired: create a new one (`az ad app \
                 credential reset --id <client-id>`) and store it in {place}"
            )
        }
        "70021" | "700211" | "700212" | "700213" => federated_hint(source, client_var),
        "700024" => {
            if source == WORKLOAD_IDENTITY_SOURCE {
                let when = var("AZURE_FEDERATED_TOKEN_FILE")
                    .and_then(|f| fs_err::read_to_string(f).ok())
                    .and_then(|t| claims_of(&t))
                    .and_then(|c| c.exp)
                    .and_then(|exp| time::OffsetDateTime::from_unix_timestamp(exp).ok())
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .map(|t| format!(" (at {t})"))
                    .unwrap_or_default();
                format!(
                    "the federated token in AZURE_FEDERATED_TOKEN_FILE has expired{when}: whatever \
                     writes that file (Kubernetes' projected service account token) must refresh it"
                )
            } else {
                "the GitHub OIDC token has expired: re-run the job (GitHub's tokens live for \
                 minutes, and nubes asks for a new one per run)"
                    .to_string()
            }
        }
        _ if source == CLI_SOURCE => {
            "log in with `az login` (and `az account set --subscription <id>`), or give nubes \
             another credential"
                .to_string()
        }
        _ => format!(
            "check the credential nubes used ({source}): log in again (`az login`), or check \
             the service principal / federated credential settings (AZURE_CREDENTIALS, \
             ARM_CLIENT_ID, ARM_TENANT_ID)"
        ),
    }
}

/// A federated token was refused because no federated credential on the app matches it:
/// say which subject and issuer were presented, since the credential must match exactly.
fn federated_hint(source: &str, client_var: &str) -> String {
    let presented = if source == WORKLOAD_IDENTITY_SOURCE {
        var("AZURE_FEDERATED_TOKEN_FILE")
            .and_then(|f| fs_err::read_to_string(f).ok())
            .and_then(|t| claims_of(&t))
    } else {
        last_federated()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    };
    let sender = if source == WORKLOAD_IDENTITY_SOURCE {
        "the token file"
    } else {
        "GitHub"
    };
    match presented {
        Some(c) => format!(
            "no federated credential on the app ({client_var}) matches the token {sender} \
             presented: subject `{}`, issuer `{}`, audience `api://AzureADTokenExchange`. Add a \
             federated credential with exactly that subject and issuer (`az ad app \
             federated-credential create --id <client-id> --parameters ...`; see README, \
             \"OIDC: federated credentials for the repository\")",
            crate::env_name::printable(&c.sub),
            crate::env_name::printable(&c.iss)
        ),
        None => format!(
            "no federated credential on the app ({client_var}) matches the token {sender} \
             presented: its subject, issuer and audience `api://AzureADTokenExchange` must match \
             exactly"
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePrincipal {
    client_id: String,
    client_secret: String,
    tenant_id: String,
    #[serde(default)]
    subscription_id: Option<String>,
}

/// A bearer token given directly (e.g. from `az account get-access-token`).
#[derive(Debug)]
struct StaticToken(Secret);

#[async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // The real expiry is unknown; an hour keeps the SDK from asking again meanwhile.
        Ok(AccessToken::new(
            self.0.clone(),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

/// GitHub Actions' OIDC ID token, exchanged by Entra ID for an access token.
struct GitHubOidc {
    url: String,
    request_token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for GitHubOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GitHubOidc")
    }
}

#[async_trait]
impl ClientAssertion for GitHubOidc {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        #[derive(Deserialize)]
        struct IdToken {
            value: String,
        }
        let err = |m: String| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, m)
        };
        let mut url = url::Url::parse(&self.url)
            .map_err(|e| err(format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("audience", "api://AzureADTokenExchange");
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.request_token)
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "requesting the GitHub OIDC token failed: {}",
                    e.without_url()
                ))
            })?;
        if !resp.status().is_success() {
            return Err(err(format!(
                "GitHub refused the OIDC token request ({}); does the workflow grant `permissions: id-token: write`?",
                resp.status()
            )));
        }
        let body = resp.bytes().await.map_err(|e| {
            err(format!(
                "reading GitHub's OIDC token response failed: {}",
                e.without_url()
            ))
        })?;
        let token: IdToken = serde_json::from_slice(&body).map_err(|e| {
            err(format!(
                "GitHub's OIDC token response was not understood: {}",
                e
            ))
        })?;
        secrets::register(&token.value);
        if let Some(claims) = claims_of(&token.value) {
            *last_federated().lock().unwrap_or_else(|p| p.into_inner()) = Some(claims);
        }
        Ok(token.value)
    }
}
