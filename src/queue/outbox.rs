//! The SIEM outbox tables: records written in the transaction of the state change they tell of
//! (or appended in group commits when there is none), read by each destination in id order, and
//! deleted once every destination has confirmed them; and each destination's shared state (its
//! delivery lease, what it delivered, its last failure).
//!
//! What a record says is not this module's business: `crate::outbox` builds the rows (the audit line
//! of a lifecycle event, wrapped), this module stores and hands them out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::sql::{ROWS_PER_STATEMENT, placeholder_list};
use super::{Db, Job, JobStore, QueueError};

/// One outbox record as it is written: its event id, its kind (the audit event's name), when the
/// decision was made, its RFC 5424 severity, and the JSON text every destination receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    event_id: String,
    kind: String,
    /// Unix milliseconds.
    at: i64,
    severity: u8,
    record: String,
}

impl OutboxRow {
    pub fn new(event_id: Uuid, kind: &str, at: i64, severity: u8, record: String) -> Self {
        OutboxRow { event_id: event_id.to_string(), kind: kind.to_string(), at, severity: severity.min(7), record }
    }

    pub fn at(&self) -> i64 {
        self.at
    }

    pub fn severity(&self) -> u8 {
        self.severity
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The record's JSON text.
    pub fn record(&self) -> &str {
        &self.record
    }
}

/// The rows a state change found after its SQL writes with it (`claim_expired`, `replay`, ...): the
/// records of the job as it came out of its UPDATE. `no_records` writes none.
pub type RecordsOf<'a> = dyn Fn(&Job) -> Vec<OutboxRow> + Send + Sync + 'a;

/// Writes no record (SIEM delivery is off, or a test drives the store directly).
pub fn no_records(_: &Job) -> Vec<OutboxRow> {
    Vec::new()
}

/// A record waiting for one destination.
#[derive(Clone, Debug)]
pub struct PendingRecord {
    pub id: i64,
    /// The audit event's name (`intake.accepted`, ...).
    pub kind: String,
    /// When the decision was made, Unix milliseconds.
    pub at: i64,
    /// RFC 5424 severity, 0 (emergency) to 7 (debug).
    pub severity: u8,
    /// The record's JSON text.
    pub record: String,
}

/// A destination's delivery state as the `outbox_destinations` table and its pending rows hold it.
#[derive(Clone, Debug, Default)]
pub struct DestinationState {
    pub delivered: u64,
    pub failures: u64,
    pub pending: u64,
    /// Unix milliseconds: when the oldest record still waiting for it was written.
    pub oldest_pending_at: Option<i64>,
    pub last_delivered_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub backoff_until: Option<i64>,
}

/// What the store knows of the outbox: the destinations every record is written for (none: SIEM
/// delivery is off and nothing is written), and who to wake when records were committed.
#[derive(Debug, Default)]
pub(super) struct OutboxTargets {
    destinations: Vec<String>,
    written: Notify,
}

/// Rows of `outbox_pending` per INSERT (2 parameters each).
const PENDING_PER_STATEMENT: usize = 1_000;
/// Parameters of one `outbox` row.
const OUTBOX_COLUMNS: usize = 6;

/// `VALUES` rows of `columns` parameters each, numbered from 1 (PostgreSQL) or anonymous (SQLite;
/// see `insert_sql` for why).
fn values(rows: usize, columns: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        match numbered {
            true => sql.push_str(&numbered_from(r * columns + 1, columns)),
            false => sql.push_str(&placeholder_list(columns, false)),
        }
        sql.push(')');
    }
    sql
}

/// `$first, $first+1, ...`, `n` of them.
fn numbered_from(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Writes `rows` (their pending rows for each of `destinations` too) on `conn`, inside the caller's
/// transaction. `numbered`: PostgreSQL's placeholders, else SQLite's.
pub(super) async fn insert_rows<C>(
    conn: &mut C,
    rows: &[&OutboxRow],
    destinations: &[String],
    numbered: bool,
) -> Result<(), QueueError>
where
    C: sqlx::Connection,
    for<'e> &'e mut C: sqlx::Executor<'e, Database = C::Database>,
    <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    i64: for<'q> sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'r> (i64,): sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    if rows.is_empty() || destinations.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO outbox (event_id, kind, created_at, severity, pending, record) VALUES {} RETURNING id",
            values(chunk.len(), OUTBOX_COLUMNS, numbered)
        );
        let mut q = sqlx::query_as::<C::Database, (i64,)>(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            q = q
                .bind(row.event_id.as_str())
                .bind(row.kind.as_str())
                .bind(row.at)
                .bind(i64::from(row.severity))
                .bind(destinations.len() as i64)
                .bind(row.record.as_str());
        }
        ids.extend(q.fetch_all(&mut *conn).await?.into_iter().map(|(id,)| id));
    }
    let pairs: Vec<(&str, i64)> =
        ids.iter().flat_map(|id| destinations.iter().map(move |d| (d.as_str(), *id))).collect();
    for chunk in pairs.chunks(PENDING_PER_STATEMENT) {
        let sql =
            format!("INSERT INTO outbox_pending (destination, record_id) VALUES {}", values(chunk.len(), 2, numbered));
        let mut q = sqlx::query::<C::Database>(sqlx::AssertSqlSafe(sql));
        for (destination, id) in chunk {
            q = q.bind(*destination).bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `$first, ...` (numbered) or `?, ...` for a list of `n` values (an `IN (...)`).
fn list(n: usize, first: usize, numbered: bool) -> String {
    match numbered {
        true => numbered_from(first, n),
        false => placeholder_list(n, false),
    }
}

impl JobStore {
    /// The store writing each record it is given for these destinations (none: SIEM delivery is
    /// off, and the queue writes no record at all).
    pub fn with_outbox(mut self, destinations: Vec<String>) -> Self {
        self.outbox = Arc::new(OutboxTargets { destinations, written: Notify::new() });
        self
    }

    /// Whether records are written (some destination is configured).
    pub fn outbox_enabled(&self) -> bool {
        !self.outbox.destinations.is_empty()
    }

    /// Notified after every commit that wrote records (the delivery tasks wait on it).
    pub fn outbox_written(&self) -> &Notify {
        &self.outbox.written
    }

    pub(super) fn outbox_destinations(&self) -> &[String] {
        &self.outbox.destinations
    }

    /// Wakes the delivery tasks after a commit that wrote `rows` records.
    pub(super) fn outbox_committed(&self, rows: usize) {
        if rows > 0 {
            self.outbox.written.notify_waiters();
        }
    }

    /// Writes records that belong to no state change, in one transaction of their own.
    pub async fn append_outbox(&self, rows: &[OutboxRow]) -> Result<(), QueueError> {
        if rows.is_empty() || !self.outbox_enabled() {
            return Ok(());
        }
        let refs: Vec<&OutboxRow> = rows.iter().collect();
        let numbered = self.numbered();
        let destinations = self.outbox_destinations();
        on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            insert_rows(&mut *tx, &refs, destinations, numbered).await?;
            tx.commit().await?;
        });
        self.outbox_committed(rows.len());
        Ok(())
    }

    /// Records the configured destinations (kind by name) and forgets every other: the pending rows
    /// of a destination no longer configured are deleted, and with them the records nobody else
    /// waits for. Returns (destination, records it no longer gets) for each one forgotten.
    pub async fn register_destinations(&self, configured: &[(&str, &str)]) -> Result<Vec<(String, u64)>, QueueError> {
        let upsert = "INSERT INTO outbox_destinations (name, kind) VALUES ($1, $2) \
                      ON CONFLICT (name) DO UPDATE SET kind = excluded.kind";
        let names = "SELECT name FROM outbox_destinations UNION SELECT DISTINCT destination FROM outbox_pending";
        let count = "SELECT COUNT(*) FROM outbox_pending WHERE destination = $1";
        let lower = "UPDATE outbox SET pending = pending - 1 \
                     WHERE id IN (SELECT record_id FROM outbox_pending WHERE destination = $1)";
        let forget = "DELETE FROM outbox_pending WHERE destination = $1";
        let gone = "DELETE FROM outbox_destinations WHERE name = $1";
        let orphans = "DELETE FROM outbox WHERE pending <= 0";
        on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            for (name, kind) in configured {
                sqlx::query(upsert).bind(*name).bind(*kind).execute(&mut *tx).await?;
            }
            let known: Vec<(String,)> = sqlx::query_as(names).fetch_all(&mut *tx).await?;
            let mut forgotten = Vec::new();
            for (name,) in known.into_iter().filter(|(n,)| !configured.iter().any(|(c, _)| c == n)) {
                let (n,): (i64,) = sqlx::query_as(count).bind(&name).fetch_one(&mut *tx).await?;
                if n > 0 {
                    sqlx::query(lower).bind(&name).execute(&mut *tx).await?;
                    sqlx::query(forget).bind(&name).execute(&mut *tx).await?;
                }
                sqlx::query(gone).bind(&name).execute(&mut *tx).await?;
                forgotten.push((name, u64::try_from(n).unwrap_or(0)));
            }
            if forgotten.iter().any(|(_, n)| *n > 0) {
                sqlx::query(orphans).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(forgotten)
        })
    }

    /// The first records waiting for `destination`, in id order: at most `limit`, and no more than
    /// `max_bytes` of record text (but always one, whatever its size).
    pub async fn outbox_batch(
        &self,
        destination: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<PendingRecord>, QueueError> {
        let sql = "SELECT o.id, o.kind, o.created_at, o.severity, o.record FROM outbox_pending p \
                   JOIN outbox o ON o.id = p.record_id WHERE p.destination = $1 ORDER BY p.record_id LIMIT $2";
        let rows: Vec<(i64, String, i64, i16, String)> =
            on_pool!(&self.db, |p| sqlx::query_as(sql).bind(destination).bind(limit as i64).fetch_all(p).await?);
        let mut bytes = 0;
        let mut batch = Vec::with_capacity(rows.len());
        for (id, kind, at, severity, record) in rows {
            bytes += record.len();
            if !batch.is_empty() && bytes > max_bytes {
                break;
            }
            let severity = u8::try_from(severity).unwrap_or(6).min(7);
            batch.push(PendingRecord { id, kind, at, severity, record });
        }
        Ok(batch)
    }

    /// `destination` confirmed the records `ids`: they no longer wait for it, and a record no
    /// destination waits for any more is deleted. Its delivered count and time move on, and its
    /// last failure is cleared.
    pub async fn outbox_delivered(&self, destination: &str, ids: &[i64]) -> Result<(), QueueError> {
        let now = self.clock.now_ms();
        let numbered = self.numbered();
        let done = "UPDATE outbox_destinations SET delivered = delivered + $1, last_delivered_at = $2, \
                    backoff_until = NULL WHERE name = $3";
        on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let mut confirmed: u64 = 0;
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let unpend = format!(
                    "DELETE FROM outbox_pending WHERE destination = {} AND record_id IN ({}) RETURNING record_id",
                    list(1, 1, numbered),
                    list(chunk.len(), 2, numbered)
                );
                let mut q = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(unpend)).bind(destination);
                for id in chunk {
                    q = q.bind(*id);
                }
                let gone: Vec<(i64,)> = q.fetch_all(&mut *tx).await?;
                if gone.is_empty() {
                    continue;
                }
                confirmed += gone.len() as u64;
                let in_list = list(gone.len(), 1, numbered);
                let lower = format!("UPDATE outbox SET pending = pending - 1 WHERE id IN ({in_list})");
                let delete = format!("DELETE FROM outbox WHERE pending <= 0 AND id IN ({in_list})");
                for sql in [lower, delete] {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (id,) in &gone {
                        q = q.bind(*id);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
            sqlx::query(done).bind(confirmed as i64).bind(now).bind(destination).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A delivery to `destination` failed with `error`; it tries again at `backoff_until`.
    pub async fn outbox_failed(&self, destination: &str, error: &str, backoff_until: i64) -> Result<(), QueueError> {
        let sql = "UPDATE outbox_destinations SET failures = failures + 1, last_error = $1, last_error_at = $2, \
                   backoff_until = $3 WHERE name = $4";
        let now = self.clock.now_ms();
        on_pool!(&self.writer, |p| {
            sqlx::query(sql).bind(error).bind(now).bind(backoff_until).bind(destination).execute(p).await?;
        });
        Ok(())
    }

    /// Takes (or keeps) the right to deliver to `destination` for `lease`, as `holder`: on a shared
    /// PostgreSQL store one process at a time delivers to a destination, so its records go out in
    /// order. True when `holder` has it. On SQLite, which one process uses, always true.
    pub async fn outbox_lease(&self, destination: &str, holder: &str, lease: Duration) -> Result<bool, QueueError> {
        let Db::Postgres(pool) = &self.writer else { return Ok(true) };
        let now = self.clock.now_ms();
        let sql = "UPDATE outbox_destinations SET leased_by = $1, lease_until = $2 \
                   WHERE name = $3 AND (leased_by = $1 OR leased_by IS NULL OR lease_until < $4)";
        let n = sqlx::query(sql)
            .bind(holder)
            .bind(now + lease.as_millis() as i64)
            .bind(destination)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Gives the delivery lease of `destination` back (a stopping process), so another replica takes
    /// it at once instead of when it expires.
    pub async fn outbox_release(&self, destination: &str, holder: &str) -> Result<(), QueueError> {
        let Db::Postgres(pool) = &self.writer else { return Ok(()) };
        let sql =
            "UPDATE outbox_destinations SET leased_by = NULL, lease_until = NULL WHERE name = $1 AND leased_by = $2";
        sqlx::query(sql).bind(destination).bind(holder).execute(pool).await?;
        Ok(())
    }

    /// How many records wait for `destination`, and when the oldest of them was written.
    pub async fn outbox_depth(&self, destination: &str) -> Result<(u64, Option<i64>), QueueError> {
        let count = "SELECT COUNT(*) FROM outbox_pending WHERE destination = $1";
        let oldest = "SELECT o.created_at FROM outbox o \
                      WHERE o.id = (SELECT MIN(record_id) FROM outbox_pending WHERE destination = $1)";
        let (n, at): ((i64,), Option<(i64,)>) = on_pool!(&self.db, |p| (
            sqlx::query_as(count).bind(destination).fetch_one(p).await?,
            sqlx::query_as(oldest).bind(destination).fetch_optional(p).await?
        ));
        Ok((u64::try_from(n.0).unwrap_or(0), at.map(|(t,)| t)))
    }

    /// Records in the outbox (not yet confirmed by every destination).
    pub async fn outbox_records(&self) -> Result<u64, QueueError> {
        let (n,): (i64,) = on_pool!(&self.db, |p| sqlx::query_as("SELECT COUNT(*) FROM outbox").fetch_one(p).await?);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `destination`'s delivery state (its row, and its pending records counted).
    pub async fn destination_state(&self, destination: &str) -> Result<DestinationState, QueueError> {
        type Row = (i64, i64, Option<i64>, Option<String>, Option<i64>, Option<i64>);
        let sql = "SELECT delivered, failures, last_delivered_at, last_error, last_error_at, backoff_until \
                   FROM outbox_destinations WHERE name = $1";
        let row: Option<Row> = on_pool!(&self.db, |p| sqlx::query_as(sql).bind(destination).fetch_optional(p).await?);
        let (pending, oldest_pending_at) = self.outbox_depth(destination).await?;
        let Some((delivered, failures, last_delivered_at, last_error, last_error_at, backoff_until)) = row else {
            return Ok(DestinationState { pending, oldest_pending_at, ..DestinationState::default() });
        };
        Ok(DestinationState {
            delivered: u64::try_from(delivered).unwrap_or(0),
            failures: u64::try_from(failures).unwrap_or(0),
            pending,
            oldest_pending_at,
            last_delivered_at,
            last_error,
            last_error_at,
            backoff_until,
        })
    }
}

type Reply = oneshot::Sender<Result<(), QueueError>>;

/// Group commit of records that belong to no state change (a refusal, a duplicate, a pause of the
/// workers): concurrent appends share one transaction, and each caller is answered after it
/// committed, as the intake's committer does for jobs.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<(Vec<OutboxRow>, Reply)>,
}

/// The receiving end, until `start` runs it.
pub struct AppendCommitter {
    rx: mpsc::Receiver<(Vec<OutboxRow>, Reply)>,
    batch_max: usize,
}

impl Appender {
    /// A channel for a few batches of waiting appends.
    pub fn channel(batch_max: usize) -> (Appender, AppendCommitter) {
        let (tx, rx) = mpsc::channel(batch_max * 4);
        (Appender { tx }, AppendCommitter { rx, batch_max })
    }

    /// Writes `rows`; returns once they are committed.
    pub async fn append(&self, rows: Vec<OutboxRow>) -> Result<(), QueueError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.tx.send((rows, reply)).await.map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }
}

impl AppendCommitter {
    /// Commits appends until `stop`; what is in the channel then is still committed.
    pub fn start(self, store: JobStore, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run_appender(store, self, stop))
    }
}

async fn run_appender(
    store: JobStore,
    AppendCommitter { mut rx, batch_max }: AppendCommitter,
    stop: CancellationToken,
) {
    let mut batch: Vec<(Vec<OutboxRow>, Reply)> = Vec::with_capacity(batch_max);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut batch, batch_max) => n,
            _ = stop.cancelled() => {
                rx.close();
                rx.recv_many(&mut batch, batch_max).await
            }
        };
        if received == 0 {
            return;
        }
        let (appends, replies): (Vec<Vec<OutboxRow>>, Vec<Reply>) = batch.drain(..).unzip();
        let rows: Vec<OutboxRow> = appends.iter().flatten().cloned().collect();
        match store.append_outbox(&rows).await {
            Ok(()) => {
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            // One by one, so an append that cannot be written does not sink the others.
            Err(e) if appends.len() > 1 => {
                tracing::warn!(error = %e, appends = appends.len(), "outbox group commit failed; committing one by one");
                for (rows, reply) in appends.iter().zip(replies) {
                    let _ = reply.send(store.append_outbox(rows).await);
                }
            }
            Err(e) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_lists_number_each_row_or_leave_them_anonymous() {
        assert_eq!(super::values(2, 3, true), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values(2, 2, false), "(?, ?), (?, ?)");
        assert_eq!(super::list(3, 2, true), "$2, $3, $4");
    }
}
