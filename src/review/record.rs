//! The reviewed plans of an environment, kept in its state blob's metadata
//! ([`crate::state::meta::REVIEWED`]): one entry per pull-request head commit planned
//! (newest first, at most [`KEPT`]), with the plan's digest, the state serial it was
//! planned against and its counts, so a refusal can say what differs.
//!
//! Metadata, not a blob of its own: it lives and dies with the environment's state (a
//! `down` drops it with the state), is written in the same call that releases the lock,
//! and `nubes state` and `list` never mistake it for a state version. Azure allows 8 KiB
//! of metadata per blob; [`KEPT`] entries take about 1.6 KiB.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Entries kept: one per recently planned pull-request head.
pub const KEPT: usize = 6;

/// One reviewed plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewed {
    /// The pull request's head commit that was planned.
    pub commit: String,
    /// [`super::digest::of_show_json`] of that plan.
    pub digest: String,
    /// The pull request's number, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    /// The serial of the state the plan was made against (0: no state yet).
    pub serial: u64,
    /// add, change, destroy, replace.
    pub counts: [usize; 4],
    /// When (RFC 3339).
    pub at: String,
}

impl Reviewed {
    pub fn counts_text(&self) -> String {
        let [a, c, d, r] = self.counts;
        format!("{a} to add, {c} to change, {d} to destroy, {r} to replace")
    }
}

/// The entries in a metadata value (an unreadable value reads as none: it is only ever
/// written by nubes, and a wrong one must not let anything through, which none cannot).
pub fn parse(value: Option<&str>) -> Vec<Reviewed> {
    let Some(value) = value else {
        return Vec::new();
    };
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The metadata value with `entry` added in front (replacing one for the same commit).
pub fn add(existing: Vec<Reviewed>, entry: Reviewed) -> String {
    let mut list = vec![entry.clone()];
    list.extend(existing.into_iter().filter(|r| r.commit != entry.commit));
    list.truncate(KEPT);
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&list).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(commit: &str, digest: &str) -> Reviewed {
        Reviewed {
            commit: commit.into(),
            digest: digest.into(),
            pr: Some(7),
            serial: 3,
            counts: [1, 0, 0, 0],
            at: "2026-11-30T00:00:00Z".into(),
        }
    }

    #[test]
    fn entries_are_newest_first_one_per_commit_and_bounded() {
        let mut value = add(Vec::new(), entry("a", "1"));
        value = add(parse(Some(&value)), entry("b", "2"));
        value = add(parse(Some(&value)), entry("a", "3"));
        let list = parse(Some(&value));
        assert_eq!(
            list.iter()
                .map(|r| (r.commit.as_str(), r.digest.as_str()))
                .collect::<Vec<_>>(),
            [("a", "3"), ("b", "2")]
        );
        for i in 0..20 {
            value = add(
                parse(Some(&value)),
                entry(&format!("{i:040}"), &"f".repeat(64)),
            );
        }
        assert_eq!(parse(Some(&value)).len(), KEPT);
        assert!(value.len() < 2048, "{}", value.len());
        assert!(parse(Some("not base64!")).is_empty());
        assert!(parse(None).is_empty());
    }
}
