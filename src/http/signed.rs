//! The edge of every signed webhook endpoint: `SignedWebhook` makes the checks they all make before
//! their own (content type, size, signature, reading the body), and `Refused` is the answer of a
//! webhook refused there or by its handler. A `Refused` audits and counts itself as it becomes the
//! answer, so a handler returns `Result<Response, Refused>` and refuses with `?`; nothing it refuses
//! can go unaudited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};

use super::{AppState, Refusal, read_body, refuse, verify_hr_signature};
use crate::audit::bounded_copy;
use crate::error::ApiError;
use crate::lifecycle::Subject;

/// A signed webhook endpoint: the path its audit lines name, what its body is read as, and how
/// its sender is authenticated (by default the HR sender's Standard Webhooks signature).
pub trait Endpoint {
    const PATH: &'static str;
    type Body: WebhookBody;
    /// The header that carries the sender's event id (named in the audit line of a refusal).
    const ID_HEADER: HeaderName = crate::signing::ID_HEADER;

    /// Checks the sender once the body is read; returns the event id header when sent. A refusal
    /// here is an unauthenticated one (`Refusal::unauthenticated`).
    fn authenticate(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, Refusal> {
        verify_hr_signature(state, headers, body)
    }
}

/// How a body that passed the checks is read before the handler sees it.
pub trait WebhookBody: Sized + Send {
    fn read(bytes: Bytes) -> Result<Self, Refusal>;
}

/// Kept as bytes, for an endpoint that reads them itself (the new-hire reader borrows from them).
impl WebhookBody for Bytes {
    fn read(bytes: Bytes) -> Result<Self, Refusal> {
        Ok(bytes)
    }
}

/// Parsed as JSON; malformed JSON is a 400, refused after the signature passed (audited one line each).
impl WebhookBody for serde_json::Value {
    fn read(bytes: Bytes) -> Result<Self, Refusal> {
        serde_json::from_slice(&bytes).map_err(|e| Refusal::from(ApiError::BadRequest(format!("Malformed JSON: {e}"))))
    }
}

/// A webhook to endpoint `E` that passed the content type, size (a 413 drains what it may, see
/// `read_body`) and authentication (`Endpoint::authenticate`) checks, its body read as `E::Body`.
/// Refused otherwise.
pub struct SignedWebhook<E: Endpoint> {
    pub body: E::Body,
    /// The event id header (`E::ID_HEADER`) when sent.
    pub header_id: Option<String>,
    origin: Origin,
}

/// What the audit line of a refusal needs to know about the request it answers.
#[derive(Clone)]
struct Origin {
    state: AppState,
    endpoint: &'static str,
    /// The header of the sender's event id.
    id_header: HeaderName,
    /// The request's head: its peer address and event id header (see `refuse`). Shared, so a
    /// refusal does not copy the headers.
    request: Arc<Parts>,
}

impl<E: Endpoint> SignedWebhook<E> {
    /// This webhook refused: an `ApiError` gets its outcome from its kind (`Refusal::from`).
    pub fn refuse(&self, refusal: impl Into<Refusal>) -> Refused {
        Refused::new(refusal.into(), self.origin.clone())
    }
}

impl<E: Endpoint> FromRequest<AppState> for SignedWebhook<E> {
    type Rejection = Refused;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Refused> {
        // The request taken apart rather than its headers extracted: that extractor copies the header map.
        let (parts, body) = request.into_parts();
        let origin =
            Origin { state: state.clone(), endpoint: E::PATH, id_header: E::ID_HEADER, request: Arc::new(parts) };
        let checked = match read_body(state, &origin.request.headers, body).await {
            Ok(bytes) => E::authenticate(state, &origin.request.headers, &bytes).map(|id| (bytes, id)),
            Err(refusal) => Err(refusal),
        };
        let (bytes, header_id) = match checked {
            Ok(read) => read,
            Err(refusal) => return Err(Refused::new(refusal, origin)),
        };
        match E::Body::read(bytes) {
            Ok(body) => Ok(SignedWebhook { body, header_id, origin }),
            Err(refusal) => Err(Refused::new(refusal, origin)),
        }
    }
}

/// A webhook answered with an error instead of being stored. Turned into the answer, it first
/// writes its audit line and counts it (`refuse`), unless it was accounted for where it happened.
#[must_use = "a refusal is audited when it becomes the answer"]
pub struct Refused(Answer);

enum Answer {
    /// Audited and counted by `refuse` as it becomes the answer.
    /// `email` and `department`: whom the refused event is about, when known (see `about`).
    Refusal { refusal: Refusal, origin: Origin, email: Option<String>, department: Option<String> },
    /// Answered as it is: a conflict, which `enqueue_event` already audited (`intake.conflict`), or a
    /// failure of the service's own that is no decision about the event.
    Answered(ApiError),
}

impl Refused {
    fn new(refusal: Refusal, origin: Origin) -> Self {
        Refused(Answer::Refusal { refusal, origin, email: None, department: None })
    }

    /// An error answered with no `intake.rejected` line (see `Answer::Answered`).
    pub fn answered(error: ApiError) -> Self {
        Refused(Answer::Answered(error))
    }

    /// Names the person the refused event is about in its audit line, as sent (copied, at most
    /// `audit::TEXT_MAX` bytes each: the line is written after the handler has returned).
    pub fn about(self, email: Option<&str>, department_code: Option<&str>) -> Self {
        match self.0 {
            Answer::Refusal { refusal, origin, .. } => Refused(Answer::Refusal {
                refusal,
                origin,
                email: email.map(bounded_copy),
                department: department_code.map(bounded_copy),
            }),
            answered => Refused(answered),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self.0 {
            Answer::Refusal { refusal, origin, email, department } => {
                let subject = Subject::person(email.as_deref(), department.as_deref());
                refuse(&origin.state, origin.endpoint, &origin.id_header, &origin.request, refusal, subject)
            }
            Answer::Answered(error) => error.into_response(),
        }
    }
}
