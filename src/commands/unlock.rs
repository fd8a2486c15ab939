//! `nubes unlock <env>`: break a stale lock, after showing who holds it.

use std::io::{BufRead, IsTerminal, Write};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::state::{self, LockInfo};

pub async fn run(settings: &Settings, env_arg: &str, yes: bool) -> Result<()> {
    let env = settings.env_name(env_arg)?;
    let store = state::open(settings)?;
    let Some(holder) = store.holder(&env).await? else {
        crate::outln!("environment `{env}` is not locked; nothing to do");
        return Ok(());
    };
    eprintln!("environment `{env}` is locked by {}", holder.describe());
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(
                Error::input("refusing to break the lock without confirmation").hint(format!(
                    "rerun with `nubes unlock {env} --yes` once you are sure the holder is gone"
                )),
            );
        }
        eprint!("Break it? A run that still holds it would lose its lock. [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Error::input("not confirmed; the lock was left in place"));
        }
    }
    let me = LockInfo::new("nubes unlock", store.lock_path(&env));
    match store.break_lock(&env, &me).await? {
        Some(h) => crate::outln!(
            "broke the lock on `{env}` held by {} (recorded as broken by {})",
            h.describe(),
            me.who
        ),
        None => crate::outln!("environment `{env}` was released meanwhile; nothing to do"),
    }
    Ok(())
}
