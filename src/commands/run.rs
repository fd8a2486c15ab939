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

/// What an event asks for.
#[derive(Debug)]
pub enum Action {
    Up(EnvName, Origin),
    Plan(EnvName, Origin),
    Down(EnvName, Origin),
    Nothing(String),
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Read and parse the event payload GitHub Actions wrote to `path`.
pub fn read_payload(path: &str) -> Result<Value> {
    let bytes = fs_err::read(path)
        .map_err(|e| Error::input(format!("cannot read the event payload: {e}")))?;
    parse_payload(&bytes).map_err(|e| e.context(format!("the event payload {}", printable(path))))
}

/// Parse an event payload: a JSON object, or an input error saying what is wrong.
pub fn parse_payload(bytes: &[u8]) -> Result<Value> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::input(format!("is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::input(format!(
            "is {}, not a JSON object",
            kind(&value)
        )));
    }
    Ok(value)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The string at `path`: `None` when absent (or null), an input error when present with
/// another type (a malformed payload must not be read as "no value").
fn str_at<'a>(event: &str, v: &'a Value, path: &[&str]) -> Result<Option<&'a str>> {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        match cur {
            Value::Object(map) => match map.get(*key) {
                Some(next) => cur = next,
                None => return Ok(None),
            },
            Value::Null => return Ok(None),
            other => return Err(wrong_type(event, &path[..i], other, "an object")),
        }
    }
    match cur {
        Value::String(s) => Ok(Some(s)),
        Value::Null => Ok(None),
        other => Err(wrong_type(event, path, other, "a string")),
    }
}

/// A commit SHA at `path`: hex, as GitHub writes it. It ends up in blob metadata (an
/// HTTP header), tags and templates, so anything else is refused rather than carried.
fn commit_at(event: &str, v: &Value, path: &[&str]) -> Result<Option<String>> {
    let Some(sha) = str_at(event, v, path)? else {
        return Ok(None);
    };
    if (4..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Some(sha.to_string()));
    }
    Err(Error::input(format!(
        "the {} event payload is malformed: `{}` is `{}`, not a commit SHA",
        printable(event),
        path.join("."),
        printable(sha)
    ))
    .hint("nubes reads the payload GitHub Actions writes to GITHUB_EVENT_PATH; do not replace it"))
}

fn bool_at(event: &str, v: &Value, key: &str) -> Result<Option<bool>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(event, &[key], other, "a boolean")),
    }
}

fn wrong_type(event: &str, path: &[&str], found: &Value, wanted: &str) -> Error {
    let field = if path.is_empty() {
        "the payload".to_string()
    } else {
        format!("`{}`", path.join("."))
    };
    Error::input(format!(
        "the {} event payload is malformed: {field} is {}, not {wanted}",
        printable(event),
        kind(found)
    ))
    .hint("nubes reads the payload GitHub Actions writes to GITHUB_EVENT_PATH; do not replace it")
}

fn decide(settings: &Settings) -> Result<Action> {
    let Some(event) = var("GITHUB_EVENT_NAME") else {
        return local_branch(settings);
    };
    let Some(path) = var("GITHUB_EVENT_PATH") else {
        return Err(Error::input("GITHUB_EVENT_NAME is set but GITHUB_EVENT_PATH is not")
            .hint("nubes run reads the event payload GitHub Actions writes; outside Actions unset GITHUB_EVENT_NAME"));
    };
    let payload = read_payload(&path)?;
    action_for(
        &event,
        &payload,
        &settings.branch_prefix,
        var("GITHUB_SHA"),
        var("GITHUB_REF"),
    )
}

/// What the event `event` with `payload` asks for. `sha` and `github_ref` are the
/// `GITHUB_SHA`/`GITHUB_REF` fallbacks.
pub fn action_for(
    event: &str,
    p: &Value,
    prefix: &str,
    sha: Option<String>,
    github_ref: Option<String>,
) -> Result<Action> {
    let in_scope = |branch: &str| {
        branch
            .strip_prefix("refs/heads/")
            .unwrap_or(branch)
            .starts_with(prefix)
    };
    match event {
        "push" => {
            let Some(r) = str_at(event, p, &["ref"])?
                .map(str::to_string)
                .or(github_ref)
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
            if bool_at(event, p, "deleted")? == Some(true) {
                return Ok(Action::Nothing(
                    "the push deleted the branch; the delete event tears it down".into(),
                ));
            }
            let env = EnvName::from_branch(&r, prefix)?;
            let commit = commit_at(event, p, &["after"])?.or(sha);
            Ok(Action::Up(
                env.clone(),
                Origin {
                    branch: env.branch(prefix),
                    commit,
                },
            ))
        }
        "delete" => {
            if str_at(event, p, &["ref_type"])? != Some("branch") {
                return Ok(Action::Nothing("a deleted tag has no environment".into()));
            }
            let r = str_at(event, p, &["ref"])?.unwrap_or_default();
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
            let base = str_at(event, p, &["pull_request", "base", "ref"])?.unwrap_or_default();
            if !in_scope(base) {
                return Ok(Action::Nothing(format!(
                    "the pull request's base `{}` is not an `{prefix}*` branch",
                    printable(base)
                )));
            }
            let env = EnvName::from_branch(base, prefix)?;
            let commit = commit_at(event, p, &["pull_request", "head", "sha"])?.or(sha);
            Ok(Action::Plan(
                env.clone(),
                Origin {
                    branch: env.branch(prefix),
                    commit,
                },
            ))
        }
        "workflow_dispatch" => {
            let Some(target) =
                str_at(event, p, &["inputs", "environment"])?.filter(|s| !s.is_empty())
            else {
                return Err(Error::input("workflow_dispatch needs the input `environment`")
                    .hint("declare inputs `environment` and `action` (up, plan or down) in the workflow"));
            };
            let env = EnvName::from_arg(target, prefix)?;
            let origin = Origin {
                branch: env.branch(prefix),
                commit: sha,
            };
            match str_at(event, p, &["inputs", "action"])?.unwrap_or("up") {
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
