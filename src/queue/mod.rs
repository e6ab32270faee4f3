//! Durable jobs: enqueue, lease, complete, retry, dead-letter; SQLite (embedded) or PostgreSQL.
//!
//! One `JobStore` serves both backends with the same SQL text (`$n` placeholders, `RETURNING`);
//! only the claim differs (`FOR UPDATE SKIP LOCKED` on PostgreSQL, where several processes share a queue).

pub mod intake;
pub mod wal_gather;
pub mod worker;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use uuid::Uuid;

use crate::config::DatabaseUrl;

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
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
    /// What the job does, e.g. `hr.user_created`; selects the handler.
    pub kind: String,
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
    kind: String,
    webhook_id: String,
    payload: String,
    /// SHA-256 (hex) of what identifies the event's content (see `with_content_hash`).
    content_hash: Option<String>,
}

impl JobRecord {
    /// A job whose payload is already JSON text (the intake serialises straight from its typed event).
    pub fn new(audit_id: Uuid, kind: &str, webhook_id: &str, payload: String) -> Self {
        JobRecord {
            audit_id,
            audit_id_text: audit_id.to_string(),
            idempotency_key: format!("{kind}:{webhook_id}"),
            kind: kind.to_string(),
            webhook_id: webhook_id.to_string(),
            payload,
            content_hash: None,
        }
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
        JobRecord::new(job.audit_id, &job.kind, &job.webhook_id, job.payload.to_string())
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
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// When an admin last replayed the job.
    pub replayed_at: Option<i64>,
    /// What an earlier attempt recorded for the next one (`JobStore::save_progress`).
    pub progress: Option<serde_json::Value>,
}

impl Job {
    /// Where the job's retry window starts: when it was accepted, or last replayed.
    pub fn retry_window_start(&self) -> i64 {
        self.replayed_at.unwrap_or(self.created_at)
    }
}

/// A difference between what a sync asked Genesys for and what Genesys holds afterwards.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discrepancy {
    pub audit_id: Uuid,
    pub external_id: String,
    /// `attribute_mismatch`.
    pub kind: String,
    pub field: String,
    pub expected: serde_json::Value,
    pub actual: serde_json::Value,
    /// Unix milliseconds.
    pub at: i64,
}

/// One finished attempt of a job.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: String,
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    audit_id: String,
    kind: String,
    webhook_id: String,
    payload: String,
    state: String,
    attempts: i64,
    run_attempts: i64,
    lost_attempts: i64,
    max_attempts: i64,
    run_at: i64,
    lease_token: Option<String>,
    last_error: Option<String>,
    result: Option<String>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    replayed_at: Option<i64>,
    progress: Option<String>,
}

impl TryFrom<JobRow> for Job {
    type Error = QueueError;
    fn try_from(r: JobRow) -> Result<Self, QueueError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| QueueError::Corrupt(format!("{what}: {e}"));
        Ok(Job {
            audit_id: Uuid::parse_str(&r.audit_id).map_err(|e| corrupt("audit_id", &e))?,
            kind: r.kind,
            webhook_id: r.webhook_id,
            payload: serde_json::from_str(&r.payload).map_err(|e| corrupt("payload", &e))?,
            state: r.state.parse()?,
            attempts: u32::try_from(r.attempts).unwrap_or(0),
            run_attempts: u32::try_from(r.run_attempts).unwrap_or(0),
            lost_attempts: u32::try_from(r.lost_attempts).unwrap_or(0),
            max_lost_attempts: u32::try_from(r.max_attempts).unwrap_or(1),
            run_at: r.run_at,
            lease_token: r.lease_token,
            last_error: r.last_error,
            result: r.result.as_deref().map(serde_json::from_str).transpose().map_err(|e| corrupt("result", &e))?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
            replayed_at: r.replayed_at,
            progress: r
                .progress
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("progress", &e))?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    attempt: i64,
    started_at: i64,
    finished_at: i64,
    outcome: String,
    error: Option<String>,
}

/// Rows per INSERT: at most 10 parameters each, far below both backends' limits (SQLite 32,766, PostgreSQL 65,535),
/// and as many as the committer takes in one batch by default.
const ROWS_PER_STATEMENT: usize = 512;

/// The job stored under a key: its audit id and content hash (none for rows stored before hashes).
struct StoredKey {
    audit_id: String,
    content_hash: Option<String>,
}

/// Which job holds each of these events' keys (after an insert that skipped some as already stored).
/// `numbered`: PostgreSQL's `$n` placeholders, else SQLite's `?` (see `insert_sql`).
async fn stored_under<C>(
    conn: &mut C,
    jobs: &[JobRecord],
    numbered: bool,
) -> Result<HashMap<String, StoredKey>, QueueError>
where
    C: sqlx::Connection,
    for<'e> &'e mut C: sqlx::Executor<'e, Database = C::Database>,
    <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'r> (String, String, Option<String>): sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    let mut found: HashMap<String, StoredKey> = HashMap::with_capacity(jobs.len());
    for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT audit_id, idempotency_key, content_hash FROM jobs WHERE idempotency_key IN ({})",
            placeholder_list(chunk.len(), numbered)
        );
        let mut q = sqlx::query_as::<C::Database, (String, String, Option<String>)>(sqlx::AssertSqlSafe(sql));
        for job in chunk {
            q = q.bind(job.idempotency_key.as_str());
        }
        found.extend(
            q.fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|(audit_id, key, content_hash)| (key, StoredKey { audit_id, content_hash })),
        );
    }
    Ok(found)
}

/// `$1, $2, ...` (numbered) or `?, ?, ...` for `n` parameters, written into one string.
fn placeholder_list(n: usize, numbered: bool) -> String {
    use std::fmt::Write;
    let mut list = String::with_capacity(n * 5);
    for i in 1..=n {
        if i > 1 {
            list.push_str(", ");
        }
        match numbered {
            true => {
                let _ = write!(list, "${i}");
            }
            false => list.push('?'),
        }
    }
    list
}

/// `INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING` for `rows` jobs.
/// PostgreSQL needs numbered placeholders. SQLite gets anonymous ones: to bind a numbered one, sqlx
/// asks SQLite for its name, which SQLite finds by a linear search, so binding N of them costs N²
/// (3% of the service's CPU at 30 rows per commit, measured with perf).
fn insert_sql(rows: usize, numbered: bool) -> String {
    use std::fmt::Write;
    const ANONYMOUS_ROW: &str = "(?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)";
    let mut sql = String::with_capacity(160 + rows * (ANONYMOUS_ROW.len() + 30));
    sql.push_str(
        "INSERT INTO jobs (audit_id, idempotency_key, kind, webhook_id, payload, content_hash, state, attempts, \
         max_attempts, run_at, created_at, updated_at) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        if numbered {
            // 8 parameters, the time used three times (run_at, created_at, updated_at).
            let p = r * 8;
            let _ = write!(
                sql,
                "(${}, ${}, ${}, ${}, ${}, ${}, 'queued', 0, ${}, ${t}, ${t}, ${t})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                t = p + 8
            );
        } else {
            // 10 parameters: the time is bound three times.
            sql.push_str(ANONYMOUS_ROW);
        }
    }
    sql.push_str(" ON CONFLICT (idempotency_key) DO NOTHING");
    sql
}

/// Milliseconds since the Unix epoch, the time unit of the jobs table.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Clone, Debug)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store has; the SQL text is shared.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// The columns of `JobRow`, as a macro so that queries stay `&'static str` (sqlx refuses built strings).
macro_rules! job_columns {
    () => {
        "audit_id, kind, webhook_id, payload, state, attempts, run_attempts, lost_attempts, max_attempts, run_at, \
         lease_token, last_error, result, created_at, updated_at, finished_at, replayed_at, progress"
    };
}

/// A claim: lease the first `$4` rows matching `$pick` (with its ORDER BY) to token `$1` until `$2`
/// (now is `$3`), counting an attempt and applying `$set`. PostgreSQL claimers skip rows another
/// transaction is claiming instead of waiting for them.
macro_rules! lease_sql {
    ($db:expr, $set:literal, $pick:literal) => {
        skip_locked!(
            $db,
            concat!(
                "UPDATE jobs SET ",
                $set,
                " attempts = attempts + 1, run_attempts = run_attempts + 1, attempt_started_at = $3, \
             lease_token = $1, lease_until = $2, updated_at = $3 \
             WHERE audit_id IN (SELECT audit_id FROM jobs WHERE ",
                $pick,
                " LIMIT $4"
            ),
            ") RETURNING ",
            job_columns!()
        )
    };
}

/// `$head` + `$tail` on SQLite; on PostgreSQL with `FOR UPDATE SKIP LOCKED` between them, so
/// several processes picking rows skip those another transaction holds instead of waiting for them.
macro_rules! skip_locked {
    ($db:expr, $head:expr) => {
        skip_locked!($db, $head, "")
    };
    ($db:expr, $head:expr, $($tail:expr),+) => {
        match $db {
            Db::Sqlite(_) => concat!($head, $($tail),+),
            Db::Postgres(_) => concat!($head, " FOR UPDATE SKIP LOCKED", $($tail),+),
        }
    };
}

/// Records a running job's current attempt (`$1`) as lost, found at `$2`: it started at
/// `attempt_started_at` (or, for an attempt claimed before that column existed, at its claim, the
/// job's last update).
const RECORD_LOST: &str = "INSERT INTO job_attempts (audit_id, attempt, started_at, finished_at, outcome, error) \
     SELECT audit_id, attempts, COALESCE(attempt_started_at, updated_at), $2, 'lost', \
       'its lease expired: the worker stopped or crashed during the attempt' \
     FROM jobs WHERE audit_id = $1 ON CONFLICT (audit_id, attempt) DO NOTHING";

/// The durable job table.
#[derive(Clone, Debug)]
pub struct JobStore {
    /// Reads.
    db: Db,
    /// Writes. On SQLite, ONE connection: SQLite has one writer at a time anyway, and taking turns
    /// for this connection (FIFO) replaces SQLite's busy handler, which sleeps in steps of up to
    /// 100 ms; one connection also keeps its page cache warm, where writes rotating over a pool
    /// invalidate each other's caches (measured: 1.8 ms vs 2.8-3.5 ms per 30-row commit).
    /// On PostgreSQL the same pool as reads.
    writer: Db,
    /// Stored on each new job: attempts lost to crashes before it becomes a dead letter.
    max_lost_attempts: u32,
}

/// How a finished attempt ends.
#[derive(Debug)]
pub enum Finish<'a> {
    Succeeded { result: &'a serde_json::Value },
    Retry { run_at: i64, error: &'a str },
    Dead { error: &'a str },
}

impl JobStore {
    /// Opens the database (creating an SQLite file and its folder when needed) and runs migrations.
    pub async fn connect(url: &DatabaseUrl, max_lost_attempts: u32) -> Result<Self, QueueError> {
        let (db, writer) = match url {
            DatabaseUrl::Sqlite(url) => {
                let configuration = |e: String| QueueError::Database(sqlx::Error::Configuration(e.into()));
                let opts = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                // WAL with `synchronous = FULL` (a commit is on disk before the 202 goes out, even
                // across power loss) and the VFS that writes a commit's WAL frames in one call.
                let opts = wal_gather::durable_wal(opts).map_err(configuration)?;
                let file = opts.get_filename();
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| configuration(format!("cannot create database folder {}: {e}", dir.display())))?;
                }
                // Checkpoints run in the background (`checkpoint`), off the commit path: SQLite's
                // automatic one runs inside the commit that crosses its threshold and fsyncs the
                // database file there (measured: p99 commit 17 ms with it, 2.6 ms without). The high
                // threshold is a backstop for a store used without the background task.
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(opts.clone().pragma("wal_autocheckpoint", "20000"))
                    .await?;
                sqlx::migrate!("migrations/sqlite").run(&writer).await.map_err(sqlx::Error::from)?;
                let readers = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
                (Db::Sqlite(readers), Db::Sqlite(writer))
            }
            DatabaseUrl::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url.expose_secret())
                    .await?;
                sqlx::migrate!("migrations/postgres").run(&pool).await.map_err(sqlx::Error::from)?;
                (Db::Postgres(pool.clone()), Db::Postgres(pool))
            }
        };
        Ok(JobStore { db, writer, max_lost_attempts })
    }

    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        on_pool!(&self.writer, |p| p.close().await);
        on_pool!(&self.db, |p| p.close().await)
    }

    /// Copies committed WAL pages into the SQLite database file without blocking the writer
    /// (PASSIVE), so the WAL stays small. Nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), QueueError> {
        if let Db::Sqlite(pool) = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(pool).await?;
        }
        Ok(())
    }

    /// Checkpoints every `every` until `stop` (see `checkpoint`).
    pub async fn run_checkpoints(self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        if !matches!(self.db, Db::Sqlite(_)) {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {},
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
            }
        }
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> Result<(), QueueError> {
        on_pool!(&self.db, |p| sqlx::query("SELECT 1").execute(p).await.map(|_| ()).map_err(Into::into))
    }

    /// Stores jobs in ONE transaction; an id already stored answers with the existing job's audit id.
    /// Returns one answer per input, in order, only after the commit.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        let records: Vec<JobRecord> = jobs.iter().map(JobRecord::from).collect();
        self.enqueue_records(&records).await
    }

    /// `enqueue_batch` for jobs already in their written form.
    pub async fn enqueue_records(&self, jobs: &[JobRecord]) -> Result<Vec<Enqueued>, QueueError> {
        // Rows go in in key order, so batches of several replicas on one PostgreSQL queue take their
        // unique-key locks in the same order and cannot deadlock on each other.
        let mut order: Vec<&JobRecord> = jobs.iter().collect();
        order.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
        let now = now_ms();
        let stored = match &self.writer {
            // One statement is one transaction in SQLite: a batch that fits in one INSERT needs no
            // BEGIN and COMMIT, so the commit takes one trip to the writer thread instead of three.
            Db::Sqlite(pool) if jobs.len() <= ROWS_PER_STATEMENT => {
                let mut conn = pool.acquire().await?;
                let inserted = self.insert_rows(&order, now).execute(&mut *conn).await?.rows_affected() as usize;
                match inserted < jobs.len() {
                    true => Some(stored_under(&mut *conn, jobs, false).await?),
                    false => None,
                }
            }
            _ => on_pool!(&self.writer, |pool| {
                let mut tx = pool.begin().await?;
                let mut inserted = 0;
                for chunk in order.chunks(ROWS_PER_STATEMENT) {
                    inserted += self.insert_rows(chunk, now).execute(&mut *tx).await?.rows_affected() as usize;
                }
                let stored = match inserted < jobs.len() {
                    true => Some(stored_under(&mut *tx, jobs, self.numbered()).await?),
                    false => None,
                };
                tx.commit().await?;
                stored
            }),
        };
        // Usually every row is new. Otherwise some events were stored before (or came twice in this
        // batch), and `stored` says which job each key belongs to.
        let Some(stored) = stored else {
            return Ok(jobs
                .iter()
                .map(|j| Enqueued { audit_id: j.audit_id, created: true, conflict: false })
                .collect());
        };
        jobs.iter()
            .map(|job| {
                let key = &job.idempotency_key;
                let row = stored.get(key).ok_or_else(|| QueueError::Corrupt(format!("job {key} not stored")))?;
                let audit_id = Uuid::parse_str(&row.audit_id).map_err(|e| QueueError::Corrupt(e.to_string()))?;
                let created = audit_id == job.audit_id;
                // A missing hash on either side (a row from before hashes, a job stored without one)
                // counts as the same content: such repeats stay duplicates, as they were.
                let conflict = !created
                    && matches!((&row.content_hash, &job.content_hash), (Some(stored), Some(sent)) if stored != sent);
                Ok(Enqueued { audit_id, created, conflict })
            })
            .collect()
    }

    /// Whether this store's SQL uses numbered placeholders (PostgreSQL) or anonymous ones (SQLite).
    fn numbered(&self) -> bool {
        matches!(self.writer, Db::Postgres(_))
    }

    /// One multi-row INSERT of `rows` (at most `ROWS_PER_STATEMENT`); keys already stored are skipped.
    fn insert_rows<'q, DB>(&self, rows: &[&'q JobRecord], now: i64) -> sqlx::query::Query<'q, DB, DB::Arguments>
    where
        DB: sqlx::Database,
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let numbered = self.numbered();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(rows.len(), numbered)));
        for job in rows {
            q = q
                .bind(job.audit_id_text.as_str())
                .bind(job.idempotency_key.as_str())
                .bind(job.kind.as_str())
                .bind(job.webhook_id.as_str())
                .bind(job.payload.as_str())
                .bind(job.content_hash.as_deref())
                .bind(i64::from(self.max_lost_attempts))
                .bind(now);
            if !numbered {
                // created_at and updated_at: anonymous placeholders cannot repeat the run_at one.
                q = q.bind(now).bind(now);
            }
        }
        q
    }

    /// Leases up to `limit` queued jobs that are due, oldest first. Each claim counts as an attempt.
    pub async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Job>, QueueError> {
        let sql = lease_sql!(self.db, "state = 'running',", "state = 'queued' AND run_at <= $3 ORDER BY run_at");
        self.lease_rows(sql, limit, lease).await
    }

    /// Leases up to `limit` running jobs whose lease expired (their worker stopped or crashed) and
    /// that may lose another attempt. The lost attempt goes into the history as `lost`. Kept apart
    /// from `claim` so the hot path stays a plain index range.
    pub async fn claim_expired(&self, limit: usize, lease: Duration) -> Result<Vec<Job>, QueueError> {
        let token = Uuid::new_v4().to_string();
        let now = now_ms();
        let lease_until = now + lease.as_millis() as i64;
        let take_over = concat!(
            "UPDATE jobs SET attempts = attempts + 1, run_attempts = run_attempts + 1, lost_attempts = lost_attempts + 1, \
               attempt_started_at = $3, last_error = 'the previous attempt''s lease expired (its worker stopped or crashed)', \
               lease_token = $1, lease_until = $2, updated_at = $3 \
             WHERE audit_id = $4 RETURNING ",
            job_columns!()
        );
        let pick = skip_locked!(
            self.db,
            "SELECT audit_id FROM jobs WHERE state = 'running' AND lease_until < $1 \
             AND lost_attempts + 1 < max_attempts ORDER BY lease_until LIMIT $2"
        );
        let rows: Vec<JobRow> = on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as(pick).bind(now).bind(limit as i64).fetch_all(&mut *tx).await?;
            let mut rows = Vec::with_capacity(ids.len());
            for (id,) in ids {
                sqlx::query(RECORD_LOST).bind(&id).bind(now).execute(&mut *tx).await?;
                let row: JobRow = sqlx::query_as(take_over)
                    .bind(&token)
                    .bind(lease_until)
                    .bind(now)
                    .bind(&id)
                    .fetch_one(&mut *tx)
                    .await?;
                rows.push(row);
            }
            tx.commit().await?;
            rows
        });
        rows.into_iter().map(Job::try_from).collect()
    }

    async fn lease_rows(&self, sql: &'static str, limit: usize, lease: Duration) -> Result<Vec<Job>, QueueError> {
        let now = now_ms();
        let token = Uuid::new_v4().to_string();
        let lease_until = now + lease.as_millis() as i64;
        let rows: Vec<JobRow> = on_pool!(&self.writer, |p| sqlx::query_as(sql)
            .bind(&token)
            .bind(lease_until)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(Job::try_from).collect()
    }

    /// Jobs whose lease expired on the last attempt lost they may lose become dead letters (a job
    /// that kills its worker every time must not be retried forever); the lost attempt goes into
    /// the history. Returns them so the caller can audit each.
    pub async fn reap_expired_final_attempts(&self) -> Result<Vec<Job>, QueueError> {
        let now = now_ms();
        let dead = concat!(
            "UPDATE jobs SET state = 'dead', lost_attempts = lost_attempts + 1, lease_token = NULL, lease_until = NULL, \
               updated_at = $1, finished_at = $1, \
               last_error = 'the final attempt''s lease expired (its worker stopped or crashed)' \
             WHERE audit_id = $2 RETURNING ",
            job_columns!()
        );
        let pick = skip_locked!(
            self.db,
            "SELECT audit_id FROM jobs WHERE state = 'running' AND lease_until < $1 \
             AND lost_attempts + 1 >= max_attempts"
        );
        let rows: Vec<JobRow> = on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as(pick).bind(now).fetch_all(&mut *tx).await?;
            let mut rows = Vec::with_capacity(ids.len());
            for (id,) in ids {
                sqlx::query(RECORD_LOST).bind(&id).bind(now).execute(&mut *tx).await?;
                rows.push(sqlx::query_as(dead).bind(now).bind(&id).fetch_one(&mut *tx).await?);
            }
            tx.commit().await?;
            rows
        });
        rows.into_iter().map(Job::try_from).collect()
    }

    /// Keeps a running job's lease alive. False when the lease was lost (another worker took the job).
    pub async fn extend_lease(&self, job: &Job, lease: Duration) -> Result<bool, QueueError> {
        let until = now_ms() + lease.as_millis() as i64;
        let sql = "UPDATE jobs SET lease_until = $1 WHERE audit_id = $2 AND lease_token = $3 AND state = 'running'";
        let n = on_pool!(&self.writer, |p| sqlx::query(sql)
            .bind(until)
            .bind(job.audit_id.to_string())
            .bind(job.lease_token.as_deref())
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Records the end of an attempt and moves the job on. False when this worker no longer held the
    /// lease (the job was taken over after its lease expired); nothing is changed then.
    pub async fn finish(&self, job: &Job, started_at: i64, finish: Finish<'_>) -> Result<bool, QueueError> {
        let now = now_ms();
        let (state, run_at, error, result, outcome) = match &finish {
            Finish::Succeeded { result } => ("succeeded", job.run_at, None, Some(result.to_string()), "succeeded"),
            Finish::Retry { run_at, error } => ("queued", *run_at, Some(*error), None, "retry"),
            Finish::Dead { error } => ("dead", job.run_at, Some(*error), None, "dead"),
        };
        let finished_at = (state != "queued").then_some(now);
        // A success clears the error of earlier attempts (and of the run before a replay).
        let update = "UPDATE jobs SET state = $1, run_at = $2, last_error = $3, result = $4, \
               updated_at = $5, finished_at = $6, lease_token = NULL, lease_until = NULL \
             WHERE audit_id = $7 AND lease_token = $8 AND state = 'running'";
        let record = "INSERT INTO job_attempts (audit_id, attempt, started_at, finished_at, outcome, error) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (audit_id, attempt) DO NOTHING";
        on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(update)
                .bind(state)
                .bind(run_at)
                .bind(error)
                .bind(result)
                .bind(now)
                .bind(finished_at)
                .bind(job.audit_id.to_string())
                .bind(job.lease_token.as_deref())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                sqlx::query(record)
                    .bind(job.audit_id.to_string())
                    .bind(i64::from(job.attempts))
                    .bind(started_at)
                    .bind(now)
                    .bind(outcome)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    /// Gives a running job back to the queue without counting the attempt, in its place (it runs
    /// when it was due): graceful shutdown, or workers pausing while Genesys refuses the credentials.
    pub async fn release(&self, job: &Job) -> Result<bool, QueueError> {
        let sql = "UPDATE jobs SET state = 'queued', attempts = attempts - 1, run_attempts = run_attempts - 1, \
               run_at = $1, updated_at = $2, lease_token = NULL, lease_until = NULL \
             WHERE audit_id = $3 AND lease_token = $4 AND state = 'running'";
        self.update_leased(sql, job, job.run_at).await
    }

    /// Records what a running attempt achieved so far, for the attempts after it (the job's
    /// `progress`). False when this worker no longer holds the lease; nothing is changed then.
    pub async fn save_progress(&self, job: &Job, progress: &serde_json::Value) -> Result<bool, QueueError> {
        let sql = "UPDATE jobs SET progress = $1, updated_at = $2 \
             WHERE audit_id = $3 AND lease_token = $4 AND state = 'running'";
        self.update_leased(sql, job, progress.to_string()).await
    }

    /// Runs `sql` on a job this worker holds: `$1` is `value`, `$2` now, `$3` and `$4` the job's id
    /// and lease token (its WHERE). False when the lease was lost; nothing is changed then.
    async fn update_leased<T>(&self, sql: &'static str, job: &Job, value: T) -> Result<bool, QueueError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + for<'q> sqlx::Encode<'q, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>
            + Send,
    {
        let n = on_pool!(&self.writer, |p| sqlx::query(sql)
            .bind(value)
            .bind(now_ms())
            .bind(job.audit_id.to_string())
            .bind(job.lease_token.as_deref())
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    pub async fn get(&self, audit_id: Uuid) -> Result<Option<Job>, QueueError> {
        let sql = concat!("SELECT ", job_columns!(), " FROM jobs WHERE audit_id = $1");
        let row: Option<JobRow> =
            on_pool!(&self.db, |p| sqlx::query_as(sql).bind(audit_id.to_string()).fetch_optional(p).await?);
        row.map(Job::try_from).transpose()
    }

    pub async fn attempts(&self, audit_id: Uuid) -> Result<Vec<Attempt>, QueueError> {
        let sql = "SELECT attempt, started_at, finished_at, outcome, error FROM job_attempts \
                   WHERE audit_id = $1 ORDER BY attempt";
        let rows: Vec<AttemptRow> =
            on_pool!(&self.db, |p| sqlx::query_as(sql).bind(audit_id.to_string()).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|r| Attempt {
                attempt: u32::try_from(r.attempt).unwrap_or(0),
                started_at: r.started_at,
                finished_at: r.finished_at,
                outcome: r.outcome,
                error: r.error,
            })
            .collect())
    }

    /// One page of dead letters, most recent first, and how many there are in all.
    pub async fn dead_letters(&self, limit: u32, offset: u64) -> Result<(Vec<Job>, u64), QueueError> {
        let sql = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE state = 'dead' ORDER BY finished_at DESC, audit_id LIMIT $1 OFFSET $2"
        );
        let count = "SELECT COUNT(*) FROM jobs WHERE state = 'dead'";
        let (rows, total): (Vec<JobRow>, (i64,)) = on_pool!(&self.db, |p| (
            sqlx::query_as(sql).bind(i64::from(limit)).bind(offset as i64).fetch_all(p).await?,
            sqlx::query_as(count).fetch_one(p).await?
        ));
        let jobs = rows.into_iter().map(Job::try_from).collect::<Result<_, _>>()?;
        Ok((jobs, u64::try_from(total.0).unwrap_or(0)))
    }

    /// Puts a dead letter back in the queue for a new run: a new retry window and a new allowance
    /// of lost attempts. Attempt numbers go on counting; the last error stays until a success.
    pub async fn replay(&self, audit_id: Uuid) -> Result<Job, QueueError> {
        let sql = concat!(
            "UPDATE jobs SET state = 'queued', run_attempts = 0, lost_attempts = 0, replayed_at = $1, run_at = $1, \
               updated_at = $1, finished_at = NULL \
             WHERE audit_id = $2 AND state = 'dead' RETURNING ",
            job_columns!()
        );
        let row: Option<JobRow> = on_pool!(&self.writer, |p| sqlx::query_as(sql)
            .bind(now_ms())
            .bind(audit_id.to_string())
            .fetch_optional(p)
            .await?);
        match row {
            Some(r) => Job::try_from(r),
            None => Err(self.state_error(audit_id, JobState::Dead).await),
        }
    }

    /// Removes a dead letter for good (its audit lines stay).
    pub async fn delete_dead(&self, audit_id: Uuid) -> Result<Job, QueueError> {
        let sql = concat!("DELETE FROM jobs WHERE audit_id = $1 AND state = 'dead' RETURNING ", job_columns!(), "");
        let attempts = "DELETE FROM job_attempts WHERE audit_id = $1";
        let row: Option<JobRow> = on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let row = sqlx::query_as(sql).bind(audit_id.to_string()).fetch_optional(&mut *tx).await?;
            if row.is_some() {
                sqlx::query(attempts).bind(audit_id.to_string()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            row
        });
        match row {
            Some(r) => Job::try_from(r),
            None => Err(self.state_error(audit_id, JobState::Dead).await),
        }
    }

    async fn state_error(&self, audit_id: Uuid, wanted: JobState) -> QueueError {
        match self.get(audit_id).await {
            Ok(Some(job)) => QueueError::WrongState { audit_id, state: job.state, wanted },
            Ok(None) => QueueError::NotFound(audit_id),
            Err(e) => e,
        }
    }

    /// How many jobs are in each state (for /metrics).
    pub async fn counts_by_state(&self) -> Result<Vec<(JobState, u64)>, QueueError> {
        let sql = "SELECT state, COUNT(*) FROM jobs GROUP BY state";
        let rows: Vec<(String, i64)> = on_pool!(&self.db, |p| sqlx::query_as(sql).fetch_all(p).await?);
        let mut out: Vec<(JobState, u64)> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for (state, n) in rows {
            let state: JobState = state.parse()?;
            if let Some(slot) = out.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// Stores attribute mismatches found after a sync PATCH.
    pub async fn record_discrepancies(&self, items: &[Discrepancy]) -> Result<(), QueueError> {
        let sql = "INSERT INTO discrepancies (id, audit_id, external_id, kind, field, expected, actual, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            for d in items {
                sqlx::query(sql)
                    .bind(Uuid::now_v7().to_string())
                    .bind(d.audit_id.to_string())
                    .bind(&d.external_id)
                    .bind(&d.kind)
                    .bind(&d.field)
                    .bind(d.expected.to_string())
                    .bind(d.actual.to_string())
                    .bind(d.at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Mismatches stored since `since_ms`, oldest first.
    pub async fn discrepancies_since(&self, since_ms: i64) -> Result<Vec<Discrepancy>, QueueError> {
        let sql = "SELECT audit_id, external_id, kind, field, expected, actual, created_at FROM discrepancies \
                   WHERE created_at >= $1 ORDER BY created_at LIMIT 10000";
        let rows: Vec<(String, String, String, String, String, String, i64)> =
            on_pool!(&self.db, |p| sqlx::query_as(sql).bind(since_ms).fetch_all(p).await?);
        rows.into_iter()
            .map(|(audit_id, external_id, kind, field, expected, actual, at)| {
                Ok(Discrepancy {
                    audit_id: Uuid::parse_str(&audit_id).map_err(|e| QueueError::Corrupt(e.to_string()))?,
                    external_id,
                    kind,
                    field,
                    expected: serde_json::from_str(&expected).unwrap_or(serde_json::Value::String(expected)),
                    actual: serde_json::from_str(&actual).unwrap_or(serde_json::Value::String(actual)),
                    at,
                })
            })
            .collect()
    }

    /// Finished jobs of `kind` since `since_ms`: how many succeeded, and the dead ones.
    pub async fn finished_since(&self, kind: &str, since_ms: i64) -> Result<(u64, Vec<Job>), QueueError> {
        let count = "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND state = 'succeeded' AND finished_at >= $2";
        let dead = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = $1 AND state = 'dead' AND finished_at >= $2 ORDER BY finished_at LIMIT 10000"
        );
        let (succeeded, rows): ((i64,), Vec<JobRow>) = on_pool!(&self.db, |p| (
            sqlx::query_as(count).bind(kind).bind(since_ms).fetch_one(p).await?,
            sqlx::query_as(dead).bind(kind).bind(since_ms).fetch_all(p).await?
        ));
        let dead = rows.into_iter().map(Job::try_from).collect::<Result<_, _>>()?;
        Ok((u64::try_from(succeeded.0).unwrap_or(0), dead))
    }

    /// When the next queued job is due, if any (lets an idle worker sleep exactly that long).
    pub async fn next_due(&self) -> Result<Option<i64>, QueueError> {
        let sql = "SELECT MIN(run_at) FROM jobs WHERE state = 'queued'";
        let (min,): (Option<i64>,) = on_pool!(&self.db, |p| sqlx::query_as(sql).fetch_one(p).await?);
        Ok(min)
    }
}

#[cfg(test)]
mod tests {
    use super::insert_sql;

    /// The state-CHECK migration switches foreign keys off on the connection it runs on, which is
    /// the writer the store keeps; they must be on again when the store is ready.
    #[tokio::test]
    async fn the_writer_enforces_foreign_keys_after_the_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("fk.db").display());
        let store = super::JobStore::connect(&crate::config::DatabaseUrl::parse(&url).unwrap(), 3).await.unwrap();
        let super::Db::Sqlite(writer) = &store.writer else { unreachable!("a sqlite: URL") };
        let (on,): (i64,) = sqlx::query_as("PRAGMA foreign_keys").fetch_one(writer).await.unwrap();
        assert_eq!(on, 1);
        store.close().await;
    }

    /// The table-made hex is the digest's usual lower-case hex (old rows hold that form).
    #[test]
    fn the_content_hash_is_the_lower_case_hex_of_the_sha256() {
        use sha2::Digest;
        let job = super::JobRecord::new(uuid::Uuid::nil(), "k", "id", String::new()).with_content_hash(b"body");
        assert_eq!(job.content_hash, Some(format!("{:x}", sha2::Sha256::digest(b"body"))));
    }

    #[test]
    fn insert_placeholders_match_what_each_backend_binds() {
        let numbered = insert_sql(2, true);
        assert!(numbered.contains("($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $8, $8)"), "{numbered}");
        assert!(numbered.contains("($9, $10, $11, $12, $13, $14, 'queued', 0, $15, $16, $16, $16)"), "{numbered}");
        assert_eq!(super::placeholder_list(3, true), "$1, $2, $3");
        assert_eq!(super::placeholder_list(3, false), "?, ?, ?");
        let anonymous = insert_sql(2, false);
        assert_eq!(anonymous.matches('?').count(), 20, "{anonymous}");
        assert!(!anonymous.contains('$'), "{anonymous}");
    }
}
