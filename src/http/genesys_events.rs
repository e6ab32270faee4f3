//! `POST /webhooks/genesys/events`: user events out of Genesys Cloud, as an AWS API destination
//! sends them (the EventBridge envelope, the Genesys notification in `detail`) or as an Architect
//! workflow's data action does (plain JSON). Authenticated by `GENESYS_EVENTS_SECRET` in the
//! configured header (constant time), stored as a job (202 only after the commit), idempotent by
//! the envelope's `id`, with the HR endpoints' error discipline.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{
    AppState, Endpoint, Event, Refusal, Refused, SignedWebhook, canonical_json, checked_event_id, enqueue_event,
};
use crate::error::ApiError;
use crate::lifecycle::{JobKind, Subject};

pub const ENDPOINT: &str = "/webhooks/genesys/events";

pub struct GenesysEventsRoute;

impl Endpoint for GenesysEventsRoute {
    const PATH: &'static str = ENDPOINT;
    type Body = Value;
    /// No id header: the id is the envelope's (an audit line of a refusal names none).
    const ID_HEADER: HeaderName = HeaderName::from_static("x-genesys-event-id");

    fn authenticate(state: &AppState, headers: &HeaderMap, _body: &[u8]) -> Result<Option<String>, Refusal> {
        let config = &state.config.genesys_events;
        let presented = headers.get(&config.secret_header).map(|v| v.as_bytes());
        // Not configured is refused like a wrong secret: the answer does not say which it was.
        let ok = presented.is_some_and(|p| config.secret.as_ref().is_some_and(|s| s.matches(p)));
        match ok {
            true => Ok(None),
            false => Err(Refusal::unauthenticated(ApiError::Unauthorized(format!(
                "Missing or invalid {} header",
                config.secret_header
            )))),
        }
    }
}

/// What is stored of one delivery: its id, the topic and the Genesys event body.
#[derive(Debug, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub topic: Option<String>,
    pub event_body: Value,
    /// `eventbridge` (an envelope) or `workflow` (plain JSON).
    pub route: &'static str,
}

/// Reads a delivery: the EventBridge envelope (tolerating a `detail` that is the event body alone,
/// as an input transformer may leave it), or a workflow's plain JSON (`{topicName?, eventBody}` or
/// the event body itself). The id is the envelope's, else the event body's (the audit event's id).
pub fn read_delivery(body: &Value) -> Result<Delivery, String> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let (route, notification) = match body.get("detail") {
        Some(detail) if detail.is_object() => ("eventbridge", detail),
        Some(_) => return Err("detail is not an object".to_string()),
        None => ("workflow", body),
    };
    let event_body = notification.get("eventBody").unwrap_or(notification).clone();
    if !event_body.is_object() {
        return Err("the event body is not an object".to_string());
    }
    let topic = text(notification, "topicName").or_else(|| text(body, "detail-type"));
    let id = match route {
        "eventbridge" => text(body, "id"),
        _ => text(&event_body, "id").or_else(|| text(body, "id")),
    }
    .filter(|id| !id.trim().is_empty())
    .ok_or_else(|| "Missing event id: the envelope's id (or the event body's id)".to_string())?;
    let id = checked_event_id(id)?;
    Ok(Delivery { id, topic, event_body, route })
}

/// One delivery of a Genesys event: stored as a job, then acknowledged.
#[utoipa::path(
    post,
    path = "/webhooks/genesys/events",
    tag = "intake",
    request_body(content = Object, content_type = "application/json", description = "The EventBridge envelope, or a workflow's JSON"),
    responses(
        (status = 202, description = "Stored as a job (a repeated delivery gets the same answer)", body = super::openapi::Queued),
        (status = 400, description = "Malformed JSON, no event id, or no event body", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong shared secret header", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = crate::error::ErrorBody),
        (status = 409, description = "The event id was already used for a different event", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json (or application/*+json)", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable or the service is stopping: retry", body = crate::error::ErrorBody),
    ),
    security(("events_secret" = []))
)]
pub async fn genesys_event(
    State(state): State<AppState>,
    webhook: SignedWebhook<GenesysEventsRoute>,
) -> Result<Response, Refused> {
    let delivery = read_delivery(&webhook.body).map_err(|e| webhook.refuse(ApiError::BadRequest(e)))?;
    let payload = json!({"topicName": delivery.topic, "route": delivery.route, "eventBody": delivery.event_body});
    let mut content = Vec::new();
    canonical_json(&webhook.body, &mut content);
    let event = Event {
        kind: JobKind::GenesysEvent,
        webhook_id: delivery.id.clone(),
        payload: payload.to_string(),
        content: &content,
        derived_id: false,
    };
    match enqueue_event(&state, ENDPOINT, event, Subject::default()).await {
        Ok(enqueued) => {
            state.wake.notify_waiters();
            Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued", "auditId": enqueued.audit_id}))).into_response())
        }
        Err(conflict @ ApiError::Conflict(_)) => Err(Refused::answered(conflict)),
        Err(e) => Err(webhook.refuse(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::read_delivery;
    use serde_json::json;

    #[test]
    fn the_envelope_a_cut_detail_and_a_workflow_body_are_read_alike() {
        let body = json!({"id": "a1", "userId": "u"});
        let full = json!({"version": "0", "id": "env-1", "detail-type": "v2.audits.entitytype.User.entityid.x",
            "detail": {"topicName": "v2.audits.entitytype.User.entityid.x", "eventBody": body, "metadata": {}}});
        let d = read_delivery(&full).unwrap();
        assert_eq!((d.id.as_str(), d.route, &d.event_body), ("env-1", "eventbridge", &body));
        assert_eq!(d.topic.as_deref(), Some("v2.audits.entitytype.User.entityid.x"));
        let cut = json!({"id": "env-2", "detail-type": "t", "detail": body});
        let d = read_delivery(&cut).unwrap();
        assert_eq!((d.id.as_str(), d.topic.as_deref(), &d.event_body), ("env-2", Some("t"), &body));
        let workflow = json!({"topicName": "t", "eventBody": body});
        let d = read_delivery(&workflow).unwrap();
        assert_eq!((d.id.as_str(), d.route), ("a1", "workflow"));
        assert!(read_delivery(&json!({"detail": {"eventBody": {}}})).unwrap_err().contains("Missing event id"));
        assert!(read_delivery(&json!({"id": "x", "detail": 3})).is_err());
    }
}
