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

/// Whether output is coloured, decided once by [`init_logging`] (off until then).
static COLOR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Colour is on: `--color always`, or `auto` on a terminal outside CI without `NO_COLOR`.
/// When it is off, Terraform gets `-no-color` too (`terraform::run_captured`).
pub fn color_on() -> bool {
    COLOR.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether progress is shown live (updating lines), decided once by [`init_logging`].
static LIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Live progress (one updating line, stage views): stderr on a terminal, not CI, not
/// GitHub Actions, not `-q`. Otherwise progress is plain lines, written when something
/// happens, so CI logs stay short.
pub fn live() -> bool {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// The one live view on stderr: every spinner and stage line is a bar in it, and
/// everything else written to stderr while it shows (logs, Terraform's and the build's
/// output) goes above it through [`eprint_line`] / [`write_stderr`], so redrawn lines
/// never tear. Drawn only when [`live`]; otherwise hidden (and never used).
fn view() -> &'static indicatif::MultiProgress {
    static VIEW: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    VIEW.get_or_init(|| {
        if live() {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())
        } else {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        }
    })
}

/// Write `bytes` to stderr above the live view (or plainly when there is none). Used by
/// the log writer, so a log line never lands in the middle of a redrawn bar.
pub fn write_stderr(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if live() {
        view().suspend(|| std::io::stderr().write_all(bytes))
    } else {
        std::io::stderr().write_all(bytes)
    }
}

/// One line of a child's output (Terraform, the build) on stderr, secrets redacted,
/// above the live view.
pub fn eprint_line(line: &str) {
    let mut text = crate::secrets::redact(line);
    text.push('\n');
    let _ = write_stderr(text.as_bytes());
}

/// A spinner line in the live view with `message` and the elapsed time, ticking every
/// second; `None` when progress is not [`live`].
pub fn spinner(message: String) -> Option<indicatif::ProgressBar> {
    if !live() {
        return None;
    }
    let bar = live_spinner(
        "{spinner} {msg} ({elapsed})",
        std::time::Duration::from_secs(1),
    );
    bar.set_message(message);
    Some(bar)
}

/// A ticking spinner in the live view, drawn with `template`.
fn live_spinner(template: &str, tick: std::time::Duration) -> indicatif::ProgressBar {
    let bar = view().add(indicatif::ProgressBar::new_spinner());
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(tick);
    bar
}

/// A stage of a command (lock, render, each Terraform command, build, deploy + health
/// check). While it runs, the live view shows it with a spinner and its elapsed time;
/// when it ends, the line stays with a tick (or a cross) and how long it took, and the
/// time is recorded for the timing table and `--json`. In CI and off a terminal it
/// shows nothing itself: the plain log lines around it say what happens.
///
/// A stage dropped without [`Stage::done`] (an error returned early with `?`) is
/// recorded and shown as failed.
pub struct Stage {
    name: String,
    started: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
    ended: bool,
}

/// Start the stage `name` (see [`Stage`]).
pub fn stage(name: &str) -> Stage {
    let bar = live().then(|| {
        let bar = live_spinner(
            "{spinner} {prefix} {elapsed}",
            std::time::Duration::from_millis(200),
        );
        bar.set_prefix(format!("{name:<STAGE_WIDTH$}"));
        bar
    });
    Stage {
        name: name.to_string(),
        started: std::time::Instant::now(),
        bar,
        ended: false,
    }
}

/// Stage names are padded to this width in the live view, so the times line up.
const STAGE_WIDTH: usize = 22;

impl Stage {
    /// The stage succeeded.
    pub fn done(mut self) {
        self.end(true);
    }

    /// The stage ended; `ok` says whether it succeeded.
    pub fn end_with(mut self, ok: bool) {
        self.end(ok);
    }

    fn end(&mut self, ok: bool) {
        if self.ended {
            return;
        }
        self.ended = true;
        let took = self.started.elapsed();
        record_stage(&self.name, took);
        if let Some(bar) = self.bar.take() {
            let mark = match (ok, color_on()) {
                (true, true) => "\x1b[32m✓\x1b[0m",
                (true, false) => "✓",
                (false, true) => "\x1b[31m✗\x1b[0m",
                (false, false) => "✗",
            };
            // The finished line leaves the view and is printed above it: the view then
            // holds only running stages, and is empty between them, so a prompt or a
            // plain line written then is never redrawn over.
            // Removed first: its line is still counted as drawn, so the write below
            // clears it; finishing it after that draws nowhere and stops its ticker.
            view().remove(&bar);
            bar.finish_and_clear();
            let line = format!(
                "{mark} {:<STAGE_WIDTH$} {:.1}s\n",
                self.name,
                took.as_secs_f64()
            );
            let _ = write_stderr(line.as_bytes());
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.end(false);
    }
}

/// How long each stage of this command took (one command per process), in order.
static TIMINGS: std::sync::Mutex<Vec<(String, std::time::Duration)>> =
    std::sync::Mutex::new(Vec::new());

/// Record that `stage` took `took` (lock wait, render, each Terraform command, build,
/// deploy, health check), for the timing table and `up --json`.
pub fn record_stage(stage: &str, took: std::time::Duration) {
    if let Ok(mut t) = TIMINGS.lock() {
        t.push((stage.to_string(), took));
    }
}

/// The stages recorded so far, in order.
pub fn stages() -> Vec<(String, std::time::Duration)> {
    TIMINGS.lock().map(|t| t.clone()).unwrap_or_default()
}

/// The timing table printed at the end of `up`: one line per stage, then the total
/// (stages that ran at once, infrastructure and build, overlap, so the total is the
/// command's own elapsed time, not the sum).
pub fn timing_table(
    stages: &[(String, std::time::Duration)],
    total: std::time::Duration,
) -> String {
    let secs = |d: std::time::Duration| format!("{:.1}s", d.as_secs_f64());
    let width = stages
        .iter()
        .map(|(s, _)| s.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = String::new();
    for (stage, took) in stages {
        out += &format!("  {stage:<width$}  {:>8}\n", secs(*took));
    }
    out += &format!("  {:<width$}  {:>8}\n", "total", secs(total));
    out
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
    let ansi = color(global.color);
    COLOR.store(ansi, std::sync::atomic::Ordering::Relaxed);
    LIVE.store(
        !global.quiet && std::io::stderr().is_terminal() && !is_ci() && !in_github_actions(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| secrets::RedactingWriter)
        .event_format(Plain {
            ansi,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_timing_table_aligns_stages_and_ends_with_the_total() {
        let t = timing_table(
            &[
                ("render".into(), Duration::from_millis(120)),
                ("terraform apply".into(), Duration::from_millis(4_250)),
            ],
            Duration::from_secs(5),
        );
        assert_eq!(
            t,
            "  render               0.1s\n  terraform apply      4.2s\n  total                5.0s\n"
        );
    }
}
