//! What admins read and do: one job, its attempts, the dead letters, replay and delete.

use uuid::Uuid;

use super::sql::{AttemptRow, JobRow};
use super::{Attempt, Db, Job, JobState, JobStore, QueueError, RecordsOf};

impl JobStore {
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
        rows.into_iter()
            .map(|r| {
                Ok(Attempt {
                    attempt: u32::try_from(r.attempt).unwrap_or(0),
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                    outcome: r
                        .outcome
                        .parse()
                        .map_err(|e: crate::lifecycle::UnknownName| QueueError::Corrupt(e.to_string()))?,
                    error: r.error,
                })
            })
            .collect()
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
    /// `records` gives the replay's outbox records from the replayed job, written with it.
    pub async fn replay(&self, audit_id: Uuid, records: &RecordsOf<'_>) -> Result<Job, QueueError> {
        let sql = concat!(
            "UPDATE jobs SET state = 'queued', run_attempts = 0, lost_attempts = 0, replayed_at = $1, run_at = $1, \
               updated_at = $1, finished_at = NULL \
             WHERE audit_id = $2 AND state = 'dead' RETURNING ",
            job_columns!()
        );
        let now = self.clock.now_ms();
        let job = on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let row: Option<JobRow> =
                sqlx::query_as(sql).bind(now).bind(audit_id.to_string()).fetch_optional(&mut *tx).await?;
            let job = row.map(Job::try_from).transpose()?;
            let written = self.write_records_of(&mut *tx, job.as_slice(), records).await?;
            tx.commit().await?;
            self.outbox_committed(written);
            job
        });
        match job {
            Some(job) => Ok(job),
            None => Err(self.state_error(audit_id, JobState::Dead).await),
        }
    }

    /// Removes a dead letter for good (its audit lines stay); `records` gives the deletion's outbox
    /// records from the deleted job, written with it.
    pub async fn delete_dead(&self, audit_id: Uuid, records: &RecordsOf<'_>) -> Result<Job, QueueError> {
        let sql = concat!("DELETE FROM jobs WHERE audit_id = $1 AND state = 'dead' RETURNING ", job_columns!(), "");
        let attempts = "DELETE FROM job_attempts WHERE audit_id = $1";
        let job = on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            let row: Option<JobRow> = sqlx::query_as(sql).bind(audit_id.to_string()).fetch_optional(&mut *tx).await?;
            let job = row.map(Job::try_from).transpose()?;
            if job.is_some() {
                sqlx::query(attempts).bind(audit_id.to_string()).execute(&mut *tx).await?;
            }
            let written = self.write_records_of(&mut *tx, job.as_slice(), records).await?;
            tx.commit().await?;
            self.outbox_committed(written);
            job
        });
        match job {
            Some(job) => Ok(job),
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
}
