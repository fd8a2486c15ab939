//! SIGINT/SIGTERM, caught once for the whole process and broadcast on a watch channel,
//! so every stage (waiting for a lock, running Terraform) can react: Terraform gets an
//! interrupt and time to persist state, and the lock is released before nubes exits.

use std::sync::OnceLock;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caught {
    Interrupt,
    Terminate,
}

impl Caught {
    pub fn name(self) -> &'static str {
        match self {
            Caught::Interrupt => "SIGINT",
            Caught::Terminate => "SIGTERM",
        }
    }
}

/// (latest signal, how many so far)
type State = (Option<Caught>, u32);

fn channel() -> &'static (watch::Sender<State>, watch::Receiver<State>) {
    static CH: OnceLock<(watch::Sender<State>, watch::Receiver<State>)> = OnceLock::new();
    CH.get_or_init(|| watch::channel((None, 0)))
}

/// Start listening. Must run inside the tokio runtime, once, early.
pub fn install() {
    let tx = channel().0.clone();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will stop nubes abruptly");
        return;
    };
    tokio::spawn(async move {
        loop {
            let caught = tokio::select! {
                _ = int.recv() => Caught::Interrupt,
                _ = term.recv() => Caught::Terminate,
            };
            tx.send_modify(|(last, n)| {
                *last = Some(caught);
                *n += 1;
            });
        }
    });
}

pub fn subscribe() -> watch::Receiver<State> {
    channel().1.clone()
}

/// The first signal received so far, if any.
pub fn caught() -> Option<Caught> {
    channel().1.borrow().0
}

/// Resolves when a signal arrives (immediately if one already has).
pub async fn wait() -> Caught {
    let mut rx = subscribe();
    loop {
        if let Some(c) = rx.borrow_and_update().0 {
            return c;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
