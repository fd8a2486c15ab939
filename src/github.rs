//! GitHub Actions integration: log groups, annotations, masks, step outputs (in the
//! multi-line-safe delimiter form) and the job summary. Workflow commands go to
//! stderr (the runner reads both streams), next to Terraform's streamed output, so
//! stdout carries only results (`nubes plan --json`). Outside Actions every call is
//! a no-op except plain printing, so the pipeline code does not branch on it.

use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The job summary is cut well under GitHub's 1 MiB limit per step.
const SUMMARY_LIMIT: usize = 512 * 1024;

#[derive(Debug, Clone, Default)]
pub struct Github {
    pub active: bool,
    output: Option<PathBuf>,
    summary: Option<PathBuf>,
}

impl Github {
    pub fn from_env() -> Github {
        let path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Github {
            active: crate::ui::in_github_actions(),
            output: path("GITHUB_OUTPUT"),
            summary: path("GITHUB_STEP_SUMMARY"),
        }
    }

    /// Start a collapsible log group (Terraform's live output goes inside one).
    pub fn group(&self, title: &str) {
        if self.active {
            eprintln!("::group::{}", escape_data(title));
        }
    }

    pub fn endgroup(&self) {
        if self.active {
            eprintln!("::endgroup::");
        }
    }

    /// A warning annotation (shown on the run's page), outside Actions a no-op: the
    /// caller prints its own line.
    pub fn warning(&self, message: &str) {
        if self.active {
            eprintln!(
                "::warning::{}",
                escape_data(&crate::secrets::redact(message))
            );
        }
    }

    /// Hide a value from the job log. Must run before anything could print it.
    pub fn mask(&self, secret: &str) {
        crate::secrets::register(secret);
        if self.active && !secret.trim().is_empty() {
            for line in secret.lines().filter(|l| !l.trim().is_empty()) {
                eprintln!("::add-mask::{}", escape_data(line));
            }
        }
    }

    /// Append `name=value` to `$GITHUB_OUTPUT`, with a random delimiter so any value
    /// (multi-line, or containing `=`) is safe.
    pub fn set_output(&self, name: &str, value: &str) -> Result<()> {
        let Some(path) = &self.output else {
            return Ok(());
        };
        let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4());
        let text = format!("{name}<<{delimiter}\n{value}\n{delimiter}\n");
        append(path, &text).map_err(|e| {
            Error::failed(format!(
                "cannot write the step output {name} to $GITHUB_OUTPUT: {e}"
            ))
        })
    }

    /// Append Markdown to the job summary, truncated with a note if too long.
    pub fn summary(&self, markdown: &str) -> Result<()> {
        let Some(path) = &self.summary else {
            return Ok(());
        };
        let text = truncate_summary(markdown);
        append(path, &text).map_err(|e| Error::failed(format!("cannot write the job summary: {e}")))
    }
}

fn append(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(crate::secrets::redact(text).as_bytes())
}

fn truncate_summary(markdown: &str) -> String {
    if markdown.len() <= SUMMARY_LIMIT {
        return format!("{markdown}\n");
    }
    let mut cut = SUMMARY_LIMIT;
    while !markdown.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = markdown[..cut].rfind('\n').unwrap_or(cut);
    format!(
        "{}\n\n> **Truncated**: this summary was {} KiB, more than GitHub shows; see the job log for the rest.\n",
        &markdown[..cut],
        markdown.len() / 1024
    )
}

/// Workflow-command data escaping (`%`, CR, LF).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_use_the_delimiter_form_and_summaries_are_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let gh = Github {
            active: true,
            output: Some(dir.path().join("out")),
            summary: Some(dir.path().join("sum")),
        };
        gh.set_output("application_url", "https://x\nline2=y")
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("out")).unwrap();
        let mut lines = text.lines();
        let first = lines.next().unwrap();
        let delim = first.strip_prefix("application_url<<").unwrap();
        assert_eq!(lines.next(), Some("https://x"));
        assert_eq!(lines.next(), Some("line2=y"));
        assert_eq!(lines.next(), Some(delim));
        gh.summary(&"| a | b |\n".repeat(100_000)).unwrap();
        let sum = std::fs::read_to_string(dir.path().join("sum")).unwrap();
        assert!(sum.len() < 600 * 1024 && sum.contains("Truncated"));
    }
}
