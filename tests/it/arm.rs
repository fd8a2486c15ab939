//! `nubes::arm`, the teardown of `nubes down --strategy resource-group`, against a fake
//! Resource Manager ([`fake`]) that follows the documented protocol: tag filtering and
//! paging, both long-running-operation styles, throttling, failures and permissions.

pub mod containerapps;
pub mod fake;
pub mod slots;

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use nubes::arm::{Arm, GroupOutcome};

use fake::{End, FakeArm, Script, group, group_with_tags};

const TOKEN: &str = "eyJhbGciOiJub25lIn0.fake-arm-token.c2lnbmF0dXJl";
const PROJECT: &str = "petclinic";
const PATIENCE: Duration = Duration::from_secs(60);

/// A credential that hands out one fixed token, and checks it is asked for ARM's scope.
#[derive(Debug)]
struct FixedToken(&'static str);

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://management.azure.com/.default"]);
        Ok(AccessToken::new(
            self.0,
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

fn client(fake: &FakeArm, token: &'static str) -> Arm {
    Arm::new(
        &fake.endpoint,
        fake::SUBSCRIPTION,
        Arc::new(FixedToken(token)),
    )
    .expect("Resource Manager client")
}

fn outcome<'a>(outcomes: &'a [GroupOutcome], name: &str) -> &'a Result<(), String> {
    &outcomes
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no outcome for {name} in {outcomes:?}"))
        .result
}

fn assert_all_authorized(fake: &FakeArm) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(r.authorized, "request without the bearer token: {r:?}");
    }
}

#[tokio::test]
async fn only_groups_with_both_tags_are_deleted_across_pages() {
    let fake = FakeArm::start(
        TOKEN,
        1,
        vec![
            group("rg-alice-web", "alice", PROJECT, Script::Immediate),
            group("rg-alice-billing", "alice", "billing", Script::Immediate),
            group("rg-bob-web", "bob", PROJECT, Script::Immediate),
            group_with_tags(
                "rg-alice-no-project",
                &[("nubes-env", "alice")],
                Script::Immediate,
            ),
            group_with_tags("rg-untagged", &[], Script::Immediate),
            group("rg-alice-data", "alice", PROJECT, Script::Immediate),
        ],
    )
    .await;

    let outcomes = client(&fake, TOKEN)
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect("teardown");

    let ok = |name: &str| GroupOutcome {
        name: name.into(),
        result: Ok(()),
    };
    assert_eq!(outcomes, vec![ok("rg-alice-web"), ok("rg-alice-data")]);
    assert_eq!(fake.deleted(), ["rg-alice-web", "rg-alice-data"]);
    let deletes: Vec<String> = fake
        .requests_to("DELETE", "")
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        deletes,
        [
            format!(
                "/subscriptions/{}/resourcegroups/rg-alice-web",
                fake::SUBSCRIPTION
            ),
            format!(
                "/subscriptions/{}/resourcegroups/rg-alice-data",
                fake::SUBSCRIPTION
            ),
        ]
    );
    // Four groups carry nubes-env=alice, one per page: the nextLink chain was followed.
    let lists = fake.requests_to("GET", "/resourcegroups");
    assert_eq!(lists.len(), 4, "{lists:?}");
    for list in &lists {
        assert_eq!(list.query["api-version"], "2021-04-01");
        assert_eq!(
            list.query["$filter"],
            "tagName eq 'nubes-env' and tagValue eq 'alice'"
        );
    }
    assert_all_authorized(&fake);
}

#[tokio::test]
async fn nothing_tagged_means_nothing_deleted() {
    let fake = FakeArm::start(
        TOKEN,
        10,
        vec![group("rg-bob", "bob", PROJECT, Script::Immediate)],
    )
    .await;
    let outcomes = client(&fake, TOKEN)
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect("teardown");
    assert!(outcomes.is_empty(), "{outcomes:?}");
    assert!(fake.requests_to("DELETE", "").is_empty());
}

#[tokio::test]
async fn quotes_and_reserved_characters_in_tag_values_survive_the_filter() {
    let odd = "o'brien & co+1";
    let fake = FakeArm::start(
        TOKEN,
        10,
        vec![
            group("rg-odd", odd, "it's", Script::Immediate),
            group("rg-near-miss", "o'brien", "it's", Script::Immediate),
        ],
    )
    .await;
    let outcomes = client(&fake, TOKEN)
        .delete_tagged_groups(odd, "it's", PATIENCE)
        .await
        .expect("teardown");
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(fake.deleted(), ["rg-odd"]);
    let list = &fake.requests_to("GET", "/resourcegroups")[0];
    assert_eq!(
        list.query["$filter"],
        "tagName eq 'nubes-env' and tagValue eq 'o''brien & co+1'"
    );
}

#[tokio::test]
async fn long_running_deletions_throttling_and_vanished_groups_all_end_deleted() {
    let fake = FakeArm::start(
        TOKEN,
        10,
        vec![
            group(
                "rg-async",
                "alice",
                PROJECT,
                Script::AsyncOperation {
                    in_progress: 2,
                    end: End::Succeeded,
                },
            ),
            group(
                "rg-location",
                "alice",
                PROJECT,
                Script::LocationPolling { pending: 1 },
            ),
            group("rg-throttled", "alice", PROJECT, Script::Throttled),
            group("rg-flaky", "alice", PROJECT, Script::Unavailable),
            group("rg-gone", "alice", PROJECT, Script::Gone),
        ],
    )
    .await;

    let outcomes = client(&fake, TOKEN)
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect("teardown");

    for o in &outcomes {
        assert_eq!(o.result, Ok(()), "{}", o.name);
    }
    assert_eq!(outcomes.len(), 5);
    let mut deleted = fake.deleted();
    deleted.sort();
    // rg-gone answered 404: counted as deleted without the server deleting anything.
    assert_eq!(
        deleted,
        ["rg-async", "rg-flaky", "rg-location", "rg-throttled"]
    );

    // Azure-AsyncOperation is preferred over the Location sent alongside it, and polled
    // until Succeeded; without Retry-After, at the default interval of a second.
    let status = fake.requests_to("GET", "/operationstatuses/rg-async");
    assert_eq!(status.len(), 3, "{status:?}");
    assert!(
        fake.requests_to("GET", "/operationresults/rg-async")
            .is_empty()
    );
    assert_gaps_at_least(&status, Duration::from_secs(1));

    // Location: 202 (Retry-After: 1), then 200.
    let polls = fake.requests_to("GET", "/operationresults/rg-location");
    assert_eq!(polls.len(), 2, "{polls:?}");
    assert_gaps_at_least(&polls, Duration::from_secs(1));

    // 429 with Retry-After: 1 is retried after that second; a 503 is retried too.
    let throttled = fake.requests_to("DELETE", "/rg-throttled");
    assert_eq!(throttled.len(), 2, "{throttled:?}");
    assert_gaps_at_least(&throttled, Duration::from_secs(1));
    assert_eq!(fake.requests_to("DELETE", "/rg-flaky").len(), 2);

    assert_all_authorized(&fake);
}

fn assert_gaps_at_least(requests: &[fake::Seen], gap: Duration) {
    for pair in requests.windows(2) {
        let waited = pair[1].at.duration_since(pair[0].at);
        assert!(waited >= gap, "only {waited:?} between {pair:?}");
    }
}

#[tokio::test]
async fn a_failed_deletion_is_reported_for_its_group_while_the_others_finish() {
    let fake = FakeArm::start(
        TOKEN,
        10,
        vec![
            group("rg-a", "alice", PROJECT, Script::Immediate),
            group(
                "rg-locked",
                "alice",
                PROJECT,
                Script::AsyncOperation {
                    in_progress: 1,
                    end: End::Failed(
                        "The resource group is locked by 'CanNotDelete' lock \
                         (request carried {authorization})"
                            .into(),
                    ),
                },
            ),
            group(
                "rg-b",
                "alice",
                PROJECT,
                Script::LocationPolling { pending: 0 },
            ),
        ],
    )
    .await;

    let outcomes = client(&fake, TOKEN)
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect("a partial teardown still reports every group");

    assert_eq!(outcome(&outcomes, "rg-a"), &Ok(()));
    assert_eq!(outcome(&outcomes, "rg-b"), &Ok(()));
    let Err(message) = outcome(&outcomes, "rg-locked") else {
        panic!("rg-locked should have failed: {outcomes:?}");
    };
    assert!(message.contains("rg-locked"), "{message}");
    assert!(message.contains("Failed"), "{message}");
    assert!(
        message.contains(
            "ResourceGroupDeletionBlocked: The resource group is locked by 'CanNotDelete' lock"
        ),
        "{message}"
    );
    // The server echoed the Authorization header into its message: it is scrubbed.
    assert!(!message.contains(TOKEN), "the token leaked: {message}");
    assert!(message.contains("Bearer ***"), "{message}");
    let mut deleted = fake.deleted();
    deleted.sort();
    assert_eq!(deleted, ["rg-a", "rg-b"]);
}

#[tokio::test]
async fn a_deletion_that_outlasts_the_timeout_fails_only_that_group() {
    let fake = FakeArm::start(
        TOKEN,
        10,
        vec![
            group(
                "rg-endless",
                "alice",
                PROJECT,
                Script::AsyncOperation {
                    in_progress: u32::MAX,
                    end: End::Succeeded,
                },
            ),
            group("rg-quick", "alice", PROJECT, Script::Immediate),
        ],
    )
    .await;

    let started = Instant::now();
    let outcomes = client(&fake, TOKEN)
        .delete_tagged_groups("alice", PROJECT, Duration::from_secs(2))
        .await
        .expect("teardown");

    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome(&outcomes, "rg-quick"), &Ok(()));
    let Err(message) = outcome(&outcomes, "rg-endless") else {
        panic!("rg-endless should have timed out: {outcomes:?}");
    };
    assert!(message.contains("did not finish within 2s"), "{message}");
    assert!(message.contains("rg-endless"), "{message}");
}

#[tokio::test]
async fn an_unaccepted_token_is_a_configuration_error_naming_the_subscription() {
    const WRONG: &str = "wrong-token-for-another-tenant-8d1e";
    let fake = FakeArm::start(
        TOKEN,
        10,
        vec![group("rg-a", "alice", PROJECT, Script::Immediate)],
    )
    .await;

    let err = client(&fake, WRONG)
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect_err("401 must fail");

    assert_eq!(err.exit_code(), 2, "{err}");
    let message = err.to_string();
    let hint = err.hint_text().unwrap_or_default();
    assert!(message.contains(fake::SUBSCRIPTION), "{message}");
    assert!(message.contains("401"), "{message}");
    assert!(hint.contains("Contributor"), "{hint}");
    // The fake's 401 message echoes the header it received.
    for text in [&message, &hint] {
        assert!(
            !text.contains(WRONG) && !text.contains(TOKEN),
            "token leaked: {text}"
        );
    }
    assert!(fake.requests_to("DELETE", "").is_empty());
    assert!(fake.deleted().is_empty());
}

#[tokio::test]
async fn deletions_refused_for_lack_of_permission() {
    // Every deletion refused: nothing changed, so the whole teardown is a configuration
    // error (exit 2).
    let fake = FakeArm::start(
        TOKEN,
        10,
        vec![
            group("rg-a", "alice", PROJECT, Script::Forbidden),
            group("rg-b", "alice", PROJECT, Script::Forbidden),
        ],
    )
    .await;
    let err = client(&fake, TOKEN)
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect_err("403 everywhere must fail");
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains(fake::SUBSCRIPTION), "{err}");
    assert!(err.to_string().contains("AuthorizationFailed"), "{err}");
    assert!(err.hint_text().unwrap_or_default().contains("Contributor"));

    // One refused among others that succeed: reported for that group only.
    let fake = FakeArm::start(
        TOKEN,
        10,
        vec![
            group("rg-a", "alice", PROJECT, Script::Forbidden),
            group("rg-b", "alice", PROJECT, Script::Immediate),
        ],
    )
    .await;
    let outcomes = client(&fake, TOKEN)
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect("partial teardown");
    assert_eq!(outcome(&outcomes, "rg-b"), &Ok(()));
    let Err(message) = outcome(&outcomes, "rg-a") else {
        panic!("rg-a should have been refused: {outcomes:?}");
    };
    assert!(
        message.contains("403") && message.contains("Contributor"),
        "{message}"
    );
}

#[tokio::test]
async fn at_most_four_requests_are_in_flight() {
    let groups = (0..9)
        .map(|i| {
            group(
                &format!("rg-{i}"),
                "alice",
                PROJECT,
                Script::Slow(Duration::from_millis(300)),
            )
        })
        .collect();
    let fake = FakeArm::start(TOKEN, 100, groups).await;
    let outcomes = client(&fake, TOKEN)
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect("teardown");
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    assert_eq!(fake.deleted().len(), 9);
    let most = fake.max_in_flight();
    assert!(
        (2..=4).contains(&most),
        "{most} requests were in flight at once"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_an_operational_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let arm = Arm::new(
        &format!("http://127.0.0.1:{port}"),
        fake::SUBSCRIPTION,
        Arc::new(FixedToken(TOKEN)),
    )
    .expect("client");
    let err = arm
        .delete_tagged_groups("alice", PROJECT, PATIENCE)
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(
        err.to_string()
            .contains("cannot reach Azure Resource Manager"),
        "{err}"
    );
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert!(err.hint_text().is_some());
}

#[test]
fn plain_http_is_refused_except_on_loopback() {
    let err = Arm::new(
        "http://management.azure.com",
        fake::SUBSCRIPTION,
        Arc::new(FixedToken(TOKEN)),
    )
    .err()
    .expect("plain http to a remote host must be refused");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("https"), "{err}");
}
