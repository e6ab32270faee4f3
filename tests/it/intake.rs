//! The new-hire webhook: every answer it can give, signatures, idempotency, group commit.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

async fn app() -> TestApp {
    Spawn::new(Backend::Sqlite).no_workers().start().await.unwrap()
}

#[tokio::test]
async fn accepted_webhook_is_stored_before_the_202() {
    on_each_backend(|backend| async move {
        let app = Spawn::new(backend).no_workers().start().await.unwrap();
        let body = new_hire("ENG");
        let (status, answer) = app.post_signed(HR_PATH, &body, "msg_accept_1").await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "provisioning_queued");
        let audit_id: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
        // The row is there the moment the answer is: read it straight from the store.
        let job = app.store.get(audit_id).await.unwrap().expect("job committed");
        assert_eq!(job.webhook_id, "msg_accept_1");
        assert_eq!(job.payload["email"], body["email"]);
        assert_eq!(job.payload["title"], "Engineer");
        assert_eq!(job.state.as_str(), "queued");
        let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "intake.accepted").await;
        assert_eq!(line["auditId"], audit_id.to_string());
        assert_eq!(line["webhookId"], "msg_accept_1");
        assert_eq!(line["userEmail"], body["email"]);
        assert_eq!(line["departmentCode"], "ENG");
        assert_eq!(line["status"], "queued");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        app.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn missing_fields_are_named_exactly() {
    let app = app().await;
    for (body, expected) in [
        (json!({"firstName": "x"}), "Missing required fields: email, departmentCode"),
        (json!({"email": "a@example.com"}), "Missing required fields: departmentCode"),
        (json!({"departmentCode": "ENG", "email": ""}), "Missing required fields: email"),
    ] {
        let (status, answer) = app.post_signed(HR_PATH, &body, &uuid::Uuid::new_v4().to_string()).await;
        assert_eq!(status, 400);
        assert_eq!(answer, json!({"error": expected}));
    }
    let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "intake.rejected").await;
    assert_eq!(line["status"], "rejected");
    assert_eq!(line["httpStatus"], 400);
    app.shutdown().await;
}

#[tokio::test]
async fn malformed_json_wrong_types_and_bad_addresses_are_400_naming_the_field() {
    let app = app().await;
    let raw = |bytes: &[u8]| {
        let mut h = signed_headers(SECRET, "msg_raw", now(), bytes);
        h.push(("content-type", "application/json".into()));
        h
    };
    let (status, answer) = app.post_raw(HR_PATH, b"{\"email\": ".to_vec(), &raw(b"{\"email\": ")).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().starts_with("Malformed JSON"), "{answer}");
    let cases = [
        (json!({"email": 42, "departmentCode": "ENG", "id": "1"}), "Invalid field email: expected a string"),
        (
            json!({"email": "x@example.com", "departmentCode": ["ENG"]}),
            "Invalid field departmentCode: expected a string",
        ),
        (json!({"email": "no-at-sign", "departmentCode": "ENG"}), "Invalid field email: not an email address"),
        (
            json!({"email": "x@example.com", "departmentCode": "ENG", "hireDate": "soon"}),
            "Invalid field hireDate: expected a date as YYYY-MM-DD",
        ),
        (json!(["not", "an", "object"]), "Request body must be a JSON object"),
    ];
    for (body, expected) in cases {
        let (status, answer) = app.post_signed(HR_PATH, &body, &uuid::Uuid::new_v4().to_string()).await;
        assert_eq!((status, answer), (400, json!({"error": expected})));
    }
    app.shutdown().await;
}

#[tokio::test]
async fn unmapped_department_is_422() {
    let app = app().await;
    let (status, answer) = app.post_signed(HR_PATH, &new_hire("MARKETING"), "msg_unmapped").await;
    assert_eq!((status, answer), (422, json!({"error": "Unmapped department code: MARKETING"})));
    let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "intake.rejected").await;
    assert_eq!(line["departmentCode"], "MARKETING");
    assert_eq!(line["webhookId"], "msg_unmapped");
    app.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_413_and_wrong_content_type_415() {
    let app = app().await;
    let mut big = new_hire("ENG");
    big["notes"] = Value::String("x".repeat(1024 * 1024 + 10));
    let (status, answer) = app.post_signed(HR_PATH, &big, "msg_big").await;
    assert_eq!(status, 413);
    assert_eq!(answer, json!({"error": "Request body is larger than 1048576 bytes"}));

    // A chunked body has no Content-Length up front: the limit still holds while reading.
    assert_eq!(chunked_post_status(&app, 20, 64 * 1024).await, 413);

    let body = serde_json::to_vec(&new_hire("ENG")).unwrap();
    let mut headers = signed_headers(SECRET, "msg_ct", now(), &body);
    headers.push(("content-type", "text/plain".into()));
    let (status, answer) = app.post_raw(HR_PATH, body.clone(), &headers).await;
    assert_eq!((status, answer), (415, json!({"error": "Content-Type must be application/json"})));
    headers.pop();
    let (status, _) = app.post_raw(HR_PATH, body, &headers).await;
    assert_eq!(status, 415, "no content type at all");
    app.shutdown().await;
}

/// Sends `chunks` chunks of `size` spaces with chunked transfer encoding and returns the status.
async fn chunked_post_status(app: &TestApp, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {HR_PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
    for _ in 0..chunks {
        // The server may answer and close before the whole body is sent.
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 1024];
    let n = tcp.read(&mut answer).await.unwrap_or(0);
    let text = String::from_utf8_lossy(&answer[..n]);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn bad_signatures_are_401_with_a_json_error() {
    let app = app().await;
    let body = serde_json::to_vec(&new_hire("ENG")).unwrap();
    let ct = ("content-type", "application/json".to_string());

    let (status, answer) = app.post_raw(HR_PATH, body.clone(), std::slice::from_ref(&ct)).await;
    assert_eq!(status, 401);
    assert_eq!(
        answer,
        json!({"error": "Missing webhook signature headers: webhook-id, webhook-timestamp, webhook-signature"})
    );

    let mut wrong = signed_headers(NEW_SECRET, "msg_wrong", now(), &body);
    wrong.push(ct.clone());
    let (status, answer) = app.post_raw(HR_PATH, body.clone(), &wrong).await;
    assert_eq!((status, answer), (401, json!({"error": "Invalid webhook signature"})));

    let mut stale = signed_headers(SECRET, "msg_stale", now() - 301, &body);
    stale.push(ct.clone());
    let (status, answer) = app.post_raw(HR_PATH, body.clone(), &stale).await;
    assert_eq!((status, answer), (401, json!({"error": "Webhook timestamp is outside the allowed tolerance"})));

    let mut future = signed_headers(SECRET, "msg_future", now() + 301, &body);
    future.push(ct.clone());
    assert_eq!(app.post_raw(HR_PATH, body.clone(), &future).await.0, 401);

    // A body changed after signing.
    let mut tampered = signed_headers(SECRET, "msg_tamper", now(), &body);
    tampered.push(ct.clone());
    let mut changed = body.clone();
    changed.extend_from_slice(b" ");
    assert_eq!(app.post_raw(HR_PATH, changed, &tampered).await.0, 401);

    // An id changed after signing (replaying a signature under a new id).
    let mut swapped = signed_headers(SECRET, "msg_original", now(), &body);
    swapped[0].1 = "msg_other".into();
    swapped.push(ct);
    assert_eq!(app.post_raw(HR_PATH, body, &swapped).await.0, 401);

    assert_eq!(app.store.counts_by_state().await.unwrap().iter().map(|(_, n)| n).sum::<u64>(), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_is_accepted_during_the_changeover() {
    // The service holds the old and the new secret while senders move over.
    let app = Spawn::new(Backend::Sqlite)
        .no_workers()
        .env("HR_WEBHOOK_SECRET", &format!("{NEW_SECRET} {SECRET}"))
        .start()
        .await
        .unwrap();
    let body = serde_json::to_vec(&new_hire("ENG")).unwrap();
    for (i, secret) in [SECRET, NEW_SECRET].into_iter().enumerate() {
        let mut h = signed_headers(secret, &format!("msg_rot_{i}"), now(), &body);
        h.push(("content-type", "application/json".into()));
        assert_eq!(app.post_raw(HR_PATH, body.clone(), &h).await.0, 202, "secret {i}");
    }
    app.shutdown().await;

    // After the changeover the service holds only the new secret; a sender that signs with both
    // (several v1 signatures in one header) is still accepted, one signing with the old alone is not.
    let app = Spawn::new(Backend::Sqlite).no_workers().env("HR_WEBHOOK_SECRET", NEW_SECRET).start().await.unwrap();
    let ts = now();
    let old = signed_headers(SECRET, "msg_both", ts, &body);
    let new = signed_headers(NEW_SECRET, "msg_both", ts, &body);
    let both = vec![
        old[0].clone(),
        old[1].clone(),
        ("webhook-signature", format!("{} {}", old[2].1, new[2].1)),
        ("content-type", "application/json".to_string()),
    ];
    assert_eq!(app.post_raw(HR_PATH, body.clone(), &both).await.0, 202);
    let mut only_old = signed_headers(SECRET, "msg_old", now(), &body);
    only_old.push(("content-type", "application/json".into()));
    assert_eq!(app.post_raw(HR_PATH, body, &only_old).await.0, 401);
    app.shutdown().await;
}

#[tokio::test]
async fn verification_off_needs_an_event_id_and_uses_the_body_id() {
    let app = Spawn::new(Backend::Sqlite).no_workers().env("VERIFY_SIGNATURES", "false").start().await.unwrap();
    let ct = [("content-type", "application/json".to_string())];
    let mut body = new_hire("SALES");
    let first = app.post_raw(HR_PATH, serde_json::to_vec(&body).unwrap(), &ct).await;
    let again = app.post_raw(HR_PATH, serde_json::to_vec(&body).unwrap(), &ct).await;
    assert_eq!(first.0, 202);
    assert_eq!(first.1["auditId"], again.1["auditId"], "the body id deduplicates");
    body.as_object_mut().unwrap().remove("id");
    let (status, answer) = app.post_raw(HR_PATH, serde_json::to_vec(&body).unwrap(), &ct).await;
    assert_eq!((status, answer), (400, json!({"error": "Missing event id: send a webhook-id header or an id field"})));
    // JSON that is not an object has no id either; the missing id is what the answer names first.
    let (status, answer) = app.post_raw(HR_PATH, b"[1]".to_vec(), &ct).await;
    assert_eq!((status, answer), (400, json!({"error": "Missing event id: send a webhook-id header or an id field"})));
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_event_twice_is_one_job_even_when_sent_concurrently() {
    on_each_backend(|backend| async move {
        let app = Spawn::new(backend).no_workers().start().await.unwrap();
        let body = new_hire("SUPPORT");
        let (_, first) = app.post_signed(HR_PATH, &body, "msg_dup_seq").await;
        let (status, second) = app.post_signed(HR_PATH, &body, "msg_dup_seq").await;
        assert_eq!(status, 202);
        assert_eq!(first["auditId"], second["auditId"]);

        // 40 concurrent deliveries of 4 events: 4 jobs, each delivery answered with its event's auditId.
        let app = std::sync::Arc::new(app);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let app = app.clone();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("msg_dup_conc_{}", i % 4);
                let (status, answer) = app.post_signed(HR_PATH, &body, &id).await;
                assert_eq!(status, 202, "{answer}");
                (id, answer["auditId"].as_str().unwrap().to_string())
            }));
        }
        let mut by_event = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
        for t in tasks {
            let (id, audit) = t.await.unwrap();
            by_event.entry(id).or_default().insert(audit);
        }
        assert_eq!(by_event.len(), 4);
        assert!(by_event.values().all(|s| s.len() == 1), "one auditId per event: {by_event:?}");
        let total: u64 = app.store.counts_by_state().await.unwrap().iter().map(|(_, n)| n).sum();
        assert_eq!(total, 5, "one job for the first event and one per concurrent event");
        let dupes = app.audit_lines().iter().filter(|l| l["event"] == "intake.duplicate").count();
        assert!(dupes >= 36, "{dupes} duplicate lines");
        if let Ok(app) = std::sync::Arc::try_unwrap(app) {
            app.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_share_commits() {
    on_each_backend(|backend| async move {
        let app = std::sync::Arc::new(Spawn::new(backend).no_workers().start().await.unwrap());
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move { app.hire(&new_hire("HR")).await }));
        }
        let mut ids = std::collections::BTreeSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap());
        }
        assert_eq!(ids.len(), 200);
        for id in &ids {
            assert!(app.store.get(*id).await.unwrap().is_some(), "every 202 is a stored job");
        }
        let stats = &app.metrics.intake;
        let batches = stats.batches.get();
        let rows = stats.rows.get();
        assert_eq!(rows, 200);
        assert!(batches < rows, "{backend:?}: 200 rows took {batches} commits; concurrent requests must share them");
        assert!(stats.largest_batch.load(std::sync::atomic::Ordering::Relaxed) > 1);
        if let Ok(app) = std::sync::Arc::try_unwrap(app) {
            app.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = app().await;
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"error": "No such endpoint"}));
    let resp = app.client.get(app.url(HR_PATH)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert!(resp.json::<Value>().await.unwrap()["error"].is_string());
    app.shutdown().await;
}

#[tokio::test]
async fn a_reused_webhook_id_with_another_body_is_409_and_audited_as_a_conflict() {
    on_each_backend(|backend| async move {
        let app = Spawn::new(backend).no_workers().start().await.unwrap();
        let first = new_hire("ENG");
        let (status, stored) = app.post_signed(HR_PATH, &first, "msg_reused").await;
        assert_eq!(status, 202, "{stored}");
        let (status, again) = app.post_signed(HR_PATH, &first, "msg_reused").await;
        assert_eq!((status, &again["auditId"]), (202, &stored["auditId"]), "the same body again is a duplicate");

        // Another event (a leaver sent under an earlier id): refused, not answered as the first one.
        let mut other = first.clone();
        other["departmentCode"] = json!("SALES");
        let (status, answer) = app.post_signed(HR_PATH, &other, "msg_reused").await;
        assert_eq!(
            (status, answer),
            (409, json!({"error": "webhook-id msg_reused was already used for a different event"}))
        );
        let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "intake.conflict").await;
        assert_eq!(line["webhookId"], "msg_reused");
        assert_eq!(line["auditId"], stored["auditId"], "names the job that holds the id");
        assert_eq!(line["httpStatus"], 409);
        let job = app.store.get(stored["auditId"].as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(job.payload["departmentCode"], "ENG", "the stored event is unchanged");
        let total: u64 = app.store.counts_by_state().await.unwrap().iter().map(|(_, n)| n).sum();
        assert_eq!(total, 1);
        app.shutdown().await;
    })
    .await;
}

/// Rows stored before content hashes were kept have none: a repeat of their id stays a duplicate.
#[tokio::test]
async fn an_id_stored_without_a_content_hash_is_still_answered_as_a_duplicate() {
    on_each_backend(|backend| async move {
        let app = Spawn::new(backend).no_workers().start().await.unwrap();
        let old = genesys_provisioner::queue::NewJob {
            audit_id: uuid::Uuid::now_v7(),
            kind: genesys_provisioner::queue::JobKind::NewHire,
            webhook_id: "msg_from_before".into(),
            payload: new_hire("ENG"),
        };
        app.store.enqueue_batch(std::slice::from_ref(&old)).await.unwrap();
        let (status, answer) = app.post_signed(HR_PATH, &new_hire("HR"), "msg_from_before").await;
        assert_eq!((status, answer["auditId"].as_str()), (202, Some(old.audit_id.to_string().as_str())));
        app.shutdown().await;
    })
    .await;
}

/// Anyone can send unsigned requests: they are counted and summarised per source and reason, not
/// written one line each, and the counts reach the trail when the service stops.
#[tokio::test]
async fn refusals_before_the_signature_are_summarised_per_source_and_reason() {
    let app = app().await;
    let body = serde_json::to_vec(&new_hire("ENG")).unwrap();
    let json = [("content-type", "application/json".to_string())];
    for _ in 0..40 {
        assert_eq!(app.post_raw(HR_PATH, body.clone(), &json).await.0, 401);
    }
    for _ in 0..3 {
        assert_eq!(app.post_raw(HR_PATH, body.clone(), &[("content-type", "text/plain".into())]).await.0, 415);
    }
    let metrics = app.metrics.render();
    assert!(metrics.contains("provisioner_webhooks_total{outcome=\"unauthorized\"} 40"), "{metrics}");
    assert!(metrics.contains("provisioner_webhooks_total{outcome=\"unsupported_media_type\"} 3"), "{metrics}");
    let rejected = app.audit_lines().into_iter().filter(|l| l["event"] == "intake.rejected").count();
    assert_eq!(rejected, 0, "no line per unauthenticated refusal");

    let audit_dir = app.audit_dir.clone();
    let _db = app.shutdown().await;
    let summaries: Vec<Value> =
        read_audit(&audit_dir).into_iter().filter(|l| l["event"] == "intake.rejected_summary").collect();
    assert_eq!(summaries.len(), 2, "{summaries:#?}");
    let of = |reason: &str| summaries.iter().find(|l| l["reason"] == reason).cloned().unwrap();
    let unsigned = of("unauthorized");
    assert_eq!((&unsigned["count"], &unsigned["source"]), (&json!(40), &json!("127.0.0.1")));
    assert_eq!(unsigned["endpoint"], HR_PATH);
    assert!(unsigned["windowStart"].as_str().unwrap() <= unsigned["windowEnd"].as_str().unwrap());
    assert_eq!(of("unsupported_media_type")["count"], 3);
}

/// Field lengths are bounded at the edge, before anything copies a field: a 900 KB email (valid
/// once its padding is trimmed) or a 500 KB department code is a 400 naming the field.
#[tokio::test]
async fn overlong_fields_are_400_naming_the_field_and_nothing_echoes_them_whole() {
    let app = app().await;
    let cases = [
        ("email", format!("{}jane@example.com", " ".repeat(900_000)), "Invalid field email: at most 254 characters"),
        ("departmentCode", "D".repeat(500_000), "Invalid field departmentCode: at most 256 characters"),
        ("firstName", "J".repeat(257), "Invalid field firstName: at most 256 characters"),
    ];
    for (field, value, expected) in cases {
        let mut body = new_hire("ENG");
        body[field] = json!(value);
        let (status, answer) = app.post_signed(HR_PATH, &body, &uuid::Uuid::new_v4().to_string()).await;
        assert_eq!((status, answer), (400, json!({"error": expected})), "{field}");
    }
    let mut fits = new_hire("ENG");
    fits["firstName"] = json!("J".repeat(256));
    assert_eq!(app.post_signed(HR_PATH, &fits, "msg_fits").await.0, 202);
    for line in app.audit_lines() {
        assert!(line.to_string().len() < 4096, "audit line of {} bytes", line.to_string().len());
    }
    let total: u64 = app.store.counts_by_state().await.unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(total, 1, "only the body that fits is a job");
    app.shutdown().await;
}
