//! The names of the metadata nubes keeps on an environment's state blob (and, copied
//! with it, on its snapshots and tombstone): one place, so every reader and writer
//! agrees. Azure metadata names are case-insensitive but case-preserving, and plain
//! Terraform's `azurerm` backend rewrites them with a capital first letter; nubes
//! writes them in this (lower) case and must read them case-insensitively.
//!
//! Values are visible ASCII (HTTP header values). Times are RFC 3339 UTC.

/// Written with every state write (also on snapshots): what the state holds.
pub const SERIAL: &str = "nubesserial";
pub const LINEAGE: &str = "nubeslineage";
pub const RESOURCES: &str = "nubesresources";
/// Base64 MD5 of the state document nubes itself last wrote (also sent as the blob's
/// Content-MD5). When the blob's Content-MD5 differs, something else wrote the state
/// since (plain Terraform's `azurerm` backend copies nubes's metadata unchanged on its
/// writes), so the other `nubes*` values describe an older state. Compared within one
/// listing, so `list` can tell without reading every state.
pub const WRITTEN_MD5: &str = "nubeswrittenmd5";
/// On a snapshot: when the version was replaced by a newer one.
pub const SAVED_AT: &str = "nubessavedat";
/// Who broke the last lock (`nubes unlock`), as lock-info JSON.
pub const LAST_BREAK: &str = "nubeslastbreak";
/// On a tombstone copy (`down`).
pub const TOMBSTONE: &str = "nubestombstone";
pub const DELETED_AT: &str = "nubesdeletedat";
pub const DELETED_BY: &str = "nubesdeletedby";

/// Infrastructure: recorded after a successful apply (the full path of `up`).
pub const FINGERPRINT: &str = "nubesfingerprint";
pub const APPLIED_AT: &str = "nubesappliedat";
/// The commit and branch whose configuration was applied.
pub const COMMIT: &str = "nubescommit";
pub const BRANCH: &str = "nubesbranch";
pub const VERSION: &str = "nubesversion";

/// Activity: every `up` (fast path included), deploy, health check, rollback, promote.
pub const ACTIVITY_AT: &str = "nubesactivityat";
/// What the last activity was (`up`, `deploy`, `keep`, ...).
pub const ACTIVITY: &str = "nubesactivity";
/// When nubes first recorded the environment (expiry's `max_age` counts from here).
pub const CREATED_AT: &str = "nubescreatedat";
/// Who ran the last activity, and the Actions run URL when there was one.
pub const ACTOR: &str = "nubesactor";
pub const RUN_URL: &str = "nubesrunurl";
/// `true` when the last `up` ran from a working tree with uncommitted changes.
pub const DIRTY: &str = "nubesdirty";

/// Application: the last deploy.
pub const APP_COMMIT: &str = "nubesappcommit";
/// `sha256:<hex>` of the artifact shipped.
pub const ARTIFACT: &str = "nubesartifact";
pub const TARGET: &str = "nubestarget";
/// `succeeded` | `failed`.
pub const DEPLOY: &str = "nubesdeploy";
pub const DEPLOY_AT: &str = "nubesdeployat";
/// `healthy` | `unhealthy`.
pub const HEALTH: &str = "nubeshealth";
pub const HEALTH_AT: &str = "nubeshealthat";
/// The environment's `application_url` output, so `list` and the dashboard show it
/// without reading every state.
pub const APP_URL: &str = "nubesappurl";

/// Expiry: `nubes keep <env> --until` (RFC 3339), absent when not pinned.
pub const KEEP_UNTIL: &str = "nubeskeepuntil";

/// Drift: the last verdict of `nubes drift` (`clean` | `drifted` | `pending` |
/// `no-branch` | `failed`) and when it was reached.
pub const DRIFT: &str = "nubesdrift";
pub const DRIFT_AT: &str = "nubesdriftat";

/// Reviewed plans: the digests of the plans made on pull requests into the environment
/// (`require_reviewed_plan`), newest first, as base64 of a JSON list (see
/// `review::record`). Written by the pull request's plan under the lock; read by the
/// merge's `up` before it applies.
pub const REVIEWED: &str = "nubesreviewed";

/// Releases (`releases.rs`): on a kept artifact blob and on each environment's release
/// record in the releases container. A record also carries [`COMMIT`], [`TARGET`],
/// [`HEALTH`] (`healthy` | `unhealthy` | `unchecked` | `failed`).
/// The release: the artifact's digest as lowercase hex (the blob name's last part).
pub const RELEASE: &str = "nubesrelease";
/// `zip` (app-service, functions: the package as shipped) | `site` (a manifest). An
/// image release (`container-apps`) keeps no artifact blob, so it has no kind.
pub const RELEASE_KIND: &str = "nubesreleasekind";
/// The archive's type for a `zip` release (`zip`, `jar`, `war`, `ear`).
pub const RELEASE_ARCHIVE: &str = "nubesreleasearchive";
/// Bytes of the artifact (a site: of all its files).
pub const RELEASE_SIZE: &str = "nubesreleasesize";
/// When the artifact was kept, or the record written.
pub const RELEASE_AT: &str = "nubesreleaseat";
/// The environment that first shipped the artifact, or the record's environment.
pub const RELEASE_ENV: &str = "nubesreleaseenv";
/// What put the release there: `deploy`, `rollback`, `auto-rollback`, `promote from <env>`.
pub const RELEASE_ACTION: &str = "nubesreleaseaction";
/// `true` when the release went live (serves production) with this record.
pub const RELEASE_LIVE: &str = "nubesreleaselive";
/// On a `container-apps` record (no artifact blob is kept: the image stays in its
/// registry): `<login server>/<repository>` the image was pushed to; with the record's
/// [`RELEASE`] digest it names the image `<login server>/<repository>@sha256:<hex>`.
pub const RELEASE_IMAGE: &str = "nubesreleaseimage";
/// On the state blob: `true` when the last `up` rolled back to a previous release.
pub const ROLLED_BACK: &str = "nubesrolledback";

/// Keys written only when absent: a later record never moves them.
pub const SET_ONCE: &[&str] = &[CREATED_AT];

/// Merge `entries` into a blob's metadata the way every store does: an empty value
/// removes the key, a [`SET_ONCE`] key keeps its first value, and values are made
/// visible ASCII (HTTP header values; anything else becomes `?`).
pub fn merge<M>(meta: &mut M, entries: &[(&str, String)])
where
    M: MetaMap,
{
    for (k, v) in entries {
        if v.is_empty() {
            meta.remove_key(k);
            continue;
        }
        if SET_ONCE.contains(k) && meta.has_key(k) {
            continue;
        }
        let clean: String = v
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        meta.put(k, clean);
    }
}

/// The maps stores keep metadata in (`HashMap` for Azure, `BTreeMap` for the local one).
pub trait MetaMap {
    fn has_key(&self, k: &str) -> bool;
    fn remove_key(&mut self, k: &str);
    fn put(&mut self, k: &str, v: String);
}

macro_rules! meta_map {
    ($t:ty) => {
        impl MetaMap for $t {
            fn has_key(&self, k: &str) -> bool {
                self.contains_key(k)
            }
            fn remove_key(&mut self, k: &str) {
                self.remove(k);
            }
            fn put(&mut self, k: &str, v: String) {
                self.insert(k.to_string(), v);
            }
        }
    };
}
meta_map!(std::collections::HashMap<String, String>);
meta_map!(std::collections::BTreeMap<String, String>);

/// Metadata as read from storage, every name in the canonical lower case the constants
/// above (and `lockinfo::LOCK_META_KEY`) use. Every store read goes through this, so a
/// lookup never depends on who wrote a name: Azure compares metadata names
/// case-insensitively but returns them as last written, and Terraform's `azurerm`
/// backend writes them with a capital first letter (`Terraformlockid`, `Nubesserial`).
/// Writing such a map back stores the lower-case names: one canonical case.
pub fn normalise<M: FromIterator<(String, String)>>(
    names: impl IntoIterator<Item = (String, String)>,
) -> M {
    names
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_removes_empty_keeps_first_creation_and_cleans_values() {
        let mut m = std::collections::BTreeMap::new();
        merge(
            &mut m,
            &[
                (CREATED_AT, "2026-01-01T00:00:00Z".into()),
                (ACTOR, "bob\n::error::x é".into()),
                (DIRTY, "true".into()),
            ],
        );
        merge(
            &mut m,
            &[
                (CREATED_AT, "2026-02-02T00:00:00Z".into()),
                (DIRTY, String::new()),
            ],
        );
        assert_eq!(m[CREATED_AT], "2026-01-01T00:00:00Z");
        assert_eq!(m[ACTOR], "bob?::error::x ?");
        assert!(!m.contains_key(DIRTY));
    }

    #[test]
    fn names_read_in_any_case_are_found_with_the_constants() {
        let read: std::collections::BTreeMap<String, String> = super::normalise([
            ("Terraformlockid".to_string(), "x".to_string()),
            ("Nubesserial".to_string(), "3".to_string()),
            ("NUBESAPPLIEDAT".to_string(), "t".to_string()),
        ]);
        assert_eq!(
            read.get(crate::state::lockinfo::LOCK_META_KEY)
                .map(String::as_str),
            Some("x")
        );
        assert_eq!(read.get(super::SERIAL).map(String::as_str), Some("3"));
        assert_eq!(read.get(super::APPLIED_AT).map(String::as_str), Some("t"));
    }
}
