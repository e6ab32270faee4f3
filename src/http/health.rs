//! `GET /healthz` (the process answers), `GET /readyz` (the database answers and Genesys accepts our
//! credentials), `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = super::openapi::Health)))]
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The database answers and Genesys accepts the credentials.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = super::openapi::Ready),
        (status = 503, description = "The database does not answer, or Genesys refuses the credentials", body = super::openapi::NotReady),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Not ready to provision while Genesys refuses the credentials (jobs wait in the queue).
    if state.metrics.genesys_auth_failed() {
        let body = json!({
            "status": "not_ready",
            "reason": "genesys_auth_failed",
            "error": "Genesys refuses the client credentials: jobs are queued, workers paused until a token is granted",
        });
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready", "database": state.store.backend()})).into_response()),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("Database unreachable: {e}"))),
        Err(_) => Err(ApiError::Unavailable("Database unreachable: no answer within 2 s".to_string())),
    }
}

/// Prometheus metrics: what the service holds in memory, no query (the queue gauges follow the
/// job lifecycle and are counted again from the database in the background).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render();
    let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response()
}
