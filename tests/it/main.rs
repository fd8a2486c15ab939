//! Integration tests: the real `nubes` binary against real Terraform, real Azurite and
//! real files; Resource Manager and Kudu, which nothing here can run, through the library
//! against fakes that follow their documented protocols (`arm`, `kudu`). One test
//! binary; helpers in `support`.

pub mod arm;
mod bootstrap;
mod cli;
mod crash;
mod dashboard;
mod demo;
mod deploy;
mod drift;
mod gateway;
mod hostile;
mod init;
mod init_matrix;
pub mod kudu;
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
