//! Opening the store: pools, pragmas, migrations; checkpoints and the health ping.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::{Db, JobStore, QueueError, wal_gather};
use crate::clock::Clock;
use crate::config::DatabaseUrl;

impl JobStore {
    /// Opens the database (creating an SQLite file and its folder when needed) and runs migrations.
    /// The store reads the system clock; `with_clock` gives it another.
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
                // database file there, which is the commit's tail latency. The high
                // threshold is a backstop for a store used without the background task.
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(opts.clone().pragma("wal_autocheckpoint", "20000"))
                    .await?;
                // Before anything is written: a 202 promises a commit that is on disk.
                check_durable(&writer).await?;
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
        Ok(JobStore { db, writer, max_lost_attempts, clock: Clock::system(), outbox: Default::default() })
    }

    /// The store on `clock`: every time it stores and every lease it grants reads it.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock the store reads (the worker waits on the same one).
    pub fn clock(&self) -> &Clock {
        &self.clock
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
}

/// Reads back what the SQLite writer runs with and refuses anything but the WAL journal with
/// `synchronous = FULL`: asking for them (`wal_gather::durable_wal`) is not proof, since SQLite
/// keeps another journal mode without an error where WAL is impossible (an in-memory database).
async fn check_durable(writer: &sqlx::SqlitePool) -> Result<(), QueueError> {
    let (journal_mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(writer).await?;
    let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(writer).await?;
    match durability_problem(&journal_mode, synchronous) {
        Some(problem) => Err(QueueError::NotDurable(problem)),
        None => Ok(()),
    }
}

/// Why a writer with this journal mode and `synchronous` level cannot back the service, if it cannot.
fn durability_problem(journal_mode: &str, synchronous: i64) -> Option<String> {
    /// `PRAGMA synchronous` answers FULL as 2.
    const FULL: i64 = 2;
    if journal_mode.eq_ignore_ascii_case("wal") && synchronous == FULL {
        return None;
    }
    let hint = match journal_mode.eq_ignore_ascii_case("memory") {
        true => {
            " An in-memory database has no WAL: give DATABASE_URL a file, e.g. sqlite://data/provisioner.db?mode=rwc."
        }
        false => "",
    };
    Some(format!(
        "SQLite runs with journal_mode={journal_mode} and synchronous={synchronous}, not WAL and FULL (2): \
         an acknowledged webhook could be lost in a crash, and the WAL-gathering VFS is only safe with both; \
         refusing to start.{hint}"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_wal_with_full_sync_is_durable_enough() {
        assert_eq!(super::durability_problem("wal", 2), None);
        assert_eq!(super::durability_problem("WAL", 2), None);
        for (mode, sync) in [("wal", 1), ("wal", 3), ("delete", 2), ("memory", 2), ("truncate", 0)] {
            let problem = super::durability_problem(mode, sync).expect("refused");
            assert!(problem.contains(&format!("journal_mode={mode} and synchronous={sync}")), "{problem}");
        }
        assert!(super::durability_problem("memory", 2).unwrap().contains("in-memory database"));
    }

    /// For real: SQLite keeps an in-memory database out of WAL mode without an error, and the store
    /// refuses to open on it.
    #[tokio::test]
    async fn a_writer_that_is_not_in_wal_mode_is_refused() {
        for url in ["sqlite::memory:", "sqlite://refused.db?mode=memory"] {
            let url = crate::config::DatabaseUrl::parse(url).unwrap();
            let refused = super::JobStore::connect(&url, 3).await.expect_err("an in-memory writer is refused");
            let text = refused.to_string();
            assert!(matches!(refused, super::QueueError::NotDurable(_)), "{text}");
            assert!(text.contains("journal_mode=memory and synchronous=2") && text.contains("refusing"), "{text}");
        }
    }

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
}
