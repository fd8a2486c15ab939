//! Integration tests: the real `nubes` binary against real Terraform, real Azurite and
//! real files; Resource Manager, Kudu and GitHub's API, which nothing here can run,
//! through fakes that follow their documented protocols (`arm`, `kudu`, `github`, the
//! last validated against GitHub's OpenAPI description). One test binary; helpers in
//! `support`.

pub mod arm;
mod big_state;
mod bootstrap;
mod cli;
mod crash;
mod dashboard;
mod demo;
mod deploy;
mod drift;
mod drift_issues;
mod events;
mod gateway;
pub mod github;
mod hostile;
mod init;
mod init_matrix;
mod interop;
pub mod kudu;
mod lifecycle;
mod list;
mod outage;
mod pipeline;
mod reap;
mod secrets;
mod soak;
mod state_azure;
mod state_errors;
mod state_local;
mod static_site;
mod support;
mod workflows;
