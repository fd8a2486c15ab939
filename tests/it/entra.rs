//! An in-test Microsoft identity platform (Entra ID) token endpoint and GitHub Actions
//! OIDC token endpoint, over HTTPS with a test CA, for the credential tests.
//!
//! Entra ID, as the v2.0 token endpoint documents it ("Microsoft identity platform and
//! the OAuth 2.0 client credentials flow", learn.microsoft.com/entra/identity-platform/
//! v2-oauth2-client-creds-grant-flow): `POST /{tenant}/oauth2/v2.0/token`, form-encoded,
//! `grant_type=client_credentials`, `client_id`, one `scope` that must be a resource's
//! `/.default`, and either `client_secret` or `client_assertion` with
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
//! A federated assertion ("Workload identity federation", .../workload-identity-federation)
//! must come from a known issuer, be unexpired, and match a federated identity credential
//! of the app exactly in issuer, subject and audience (`api://AzureADTokenExchange`).
//! Errors are the documented JSON (`error`, `error_description` starting with the AADSTS
//! code, `error_codes`, `timestamp`, `trace_id`, `correlation_id`) with the codes of
//! "Microsoft Entra authentication and authorization error codes": AADSTS90002 unknown
//! tenant, AADSTS700016 unknown application, AADSTS7000215 wrong secret, AADSTS70021 no
//! matching federated identity record, AADSTS700024 assertion outside its valid time
//! range, AADSTS1002012 a scope without `/.default` in a client-credentials request,
//! AADSTS70003 an unsupported grant type. `GET /{tenant}/v2.0/.well-known/openid-configuration`
//! answers the OpenID metadata. Access tokens are unsigned JWTs with `aud` the resource,
//! `iss` `https://sts.windows.net/{tenant}/`, `tid`, `appid` (what Azurite's
//! `--oauth basic` and the Kudu fake read). Signatures cannot be checked here; instead a
//! federated assertion is accepted only if this server's own issuers minted it (the
//! real service checks the signature against the issuer's published keys).
//!
//! GitHub, as "OpenID Connect in GitHub Actions" documents it: the job gets
//! `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; `GET` on the URL
//! with `&audience=...` and `Authorization: Bearer <request token>` answers
//! `{"value": "<jwt>"}`, the JWT with `iss` `https://token.actions.githubusercontent.com`,
//! `sub` `repo:<owner>/<repo>:ref:refs/heads/<branch>`, `aud` the audience asked (else
//! the repository owner's URL). Without the request token: 401.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const TENANT: &str = "8f3c2a1b-4d5e-4f60-9a7b-0c1d2e3f4a5b";
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
pub const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Issuer of the Kubernetes service-account tokens written for workload identity.
pub const K8S_ISSUER: &str = "https://oidc.prod-aks.azure.com/nubes-test-cluster/";

/// An app registration: a secret and/or federated credentials (issuer, subject).
#[derive(Clone, Debug, Default)]
pub struct App {
    pub secret: Option<String>,
    pub federated: Vec<(String, String)>,
}

/// One token request as the endpoint saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub tenant: String,
    pub grant_type: String,
    pub client_id: String,
    pub scope: String,
    /// `secret` or `assertion`.
    pub auth: &'static str,
    /// The assertion's claims, when there was one.
    pub assertion: Option<Value>,
    /// `Ok(audience issued)` or `Err(AADSTS code)`.
    pub outcome: Result<String, u32>,
}

#[derive(Default)]
struct Shared {
    /// tenant -> client id -> app
    apps: HashMap<String, HashMap<String, App>>,
    seen: Vec<Seen>,
    /// (client, resource) -> the access token to hand out (minted ahead for fakes that
    /// compare tokens exactly).
    issued: HashMap<(String, String), String>,
    /// Every access token handed out (for the secrets sweep).
    handed_out: Vec<String>,
    /// Federated tokens the external issuers minted (their "signature").
    minted: Vec<String>,
    /// GitHub's request token and the subject of the job.
    github: Option<(String, String)>,
}

pub struct Entra {
    /// `https://127.0.0.1:<port>`: `AZURE_AUTHORITY_HOST`.
    pub authority: String,
    /// `ACTIONS_ID_TOKEN_REQUEST_URL`, shaped like GitHub's.
    pub github_url: String,
    /// The test CA that signed this server's certificate (PEM).
    pub ca_pem: String,
    shared: Arc<Mutex<Shared>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An unsigned JWT with these claims; the signature part is random so that two tokens
/// with equal claims differ.
pub fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(uuid::Uuid::new_v4().as_bytes())
    )
}

pub fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Entra {
    /// Serve on a free port of the current runtime.
    pub async fn start() -> Entra {
        let certs = crate::support::make_certs_for(&["127.0.0.1", "localhost"]);
        let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(certs.key_der)
            .expect("leaf key");
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certs.cert_der.into()], key)
            .expect("TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let authority = format!("https://127.0.0.1:{port}");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let served = shared.clone();
        let host = authority.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let shared = served.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        let host = host.clone();
                        async move { Ok::<_, Infallible>(answer(req, &shared, &host).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Entra {
            github_url: format!(
                "{authority}/github/00000000-0000-0000-0000-000000000000/_apis/distributedtask/hubs/Actions/plans/1/jobs/2/idtoken?api-version=2.0"
            ),
            authority,
            ca_pem: certs.ca_pem,
            shared,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register an app in `tenant`.
    pub fn add_app(&self, tenant: &str, client_id: &str, app: App) {
        self.lock()
            .apps
            .entry(tenant.into())
            .or_default()
            .insert(client_id.into(), app);
    }

    /// The access token this endpoint hands `client_id` for `resource` (minted on the
    /// first call, the same one afterwards).
    pub fn token_for(&self, tenant: &str, client_id: &str, resource: &str) -> String {
        self.lock()
            .issued
            .entry((client_id.into(), resource.into()))
            .or_insert_with(|| access_token(tenant, client_id, resource))
            .clone()
    }

    /// GitHub's job: its request token and the subject its ID tokens carry.
    pub fn github_job(&self, request_token: &str, subject: &str) {
        self.lock().github = Some((request_token.into(), subject.into()));
    }

    /// A federated token from `issuer` for `subject`, expiring `lifetime` seconds from
    /// now (negative: already expired), as a Kubernetes projected token would be.
    pub fn mint_federated(&self, issuer: &str, subject: &str, lifetime: i64) -> String {
        let t = now();
        let token = jwt(&json!({
            "iss": issuer, "sub": subject, "aud": [EXCHANGE_AUDIENCE],
            "iat": t - 60, "nbf": t - 60, "exp": t + lifetime,
        }));
        self.lock().minted.push(token.clone());
        token
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The scopes asked, in order, without repeats.
    pub fn scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.seen() {
            if !out.contains(&s.scope) {
                out.push(s.scope);
            }
        }
        out
    }

    /// Every token this server handed out (GitHub's and Entra's).
    pub fn handed_out(&self) -> Vec<String> {
        let l = self.lock();
        l.handed_out.iter().chain(&l.minted).cloned().collect()
    }
}

fn access_token(tenant: &str, client_id: &str, resource: &str) -> String {
    let t = now();
    jwt(&json!({
        "aud": resource,
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": t - 60, "nbf": t - 60, "exp": t + 3600,
        "tid": tenant,
        "appid": client_id,
        "oid": "3b0f1e2d-4c5b-4a69-8778-96a5b4c3d2e1",
        "idtyp": "app",
    }))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Entra ID's error document.
fn aadsts(status: StatusCode, error: &str, code: u32, text: &str) -> Response<Full<Bytes>> {
    let trace = uuid::Uuid::new_v4();
    let correlation = uuid::Uuid::new_v4();
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    reply(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}"),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// The resources this endpoint issues tokens for, by scope.
fn resource_of(scope: &str) -> Option<&'static str> {
    match scope {
        "https://storage.azure.com/.default" => Some("https://storage.azure.com"),
        "https://management.azure.com/.default" => Some("https://management.azure.com"),
        "https://management.core.windows.net//.default" => {
            Some("https://management.core.windows.net/")
        }
        "https://appservice.azure.com/.default" => Some("https://appservice.azure.com"),
        _ => None,
    }
}

async fn answer(
    req: Request<Incoming>,
    shared: &Mutex<Shared>,
    host: &str,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let method = req.method().clone();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.first() == Some(&"github") && method == hyper::Method::GET {
        return github_token(&mut shared, &query, &authorization);
    }
    match (method.as_str(), segments.as_slice()) {
        ("GET", [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
            if !shared.apps.contains_key(*tenant) {
                return unknown_tenant(tenant);
            }
            reply(
                StatusCode::OK,
                json!({
                    "token_endpoint": format!("{host}/{tenant}/oauth2/v2.0/token"),
                    "issuer": format!("{host}/{tenant}/v2.0"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "jwks_uri": format!("{host}/{tenant}/discovery/v2.0/keys"),
                    "authorization_endpoint": format!("{host}/{tenant}/oauth2/v2.0/authorize"),
                    "tenant_region_scope": "EU",
                }),
            )
        }
        ("POST", [tenant, "oauth2", "v2.0", "token"]) => {
            if !content_type.starts_with("application/x-www-form-urlencoded") {
                return aadsts(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.",
                );
            }
            let form: HashMap<String, String> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            token(&mut shared, tenant, &form)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "error_description": format!("no {method} {path}")}),
        ),
    }
}

fn unknown_tenant(tenant: &str) -> Response<Full<Bytes>> {
    aadsts(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

fn token(
    shared: &mut Shared,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let grant_type = get("grant_type");
    let client_id = get("client_id");
    let scope = get("scope");
    let mut seen = Seen {
        tenant: tenant.into(),
        grant_type: grant_type.clone(),
        client_id: client_id.clone(),
        scope: scope.clone(),
        auth: if form.contains_key("client_assertion") {
            "assertion"
        } else {
            "secret"
        },
        assertion: form.get("client_assertion").and_then(|a| claims(a)),
        outcome: Err(0),
    };
    let result = check(shared, tenant, form, &grant_type, &client_id, &scope);
    seen.outcome = result
        .as_ref()
        .map(|(aud, _)| aud.clone())
        .map_err(|(code, _)| *code);
    shared.seen.push(seen);
    match result {
        Ok((resource, token)) => {
            let token = token.unwrap_or_else(|| access_token(tenant, &client_id, &resource));
            shared.handed_out.push(token.clone());
            reply(
                StatusCode::OK,
                json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
            )
        }
        Err((_, response)) => *response,
    }
}

/// The AADSTS code and the answer (boxed: a response is large).
type Refusal = (u32, Box<Response<Full<Bytes>>>);

fn refuse(status: StatusCode, error: &str, code: u32, text: &str) -> Refusal {
    (code, Box::new(aadsts(status, error, code, text)))
}

/// The checks of the real endpoint, in its order: tenant, grant, client, scope, then the
/// client's proof (secret or assertion). Ok: the resource and a pre-minted token.
fn check(
    shared: &Shared,
    tenant: &str,
    form: &HashMap<String, String>,
    grant_type: &str,
    client_id: &str,
    scope: &str,
) -> Result<(String, Option<String>), Refusal> {
    let Some(apps) = shared.apps.get(tenant) else {
        return Err((90002, Box::new(unknown_tenant(tenant))));
    };
    if grant_type != "client_credentials" {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ));
    }
    let Some(app) = apps.get(client_id) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    };
    let Some(resource) = resource_of(scope) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    };
    match (form.get("client_secret"), form.get("client_assertion")) {
        (Some(secret), None) => {
            if app.secret.as_deref() != Some(secret.as_str()) {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ));
            }
        }
        (None, Some(assertion)) => {
            if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    50027,
                    "JWT token is invalid or malformed: client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                ));
            }
            check_assertion(shared, app, assertion)?;
        }
        _ => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        }
    }
    let issued = shared
        .issued
        .get(&(client_id.to_string(), resource.to_string()))
        .cloned();
    Ok((resource.to_string(), issued))
}

fn check_assertion(shared: &Shared, app: &App, assertion: &str) -> Result<(), Refusal> {
    let malformed = || {
        refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let claims = claims(assertion).ok_or_else(malformed)?;
    // Stands for the signature check against the issuer's published keys.
    if !shared.minted.iter().any(|m| m == assertion) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            50013,
            "Assertion failed signature validation.",
        ));
    }
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (iss, sub) = (text("iss"), text("sub"));
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    };
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(malformed)?;
    let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
    let t = now();
    if exp <= t || nbf > t + 300 {
        let at = |s: i64| {
            time::OffsetDateTime::from_unix_timestamp(s)
                .ok()
                .and_then(|d| {
                    d.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default()
        };
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            700024,
            &format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                at(t),
                at(nbf),
                at(exp)
            ),
        ));
    }
    let matched = audiences.iter().any(|a| a == EXCHANGE_AUDIENCE)
        && app.federated.iter().any(|(i, s)| *i == iss && *s == sub);
    if !matched {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            70021,
            &format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.",
                audiences.join(",")
            ),
        ));
    }
    Ok(())
}

fn github_token(shared: &mut Shared, query: &str, authorization: &str) -> Response<Full<Bytes>> {
    let Some((request_token, subject)) = shared.github.clone() else {
        return reply(StatusCode::NOT_FOUND, json!({"message": "no job"}));
    };
    if authorization != format!("Bearer {request_token}") {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable or the bearer token is invalid"}),
        );
    }
    let pairs: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if pairs.get("api-version").map(String::as_str) != Some("2.0") {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"message": "api-version 2.0 required"}),
        );
    }
    let audience = pairs
        .get("audience")
        .cloned()
        .unwrap_or_else(|| "https://github.com/octo-org".into());
    let t = now();
    let (repository, branch) = subject
        .strip_prefix("repo:")
        .and_then(|s| s.split_once(":ref:"))
        .unwrap_or(("octo-org/octo-repo", "refs/heads/main"));
    let token = jwt(&json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": subject,
        "aud": audience,
        "ref": branch,
        "repository": repository,
        "repository_owner": repository.split('/').next().unwrap_or_default(),
        "event_name": "push",
        "ref_type": "branch",
        "job_workflow_ref": format!("{repository}/.github/workflows/nubes.yml@{branch}"),
        "iss": GITHUB_ISSUER,
        "nbf": t - 5, "iat": t - 5, "exp": t + 300,
    }));
    shared.minted.push(token.clone());
    reply(StatusCode::OK, json!({"count": 1, "value": token}))
}

/// A PEM bundle file holding both CAs (Azurite's and this server's), for
/// `NUBES_STORAGE_CA_CERT`.
pub fn ca_bundle(dir: &std::path::Path, azurite_ca: &std::path::Path, entra: &Entra) -> PathBuf {
    let mut pem = std::fs::read_to_string(azurite_ca).expect("Azurite CA");
    pem.push('\n');
    pem.push_str(&entra.ca_pem);
    let path = dir.join("ca-bundle.pem");
    std::fs::write(&path, pem).unwrap();
    path
}
