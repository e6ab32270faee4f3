//! Genesys user events: registering the subscription (`/admin/register-webhook`, the
//! `register-webhook` command) against the emulator's integrations and triggers APIs.

use genesys_emulator::{Emulator, EmulatorConfig};
use reqwest::Method;
use serde_json::json;

use crate::common::process::{bin_cli_env, cli};
use crate::common::*;

pub const EVENTS_SECRET: &str = "events-api-key-0123456789";

pub fn eventbridge_toml(region: &str) -> String {
    format!(
        "[genesys_events]\nroute = \"eventbridge\"\nname = \"provisioner events\"\naws_account_id = \"123456789012\"\n\
         aws_region = \"{region}\"\nevent_source_suffix = \"provisioner\"\n\
         callback_url = \"https://provisioner.example.com/webhooks/genesys/events\"\n"
    )
}

pub fn trigger_toml(topic: &str) -> String {
    format!(
        "[genesys_events]\nroute = \"process-automation\"\nname = \"provisioner trigger\"\n\
         workflow_id = \"5f0b3c4e-1111-2222-3333-444455556666\"\ntopic_name = \"{topic}\"\n\
         match_criteria = [{{ jsonPath = \"mediaType\", operator = \"Equal\", value = \"VOICE\" }}]\n"
    )
}

async fn app_with(emulator: &Emulator, toml: &str) -> TestApp {
    Spawn::new(Backend::Sqlite)
        .provisioning(emulator)
        .env("GENESYS_EVENTS_SECRET", EVENTS_SECRET)
        .toml(toml)
        .start()
        .await
        .unwrap()
}

fn writes(emulator: &Emulator) -> Vec<String> {
    emulator.received().iter().map(|r| format!("{} {}", r.method, r.path)).collect()
}

#[tokio::test]
async fn eventbridge_registers_created_then_unchanged_then_updated_and_can_be_shown_and_removed() {
    let emulator = start_emulator().await;
    let app = app_with(&emulator, &eventbridge_toml("eu-west-1")).await;
    let (status, first) = app.admin(Method::POST, "/admin/register-webhook").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "created");
    let id = first["ids"]["integrationId"].as_str().unwrap().to_string();
    assert_eq!(
        writes(&emulator),
        [
            "POST /api/v2/integrations".to_string(),
            format!("PUT /api/v2/integrations/{id}/config/current"),
            format!("PATCH /api/v2/integrations/{id}"),
        ]
    );
    let (status, second) = app.admin(Method::POST, "/admin/register-webhook").await;
    assert_eq!((status, &second["status"]), (200, &json!("unchanged")), "{second}");
    assert_eq!(second["ids"]["integrationId"], id.as_str());
    assert_eq!(writes(&emulator).len(), 3, "unchanged writes nothing");
    let (status, shown) = app.admin_get("/admin/register-webhook").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["topics"], json!(["v2.audits.entitytype.User.entityid.{id}"]));
    assert_eq!(shown["properties"]["awsAccountRegion"], "eu-west-1");
    app.shutdown().await;

    // Another region in the config: the integration's config is updated, not a second one made.
    let app = app_with(&emulator, &eventbridge_toml("us-east-1")).await;
    let (status, third) = app.admin(Method::POST, "/admin/register-webhook").await;
    assert_eq!((status, &third["status"]), (200, &json!("updated")), "{third}");
    assert_eq!(third["differences"], json!(["properties.awsAccountRegion"]));
    assert_eq!(third["ids"]["integrationId"], id.as_str());
    let (_, shown) = app.admin_get("/admin/register-webhook").await;
    assert_eq!(shown["properties"]["awsAccountRegion"], "us-east-1");
    assert_eq!(shown["configVersion"], 3, "created at 1, configured at 2, updated at 3");
    let (status, removed) = app.admin(Method::DELETE, "/admin/register-webhook").await;
    assert_eq!((status, &removed["ids"]["integrationId"]), (200, &json!(id)), "{removed}");
    let (status, _) = app.admin_get("/admin/register-webhook").await;
    assert_eq!(status, 404);
    let (status, _) = app.admin(Method::DELETE, "/admin/register-webhook").await;
    assert_eq!(status, 404);
    app.shutdown().await;
}

#[tokio::test]
async fn process_automation_refuses_a_topic_the_org_does_not_offer_and_suggests_eventbridge() {
    let emulator = start_emulator().await;
    let app = app_with(&emulator, &trigger_toml("v2.audits.entitytype.User.entityid.{id}")).await;
    let (status, answer) = app.admin(Method::POST, "/admin/register-webhook").await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("v2.audits.entitytype.User.entityid.{id}") && error.contains("eventbridge"), "{error}");
    assert!(writes(&emulator).is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn process_automation_creates_a_trigger_then_finds_it_unchanged_then_updates_it() {
    let emulator = start_emulator().await;
    let topic = genesys_emulator::DEFAULT_TRIGGER_TOPICS[0];
    let app = app_with(&emulator, &trigger_toml(topic)).await;
    let (status, first) = app.admin(Method::POST, "/admin/register-webhook").await;
    assert_eq!((status, &first["status"]), (201, &json!("created")), "{first}");
    let id = first["ids"]["triggerId"].as_str().unwrap().to_string();
    let (status, second) = app.admin(Method::POST, "/admin/register-webhook").await;
    assert_eq!((status, &second["status"]), (200, &json!("unchanged")), "{second}");
    let (_, shown) = app.admin_get("/admin/register-webhook").await;
    assert_eq!((&shown["enabled"], &shown["topics"]), (&json!(true), &json!([topic])), "{shown}");
    app.shutdown().await;
    let other = genesys_emulator::DEFAULT_TRIGGER_TOPICS[1];
    let app = app_with(&emulator, &trigger_toml(other)).await;
    let (status, third) = app.admin(Method::POST, "/admin/register-webhook").await;
    assert_eq!((status, &third["status"]), (200, &json!("updated")), "{third}");
    assert_eq!(third["differences"], json!(["topicName"]));
    assert_eq!(third["ids"]["triggerId"], id.as_str());
    assert_eq!(
        writes(&emulator),
        ["POST /api/v2/processautomation/triggers".to_string(), format!("PUT /api/v2/processautomation/triggers/{id}")]
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_answers_the_calls_it_would_make_and_makes_none() {
    let emulator = start_emulator().await;
    let app = app_with(&emulator, &eventbridge_toml("eu-west-1")).await;
    let (status, plan) = app.admin(Method::POST, "/admin/register-webhook?dryRun=true").await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!((&plan["status"], &plan["dryRun"]), (&json!("created"), &json!(true)));
    let calls: Vec<String> = plan["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["method"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [
            "POST /api/v2/integrations",
            "PUT /api/v2/integrations/{new integration id}/config/current",
            "PATCH /api/v2/integrations/{new integration id}"
        ]
    );
    assert_eq!(
        plan["calls"][1]["body"]["properties"]["eventFilter"],
        json!(["v2.audits.entitytype.User.entityid.{id}"])
    );
    assert!(writes(&emulator).is_empty(), "a dry run writes nothing");
    let (status, _) = app.admin_get("/admin/register-webhook").await;
    assert_eq!(status, 404, "nothing was registered");
    app.shutdown().await;
}

#[tokio::test]
async fn registering_needs_the_admin_token_and_a_genesys_events_section() {
    let emulator = start_emulator().await;
    let app = Spawn::new(Backend::Sqlite).provisioning(&emulator).start().await.unwrap();
    let resp = reqwest::Client::new().post(app.url("/admin/register-webhook")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (status, answer) = app.admin(Method::POST, "/admin/register-webhook").await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("[genesys_events]"));
    app.shutdown().await;
}

/// The command: `--dry-run` prints the calls and the AWS side and changes nothing; without it,
/// the registration is made, and a second run finds it unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_webhook_command_prints_its_calls_and_the_aws_side() {
    let emulator = Emulator::start(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig {
            client_id: EMULATOR_CLIENT_ID.into(),
            client_secret: EMULATOR_CLIENT_SECRET.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provisioner.toml");
    std::fs::write(&file, format!("{}\n{TEST_TOML}", eventbridge_toml("eu-west-1"))).unwrap();
    let base = emulator.base_url();
    let env = bin_cli_env(&base, EVENTS_SECRET);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = ["register-webhook", "--dry-run", "--config", file.to_str().unwrap()];
    let (code, out, err) = cli(&args, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dry run: created"), "{out}");
    assert!(out.contains(
            "POST /api/v2/integrations {\"name\":\"provisioner events\",\"integrationType\":{\"id\":\"amazon-eventbridge-source\"}}"
        ), "{out}");
    assert!(out.contains("aws.partner/genesys.com/cloud/<your Genesys org id>/provisioner"), "{out}");
    assert!(out.contains("\"ApiKeyName\": \"x-api-key\""), "{out}");
    assert!(out.contains("https://provisioner.example.com/webhooks/genesys/events"), "{out}");
    assert!(!out.contains(EVENTS_SECRET), "the key is never printed");
    assert!(emulator.received().is_empty(), "a dry run writes nothing");
    let (code, out, err) = cli(&args[..1].iter().chain(&args[2..]).copied().collect::<Vec<_>>(), &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("created: eventbridge"), "{out}");
    let (_, again, _) = cli(&["register-webhook", "--config", file.to_str().unwrap()], &env);
    assert!(again.starts_with("unchanged: eventbridge"), "{again}");
    assert_eq!(emulator.received().len(), 3);
}

const EVENTS: &str = "/webhooks/genesys/events";

/// An EventBridge delivery of a user audit event: `client` acted on user `user`.
fn envelope(id: &str, client: &str, user: &str) -> serde_json::Value {
    let topic = format!("v2.audits.entitytype.User.entityid.{user}");
    json!({
        "version": "0", "id": id, "detail-type": topic,
        "source": "aws.partner/genesys.com/cloud/org-1/provisioner", "account": "123456789012",
        "time": "2026-11-29T10:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": {"topicName": topic, "version": "2", "timestamp": "2026-11-29T10:00:00Z",
            "metadata": {"CorrelationId": "c-1"},
            "eventBody": {"id": format!("audit-{id}"), "userId": "admin-1", "clientId": {"id": client},
                "serviceName": "Directory", "eventTime": "2026-11-29T10:00:00Z", "action": "Update",
                "entityType": "User", "entity": {"id": user},
                "propertyChanges": [{"property": "title", "oldValues": ["Engineer"], "newValues": ["Boss"]}]}}
    })
}

async fn deliver(app: &TestApp, body: &serde_json::Value, secret: Option<&str>) -> (u16, serde_json::Value) {
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(secret) = secret {
        headers.push(("x-api-key", secret.to_string()));
    }
    app.post_raw(EVENTS, serde_json::to_vec(body).unwrap(), &headers).await
}

#[tokio::test]
async fn the_event_callback_refuses_a_missing_or_wrong_secret() {
    let emulator = start_emulator().await;
    let app = app_with(&emulator, &eventbridge_toml("eu-west-1")).await;
    let body = envelope("env-401", "someone", "u-1");
    for secret in [None, Some("not-the-events-api-key"), Some(&EVENTS_SECRET[..EVENTS_SECRET.len() - 1])] {
        let (status, answer) = deliver(&app, &body, secret).await;
        assert_eq!(status, 401, "{secret:?}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("x-api-key"), "{answer}");
    }
    let stored: u64 = app.store.counts_by_state().await.unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(stored, 0, "nothing stored");
    app.shutdown().await;
}

#[tokio::test]
async fn a_duplicated_delivery_makes_one_job_and_an_echo_is_told_from_an_outside_change() {
    let emulator = start_emulator().await;
    let app = app_with(&emulator, &eventbridge_toml("eu-west-1")).await;
    let outside = envelope("env-1", "someone-elses-client", "u-1");
    let (status, first) = deliver(&app, &outside, Some(EVENTS_SECRET)).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = deliver(&app, &outside, Some(EVENTS_SECRET)).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(first["auditId"], again["auditId"], "the same delivery is the same job");
    let id: uuid::Uuid = first["auditId"].as_str().unwrap().parse().unwrap();
    let job = app.wait_for_state(id, "succeeded", std::time::Duration::from_secs(15)).await;
    assert_eq!(job["kind"], "genesys.event");
    assert_eq!(job["result"]["action"], "outside_change", "{job}");
    assert_eq!(job["result"]["changedProperties"], json!(["title"]));
    // The same id with other content is a conflict, as for HR events.
    let (status, _) = deliver(&app, &envelope("env-1", "another", "u-2"), Some(EVENTS_SECRET)).await;
    assert_eq!(status, 409);
    // The service's own write comes back as an echo: recorded, nothing more.
    let (status, echo) = deliver(&app, &envelope("env-2", EMULATOR_CLIENT_ID, "u-1"), Some(EVENTS_SECRET)).await;
    assert_eq!(status, 202, "{echo}");
    let id: uuid::Uuid = echo["auditId"].as_str().unwrap().parse().unwrap();
    let job = app.wait_for_state(id, "succeeded", std::time::Duration::from_secs(15)).await;
    assert_eq!(job["result"]["action"], "echo", "{job}");
    // A workflow's plain JSON is read too, keyed by the audit event's id.
    let workflow = json!({"topicName": "v2.audits.entitytype.User.entityid.u-3",
        "eventBody": {"id": "audit-wf-1", "clientId": {"id": "x"}, "entity": {"id": "u-3"}}});
    let (status, answer) = deliver(&app, &workflow, Some(EVENTS_SECRET)).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = deliver(&app, &json!({"detail": {"eventBody": {}}}), Some(EVENTS_SECRET)).await;
    assert_eq!(status, 400, "{answer}");
    app.shutdown().await;
}

/// Another integration that happens to have the registration's name (a data action, say) is not
/// the service's: it is neither shown nor removed.
#[tokio::test]
async fn an_integration_of_another_type_with_the_same_name_is_left_alone() {
    let emulator = start_emulator().await;
    let http = reqwest::Client::new();
    let base = emulator.base_url();
    let token: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(EMULATOR_CLIENT_ID, Some(EMULATOR_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let other = json!({"name": "provisioner events", "integrationType": {"id": "purecloud-data-actions"}});
    let made = http.post(format!("{base}/api/v2/integrations")).bearer_auth(token).json(&other).send().await.unwrap();
    assert_eq!(made.status().as_u16(), 201);

    let app = app_with(&emulator, &eventbridge_toml("eu-west-1")).await;
    let (status, _) = app.admin_get("/admin/register-webhook").await;
    assert_eq!(status, 404, "the data action is not the registration");
    let (status, _) = app.admin(Method::DELETE, "/admin/register-webhook").await;
    assert_eq!(status, 404);
    let list: serde_json::Value =
        http.get(format!("{base}/api/v2/integrations")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["entities"].as_array().map(Vec::len), Some(1), "the data action is still there: {list}");
    app.shutdown().await;
}
