//! Leasing: claims, lease renewal, results, progress and lost attempts, all guarded by the lease token.

use std::time::Duration;

use uuid::Uuid;

use super::outbox::insert_rows as insert_outbox;
use super::sql::{JobRow, RECORD_LOST};
use super::{Db, Finish, Job, JobStore, OutboxRow, QueueError, RecordsOf};

impl JobStore {
    /// Leases up to `limit` queued jobs that are due, oldest first. Each claim counts as an attempt.
    pub async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Job>, QueueError> {
        let sql = lease_sql!(self.db, "state = 'running',", "state = 'queued' AND run_at <= $3 ORDER BY run_at");
        self.lease_rows(sql, limit, lease).await
    }

    /// Leases up to `limit` running jobs whose lease expired (their worker stopped or crashed) and
    /// that may lose another attempt. The lost attempt goes into the history as `lost`. Kept apart
    /// from `claim` so the hot path stays a plain index range. `records` gives the outbox records of
    /// each job taken over (its lost attempt), written in the same transaction.
    pub async fn claim_expired(
        &self,
        limit: usize,
        lease: Duration,
        records: &RecordsOf<'_>,
    ) -> Result<Vec<Job>, QueueError> {
        let token = Uuid::new_v4().to_string();
        let now = self.clock.now_ms();
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
        let (jobs, written) = on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as(pick).bind(now).bind(limit as i64).fetch_all(&mut *tx).await?;
            let mut jobs = Vec::with_capacity(ids.len());
            for (id,) in ids {
                sqlx::query(RECORD_LOST).bind(&id).bind(now).execute(&mut *tx).await?;
                let row: JobRow = sqlx::query_as(take_over)
                    .bind(&token)
                    .bind(lease_until)
                    .bind(now)
                    .bind(&id)
                    .fetch_one(&mut *tx)
                    .await?;
                jobs.push(Job::try_from(row)?);
            }
            let written = self.write_records_of(&mut *tx, &jobs, records).await?;
            tx.commit().await?;
            (jobs, written)
        });
        self.outbox_committed(written);
        Ok(jobs)
    }

    /// Writes the outbox records `records` gives for `jobs` on `conn` (the caller's transaction);
    /// returns how many.
    pub(super) async fn write_records_of<C>(
        &self,
        conn: &mut C,
        jobs: &[Job],
        records: &RecordsOf<'_>,
    ) -> Result<usize, QueueError>
    where
        C: sqlx::Connection,
        for<'e> &'e mut C: sqlx::Executor<'e, Database = C::Database>,
        <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
        for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
        i64: for<'q> sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
        for<'r> (i64,): sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
    {
        if !self.outbox_enabled() {
            return Ok(0);
        }
        let rows: Vec<OutboxRow> = jobs.iter().flat_map(records).collect();
        let refs: Vec<&OutboxRow> = rows.iter().collect();
        insert_outbox(conn, &refs, self.outbox_destinations(), self.numbered()).await?;
        Ok(rows.len())
    }

    async fn lease_rows(&self, sql: &'static str, limit: usize, lease: Duration) -> Result<Vec<Job>, QueueError> {
        let now = self.clock.now_ms();
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
    /// the history. Returns them so the caller can audit each; `records` gives each one's outbox
    /// records, written in the same transaction.
    pub async fn reap_expired_final_attempts(&self, records: &RecordsOf<'_>) -> Result<Vec<Job>, QueueError> {
        let now = self.clock.now_ms();
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
        let (jobs, written) = on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as(pick).bind(now).fetch_all(&mut *tx).await?;
            let mut jobs = Vec::with_capacity(ids.len());
            for (id,) in ids {
                sqlx::query(RECORD_LOST).bind(&id).bind(now).execute(&mut *tx).await?;
                let row: JobRow = sqlx::query_as(dead).bind(now).bind(&id).fetch_one(&mut *tx).await?;
                jobs.push(Job::try_from(row)?);
            }
            let written = self.write_records_of(&mut *tx, &jobs, records).await?;
            tx.commit().await?;
            (jobs, written)
        });
        self.outbox_committed(written);
        Ok(jobs)
    }

    /// Keeps a running job's lease alive. False when the lease was lost (another worker took the job).
    pub async fn extend_lease(&self, job: &Job, lease: Duration) -> Result<bool, QueueError> {
        let sql =
            "UPDATE jobs SET lease_until = $2 + $1 WHERE audit_id = $3 AND lease_token = $4 AND state = 'running'";
        self.update_leased(sql, job, lease.as_millis() as i64).await
    }

    /// Records the end of an attempt and moves the job on. False when this worker no longer held the
    /// lease (the job was taken over after its lease expired); nothing is changed then. `records` (the
    /// attempt's outbox records: what the job did, the attempt, a dead letter) are written in the
    /// same transaction, and only if the result is.
    pub async fn finish(
        &self,
        job: &Job,
        started_at: i64,
        finish: Finish<'_>,
        records: &[OutboxRow],
    ) -> Result<bool, QueueError> {
        let now = self.clock.now_ms();
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
                if self.outbox_enabled() {
                    let refs: Vec<&OutboxRow> = records.iter().collect();
                    insert_outbox(&mut *tx, &refs, self.outbox_destinations(), self.numbered()).await?;
                }
            }
            tx.commit().await?;
            if n == 1 && self.outbox_enabled() {
                self.outbox_committed(records.len());
            }
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
            .bind(self.clock.now_ms())
            .bind(job.audit_id.to_string())
            .bind(job.lease_token.as_deref())
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// When the next queued job is due, if any (lets an idle worker sleep exactly that long).
    pub async fn next_due(&self) -> Result<Option<i64>, QueueError> {
        let sql = "SELECT MIN(run_at) FROM jobs WHERE state = 'queued'";
        let (min,): (Option<i64>,) = on_pool!(&self.db, |p| sqlx::query_as(sql).fetch_one(p).await?);
        Ok(min)
    }
}
