//! Taking an environment's lock for the whole of a command: wait (showing the holder)
//! with a short capped backoff until `lock_timeout`, then keep the lease alive until
//! the command ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{Attempt, LockInfo, LockToken, StateStore};
use crate::env_name::EnvName;
use crate::error::{Error, Result};

/// Poll intervals while waiting: short at first so a released lock is taken quickly,
/// capped so a long wait costs few requests.
const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_millis(500);

/// The env lock, held until [`HeldLock::release`]. Dropping it without release stops the
/// renewal, so the lease expires by itself.
pub struct HeldLock {
    store: Arc<dyn StateStore>,
    token: LockToken,
    lost: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

impl HeldLock {
    pub fn token(&self) -> &LockToken {
        &self.token
    }

    /// True once a renewal found the lock gone (expired or broken).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub async fn release(self) -> Result<()> {
        self.release_recording(&[]).await
    }

    /// Release, merging `entries` into the env's metadata in the same step (nothing is
    /// recorded when the lock was lost: the record would not be ours to write).
    pub async fn release_recording(mut self, entries: &[(&str, String)]) -> Result<()> {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if self.is_lost() {
            return Err(Error::failed(format!(
                "the lock on environment `{}` was lost while nubes worked (its lease expired or was broken)",
                self.token.env
            ))
            .hint("check that nothing broke the lock, and that the storage account was reachable; then rerun"));
        }
        if entries.is_empty() {
            self.store.unlock(&self.token).await
        } else {
            self.store.unlock_recording(&self.token, entries).await
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

/// Take the lock, waiting up to `timeout` while someone else holds it.
pub async fn acquire(
    store: Arc<dyn StateStore>,
    env: &EnvName,
    operation: &str,
    timeout: Duration,
) -> Result<HeldLock> {
    let info = LockInfo::new(operation, store.lock_path(env));
    let started = Instant::now();
    let mut poll = FIRST_POLL;
    let mut last_holder: Option<String> = None;
    let mut progress = Progress::new();
    let mut spinner: Option<indicatif::ProgressBar> = None;
    loop {
        match store.try_lock(env, &info).await? {
            Attempt::Acquired(token) => {
                if let Some(s) = spinner.take() {
                    s.finish_and_clear();
                }
                if last_holder.is_some() {
                    tracing::info!(
                        "took the lock on `{env}` after waiting {}",
                        humantime::format_duration(round(started.elapsed()))
                    );
                }
                return Ok(start_renewal(store, token));
            }
            Attempt::Held(mut holder) => {
                if started.elapsed() >= timeout && holder.info.is_none() {
                    // A lease is taken before its lock info is written (and the info is
                    // cleared before the lease is released), so a poll can land between
                    // the two. Look again briefly so the exit-3 error names the holder.
                    // (Caught by the contention soak.)
                    for _ in 0..5 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match store.try_lock(env, &info).await? {
                            Attempt::Acquired(token) => return Ok(start_renewal(store, token)),
                            Attempt::Held(h) => holder = h,
                        }
                        if holder.info.is_some() {
                            break;
                        }
                    }
                }
                // The holder is shown once, and again only when another one takes
                // over (its description carries an age that changes every second).
                let key = holder_key(&holder);
                if last_holder.as_deref() != Some(&key) {
                    let line = format!(
                        "environment `{env}` is locked by {}; waiting up to {}",
                        holder.describe(),
                        humantime::format_duration(timeout)
                    );
                    // Logs are written above the live view (`ui::write_stderr`).
                    tracing::warn!("{line}");
                    last_holder = Some(key);
                    if spinner.is_none() {
                        spinner = crate::ui::spinner(format!("waiting for the lock on `{env}`"));
                    }
                }
                let waited = started.elapsed();
                if spinner.is_none() && progress.due(waited) {
                    tracing::info!(
                        "still waiting for the lock on `{env}`: {} so far, giving up after {}",
                        humantime::format_duration(Duration::from_secs(waited.as_secs())),
                        humantime::format_duration(timeout)
                    );
                }
                if waited >= timeout {
                    if let Some(s) = spinner.take() {
                        s.finish_and_clear();
                    }
                    return Err(Error::LockTimeout {
                        env: env.to_string(),
                        waited: round(waited),
                        holder: holder.info.map(Box::new),
                    });
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll.min(timeout - waited)) => {}
                    caught = crate::signals::wait() => {
                        return Err(Error::failed(format!(
                            "interrupted by {} while waiting for the lock on `{env}`; nothing was changed",
                            caught.name()
                        )));
                    }
                }
                poll = (poll * 2).min(MAX_POLL);
            }
        }
    }
}

/// Who holds the lock, without the age: the same holder gives the same key.
fn holder_key(holder: &super::Holder) -> String {
    match &holder.info {
        Some(i) => format!(
            "{}\n{}\n{}\n{}\n{}",
            i.id, i.who, i.operation, i.created, holder.infinite
        ),
        None => format!("?\n{}", holder.infinite),
    }
}

/// When a plain "still waiting" line is due: after 10 s, then at doubling gaps (30 s,
/// 1m10s, 2m30s, …), so a 10-minute wait writes six lines, not six hundred.
struct Progress {
    next: Duration,
    gap: Duration,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            next: Duration::from_secs(10),
            gap: Duration::from_secs(20),
        }
    }

    fn due(&mut self, waited: Duration) -> bool {
        if waited < self.next {
            return false;
        }
        while self.next <= waited {
            self.next += self.gap;
            self.gap *= 2;
        }
        true
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64 / 100 * 100)
}

fn start_renewal(store: Arc<dyn StateStore>, token: LockToken) -> HeldLock {
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = store.renew_every().map(|every| {
        let (store, token, lost) = (store.clone(), token.clone(), lost.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                if !keep_alive(&*store, &token).await {
                    lost.store(true, Ordering::SeqCst);
                    tracing::error!(
                        "lost the lock on environment `{}`: its lease could not be renewed",
                        token.env
                    );
                    return;
                }
            }
        })
    });
    HeldLock {
        store,
        token,
        lost,
        renewer,
    }
}

/// Renew until it succeeds, or storage says the lease is no longer ours. Through a
/// storage outage this keeps trying: the lease's own expiry protects other runs while
/// storage is unreachable, and once it answers again Azure renews a lease that expired
/// meanwhile only if nobody else took it and the blob did not change, so holding on is
/// safe. (Giving up after one period declared the lock lost during outages shorter than
/// the lease; `storage_outage_mid_apply_is_ridden_out` caught it.)
async fn keep_alive(store: &dyn StateStore, token: &LockToken) -> bool {
    let mut wait = Duration::from_millis(250);
    let mut failing_since: Option<Instant> = None;
    loop {
        match store.renew(token).await {
            Ok(true) => {
                if let Some(since) = failing_since {
                    tracing::info!(
                        "renewed the lock on `{}` again after {} of storage failures",
                        token.env,
                        humantime::format_duration(round(since.elapsed()))
                    );
                }
                return true;
            }
            Ok(false) => return false,
            Err(e) => {
                if failing_since.is_none() {
                    tracing::warn!("renewing the lock on `{}` failed, retrying: {e}", token.env);
                    failing_since = Some(Instant::now());
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_come_at_growing_intervals() {
        let mut p = Progress::new();
        let due: Vec<u64> = (0..=600)
            .filter(|s| p.due(Duration::from_secs(*s)))
            .collect();
        assert_eq!(due, [10, 30, 70, 150, 310]);
    }
}
