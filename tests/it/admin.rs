//! Admin authentication, job views, dead-letter paging, health, readiness and metrics.

use std::time::Duration;

use genesys_provisioner::queue::worker::JobFailure;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn admin_routes_need_the_bearer_token() {
    let app = Spawn::new(Backend::Sqlite).no_workers().start().await.unwrap();
    let id = app.hire(&new_hire("ENG")).await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/jobs/{id}")),
        (reqwest::Method::GET, "/admin/dead-letters".to_string()),
        (reqwest::Method::POST, format!("/admin/dead-letters/{id}/replay")),
        (reqwest::Method::DELETE, format!("/admin/dead-letters/{id}")),
    ] {
        let none = app.client.request(method.clone(), app.url(&path)).send().await.unwrap();
        assert_eq!(none.status().as_u16(), 401, "{method} {path}");
        assert_eq!(
            none.json::<serde_json::Value>().await.unwrap(),
            json!({"error": "Missing Authorization: Bearer <admin token>"})
        );
        let wrong = app.client.request(method.clone(), app.url(&path)).bearer_auth("nope").send().await.unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{method} {path}");
        let prefix = app.client.request(method.clone(), app.url(&path)).bearer_auth(&ADMIN_TOKEN[..10]).send().await;
        assert_eq!(prefix.unwrap().status().as_u16(), 401, "a prefix of the token is not the token");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn job_view_shows_state_attempts_and_timestamps() {
    let app = Spawn::new(Backend::Sqlite).no_workers().start().await.unwrap();
    let body = new_hire("SUPPORT");
    let id = app.hire(&body).await;
    let (status, job) = app.admin_get(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(job["auditId"], id.to_string());
    assert_eq!(job["state"], "queued");
    assert_eq!(job["attempts"], 0);
    assert_eq!((job["lostAttempts"].as_u64(), job["maxLostAttempts"].as_u64()), (Some(0), Some(3)));
    assert!(job["retryWindowEndsAt"].as_str().unwrap().ends_with('Z'), "{job}");
    assert_eq!(job["kind"], "hr.user_created");
    assert_eq!(job["payload"]["email"], body["email"]);
    assert!(job["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(job["nextAttemptAt"].is_string());
    assert_eq!(job["attemptHistory"], json!([]));

    let (status, answer) = app.admin_get("/jobs/not-a-uuid").await;
    assert_eq!((status, answer), (400, json!({"error": "Invalid auditId \"not-a-uuid\": expected a UUID"})));
    let other = uuid::Uuid::new_v4();
    let (status, _) = app.admin_get(&format!("/jobs/{other}")).await;
    assert_eq!(status, 404);
    // Replaying or deleting a job that is not dead is a conflict, not a silent success.
    let (status, answer) = app.admin(reqwest::Method::POST, &format!("/admin/dead-letters/{id}/replay")).await;
    assert_eq!((status, answer), (409, json!({"error": format!("Job {id} is queued, not dead")})));
    let (status, _) = app.admin(reqwest::Method::DELETE, &format!("/admin/dead-letters/{id}")).await;
    assert_eq!(status, 409);
    app.shutdown().await;
}

#[tokio::test]
async fn dead_letters_are_paged() {
    let handler = ScriptedHandler::new(|_, _| Err(JobFailure::Permanent { error: "refused".into() }));
    let app = Spawn::new(Backend::Sqlite).handler(handler).no_workers().start().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.hire(&new_hire("ENG")).await);
    }
    app.worker.drain().await.unwrap();
    let (_, first) = app.admin_get("/admin/dead-letters?limit=2").await;
    assert_eq!(first["total"], 5);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["nextOffset"], 2);
    let (_, last) = app.admin_get("/admin/dead-letters?limit=2&offset=4").await;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["nextOffset"], serde_json::Value::Null);
    let mut seen = std::collections::BTreeSet::new();
    for offset in [0, 2, 4] {
        let (_, page) = app.admin_get(&format!("/admin/dead-letters?limit=2&offset={offset}")).await;
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["state"], "dead");
            assert_eq!(item["lastError"], "refused");
            seen.insert(item["auditId"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen.len(), 5, "pages cover every dead letter once");
    let (status, answer) = app.admin_get("/admin/dead-letters?limit=lots").await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "Invalid query parameter limit: expected a number from 0 to 500");
    let (status, answer) = app.admin_get("/admin/dead-letters?limit=1&limit=2").await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().starts_with("Invalid query string"), "{answer}");
    app.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    on_each_backend(|backend| async move {
        let handler = ScriptedHandler::new(|_, _| Err(JobFailure::Permanent { error: "no".into() }));
        let app = Spawn::new(backend).handler(handler).no_workers().start().await.unwrap();
        let ok = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(ok.status().as_u16(), 200);
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 200);

        app.hire(&new_hire("ENG")).await;
        app.hire(&new_hire("ENG")).await;
        app.post_signed(HR_PATH, &new_hire("NOPE"), "msg_m1").await;
        app.worker.drain().await.unwrap();
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        for line in [
            "provisioner_webhooks_total{outcome=\"accepted\"} 2",
            "provisioner_webhooks_total{outcome=\"unprocessable\"} 1",
            "provisioner_queue_jobs{state=\"dead\"} 2",
            "provisioner_queue_jobs{state=\"queued\"} 0",
            "provisioner_job_attempts_total{outcome=\"dead\"} 2",
            "provisioner_job_duration_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }

        // With the database gone, the process is alive but not ready.
        app.store.close().await;
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 503);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().starts_with("Database unreachable"), "{body}");
        assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status().as_u16(), 200);
        // An event that cannot be stored is refused with 503, never acknowledged.
        let (status, answer) = app.post_signed(HR_PATH, &new_hire("ENG"), "msg_after_close").await;
        assert_eq!((status, answer), (503, json!({"error": "Job store unavailable, retry later"})));
        app.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            let mut app = app;
            if let Some(t) = app.task.take() {
                let _ = t.await;
            }
        })
        .await;
    })
    .await;
}
