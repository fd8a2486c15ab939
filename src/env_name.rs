//! Environment names: `env-<name>` branches map to environment `<name>`.
//!
//! The name must already be canonical (`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`, at most 20
//! characters). Nothing is ever normalised silently: `env-A_b` and `env-a-b` must not
//! share one environment, or tearing one down would destroy the other.

use std::fmt;

use crate::error::Error;

pub const MAX_LEN: usize = 20;
pub const DEFAULT_PREFIX: &str = "env-";

/// A validated, canonical environment name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvName(String);

impl EnvName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse a bare environment name (what `nubes up <env>` takes).
    pub fn parse(name: &str, prefix: &str) -> Result<Self, Error> {
        check_name(name).map_err(|rule| {
            let shown = quoted(name);
            let mut err = Error::input(format!("{shown} is not a valid environment name: {rule}"));
            err = match canonical_suggestion(name) {
                Some(c) => err.hint(format!(
                    "the canonical name would be `{c}` (branch `{prefix}{c}`); names are never \
                     converted automatically, so that two branches can never share one environment"
                )),
                None => err.hint(
                    "use lowercase letters, digits and single hyphens, starting with a letter, e.g. `alice` or `feature-42`",
                ),
            };
            err
        })?;
        Ok(EnvName(name.to_string()))
    }

    /// Parse what a command accepts as an environment: `refs/heads/env-x`, `env-x`, or
    /// a bare `x`.
    pub fn from_arg(arg: &str, prefix: &str) -> Result<Self, Error> {
        if arg.starts_with("refs/") {
            return Self::from_branch(arg, prefix);
        }
        if !prefix.is_empty() && arg.starts_with(prefix) {
            return Self::from_branch(arg, prefix);
        }
        Self::parse(arg, prefix)
    }

    /// Parse a branch name or full ref; the branch must start with the prefix.
    pub fn from_branch(branch_or_ref: &str, prefix: &str) -> Result<Self, Error> {
        if let Some(rest) = branch_or_ref.strip_prefix("refs/")
            && !rest.starts_with("heads/")
        {
            return Err(Error::input(format!(
                "{} is not a branch: only branches (refs/heads/{prefix}<name>) get environments",
                quoted(branch_or_ref)
            )));
        }
        let branch = branch_or_ref
            .strip_prefix("refs/heads/")
            .unwrap_or(branch_or_ref);
        Self::from_short_branch(branch, prefix)
    }

    /// Parse a short branch name exactly as given, never stripping `refs/heads/`: what
    /// GitHub's payloads carry in `delete`'s `ref` and `pull_request.base.ref`, where a
    /// branch literally named `refs/heads/env-alice` must not become environment `alice`.
    pub fn from_short_branch(branch: &str, prefix: &str) -> Result<Self, Error> {
        match branch.strip_prefix(prefix) {
            Some(name) if !name.is_empty() => Self::parse(name, prefix)
                .map_err(|e| e.context(format!("branch {}", quoted(branch)))),
            Some(_) => Err(Error::input(format!(
                "branch {} has nothing after the `{prefix}` prefix",
                quoted(branch)
            ))
            .hint(format!(
                "name the branch `{prefix}<name>`, e.g. `{prefix}alice`"
            ))),
            None => Err(Error::input(format!(
                "branch {} does not start with `{prefix}`, so it has no environment",
                quoted(branch)
            ))
            .hint(format!(
                "environments come from branches named `{prefix}<name>`"
            ))),
        }
    }

    /// The branch that owns this environment.
    pub fn branch(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.0)
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which rule a name breaks, if any.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    // The first offending character, in order, so the message points at it.
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(if c.is_ascii_uppercase() {
            format!("it contains the uppercase letter `{c}`; only lowercase is allowed")
        } else if !c.is_ascii() {
            // The code point, not the glyph: a look-alike glyph would hide the problem.
            format!(
                "it contains the non-ASCII character U+{:04X}; only a-z, 0-9 and `-` are allowed",
                c as u32
            )
        } else {
            format!(
                "it contains {}; only a-z, 0-9 and `-` are allowed",
                describe_char(c)
            )
        });
    }
    let chars = name.chars().count();
    if chars > MAX_LEN {
        return Err(format!(
            "it is {chars} characters long, the limit is {MAX_LEN} (Azure resource names are built from it)"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("it must start with a lowercase letter".into());
    }
    if name.ends_with('-') {
        return Err("it must not end with `-`".into());
    }
    if name.contains("--") {
        return Err("it must not contain `--` (hyphens separate words, one at a time)".into());
    }
    Ok(())
}

fn describe_char(c: char) -> String {
    match c {
        '_' => "`_`".into(),
        '/' => "`/`".into(),
        '.' => "`.`".into(),
        ' ' => "a space".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

/// What the name would look like if made canonical, for the hint only (never applied).
fn canonical_suggestion(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(MAX_LEN).collect();
    let out = out.trim_end_matches('-').to_string();
    let out = out.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    if out.is_empty() || out == name || check_name(out).is_err() {
        None
    } else {
        Some(out.to_string())
    }
}

/// How many characters of an untrusted string [`printable`] shows.
const MAX_SHOWN: usize = 64;

/// An untrusted string (a branch, a payload field, a config value) made safe to show
/// in one line of a message, at most 64 characters. See [`escaped`] for the rule.
pub fn printable(s: &str) -> String {
    escaped(s, MAX_SHOWN)
}

/// [`printable`] between backticks, or `(empty)` for an empty string, so that an empty
/// value never reads as a pair of backticks and a value literally named `(empty)` still
/// reads differently (`` `(empty)` ``).
pub fn quoted(s: &str) -> String {
    if s.is_empty() {
        "(empty)".into()
    } else {
        format!("`{}`", printable(s))
    }
}

/// Text another party wrote (a branch name, a lock holder's name, a run URL) made safe
/// to show, the one rule every message uses: printable ASCII stays as it is (quotes
/// too); a backslash is doubled; `\n`, `\r`, `\t` and `\0` are written so; every other
/// character, control or not ASCII, is written as `\u{…}`. A newline could forge a log
/// line or a GitHub workflow command, a bidi override could disguise the text, and a
/// look-alike (Cyrillic `е`, U+2010, U+2011, U+FF0D) would make `еnv-alice` read as the
/// very prefix a message says it lacks. At most `max` characters (and about `2 * max`
/// bytes) are shown; longer text ends with `… (N characters)`. An empty string reads
/// `(empty)`.
pub fn escaped(s: &str, max: usize) -> String {
    if s.is_empty() {
        return "(empty)".into();
    }
    // Escapes make a character up to 10 bytes long: the output is also capped (at
    // twice `max` bytes), so that a message quoting a name twice stays short.
    let mut out = String::with_capacity(s.len().min(max));
    let mut shown = 0;
    for c in s.chars().take(max) {
        if out.len() >= 2 * max {
            break;
        }
        shown += 1;
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    if s.chars().nth(shown).is_some() {
        out.push_str(&format!("… ({} characters)", s.chars().count()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        EnvName::from_arg(s, DEFAULT_PREFIX)
            .map(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match EnvName::from_arg(s, DEFAULT_PREFIX) {
            Ok(e) => panic!("{s:?} accepted as {e}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2);
                format!("{e} | {}", e.hint_text().unwrap_or_default())
            }
        }
    }

    #[test]
    fn accepts_the_three_spellings() {
        assert_eq!(ok("refs/heads/env-alice"), "alice");
        assert_eq!(ok("env-alice"), "alice");
        assert_eq!(ok("alice"), "alice");
        assert_eq!(ok("feature-42-x"), "feature-42-x");
        assert_eq!(ok("a2345678901234567890"), "a2345678901234567890");
    }

    #[test]
    fn rejects_non_canonical_names_with_the_rule_and_the_canonical_branch() {
        let m = err("env-Alice");
        assert!(m.contains("uppercase"), "{m}");
        assert!(m.contains("`env-alice`"), "{m}");
        let m = err("env-a_b");
        assert!(m.contains("`_`") && m.contains("`env-a-b`"), "{m}");
        assert!(err("env-").contains("nothing after"));
        assert!(err("a23456789012345678901").contains("limit is 20"));
        assert!(err("9lives").contains("start with a lowercase letter"));
        assert!(err("a--b").contains("--"));
        assert!(err("a-").contains("end with"));
        assert!(err("refs/tags/env-a").contains("not a branch"));
        assert!(err("env-a;rm -rf /").contains("`;`"));
        assert!(err("env-a/b").contains("`/`"));
        assert!(err("env-..").contains("`.`"));
        assert!(err("env-a\nb").contains("control character"));
        assert!(err("env-a\0b").contains("control character"));
        // Cyrillic а (U+0430) looks like a Latin a.
        assert!(err("env-\u{430}lice").contains("U+0430"));
    }

    #[test]
    fn short_branch_names_are_never_stripped_of_refs_heads() {
        let e = EnvName::from_short_branch("refs/heads/env-alice", DEFAULT_PREFIX).unwrap_err();
        assert!(e.to_string().contains("does not start with `env-`"), "{e}");
        assert_eq!(
            EnvName::from_short_branch("env-alice", DEFAULT_PREFIX)
                .unwrap()
                .as_str(),
            "alice"
        );
        // A full ref loses exactly one `refs/heads/`.
        assert!(EnvName::from_branch("refs/heads/refs/heads/env-alice", DEFAULT_PREFIX).is_err());
    }

    #[test]
    fn one_escaping_rule_for_every_untrusted_string() {
        // Look-alikes of the prefix: Cyrillic е, hyphen, non-breaking hyphen, fullwidth.
        for (raw, shown) in [
            ("\u{435}nv-alice", "\\u{435}nv-alice"),
            ("env\u{2010}alice", "env\\u{2010}alice"),
            ("env\u{2011}alice", "env\\u{2011}alice"),
            ("env\u{ff0d}alice", "env\\u{ff0d}alice"),
            ("a\nb\r\t\0", "a\\nb\\r\\t\\0"),
            ("\u{202e}x\u{1b}[2J", "\\u{202e}x\\u{1b}[2J"),
            ("back\\slash \"quoted\" 'x'", "back\\\\slash \"quoted\" 'x'"),
        ] {
            assert_eq!(printable(raw), shown);
            assert_eq!(escaped(raw, 200), shown);
            assert_eq!(quoted(raw), format!("`{shown}`"));
        }
        assert_eq!(printable(""), "(empty)");
        assert_eq!(quoted(""), "(empty)");
        assert_eq!(quoted("(empty)"), "`(empty)`");
        assert_eq!(escaped("abcdef", 3), "abc… (6 characters)");
        // Escapes count towards the length shown.
        let long = printable(&"\u{430}".repeat(100));
        assert!(
            long.len() < 160 && long.ends_with("… (100 characters)"),
            "{long}"
        );
        let e = EnvName::from_arg("", DEFAULT_PREFIX).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("(empty) is not a valid environment name"),
            "{e}"
        );
        let e = EnvName::from_arg("env-\u{430}lice", DEFAULT_PREFIX).unwrap_err();
        assert!(e.to_string().is_ascii(), "{e}");
    }

    #[test]
    fn huge_names_are_shown_shortened() {
        let big = "x".repeat(10 * 1024 * 1024);
        let m = err(&big);
        assert!(m.len() < 1000, "message is {} bytes", m.len());
    }
}
