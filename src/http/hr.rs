//! `POST /webhooks/hr/user-created`: a new hire, stored as a job before it is acknowledged.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::{AppState, Event, Refusal, SignedBody, check_lengths, enqueue_event, event_id, refuse, verify_signed};
use crate::error::ApiError;
use crate::lifecycle::{JobKind, Subject};
use crate::pipeline::new_hire::{SentHire, UnreadableHire};

const ENDPOINT: &str = "/webhooks/hr/user-created";

/// The most characters of each new-hire text field: emails as the email rule allows (RFC 5321's
/// 254), the event id as `event_id` does, the rest a generous bound for names and identifiers.
const FIELD_LIMITS: &[(&str, usize)] = &[
    ("email", 254),
    ("managerEmail", 254),
    ("id", 255),
    ("employeeId", 256),
    ("employeeNumber", 256),
    ("firstName", 256),
    ("lastName", 256),
    ("departmentCode", 256),
    ("title", 256),
    ("phone", 256),
    ("hireDate", 256),
];

/// The 202 answer, `{"status":"provisioning_queued","auditId":"..."}`: a UUID needs no escaping, so
/// the text is put together directly.
fn queued(audit_id: Uuid) -> Response {
    let mut id = Uuid::encode_buffer();
    let body = [r#"{"status":"provisioning_queued","auditId":""#, audit_id.hyphenated().encode_lower(&mut id), r#""}"#]
        .concat();
    (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// A new hire: stored as a provisioning job, then acknowledged.
#[utoipa::path(
    post,
    path = "/webhooks/hr/user-created",
    tag = "intake",
    request_body(content = super::openapi::NewHireDoc, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored as a job (a retry of the same event gets the same answer)", body = super::openapi::Queued),
        (status = 400, description = "Malformed JSON, a missing or invalid field, or no event id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, stale or wrong signature", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json (or application/*+json)", body = crate::error::ErrorBody),
        (status = 409, description = "The event id was already used for a different event", body = crate::error::ErrorBody),
        (status = 422, description = "The department code is not configured", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable or the service is stopping: retry", body = crate::error::ErrorBody),
    ),
    security(("webhook_id" = [], "webhook_timestamp" = [], "webhook_signature" = []))
)]
pub async fn user_created(State(state): State<AppState>, request: Request) -> Response {
    // The request taken apart rather than its headers extracted: that extractor copies the header map.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let SignedBody { bytes, header_id } = match verify_signed(&state, headers, body).await {
        Ok(b) => b,
        Err(refusal) => return refuse(&state, ENDPOINT, &parts, refusal, Subject::default()),
    };
    // The body is read once, straight into its fields; the job's payload is written from them.
    let mut sent = match SentHire::read(&bytes) {
        Ok(sent) => sent,
        Err(e) => {
            let error = match e {
                UnreadableHire::Malformed(_) => ApiError::BadRequest(e.to_string()),
                // A body that is JSON but not an object has no `id`: a missing or invalid event id
                // is reported first, as for any other body.
                UnreadableHire::Invalid(invalid) => match event_id(header_id.as_deref(), None) {
                    Err(no_id) => no_id,
                    Ok(_) => ApiError::BadRequest(invalid.to_string()),
                },
            };
            return refuse(&state, ENDPOINT, &parts, Refusal::from(error), Subject::default());
        }
    };
    if let Err(e) = check_lengths(FIELD_LIMITS, "", |name| sent.text(name)) {
        return refuse(&state, ENDPOINT, &parts, Refusal::from(ApiError::BadRequest(e)), Subject::default());
    }
    let parsed = event_id(header_id.as_deref(), sent.text("id")).and_then(|id| {
        let hire = sent.check().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if state.config.departments.get(&hire.department_code).is_none() {
            return Err(ApiError::Unprocessable(format!("Unmapped department code: {}", hire.department_code)));
        }
        Ok((id, hire))
    });
    let subject = Subject::person(sent.text("email"), sent.text("departmentCode"));
    let (webhook_id, hire) = match parsed {
        Ok(p) => p,
        Err(e) => return refuse(&state, ENDPOINT, &parts, Refusal::from(e), subject),
    };
    let payload = match serde_json::to_string(&hire) {
        Ok(p) => p,
        Err(e) => return ApiError::Internal(format!("new hire could not be serialised: {e}")).into_response(),
    };
    // The raw body identifies the event: a sender's retry resends it byte for byte (it is signed).
    let event = Event { kind: JobKind::NewHire, webhook_id, payload, content: &bytes, derived_id: false };
    let hired = Subject::person(Some(hire.email.as_str()), Some(&hire.department_code));
    let stored = enqueue_event(&state, ENDPOINT, event, hired);
    match stored.await {
        Ok(enqueued) => queued(enqueued.audit_id),
        // Already told as a conflict.
        Err(conflict @ ApiError::Conflict(_)) => conflict.into_response(),
        Err(e) => refuse(&state, ENDPOINT, &parts, Refusal::from(e), subject),
    }
}
