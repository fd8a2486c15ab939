//! Azure credentials for the state account, in the order of DESIGN.md:
//! `NUBES_STORAGE_SAS`, `AZURE_CREDENTIALS` (NubesGen's service-principal JSON), GitHub
//! OIDC, a workload identity token file, a client secret, `NUBES_STORAGE_TOKEN`, and
//! finally the Azure CLI. Every secret is registered for redaction as soon as it is read.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::ClientMethodOptions;
use azure_identity::{
    AzureCliCredential, ClientAssertion, ClientAssertionCredential, ClientSecretCredential,
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

/// The Entra ID token chain of DESIGN.md (everything but the SAS): `AZURE_CREDENTIALS`,
/// GitHub OIDC, workload identity file, client secret, then a static bearer token from
/// `static_token_var` (e.g. `NUBES_STORAGE_TOKEN`, or `NUBES_ARM_TOKEN` for Resource
/// Manager), then the Azure CLI. Each credential asks for the scope its caller needs.
pub fn token_credential(
    http: reqwest::Client,
    static_token_var: &str,
) -> Result<(Arc<dyn TokenCredential>, &'static str)> {
    let client_id = first_var(&["ARM_CLIENT_ID", "AZURE_CLIENT_ID"]);
    let tenant_id = first_var(&["ARM_TENANT_ID", "AZURE_TENANT_ID"]);
    if let Some(json) = var("AZURE_CREDENTIALS") {
        secrets::register(&json);
        let sp: ServicePrincipal = serde_json::from_str(&json).map_err(|e| {
            Error::input(format!("AZURE_CREDENTIALS is not the service-principal JSON nubes expects: {}", e))
                .hint("it must hold clientId, clientSecret and tenantId, as written by `az ad sp create-for-rbac --sdk-auth`")
        })?;
        secrets::register(&sp.client_secret);
        let cred = ClientSecretCredential::new(
            &sp.tenant_id,
            sp.client_id,
            Secret::new(sp.client_secret),
            None,
        )
        .map_err(|e| Error::input(format!("AZURE_CREDENTIALS cannot be used: {e}")))?;
        return Ok((cred, "service principal from AZURE_CREDENTIALS"));
    }
    if let (Some(url), Some(request_token)) = (
        var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) && let (Some(client_id), Some(tenant_id)) = (client_id.clone(), tenant_id.clone())
    {
        secrets::register(&request_token);
        let assertion = GitHubOidc {
            url,
            request_token,
            http,
        };
        let cred = ClientAssertionCredential::new(tenant_id, client_id, assertion, None)
            .map_err(|e| Error::input(format!("GitHub OIDC credential cannot be used: {e}")))?;
        return Ok((cred, "GitHub OIDC federated credential"));
    }
    if let Some(file) = var("AZURE_FEDERATED_TOKEN_FILE") {
        let options = WorkloadIdentityCredentialOptions {
            client_id: client_id.clone(),
            tenant_id: tenant_id.clone(),
            token_file_path: Some(file.into()),
            ..Default::default()
        };
        let cred = WorkloadIdentityCredential::new(Some(options)).map_err(|e| {
            Error::input(format!(
                "workload identity (AZURE_FEDERATED_TOKEN_FILE) cannot be used: {e}"
            ))
        })?;
        return Ok((cred, "workload identity token file"));
    }
    if let Some(secret) = first_var(&["ARM_CLIENT_SECRET", "AZURE_CLIENT_SECRET"]) {
        secrets::register(&secret);
        let (Some(client_id), Some(tenant_id)) = (client_id, tenant_id) else {
            return Err(Error::input(
                "a client secret is set but the client ID or tenant ID is missing",
            )
            .hint("set ARM_CLIENT_ID and ARM_TENANT_ID (or AZURE_CLIENT_ID and AZURE_TENANT_ID)"));
        };
        let cred = ClientSecretCredential::new(&tenant_id, client_id, Secret::new(secret), None)
            .map_err(|e| Error::input(format!("client secret credential cannot be used: {e}")))?;
        return Ok((cred, "client secret"));
    }
    if let Some(token) = var(static_token_var) {
        secrets::register(&token);
        let what = match static_token_var {
            "NUBES_STORAGE_TOKEN" => "bearer token (NUBES_STORAGE_TOKEN)",
            "NUBES_KUDU_TOKEN" => "bearer token (NUBES_KUDU_TOKEN)",
            _ => "bearer token (NUBES_ARM_TOKEN)",
        };
        return Ok((Arc::new(StaticToken(Secret::new(token))), what));
    }
    if which::which("az").is_ok() {
        let cred = AzureCliCredential::new(None)
            .map_err(|e| Error::input(format!("Azure CLI credential cannot be used: {e}")))?;
        return Ok((cred, "Azure CLI login"));
    }
    Err(Error::input("no Azure credentials found").hint(format!(
        "set one of: NUBES_STORAGE_SAS (state storage only), AZURE_CREDENTIALS, GitHub OIDC (id-token: write + \
         ARM_CLIENT_ID + ARM_TENANT_ID), AZURE_FEDERATED_TOKEN_FILE, ARM_CLIENT_SECRET, {static_token_var}, or log \
         in with `az login`; or use [state] backend = \"local\" to try nubes without Azure"
    )))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePrincipal {
    client_id: String,
    client_secret: String,
    tenant_id: String,
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
        Ok(token.value)
    }
}
