//! `POST /webhooks/hr/user-created`: a new hire, stored as a job before it is acknowledged.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::{AppState, Endpoint, Event, Refused, SignedWebhook, check_lengths, enqueue_event, event_id};
use crate::error::ApiError;
use crate::lifecycle::{JobKind, Subject};
use crate::pipeline::new_hire::{SentHire, UnreadableHire};
use crate::pipeline::scim_user;
use crate::policy::UserView;

const ENDPOINT: &str = "/webhooks/hr/user-created";

/// The new-hire endpoint; its body is kept as bytes, which `SentHire` reads borrowing from them.
pub struct UserCreatedRoute;

impl Endpoint for UserCreatedRoute {
    const PATH: &'static str = ENDPOINT;
    type Body = Bytes;
}

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
        (status = 422, description = "The department code is not configured, or the user the hire would become violates the provisioning policy (every violation listed); nothing is stored", body = crate::error::PolicyRefusal),
        (status = 503, description = "The job store is unavailable or the service is stopping: retry", body = crate::error::ErrorBody),
    ),
    security(("webhook_id" = [], "webhook_timestamp" = [], "webhook_signature" = []))
)]
pub async fn user_created(
    State(state): State<AppState>,
    webhook: SignedWebhook<UserCreatedRoute>,
) -> Result<Response, Refused> {
    let header_id = webhook.header_id.as_deref();
    // The body is read once, straight into its fields; the job's payload is written from them.
    let mut sent = SentHire::read(&webhook.body).map_err(|e| {
        webhook.refuse(match e {
            UnreadableHire::Malformed(_) => ApiError::BadRequest(e.to_string()),
            // A body that is JSON but not an object has no `id`: a missing or invalid event id
            // is reported first, as for any other body.
            UnreadableHire::Invalid(invalid) => match event_id(header_id, None) {
                Err(no_id) => no_id,
                Ok(_) => ApiError::BadRequest(invalid.to_string()),
            },
        })
    })?;
    check_lengths(FIELD_LIMITS, "", |name| sent.text(name)).map_err(|e| webhook.refuse(ApiError::BadRequest(e)))?;
    let parsed = event_id(header_id, sent.text("id")).and_then(|id| {
        let hire = sent.check().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let Some(department) = state.config.departments.get(&hire.department_code) else {
            return Err(ApiError::Unprocessable(format!("Unmapped department code: {}", hire.department_code)));
        };
        // The user the job would create, judged now: a hire the policy refuses is never stored.
        let user = scim_user::build(&hire, department, None);
        state.config.policy.evaluate(&UserView::of_scim(&user)).into_result().map_err(ApiError::PolicyViolation)?;
        Ok((id, hire))
    });
    let refuse = |e: ApiError| webhook.refuse(e).about(sent.text("email"), sent.text("departmentCode"));
    let (webhook_id, hire) = parsed.map_err(refuse)?;
    let payload = serde_json::to_string(&hire)
        .map_err(|e| Refused::answered(ApiError::Internal(format!("new hire could not be serialised: {e}"))))?;
    // The raw body identifies the event: a sender's retry resends it byte for byte (it is signed).
    let event = Event { kind: JobKind::NewHire, webhook_id, payload, content: &webhook.body, derived_id: false };
    let hired = Subject::person(Some(hire.email.as_str()), Some(&hire.department_code));
    let stored = enqueue_event(&state, ENDPOINT, event, hired);
    match stored.await {
        Ok(enqueued) => Ok(queued(enqueued.audit_id)),
        // Already audited as `intake.conflict`.
        Err(conflict @ ApiError::Conflict(_)) => Err(Refused::answered(conflict)),
        Err(e) => Err(refuse(e)),
    }
}
