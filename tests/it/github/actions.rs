//! The part of the in-test GitHub server `nubes env` talks to: workflow runs and their
//! jobs, deployments and their statuses (read), the token's user, and the repository's
//! branch-creation activity. Like the rest of [`super::fake`], every request and answer
//! is held to GitHub's published description.
//!
//! GitHub reacts to pushes, so this does too: it watches a real bare repository (the
//! test's `origin`) and, whenever a request arrives, turns what changed there into what
//! GitHub would have recorded. A new or moved `refs/heads/*` is a `push` run on that
//! branch at its tip (and a new branch a `branch_creation` activity by the token's user);
//! a deleted one is a `delete` run, which GitHub attributes to the default branch
//! (<https://docs.github.com/en/actions/writing-workflows/choosing-when-your-workflow-runs/events-that-trigger-workflows#delete>).
//! Runs advance one stage per read of the run (queued, then each step in progress, then
//! completed with the scripted conclusion), so a client that polls sees what GitHub
//! shows. A `push` run to an `env-*` branch that succeeds records what nubes's `up`
//! records there: a deployment of environment `env-<name>` at that commit with an
//! `in_progress` and then a `success` status carrying `environment_url`.
//!
//! Sources: <https://docs.github.com/en/rest/actions/workflow-runs>,
//! <https://docs.github.com/en/rest/actions/workflow-jobs>,
//! <https://docs.github.com/en/rest/deployments/deployments>,
//! <https://docs.github.com/en/rest/deployments/statuses>,
//! <https://docs.github.com/en/rest/repos/repos#list-repository-activities>,
//! <https://docs.github.com/en/rest/users/users#get-the-authenticated-user>.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::fake::{Answer, OWNER, REPO, answer, error, now_text, user};
use super::openapi::Spec;

/// The steps of the scripted workflow's one job, in order.
pub const STEPS: &[&str] = &["Set up job", "Check out", "nubes run", "Complete job"];
pub const WORKFLOW: &str = "nubes";

/// How a branch's runs end, and the URL a successful `up` reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub conclusion: String,
    pub url: Option<String>,
}

#[derive(Debug, Clone)]
struct Run {
    id: u64,
    event: String,
    head_branch: String,
    head_sha: String,
    created_at: String,
    /// Reads of the run so far: 0 queued, 1..=STEPS in progress, then completed.
    reads: usize,
    conclusion: String,
    /// For a successful push to `env-*`: the URL its deployment reports.
    url: Option<String>,
    deployed: bool,
}

impl Run {
    fn completed(&self) -> bool {
        self.reads > STEPS.len()
    }
}

#[derive(Default)]
pub struct ActionsState {
    origin: Option<PathBuf>,
    default_branch: String,
    refs: BTreeMap<String, String>,
    runs: Vec<Run>,
    /// Deployments (each with its statuses, oldest first) that finished runs left, for the
    /// main fake to take into the one deployment store `up`'s own calls write to.
    pub(super) new_deployments: Vec<(Value, Vec<Value>)>,
    activities: Vec<Value>,
    /// The user the token belongs to; `None`: an installation token (no user).
    login: Option<String>,
    outcomes: BTreeMap<String, Outcome>,
    next_id: u64,
}

impl ActionsState {
    /// Watch the bare repository at `origin` from now on (what is there already is
    /// history, not news).
    pub fn watch(&mut self, origin: PathBuf, default_branch: &str, login: Option<&str>) {
        self.refs = heads(&origin);
        self.origin = Some(origin);
        self.default_branch = default_branch.into();
        self.login = login.map(str::to_string);
        self.next_id = 7_000_000;
    }

    /// How the runs of `branch` end (default: success, no URL).
    pub fn script(&mut self, branch: &str, outcome: Outcome) {
        self.outcomes.insert(branch.into(), outcome);
    }

    /// Runs recorded so far: (event, head_branch, status as last shown).
    pub fn runs(&self) -> Vec<(String, String, bool)> {
        self.runs
            .iter()
            .map(|r| (r.event.clone(), r.head_branch.clone(), r.completed()))
            .collect()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Turn what changed in the watched repository into runs and activity (done before
    /// every request; a test calls it after a push no request follows, as GitHub sees
    /// every push whether anyone asks or not).
    pub fn sync(&mut self) {
        let Some(origin) = self.origin.clone() else {
            return;
        };
        let now = heads(&origin);
        let login = self.login.clone().unwrap_or_else(|| "octocat".into());
        for (branch, sha) in &now {
            let before = self.refs.get(branch).cloned();
            if before.as_deref() == Some(sha.as_str()) {
                continue;
            }
            if before.is_none() {
                let id = self.id();
                let mut actor = user(&login);
                actor["id"] = json!(1);
                self.activities.push(json!({
                    "id": id, "node_id": format!("RA_{id}"),
                    "before": "0000000000000000000000000000000000000000", "after": sha,
                    "ref": format!("refs/heads/{branch}"), "timestamp": now_text(),
                    "activity_type": "branch_creation", "actor": actor,
                }));
            }
            let outcome = self.outcome(branch);
            let id = self.id();
            self.runs.push(Run {
                id,
                event: "push".into(),
                head_branch: branch.clone(),
                head_sha: sha.clone(),
                created_at: now_text(),
                reads: 0,
                conclusion: outcome.conclusion,
                url: outcome.url,
                deployed: false,
            });
        }
        for branch in self.refs.keys() {
            if now.contains_key(branch) {
                continue;
            }
            let outcome = self.outcome(branch);
            let sha = now
                .get(&self.default_branch)
                .cloned()
                .unwrap_or_else(|| "0".repeat(40));
            let id = self.next_id + 1;
            self.next_id = id;
            self.runs.push(Run {
                id,
                event: "delete".into(),
                head_branch: self.default_branch.clone(),
                head_sha: sha,
                created_at: now_text(),
                reads: 0,
                conclusion: outcome.conclusion,
                url: None,
                deployed: false,
            });
        }
        self.refs = now;
    }

    fn outcome(&self, branch: &str) -> Outcome {
        self.outcomes.get(branch).cloned().unwrap_or(Outcome {
            conclusion: "success".into(),
            url: None,
        })
    }
}

/// `refs/heads/*` of a bare repository: branch → commit.
fn heads(origin: &std::path::Path) -> BTreeMap<String, String> {
    let repo = git2::Repository::open_bare(origin).expect("the watched origin");
    let mut out = BTreeMap::new();
    for r in repo
        .references_glob("refs/heads/*")
        .expect("refs")
        .flatten()
    {
        if let (Some(name), Some(oid)) = (r.name().ok(), r.target()) {
            out.insert(
                name.trim_start_matches("refs/heads/").to_string(),
                oid.to_string(),
            );
        }
    }
    out
}

fn run_json(base: &str, r: &Run) -> Value {
    let mut v = Spec::get().example("workflow-run");
    let api = format!("{base}/repos/{OWNER}/{REPO}");
    let (status, conclusion) = match r.reads {
        0 => ("queued", Value::Null),
        n if n <= STEPS.len() => ("in_progress", Value::Null),
        _ => ("completed", json!(r.conclusion)),
    };
    v["id"] = json!(r.id);
    v["name"] = json!(WORKFLOW);
    v["head_branch"] = json!(r.head_branch);
    v["head_sha"] = json!(r.head_sha);
    v["event"] = json!(r.event);
    v["display_title"] = json!(r.head_branch);
    v["status"] = json!(status);
    v["conclusion"] = conclusion;
    v["created_at"] = json!(r.created_at);
    v["run_started_at"] = json!(r.created_at);
    v["updated_at"] = json!(now_text());
    v["path"] = json!(format!(
        ".github/workflows/{WORKFLOW}.yml@{}",
        r.head_branch
    ));
    v["url"] = json!(format!("{api}/actions/runs/{}", r.id));
    v["html_url"] = json!(format!(
        "https://github.com/{OWNER}/{REPO}/actions/runs/{}",
        r.id
    ));
    v["jobs_url"] = json!(format!("{api}/actions/runs/{}/jobs", r.id));
    v["head_commit"]["id"] = json!(r.head_sha);
    v
}

fn job_json(base: &str, r: &Run) -> Value {
    let mut v = Spec::get().example("job");
    let started = r.created_at.clone();
    let done = r.completed();
    v["id"] = json!(r.id * 10);
    v["run_id"] = json!(r.id);
    v["run_url"] = json!(format!("{base}/repos/{OWNER}/{REPO}/actions/runs/{}", r.id));
    v["head_sha"] = json!(r.head_sha);
    v["head_branch"] = json!(r.head_branch);
    v["workflow_name"] = json!(WORKFLOW);
    v["name"] = json!("nubes");
    v["html_url"] = json!(format!(
        "https://github.com/{OWNER}/{REPO}/actions/runs/{}/job/{}",
        r.id,
        r.id * 10
    ));
    v["status"] = json!(if done { "completed" } else { "in_progress" });
    v["conclusion"] = if done {
        json!(r.conclusion)
    } else {
        Value::Null
    };
    v["started_at"] = json!(started);
    v["created_at"] = json!(started);
    v["completed_at"] = if done { json!(now_text()) } else { Value::Null };
    // Step i (1-based) runs during read i; a failed run fails at `nubes run`.
    let steps: Vec<Value> = STEPS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let n = i + 1;
            let (status, conclusion) = if r.reads > n || done {
                let c = if *name == "nubes run" {
                    r.conclusion.as_str()
                } else {
                    "success"
                };
                ("completed", json!(c))
            } else if r.reads == n {
                ("in_progress", Value::Null)
            } else {
                ("queued", Value::Null)
            };
            json!({
                "name": name, "status": status, "conclusion": conclusion, "number": n,
                "started_at": if status == "queued" { Value::Null } else { json!(started) },
                "completed_at": if status == "completed" { json!(now_text()) } else { Value::Null },
            })
        })
        .collect();
    v["steps"] = json!(steps);
    v
}

/// What a successful `up` leaves on GitHub: a deployment of `env-<name>` with two statuses.
fn deploy(state: &mut ActionsState, base: &str, r: &Run, url: &str) {
    let id = state.id();
    let api = format!("{base}/repos/{OWNER}/{REPO}");
    let mut d = Spec::get().example("deployment");
    d["id"] = json!(id);
    d["node_id"] = json!(format!("DE_{id}"));
    d["sha"] = json!(r.head_sha);
    d["ref"] = json!(r.head_branch);
    d["environment"] = json!(r.head_branch);
    d["original_environment"] = json!(r.head_branch);
    d["transient_environment"] = json!(true);
    d["production_environment"] = json!(false);
    d["creator"] = user("github-actions[bot]");
    d["url"] = json!(format!("{api}/deployments/{id}"));
    d["statuses_url"] = json!(format!("{api}/deployments/{id}/statuses"));
    d["repository_url"] = json!(api);
    d["created_at"] = json!(now_text());
    d["updated_at"] = json!(now_text());
    let mut statuses = Vec::new();
    for state_name in ["in_progress", "success"] {
        let sid = state.id();
        let mut s = Spec::get().example("deployment-status");
        s["id"] = json!(sid);
        s["node_id"] = json!(format!("DES_{sid}"));
        s["state"] = json!(state_name);
        s["creator"] = user("github-actions[bot]");
        s["environment"] = json!(r.head_branch);
        if state_name == "success" {
            s["environment_url"] = json!(url);
        } else {
            // Not set yet: GitHub's "" would not pass the description's `uri` format.
            s.as_object_mut().expect("status").remove("environment_url");
        }
        s["log_url"] = json!(format!(
            "https://github.com/{OWNER}/{REPO}/actions/runs/{}",
            r.id
        ));
        s["target_url"] = s["log_url"].clone();
        s["deployment_url"] = json!(format!("{api}/deployments/{id}"));
        s["repository_url"] = json!(api);
        s["url"] = json!(format!("{api}/deployments/{id}/statuses/{sid}"));
        statuses.push(s);
    }
    state.new_deployments.push((d, statuses));
}

/// Answer `operation` if it is one of this module's; `None` for the rest of the fake.
pub(super) fn route(
    base: &str,
    state: &mut ActionsState,
    operation: &str,
    params: &BTreeMap<String, String>,
    query: &[(String, String)],
) -> Option<Answer> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let ours = [
        "actions/list-workflow-runs-for-repo",
        "actions/get-workflow-run",
        "actions/list-jobs-for-workflow-run",
        "repos/list-activities",
        "users/get-authenticated",
    ];
    if !ours.contains(&operation) {
        return None;
    }
    if operation == "users/get-authenticated" {
        return Some(match &state.login {
            Some(login) => {
                let mut u = Spec::get()
                    .example("private-user-response-with-public-and-private-profile-information");
                u["login"] = json!(login);
                answer(200, u)
            }
            // An installation token (a workflow's GITHUB_TOKEN) has no user.
            None => error(
                403,
                "Resource not accessible by integration",
                "https://docs.github.com/rest/users/users#get-the-authenticated-user",
            ),
        });
    }
    if params.get("owner").map(String::as_str) != Some(OWNER)
        || params.get("repo").map(String::as_str) != Some(REPO)
    {
        return Some(error(404, "Not Found", "https://docs.github.com/rest"));
    }
    state.sync();
    let run_id = params.get("run_id").and_then(|n| n.parse::<u64>().ok());
    Some(match operation {
        "actions/list-workflow-runs-for-repo" => {
            let mut runs: Vec<Value> = state
                .runs
                .iter()
                .rev()
                .filter(|r| get("branch").is_none_or(|b| b == r.head_branch))
                .filter(|r| get("event").is_none_or(|e| e == r.event))
                .filter(|r| get("head_sha").is_none_or(|s| s == r.head_sha))
                .map(|r| run_json(base, r))
                .collect();
            let per_page = get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
            runs.truncate(per_page);
            answer(
                200,
                json!({ "total_count": runs.len(), "workflow_runs": runs }),
            )
        }
        "actions/get-workflow-run" => {
            let Some(i) = state.runs.iter().position(|r| Some(r.id) == run_id) else {
                return Some(error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run",
                ));
            };
            // Each read moves the run one stage on.
            if !state.runs[i].completed() {
                state.runs[i].reads += 1;
            }
            let r = state.runs[i].clone();
            if r.completed() && !r.deployed && r.event == "push" && r.conclusion == "success" {
                if let Some(url) = &r.url {
                    deploy(state, base, &r, url);
                }
                state.runs[i].deployed = true;
            }
            answer(200, run_json(base, &r))
        }
        "actions/list-jobs-for-workflow-run" => {
            let Some(r) = state.runs.iter().find(|r| Some(r.id) == run_id) else {
                return Some(error(
                    404,
                    "Not Found",
                    "https://docs.github.com/rest/actions/workflow-jobs",
                ));
            };
            let jobs = if r.reads == 0 {
                vec![]
            } else {
                vec![job_json(base, r)]
            };
            answer(200, json!({ "total_count": jobs.len(), "jobs": jobs }))
        }
        "repos/list-activities" => {
            let items: Vec<Value> = state
                .activities
                .iter()
                .rev()
                .filter(|a| get("activity_type").is_none_or(|t| a["activity_type"] == t.as_str()))
                .filter(|a| get("actor").is_none_or(|t| a["actor"]["login"] == t.as_str()))
                .filter(|a| {
                    get("ref").is_none_or(|t| {
                        a["ref"] == t.as_str() || a["ref"] == format!("refs/heads/{t}").as_str()
                    })
                })
                .cloned()
                .collect();
            answer(200, json!(items))
        }
        _ => unreachable!("listed above"),
    })
}
