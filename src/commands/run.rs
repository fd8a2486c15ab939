//! `nubes run`: the GitHub Actions entry point. Reads the event and dispatches:
//! push to `env-*` → up; delete of an `env-*` branch → down; pull request into `env-*`
//! → plan; workflow_dispatch with inputs `environment` and `action`; anything else →
//! says why there is nothing to do. Outside Actions: the current git branch, as a push.

use serde_json::Value;

use crate::commands::pipeline as cmd;
use crate::config::Settings;
use crate::env_name::{EnvName, printable};
use crate::error::{Error, Result};
use crate::github::Github;
use crate::pipeline::{Context, Strategy};
use crate::render::Origin;

enum Action {
    Up(EnvName, Origin),
    Plan(EnvName, Origin),
    Down(EnvName, Origin),
    Nothing(String),
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn payload() -> Result<Value> {
    let Some(path) = var("GITHUB_EVENT_PATH") else {
        return Err(Error::input("GITHUB_EVENT_NAME is set but GITHUB_EVENT_PATH is not")
            .hint("nubes run reads the event payload GitHub Actions writes; outside Actions unset GITHUB_EVENT_NAME"));
    };
    let text = fs_err::read_to_string(&path)
        .map_err(|e| Error::input(format!("cannot read the event payload: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("the event payload {path} is not JSON: {e}")))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

fn decide(settings: &Settings) -> Result<Action> {
    let prefix = settings.branch_prefix.as_str();
    let sha = var("GITHUB_SHA");
    let Some(event) = var("GITHUB_EVENT_NAME") else {
        return local_branch(settings);
    };
    let p = payload()?;
    let in_scope = |branch: &str| {
        branch
            .strip_prefix("refs/heads/")
            .unwrap_or(branch)
            .starts_with(prefix)
    };
    match event.as_str() {
        "push" => {
            let Some(r) = str_at(&p, &["ref"])
                .map(str::to_string)
                .or_else(|| var("GITHUB_REF"))
            else {
                return Ok(Action::Nothing("the push event names no ref".into()));
            };
            if !r.starts_with("refs/heads/") {
                return Ok(Action::Nothing(format!(
                    "push of `{}`, which is not a branch",
                    printable(&r)
                )));
            }
            if !in_scope(&r) {
                return Ok(Action::Nothing(format!(
                    "push to `{}`, which is not an `{prefix}*` branch",
                    printable(&r)
                )));
            }
            if p.get("deleted").and_then(Value::as_bool) == Some(true) {
                return Ok(Action::Nothing(
                    "the push deleted the branch; the delete event tears it down".into(),
                ));
            }
            let env = EnvName::from_branch(&r, prefix)?;
            let commit = str_at(&p, &["after"]).map(str::to_string).or(sha);
            Ok(Action::Up(
                env.clone(),
                Origin {
                    branch: env.branch(prefix),
                    commit,
                },
            ))
        }
        "delete" => {
            if str_at(&p, &["ref_type"]) != Some("branch") {
                return Ok(Action::Nothing("a deleted tag has no environment".into()));
            }
            let r = str_at(&p, &["ref"]).unwrap_or_default();
            if !in_scope(r) {
                return Ok(Action::Nothing(format!(
                    "deleted branch `{}` is not an `{prefix}*` branch",
                    printable(r)
                )));
            }
            let env = EnvName::from_branch(r, prefix)?;
            Ok(Action::Down(
                env.clone(),
                Origin {
                    branch: env.branch(prefix),
                    commit: None,
                },
            ))
        }
        "pull_request" | "pull_request_target" => {
            let base = str_at(&p, &["pull_request", "base", "ref"]).unwrap_or_default();
            if !in_scope(base) {
                return Ok(Action::Nothing(format!(
                    "the pull request's base `{}` is not an `{prefix}*` branch",
                    printable(base)
                )));
            }
            let env = EnvName::from_branch(base, prefix)?;
            let commit = str_at(&p, &["pull_request", "head", "sha"])
                .map(str::to_string)
                .or(sha);
            Ok(Action::Plan(
                env.clone(),
                Origin {
                    branch: env.branch(prefix),
                    commit,
                },
            ))
        }
        "workflow_dispatch" => {
            let Some(target) = str_at(&p, &["inputs", "environment"]).filter(|s| !s.is_empty())
            else {
                return Err(Error::input("workflow_dispatch needs the input `environment`")
                    .hint("declare inputs `environment` and `action` (up, plan or down) in the workflow"));
            };
            let env = settings.env_name(target)?;
            let origin = Origin {
                branch: env.branch(prefix),
                commit: sha,
            };
            match str_at(&p, &["inputs", "action"]).unwrap_or("up") {
                "up" => Ok(Action::Up(env, origin)),
                "plan" => Ok(Action::Plan(env, origin)),
                "down" => Ok(Action::Down(env, origin)),
                other => Err(Error::input(format!(
                    "workflow_dispatch input `action` is `{}`",
                    printable(other)
                ))
                .hint("allowed values: up, plan, down")),
            }
        }
        other => Ok(Action::Nothing(format!(
            "the `{}` event does not change environments",
            printable(other)
        ))),
    }
}

fn local_branch(settings: &Settings) -> Result<Action> {
    let Some(head) = crate::git::head(&settings.root) else {
        return Ok(Action::Nothing(
            "not in GitHub Actions and not in a git repository".into(),
        ));
    };
    let Some(branch) = head.branch else {
        return Ok(Action::Nothing(
            "HEAD is detached, so there is no branch".into(),
        ));
    };
    if !branch.starts_with(&settings.branch_prefix) {
        return Ok(Action::Nothing(format!(
            "the current branch `{}` is not an `{}*` branch",
            printable(&branch),
            settings.branch_prefix
        )));
    }
    let env = EnvName::from_branch(&branch, &settings.branch_prefix)?;
    Ok(Action::Up(
        env,
        Origin {
            branch,
            commit: head.commit,
        },
    ))
}

pub async fn run(settings: &Settings) -> Result<()> {
    let action = decide(settings)?;
    let gh = Github::from_env();
    let actor = var("GITHUB_ACTOR");
    let ctx = |origin: Origin| Context {
        settings,
        gh: gh.clone(),
        origin,
        actor: actor.clone(),
        quiet: false,
    };
    match action {
        Action::Nothing(why) => {
            crate::outln!("nothing to do: {why}");
            Ok(())
        }
        Action::Up(env, origin) => cmd::up(&ctx(origin), &env, false).await,
        Action::Plan(env, origin) => cmd::plan(&ctx(origin), &env, false, false, false).await,
        Action::Down(env, origin) => {
            cmd::down(&ctx(origin), &env, false, Strategy::Terraform).await
        }
    }
}
