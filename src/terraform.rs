//! Finding and running Terraform (or OpenTofu).
//!
//! Terraform stays in nubes's process group (so a terminal's Ctrl-C reaches both) and
//! is told by the kernel to terminate if nubes dies (`PR_SET_PDEATHSIG`), so it is never
//! left running orphaned. A SIGTERM to nubes, or a SIGINT that did not come from the
//! terminal, is forwarded to Terraform as an interrupt, which makes it stop gracefully
//! and persist state through the gateway; nubes waits for it to exit.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::signals::{self, Caught};

/// Environment variables Terraform has no use for and must never see (a `local-exec`
/// provisioner could print its environment).
// `ACTIONS_ID_TOKEN_REQUEST_TOKEN` is not withheld: the `azurerm` provider's OIDC sign-in
// (`ARM_USE_OIDC`) asks GitHub for its own ID token with it.
const WITHHELD_ENV: &[&str] = &[
    "NUBES_STORAGE_SAS",
    "NUBES_STORAGE_TOKEN",
    "NUBES_ARM_TOKEN",
    "NUBES_KUDU_TOKEN",
    "NUBES_SITE_SAS",
];

#[derive(Debug, Clone)]
pub struct Terraform {
    pub path: PathBuf,
    pub name: String,
}

pub fn locate(settings: &Settings) -> Result<Terraform> {
    let name = settings.terraform_binary.clone();
    let found = if name.contains('/') {
        let p = settings.root.join(&name);
        p.is_file().then_some(p)
    } else {
        which::which(&name).ok()
    };
    match found {
        Some(path) => Ok(Terraform { path, name }),
        None => Err(Error::input(format!(
            "`{name}` was not found{}",
            if name.contains('/') { "" } else { " on PATH" }
        ))
        .hint(
            "install Terraform 1.5 or newer (https://developer.hashicorp.com/terraform/install: \
             HashiCorp's apt/dnf repositories, Homebrew `hashicorp/tap/terraform`, or the zip) \
             or OpenTofu (https://opentofu.org/docs/intro/install/) and put it on PATH, or set \
             [terraform] binary in nubes.toml (e.g. \"tofu\"); in GitHub Actions, add the step \
             `uses: hashicorp/setup-terraform` before nubes",
        )),
    }
}

/// How a Terraform run ended.
pub struct Outcome {
    pub status: ExitStatus,
    /// The signal nubes received (and forwarded) while Terraform ran.
    pub interrupted: Option<Caught>,
}

impl Outcome {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(1)
    }
}

/// True when a Ctrl-C on our terminal also reached Terraform (same foreground group).
fn terminal_sent_it() -> bool {
    // SAFETY: plain libc queries without pointers.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// How Terraform's standard streams are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Interactive: stdin, stdout and stderr are nubes's own (`nubes tf`).
    Inherit,
    /// Pipeline: no stdin (never prompt), output streamed live.
    Stream,
    /// Pipeline: no stdin, stdout captured (e.g. `show -json`), stderr streamed.
    Capture,
    /// No stdin, stdout and stderr both captured (a step whose output nubes explains
    /// itself, e.g. `init` of `nubes bootstrap`).
    Silent,
}

fn stderr_as_stdio() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::inherit(),
    }
}

/// Run Terraform in `dir` with `args` and extra `env`, inheriting stdio.
pub async fn run(
    tf: &Terraform,
    dir: &Path,
    args: &[OsString],
    env: &[(&str, String)],
    what: &str,
) -> Result<Outcome> {
    run_with(tf, dir, args, env, what, Io::Inherit)
        .await
        .map(|(o, _)| o)
}

/// Run Terraform; with [`Io::Capture`] its stdout is returned.
pub async fn run_with(
    tf: &Terraform,
    dir: &Path,
    args: &[OsString],
    env: &[(&str, String)],
    what: &str,
    io: Io,
) -> Result<(Outcome, Vec<u8>)> {
    run_captured(tf, dir, args, env, what, io)
        .await
        .map(|(outcome, stdout, _)| (outcome, stdout))
}

/// Run Terraform; returns what was captured of stdout and stderr (empty when not
/// captured, see [`Io`]).
pub async fn run_captured(
    tf: &Terraform,
    dir: &Path,
    args: &[OsString],
    env: &[(&str, String)],
    what: &str,
    io: Io,
) -> Result<(Outcome, Vec<u8>, Vec<u8>)> {
    let mut cmd = tokio::process::Command::new(&tf.path);
    let args = with_color_choice(args, crate::ui::color_on());
    cmd.args(&args).current_dir(dir).stderr(Stdio::inherit());
    // With the live stage view on a terminal, what Terraform shows goes through nubes
    // line by line (above the view, see `ui::eprint_line`) instead of straight to the
    // terminal, where it would tear the redrawn stage lines. Nothing is cut: every line
    // is shown, as it comes.
    let live = crate::ui::live();
    match io {
        Io::Inherit => cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit()),
        // Terraform's progress goes to stderr, so stdout carries only nubes's result
        // (`nubes plan --json | jq` works).
        Io::Stream if live => cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        Io::Stream => cmd.stdin(Stdio::null()).stdout(stderr_as_stdio()),
        Io::Capture if live => cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        Io::Capture => cmd.stdin(Stdio::null()).stdout(Stdio::piped()),
        Io::Silent => cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    };
    for k in WITHHELD_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the new process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::failed(format!("{what}: cannot start {}: {e}", tf.path.display())))?;
    tracing::debug!("started {what} (pid {:?})", child.id());
    // Read the captured streams concurrently with waiting, so a large output cannot
    // fill a pipe and stall Terraform.
    let (reader, err_reader) = match io {
        Io::Stream if live => {
            let out = child.stdout.take().map(forward);
            let err = child.stderr.take().map(forward);
            (out, err)
        }
        Io::Capture if live => (
            child.stdout.take().map(drain),
            child.stderr.take().map(forward),
        ),
        _ => (
            child.stdout.take().map(drain),
            child.stderr.take().map(drain),
        ),
    };
    let mut signals = signals::subscribe();
    let mut seen = signals.borrow().1;
    let mut interrupted = None;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Error::failed(format!("{what}: waiting for Terraform failed: {e}")))?;
                let captured = match reader {
                    Some(r) => r.await.unwrap_or_default(),
                    None => Vec::new(),
                };
                let captured_err = match err_reader {
                    Some(r) => r.await.unwrap_or_default(),
                    None => Vec::new(),
                };
                return Ok((Outcome { status, interrupted }, captured, captured_err));
            }
            changed = signals.changed() => {
                if changed.is_err() { continue; }
                let (caught, count) = *signals.borrow_and_update();
                if count == seen { continue; }
                seen = count;
                let Some(caught) = caught else { continue };
                interrupted.get_or_insert(caught);
                if caught == Caught::Interrupt && terminal_sent_it() {
                    tracing::warn!("interrupted: waiting for Terraform to stop and save its state");
                } else if let Some(pid) = child.id() {
                    tracing::warn!("{}: asking Terraform to stop and save its state", caught.name());
                    // SAFETY: sending a signal to our own child.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
                }
            }
        }
    }
}

/// Terraform's subcommands that take `-no-color` (the others refuse unknown flags).
const TAKES_NO_COLOR: &[&str] = &[
    "init", "validate", "plan", "apply", "destroy", "refresh", "show", "output", "import", "get",
    "fmt", "test",
];

/// `args` with `-no-color` after the subcommand when nubes's colour is off, so that
/// `--color never`, `NO_COLOR`, CI and a non-terminal reach Terraform's output too.
fn with_color_choice(args: &[OsString], color: bool) -> Vec<OsString> {
    let mut out = args.to_vec();
    if color || args.iter().any(|a| a == "-no-color") {
        return out;
    }
    // The subcommand is the first word that is not a global option (`-chdir=…`).
    let sub = args
        .iter()
        .position(|a| !a.to_string_lossy().starts_with('-'));
    if let Some(i) = sub
        && TAKES_NO_COLOR.contains(&args[i].to_string_lossy().as_ref())
    {
        out.insert(i + 1, OsString::from("-no-color"));
    }
    out
}

/// Show each line of `stream` above the live view as it comes; returns nothing (what
/// is shown is not also kept).
fn forward<R>(stream: R) -> tokio::task::JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt as _;
        let mut lines = tokio::io::BufReader::new(stream).split(b'\n');
        while let Ok(Some(line)) = lines.next_segment().await {
            let line = String::from_utf8_lossy(&line);
            crate::ui::eprint_line(line.trim_end_matches('\r'));
        }
        Vec::new()
    })
}

fn drain<R>(mut stream: R) -> tokio::task::JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut buf).await;
        buf
    })
}

/// Identity of the Terraform binary for the fingerprint, without running it (the fast
/// path must start no Terraform): its size and a digest of its first MiB, which holds
/// the ELF headers and Go's build ID note, unique per build. Hashing the whole ~80 MiB
/// binary cost ~150 ms on every fresh runner for no better answer.
pub fn identity(tf: &Terraform) -> String {
    use md5::{Digest, Md5};
    use std::io::Read;
    let Ok(file) = std::fs::File::open(&tf.path) else {
        return tf.path.display().to_string();
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut head = Vec::with_capacity(1 << 20);
    if file.take(1 << 20).read_to_end(&mut head).is_err() {
        return format!("{}|{size}", tf.path.display());
    }
    let digest: String = Md5::digest(&head)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{size}|{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[OsString]) -> Vec<String> {
        v.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn no_color_follows_the_subcommand_when_colour_is_off() {
        let a = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            words(&with_color_choice(&a(&["plan", "-out", "p"]), false)),
            ["plan", "-no-color", "-out", "p"]
        );
        assert_eq!(
            words(&with_color_choice(&a(&["-chdir=x", "apply", "p"]), false)),
            ["-chdir=x", "apply", "-no-color", "p"]
        );
        assert_eq!(words(&with_color_choice(&a(&["plan"]), true)), ["plan"]);
        // `version` refuses unknown flags; a flag already given is not repeated.
        assert_eq!(
            words(&with_color_choice(&a(&["version"]), false)),
            ["version"]
        );
        assert_eq!(
            words(&with_color_choice(&a(&["init", "-no-color"]), false)),
            ["init", "-no-color"]
        );
    }
}
