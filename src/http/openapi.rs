//! The service's own API as an OpenAPI 3.1 document, derived from the handlers' annotations and the
//! types below, served at `GET /openapi.json`.
//!
//! The router is built from the same list (`routes`), so an endpoint cannot be served without being
//! described, nor described without being served. The schema-only types here describe answers the
//! handlers write as ad-hoc JSON (or, for the new-hire body, a reader that never builds a struct);
//! `tests/it/openapi.rs` checks real answers against them, and `.ci/run` fuzzes the running service
//! with the document (schemathesis).

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, admin, directory, genesys_events, health, hr, register, siem, validation};
use crate::error::ErrorBody;

/// Names of the security schemes, as the handlers' `security(...)` annotations use them.
pub const SIGNATURE_SCHEMES: [&str; 3] = ["webhook_id", "webhook_timestamp", "webhook_signature"];
pub const ADMIN_SCHEME: &str = "admin_token";
/// The validation webhook's shared secret header (its default name; `[validation_webhook]
/// secret_header` may name another).
pub const VALIDATION_SCHEME: &str = "validation_secret";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "genesys-provisioner",
        description = "Keeps Genesys Cloud in step with an HR system. Webhooks are stored as jobs before \
                       they are acknowledged; admin routes show and manage the jobs. Every error answer \
                       is `{\"error\": \"<what is wrong>\"}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "intake", description = "Signed webhooks (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature)"),
        (name = "validation", description = "The SCIM validation webhook: is this user allowed by the provisioning policy? (a shared secret header or a Standard Webhooks signature)"),
        (name = "admin", description = "Jobs, dead letters, reports and SIEM delivery (Authorization: Bearer <ADMIN_TOKEN>)"),
        (name = "operations", description = "Health, readiness, metrics and this document (no authentication)"),
    )
)]
struct ApiDoc;

/// The Standard Webhooks headers (all three together) and the admin bearer token.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let headers = [
            (SIGNATURE_SCHEMES[0], crate::signing::HEADER_ID, "The event id, covered by the signature."),
            (SIGNATURE_SCHEMES[1], crate::signing::HEADER_TIMESTAMP, "Unix seconds when the event was signed."),
            (
                SIGNATURE_SCHEMES[2],
                crate::signing::HEADER_SIGNATURE,
                "`v1,<base64 HMAC-SHA256 of id.timestamp.body>` with a configured key (HR_WEBHOOK_SECRET for the HR webhooks, VALIDATION_SIGNING_SECRET for the validation webhook); several may be sent, space separated.",
            ),
        ];
        for (scheme, header, description) in headers {
            let key = ApiKey::Header(ApiKeyValue::with_description(header, description));
            components.add_security_scheme(scheme, SecurityScheme::ApiKey(key));
        }
        let shared = ApiKey::Header(ApiKeyValue::with_description(
            crate::config::DEFAULT_VALIDATION_SECRET_HEADER,
            "VALIDATION_WEBHOOK_SECRET, sent as it is (the header `[validation_webhook] secret_header` names; this is its default).",
        ));
        components.add_security_scheme(VALIDATION_SCHEME, SecurityScheme::ApiKey(shared));
        let events = ApiKey::Header(ApiKeyValue::with_description(
            crate::config::DEFAULT_EVENTS_SECRET_HEADER,
            "GENESYS_EVENTS_SECRET, as the AWS API destination's API key (the header `[genesys_events] secret_header` names; this is its default).",
        ));
        components.add_security_scheme("events_secret", SecurityScheme::ApiKey(events));
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The ADMIN_TOKEN, as `Authorization: Bearer <token>`."))
            .build();
        components.add_security_scheme(ADMIN_SCHEME, SecurityScheme::Http(bearer));
    }
}

/// Every route of the service with its description: the one list the router and the document are
/// both built from.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(hr::user_created))
        .routes(routes!(directory::sync_event))
        .routes(routes!(directory::sync_batch))
        .routes(routes!(validation::scim_validation))
        .routes(routes!(genesys_events::genesys_event))
        .routes(routes!(admin::job))
        .routes(routes!(admin::dead_letters))
        .routes(routes!(admin::replay))
        .routes(routes!(admin::delete_dead_letter))
        .routes(routes!(admin::discrepancies))
        .routes(routes!(admin::reconcile))
        .routes(routes!(siem::siem))
        .routes(routes!(register::register, register::show, register::remove))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(document))
}

/// The document as JSON text, built once.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, api) = routes().split_for_parts();
        // Serialising a tree of plain structs and maps cannot fail.
        api.to_pretty_json().unwrap_or_else(|e| format!(r#"{{"error":"the document could not be written: {e}"}}"#))
    })
}

/// This document (OpenAPI 3.1). It describes no secret, so it needs no credentials.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service", content_type = "application/json", body = Object))
)]
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], document_json()).into_response()
}

/// The body of `POST /webhooks/hr/user-created`. Fields not listed are kept with the job.
#[derive(ToSchema)]
#[schema(as = NewHire, examples(json!({
    "id": "evt-2026-11-23-0001", "email": "jane.doe@example.com", "firstName": "Jane", "lastName": "Doe",
    "departmentCode": "ENG", "title": "Software Engineer", "employeeId": "E-1042", "employeeNumber": "1042",
    "hireDate": "2026-12-01", "managerEmail": "maria.lopez@example.com", "phone": "+1 317 555 0142"
})))]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Describes a body read field by field (`SentHire`); never built.
pub struct NewHireDoc {
    /// The event id when no `webhook-id` header is sent (at most 255 printable characters).
    #[schema(max_length = 255)]
    id: Option<String>,
    /// Required; at most 254 characters.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// Required; one of the configured `[departments]`, else 422.
    #[schema(max_length = 256)]
    department_code: String,
    #[schema(max_length = 256)]
    first_name: Option<String>,
    #[schema(max_length = 256)]
    last_name: Option<String>,
    #[schema(max_length = 256)]
    title: Option<String>,
    #[schema(max_length = 256)]
    phone: Option<String>,
    /// A string or a number.
    #[schema(value_type = Option<TextOrNumber>)]
    employee_id: Option<String>,
    /// A string or a number.
    #[schema(value_type = Option<TextOrNumber>)]
    employee_number: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    hire_date: Option<String>,
    #[schema(format = Email, max_length = 254)]
    manager_email: Option<String>,
}

/// Text, or a number (HR systems send identifiers either way).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Schema only.
pub enum TextOrNumber {
    Text(String),
    Number(f64),
}

/// One directory event: the body of `POST /webhooks/directory-sync`, an item of the batch.
#[derive(ToSchema)]
#[schema(as = DirectoryEvent, examples(json!({
    "id": "evt-dir-0001", "event": "user.updated",
    "data": {"externalId": "E-1042", "workEmail": "jane.doe@example.com", "firstName": "Jane", "lastName": "Doe", "departmentCode": "ENG"}
})))]
#[allow(dead_code)] // Describes a body parsed as JSON (`SyncEvent::from_json`); never built.
pub struct DirectoryEventDoc {
    /// The event id when no `webhook-id` header is sent (in a batch: else `<batch webhook-id>#<index>`).
    #[schema(max_length = 255)]
    id: Option<String>,
    event: crate::pipeline::directory::SyncKind,
    /// The HR record as the vendor sends it (the configured mapping reads it). It must name the
    /// person: `employeeId`, `externalId` or `employeeNumber` (the person key, in that order).
    #[schema(value_type = Object)]
    data: serde_json::Map<String, serde_json::Value>,
}

/// The body of `POST /webhook/scim-validation`: a Genesys webhook about a user.
#[derive(ToSchema)]
#[schema(as = ValidationEvent, examples(json!({
    "eventType": "user.created", "eventTimestamp": "2026-11-23T10:00:00.000Z",
    "data": {
        "id": "7d4b2d2e-0f4e-4a8e-9c1e-3f4b5a6c7d8e", "userName": "jane.doe@example.com",
        "emails": [{"value": "jane.doe@example.com", "type": "work", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"},
        "urn:ietf:params:scim:schemas:extension:genesys:purecloud:2.0:User": {"externalIds": [{"authority": "costCenter", "value": "CC-1042"}]},
        "roles": [{"value": "agent"}]
    }
})))]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Describes a body parsed as JSON (`ValidationEvent::read`); never built.
pub struct ValidationEventDoc {
    /// Only `user.created` is judged; any other type is answered `OK` and ignored.
    event_type: String,
    /// Required for `user.created`; echoed as sent.
    event_timestamp: Option<String>,
    /// Required for `user.created`: the SCIM user. Read: `userName`, `emails` (the entry with
    /// `primary: true`), the enterprise extension's `department` (else a top-level `department`),
    /// the cost center (a top-level `costCenter`, the enterprise extension's `costCenter`, the Genesys
    /// extension's `externalIds` entry with authority `costCenter`), `roles`.
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A 400 of the validation webhook: the REJECTED answer, or the error of a malformed body.
pub struct ValidationRefused;

impl utoipa::PartialSchema for ValidationRefused {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name(validation::ValidationRejected::name()))
            .item(Ref::from_schema_name(ErrorBody::name()))
            .description(Some("REJECTED with every violation, or the error of a malformed body"))
            .into()
    }
}

impl ToSchema for ValidationRefused {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let rejected = <validation::ValidationRejected as utoipa::PartialSchema>::schema();
        schemas.push((validation::ValidationRejected::name().into(), rejected));
        <validation::ValidationRejected as ToSchema>::schemas(schemas);
        schemas.push((ErrorBody::name().into(), <ErrorBody as utoipa::PartialSchema>::schema()));
    }
}

/// An event stored as a job (or stored before: a retry gets the same answer).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// `provisioning_queued` (new hire), `queued` (directory event, replay).
    #[schema(example = "queued")]
    pub status: String,
    /// The job's id: `GET /jobs/{audit_id}` shows it.
    pub audit_id: uuid::Uuid,
}

/// The answer to a batch: per item, in order, `queued` or `duplicate` with its auditId, or an error.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Schema only: the handler writes this JSON directly.
pub struct BatchAnswer {
    accepted: u64,
    rejected: u64,
    results: Vec<BatchResult>,
    /// Why nothing was stored, or why the sender must retry the batch (503).
    error: Option<String>,
}

/// One batch item's outcome.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Schema only.
pub enum BatchResult {
    Stored {
        index: u64,
        /// `queued` or `duplicate`.
        status: String,
        #[serde(rename = "auditId")]
        audit_id: uuid::Uuid,
    },
    Refused {
        index: u64,
        error: String,
        /// When the item's user violates the provisioning policy: every violation.
        violations: Option<Vec<crate::policy::Violation>>,
    },
}

/// A 400 for a batch: the per-item answer, or the error of a body that is no batch at all. Written
/// by hand as `anyOf`: a per-item answer with its `error` matches the error shape too, and the
/// `oneOf` an untagged enum derives would refuse a body that matches both.
pub struct BatchRefused;

impl utoipa::PartialSchema for BatchRefused {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name(BatchAnswer::name()))
            .item(Ref::from_schema_name(ErrorBody::name()))
            .description(Some("The per-item answer, or the error of a body that is no batch at all"))
            .into()
    }
}

impl ToSchema for BatchRefused {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((BatchAnswer::name().into(), <BatchAnswer as utoipa::PartialSchema>::schema()));
        <BatchAnswer as ToSchema>::schemas(schemas);
        schemas.push((ErrorBody::name().into(), <ErrorBody as utoipa::PartialSchema>::schema()));
    }
}

/// A page of dead letters, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Schema only: the handler writes this JSON directly.
pub struct DeadLetterPage {
    items: Vec<admin::JobView>,
    total: u64,
    limit: u32,
    offset: u64,
    /// The offset of the next page; null on the last.
    #[schema(required)]
    next_offset: Option<u64>,
}

/// Directory-sync totals, attribute mismatches and failed sync jobs since a time.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Schema only: the handler writes this JSON directly.
pub struct DiscrepancyReport {
    /// RFC 3339.
    since: String,
    totals: ReportTotals,
    discrepancies: Vec<Mismatch>,
    failures: Vec<SyncFailure>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct ReportTotals {
    processed: u64,
    successful: u64,
    failed: u64,
    discrepancies: u64,
}

/// An attribute Genesys shows differently from what was PATCHed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Schema only.
pub struct Mismatch {
    kind: String,
    audit_id: uuid::Uuid,
    external_id: String,
    field: String,
    #[schema(value_type = Value)]
    expected: serde_json::Value,
    #[schema(value_type = Value)]
    actual: serde_json::Value,
    at: String,
}

/// A directory-sync job that became a dead letter.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Schema only.
pub struct SyncFailure {
    /// `sync_failure`.
    kind: String,
    audit_id: uuid::Uuid,
    #[schema(required)]
    external_id: Option<String>,
    #[schema(required)]
    error: Option<String>,
    #[schema(required)]
    at: Option<String>,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct Health {
    /// `ok`.
    status: String,
}

/// `GET /readyz` when ready.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct Ready {
    /// `ready`.
    status: String,
    /// `sqlite` or `postgres`.
    database: String,
}

/// `GET /readyz` when not ready: the error shape, with a status and a reason when Genesys refuses
/// the credentials.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct NotReady {
    /// `not_ready`.
    status: Option<String>,
    /// `genesys_auth_failed`.
    reason: Option<String>,
    error: String,
}

/// The answer of `POST /admin/register-webhook`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Schema only: the handler serializes `events::Registration`.
pub struct RegistrationAnswer {
    /// `created`, `updated` or `unchanged`.
    #[schema(example = "created")]
    pub status: String,
    /// `eventbridge` or `process-automation`.
    pub route: String,
    pub name: String,
    /// `integrationId` or `triggerId` (empty in a dry run that would create).
    #[schema(value_type = Object)]
    pub ids: serde_json::Value,
    /// What differed from the config (`updated`).
    pub differences: Vec<String>,
    /// The writes made, or with `dryRun` the ones it would make: `{method, path, body?}`.
    #[schema(value_type = Vec<Object>)]
    pub calls: Vec<serde_json::Value>,
    pub dry_run: bool,
}
