//! The Genesys client on the wire. Golden tests of every body it sends (create user, PATCH user,
//! PATCH group), captured where they arrive (the emulator's log of received bodies) after the real
//! pipeline and client produced them, compared with `tests/golden/*.json` and held to the Genesys API
//! models with the emulator crate's validator (the pinned SDK models file): an attribute outside the
//! models, or a value outside an enum, fails them. `GOLDEN_BLESS=1` rewrites the golden files (a new
//! call, a deliberate change); the model check runs either way.

use std::path::PathBuf;
use std::time::Duration;

use genesys_emulator::models::{self, CREATE_USER, GROUP, USER};
use genesys_emulator::wire::{ScimMultiValue, ScimUser};
use genesys_emulator::{Emulator, EmulatorConfig, Received};
use genesys_provisioner::genesys::auth::Credentials;
use genesys_provisioner::genesys::{ClientSettings, GenesysClient};
use serde_json::{Value, json};

use crate::common::*;

const SYNC: &str = "/webhooks/directory-sync";

/// What the models say of one received body; empty when it keeps to them.
fn model_violations(r: &Received) -> Vec<String> {
    let users = r.path.starts_with("/api/v2/scim/v2/users");
    let groups = r.path.starts_with("/api/v2/scim/v2/groups");
    let integration = r.path.starts_with("/api/v2/integrations");
    let trigger = r.path.starts_with("/api/v2/processautomation/triggers");
    let found = match (r.method.as_str(), users, groups) {
        ("POST", ..) if integration => models::validate("CreateIntegrationRequest", &r.body),
        ("PUT", ..) if integration && r.path.ends_with("/config/current") => {
            models::validate("IntegrationConfiguration", &r.body)
        }
        ("PATCH", ..) if integration => models::validate("Integration", &r.body),
        ("POST" | "PUT", ..) if trigger => models::validate("Trigger", &r.body),
        ("POST", true, _) => models::validate(CREATE_USER, &r.body),
        ("PUT", true, _) => models::validate(USER, &r.body),
        ("PATCH", true, _) => models::validate_patch(USER, &r.body),
        ("PUT", _, true) => models::validate(GROUP, &r.body),
        ("PATCH", _, true) => models::validate_patch(GROUP, &r.body),
        _ => return vec![format!("{} {}: a body no golden test knows the model of", r.method, r.path)],
    };
    found.iter().map(|v| format!("{} {}: {v}", r.method, r.path)).collect()
}

/// `value` with every occurrence of each id replaced by its stand-in (ids are made up at run time).
fn with_stand_ins(value: &Value, ids: &[(String, String)]) -> Value {
    match value {
        Value::String(s) => Value::String(ids.iter().fold(s.clone(), |s, (id, name)| s.replace(id, name))),
        Value::Array(items) => Value::Array(items.iter().map(|v| with_stand_ins(v, ids)).collect()),
        Value::Object(obj) => Value::Object(obj.iter().map(|(k, v)| (k.clone(), with_stand_ins(v, ids))).collect()),
        other => other.clone(),
    }
}

/// Every body the emulator received, held to the models and compared with `tests/golden/NAME.json`
/// (user ids written as `<id of USERNAME>`).
fn assert_golden(name: &str, emulator: &Emulator) {
    let received = emulator.received();
    assert!(!received.is_empty(), "{name}: nothing was sent");
    let problems: Vec<String> = received.iter().flat_map(model_violations).collect();
    assert!(
        problems.is_empty(),
        "{name}: the client sent what the Genesys API models do not have:\n{}",
        problems.join("\n")
    );
    let mut ids: Vec<(String, String)> =
        emulator.users().into_iter().filter_map(|u| Some((u.id?, format!("<id of {}>", u.user_name)))).collect();
    let (integrations, triggers) = emulator.enabled_registrations();
    for (n, held) in integrations.iter().chain(&triggers).enumerate() {
        if let Some(id) = held["id"].as_str() {
            ids.push((id.to_string(), format!("<registration {n}>")));
        }
    }
    let sent = Value::Array(
        received
            .iter()
            .map(|r| with_stand_ins(&json!({"method": r.method, "path": r.path, "body": r.body}), &ids))
            .collect(),
    );
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.json"));
    if std::env::var_os("GOLDEN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&file, serde_json::to_string_pretty(&sent).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (GOLDEN_BLESS=1 writes it)", file.display()));
    let golden: Value = serde_json::from_str(&text).unwrap();
    assert!(
        sent == golden,
        "{name}: the client sent other bodies than {} (GOLDEN_BLESS=1 rewrites it after a deliberate change):\n{}",
        file.display(),
        serde_json::to_string_pretty(&sent).unwrap()
    );
}

fn seed(emulator: &Emulator, email: &str, external_id: Option<&str>) -> ScimUser {
    emulator.insert_user(ScimUser {
        user_name: email.into(),
        display_name: Some("Seeded User".into()),
        active: Some(true),
        external_id: external_id.map(str::to_string),
        title: Some("Engineer".into()),
        emails: vec![ScimMultiValue { value: email.into(), kind: Some("work".into()), primary: Some(true) }],
        ..Default::default()
    })
}

/// A new hire with every field the event has: the user create, then the group membership.
#[tokio::test]
async fn golden_new_hire_bodies() {
    let emulator = start_emulator().await;
    seed(&emulator, "maria.golden@example.com", None);
    let app = Spawn::new(Backend::Sqlite).provisioning(&emulator).start().await.unwrap();
    let event = json!({
        "id": "evt-golden-hire", "email": "ada.golden@example.com", "firstName": "Ada", "lastName": "Golden",
        "departmentCode": "ENG", "title": "Engineer", "hireDate": "2026-12-01", "employeeNumber": "E-4711",
        "phone": "+1 317 555 0142", "managerEmail": "maria.golden@example.com"
    });
    let id = app.hire(&event).await;
    app.wait_for_state(id, "succeeded", Duration::from_secs(15)).await;
    assert_golden("new-hire", &emulator);
    app.shutdown().await;
}

async fn sync(app: &TestApp, kind: &str, data: Value) {
    let id = format!("sync-{}", uuid::Uuid::new_v4().simple());
    let (status, answer) = app.post_signed(SYNC, &json!({"event": kind, "data": data}), &id).await;
    assert_eq!(status, 202, "{answer}");
    let audit_id: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
    app.wait_for_state(audit_id, "succeeded", Duration::from_secs(15)).await;
}

/// Directory sync: an update of every attribute it maps, a join, a move, a leaver, a new person.
#[tokio::test]
async fn golden_directory_sync_bodies() {
    let emulator = start_emulator().await;
    seed(&emulator, "sam.golden@example.com", Some("E-G1"));
    seed(&emulator, "boss.golden@example.com", Some("E-G0"));
    let app = Spawn::new(Backend::Sqlite).provisioning(&emulator).start().await.unwrap();
    let mut record = json!({
        "externalId": "E-G1", "firstName": "Sam", "lastName": "Roe", "workEmail": "sam.roe@example.com",
        "department": "Engineering", "jobTitle": "Staff Engineer", "employeeNumber": "1042",
        "hireDate": "2026-12-01", "workPhone": "+1 317 555 0199", "managerEmail": "boss.golden@example.com"
    });
    sync(&app, "user.updated", record.clone()).await;
    record["departmentCode"] = json!("ENG");
    sync(&app, "user.updated", record.clone()).await;
    record["departmentCode"] = json!("SALES");
    record["department"] = json!("Sales");
    sync(&app, "user.updated", record).await;
    sync(&app, "user.terminated", json!({"externalId": "E-G1"})).await;
    let joiner = json!({
        "externalId": "E-G2", "firstName": "Joy", "lastName": "Golden", "workEmail": "joy.golden@example.com",
        "department": "Sales", "departmentCode": "SALES", "jobTitle": "Account Executive", "hireDate": "2026-12-01"
    });
    sync(&app, "user.created", joiner).await;
    assert_golden("directory-sync", &emulator);
    app.shutdown().await;
}

fn client_of(emu: &Emulator) -> GenesysClient {
    GenesysClient::new(ClientSettings {
        api_url: emu.base_url(),
        credentials: Credentials {
            login_url: emu.base_url(),
            region: "mypurecloud.com".into(),
            client_id: "emulator-client".into(),
            client_secret: "emulator-secret".to_string().into(),
        },
        requests_per_minute: 60_000,
        token_refresh_margin: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
        max_inline_wait: Duration::from_secs(1),
        transient_retries: 2,
    })
    .unwrap()
}

/// The golden tests' model check is not a formality: a body with `name` (which Genesys does not
/// have), or with a value outside an enum, sent through the real client, is caught by it.
#[tokio::test]
async fn the_golden_check_fails_on_name_and_on_a_wrong_enum_value() {
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), EmulatorConfig::default()).await.unwrap();
    let client = client_of(&emu);
    let named = json!({"userName": "a@example.com", "displayName": "A", "name": {"givenName": "A"}});
    let home = json!({"userName": "b@example.com", "displayName": "B", "emails": [{"value": "b@example.com", "type": "home"}]});
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.familyName", "value": "Roe"}]});
    for body in [&named, &home] {
        let refused = client.send(reqwest::Method::POST, "/api/v2/scim/v2/users", Some(body), None).await;
        assert_eq!(refused.unwrap_err().status(), Some(400), "the emulator refuses it too");
    }
    let _ = client.send(reqwest::Method::PATCH, "/api/v2/scim/v2/users/u-1", Some(&patch), None).await;
    let received = emu.received();
    assert_eq!(received.len(), 3);
    let found: Vec<Vec<String>> = received.iter().map(model_violations).collect();
    assert_eq!(found[0], ["POST /api/v2/scim/v2/users: name: not an attribute of ScimV2CreateUser"]);
    assert_eq!(found[1], ["POST /api/v2/scim/v2/users: emails.type: \"home\" is not one of work, other"]);
    assert_eq!(found[2], ["PATCH /api/v2/scim/v2/users/u-1: name: not an attribute of ScimV2User"]);
}

#[tokio::test]
async fn a_request_that_cannot_be_built_is_a_permanent_failure_not_an_outage() {
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), EmulatorConfig::default()).await.unwrap();
    let client = client_of(&emu);
    // A filter value of 100 KB: no URL that long can be sent.
    let huge = "x".repeat(100 * 1024);
    let error = client.find_users(&format!("userName eq \"{huge}\"")).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(!error.to_string().contains("unreachable"), "{error}");
    assert!(error.to_string().len() < 1000, "the error does not carry the whole URL");
    assert_eq!(client.stats.retried.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// Registering on both routes: the integration's create, config and enable, a config update; the
/// trigger's create and update. Each body is held to its model (`CreateIntegrationRequest`,
/// `IntegrationConfiguration`, `Integration`, `Trigger`).
#[tokio::test]
async fn golden_register_webhook_bodies() {
    use crate::events::{eventbridge_toml, trigger_toml};
    for (name, first, second) in [
        ("register-eventbridge", eventbridge_toml("eu-west-1"), eventbridge_toml("us-east-1")),
        (
            "register-trigger",
            trigger_toml(genesys_emulator::DEFAULT_TRIGGER_TOPICS[0]),
            trigger_toml(genesys_emulator::DEFAULT_TRIGGER_TOPICS[1]),
        ),
    ] {
        let emulator = start_emulator().await;
        for toml in [first, second] {
            let app = Spawn::new(Backend::Sqlite)
                .provisioning(&emulator)
                .env("GENESYS_EVENTS_SECRET", crate::events::EVENTS_SECRET)
                .toml(&toml)
                .start()
                .await
                .unwrap();
            let (status, answer) = app.admin(reqwest::Method::POST, "/admin/register-webhook").await;
            assert!(status == 200 || status == 201, "{answer}");
            app.shutdown().await;
        }
        assert_golden(name, &emulator);
    }
}
