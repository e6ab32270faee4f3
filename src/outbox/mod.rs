//! SIEM delivery: every audit-worthy decision as a durable record (the outbox, in the job store)
//! and its delivery to each configured destination (Splunk HEC, any HTTP collector, syslog).
//!
//! `Outbox` is the bus's `Recorder`: it turns a lifecycle event into its record (`record`), which
//! the emitter commits with the state change the event tells of (the queue's functions take the
//! records along); records of decisions that change nothing are appended in group commits
//! (`append`); and as a subscriber it keeps the records of what the pipeline tells during a job's
//! attempt until the worker commits them with the attempt's result (`take_attempt`). Nothing here
//! runs on a webhook's path but the commit: the answer never waits for a SIEM.

pub mod deliver;
pub mod http_json;
pub mod record;
pub mod splunk_hec;
pub mod syslog;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::SiemConfig;
use crate::lifecycle::{Event, Recorder, Subscriber};
use crate::metrics::Metrics;
use crate::queue::outbox::{AppendCommitter, Appender};
use crate::queue::{JobStore, OutboxRow, QueueError};
pub use deliver::Destination;

/// The SIEM outbox of one App. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    appender: Appender,
    /// Records of the pipeline's events per job whose attempt is running.
    attempts: Mutex<HashMap<Uuid, Vec<OutboxRow>>>,
    destinations: Vec<Arc<Destination>>,
    /// How deliveries go (`[siem]`), shared by the destinations' tasks.
    settings: Arc<SiemConfig>,
}

/// What `App::run_until_stopped` starts: the appender's committer and the deliveries.
pub struct Runner {
    outbox: Outbox,
    committer: AppendCommitter,
}

/// The tasks of a running outbox, to be awaited when it stops.
pub struct Running {
    appender: JoinHandle<()>,
    appender_stop: CancellationToken,
    deliveries: Vec<JoinHandle<()>>,
}

impl Outbox {
    /// The outbox of `config`'s destinations; None when there is none (nothing is recorded then).
    pub fn new(config: &SiemConfig) -> Result<Option<(Outbox, Runner)>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let destinations = config
            .destinations
            .iter()
            .map(|d| Destination::new(d, &config.host).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (appender, committer) = Appender::channel(256);
        let outbox = Outbox {
            inner: Arc::new(Inner {
                appender,
                attempts: Mutex::new(HashMap::new()),
                destinations,
                settings: Arc::new(config.clone()),
            }),
        };
        let runner = Runner { outbox: outbox.clone(), committer };
        Ok(Some((outbox, runner)))
    }

    pub fn destinations(&self) -> &[Arc<Destination>] {
        &self.inner.destinations
    }

    /// The names every record is written for.
    pub fn names(&self) -> Vec<String> {
        self.inner.destinations.iter().map(|d| d.name.clone()).collect()
    }

    fn attempts(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<OutboxRow>>> {
        self.inner.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Records the configured destinations in the store (`outbox` None: none is) and says, loudly,
/// which destination no longer configured loses its undelivered records.
pub async fn register(outbox: Option<&Outbox>, store: &JobStore) -> Result<(), QueueError> {
    let configured: Vec<(&str, &str)> =
        outbox.map(|o| o.destinations().iter().map(|d| (d.name.as_str(), d.kind)).collect()).unwrap_or_default();
    for (name, records) in store.register_destinations(&configured).await? {
        if records > 0 {
            tracing::warn!(
                destination = name,
                records,
                "SIEM destination no longer configured: its undelivered records were dropped from the outbox"
            );
        }
    }
    Ok(())
}

impl Runner {
    /// Starts the appender's committer, one delivery task per destination and the gauges. The
    /// deliveries stop on `stop`; the appender on `Running::stop`, after the workers (whose pauses
    /// it records) have stopped.
    pub fn start(self, store: JobStore, metrics: Arc<Metrics>, stop: CancellationToken) -> Running {
        let Runner { outbox, committer } = self;
        let appender_stop = CancellationToken::new();
        let appender = committer.start(store.clone(), appender_stop.clone());
        // Names this process in the delivery leases of a shared store.
        let holder = Uuid::new_v4().to_string();
        let mut deliveries = Vec::new();
        for destination in outbox.destinations() {
            metrics.siem.destination(&destination.name);
            deliveries.push(tokio::spawn(deliver::run(
                destination.clone(),
                store.clone(),
                metrics.clone(),
                outbox.inner.settings.clone(),
                holder.clone(),
                stop.clone(),
            )));
        }
        deliveries.push(tokio::spawn(deliver::run_gauges(
            outbox.destinations().to_vec(),
            store,
            metrics,
            deliver::GAUGES_EVERY,
            stop,
        )));
        Running { appender, appender_stop, deliveries }
    }
}

impl Running {
    /// Waits for the deliveries (told to stop already), then stops the appender once what is in
    /// its channel is committed.
    pub async fn stop(self) {
        for delivery in self.deliveries {
            let _ = delivery.await;
        }
        self.appender_stop.cancel();
        let _ = self.appender.await;
    }
}

impl Subscriber for Outbox {
    /// Keeps the records of what the pipeline tells during an attempt; every other event's record
    /// is committed by its emitter (see `crate::lifecycle`), so a new event must say here which it is.
    fn observe(&self, event: &Event<'_>) {
        let job = match *event {
            Event::Provisioned { job, .. }
            | Event::ProvisionFailed { job, .. }
            | Event::Synced { job, .. }
            | Event::Reconciled { job, .. }
            | Event::SyncFailed { job, .. }
            | Event::Discrepancy { job, .. } => job,
            // Written by their emitter: with the intake's insert (accepted), an attempt's result
            // (attempts, dead letters), a claim (lost attempts), a replay or a delete; or appended
            // (refusals, duplicates, conflicts, validation decisions, pauses, sweeps).
            Event::Refused(_)
            | Event::Validated(_)
            | Event::Accepted(_)
            | Event::Duplicate(_)
            | Event::Conflict { .. }
            | Event::AttemptFinished(_)
            | Event::DeadLettered { .. }
            | Event::Replayed { .. }
            | Event::Deleted { .. }
            | Event::AuthPaused { .. }
            | Event::AuthRecovered { .. }
            | Event::Swept(_) => return,
            // No audit line, no record.
            Event::IntakeCommitted { .. } | Event::AttemptStarted { .. } | Event::Succeeded { .. } => return,
        };
        if let Some(row) = record::of_event(event) {
            self.attempts().entry(job.audit_id).or_default().push(row);
        }
    }
}

impl Recorder for Outbox {
    fn record(&self, event: &Event<'_>) -> Option<OutboxRow> {
        record::of_event(event)
    }

    fn take_attempt(&self, audit_id: Uuid) -> Vec<OutboxRow> {
        self.attempts().remove(&audit_id).unwrap_or_default()
    }

    fn append(&self, rows: Vec<OutboxRow>) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + '_>> {
        Box::pin(self.inner.appender.append(rows))
    }
}
