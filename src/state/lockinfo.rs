//! Lock information in the exact JSON shape Terraform uses (`statemgr.LockInfo`), stored
//! base64-encoded in the blob metadata key `terraformlockid` the way Terraform's own
//! `azurerm` backend writes it, so each can see who holds the other's lock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Blob metadata key for the lock info, as in Terraform's azurerm backend.
pub const LOCK_META_KEY: &str = "terraformlockid";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LockInfo {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Operation", default)]
    pub operation: String,
    #[serde(rename = "Info", default)]
    pub info: String,
    #[serde(rename = "Who", default)]
    pub who: String,
    #[serde(rename = "Version", default)]
    pub version: String,
    #[serde(rename = "Created", default)]
    pub created: String,
    #[serde(rename = "Path", default)]
    pub path: String,
}

impl LockInfo {
    /// A new lock for this process: a fresh UUID (also used as the proposed lease ID).
    pub fn new(operation: impl Into<String>, path: impl Into<String>) -> Self {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.into(),
            info: run_info(),
            who: who(),
            version: format!("nubes {}", env!("CARGO_PKG_VERSION")),
            created: now_rfc3339(),
            path: path.into(),
        }
    }

    pub fn to_metadata_value(&self) -> String {
        B64.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_metadata_value(value: &str) -> Option<Self> {
        let bytes = B64.decode(value.trim()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// One line for humans: who, doing what, since when, and where.
    pub fn describe(&self) -> String {
        // Lock info is written by whoever took the lock (plain Terraform too): shown escaped.
        let shown = |s: &str| crate::env_name::escaped(s, 200);
        let mut s = if self.who.is_empty() {
            "an unknown holder".to_string()
        } else {
            shown(&self.who)
        };
        if !self.operation.is_empty() {
            s.push_str(&format!(", {}", shown(&self.operation)));
        }
        if !self.created.is_empty() {
            s.push_str(&format!(", since {}", shown(&self.created)));
            if let Some(age) = self.age() {
                s.push_str(&format!(" ({} ago)", humantime::format_duration(age)));
            }
        }
        if !self.info.is_empty() {
            s.push_str(&format!(", {}", shown(&self.info)));
        }
        if !self.id.is_empty() {
            s.push_str(&format!(", lock ID {}", shown(&self.id)));
        }
        s
    }

    pub fn age(&self) -> Option<std::time::Duration> {
        let created = OffsetDateTime::parse(&self.created, &Rfc3339).ok()?;
        let secs = (OffsetDateTime::now_utc() - created).whole_seconds();
        u64::try_from(secs).ok().map(std::time::Duration::from_secs)
    }
}

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `user@host`, exactly as Terraform's `statemgr.NewLockInfo` writes `Who`: the OS user
/// name (Go's `user.Current()`: the password database entry of the real user ID, `$USER`
/// only when there is none) and the host name, so a lock reads the same whoever took it.
/// In Actions that is the runner's account and machine; the run URL is in `Info`.
pub fn who() -> String {
    let user = os_user()
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_default();
    format!("{user}@{}", hostname())
}

/// The password database name of the process's real user ID.
fn os_user() -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero IDs).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `Info`: the run URL in GitHub Actions (where `Who` names only the runner), else the
/// local process.
pub fn run_info() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        (Some(server), Some(repo), Some(run)) => format!("{server}/{repo}/actions/runs/{run}"),
        _ => format!("pid {}", std::process::id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_terraform_format() {
        // What Terraform's azurerm backend writes (statemgr.LockInfo.Marshal()).
        let tf = r#"{"ID":"9f0c4d1e-8f2f-4ad4-a3f3-0a5d4d6c3e1b","Operation":"OperationTypeApply","Info":"","Who":"bob@laptop","Version":"1.15.5","Created":"2026-11-01T10:00:00.123456Z","Path":"tfstate/alice.terraform.tfstate"}"#;
        let value = B64.encode(tf);
        let info = LockInfo::from_metadata_value(&value).expect("decodes");
        assert_eq!(info.who, "bob@laptop");
        assert_eq!(info.operation, "OperationTypeApply");
        let again = LockInfo::from_metadata_value(&info.to_metadata_value()).expect("decodes");
        assert_eq!(again, info);
        assert!(
            info.describe()
                .contains("bob@laptop, OperationTypeApply, since 2026-11-01T10:00:00.123456Z")
        );
    }

    #[test]
    fn who_is_the_os_user_at_the_host_whatever_user_says() {
        // The password database, not `$USER` (unset in many containers and runners):
        // the same name `id -un` prints.
        let id = std::process::Command::new("id")
            .arg("-un")
            .output()
            .expect("id -un");
        let user = String::from_utf8_lossy(&id.stdout).trim().to_string();
        assert!(!user.is_empty());
        assert_eq!(who(), format!("{user}@{}", hostname()));
    }

    #[test]
    fn garbage_metadata_is_none_not_a_panic() {
        assert!(LockInfo::from_metadata_value("%%%").is_none());
        assert!(LockInfo::from_metadata_value(&B64.encode("[1,2")).is_none());
    }
}
