//! The SQL text the store runs, shared by both backends, and the rows it reads back.

use uuid::Uuid;

use super::{Job, QueueError};

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
         lease_token, lease_until, last_error, result, created_at, updated_at, finished_at, replayed_at, progress, \
         purged_at"
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
pub(super) const RECORD_LOST: &str = "INSERT INTO job_attempts (audit_id, attempt, started_at, finished_at, outcome, error) \
     SELECT audit_id, attempts, COALESCE(attempt_started_at, updated_at), $2, 'lost', \
       'its lease expired: the worker stopped or crashed during the attempt' \
     FROM jobs WHERE audit_id = $1 ON CONFLICT (audit_id, attempt) DO NOTHING";

/// Rows per INSERT: at most 10 parameters each, far below both backends' limits (SQLite 32,766, PostgreSQL 65,535),
/// and as many as the committer takes in one batch by default.
pub(super) const ROWS_PER_STATEMENT: usize = 512;

/// `$1, $2, ...` (numbered) or `?, ?, ...` for `n` parameters, written into one string.
pub(super) fn placeholder_list(n: usize, numbered: bool) -> String {
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
/// asks SQLite for its name, which SQLite finds by a linear search, so binding N of them costs N².
pub(super) fn insert_sql(rows: usize, numbered: bool) -> String {
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

#[derive(sqlx::FromRow)]
pub(super) struct JobRow {
    pub(super) audit_id: String,
    pub(super) kind: String,
    pub(super) webhook_id: String,
    pub(super) payload: String,
    pub(super) state: String,
    pub(super) attempts: i64,
    pub(super) run_attempts: i64,
    pub(super) lost_attempts: i64,
    pub(super) max_attempts: i64,
    pub(super) run_at: i64,
    pub(super) lease_token: Option<String>,
    pub(super) lease_until: Option<i64>,
    pub(super) last_error: Option<String>,
    pub(super) result: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) finished_at: Option<i64>,
    pub(super) replayed_at: Option<i64>,
    pub(super) progress: Option<String>,
    pub(super) purged_at: Option<i64>,
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
            lease_until: r.lease_until,
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
            purged_at: r.purged_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AttemptRow {
    pub(super) attempt: i64,
    pub(super) started_at: i64,
    pub(super) finished_at: i64,
    pub(super) outcome: String,
    pub(super) error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{insert_sql, placeholder_list};

    #[test]
    fn insert_placeholders_match_what_each_backend_binds() {
        let numbered = insert_sql(2, true);
        assert!(numbered.contains("($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $8, $8)"), "{numbered}");
        assert!(numbered.contains("($9, $10, $11, $12, $13, $14, 'queued', 0, $15, $16, $16, $16)"), "{numbered}");
        assert_eq!(placeholder_list(3, true), "$1, $2, $3");
        assert_eq!(placeholder_list(3, false), "?, ?, ?");
        let anonymous = insert_sql(2, false);
        assert_eq!(anonymous.matches('?').count(), 20, "{anonymous}");
        assert!(!anonymous.contains('$'), "{anonymous}");
    }
}
