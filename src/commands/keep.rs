//! `nubes keep <env> --until <when>`: pin an environment past its expiry (a demo next
//! week, a long-lived review). The pin is blob metadata (`nubeskeepuntil`), written under
//! the env lock in the same request that releases it; `--until now` removes it.

use time::OffsetDateTime;

use crate::clock;
use crate::config::Settings;
use crate::env_name::quoted;
use crate::error::{Error, Result};
use crate::state::{self, lock, meta};

/// When a pin ends: `None` removes the pin.
pub fn parse_until(text: &str, now: OffsetDateTime) -> Result<Option<OffsetDateTime>> {
    let t = text.trim();
    let hint = "use a date (2026-12-24: kept through that day, UTC), an RFC 3339 time \
                (2026-12-24T18:00:00Z), a duration from now (30d, 36h), or `now` to remove the pin";
    if t == "now" {
        return Ok(None);
    }
    let at = if let Some(at) = clock::parse(t) {
        at
    } else if let Ok(date) =
        time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]"))
    {
        // Through the whole day: until the next midnight, UTC.
        date.next_day().unwrap_or(date).midnight().assume_utc()
    } else if let Ok(d) = humantime::parse_duration(t) {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        now.checked_add(time::Duration::seconds(secs))
            .filter(|_| secs <= 3650 * 86_400)
            .ok_or_else(|| {
                Error::input(format!("--until {} is too far away", quoted(t))).hint("at most 3650d")
            })?
    } else {
        return Err(Error::input(format!(
            "--until {} is neither a date, a time, a duration nor `now`",
            quoted(t)
        ))
        .hint(hint));
    };
    if at <= now {
        return Err(Error::input(format!(
            "--until {} is in the past ({})",
            quoted(t),
            clock::format(at)
        ))
        .hint("to remove a pin, use --until now"));
    }
    Ok(Some(at))
}

pub async fn run(settings: &Settings, env_arg: &str, until: &str) -> Result<()> {
    let env = settings.env_name(env_arg)?;
    let now = clock::now();
    let pin = parse_until(until, now)?;
    let store = state::open(settings)?;
    let held = lock::acquire(
        store.clone(),
        &env,
        "nubes keep",
        settings.state.lock_timeout,
    )
    .await?;
    let listed = match store.read_meta(&env).await {
        Ok(m) => m,
        Err(e) => {
            let _ = held.release().await;
            return Err(e);
        }
    };
    let Some(mut recorded) = listed else {
        held.release().await?;
        return Err(Error::input(format!(
            "environment `{env}` does not exist (no state at {}), so there is nothing to keep",
            store.location(&env)
        ))
        .hint(format!(
            "create it with `nubes up {env}` (or push to its branch)"
        )));
    };
    let value = pin.map(clock::format).unwrap_or_default();
    held.release_recording(&[(meta::KEEP_UNTIL, value.clone())])
        .await?;
    meta::merge(&mut recorded, &[(meta::KEEP_UNTIL, value)]);
    let judged = crate::expiry::judge(
        &recorded,
        crate::expiry::Blob::default(),
        settings.expiry(&env),
        settings.protected(&env),
    );
    match pin {
        Some(at) => crate::outln!(
            "`{env}` is kept until {} (expires {}: {})",
            clock::format(at),
            judged.expires_text(now),
            judged.why
        ),
        None => crate::outln!(
            "`{env}` is no longer pinned (expires {}: {})",
            judged.expires_text(now),
            judged.why
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        clock::parse("2026-11-29T12:00:00Z").expect("time")
    }

    #[test]
    fn until_takes_dates_times_durations_and_now() {
        assert_eq!(parse_until("now", now()).expect("ok"), None);
        assert_eq!(
            parse_until("2026-12-24", now())
                .expect("ok")
                .map(clock::format),
            Some("2026-12-25T00:00:00Z".into())
        );
        assert_eq!(
            parse_until("2026-12-24T18:00:00+01:00", now())
                .expect("ok")
                .map(clock::format),
            Some("2026-12-24T17:00:00Z".into())
        );
        assert_eq!(
            parse_until("7d", now()).expect("ok").map(clock::format),
            Some("2026-12-06T12:00:00Z".into())
        );
    }

    #[test]
    fn past_garbage_and_huge_values_are_input_errors() {
        for bad in [
            "2020-01-01",
            "tomorrow",
            "",
            "99999999d",
            "2026-11-29T11:00:00Z",
        ] {
            let e = parse_until(bad, now()).expect_err(bad);
            assert_eq!(e.exit_code(), crate::error::exit::USAGE, "{bad}: {e}");
        }
    }
}
