//! `POST /webhooks/directory-sync` (one event) and `/webhooks/directory-sync/batch` (up to 1,000):
//! HR directory changes, stored as jobs before they are acknowledged.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{
    AppState, Endpoint, Event, Refusal, Refused, SignedWebhook, canonical_json, check_lengths, checked_event_id,
    enqueue_event, event_id, record_refusal,
};
use crate::error::ApiError;
use crate::lifecycle::{JobKind, Subject};
use crate::mapping::Mapping;
use crate::pipeline::directory::{self, SyncEvent, SyncKind};
use crate::policy::UserView;
use crate::queue::Enqueued;

const ENDPOINT: &str = "/webhooks/directory-sync";
const BATCH_ENDPOINT: &str = "/webhooks/directory-sync/batch";
/// Most events in one batch.
pub const BATCH_MAX: usize = 1_000;

/// The single-event endpoint; its body is read as JSON.
pub struct SyncEventRoute;

impl Endpoint for SyncEventRoute {
    const PATH: &'static str = ENDPOINT;
    type Body = Value;
}

/// The batch endpoint; its body is read as JSON (an array, checked by `batch_items`).
pub struct SyncBatchRoute;

impl Endpoint for SyncBatchRoute {
    const PATH: &'static str = BATCH_ENDPOINT;
    type Body = Value;
}

/// The most characters of the identifying and naming fields of an event's `data` (emails as RFC
/// 5321 allows); checked at the edge so an oversized one is a 400, not a job.
const DATA_LIMITS: &[(&str, usize)] = &[
    ("externalId", 256),
    ("employeeId", 256),
    ("employeeNumber", 256),
    ("userName", 256),
    ("workEmail", 254),
    ("email", 254),
    ("managerEmail", 254),
    ("managerExternalId", 256),
    ("departmentCode", 256),
    ("department", 256),
    ("firstName", 256),
    ("lastName", 256),
    ("displayName", 256),
    ("jobTitle", 256),
    ("title", 256),
    ("phone", 256),
];

/// An event parsed, its `data` fields within `DATA_LIMITS` and the whole record within what the
/// mapping takes in (`[sync] max_record_bytes`): a record the job could never map is refused here,
/// where the sender can still be told, instead of becoming a dead letter.
fn parse_event(json: &Value, mapping: &Mapping) -> Result<SyncEvent, String> {
    let event = SyncEvent::from_json(json).map_err(|e| e.to_string())?;
    check_lengths(DATA_LIMITS, "data.", |name| event.data.get(name).and_then(Value::as_str))?;
    mapping.check_record(&event.data).map_err(|e| format!("Invalid field data: {e}"))?;
    Ok(event)
}

/// The user a directory event asks for, judged by the policy before the event is stored: an event
/// its job would refuse is refused here, where the sender can still be told. A leaver is never
/// refused (leaving only takes access away); an event the mapping cannot turn into a user is left
/// to its job, which reports the mapping's error with the job.
async fn check_policy(state: &AppState, event: &SyncEvent) -> Result<(), ApiError> {
    if event.event == SyncKind::Terminated {
        return Ok(());
    }
    let code = event.data.get("departmentCode").and_then(Value::as_str);
    let department = code.and_then(|c| state.config.departments.get(c));
    let Ok((user, _)) = directory::map_user(&state.config.sync.mapping, department, event).await else {
        return Ok(());
    };
    state.config.policy.evaluate(&UserView::of_json(&user)).into_result().map_err(ApiError::PolicyViolation)
}

/// One directory event: stored as a sync job, then acknowledged.
#[utoipa::path(
    post,
    path = "/webhooks/directory-sync",
    tag = "intake",
    request_body(content = super::openapi::DirectoryEventDoc, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored as a job (a retry of the same event gets the same answer)", body = super::openapi::Queued),
        (status = 400, description = "Malformed JSON, an unsupported event, no person key, an oversized field, or no event id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, stale or wrong signature", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json (or application/*+json)", body = crate::error::ErrorBody),
        (status = 409, description = "The event id was already used for a different event", body = crate::error::ErrorBody),
        (status = 422, description = "The user the event maps to violates the provisioning policy (every violation listed); nothing is stored", body = crate::error::PolicyRefusal),
        (status = 503, description = "The job store is unavailable or the service is stopping: retry", body = crate::error::ErrorBody),
    ),
    security(("webhook_id" = [], "webhook_timestamp" = [], "webhook_signature" = []))
)]
pub async fn sync_event(
    State(state): State<AppState>,
    webhook: SignedWebhook<SyncEventRoute>,
) -> Result<Response, Refused> {
    let json = &webhook.body;
    let text = |key: &str| json.get(key).and_then(Value::as_str);
    let refuse = |e: ApiError| webhook.refuse(e).about(text("email"), text("departmentCode"));
    let webhook_id = event_id(webhook.header_id.as_deref(), text("id")).map_err(refuse)?;
    let event = parse_event(json, &state.config.sync.mapping).map_err(|e| refuse(ApiError::BadRequest(e)))?;
    check_policy(&state, &event).await.map_err(refuse)?;
    // Hashed as the canonical text of the event, as a batch item is: the same event id may come
    // alone or in a batch (see `canonical_json`).
    let mut content = Vec::new();
    canonical_json(json, &mut content);
    match store(&state, ENDPOINT, &webhook_id, false, &content, &event, None).await {
        Ok(enqueued) => {
            Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued", "auditId": enqueued.audit_id}))).into_response())
        }
        // Already audited as `intake.conflict`.
        Err(conflict @ ApiError::Conflict(_)) => Err(Refused::answered(conflict)),
        Err(e) => Err(refuse(e)),
    }
}

/// Validates item by item: every valid event is stored, whatever its neighbours (an item whose user
/// violates the provisioning policy is refused with its violations). The answer lists,
/// in order, per item `queued` or `duplicate` with its auditId, or an error: 503 when any item
/// failed for a reason of the service's own (the store is down: the sender must retry the batch;
/// the items already stored come back as duplicates), else 202 when all were stored, 207 when
/// some were, 409 when every item was a conflict, 400 when none was stored.
#[utoipa::path(
    post,
    path = "/webhooks/directory-sync/batch",
    tag = "intake",
    request_body(content = Vec<super::openapi::DirectoryEventDoc>, content_type = "application/json", description = "1 to 1,000 directory events"),
    responses(
        (status = 202, description = "Every item stored", body = super::openapi::BatchAnswer),
        (status = 207, description = "Some items stored, some refused", body = super::openapi::BatchAnswer),
        (status = 400, description = "No item stored, or the body is not a batch (not an array, empty, too many)", body = super::openapi::BatchRefused),
        (status = 401, description = "Missing, stale or wrong signature", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than max_body_bytes", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json (or application/*+json)", body = crate::error::ErrorBody),
        (status = 409, description = "Every item's event id was already used for a different event", body = super::openapi::BatchAnswer),
        (status = 503, description = "An item could not be stored: retry the whole batch (stored items come back as duplicates)", body = super::openapi::BatchAnswer),
    ),
    security(("webhook_id" = [], "webhook_timestamp" = [], "webhook_signature" = []))
)]
pub async fn sync_batch(
    State(state): State<AppState>,
    webhook: SignedWebhook<SyncBatchRoute>,
) -> Result<Response, Refused> {
    let batch_id = webhook.header_id.as_deref();
    let items = batch_items(&webhook.body, batch_id, &state.config.sync.mapping).map_err(|e| webhook.refuse(e))?;
    // Each item is committed like a single event, all at once, so the batch shares group commits.
    let mut pending = tokio::task::JoinSet::new();
    // Which item each task stores, to answer for it should the task fail (a bug: a panic).
    let mut task_items = std::collections::HashMap::new();
    let mut results: Vec<Value> = vec![Value::Null; items.len()];
    let mut conflicts = 0;
    let mut server_error: Option<ApiError> = None;
    // The refused items' outbox records, committed together before the answer.
    let mut records = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match item.parsed {
            Ok(event) => {
                let state = state.clone();
                let BatchItem { id, derived_id, content, .. } = item;
                let task = pending.spawn(async move {
                    let stored = match check_policy(&state, &event).await {
                        Ok(()) => store(&state, BATCH_ENDPOINT, &id, derived_id, &content, &event, Some(index)).await,
                        Err(refused) => Err(refused),
                    };
                    (index, id, stored)
                });
                task_items.insert(task.id(), index);
            }
            Err(error) => {
                let refusal = Refusal::from(ApiError::BadRequest(error.clone()));
                let item_subject = Subject::default().at(Some(index));
                records.extend(record_refusal(&state, BATCH_ENDPOINT, &refusal, item.sent_id.as_deref(), item_subject));
                results[index] = json!({"index": index, "error": error});
            }
        }
    }
    while let Some(joined) = pending.join_next().await {
        let (index, id, outcome) = match joined {
            Ok(done) => done,
            Err(failed) => {
                let Some(&index) = task_items.get(&failed.id()) else { continue };
                let error = ApiError::Internal(format!("storing batch item {index} failed: {failed}"));
                results[index] = json!({"index": index, "error": error.to_string()});
                server_error.get_or_insert(error);
                continue;
            }
        };
        results[index] = match outcome {
            Ok(e) if e.created => json!({"index": index, "status": "queued", "auditId": e.audit_id}),
            Ok(e) => json!({"index": index, "status": "duplicate", "auditId": e.audit_id}),
            // Already told as a conflict.
            Err(e @ ApiError::Conflict(_)) => {
                conflicts += 1;
                json!({"index": index, "error": e.to_string()})
            }
            Err(e) => {
                let mut answer = json!({"index": index, "error": e.to_string()});
                if !e.violations().is_empty() {
                    answer["violations"] = json!(e.violations());
                }
                let refusal = Refusal::from(e);
                let item = Subject::default().at(Some(index));
                records.extend(record_refusal(&state, BATCH_ENDPOINT, &refusal, Some(&id), item));
                if refusal.error.status().is_server_error() && server_error.is_none() {
                    server_error = Some(refusal.error);
                }
                answer
            }
        };
    }
    if let Err(e) = state.bus.append(records).await {
        // The refusals are not recorded: the sender must send the batch again (stored items come
        // back as duplicates, refused ones are refused again).
        server_error.get_or_insert(ApiError::from(e));
    }
    let accepted = results.iter().filter(|r| r.get("auditId").is_some()).count();
    let rejected = results.len() - accepted;
    let status = match (accepted, rejected) {
        _ if server_error.is_some() => StatusCode::SERVICE_UNAVAILABLE,
        (_, 0) => StatusCode::ACCEPTED,
        (0, n) if n == conflicts => StatusCode::CONFLICT,
        (0, _) => StatusCode::BAD_REQUEST,
        _ => StatusCode::MULTI_STATUS,
    };
    let mut body = json!({"accepted": accepted, "rejected": rejected, "results": results});
    if let Some(e) = server_error {
        // Logged like the single endpoint's 503 (the detail may name hosts: log only).
        body["error"] = json!(e.to_string());
        if let ApiError::StoreUnavailable(detail) | ApiError::Unavailable(detail) | ApiError::Internal(detail) = &e {
            tracing::error!(status = %e.status(), detail = ?detail, "batch item failed");
        }
    } else if accepted == 0 {
        body["error"] = json!(if conflicts == rejected {
            "Every event id in the batch was already used for a different event"
        } else {
            "No valid event in the batch"
        });
    }
    Ok((status, Json(body)).into_response())
}

/// One batch item: its event id (as sent, else derived from the batch's webhook id and its
/// position), the text its content hash is taken over, and its event or why it was refused.
struct BatchItem {
    id: String,
    /// The id was not sent but made up as `<batch webhook-id>#<n>`.
    derived_id: bool,
    /// The item's `id` as sent, when it is a string (for the audit line of a refused item).
    sent_id: Option<String>,
    content: Vec<u8>,
    parsed: Result<SyncEvent, String>,
}

/// The batch's items, each parsed or refused with its reason.
fn batch_items(batch: &Value, batch_id: Option<&str>, mapping: &Mapping) -> Result<Vec<BatchItem>, ApiError> {
    let Value::Array(items) = batch else {
        return Err(ApiError::BadRequest("Batch body must be a JSON array of events".to_string()));
    };
    if items.len() > BATCH_MAX {
        return Err(ApiError::BadRequest(format!("Batch has {} events; at most {BATCH_MAX}", items.len())));
    }
    if items.is_empty() {
        return Err(ApiError::BadRequest("Batch is empty".to_string()));
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let sent_id = item.get("id").and_then(Value::as_str).filter(|id| !id.trim().is_empty());
            // Explicit ids stay as sent; a derived one is keyed apart (`Event::derived_id`), so the
            // two can never meet even when an explicit id reads `<batch>#<n>`.
            let (id, derived_id) = match (sent_id, batch_id) {
                (Some(id), _) => (Ok(id.to_string()), false),
                (None, Some(batch)) => (Ok(format!("{batch}#{i}")), true),
                (None, None) => {
                    (Err("Missing event id: give the item an id or send a webhook-id header".to_string()), false)
                }
            };
            let parsed =
                parse_event(item, mapping).and_then(|event| id.clone().and_then(checked_event_id).map(|_| event));
            let mut content = Vec::new();
            if parsed.is_ok() {
                canonical_json(item, &mut content);
            }
            BatchItem { id: id.unwrap_or_default(), derived_id, sent_id: sent_id.map(str::to_string), content, parsed }
        })
        .collect())
}

async fn store(
    state: &AppState,
    endpoint: &'static str,
    webhook_id: &str,
    derived_id: bool,
    content: &[u8],
    event: &SyncEvent,
    index: Option<usize>,
) -> Result<Enqueued, ApiError> {
    let payload = serde_json::to_string(event).map_err(|e| ApiError::Internal(e.to_string()))?;
    let external_id = event.external_id();
    let subject = Subject::directory(event.event, &external_id).at(index);
    let event =
        Event { kind: JobKind::DirectorySync, webhook_id: webhook_id.to_string(), payload, content, derived_id };
    let enqueued = enqueue_event(state, endpoint, event, subject).await?;
    Ok(enqueued)
}
