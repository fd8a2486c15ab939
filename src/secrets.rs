//! Known secret values (SAS tokens, bearer tokens, client secrets, the gateway
//! password) registered as soon as nubes reads them, and scrubbed from every line nubes
//! prints: log output goes through [`RedactingWriter`], error messages through [`redact`].

use std::io::Write;
use std::sync::{Mutex, OnceLock};

fn registry() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remember a secret value so it is never printed. Short values are ignored (they
/// would mangle ordinary text and are not secrets worth the name).
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 6 {
        return;
    }
    let mut list = registry().lock().unwrap_or_else(|p| p.into_inner());
    if !list.iter().any(|s| s == secret) {
        list.push(secret.to_string());
        // Longest first, so a secret containing another is replaced whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Register a SAS token and its signature (the part that grants access).
pub fn register_sas(sas: &str) {
    register(sas);
    for pair in sas.trim_start_matches('?').split('&') {
        if let Some(sig) = pair.strip_prefix("sig=") {
            register(sig);
        }
    }
}

/// Replace every registered secret in `text` with `***`.
pub fn redact(text: &str) -> String {
    let list = registry().lock().unwrap_or_else(|p| p.into_inner());
    let mut out = text.to_string();
    for s in list.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// stderr, with registered secrets scrubbed from each write (used by the log subscriber).
pub struct RedactingWriter;

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        crate::ui::write_stderr(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_registered_values_and_sas_signatures() {
        register_sas("?sv=2025-01-05&ss=b&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D");
        register("super-secret-token-value");
        let shown =
            redact("url https://x/c?sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D and super-secret-token-value");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(!shown.contains("super-secret"), "{shown}");
        register("abc"); // too short to be worth it
        assert_eq!(redact("abc"), "abc");
    }
}
