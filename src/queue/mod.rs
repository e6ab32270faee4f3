//! Durable jobs: enqueue, lease, complete, retry, dead-letter; SQLite (embedded) or PostgreSQL.
//!
//! One `JobStore` serves both backends with the same SQL text (`$n` placeholders, `RETURNING`);
//! only the claim differs (`FOR UPDATE SKIP LOCKED` on PostgreSQL, where several processes share a queue).

#[macro_use]
mod sql;
mod admin;
mod enqueue;
pub mod intake;
mod lease;
mod mirror;
pub mod outbox;
mod replicas;
mod reports;
mod retention;
mod store;
// The one module that may use `unsafe` (the crate denies it): an SQLite VFS is C callbacks.
#[allow(unsafe_code)]
pub mod wal_gather;
pub mod worker;

use std::str::FromStr;

use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use crate::clock::Clock;
pub use crate::lifecycle::{AttemptOutcome, DiscrepancyKind, JobKind};
pub use mirror::MirroredUser;
pub use outbox::{Appender, OutboxRow, RecordsOf, no_records};
pub use replicas::ReplicaRow;
pub use retention::Swept;

/// Errors of the job store.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("no job {0}")]
    NotFound(Uuid),
    #[error("job {audit_id} is {state}, not {wanted}")]
    WrongState { audit_id: Uuid, state: JobState, wanted: JobState },
    #[error("stored job is unreadable: {0}")]
    Corrupt(String),
    #[error("the intake committer has stopped")]
    Closed,
    /// The database does not run with the durability a 202 promises (see `store::check_durable`).
    #[error("{0}")]
    NotDurable(String),
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 4] = [JobState::Queued, JobState::Running, JobState::Succeeded, JobState::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| QueueError::Corrupt(format!("unknown job state {s:?}")))
    }
}

/// A job to be stored, as the edge built it.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub audit_id: Uuid,
    /// What the job does; selects the handler.
    pub kind: JobKind,
    /// The event id the sender gave; with `kind` it makes the idempotency key.
    pub webhook_id: String,
    pub payload: serde_json::Value,
}

/// A `NewJob` with every column already in the form it is written. The intake makes these on the
/// request's own task, so the one committer spends its time on the database only.
#[derive(Clone, Debug)]
pub struct JobRecord {
    audit_id: Uuid,
    audit_id_text: String,
    idempotency_key: String,
    kind: JobKind,
    webhook_id: String,
    payload: String,
    /// SHA-256 (hex) of what identifies the event's content (see `with_content_hash`).
    content_hash: Option<String>,
    /// The outbox record of the job's acceptance, written in the same transaction when the job is
    /// stored (not when its event id was stored before: that is a duplicate or a conflict).
    accepted: Option<OutboxRow>,
}

impl JobRecord {
    /// A job whose payload is already JSON text (the intake serialises straight from its typed event).
    pub fn new(audit_id: Uuid, kind: JobKind, webhook_id: &str, payload: String) -> Self {
        JobRecord {
            audit_id,
            audit_id_text: audit_id.to_string(),
            idempotency_key: format!("{kind}:{webhook_id}"),
            kind,
            webhook_id: webhook_id.to_string(),
            payload,
            content_hash: None,
            accepted: None,
        }
    }

    /// Writes `record` (the acceptance's outbox record) with the job if the job is stored.
    pub fn with_accepted_record(mut self, record: Option<OutboxRow>) -> Self {
        self.accepted = record;
        self
    }

    /// Stores the SHA-256 of `content` with the key: the same event id sent again with other
    /// content is then answered as a conflict instead of a duplicate. A job without one (and a
    /// row stored before hashes were kept) counts as the same content as anything.
    pub fn with_content_hash(mut self, content: &[u8]) -> Self {
        use sha2::Digest;
        // Hex by table: the formatter's LowerHex of the digest cost ~450 instructions per intake.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = sha2::Sha256::digest(content);
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        self.content_hash = Some(hex);
        self
    }

    /// Keys the job apart from every event id a sender can give (`kind#item:` instead of `kind:`),
    /// for a batch item whose id the service made up (`<batch webhook-id>#<n>`): an item sent with
    /// the explicit id `B#0` then cannot be taken for item 0 of batch `B`, nor the other way round.
    pub fn with_derived_id(mut self) -> Self {
        self.idempotency_key = format!("{}#item:{}", self.kind, self.webhook_id);
        self
    }
}

impl From<&NewJob> for JobRecord {
    fn from(job: &NewJob) -> Self {
        JobRecord::new(job.audit_id, job.kind, &job.webhook_id, job.payload.to_string())
    }
}

/// The answer to an enqueue: the job's audit id, and whether this call created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    pub audit_id: Uuid,
    pub created: bool,
    /// Not created because the event id was stored before with other content (`audit_id` is
    /// that job's); the new content was not stored.
    pub conflict: bool,
}

/// A stored job.
#[derive(Clone, Debug)]
pub struct Job {
    pub audit_id: Uuid,
    /// The `JobKind` as stored. Kept as text: on a shared PostgreSQL queue a replica of a newer
    /// version may store a kind this one does not know, and the job must still be leased and read
    /// (its handler refuses it: `JobKind` parses it).
    pub kind: String,
    pub webhook_id: String,
    pub payload: serde_json::Value,
    pub state: JobState,
    /// Attempts made, over every run: attempt numbers keep counting across replays.
    pub attempts: u32,
    /// Attempts since the job was accepted or last replayed (the backoff's exponent).
    pub run_attempts: u32,
    /// Attempts of this run lost to a crash (lease expired).
    pub lost_attempts: u32,
    /// At this many lost attempts in one run the job becomes a dead letter.
    pub max_lost_attempts: u32,
    pub run_at: i64,
    pub lease_token: Option<String>,
    /// Until when the worker holding the job may run it before another takes it over.
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// When an admin last replayed the job.
    pub replayed_at: Option<i64>,
    /// What an earlier attempt recorded for the next one (`JobStore::save_progress`).
    pub progress: Option<serde_json::Value>,
    /// When retention purged the personal data of this succeeded job (its payload is then `null`;
    /// see `JobStore::sweep`).
    pub purged_at: Option<i64>,
}

impl Job {
    /// Where the job's retry window starts: when it was accepted, or last replayed.
    pub fn retry_window_start(&self) -> i64 {
        self.replayed_at.unwrap_or(self.created_at)
    }

    /// A running new-hire job with this payload (nil audit id, on its first run): what the unit
    /// tests and benchmarks of what observes jobs start from.
    pub fn running(payload: serde_json::Value, attempts: u32) -> Job {
        Job {
            audit_id: Uuid::nil(),
            kind: JobKind::NewHire.as_str().to_string(),
            webhook_id: "msg_1".into(),
            payload,
            state: JobState::Running,
            attempts,
            run_attempts: attempts,
            lost_attempts: 0,
            max_lost_attempts: 3,
            run_at: 0,
            lease_token: None,
            lease_until: None,
            last_error: None,
            result: None,
            created_at: 0,
            updated_at: 0,
            finished_at: None,
            replayed_at: None,
            progress: None,
            purged_at: None,
        }
    }
}

/// A difference between what a sync asked Genesys for and what Genesys holds afterwards.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discrepancy {
    pub audit_id: Uuid,
    pub external_id: String,
    /// `attribute_mismatch` (Genesys kept other than what a PATCH asked for) or `drift` (someone
    /// changed the user inside Genesys: `expected` is what the mirror held, `actual` what Genesys holds).
    pub kind: DiscrepancyKind,
    pub field: String,
    pub expected: serde_json::Value,
    pub actual: serde_json::Value,
    /// Unix milliseconds.
    pub at: i64,
}

impl Discrepancy {
    /// Makes discrepancies found by one job at one time.
    pub fn maker(
        audit_id: Uuid,
        at: i64,
    ) -> impl Fn(DiscrepancyKind, &str, &str, &serde_json::Value, &serde_json::Value) -> Discrepancy {
        move |kind, external_id, field, expected, actual| Discrepancy {
            audit_id,
            external_id: external_id.to_string(),
            kind,
            field: field.to_string(),
            expected: expected.clone(),
            actual: actual.clone(),
            at,
        }
    }
}

/// One finished attempt of a job.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: i64,
    pub finished_at: i64,
    #[schema(value_type = String)]
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}
/// The durable job table.
#[derive(Clone, Debug)]
pub struct JobStore {
    /// Reads.
    db: Db,
    /// Writes. On SQLite, ONE connection: SQLite has one writer at a time anyway, and taking turns
    /// for this connection (FIFO) replaces SQLite's busy handler, which sleeps in steps of up to
    /// 100 ms; one connection also keeps its page cache warm, where writes rotating over a pool
    /// invalidate each other's caches (docs/performance.md, "What was tried").
    /// On PostgreSQL the same pool as reads.
    writer: Db,
    /// Stored on each new job: attempts lost to crashes before it becomes a dead letter.
    max_lost_attempts: u32,
    /// What every stored time and lease is read from (`with_clock`; the system clock by default).
    clock: Clock,
    /// The destinations each outbox record is written for (`with_outbox`; none by default).
    outbox: std::sync::Arc<outbox::OutboxTargets>,
}

/// How a finished attempt ends.
#[derive(Debug)]
pub enum Finish<'a> {
    Succeeded { result: &'a serde_json::Value },
    Retry { run_at: i64, error: &'a str },
    Dead { error: &'a str },
}

#[cfg(test)]
mod tests {
    /// The table-made hex is the digest's usual lower-case hex (old rows hold that form).
    #[test]
    fn the_content_hash_is_the_lower_case_hex_of_the_sha256() {
        use sha2::Digest;
        let job = super::JobRecord::new(uuid::Uuid::nil(), super::JobKind::NewHire, "id", String::new())
            .with_content_hash(b"body");
        assert_eq!(job.content_hash, Some(format!("{:x}", sha2::Sha256::digest(b"body"))));
    }
}
