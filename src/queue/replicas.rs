//! The replicas table: which processes run workers on this job store, and when each was last heard
//! from. `crate::replicas` turns it into each process's share of the Genesys request budget.

use std::time::Duration;

use uuid::Uuid;

use super::{Db, JobStore, QueueError};

/// One process whose workers run, as it announces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRow {
    /// New for every start of a process.
    pub id: Uuid,
    /// For operators reading the table: where it runs.
    pub host: String,
    pub pid: u32,
    /// Unix milliseconds.
    pub started_at: i64,
    pub heartbeat_at: i64,
}

const BEAT: &str = "INSERT INTO replicas (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";
const FORGET: &str = "DELETE FROM replicas WHERE heartbeat_at < $1";
const COUNT_LIVE: &str = "SELECT COUNT(*) FROM replicas WHERE heartbeat_at >= $1";

impl JobStore {
    /// Writes the heartbeat of `replica` at the store's clock's now (announcing it the first time),
    /// deletes the rows of replicas not heard from for `forget_after`, and counts the replicas heard
    /// from within `live_within`, this one included. One short transaction.
    pub async fn replica_beat(
        &self,
        replica: &ReplicaRow,
        live_within: Duration,
        forget_after: Duration,
    ) -> Result<u32, QueueError> {
        let now = self.clock.now_ms();
        let ago = |d: Duration| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let (live_since, forget_before) = (ago(live_within), ago(forget_after));
        on_pool!(&self.writer, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(BEAT)
                .bind(replica.id.to_string())
                .bind(replica.host.as_str())
                .bind(i64::from(replica.pid))
                .bind(replica.started_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(FORGET).bind(forget_before).execute(&mut *tx).await?;
            let (live,): (i64,) = sqlx::query_as(COUNT_LIVE).bind(live_since).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            // At least this one, whatever clock the others write with.
            Ok(u32::try_from(live).unwrap_or(u32::MAX).max(1))
        })
    }

    /// Deletes the row of a replica that stops, so the others count it out at their next beat.
    pub async fn replica_gone(&self, id: Uuid) -> Result<(), QueueError> {
        on_pool!(&self.writer, |pool| {
            sqlx::query("DELETE FROM replicas WHERE id = $1").bind(id.to_string()).execute(pool).await?;
            Ok(())
        })
    }

    /// Every row of the replicas table, earliest start first (for tests and operators' tools).
    pub async fn replicas(&self) -> Result<Vec<ReplicaRow>, QueueError> {
        let sql = "SELECT id, host, pid, started_at, heartbeat_at FROM replicas ORDER BY started_at, id";
        let rows: Vec<(String, String, i64, i64, i64)> =
            on_pool!(&self.db, |pool| sqlx::query_as(sql).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(id, host, pid, started_at, heartbeat_at)| {
                Ok(ReplicaRow {
                    id: id.parse().map_err(|e| QueueError::Corrupt(format!("replica id {id:?}: {e}")))?,
                    host,
                    pid: u32::try_from(pid).unwrap_or(0),
                    started_at,
                    heartbeat_at,
                })
            })
            .collect()
    }
}
