//! "Now", for the decisions that depend on it: activity records, expiry, `keep`,
//! `reap`. Tests need to move time without sleeping (an environment idle for 15 days),
//! so a debug build honours `NUBES_TEST_NOW` (RFC 3339); release builds ignore it, so
//! no user setting can make nubes misjudge an environment's age.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The test-only clock variable (debug builds only).
pub const TEST_NOW: &str = "NUBES_TEST_NOW";

pub fn now() -> OffsetDateTime {
    #[cfg(debug_assertions)]
    if let Some(t) = std::env::var(TEST_NOW)
        .ok()
        .and_then(|v| OffsetDateTime::parse(v.trim(), &Rfc3339).ok())
    {
        return t;
    }
    OffsetDateTime::now_utc()
}

/// An RFC 3339 time as nubes records it (UTC, whole seconds).
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    format(now())
}

/// A recorded time, if it parses.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// A rough, readable span ("3d 4h", "12m"), for "expires in" and "idle for".
pub fn span(d: time::Duration) -> String {
    let secs = d.whole_seconds().unsigned_abs();
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if days > 0 {
        if hours > 0 {
            format!("{days}d {hours}h")
        } else {
            format!("{days}d")
        }
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_well() {
        assert_eq!(span(time::Duration::seconds(59)), "59s");
        assert_eq!(span(time::Duration::minutes(12)), "12m");
        assert_eq!(span(time::Duration::minutes(125)), "2h 5m");
        assert_eq!(span(time::Duration::days(3)), "3d");
        assert_eq!(span(time::Duration::hours(76)), "3d 4h");
        assert_eq!(span(time::Duration::hours(-76)), "3d 4h");
    }

    #[test]
    fn format_round_trips_whole_seconds() {
        let t = parse("2026-11-29T10:11:12.345Z").expect("parses");
        assert_eq!(format(t), "2026-11-29T10:11:12Z");
        assert_eq!(
            parse(&format(t)).map(|p| p.unix_timestamp()),
            Some(t.unix_timestamp())
        );
    }
}
