//! ACR's token exchange (`nubes::registry` with `NUBES_REGISTRY_AUTH=acr`) against an
//! in-test token service that follows ACR's documented OAuth2 endpoints
//! (<https://github.com/Azure/acr/blob/main/docs/AAD-OAuth.md>), in front of the real
//! registry (Debian's `docker-registry`) configured for token auth
//! (<https://distribution.github.io/distribution/spec/auth/token/>): the registry's
//! challenge names the realm; `POST /oauth2/exchange` takes an Entra access token whose
//! audience is Resource Manager's (anything else: 401) and returns a refresh token;
//! `POST /oauth2/token` with that refresh token and `scope=repository:<name>:<actions>`
//! returns an access token: an ES256 JWT signed with a key whose certificate the registry
//! trusts (`rootcertbundle`, carried in the `x5c` header), granting only the actions the
//! identity's role allows (without AcrPush: pull only, and the registry then refuses the
//! upload, as ACR does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use rcgen::SigningKey as _;

use crate::registry::{Registry, buildah_env, sample_app};

const ISSUER: &str = "fake-acr";

struct TokenService {
    key: rcgen::KeyPair,
    cert_der: Vec<u8>,
    service: Mutex<String>,
    push_allowed: bool,
    refresh: Mutex<Vec<String>>,
    seen: Mutex<Vec<(String, HashMap<String, String>)>>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// ECDSA's DER signature (SEQUENCE of two INTEGERs) as JWS wants it: r || s, 32 bytes each.
fn raw_signature(der: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> (&[u8], &[u8]) {
        assert_eq!(bytes[0], 0x02, "INTEGER");
        let len = bytes[1] as usize;
        (&bytes[2..2 + len], &bytes[2 + len..])
    }
    assert_eq!(der[0], 0x30, "SEQUENCE");
    let body = &der[2..];
    let (r, rest) = integer(body);
    let (s, _) = integer(rest);
    let mut out = Vec::with_capacity(64);
    for n in [r, s] {
        let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        out.extend(std::iter::repeat_n(0u8, 32 - n.len()));
        out.extend(n);
    }
    out
}

impl TokenService {
    fn new(push_allowed: bool) -> TokenService {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![ISSUER.to_string()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("certificate");
        TokenService {
            cert_der: cert.der().to_vec(),
            key,
            service: Mutex::new(String::new()),
            push_allowed,
            refresh: Mutex::new(vec![]),
            seen: Mutex::new(vec![]),
        }
    }

    fn cert_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.cert_der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    fn jwt(&self, service: &str, name: &str, actions: &[&str]) -> String {
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&self.cert_der)]});
        let t = now();
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "nubes-tests", "aud": service,
            "exp": t + 600, "nbf": t - 30, "iat": t, "jti": format!("{t}-{}", rand_id()),
            "access": [{"type": "repository", "name": name, "actions": actions}],
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let der = self.key.sign(signing_input.as_bytes()).expect("sign");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(raw_signature(&der))
        )
    }

    fn answer(&self, path: &str, form: HashMap<String, String>) -> (u16, String) {
        self.seen
            .lock()
            .expect("seen")
            .push((path.to_string(), form.clone()));
        let service = self.service.lock().expect("service").clone();
        let refused = |why: &str| {
            (
                401,
                serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": why}]})
                    .to_string(),
            )
        };
        if form.get("service") != Some(&service) {
            return refused("service does not match the registry");
        }
        match path {
            "/oauth2/exchange" => {
                if form.get("grant_type").map(String::as_str) != Some("access_token") {
                    return (400, "grant_type must be access_token".into());
                }
                let Some(audience) = form.get("access_token").and_then(|t| jwt_audience(t)) else {
                    return refused("the access token is not a JWT");
                };
                if audience != "https://management.azure.com"
                    && audience != "https://management.core.windows.net/"
                {
                    return refused(&format!(
                        "the token's audience {audience} is not Azure Resource Manager's"
                    ));
                }
                let refresh = format!("acr-refresh-{}", rand_id());
                self.refresh.lock().expect("refresh").push(refresh.clone());
                (
                    200,
                    serde_json::json!({"refresh_token": refresh}).to_string(),
                )
            }
            "/oauth2/token" => {
                if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
                    return (400, "grant_type must be refresh_token".into());
                }
                let known = form
                    .get("refresh_token")
                    .is_some_and(|r| self.refresh.lock().expect("refresh").contains(r));
                if !known {
                    return refused("unknown refresh token");
                }
                let Some(scope) = form.get("scope") else {
                    return (400, "scope is required".into());
                };
                let parts: Vec<&str> = scope.split(':').collect();
                let &[kind, name, actions] = parts.as_slice() else {
                    return (400, "scope must be repository:<name>:<actions>".into());
                };
                assert_eq!(kind, "repository");
                let granted: Vec<&str> = actions
                    .split(',')
                    .filter(|a| *a == "pull" || (*a == "push" && self.push_allowed))
                    .collect();
                (
                    200,
                    serde_json::json!({"access_token": self.jwt(&service, name, &granted)})
                        .to_string(),
                )
            }
            _ => (404, "not found".into()),
        }
    }
}

fn rand_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn jwt_audience(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("aud")?.as_str().map(str::to_string)
}

/// An unsigned Entra-shaped access token for `audience`.
fn entra_token(audience: &str) -> String {
    let t = now();
    let claims = serde_json::json!({"aud": audience, "iss": "https://sts.windows.net/t/", "exp": t + 3600, "nbf": t - 60, "oid": "o"});
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

async fn serve(service: Arc<TokenService>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let handler = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let service = service.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let post = req.method() == hyper::Method::POST;
                            let body = http_body_util::BodyExt::collect(req.into_body())
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let form: HashMap<String, String> =
                                url::form_urlencoded::parse(&body).into_owned().collect();
                            let (status, text) = if post {
                                service.answer(&path, form)
                            } else {
                                (405, "POST only".into())
                            };
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("Content-Type", "application/json")
                                    .body(Full::new(Bytes::from(text)))
                                    .expect("response"),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    (base, task)
}

/// The registry behind the token service; returns both.
async fn world(
    push_allowed: bool,
) -> (
    Registry,
    Arc<TokenService>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let service = Arc::new(TokenService::new(push_allowed));
    let (realm, task) = serve(service.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root.pem");
    std::fs::write(&root, service.cert_pem()).expect("root");
    // The service name the registry puts in its challenges and expects as `aud`.
    let registry = Registry::start(&format!(
        "auth:\n  token:\n    realm: {realm}/oauth2/token\n    service: fake-acr.test\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        root.display()
    ));
    *service.service.lock().expect("service") = "fake-acr.test".into();
    (registry, service, task, dir)
}

fn set_credentials(audience: &str) {
    // SAFETY: nextest runs every test in its own process; no other thread reads the
    // environment while this runs (it runs before anything is spawned).
    unsafe {
        std::env::set_var("NUBES_REGISTRY_AUTH", "acr");
        std::env::set_var("NUBES_ARM_TOKEN", entra_token(audience));
    }
}

#[tokio::test]
async fn an_entra_token_is_exchanged_for_a_repository_token_that_the_registry_accepts() {
    set_credentials("https://management.azure.com");
    let (registry, service, _task, _dir) = world(true).await;
    let engine = tempfile::tempdir().expect("tempdir");
    let env = buildah_env(engine.path());
    let project = tempfile::tempdir().expect("tempdir");
    sample_app(project.path(), "acr");
    let image = nubes::image::build(
        project.path(),
        nubes::image::Engine::Buildah,
        "web",
        "alice",
        &env,
    )
    .await
    .expect("build");
    let pushed = nubes::registry::push(&image, &registry.addr, "web")
        .await
        .expect("push");
    assert!(
        pushed.credential.contains("token exchange"),
        "{}",
        pushed.credential
    );
    assert_eq!(pushed.uploaded, 3);
    let seen = service.seen.lock().expect("seen").clone();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/oauth2/exchange", "/oauth2/token"]);
    assert_eq!(
        seen[1].1.get("scope").map(String::as_str),
        Some("repository:web:pull,push")
    );
    // The registry checked the token: anonymous requests are refused.
    let anonymous = reqwest::get(format!("http://{}/v2/web/manifests/alice", registry.addr))
        .await
        .expect("get");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn without_acr_push_the_push_is_refused_naming_the_credential_and_the_role() {
    set_credentials("https://management.azure.com");
    let (registry, _service, _task, _dir) = world(false).await;
    let engine = tempfile::tempdir().expect("tempdir");
    let env = buildah_env(engine.path());
    let project = tempfile::tempdir().expect("tempdir");
    sample_app(project.path(), "acr");
    let image = nubes::image::build(
        project.path(),
        nubes::image::Engine::Buildah,
        "web",
        "alice",
        &env,
    )
    .await
    .expect("build");
    let e = nubes::registry::push(&image, &registry.addr, "web")
        .await
        .expect_err("refused");
    assert_eq!(e.exit_code(), 1);
    let text = format!("{e} {}", e.hint_text().unwrap_or_default());
    assert!(
        text.contains("refused the push")
            && text.contains("NUBES_ARM_TOKEN")
            && text.contains("AcrPush"),
        "{text}"
    );
    assert_eq!(registry.blob_uploads(), 0);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_by_the_exchange() {
    set_credentials("https://storage.azure.com");
    let (registry, _service, _task, _dir) = world(true).await;
    let image_dir = tempfile::tempdir().expect("tempdir");
    // No build needed: the exchange fails first.
    let blob = nubes::image::Blob {
        digest: "sha256:00".into(),
        size: 0,
        media_type: "application/vnd.oci.image.config.v1+json",
        path: image_dir.path().join("none"),
    };
    let image = nubes::image::Image {
        local: "x".into(),
        tag: "alice".into(),
        digest: "sha256:00".into(),
        manifest: vec![],
        config: blob,
        layers: vec![],
        engine: nubes::image::Engine::Buildah,
        took: std::time::Duration::ZERO,
    };
    let e = nubes::registry::push(&image, &registry.addr, "web")
        .await
        .expect_err("refused");
    let text = format!("{e} {}", e.hint_text().unwrap_or_default());
    assert!(
        text.contains("exchange the Entra token")
            && text.contains("HTTP 401")
            && text.contains("AcrPush"),
        "{text}"
    );
    assert!(!text.contains(&entra_token("https://storage.azure.com")[..40]));
}
