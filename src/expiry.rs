//! When an environment expires, judged from what its metadata records: the last
//! activity (every `up`, fast path included, deploy and health check; older records
//! fall back to the last apply, and a state only plain Terraform ever wrote to the blob's
//! Last-Modified), its creation, a `nubes keep` pin, and the `[expiry]` rules.
//! Pure functions: `list`, `status`, `reap` and the dashboard all judge the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock;
use crate::state::meta;

/// `[expiry]` (or an environment's override): `None` means that rule does not apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// Expire after this long without activity.
    pub idle: Option<Duration>,
    /// Expire this long after creation, however active.
    pub max_age: Option<Duration>,
}

/// Where the last-activity time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `nubesactivityat`: recorded by every `up`, deploy, health check.
    Activity,
    /// `nubesappliedat` only: recorded by a nubes that predates activity records.
    Applied,
    /// The blob's Last-Modified: no nubes record at all (plain Terraform's state).
    Modified,
    /// The blob's Last-Modified, later than nubes's record: plain Terraform wrote the
    /// state since (a developer applying by hand is using the environment too).
    Outside,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Activity => "recorded activity",
            Source::Applied => "last apply",
            Source::Modified => "state last modified",
            Source::Outside => "state written outside nubes",
        }
    }
}

/// Everything known about one environment's age.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub last_activity: Option<(OffsetDateTime, Source)>,
    pub created: Option<OffsetDateTime>,
    pub pinned_until: Option<OffsetDateTime>,
    /// `None`: never expires.
    pub expires_at: Option<OffsetDateTime>,
    /// Why `expires_at` is what it is, for `--dry-run` and `status`.
    pub why: String,
}

impl Judgement {
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Expires after `now` but within `window`.
    pub fn expires_within(&self, now: OffsetDateTime, window: Duration) -> bool {
        self.expires_at
            .is_some_and(|at| at > now && at <= now + window)
    }

    /// Pinned by `nubes keep` past `now`.
    pub fn pinned(&self, now: OffsetDateTime) -> bool {
        self.pinned_until.is_some_and(|t| t > now)
    }

    /// "in 3d 4h" / "2d ago" / "never", for tables.
    pub fn expires_text(&self, now: OffsetDateTime) -> String {
        match self.expires_at {
            None => "never".into(),
            Some(at) if at <= now => format!("expired {} ago", clock::span(now - at)),
            Some(at) => format!("in {}", clock::span(at - now)),
        }
    }
}

fn recorded(meta: &BTreeMap<String, String>, key: &str) -> Option<OffsetDateTime> {
    meta.get(key).and_then(|v| clock::parse(v))
}

/// What the storage itself says about the blob, beside nubes's metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct Blob {
    pub last_modified: Option<OffsetDateTime>,
    /// Creation time, used when nubes never recorded `nubescreatedat`.
    pub created: Option<OffsetDateTime>,
    /// The state changed since nubes last wrote it (plain Terraform wrote it).
    pub written_outside: bool,
}

/// The last activity an environment's metadata shows (see [`Source`]). Metadata-only
/// writes (a `keep` pin, a drift verdict) move Last-Modified too, so the blob's time
/// counts only where nubes recorded nothing, or where plain Terraform wrote the state.
pub fn last_activity(
    meta: &BTreeMap<String, String>,
    blob: Blob,
) -> Option<(OffsetDateTime, Source)> {
    let recorded = recorded(meta, meta::ACTIVITY_AT)
        .map(|t| (t, Source::Activity))
        .or_else(|| recorded(meta, meta::APPLIED_AT).map(|t| (t, Source::Applied)));
    match (recorded, blob.last_modified) {
        (Some(r), Some(m)) if blob.written_outside && m > r.0 => Some((m, Source::Outside)),
        (Some(r), _) => Some(r),
        (None, m) => m.map(|t| (t, Source::Modified)),
    }
}

fn days(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
}

/// Judge one environment.
pub fn judge(
    meta: &BTreeMap<String, String>,
    blob: Blob,
    rules: Rules,
    protected: bool,
) -> Judgement {
    let last = last_activity(meta, blob);
    let created = recorded(meta, meta::CREATED_AT).or(blob.created);
    let pinned_until = recorded(meta, meta::KEEP_UNTIL);
    let mut j = Judgement {
        last_activity: last,
        created,
        pinned_until,
        expires_at: None,
        why: String::new(),
    };
    if protected {
        j.why = "protected: never expires".into();
        return j;
    }
    let mut candidates: Vec<(OffsetDateTime, String)> = Vec::new();
    if let Some(idle) = rules.idle {
        match last {
            Some((at, source)) => candidates.push((
                at + days(idle),
                format!(
                    "idle {} after its last activity at {} ({})",
                    clock::span(days(idle)),
                    clock::format(at),
                    source.as_str()
                ),
            )),
            None => j.why = "no activity recorded, so the idle rule cannot apply".into(),
        }
    }
    if let Some(max_age) = rules.max_age
        && let Some(at) = created
    {
        candidates.push((
            at + days(max_age),
            format!(
                "max_age {} after its creation at {}",
                clock::span(days(max_age)),
                clock::format(at)
            ),
        ));
    }
    let Some((at, why)) = candidates.into_iter().min_by_key(|(at, _)| *at) else {
        if j.why.is_empty() {
            j.why = "no expiry rule applies ([expiry] idle and max_age are unset)".into();
        }
        return j;
    };
    match pinned_until {
        Some(pin) if pin > at => {
            j.expires_at = Some(pin);
            j.why = format!(
                "pinned by `nubes keep` until {} (otherwise: {why})",
                clock::format(pin)
            );
        }
        _ => {
            j.expires_at = Some(at);
            j.why = why;
        }
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        clock::parse(s).expect("time")
    }

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn idle_counts_from_activity_not_from_the_last_apply() {
        let m = meta(&[
            (meta::APPLIED_AT, "2026-01-01T00:00:00Z"),
            (meta::ACTIVITY_AT, "2026-01-20T00:00:00Z"),
        ]);
        let rules = Rules {
            idle: Some(14 * DAY),
            max_age: None,
        };
        let j = judge(&m, Blob::default(), rules, false);
        assert_eq!(j.expires_at, Some(t("2026-02-03T00:00:00Z")));
        assert_eq!(j.last_activity.map(|l| l.1), Some(Source::Activity));
        assert!(!j.expired(t("2026-02-02T23:59:59Z")));
        assert!(j.expired(t("2026-02-03T00:00:00Z")));
        assert!(j.expires_within(t("2026-02-02T00:00:00Z"), 2 * DAY));
    }

    #[test]
    fn fallbacks_are_the_last_apply_then_the_blob() {
        let rules = Rules {
            idle: Some(DAY),
            max_age: None,
        };
        let applied = meta(&[(meta::APPLIED_AT, "2026-01-01T00:00:00Z")]);
        let modified = Blob {
            last_modified: Some(t("2026-03-01T00:00:00Z")),
            ..Blob::default()
        };
        let j = judge(&applied, modified, rules, false);
        assert_eq!(j.last_activity.map(|l| l.1), Some(Source::Applied));
        // A plain Terraform write after the last nubes record is activity too.
        let outside = Blob {
            written_outside: true,
            ..modified
        };
        let j = judge(&applied, outside, rules, false);
        assert_eq!(j.last_activity.map(|l| l.1), Some(Source::Outside));
        assert_eq!(j.expires_at, Some(t("2026-03-02T00:00:00Z")));
        let plain = judge(&meta(&[]), modified, rules, false);
        assert_eq!(plain.last_activity.map(|l| l.1), Some(Source::Modified));
        assert_eq!(plain.expires_at, Some(t("2026-03-02T00:00:00Z")));
    }

    #[test]
    fn max_age_wins_when_earlier_and_a_pin_extends() {
        let m = meta(&[
            (meta::CREATED_AT, "2026-01-01T00:00:00Z"),
            (meta::ACTIVITY_AT, "2026-01-29T00:00:00Z"),
        ]);
        let rules = Rules {
            idle: Some(14 * DAY),
            max_age: Some(30 * DAY),
        };
        let j = judge(&m, Blob::default(), rules, false);
        assert_eq!(j.expires_at, Some(t("2026-01-31T00:00:00Z")));
        assert!(j.why.contains("max_age"), "{}", j.why);
        let mut pinned = m.clone();
        pinned.insert(meta::KEEP_UNTIL.into(), "2026-03-01T00:00:00Z".into());
        let j = judge(&pinned, Blob::default(), rules, false);
        assert_eq!(j.expires_at, Some(t("2026-03-01T00:00:00Z")));
        assert!(j.why.contains("pinned"), "{}", j.why);
        // A pin in the past changes nothing.
        pinned.insert(meta::KEEP_UNTIL.into(), "2026-01-02T00:00:00Z".into());
        let j = judge(&pinned, Blob::default(), rules, false);
        assert_eq!(j.expires_at, Some(t("2026-01-31T00:00:00Z")));
    }

    #[test]
    fn protected_and_ruleless_environments_never_expire() {
        let m = meta(&[(meta::ACTIVITY_AT, "2020-01-01T00:00:00Z")]);
        let rules = Rules {
            idle: Some(DAY),
            max_age: Some(DAY),
        };
        let j = judge(&m, Blob::default(), rules, true);
        assert_eq!(j.expires_at, None);
        assert!(j.why.contains("protected"));
        let j = judge(&m, Blob::default(), Rules::default(), false);
        assert_eq!(j.expires_at, None);
        assert_eq!(j.expires_text(t("2026-01-01T00:00:00Z")), "never");
    }

    #[test]
    fn garbage_times_are_ignored_not_fatal() {
        let m = meta(&[(meta::ACTIVITY_AT, "yesterday<script>")]);
        let rules = Rules {
            idle: Some(DAY),
            max_age: None,
        };
        let j = judge(&m, Blob::default(), rules, false);
        assert_eq!(j.expires_at, None);
    }
}
