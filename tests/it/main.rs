//! Integration tests: the real `nubes` binary against real Terraform, real Azurite and
//! real files; Resource Manager, Kudu, GitHub's API and Entra ID, which nothing here can
//! run, through fakes that follow their documented protocols (`arm`, `kudu`, `github`
//! validated against GitHub's OpenAPI description, `entra` for Entra ID's token endpoint
//! and GitHub's OIDC tokens). One test binary; helpers in `support`.

mod acr;
mod act;
pub mod arm;
mod big_state;
mod blue_green;
mod bootstrap;
mod cli;
mod container_apps;
mod container_releases;
mod crash;
mod credentials;
mod dashboard;
mod demo;
mod deploy;
mod drift;
mod drift_issues;
pub mod entra;
mod env_cmd;
mod events;
mod gateway;
pub mod github;
mod hostile;
mod init;
mod init_matrix;
mod install;
mod interop;
pub mod kudu;
mod lifecycle;
mod list;
mod migrate;
mod outage;
mod output;
mod package;
mod pipeline;
mod reap;
mod registry;
pub mod release;
mod releases;
mod review;
mod secrets;
mod snapshots;
mod soak;
mod state_azure;
mod state_errors;
mod state_local;
mod static_site;
mod support;
pub mod workflows;
