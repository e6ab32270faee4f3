//! The emulator's own tests: its HTTP API black-box (`api`), the models validator and the pinned
//! models file (`models`), and the `genesys-emulator` program (`cli`). One binary, so one link.

// Test code, helpers included: a panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cli;
mod models;

use std::future::Future;
use std::time::Duration;

/// Polls `probe` until it yields a value or `within` has passed.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
