//! Issue endpoints (<https://docs.github.com/en/rest/issues/issues>,
//! <https://docs.github.com/en/rest/issues/comments>): the open issues carrying a label,
//! create, edit (body, title, state) and comment. Pull requests, which the issue list
//! also returns, are left out.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, Call, Permission};

/// The fields of a GitHub issue nubes reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    pub html_url: String,
    /// Label objects (the schema also allows bare names).
    #[serde(default)]
    labels: Vec<Value>,
    /// Present when the "issue" is a pull request.
    #[serde(default)]
    pull_request: Option<Value>,
}

impl Issue {
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.labels
            .iter()
            .filter_map(|l| l.as_str().or_else(|| l.get("name").and_then(Value::as_str)))
    }
}

/// Why an issue is closed (`state_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Completed,
    NotPlanned,
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError {
        status: None,
        message: format!("GitHub's answer to {what} was not understood: {e}"),
        hint: None,
    })
}

impl Api {
    /// Open issues (not pull requests) with `label`, oldest first.
    pub async fn open_issues_labelled(&self, label: &str) -> Result<Vec<Issue>, ApiError> {
        let what = format!(
            "listing the open issues labelled `{label}` in {}",
            self.repo
        );
        let call = Call::get(
            format!("{}/issues", self.repo.path()),
            what.clone(),
            Permission::ISSUES_READ,
        )
        .query("state", "open")
        .query("labels", label)
        .query("sort", "created")
        .query("direction", "asc");
        let mut issues = Vec::new();
        for item in self.list(call).await? {
            let issue: Issue = parse(item, &what)?;
            if issue.pull_request.is_none() {
                issues.push(issue);
            }
        }
        Ok(issues)
    }

    pub async fn create_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> Result<Issue, ApiError> {
        let what = format!("opening an issue in {}", self.repo);
        let call = Call::with_body(
            Method::POST,
            format!("{}/issues", self.repo.path()),
            json!({ "title": title, "body": body, "labels": labels }),
            what.clone(),
            Permission::ISSUES_WRITE,
        );
        parse(self.call(call).await?, &what)
    }

    /// Replace an issue's title and body.
    pub async fn edit_issue(
        &self,
        number: u64,
        title: &str,
        body: &str,
    ) -> Result<Issue, ApiError> {
        let what = format!("updating issue #{number} in {}", self.repo);
        let call = Call::with_body(
            Method::PATCH,
            format!("{}/issues/{number}", self.repo.path()),
            json!({ "title": title, "body": body }),
            what.clone(),
            Permission::ISSUES_WRITE,
        );
        parse(self.call(call).await?, &what)
    }

    pub async fn close_issue(&self, number: u64, reason: CloseReason) -> Result<Issue, ApiError> {
        let what = format!("closing issue #{number} in {}", self.repo);
        let reason = match reason {
            CloseReason::Completed => "completed",
            CloseReason::NotPlanned => "not_planned",
        };
        let call = Call::with_body(
            Method::PATCH,
            format!("{}/issues/{number}", self.repo.path()),
            json!({ "state": "closed", "state_reason": reason }),
            what.clone(),
            Permission::ISSUES_WRITE,
        );
        parse(self.call(call).await?, &what)
    }

    /// Add a comment; returns its URL.
    pub async fn comment_on_issue(&self, number: u64, body: &str) -> Result<String, ApiError> {
        let what = format!("commenting on issue #{number} in {}", self.repo);
        let call = Call::with_body(
            Method::POST,
            format!("{}/issues/{number}/comments", self.repo.path()),
            json!({ "body": body }),
            what.clone(),
            Permission::ISSUES_WRITE,
        );
        let doc = self.call(call).await?;
        Ok(doc
            .get("html_url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }
}
