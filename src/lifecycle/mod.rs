//! The job lifecycle, typed: the kinds of job, how an intake, an attempt, a provisioning or a sync
//! ends, and the events the edge, the queue and the pipeline emit as a webhook becomes a job and the
//! job runs.
//!
//! An emitter knows nothing of who listens: it hands each event to the `Bus`, which calls every
//! subscriber in turn, synchronously, on the emitter's own task. The audit trail (`audit::AuditTrail`)
//! and the metrics (`crate::metrics::Metrics`) are subscribers, so what one writes the other counts;
//! a further consumer (delivery to a SIEM or an HRIS) implements `Subscriber` and is registered in
//! `App::build`. Events borrow what they describe: emitting one allocates nothing, and a subscriber
//! copies only what it keeps. A subscriber must not block: it runs on a request's or a worker's task
//! (the audit log only appends to a buffer, the metrics add to atomics).
//!
//! A subscriber cannot wait for a database, so what must be durable (the SIEM outbox record of a
//! decision) goes another way: the bus's `Recorder` turns an event into its record, and the emitter
//! commits that record in the same transaction as the state change the event tells of (the intake's
//! insert, an attempt's result, a replay), or, for a decision that changes no state (a refusal, a
//! duplicate), appends it with `Bus::append` and waits for that commit before it goes on.

pub mod audit;

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::pipeline::directory::SyncKind;
use crate::policy::Violation;
use crate::queue::{Job, OutboxRow, QueueError};

/// A closed set of names, each with its one spelling (its serde name, its text in the database, the
/// audit trail and the metric labels). Generates the enum, `ALL`, `as_str`, `Display`, `FromStr` and
/// serde from one list, so the names cannot drift apart and a new name reaches every consumer.
macro_rules! names {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every name, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Compares as its text does (`outcome == "succeeded"`).
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { of: stringify!($name), name: s.to_string() }),
                }
            }
        }
    };
}

/// A text that names none of a set's names (a row written by another version of the service).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {of} {name:?}")]
pub struct UnknownName {
    pub of: &'static str,
    pub name: String,
}

names! {
    /// What a job does; selects its handler. Stored as text (`jobs.kind`, and in the idempotency key).
    pub enum JobKind {
        /// A new hire from the HR webhook: create the user, add them to their department's group.
        NewHire = "hr.user_created",
        /// A directory event: make the Genesys user match the HR record.
        DirectorySync = "directory.sync",
        /// An admin's reconcile: compare the users in Genesys with the mirror, refresh it, report drift.
        Reconcile = "genesys.reconcile",
        /// A user event out of Genesys Cloud (`/webhooks/genesys/events`): an echo of the service's
        /// own write is recorded and dropped; anything else is recorded as an outside change.
        GenesysEvent = "genesys.event",
    }
}

names! {
    /// How the edge answered a webhook (or a batch item): the `outcome` of `provisioner_webhooks_total`.
    pub enum WebhookOutcome {
        Accepted = "accepted",
        Duplicate = "duplicate",
        Conflict = "conflict",
        Unauthorized = "unauthorized",
        BadRequest = "bad_request",
        Unprocessable = "unprocessable",
        /// The user the event describes violates the provisioning policy (422 with the violations).
        PolicyDenied = "policy_denied",
        TooLarge = "too_large",
        UnsupportedMediaType = "unsupported_media_type",
        Unavailable = "unavailable",
        Timeout = "timeout",
        /// A failure of the service's own (a bug, an unreadable row): answered 500.
        InternalError = "internal_error",
    }
}

names! {
    /// How a job attempt ended: the `outcome` of `provisioner_job_attempts_total`, the status of its
    /// `job.attempt` audit line, and (succeeded, retry, dead, lost) of its row in the attempt history.
    pub enum AttemptOutcome {
        Succeeded = "succeeded",
        /// Failed; runs again after a backoff.
        Retry = "retry",
        /// Failed for good: the job is a dead letter.
        Dead = "dead",
        /// Given back to the queue uncounted: the service stopped before the attempt finished.
        Released = "released",
        /// Given back to the queue uncounted: Genesys refused the service's credentials.
        Paused = "paused",
        /// Its worker stopped or crashed; found when another worker took the expired lease over.
        Lost = "lost",
    }
}

names! {
    /// What provisioning a new hire did to Genesys.
    pub enum ProvisionOutcome {
        Created = "created",
        /// The user existed already (a retry after a partial failure, or a rehire) and was taken on.
        Adopted = "adopted",
        /// An earlier attempt of the same job created the user (its checkpoint says so).
        Resumed = "resumed",
    }
}

names! {
    /// What the validation webhook decided about a user: the status of its audit line.
    pub enum ValidationDecision {
        /// `user.created` with a user that complies: 200 `ACCEPTED`.
        Accepted = "accepted",
        /// `user.created` with a user that violates the policy: 400 `REJECTED` with the violations.
        Rejected = "rejected",
        /// Another event type: 200 `OK`, nothing judged.
        Ignored = "ignored",
    }
}

names! {
    /// What a discrepancy report entry is: `kind` in the report, the audit action `discrepancy.<kind>`.
    pub enum DiscrepancyKind {
        /// After a PATCH, Genesys holds an attribute other than what was sent.
        AttributeMismatch = "attribute_mismatch",
        /// Someone changed a managed attribute inside Genesys since the service last wrote the user.
        Drift = "drift",
    }
}

names! {
    /// What a directory sync did to the Genesys user (`outcome` in a sync job's result).
    pub enum SyncOutcome {
        Updated = "updated",
        Unchanged = "unchanged",
        Created = "created",
        Deactivated = "deactivated",
        AlreadyInactive = "already_inactive",
        Deleted = "deleted",
        NotFound = "not_found",
    }
}

/// Who and what an intake decision is about, as far as the edge read it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    pub email: Option<&'a str>,
    pub department_code: Option<&'a str>,
    /// A directory event's type.
    pub sync_event: Option<SyncKind>,
    /// A directory event's person key.
    pub external_id: Option<&'a str>,
    /// The item's place in a batch.
    pub index: Option<usize>,
}

impl<'a> Subject<'a> {
    /// A person, by email and department code, each when known.
    pub fn person(email: Option<&'a str>, department_code: Option<&'a str>) -> Self {
        Subject { email, department_code, ..Subject::default() }
    }

    /// A directory event, by type and person key.
    pub fn directory(sync_event: SyncKind, external_id: &'a str) -> Self {
        Subject { sync_event: Some(sync_event), external_id: Some(external_id), ..Subject::default() }
    }

    /// The same, as item `index` of a batch.
    pub fn at(self, index: Option<usize>) -> Self {
        Subject { index, ..self }
    }
}

/// A webhook the edge stored (or found stored) as a job.
#[derive(Clone, Copy, Debug)]
pub struct Intake<'a> {
    pub audit_id: Uuid,
    pub webhook_id: &'a str,
    pub endpoint: &'static str,
    pub subject: Subject<'a>,
}

/// A webhook (or batch item) the edge refused; nothing was stored.
#[derive(Clone, Copy)]
pub struct Refused<'a> {
    pub endpoint: &'static str,
    pub outcome: WebhookOutcome,
    pub http_status: u16,
    /// Why, in the words of the answer.
    pub error: &'a dyn Display,
    /// When the user it describes violates the provisioning policy: every violation (else empty).
    pub violations: &'a [Violation],
    pub sender: Sender<'a>,
}

/// A decision of the validation webhook (`POST /webhook/scim-validation`) about one event.
#[derive(Clone, Copy, Debug)]
pub struct Validation<'a> {
    pub endpoint: &'static str,
    pub decision: ValidationDecision,
    /// The `x-genesys-webhook-id` header, when sent.
    pub webhook_id: Option<&'a str>,
    pub event_type: &'a str,
    pub event_timestamp: Option<&'a str>,
    /// The user's `id` and `userName` (accepted and rejected decisions).
    pub scim_id: Option<&'a str>,
    pub user_name: Option<&'a str>,
    /// The code of the department the user's `department` names, when it is configured.
    pub department_code: Option<&'a str>,
    /// Every violation (rejected decisions).
    pub violations: &'a [Violation],
}

/// What the edge knows of a refused webhook's sender.
#[derive(Clone, Copy, Debug)]
pub enum Sender<'a> {
    /// Refused before the signature was checked (content type, size, body read, signature): anyone
    /// can send these, so only the peer address is known.
    Unauthenticated { source: &'a str },
    /// Signed (or signatures are not required): its event id when it gave one, and what it is about.
    Signed { webhook_id: Option<&'a str>, subject: Subject<'a> },
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The job as claimed for this attempt (`attempts` counts it).
    pub job: &'a Job,
    pub outcome: AttemptOutcome,
    /// None for a lost attempt: its end was not seen.
    pub took: Option<Duration>,
    /// Why it failed, in words.
    pub detail: Option<&'a str>,
    /// When a retry is due (Unix milliseconds).
    pub next_attempt_at: Option<i64>,
    /// What a succeeded attempt reported (stored as the job's result).
    pub result: Option<&'a Value>,
}

/// Why provisioning a new hire failed.
#[derive(Clone, Copy, Debug)]
pub enum ProvisionFailure<'a> {
    /// Genesys answered an error (its status, when it answered one).
    Genesys { status: Option<u16> },
    /// Genesys refused the user as invalid and no correction applies.
    Uncorrectable { status: u16, corrections: &'a [String] },
    /// Retrying later may help.
    Transient,
    /// The user violates the provisioning policy (changed since intake); nothing was sent.
    Policy { violations: &'a [Violation] },
}

/// Why a directory sync failed.
#[derive(Clone, Copy, Debug)]
pub enum SyncFailure<'a> {
    /// The mapped user violates the provisioning policy; nothing was sent.
    Policy { violations: &'a [Violation] },
    /// The mapping, Genesys or a transient condition (`genesys_status` when Genesys answered).
    Failed { genesys_status: Option<u16> },
}

/// One thing that happened to a webhook or a job.
#[derive(Clone, Copy)]
pub enum Event<'a> {
    /// The edge refused a webhook or a batch item.
    Refused(Refused<'a>),
    /// A webhook was stored as a new job (`queued`).
    Accepted(Intake<'a>),
    /// A webhook whose event id was stored before with the same content: answered with that job.
    Duplicate(Intake<'a>),
    /// A webhook whose event id was stored before with other content: refused, nothing stored.
    Conflict { intake: Intake<'a>, error: &'a dyn Display, http_status: u16 },
    /// One intake transaction stored `rows` webhooks (group commit) in `took`, commit included.
    IntakeCommitted { rows: usize, took: Duration },
    /// A worker leased a job and starts an attempt (`queued` to `running`; `taken_over`: the job was
    /// `running` under a lease that expired, and an `AttemptFinished` with `Lost` came first).
    AttemptStarted { job: &'a Job, taken_over: bool },
    /// An attempt ended; `retry`, `released` and `paused` put the job back in the queue.
    AttemptFinished(Attempt<'a>),
    /// The job is done (`succeeded`).
    Succeeded { job: &'a Job },
    /// The job failed for good (`dead`): after its attempt, or when its final attempt's lease expired.
    DeadLettered { job: &'a Job, reason: &'a str },
    /// An admin put a dead letter back in the queue.
    Replayed { job: &'a Job },
    /// An admin deleted a dead letter.
    Deleted { job: &'a Job },
    /// Genesys refused the service's credentials: the workers pause, asking again every `retry_every`.
    AuthPaused { reason: &'a str, retry_every: Duration },
    /// Genesys granted a token again: the workers resume (`was`: why they had paused).
    AuthRecovered { was: &'a str },
    /// A new hire's user is in Genesys; `result` is the job's result.
    Provisioned { job: &'a Job, outcome: ProvisionOutcome, result: &'a Value },
    /// Provisioning a new hire failed (the attempt's outcome follows).
    ProvisionFailed { job: &'a Job, retryable: bool, error: &'a dyn Display, cause: ProvisionFailure<'a> },
    /// A directory event was applied; `result` is the job's result.
    Synced { job: &'a Job, external_id: &'a str, outcome: SyncOutcome, result: &'a Value },
    /// A reconcile finished; `result` is its report (counts, drift, users gone from Genesys).
    Reconciled { job: &'a Job, result: &'a Value },
    /// Applying a directory event failed (the attempt's outcome follows).
    SyncFailed { job: &'a Job, external_id: &'a str, retryable: bool, error: &'a dyn Display, cause: SyncFailure<'a> },
    /// The validation webhook accepted, rejected or ignored an event.
    Validated(Validation<'a>),
    /// Retention purged the personal data of succeeded jobs and deleted those past the dedupe
    /// window (told only when it did something).
    Swept(&'a crate::queue::Swept),
    /// After a sync, Genesys holds an attribute differently from what was sent (`AttributeMismatch`:
    /// `expected` was sent), or someone changed it inside Genesys (`Drift`: `expected` is what the
    /// mirror held). `actual` is what Genesys holds.
    Discrepancy {
        job: &'a Job,
        external_id: &'a str,
        kind: DiscrepancyKind,
        field: &'a str,
        expected: &'a Value,
        actual: &'a Value,
    },
}

/// Something that turns lifecycle events into what it keeps (audit lines, metrics, deliveries).
pub trait Subscriber: Send + Sync + 'static {
    /// Called once per event, on the emitter's task, in emission order for that task.
    fn observe(&self, event: &Event<'_>);
}

/// Turns events into durable records (the SIEM outbox, `crate::outbox::Outbox`). The emitter of an
/// event commits its record with the state change the event tells of; a record of a decision that
/// changes nothing is appended (`append`). As a subscriber it keeps the records of what the pipeline
/// tells during a job's attempt, which the worker commits with the attempt's result (`take_attempt`).
pub trait Recorder: Subscriber {
    /// The record of `event`, or None when it has none (no audit line).
    fn record(&self, event: &Event<'_>) -> Option<OutboxRow>;
    /// The records of what the pipeline told about job `audit_id` since its attempt began.
    fn take_attempt(&self, audit_id: Uuid) -> Vec<OutboxRow>;
    /// Commits records that belong to no state change (group commit); returns once they are.
    fn append(&self, rows: Vec<OutboxRow>) -> Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + '_>>;
}

/// Hands each event to every subscriber, and to the recorder when there is one (SIEM delivery is
/// configured). Cheap to clone: one shared list.
#[derive(Clone)]
pub struct Bus {
    subscribers: Arc<[Arc<dyn Subscriber>]>,
    recorder: Option<Arc<dyn Recorder>>,
}

impl Bus {
    pub fn new(subscribers: Vec<Arc<dyn Subscriber>>) -> Self {
        Bus { subscribers: subscribers.into(), recorder: None }
    }

    /// The bus with `recorder` making the events' durable records (it also observes every event).
    pub fn with_recorder(mut self, recorder: Arc<dyn Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    pub fn emit(&self, event: Event<'_>) {
        for subscriber in self.subscribers.iter() {
            subscriber.observe(&event);
        }
        if let Some(recorder) = &self.recorder {
            recorder.observe(&event);
        }
    }

    /// Whether events have durable records (SIEM delivery is configured).
    pub fn recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// The durable record of `event`, for the emitter to commit with its state change; None when
    /// the event has none or nothing is recorded.
    pub fn record(&self, event: &Event<'_>) -> Option<OutboxRow> {
        self.recorder.as_ref().and_then(|r| r.record(event))
    }

    /// The records of `events`, in order.
    pub fn records(&self, events: &[Event<'_>]) -> Vec<OutboxRow> {
        events.iter().filter_map(|e| self.record(e)).collect()
    }

    /// The records of what the pipeline told about job `audit_id` during its attempt.
    pub fn take_attempt(&self, audit_id: Uuid) -> Vec<OutboxRow> {
        self.recorder.as_ref().map(|r| r.take_attempt(audit_id)).unwrap_or_default()
    }

    /// Commits `rows` (records of decisions that change no state); returns once they are committed.
    pub async fn append(&self, rows: Vec<OutboxRow>) -> Result<(), QueueError> {
        match &self.recorder {
            Some(recorder) if !rows.is_empty() => recorder.append(rows).await,
            _ => Ok(()),
        }
    }

    /// Tells `event` and commits its record: for a decision that changes no state, whose record must
    /// be durable before the caller goes on (answers, for one). The event is told at once; the
    /// future only waits for the commit (it holds no event, which is not `Send`).
    pub fn emit_recorded(&self, event: Event<'_>) -> impl Future<Output = Result<(), QueueError>> + Send + '_ {
        let record = self.record(&event);
        self.emit(event);
        self.append(record.into_iter().collect())
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let recording = if self.recorder.is_some() { ", recording" } else { "" };
        write!(f, "Bus({} subscribers{recording})", self.subscribers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_reads_back_as_itself_and_is_its_serde_name() {
        fn check<T>(all: &[T])
        where
            T: Copy + Display + std::str::FromStr<Err = UnknownName> + serde::Serialize + PartialEq + std::fmt::Debug,
        {
            for name in all {
                let text = name.to_string();
                assert_eq!(text.parse::<T>().ok(), Some(*name));
                assert_eq!(serde_json::to_value(name).unwrap(), Value::String(text));
            }
            assert!("no such name".parse::<T>().is_err());
        }
        check(JobKind::ALL);
        check(WebhookOutcome::ALL);
        check(AttemptOutcome::ALL);
        check(ProvisionOutcome::ALL);
        check(SyncOutcome::ALL);
        check(ValidationDecision::ALL);
        // The texts rows, audit lines and metric labels hold today.
        assert_eq!(JobKind::NewHire.as_str(), "hr.user_created");
        assert_eq!(JobKind::DirectorySync.as_str(), "directory.sync");
        assert_eq!(SyncOutcome::AlreadyInactive.as_str(), "already_inactive");
    }

    /// Counts what it observes.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Subscriber for Counting {
        fn observe(&self, _: &Event<'_>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn every_subscriber_sees_every_event() {
        let a = Arc::new(Counting(Default::default()));
        let b = Arc::new(Counting(Default::default()));
        let bus = Bus::new(vec![a.clone(), b.clone()]);
        bus.emit(Event::IntakeCommitted { rows: 3, took: Duration::from_millis(1) });
        bus.emit(Event::AuthRecovered { was: "refused" });
        for seen in [&a, &b] {
            assert_eq!(seen.0.load(std::sync::atomic::Ordering::Relaxed), 2);
        }
    }
}
