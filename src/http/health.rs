//! `GET /healthz` (the process answers), `GET /readyz` (the database answers), `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready", "database": state.store.backend()})).into_response()),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("Database unreachable: {e}"))),
        Err(_) => Err(ApiError::Unavailable("Database unreachable: no answer within 2 s".to_string())),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let queue = state.store.counts_by_state().await?;
    let text = state.metrics.render(&queue);
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
