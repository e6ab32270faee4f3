//! Admin routes (bearer `ADMIN_TOKEN`): job status, the dead letters, replay and delete.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, AuditIdPath};
use crate::error::ApiError;
use crate::lifecycle::{Event, JobKind, Subject};
use crate::queue::worker::ms_to_rfc3339;
use crate::queue::{Attempt, Job};

/// Proof that the request carried the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let offered = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Unauthorized("Missing Authorization: Bearer <admin token>".to_string()))?;
        // Hash both sides first so the comparison takes the same time whatever the lengths.
        let want = Sha256::digest(state.config.admin_token.expose_secret().as_bytes());
        let got = Sha256::digest(offered.trim().as_bytes());
        if bool::from(want.ct_eq(&got)) {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized("Invalid admin token".to_string()))
        }
    }
}

/// A job as the admin API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    audit_id: uuid::Uuid,
    kind: String,
    webhook_id: String,
    state: String,
    /// Every attempt so far, over all runs (a replay starts a new run; the numbers go on).
    attempts: u32,
    /// Attempts of this run lost to a crash, and how many make the job a dead letter.
    lost_attempts: u32,
    max_lost_attempts: u32,
    /// Failed attempts are retried until then (queued and running jobs).
    #[schema(required)]
    retry_window_ends_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed_at: Option<String>,
    #[schema(required)]
    last_error: Option<String>,
    /// What the last successful attempt did.
    #[schema(value_type = Option<Value>, required)]
    result: Option<serde_json::Value>,
    created_at: String,
    updated_at: String,
    #[schema(required)]
    next_attempt_at: Option<String>,
    #[schema(required)]
    finished_at: Option<String>,
    /// When retention purged this succeeded job's personal data: `payload` is null from then on, and
    /// `result` and the attempts' errors are empty. Its event id is still recognised as a repeat
    /// until the dedupe window ends, then the job is deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    purged_at: Option<String>,
    /// The event as stored (null once purged).
    #[schema(value_type = Value)]
    payload: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt_history: Option<Vec<Attempt>>,
}

impl JobView {
    fn new(job: Job, history: Option<Vec<Attempt>>, retry_window: std::time::Duration) -> Self {
        let unfinished = matches!(job.state, crate::queue::JobState::Queued | crate::queue::JobState::Running);
        let window_ends = job.retry_window_start().saturating_add(retry_window.as_millis() as i64);
        JobView {
            audit_id: job.audit_id,
            kind: job.kind,
            webhook_id: job.webhook_id,
            state: job.state.to_string(),
            attempts: job.attempts,
            lost_attempts: job.lost_attempts,
            max_lost_attempts: job.max_lost_attempts,
            retry_window_ends_at: unfinished.then(|| ms_to_rfc3339(window_ends)),
            replayed_at: job.replayed_at.map(ms_to_rfc3339),
            last_error: job.last_error,
            result: job.result,
            created_at: ms_to_rfc3339(job.created_at),
            updated_at: ms_to_rfc3339(job.updated_at),
            next_attempt_at: (job.state == crate::queue::JobState::Queued).then(|| ms_to_rfc3339(job.run_at)),
            finished_at: job.finished_at.map(ms_to_rfc3339),
            purged_at: job.purged_at.map(ms_to_rfc3339),
            payload: job.payload,
            attempt_history: history,
        }
    }
}

/// A job: its state, attempts and payload.
#[utoipa::path(
    get,
    path = "/jobs/{audit_id}",
    tag = "admin",
    params(("audit_id" = uuid::Uuid, Path, description = "The job's auditId")),
    responses(
        (status = 200, description = "The job, with its attempt history", body = JobView),
        (status = 400, description = "The auditId is not a UUID", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn job(
    _: Admin,
    State(state): State<AppState>,
    AuditIdPath(audit_id): AuditIdPath,
) -> Result<Json<JobView>, ApiError> {
    let job = state
        .store
        .get(audit_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No job with auditId {audit_id}")))?;
    let history = state.store.attempts(audit_id).await?;
    Ok(Json(JobView::new(job, Some(history), state.config.queue.retry_window)))
}

/// A query string that did not parse, as a 400 in the JSON error shape.
fn query_or_400<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::BadRequest(format!("Invalid query string: {}", e.body_text())))
}

#[derive(Deserialize)]
pub struct Page {
    limit: Option<String>,
    offset: Option<String>,
}

/// The dead letters, a page at a time.
#[utoipa::path(
    get,
    path = "/admin/dead-letters",
    tag = "admin",
    params(
        ("limit" = Option<u32>, Query, minimum = 0, maximum = 500, description = "Page size, 1 to 500 (0 counts as 1); default 50"),
        ("offset" = Option<u32>, Query, minimum = 0, description = "How many to skip; default 0"),
    ),
    responses(
        (status = 200, description = "A page of dead letters", body = super::openapi::DeadLetterPage),
        (status = 400, description = "limit or offset is not a number in range", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn dead_letters(
    _: Admin,
    State(state): State<AppState>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let number = |name: &str, raw: Option<String>, default: u64, max: u64| -> Result<u64, ApiError> {
        match raw {
            None => Ok(default),
            Some(s) => s.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
                ApiError::BadRequest(format!("Invalid query parameter {name}: expected a number from 0 to {max}"))
            }),
        }
    };
    let page = query_or_400(page)?;
    let limit = number("limit", page.limit, 50, 500)?.max(1) as u32;
    let offset = number("offset", page.offset, 0, u64::from(u32::MAX))?;
    let (jobs, total) = state.store.dead_letters(limit, offset).await?;
    let next = (offset + (jobs.len() as u64) < total).then_some(offset + jobs.len() as u64);
    let window = state.config.queue.retry_window;
    let items: Vec<JobView> = jobs.into_iter().map(|j| JobView::new(j, None, window)).collect();
    Ok(Json(json!({"items": items, "total": total, "limit": limit, "offset": offset, "nextOffset": next}))
        .into_response())
}

/// Puts a dead letter back in the queue.
#[utoipa::path(
    post,
    path = "/admin/dead-letters/{audit_id}/replay",
    tag = "admin",
    params(("audit_id" = uuid::Uuid, Path, description = "The job's auditId")),
    responses(
        (status = 202, description = "Queued again", body = super::openapi::Queued),
        (status = 400, description = "The auditId is not a UUID", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 409, description = "The job is not a dead letter", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn replay(
    _: Admin,
    State(state): State<AppState>,
    AuditIdPath(audit_id): AuditIdPath,
) -> Result<Response, ApiError> {
    // The replay's outbox record is written in the replay's transaction.
    let replayed = |job: &Job| state.bus.records(&[Event::Replayed { job }]);
    let job = state.store.replay(audit_id, &replayed).await?;
    state.wake.notify_waiters();
    state.bus.emit(Event::Replayed { job: &job });
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued", "auditId": audit_id}))).into_response())
}

/// Queues a reconcile: the users in Genesys are compared with the mirror (what the service last
/// wrote), the mirror is refreshed, and drift is reported. Its report is the job's result.
#[utoipa::path(
    post,
    path = "/admin/reconcile",
    tag = "admin",
    responses(
        (status = 202, description = "Queued; the report appears at GET /jobs/{auditId}", body = super::openapi::Queued),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn reconcile(_: Admin, State(state): State<AppState>) -> Result<Response, ApiError> {
    let webhook_id = format!("reconcile-{}", uuid::Uuid::now_v7());
    let event = super::Event {
        kind: JobKind::Reconcile,
        webhook_id: webhook_id.clone(),
        payload: "{}".to_string(),
        content: webhook_id.as_bytes(),
        derived_id: false,
    };
    let queued = super::enqueue_event(&state, "/admin/reconcile", event, Subject::default()).await?;
    state.wake.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued", "auditId": queued.audit_id}))).into_response())
}

/// Deletes a dead letter (its audit lines stay).
#[utoipa::path(
    delete,
    path = "/admin/dead-letters/{audit_id}",
    tag = "admin",
    params(("audit_id" = uuid::Uuid, Path, description = "The job's auditId")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The auditId is not a UUID", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 409, description = "The job is not a dead letter", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn delete_dead_letter(
    _: Admin,
    State(state): State<AppState>,
    AuditIdPath(audit_id): AuditIdPath,
) -> Result<Response, ApiError> {
    let deleted = |job: &Job| state.bus.records(&[Event::Deleted { job }]);
    let job = state.store.delete_dead(audit_id, &deleted).await?;
    state.bus.emit(Event::Deleted { job: &job });
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub struct Since {
    since: Option<String>,
}

/// `GET /admin/reports/discrepancies?since=<RFC 3339>` (default: the last 24 hours): directory-sync
/// totals, the attribute mismatches found after PATCHes, and the failed sync jobs.
#[utoipa::path(
    get,
    path = "/admin/reports/discrepancies",
    tag = "admin",
    params(("since" = Option<String>, Query, format = DateTime, description = "RFC 3339; default: 24 hours ago")),
    responses(
        (status = 200, description = "The report", body = super::openapi::DiscrepancyReport),
        (status = 400, description = "since is not an RFC 3339 time", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn discrepancies(
    _: Admin,
    State(state): State<AppState>,
    query: Result<Query<Since>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query_or_400(query)?;
    let since_ms = match query.since.as_deref() {
        None => state.store.clock().now_ms() - 24 * 3600 * 1000,
        Some(s) => chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).map_err(|_| {
            ApiError::BadRequest("Invalid query parameter since: expected an RFC 3339 time".to_string())
        })?,
    };
    let found = state.store.discrepancies_since(since_ms).await?;
    let (succeeded, dead) = state.store.finished_since(JobKind::DirectorySync, since_ms).await?;
    let failures: Vec<_> = dead
        .iter()
        .map(|j| {
            json!({
                "kind": "sync_failure",
                "auditId": j.audit_id,
                // The person key, however the event named the person (employeeId, externalId, ...).
                "externalId": j.payload.get("data").map(crate::pipeline::directory::person_key),
                "error": j.last_error,
                "at": j.finished_at.map(ms_to_rfc3339),
            })
        })
        .collect();
    let mismatches: Vec<_> = found
        .iter()
        .map(|d| {
            json!({"kind": d.kind, "auditId": d.audit_id, "externalId": d.external_id, "field": d.field,
                   "expected": d.expected, "actual": d.actual, "at": ms_to_rfc3339(d.at)})
        })
        .collect();
    let processed = succeeded + dead.len() as u64;
    Ok(Json(json!({
        "since": ms_to_rfc3339(since_ms),
        "totals": {"processed": processed, "successful": succeeded, "failed": dead.len(), "discrepancies": mismatches.len()},
        "discrepancies": mismatches,
        "failures": failures,
    }))
    .into_response())
}
