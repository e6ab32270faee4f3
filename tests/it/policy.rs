//! The provisioning policy over real HTTP: the validation webhook's contract (seed 002), each rule
//! and its code, rules switched off, the webhook's authentication and malformed bodies, intake
//! refusals (422, nothing stored) and a job dead-lettered by a policy changed since its intake.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const VALIDATION: &str = "/webhook/scim-validation";
const SECRET_HEADER: &str = "x-validation-secret";
const VALIDATION_SECRET: &str = "validation-secret-for-tests-0123";
const SYNC: &str = "/webhooks/directory-sync";
const BATCH: &str = "/webhooks/directory-sync/batch";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GENESYS: &str = "urn:ietf:params:scim:schemas:extension:genesys:purecloud:2.0:User";

/// Every rule with something to judge: two domains, two departments (by code), a cost-center
/// pattern, extra roles for ENG. The test departments get display names.
const STRICT: &str = r#"
[policy]
email_domains = ["example.com", "Example.org"]
departments = ["ENG", "SUPPORT"]
cost_center_pattern = "^CC-[0-9]{4}$"
[policy.roles]
ENG = ["agent", "supervisor"]
"#;

/// The test config's departments with display names (the policy resolves a user's department by it).
fn named_departments() -> String {
    TEST_TOML
        .replace("[departments.ENG]\n", "[departments.ENG]\nname = \"Engineering\"\n")
        .replace("[departments.SUPPORT]\n", "[departments.SUPPORT]\nname = \"Support\"\n")
        .replace("[departments.SALES]\n", "[departments.SALES]\nname = \"Sales\"\n")
}

/// An app with workers off, the validation secret set and `policy` on top of the named departments.
async fn app_with(policy: &str) -> TestApp {
    let mut spawn = Spawn::new(Backend::Sqlite).no_workers().env("VALIDATION_WEBHOOK_SECRET", VALIDATION_SECRET);
    spawn.toml = format!("{policy}\n{}", named_departments());
    spawn.start().await.unwrap()
}

/// A SCIM user that complies with `STRICT`.
fn good_user() -> Value {
    json!({
        "id": "7d4b2d2e-0f4e-4a8e-9c1e-3f4b5a6c7d8e",
        "userName": "jane.doe@example.com",
        "emails": [{"value": "jane.doe@example.com", "type": "work", "primary": true}],
        ENTERPRISE: {"department": "Engineering"},
        GENESYS: {"externalIds": [{"authority": "costCenter", "value": "CC-1042"}]},
        "roles": [{"value": "employee"}, {"value": "agent"}]
    })
}

fn created(data: Value) -> Value {
    json!({"eventType": "user.created", "eventTimestamp": "2026-11-23T10:00:00.000Z", "data": data})
}

/// The raw answer: status, content type, body text.
async fn post(app: &TestApp, body: &[u8], headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut request = app.client.post(app.url(VALIDATION)).body(body.to_vec());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

/// POSTs `body` with the shared secret and webhook id `wh-1`.
async fn validate(app: &TestApp, body: &Value) -> (u16, Value) {
    let (status, _, text) = post(
        app,
        &serde_json::to_vec(body).unwrap(),
        &[("content-type", "application/json"), (SECRET_HEADER, VALIDATION_SECRET), ("x-genesys-webhook-id", "wh-1")],
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The codes of the violations of a REJECTED answer (empty for ACCEPTED).
async fn codes(app: &TestApp, data: Value) -> Vec<String> {
    let (status, answer) = validate(app, &created(data)).await;
    match status {
        200 => {
            assert_eq!(answer["status"], "ACCEPTED", "{answer}");
            vec![]
        }
        400 => {
            answer["violations"].as_array().unwrap().iter().map(|v| v["code"].as_str().unwrap().to_string()).collect()
        }
        other => panic!("{other}: {answer}"),
    }
}

#[tokio::test]
async fn the_validation_webhook_answers_as_the_seed_does() {
    let app = app_with(STRICT).await;
    let headers =
        [("content-type", "application/json"), (SECRET_HEADER, VALIDATION_SECRET), ("x-genesys-webhook-id", "wh-42")];

    // Another event type: 200 OK, ignored.
    let ignored = json!({"eventType": "user.updated", "eventTimestamp": "2026-11-23T10:00:00.000Z", "data": {}});
    let (status, content_type, text) = post(&app, &serde_json::to_vec(&ignored).unwrap(), &headers).await;
    assert_eq!((status, text.as_str()), (200, "OK"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");

    // Compliant: exactly {status, webhookId}.
    let (status, _, text) = post(&app, &serde_json::to_vec(&created(good_user())).unwrap(), &headers).await;
    assert_eq!((status, text.as_str()), (200, r#"{"status":"ACCEPTED","webhookId":"wh-42"}"#));

    // Violating: the seed's fields, in the seed's order, and every violation at once.
    let mut bad = good_user();
    bad["emails"][0]["value"] = json!("jane@example.net");
    bad[ENTERPRISE]["department"] = json!("Sales");
    bad["roles"] = json!([{"value": "agent"}]);
    let (status, _, text) = post(&app, &serde_json::to_vec(&created(bad)).unwrap(), &headers).await;
    assert_eq!(status, 400, "{text}");
    let keys: Vec<usize> =
        ["webhookId", "eventType", "eventTimestamp", "status", "errorCode", "violations", "timestamp"]
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} missing in {text}")))
            .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "the seed's order: {text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer.as_object().unwrap().len(), 7, "{answer}");
    assert_eq!(answer["webhookId"], "wh-42");
    assert_eq!(answer["eventType"], "user.created");
    assert_eq!(answer["eventTimestamp"], "2026-11-23T10:00:00.000Z");
    assert_eq!(answer["status"], "REJECTED");
    assert_eq!(answer["errorCode"], "PROVISIONING_POLICY_VIOLATION");
    assert_eq!(
        answer["violations"],
        json!([
            {"field": "emails[0].value", "code": "SCIM_INVALID_EMAIL_DOMAIN", "message": "Email domain example.net is not provisioned."},
            {"field": "department", "code": "POLICY_DEPARTMENT_DENIED", "message": "Department Sales is not in the approved list."},
            {"field": "roles", "code": "POLICY_ROLE_DENIED", "message": "Role agent is not in the approved list for department Sales."}
        ])
    );
    let timestamp = answer["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'), "{timestamp}");

    // Without the webhook id header the answer leaves it out, as the seed's JSON does.
    let (status, _, text) = post(
        &app,
        &serde_json::to_vec(&created(good_user())).unwrap(),
        &[("content-type", "application/json"), (SECRET_HEADER, VALIDATION_SECRET)],
    )
    .await;
    assert_eq!((status, text.as_str()), (200, r#"{"status":"ACCEPTED"}"#));

    // Every decision is an audit line; nothing is stored.
    let lines = app.audit_lines();
    let of = |event: &str| lines.iter().filter(|l| l["event"] == event).cloned().collect::<Vec<_>>();
    let ignored = of("validation.ignored");
    assert_eq!(ignored.len(), 1, "{lines:#?}");
    assert_eq!((&ignored[0]["eventType"], &ignored[0]["webhookId"]), (&json!("user.updated"), &json!("wh-42")));
    let accepted = of("validation.accepted");
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0]["status"], "accepted");
    assert_eq!(accepted[0]["userEmail"], "jane.doe@example.com");
    assert_eq!(accepted[0]["departmentCode"], "ENG", "the department's name resolved to its code");
    assert_eq!(accepted[0]["scimId"], "7d4b2d2e-0f4e-4a8e-9c1e-3f4b5a6c7d8e");
    assert_eq!(accepted[0]["endpoint"], VALIDATION);
    let rejected = of("validation.rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["eventTimestamp"], "2026-11-23T10:00:00.000Z");
    assert_eq!(rejected[0]["violations"], answer["violations"]);
    assert_eq!(rejected[0]["departmentCode"], "SALES");
    assert!(app.store.counts_by_state().await.unwrap().iter().all(|(_, n)| *n == 0));
    app.shutdown().await;
}

#[tokio::test]
async fn each_rule_has_its_code_and_can_be_switched_off() {
    let with = |edit: fn(&mut Value)| {
        let mut user = good_user();
        edit(&mut user);
        user
    };
    let cases: [(&str, &str, Value); 6] = [
        ("user_name", "SCIM_MISSING_USERNAME", with(|u| u["userName"] = json!(""))),
        ("primary_email", "SCIM_MISSING_PRIMARY_EMAIL", with(|u| u["emails"][0]["primary"] = json!(false))),
        ("email_domain", "SCIM_INVALID_EMAIL_DOMAIN", with(|u| u["emails"][0]["value"] = json!("j@mail.example.com"))),
        // A configured department the list leaves out (no roles asked: Sales gives none).
        (
            "department",
            "POLICY_DEPARTMENT_DENIED",
            with(|u| {
                u[ENTERPRISE]["department"] = json!("Sales");
                u["roles"] = json!([]);
            }),
        ),
        ("cost_center", "POLICY_COST_CENTER_MISMATCH", with(|u| u["costCenter"] = json!("CC-12"))),
        ("roles", "POLICY_ROLE_DENIED", with(|u| u["roles"] = json!([{"value": "admin"}]))),
    ];
    let app = app_with(STRICT).await;
    assert!(codes(&app, good_user()).await.is_empty());
    // The domain in another letter case, the department by its code: the same department.
    let mut same = good_user();
    same["emails"][0]["value"] = json!("jane@EXAMPLE.ORG");
    same[ENTERPRISE]["department"] = json!("SUPPORT");
    same["roles"] = json!([]);
    assert!(codes(&app, same).await.is_empty());
    for (_, code, user) in &cases {
        assert_eq!(codes(&app, user.clone()).await, [*code], "{code}");
    }
    let (_, answer) = validate(&app, &created(cases[4].2.clone())).await;
    assert_eq!(answer["violations"][0]["message"], "Cost center CC-12 does not match pattern ^CC-[0-9]{4}$.");
    app.shutdown().await;

    let all_off = "[policy.rules]\nuser_name = false\nprimary_email = false\nemail_domain = false\n\
                   department = false\ncost_center = false\nroles = false\n";
    for (rule, code, user) in &cases {
        let app = app_with(&format!("{STRICT}[policy.rules]\n{rule} = false\n")).await;
        assert!(codes(&app, user.clone()).await.is_empty(), "{rule} switched off still gives {code}");
        let others: Vec<String> = codes(&app, cases.iter().find(|c| c.0 != *rule).unwrap().2.clone()).await;
        assert_eq!(others.len(), 1, "only {rule} is off");
        app.shutdown().await;
    }
    let app = app_with(&format!("{STRICT}{all_off}")).await;
    let everything = json!({"department": "Nowhere", "costCenter": "x", "roles": [{"value": "root"}]});
    assert!(codes(&app, everything).await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn the_validation_webhook_needs_its_secret_or_a_signature() {
    let signing = NEW_SECRET;
    let mut spawn = Spawn::new(Backend::Sqlite)
        .no_workers()
        .env("VALIDATION_WEBHOOK_SECRET", VALIDATION_SECRET)
        .env("VALIDATION_SIGNING_SECRET", signing);
    spawn.toml = format!("{STRICT}\n{}", named_departments());
    let app = spawn.start().await.unwrap();
    let body = serde_json::to_vec(&created(good_user())).unwrap();
    let json_type = ("content-type", "application/json");
    for (headers, why) in [
        (vec![json_type], "Missing credentials: send the x-validation-secret header or a Standard Webhooks signature"),
        (vec![json_type, (SECRET_HEADER, "validation-secret-for-tests-012")], "Invalid x-validation-secret header"),
        (vec![json_type, (SECRET_HEADER, "")], "Invalid x-validation-secret header"),
    ] {
        let (status, _, text) = post(&app, &body, &headers).await;
        assert_eq!((status, serde_json::from_str::<Value>(&text).unwrap()), (401, json!({"error": why})));
    }
    // A sender that can sign: Standard Webhooks with the validation key, not the HR one.
    let id = "msg_validation_1";
    let mut signed: Vec<(&str, String)> = signed_headers(signing, id, now(), &body);
    signed.push(("content-type", "application/json".into()));
    let (status, answer) = app.post_raw(VALIDATION, body.clone(), &signed).await;
    assert_eq!((status, answer), (200, json!({"status": "ACCEPTED"})));
    let mut hr_signed: Vec<(&str, String)> = signed_headers(SECRET, id, now(), &body);
    hr_signed.push(("content-type", "application/json".into()));
    let (status, answer) = app.post_raw(VALIDATION, body.clone(), &hr_signed).await;
    assert_eq!((status, answer), (401, json!({"error": "Invalid webhook signature"})));
    // The shared secret alone decides when its header is sent, a signature notwithstanding.
    let mut both = signed.clone();
    both.push((SECRET_HEADER, "wrong-secret-0123456789".into()));
    assert_eq!(app.post_raw(VALIDATION, body.clone(), &both).await.0, 401);
    let lines = app.audit_lines();
    let decided = lines.iter().filter(|l| l["event"].as_str().unwrap_or("").starts_with("validation.")).count();
    assert_eq!(decided, 1, "nothing judged for an unauthenticated call: {lines:#?}");
    app.shutdown().await;

    // With no secret configured, every call is refused.
    let mut spawn = Spawn::new(Backend::Sqlite).no_workers();
    spawn.toml = format!("{STRICT}\n{}", named_departments());
    let app = spawn.start().await.unwrap();
    let (status, _, _) = post(&app, &body, &[json_type, (SECRET_HEADER, VALIDATION_SECRET)]).await;
    assert_eq!(status, 401);
    assert_eq!(app.post_raw(VALIDATION, body.clone(), &signed).await.0, 401);
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.lines().any(|l| l == "provisioner_webhooks_total{outcome=\"unauthorized\"} 2"), "{text}");
    app.shutdown().await;
}

#[tokio::test]
async fn malformed_validation_bodies_get_the_same_answers_as_the_hr_endpoints() {
    let app = app_with(STRICT).await;
    let secret = (SECRET_HEADER, VALIDATION_SECRET);
    let json_type = ("content-type", "application/json");
    let body = serde_json::to_vec(&created(good_user())).unwrap();
    let (status, _, text) = post(&app, &body, &[("content-type", "text/plain"), secret]).await;
    assert_eq!((status, text.as_str()), (415, r#"{"error":"Content-Type must be application/json"}"#));
    let huge = vec![b' '; 1024 * 1024 + 1];
    let (status, _, text) = post(&app, &huge, &[json_type, secret]).await;
    assert_eq!((status, text.as_str()), (413, r#"{"error":"Request body is larger than 1048576 bytes"}"#));
    let (status, _, text) = post(&app, b"{\"eventType\": ", &[json_type, secret]).await;
    assert_eq!(status, 400);
    assert!(text.starts_with(r#"{"error":"Malformed JSON: "#), "{text}");
    for (body, error) in [
        (json!(["user.created"]), "Request body must be a JSON object".to_string()),
        (json!({"data": {}}), "Missing required fields: eventType".into()),
        (json!({"eventType": "user.created", "data": {}}), "Missing required fields: eventTimestamp".into()),
        (
            json!({"eventType": "user.created", "eventTimestamp": 17, "data": {}}),
            "Invalid field eventTimestamp: expected a string".into(),
        ),
        (created(json!({"userName": ["a"]})), "Invalid field data.userName: expected a string".into()),
        (
            created(json!({"emails": [{"value": "a@example.com", "primary": "true"}]})),
            "Invalid field data.emails[0].primary: expected true or false".into(),
        ),
        (
            created(json!({ENTERPRISE: {"department": 4}})),
            format!("Invalid field data.{ENTERPRISE}.department: expected a string"),
        ),
    ] {
        let (status, answer) = validate(&app, &body).await;
        assert_eq!((status, answer), (400, json!({"error": error})), "{body}");
    }
    let long_id = "x".repeat(256);
    let (status, _, text) = post(&app, &body, &[json_type, secret, ("x-genesys-webhook-id", &long_id)]).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Invalid x-genesys-webhook-id header"), "{text}");
    // Refused after the caller was authenticated: one audit line each, naming the endpoint.
    let refused: Vec<Value> = app
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "intake.rejected" && l["endpoint"] == VALIDATION)
        .collect();
    assert_eq!(refused.len(), 9, "{refused:#?}");
    assert_eq!(refused[1]["webhookId"], "wh-1");
    app.shutdown().await;
}

#[tokio::test]
async fn a_new_hire_the_policy_refuses_is_422_and_nothing_is_stored() {
    let app = app_with(STRICT).await;
    let mut hire = new_hire("SALES");
    hire["email"] = json!("jane@example.net");
    let (status, answer) = app.post_signed(HR_PATH, &hire, "hire-policy-1").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer,
        json!({
            "error": "The user violates the provisioning policy (2 violation(s))",
            "violations": [
                {"field": "emails[0].value", "code": "SCIM_INVALID_EMAIL_DOMAIN", "message": "Email domain example.net is not provisioned."},
                {"field": "department", "code": "POLICY_DEPARTMENT_DENIED", "message": "Department Sales is not in the approved list."}
            ]
        })
    );
    assert!(app.store.counts_by_state().await.unwrap().iter().all(|(_, n)| *n == 0), "nothing stored");
    let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "intake.rejected").await;
    assert_eq!(line["httpStatus"], 422);
    assert_eq!(line["userEmail"], "jane@example.net");
    assert_eq!(line["departmentCode"], "SALES");
    assert_eq!(line["violations"], answer["violations"]);
    // The same hire in an allowed department, with an allowed address, is stored.
    hire["departmentCode"] = json!("ENG");
    hire["email"] = json!("jane@example.org");
    app.hire(&hire).await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "provisioner_webhooks_total{outcome=\"policy_denied\"} 1",
        "provisioner_webhooks_total{outcome=\"accepted\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn directory_events_the_policy_refuses_are_422_alone_and_refused_items_in_a_batch() {
    let app = app_with(STRICT).await;
    let record = |id: &str, email: &str| json!({"externalId": id, "firstName": "Jane", "lastName": "Doe", "workEmail": email, "departmentCode": "ENG", "costCenter": "CC-1042"});
    let (status, answer) =
        app.post_signed(SYNC, &json!({"event": "user.updated", "data": record("E-1", "a@example.net")}), "d-1").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["violations"][0]["code"], "SCIM_INVALID_EMAIL_DOMAIN");
    // The mapping writes UNASSIGNED when HR has no cost center: the pattern refuses that too.
    let mut no_cost_center = record("E-2", "b@example.com");
    no_cost_center.as_object_mut().unwrap().remove("costCenter");
    let (status, answer) =
        app.post_signed(SYNC, &json!({"event": "user.created", "data": no_cost_center}), "d-2").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["violations"][0]["message"], "Cost center UNASSIGNED does not match pattern ^CC-[0-9]{4}$.");
    assert!(app.store.counts_by_state().await.unwrap().iter().all(|(_, n)| *n == 0), "nothing stored");

    let batch = json!([
        {"id": "b-0", "event": "user.updated", "data": record("E-1", "a@example.net")},
        {"id": "b-1", "event": "user.updated", "data": record("E-3", "c@example.com")},
        // A leaver is never held back by the policy.
        {"id": "b-2", "event": "user.terminated", "data": record("E-1", "a@example.net")}
    ]);
    let (status, answer) = app.post_signed(BATCH, &batch, "batch-policy").await;
    assert_eq!(status, 207, "{answer}");
    assert_eq!(answer["results"][0]["error"], "The user violates the provisioning policy (1 violation(s))");
    assert_eq!(answer["results"][0]["violations"][0]["field"], "emails[0].value");
    assert_eq!(answer["results"][1]["status"], "queued");
    assert_eq!(answer["results"][2]["status"], "queued");
    let stored: u64 = app.store.counts_by_state().await.unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(stored, 2);
    let lines = app.audit_lines();
    let item = lines.iter().find(|l| l["event"] == "intake.rejected" && l["index"] == 0).expect("the item's line");
    assert_eq!((&item["httpStatus"], &item["webhookId"]), (&json!(422), &json!("b-0")));
    assert_eq!(item["violations"][0]["code"], "SCIM_INVALID_EMAIL_DOMAIN");
    app.shutdown().await;
}

/// The configuration may change between intake and processing: a job whose user no longer
/// complies is dead-lettered with the violations before anything is sent to Genesys.
#[tokio::test]
async fn a_policy_changed_after_intake_dead_letters_the_job_before_any_call() {
    on_each_backend(|backend| async move {
        let emulator = start_emulator().await;
        let mut spawn = Spawn::new(backend).no_workers();
        spawn.toml = format!("[policy.roles]\nSUPPORT = [\"agent\"]\n{}", named_departments());
        let app = spawn.start().await.unwrap();
        let hire_id = app.hire(&new_hire("ENG")).await;
        let data = json!({"externalId": "E-77", "workEmail": "sam@example.com", "departmentCode": "SUPPORT", "roles": ["agent"]});
        let (status, answer) = app.post_signed(SYNC, &json!({"event": "user.created", "data": data}), "sync-77").await;
        assert_eq!(status, 202, "{answer}");
        let sync_id: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
        let db = app.shutdown().await;

        // Restarted with a policy the hire's domain and the sync user's role no longer meet.
        let mut spawn = Spawn::new(backend).provisioning(&emulator).on_db(db);
        spawn.toml = format!("[policy]\nemail_domains = [\"example.org\"]\n{}", spawn.toml.replace(TEST_TOML, &named_departments()));
        let app = spawn.start().await.unwrap();
        let dead = app.wait_for_state(hire_id, "dead", Duration::from_secs(15)).await;
        assert_eq!(dead["attempts"], 1);
        let error = dead["lastError"].as_str().unwrap();
        assert!(error.starts_with("provisioning policy: SCIM_INVALID_EMAIL_DOMAIN (emails[0].value): Email domain example.com"), "{error}");
        let dead = app.wait_for_state(sync_id, "dead", Duration::from_secs(15)).await;
        let error = dead["lastError"].as_str().unwrap();
        assert!(error.contains("SCIM_INVALID_EMAIL_DOMAIN") && error.contains("POLICY_ROLE_DENIED"), "{error}");

        let lines = app.wait_for_audit_lines(Duration::from_secs(5), 2, |l| l["event"] == "policy.violation").await;
        let hire_line = lines.iter().find(|l| l["auditId"] == hire_id.to_string()).unwrap();
        assert_eq!(hire_line["status"], "failed");
        assert_eq!(hire_line["violations"][0]["code"], "SCIM_INVALID_EMAIL_DOMAIN");
        let sync_line = lines.iter().find(|l| l["auditId"] == sync_id.to_string()).unwrap();
        assert_eq!(sync_line["externalId"], "E-77");
        assert_eq!(sync_line["violations"][1]["message"], "Role agent is not in the approved list for department Support.");
        app.wait_for_audit_lines(Duration::from_secs(5), 2, |l| l["event"] == "job.dead_lettered").await;
        assert!(emulator.users().is_empty(), "nothing was created in Genesys");
        let writes: u64 = emulator
            .stats()
            .requests_by_route
            .iter()
            .filter(|(route, _)| !route.starts_with("GET") && !route.contains("oauth"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(writes, 0, "{:?}", emulator.stats().requests_by_route);
        app.shutdown().await;
    })
    .await;
}
