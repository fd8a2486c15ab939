//! `nubes dashboard [--out DIR] [--publish] [--versions]`: one self-contained HTML page
//! listing every environment (branch, application URL, last activity, deployed commit,
//! health, lock, expiry, last drift verdict; kept versions with `--versions`), from ONE
//! paged List Blobs call with metadata (`StateStore::list`; with `--versions`, snapshots
//! included in it: `list_with_versions`), never a request per environment.
//!
//! The page has no external assets: inline CSS, a small inline script that sorts by
//! column (the rows are already sorted by name, so it reads fine without JavaScript),
//! and a Content-Security-Policy that lets only that script run (by its SHA-256). Every
//! string from metadata or lock info is someone else's text: control and bidi characters
//! are escaped ([`escaped`]), then tera's autoescape HTML-escapes it; an application URL
//! becomes a link only when it parses as `http(s)://`.
//!
//! `--publish` syncs the page into the `$web` container of a storage account through
//! the static-site deploy (`deploy::static_site::sync`), scoped to one folder so the
//! rest of the site is left alone.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Settings;
use crate::deploy::static_site;
use crate::env_name::{escaped, printable};
use crate::error::{Error, Result};
use crate::state::{self, meta};

/// Where the page is written when `--out` is not given (relative to the project).
pub const DEFAULT_OUT: &str = ".nubes/dashboard";
/// The folder of `$web` the page is published to when `--prefix` is not given.
pub const DEFAULT_PREFIX: &str = "dashboard";
/// Rows that expire within this are marked "expiring" (as `reap --warn 2d` would list).
pub const EXPIRING_WITHIN: Duration = Duration::from_secs(2 * 24 * 3600);
/// Longest piece of someone else's text shown in a cell.
const MAX_TEXT: usize = 200;

const TEMPLATE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");

pub struct Options {
    pub out: Option<PathBuf>,
    pub publish: bool,
    /// The storage account whose `$web` the page is published to.
    pub account_url: Option<String>,
    /// The folder of `$web` (`/` for the container's root).
    pub prefix: String,
    /// Count kept versions: snapshots are included in the listing, which then grows with
    /// `[state] history` (and pages at 5,000 items).
    pub versions: bool,
}

pub async fn run(settings: &Settings, o: &Options) -> Result<()> {
    // Check the publishing flags before anything is read or written.
    let publish = if o.publish {
        let account = o
            .account_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                Error::input("--publish needs the storage account to publish to").hint(
                    "pass --account-url https://<account>.blob.core.windows.net (or set \
                     NUBES_DASHBOARD_ACCOUNT_URL); the page goes to its `$web` container",
                )
            })?;
        Some((account.to_string(), site_prefix(&o.prefix)?))
    } else {
        None
    };
    let store = state::open(settings)?;
    let listed = if o.versions {
        store.list_with_versions().await?
    } else {
        store.list().await?
    };
    let now = OffsetDateTime::now_utc();
    let rows = rows(settings, &listed, now);
    let location = match &settings.state.account_url {
        Some(url) if settings.state.backend == crate::config::Backend::Azure => {
            format!("{}/{}", url.trim_end_matches('/'), settings.state.container)
        }
        _ => settings.state.local_path.display().to_string(),
    };
    let html = render(&Page {
        project: settings.project_name.clone(),
        location,
        generated: now,
        rows,
        versions: o.versions,
        expiry_note: Some(expiry_note(settings)),
    })?;
    let out_dir = match &o.out {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => settings.root.join(d),
        None => settings.root.join(DEFAULT_OUT),
    };
    let file = out_dir.join("index.html");
    fs_err::create_dir_all(&out_dir)?;
    fs_err::write(&file, &html)?;
    let count = listed.iter().filter(|l| is_env(l)).count();
    crate::outln!("wrote {} ({count} environments)", file.display());
    if let Some((account, prefix)) = publish {
        // Sync a folder holding only the page: whatever else is in --out stays local.
        let staging = tempfile::tempdir()?;
        fs_err::write(staging.path().join("index.html"), &html)?;
        let options = static_site::SiteOptions {
            // The page changes with every run; browsers should ask again.
            cache_control: Some("no-cache".into()),
            prefix: prefix.clone(),
            ..Default::default()
        };
        let report = static_site::sync(&account, staging.path(), &options).await?;
        let blob = match &prefix {
            Some(p) => format!("{p}/index.html"),
            None => "index.html".into(),
        };
        crate::outln!(
            "published to {}/{}/{blob} ({})",
            account.trim_end_matches('/'),
            static_site::CONTAINER,
            report.summary()
        );
    }
    Ok(())
}

/// `--prefix` as the folder to sync into: `None` for the container's root.
fn site_prefix(raw: &str) -> Result<Option<String>> {
    let p = raw.trim_matches('/');
    if p.is_empty() {
        return Ok(None);
    }
    let ok = p.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
    if !ok {
        return Err(Error::input(format!(
            "--prefix `{}` is not a folder name for `$web`",
            printable(raw)
        ))
        .hint("use letters, digits, `-`, `_`, `.` and `/` between folders, e.g. dashboard or ops/nubes"));
    }
    Ok(Some(p.to_string()))
}

fn is_env(l: &state::Listed) -> bool {
    l.env.is_some() && !l.tombstone
}

/// A row's view of blob metadata: empty values count as absent, times parse or are
/// absent. (Stores already lower-case names, `state::meta::normalise`; looking them up
/// case-insensitively here as well costs nothing and keeps the page right for any store.)
pub struct Meta(HashMap<String, String>);

impl Meta {
    pub fn new(raw: &BTreeMap<String, String>) -> Meta {
        Meta(
            raw.iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// An RFC 3339 time; an unparseable value counts as absent.
    pub fn time(&self, name: &str) -> Option<OffsetDateTime> {
        self.get(name).and_then(crate::clock::parse)
    }
}

fn add(t: OffsetDateTime, d: Duration) -> Option<OffsetDateTime> {
    t.checked_add(time::Duration::try_from(d).ok()?)
}

/// One cell: what is shown, a tooltip, and the key the script sorts by ("" = last).
#[derive(Debug, Default, Serialize)]
pub struct Cell {
    pub text: String,
    pub title: String,
    pub sort: String,
}

impl Cell {
    fn text(text: impl Into<String>) -> Cell {
        let text = text.into();
        Cell {
            sort: text.to_lowercase(),
            text,
            title: String::new(),
        }
    }

    fn none() -> Cell {
        Cell {
            text: "—".into(),
            ..Default::default()
        }
    }

    fn time(t: Option<OffsetDateTime>, now: OffsetDateTime) -> Cell {
        match t {
            Some(t) => Cell {
                text: relative(t, now),
                title: stamp(t),
                sort: t.unix_timestamp().to_string(),
            },
            None => Cell::none(),
        }
    }
}

/// One row of the table.
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    /// `locked`, `unhealthy`, `drifted`, `expiring` / `expired`, `protected`: row classes
    /// and the text markers beside the name.
    pub flags: Vec<&'static str>,
    pub branch: Cell,
    /// The application URL as recorded (None: none recorded).
    pub url: Option<Cell>,
    /// The link target, only for an `http(s)` URL.
    pub url_href: Option<String>,
    pub activity: Cell,
    pub commit: Cell,
    pub health: Cell,
    pub lock: Cell,
    pub expires: Cell,
    pub drift: Cell,
    pub versions: Cell,
}

/// The rows for every environment in a listing (tombstones left out), sorted by name.
pub fn rows(settings: &Settings, listed: &[state::Listed], now: OffsetDateTime) -> Vec<Row> {
    let mut rows: Vec<Row> = listed
        .iter()
        .filter(|l| is_env(l))
        .filter_map(|l| {
            let env = l.env.as_ref()?;
            let protected = settings.protected(env);
            let judged = crate::expiry::judge(
                &l.metadata,
                crate::expiry::Blob {
                    last_modified: l.last_modified,
                    created: l.created,
                    written_outside: l.changed_outside.is_some(),
                },
                settings.expiry(env),
                protected,
            );
            Some(row(
                env.as_str(),
                &env.branch(&settings.branch_prefix),
                l,
                protected,
                judged.expires_at,
                now,
            ))
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

fn row(
    name: &str,
    branch: &str,
    l: &state::Listed,
    protected: bool,
    expires: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Row {
    let m = Meta::new(&l.metadata);
    let shown = |k: &str| m.get(k).map(|v| escaped(v.trim(), MAX_TEXT));
    let mut flags = Vec::new();

    if l.holder.is_some() {
        flags.push("locked");
    }
    let health = shown(meta::HEALTH);
    let deploy = shown(meta::DEPLOY);
    let unhealthy = health.as_deref() == Some("unhealthy") || deploy.as_deref() == Some("failed");
    if unhealthy {
        flags.push("unhealthy");
    }
    let drift = shown(meta::DRIFT);
    if drift.as_deref() == Some("drifted") {
        flags.push("drifted");
    }
    match expires {
        Some(t) if t <= now => flags.push("expired"),
        Some(t) if add(now, EXPIRING_WITHIN).is_some_and(|soon| t <= soon) => {
            flags.push("expiring")
        }
        _ => {}
    }
    if protected {
        flags.push("protected");
    }

    let branch = match shown(meta::BRANCH) {
        Some(b) => Cell::text(b),
        None => Cell {
            title: "no branch recorded; the environment's branch by convention".into(),
            ..Cell::text(branch)
        },
    };
    let (url, url_href) = match m.get(meta::APP_URL) {
        Some(raw) => {
            let href = url::Url::parse(raw.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .map(|u| u.to_string());
            (Some(Cell::text(escaped(raw.trim(), MAX_TEXT))), href)
        }
        None => (None, None),
    };
    let commit = match (shown(meta::APP_COMMIT), shown(meta::COMMIT)) {
        (Some(c), _) => Cell {
            text: c.chars().take(12).collect(),
            title: format!("application commit {c}"),
            sort: c,
        },
        (None, Some(c)) => Cell {
            text: c.chars().take(12).collect(),
            title: format!("infrastructure commit {c} (no application deploy recorded)"),
            sort: c,
        },
        (None, None) => Cell::none(),
    };
    let health = {
        let mut text = health.unwrap_or_default();
        if deploy.as_deref() == Some("failed") {
            text = if text.is_empty() {
                "deploy failed".into()
            } else {
                format!("{text}, deploy failed")
            };
        }
        if text.is_empty() {
            Cell::none()
        } else {
            Cell {
                title: m
                    .time(meta::HEALTH_AT)
                    .map(|t| format!("checked {}", stamp(t)))
                    .unwrap_or_default(),
                ..Cell::text(text)
            }
        }
    };
    let lock = match &l.holder {
        None => Cell::none(),
        Some(h) => {
            let info = h.info.as_ref();
            let who = info
                .map(|i| escaped(&i.who, MAX_TEXT))
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "unknown holder".into());
            let since = info.and_then(|i| OffsetDateTime::parse(&i.created, &Rfc3339).ok());
            let mut text = who.clone();
            if let Some(t) = since {
                text.push_str(&format!(" · {}", age(now - t.min(now))));
            }
            if h.infinite {
                text.push_str(" · infinite lease");
            }
            let mut title = info
                .map(|i| escaped(&i.operation, MAX_TEXT))
                .unwrap_or_default();
            if let Some(t) = since {
                title.push_str(&format!(" since {}", stamp(t)));
            }
            Cell {
                text,
                title: title.trim().to_string(),
                sort: who.to_lowercase(),
            }
        }
    };
    let expires = match expires {
        _ if protected => Cell {
            text: "never (protected)".into(),
            ..Default::default()
        },
        Some(t) => {
            let pinned = m.time(meta::KEEP_UNTIL).is_some_and(|p| p >= t);
            Cell {
                text: if t <= now {
                    format!("expired {}", relative(t, now))
                } else {
                    relative(t, now)
                },
                title: format!("{}{}", stamp(t), if pinned { " (pinned)" } else { "" }),
                sort: t.unix_timestamp().to_string(),
            }
        }
        None => Cell {
            text: "never".into(),
            title: "no expiry rule applies ([expiry] in nubes.toml), or no activity is known"
                .into(),
            sort: String::new(),
        },
    };
    let drift = match drift {
        Some(d) => Cell {
            title: m
                .time(meta::DRIFT_AT)
                .map(|t| format!("checked {}", stamp(t)))
                .unwrap_or_default(),
            ..Cell::text(d)
        },
        None => Cell {
            text: "not checked".into(),
            ..Default::default()
        },
    };
    let versions = match l.versions {
        Some(n) => Cell {
            text: n.to_string(),
            title: String::new(),
            sort: n.to_string(),
        },
        None => Cell::none(),
    };
    Row {
        name: name.to_string(),
        flags,
        branch,
        url,
        url_href,
        activity: Cell::time(
            m.time(meta::ACTIVITY_AT)
                .or_else(|| m.time(meta::APPLIED_AT)),
            now,
        ),
        commit,
        health,
        lock,
        expires,
        drift,
        versions,
    }
}

/// Counts for the summary line.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub total: usize,
    pub locked: usize,
    pub unhealthy: usize,
    pub drifted: usize,
    pub expiring: usize,
    pub expired: usize,
    pub protected: usize,
}

impl Counts {
    fn of(rows: &[Row]) -> Counts {
        let n = |f: &str| rows.iter().filter(|r| r.flags.contains(&f)).count();
        Counts {
            total: rows.len(),
            locked: n("locked"),
            unhealthy: n("unhealthy"),
            drifted: n("drifted"),
            expiring: n("expiring"),
            expired: n("expired"),
            protected: n("protected"),
        }
    }
}

pub struct Page {
    pub project: Option<String>,
    /// Where the states were listed (shown on the page; never carries credentials).
    pub location: String,
    pub generated: OffsetDateTime,
    pub rows: Vec<Row>,
    /// Show the kept-versions column (`--versions`).
    pub versions: bool,
    pub expiry_note: Option<String>,
}

/// The whole page as one HTML document.
pub fn render(page: &Page) -> Result<String> {
    let mut tera = tera::Tera::default();
    // The name ends in .html, so tera's autoescape is on for every `{{ }}`.
    tera.add_raw_template("dashboard.html", TEMPLATE)
        .map_err(|e| Error::failed(format!("the dashboard template: {e}")))?;
    let mut c = tera::Context::new();
    c.insert("version", env!("CARGO_PKG_VERSION"));
    c.insert("project", &page.project);
    c.insert("location", &page.location);
    c.insert("generated", &stamp(page.generated));
    c.insert("rows", &page.rows);
    c.insert("with_versions", &page.versions);
    c.insert("counts", &Counts::of(&page.rows));
    c.insert("expiring_within", &days(EXPIRING_WITHIN));
    c.insert("expiry_note", &page.expiry_note);
    c.insert("script", SCRIPT);
    c.insert("script_hash", &script_hash());
    tera.render("dashboard.html", &c)
        .map_err(|e| Error::failed(format!("rendering the dashboard: {e}")))
}

/// The CSP source that allows exactly the inline script: `sha256-<base64>`.
fn script_hash() -> String {
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()))
    )
}

/// "14 days"
/// The page's note on how expiry is judged (the `[expiry]` rules of `expiry.rs`).
fn expiry_note(settings: &Settings) -> String {
    let rule = |d: Option<Duration>| d.map_or_else(|| "never".to_string(), days);
    format!(
        "Expiry ([expiry] in nubes.toml; per-environment overrides apply): {} idle after the last activity, max age {}; protected environments never expire; `nubes keep` pins.",
        rule(settings.expiry.idle),
        rule(settings.expiry.max_age)
    )
}

fn days(d: Duration) -> String {
    format!("{} days", d.as_secs() / 86_400)
}

/// `2026-11-22 10:00 UTC`
fn stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// "3 h ago" / "in 2 d"
fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    if t <= now {
        format!("{} ago", age(now - t))
    } else {
        format!("in {}", age(t - now))
    }
}

fn age(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Holder, Listed, LockInfo};

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    fn meta(pairs: &[(&str, &str)]) -> Meta {
        Meta::new(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const NOW: &str = "2026-11-29T12:00:00Z";

    #[test]
    fn metadata_names_are_case_insensitive() {
        let m = meta(&[
            ("Nubesactivityat", "2026-11-20T00:00:00Z"),
            ("nubesdrift", ""),
        ]);
        assert_eq!(m.get(meta::ACTIVITY_AT), Some("2026-11-20T00:00:00Z"));
        assert_eq!(m.get(meta::DRIFT), None, "empty counts as absent");
    }

    fn listed(name: &str, pairs: &[(&str, &str)], holder: Option<Holder>) -> Listed {
        Listed {
            env: Some(crate::env_name::EnvName::parse(name, "env-").unwrap()),
            name: format!("{name}.terraform.tfstate"),
            tombstone: false,
            size: 10,
            metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            holder,
            versions: Some(3),
            last_modified: None,
            created: None,
            changed_outside: None,
        }
    }

    #[test]
    fn expiry_follows_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nubes.toml"), "[expiry]\nidle = \"14d\"\n").unwrap();
        let settings =
            crate::config::load(dir.path(), None, &crate::config::Overrides::default()).unwrap();
        let now = at(NOW);
        let active = |d: i64| {
            (now - time::Duration::days(d) - time::Duration::hours(1))
                .format(&Rfc3339)
                .unwrap()
        };
        let (a12, a15) = (active(12), active(15));
        let rows = rows(
            &settings,
            &[
                listed("soon", &[(meta::ACTIVITY_AT, &a12)], None),
                listed("gone", &[(meta::ACTIVITY_AT, &a15)], None),
            ],
            now,
        );
        assert_eq!(rows[0].flags, ["expired"], "{:?}", rows[0].expires.text);
        assert_eq!(rows[1].flags, ["expiring"], "{:?}", rows[1].expires.text);
    }

    #[test]
    fn hostile_values_are_escaped_and_only_http_urls_are_links() {
        let dir = tempfile::tempdir().unwrap();
        let settings =
            crate::config::load(dir.path(), None, &crate::config::Overrides::default()).unwrap();
        let now = at(NOW);
        let lock = LockInfo {
            who: "<img src=x onerror=alert(1)>".into(),
            created: "2026-11-29T11:00:00Z".into(),
            ..Default::default()
        };
        let rows = rows(
            &settings,
            &[
                listed(
                    "bad",
                    &[
                        (meta::APP_URL, "javascript:alert(1)"),
                        (meta::BRANCH, "<script>alert(1)</script>"),
                        (meta::HEALTH, "unhealthy"),
                    ],
                    Some(Holder {
                        info: Some(lock),
                        infinite: false,
                    }),
                ),
                listed(
                    "good",
                    &[
                        (meta::APP_URL, "https://good.example/?a=\"b\""),
                        (meta::DRIFT, "drifted"),
                    ],
                    None,
                ),
            ],
            now,
        );
        assert_eq!(rows[0].flags, ["locked", "unhealthy"]);
        assert_eq!(rows[0].url_href, None);
        assert_eq!(rows[0].lock.text, "<img src=x onerror=alert(1)> · 1 h");
        assert_eq!(rows[1].flags, ["drifted"]);
        assert_eq!(
            rows[1].url_href.as_deref(),
            Some("https://good.example/?a=%22b%22")
        );
        let html = render(&Page {
            project: None,
            location: "test".into(),
            generated: now,
            rows,
            versions: true,
            expiry_note: None,
        })
        .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"));
        assert!(!html.contains("href=\"javascript"));
        assert_eq!(
            html.matches("<script>").count(),
            1,
            "only nubes's own script"
        );
        assert!(html.contains(&script_hash()));
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            site_prefix("dashboard").unwrap().as_deref(),
            Some("dashboard")
        );
        assert_eq!(
            site_prefix("/ops/nubes/").unwrap().as_deref(),
            Some("ops/nubes")
        );
        assert_eq!(site_prefix("/").unwrap(), None);
        for bad in ["../x", "a//b", "a b", "x/./y"] {
            assert_eq!(site_prefix(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
