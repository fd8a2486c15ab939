//! Integration tests: the real `nubes` binary against real Terraform, real Azurite and
//! real files; Resource Manager, Kudu and GitHub's API, which nothing here can run,
//! through fakes that follow their documented protocols (`arm`, `kudu`, `github`, the
//! last validated against GitHub's OpenAPI description). One test binary; helpers in
//! `support`.

mod acr;
pub mod arm;
mod bootstrap;
mod cli;
mod container_apps;
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
mod registry;
mod secrets;
mod soak;
mod state_azure;
mod state_errors;
mod state_local;
mod static_site;
mod support;
mod workflows;
