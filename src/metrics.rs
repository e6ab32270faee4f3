//! Service metrics in Prometheus text format.
//!
//! A small registry per `App` instead of a process-global recorder: tests run many apps in one
//! process, and each must see only its own counts.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::queue::JobState;

/// Outcomes of a webhook at the edge.
pub const WEBHOOK_OUTCOMES: &[&str] = &[
    "accepted",
    "duplicate",
    "conflict",
    "unauthorized",
    "bad_request",
    "unprocessable",
    "too_large",
    "unsupported_media_type",
    "unavailable",
    "timeout",
];

/// Outcomes of a job attempt.
/// `paused`: given back uncounted because Genesys refused the credentials.
pub const ATTEMPT_OUTCOMES: &[&str] = &["succeeded", "retry", "dead", "released", "paused"];

const DURATION_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// What the intake committer did: how well concurrent requests share commits, and what a commit costs.
#[derive(Debug, Default)]
pub struct IntakeStats {
    pub batches: AtomicU64,
    pub rows: AtomicU64,
    pub largest_batch: AtomicU64,
    pub commit_nanos: AtomicU64,
}

/// The HTTP edge's connections (`http::serve`).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicU64,
    /// Failed accepts (out of descriptors and the like), each one.
    pub accept_errors: AtomicU64,
    closed_header_timeout: AtomicU64,
    closed_idle_timeout: AtomicU64,
    closed_response_timeout: AtomicU64,
}

impl ConnectionStats {
    /// A connection closed by a limit: `header_timeout`, `idle_timeout` or `response_timeout`.
    pub fn closed(&self, reason: &str) {
        let counter = match reason {
            "header_timeout" => &self.closed_header_timeout,
            "idle_timeout" => &self.closed_idle_timeout,
            _ => &self.closed_response_timeout,
        };
        counter.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP provisioner_http_connections Open HTTP connections.");
        let _ = writeln!(out, "# TYPE provisioner_http_connections gauge");
        let _ = writeln!(out, "provisioner_http_connections {}", self.open.load(Relaxed));
        let _ =
            writeln!(out, "# HELP provisioner_http_accept_errors_total Failed accepts (e.g. out of file descriptors).");
        let _ = writeln!(out, "# TYPE provisioner_http_accept_errors_total counter");
        let _ = writeln!(out, "provisioner_http_accept_errors_total {}", self.accept_errors.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP provisioner_http_connections_closed_total Connections closed by a timeout, by reason."
        );
        let _ = writeln!(out, "# TYPE provisioner_http_connections_closed_total counter");
        for (reason, counter) in [
            ("header_timeout", &self.closed_header_timeout),
            ("idle_timeout", &self.closed_idle_timeout),
            ("response_timeout", &self.closed_response_timeout),
        ] {
            let _ = writeln!(
                out,
                "provisioner_http_connections_closed_total{{reason=\"{reason}\"}} {}",
                counter.load(Relaxed)
            );
        }
    }
}

pub struct Metrics {
    pub intake: IntakeStats,
    pub connections: ConnectionStats,
    /// The Genesys client whose counters are shown, when the service has one.
    pub genesys: Option<std::sync::Arc<crate::genesys::GenesysClient>>,
    webhooks: Vec<AtomicU64>,
    attempts: Vec<AtomicU64>,
    durations: Mutex<Histogram>,
    /// Genesys refuses the client credentials: workers are paused (`/readyz` says so too).
    genesys_auth_failed: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            intake: IntakeStats::default(),
            connections: ConnectionStats::default(),
            genesys: None,
            webhooks: WEBHOOK_OUTCOMES.iter().map(|_| AtomicU64::new(0)).collect(),
            attempts: ATTEMPT_OUTCOMES.iter().map(|_| AtomicU64::new(0)).collect(),
            durations: Mutex::new(Histogram { buckets: vec![0; DURATION_BUCKETS.len()], ..Default::default() }),
            genesys_auth_failed: Default::default(),
        }
    }
}

fn bump(names: &[&str], counters: &[AtomicU64], name: &str) {
    if let Some(i) = names.iter().position(|n| *n == name) {
        counters[i].fetch_add(1, Relaxed);
    }
}

impl Metrics {
    /// A registry that also shows the Genesys client's counters.
    pub fn with_genesys(genesys: Option<std::sync::Arc<crate::genesys::GenesysClient>>) -> Self {
        Metrics { genesys, ..Metrics::default() }
    }

    pub fn set_genesys_auth_failed(&self, failed: bool) {
        self.genesys_auth_failed.store(failed, Relaxed);
    }

    /// Whether Genesys refuses the client credentials (the workers are paused).
    pub fn genesys_auth_failed(&self) -> bool {
        self.genesys_auth_failed.load(Relaxed)
    }

    pub fn webhook(&self, outcome: &str) {
        bump(WEBHOOK_OUTCOMES, &self.webhooks, outcome);
    }

    /// One intake transaction of `rows` rows, commit included.
    pub fn intake_commit(&self, rows: usize, took: Duration) {
        self.intake.batches.fetch_add(1, Relaxed);
        self.intake.rows.fetch_add(rows as u64, Relaxed);
        self.intake.largest_batch.fetch_max(rows as u64, Relaxed);
        self.intake.commit_nanos.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    pub fn attempt(&self, outcome: &str, took: Duration) {
        bump(ATTEMPT_OUTCOMES, &self.attempts, outcome);
        let secs = took.as_secs_f64();
        let mut h = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.buckets[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The text exposition; `queue` is the current count of jobs per state.
    pub fn render(&self, queue: &[(JobState, u64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP provisioner_webhooks_total Webhooks received, by outcome.");
        let _ = writeln!(out, "# TYPE provisioner_webhooks_total counter");
        for (name, c) in WEBHOOK_OUTCOMES.iter().zip(&self.webhooks) {
            let _ = writeln!(out, "provisioner_webhooks_total{{outcome=\"{name}\"}} {}", c.load(Relaxed));
        }
        let _ = writeln!(out, "# HELP provisioner_queue_jobs Jobs in the queue, by state.");
        let _ = writeln!(out, "# TYPE provisioner_queue_jobs gauge");
        for (state, n) in queue {
            let _ = writeln!(out, "provisioner_queue_jobs{{state=\"{state}\"}} {n}");
        }
        let i = &self.intake;
        let _ = writeln!(out, "# HELP provisioner_intake_commits_total Intake transactions (group commits).");
        let _ = writeln!(out, "# TYPE provisioner_intake_commits_total counter");
        let _ = writeln!(out, "provisioner_intake_commits_total {}", i.batches.load(Relaxed));
        let _ = writeln!(out, "# HELP provisioner_intake_rows_total Webhook rows written by intake transactions.");
        let _ = writeln!(out, "# TYPE provisioner_intake_rows_total counter");
        let _ = writeln!(out, "provisioner_intake_rows_total {}", i.rows.load(Relaxed));
        let _ = writeln!(out, "# HELP provisioner_intake_commit_seconds_total Time spent in intake transactions.");
        let _ = writeln!(out, "# TYPE provisioner_intake_commit_seconds_total counter");
        let _ = writeln!(out, "provisioner_intake_commit_seconds_total {}", i.commit_nanos.load(Relaxed) as f64 / 1e9);
        self.connections.render(&mut out);
        let _ = writeln!(out, "# HELP provisioner_job_attempts_total Job attempts, by outcome.");
        let _ = writeln!(out, "# TYPE provisioner_job_attempts_total counter");
        for (name, c) in ATTEMPT_OUTCOMES.iter().zip(&self.attempts) {
            let _ = writeln!(out, "provisioner_job_attempts_total{{outcome=\"{name}\"}} {}", c.load(Relaxed));
        }
        if let Some(g) = &self.genesys {
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
                let _ = writeln!(out, "# HELP provisioner_genesys_{name}_total {help}");
                let _ = writeln!(out, "# TYPE provisioner_genesys_{name}_total counter");
                let _ = writeln!(out, "provisioner_genesys_{name}_total {value}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP provisioner_genesys_auth_failed 1 while Genesys refuses the client credentials (workers paused)."
        );
        let _ = writeln!(out, "# TYPE provisioner_genesys_auth_failed gauge");
        let _ = writeln!(out, "provisioner_genesys_auth_failed {}", u8::from(self.genesys_auth_failed()));
        let h = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP provisioner_job_duration_seconds Time a job attempt took.");
        let _ = writeln!(out, "# TYPE provisioner_job_duration_seconds histogram");
        for (le, n) in DURATION_BUCKETS.iter().zip(&h.buckets) {
            let _ = writeln!(out, "provisioner_job_duration_seconds_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "provisioner_job_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "provisioner_job_duration_seconds_sum {}", h.sum);
        let _ = writeln!(out, "provisioner_job_duration_seconds_count {}", h.count);
        out
    }
}
