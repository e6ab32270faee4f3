//! `POST /webhooks/directory-sync` (one event) and `/webhooks/directory-sync/batch` (up to 1,000):
//! HR directory changes, stored as jobs before they are acknowledged.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, Refusal, VerifiedWebhook, checked_event_id, enqueue_event, refuse, verify_webhook};
use crate::audit::AuditRecord;
use crate::error::ApiError;
use crate::pipeline::KIND_DIRECTORY_SYNC;
use crate::pipeline::directory::SyncEvent;
use crate::queue::Enqueued;

const ENDPOINT: &str = "/webhooks/directory-sync";
const BATCH_ENDPOINT: &str = "/webhooks/directory-sync/batch";
/// Most events in one batch.
pub const BATCH_MAX: usize = 1_000;

pub async fn sync_event(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let webhook = match verify_webhook(&state, headers, body).await {
        Ok(w) => w,
        Err(refusal) => return refuse(&state, ENDPOINT, headers, refusal, |line| line),
    };
    let parsed = webhook.event_id().and_then(|id| {
        SyncEvent::from_json(&webhook.json).map(|e| (id, e)).map_err(|e| ApiError::BadRequest(e.to_string()))
    });
    let (webhook_id, event) = match parsed {
        Ok(p) => p,
        Err(e) => return refuse(&state, ENDPOINT, headers, Refusal::from(e), |line| line.subject(&webhook.json)),
    };
    match store(&state, ENDPOINT, webhook_id, &event).await {
        Ok(enqueued) => {
            (StatusCode::ACCEPTED, Json(json!({"status": "queued", "auditId": enqueued.audit_id}))).into_response()
        }
        Err(e) => refuse(&state, ENDPOINT, headers, Refusal::from(e), |line| line.subject(&webhook.json)),
    }
}

/// Validates item by item: every valid event is stored, whatever its neighbours. The answer lists,
/// in order, an auditId or an error per item: 202 when all were stored, 207 when some were, 400
/// when none was.
pub async fn sync_batch(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let webhook = match verify_webhook(&state, headers, body).await {
        Ok(w) => w,
        Err(refusal) => return refuse(&state, BATCH_ENDPOINT, headers, refusal, |line| line),
    };
    let items = match batch_items(&webhook) {
        Ok(items) => items,
        Err(e) => return refuse(&state, BATCH_ENDPOINT, headers, Refusal::from(e), |line| line),
    };
    // Each item is committed like a single event, all at once, so the batch shares group commits.
    let mut pending = tokio::task::JoinSet::new();
    let mut results: Vec<Value> = vec![Value::Null; items.len()];
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok((id, event)) => {
                let state = state.clone();
                pending.spawn(async move { (index, store(&state, BATCH_ENDPOINT, id, &event).await) });
            }
            Err(error) => results[index] = json!({"index": index, "error": error}),
        }
    }
    while let Some(joined) = pending.join_next().await {
        let Ok((index, outcome)) = joined else { continue };
        results[index] = match outcome {
            Ok(e) => json!({"index": index, "status": "queued", "auditId": e.audit_id}),
            Err(e) => json!({"index": index, "error": e.to_string()}),
        };
    }
    let accepted = results.iter().filter(|r| r.get("auditId").is_some()).count();
    let rejected = results.len() - accepted;
    let status = match (accepted, rejected) {
        (_, 0) => StatusCode::ACCEPTED,
        (0, _) => StatusCode::BAD_REQUEST,
        _ => StatusCode::MULTI_STATUS,
    };
    let mut body = json!({"accepted": accepted, "rejected": rejected, "results": results});
    if accepted == 0 {
        body["error"] = json!("No valid event in the batch");
    }
    (status, Json(body)).into_response()
}

/// The batch's items, each parsed or refused with its reason. An item's event id is its `id`, else
/// the batch's webhook id and the item's position.
/// One batch item: its event id and event, or why it was refused.
type BatchItem = Result<(String, SyncEvent), String>;

fn batch_items(webhook: &VerifiedWebhook) -> Result<Vec<BatchItem>, ApiError> {
    let Value::Array(items) = &webhook.json else {
        return Err(ApiError::BadRequest("Batch body must be a JSON array of events".to_string()));
    };
    if items.len() > BATCH_MAX {
        return Err(ApiError::BadRequest(format!("Batch has {} events; at most {BATCH_MAX}", items.len())));
    }
    if items.is_empty() {
        return Err(ApiError::BadRequest("Batch is empty".to_string()));
    }
    let batch_id = webhook.header_id.clone();
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let event = SyncEvent::from_json(item).map_err(|e| e.to_string())?;
            let id = match (item.get("id").and_then(Value::as_str), &batch_id) {
                (Some(id), _) if !id.trim().is_empty() => id.to_string(),
                (_, Some(batch)) => format!("{batch}#{i}"),
                _ => return Err("Missing event id: give the item an id or send a webhook-id header".to_string()),
            };
            Ok((checked_event_id(id)?, event))
        })
        .collect())
}

async fn store(
    state: &AppState,
    endpoint: &'static str,
    webhook_id: String,
    event: &SyncEvent,
) -> Result<Enqueued, ApiError> {
    let payload = serde_json::to_string(event).map_err(|e| ApiError::Internal(e.to_string()))?;
    let describe = |line: AuditRecord| line.field("event", event.event).field("externalId", event.external_id());
    let enqueued = enqueue_event(state, endpoint, KIND_DIRECTORY_SYNC, webhook_id, payload, describe).await?;
    Ok(enqueued)
}
