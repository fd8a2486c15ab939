//! One error type for the whole tool, and the single place that maps errors to the
//! documented exit codes (0 ok, 1 operation failed, 2 bad usage/config/input,
//! 3 lock timeout, 4 changes found).

use std::fmt;
use std::time::Duration;

use crate::state::LockInfo;

/// Exit codes, as documented in README.md ("Exit codes").
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const LOCKED: i32 = 3;
    pub const CHANGES: i32 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad usage, configuration or input: nothing was changed. Exit 2.
    #[error("{message}")]
    Input {
        message: String,
        hint: Option<String>,
    },
    /// An operation failed (storage, Terraform, ...). Exit 1.
    #[error("{message}")]
    Failed {
        message: String,
        hint: Option<String>,
    },
    /// The environment lock could not be taken within `lock_timeout`. Exit 3.
    #[error("timed out after {} waiting for the lock on environment `{env}`{}", humantime::format_duration(*waited), holder_suffix(holder))]
    LockTimeout {
        env: String,
        waited: Duration,
        holder: Option<Box<LockInfo>>,
    },
    /// Not a failure: a documented non-zero exit (4: changes found), already reported.
    #[error("exit {0}")]
    Quiet(i32),
    /// A child process exited unsuccessfully and its own exit code should be passed on
    /// (`nubes tf` mirrors Terraform's exit code).
    #[error("{what} exited with code {code}")]
    ChildExit { what: String, code: i32 },
}

fn holder_suffix(holder: &Option<Box<LockInfo>>) -> String {
    match holder {
        Some(h) => format!(" (held by {})", h.describe()),
        None => {
            " (held by a holder that left no lock info: plain Terraform, or another tool)".into()
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn input(message: impl Into<String>) -> Self {
        Error::Input {
            message: message.into(),
            hint: None,
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed {
            message: message.into(),
            hint: None,
        }
    }

    /// Attach (or replace) the "what to do" hint shown under the message.
    pub fn hint(mut self, text: impl Into<String>) -> Self {
        match &mut self {
            Error::Input { hint, .. } | Error::Failed { hint, .. } => *hint = Some(text.into()),
            _ => {}
        }
        self
    }

    /// Prefix the message with what was being done, keeping kind and hint.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        match &mut self {
            Error::Input { message, .. } | Error::Failed { message, .. } => {
                *message = format!("{what}: {message}");
            }
            _ => {}
        }
        self
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. } => exit::USAGE,
            Error::Failed { .. } => exit::FAILED,
            Error::LockTimeout { .. } => exit::LOCKED,
            Error::ChildExit { code, .. } => *code,
            Error::Quiet(code) => *code,
        }
    }

    pub fn hint_text(&self) -> Option<String> {
        match self {
            Error::Input { hint, .. } | Error::Failed { hint, .. } => hint.clone(),
            Error::LockTimeout { env, .. } => Some(format!(
                "wait for the holder to finish, raise [state] lock_timeout, or if the holder is gone \
                 and its lease cannot expire (an infinite lease taken by plain Terraform), run \
                 `nubes unlock {env}`"
            )),
            Error::ChildExit { .. } | Error::Quiet(_) => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::failed(e.to_string())
    }
}
