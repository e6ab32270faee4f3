//! Black-box tests: each spawns the real service on a free port and talks HTTP to it.
//! PostgreSQL runs need TEST_DATABASE_URL; without it they print SKIPPED and pass.

// Test code, helpers included: a panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod client;
mod common;
mod deploy;
mod directory;
mod docs;
mod events;
mod intake;
mod lifecycle;
mod limits;
mod mirror;
mod openapi;
mod policy;
mod process;
mod provisioning;
mod queue;
mod replicas;
mod retention;
mod siem;
