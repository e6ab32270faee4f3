//! `/admin/register-webhook` (bearer `ADMIN_TOKEN`): subscribes Genesys Cloud to user events as
//! `[genesys_events]` says (`POST`, idempotent; `?dryRun=true` makes no write), shows the
//! registration as Genesys holds it (`GET`) and removes it (`DELETE`). See `crate::events::register`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::admin::Admin;
use crate::error::ApiError;
use crate::events::{self, Outcome, RegisterError};
use crate::genesys::GenesysClient;

const PATH: &str = "/admin/register-webhook";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::NotConfigured | RegisterError::NoClient => ApiError::Conflict(e.to_string()),
            RegisterError::TopicUnavailable { .. } => ApiError::Unprocessable(e.to_string()),
            RegisterError::Genesys(g) if g.is_retryable() => ApiError::Unavailable(g.to_string()),
            // Genesys refused what was asked (a 4xx): the operator reads why.
            RegisterError::Genesys(g) => ApiError::Unprocessable(format!("Genesys refused the registration: {g}")),
        }
    }
}

fn client(state: &AppState) -> Result<&GenesysClient, ApiError> {
    state.genesys.as_deref().ok_or_else(|| ApiError::from(RegisterError::NoClient))
}

/// Registers the event subscription: 201 `created`, 200 `updated` or `unchanged`, with the Genesys
/// ids, what differed and the writes made (`?dryRun=true`: the writes it would make, none made).
#[utoipa::path(
    post,
    path = "/admin/register-webhook",
    tag = "admin",
    params(("dryRun" = Option<bool>, Query, description = "Make no write; answer with the calls it would make")),
    responses(
        (status = 201, description = "Created", body = super::openapi::RegistrationAnswer),
        (status = 200, description = "Updated or unchanged", body = super::openapi::RegistrationAnswer),
        (status = 400, description = "dryRun is not a boolean", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 409, description = "No [genesys_events] section or no Genesys credentials", body = crate::error::ErrorBody),
        (status = 422, description = "The topic is not offered to triggers, or Genesys refused", body = crate::error::ErrorBody),
        (status = 503, description = "Genesys is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn register(
    _: Admin,
    State(state): State<AppState>,
    query: Result<Query<DryRun>, QueryRejection>,
) -> Result<Response, ApiError> {
    let dry_run = query.map_err(|_| ApiError::BadRequest("Invalid query parameter dryRun".to_string()))?.dry_run;
    let config = &state.config.genesys_events;
    let answer = events::register(client(&state)?, config, dry_run).await?;
    if !dry_run {
        tracing::info!(path = PATH, status = ?answer.status, differences = ?answer.differences, "event subscription registered");
    }
    let status = if answer.status == Outcome::Created && !dry_run { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(answer)).into_response())
}

/// The registration as Genesys holds it: enabled or not, its topics, its ids.
#[utoipa::path(
    get,
    path = "/admin/register-webhook",
    tag = "admin",
    responses(
        (status = 200, description = "The registration", body = Object),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 404, description = "Genesys holds no registration of that name", body = crate::error::ErrorBody),
        (status = 409, description = "No [genesys_events] section or no Genesys credentials", body = crate::error::ErrorBody),
        (status = 503, description = "Genesys is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn show(_: Admin, State(state): State<AppState>) -> Result<Response, ApiError> {
    let config = &state.config.genesys_events;
    match events::show(client(&state)?, config).await? {
        Some(found) => Ok(Json(found).into_response()),
        None => Err(ApiError::NotFound(format!("Genesys holds no registration named {:?}", config.name))),
    }
}

/// Removes the registration from Genesys.
#[utoipa::path(
    delete,
    path = "/admin/register-webhook",
    tag = "admin",
    responses(
        (status = 200, description = "Removed; the ids removed", body = Object),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 404, description = "Genesys holds no registration of that name", body = crate::error::ErrorBody),
        (status = 409, description = "No [genesys_events] section or no Genesys credentials", body = crate::error::ErrorBody),
        (status = 503, description = "Genesys is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn remove(_: Admin, State(state): State<AppState>) -> Result<Response, ApiError> {
    let config = &state.config.genesys_events;
    match events::remove(client(&state)?, config).await? {
        Some(ids) => Ok(Json(json!({"status": "deleted", "ids": ids})).into_response()),
        None => Err(ApiError::NotFound(format!("Genesys holds no registration named {:?}", config.name))),
    }
}
