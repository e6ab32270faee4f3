//! `GET /admin/siem` (bearer `ADMIN_TOKEN`): each SIEM destination's delivery state, as the shared
//! outbox tables hold it (on PostgreSQL, every replica's deliveries).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::admin::Admin;
use crate::error::ApiError;
use crate::queue::worker::ms_to_rfc3339;

/// SIEM delivery at a glance.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiemView {
    /// False when no `[[siem.destinations]]` is configured: nothing is recorded then.
    enabled: bool,
    /// Records in the outbox that some destination has not confirmed yet.
    records: u64,
    destinations: Vec<DestinationView>,
}

/// One destination's delivery state.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationView {
    name: String,
    /// `splunk-hec`, `http-json` or `syslog`.
    kind: String,
    /// Where the records go, without credentials or query (`tcp://` or `tls://host:port` for syslog).
    url: String,
    /// Records it confirmed, ever.
    delivered: u64,
    /// Records waiting for it.
    pending: u64,
    /// When the oldest record waiting for it was made.
    #[schema(required)]
    oldest_pending_at: Option<String>,
    /// Failed deliveries (batches), ever.
    failures: u64,
    #[schema(required)]
    last_delivered_at: Option<String>,
    /// The last failure, with when it happened (kept after the destination recovers).
    #[schema(required)]
    last_error: Option<String>,
    #[schema(required)]
    last_error_at: Option<String>,
    /// Set while it is backing off after a failure: no delivery is tried before then.
    #[schema(required)]
    backing_off_until: Option<String>,
    /// True while it refuses the records as sent (misconfigured: a wrong token, index or URL), as
    /// this process saw it; the records are kept and sent again every `siem.refused_retry_secs`.
    refusing: bool,
}

/// Each SIEM destination: what it delivered, what waits for it, its last failure.
#[utoipa::path(
    get,
    path = "/admin/siem",
    tag = "admin",
    responses(
        (status = 200, description = "The destinations' delivery state", body = SiemView),
        (status = 401, description = "Missing or wrong admin token", body = crate::error::ErrorBody),
        (status = 503, description = "The job store is unavailable", body = crate::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn siem(_: Admin, State(state): State<AppState>) -> Result<Json<SiemView>, ApiError> {
    let Some(outbox) = &state.outbox else {
        return Ok(Json(SiemView { enabled: false, records: 0, destinations: Vec::new() }));
    };
    let now = state.store.clock().now_ms();
    let mut destinations = Vec::new();
    for d in outbox.destinations() {
        let stored = state.store.destination_state(&d.name).await?;
        destinations.push(DestinationView {
            name: d.name.clone(),
            kind: d.kind.to_string(),
            url: d.url.clone(),
            delivered: stored.delivered,
            pending: stored.pending,
            oldest_pending_at: stored.oldest_pending_at.map(ms_to_rfc3339),
            failures: stored.failures,
            last_delivered_at: stored.last_delivered_at.map(ms_to_rfc3339),
            last_error: stored.last_error,
            last_error_at: stored.last_error_at.map(ms_to_rfc3339),
            backing_off_until: stored.backoff_until.filter(|until| *until > now).map(ms_to_rfc3339),
            refusing: d.local().refusing,
        });
    }
    let records = state.store.outbox_records().await?;
    Ok(Json(SiemView { enabled: true, records, destinations }))
}
