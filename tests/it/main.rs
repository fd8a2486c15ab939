//! Integration tests: the real `nubes` binary against real Terraform, real Azurite and
//! real files; Resource Manager and Kudu, which nothing here can run, through the library
//! against fakes that follow their documented protocols (`arm`, `kudu`). One test
//! binary; helpers in `support`.

pub mod arm;
mod cli;
mod demo;
mod deploy;
mod drift;
mod init;
mod init_matrix;
pub mod kudu;
mod list;
mod pipeline;
mod reap;
mod state_azure;
mod state_errors;
mod state_local;
mod static_site;
mod support;
mod workflows;
