//! A nubes release as GitHub serves it, for the action's installer
//! (`scripts/install-action.sh`): a folder laid out like a release's downloads
//! (`v<version>/nubes-<version>-<target>.tar.gz` or `.zip`, and `v<version>/SHA256SUMS`
//! in `sha256sum`'s format, as `.github/workflows/release.yml` makes them), built from
//! the test binary, and a loopback HTTP server for it.
//!
//! The server behaves like `https://github.com/<owner>/<repo>/releases/download/`:
//! a known asset is answered with a 302 redirect to a storage URL that serves the
//! bytes (GitHub redirects to `release-assets.githubusercontent.com`), so the
//! installer must follow redirects; anything else is a 404; only GET and HEAD are
//! served. It records every request line, so tests can tell which asset was fetched
//! and that a tool-cache hit fetched nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Every target release.yml builds, with the runner's `RUNNER_OS`/`RUNNER_ARCH`.
pub const TARGETS: [(&str, &str, &str); 5] = [
    ("Linux", "X64", "x86_64-unknown-linux-musl"),
    ("Linux", "ARM64", "aarch64-unknown-linux-musl"),
    ("macOS", "X64", "x86_64-apple-darwin"),
    ("macOS", "ARM64", "aarch64-apple-darwin"),
    ("Windows", "X64", "x86_64-pc-windows-msvc"),
];

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The file name of the asset for `target`.
pub fn asset(target: &str) -> String {
    let ext = if target.contains("windows") {
        "zip"
    } else {
        "tar.gz"
    };
    format!("nubes-{}-{target}.{ext}", version())
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A release folder under `root` for the test binary's version, with an asset for
/// each of `targets` (every one holds the test binary: the installer picks the asset
/// by name, and only a Linux binary runs here) and SHA256SUMS listing them.
pub fn layout(root: &Path, targets: &[&str]) -> PathBuf {
    let dir = root.join(format!("v{}", version()));
    std::fs::create_dir_all(&dir).unwrap();
    let stage = root.join("stage");
    let mut sums = String::new();
    for target in targets {
        let windows = target.contains("windows");
        let bin = if windows { "nubes.exe" } else { "nubes" };
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir_all(&stage).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_nubes"), stage.join(bin)).unwrap();
        // Without debug info the test binary is a release binary's size, not 200 MB.
        sh(Command::new("strip").arg(stage.join(bin)));
        let file = dir.join(asset(target));
        if windows {
            sh(Command::new("zip")
                .arg("-q")
                .arg(&file)
                .arg(bin)
                .current_dir(&stage));
        } else {
            sh(Command::new("tar")
                .arg("-czf")
                .arg(&file)
                .arg(bin)
                .current_dir(&stage));
        }
        sums += &format!("{}  {}\n", sha256_hex(&file), asset(target));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
    let _ = std::fs::remove_dir_all(&stage);
    dir
}

pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The release server: `url()` is what the action's `release-url` input takes.
pub struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `root` (holding `v<version>/...` folders) under `/download/`.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, log, halt) = (root.to_path_buf(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(conn, &root, &log);
                }
            }
        });
        Server {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/download", self.port)
    }

    /// The request lines so far ("GET /download/v0.1.0/SHA256SUMS").
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request per connection (`Connection: close`).
fn serve(mut conn: TcpStream, root: &Path, log: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    // Drain the headers.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let line = line.trim_end().to_string();
    log.lock().unwrap().push(
        line.rsplit_once(' ')
            .map_or(line.clone(), |(l, _)| l.to_string()),
    );
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let respond = |conn: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        if method != "HEAD" {
            let _ = conn.write_all(body);
        }
    };
    if method != "GET" && method != "HEAD" {
        return respond(&mut conn, "405 Method Not Allowed", "", b"");
    }
    // Plain names only: no "..", no encoded characters.
    let file = |rel: &str| -> Option<PathBuf> {
        let ok = rel.split('/').all(|p| {
            !p.is_empty()
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
        let path = root.join(rel);
        (ok && path.is_file()).then_some(path)
    };
    if let Some(rel) = target.strip_prefix("/download/")
        && file(rel).is_some()
    {
        let location = format!("Location: /assets/{rel}\r\n");
        return respond(&mut conn, "302 Found", &location, b"");
    }
    if let Some(rel) = target.strip_prefix("/assets/")
        && let Some(path) = file(rel)
    {
        let mut body = vec![];
        if std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut body))
            .is_ok()
        {
            return respond(
                &mut conn,
                "200 OK",
                "Content-Type: application/octet-stream\r\n",
                &body,
            );
        }
    }
    respond(&mut conn, "404 Not Found", "", b"Not Found")
}
