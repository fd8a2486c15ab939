//! Output decisions made in one place: colour, log level, CI detection, and how errors
//! are printed (always redacted).

use std::io::IsTerminal;

/// `println!` for results on stdout, where a closed pipe (`nubes list | head`) is not
/// an error and must not panic.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` counterpart of [`outln!`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut lock = std::io::stdout().lock();
        let _ = write!(lock, $($arg)*);
        let _ = lock.flush();
    }};
}

use tracing_subscriber::EnvFilter;

use crate::cli::{ColorChoice, Global};
use crate::error::Error;
use crate::secrets;

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A person is there to answer: stdin and stderr on a terminal, and not in CI.
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !is_ci()
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
        .event_format(Plain {
            ansi: color(global.color),
            target: global.verbose > 1,
        })
        .try_init();
}

pub fn print_error(err: &Error) {
    if matches!(err, Error::Quiet(_)) {
        return;
    }
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
        eprintln!("::error title=nubes::{line}");
    }
}

/// Log lines as a person reads them: `nubes: ...`, `warning: ...`, `error: ...`.
struct Plain {
    ansi: bool,
    target: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let (label, colour) = match level {
            tracing::Level::ERROR => ("error", "31"),
            tracing::Level::WARN => ("warning", "33"),
            tracing::Level::INFO => ("nubes", "36"),
            _ => ("debug", "2"),
        };
        if self.ansi {
            write!(writer, "\x1b[{colour}m{label}:\x1b[0m ")?;
        } else {
            write!(writer, "{label}: ")?;
        }
        if self.target {
            write!(writer, "[{}] ", event.metadata().target())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
