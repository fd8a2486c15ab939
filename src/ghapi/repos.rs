//! Repository endpoints: the branch list `reap --gone-branches` compares environments
//! with (<https://docs.github.com/en/rest/branches/branches#list-branches>).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Api, ApiError, Call, Permission};

impl Api {
    /// Every branch name of the repository (all pages, or an error: never a partial list).
    pub async fn branch_names(&self) -> Result<BTreeSet<String>, ApiError> {
        let call = Call::get(
            format!("{}/branches", self.repo.path()),
            format!("listing the branches of {}", self.repo),
            Permission::CONTENTS_READ,
        );
        let items = self.list(call).await?;
        Ok(items
            .iter()
            .filter_map(|b| b.get("name").and_then(Value::as_str).map(str::to_string))
            .collect())
    }
}
