//! The axum edge: router, shared state, and the steps every signed webhook goes through
//! (content type, size, signature, JSON) before its own endpoint parses it.

pub mod admin;
pub mod directory;
pub mod genesys_events;
pub mod health;
pub mod hr;
pub mod openapi;
pub mod register;
pub mod serve;
pub mod siem;
pub mod signed;
pub mod validation;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use uuid::Uuid;

use crate::config::Config;
use crate::error::ApiError;
use crate::lifecycle::{self, Bus, JobKind, Sender, Subject};
use crate::metrics::Metrics;
use crate::queue::JobStore;
use crate::queue::intake::Intake;
use crate::signing;

pub use signed::{Endpoint, Refused, SignedWebhook, WebhookBody};

/// What every handler can reach. axum clones the state for every request, so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of `AppState`.
pub struct Shared {
    pub config: Arc<Config>,
    pub intake: Intake,
    pub store: JobStore,
    /// Where intake decisions and admin actions are told (the audit trail and the metrics listen).
    pub bus: Bus,
    /// Rendered by `/metrics`; `/readyz` reads whether the workers are paused.
    pub metrics: Arc<Metrics>,
    /// Wakes idle workers when an admin puts a job back in the queue.
    pub wake: Arc<tokio::sync::Notify>,
    /// SIEM delivery, when destinations are configured (`GET /admin/siem` shows it).
    pub outbox: Option<crate::outbox::Outbox>,
    /// The Genesys client (None without credentials): the admin routes that talk to Genesys use it.
    pub genesys: Option<Arc<crate::genesys::GenesysClient>>,
}

pub fn router(state: AppState) -> Router {
    // The routes and their OpenAPI description come from one list (`openapi::routes`).
    let (router, _) = openapi::routes().split_for_parts();
    let router = router
        .fallback(|| async { ApiError::NotFound("No such endpoint".to_string()) })
        .method_not_allowed_fallback(|| async { MethodNotAllowed });
    // Only when decisions are recorded for a SIEM: answers then wait for their records' commit.
    let router = match state.bus.recording() {
        true => router.layer(axum::middleware::from_fn_with_state(state.clone(), commit_records)),
        false => router,
    };
    router.with_state(state)
}

/// Outbox records an answer carries (a refusal's): committed before the answer goes out.
#[derive(Clone)]
struct PendingRecords(Vec<crate::queue::OutboxRow>);

/// Commits the outbox records an answer carries, then lets the answer go. A refusal turns into its
/// answer synchronously (`Refused::into_response`), where nothing can be awaited; it leaves its
/// record on the answer instead, and this waits for the commit. If the record cannot be written,
/// the sender gets a 503 and sends again (and is refused again, this time on the record).
async fn commit_records(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let Some(PendingRecords(rows)) = response.extensions_mut().remove::<PendingRecords>() else { return response };
    match state.bus.append(rows).await {
        Ok(()) => response,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `response` carrying `record` to `commit_records`.
fn with_record(mut response: Response, record: Option<crate::queue::OutboxRow>) -> Response {
    if let Some(record) = record {
        response.extensions_mut().insert(PendingRecords(vec![record]));
    }
    response
}

struct MethodNotAllowed;

impl IntoResponse for MethodNotAllowed {
    fn into_response(self) -> Response {
        let body = crate::error::ErrorBody { error: "Method not allowed on this endpoint".to_string() };
        (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
    }
}

/// A refused webhook: the answer (its `ApiError::outcome` is how it is counted).
pub struct Refusal {
    pub error: ApiError,
    /// Refused before the sender was authenticated (content type, size, body read, signature):
    /// counted and summarised per source instead of audited one line each (`AuditLog::refused`).
    pub unauthenticated: bool,
}

impl Refusal {
    /// A refusal before the sender was authenticated.
    pub fn unauthenticated(error: ApiError) -> Self {
        Refusal { error, unauthenticated: true }
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal { error, unauthenticated: false }
    }
}

/// Content type and size, the checks every webhook's body passes first, then the body read (within
/// the body timeout). Its sender is authenticated afterwards (`Endpoint::authenticate`), since a
/// signature covers the body.
pub async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, Refusal> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_json_media_type(content_type) {
        return Err(Refusal::unauthenticated(ApiError::UnsupportedMediaType(
            "Content-Type must be application/json".to_string(),
        )));
    }
    let limit = state.config.server.max_body_bytes;
    let too_large = || Refusal::unauthenticated(ApiError::PayloadTooLarge { limit });
    let mut body = body;
    let drain_cap = state.config.server.limits.max_drain_bytes;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > limit as u64) {
        // A sender waiting for "100 Continue" has not sent the body: answer at once, read nothing.
        if declared <= drain_cap && !expects_continue(headers) {
            drain(&mut body, drain_cap).await;
        }
        return Err(too_large());
    }
    match http_body_util::Limited::new(&mut body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if caused_by::<http_body_util::LengthLimitError>(e.as_ref()) => {
            drain(&mut body, drain_cap.saturating_sub(limit as u64)).await;
            Err(too_large())
        }
        Err(e) if caused_by::<serve::BodyTimeout>(e.as_ref()) => {
            let limit = state.config.server.limits.body_timeout;
            let error = serve::BodyTimeout { limit }.to_string();
            Err(Refusal::unauthenticated(ApiError::RequestTimeout(error)))
        }
        Err(_) => Err(Refusal::unauthenticated(ApiError::BadRequest("Request body could not be read".to_string()))),
    }
}

/// The HR sender's Standard Webhooks signature over `bytes` (unless `verify_signatures = false`);
/// returns the `webhook-id` header when sent.
pub fn verify_hr_signature(state: &AppState, headers: &HeaderMap, bytes: &[u8]) -> Result<Option<String>, Refusal> {
    // Looked up by prepared names: a header looked up by text is parsed and checked on every call.
    let header_text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let header_id = header_text(&signing::ID_HEADER);
    if state.config.webhooks.verify_signatures {
        let request = signing::SignedRequest {
            id: header_id,
            timestamp: header_text(&signing::TIMESTAMP_HEADER),
            signature: header_text(&signing::SIGNATURE_HEADER),
        };
        let now = chrono::Utc::now().timestamp();
        signing::verify(
            &state.config.webhooks.secrets,
            &request,
            bytes,
            now,
            state.config.webhooks.timestamp_tolerance,
        )
        .map_err(|e| Refusal::unauthenticated(ApiError::Unauthorized(e.to_string())))?;
    }
    Ok(header_id.filter(|s| !s.is_empty()).map(str::to_string))
}

/// `application/json` or any `application/*+json`, parameters (charset) and letter case ignored.
fn is_json_media_type(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().as_bytes();
    let starts =
        |prefix: &str| mime.len() >= prefix.len() && mime[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
    let ends = |suffix: &str| {
        mime.len() >= suffix.len() && mime[mime.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    mime.eq_ignore_ascii_case(b"application/json") || (starts("application/") && ends("+json"))
}

/// Whether `T` is the error or one of its causes.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.is::<T>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads and drops the rest of a refused body, at most `cap` bytes, so a sender that writes its whole
/// body before reading (urllib, HttpURLConnection) reads the answer instead of a reset. The body
/// timeout bounds the time. Past the cap, or on a timeout, the rest stays unread and the connection
/// is closed after the answer.
async fn drain(body: &mut Body, cap: u64) {
    let mut left = cap;
    while let Some(Ok(frame)) = body.frame().await {
        let size = frame.data_ref().map_or(0, |d| d.len() as u64);
        if size > left {
            return;
        }
        left -= size;
    }
}

/// The event id: the signed `webhook-id` header, else the body's `id`. Ids longer than 255
/// characters or with control characters are refused so they cannot bloat or garble the audit trail.
pub fn event_id(header_id: Option<&str>, body_id: Option<&str>) -> Result<String, ApiError> {
    let id = header_id
        .or(body_id)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("Missing event id: send a webhook-id header or an id field".to_string()))?;
    checked_event_id(id.to_string()).map_err(ApiError::BadRequest)
}

/// An event id as given, unless it is longer than 255 characters or holds control characters.
pub fn checked_event_id(id: String) -> Result<String, String> {
    match id.len() > 255 || id.chars().any(char::is_control) {
        true => Err("Invalid event id: at most 255 printable characters".to_string()),
        false => Ok(id),
    }
}

/// The first of `fields` (name, most characters) whose text in `text(name)` is longer than allowed,
/// as the 400 naming it (`prefix` goes before the name, e.g. `data.`). Checked at the edge before
/// anything copies a field: a body may be 1 MiB, a name or an identifier never needs to be.
pub fn check_lengths<'a>(
    fields: &[(&'static str, usize)],
    prefix: &str,
    text: impl Fn(&str) -> Option<&'a str>,
) -> Result<(), String> {
    for (name, max) in fields {
        // Bytes first: at most 4 per character, so the count is only taken near the limit.
        let too_long = text(name).is_some_and(|t| t.len() > *max && (t.len() > 4 * max || t.chars().count() > *max));
        if too_long {
            return Err(format!("Invalid field {prefix}{name}: at most {max} characters"));
        }
    }
    Ok(())
}

/// Tells a refused webhook (the audit trail and the metrics listen), and turns it into the answer.
/// A refusal before the sender was authenticated is counted and summarised per peer address
/// instead of a line each (`AuditLog::refused`): anyone can send those, and a line each would let an
/// unauthenticated flood grow the trail as fast as it sends.
pub fn refuse(
    state: &AppState,
    endpoint: &'static str,
    id_header: &HeaderName,
    request: &Parts,
    refusal: Refusal,
    subject: Subject<'_>,
) -> Response {
    if refusal.unauthenticated {
        let source = match request.extensions.get::<ConnectInfo<std::net::SocketAddr>>() {
            Some(ConnectInfo(peer)) => peer.ip().to_string(),
            None => "unknown".to_string(),
        };
        let record = emit_refused(state, endpoint, &refusal, Sender::Unauthenticated { source: &source });
        return with_record(refusal.error.into_response(), record);
    }
    let header_id = request.headers.get(id_header).and_then(|v| v.to_str().ok());
    let record = record_refusal(state, endpoint, &refusal, header_id, subject);
    with_record(refusal.error.into_response(), record)
}

/// Tells a refused webhook (or batch item) from a signed sender: its `intake.rejected` line and
/// its count. Returns its outbox record, which the caller commits before it answers.
#[must_use = "the refusal's outbox record is committed before the answer"]
pub fn record_refusal(
    state: &AppState,
    endpoint: &'static str,
    refusal: &Refusal,
    webhook_id: Option<&str>,
    subject: Subject<'_>,
) -> Option<crate::queue::OutboxRow> {
    emit_refused(state, endpoint, refusal, Sender::Signed { webhook_id, subject })
}

/// Tells the refusal; returns its outbox record (none for a refusal before the signature check,
/// which has no line of its own).
fn emit_refused(
    state: &AppState,
    endpoint: &'static str,
    refusal: &Refusal,
    sender: Sender<'_>,
) -> Option<crate::queue::OutboxRow> {
    let event = lifecycle::Event::Refused(lifecycle::Refused {
        endpoint,
        outcome: refusal.error.outcome(),
        http_status: refusal.error.status().as_u16(),
        error: &refusal.error,
        violations: refusal.error.violations(),
        sender,
    });
    let record = state.bus.record(&event);
    state.bus.emit(event);
    record
}

/// An accepted event, ready to be stored as a job.
pub struct Event<'a> {
    pub kind: JobKind,
    pub webhook_id: String,
    /// The job's payload, as JSON text.
    pub payload: String,
    /// What identifies the event's content; its SHA-256 is kept with the event id, so the same id
    /// with other content is a conflict (see `canonical_json` for what each endpoint passes).
    pub content: &'a [u8],
    /// The service made the id up (`<batch webhook-id>#<n>`): it is keyed apart from sent ids.
    pub derived_id: bool,
}

/// Stores an accepted event as a job and tells it (`Accepted`, or `Duplicate` when the event id was
/// stored before with the same content), with what the endpoint read about its `subject`. An event
/// id stored before with other content is an `ApiError::Conflict`, already told (`Conflict`): the
/// caller only answers it.
pub async fn enqueue_event(
    state: &AppState,
    endpoint: &'static str,
    event: Event<'_>,
    subject: Subject<'_>,
) -> Result<crate::queue::Enqueued, ApiError> {
    let Event { kind, webhook_id, payload, content, derived_id } = event;
    // Time-ordered (v7) audit ids append to the primary-key index instead of dirtying a random page per row.
    let audit_id = Uuid::now_v7();
    let mut job = crate::queue::JobRecord::new(audit_id, kind, &webhook_id, payload).with_content_hash(content);
    if derived_id {
        job = job.with_derived_id();
    }
    // The acceptance's outbox record is committed with the job (and dropped if the job turns out
    // to be stored before: that is a duplicate or a conflict, recorded below).
    if state.bus.recording() {
        let accepted = lifecycle::Intake { audit_id, webhook_id: &webhook_id, endpoint, subject };
        job = job.with_accepted_record(state.bus.record(&lifecycle::Event::Accepted(accepted)));
    }
    let enqueued = state.intake.enqueue(job).await?;
    let intake = lifecycle::Intake { audit_id: enqueued.audit_id, webhook_id: &webhook_id, endpoint, subject };
    if enqueued.conflict {
        let error = ApiError::Conflict(format!("webhook-id {webhook_id} was already used for a different event"));
        let http_status = error.status().as_u16();
        state.bus.emit_recorded(lifecycle::Event::Conflict { intake, error: &error, http_status }).await?;
        return Err(error);
    }
    match enqueued.created {
        true => state.bus.emit(lifecycle::Event::Accepted(intake)),
        // Nothing was stored: the duplicate's record is appended, and committed before the answer.
        false => state.bus.emit_recorded(lifecycle::Event::Duplicate(intake)).await?,
    }
    Ok(enqueued)
}

/// JSON text with every object's keys in sorted order and no whitespace: the same content gives the
/// same text whatever order and spacing the sender used. A batch item has no bytes of its own to
/// hash (the batch's bytes cover its neighbours too), and the same event id may come alone or in a
/// batch, so directory events hash this text of the event; the HR endpoint hashes its raw body,
/// which a retrying sender resends byte for byte (the signature covers it).
pub fn canonical_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Writing a string or a plain value into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                canonical_json(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// The `{audit_id}` path segment as a UUID; anything else is a 400 naming it.
pub struct AuditIdPath(pub Uuid);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuditIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("Invalid auditId: {e}")))?;
        Uuid::parse_str(&raw)
            .map(AuditIdPath)
            .map_err(|_| ApiError::BadRequest(format!("Invalid auditId {raw:?}: expected a UUID")))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_media_type;

    #[test]
    fn canonical_json_ignores_key_order_and_spacing_only() {
        let text = |v: &serde_json::Value| {
            let mut out = Vec::new();
            super::canonical_json(v, &mut out);
            String::from_utf8(out).unwrap()
        };
        let a: serde_json::Value = serde_json::from_str(r#"{"b": [1, {"y": "\n", "x": null}], "a": true}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":true,"b":[1,{"x":null,"y":"\n"}]}"#).unwrap();
        assert_eq!(text(&a), r#"{"a":true,"b":[1,{"x":null,"y":"\n"}]}"#);
        assert_eq!(text(&a), text(&b));
        let c: serde_json::Value = serde_json::from_str(r#"{"a":true,"b":[{"x":null,"y":"\n"},1]}"#).unwrap();
        assert_ne!(text(&a), text(&c), "array order is content");
    }

    #[test]
    fn json_media_types_are_recognised_in_any_letter_case_and_with_parameters() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
            "application/cloudevents+json",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for refused in ["", "text/plain", "application/jsonp", "text/x+json", "application/", "+json", "json"] {
            assert!(!is_json_media_type(refused), "{refused}");
        }
    }
}
