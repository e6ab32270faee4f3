//! Retention: a succeeded job's personal data goes after `retention_days`, its event id is still
//! recognised until `dedupe_window_days`, then the job goes; dead letters, queued and running jobs
//! keep everything. The app runs on a manual clock, moved on by days at a time.

use std::time::Duration;

use genesys_provisioner::clock::ManualClock;
use genesys_provisioner::config::DatabaseUrl;
use genesys_provisioner::queue::worker::{JobFailure, JobSuccess};
use genesys_provisioner::queue::{Discrepancy, Finish, JobKind, JobRecord, JobStore, Swept};
use serde_json::{Value, json};

use crate::common::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A new-hire job under `webhook_id`, keyed with the hash of its payload, and its audit id.
fn record(webhook_id: &str, payload: &Value) -> (JobRecord, uuid::Uuid) {
    let (id, text) = (uuid::Uuid::now_v7(), payload.to_string());
    (JobRecord::new(id, JobKind::NewHire, webhook_id, text.clone()).with_content_hash(text.as_bytes()), id)
}

#[tokio::test]
async fn a_sweep_purges_succeeded_jobs_after_the_retention_and_forgets_them_after_the_dedupe_window() {
    on_each_backend(|backend| async move {
        let Some(db) = TestDb::new(backend).await else { return };
        let manual = ManualClock::new();
        let store =
            JobStore::connect(&DatabaseUrl::parse(&db.url).unwrap(), 3).await.unwrap().with_clock(manual.clock());
        let (retention, window) = (DAY * 30, DAY * 90);
        let lease = Duration::from_secs(60);
        let (done_body, dead_body) = (new_hire("ENG"), new_hire("HR"));
        let ((done, done_id), (dead, dead_id)) = (record("evt-done", &done_body), record("evt-dead", &dead_body));
        store.enqueue_records(&[done, dead]).await.unwrap();
        let claimed = store.claim(10, lease).await.unwrap();
        let job = |id| claimed.iter().find(|j| j.audit_id == id).unwrap().clone();
        let (done_job, dead_job) = (job(done_id), job(dead_id));

        // The succeeded job: a first attempt that saved progress and failed naming the person,
        // then a success whose result names them too.
        assert!(store.save_progress(&done_job, &json!({"scimId": "u-1"})).await.unwrap());
        let now = manual.now_ms();
        let retry = Finish::Retry { run_at: now, error: "jane@example.com was refused" };
        assert!(store.finish(&done_job, now, retry, &[]).await.unwrap());
        let again = store.claim(10, lease).await.unwrap().pop().unwrap();
        let result = json!({"scimId": "u-1", "userName": "jane@example.com"});
        assert!(store.finish(&again, now, Finish::Succeeded { result: &result }, &[]).await.unwrap());
        let error = "invalidValue: jane@example.com";
        assert!(store.finish(&dead_job, now, Finish::Dead { error }, &[]).await.unwrap());
        let waiting_body = new_hire("SALES");
        store.enqueue_records(&[record("evt-waiting", &waiting_body).0]).await.unwrap();
        let mismatch = Discrepancy {
            audit_id: done_job.audit_id,
            external_id: "E-1".into(),
            kind: genesys_provisioner::queue::DiscrepancyKind::AttributeMismatch,
            field: "title".into(),
            expected: json!("Engineer"),
            actual: json!("Eng"),
            at: now,
        };
        store.record_discrepancies(&[mismatch]).await.unwrap();

        manual.advance(retention - Duration::from_millis(1));
        assert_eq!(store.sweep(retention, window).await.unwrap(), Swept::default(), "a day short of nothing");
        manual.advance(Duration::from_millis(1));
        let swept = store.sweep(retention, window).await.unwrap();
        assert_eq!(swept, Swept { purged: 1, forgotten: 0, discrepancies: 1 });
        let purged = store.get(done_job.audit_id).await.unwrap().unwrap();
        assert_eq!(purged.state.as_str(), "succeeded");
        assert_eq!((purged.payload.clone(), purged.result.clone(), purged.progress.clone()), (Value::Null, None, None));
        assert_eq!(purged.purged_at, Some(manual.now_ms()));
        assert_eq!((purged.attempts, purged.finished_at), (2, Some(now)), "what happened stays");
        let history = store.attempts(done_job.audit_id).await.unwrap();
        let outcomes: Vec<_> = history.iter().map(|a| (a.outcome.as_str(), a.error.as_deref())).collect();
        assert_eq!(outcomes, [("retry", None), ("succeeded", None)], "outcomes stay, error texts go");
        assert!(store.discrepancies_since(0).await.unwrap().is_empty());

        // The dead letter and the queued job keep everything.
        let kept = store.get(dead_job.audit_id).await.unwrap().unwrap();
        assert_eq!((kept.state.as_str(), &kept.payload, kept.purged_at), ("dead", &dead_body, None));
        assert_eq!(kept.last_error.as_deref(), Some(error));
        assert_eq!(store.attempts(dead_job.audit_id).await.unwrap()[0].error.as_deref(), Some(error));

        // The purged job still answers for its event id: a duplicate, or a conflict with other content.
        let repeat = store.enqueue_records(&[record("evt-done", &done_body).0]).await.unwrap()[0];
        assert_eq!((repeat.audit_id, repeat.created, repeat.conflict), (done_job.audit_id, false, false));
        let other = store.enqueue_records(&[record("evt-done", &new_hire("ENG")).0]).await.unwrap()[0];
        assert_eq!((other.audit_id, other.created, other.conflict), (done_job.audit_id, false, true));
        assert_eq!(store.sweep(retention, window).await.unwrap(), Swept::default(), "purged once");

        // After the dedupe window the job and its attempts are gone, and the event id is new again.
        manual.advance(window - retention - Duration::from_millis(1));
        assert_eq!(store.sweep(retention, window).await.unwrap(), Swept::default());
        manual.advance(Duration::from_millis(1));
        assert_eq!(store.sweep(retention, window).await.unwrap(), Swept { purged: 0, forgotten: 1, discrepancies: 0 });
        assert!(store.get(done_job.audit_id).await.unwrap().is_none());
        assert!(store.attempts(done_job.audit_id).await.unwrap().is_empty());
        let fresh = store.enqueue_records(&[record("evt-done", &done_body).0]).await.unwrap()[0];
        assert!(fresh.created && fresh.audit_id != done_job.audit_id, "{fresh:?}");
        let kept = store.get(dead_job.audit_id).await.unwrap().unwrap();
        assert_eq!((kept.state.as_str(), kept.purged_at), ("dead", None), "dead letters wait for an admin");
        let counts = store.counts_by_state().await.unwrap();
        let queued = counts.iter().find(|(s, _)| s.as_str() == "queued").unwrap().1;
        assert_eq!(queued, 2, "the waiting job and the new one: {counts:?}");
        store.close().await;
    })
    .await;
}

/// The background task, on the app's clock, over HTTP: `GET /jobs/{id}` says the job was purged
/// (and matches the OpenAPI document), a repeat is still a duplicate, and after the dedupe window
/// the job is gone and the event id starts a new one. Dead letters are kept.
#[tokio::test]
async fn succeeded_jobs_are_purged_and_later_forgotten_while_dead_letters_stay() {
    on_each_backend(|backend| async move {
        let handler = ScriptedHandler::new(|job, _| match job.payload["departmentCode"] == "HR" {
            true => Err(JobFailure::Permanent { error: "refused by policy".into() }),
            false => Ok(JobSuccess { result: json!({"scimId": "u-1", "userName": job.payload["email"]}) }),
        });
        let app = Spawn::new(backend).handler(handler).manual_clock().start().await.unwrap();
        let body = new_hire("ENG");
        let (status, answer) = app.post_signed(HR_PATH, &body, "ret-1").await;
        assert_eq!(status, 202, "{answer}");
        let id: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
        let dead_body = new_hire("HR");
        let dead = app.hire(&dead_body).await;
        let done = app.wait_for_state(id, "succeeded", Duration::from_secs(10)).await;
        assert_eq!(done["payload"], body);
        assert!(done.get("purgedAt").is_none(), "{done}");
        app.wait_for_state(dead, "dead", Duration::from_secs(10)).await;

        app.manual().advance(DAY * 30 + Duration::from_secs(1));
        let purged = eventually(Duration::from_secs(10), || async {
            let (_, job) = app.admin_get(&format!("/jobs/{id}")).await;
            job["purgedAt"].is_string().then_some(job)
        })
        .await
        .expect("the job is purged once the retention period has passed");
        assert_eq!(
            (&purged["state"], &purged["payload"], &purged["result"]),
            (&json!("succeeded"), &Value::Null, &Value::Null)
        );
        assert_eq!(purged["attemptHistory"].as_array().map(Vec::len), Some(1), "{purged}");
        let doc = crate::openapi::document(&app).await;
        let schema =
            &doc["paths"]["/jobs/{audit_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        crate::openapi::conforms(&doc, schema, &purged, "$").unwrap_or_else(|e| panic!("{e}\n{purged}"));

        // The sweep is a decision about personal data: it is in the audit trail.
        let line = app.wait_for_audit(Duration::from_secs(10), |l| l["event"] == "retention.swept").await;
        assert_eq!(
            (&line["status"], &line["purged"], &line["forgotten"]),
            (&json!("purged"), &json!(1), &json!(0)),
            "{line}"
        );
        let (status, again) = app.post_signed(HR_PATH, &body, "ret-1").await;
        assert_eq!((status, &again["auditId"]), (202, &json!(id.to_string())), "still a duplicate: {again}");
        let (status, other) = app.post_signed(HR_PATH, &new_hire("ENG"), "ret-1").await;
        assert_eq!(status, 409, "other content under the id is still a conflict: {other}");
        let (_, kept) = app.admin_get(&format!("/jobs/{dead}")).await;
        assert_eq!((&kept["state"], &kept["payload"]), (&json!("dead"), &dead_body), "{kept}");

        app.manual().advance(DAY * 60);
        let gone = eventually(Duration::from_secs(10), || async {
            let (status, _) = app.admin_get(&format!("/jobs/{id}")).await;
            (status == 404).then_some(())
        });
        assert!(gone.await.is_some(), "the job is deleted once the dedupe window has passed");
        let line = app
            .wait_for_audit(Duration::from_secs(10), |l| l["event"] == "retention.swept" && l["forgotten"] == 1)
            .await;
        assert_eq!(line["purged"], 0, "{line}");
        // The queue gauges follow without waiting for their periodic recount.
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.lines().any(|l| l == "provisioner_queue_jobs{state=\"succeeded\"} 0"), "{metrics}");
        let (status, fresh) = app.post_signed(HR_PATH, &body, "ret-1").await;
        assert_eq!(status, 202, "{fresh}");
        assert_ne!(fresh["auditId"], json!(id.to_string()), "the event id starts a new job");
        let (_, kept) = app.admin_get(&format!("/jobs/{dead}")).await;
        assert_eq!((&kept["state"], &kept["payload"]), (&json!("dead"), &dead_body), "{kept}");
        app.shutdown().await;
    })
    .await;
}
