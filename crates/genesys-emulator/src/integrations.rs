//! The two ways Genesys Cloud sends events out, as far as registering them goes: the integrations
//! API (create, config get/put, enable by PATCH, list, get, delete) and the Process Automation
//! triggers API (CRUD, and the topic list offered to triggers). Every body is checked against its
//! model (`CreateIntegrationRequest`, `IntegrationConfiguration`, `Integration`, `Trigger`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::models;
use crate::store::Fail;

type St = State<Arc<Shared>>;

/// The topics the emulator's org offers to triggers: like a real org's, without the user audit
/// topic (genesys-api.md: that one goes out through EventBridge only).
pub const DEFAULT_TRIGGER_TOPICS: &[&str] = &[
    "v2.detail.events.conversation.{id}.customer.start",
    "v2.detail.events.conversation.{id}.customer.end",
    "v2.detail.events.conversation.{id}.acw",
    "v2.users.{id}.presence",
];

/// Registrations held by the emulator.
#[derive(Default)]
pub(crate) struct Registrations {
    /// Each integration as `GET /api/v2/integrations/{id}` shows it, and its current config.
    integrations: Vec<(Value, Value)>,
    triggers: Vec<Value>,
}

impl Registrations {
    /// The enabled EventBridge integrations' configs and the enabled triggers.
    pub(crate) fn enabled(&self) -> (Vec<Value>, Vec<Value>) {
        let integrations =
            self.integrations.iter().filter(|(i, _)| i["intendedState"] == "ENABLED").map(|(_, c)| c.clone()).collect();
        let triggers = self.triggers.iter().filter(|t| t["enabled"] == true).cloned().collect();
        (integrations, triggers)
    }
}

fn fail(f: &Fail) -> Response {
    crate::server::fail(f)
}

fn parse(body: &Bytes, model: &str) -> Result<Value, Fail> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Fail::bad(Some("invalidSyntax"), format!("not JSON: {e}")))?;
    let found = models::validate(model, &value);
    if !found.is_empty() {
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        return Err(Fail::bad(Some("invalidValue"), text.join("; ")));
    }
    Ok(value)
}

fn not_found(what: &str, id: &str) -> Response {
    fail(&Fail::new(404, None, format!("no {what} with id {id}")))
}

fn registrations(shared: &Shared) -> std::sync::MutexGuard<'_, Registrations> {
    shared.registrations.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) async fn list_integrations(State(shared): St) -> Response {
    let entities: Vec<Value> = registrations(&shared).integrations.iter().map(|(i, _)| i.clone()).collect();
    Json(json!({"entities": entities, "pageSize": 100, "pageNumber": 1, "total": entities.len()})).into_response()
}

pub(crate) async fn create_integration(
    State(shared): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    let request = match parse(&body, "CreateIntegrationRequest") {
        Ok(v) => v,
        Err(f) => return fail(&f),
    };
    let (Some(name), Some(kind)) = (request["name"].as_str(), request["integrationType"]["id"].as_str()) else {
        return fail(&Fail::bad(Some("invalidValue"), "name and integrationType.id are required"));
    };
    let id = uuid::Uuid::new_v4().to_string();
    let integration = json!({
        "id": id, "name": name, "integrationType": {"id": kind}, "intendedState": "DISABLED",
        "selfUri": format!("/api/v2/integrations/{id}"),
    });
    let config = json!({"id": id, "name": name, "version": 1, "properties": {}, "advanced": {}, "notes": "",
                        "credentials": {}, "selfUri": format!("/api/v2/integrations/{id}/config/current")});
    registrations(&shared).integrations.push((integration.clone(), config));
    (StatusCode::CREATED, Json(integration)).into_response()
}

pub(crate) async fn get_integration(State(shared): St, Path(id): Path<String>) -> Response {
    match registrations(&shared).integrations.iter().find(|(i, _)| i["id"] == id.as_str()) {
        Some((i, _)) => Json(i.clone()).into_response(),
        None => not_found("integration", &id),
    }
}

pub(crate) async fn patch_integration(
    State(shared): St,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    let patch = match parse(&body, "Integration") {
        Ok(v) => v,
        Err(f) => return fail(&f),
    };
    let mut held = registrations(&shared);
    let Some((integration, _)) = held.integrations.iter_mut().find(|(i, _)| i["id"] == id.as_str()) else {
        return not_found("integration", &id);
    };
    if let Some(state) = patch.get("intendedState").and_then(Value::as_str) {
        integration["intendedState"] = json!(state);
    }
    Json(integration.clone()).into_response()
}

pub(crate) async fn delete_integration(State(shared): St, Path(id): Path<String>) -> Response {
    let mut held = registrations(&shared);
    let before = held.integrations.len();
    held.integrations.retain(|(i, _)| i["id"] != id.as_str());
    if held.integrations.len() == before {
        return not_found("integration", &id);
    }
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) async fn get_config(State(shared): St, Path(id): Path<String>) -> Response {
    match registrations(&shared).integrations.iter().find(|(i, _)| i["id"] == id.as_str()) {
        Some((_, c)) => Json(c.clone()).into_response(),
        None => not_found("integration", &id),
    }
}

/// `PUT .../config/current`: the `version` sent must be the current one (Genesys answers 409
/// otherwise); the new config gets the next version.
pub(crate) async fn put_config(
    State(shared): St,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    let sent = match parse(&body, "IntegrationConfiguration") {
        Ok(v) => v,
        Err(f) => return fail(&f),
    };
    let mut held = registrations(&shared);
    let Some((_, config)) = held.integrations.iter_mut().find(|(i, _)| i["id"] == id.as_str()) else {
        return not_found("integration", &id);
    };
    let current = config["version"].as_i64().unwrap_or(1);
    if sent.get("version").and_then(Value::as_i64) != Some(current) {
        return fail(&Fail::new(409, None, format!("version must be the current config's version {current}")));
    }
    for key in ["name", "properties", "advanced", "notes", "credentials"] {
        if let Some(v) = sent.get(key) {
            config[key] = v.clone();
        }
    }
    config["version"] = json!(current + 1);
    Json(config.clone()).into_response()
}

pub(crate) async fn trigger_topics(State(shared): St) -> Response {
    let entities: Vec<Value> =
        shared.trigger_topics.iter().map(|t| json!({"id": t, "description": format!("{t} events")})).collect();
    Json(json!({"entities": entities})).into_response()
}

pub(crate) async fn list_triggers(State(shared): St) -> Response {
    let entities = registrations(&shared).triggers.clone();
    Json(json!({"entities": entities})).into_response()
}

/// A trigger body checked beyond its model: its topic must be offered, its target a workflow.
fn check_trigger(shared: &Shared, body: &Bytes) -> Result<Value, Fail> {
    let trigger = parse(body, "Trigger")?;
    let topic = trigger["topicName"].as_str().unwrap_or_default();
    if !shared.trigger_topics.iter().any(|t| t == topic) {
        return Err(Fail::bad(Some("invalidValue"), format!("topicName {topic:?} is not available to triggers")));
    }
    if trigger["target"]["type"] != "Workflow" || trigger["target"]["id"].as_str().is_none_or(str::is_empty) {
        return Err(Fail::bad(Some("invalidValue"), "target must be {type: Workflow, id}"));
    }
    if trigger["name"].as_str().is_none_or(str::is_empty) {
        return Err(Fail::bad(Some("invalidValue"), "name is required"));
    }
    Ok(trigger)
}

pub(crate) async fn create_trigger(
    State(shared): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    let mut trigger = match check_trigger(&shared, &body) {
        Ok(v) => v,
        Err(f) => return fail(&f),
    };
    let id = uuid::Uuid::new_v4().to_string();
    trigger["id"] = json!(id);
    trigger["version"] = json!(1);
    trigger["selfUri"] = json!(format!("/api/v2/processautomation/triggers/{id}"));
    registrations(&shared).triggers.push(trigger.clone());
    (StatusCode::OK, Json(trigger)).into_response()
}

pub(crate) async fn get_trigger(State(shared): St, Path(id): Path<String>) -> Response {
    match registrations(&shared).triggers.iter().find(|t| t["id"] == id.as_str()) {
        Some(t) => Json(t.clone()).into_response(),
        None => not_found("trigger", &id),
    }
}

pub(crate) async fn update_trigger(
    State(shared): St,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    let mut sent = match check_trigger(&shared, &body) {
        Ok(v) => v,
        Err(f) => return fail(&f),
    };
    let mut held = registrations(&shared);
    let Some(trigger) = held.triggers.iter_mut().find(|t| t["id"] == id.as_str()) else {
        return not_found("trigger", &id);
    };
    let current = trigger["version"].as_i64().unwrap_or(1);
    if sent.get("version").and_then(Value::as_i64) != Some(current) {
        return fail(&Fail::new(409, None, format!("version must be the trigger's current version {current}")));
    }
    sent["id"] = json!(id);
    sent["version"] = json!(current + 1);
    sent["selfUri"] = trigger["selfUri"].clone();
    *trigger = sent;
    Json(trigger.clone()).into_response()
}

pub(crate) async fn delete_trigger(State(shared): St, Path(id): Path<String>) -> Response {
    let mut held = registrations(&shared);
    let before = held.triggers.len();
    held.triggers.retain(|t| t["id"] != id.as_str());
    if held.triggers.len() == before {
        return not_found("trigger", &id);
    }
    StatusCode::NO_CONTENT.into_response()
}
