//! nubes: a cloud environment per branch. See README.md for users and ARCHITECTURE.md
//! for how the pieces fit.

pub mod app;
pub mod arm;
pub mod branch;
pub mod build;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod deploy;
pub mod drift;
pub mod env_name;
pub mod error;
pub mod expiry;
pub mod gateway;
pub mod ghapi;
pub mod git;
pub mod github;
pub mod health;
pub mod image;
pub mod init;
pub mod kudu;
pub mod pipeline;
pub mod plan;
pub mod recover;
pub mod registry;
pub mod releases;
pub mod render;
pub mod rest;
pub mod review;
pub mod secrets;
pub mod signals;
pub mod state;
pub mod terraform;
pub mod ui;
pub mod workdir;
