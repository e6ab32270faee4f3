//! `POST /webhooks/hr/user-created`: a new hire, stored as a job before it is acknowledged.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, Refusal, enqueue_event, event_id, refuse, verify_webhook};
use crate::error::ApiError;
use crate::pipeline::{KIND_NEW_HIRE, NewHire};

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
    let stored =
        enqueue_event(&state, ENDPOINT, KIND_NEW_HIRE, webhook_id, payload, |line| line.subject(&webhook.json));
    let enqueued = match stored.await {
        Ok(e) => e,
        Err(e) => return refuse(&state, ENDPOINT, &headers, Refusal::from(e), Some(&webhook.json)),
    };
    (StatusCode::ACCEPTED, Json(json!({"status": "provisioning_queued", "auditId": enqueued.audit_id}))).into_response()
}
