//! One module per command; each takes resolved settings and returns a result whose
//! error maps to the documented exit code.

pub mod bootstrap;
pub mod dashboard;
pub mod doctor;
pub mod drift;
pub mod drift_issues;
pub mod env;
pub mod init;
pub mod inspect;
pub mod json;
pub mod keep;
pub mod man;
pub mod pipeline;
pub mod reap;
pub mod releases;
pub mod run;
pub mod state;
pub mod tf;
pub mod unlock;
