//! Aggregates for /metrics and the reports: counts by state, discrepancies, finished jobs.

use uuid::Uuid;

use super::sql::JobRow;
use super::{Db, Discrepancy, Job, JobKind, JobState, JobStore, QueueError};

impl JobStore {
    /// How many jobs are in each state (the metrics' queue gauges start from it and resync to it).
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
                    .bind(d.kind.as_str())
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
                    kind: kind
                        .parse()
                        .map_err(|e: crate::lifecycle::UnknownName| QueueError::Corrupt(e.to_string()))?,
                    field,
                    expected: serde_json::from_str(&expected).unwrap_or(serde_json::Value::String(expected)),
                    actual: serde_json::from_str(&actual).unwrap_or(serde_json::Value::String(actual)),
                    at,
                })
            })
            .collect()
    }

    /// Finished jobs of `kind` since `since_ms`: how many succeeded, and the dead ones.
    pub async fn finished_since(&self, kind: JobKind, since_ms: i64) -> Result<(u64, Vec<Job>), QueueError> {
        let count = "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND state = 'succeeded' AND finished_at >= $2";
        let dead = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = $1 AND state = 'dead' AND finished_at >= $2 ORDER BY finished_at LIMIT 10000"
        );
        let (succeeded, rows): ((i64,), Vec<JobRow>) = on_pool!(&self.db, |p| (
            sqlx::query_as(count).bind(kind.as_str()).bind(since_ms).fetch_one(p).await?,
            sqlx::query_as(dead).bind(kind.as_str()).bind(since_ms).fetch_all(p).await?
        ));
        let dead = rows.into_iter().map(Job::try_from).collect::<Result<_, _>>()?;
        Ok((u64::try_from(succeeded.0).unwrap_or(0), dead))
    }
}
