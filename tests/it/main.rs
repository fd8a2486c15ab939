//! Integration tests: the real `nubes` binary against real Terraform, real Azurite and
//! real files; Resource Manager, which nothing here can run, through the library against
//! a fake that follows its documented protocol (`arm`). One test binary; helpers in
//! `support`.

pub mod arm;
mod cli;
mod pipeline;
mod state_azure;
mod state_errors;
mod state_local;
mod static_site;
mod support;
mod workflows;
