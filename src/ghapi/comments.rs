//! Pull-request comments, which GitHub keeps as issue comments
//! (<https://docs.github.com/en/rest/issues/comments>): list a pull request's comments,
//! create one, edit one in place. Used by the plan comment (`review::comment`).

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, Call, Permission};

/// The fields of a comment nubes reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    pub html_url: String,
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError {
        status: None,
        message: format!("GitHub's answer to {what} was not understood: {e}"),
        hint: None,
    })
}

impl Api {
    /// Every comment on pull request `number`, oldest first (all pages).
    pub async fn pull_request_comments(&self, number: u64) -> Result<Vec<Comment>, ApiError> {
        let what = format!(
            "listing the comments of pull request #{number} in {}",
            self.repo
        );
        let call = Call::get(
            format!("{}/issues/{number}/comments", self.repo.path()),
            what.clone(),
            Permission::PULL_REQUESTS_WRITE,
        );
        self.list(call)
            .await?
            .into_iter()
            .map(|c| parse(c, &what))
            .collect()
    }

    pub async fn create_pull_request_comment(
        &self,
        number: u64,
        body: &str,
    ) -> Result<Comment, ApiError> {
        let what = format!("commenting on pull request #{number} in {}", self.repo);
        let call = Call::with_body(
            Method::POST,
            format!("{}/issues/{number}/comments", self.repo.path()),
            json!({ "body": body }),
            what.clone(),
            Permission::PULL_REQUESTS_WRITE,
        );
        parse(self.call(call).await?, &what)
    }

    pub async fn update_comment(&self, id: u64, body: &str) -> Result<Comment, ApiError> {
        let what = format!("editing comment {id} in {}", self.repo);
        let call = Call::with_body(
            Method::PATCH,
            format!("{}/issues/comments/{id}", self.repo.path()),
            json!({ "body": body }),
            what.clone(),
            Permission::PULL_REQUESTS_WRITE,
        );
        parse(self.call(call).await?, &what)
    }
}
