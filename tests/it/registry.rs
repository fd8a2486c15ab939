//! Images built by a real engine (buildah, `--isolation chroot` through `BUILDAH_ISOLATION`,
//! storage in a temp dir) from a real Dockerfile (`FROM scratch` + Debian's static
//! busybox: there is no Docker Hub here), pushed by `nubes::registry` to a real registry
//! (Debian's `docker-registry` 2.8, filesystem storage, on a free loopback port): the
//! manifest pulled back has the digest nubes deploys by; a rebuild with one changed layer
//! uploads only that layer and the config (counted in the registry's own access log); an
//! unreachable registry, a missing Dockerfile, a failed build and an upload past its
//! timeout are clear errors. Over HTTPS (the registry's own TLS, on the machine's
//! non-loopback address, with a certificate a test CA signed): refused as untrusted
//! until `NUBES_STORAGE_CA_CERT` names the CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nubes::image::{Engine, Image};

use crate::support::{free_port, kill_with_parent, wait_for_port};

/// A `docker-registry` on 127.0.0.1, its access log in a file.
pub struct Registry {
    pub addr: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// `auth` is extra YAML under `auth:` (e.g. a token realm), or empty.
    pub fn start(auth: &str) -> Registry {
        Registry::start_on("127.0.0.1", "127.0.0.1", auth)
    }

    /// Listening on `listen` (an address), reached as `host`; `extra` is more YAML under
    /// `http:` (e.g. `  tls:`), or an `auth:` section.
    pub fn start_on(listen: &str, host: &str, extra: &str) -> Registry {
        let auth = extra;
        let bin = which::which("docker-registry")
            .expect("docker-registry is not installed: run scripts/install-prereqs.sh");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {listen}:{port}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let log = dir.path().join("registry.log");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg(&config)
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            );
        kill_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start docker-registry");
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "the registry did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Registry {
            addr: format!("{host}:{port}"),
            child,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Completed blob uploads so far (the final `PUT …/blobs/uploads/…?digest=` of each).
    pub fn blob_uploads(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/") && l.contains("digest=")
            })
            .count()
    }
}

/// Buildah with its storage in `dir` (vfs: no overlay mounts needed) and chroot isolation.
pub fn buildah_env(dir: &Path) -> Vec<(String, String)> {
    which::which("buildah").expect("buildah is not installed: run scripts/install-prereqs.sh");
    let conf = dir.join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("root").display(),
            dir.join("run").display()
        ),
    )
    .expect("storage.conf");
    vec![
        ("CONTAINERS_STORAGE_CONF".into(), conf.display().to_string()),
        ("BUILDAH_ISOLATION".into(), "chroot".into()),
    ]
}

/// A Docker daemon of the test's own (Debian's `docker.io`): data root, exec root and
/// socket in a temp dir, no iptables, no bridge (nothing is run, only built). The
/// engine's environment is `DOCKER_HOST` naming its socket.
pub struct Dockerd {
    child: Child,
    pub env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops its containerd and unmounts what it mounted.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let bin = which::which("dockerd")
            .expect("dockerd (docker.io) is not installed: run scripts/install-prereqs.sh");
        // Short paths: a unix socket's path is limited to 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("dk")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let sock = dir.path().join("d.sock");
        let log = dir.path().join("dockerd.log");
        let mut cmd = Command::new(bin);
        cmd.arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("x"))
            .arg("--pidfile")
            .arg(dir.path().join("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["--iptables=false", "--bridge=none"])
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            );
        kill_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start dockerd");
        let host = format!("unix://{}", sock.display());
        let started = std::time::Instant::now();
        loop {
            let up = Command::new("docker")
                .args(["version", "--format", "{{.Server.Version}}"])
                .env("DOCKER_HOST", &host)
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "dockerd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Dockerd {
            child,
            env: vec![("DOCKER_HOST".into(), host)],
            dir,
        }
    }

    /// The daemon's log (shown when a build fails).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

/// Builds of `p` go through buildah ([`buildah_env`], storage in the returned temp dir,
/// kept alive by the caller) behind a wrapper on `p`'s PATH that logs each subcommand
/// to the returned file, one per line, so a test can count the `bud`s.
pub fn counting_buildah(p: &mut crate::support::Project) -> (PathBuf, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let bin = p.path().join(".bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let calls = p.path().join(".buildah-calls");
    let real = which::which("buildah").expect("buildah");
    std::fs::write(
        bin.join("buildah"),
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            real.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(bin.join("buildah"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let engine = tempfile::tempdir().expect("tempdir");
    for (k, v) in buildah_env(engine.path()) {
        p.set_env(&k, &v);
    }
    p.set_env(
        "PATH",
        &format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    (calls, engine)
}

/// A project whose Dockerfile copies the static busybox and a page.
pub fn sample_app(root: &Path, page: &str) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "busybox-static is not installed: run scripts/install-prereqs.sh"
    );
    std::fs::copy(busybox, root.join("busybox")).expect("copy busybox");
    std::fs::create_dir_all(root.join("www")).expect("www");
    std::fs::write(root.join("www/index.html"), page).expect("page");
    std::fs::write(
        root.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nEXPOSE 8080\n\
         CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .expect("Dockerfile");
}

async fn pulled_manifest(registry: &Registry, reference: &str) -> (Vec<u8>, Option<String>) {
    let http = reqwest::Client::new();
    let r = http
        .get(format!(
            "http://{}/v2/web/manifests/{reference}",
            registry.addr
        ))
        .header("Accept", nubes::image::MANIFEST_MEDIA_TYPE)
        .send()
        .await
        .expect("pull manifest");
    assert!(r.status().is_success(), "{}", r.status());
    let digest = r
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.bytes().await.expect("body").to_vec(), digest)
}

async fn build(root: &Path, env: &[(String, String)], tag: &str) -> Image {
    nubes::image::build(root, Engine::Buildah, "web", tag, env)
        .await
        .expect("image build")
}

#[tokio::test]
async fn an_image_is_pushed_by_digest_and_a_rebuild_uploads_only_the_changed_layer() {
    let registry = Registry::start("");
    let engine_dir = tempfile::tempdir().expect("tempdir");
    let env = buildah_env(engine_dir.path());
    let project = tempfile::tempdir().expect("tempdir");
    sample_app(project.path(), "<h1>one</h1>");
    let first = build(project.path(), &env, "alice-c1").await;
    assert_eq!(first.layers.len(), 2, "busybox and the page: {first:?}");
    let pushed = nubes::registry::push(&first, &registry.addr, "web")
        .await
        .expect("push");
    assert_eq!(
        pushed.reference,
        format!("{}/web@{}", registry.addr, first.digest)
    );
    assert_eq!((pushed.uploaded, pushed.skipped), (3, 0));
    assert_eq!(registry.blob_uploads(), 3);
    // Pulled back by digest and by tag: the same bytes, whose SHA-256 is the digest.
    let (bytes, said) = pulled_manifest(&registry, &first.digest).await;
    assert_eq!(
        format!("sha256:{}", nubes::image::sha256_hex(&bytes)),
        first.digest
    );
    assert_eq!(said.as_deref(), Some(first.digest.as_str()));
    let (by_tag, _) = pulled_manifest(&registry, "alice-c1").await;
    assert_eq!(by_tag, bytes);

    // One changed layer: only it and the config travel.
    std::fs::write(project.path().join("www/index.html"), "<h1>two</h1>").expect("page");
    let second = build(project.path(), &env, "alice-c2").await;
    assert_ne!(second.digest, first.digest);
    assert_eq!(
        second.layers[0].digest, first.layers[0].digest,
        "busybox layer unchanged"
    );
    let again = nubes::registry::push(&second, &registry.addr, "web")
        .await
        .expect("push");
    assert_eq!((again.uploaded, again.skipped), (2, 1));
    assert_eq!(registry.blob_uploads(), 5, "{}", registry.log());
    assert!(
        again.bytes_uploaded < first.layers[0].size,
        "the busybox layer was not sent again"
    );
    let (bytes, _) = pulled_manifest(&registry, &second.digest).await;
    assert_eq!(bytes, second.manifest);
}

/// The same with `[build] engine = "docker"`: a real Docker daemon builds it, `docker
/// save` exports it, and what nubes pushes is an image whose manifest digest is the one
/// pulled back; a rebuild with one changed page sends only that layer and the config.
#[tokio::test]
async fn the_docker_engine_builds_an_image_nubes_pushes_by_digest() {
    let dockerd = Dockerd::start();
    let registry = Registry::start("");
    let project = tempfile::tempdir().expect("tempdir");
    sample_app(project.path(), "<h1>one</h1>");
    let first = nubes::image::build(
        project.path(),
        Engine::Docker,
        "web",
        "alice-c1",
        &dockerd.env,
    )
    .await
    .unwrap_or_else(|e| panic!("docker build: {e}\n{}", dockerd.log()));
    assert_eq!(first.layers.len(), 2, "busybox and the page: {first:?}");
    let pushed = nubes::registry::push(&first, &registry.addr, "web")
        .await
        .expect("push");
    assert_eq!((pushed.uploaded, pushed.skipped), (3, 0));
    let (bytes, said) = pulled_manifest(&registry, &first.digest).await;
    assert_eq!(
        format!("sha256:{}", nubes::image::sha256_hex(&bytes)),
        first.digest
    );
    assert_eq!(said.as_deref(), Some(first.digest.as_str()));

    std::fs::write(project.path().join("www/index.html"), "<h1>two</h1>").expect("page");
    let second = nubes::image::build(
        project.path(),
        Engine::Docker,
        "web",
        "alice-c2",
        &dockerd.env,
    )
    .await
    .expect("docker build");
    assert_ne!(second.digest, first.digest);
    assert_eq!(
        second.layers[0].digest, first.layers[0].digest,
        "busybox layer unchanged"
    );
    let again = nubes::registry::push(&second, &registry.addr, "web")
        .await
        .expect("push");
    assert_eq!(
        (again.uploaded, again.skipped),
        (2, 1),
        "{}",
        registry.log()
    );

    // Without a daemon to talk to, the engine's own words reach the error.
    let gone = vec![(
        "DOCKER_HOST".to_string(),
        "unix:///nonexistent/d.sock".to_string(),
    )];
    let e = nubes::image::build(project.path(), Engine::Docker, "web", "alice-c3", &gone)
        .await
        .expect_err("no daemon");
    assert!(
        e.to_string().contains("docker") && e.to_string().to_lowercase().contains("daemon"),
        "{e}"
    );
}

#[tokio::test]
async fn a_missing_dockerfile_and_an_unreachable_registry_are_clear_errors() {
    let project = tempfile::tempdir().expect("tempdir");
    let e = nubes::image::build(project.path(), Engine::Buildah, "web", "t", &[])
        .await
        .expect_err("no Dockerfile");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("Dockerfile"), "{e}");

    let engine_dir = tempfile::tempdir().expect("tempdir");
    let env = buildah_env(engine_dir.path());
    sample_app(project.path(), "x");
    // A build failure shows the engine's last lines.
    std::fs::write(
        project.path().join("Dockerfile"),
        "FROM scratch\nCOPY no-such-file /x\n",
    )
    .expect("Dockerfile");
    let e = nubes::image::build(project.path(), Engine::Buildah, "web", "t", &env)
        .await
        .expect_err("build fails");
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string().contains("last lines") && e.to_string().contains("no-such-file"),
        "{e}"
    );

    sample_app(project.path(), "x");
    let image = build(project.path(), &env, "t").await;
    let closed = format!("127.0.0.1:{}", free_port());
    let e = nubes::registry::push(&image, &closed, "web")
        .await
        .expect_err("unreachable");
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("cannot reach the registry"), "{e}");

    // A layer that cannot be uploaded within the upload timeout: a clear error, and no
    // manifest (nothing to deploy) in the registry.
    let registry = Registry::start("");
    // SAFETY: nextest runs every test in its own process; nothing else reads the
    // environment at this point.
    unsafe { std::env::set_var("NUBES_REGISTRY_UPLOAD_TIMEOUT", "1ms") };
    let e = nubes::registry::push(&image, &registry.addr, "web")
        .await
        .expect_err("too slow");
    assert_eq!(e.exit_code(), 1);
    let text = format!("{e} {}", e.hint_text().unwrap_or_default());
    assert!(
        text.contains("did not finish within 1ms")
            && text.contains("NUBES_REGISTRY_UPLOAD_TIMEOUT"),
        "{text}"
    );
    let tags = reqwest::get(format!("http://{}/v2/web/tags/list", registry.addr))
        .await
        .expect("tags");
    assert_eq!(tags.status(), 404, "no manifest was pushed");
}

/// This machine's address on its default route (not loopback: nubes speaks plain HTTP to a
/// loopback registry, HTTPS to any other).
fn non_loopback_ip() -> String {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    socket
        .connect("192.0.2.1:9")
        .or_else(|_| socket.connect("203.0.113.1:9"))
        .expect("this test needs a network interface other than loopback");
    let ip = socket.local_addr().expect("addr").ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip.to_string()
}

/// `NUBES_STORAGE_CA_CERT` is trusted by the OCI client too: a registry over HTTPS whose
/// certificate a private CA signed (as a TLS-inspecting proxy's is) is refused without it,
/// and pushed to with it.
#[tokio::test]
async fn a_registry_behind_a_private_ca_is_trusted_through_nubes_storage_ca_cert() {
    let ip = non_loopback_ip();
    let certs = crate::support::make_certs_for(&[ip.as_str()]);
    let tls = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca) = (
        tls.path().join("cert.pem"),
        tls.path().join("key.pem"),
        tls.path().join("ca.pem"),
    );
    std::fs::write(&cert, &certs.cert_pem).expect("cert");
    std::fs::write(&key, &certs.key_pem).expect("key");
    // The bundle as a proxy's CA file often is: another certificate first.
    let other = crate::support::make_certs_for(&["example.test"]).ca_pem;
    std::fs::write(&ca, format!("{other}{}", certs.ca_pem)).expect("ca");
    let registry = Registry::start_on(
        "0.0.0.0",
        &ip,
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
    );
    let engine_dir = tempfile::tempdir().expect("tempdir");
    let env = buildah_env(engine_dir.path());
    let project = tempfile::tempdir().expect("tempdir");
    sample_app(project.path(), "<h1>tls</h1>");
    let image = build(project.path(), &env, "alice-tls").await;
    let refused = nubes::registry::push(&image, &registry.addr, "web")
        .await
        .expect_err("an unknown issuer is refused");
    assert_eq!(refused.exit_code(), 1);
    assert!(
        refused
            .to_string()
            .contains("TLS certificate is not trusted (UnknownIssuer)")
            && refused
                .hint_text()
                .unwrap_or_default()
                .contains("NUBES_STORAGE_CA_CERT"),
        "{refused} {:?}",
        refused.hint_text()
    );
    assert_eq!(registry.blob_uploads(), 0);
    // SAFETY: nextest runs every test in its own process; nothing else reads the
    // environment concurrently here.
    unsafe { std::env::set_var("NUBES_STORAGE_CA_CERT", &ca) };
    let pushed = nubes::registry::push(&image, &registry.addr, "web")
        .await
        .expect("push over HTTPS");
    assert_eq!(pushed.uploaded, 3);
    assert!(
        pushed.reference.starts_with(&format!("{ip}:")),
        "{}",
        pushed.reference
    );
    let client = reqwest::Client::builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(certs.ca_pem.as_bytes()).expect("ca"),
        )
        .build()
        .expect("client");
    let manifest = client
        .get(format!(
            "https://{}/v2/web/manifests/{}",
            registry.addr, image.digest
        ))
        .header("Accept", nubes::image::MANIFEST_MEDIA_TYPE)
        .send()
        .await
        .expect("pull")
        .bytes()
        .await
        .expect("body");
    assert_eq!(
        format!("sha256:{}", nubes::image::sha256_hex(&manifest)),
        image.digest
    );
}
