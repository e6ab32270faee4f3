//! Black-box tests: each spawns the real service on a free port and talks HTTP to it.
//! PostgreSQL runs need TEST_DATABASE_URL; without it they print SKIPPED and pass.

mod admin;
mod client;
mod common;
mod deploy;
mod directory;
mod docs;
mod intake;
mod lifecycle;
mod limits;
mod openapi;
mod process;
mod provisioning;
mod queue;
mod retention;
