//! Output decisions made in one place: colour, log level, CI detection, and how errors
//! are printed (always redacted).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{ColorChoice, Global};
use crate::error::Error;
use crate::secrets;

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

fn color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && !is_ci()
                && std::io::stderr().is_terminal()
        }
    }
}

/// Logs go to stderr, scrubbed of secrets. `NUBES_LOG` (tracing filter syntax) wins
/// over -v/-q.
pub fn init_logging(global: &Global) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "nubes=warn",
        (false, 0) => "nubes=info",
        (false, 1) => "nubes=debug",
        (false, _) => "debug",
    };
    let filter = std::env::var("NUBES_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| secrets::RedactingWriter)
        .with_ansi(color(global.color))
        .with_target(global.verbose > 1)
        .without_time()
        .try_init();
}

pub fn print_error(err: &Error) {
    let message = secrets::redact(&err.to_string());
    eprintln!("error: {message}");
    if let Some(hint) = err.hint_text() {
        eprintln!("  hint: {}", secrets::redact(&hint));
    }
    if in_github_actions() {
        // One line, as GitHub's annotation syntax requires.
        let line = message
            .replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
        println!("::error title=nubes::{line}");
    }
}
