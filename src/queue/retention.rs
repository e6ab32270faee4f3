//! Retention: job payloads hold personal data, so a succeeded job keeps it only for the retention
//! period; its idempotency key and content hash stay for the dedupe window, so a late repeat of the
//! event is still answered as a duplicate (or a conflict), and after that the row goes.
//!
//! Only succeeded jobs age out. Dead letters keep everything until an admin replays or deletes them;
//! queued and running jobs are work in hand.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::sql::placeholder_list;
use super::{Db, JobStore, QueueError};
use crate::lifecycle::{Bus, Event};

/// Rows per statement and per transaction: short transactions, so the intake (which shares the one
/// SQLite writer) waits for a sweep no longer than for a commit of its own.
const BATCH: usize = 256;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Succeeded jobs whose personal data was purged.
    pub purged: u64,
    /// Succeeded jobs (with their attempts) deleted after the dedupe window.
    pub forgotten: u64,
    /// Discrepancies (they name a person's values) deleted after the retention period.
    pub discrepancies: u64,
}

/// The succeeded jobs not yet purged that finished at `$1` or earlier, oldest first, `$2` of them.
/// Its own partial index (`jobs_to_purge`) holds exactly these rows; SQLite is told to use it, since
/// without table statistics (the service never runs ANALYZE) it would rather scan every succeeded
/// job through `jobs_due` and sort them.
macro_rules! to_purge {
    () => {
        "state = 'succeeded' AND purged_at IS NULL AND finished_at <= $1 ORDER BY finished_at LIMIT $2"
    };
}

/// The succeeded jobs that finished at `$1` or earlier, oldest first, `$2` of them (`jobs_succeeded`).
macro_rules! to_forget {
    () => {
        "state = 'succeeded' AND finished_at <= $1 ORDER BY finished_at LIMIT $2"
    };
}

/// Purged: the payload (the HR event), the result (what was sent to Genesys and what came back),
/// the progress and any error text, which may quote the person's data.
const PURGE_JOBS: &str =
    "UPDATE jobs SET payload = 'null', result = NULL, progress = NULL, last_error = NULL, purged_at = ";
const PURGE_ATTEMPTS: &str = "UPDATE job_attempts SET error = NULL WHERE error IS NOT NULL AND audit_id IN (";
const FORGET_ATTEMPTS: &str = "DELETE FROM job_attempts WHERE audit_id IN (";
const FORGET_JOBS: &str = "DELETE FROM jobs WHERE state = 'succeeded' AND audit_id IN (";

impl JobStore {
    /// One retention pass at the store's clock's now: purges the personal data of jobs that succeeded
    /// `retention` ago or earlier (keeping key, content hash, state, times and attempt outcomes),
    /// deletes succeeded jobs and their attempts `dedupe_window` after they succeeded, and deletes
    /// discrepancies older than `retention`. Dead, queued and running jobs are left alone.
    pub async fn sweep(&self, retention: Duration, dedupe_window: Duration) -> Result<Swept, QueueError> {
        let now = self.clock.now_ms();
        let purge_before = now.saturating_sub(retention.as_millis() as i64);
        let forget_before = now.saturating_sub(dedupe_window.as_millis() as i64);
        let mut swept = Swept::default();
        // Purge first: with a dedupe window equal to the retention, the row goes in the same pass.
        loop {
            let n = self.purge_batch(purge_before, now).await?;
            swept.purged += n;
            if n < BATCH as u64 {
                break;
            }
        }
        loop {
            let n = self.forget_batch(forget_before).await?;
            swept.forgotten += n;
            if n < BATCH as u64 {
                break;
            }
        }
        let discrepancies = "DELETE FROM discrepancies WHERE id IN \
             (SELECT id FROM discrepancies WHERE created_at <= $1 ORDER BY created_at LIMIT $2)";
        loop {
            let n = on_pool!(&self.writer, |p| sqlx::query(discrepancies)
                .bind(purge_before)
                .bind(BATCH as i64)
                .execute(p)
                .await?
                .rows_affected());
            swept.discrepancies += n;
            if n < BATCH as u64 {
                break;
            }
        }
        Ok(swept)
    }

    /// Up to `BATCH` succeeded jobs not yet purged that finished at `before` or earlier.
    async fn purge_batch(&self, before: i64, now: i64) -> Result<u64, QueueError> {
        let pick = match self.db {
            Db::Sqlite(_) => concat!("SELECT audit_id FROM jobs INDEXED BY jobs_to_purge WHERE ", to_purge!()),
            Db::Postgres(_) => concat!("SELECT audit_id FROM jobs WHERE ", to_purge!(), " FOR UPDATE SKIP LOCKED"),
        };
        on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as(pick).bind(before).bind(BATCH as i64).fetch_all(&mut *tx).await?;
            if ids.is_empty() {
                return Ok(0);
            }
            // Numbered on both backends (a background batch; see `insert_sql` for the intake's).
            let list = placeholder_list(ids.len(), true);
            let jobs = format!("{PURGE_JOBS}${} WHERE state = 'succeeded' AND audit_id IN ({list})", ids.len() + 1);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(jobs));
            for (id,) in &ids {
                q = q.bind(id.as_str());
            }
            let n = q.bind(now).execute(&mut *tx).await?.rows_affected();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("{PURGE_ATTEMPTS}{list})")));
            for (id,) in &ids {
                q = q.bind(id.as_str());
            }
            q.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Up to `BATCH` succeeded jobs, with their attempts, that finished at `before` or earlier.
    async fn forget_batch(&self, before: i64) -> Result<u64, QueueError> {
        let pick = match self.db {
            Db::Sqlite(_) => concat!("SELECT audit_id FROM jobs INDEXED BY jobs_succeeded WHERE ", to_forget!()),
            Db::Postgres(_) => concat!("SELECT audit_id FROM jobs WHERE ", to_forget!(), " FOR UPDATE SKIP LOCKED"),
        };
        on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as(pick).bind(before).bind(BATCH as i64).fetch_all(&mut *tx).await?;
            if ids.is_empty() {
                return Ok(0);
            }
            let list = placeholder_list(ids.len(), true);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("{FORGET_ATTEMPTS}{list})")));
            for (id,) in &ids {
                q = q.bind(id.as_str());
            }
            q.execute(&mut *tx).await?;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("{FORGET_JOBS}{list})")));
            for (id,) in &ids {
                q = q.bind(id.as_str());
            }
            let n = q.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Sweeps (`sweep`) at once and then every `every` on the store's clock, until `stop`. A failed
    /// sweep is logged and tried again at the next turn.
    pub async fn run_retention(
        self,
        retention: Duration,
        dedupe_window: Duration,
        every: Duration,
        bus: Bus,
        stop: CancellationToken,
    ) {
        loop {
            match self.sweep(retention, dedupe_window).await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(
                        purged = swept.purged,
                        forgotten = swept.forgotten,
                        discrepancies = swept.discrepancies,
                        "retention: personal data of succeeded jobs purged, jobs past the dedupe window deleted"
                    );
                    if let Err(e) = bus.emit_recorded(Event::Swept(&swept)).await {
                        tracing::error!(error = %e, "the outbox record of the retention sweep could not be written");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention sweep failed; will retry"),
            }
            tokio::select! {
                _ = self.clock.sleep(every) => {},
                _ = stop.cancelled() => return,
            }
        }
    }
}
