//! `nubes run`: the GitHub Actions entry point. Reads the event and dispatches:
//! push to `env-*` → up; delete of an `env-*` branch → down; pull request into `env-*`
//! (activity opened, synchronize, reopened, ready_for_review) → plan;
//! workflow_dispatch with inputs `environment` and `action` (up/plan only from the env's
//! own branch); pull_request_target → refused; anything else → says why there is nothing
//! to do. Outside Actions: the current git branch, as a push.
//!
//! Short branch names from payloads are taken literally (never stripped of
//! `refs/heads/`), and every payload string in a message goes through
//! [`quoted`]/[`printable`].

use serde_json::Value;

use crate::commands::pipeline as cmd;
use crate::config::Settings;
use crate::env_name::{EnvName, printable, quoted};
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
    /// `workflow_dispatch` with `action: promote`: the release live in the first env
    /// into the second (the dispatched branch's).
    Promote(EnvName, EnvName, Origin),
    Nothing(String),
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Read and parse the event payload GitHub Actions wrote to `path`.
pub fn read_payload(path: &str) -> Result<Value> {
    // std::fs, not fs_err: the path goes into the message escaped, like every value
    // from the environment, and io::Error's own text does not repeat it.
    let bytes = std::fs::read(path).map_err(|e| {
        Error::input(format!(
            "cannot read the event payload {} (GITHUB_EVENT_PATH): {e}",
            quoted(path)
        ))
    })?;
    parse_payload(&bytes).map_err(|e| e.context(format!("the event payload {}", quoted(path))))
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
        "the {} event payload is malformed: `{}` is {}, not a commit SHA",
        printable(event),
        path.join("."),
        quoted(sha)
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
    let prefix = &settings.branch_prefix;
    let github_ref = var("GITHUB_REF");
    let action = action_for(
        &event,
        &payload,
        prefix,
        var("GITHUB_SHA"),
        github_ref.clone(),
    )?;
    if let Action::Down(env, _) = &action
        && let Some(note) = dispatched_down_note(&event, &payload, prefix, github_ref, env)?
    {
        tracing::warn!("{note}");
    }
    Ok(action)
}

/// The `pull_request` activity types that can change what a plan shows: GitHub's
/// defaults for the trigger (`opened`, `synchronize`, `reopened`) and a draft becoming
/// ready. `closed`, `labeled`, `locked`, `edited`, ... leave the code as it was (a merge
/// is followed by a push to the base branch, which brings the environment up).
pub const PLANNED_PULL_REQUEST_ACTIVITY: &[&str] =
    &["opened", "synchronize", "reopened", "ready_for_review"];

/// Why a short branch name taken from a payload is not an env branch. GitHub's `delete`
/// `ref` and `pull_request.base.ref` carry the short name, so a name starting with
/// `refs/` is a branch literally named so (git allows it), never a full ref to strip.
fn not_env_branch(what: &str, name: &str, prefix: &str) -> String {
    let mut why = format!("{what} {} is not an `{prefix}*` branch", quoted(name));
    if name.starts_with("refs/") {
        why.push_str(
            " (this field holds a short branch name, so the branch is literally named so)",
        );
    }
    why
}

/// The full ref a `workflow_dispatch` run checked out: `GITHUB_REF`, or the payload's
/// `ref` (the same value, as GitHub writes both).
fn dispatched_ref(p: &Value, github_ref: Option<String>) -> Result<Option<String>> {
    Ok(github_ref.or(str_at("workflow_dispatch", p, &["ref"])?.map(str::to_string)))
}

/// The workflow file a `workflow_dispatch` run came from, as `gh workflow run` takes it
/// (the file name), or a placeholder.
fn dispatched_workflow(p: &Value) -> String {
    p.get("workflow")
        .and_then(Value::as_str)
        .and_then(|w| w.rsplit('/').next())
        .filter(|w| !w.is_empty())
        .map_or_else(|| "<workflow file>".to_string(), printable)
}

/// What a `down` dispatched from a branch other than the environment's needs, said
/// before it starts (`None` when it runs on the env branch or is not a dispatch).
pub fn dispatched_down_note(
    event: &str,
    p: &Value,
    prefix: &str,
    github_ref: Option<String>,
    env: &EnvName,
) -> Result<Option<String>> {
    if event != "workflow_dispatch" {
        return Ok(None);
    }
    let branch = env.branch(prefix);
    let ran_on = dispatched_ref(p, github_ref)?;
    if ran_on.as_deref() == Some(format!("refs/heads/{branch}").as_str()) {
        return Ok(None);
    }
    let ran_on = ran_on.map_or_else(|| "an unknown ref".to_string(), |r| quoted(&r));
    Ok(Some(format!(
        "down `{env}` was dispatched from {ran_on}, not `{branch}`: `terraform destroy` uses the \
         terraform/ checked out here, which must still configure every provider `{env}`'s state \
         uses; `nubes down {env} --strategy resource-group` needs no configuration (only the \
         subscription and an identity allowed to delete resource groups)"
    )))
}

/// What the event `event` with `payload` asks for. `sha` and `github_ref` are the
/// `GITHUB_SHA`/`GITHUB_REF` values.
///
/// Which payload fields hold a full ref and which a short branch name follows GitHub's
/// webhook documentation ("Webhook events and payloads"): `push`'s `ref`, the
/// `workflow_dispatch` payload's `ref` and `GITHUB_REF` are full refs
/// (`refs/heads/env-alice`) and lose `refs/heads/`; `delete`'s and `create`'s `ref` and
/// `pull_request.base.ref`/`head.ref` are short names, taken literally.
pub fn action_for(
    event: &str,
    p: &Value,
    prefix: &str,
    sha: Option<String>,
    github_ref: Option<String>,
) -> Result<Action> {
    match event {
        "push" => {
            let Some(r) = str_at(event, p, &["ref"])?
                .map(str::to_string)
                .or(github_ref)
            else {
                return Ok(Action::Nothing("the push event names no ref".into()));
            };
            let Some(branch) = r.strip_prefix("refs/heads/") else {
                return Ok(Action::Nothing(format!(
                    "push of {}, which is not a branch",
                    quoted(&r)
                )));
            };
            if !branch.starts_with(prefix) {
                return Ok(Action::Nothing(format!(
                    "push to {}, which is not an `{prefix}*` branch",
                    quoted(&r)
                )));
            }
            if bool_at(event, p, "deleted")? == Some(true) {
                return Ok(Action::Nothing(
                    "the push deleted the branch; the delete event tears it down".into(),
                ));
            }
            let env = EnvName::from_short_branch(branch, prefix)?;
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
            match str_at(event, p, &["ref_type"])? {
                Some("branch") => {}
                Some("tag") => {
                    return Ok(Action::Nothing("a deleted tag has no environment".into()));
                }
                Some(other) => {
                    return Ok(Action::Nothing(format!(
                        "the delete event's `ref_type` is {}, not `branch`",
                        quoted(other)
                    )));
                }
                None => {
                    return Ok(Action::Nothing(
                        "the delete event has no `ref_type`, so nothing says a branch was deleted"
                            .into(),
                    ));
                }
            }
            let Some(r) = str_at(event, p, &["ref"])? else {
                return Ok(Action::Nothing(
                    "the delete event names no deleted branch (no `ref`)".into(),
                ));
            };
            if !r.starts_with(prefix) {
                return Ok(Action::Nothing(not_env_branch("deleted branch", r, prefix)));
            }
            let env = EnvName::from_short_branch(r, prefix)?;
            Ok(Action::Down(
                env.clone(),
                Origin {
                    branch: env.branch(prefix),
                    commit: None,
                },
            ))
        }
        "pull_request" => {
            // Every field read first, so that a malformed one is refused whatever the
            // activity.
            let activity = str_at(event, p, &["action"])?;
            let base = str_at(event, p, &["pull_request", "base", "ref"])?;
            let head = commit_at(event, p, &["pull_request", "head", "sha"])?;
            let Some(activity) = activity else {
                return Ok(Action::Nothing(
                    "the pull_request event names no activity type (no `action`)".into(),
                ));
            };
            if !PLANNED_PULL_REQUEST_ACTIVITY.contains(&activity) {
                return Ok(Action::Nothing(format!(
                    "pull request activity {} does not change the code to plan (nubes plans on {})",
                    quoted(activity),
                    PLANNED_PULL_REQUEST_ACTIVITY.join(", ")
                )));
            }
            let Some(base) = base else {
                return Ok(Action::Nothing(
                    "the pull request names no base branch (no `pull_request.base.ref`)".into(),
                ));
            };
            if !base.starts_with(prefix) {
                return Ok(Action::Nothing(not_env_branch(
                    "the pull request's base",
                    base,
                    prefix,
                )));
            }
            let env = EnvName::from_short_branch(base, prefix)?;
            let commit = head.or(sha);
            Ok(Action::Plan(
                env.clone(),
                Origin {
                    branch: env.branch(prefix),
                    commit,
                },
            ))
        }
        // Checking out the pull request's head here would run its author's Terraform
        // (providers, external data sources, provisioners) with this repository's secrets
        // and write access: that is not sound, so there is no option for it.
        "pull_request_target" => Err(Error::input(
            "nubes does not plan on `pull_request_target`: GitHub runs it with the workflow \
             and checkout of the default branch (GITHUB_REF is the default branch), so the \
             Terraform here is neither the pull request's nor its base branch's, and its plan \
             would show changes nobody proposed",
        )
        .hint(format!(
            "trigger on `pull_request` (types: {}) instead; checking out the pull request's \
             head under `pull_request_target` would run its author's Terraform with this \
             repository's secrets",
            PLANNED_PULL_REQUEST_ACTIVITY.join(", ")
        ))),
        "workflow_dispatch" => dispatch(p, prefix, sha, github_ref),
        "create" => Ok(Action::Nothing(
            "the `create` event does not change environments (the push that comes with a new \
             branch brings its environment up)"
                .into(),
        )),
        other => Ok(Action::Nothing(format!(
            "the {} event does not change environments",
            quoted(other)
        ))),
    }
}

/// `workflow_dispatch` with inputs `environment` and `action` (both required). `up` and
/// `plan` use the checked-out configuration, so they run only on the env's own branch;
/// `down` may run from anywhere (see [`dispatched_down_note`]).
fn dispatch(
    p: &Value,
    prefix: &str,
    sha: Option<String>,
    github_ref: Option<String>,
) -> Result<Action> {
    const EVENT: &str = "workflow_dispatch";
    let Some(target) = str_at(EVENT, p, &["inputs", "environment"])?.filter(|s| !s.is_empty())
    else {
        return Err(
            Error::input("workflow_dispatch needs the input `environment`").hint(
                "declare inputs `environment` and `action` (up, plan or down) in the workflow",
            ),
        );
    };
    let env = EnvName::from_arg(target, prefix)?;
    let action = match str_at(EVENT, p, &["inputs", "action"])? {
        None | Some("") => {
            return Err(Error::input(format!(
                "workflow_dispatch needs the input `action` to say what to do with `{env}`"
            ))
            .hint(
                "declare a required input `action` (type: choice, options: up, plan, down) in \
                 the workflow; nubes does not guess",
            ));
        }
        Some(a @ ("up" | "plan" | "down" | "promote")) => a,
        Some(other) => {
            return Err(Error::input(format!(
                "workflow_dispatch input `action` is {}",
                quoted(other)
            ))
            .hint("allowed values: up, plan, down, promote"));
        }
    };
    let branch = env.branch(prefix);
    let ran_on = dispatched_ref(p, github_ref)?;
    let on_env_branch = ran_on.as_deref() == Some(format!("refs/heads/{branch}").as_str());
    if action != "down" && !on_env_branch {
        let from = ran_on.map_or_else(|| "an unknown ref".to_string(), |r| quoted(&r));
        let verb = if action == "plan" { "plan" } else { "apply" };
        return Err(Error::input(format!(
            "workflow_dispatch `{action}` of `{env}` ran on {from}, not on `{branch}`: it would \
             {verb} that checkout's configuration as `{env}`"
        ))
        .hint(format!(
            "run the workflow from `{branch}`: under Run workflow choose \"Use workflow from: \
             {branch}\", or `gh workflow run {} --ref {branch} -f environment={env} -f \
             action={action}`",
            dispatched_workflow(p)
        )));
    }
    let origin = Origin {
        branch,
        commit: sha,
    };
    if action == "promote" {
        return Ok(Action::Promote(
            promoted_from(p, prefix, &env)?,
            env,
            origin,
        ));
    }
    Ok(match action {
        "up" => Action::Up(env, origin),
        "plan" => Action::Plan(env, origin),
        _ => Action::Down(env, origin),
    })
}

/// The input `from` of a dispatched `promote`: the environment whose live release is
/// promoted into `to`.
fn promoted_from(p: &Value, prefix: &str, to: &EnvName) -> Result<EnvName> {
    let Some(from) = str_at("workflow_dispatch", p, &["inputs", "from"])?.filter(|s| !s.is_empty())
    else {
        return Err(Error::input(format!(
            "workflow_dispatch `promote` into `{to}` needs the input `from`"
        ))
        .hint("declare an input `from` (the environment whose live release is promoted)"));
    };
    EnvName::from_arg(from, prefix)
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
    // A short name (git's shorthand of refs/heads/...), taken literally.
    if !branch.starts_with(&settings.branch_prefix) {
        return Ok(Action::Nothing(format!(
            "the current branch {} is not an `{}*` branch",
            quoted(&branch),
            settings.branch_prefix
        )));
    }
    let env = EnvName::from_short_branch(&branch, &settings.branch_prefix)?;
    Ok(Action::Up(
        env,
        Origin {
            branch,
            commit: head.commit,
        },
    ))
}

/// The pull request of a `pull_request` event, for its plan comment and reviewed-plan
/// record (the payload was read and checked by [`decide`]).
fn pull_request() -> Option<crate::review::PullRequest> {
    if var("GITHUB_EVENT_NAME").as_deref() != Some("pull_request") {
        return None;
    }
    let payload = read_payload(&var("GITHUB_EVENT_PATH")?).ok()?;
    crate::review::PullRequest::from_payload(&payload)
}

pub async fn run(settings: &Settings, json: bool) -> Result<()> {
    let action = super::json::on_failure(json, "run", None, decide(settings))?;
    let gh = Github::from_env();
    let actor = var("GITHUB_ACTOR");
    let review = crate::review::Review {
        pull_request: pull_request(),
        accept_unreviewed: false,
    };
    let ctx = |origin: Origin| Context {
        settings,
        gh: gh.clone(),
        origin,
        actor: actor.clone(),
        quiet: false,
        review: review.clone(),
    };
    match action {
        Action::Nothing(why) => {
            if json {
                let mut doc = super::json::head("run", None, true);
                doc.insert("action".into(), serde_json::json!("nothing"));
                doc.insert("reason".into(), serde_json::json!(why.to_string()));
                super::json::print(doc);
            } else {
                crate::outln!("nothing to do: {why}");
            }
            Ok(())
        }
        // The document is the dispatched command's own (`"command": "up"`, ...).
        Action::Up(env, origin) => {
            let r = cmd::up(&ctx(origin), &env, false, json).await;
            super::json::on_failure(json, "up", Some(env.as_str()), r)
        }
        Action::Plan(env, origin) => {
            let r = cmd::plan(&ctx(origin), &env, json, false, false).await;
            super::json::on_failure(json, "plan", Some(env.as_str()), r)
        }
        Action::Down(env, origin) => {
            let r = cmd::down(&ctx(origin), &env, false, Strategy::Terraform, json).await;
            super::json::on_failure(json, "down", Some(env.as_str()), r)
        }
        Action::Promote(from, to, origin) => {
            let r = crate::commands::releases::promote(&ctx(origin), &from, &to, false, json).await;
            super::json::on_failure(json, "promote", Some(to.as_str()), r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload of GitHub's `workflow_dispatch` event (as in
    /// tests/fixtures/events/workflow_dispatch.json) with the given inputs.
    fn dispatched(inputs: Value) -> Value {
        serde_json::json!({
            "inputs": inputs,
            "ref": "refs/heads/env-production",
            "repository": { "name": "petclinic", "full_name": "octo-org/petclinic" },
            "workflow": ".github/workflows/nubes.yml"
        })
    }

    #[test]
    fn a_dispatched_promote_names_both_environments_and_runs_on_the_target_branch() {
        let p = dispatched(
            serde_json::json!({ "environment": "production", "action": "promote", "from": "candidate" }),
        );
        match action_for("workflow_dispatch", &p, "env-", None, None).expect("action") {
            Action::Promote(from, to, origin) => {
                assert_eq!((from.as_str(), to.as_str()), ("candidate", "production"));
                assert_eq!(origin.branch, "env-production");
            }
            other => panic!("{other:?}"),
        }
        let without_from =
            dispatched(serde_json::json!({ "environment": "production", "action": "promote" }));
        let e = action_for("workflow_dispatch", &without_from, "env-", None, None)
            .expect_err("needs from");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("input `from`"), "{e}");
        // From another branch it would apply that checkout's configuration: refused.
        let mut elsewhere = p.clone();
        elsewhere["ref"] = "refs/heads/main".into();
        let e = action_for("workflow_dispatch", &elsewhere, "env-", None, None)
            .expect_err("wrong branch");
        assert!(e.to_string().contains("not on `env-production`"), "{e}");
    }
}
