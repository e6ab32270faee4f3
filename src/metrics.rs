//! Service metrics in the Prometheus text format (0.0.4), through prometheus-client.
//!
//! A registry per `App` instead of a process-global one: tests run many apps in one process, and
//! each must see only its own counts. `Metrics` is a lifecycle subscriber (`crate::lifecycle`): the
//! webhook and attempt counters, the attempt durations, the intake figures, the paused-workers gauge
//! and the per-state queue gauges all move with the events the edge, the queue and the pipeline
//! emit, so they count what the audit trail writes, and a scrape only encodes what is held: it runs
//! no query. The queue gauges start from one count of the jobs table when the app is built and are
//! counted again every `QUEUE_RESYNC` (`run_queue_resync`), because on PostgreSQL other replicas
//! change the shared queue too and only a count sees their work.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::genesys::GenesysClient;
use crate::lifecycle::{AttemptOutcome, Event, Subscriber, WebhookOutcome};
use crate::queue::{JobState, JobStore, QueueError};

/// How often the per-state queue gauges are counted again from the jobs table: often enough that
/// other replicas' work on a shared PostgreSQL queue shows within a scrape interval or two, rarely
/// enough that the count (one `GROUP BY` over the state index) costs nothing worth measuring.
pub const QUEUE_RESYNC: Duration = Duration::from_secs(30);

/// A resync whose count raced with this process's own queue events tries again this much later,
/// this many times, before it sets the count anyway (see `Metrics::resync_queue`).
const RESYNC_RETRY: Duration = Duration::from_secs(1);
const RESYNC_TRIES: u32 = 5;

const DURATION_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The label values are the names' own spelling (`as_str`), the one the audit trail and the
/// database use; the crate's derive would write the Rust variant name instead.
macro_rules! label_value {
    ($($name:ty),+) => {
        $(impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        })+
    };
}

label_value!(WebhookOutcome, AttemptOutcome, JobState, CloseReason, DeliveryFailure);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    outcome: WebhookOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    outcome: AttemptOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    state: JobState,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    reason: CloseReason,
}

/// Why the HTTP edge closed a connection itself (`http::serve`'s watchdog).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseReason {
    /// The request head did not arrive in time.
    HeaderTimeout,
    /// A keep-alive connection stayed idle too long.
    IdleTimeout,
    /// The client did not read its answer in time.
    ResponseTimeout,
}

impl CloseReason {
    pub const ALL: [CloseReason; 3] =
        [CloseReason::HeaderTimeout, CloseReason::IdleTimeout, CloseReason::ResponseTimeout];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ResponseTimeout => "response_timeout",
        }
    }
}

/// What the intake committer did: how well concurrent requests share commits, and what a commit costs.
#[derive(Debug, Default)]
pub struct IntakeStats {
    pub batches: Counter,
    pub rows: Counter,
    /// The most rows one commit carried (not exported; the tests read it).
    pub largest_batch: AtomicU64,
    commit_seconds: Counter<f64, AtomicU64>,
}

/// The HTTP edge's connections (`http::serve`).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: Gauge,
    /// Failed accepts (out of descriptors and the like), each one.
    pub accept_errors: Counter,
    closed: Family<CloseLabels, Counter>,
}

impl ConnectionStats {
    /// A connection closed by a limit.
    pub fn closed(&self, reason: CloseReason) {
        self.closed.get_or_create(&CloseLabels { reason }).inc();
    }
}

/// The Genesys client's own counters, read at each scrape.
struct GenesysCounters(Arc<GenesysClient>);

impl std::fmt::Debug for GenesysCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GenesysCounters")
    }
}

impl Collector for GenesysCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let g = &self.0;
        let counters = [
            ("requests", "Requests sent to Genesys Cloud (retries included).", g.stats.requests.load(Relaxed)),
            ("rate_limited", "429 answers from Genesys Cloud.", g.stats.rate_limited.load(Relaxed)),
            (
                "retries",
                "Requests retried in place after a 5xx, timeout or connection error.",
                g.stats.retried.load(Relaxed),
            ),
            ("token_requests", "OAuth token requests.", g.token_requests()),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let name = format!("provisioner_genesys_{name}");
            let metric = encoder.encode_descriptor(&name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let pace = g.pace();
        let gauges = [
            (
                "pace_share",
                "Replicas sharing the Genesys request rate (this one included), from the job store's heartbeats.",
                f64::from(pace.share),
            ),
            (
                "pace_allowed_per_minute",
                "Requests per minute Genesys allows the OAuth client: configured, or lowered by inin-ratelimit-allowed.",
                f64::from(pace.allowed_per_minute),
            ),
            (
                "pace_per_minute",
                "Requests per minute this process sends at most: its share of the allowed rate.",
                pace.per_minute,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let name = format!("provisioner_genesys_{name}");
            let metric = encoder.encode_descriptor(&name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

pub struct Metrics {
    registry: Registry,
    pub intake: IntakeStats,
    pub connections: ConnectionStats,
    webhooks: Family<WebhookLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    durations: Histogram,
    queue: Family<QueueLabels, Gauge>,
    /// 1 while Genesys refuses the client credentials: workers are paused (`/readyz` says so too).
    genesys_auth_failed: Gauge,
    /// Events that moved a queue gauge, ever: a resync sees whether any came while it counted.
    queue_moves: AtomicU64,
    /// Delivery of the audit records to SIEMs (`crate::outbox`).
    pub siem: SiemStats,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_genesys(None)
    }
}

impl Metrics {
    /// A registry; with a Genesys client it also shows the client's counters.
    pub fn with_genesys(genesys: Option<Arc<GenesysClient>>) -> Self {
        let metrics = Metrics {
            registry: Registry::default(),
            intake: IntakeStats::default(),
            connections: ConnectionStats::default(),
            webhooks: Family::default(),
            attempts: Family::default(),
            durations: Histogram::new(DURATION_BUCKETS),
            queue: Family::default(),
            genesys_auth_failed: Gauge::default(),
            queue_moves: AtomicU64::new(0),
            siem: SiemStats::default(),
        };
        // Every series from the start, at 0: a rate over a series that appears with its first
        // event misses that event.
        for outcome in WebhookOutcome::ALL {
            drop(metrics.webhooks.get_or_create(&WebhookLabels { outcome: *outcome }));
        }
        for outcome in AttemptOutcome::ALL {
            drop(metrics.attempts.get_or_create(&AttemptLabels { outcome: *outcome }));
        }
        for state in JobState::ALL {
            drop(metrics.queue.get_or_create(&QueueLabels { state }));
        }
        for reason in CloseReason::ALL {
            drop(metrics.connections.closed.get_or_create(&CloseLabels { reason }));
        }
        let mut registry = Registry::default();
        let c = &metrics.connections;
        let i = &metrics.intake;
        registry.register("provisioner_webhooks", "Webhooks received, by outcome", metrics.webhooks.clone());
        registry.register("provisioner_queue_jobs", "Jobs in the queue, by state", metrics.queue.clone());
        registry.register("provisioner_intake_commits", "Intake transactions (group commits)", i.batches.clone());
        registry.register("provisioner_intake_rows", "Webhook rows written by intake transactions", i.rows.clone());
        registry.register(
            "provisioner_intake_commit_seconds",
            "Time spent in intake transactions",
            i.commit_seconds.clone(),
        );
        registry.register("provisioner_http_connections", "Open HTTP connections", c.open.clone());
        registry.register(
            "provisioner_http_accept_errors",
            "Failed accepts (e.g. out of file descriptors)",
            c.accept_errors.clone(),
        );
        registry.register(
            "provisioner_http_connections_closed",
            "Connections closed by a timeout, by reason",
            c.closed.clone(),
        );
        registry.register("provisioner_job_attempts", "Job attempts, by outcome", metrics.attempts.clone());
        registry.register(
            "provisioner_genesys_auth_failed",
            "1 while Genesys refuses the client credentials (workers paused)",
            metrics.genesys_auth_failed.clone(),
        );
        registry.register("provisioner_job_duration_seconds", "Time a job attempt took", metrics.durations.clone());
        metrics.siem.register(&mut registry);
        if let Some(client) = genesys {
            registry.register_collector(Box::new(GenesysCounters(client)));
        }
        Metrics { registry, ..metrics }
    }

    /// Whether Genesys refuses the client credentials (the workers are paused).
    pub fn genesys_auth_failed(&self) -> bool {
        self.genesys_auth_failed.get() != 0
    }

    /// The text exposition of everything held; reads no database.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    fn webhook(&self, outcome: WebhookOutcome) {
        self.webhooks.get_or_create(&WebhookLabels { outcome }).inc();
    }

    /// A job moved from one state to another (`None`: it was not, or is no longer, in the table).
    fn queue_moved(&self, from: Option<JobState>, to: Option<JobState>) {
        self.queue_moves.fetch_add(1, Relaxed);
        if let Some(state) = from {
            self.queue.get_or_create(&QueueLabels { state }).dec();
        }
        if let Some(state) = to {
            self.queue.get_or_create(&QueueLabels { state }).inc();
        }
    }

    /// Sets the queue gauges to one count of the jobs table.
    pub async fn seed_queue(&self, store: &JobStore) -> Result<(), QueueError> {
        let counts = store.counts_by_state().await?;
        self.set_queue(&counts);
        Ok(())
    }

    fn set_queue(&self, counts: &[(JobState, u64)]) {
        for (state, n) in counts {
            self.queue.get_or_create(&QueueLabels { state: *state }).set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Counts the jobs table again and sets the queue gauges to it, unless one of this process's own
    /// queue events came while it counted (the count may or may not include that event's change):
    /// then it returns false and changes nothing. `force` sets the count regardless.
    pub async fn resync_queue(&self, store: &JobStore, force: bool) -> Result<bool, QueueError> {
        let before = self.queue_moves.load(Relaxed);
        let counts = store.counts_by_state().await?;
        if !force && self.queue_moves.load(Relaxed) != before {
            return Ok(false);
        }
        self.set_queue(&counts);
        Ok(true)
    }

    /// Every `every` until `stop`, counts the jobs table again for the queue gauges (see
    /// `resync_queue`; after `RESYNC_TRIES` counts that raced with events, the last is set anyway).
    pub async fn run_queue_resync(self: Arc<Self>, store: JobStore, every: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {},
                _ = stop.cancelled() => return,
            }
            for attempt in 1..=RESYNC_TRIES {
                match self.resync_queue(&store, attempt == RESYNC_TRIES).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "counting the queue for the metrics failed; will retry");
                        break;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(RESYNC_RETRY) => {},
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    destination: String,
    reason: DeliveryFailure,
}

/// Why a delivery to a SIEM failed (the `reason` of `provisioner_siem_delivery_failures_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryFailure {
    /// The destination said it is busy (HEC 503, any 429): backing off.
    Busy,
    /// Unreachable, timed out, or a server error: backing off.
    Unavailable,
    /// It refused the records (HEC 400/401/403, other 4xx, an untrusted certificate): misconfigured;
    /// the records are kept and sent again slowly.
    Refused,
}

impl DeliveryFailure {
    pub const ALL: [DeliveryFailure; 3] =
        [DeliveryFailure::Busy, DeliveryFailure::Unavailable, DeliveryFailure::Refused];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryFailure::Busy => "busy",
            DeliveryFailure::Unavailable => "unavailable",
            DeliveryFailure::Refused => "refused",
        }
    }
}

/// SIEM delivery (`crate::outbox`): what waits in the outbox and how deliveries go, per destination.
/// The outbox gauges are counted from the tables every few seconds; the counters move as batches go.
#[derive(Debug, Default)]
pub struct SiemStats {
    records: Gauge,
    pending: Family<DestinationLabels, Gauge>,
    oldest: Family<DestinationLabels, Gauge<f64, AtomicU64>>,
    delivered: Family<DestinationLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    refusing: Family<DestinationLabels, Gauge>,
}

impl SiemStats {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "provisioner_siem_outbox_records",
            "Records in the SIEM outbox not yet confirmed by every destination",
            self.records.clone(),
        );
        registry.register(
            "provisioner_siem_pending_records",
            "Records waiting for a SIEM destination (its outbox depth)",
            self.pending.clone(),
        );
        registry.register(
            "provisioner_siem_oldest_pending_seconds",
            "Age of the oldest record waiting for a SIEM destination (0 when none waits)",
            self.oldest.clone(),
        );
        registry.register(
            "provisioner_siem_delivered_records",
            "Records a SIEM destination confirmed",
            self.delivered.clone(),
        );
        registry.register(
            "provisioner_siem_delivery_failures",
            "Failed deliveries (batches) to a SIEM destination, by reason",
            self.failures.clone(),
        );
        registry.register(
            "provisioner_siem_destination_refusing",
            "1 while a SIEM destination refuses the records as sent (misconfigured)",
            self.refusing.clone(),
        );
    }

    fn labels(destination: &str) -> DestinationLabels {
        DestinationLabels { destination: destination.to_string() }
    }

    /// Every series of `destination`, at 0 (a rate over a series that appears with its first event
    /// misses that event).
    pub fn destination(&self, destination: &str) {
        let labels = Self::labels(destination);
        drop(self.pending.get_or_create(&labels));
        drop(self.oldest.get_or_create(&labels));
        drop(self.delivered.get_or_create(&labels));
        drop(self.refusing.get_or_create(&labels));
        for reason in DeliveryFailure::ALL {
            drop(self.failures.get_or_create(&FailureLabels { destination: destination.to_string(), reason }));
        }
    }

    pub fn delivered(&self, destination: &str, records: u64) {
        self.delivered.get_or_create(&Self::labels(destination)).inc_by(records);
    }

    pub fn failed(&self, destination: &str, reason: DeliveryFailure) {
        self.failures.get_or_create(&FailureLabels { destination: destination.to_string(), reason }).inc();
        self.refusing.get_or_create(&Self::labels(destination)).set(i64::from(reason == DeliveryFailure::Refused));
    }

    /// A delivery to `destination` went through: it no longer refuses.
    pub fn recovered(&self, destination: &str) {
        self.refusing.get_or_create(&Self::labels(destination)).set(0);
    }

    /// What waits for `destination`: `records`, the oldest of them `oldest` old.
    pub fn set_pending(&self, destination: &str, records: u64, oldest: Duration) {
        let labels = Self::labels(destination);
        self.pending.get_or_create(&labels).set(i64::try_from(records).unwrap_or(i64::MAX));
        self.oldest.get_or_create(&labels).set(oldest.as_secs_f64());
    }

    pub fn set_records(&self, records: u64) {
        self.records.set(i64::try_from(records).unwrap_or(i64::MAX));
    }
}

impl Subscriber for Metrics {
    fn observe(&self, event: &Event<'_>) {
        use JobState::{Dead, Queued, Running, Succeeded};
        match *event {
            Event::Refused(refused) => self.webhook(refused.outcome),
            Event::Accepted(_) => {
                self.webhook(WebhookOutcome::Accepted);
                self.queue_moved(None, Some(Queued));
            }
            Event::Duplicate(_) => self.webhook(WebhookOutcome::Duplicate),
            Event::Conflict { .. } => self.webhook(WebhookOutcome::Conflict),
            Event::IntakeCommitted { rows, took } => {
                let i = &self.intake;
                i.batches.inc();
                i.rows.inc_by(rows as u64);
                i.largest_batch.fetch_max(rows as u64, Relaxed);
                i.commit_seconds.inc_by(took.as_secs_f64());
            }
            Event::AttemptStarted { taken_over: false, .. } => self.queue_moved(Some(Queued), Some(Running)),
            // It was running under the lease that expired, and runs again.
            Event::AttemptStarted { taken_over: true, .. } => {}
            Event::AttemptFinished(attempt) => {
                self.attempts.get_or_create(&AttemptLabels { outcome: attempt.outcome }).inc();
                if let Some(took) = attempt.took {
                    self.durations.observe(took.as_secs_f64());
                }
                match attempt.outcome {
                    AttemptOutcome::Retry | AttemptOutcome::Released | AttemptOutcome::Paused => {
                        self.queue_moved(Some(Running), Some(Queued))
                    }
                    // `Succeeded` and `DeadLettered` follow; a lost attempt's job runs on.
                    AttemptOutcome::Succeeded | AttemptOutcome::Dead | AttemptOutcome::Lost => {}
                }
            }
            Event::Succeeded { .. } => self.queue_moved(Some(Running), Some(Succeeded)),
            Event::DeadLettered { .. } => self.queue_moved(Some(Running), Some(Dead)),
            Event::Replayed { .. } => self.queue_moved(Some(Dead), Some(Queued)),
            Event::Deleted { .. } => self.queue_moved(Some(Dead), None),
            Event::Swept(swept) => {
                self.queue_moves.fetch_add(1, Relaxed);
                self.queue.get_or_create(&QueueLabels { state: Succeeded }).dec_by(swept.forgotten as i64);
            }
            Event::AuthPaused { .. } => {
                self.genesys_auth_failed.set(1);
            }
            Event::AuthRecovered { .. } => {
                self.genesys_auth_failed.set(0);
            }
            Event::Provisioned { .. }
            | Event::ProvisionFailed { .. }
            | Event::Synced { .. }
            | Event::Reconciled { .. }
            | Event::SyncFailed { .. }
            | Event::Validated(_)
            | Event::Discrepancy { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Attempt, Intake, Refused, Sender, Subject};

    fn job() -> crate::queue::Job {
        crate::queue::Job::running(serde_json::json!({}), 1)
    }

    fn line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
    }

    #[test]
    fn the_text_keeps_the_names_and_labels_of_before() {
        let metrics = Metrics::default();
        let text = metrics.render();
        for expected in [
            "# TYPE provisioner_webhooks_total counter",
            "provisioner_webhooks_total{outcome=\"unsupported_media_type\"} 0",
            "provisioner_queue_jobs{state=\"queued\"} 0",
            "provisioner_intake_commits_total 0",
            "provisioner_intake_rows_total 0",
            "provisioner_http_connections 0",
            "provisioner_http_accept_errors_total 0",
            "provisioner_http_connections_closed_total{reason=\"header_timeout\"} 0",
            "provisioner_job_attempts_total{outcome=\"paused\"} 0",
            "provisioner_genesys_auth_failed 0",
            "provisioner_job_duration_seconds_bucket{le=\"0.005\"} 0",
            "provisioner_job_duration_seconds_bucket{le=\"+Inf\"} 0",
            "provisioner_job_duration_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == expected), "missing {expected:?} in\n{text}");
        }
        assert!(line(&text, "provisioner_intake_commit_seconds_total").is_some(), "{text}");
        assert!(!text.contains("provisioner_genesys_requests_total"), "no client, no client counters");
    }

    #[test]
    fn the_queue_gauges_follow_the_events_and_a_seed() {
        let metrics = Metrics::default();
        metrics.set_queue(&[(JobState::Queued, 5), (JobState::Dead, 1)]);
        let job = job();
        let intake = Intake { audit_id: job.audit_id, webhook_id: "w", endpoint: "/e", subject: Subject::default() };
        let attempt =
            |outcome, took| Attempt { job: &job, outcome, took, detail: None, next_attempt_at: None, result: None };
        let ms = Some(Duration::from_millis(3));
        for event in [
            Event::Accepted(intake),
            Event::Duplicate(intake),
            Event::Refused(Refused {
                endpoint: "/e",
                outcome: WebhookOutcome::Unauthorized,
                http_status: 401,
                error: &"no",
                violations: &[],
                sender: Sender::Unauthenticated { source: "10.0.0.1" },
            }),
            // Two claimed; one retries and runs again, then succeeds; the other dies.
            Event::AttemptStarted { job: &job, taken_over: false },
            Event::AttemptStarted { job: &job, taken_over: false },
            Event::AttemptFinished(attempt(AttemptOutcome::Retry, ms)),
            Event::AttemptStarted { job: &job, taken_over: false },
            Event::AttemptFinished(attempt(AttemptOutcome::Succeeded, ms)),
            Event::Succeeded { job: &job },
            Event::AttemptFinished(attempt(AttemptOutcome::Dead, ms)),
            Event::DeadLettered { job: &job, reason: "no" },
            // The old dead letter is replayed; a lost attempt is taken over.
            Event::Replayed { job: &job },
            Event::AttemptStarted { job: &job, taken_over: false },
            Event::AttemptFinished(attempt(AttemptOutcome::Lost, None)),
            Event::AttemptStarted { job: &job, taken_over: true },
        ] {
            metrics.observe(&event);
        }
        let text = metrics.render();
        for expected in [
            "provisioner_queue_jobs{state=\"queued\"} 4",
            "provisioner_queue_jobs{state=\"running\"} 1",
            "provisioner_queue_jobs{state=\"succeeded\"} 1",
            "provisioner_queue_jobs{state=\"dead\"} 1",
            "provisioner_webhooks_total{outcome=\"accepted\"} 1",
            "provisioner_webhooks_total{outcome=\"duplicate\"} 1",
            "provisioner_webhooks_total{outcome=\"unauthorized\"} 1",
            "provisioner_job_attempts_total{outcome=\"retry\"} 1",
            "provisioner_job_attempts_total{outcome=\"succeeded\"} 1",
            "provisioner_job_attempts_total{outcome=\"dead\"} 1",
            "provisioner_job_attempts_total{outcome=\"lost\"} 1",
            // A lost attempt's duration is not known: three timed attempts.
            "provisioner_job_duration_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn the_paused_gauge_follows_the_auth_events() {
        let metrics = Metrics::default();
        metrics.observe(&Event::AuthPaused { reason: "401", retry_every: Duration::from_secs(60) });
        assert!(metrics.genesys_auth_failed());
        assert!(metrics.render().lines().any(|l| l == "provisioner_genesys_auth_failed 1"));
        metrics.observe(&Event::AuthRecovered { was: "401" });
        assert!(!metrics.genesys_auth_failed());
    }
}
