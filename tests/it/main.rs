//! Integration tests: the real `nubes` binary against real Terraform, real Azurite and
//! real files. One test binary; helpers in `support`.

mod cli;
mod state_azure;
mod state_errors;
mod state_local;
mod support;
mod workflows;
