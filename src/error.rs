//! The service's edge error and its one JSON shape: `{"error": "<what is wrong>"}`.
//!
//! Inner layers have their own error enums; the edge turns them into an `ApiError` here, in one place,
//! so every status code the service answers with is decided in this file.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::lifecycle::WebhookOutcome;
use crate::queue::QueueError;

/// The body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in words.
    pub error: String,
}

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message names the field or the problem.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong credentials or signature.
    #[error("{0}")]
    Unauthorized(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: the resource is not in a state that allows the action.
    #[error("{0}")]
    Conflict(String),
    /// 408: the request body did not arrive within the body timeout.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413
    #[error("Request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but refers to something this service does not know.
    #[error("{0}")]
    Unprocessable(String),
    /// 422: the user the event describes violates the provisioning policy; the answer lists every
    /// violation (`PolicyRefusal`).
    #[error("The user violates the provisioning policy ({} violation(s))", .0.as_slice().len())]
    PolicyViolation(crate::policy::Violations),
    /// 503: a dependency is unavailable; the sender should retry.
    #[error("{0}")]
    Unavailable(String),
    /// 503: the job store failed; the detail (which may name hosts) goes to the log only.
    #[error("Job store unavailable, retry later")]
    StoreUnavailable(String),
    /// 500: a bug or an unexpected failure; details go to the log, not to the client.
    #[error("Internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) | ApiError::PolicyViolation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    /// How a webhook refused with this error is counted (`provisioner_webhooks_total{outcome}`).
    pub fn outcome(&self) -> WebhookOutcome {
        match self {
            // A webhook names no resource: a 404 cannot answer one; counted with the bad requests.
            ApiError::BadRequest(_) | ApiError::NotFound(_) => WebhookOutcome::BadRequest,
            ApiError::Unauthorized(_) => WebhookOutcome::Unauthorized,
            ApiError::Conflict(_) => WebhookOutcome::Conflict,
            ApiError::RequestTimeout(_) => WebhookOutcome::Timeout,
            ApiError::PayloadTooLarge { .. } => WebhookOutcome::TooLarge,
            ApiError::UnsupportedMediaType(_) => WebhookOutcome::UnsupportedMediaType,
            ApiError::Unprocessable(_) => WebhookOutcome::Unprocessable,
            ApiError::PolicyViolation(_) => WebhookOutcome::PolicyDenied,
            ApiError::Unavailable(_) | ApiError::StoreUnavailable(_) => WebhookOutcome::Unavailable,
            ApiError::Internal(_) => WebhookOutcome::InternalError,
        }
    }
}

impl ApiError {
    /// The violations of a `PolicyViolation` (else none): its audit line lists them.
    pub fn violations(&self) -> &[crate::policy::Violation] {
        match self {
            ApiError::PolicyViolation(v) => v.as_slice(),
            _ => &[],
        }
    }
}

/// A 422 for a user that violates the provisioning policy: the error shape and every violation.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PolicyRefusal {
    /// What is wrong, in words.
    pub error: String,
    /// Every violation, in the order of the rules (absent when the refusal is no policy's: an
    /// unmapped department code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<crate::policy::Violation>,
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotFound(id) => ApiError::NotFound(format!("No job with auditId {id}")),
            QueueError::WrongState { audit_id, state, wanted } => {
                ApiError::Conflict(format!("Job {audit_id} is {state}, not {wanted}"))
            }
            // The event was not stored: 503 tells the sender to try again; nothing was acknowledged.
            QueueError::Database(e) => ApiError::StoreUnavailable(e.to_string()),
            QueueError::Closed => ApiError::Unavailable("Service is shutting down".to_string()),
            // Only at start, which refuses to run; never while serving.
            QueueError::Corrupt(e) | QueueError::NotDurable(e) => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) | ApiError::Unavailable(detail) | ApiError::StoreUnavailable(detail) = &self {
            tracing::error!(%status, detail, "request failed");
        }
        let error = crate::audit::bounded(self.to_string());
        if let ApiError::PolicyViolation(v) = self {
            return (status, Json(PolicyRefusal { error, violations: v.0 })).into_response();
        }
        // Bounded: a message may echo input (a department code, an id) as long as the body.
        (status, Json(ErrorBody { error })).into_response()
    }
}
