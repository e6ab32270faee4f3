//! `POST /webhook/scim-validation`: the validation webhook. A caller (a Genesys data action, an API
//! destination, a provisioning tool) asks whether a SCIM user complies with the provisioning
//! policy; the answer is the contract of seed 002, kept exactly:
//!
//! - `eventType` other than `user.created`: 200 `OK` (ignored);
//! - a user that violates the policy: 400 `{webhookId, eventType, eventTimestamp, status: "REJECTED",
//!   errorCode: "PROVISIONING_POLICY_VIOLATION", violations, timestamp}`;
//! - a user that complies: 200 `{status: "ACCEPTED", webhookId}`.
//!
//! The caller is authenticated first (a shared secret in a header, compared in constant time, or a
//! Standard Webhooks signature); nothing is judged for an unauthenticated one (401). Every decision
//! is a lifecycle event (`Event::Validated`), so the audit trail writes it. Nothing is stored.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{AppState, Endpoint, Refusal, Refused, SignedWebhook, checked_event_id};
use crate::error::ApiError;
use crate::genesys::types::{SCHEMA_ENTERPRISE, SCHEMA_GENESYS};
use crate::lifecycle::{Event, Validation, ValidationDecision};
use crate::policy::{UserView, Violation};
use crate::signing;

pub const ENDPOINT: &str = "/webhook/scim-validation";
/// The header that names the event (Genesys sends it with every webhook); echoed as `webhookId`.
pub const WEBHOOK_ID_HEADER: HeaderName = HeaderName::from_static("x-genesys-webhook-id");
/// The one event type that is judged.
pub const USER_CREATED: &str = "user.created";

/// The validation endpoint: a JSON body, its caller authenticated by `authenticate`.
pub struct ValidationRoute;

impl Endpoint for ValidationRoute {
    const PATH: &'static str = ENDPOINT;
    type Body = Value;
    const ID_HEADER: HeaderName = WEBHOOK_ID_HEADER;

    fn authenticate(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, Refusal> {
        authenticate(state, headers, body)
    }
}

/// The shared secret when the caller sends its header (then that alone decides), else a Standard
/// Webhooks signature. Returns the `x-genesys-webhook-id` header when sent.
fn authenticate(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, Refusal> {
    let config = &state.config.validation;
    let refused = |why: String| Refusal::unauthenticated(ApiError::Unauthorized(why));
    if let Some(presented) = headers.get(&config.secret_header) {
        // Not configured is refused like a wrong secret: the answer does not say which it was.
        if !config.shared_secret.as_ref().is_some_and(|secret| secret.matches(presented.as_bytes())) {
            return Err(refused(format!("Invalid {} header", config.secret_header)));
        }
    } else if headers.contains_key(&signing::SIGNATURE_HEADER) {
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let request = signing::SignedRequest {
            id: text(&signing::ID_HEADER),
            timestamp: text(&signing::TIMESTAMP_HEADER),
            signature: text(&signing::SIGNATURE_HEADER),
        };
        let now = chrono::Utc::now().timestamp();
        let tolerance = state.config.webhooks.timestamp_tolerance;
        signing::verify(&config.signing_secrets, &request, body, now, tolerance).map_err(|e| refused(e.to_string()))?;
    } else {
        return Err(refused(format!(
            "Missing credentials: send the {} header or a Standard Webhooks signature",
            config.secret_header
        )));
    }
    Ok(headers.get(&WEBHOOK_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).map(str::to_string))
}

/// 200 for a user that complies.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationAccepted {
    /// `ACCEPTED`.
    #[schema(example = "ACCEPTED")]
    pub status: String,
    /// The `x-genesys-webhook-id` header (absent when it was not sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
}

/// 400 for a user that violates the policy, its fields in the seed's order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationRejected {
    /// The `x-genesys-webhook-id` header (absent when it was not sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    #[schema(example = "user.created")]
    pub event_type: String,
    /// As sent.
    pub event_timestamp: String,
    /// `REJECTED`.
    #[schema(example = "REJECTED")]
    pub status: String,
    /// `PROVISIONING_POLICY_VIOLATION`.
    #[schema(example = "PROVISIONING_POLICY_VIOLATION")]
    pub error_code: String,
    /// Every violation, in the order of the rules.
    pub violations: Vec<Violation>,
    /// When the decision was made (RFC 3339, milliseconds, UTC).
    pub timestamp: String,
}

/// A webhook body read as far as the decision needs it.
struct ValidationEvent<'a> {
    event_type: &'a str,
    /// Set for `user.created` (then both are required).
    created: Option<(&'a str, &'a Value)>,
}

impl<'a> ValidationEvent<'a> {
    /// Reads the body; the error names the field, as the HR endpoints do.
    fn read(body: &'a Value) -> Result<Self, String> {
        let Value::Object(event) = body else { return Err("Request body must be a JSON object".to_string()) };
        let event_type = text(event, "eventType", "eventType")?.ok_or("Missing required fields: eventType")?;
        if event_type != USER_CREATED {
            return Ok(ValidationEvent { event_type, created: None });
        }
        let timestamp = text(event, "eventTimestamp", "eventTimestamp")?;
        let data = event.get("data").filter(|d| !d.is_null());
        let (Some(timestamp), Some(data)) = (timestamp, data) else {
            let missing: Vec<&str> = [("eventTimestamp", timestamp.is_none()), ("data", data.is_none())]
                .into_iter()
                .filter(|m| m.1)
                .map(|m| m.0)
                .collect();
            return Err(format!("Missing required fields: {}", missing.join(", ")));
        };
        check_user(data)?;
        Ok(ValidationEvent { event_type, created: Some((timestamp, data)) })
    }
}

/// `Invalid field <name>: expected <what>`, as the HR endpoints word it.
fn wrong(field: &str, expected: &str) -> String {
    format!("Invalid field {field}: expected {expected}")
}

/// A text attribute: absent (or null), or a string.
fn text<'a>(object: &'a Map<String, Value>, key: &str, field: &str) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong(field, "a string")),
    }
}

/// A list of objects: absent (or null), or an array whose every entry is an object that `entry`
/// accepts.
fn objects(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
    entry: impl Fn(&Map<String, Value>, &str) -> Result<(), String>,
) -> Result<(), String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => items.iter().enumerate().try_for_each(|(i, item)| {
            let at = format!("{field}[{i}]");
            item.as_object().ok_or_else(|| wrong(&at, "an object")).and_then(|o| entry(o, &at))
        }),
        Some(_) => Err(wrong(field, "an array")),
    }
}

/// `data` is a SCIM user whose attributes the policy reads have the types SCIM gives them; the
/// error names the first that does not (`data.emails[0].value`).
fn check_user(data: &Value) -> Result<(), String> {
    let Value::Object(user) = data else { return Err(wrong("data", "a JSON object (the SCIM user)")) };
    for key in ["id", "userName", "department", "costCenter"] {
        text(user, key, &format!("data.{key}"))?;
    }
    objects(user, "emails", "data.emails", |email, at| {
        text(email, "value", &format!("{at}.value"))?;
        text(email, "type", &format!("{at}.type"))?;
        match email.get("primary") {
            None | Some(Value::Null | Value::Bool(_)) => Ok(()),
            Some(_) => Err(wrong(&format!("{at}.primary"), "true or false")),
        }
    })?;
    objects(user, "roles", "data.roles", |role, at| text(role, "value", &format!("{at}.value")).map(drop))?;
    match user.get(SCHEMA_ENTERPRISE) {
        None | Some(Value::Null) => {}
        Some(Value::Object(ext)) => {
            for key in ["department", "costCenter"] {
                text(ext, key, &format!("data.{SCHEMA_ENTERPRISE}.{key}"))?;
            }
        }
        Some(_) => return Err(wrong(&format!("data.{SCHEMA_ENTERPRISE}"), "an object")),
    }
    match user.get(SCHEMA_GENESYS) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(ext)) => {
            objects(ext, "externalIds", &format!("data.{SCHEMA_GENESYS}.externalIds"), |id, at| {
                text(id, "authority", &format!("{at}.authority"))?;
                text(id, "value", &format!("{at}.value")).map(drop)
            })
        }
        Some(_) => Err(wrong(&format!("data.{SCHEMA_GENESYS}"), "an object")),
    }
}

/// Judges the SCIM user of a `user.created` event against the provisioning policy.
#[utoipa::path(
    post,
    path = "/webhook/scim-validation",
    tag = "validation",
    params(("x-genesys-webhook-id" = Option<String>, Header, description = "The Genesys webhook id, echoed as webhookId (at most 255 printable characters)")),
    request_body(content = super::openapi::ValidationEventDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "`user.created` with a compliant user: ACCEPTED (JSON); any other event type: `OK` (text), ignored",
            content((ValidationAccepted = "application/json"), (String = "text/plain", example = json!("OK")))),
        (status = 400, description = "The user violates the policy (REJECTED, every violation listed), or the body is malformed (the error shape, naming the field)", body = super::openapi::ValidationRefused),
        (status = 401, description = "No valid shared secret header and no valid Standard Webhooks signature: nothing was judged", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json (or application/*+json)", body = crate::error::ErrorBody),
    ),
    security(
        ("validation_secret" = []),
        ("webhook_id" = [], "webhook_timestamp" = [], "webhook_signature" = [])
    )
)]
pub async fn scim_validation(
    State(state): State<AppState>,
    webhook: SignedWebhook<ValidationRoute>,
) -> Result<Response, Refused> {
    let webhook_id = match webhook.header_id.clone() {
        None => None,
        Some(id) => Some(checked_event_id(id).map_err(|_| {
            webhook.refuse(ApiError::BadRequest(format!(
                "Invalid {WEBHOOK_ID_HEADER} header: at most 255 printable characters"
            )))
        })?),
    };
    let event = ValidationEvent::read(&webhook.body).map_err(|e| webhook.refuse(ApiError::BadRequest(e)))?;
    // The decision's SIEM record is committed before the answer leaves (`with_record`).
    let decided = |decision, timestamp, user: Option<&UserView<'_>>, scim_id, violations: &[Violation]| {
        let event = Event::Validated(Validation {
            endpoint: ENDPOINT,
            decision,
            webhook_id: webhook_id.as_deref(),
            event_type: event.event_type,
            event_timestamp: timestamp,
            scim_id,
            user_name: user.and_then(|u| u.user_name),
            department_code: user.and_then(|u| u.department).and_then(|d| state.config.policy.department_code(d)),
            violations,
        });
        let record = state.bus.record(&event);
        state.bus.emit(event);
        record
    };
    let Some((timestamp, data)) = event.created else {
        let record = decided(ValidationDecision::Ignored, None, None, None, &[]);
        let plain = HeaderValue::from_static("text/plain; charset=utf-8");
        return Ok(super::with_record((StatusCode::OK, [(header::CONTENT_TYPE, plain)], "OK").into_response(), record));
    };
    let user = UserView::of_json(data);
    let violations = state.config.policy.evaluate(&user);
    let scim_id = data.get("id").and_then(Value::as_str);
    if violations.is_empty() {
        let record = decided(ValidationDecision::Accepted, Some(timestamp), Some(&user), scim_id, &[]);
        let body = ValidationAccepted { status: "ACCEPTED".to_string(), webhook_id };
        return Ok(super::with_record((StatusCode::OK, Json(body)).into_response(), record));
    }
    let record = decided(ValidationDecision::Rejected, Some(timestamp), Some(&user), scim_id, violations.as_slice());
    let body = ValidationRejected {
        webhook_id,
        event_type: event.event_type.to_string(),
        event_timestamp: timestamp.to_string(),
        status: "REJECTED".to_string(),
        error_code: "PROVISIONING_POLICY_VIOLATION".to_string(),
        violations: violations.0,
        timestamp: crate::audit::now_rfc3339(),
    };
    Ok(super::with_record((StatusCode::BAD_REQUEST, Json(body)).into_response(), record))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_body_is_read_with_errors_that_name_the_field() {
        let read = |v: Value| ValidationEvent::read(&v).map(|e| (e.event_type.to_string(), e.created.is_some()));
        assert_eq!(read(json!({"eventType": "user.deleted"})), Ok(("user.deleted".into(), false)));
        let ok = json!({"eventType": "user.created", "eventTimestamp": "t", "data": {"userName": "a"}});
        assert_eq!(read(ok), Ok(("user.created".into(), true)));
        let err = |v: Value| ValidationEvent::read(&v).err().unwrap_or_default();
        assert_eq!(err(json!([])), "Request body must be a JSON object");
        assert_eq!(err(json!({})), "Missing required fields: eventType");
        assert_eq!(err(json!({"eventType": 3})), "Invalid field eventType: expected a string");
        assert_eq!(err(json!({"eventType": "user.created"})), "Missing required fields: eventTimestamp, data");
        let created = |data: Value| json!({"eventType": "user.created", "eventTimestamp": "t", "data": data});
        assert_eq!(err(created(json!("x"))), "Invalid field data: expected a JSON object (the SCIM user)");
        assert_eq!(err(created(json!({"userName": 1}))), "Invalid field data.userName: expected a string");
        assert_eq!(err(created(json!({"emails": {}}))), "Invalid field data.emails: expected an array");
        assert_eq!(
            err(created(json!({"emails": [{"value": "a"}, 1]}))),
            "Invalid field data.emails[1]: expected an object"
        );
        assert_eq!(
            err(created(json!({"emails": [{"value": "a", "primary": "yes"}]}))),
            "Invalid field data.emails[0].primary: expected true or false"
        );
        assert_eq!(
            err(created(json!({"roles": [{"value": 1}]}))),
            "Invalid field data.roles[0].value: expected a string"
        );
        assert_eq!(
            err(created(json!({SCHEMA_GENESYS: {"externalIds": [{"authority": "costCenter", "value": 12}]}}))),
            format!("Invalid field data.{SCHEMA_GENESYS}.externalIds[0].value: expected a string")
        );
    }
}
