//! Pushing a prepared image ([`crate::image::Image`]) to the environment's registry
//! (Terraform output `container_registry_login_server`) with the OCI distribution client
//! crate `oci-client`: each blob is checked first (`HEAD /v2/<repo>/blobs/<digest>`) and
//! uploaded only when the registry lacks it, then the manifest is PUT under the tag with
//! the exact bytes whose digest the deploy names.
//!
//! Credentials, in order:
//! * `NUBES_REGISTRY_USERNAME` + `NUBES_REGISTRY_PASSWORD`: basic auth (or the registry's
//!   own token flow with them, when it answers with a bearer challenge).
//! * Azure Container Registry (a `*.azurecr.io` login server, or `NUBES_REGISTRY_AUTH=acr`):
//!   the Entra credential nubes already has (the chain of DESIGN.md, Resource Manager
//!   audience) through ACR's documented token exchange
//!   (<https://github.com/Azure/acr/blob/main/docs/AAD-OAuth.md>): the registry's
//!   `WWW-Authenticate: Bearer realm=…,service=…` challenge names the token endpoint;
//!   `POST /oauth2/exchange` (`grant_type=access_token`, `service`, `access_token`
//!   [, `tenant`]) gives an ACR refresh token, `POST /oauth2/token`
//!   (`grant_type=refresh_token`, `service`, `scope=repository:<repo>:pull,push`,
//!   `refresh_token`) a registry access token for the one repository.
//! * Otherwise anonymous.
//!
//! Every token is registered with [`crate::secrets`] before use. Plain HTTP is used only
//! for a loopback registry (tests, a local registry); anything else is HTTPS.

use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::error::{Error, Result};
use crate::image::{Blob, Image, MANIFEST_MEDIA_TYPE};
use crate::rest::error_chain;

/// Blob uploads at once.
const PARALLEL_UPLOADS: usize = 4;
/// How long one blob upload may take; `NUBES_REGISTRY_UPLOAD_TIMEOUT` (e.g. "30m")
/// replaces it.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// ACR's user name for a refresh token used as a password (documented with the exchange).
const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// What the push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `<login server>/<repository>@<digest>`: what the deploy names.
    pub reference: String,
    pub uploaded: usize,
    pub skipped: usize,
    pub bytes_uploaded: u64,
    pub credential: String,
    pub took: Duration,
}

/// How nubes authenticates, and how it says so in errors.
struct Credential {
    auth: RegistryAuth,
    describe: String,
}

/// Push `image` as `<login_server>/<repository>:<image.tag>`.
pub async fn push(image: &Image, login_server: &str, repository: &str) -> Result<Pushed> {
    let started = Instant::now();
    let login_server = login_server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if login_server.is_empty() || login_server.contains('/') {
        return Err(Error::input(format!(
            "the registry login server {} is not a host name",
            crate::env_name::quoted(&login_server)
        ))
        .hint("output container_registry_login_server as the registry's host, e.g. myregistry.azurecr.io"));
    }
    let http = plain_http(&login_server);
    let client = Client::new(ClientConfig {
        protocol: if http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(10)),
        max_concurrent_upload: PARALLEL_UPLOADS,
        ..Default::default()
    });
    let reference = Reference::with_tag(
        login_server.clone(),
        repository.to_string(),
        image.tag.clone(),
    );
    let credential = credential(&login_server, repository, http).await?;
    let doing = format!("pushing {}:{} to {login_server}", repository, image.tag);
    client
        .auth(&reference, &credential.auth, RegistryOperation::Push)
        .await
        .map_err(|e| oci_error(e, &doing, &login_server, &credential.describe))?;
    let timeout = upload_timeout()?;
    let blobs: Vec<&Blob> = image.layers.iter().chain([&image.config]).collect();
    let results: Vec<Option<u64>> = futures::stream::iter(blobs)
        .map(|blob| {
            let client = &client;
            let reference = &reference;
            let doing = &doing;
            let credential = &credential;
            let login_server = &login_server;
            async move {
                push_blob(client, reference, blob, timeout)
                    .await
                    .map_err(|e| match e {
                        BlobError::Oci(e) => oci_error(e, doing, login_server, &credential.describe),
                        BlobError::Io(e) => e,
                        BlobError::Timeout => Error::failed(format!(
                            "{doing}: uploading layer {} ({} bytes) did not finish within {}; nothing was deployed",
                            blob.digest,
                            blob.size,
                            humantime::format_duration(timeout)
                        ))
                        .hint("set NUBES_REGISTRY_UPLOAD_TIMEOUT (e.g. \"45m\") for slow links, or make the layer smaller (multi-stage build)"),
                    })
            }
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect()
        .await?;
    client
        .push_manifest_raw(
            &reference,
            image.manifest.clone(),
            reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
        )
        .await
        .map_err(|e| oci_error(e, &doing, &login_server, &credential.describe))?;
    let uploaded: Vec<u64> = results.iter().flatten().copied().collect();
    let pushed = Pushed {
        reference: format!("{login_server}/{repository}@{}", image.digest),
        uploaded: uploaded.len(),
        skipped: results.len() - uploaded.len(),
        bytes_uploaded: uploaded.iter().sum(),
        credential: credential.describe,
        took: started.elapsed(),
    };
    tracing::info!(
        "pushed {} ({} blob(s) uploaded, {} bytes; {} already there)",
        pushed.reference,
        pushed.uploaded,
        pushed.bytes_uploaded,
        pushed.skipped
    );
    Ok(pushed)
}

enum BlobError {
    Oci(OciDistributionError),
    Io(Error),
    Timeout,
}

/// Upload one blob unless the registry has it; `Some(bytes)` when uploaded.
async fn push_blob(
    client: &Client,
    reference: &Reference,
    blob: &Blob,
    timeout: Duration,
) -> std::result::Result<Option<u64>, BlobError> {
    if client
        .blob_exists(reference, &blob.digest)
        .await
        .map_err(BlobError::Oci)?
    {
        tracing::debug!("registry has {} already", blob.digest);
        return Ok(None);
    }
    let bytes = tokio::fs::read(&blob.path).await.map_err(|e| {
        BlobError::Io(Error::failed(format!(
            "reading {}: {e}",
            blob.path.display()
        )))
    })?;
    match tokio::time::timeout(timeout, client.push_blob(reference, bytes, &blob.digest)).await {
        Ok(Ok(_)) => Ok(Some(blob.size)),
        Ok(Err(e)) => Err(BlobError::Oci(e)),
        Err(_) => Err(BlobError::Timeout),
    }
}

fn upload_timeout() -> Result<Duration> {
    match std::env::var("NUBES_REGISTRY_UPLOAD_TIMEOUT") {
        Ok(v) if !v.trim().is_empty() => humantime::parse_duration(v.trim()).map_err(|e| {
            Error::input(format!(
                "NUBES_REGISTRY_UPLOAD_TIMEOUT {} is not a duration ({e})",
                crate::env_name::quoted(&v)
            ))
            .hint("use a number with a unit, e.g. \"30m\"")
        }),
        _ => Ok(UPLOAD_TIMEOUT),
    }
}

/// Loopback registries (a local registry, tests) are spoken to over plain HTTP.
fn plain_http(login_server: &str) -> bool {
    let host = match login_server.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => login_server,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_acr(login_server: &str) -> bool {
    let host = login_server.split(':').next().unwrap_or_default();
    std::env::var("NUBES_REGISTRY_AUTH").is_ok_and(|v| v == "acr")
        || [".azurecr.io", ".azurecr.cn", ".azurecr.us"]
            .iter()
            .any(|s| host.ends_with(s))
}

async fn credential(login_server: &str, repository: &str, http: bool) -> Result<Credential> {
    let user = std::env::var("NUBES_REGISTRY_USERNAME")
        .ok()
        .filter(|v| !v.is_empty());
    let password = std::env::var("NUBES_REGISTRY_PASSWORD")
        .ok()
        .filter(|v| !v.is_empty());
    if let (Some(user), Some(password)) = (user, password) {
        crate::secrets::register(&password);
        return Ok(Credential {
            describe: format!(
                "user {} from NUBES_REGISTRY_USERNAME/NUBES_REGISTRY_PASSWORD",
                crate::env_name::printable(&user)
            ),
            auth: RegistryAuth::Basic(user, password),
        });
    }
    if is_acr(login_server) {
        return acr_credential(login_server, repository, http).await;
    }
    Ok(Credential {
        auth: RegistryAuth::Anonymous,
        describe: "no credential (anonymous; set NUBES_REGISTRY_USERNAME/NUBES_REGISTRY_PASSWORD for basic auth)".into(),
    })
}

/// ACR's token exchange: Entra access token → ACR refresh token → repository-scoped
/// access token.
async fn acr_credential(login_server: &str, repository: &str, http: bool) -> Result<Credential> {
    let client = crate::state::azure::http_client()?;
    let scheme = if http { "http" } else { "https" };
    let doing = format!("signing in to the registry {login_server}");
    let unreachable = |e: reqwest::Error| {
        Error::failed(format!(
            "{doing}: cannot reach it: {}",
            error_chain(&e.without_url())
        ))
        .hint("check the registry name (output container_registry_login_server) and the network")
    };
    // The challenge names the token endpoint and the service, as for `docker login`.
    let probe = client
        .get(format!("{scheme}://{login_server}/v2/"))
        .send()
        .await
        .map_err(unreachable)?;
    let challenge = probe
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(parse_challenge)
        .unwrap_or_default();
    let (Some(realm), Some(service)) = (challenge.realm, challenge.service) else {
        return Err(Error::failed(format!(
            "{doing}: it did not answer with a bearer challenge (HTTP {}), so it is not an Azure Container Registry token service",
            probe.status()
        ))
        .hint("for another registry set NUBES_REGISTRY_USERNAME/NUBES_REGISTRY_PASSWORD (and unset NUBES_REGISTRY_AUTH)"));
    };
    let realm = url::Url::parse(&realm).map_err(|e| {
        Error::failed(format!(
            "{doing}: the token realm {} is not a URL: {e}",
            crate::env_name::quoted(&realm)
        ))
    })?;
    if realm.scheme() != "https" && !plain_http(realm.host_str().unwrap_or_default()) {
        return Err(Error::failed(format!(
            "{doing}: the token realm {realm} is not HTTPS; refusing to send a token there"
        )));
    }
    let (credential, kind) =
        crate::state::auth::token_credential(client.clone(), "NUBES_ARM_TOKEN")?;
    let entra = credential.get_token(&[ARM_SCOPE], None).await.map_err(|e| {
        Error::input(format!(
            "{doing}: could not get an Entra access token ({kind}): {}",
            error_chain(&e)
        ))
        .hint("log in again (`az login`), or check AZURE_CREDENTIALS / ARM_CLIENT_ID / ARM_TENANT_ID")
    })?;
    let entra = entra.token.secret().to_string();
    crate::secrets::register(&entra);
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "access_token")
        .append_pair("service", &service)
        .append_pair("access_token", &entra);
    if let Ok(tenant) = std::env::var("ARM_TENANT_ID").or_else(|_| std::env::var("AZURE_TENANT_ID"))
    {
        form.append_pair("tenant", &tenant);
    }
    let mut exchange = realm.clone();
    exchange.set_path("/oauth2/exchange");
    exchange.set_query(None);
    let refresh: TokenAnswer = form_post(
        &client,
        exchange,
        form.finish(),
        &doing,
        kind,
        "exchange the Entra token",
    )
    .await?;
    let refresh = refresh.refresh_token.ok_or_else(|| {
        Error::failed(format!(
            "{doing}: /oauth2/exchange answered without a refresh_token"
        ))
    })?;
    crate::secrets::register(&refresh);
    let scope = format!("repository:{repository}:pull,push");
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "refresh_token")
        .append_pair("service", &service)
        .append_pair("scope", &scope)
        .append_pair("refresh_token", &refresh);
    let access: TokenAnswer = form_post(
        &client,
        realm,
        form.finish(),
        &doing,
        kind,
        "get a push token",
    )
    .await?;
    let access = access.access_token.ok_or_else(|| {
        Error::failed(format!(
            "{doing}: /oauth2/token answered without an access_token"
        ))
    })?;
    crate::secrets::register(&access);
    Ok(Credential {
        auth: RegistryAuth::Bearer(access),
        describe: format!("Entra identity ({kind}) through ACR's token exchange"),
    })
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    refresh_token: Option<String>,
    access_token: Option<String>,
}

async fn form_post(
    client: &reqwest::Client,
    url: url::Url,
    body: String,
    doing: &str,
    kind: &str,
    step: &str,
) -> Result<TokenAnswer> {
    let answer = client
        .post(url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| {
            Error::failed(format!(
                "{doing}: cannot reach {}: {}",
                url.path(),
                error_chain(&e.without_url())
            ))
        })?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    if status.is_success() {
        return serde_json::from_str(&text).map_err(|e| {
            Error::failed(format!(
                "{doing}: {} answered something that is not a token: {e}",
                url.path()
            ))
        });
    }
    let said = crate::secrets::redact(&crate::env_name::printable(
        text.trim().chars().take(300).collect::<String>().as_str(),
    ));
    let error = Error::failed(format!(
        "{doing}: could not {step} ({} answered HTTP {status}: {said}); credential used: Entra identity ({kind})",
        url.path()
    ));
    Err(if matches!(status.as_u16(), 401 | 403) {
        error.hint("the identity must be of the registry's tenant and hold the AcrPush role on the registry (az role assignment create --role AcrPush --assignee <client id> --scope <registry id>)")
    } else {
        error
    })
}

#[derive(Default)]
struct Challenge {
    realm: Option<String>,
    service: Option<String>,
}

/// `Bearer realm="…",service="…",scope="…"` (RFC 6750 section 3 / the registry token
/// spec); other schemes give nothing.
fn parse_challenge(header: &str) -> Challenge {
    let mut c = Challenge::default();
    let Some(params) = header
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| header.trim().strip_prefix("bearer "))
    else {
        return c;
    };
    for part in params.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "realm" => c.realm = Some(v),
                "service" => c.service = Some(v),
                _ => {}
            }
        }
    }
    c
}

/// An OCI client error as a message a user can act on: the status, which credential was
/// used, and for 401/403 the role that is missing.
fn oci_error(e: OciDistributionError, doing: &str, login_server: &str, credential: &str) -> Error {
    let status =
        match &e {
            OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
            OciDistributionError::ServerError { code, .. } => Some(*code),
            OciDistributionError::UnauthorizedError { .. } => Some(401),
            OciDistributionError::AuthenticationFailure(_) => Some(401),
            OciDistributionError::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .find_map(|err| match format!("{:?}", err.code).as_str() {
                    "Unauthorized" => Some(401),
                    "Denied" => Some(403),
                    _ => None,
                }),
            _ => None,
        };
    let unreachable =
        matches!(&e, OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout());
    let text = match e {
        OciDistributionError::RequestError(r) => error_chain(&r.without_url()),
        other => error_chain(&other),
    };
    let text = crate::secrets::redact(&crate::env_name::printable(&text));
    if unreachable {
        return Error::failed(format!(
            "{doing}: cannot reach the registry {login_server}: {text}; nothing was deployed"
        ))
        .hint("check the registry name (output container_registry_login_server) and the network");
    }
    match status {
        Some(code @ (401 | 403)) => Error::failed(format!(
            "{doing}: the registry refused the push (HTTP {code}) with {credential}; nothing was deployed"
        ))
        .hint("the identity needs the AcrPush role on the registry (for another registry: push rights for NUBES_REGISTRY_USERNAME)"),
        _ => Error::failed(format!("{doing}: {text}; nothing was deployed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_loopback_hosts() {
        let c = parse_challenge(
            r#"Bearer realm="https://r.azurecr.io/oauth2/token",service="r.azurecr.io""#,
        );
        assert_eq!(
            c.realm.as_deref(),
            Some("https://r.azurecr.io/oauth2/token")
        );
        assert_eq!(c.service.as_deref(), Some("r.azurecr.io"));
        assert!(parse_challenge("Basic realm=\"x\"").realm.is_none());
        assert!(plain_http("127.0.0.1:5000"));
        assert!(plain_http("localhost:5000"));
        assert!(plain_http("[::1]:5000"));
        assert!(!plain_http("r.azurecr.io"));
        assert!(!plain_http("10.0.0.1:5000"));
        assert!(is_acr("r.azurecr.io"));
        assert!(!is_acr("ghcr.io"));
    }
}
