//! What `nubes init` wrote last time, so that running it again never loses an edit.
//!
//! `nubes-init.lock` (at the project root, committed with the project) records, for
//! every file init generated, its SHA-256 and its content as generated: the common
//! ancestor of a three-way merge. On the next run each file is one of: missing
//! (create), as init would write it now (unchanged), untouched since init wrote it
//! (update), edited while init's version did not change (keep the edit), edited and
//! changed on both sides (merge with `diffy`, line by line), or a conflict (the merge
//! overlaps, or there is no recorded ancestor). [`decide`] is that table, free of I/O.
//!
//! The content is kept, not only the hash, because a merge needs the ancestor's text;
//! a hash alone could only say "edited" and force a conflict. An entry whose content
//! does not match its hash (edited by hand) is ignored: no ancestor, so a conflict,
//! never a silent overwrite.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's path, relative to the project root.
pub const PATH: &str = "nubes-init.lock";

/// The file's format version.
const SCHEMA: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    schema: u32,
    /// The nubes version that wrote it (informational).
    #[serde(default)]
    nubes: String,
    /// Project-relative path (with `/`) → what init wrote there.
    #[serde(default)]
    files: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    sha256: String,
    content: String,
}

pub fn sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// Parse the manifest's text. `None` when it is not one this nubes reads: every file
    /// then has no ancestor, which can only make init more careful.
    pub fn parse(text: &str) -> Option<Manifest> {
        let m: Manifest = serde_json::from_str(text).ok()?;
        (m.schema == SCHEMA).then_some(m)
    }

    /// What init wrote at `path` last time, if recorded and intact.
    pub fn base(&self, path: &str) -> Option<&str> {
        self.files
            .get(path)
            .filter(|e| sha256(&e.content) == e.sha256)
            .map(|e| e.content.as_str())
    }

    /// Record `content` as what init wrote at `path`.
    pub fn record(&mut self, path: &str, content: &str) {
        self.files.insert(
            path.to_string(),
            Entry {
                sha256: sha256(content),
                content: content.to_string(),
            },
        );
    }

    /// The text to write (stable: sorted paths, pretty JSON, trailing newline).
    pub fn to_text(&mut self) -> String {
        self.schema = SCHEMA;
        self.nubes = env!("CARGO_PKG_VERSION").to_string();
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// What to do with one generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not on disk: write it.
    Create,
    /// On disk exactly as init would write it.
    Unchanged,
    /// On disk as init wrote it last time (not edited): write the new version.
    Update,
    /// Edited, and init's version has not changed since: leave the edit alone.
    Keep,
    /// Edited, and init's version changed elsewhere: the merged text.
    Merge(String),
    /// The edit and init's change overlap, or init never recorded this file.
    Conflict,
}

/// The three-way decision for one file: `base` what init wrote last time (if recorded),
/// `disk` what is there now (if anything), `new` what init would write now.
pub fn decide(base: Option<&str>, disk: Option<&str>, new: &str) -> Action {
    let Some(disk) = disk else {
        return Action::Create;
    };
    if disk == new {
        return Action::Unchanged;
    }
    let Some(base) = base else {
        return Action::Conflict;
    };
    if disk == base {
        return Action::Update;
    }
    if new == base {
        return Action::Keep;
    }
    match diffy::merge(base, disk, new) {
        Ok(merged) => Action::Merge(merged),
        Err(_) => Action::Conflict,
    }
}

/// A unified diff from `from` to `to`, at most `max_lines` lines (then a note).
pub fn diff(from_name: &str, from: &str, to_name: &str, to: &str, max_lines: usize) -> String {
    let patch = diffy::create_patch(from, to).to_string();
    let mut lines = patch.lines();
    // diffy names both sides "original" and "modified": name them after the files.
    let mut out = String::new();
    for l in lines.by_ref().take(2) {
        if l.starts_with("--- ") {
            out += &format!("--- {from_name}\n");
        } else if l.starts_with("+++ ") {
            out += &format!("+++ {to_name}\n");
        } else {
            out += l;
            out.push('\n');
        }
    }
    let rest: Vec<&str> = lines.collect();
    for l in rest.iter().take(max_lines) {
        out += l;
        out.push('\n');
    }
    if rest.len() > max_lines {
        out += &format!("... ({} more lines)\n", rest.len() - max_lines);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "a\nb\nc\nd\ne\nf\ng\n";

    #[test]
    fn each_case_of_the_table() {
        assert_eq!(decide(Some(BASE), None, BASE), Action::Create);
        assert_eq!(decide(None, Some(BASE), BASE), Action::Unchanged);
        assert_eq!(decide(None, Some("mine\n"), BASE), Action::Conflict);
        let new = "a\nB\nc\nd\ne\nf\ng\n";
        assert_eq!(decide(Some(BASE), Some(BASE), new), Action::Update);
        let mine = "a\nb\nc\nd\ne\nf\nG\n";
        assert_eq!(decide(Some(BASE), Some(mine), BASE), Action::Keep);
        assert_eq!(
            decide(Some(BASE), Some(mine), new),
            Action::Merge("a\nB\nc\nd\ne\nf\nG\n".into())
        );
        let overlapping = "a\nX\nc\nd\ne\nf\ng\n";
        assert_eq!(decide(Some(BASE), Some(overlapping), new), Action::Conflict);
    }

    #[test]
    fn a_tampered_entry_is_no_ancestor() {
        let mut m = Manifest::default();
        m.record("terraform/main.tf", BASE);
        let text = m.to_text();
        let back = Manifest::parse(&text).unwrap();
        assert_eq!(back.base("terraform/main.tf"), Some(BASE));
        let tampered = text.replace("a\\nb", "a\\nz");
        assert_ne!(tampered, text);
        let back = Manifest::parse(&tampered).unwrap();
        assert_eq!(back.base("terraform/main.tf"), None);
        assert!(Manifest::parse("{\"schema\": 99}").is_none());
        assert!(Manifest::parse("not json").is_none());
    }

    #[test]
    fn the_diff_names_the_files_and_is_bounded() {
        let d = diff(
            "main.tf",
            BASE,
            "main.tf.nubes-new",
            "a\nB\nc\nd\ne\nf\ng\n",
            100,
        );
        assert!(d.starts_with("--- main.tf\n+++ main.tf.nubes-new\n"), "{d}");
        assert!(d.contains("-b\n+B\n"), "{d}");
        let d = diff("x", BASE, "y", "1\n2\n3\n4\n5\n6\n7\n", 3);
        assert!(d.ends_with("more lines)\n"), "{d}");
    }
}
