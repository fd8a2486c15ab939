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

/// The registry host of a login server as Terraform outputs it (a scheme or a trailing
/// `/` dropped).
pub fn host(login_server: &str) -> Result<String> {
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
    Ok(login_server)
}

/// An OCI client for `login_server`: plain HTTP for a loopback registry, HTTPS trusting
/// the extra CAs of `NUBES_STORAGE_CA_CERT` (a TLS-inspecting proxy) otherwise.
fn client_for(login_server: &str) -> Result<Client> {
    let http = plain_http(login_server);
    Ok(Client::new(ClientConfig {
        protocol: if http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(10)),
        max_concurrent_upload: PARALLEL_UPLOADS,
        extra_root_certificates: extra_cas()?,
        ..Default::default()
    }))
}

/// The certificates of `NUBES_STORAGE_CA_CERT` (a PEM file, or PEM text), one by one
/// (oci-client takes each certificate apart); none when it is unset.
fn extra_cas() -> Result<Vec<oci_client::client::Certificate>> {
    let Some(ca) = std::env::var_os("NUBES_STORAGE_CA_CERT").filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let ca = ca.to_string_lossy().into_owned();
    let pem = if ca.trim_start().starts_with("-----BEGIN") {
        ca
    } else {
        fs_err::read_to_string(&ca).map_err(|e| {
            Error::input(format!("NUBES_STORAGE_CA_CERT: {e}"))
                .hint("set it to a PEM file with the CA certificate(s) to trust")
        })?
    };
    const END: &str = "-----END CERTIFICATE-----";
    let certs: Vec<oci_client::client::Certificate> = pem
        .split_inclusive(END)
        .filter_map(|part| {
            let start = part.find("-----BEGIN CERTIFICATE-----")?;
            part.ends_with(END)
                .then(|| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data: part.as_bytes()[start..].to_vec(),
                })
        })
        .collect();
    if certs.is_empty() {
        return Err(Error::input(
            "NUBES_STORAGE_CA_CERT holds no PEM certificate",
        ));
    }
    Ok(certs)
}

/// Push `image` as `<login_server>/<repository>:<image.tag>`.
pub async fn push(image: &Image, login_server: &str, repository: &str) -> Result<Pushed> {
    let started = Instant::now();
    let login_server = host(login_server)?;
    let http = plain_http(&login_server);
    let client = client_for(&login_server)?;
    let reference = Reference::with_tag(
        login_server.clone(),
        repository.to_string(),
        image.tag.clone(),
    );
    let credential = credential(&login_server, repository, http, "pull,push").await?;
    let doing = format!("pushing {}:{} to {login_server}", repository, image.tag);
    client
        .auth(&reference, &credential.auth, RegistryOperation::Push)
        .await
        .map_err(|e| oci_error(e, &doing, &login_server, &credential.describe, true))?;
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
                        BlobError::Oci(e) => oci_error(e, doing, login_server, &credential.describe, true),
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
        .map_err(|e| oci_error(e, &doing, &login_server, &credential.describe, true))?;
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

/// What [`ensure`] did.
#[derive(Debug, Clone)]
pub struct Ensured {
    /// `<login server>/<repository>@<digest>` in the environment's registry.
    pub reference: String,
    /// Blobs copied from the release's registry (none when the image was there).
    pub copied: usize,
    pub skipped: usize,
    pub bytes_copied: u64,
    /// Where it was copied from, when it was.
    pub from: Option<String>,
}

impl Ensured {
    pub fn describe(&self) -> String {
        match &self.from {
            None => "the image was in the registry already (no build, no upload)".into(),
            Some(from) => format!(
                "copied from {from}: {} blob(s) ({} bytes), {} already in the registry (no build)",
                self.copied, self.bytes_copied, self.skipped
            ),
        }
    }
}

/// Manifest types a copied image may have (nubes pushes OCI; an image pushed by other
/// tools may be Docker's v2 schema 2).
const COPIED_MANIFESTS: &[&str] = &[
    MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Make image `digest` (pushed to `source`, `<login server>/<repository>`) available as
/// `<login_server>/<repository>@<digest>`. When the registry has that manifest already
/// (a rollback, or a promotion between environments sharing a registry), nothing is
/// copied. Otherwise the manifest is pulled from `source` (its digest checked), each blob
/// the target lacks is pulled and pushed (blobs it has are skipped), and the manifest is
/// pushed, byte for byte, under `tag`: the same digest runs in both places.
pub async fn ensure(
    source: &str,
    digest: &str,
    login_server: &str,
    repository: &str,
    tag: &str,
) -> Result<Ensured> {
    let login_server = host(login_server)?;
    let reference = format!("{login_server}/{repository}@{digest}");
    let target = Reference::with_digest(login_server.clone(), repository.into(), digest.into());
    let client = client_for(&login_server)?;
    let target_credential = credential(
        &login_server,
        repository,
        plain_http(&login_server),
        "pull,push",
    )
    .await?;
    let doing = format!("making image {digest} available in {login_server}/{repository}");
    let fail = |e| oci_error(e, &doing, &login_server, &target_credential.describe, true);
    client
        .auth(&target, &target_credential.auth, RegistryOperation::Push)
        .await
        .map_err(fail)?;
    match client
        .fetch_manifest_digest(&target, &target_credential.auth)
        .await
    {
        Ok(found) if found == digest => {
            tracing::info!("{reference} is in the registry already: nothing to copy");
            return Ok(Ensured {
                reference,
                copied: 0,
                skipped: 0,
                bytes_copied: 0,
                from: None,
            });
        }
        Ok(_) => {}
        // Not there (404), or an answer that is not the manifest: copy it.
        Err(e) if matches!(&e, OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout()) =>
        {
            return Err(fail(e));
        }
        Err(e) => tracing::debug!("{reference} is not in the registry: {e}"),
    }
    let (source_server, source_repo) = source
        .split_once('/')
        .map(|(h, r)| (h.to_string(), r.to_string()))
        .unwrap_or_default();
    if source_server == login_server && source_repo == repository {
        return Err(Error::failed(format!(
            "image {digest} is no longer in the registry {login_server}/{repository} (deleted, or removed by a retention policy): it cannot be redeployed without a build"
        ))
        .hint("choose another release with --to (`nubes releases <env>`), or deploy the commit again with `nubes up`"));
    }
    if source_server.is_empty() || source_repo.is_empty() {
        return Err(Error::failed(format!(
            "the release record names its registry as {}, not <login server>/<repository>",
            crate::env_name::quoted(source)
        )));
    }
    tracing::info!(
        "copying {digest} from {source_server}/{source_repo} to {login_server}/{repository}"
    );
    let from = Reference::with_digest(source_server.clone(), source_repo.clone(), digest.into());
    let source_client = client_for(&source_server)?;
    let source_credential = credential(
        &source_server,
        &source_repo,
        plain_http(&source_server),
        "pull",
    )
    .await?;
    let pulling = format!("pulling image {digest} from {source_server}/{source_repo}");
    let pull_fail = |e| {
        oci_error(
            e,
            &pulling,
            &source_server,
            &source_credential.describe,
            false,
        )
    };
    let (manifest, _) = source_client
        .pull_manifest_raw(&from, &source_credential.auth, COPIED_MANIFESTS)
        .await
        .map_err(pull_fail)?;
    if format!("sha256:{}", crate::image::sha256_hex(&manifest)) != digest {
        return Err(Error::failed(format!(
            "{pulling}: the registry answered a manifest whose digest is not {digest}"
        )));
    }
    let parsed: serde_json::Value = serde_json::from_slice(&manifest)
        .map_err(|e| Error::failed(format!("{pulling}: the manifest is not JSON: {e}")))?;
    let media_type = parsed
        .get("mediaType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(MANIFEST_MEDIA_TYPE)
        .to_string();
    if !COPIED_MANIFESTS.contains(&media_type.as_str()) {
        return Err(Error::failed(format!(
            "{pulling}: it is a {} , not a single image manifest; nubes copies only the images it builds",
            crate::env_name::printable(&media_type)
        ))
        .hint("push the image to the target registry yourself, or deploy the commit there with `nubes up`"));
    }
    let blobs: Vec<(String, u64)> = parsed
        .get("config")
        .into_iter()
        .chain(
            parsed
                .get("layers")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten(),
        )
        .filter_map(|d| {
            Some((
                d.get("digest")?.as_str()?.to_string(),
                d.get("size")?.as_u64()?,
            ))
        })
        .collect();
    source_client
        .auth(&from, &source_credential.auth, RegistryOperation::Pull)
        .await
        .map_err(pull_fail)?;
    let timeout = upload_timeout()?;
    let copied: Vec<Option<u64>> = futures::stream::iter(blobs)
        .map(|(blob, size)| {
            let (client, source_client) = (&client, &source_client);
            let (target, from) = (&target, &from);
            async move {
                if client
                    .blob_exists(target, &blob)
                    .await
                    .map_err(|e| (e, true))?
                {
                    return Ok(None);
                }
                let mut bytes = Vec::with_capacity(size.min(64 << 20) as usize);
                source_client
                    .pull_blob(from, blob.as_str(), &mut bytes)
                    .await
                    .map_err(|e| (e, false))?;
                match tokio::time::timeout(timeout, client.push_blob(target, bytes, &blob)).await {
                    Ok(r) => r.map(|_| Some(size)).map_err(|e| (e, true)),
                    Err(_) => Err((
                        OciDistributionError::GenericError(Some(format!(
                            "uploading {blob} ({size} bytes) did not finish within {}",
                            humantime::format_duration(timeout)
                        ))),
                        true,
                    )),
                }
            }
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect()
        .await
        .map_err(|(e, push)| if push { fail(e) } else { pull_fail(e) })?;
    let tagged = Reference::with_tag(login_server.clone(), repository.into(), tag.into());
    client
        .push_manifest_raw(
            &tagged,
            manifest,
            reqwest::header::HeaderValue::from_str(&media_type).unwrap_or(
                reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
            ),
        )
        .await
        .map_err(fail)?;
    let uploaded: Vec<u64> = copied.iter().flatten().copied().collect();
    let ensured = Ensured {
        reference,
        copied: uploaded.len(),
        skipped: copied.len() - uploaded.len(),
        bytes_copied: uploaded.iter().sum(),
        from: Some(format!("{source_server}/{source_repo}")),
    };
    tracing::info!("{}", ensured.describe());
    Ok(ensured)
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

/// How nubes signs in to `login_server` for `actions` (`pull`, or `pull,push`) on
/// `repository`.
async fn credential(
    login_server: &str,
    repository: &str,
    http: bool,
    actions: &str,
) -> Result<Credential> {
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
        return acr_credential(login_server, repository, http, actions).await;
    }
    Ok(Credential {
        auth: RegistryAuth::Anonymous,
        describe: "no credential (anonymous; set NUBES_REGISTRY_USERNAME/NUBES_REGISTRY_PASSWORD for basic auth)".into(),
    })
}

/// ACR's token exchange: Entra access token → ACR refresh token → repository-scoped
/// access token.
async fn acr_credential(
    login_server: &str,
    repository: &str,
    http: bool,
    actions: &str,
) -> Result<Credential> {
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
    let scope = format!("repository:{repository}:{actions}");
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
fn oci_error(
    e: OciDistributionError,
    doing: &str,
    login_server: &str,
    credential: &str,
    push: bool,
) -> Error {
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
    // rustls says "invalid peer certificate: UnknownIssuer" (or NotValidForName, Expired…).
    let untrusted =
        (text.contains("peer certificate") || text.contains("UnknownIssuer")).then(|| {
            [
                "UnknownIssuer",
                "NotValidForName",
                "Expired",
                "NotValidYet",
                "Revoked",
            ]
            .into_iter()
            .find(|w| text.contains(w))
            .unwrap_or("invalid peer certificate")
        });
    let text = crate::secrets::redact(&crate::env_name::printable(&text));
    if let Some(why) = untrusted {
        return Error::failed(format!(
            "{doing}: the registry {login_server}'s TLS certificate is not trusted ({why}); nothing was deployed"
        ))
        .hint("behind a TLS-inspecting proxy, set NUBES_STORAGE_CA_CERT to its CA certificate(s) (a PEM file): nubes trusts them for the registry as for storage");
    }
    if unreachable {
        return Error::failed(format!(
            "{doing}: cannot reach the registry {login_server}: {text}; nothing was deployed"
        ))
        .hint("check the registry name (output container_registry_login_server) and the network");
    }
    match status {
        Some(code @ (401 | 403)) if push => Error::failed(format!(
            "{doing}: the registry refused the push (HTTP {code}) with {credential}; nothing was deployed"
        ))
        .hint("the identity needs the AcrPush role on the registry (for another registry: push rights for NUBES_REGISTRY_USERNAME)"),
        Some(code @ (401 | 403)) => Error::failed(format!(
            "{doing}: the registry {login_server} refused the pull (HTTP {code}) with {credential}; nothing was deployed"
        ))
        .hint("the identity needs the AcrPull role on that registry (for another registry: pull rights for NUBES_REGISTRY_USERNAME)"),
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
