//! The job lifecycle's two subscribers, the audit trail and the metrics, count the same things; and
//! `/metrics` reads nothing from the database: the queue gauges follow the lifecycle events and are
//! set from a count of the jobs table only when the app starts and when a resync runs.

use std::time::Duration;

use genesys_provisioner::queue::worker::{JobFailure, JobSuccess};
use genesys_provisioner::queue::{JobKind, NewJob};
use serde_json::{Value, json};

use crate::common::*;

/// The value of one sample line (`name{labels} value`) of a scrape, 0 when absent.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

fn count(lines: &[Value], event: &str, pred: impl Fn(&Value) -> bool) -> u64 {
    lines.iter().filter(|l| l["event"] == event && pred(l)).count() as u64
}

#[tokio::test]
async fn metrics_and_audit_agree_on_accepted_duplicate_refused_retried_and_dead_lettered_jobs() {
    on_each_backend(|backend| async move {
        // ENG fails once and then succeeds; SALES fails for good.
        let handler = ScriptedHandler::new(|job, n| match job.payload["departmentCode"].as_str() {
            Some("SALES") => Err(JobFailure::Permanent { error: "invalidValue: title".into() }),
            _ if n == 1 => Err(JobFailure::Retryable { error: "upstream 503".into(), retry_after: None }),
            _ => Ok(JobSuccess { result: json!({"scimId": "u-1"}) }),
        });
        let app = Spawn::new(backend).handler(handler).no_workers().start().await.unwrap();
        let eng = new_hire("ENG");
        assert_eq!(app.post_signed(HR_PATH, &eng, "msg_eng").await.0, 202);
        assert_eq!(app.post_signed(HR_PATH, &eng, "msg_eng").await.0, 202, "a duplicate");
        assert_eq!(app.post_signed(HR_PATH, &new_hire("ENG"), "msg_eng").await.0, 409, "a conflict");
        let sales = app.hire(&new_hire("SALES")).await;
        assert_eq!(app.post_signed(HR_PATH, &new_hire("NOPE"), "msg_nope").await.0, 422);
        let batch = json!([{"event": "user.renamed", "data": {"employeeId": "E1"}}]);
        assert_eq!(app.post_signed("/webhooks/directory-sync/batch", &batch, "msg_batch").await.0, 400);

        // Both jobs run to their end (the retry is due within the test config's backoff).
        let done = eventually(Duration::from_secs(10), || async {
            app.worker.drain().await.unwrap();
            let counts = app.store.counts_by_state().await.unwrap();
            let n = |s: &str| counts.iter().find(|(st, _)| st.as_str() == s).map_or(0, |(_, n)| *n);
            (n("succeeded") == 1 && n("dead") == 1).then_some(())
        })
        .await;
        assert!(done.is_some(), "{:?}", app.store.counts_by_state().await.unwrap());

        let metrics = scrape(&app).await;
        let lines = app.audit_lines();
        let webhooks =
            |outcome: &str| sample(&metrics, &format!("provisioner_webhooks_total{{outcome=\"{outcome}\"}}"));
        let attempts =
            |outcome: &str| sample(&metrics, &format!("provisioner_job_attempts_total{{outcome=\"{outcome}\"}}"));
        let jobs = |state: &str| sample(&metrics, &format!("provisioner_queue_jobs{{state=\"{state}\"}}"));
        let any = |_: &Value| true;
        let status = |code: u16| move |l: &Value| l["httpStatus"] == code;
        let attempt = |s: &'static str| move |l: &Value| l["status"] == s;

        // What happened, as each of them tells it.
        let told = [
            ("accepted", webhooks("accepted"), count(&lines, "intake.accepted", any), 2),
            ("duplicate", webhooks("duplicate"), count(&lines, "intake.duplicate", any), 1),
            ("conflict", webhooks("conflict"), count(&lines, "intake.conflict", any), 1),
            ("unprocessable", webhooks("unprocessable"), count(&lines, "intake.rejected", status(422)), 1),
            ("bad_request", webhooks("bad_request"), count(&lines, "intake.rejected", status(400)), 1),
            ("retry", attempts("retry"), count(&lines, "job.attempt", attempt("retry")), 1),
            ("succeeded", attempts("succeeded"), count(&lines, "job.attempt", attempt("succeeded")), 1),
            ("dead", attempts("dead"), count(&lines, "job.attempt", attempt("dead")), 1),
            ("dead letters", jobs("dead"), count(&lines, "job.dead_lettered", any), 1),
        ];
        for (what, metric, audit, expected) in told {
            assert_eq!((metric, audit), (expected, expected), "{what}: metrics {metric}, audit {audit}");
        }
        // Every intake line is counted once, and nothing is counted that has no line.
        let intake_lines =
            lines.iter().filter(|l| l["event"].as_str().is_some_and(|e| e.starts_with("intake."))).count();
        let counted: u64 =
            ["accepted", "duplicate", "conflict", "unprocessable", "bad_request"].map(webhooks).iter().sum();
        assert_eq!(counted, intake_lines as u64, "{metrics}");
        assert_eq!((jobs("succeeded"), jobs("queued"), jobs("running")), (1, 0, 0));
        let dead = lines.iter().find(|l| l["event"] == "job.dead_lettered").unwrap();
        assert_eq!(dead["auditId"], sales.to_string());
        app.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_scrape_reads_no_database_and_a_resync_counts_what_other_replicas_did() {
    on_each_backend(|backend| async move {
        let app = Spawn::new(backend).no_workers().start().await.unwrap();
        app.hire(&new_hire("ENG")).await;
        app.hire(&new_hire("HR")).await;
        let queued = |text: &str| sample(text, "provisioner_queue_jobs{state=\"queued\"}");
        assert_eq!(queued(&scrape(&app).await), 2, "each accepted webhook moves the gauge");

        // A job stored behind this process's back, as another replica on the same queue stores
        // one: no event here, so the gauge shows it only once a resync counts the table.
        let other = NewJob {
            audit_id: uuid::Uuid::now_v7(),
            kind: JobKind::NewHire,
            webhook_id: "msg_other_replica".into(),
            payload: new_hire("ENG"),
        };
        app.store.enqueue_batch(std::slice::from_ref(&other)).await.unwrap();
        assert_eq!(queued(&scrape(&app).await), 2, "a scrape does not count the table");
        assert!(app.metrics.resync_queue(&app.store, false).await.unwrap(), "nothing raced the count");
        assert_eq!(queued(&scrape(&app).await), 3);

        // With the database gone, the scrape still answers from what the process holds.
        app.store.close().await;
        let text = scrape(&app).await;
        assert_eq!(queued(&text), 3, "{text}");
        assert_eq!(sample(&text, "provisioner_webhooks_total{outcome=\"accepted\"}"), 2);
        app.stop.cancel();
        let mut app = app;
        if let Some(task) = app.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_new_app_starts_its_gauges_from_the_jobs_already_stored() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let first = Spawn::new(Backend::Sqlite).on_db(db).no_workers().start().await.unwrap();
    first.hire(&new_hire("ENG")).await;
    let db = first.shutdown().await;
    let second = Spawn::new(Backend::Sqlite).on_db(db).no_workers().start().await.unwrap();
    let text = scrape(&second).await;
    assert_eq!(sample(&text, "provisioner_queue_jobs{state=\"queued\"}"), 1, "{text}");
    assert_eq!(sample(&text, "provisioner_webhooks_total{outcome=\"accepted\"}"), 0, "counters start at 0");
    second.shutdown().await;
}
