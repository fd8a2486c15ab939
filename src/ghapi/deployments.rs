//! Deployments and their statuses (<https://docs.github.com/en/rest/deployments/deployments>,
//! <https://docs.github.com/en/rest/deployments/statuses>), and the pull requests a
//! commit belongs to (<https://docs.github.com/en/rest/commits/commits#list-pull-requests-associated-with-a-commit>).

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, Call, Permission};

/// A new deployment.
pub struct NewDeployment<'a> {
    /// The commit SHA deployed.
    pub sha: &'a str,
    /// The GitHub environment (`env-<name>`).
    pub environment: &'a str,
    pub description: &'a str,
    pub production: bool,
    pub payload: Value,
}

/// A deployment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    InProgress,
    Success,
    Failure,
    Inactive,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Inactive => "inactive",
        }
    }
}

/// A pull request a commit belongs to (the fields nubes reads).
#[derive(Debug, Clone, Deserialize)]
pub struct AssociatedPull {
    pub number: u64,
    #[serde(default)]
    pub merged_at: Option<String>,
    pub head: PullRef,
    pub base: PullRef,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
}

fn id_of(doc: &Value, what: &str) -> Result<u64, ApiError> {
    doc.get("id")
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError {
            status: None,
            message: format!("GitHub's answer to {what} has no id"),
            hint: None,
        })
}

impl Api {
    /// Create a deployment; returns its id. `required_contexts: []`: the commit's own
    /// checks (this very run among them) are still pending, and GitHub would refuse with
    /// 409 otherwise. `auto_merge: false`: nubes deploys the commit, never a merge.
    pub async fn create_deployment(&self, d: &NewDeployment<'_>) -> Result<u64, ApiError> {
        let what = format!(
            "creating a deployment of {} to {} in {}",
            d.sha, d.environment, self.repo
        );
        let call = Call::with_body(
            Method::POST,
            format!("{}/deployments", self.repo.path()),
            json!({
                "ref": d.sha,
                "task": "deploy",
                "auto_merge": false,
                "required_contexts": [],
                "environment": d.environment,
                "description": d.description,
                "transient_environment": true,
                "production_environment": d.production,
                "payload": d.payload,
            }),
            what.clone(),
            Permission::DEPLOYMENTS_WRITE,
        );
        id_of(&self.call(call).await?, &what)
    }

    /// Add a status to deployment `id`. `environment_url` and `log_url` are set when given.
    pub async fn deployment_status(
        &self,
        id: u64,
        state: DeploymentState,
        description: &str,
        environment_url: Option<&str>,
        log_url: Option<&str>,
    ) -> Result<(), ApiError> {
        let what = format!(
            "setting deployment {id} to {} in {}",
            state.as_str(),
            self.repo
        );
        let mut body = json!({ "state": state.as_str(), "description": description });
        if let Some(u) = environment_url {
            body["environment_url"] = json!(u);
        }
        if let Some(u) = log_url {
            body["log_url"] = json!(u);
        }
        let call = Call::with_body(
            Method::POST,
            format!("{}/deployments/{id}/statuses", self.repo.path()),
            body,
            what,
            Permission::DEPLOYMENTS_WRITE,
        );
        self.call(call).await.map(|_| ())
    }

    /// The ids of the newest deployments (at most 100) to `environment`.
    pub async fn deployments_to(&self, environment: &str) -> Result<Vec<u64>, ApiError> {
        let what = format!("listing the deployments to {environment} in {}", self.repo);
        let call = Call::get(
            format!("{}/deployments", self.repo.path()),
            what.clone(),
            Permission::DEPLOYMENTS_WRITE,
        )
        .query("environment", environment)
        .query("per_page", "100");
        let doc = self.call(call).await?;
        let items = doc.as_array().cloned().unwrap_or_default();
        items.iter().map(|d| id_of(d, &what)).collect()
    }

    /// The pull requests commit `sha` belongs to (merged ones: the merge commit's).
    pub async fn pulls_of_commit(&self, sha: &str) -> Result<Vec<AssociatedPull>, ApiError> {
        let what = format!("listing the pull requests of commit {sha} in {}", self.repo);
        let call = Call::get(
            format!("{}/commits/{sha}/pulls", self.repo.path()),
            what.clone(),
            Permission::CONTENTS_READ,
        );
        self.list(call)
            .await?
            .into_iter()
            .map(|p| {
                serde_json::from_value(p).map_err(|e| ApiError {
                    status: None,
                    message: format!("GitHub's answer to {what} was not understood: {e}"),
                    hint: None,
                })
            })
            .collect()
    }
}
