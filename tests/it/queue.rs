//! The queue and its worker: retries with backoff, dead letters and replay, leases, two workers on
//! one PostgreSQL queue, graceful release.
//!
//! Tests that wait for time (a backoff, a lease, a retry window, a grace period) run the app on a
//! manual clock and move it on themselves: nothing here sleeps for time to pass, so a slow machine
//! changes how long a test takes, never what it sees.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use genesys_provisioner::queue::worker::{JobFailure, JobSuccess};
use genesys_provisioner::queue::{JobStore, NewJob, no_records};
use serde_json::json;

use crate::common::*;

fn retryable(msg: &str) -> JobFailure {
    JobFailure::Retryable { error: msg.to_string(), retry_after: None }
}

#[tokio::test]
async fn a_retryable_failure_is_retried_with_backoff_until_it_succeeds() {
    on_each_backend(|backend| async move {
        let handler = ScriptedHandler::new(|_, n| {
            if n < 3 {
                Err(retryable(&format!("upstream 503 (attempt {n})")))
            } else {
                Ok(JobSuccess { result: json!({"scimId": "u-1"}) })
            }
        });
        let app = Spawn::new(backend).handler(handler.clone()).manual_clock().start().await.unwrap();
        let id = app.hire(&new_hire("ENG")).await;
        let job = app.wait_for_state_advancing(id, "succeeded", Duration::from_secs(10)).await;
        assert_eq!(job["attempts"], 3);
        assert_eq!(job["result"], json!({"scimId": "u-1"}));
        let history = job["attemptHistory"].as_array().unwrap();
        let outcomes: Vec<_> = history.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["retry", "retry", "succeeded"]);
        assert_eq!(history[0]["error"], "upstream 503 (attempt 1)");
        assert_eq!(handler.runs_of(id), 3);
        let attempts = app
            .wait_for_audit_lines(Duration::from_secs(5), 3, |l| {
                l["event"] == "job.attempt" && l["auditId"] == id.to_string()
            })
            .await;
        assert_eq!(attempts.len(), 3);
        assert_eq!(attempts[0]["status"], "retry");
        assert_eq!(attempts[0]["retryCount"], 0);
        assert!(attempts[0]["nextAttemptAt"].is_string());
        assert_eq!(attempts[2]["status"], "succeeded");
        assert_eq!(attempts[2]["retryCount"], 2);
        assert_eq!(attempts[2]["scimId"], "u-1");
        assert_eq!(attempts[2]["departmentCode"], "ENG");
        app.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn retry_after_hint_sets_the_earliest_next_attempt() {
    let handler = ScriptedHandler::new(|_, n| {
        if n == 1 {
            Err(JobFailure::Retryable { error: "429".into(), retry_after: Some(Duration::from_secs(3600)) })
        } else {
            Ok(JobSuccess::default())
        }
    });
    let app = Spawn::new(Backend::Sqlite).handler(handler).no_workers().manual_clock().start().await.unwrap();
    let id = app.hire(&new_hire("ENG")).await;
    let before = app.clock.now_ms();
    assert_eq!(app.worker.drain().await.unwrap(), 1);
    let job = app.store.get(id).await.unwrap().unwrap();
    assert_eq!(job.state.as_str(), "queued");
    assert!(job.run_at >= before + 3_600_000, "next attempt at least an hour away");
    assert_eq!(app.worker.drain().await.unwrap(), 0, "not due yet: nothing runs");
    // Due at the hour, and not a millisecond before.
    app.manual().advance_to(job.run_at - 1);
    assert_eq!(app.worker.drain().await.unwrap(), 0, "still not due");
    app.manual().advance_to(job.run_at);
    assert_eq!(app.worker.drain().await.unwrap(), 1, "due: it runs");
    app.shutdown().await;
}

#[tokio::test]
async fn a_job_failing_past_its_retry_window_becomes_a_dead_letter_and_replay_runs_it_again() {
    on_each_backend(|backend| async move {
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = healthy.clone();
        let handler = ScriptedHandler::new(move |_, _| {
            if h.load(Ordering::SeqCst) { Ok(JobSuccess::default()) } else { Err(retryable("upstream down")) }
        });
        let app = Spawn::new(backend).handler(handler.clone()).manual_clock().start().await.unwrap();
        let id = app.hire(&new_hire("SALES")).await;
        // The test config's retry window is 3 s; the backoff at most 1 s.
        let job = app.wait_for_state_advancing(id, "dead", Duration::from_secs(15)).await;
        let attempts = job["attempts"].as_u64().unwrap();
        assert!(attempts >= 3, "retried for the whole window: {job}");
        assert_eq!(job["lastError"], "upstream down");
        let dead = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "job.dead_lettered").await;
        assert_eq!(dead["auditId"], id.to_string());
        let detail = dead["detail"].as_str().unwrap();
        assert!(detail.contains("the retry window of 3 s since the job was accepted has passed"), "{detail}");

        let (status, page) = app.admin_get("/admin/dead-letters").await;
        assert_eq!(status, 200);
        assert_eq!(page["total"], 1);
        assert_eq!(page["items"][0]["auditId"], id.to_string());

        healthy.store(true, Ordering::SeqCst);
        let (status, answer) = app.admin(reqwest::Method::POST, &format!("/admin/dead-letters/{id}/replay")).await;
        assert_eq!((status, answer), (202, json!({"status": "queued", "auditId": id.to_string()})));
        let job = app.wait_for_state(id, "succeeded", Duration::from_secs(10)).await;
        assert_eq!(job["attempts"], attempts + 1, "a replay's attempts go on counting");
        assert_eq!(job["lastError"], serde_json::Value::Null);
        assert_eq!(u64::from(handler.runs_of(id)), attempts + 1);
        app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "job.replayed").await;
        let (_, page) = app.admin_get("/admin/dead-letters").await;
        assert_eq!(page["total"], 0);
        app.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_permanent_failure_goes_straight_to_dead_letter_and_can_be_deleted() {
    let handler = ScriptedHandler::new(|_, _| Err(JobFailure::Permanent { error: "invalidValue: userName".into() }));
    let app = Spawn::new(Backend::Sqlite).handler(handler.clone()).start().await.unwrap();
    let id = app.hire(&new_hire("HR")).await;
    let job = app.wait_for_state(id, "dead", Duration::from_secs(10)).await;
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["lastError"], "invalidValue: userName");
    assert_eq!(handler.runs_of(id), 1);

    let (status, _) = app.admin(reqwest::Method::DELETE, &format!("/admin/dead-letters/{id}")).await;
    assert_eq!(status, 204);
    let (status, answer) = app.admin_get(&format!("/jobs/{id}")).await;
    assert_eq!((status, answer), (404, json!({"error": format!("No job with auditId {id}")})));
    app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "job.deleted").await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_expired_lease_returns_the_job_to_the_queue() {
    on_each_backend(|backend| async move {
        let app = Spawn::new(backend).no_workers().manual_clock().start().await.unwrap();
        let id = app.hire(&new_hire("ENG")).await;
        // A worker claims the job and then "crashes": it never finishes or extends the lease.
        let claimed = app.store.claim(10, Duration::from_secs(2)).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(app.store.claim(10, Duration::from_secs(30)).await.unwrap().is_empty(), "held while leased");
        assert!(
            app.store.claim_expired(10, Duration::from_secs(30), &no_records).await.unwrap().is_empty(),
            "lease still valid"
        );
        app.manual().advance(Duration::from_secs(2));
        let held = app.store.claim_expired(10, Duration::from_secs(30), &no_records).await.unwrap();
        assert!(held.is_empty(), "held to the end of its lease");
        app.manual().advance(Duration::from_millis(1));
        let again = app.store.claim_expired(10, Duration::from_secs(30), &no_records).await.unwrap();
        assert_eq!(again.len(), 1, "the job is claimable once the lease expires");
        assert_eq!(again[0].audit_id, id);
        assert_eq!(again[0].attempts, 2, "the crashed attempt counts");
        assert!(again[0].last_error.as_deref().unwrap().contains("lease expired"));
        // The crashed worker's late answer is refused: it no longer holds the lease.
        let late = app
            .store
            .finish(&claimed[0], 0, genesys_provisioner::queue::Finish::Succeeded { result: &json!({}) }, &[])
            .await
            .unwrap();
        assert!(!late);
        app.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_job_whose_final_attempt_keeps_crashing_is_dead_lettered() {
    let app = Spawn::new(Backend::Sqlite).no_workers().manual_clock().start().await.unwrap();
    let id = app.hire(&new_hire("ENG")).await;
    for i in 0..3 {
        let jobs = if i == 0 {
            app.store.claim(1, Duration::from_millis(100)).await.unwrap()
        } else {
            app.store.claim_expired(1, Duration::from_millis(100), &no_records).await.unwrap()
        };
        assert_eq!(jobs.len(), 1, "claim {i}");
        // The claimer "crashes": its lease runs out.
        app.manual().advance(Duration::from_millis(150));
    }
    assert_eq!(app.worker.drain().await.unwrap(), 0);
    let job = app.wait_for_state(id, "dead", Duration::from_secs(5)).await;
    assert!(job["lastError"].as_str().unwrap().contains("final attempt"));
    let outcomes: Vec<_> = job["attemptHistory"].as_array().unwrap().iter().map(|a| a["outcome"].clone()).collect();
    assert_eq!(outcomes, ["lost", "lost", "lost"], "each crashed attempt is in the history: {job}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_long_job_keeps_its_lease_alive() {
    // The lease is 2 s; the job runs 3 s. The heartbeat must stop another claim from taking it.
    let handler = ScriptedHandler::held(|_, _| Ok(JobSuccess::default()));
    let app = Spawn::new(Backend::Sqlite).handler(handler.clone()).manual_clock().start().await.unwrap();
    let id = app.hire(&new_hire("ENG")).await;
    app.wait_for_state(id, "running", Duration::from_secs(5)).await;
    // Running in the table is not yet running in the worker: the clock moves on only once the
    // attempt has started, and with it the heartbeat's schedule (else the first beat is not due yet).
    let started =
        eventually(Duration::from_secs(10), || async { (handler.calls.load(Ordering::SeqCst) == 1).then_some(()) });
    assert!(started.await.is_some(), "the attempt started");
    for _ in 0..3 {
        app.manual().advance(Duration::from_secs(1));
        // The heartbeat (every third of the lease) renews it from the time it beats.
        let renewed = eventually(Duration::from_secs(10), || async {
            let job = app.store.get(id).await.unwrap().unwrap();
            (job.lease_until == Some(app.clock.now_ms() + 2_000)).then_some(())
        });
        assert!(renewed.await.is_some(), "the lease was renewed after the clock moved on");
    }
    assert!(app.store.claim_expired(10, Duration::from_secs(30), &no_records).await.unwrap().is_empty());
    handler.let_run(1);
    app.wait_for_state(id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(handler.runs_of(id), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_jobs_that_outlive_the_grace_period() {
    let handler = ScriptedHandler::held(|_, _| Ok(JobSuccess::default()));
    let mut app = Spawn::new(Backend::Sqlite).handler(handler).manual_clock().start().await.unwrap();
    // The job runs until the test lets it finish, which it never does; the grace period is 5 s in
    // the test config.
    let id = app.hire(&new_hire("ENG")).await;
    app.wait_for_state(id, "running", Duration::from_secs(5)).await;
    app.stop.cancel();
    let mut task = app.task.take().unwrap();
    // The grace period starts when the worker sees the stop; the clock moves on by one grace period
    // at a time until the app has stopped (after the first that follows the stop).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let stopped = loop {
        app.manual().advance(Duration::from_secs(5));
        if let Ok(stopped) = tokio::time::timeout(Duration::from_millis(100), &mut task).await {
            break stopped;
        }
        assert!(tokio::time::Instant::now() < deadline, "the app did not stop once the grace period had passed");
    };
    stopped.unwrap().unwrap();
    // The store is closed with the app: reopen it to look.
    let store2 =
        JobStore::connect(&genesys_provisioner::config::DatabaseUrl::parse(&app.db.url).unwrap(), 3).await.unwrap();
    let job = store2.get(id).await.unwrap().unwrap();
    assert_eq!(job.state.as_str(), "queued", "released, not lost and not counted");
    assert_eq!(job.attempts, 0);
}

#[tokio::test]
async fn two_worker_pools_on_one_postgres_queue_run_each_job_once() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let url = db.url.clone();
    let handler = ScriptedHandler::slow(Duration::from_millis(2), |_, _| Ok(JobSuccess::default()));
    // Pool A receives the webhooks; pool B, another App on the same database, only works.
    let a = Spawn::new(Backend::Postgres).handler(handler.clone()).on_db(db).start().await.unwrap();
    let b_db = TestDb { url: url.clone(), dir: tempfile::tempdir().unwrap() };
    let b = Spawn::new(Backend::Postgres).handler(handler.clone()).on_db(b_db).start().await.unwrap();

    let store = JobStore::connect(&genesys_provisioner::config::DatabaseUrl::parse(&url).unwrap(), 3).await.unwrap();
    let jobs: Vec<NewJob> = (0..300)
        .map(|i| NewJob {
            audit_id: uuid::Uuid::new_v4(),
            kind: genesys_provisioner::queue::JobKind::NewHire,
            webhook_id: format!("pool-{i}"),
            payload: new_hire("ENG"),
        })
        .collect();
    for chunk in jobs.chunks(50) {
        store.enqueue_batch(chunk).await.unwrap();
    }
    let done = eventually(Duration::from_secs(60), || async {
        let counts = store.counts_by_state().await.unwrap();
        (counts.iter().find(|(s, _)| s.as_str() == "succeeded").map(|(_, n)| *n) == Some(300)).then_some(())
    })
    .await;
    assert!(done.is_some(), "all 300 jobs succeeded: {:?}", store.counts_by_state().await.unwrap());
    for job in &jobs {
        assert_eq!(handler.runs_of(job.audit_id), 1, "job {} ran more than once", job.webhook_id);
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 300);
    // Both pools took part. Each writes an attempt's line just after committing its outcome.
    let attempt_lines = |app: &TestApp| app.audit_lines().iter().filter(|l| l["event"] == "job.attempt").count();
    let (a_lines, b_lines) = eventually(Duration::from_secs(5), || async {
        let (a_lines, b_lines) = (attempt_lines(&a), attempt_lines(&b));
        (a_lines + b_lines >= 300).then_some((a_lines, b_lines))
    })
    .await
    .unwrap_or_else(|| (attempt_lines(&a), attempt_lines(&b)));
    assert_eq!(a_lines + b_lines, 300);
    assert!(a_lines > 0 && b_lines > 0, "a={a_lines} b={b_lines}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_intake_only_replica_stores_jobs_and_runs_none() {
    let handler = ScriptedHandler::succeeding();
    let app = Spawn::new(Backend::Sqlite).handler(handler.clone()).env("RUN_WORKERS", "false").start().await.unwrap();
    let ids = [app.hire(&new_hire("ENG")).await, app.hire(&new_hire("HR")).await];
    // Give a (wrongly) running worker time to wake on the commit before looking.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0, "no worker ran in the intake-only replica");
    // Another worker (here: driven by hand) runs them.
    assert_eq!(app.worker.drain().await.unwrap(), 2);
    for id in ids {
        app.wait_for_state(id, "succeeded", Duration::from_secs(5)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let app = Spawn::new(Backend::Sqlite).no_workers().start().await.unwrap();
    let db_file = app.db.dir.path().join("jobs.db");
    let before = std::fs::metadata(&db_file).unwrap().len();
    for _ in 0..100 {
        app.hire(&new_hire("ENG")).await;
    }
    // The commit path does not checkpoint (its threshold is 20,000 pages); the background task
    // copies the committed pages into the database file within a few seconds.
    let grown = eventually(Duration::from_secs(10), || async {
        let now = std::fs::metadata(&db_file).unwrap().len();
        (now > before + 16 * 1024).then_some(now)
    })
    .await;
    assert!(grown.is_some(), "database file still {before} bytes: the WAL was never checkpointed");
    app.shutdown().await;
}

/// A batch that fits one INSERT (on SQLite one autocommit statement) and one that needs several
/// statements in a transaction: every new event stored once, every repeat answered with its job.
#[tokio::test]
async fn batches_of_any_size_store_new_events_once_and_answer_repeats_with_their_job() {
    on_each_backend(|backend| async move {
        let Some(db) = TestDb::new(backend).await else { return };
        let store =
            JobStore::connect(&genesys_provisioner::config::DatabaseUrl::parse(&db.url).unwrap(), 3).await.unwrap();
        let job = |id: String| NewJob {
            audit_id: uuid::Uuid::now_v7(),
            kind: genesys_provisioner::queue::JobKind::NewHire,
            webhook_id: id,
            payload: new_hire("ENG"),
        };
        for size in [30, 1_200] {
            let first: Vec<NewJob> = (0..size).map(|i| job(format!("batch-{size}-{i}"))).collect();
            let stored = store.enqueue_batch(&first).await.unwrap();
            assert!(stored.iter().zip(&first).all(|(s, j)| s.created && s.audit_id == j.audit_id));
            // Half repeats of stored events, half new ones, and one new event twice in the batch.
            let mut second: Vec<NewJob> = (0..size).map(|i| job(format!("batch-{size}-{}", i * 2))).collect();
            second.push(job(format!("batch-{size}-twice")));
            second.push(job(format!("batch-{size}-twice")));
            let answers = store.enqueue_batch(&second).await.unwrap();
            for (i, (answer, sent)) in answers.iter().zip(&second).enumerate().take(size) {
                if i * 2 < size {
                    assert!(!answer.created, "event {} was stored before", sent.webhook_id);
                    assert_eq!(answer.audit_id, first[i * 2].audit_id, "answered with the stored job");
                } else {
                    assert!(answer.created && answer.audit_id == sent.audit_id, "{} is new", sent.webhook_id);
                }
            }
            let (a, b) = (answers[size], answers[size + 1]);
            assert_eq!(a.audit_id, b.audit_id, "one job for the event sent twice");
            assert!(a.created != b.created, "exactly one of the two created it");
            // The committer's fallback commits a failed batch's jobs again, one by one. A job the
            // failed attempt did store is found under its own audit id: still created by this request
            // (audited as accepted, not as a duplicate), and not stored twice.
            let retried = store.enqueue_batch(&first[..1]).await.unwrap();
            assert!(retried[0].created, "the same job committed again is still the one that created it");
            assert_eq!(retried[0].audit_id, first[0].audit_id);
        }
        let total: i64 = store.counts_by_state().await.unwrap().iter().map(|(_, n)| *n as i64).sum();
        assert_eq!(total, (30 + 15 + 1) + (1_200 + 600 + 1));
    })
    .await;
}

/// A database made before the state CHECK became comparisons keeps its jobs and their attempt
/// history through the table rebuild, and the rebuilt table writes rows without a temporary index.
#[tokio::test]
async fn the_state_check_rebuild_keeps_jobs_and_attempts() {
    use sqlx::sqlite::SqlitePoolOptions;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let old = SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::migrate!("migrations/sqlite").run_to(20261123000002, &old).await.unwrap();
    let (done, queued) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
    for (id, state, finished) in [(&done, "succeeded", Some(5_i64)), (&queued, "queued", None)] {
        sqlx::query(
            "INSERT INTO jobs (audit_id, idempotency_key, kind, webhook_id, payload, state, attempts, max_attempts, \
             run_at, created_at, updated_at, finished_at) VALUES (?, ?, 'hr.user_created', ?, '{}', ?, 1, 5, 1, 1, 2, ?)",
        )
        .bind(id)
        .bind(format!("hr.user_created:evt-{id}"))
        .bind(format!("evt-{id}"))
        .bind(state)
        .bind(finished)
        .execute(&old)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO job_attempts VALUES (?, 1, 3, 4, 'succeeded', NULL)")
        .bind(&done)
        .execute(&old)
        .await
        .unwrap();
    old.close().await;

    let store = JobStore::connect(&genesys_provisioner::config::DatabaseUrl::parse(&url).unwrap(), 5).await.unwrap();
    let job = store.get(done.parse().unwrap()).await.unwrap().expect("the finished job survived the rebuild");
    assert_eq!(
        (job.state.as_str(), job.finished_at, job.webhook_id.as_str()),
        ("succeeded", Some(5), &*format!("evt-{done}"))
    );
    let attempts = store.attempts(done.parse().unwrap()).await.unwrap();
    assert_eq!(attempts.len(), 1, "dropping the old table must not cascade into job_attempts");
    assert_eq!(attempts[0].outcome, "succeeded");
    assert!(store.get(queued.parse().unwrap()).await.unwrap().is_some());
    store.close().await;

    let check = SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let insert = "INSERT INTO jobs (audit_id, idempotency_key, kind, webhook_id, payload, state, max_attempts, run_at, \
                  created_at, updated_at) VALUES ('x', 'k', 'hr.user_created', 'w', '{}', ?, 5, 1, 1, 1)";
    let plan =
        sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {insert}"))).bind("queued").fetch_all(&check).await.unwrap();
    let opcodes: Vec<String> = plan.iter().map(|row| sqlx::Row::get(row, "opcode")).collect();
    assert!(opcodes.iter().any(|op| op == "Insert"), "{opcodes:?}");
    assert!(!opcodes.iter().any(|op| op == "OpenEphemeral"), "the CHECK still builds a temporary index: {opcodes:?}");
    let refused = sqlx::query(insert).bind("paused").execute(&check).await.unwrap_err();
    assert!(refused.to_string().contains("CHECK constraint failed"), "{refused}");
    let orphan =
        sqlx::query("INSERT INTO job_attempts VALUES ('no-such-job', 1, 1, 1, 'retry', NULL)").execute(&check).await;
    assert!(orphan.is_err(), "foreign keys are enforced again after the rebuild");
    let (fk_problems,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pragma_foreign_key_check").fetch_one(&check).await.unwrap();
    assert_eq!(fk_problems, 0);
}

/// Issue 14 point 4: a replay gives the job a new run, but its attempts keep their numbers (none is
/// swallowed by the attempt table's key) and a success clears the error of the run before.
#[tokio::test]
async fn a_replayed_dead_letter_keeps_counting_attempts_and_clears_its_error_on_success() {
    on_each_backend(|backend| async move {
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = healthy.clone();
        let handler = ScriptedHandler::new(move |_, _| match h.load(Ordering::SeqCst) {
            true => Ok(JobSuccess { result: json!({"scimId": "u-9"}) }),
            false => Err(JobFailure::Permanent { error: "refused by policy".into() }),
        });
        let app = Spawn::new(backend).handler(handler.clone()).start().await.unwrap();
        let id = app.hire(&new_hire("ENG")).await;
        app.wait_for_state(id, "dead", Duration::from_secs(10)).await;
        healthy.store(true, Ordering::SeqCst);
        let (status, _) = app.admin(reqwest::Method::POST, &format!("/admin/dead-letters/{id}/replay")).await;
        assert_eq!(status, 202);
        let job = app.wait_for_state(id, "succeeded", Duration::from_secs(10)).await;
        assert_eq!(job["attempts"], 2, "attempt numbers keep counting across a replay: {job}");
        assert_eq!(job["lastError"], serde_json::Value::Null, "a success clears the old error: {job}");
        let history: Vec<(u64, String)> = job["attemptHistory"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["attempt"].as_u64().unwrap(), a["outcome"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(history, [(1, "dead".to_string()), (2, "succeeded".to_string())], "{job}");
        app.shutdown().await;
    })
    .await;
}

/// Issue 14 point 4: an attempt whose worker died (its lease expired) is in the history as `lost`,
/// with when it started and when it was found lost, before the attempt that took the job over.
#[tokio::test]
async fn an_attempt_lost_to_a_crash_shows_in_the_history_as_lost() {
    on_each_backend(|backend| async move {
        let app = Spawn::new(backend).no_workers().manual_clock().start().await.unwrap();
        let id = app.hire(&new_hire("ENG")).await;
        let before = app.clock.now_ms();
        // A worker claims the job and "crashes": it never finishes nor extends its lease.
        assert_eq!(app.store.claim(10, Duration::from_millis(200)).await.unwrap().len(), 1);
        assert_eq!(app.worker.drain().await.unwrap(), 0, "held while its lease runs");
        app.manual().advance(Duration::from_millis(201));
        assert!(app.worker.drain().await.unwrap() > 0, "the job is taken over once its lease expired");
        let job = app.wait_for_state(id, "succeeded", Duration::from_secs(10)).await;
        let history = job["attemptHistory"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{job}");
        assert_eq!((history[0]["attempt"].as_u64(), history[0]["outcome"].as_str()), (Some(1), Some("lost")), "{job}");
        let started = history[0]["startedAt"].as_i64().unwrap();
        let found_lost = history[0]["finishedAt"].as_i64().unwrap();
        assert!(started >= before && found_lost >= started + 200, "{job}");
        assert!(history[0]["error"].as_str().unwrap().contains("lease expired"), "{job}");
        assert_eq!((history[1]["attempt"].as_u64(), history[1]["outcome"].as_str()), (Some(2), Some("succeeded")));
        assert_eq!(job["lastError"], serde_json::Value::Null, "{job}");
        let lost =
            app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "job.attempt" && l["status"] == "lost").await;
        assert_eq!((lost["auditId"].as_str(), lost["attempt"].as_u64()), (Some(&*id.to_string()), Some(1)));
        app.shutdown().await;
    })
    .await;
}

/// Issue 16: the service reads back what its SQLite writer runs with and refuses to start unless
/// it is WAL with `synchronous = FULL`: an in-memory database stays out of WAL mode without an error.
#[tokio::test]
async fn the_service_refuses_to_start_on_a_database_that_cannot_run_in_wal_mode() {
    let mut env = base_env();
    env.insert("DATABASE_URL".into(), "sqlite::memory:".into());
    let dir = tempfile::tempdir().unwrap();
    env.insert("AUDIT_DIR".into(), dir.path().join("audit").display().to_string());
    let config = genesys_provisioner::config::Config::from_toml(TEST_TOML, &env).expect("a valid config");
    let refused = genesys_provisioner::App::builder(config).handler(ScriptedHandler::succeeding()).build().await;
    let error = refused.err().expect("the app refuses to start").to_string();
    assert!(error.starts_with("cannot open the job store (sqlite): SQLite runs with journal_mode=memory"), "{error}");
    assert!(error.contains("not WAL and FULL (2)"), "{error}");
}
