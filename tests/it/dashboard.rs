//! `nubes dashboard`: 200 environments in varied states (metadata written straight to a
//! real Azurite, hostile values included) rendered by the real binary, opened in real
//! headless Chromium (Debian's `chromium`, installed by scripts/install-prereqs.sh), and
//! checked on the DOM Chromium built: rows, flags and their text markers, links, escaped
//! values, no injected element, and the inline script (allowed by the page's CSP) sorting
//! by column. A screenshot is kept in `target/test-artifacts/dashboard.png`. Publishing
//! goes to Azurite's `$web`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::{Azurite, Blobs, Project, block_on};

const ENVS: usize = 200;
const DAY: i64 = 86_400;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// What one seeded environment should look like on the page.
#[derive(Debug, Default, Clone)]
struct Expect {
    flags: Vec<&'static str>,
    versions: usize,
    link: bool,
}

/// The metadata of environment `i` (None: a state plain Terraform wrote, no nubes metadata).
fn seed_meta(i: usize, now: OffsetDateTime) -> Option<Vec<(String, String)>> {
    if i % 25 == 24 {
        return None;
    }
    let days = (i % 20) as i64;
    let active = now - time::Duration::seconds(days * DAY + 3600);
    let mut m: Vec<(&str, String)> = vec![
        (
            if i.is_multiple_of(11) {
                "nubesappliedat"
            } else {
                "nubesactivityat"
            },
            rfc3339(active),
        ),
        // Written through nubes (a serial recorded), so not "changed outside nubes".
        ("nubesserial", "1".to_string()),
        ("nubescommit", format!("{:040x}", i * 7919)),
        ("nubesbranch", format!("env-env{i:03}")),
        ("nubesappcommit", format!("{:040x}", i * 104_729)),
        ("nubesappurl", format!("https://env{i:03}.example.net/")),
        (
            "nubeshealth",
            if i.is_multiple_of(7) {
                "unhealthy"
            } else {
                "healthy"
            }
            .into(),
        ),
        ("nubeshealthat", rfc3339(active)),
        (
            "nubesdeploy",
            if i.is_multiple_of(13) {
                "failed"
            } else {
                "succeeded"
            }
            .into(),
        ),
        (
            "nubesdrift",
            ["drifted", "pending", "failed", "clean"][(i % 9).min(3)].into(),
        ),
        ("nubesdriftat", rfc3339(now - time::Duration::hours(5))),
    ];
    // Hostile values, as anyone with write access to the state storage could leave.
    let hostile: &[(usize, &str, &str)] = &[
        (3, "nubesappurl", "javascript:alert(1)"),
        (4, "nubesbranch", "<script>alert(1)</script>"),
        (
            5,
            "nubesappurl",
            "https://x.example/\"><script>alert(2)</script>",
        ),
        (6, "nubesdrift", "<b>drifted</b>"),
        (6, "nubeshealth", "'\"><img src=x onerror=alert(3)>"),
        (8, "nubesappurl", "JavaScript:alert(4)"),
        (9, "nubesappcommit", "\"onmouseover=\"alert(6)"),
    ];
    for (n, k, v) in hostile {
        if *n == i {
            m.retain(|(key, _)| key != k);
            m.push((k, v.to_string()));
        }
    }
    Some(
        m.into_iter()
            .map(|(k, v)| {
                // Plain Terraform writes names with a capital first letter.
                let k = if i % 5 == 3 {
                    let mut c = k.chars();
                    c.next().unwrap().to_uppercase().chain(c).collect()
                } else {
                    k.to_string()
                };
                (k, v)
            })
            .collect(),
    )
}

fn expect(i: usize) -> Expect {
    let bare = i % 25 == 24;
    let mut flags = Vec::new();
    if i.is_multiple_of(10) {
        flags.push("locked");
    }
    if !bare && i != 6 && (i.is_multiple_of(7) || i.is_multiple_of(13)) {
        flags.push("unhealthy");
    }
    if !bare && i.is_multiple_of(9) {
        flags.push("drifted");
    }
    let protected = i == 7;
    if !bare && !protected {
        match i % 20 {
            14.. => flags.push("expired"),
            12 | 13 => flags.push("expiring"),
            _ => {}
        }
    }
    if protected {
        flags.push("protected");
    }
    Expect {
        flags,
        versions: if i.is_multiple_of(4) {
            (i / 4) % 3 + 1
        } else {
            0
        },
        link: !bare && i != 3 && i != 8,
    }
}

fn who(i: usize) -> String {
    if i == 10 {
        "<img src=x onerror=alert(5)>".into()
    } else {
        format!("dev{i}@laptop")
    }
}

fn seed(blobs: &Blobs, now: OffsetDateTime) {
    block_on(async {
        let mut pending = futures::stream::FuturesUnordered::new();
        for i in 0..ENVS {
            pending.push(async move {
                let name = format!("env{i:03}.terraform.tfstate");
                let meta = seed_meta(i, now).unwrap_or_default();
                let meta: Vec<(&str, &str)> =
                    meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                blobs
                    .put("tfstate", &name, b"{\"version\":4}".to_vec(), &meta)
                    .await;
                for _ in 0..expect(i).versions {
                    let r = blobs
                        .send(
                            "PUT",
                            &format!("tfstate/{name}"),
                            "comp=snapshot",
                            &[],
                            vec![],
                        )
                        .await;
                    assert_eq!(r.status, 201, "snapshot");
                }
                if i.is_multiple_of(10) {
                    let lock = serde_json::json!({
                        "ID": format!("00000000-0000-0000-0000-{i:012}"),
                        "Operation": "OperationTypeApply",
                        "Info": "",
                        "Who": who(i),
                        "Version": "1.15.5",
                        "Created": rfc3339(now - time::Duration::minutes(i as i64 + 5)),
                        "Path": format!("tfstate/{name}"),
                    });
                    blobs
                        .terraform_lock("tfstate", &name, &lock.to_string())
                        .await;
                }
            });
            if pending.len() >= 16 {
                futures::StreamExt::next(&mut pending).await;
            }
        }
        while futures::StreamExt::next(&mut pending).await.is_some() {}
        blobs
            .put(
                "tfstate",
                "envgone.terraform.tfstate.tombstone.20261101T000000Z",
                b"{}".to_vec(),
                &[],
            )
            .await;
    });
}

// ---------------------------------------------------------------------------------
// Headless Chromium and a small DOM built from its serialisation.

fn chromium() -> PathBuf {
    which::which("chromium").unwrap_or_else(|_| {
        panic!(
            "chromium is not installed: run scripts/install-prereqs.sh (Debian package `chromium`)"
        )
    })
}

/// Chromium with everything that would reach the network or a profile turned off.
fn chromium_cmd(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = chromium_cmd(profile.path())
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 DOM")
}

#[derive(Debug, Default)]
struct Node {
    tag: String,
    attrs: BTreeMap<String, String>,
    children: Vec<Child>,
}

#[derive(Debug)]
enum Child {
    Element(Node),
    Text(String),
}

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

impl Node {
    /// Chromium serialises the DOM it built: every non-void element is closed, so a
    /// tokenizer and a stack rebuild the tree faithfully.
    fn parse(html: &str) -> Node {
        let mut emitter = html5gum::DefaultEmitter::default();
        // <script>/<style> content is raw text, as in the browser.
        emitter.naively_switch_states(true);
        let mut stack = vec![Node {
            tag: "#document".into(),
            ..Default::default()
        }];
        for token in html5gum::Tokenizer::new_with_emitter(html, emitter).flatten() {
            match token {
                html5gum::Token::StartTag(t) => {
                    let node = Node {
                        tag: String::from_utf8_lossy(&t.name).into_owned(),
                        attrs: t
                            .attributes
                            .iter()
                            .map(|(k, v)| {
                                (
                                    String::from_utf8_lossy(k).into_owned(),
                                    String::from_utf8_lossy(&v.value).into_owned(),
                                )
                            })
                            .collect(),
                        children: vec![],
                    };
                    if VOID.contains(&node.tag.as_str()) || t.self_closing {
                        stack
                            .last_mut()
                            .unwrap()
                            .children
                            .push(Child::Element(node));
                    } else {
                        stack.push(node);
                    }
                }
                html5gum::Token::EndTag(t) => {
                    let name = String::from_utf8_lossy(&t.name).into_owned();
                    assert_eq!(stack.last().unwrap().tag, name, "mis-nested </{name}>");
                    let node = stack.pop().unwrap();
                    stack
                        .last_mut()
                        .unwrap()
                        .children
                        .push(Child::Element(node));
                }
                html5gum::Token::String(s) => stack
                    .last_mut()
                    .unwrap()
                    .children
                    .push(Child::Text(String::from_utf8_lossy(&s.value).into_owned())),
                _ => {}
            }
        }
        assert_eq!(stack.len(), 1, "unclosed elements");
        stack.pop().unwrap()
    }

    fn all<'a>(&'a self, tag: &str, out: &mut Vec<&'a Node>) {
        for c in &self.children {
            if let Child::Element(e) = c {
                if e.tag == tag {
                    out.push(e);
                }
                e.all(tag, out);
            }
        }
    }

    fn find(&self, tag: &str) -> Vec<&Node> {
        let mut out = Vec::new();
        self.all(tag, &mut out);
        out
    }

    fn elements(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
            for c in &n.children {
                if let Child::Element(e) = c {
                    out.push(e);
                    walk(e, out);
                }
            }
        }
        walk(self, &mut out);
        out
    }

    fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.children {
            match c {
                Child::Text(t) => s.push_str(t),
                Child::Element(e) => s.push_str(&e.text()),
            }
        }
        s
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    fn classes(&self) -> Vec<&str> {
        self.attr("class")
            .unwrap_or_default()
            .split_whitespace()
            .collect()
    }

    fn cells(&self) -> Vec<&Node> {
        self.find("td")
    }
}

// Column order on the page.
const NAME: usize = 0;
const BRANCH: usize = 1;
const URL: usize = 2;
const COMMIT: usize = 4;
const HEALTH: usize = 5;
const LOCK: usize = 6;
const EXPIRES: usize = 7;
const DRIFT: usize = 8;
const VERSIONS: usize = 9;

#[test]
fn two_hundred_environments_render_escaped_flagged_and_sortable_in_chromium() {
    let az = Azurite::https();
    let blobs = az.blobs();
    let now = OffsetDateTime::now_utc();
    seed(&blobs, now);
    let p = Project::on(
        &az,
        "[expiry]\nidle = \"14d\"\n[environments.env007]\nprotected = true\n",
    );

    let out = p.run(&["-v", "dashboard", "--versions"]).ok();
    let file = p.path().join(".nubes/dashboard/index.html");
    assert!(
        out.stdout
            .contains(&format!("wrote {} ({ENVS} environments)", file.display())),
        "{}",
        out.stdout
    );
    // The whole page from one listing: exactly one storage request.
    let requests: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("storage ") && l.contains(" -> "))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(
        requests[0].contains("storage GET /devstoreaccount1/tfstate ->"),
        "{requests:?}"
    );

    let url = url::Url::from_file_path(&file).unwrap();
    let dom = Node::parse(&dump_dom(url.as_str()));

    // Nothing from metadata became markup.
    let scripts = dom.find("script");
    assert_eq!(scripts.len(), 1, "only nubes's own script");
    assert!(scripts[0].attrs.is_empty());
    assert!(dom.find("img").is_empty(), "an injected <img>");
    // The page's own <b> elements are the names; the `<b>drifted</b>` drift verdict is not one.
    let bold = dom.find("b");
    assert_eq!(bold.len(), ENVS, "an injected <b>");
    assert!(bold.iter().all(|b| b.text().starts_with("env")));
    for e in dom.elements() {
        for k in e.attrs.keys() {
            assert!(
                !k.starts_with("on"),
                "event handler attribute {k} on <{}>",
                e.tag
            );
            // No external assets: nothing loads a URL; only links carry one.
            assert!(
                k != "src" && (k != "href" || e.tag == "a"),
                "{k} on <{}>",
                e.tag
            );
        }
    }

    let rows: Vec<&Node> = dom
        .find("tr")
        .into_iter()
        .filter(|r| r.classes().contains(&"env"))
        .collect();
    assert_eq!(rows.len(), ENVS);
    let names: Vec<String> = rows
        .iter()
        .map(|r| r.attr("data-env").unwrap().to_string())
        .collect();
    let expected_names: Vec<String> = (0..ENVS).map(|i| format!("env{i:03}")).collect();
    assert_eq!(
        names, expected_names,
        "sorted by name before any script runs"
    );

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let want = expect(i);
        let cells = row.cells();
        assert_eq!(cells.len(), 10, "with --versions");
        let classes = row.classes();
        for flag in [
            "locked",
            "unhealthy",
            "drifted",
            "expiring",
            "expired",
            "protected",
        ] {
            let has = want.flags.contains(&flag);
            assert_eq!(
                classes.contains(&flag),
                has,
                "env{i:03} class {flag}: {classes:?} {:?}",
                cells.iter().map(|c| c.text()).collect::<Vec<_>>()
            );
            // A text marker too, not colour alone.
            let markers: Vec<String> = cells[NAME]
                .find("span")
                .iter()
                .filter(|s| s.classes().contains(&"flag"))
                .map(|s| s.text())
                .collect();
            assert_eq!(
                markers.contains(&flag.to_string()),
                has,
                "env{i:03} marker {flag}"
            );
            if has {
                *counts.entry(flag).or_default() += 1;
            }
        }
        assert_eq!(
            cells[VERSIONS].text(),
            want.versions.to_string(),
            "env{i:03}"
        );
        let links = cells[URL].find("a");
        if want.link {
            assert_eq!(links.len(), 1, "env{i:03}");
            let href = links[0].attr("href").unwrap();
            assert!(href.starts_with("https://"), "{href}");
            assert_eq!(links[0].attr("rel"), Some("noopener noreferrer"));
        } else {
            assert!(links.is_empty(), "env{i:03}: {links:?}");
        }
        if i.is_multiple_of(10) {
            assert!(
                cells[LOCK].text().starts_with(&who(i)),
                "{}",
                cells[LOCK].text()
            );
            assert!(cells[LOCK].text().contains("infinite lease"));
        } else {
            assert_eq!(cells[LOCK].text(), "—");
        }
    }
    // Every link on the page is http(s).
    for a in dom.find("a") {
        let href = a.attr("href").unwrap_or_default().to_ascii_lowercase();
        assert!(
            href.starts_with("https://") || href.starts_with("http://"),
            "{href}"
        );
    }

    // Hostile values appear as text, exactly as written.
    let cell = |i: usize, col: usize| rows[i].cells()[col].text();
    assert_eq!(cell(4, BRANCH), "<script>alert(1)</script>");
    assert!(cell(3, URL).contains("javascript:alert(1)"));
    assert!(cell(8, URL).contains("JavaScript:alert(4)"));
    assert_eq!(
        cell(5, URL),
        "https://x.example/\"><script>alert(2)</script>"
    );
    assert!(
        rows[5].cells()[URL].find("a")[0]
            .attr("href")
            .unwrap()
            .starts_with("https://x.example/%22%3E%3Cscript%3E"),
    );
    assert_eq!(cell(6, DRIFT), "<b>drifted</b>");
    assert!(cell(6, HEALTH).starts_with("'\"><img src=x onerror=alert(3)>"));
    assert_eq!(cell(9, COMMIT), "\"onmouseover");
    assert!(cell(10, LOCK).starts_with("<img src=x onerror=alert(5)>"));
    // Capitalised metadata names (plain Terraform's) are read too.
    assert_eq!(cell(13, HEALTH), "healthy, deploy failed");
    assert_eq!(cell(13, BRANCH), "env-env013");
    // A state without nubes metadata: idle counts from the blob's Last-Modified (now).
    assert!(
        cell(24, EXPIRES).starts_with("in 1"),
        "{}",
        cell(24, EXPIRES)
    );
    assert_eq!(cell(7, EXPIRES), "never (protected)");

    let summary = dom
        .find("p")
        .into_iter()
        .find(|p| p.attr("id") == Some("summary"))
        .unwrap()
        .text();
    let n = |f: &str| counts.get(f).copied().unwrap_or(0);
    assert_eq!(
        summary,
        format!(
            "{ENVS} environments · {} locked · {} unhealthy · {} drifted · {} expiring within 2 days · {} expired · 1 protected",
            n("locked"),
            n("unhealthy"),
            n("drifted"),
            n("expiring"),
            n("expired")
        )
    );
    assert_eq!(n("locked"), 20);

    // The inline script runs under the page's CSP and sorts: expiry, latest first, with
    // unknown expiry last.
    let sorted = Node::parse(&dump_dom(&format!("{url}#sort=-expires")));
    let heads = sorted.find("th");
    assert_eq!(heads[EXPIRES].attr("aria-sort"), Some("descending"));
    assert_eq!(heads[NAME].attr("aria-sort"), None);
    let keys: Vec<Option<i64>> = sorted
        .find("tr")
        .into_iter()
        .filter(|r| r.classes().contains(&"env"))
        .map(|r| r.cells()[EXPIRES].attr("data-sort").unwrap().parse().ok())
        .collect();
    assert_eq!(keys.len(), ENVS);
    let known: Vec<i64> = keys.iter().map_while(|k| *k).collect();
    assert!(known.len() < ENVS && keys[known.len()..].iter().all(Option::is_none));
    assert!(known.windows(2).all(|w| w[0] >= w[1]), "{known:?}");

    // A screenshot to look at, kept as a test artifact.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let out = chromium_cmd(profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1400,2000")
        .arg(url.as_str())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn publish_puts_the_page_into_web_and_leaves_the_rest_of_the_site_alone() {
    let az = Azurite::https();
    let blobs = az.blobs();
    let now = OffsetDateTime::now_utc();
    block_on(async {
        for i in 0..3 {
            let meta = seed_meta(i, now).unwrap();
            let meta: Vec<(&str, &str)> =
                meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            blobs
                .put(
                    "tfstate",
                    &format!("env{i:03}.terraform.tfstate"),
                    b"{}".to_vec(),
                    &meta,
                )
                .await;
        }
        blobs.create_container("$web").await;
        blobs
            .put("$web", "index.html", b"<p>the app</p>".to_vec(), &[])
            .await;
        blobs
            .put("$web", "dashboard/old.css", b"p{}".to_vec(), &[])
            .await;
    });
    let p = Project::on(&az, "");

    let refused = p.run(&["dashboard", "--publish"]).code(2);
    assert!(
        refused.stderr.contains("--account-url"),
        "{}",
        refused.stderr
    );
    let bad = p
        .run(&[
            "dashboard",
            "--publish",
            "--account-url",
            &az.account_url(),
            "--prefix",
            "../up",
        ])
        .code(2);
    assert!(bad.stderr.contains("--prefix"), "{}", bad.stderr);
    assert!(
        !p.path().join(".nubes/dashboard").exists(),
        "nothing written after a refusal"
    );

    let out = p
        .run(&["dashboard", "--publish", "--account-url", &az.account_url()])
        .ok();
    assert!(
        out.stdout.contains(&format!(
            "published to {}/$web/dashboard/index.html (1 uploaded, 0 unchanged, 1 deleted)",
            az.account_url()
        )),
        "{}",
        out.stdout
    );
    let local = std::fs::read(p.path().join(".nubes/dashboard/index.html")).unwrap();
    let page = String::from_utf8_lossy(&local).into_owned();
    assert!(!page.contains("Kept versions"), "only with --versions");
    assert_eq!(page.matches("<tr class=\"env").count(), 3);
    block_on(async {
        let page = blobs.get("$web", "dashboard/index.html").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body, local);
        assert_eq!(
            page.headers.get("content-type").map(String::as_str),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            page.headers.get("cache-control").map(String::as_str),
            Some("no-cache")
        );
        assert_eq!(
            blobs.get("$web", "index.html").await.body,
            b"<p>the app</p>"
        );
        assert_eq!(blobs.get("$web", "dashboard/old.css").await.status, 404);
    });
    // The environment variable names the account as well.
    let mut p = p;
    p.set_env("NUBES_DASHBOARD_ACCOUNT_URL", &az.account_url());
    let again = p.run(&["dashboard", "--publish"]).ok();
    assert!(again.stdout.contains("published to"), "{}", again.stdout);
}
