//! `POST /webhooks/hr/user-created`: a new hire, stored as a job before it is acknowledged.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use super::{AppState, Refusal, event_id, refuse, verify_webhook};
use crate::audit::AuditRecord;
use crate::error::ApiError;
use crate::pipeline::{KIND_NEW_HIRE, NewHire};
use crate::queue::NewJob;

const ENDPOINT: &str = "/webhooks/hr/user-created";

pub async fn user_created(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let webhook = match verify_webhook(&state, &headers, body).await {
        Ok(w) => w,
        Err(refusal) => return refuse(&state, ENDPOINT, &headers, refusal, None),
    };
    let parsed = event_id(&webhook).and_then(|id| {
        let hire = NewHire::from_json(&webhook.json).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if state.config.departments.get(&hire.department_code).is_none() {
            return Err(ApiError::Unprocessable(format!("Unmapped department code: {}", hire.department_code)));
        }
        Ok((id, hire))
    });
    let (webhook_id, hire) = match parsed {
        Ok(p) => p,
        Err(e) => return refuse(&state, ENDPOINT, &headers, Refusal::from(e), Some(&webhook.json)),
    };
    let payload = match serde_json::to_value(&hire) {
        Ok(p) => p,
        Err(e) => return ApiError::Internal(format!("new hire could not be serialised: {e}")).into_response(),
    };
    // Time-ordered ids append to the primary-key index instead of dirtying a random page per row.
    let job =
        NewJob { audit_id: Uuid::now_v7(), kind: KIND_NEW_HIRE.to_string(), webhook_id: webhook_id.clone(), payload };
    let enqueued = match state.intake.enqueue(job).await {
        Ok(e) => e,
        Err(e) => return refuse(&state, ENDPOINT, &headers, Refusal::from(ApiError::from(e)), Some(&webhook.json)),
    };
    let (event, status, outcome) = if enqueued.created {
        ("intake.accepted", "queued", "accepted")
    } else {
        ("intake.duplicate", "duplicate", "duplicate")
    };
    state.metrics.webhook(outcome);
    state.audit.record(
        AuditRecord::new(event, status)
            .audit_id(enqueued.audit_id)
            .webhook_id(webhook_id)
            .subject(&webhook.json)
            .field("endpoint", ENDPOINT),
    );
    (StatusCode::ACCEPTED, Json(json!({"status": "provisioning_queued", "auditId": enqueued.audit_id}))).into_response()
}
