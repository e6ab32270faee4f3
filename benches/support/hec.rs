//! A local Splunk HTTP Event Collector for the SIEM benchmark: checks the token and that the body is
//! concatenated event envelopes, counts the events, and notes when the first request came and the
//! last was answered. (Splunk itself cannot run here.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

pub const TOKEN: &str = "bench-hec-token-0123456789";

#[derive(Default)]
pub struct Counts {
    pub events: AtomicU64,
    pub requests: AtomicU64,
    /// Requests refused for their wire format or token (should stay 0).
    pub refused: AtomicU64,
    /// (first request arrived, last request answered).
    pub span: Mutex<Option<(Instant, Instant)>>,
}

async fn collect(State(counts): State<Arc<Counts>>, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let arrived = Instant::now();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut events = 0u64;
    let mut well_formed = auth == format!("Splunk {TOKEN}");
    for envelope in serde_json::Deserializer::from_slice(&body).into_iter::<serde_json::Value>() {
        match envelope {
            Ok(e) if e["time"].is_number() && e["host"].is_string() && e["event"]["eventId"].is_string() => events += 1,
            _ => well_formed = false,
        }
    }
    counts.requests.fetch_add(1, Ordering::Relaxed);
    if !well_formed || events == 0 {
        counts.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, r#"{"text":"Invalid data format","code":6}"#);
    }
    counts.events.fetch_add(events, Ordering::Relaxed);
    let mut span = counts.span.lock().unwrap();
    let first = span.map_or(arrived, |(first, _)| first);
    *span = Some((first, Instant::now()));
    (StatusCode::OK, r#"{"text":"Success","code":0}"#)
}

/// Serves HEC's event endpoint on a port of its own, on the current runtime.
pub async fn start() -> (SocketAddr, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let app =
        axum::Router::new().route("/services/collector/event", axum::routing::post(collect)).with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("the HEC receiver binds");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, counts)
}
