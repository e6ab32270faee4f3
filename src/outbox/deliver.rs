//! Delivery: one task per destination sends the records waiting for it in batches, oldest first,
//! and marks them delivered only once the destination confirmed them. While a destination is down
//! or busy it waits `random(0, min(max, base · 2^(n-1)))` after the n-th failure in a row (full
//! jitter, at least a `Retry-After`); while it refuses the records as misconfigured it keeps them
//! and tries again every `refused_retry`. A destination that fails does not hold the others up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::http_json::HttpJson;
use super::splunk_hec::SplunkHec;
use super::syslog::Syslog;
use crate::config::{SiemConfig, SiemDestination, SiemKind};
use crate::metrics::{DeliveryFailure, Metrics};
use crate::queue::JobStore;
use crate::queue::outbox::PendingRecord;
use crate::queue::worker::backoff;

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The destination said it is busy (HEC 503, a 429): send again after a backoff, at least
    /// `retry_after` when it said so.
    #[error("{detail}")]
    Busy { detail: String, retry_after: Option<Duration> },
    /// Unreachable, timed out, a server error: send again after a backoff.
    #[error("{detail}")]
    Unavailable { detail: String },
    /// The destination refuses the records as sent: it is misconfigured (a wrong token, index or
    /// URL). The records are kept and sent again every `refused_retry` until someone fixes it.
    #[error("{detail}")]
    Refused { detail: String },
}

impl SendError {
    pub fn reason(&self) -> DeliveryFailure {
        match self {
            SendError::Busy { .. } => DeliveryFailure::Busy,
            SendError::Unavailable { .. } => DeliveryFailure::Unavailable,
            SendError::Refused { .. } => DeliveryFailure::Refused,
        }
    }
}

/// A `Retry-After` in seconds, when the answer has one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An error with its causes, `a: b: c` (reqwest's own text hides why a connection failed).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where a destination's records go.
#[derive(Debug)]
enum Sink {
    SplunkHec(SplunkHec),
    HttpJson(HttpJson),
    Syslog(Syslog),
}

impl Sink {
    async fn send(&self, batch: &[PendingRecord]) -> Result<(), SendError> {
        match self {
            Sink::SplunkHec(hec) => hec.send(batch).await,
            Sink::HttpJson(http) => http.send(batch).await,
            Sink::Syslog(syslog) => syslog.send(batch).await,
        }
    }
}

/// The URL an admin may see: no user, password or query (a token could hide in either).
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

/// One configured destination: how to reach it, and how its deliveries have gone in this process.
#[derive(Debug)]
pub struct Destination {
    pub name: String,
    pub kind: &'static str,
    /// Where the records go, without secrets.
    pub url: String,
    sink: Sink,
    timeout: Duration,
    local: Mutex<Local>,
}

/// What this process saw of a destination's deliveries.
#[derive(Debug, Default, Clone)]
pub struct Local {
    /// Failed deliveries since the last one that went through.
    pub failures_in_a_row: u32,
    /// It refuses the records as sent (misconfigured).
    pub refusing: bool,
}

impl Destination {
    pub fn new(config: &SiemDestination, host: &str) -> Result<Self, String> {
        let at = |e: String| format!("siem destination {:?}: {e}", config.name);
        let (sink, url) = match &config.kind {
            SiemKind::SplunkHec { url, token, index, source, sourcetype } => {
                let hec = SplunkHec::new(url, token, index.as_deref(), source, sourcetype, host, config.timeout)
                    .map_err(at)?;
                let url = shown(hec.endpoint());
                (Sink::SplunkHec(hec), url)
            }
            SiemKind::HttpJson { url, token, signing } => {
                let http = HttpJson::new(url, token.as_ref(), signing.clone(), config.timeout).map_err(at)?;
                (Sink::HttpJson(http), shown(url))
            }
            SiemKind::Syslog(settings) => {
                let syslog = Syslog::new(settings, host, config.timeout).map_err(at)?;
                let url = syslog.address();
                (Sink::Syslog(syslog), url)
            }
        };
        Ok(Destination {
            name: config.name.clone(),
            kind: config.kind.name(),
            url,
            sink,
            timeout: config.timeout,
            local: Mutex::new(Local::default()),
        })
    }

    pub fn local(&self) -> Local {
        self.local.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_local(&self, local: Local) {
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = local;
    }
}

/// Delivers to `destination` until `stop`: a batch in flight is finished (its timeout bounds it),
/// then the delivery lease is given back.
pub async fn run(
    destination: Arc<Destination>,
    store: JobStore,
    metrics: Arc<Metrics>,
    settings: Arc<SiemConfig>,
    holder: String,
    stop: CancellationToken,
) {
    let name = destination.name.as_str();
    let clock = store.clock().clone();
    // The lease outlasts the longest a batch may take (see below), so it cannot run out while one
    // is in flight and let another replica send the same records.
    let lease = settings.lease.max(destination.timeout * 4);
    let mut leased = false;
    while !stop.is_cancelled() {
        // One process at a time delivers to a destination (a no-op on SQLite).
        match store.outbox_lease(name, &holder, lease).await {
            Ok(true) => leased = true,
            Ok(false) => {
                leased = false;
                tokio::select! {
                    _ = clock.sleep(settings.poll_interval) => {},
                    _ = stop.cancelled() => {},
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(destination = name, error = %e, "SIEM delivery: the outbox is unreadable; will retry");
                tokio::select! {
                    _ = clock.sleep(settings.poll_interval) => {},
                    _ = stop.cancelled() => {},
                }
                continue;
            }
        }
        // Registered before looking, so a commit between the read and the wait is not missed.
        let written = store.outbox_written().notified();
        tokio::pin!(written);
        written.as_mut().enable();
        let batch = match store.outbox_batch(name, settings.batch_size, settings.max_batch_bytes).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(destination = name, error = %e, "SIEM delivery: the outbox is unreadable; will retry");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = &mut written => {},
                _ = clock.sleep(settings.poll_interval) => {},
                _ = stop.cancelled() => {},
            }
            continue;
        }
        // Each sink bounds its own steps; this bounds the whole (a slow trickle of an answer).
        let sent = match tokio::time::timeout(destination.timeout * 3, destination.sink.send(&batch)).await {
            Ok(sent) => sent,
            Err(_) => Err(SendError::Unavailable { detail: format!("no answer within {:?}", destination.timeout * 3) }),
        };
        let wait = match sent {
            Ok(()) => delivered(&destination, &store, &metrics, &batch).await,
            Err(e) => failed(&destination, &store, &metrics, &settings, e).await,
        };
        if let Some(wait) = wait {
            tokio::select! {
                _ = clock.sleep(wait) => {},
                _ = stop.cancelled() => {},
            }
        }
    }
    if leased && let Err(e) = store.outbox_release(name, &holder).await {
        tracing::warn!(destination = name, error = %e, "SIEM delivery lease not given back; it expires by itself");
    }
}

/// The destination confirmed `batch`: it is marked delivered. Returns how long to wait before the
/// next batch (only after a failure to record it).
async fn delivered(
    destination: &Destination,
    store: &JobStore,
    metrics: &Metrics,
    batch: &[PendingRecord],
) -> Option<Duration> {
    let name = destination.name.as_str();
    let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
    if let Err(e) = store.outbox_delivered(name, &ids).await {
        // They stay in the outbox and go again: the destination may see them twice (same eventIds).
        tracing::error!(destination = name, error = %e, records = ids.len(),
            "SIEM delivery confirmed but not recorded; the records will be sent again");
        return Some(Duration::from_secs(1));
    }
    metrics.siem.delivered(name, ids.len() as u64);
    let before = destination.local();
    if before.failures_in_a_row > 0 {
        tracing::info!(
            destination = name,
            after_failures = before.failures_in_a_row,
            "SIEM destination takes records again"
        );
        metrics.siem.recovered(name);
    }
    destination.set_local(Local::default());
    None
}

/// The batch was not delivered: the failure is counted and recorded, and the wait before the next
/// try is returned.
async fn failed(
    destination: &Destination,
    store: &JobStore,
    metrics: &Metrics,
    settings: &SiemConfig,
    error: SendError,
) -> Option<Duration> {
    let name = destination.name.as_str();
    let mut local = destination.local();
    local.failures_in_a_row = local.failures_in_a_row.saturating_add(1);
    local.refusing = matches!(error, SendError::Refused { .. });
    let wait = match &error {
        SendError::Refused { .. } => settings.refused_retry,
        SendError::Busy { retry_after, .. } => {
            backoff(local.failures_in_a_row, settings.backoff_base, settings.backoff_max, *retry_after)
        }
        SendError::Unavailable { .. } => {
            backoff(local.failures_in_a_row, settings.backoff_base, settings.backoff_max, None)
        }
    };
    metrics.siem.failed(name, error.reason());
    let retry_in = wait.as_secs_f64();
    match &error {
        SendError::Refused { .. } => {
            tracing::warn!(destination = name, kind = destination.kind, error = %error, retry_in,
            "SIEM destination refuses the records (misconfigured?): they are kept and sent again")
        }
        _ => tracing::warn!(destination = name, kind = destination.kind, error = %error, retry_in,
            failures_in_a_row = local.failures_in_a_row, "SIEM destination unavailable; backing off"),
    }
    let until = store.clock().now_ms() + wait.as_millis() as i64;
    if let Err(e) = store.outbox_failed(name, &crate::audit::bounded(error.to_string()), until).await {
        tracing::warn!(destination = name, error = %e, "SIEM delivery failure not recorded");
    }
    destination.set_local(local);
    Some(wait)
}

/// How often the outbox gauges are counted again.
pub const GAUGES_EVERY: Duration = Duration::from_secs(2);

/// Counts what waits in the outbox for the gauges, every `every` until `stop`.
pub async fn run_gauges(
    destinations: Vec<Arc<Destination>>,
    store: JobStore,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        for d in &destinations {
            match store.outbox_depth(&d.name).await {
                Ok((pending, oldest)) => {
                    let age = oldest.map_or(0, |at| (now - at).max(0));
                    metrics.siem.set_pending(&d.name, pending, Duration::from_millis(age as u64));
                }
                Err(e) => tracing::debug!(destination = d.name, error = %e, "counting the outbox failed"),
            }
        }
        if let Ok(n) = store.outbox_records().await {
            metrics.siem.set_records(n);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {},
            _ = stop.cancelled() => return,
        }
    }
}

/// The HTTP client of an HTTP destination (Splunk HEC, a JSON collector): `timeout` for the
/// connection and for each delivery.
pub(super) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("genesys-provisioner/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shown_url_has_no_credentials_or_query() {
        assert_eq!(
            super::shown("https://u:p@h.example:8088/services/collector/event?token=t"),
            "https://h.example:8088/services/collector/event"
        );
    }
}
