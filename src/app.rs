//! From parsed flags to a finished command: settings, logging, signals, dispatch.

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::config::{self, Overrides, Settings};
use crate::env_name::{EnvName, printable, quoted};
use crate::error::{Result, exit};
use crate::{commands, signals, ui};

/// Run nubes with parsed arguments; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    ui::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let result = runtime.block_on(async {
        signals::install();
        dispatch(&cli).await
    });
    tracing::debug!("{} storage requests", crate::state::azure::requests_made());
    // Background tasks (lease renewal, idle connections) must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            ui::print_error(&e);
            e.exit_code()
        }
    }
}

fn settings(cli: &Cli) -> Result<Settings> {
    let root = match &cli.global.dir {
        Some(d) => d.clone(),
        None => PathBuf::from("."),
    };
    if !root.is_dir() {
        return Err(crate::error::Error::input(format!(
            "-C {}: no such directory",
            printable(&root.to_string_lossy())
        )));
    }
    // Absolute, so paths derived from it stay right when a child runs elsewhere
    // (Terraform runs in the working copy).
    let root = std::path::absolute(&root).map_err(|e| {
        crate::error::Error::input(format!("-C {}: {e}", printable(&root.to_string_lossy())))
    })?;
    let overrides = Overrides {
        lock_timeout: cli.global.lock_timeout.clone(),
    };
    config::load(&root, cli.global.config.as_deref(), &overrides)
}

/// The context of a command run directly (not from an event): the env's own branch,
/// and the commit checked out here when that is the env's branch (the generated
/// workflow's dispatch job checks out `env-<name>` whatever branch it was started from,
/// so GITHUB_SHA may be another branch's), else GitHub's, else the checkout's.
fn context<'a>(settings: &'a Settings, env: &EnvName) -> crate::pipeline::Context<'a> {
    crate::pipeline::Context {
        settings,
        gh: crate::github::Github::from_env(),
        origin: origin(settings, env),
        actor: std::env::var("GITHUB_ACTOR").ok().filter(|a| !a.is_empty()),
        quiet: false,
    }
}

pub fn origin(settings: &Settings, env: &EnvName) -> crate::render::Origin {
    let branch = env.branch(&settings.branch_prefix);
    let head = crate::git::head(&settings.root);
    let on_env_branch = head.as_ref().and_then(|h| {
        h.commit
            .as_ref()
            .filter(|_| h.branch.as_deref() == Some(&branch))
    });
    let commit = on_env_branch.cloned().or_else(|| {
        std::env::var("GITHUB_SHA")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| head.and_then(|h| h.commit))
    });
    crate::render::Origin { branch, commit }
}

async fn dispatch(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::EnvName { branch_or_ref } => {
            // Works without a nubes.toml, and with one (for a custom branch prefix).
            let prefix = settings(cli)?.branch_prefix;
            let env = EnvName::from_branch(branch_or_ref, &prefix)?;
            crate::outln!("{env}");
            Ok(())
        }
        Command::Init(args) => {
            // Works without a nubes.toml (it writes one).
            let root = cli.global.dir.clone().unwrap_or_else(|| PathBuf::from("."));
            commands::init::run(&root, cli.global.config.as_deref(), args)
        }
        Command::Run => commands::run::run(&settings(cli)?).await,
        Command::Up { env, refresh } => {
            let s = settings(cli)?;
            let env = s.env_name(env)?;
            commands::pipeline::up(&context(&s, &env), &env, *refresh).await
        }
        Command::Plan {
            env,
            json,
            markdown,
            detailed_exitcode,
        } => {
            let s = settings(cli)?;
            let env = s.env_name(env)?;
            commands::pipeline::plan(
                &context(&s, &env),
                &env,
                *json,
                *markdown,
                *detailed_exitcode,
            )
            .await
        }
        Command::Down {
            env,
            force,
            strategy,
            yes,
        } => {
            let s = settings(cli)?;
            let env = s.env_name(env)?;
            let ctx = context(&s, &env);
            // Protection is checked first (it needs --force, asked or not).
            if !*yes && crate::ui::interactive() && (*force || !s.protected(&env)) {
                commands::pipeline::confirm_down(&ctx, &env, *strategy).await?;
            }
            commands::pipeline::down(&ctx, &env, *force, *strategy).await
        }
        Command::Drift {
            envs,
            jobs,
            json,
            markdown,
            pending,
            fix,
            issue,
        } => {
            let options = commands::drift::Options {
                envs: envs.clone(),
                jobs: *jobs,
                json: *json,
                markdown: *markdown,
                pending: *pending,
                fix: *fix,
                issue: *issue,
            };
            commands::drift::run(&settings(cli)?, &options).await
        }
        Command::Reap {
            gone_branches,
            expired,
            older_than,
            warn,
            dry_run,
            jobs,
            json,
        } => {
            let flag_duration = |flag: &str, d: &Option<String>| {
                d.as_deref()
                    .map(|d| {
                        humantime::parse_duration(d).map_err(|e| {
                            crate::error::Error::input(format!(
                                "{flag} {} is not a duration ({e})",
                                quoted(d)
                            ))
                            .hint("use e.g. 7d, 36h or 90m")
                        })
                    })
                    .transpose()
            };
            let options = commands::reap::Options {
                gone_branches: *gone_branches,
                expired: *expired,
                older_than: flag_duration("--older-than", older_than)?,
                warn: flag_duration("--warn", warn)?,
                dry_run: *dry_run,
                jobs: *jobs,
                json: *json,
            };
            commands::reap::run(&settings(cli)?, &options).await
        }
        Command::Keep { env, until } => commands::keep::run(&settings(cli)?, env, until).await,
        Command::Releases { env, json } => {
            commands::releases::list(&settings(cli)?, env, *json).await
        }
        Command::Rollback { env, to } => {
            let s = settings(cli)?;
            let env = s.env_name(env)?;
            commands::releases::rollback(&context(&s, &env), &env, to.as_deref()).await
        }
        Command::Promote { from, to, force } => {
            let s = settings(cli)?;
            let from = s.env_name(from)?;
            let to = s.env_name(to)?;
            commands::releases::promote(&context(&s, &to), &from, &to, *force).await
        }
        Command::List { json, all } => commands::inspect::list(&settings(cli)?, *json, *all).await,
        Command::Dashboard {
            out,
            publish,
            account_url,
            prefix,
            versions,
        } => {
            let options = commands::dashboard::Options {
                out: Some(out.clone()),
                publish: *publish,
                account_url: account_url.clone(),
                prefix: prefix.clone(),
                versions: *versions,
            };
            commands::dashboard::run(&settings(cli)?, &options).await
        }
        Command::Status { env, json } => {
            commands::inspect::status(&settings(cli)?, env, *json).await
        }
        Command::Outputs {
            env,
            json,
            show_sensitive,
        } => commands::inspect::outputs(&settings(cli)?, env, *json, *show_sensitive).await,
        Command::Tf { env, args } => commands::tf::run(&settings(cli)?, env, args).await,
        Command::Unlock { env, yes } => commands::unlock::run(&settings(cli)?, env, *yes).await,
        Command::State(cmd) => commands::state::run(&settings(cli)?, cmd).await,
        // A missing nubes.toml is fine here (bootstrap usually comes first); settings
        // then hold the defaults.
        Command::Bootstrap(args) => commands::bootstrap::run(&settings(cli)?, args).await,
    }
}
