//! The read-only endpoints `nubes env` follows a run and finds an environment with:
//! workflow runs and their jobs (<https://docs.github.com/en/rest/actions/workflow-runs>,
//! <https://docs.github.com/en/rest/actions/workflow-jobs>), an environment's deployments
//! and their statuses, GET only (<https://docs.github.com/en/rest/deployments/deployments>,
//! <https://docs.github.com/en/rest/deployments/statuses>), the authenticated user
//! (<https://docs.github.com/en/rest/users/users#get-the-authenticated-user>) and the
//! repository's branch creations (<https://docs.github.com/en/rest/repos/repos#list-repository-activities>).
//! Creating deployments belongs to `up`, not here.

use serde::Deserialize;
use serde_json::Value;

use super::{Api, ApiError, Call, Permission};

/// `actions: read`, which listing runs and jobs needs.
pub const ACTIONS_READ: Permission = Permission("actions: read");
/// `deployments: read`, which listing deployments and their statuses needs.
pub const DEPLOYMENTS_READ: Permission = Permission("deployments: read");

/// The fields of a workflow run nubes reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct WorkflowRun {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    /// `queued`, `in_progress`, `completed`, `waiting`, `requested`, `pending`.
    #[serde(default)]
    pub status: Option<String>,
    /// Set once completed: `success`, `failure`, `cancelled`, `timed_out`, ...
    #[serde(default)]
    pub conclusion: Option<String>,
    pub html_url: String,
    pub head_sha: String,
    #[serde(default)]
    pub head_branch: Option<String>,
    pub event: String,
    pub created_at: String,
}

impl WorkflowRun {
    pub fn completed(&self) -> bool {
        self.status.as_deref() == Some("completed")
    }
}

/// A job of a run, with its steps.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    pub number: u64,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub branch: Option<String>,
    pub event: Option<String>,
    pub head_sha: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError {
        status: None,
        message: format!("GitHub's answer to {what} was not understood: {e}"),
        hint: None,
    })
}

impl Api {
    /// The newest runs matching `filter` (one page of 30, newest first: enough to find
    /// the run a push just started).
    pub async fn workflow_runs(&self, filter: &RunFilter) -> Result<Vec<WorkflowRun>, ApiError> {
        let what = format!("listing the workflow runs of {}", self.repo);
        let mut call = Call::get(
            format!("{}/actions/runs", self.repo.path()),
            what.clone(),
            ACTIONS_READ,
        )
        .query("per_page", "30")
        .query("exclude_pull_requests", "true");
        for (key, value) in [
            ("branch", &filter.branch),
            ("event", &filter.event),
            ("head_sha", &filter.head_sha),
        ] {
            if let Some(v) = value {
                call = call.query(key, v.clone());
            }
        }
        let doc = self.call(call).await?;
        let runs = doc.get("workflow_runs").cloned().unwrap_or(Value::Null);
        parse(runs, &what)
    }

    pub async fn workflow_run(&self, id: u64) -> Result<WorkflowRun, ApiError> {
        let what = format!("reading workflow run {id} of {}", self.repo);
        let call = Call::get(
            format!("{}/actions/runs/{id}", self.repo.path()),
            what.clone(),
            ACTIONS_READ,
        )
        .query("exclude_pull_requests", "true");
        parse(self.call(call).await?, &what)
    }

    /// The jobs of the run's latest attempt (one page of 100: a nubes workflow has few).
    pub async fn run_jobs(&self, id: u64) -> Result<Vec<Job>, ApiError> {
        let what = format!("listing the jobs of workflow run {id} of {}", self.repo);
        let call = Call::get(
            format!("{}/actions/runs/{id}/jobs", self.repo.path()),
            what.clone(),
            ACTIONS_READ,
        )
        .query("filter", "latest")
        .query("per_page", "100");
        let doc = self.call(call).await?;
        parse(doc.get("jobs").cloned().unwrap_or(Value::Null), &what)
    }

    /// The `environment_url` of the newest successful status of the newest deployment
    /// to `environment` (at `sha` when given), if any reports one.
    pub async fn environment_url(
        &self,
        environment: &str,
        sha: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let what = format!(
            "listing the deployments of environment `{environment}` in {}",
            self.repo
        );
        let mut call = Call::get(
            format!("{}/deployments", self.repo.path()),
            what.clone(),
            DEPLOYMENTS_READ,
        )
        .query("environment", environment)
        .query("per_page", "10");
        if let Some(sha) = sha {
            call = call.query("sha", sha);
        }
        // Newest first, as GitHub lists them.
        let deployments = match self.call(call).await? {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        for deployment in deployments {
            let Some(id) = deployment.get("id").and_then(Value::as_u64) else {
                continue;
            };
            let call = Call::get(
                format!("{}/deployments/{id}/statuses", self.repo.path()),
                format!("listing the statuses of deployment {id} in {}", self.repo),
                DEPLOYMENTS_READ,
            )
            .query("per_page", "30");
            let statuses = match self.call(call).await? {
                Value::Array(items) => items,
                _ => Vec::new(),
            };
            // Newest first: the latest success with a URL is the environment's address.
            let url = statuses.iter().find_map(|s| {
                (s.get("state").and_then(Value::as_str) == Some("success"))
                    .then(|| s.get("environment_url").and_then(Value::as_str))
                    .flatten()
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
            });
            if url.is_some() {
                return Ok(url);
            }
        }
        Ok(None)
    }

    /// The login the token belongs to (`None` for an installation token, which has no
    /// user: GitHub answers 403 there).
    pub async fn authenticated_login(&self) -> Result<Option<String>, ApiError> {
        let call = Call::get(
            "/user".into(),
            "reading the token's user".into(),
            Permission::CONTENTS_READ,
        );
        match self.call(call).await {
            Ok(doc) => Ok(doc.get("login").and_then(Value::as_str).map(str::to_string)),
            Err(e) if e.status.is_some_and(|s| s.as_u16() == 403) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Branches `login` created, as GitHub's repository activity records them (full
    /// refs, e.g. `refs/heads/env-alice`).
    pub async fn branches_created_by(&self, login: &str) -> Result<Vec<String>, ApiError> {
        let call = Call::get(
            format!("{}/activity", self.repo.path()),
            format!("listing the branches {login} created in {}", self.repo),
            Permission::CONTENTS_READ,
        )
        .query("activity_type", "branch_creation")
        .query("actor", login);
        let items = self.list(call).await?;
        Ok(items
            .iter()
            .filter_map(|a| a.get("ref").and_then(Value::as_str).map(str::to_string))
            .collect())
    }
}
