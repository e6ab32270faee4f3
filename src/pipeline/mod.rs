//! What a job does, as plain async functions over the Genesys client: no axum in here.
//!
//! `Provisioning` is the `JobHandler` the service runs; it dispatches on the job's kind and tells
//! what each job did to Genesys on the lifecycle bus (the audit trail writes it).

pub mod directory;
pub mod genesys_event;
pub mod mirror;
pub mod new_hire;
pub mod provision;
pub mod reconcile;
pub mod scim_user;

use std::sync::Arc;

use crate::config::DepartmentMap;
use crate::genesys::GenesysClient;
use crate::lifecycle::{Bus, DiscrepancyKind, Event, JobKind, ProvisionFailure, ProvisionOutcome, SyncFailure};
use crate::policy::Policy;
use crate::queue::worker::{CheckFuture, HandlerFuture, JobFailure, JobHandler, JobSuccess};
use crate::queue::{Discrepancy, Job, JobStore};

use crate::config::SyncConfig;
use directory::{SyncError, SyncEvent};
pub use new_hire::NewHire;
use provision::ProvisionError;

/// The person key of a stored directory event (its Genesys `externalId`).
fn event_external_id(payload: &serde_json::Value) -> String {
    payload.get("data").map(directory::person_key).unwrap_or_default()
}

/// The service's job handler.
pub struct Provisioning {
    departments: DepartmentMap,
    /// None when no Genesys credentials are configured: jobs are parked with that reason.
    genesys: Option<Arc<GenesysClient>>,
    bus: Bus,
    sync: SyncConfig,
    /// Judges every user before a create or PATCH is sent for it.
    policy: Arc<Policy>,
    /// Where discrepancy reports are kept.
    store: JobStore,
    /// What Genesys last confirmed for the users the service manages (a table in the same store).
    mirror: mirror::Mirror,
    /// Directory events in progress, at most `sync.chunk_size`.
    sync_chunk: tokio::sync::Semaphore,
}

impl Provisioning {
    pub fn new(
        departments: DepartmentMap,
        genesys: Option<Arc<GenesysClient>>,
        bus: Bus,
        sync: SyncConfig,
        policy: Arc<Policy>,
        store: JobStore,
    ) -> Self {
        let sync_chunk = tokio::sync::Semaphore::new(sync.chunk_size);
        let mirror = mirror::Mirror::new(store.clone());
        Provisioning { departments, genesys, bus, sync, policy, store, mirror, sync_chunk }
    }

    fn client(&self) -> Result<&GenesysClient, JobFailure> {
        self.genesys.as_deref().ok_or_else(|| JobFailure::Permanent {
            error: "Genesys credentials are not configured (GENESYS_CLIENT_ID / GENESYS_CLIENT_SECRET); \
                    replay this job once they are"
                .to_string(),
        })
    }

    async fn directory_sync(&self, job: &Job) -> Result<JobSuccess, JobFailure> {
        let event: SyncEvent = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobFailure::Permanent { error: format!("stored directory event is unreadable: {e}") })?;
        let client = self.client()?;
        // A large batch goes to Genesys a chunk at a time; the rest wait here, not in Genesys's queue.
        let _slot = self.sync_chunk.acquire().await.map_err(|_| JobFailure::Retryable {
            error: "the sync handler is shutting down".to_string(),
            retry_after: None,
        })?;
        let department =
            event.data.get("departmentCode").and_then(|d| d.as_str()).and_then(|code| self.departments.get(code));
        let cx = directory::SyncContext {
            client,
            mirror: &self.mirror,
            mapping: &self.sync.mapping,
            department,
            department_groups: self.departments.iter().map(|d| d.group_id.to_string()).collect(),
            on_terminate: self.sync.on_terminate,
            remove_groups_on_terminate: self.sync.remove_groups_on_terminate,
            policy: &self.policy,
        };
        let external_id = event_external_id(&job.payload);
        match directory::apply(&cx, &event).await {
            Ok(done) => {
                self.report_discrepancies(job, &external_id, &done).await;
                let result = serde_json::to_value(&done).unwrap_or_default();
                self.bus.emit(Event::Synced { job, external_id: &external_id, outcome: done.outcome, result: &result });
                Ok(JobSuccess { result })
            }
            Err(SyncError::Genesys(g)) if g.is_credentials_refused() => {
                Err(JobFailure::CredentialsRefused { error: g.to_string() })
            }
            Err(e) => {
                let retryable = e.is_retryable();
                let cause = match &e {
                    SyncError::Policy(violations) => SyncFailure::Policy { violations: violations.as_slice() },
                    SyncError::Mapping(_)
                    | SyncError::Genesys(_)
                    | SyncError::Transient(_)
                    | SyncError::Gone { .. }
                    | SyncError::Refused { .. } => SyncFailure::Failed { genesys_status: e.genesys_status() },
                };
                self.bus.emit(Event::SyncFailed { job, external_id: &external_id, retryable, error: &e, cause });
                let retry_after = match &e {
                    SyncError::Genesys(g) => g.retry_after(),
                    _ => None,
                };
                Err(JobFailure::new(retryable, e.to_string(), retry_after))
            }
        }
    }

    /// Stores and tells each attribute Genesys holds differently from what was sent
    /// (`attribute_mismatch`), and each one someone changed inside Genesys (`drift`).
    async fn report_discrepancies(&self, job: &Job, external_id: &str, done: &directory::Synced) {
        let new = Discrepancy::maker(job.audit_id, self.store.clock().now_ms());
        let items: Vec<Discrepancy> = done
            .discrepancies
            .iter()
            .map(|m| new(DiscrepancyKind::AttributeMismatch, external_id, &m.field, &m.expected, &m.actual))
            .chain(
                done.drift.iter().map(|d| new(DiscrepancyKind::Drift, external_id, &d.field, &d.mirrored, &d.genesys)),
            )
            .collect();
        self.record_discrepancies(job, &items).await;
    }

    /// Tells each discrepancy on the bus (the audit writes it) and stores it for the report.
    async fn record_discrepancies(&self, job: &Job, items: &[Discrepancy]) {
        if items.is_empty() {
            return;
        }
        for d in items {
            self.bus.emit(Event::Discrepancy {
                job,
                external_id: &d.external_id,
                kind: d.kind,
                field: &d.field,
                expected: &d.expected,
                actual: &d.actual,
            });
        }
        if let Err(e) = self.store.record_discrepancies(items).await {
            // The audit lines above hold them; the report endpoint will miss them.
            tracing::error!(audit_id = %job.audit_id, error = %e, "storing discrepancies failed");
        }
    }

    /// Compares the users in Genesys with the mirror; drift and users gone from Genesys are
    /// discrepancies of kind `drift` (a user gone is its `id` drifting to null).
    async fn reconcile(&self, job: &Job) -> Result<JobSuccess, JobFailure> {
        let client = self.client()?;
        match reconcile::reconcile(client, &self.store, &self.mirror).await {
            Ok(done) => {
                let new = Discrepancy::maker(job.audit_id, self.store.clock().now_ms());
                let null = serde_json::Value::Null;
                let items: Vec<Discrepancy> = done
                    .drift
                    .iter()
                    .flat_map(|u| {
                        u.fields
                            .iter()
                            .map(|d| new(DiscrepancyKind::Drift, &u.external_id, &d.field, &d.mirrored, &d.genesys))
                    })
                    .chain(done.missing.iter().map(|m| {
                        new(DiscrepancyKind::Drift, &m.external_id, "id", &serde_json::json!(m.scim_id), &null)
                    }))
                    .collect();
                self.record_discrepancies(job, &items).await;
                let result = serde_json::to_value(&done).unwrap_or_default();
                self.bus.emit(Event::Reconciled { job, result: &result });
                Ok(JobSuccess { result })
            }
            Err(g) if g.is_credentials_refused() => Err(JobFailure::CredentialsRefused { error: g.to_string() }),
            Err(g) => Err(JobFailure::new(g.is_retryable(), g.to_string(), g.retry_after())),
        }
    }

    async fn new_hire(&self, job: &Job) -> Result<JobSuccess, JobFailure> {
        let hire: NewHire = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobFailure::Permanent { error: format!("stored new-hire payload is unreadable: {e}") })?;
        let department = self.departments.get(&hire.department_code).ok_or_else(|| JobFailure::Permanent {
            error: format!("Unmapped department code: {} (removed from the config after intake)", hire.department_code),
        })?;
        let client = self.client()?;
        let checkpoint = provision::Checkpoint { store: &self.store, job };
        match provision::new_hire(client, &self.mirror, &self.policy, &hire, department, Some(&checkpoint)).await {
            Ok(done) => {
                let outcome = match (done.adopted, done.resumed) {
                    (true, _) => ProvisionOutcome::Adopted,
                    (false, true) => ProvisionOutcome::Resumed,
                    (false, false) => ProvisionOutcome::Created,
                };
                let result = serde_json::to_value(&done).unwrap_or_default();
                self.bus.emit(Event::Provisioned { job, outcome, result: &result });
                Ok(JobSuccess { result })
            }
            // Not this job's failure: the worker pauses, says so once and puts the job back.
            Err(ProvisionError::Genesys(g)) if g.is_credentials_refused() => {
                Err(JobFailure::CredentialsRefused { error: g.to_string() })
            }
            Err(e) => {
                let retryable = e.is_retryable();
                let cause = match &e {
                    ProvisionError::Genesys(g) => ProvisionFailure::Genesys { status: g.status() },
                    ProvisionError::Uncorrectable { status, corrections, .. } => {
                        ProvisionFailure::Uncorrectable { status: *status, corrections }
                    }
                    ProvisionError::Transient(_) => ProvisionFailure::Transient,
                    ProvisionError::Policy(violations) => {
                        ProvisionFailure::Policy { violations: violations.as_slice() }
                    }
                };
                self.bus.emit(Event::ProvisionFailed { job, retryable, error: &e, cause });
                let retry_after = match &e {
                    ProvisionError::Genesys(g) => g.retry_after(),
                    _ => None,
                };
                Err(JobFailure::new(retryable, e.to_string(), retry_after))
            }
        }
    }
}

impl JobHandler for Provisioning {
    fn handle<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            // A kind this version does not know (stored by a newer replica on a shared queue).
            let kind: JobKind = job
                .kind
                .parse()
                .map_err(|_| JobFailure::Permanent { error: format!("unknown job kind {:?}", job.kind) })?;
            match kind {
                JobKind::NewHire => self.new_hire(job).await,
                JobKind::DirectorySync => self.directory_sync(job).await,
                JobKind::Reconcile => self.reconcile(job).await,
                JobKind::GenesysEvent => {
                    let own = self.genesys.as_deref().map(GenesysClient::client_id);
                    Ok(JobSuccess { result: genesys_event::judge(&job.payload, own) })
                }
            }
        })
    }

    /// Whether Genesys grants our credentials a token again (asked while the workers are paused).
    fn check_credentials(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let Some(client) = self.genesys.as_deref() else { return Ok(()) };
            match client.check_token().await {
                Err(e) if e.is_credentials_refused() => Err(JobFailure::CredentialsRefused { error: e.to_string() }),
                _ => Ok(()),
            }
        })
    }
}
