//! Storing new jobs: one transaction per batch, idempotent by key, conflicts told apart by content hash.

use std::collections::HashMap;

use uuid::Uuid;

use super::outbox::insert_rows as insert_outbox;
use super::sql::{ROWS_PER_STATEMENT, insert_sql, placeholder_list};
use super::{Db, Enqueued, JobRecord, JobStore, NewJob, OutboxRow, QueueError};

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

impl JobStore {
    /// Stores jobs in ONE transaction; an id already stored answers with the existing job's audit id.
    /// Returns one answer per input, in order, only after the commit.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        let records: Vec<JobRecord> = jobs.iter().map(JobRecord::from).collect();
        self.enqueue_records(&records).await
    }

    /// `enqueue_batch` for jobs already in their written form. The acceptance record a job carries
    /// (`JobRecord::with_accepted_record`) is written in the same transaction, if the job is stored.
    pub async fn enqueue_records(&self, jobs: &[JobRecord]) -> Result<Vec<Enqueued>, QueueError> {
        // Rows go in in key order, so batches of several replicas on one PostgreSQL queue take their
        // unique-key locks in the same order and cannot deadlock on each other.
        let mut order: Vec<&JobRecord> = jobs.iter().collect();
        order.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
        let now = self.clock.now_ms();
        let records = self.outbox_enabled() && jobs.iter().any(|j| j.accepted.is_some());
        let mut written = 0;
        let stored = match &self.writer {
            // One statement is one transaction in SQLite: a batch that fits in one INSERT needs no
            // BEGIN and COMMIT, so the commit takes one trip to the writer thread instead of three.
            // (With outbox records to write too, it takes a transaction like any other.)
            Db::Sqlite(pool) if jobs.len() <= ROWS_PER_STATEMENT && !records => {
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
                if records {
                    // Only the jobs this transaction stored were accepted.
                    let accepted: Vec<&OutboxRow> = jobs
                        .iter()
                        .filter(|j| {
                            stored.as_ref().is_none_or(|s| {
                                s.get(&j.idempotency_key).is_some_and(|k| k.audit_id == j.audit_id_text)
                            })
                        })
                        .filter_map(|j| j.accepted.as_ref())
                        .collect();
                    written = accepted.len();
                    let destinations = self.outbox_destinations();
                    insert_outbox(&mut *tx, &accepted, destinations, self.numbered()).await?;
                }
                tx.commit().await?;
                stored
            }),
        };
        self.outbox_committed(written);
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
    pub(super) fn numbered(&self) -> bool {
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
}
