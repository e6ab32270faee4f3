//! New hires end to end: the service and the Genesys Cloud emulator over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use genesys_emulator::wire::{ScimMultiValue, ScimUser};
use serde_json::json;

use crate::common::*;

const ENG_GROUP: &str = "a1b2c3d4-5678-90ab-cdef-1234567890ab";

async fn provisioning_app(emulator: &genesys_emulator::Emulator) -> TestApp {
    Spawn::new(Backend::Sqlite).provisioning(emulator).start().await.unwrap()
}

fn user_named(emulator: &genesys_emulator::Emulator, user_name: &str) -> Vec<ScimUser> {
    emulator.users().into_iter().filter(|u| u.user_name.eq_ignore_ascii_case(user_name)).collect()
}

#[tokio::test]
async fn without_genesys_credentials_jobs_wait_in_the_queue_instead_of_failing() {
    let app = Spawn::new(Backend::Sqlite).real_pipeline().start().await.unwrap();
    let id = app.hire(&new_hire("ENG")).await;
    // A worker would have claimed it within milliseconds; none runs without credentials.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, job) = app.admin_get(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["attempts"], 0, "{job}");
}

#[tokio::test]
async fn a_signed_new_hire_becomes_one_active_user_in_its_group() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    let mut body = new_hire("ENG");
    body["employeeNumber"] = json!("E-1042");
    body["phone"] = json!("+1 317 555 0142");
    let email = body["email"].as_str().unwrap().to_string();
    let id = app.hire(&body).await;
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    let scim_id = job["result"]["scimId"].as_str().expect("the job shows the Genesys user id").to_string();
    assert_eq!(job["result"]["groupId"], ENG_GROUP);
    assert_eq!(job["result"]["adopted"], false);

    let users = user_named(&emulator, &email);
    assert_eq!(users.len(), 1);
    let user = &users[0];
    assert_eq!(user.id.as_deref(), Some(scim_id.as_str()));
    assert_eq!(user.active, Some(true));
    assert_eq!(user.display_name.as_deref(), Some("Jane Doe"));
    // The person key (the employee number here), never the event id.
    assert_eq!(user.external_id.as_deref(), Some("E-1042"));
    assert_eq!(user.title.as_deref(), Some("Engineer"));
    let ext = user.enterprise.as_ref().expect("enterprise extension");
    assert_eq!(ext.department.as_deref(), Some("ENG"), "no name configured: the code");
    assert_eq!(ext.employee_number.as_deref(), Some("E-1042"));
    assert_eq!(ext.date_hire.as_deref(), Some("2026-12-01"));
    assert_eq!(user.phone_numbers[0].value, "+1 317 555 0142");
    let group = emulator.group(ENG_GROUP).unwrap();
    assert!(group.members.iter().any(|m| m.value == scim_id), "member of the department group");

    let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "scim.user.created").await;
    assert_eq!(line["scimId"], scim_id.as_str());
    assert_eq!(line["groupId"], ENG_GROUP);
    assert_eq!(line["genesysResponseCode"], 201);
    assert_eq!(line["retryCount"], 0);
    assert_eq!(line["userEmail"], email.as_str());
    assert!(line["latencyMs"].is_u64());
    assert!(line["correlationId"].as_str().is_some_and(|c| !c.is_empty()));
    // Two calls: the create and one group PATCH, which carries no If-Match (adding one member is
    // commutative), so the group is never read (plus the one token request).
    let stats = emulator.stats();
    assert_eq!(stats.token_requests, 1);
    let api_calls: u64 =
        stats.requests_by_route.iter().filter(|(route, _)| route.contains(" /api/v2/")).map(|(_, n)| n).sum();
    assert_eq!(api_calls, 2, "{:?}", stats.requests_by_route);
    assert!(!stats.requests_by_route.keys().any(|r| r.starts_with("GET /api/v2/scim/v2/groups")), "no group read");
    let group_patches: Vec<_> = emulator.received().into_iter().filter(|r| r.path.contains("/groups/")).collect();
    assert_eq!(group_patches.len(), 1, "{group_patches:?}");
    assert_eq!(group_patches[0].if_match, None, "{group_patches:?}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "provisioner_genesys_requests_total 2",
        "provisioner_genesys_token_requests_total 1",
        "provisioner_genesys_rate_limited_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_manager_is_resolved_by_email() {
    let emulator = start_emulator().await;
    let manager = emulator.insert_user(ScimUser {
        user_name: "maria.lopez@example.com".into(),
        display_name: Some("Maria Lopez".into()),
        active: Some(true),
        emails: vec![ScimMultiValue {
            value: "maria.lopez@example.com".into(),
            kind: Some("work".into()),
            primary: Some(true),
        }],
        ..Default::default()
    });
    let app = provisioning_app(&emulator).await;
    let mut body = new_hire("ENG");
    body["managerEmail"] = json!("maria.lopez@example.com");
    let id = app.hire(&body).await;
    app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    let user = &user_named(&emulator, body["email"].as_str().unwrap())[0];
    let ext = user.enterprise.as_ref().unwrap();
    assert_eq!(ext.manager.as_ref().map(|m| m.value.clone()), manager.id);
    app.shutdown().await;
}

#[tokio::test]
async fn a_resent_webhook_and_an_existing_user_both_end_in_one_user() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    let body = new_hire("SALES");
    let email = body["email"].as_str().unwrap().to_string();
    let (_, first) = app.post_signed(HR_PATH, &body, "msg_resend").await;
    let (_, again) = app.post_signed(HR_PATH, &body, "msg_resend").await;
    assert_eq!(first["auditId"], again["auditId"]);
    let id: uuid::Uuid = first["auditId"].as_str().unwrap().parse().unwrap();
    app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(user_named(&emulator, &email).len(), 1);

    // The same person under a new event id (HR sent it twice with different ids): adopted.
    let second = app.hire(&body).await;
    let job = app.wait_for_state(second, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(job["result"]["adopted"], true);
    let scim_id = job["result"]["scimId"].as_str().unwrap();
    let group = emulator.group(job["result"]["groupId"].as_str().unwrap()).unwrap();
    assert_eq!(group.members.iter().filter(|m| m.value == scim_id).count(), 1, "a member once: {group:?}");
    assert_eq!(user_named(&emulator, &email).len(), 1, "never a second user");
    app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "scim.user.adopted").await;

    // A user created in Genesys by hand before HR announced them: adopted and added to the group.
    let existing = emulator.insert_user(ScimUser {
        user_name: "pre.existing@example.com".into(),
        display_name: Some("Pre Existing".into()),
        active: Some(true),
        emails: vec![ScimMultiValue {
            value: "pre.existing@example.com".into(),
            kind: Some("work".into()),
            primary: Some(true),
        }],
        ..Default::default()
    });
    let mut body = new_hire("SALES");
    body["email"] = json!("pre.existing@example.com");
    let third = app.hire(&body).await;
    let job = app.wait_for_state(third, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(job["result"]["scimId"], existing.id.clone().unwrap().as_str());
    assert_eq!(user_named(&emulator, "pre.existing@example.com").len(), 1);
    let group = emulator.group("c3d4e5f6-7890-12cd-efab-34567890abcd").unwrap();
    assert!(group.members.iter().any(|m| Some(&m.value) == existing.id.as_ref()));
    app.shutdown().await;
}

#[tokio::test]
async fn the_correction_loop_fixes_what_genesys_refuses() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    let mut body = new_hire("HR");
    let clean = body["email"].as_str().unwrap().to_string();
    body["email"] = json!(format!("  {}  ", clean.to_uppercase()));
    body["userName"] = json!("jdoe");
    let id = app.hire(&body).await;
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    let corrections: Vec<String> = serde_json::from_value(job["result"]["corrections"].clone()).unwrap();
    assert_eq!(corrections, ["userName set to the primary email", "emails trimmed and lower-cased"]);
    let users = user_named(&emulator, &clean);
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user_name, clean);
    let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "scim.user.created").await;
    assert_eq!(line["corrections"].as_array().unwrap().len(), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn an_uncorrectable_payload_is_dead_lettered_with_the_genesys_detail() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    emulator.faults().fail_next_writes(1, 400);
    let id = app.hire(&new_hire("ENG")).await;
    let job = app.wait_for_state(id, "dead", Duration::from_secs(15)).await;
    assert_eq!(job["attempts"], 1, "not retried blindly");
    let error = job["lastError"].as_str().unwrap();
    assert!(error.contains("no correction applies"), "{error}");
    let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "scim.user.failed").await;
    assert_eq!(line["genesysResponseCode"], 400);
    assert_eq!(line["status"], "failed");
    assert!(emulator.users().is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retried_to_success() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    // More 503s than the client retries in place: the queue retries the job, which then succeeds.
    emulator.faults().fail_next_writes(3, 503);
    let id = app.hire(&new_hire("ENG")).await;
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(20)).await;
    assert_eq!(job["attempts"], 2);
    assert_eq!(emulator.users().len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_failing_upstream_ends_in_a_dead_letter_whose_replay_succeeds_after_recovery() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    emulator.faults().set_server_error_rate(1.0);
    let id = app.hire(&new_hire("SUPPORT")).await;
    // Retried until the test config's 3 s retry window has passed.
    let job = app.wait_for_state(id, "dead", Duration::from_secs(30)).await;
    assert!(job["attempts"].as_u64().unwrap() >= 2, "{job}");
    emulator.faults().set_server_error_rate(0.0);
    let (status, _) = app.admin(reqwest::Method::POST, &format!("/admin/dead-letters/{id}/replay")).await;
    assert_eq!(status, 202);
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(20)).await;
    assert!(job["result"]["scimId"].is_string());
    assert_eq!(emulator.users().len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_rate_limit_is_honoured_without_a_storm() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    // Room for exactly one hire (create, group read, group patch) this minute.
    emulator.faults().set_rate_limit_per_minute(Some(3));
    let first = app.hire(&new_hire("ENG")).await;
    app.wait_for_state(first, "succeeded", Duration::from_secs(15)).await;
    let second = app.hire(&new_hire("ENG")).await;
    let before = app.clock.now_ms();
    let job = eventually(Duration::from_secs(15), || async {
        let job = app.store.get(second).await.unwrap().unwrap();
        (job.attempts >= 1 && job.state.as_str() == "queued").then_some(job)
    })
    .await
    .expect("the second job waits in the queue");
    assert!(job.last_error.as_deref().unwrap().contains("rate limit"), "{:?}", job.last_error);
    // Retry-After here is longer than the inline wait (1 s): the job comes back no sooner.
    assert!(job.run_at >= before + 1_000, "next attempt honours Retry-After");
    let stats = emulator.stats();
    assert_eq!(stats.rate_limited, 1, "one 429, then the shared pace waits: no storm");
    app.shutdown().await;
}

/// Someone changes the group just before the joiner's add: the add carries no version, so it lands
/// at once, and the group is never read (with an ETag, this cost a re-read and a second PATCH).
#[tokio::test]
async fn a_group_changed_meanwhile_does_not_stop_the_membership() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    emulator.faults().stale_next_group_patches(1);
    let body = new_hire("ENG");
    let id = app.hire(&body).await;
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    let scim_id = job["result"]["scimId"].as_str().unwrap().to_string();
    assert_eq!(job["attempts"], 1);
    assert!(emulator.group(ENG_GROUP).unwrap().members.iter().any(|m| m.value == scim_id));
    let routes = emulator.stats().requests_by_route;
    let count = |prefix: &str| routes.iter().filter(|(r, _)| r.starts_with(prefix)).map(|(_, n)| n).sum::<u64>();
    assert_eq!(count("GET /api/v2/scim/v2/groups"), 0, "{routes:?}");
    assert_eq!(count("PATCH /api/v2/scim/v2/groups"), 1, "{routes:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn fifty_concurrent_jobs_with_a_cold_cache_make_one_token_request() {
    let emulator = start_emulator().await;
    let mut spawn = Spawn::new(Backend::Sqlite).provisioning(&emulator).env("WORKER_CONCURRENCY", "50").no_workers();
    // The 100 requests take 20 s at the pace; a lease far beyond that keeps a heartbeat delayed by a
    // loaded machine from handing a job to a second claim, which would count it twice.
    spawn.toml = spawn.toml.replace("lease_secs = 2", "lease_secs = 120");
    let app = Arc::new(spawn.start().await.unwrap());
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(app.hire(&new_hire("ENG")).await);
    }
    // All 50 are claimed together and run at once, with no token cached yet.
    assert_eq!(app.worker.drain().await.unwrap(), 50);
    for id in &ids {
        app.wait_for_state(*id, "succeeded", Duration::from_secs(30)).await;
    }
    assert_eq!(emulator.stats().token_requests, 1);
    assert_eq!(emulator.users().len(), 50);
    assert_eq!(emulator.group(ENG_GROUP).unwrap().members.len(), 50);
}

#[tokio::test]
async fn a_rehire_adopts_the_deactivated_user_and_makes_it_active() {
    let emulator = start_emulator().await;
    let old = emulator.insert_user(ScimUser {
        user_name: "back.again@example.com".into(),
        display_name: Some("Back Again".into()),
        active: Some(false),
        emails: vec![ScimMultiValue {
            value: "back.again@example.com".into(),
            kind: Some("work".into()),
            primary: Some(true),
        }],
        ..Default::default()
    });
    let app = provisioning_app(&emulator).await;
    let mut body = new_hire("ENG");
    body["email"] = json!("back.again@example.com");
    let id = app.hire(&body).await;
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(job["result"]["adopted"], true);
    assert_eq!(job["result"]["reactivated"], true);
    let users = user_named(&emulator, "back.again@example.com");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id, old.id);
    assert_eq!(users[0].active, Some(true));
    let patches = emulator.patches(old.id.as_deref().unwrap());
    assert_eq!(patches.len(), 1, "one minimal PATCH: {patches:?}");
    assert_eq!(patches[0].operations[0].path.as_deref(), Some("active"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_revoked_token_is_dropped_and_the_request_retried_once() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    let first = app.hire(&new_hire("ENG")).await;
    app.wait_for_state(first, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(emulator.stats().token_requests, 1);
    emulator.revoke_tokens();
    let second = app.hire(&new_hire("ENG")).await;
    let job = app.wait_for_state(second, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(job["attempts"], 1, "the 401 was handled inside the attempt");
    assert_eq!(emulator.stats().token_requests, 2, "one new token after the 401");
    app.shutdown().await;
}

#[tokio::test]
async fn a_token_endpoint_refusal_names_region_and_status_never_the_secret() {
    let emulator = start_emulator().await;
    let app = Spawn::new(Backend::Sqlite)
        .provisioning(&emulator)
        .env("GENESYS_CLIENT_SECRET", "a-wrong-secret-that-must-not-show")
        .start()
        .await
        .unwrap();
    let id = app.hire(&new_hire("ENG")).await;
    let line = app.wait_for_audit(Duration::from_secs(15), |l| l["event"] == "genesys.auth_failed").await;
    let detail = line["detail"].as_str().unwrap();
    assert!(detail.contains("Genesys token request failed (region mypurecloud.com): HTTP 401"), "{detail}");
    // The job waits for working credentials: given back to the queue (just after the audit line).
    let job = app.wait_for_state(id, "queued", Duration::from_secs(10)).await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap().text().await.unwrap();
    let everything = serde_json::to_string(&app.audit_lines()).unwrap() + &job.to_string() + &ready;
    assert!(!everything.contains("a-wrong-secret-that-must-not-show"));
    assert!(emulator.users().is_empty());
    app.shutdown().await;
}

/// Issue 14 point 5: an attempt that created the user and then failed (here: the group PATCH keeps
/// answering 503) leaves a checkpoint on its job, so the retry that meets the 409 says `resumed`:
/// this service made that user, it did not adopt someone else's.
#[tokio::test]
async fn a_retry_after_the_create_resumes_the_user_it_created_instead_of_adopting_it() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    // More 503s than the client retries in place: the first attempt fails after the create.
    emulator.faults().fail_next_group_patches(3, 503);
    let id = app.hire(&new_hire("ENG")).await;
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(20)).await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["result"]["resumed"], true, "{job}");
    assert_eq!(job["result"]["adopted"], false, "{job}");
    let users = emulator.users();
    assert_eq!(users.len(), 1);
    assert!(emulator.group(ENG_GROUP).unwrap().members.iter().any(|m| Some(&m.value) == users[0].id.as_ref()));
    let outcome = app
        .wait_for_audit(Duration::from_secs(5), |l| {
            l["auditId"] == id.to_string()
                && matches!(l["event"].as_str(), Some("scim.user.resumed" | "scim.user.adopted" | "scim.user.created"))
        })
        .await;
    assert_eq!(outcome["event"], "scim.user.resumed", "{outcome}");
    assert_eq!((outcome["resumed"].as_bool(), outcome["adopted"].as_bool()), (Some(true), Some(false)));
    app.shutdown().await;
}

/// Issue 14 point 9: Genesys refusing the client's credentials pauses the workers instead of
/// dead-lettering every job; readiness, a metric and one audit line say so; the token is asked for
/// again on a timer and the work resumes by itself once it is granted.
#[tokio::test]
async fn refused_credentials_pause_the_jobs_until_the_token_is_granted_again() {
    let emulator = start_emulator().await;
    emulator.faults().refuse_credentials(true);
    let app = provisioning_app(&emulator).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.hire(&new_hire("ENG")).await);
    }
    let ready = eventually(Duration::from_secs(10), || async {
        let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        (status == 503).then_some(body)
    })
    .await
    .expect("/readyz reports the refused credentials");
    assert_eq!(ready["reason"], "genesys_auth_failed", "{ready}");
    // Several token requests (the retries on the timer) while paused, and no job gives up meanwhile.
    let probes = emulator.stats().token_requests;
    let retried =
        eventually(Duration::from_secs(10), || async { (emulator.stats().token_requests >= probes + 2).then_some(()) });
    assert!(retried.await.is_some(), "the token is asked for again while paused");
    for id in &ids {
        let (_, job) = app.admin_get(&format!("/jobs/{id}")).await;
        assert_eq!(job["state"], "queued", "{job}");
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "provisioner_genesys_auth_failed 1"), "{metrics}");

    emulator.faults().refuse_credentials(false);
    for id in &ids {
        app.wait_for_state(*id, "succeeded", Duration::from_secs(15)).await;
    }
    assert_eq!(emulator.users().len(), 3);
    app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "genesys.auth_recovered").await;
    let failed: Vec<_> = app.audit_lines().into_iter().filter(|l| l["event"] == "genesys.auth_failed").collect();
    assert_eq!(failed.len(), 1, "one audit line for the outage, not one per job: {failed:#?}");
    assert!(app.audit_lines().iter().all(|l| l["event"] != "job.dead_lettered"));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "provisioner_genesys_auth_failed 0"), "{metrics}");
    app.shutdown().await;
}

/// Issue 14 point 9: jobs retry by time, not by count. An outage longer than the five attempts that
/// used to be the limit is survived when Genesys comes back within the retry window.
#[tokio::test]
async fn a_genesys_outage_longer_than_five_attempts_is_survived_within_the_retry_window() {
    let emulator = start_emulator().await;
    let app =
        Spawn::new(Backend::Sqlite).provisioning(&emulator).env("JOB_RETRY_WINDOW_SECS", "120").start().await.unwrap();
    emulator.faults().set_server_error_rate(1.0);
    let id = app.hire(&new_hire("SALES")).await;
    let outlasted = eventually(Duration::from_secs(60), || async {
        let (_, job) = app.admin_get(&format!("/jobs/{id}")).await;
        assert_ne!(job["state"], "dead", "gave up during the outage: {job}");
        let failed =
            job["attemptHistory"].as_array().map_or(0, |h| h.iter().filter(|a| a["outcome"] == "retry").count());
        (failed >= 6).then_some(())
    });
    assert!(outlasted.await.is_some(), "six failed attempts within a minute");
    emulator.faults().set_server_error_rate(0.0);
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(20)).await;
    let outcomes: Vec<_> = job["attemptHistory"].as_array().unwrap().iter().map(|a| a["outcome"].clone()).collect();
    assert!(outcomes.len() >= 7 && outcomes.last() == Some(&json!("succeeded")), "{outcomes:?}");
    assert_eq!(emulator.users().len(), 1);
    app.shutdown().await;
}

/// The first ```json block after `heading` in docs/api.md (moved there from the README).
fn api_doc_json_after(heading: &str) -> serde_json::Value {
    let doc = include_str!("../../docs/api.md");
    let section = &doc[doc.find(heading).expect("docs/api.md has the section")..];
    let block = &section[section.find("```json\n").expect("a JSON example") + "```json\n".len()..];
    serde_json::from_str(&block[..block.find("```").unwrap()]).expect("the docs/api.md example is JSON")
}

#[tokio::test]
async fn the_readme_hire_and_its_update_are_one_person_with_one_department_value() {
    let emulator = start_emulator().await;
    let mut spawn = Spawn::new(Backend::Sqlite).provisioning(&emulator);
    spawn.toml = spawn
        .toml
        .replace("[departments.ENG]\n", "[departments.ENG]\nname = \"Engineering\"\n")
        .replace("[departments.SALES]\n", "[departments.SALES]\nname = \"Sales\"\n");
    let app = spawn.start().await.unwrap();
    let hire: serde_json::Value = serde_json::from_str(include_str!("../../config/samples/new-hire.json")).unwrap();
    let id = app.hire(&hire).await;
    app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    let users = emulator.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].external_id.as_deref(), Some("E-1042"), "the employee id, never the event id");
    assert_eq!(users[0].enterprise.as_ref().unwrap().department.as_deref(), Some("Engineering"));

    // The documented directory update for the same employee (a mover to SALES, with a new email).
    let update = api_doc_json_after("## Directory sync");
    assert_eq!(update["event"], "user.updated");
    let (status, answer) = app.post_signed("/webhooks/directory-sync", &update, "readme-update").await;
    assert_eq!(status, 202, "{answer}");
    let job_id: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
    let job = app.wait_for_state(job_id, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(job["result"]["outcome"], "updated", "{job}");
    let users = emulator.users();
    assert_eq!(users.len(), 1, "one person, one Genesys user: {users:?}");
    assert_eq!(users[0].external_id.as_deref(), Some("E-1042"));
    assert_eq!(users[0].enterprise.as_ref().unwrap().department.as_deref(), Some("Sales"));

    // Back to ENG from the directory, whatever the HR label: the value the new-hire path wrote.
    let mut back = update.clone();
    back["data"]["departmentCode"] = serde_json::json!("ENG");
    back["data"]["department"] = serde_json::json!("Eng. (HR label)");
    let (_, answer) = app.post_signed("/webhooks/directory-sync", &back, "readme-update-back").await;
    let job_id: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
    app.wait_for_state(job_id, "succeeded", Duration::from_secs(15)).await;
    let users = emulator.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].enterprise.as_ref().unwrap().department.as_deref(), Some("Engineering"));
    let sent = serde_json::to_string(&emulator.created_bodies()).unwrap();
    assert!(!sent.contains("evt-"), "the event id never reaches Genesys: {sent}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_manager_lookup_refused_by_genesys_does_not_fail_the_hire() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    // The lookup (the hire's first request, a read) is refused: 403, as without directory:user:view.
    emulator.faults().fail_next_reads(1, 403);
    let mut body = new_hire("ENG");
    body["managerEmail"] = json!("maria.lopez@example.com");
    let id = app.hire(&body).await;
    let job = app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    let reason = job["result"]["managerUnresolved"].as_str().expect("the result says why").to_string();
    assert!(reason.contains("403"), "{reason}");
    let user = &user_named(&emulator, body["email"].as_str().unwrap())[0];
    assert!(user.enterprise.as_ref().and_then(|e| e.manager.as_ref()).is_none());
    let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "scim.user.created").await;
    assert_eq!(line["managerUnresolved"], reason.as_str());
    app.shutdown().await;
}

#[tokio::test]
async fn a_manager_the_service_provisioned_costs_no_lookup() {
    let emulator = start_emulator().await;
    let app = provisioning_app(&emulator).await;
    let manager = new_hire("ENG");
    let id = app.hire(&manager).await;
    let done = app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    let manager_id = done["result"]["scimId"].as_str().unwrap().to_string();

    let api = || -> u64 {
        emulator.stats().requests_by_route.iter().filter(|(r, _)| r.contains(" /api/v2/")).map(|(_, n)| n).sum()
    };
    let before = api();
    let mut body = new_hire("ENG");
    // As HR may write it: other case, padded.
    body["managerEmail"] = json!(format!(" {} ", manager["email"].as_str().unwrap().to_uppercase()));
    let id = app.hire(&body).await;
    let done = app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(done["result"]["managerId"], manager_id.as_str());
    assert_eq!(api() - before, 2, "the create and the group add; the mirror knows the manager");
    let user = &user_named(&emulator, body["email"].as_str().unwrap())[0];
    assert_eq!(user.enterprise.as_ref().unwrap().manager.as_ref().map(|m| m.value.clone()), Some(manager_id));
    app.shutdown().await;
}
