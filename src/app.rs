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
    tracing::debug!("{} artifact file reads", crate::deploy::artifact_reads());
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

/// The environment named on the command line, else the current branch's when it is an
/// `env-*` branch (said, so nobody wonders which one), else a refusal naming the branch.
fn env_or_branch(s: &Settings, given: Option<&str>, command: &str) -> Result<EnvName> {
    if let Some(e) = given {
        return s.env_name(e);
    }
    let branch = crate::git::head(&s.root).and_then(|h| h.branch);
    let prefix = &s.branch_prefix;
    match branch {
        Some(b) if b.starts_with(prefix.as_str()) => {
            let env = EnvName::from_branch(&b, prefix)?;
            tracing::info!("environment `{env}` (from the current branch {b})");
            Ok(env)
        }
        Some(b) => Err(crate::error::Error::input(format!(
            "no environment given, and the current branch {} is not an {prefix}* branch",
            quoted(&b)
        ))
        .hint(format!(
            "name one (`nubes {command} alice`), or switch to the environment's branch ({prefix}<name>)"
        ))),
        None => Err(crate::error::Error::input(
            "no environment given, and there is no current branch here to take it from",
        )
        .hint(format!("name one: `nubes {command} alice`"))),
    }
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
        review: Default::default(),
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
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "nubes", &mut out);
            crate::out!("{}", String::from_utf8_lossy(&out));
            Ok(())
        }
        Command::Man { out } => commands::man::run(out.as_deref()),
        Command::Init(args) => {
            // Works without a nubes.toml (it writes one).
            let root = cli.global.dir.clone().unwrap_or_else(|| PathBuf::from("."));
            commands::init::run(&root, cli.global.config.as_deref(), args)
        }
        Command::Run { json } => {
            // `run` prints the error document of what it dispatched itself.
            match settings(cli) {
                Ok(s) => commands::run::run(&s, *json).await,
                Err(e) => commands::json::on_failure(*json, "run", None, Err(e)),
            }
        }
        Command::Up {
            env,
            refresh,
            accept_unreviewed,
            json,
        } => {
            let r = async {
                let s = settings(cli)?;
                let env = env_or_branch(&s, env.as_deref(), "up")?;
                let mut ctx = context(&s, &env);
                ctx.review.accept_unreviewed = *accept_unreviewed;
                commands::pipeline::up(&ctx, &env, *refresh, *json).await
            }
            .await;
            commands::json::on_failure(*json, "up", env.as_deref(), r)
        }
        Command::Plan {
            env,
            json,
            markdown,
            detailed_exitcode,
        } => {
            let r = async {
                let s = settings(cli)?;
                let env = env_or_branch(&s, env.as_deref(), "plan")?;
                commands::pipeline::plan(
                    &context(&s, &env),
                    &env,
                    *json,
                    *markdown,
                    *detailed_exitcode,
                )
                .await
            }
            .await;
            commands::json::on_failure(*json, "plan", env.as_deref(), r)
        }
        Command::Down {
            env,
            force,
            strategy,
            yes,
            json,
        } => {
            let r = async {
                let s = settings(cli)?;
                let env = s.env_name(env)?;
                let ctx = context(&s, &env);
                // Protection is checked first (it needs --force, asked or not).
                if !*yes && crate::ui::interactive() && (*force || !s.protected(&env)) {
                    commands::pipeline::confirm_down(&ctx, &env, *strategy).await?;
                }
                commands::pipeline::down(&ctx, &env, *force, *strategy, *json).await
            }
            .await;
            commands::json::on_failure(*json, "down", Some(env), r)
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
        Command::Rollback { env, to, json } => {
            let s = settings(cli)?;
            let env = s.env_name(env)?;
            let r =
                commands::releases::rollback(&context(&s, &env), &env, to.as_deref(), *json).await;
            commands::json::on_failure(*json, "rollback", Some(env.as_str()), r)
        }
        Command::Promote {
            from,
            to,
            force,
            json,
        } => {
            let s = settings(cli)?;
            let from = s.env_name(from)?;
            let to = s.env_name(to)?;
            let r = commands::releases::promote(&context(&s, &to), &from, &to, *force, *json).await;
            commands::json::on_failure(*json, "promote", Some(to.as_str()), r)
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
            let s = settings(cli)?;
            let env = env_or_branch(&s, env.as_deref(), "status")?;
            commands::inspect::status(&s, env.as_str(), *json).await
        }
        Command::Outputs {
            env,
            json,
            show_sensitive,
        } => commands::inspect::outputs(&settings(cli)?, env, *json, *show_sensitive).await,
        Command::Tf { env, args } => commands::tf::run(&settings(cli)?, env, args).await,
        Command::Doctor { json } => commands::doctor::run(settings(cli), *json).await,
        Command::Unlock { env, yes } => commands::unlock::run(&settings(cli)?, env, *yes).await,
        Command::State(cmd) => commands::state::run(&settings(cli)?, cmd).await,
        // A missing nubes.toml is fine here (bootstrap usually comes first); settings
        // then hold the defaults.
        Command::Bootstrap(args) => commands::bootstrap::run(&settings(cli)?, args).await,
        Command::Env(cmd) => env_command(cli, cmd).await,
    }
}

async fn env_command(cli: &Cli, cmd: &crate::cli::EnvCommand) -> Result<()> {
    use crate::cli::EnvCommand;
    use commands::env;
    let s = settings(cli)?;
    match cmd {
        EnvCommand::New {
            name,
            from,
            no_wait,
            timeout,
        } => {
            let options = env::NewOptions {
                from: Some(from.clone()),
                no_wait: *no_wait,
                timeout: env::parse_timeout(timeout)?,
            };
            env::new(&s, name, &options).await
        }
        EnvCommand::Open { name, print } => env::open(&s, name, *print).await,
        EnvCommand::Rm {
            name,
            local,
            yes,
            no_wait,
            timeout,
        } => {
            let options = env::RmOptions {
                local: *local,
                yes: *yes,
                no_wait: *no_wait,
                timeout: env::parse_timeout(timeout)?,
            };
            env::rm(&s, name, &options).await
        }
        EnvCommand::Ls { user, json } => env::ls(&s, user, *json).await,
    }
}
