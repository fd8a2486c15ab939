//! Test helpers: a real Azurite per test (HTTPS + `--oauth basic` with a CA and leaf
//! generated here, or plain HTTP with a SAS signed with Azurite's well-known key), raw
//! blob REST calls for setting up and inspecting storage independently of nubes, and a
//! project folder + command builder for running the real `nubes` binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};

pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's documented well-known development key.
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn azurite_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NUBES_TEST_AZURITE") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/tools/azurite/node_modules/.bin/azurite-blob");
    assert!(
        p.exists(),
        "Azurite is not installed: run scripts/install-prereqs.sh (scripts/test.sh does it)"
    );
    p
}

pub enum Auth {
    Bearer(String),
    Sas(String),
}

pub struct Azurite {
    child: Child,
    pub port: u16,
    pub https: bool,
    dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
    pub token: String,
    pub sas: String,
    stopped: bool,
    /// Arguments besides host, port and data folder (certificates, OAuth).
    args: Vec<String>,
}

impl Azurite {
    /// HTTPS with `--oauth basic`: nubes authenticates with a bearer token.
    pub fn https() -> Azurite {
        Self::start(true)
    }

    /// Plain HTTP: nubes authenticates with a SAS.
    pub fn http() -> Azurite {
        Self::start(false)
    }

    /// Plain HTTP with Azurite's own debug log on (`--debug`), which records every
    /// request it receives: [`Azurite::mark`] and [`Azurite::requests_between`] read it.
    pub fn http_logged() -> Azurite {
        Self::start_with(false, true)
    }

    fn start(https: bool) -> Azurite {
        Self::start_with(https, false)
    }

    fn start_with(https: bool, debug_log: bool) -> Azurite {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_pem = dir.path().join("ca.pem");
        let mut args: Vec<String> = vec![];
        if debug_log {
            args.extend([
                "--debug".into(),
                dir.path().join("debug.log").display().to_string(),
            ]);
        }
        if https {
            let (ca, cert, key) = make_certs();
            std::fs::write(&ca_pem, ca).unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
            std::fs::write(dir.path().join("key.pem"), key).unwrap();
            args.extend([
                "--cert".into(),
                dir.path().join("cert.pem").display().to_string(),
                "--key".into(),
                dir.path().join("key.pem").display().to_string(),
                "--oauth".into(),
                "basic".into(),
            ]);
        }
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let data = dir.path().join(format!("data-{port}"));
            std::fs::create_dir_all(&data).unwrap();
            let mut child = spawn_azurite(port, &data, &args);
            if wait_for_port(port, Duration::from_secs(30)) {
                let az = Azurite {
                    child,
                    port,
                    https,
                    dir,
                    ca_pem,
                    token: jwt(),
                    sas: account_sas(),
                    stopped: false,
                    args,
                };
                let blobs = az.blobs();
                block_on(blobs.create_container("tfstate"));
                return az;
            }
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            last_err = out
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
        }
        panic!("Azurite did not start: {last_err}");
    }

    pub fn account_url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}/{ACCOUNT}",
            if self.https { "https" } else { "http" },
            self.port
        )
    }

    /// Environment for nubes to reach this Azurite.
    pub fn nubes_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("NUBES_STATE_ACCOUNT_URL".to_string(), self.account_url())];
        if self.https {
            env.push(("NUBES_STORAGE_TOKEN".into(), self.token.clone()));
            env.push((
                "NUBES_STORAGE_CA_CERT".into(),
                self.ca_pem.display().to_string(),
            ));
        } else {
            env.push(("NUBES_STORAGE_SAS".into(), self.sas.clone()));
        }
        env
    }

    pub fn blobs(&self) -> Blobs {
        let mut builder = reqwest::Client::builder();
        if self.https {
            let pem = std::fs::read(&self.ca_pem).unwrap();
            builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap());
        }
        Blobs {
            http: builder.build().unwrap(),
            base: self.account_url(),
            auth: if self.https {
                Auth::Bearer(self.token.clone())
            } else {
                Auth::Sas(self.sas.clone())
            },
        }
    }

    /// Stop Azurite (the data folder is kept, so `resume` brings the same storage back).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stopped = true;
    }

    /// A storage outage: stop Azurite as an operator would (SIGTERM, so it saves its
    /// blob database) and wait until its port refuses connections.
    pub fn pause(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        self.stopped = true;
    }

    /// End the outage: the same storage (data folder) on the same port.
    pub fn resume(&mut self) {
        let data = self.dir.path().join(format!("data-{}", self.port));
        self.child = spawn_azurite(self.port, &data, &self.args);
        self.stopped = false;
        assert!(
            wait_for_port(self.port, Duration::from_secs(30)),
            "Azurite did not come back on port {}",
            self.port
        );
    }
}

/// One request as Azurite's debug log recorded it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// The path, percent-decoded (`/devstoreaccount1/$web/assets/a.js`).
    pub path: String,
    pub query: String,
}

static MARKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Azurite {
    fn logged(&self) -> Vec<LoggedRequest> {
        let text = std::fs::read_to_string(self.dir.path().join("debug.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let rest = line
                    .split("BlobStorageContextMiddleware: RequestMethod=")
                    .nth(1)?;
                let (method, rest) = rest.split_once(" RequestURL=")?;
                let (url, _) = rest.split_once(" RequestHeaders:")?;
                // `http://127.0.0.1/devstoreaccount1/...?query` (the host without port).
                let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
                let path_query = &after_scheme[after_scheme.find('/')?..];
                let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
                Some(LoggedRequest {
                    method: method.to_string(),
                    path: percent_decode(path),
                    query: query.to_string(),
                })
            })
            .collect()
    }

    /// Send a request no one else sends and wait until the debug log shows it (the log
    /// is written asynchronously): every request before it is logged by then. Returns
    /// the mark's position, for [`Azurite::requests_between`].
    pub fn mark(&self) -> usize {
        let n = MARKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = format!("nubes-test-mark/{}-{n}", self.port);
        block_on(self.blobs().send("GET", &path, "", &[], vec![]));
        let wanted = format!("/{ACCOUNT}/{path}");
        let started = Instant::now();
        loop {
            if let Some(i) = self.logged().iter().position(|r| r.path == wanted) {
                return i;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Azurite's debug log never showed the mark {wanted}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The requests Azurite received between two [`Azurite::mark`]s.
    pub fn requests_between(&self, from: usize, to: usize) -> Vec<LoggedRequest> {
        self.logged()
            .into_iter()
            .skip(from + 1)
            .take(to.saturating_sub(from + 1))
            .collect()
    }
}

/// `%2F` -> `/` and so on (Azurite logs the URL as the client sent it).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn spawn_azurite(port: u16, data: &Path, args: &[String]) -> Child {
    let mut cmd = Command::new(azurite_binary());
    cmd.args([
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--location",
    ])
    .arg(data)
    .args([
        "--silent",
        "--skipApiVersionCheck",
        "--loose",
        "--disableProductStyleUrl",
        // No telemetry: it cannot be sent from here, and flushing it on SIGTERM made a
        // graceful stop take 20 s to 2 minutes (the outage tests stop Azurite).
        "--disableTelemetry",
    ])
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    kill_with_parent(&mut cmd);
    cmd.spawn().expect("start azurite")
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl only sets a flag on the new process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

pub fn wait_for_port(port: u16, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A CA, and a leaf for 127.0.0.1/localhost signed by it (rustls rejects a self-signed
/// certificate used directly as the server's).
fn make_certs() -> (String, String, String) {
    let c = make_certs_for(&["127.0.0.1", "localhost"]);
    (c.ca_pem, c.cert_pem, c.key_pem)
}

/// A test CA and a leaf it signed for `names` (DNS names, wildcards or IP addresses).
pub struct TestCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

pub fn make_certs_for(names: &[&str]) -> TestCerts {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "nubes test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    TestCerts {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        cert_der: leaf.der().to_vec(),
        key_der: leaf_key.serialize_der(),
    }
}

/// An unsigned JWT that Azurite's `--oauth basic` accepts.
pub fn jwt() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "aud": "https://storage.azure.com",
        "iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
        "iat": now - 60, "nbf": now - 60, "exp": now + 7200,
        "oid": "00000000-0000-0000-0000-0000000000aa",
        "tid": "ab1f708d-50f6-404c-a006-d71b2ac7a606",
        "appid": "nubes-tests",
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(format!("test-signature-{now}-{}", std::process::id()));
    format!("{header}.{payload}.{signature}")
}

/// An account SAS for the blob service, signed with Azurite's well-known key.
pub fn account_sas() -> String {
    account_sas_for(ACCOUNT, ACCOUNT_KEY)
}

/// An account SAS for the blob service of `account`, signed with its base64 `key`.
pub fn account_sas_for(account: &str, account_key: &str) -> String {
    use hmac::{Hmac, Mac};
    let (sp, ss, srt, se, spr, sv) = (
        "rwdlacup",
        "b",
        "sco",
        "2099-01-01T00:00:00Z",
        "https,http",
        API_VERSION,
    );
    let to_sign = format!("{account}\n{sp}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{sv}\n\n");
    let key = B64.decode(account_key).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    format!(
        "sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={se}&spr={}&sig={sig}",
        "https%2Chttp"
    )
}

/// Raw Blob REST calls, for setting up and inspecting storage independently of nubes.
pub struct Blobs {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

pub struct BlobResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl BlobResponse {
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.headers
            .get(&format!("x-ms-meta-{key}"))
            .map(String::as_str)
    }
}

impl Blobs {
    /// Raw calls to the account at `base` (`https://127.0.0.1:<port>/<account>`), trusting
    /// the CA in `ca_pem`, authenticated with an account SAS.
    pub fn with_sas(base: String, ca_pem: &Path, sas: String) -> Blobs {
        let pem = std::fs::read(ca_pem).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
            .build()
            .unwrap();
        Blobs {
            http,
            base,
            auth: Auth::Sas(sas),
        }
    }

    fn url(&self, path: &str, query: &str) -> String {
        let mut q = query.to_string();
        if let Auth::Sas(sas) = &self.auth {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(sas);
        }
        if q.is_empty() {
            format!("{}/{path}", self.base)
        } else {
            format!("{}/{path}?{q}", self.base)
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> BlobResponse {
        let mut req = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                self.url(path, query),
            )
            .header("x-ms-version", API_VERSION)
            .header("x-ms-date", httpdate());
        if let Auth::Bearer(t) = &self.auth {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.body(body).send().await.expect("azurite request");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        BlobResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn create_container(&self, name: &str) {
        let r = self
            .send("PUT", name, "restype=container", &[], vec![])
            .await;
        assert!(
            r.status == 201 || r.status == 409,
            "create container: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }

    pub async fn get(&self, container: &str, blob: &str) -> BlobResponse {
        self.send("GET", &format!("{container}/{blob}"), "", &[], vec![])
            .await
    }

    pub async fn properties(&self, container: &str, blob: &str) -> BlobResponse {
        self.send("HEAD", &format!("{container}/{blob}"), "", &[], vec![])
            .await
    }

    pub async fn put(
        &self,
        container: &str,
        blob: &str,
        body: Vec<u8>,
        meta: &[(&str, &str)],
    ) -> BlobResponse {
        // reqwest omits Content-Length for an empty body, which Azurite rejects.
        let mut headers: Vec<(&str, String)> = vec![
            ("x-ms-blob-type", "BlockBlob".into()),
            ("content-length", body.len().to_string()),
        ];
        let meta: Vec<(String, String)> = meta
            .iter()
            .map(|(k, v)| (format!("x-ms-meta-{k}"), v.to_string()))
            .collect();
        for (k, v) in &meta {
            headers.push((k.as_str(), v.clone()));
        }
        let r = self
            .send("PUT", &format!("{container}/{blob}"), "", &headers, body)
            .await;
        assert_eq!(
            r.status,
            201,
            "put blob: {:?} {}",
            r.headers.get("x-ms-error-code"),
            String::from_utf8_lossy(&r.body)
        );
        r
    }

    pub async fn list(&self, container: &str, include: &str) -> String {
        let r = self
            .send(
                "GET",
                container,
                &format!("restype=container&comp=list&include={include}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(r.status, 200);
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Lock a blob exactly as Terraform's `azurerm` backend does: infinite lease with the
    /// lock ID as lease ID, then `terraformlockid` metadata.
    pub async fn terraform_lock(&self, container: &str, blob: &str, lock_json: &str) -> String {
        let id = serde_json::from_str::<serde_json::Value>(lock_json).unwrap()["ID"]
            .as_str()
            .unwrap()
            .to_string();
        let path = format!("{container}/{blob}");
        if self.properties(container, blob).await.status == 404 {
            self.put(container, blob, vec![], &[]).await;
        }
        let r = self
            .send(
                "PUT",
                &path,
                "comp=lease",
                &[
                    ("x-ms-lease-action", "acquire".into()),
                    ("x-ms-lease-duration", "-1".into()),
                    ("x-ms-proposed-lease-id", id.clone()),
                ],
                vec![],
            )
            .await;
        assert_eq!(
            r.status,
            201,
            "acquire lease: {}",
            String::from_utf8_lossy(&r.body)
        );
        // Like azurerm's writeLockInfo: keep the existing metadata, add the lock info.
        let existing = self.properties(container, blob).await;
        let mut headers: Vec<(String, String)> = existing
            .headers
            .iter()
            .filter(|(k, _)| {
                k.starts_with("x-ms-meta-") && k.as_str() != "x-ms-meta-terraformlockid"
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.push(("x-ms-lease-id".into(), id.clone()));
        headers.push(("x-ms-meta-terraformlockid".into(), B64.encode(lock_json)));
        let headers: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let r = self
            .send("PUT", &path, "comp=metadata", &headers, vec![])
            .await;
        assert_eq!(
            r.status,
            200,
            "set metadata: {}",
            String::from_utf8_lossy(&r.body)
        );
        id
    }
}

fn httpdate() -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::now_utc().format(&f).unwrap()
}

/// A Terraform stack of built-in resources, NubesGen-shaped: `backend "azurerm" {}`.
pub const STACK: &str = r#"
terraform {
  backend "azurerm" {}
}

variable "n" {
  type    = string
  default = "1"
}

resource "terraform_data" "item" {
  count = 3
  input = "item-${count.index}-${var.n}"
}

output "value" {
  value = terraform_data.item[0].output
}
"#;

/// A project folder with `nubes.toml` and `terraform/`.
pub struct Project {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "nubes failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Out {
        assert_eq!(
            self.code, code,
            "unexpected exit code:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Project {
    pub fn new(nubes_toml: &str, terraform: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("nubes.toml"), nubes_toml).unwrap();
        for (name, text) in terraform {
            let p = dir.path().join("terraform").join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Project { dir, env: vec![] }
    }

    /// A project whose state lives in this Azurite.
    pub fn on(az: &Azurite, extra_toml: &str) -> Project {
        let mut p = Project::new(
            &format!("[project]\nname = \"demo\"\n{extra_toml}"),
            &[("main.tf", STACK)],
        );
        p.env = az.nubes_env();
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
    }

    pub fn unset_env(&mut self, k: &str) {
        self.env.retain(|(key, _)| key != k);
    }

    /// `nubes` in this project, with a clean environment (no ambient credentials).
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(Path::new(env!("CARGO_BIN_EXE_nubes")), args)
    }

    /// [`Project::cmd`] with another nubes binary (a benchmark driver measuring a
    /// release build from a debug test binary).
    pub fn cmd_of(&self, nubes: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(nubes);
        cmd.args(args).current_dir(self.path()).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("NUBES_") && k != "NUBES_TEST_AZURITE"
                || k.starts_with("ARM_")
                || k.starts_with("AZURE_")
                || k.starts_with("GITHUB_")
                || k == "GH_TOKEN"
                || k.starts_with("ACTIONS_")
                || k == "CI"
                || k == "TF_CLI_CONFIG_FILE"
            {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.cmd(args).output().expect("run nubes").into()
    }

    /// `nubes args` on a real pseudo-terminal (util-linux `script`), outside CI, with
    /// `input` typed at it; the terminal's output (stdout and stderr together) is
    /// `stdout`, and the exit code is nubes's own.
    pub fn run_on_terminal(&self, args: &[&str], input: &str) -> Out {
        use std::io::Write as _;
        let script =
            which::which("script").expect("`script` (util-linux) gives the test a terminal");
        let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_nubes"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let nubes = self.cmd(args);
        let mut cmd = Command::new(script);
        // A terminal of a known size (`script` without a terminal of its own gives 0x0,
        // and programs then guess): TERMINAL_COLUMNS wide, as `screen` renders it.
        let line = format!(
            "stty cols {TERMINAL_COLUMNS} rows 50 2>/dev/null; exec {}",
            line.join(" ")
        );
        cmd.args(["-qec", &line, "/dev/null"])
            .current_dir(self.path())
            .env_clear()
            .envs(nubes.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .env_remove("CI")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in std::env::vars_os() {
            if k == "PATH" || k == "HOME" || k == "TERM" {
                cmd.env(k, v);
            }
        }
        let mut child = cmd.spawn().expect("spawn script");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("type at the terminal");
        child.wait_with_output().expect("run script").into()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nubes")
    }
}

/// Commit `files` (path, text) as the whole tree of a new commit on `reference` (e.g.
/// `refs/heads/env-alice` or `refs/remotes/origin/env-alice`) of the repository at
/// `dir`, created if missing, on top of that reference's tip. Returns the commit id.
pub fn git_commit(dir: &Path, reference: &str, files: &[(&str, &str)]) -> String {
    let repo = git2::Repository::open(dir)
        .or_else(|_| git2::Repository::init(dir))
        .expect("repository");
    let mut builder = git2::build::TreeUpdateBuilder::new();
    for (path, text) in files {
        let oid = repo.blob(text.as_bytes()).expect("blob");
        builder.upsert(*path, oid, git2::FileMode::Blob);
    }
    let empty = repo.treebuilder(None).unwrap().write().unwrap();
    let base = repo.find_tree(empty).unwrap();
    let tree = builder.create_updated(&repo, &base).expect("tree");
    let tree = repo.find_tree(tree).unwrap();
    let parent = repo
        .find_reference(reference)
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let sig = git2::Signature::now("Dev", "dev@example.com").unwrap();
    repo.commit(Some(reference), &sig, &sig, "commit", &tree, &parents)
        .expect("commit")
        .to_string()
}

/// The width of the pseudo-terminal of [`Project::run_on_terminal`].
pub const TERMINAL_COLUMNS: u16 = 100;

/// What a terminal [`TERMINAL_COLUMNS`] wide shows after `bytes` were written to it
/// (spinners redrawn in place, cleared lines gone), rendered by a terminal emulator tall
/// enough that nothing scrolls away.
pub fn screen(bytes: &str) -> String {
    let mut term = vt100::Parser::new(4000, TERMINAL_COLUMNS, 0);
    term.process(bytes.as_bytes());
    term.screen().contents()
}
