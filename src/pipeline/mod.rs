//! What a job does, as plain async functions over the Genesys client: no axum in here.
//!
//! `Provisioning` is the `JobHandler` the service runs; it dispatches on the job's kind.

pub mod directory;
pub mod new_hire;
pub mod provision;
pub mod scim_user;

use std::sync::Arc;

use crate::audit::{AuditLog, AuditRecord};
use crate::config::DepartmentMap;
use crate::genesys::GenesysClient;
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

/// Job kinds, as stored in the queue.
pub const KIND_NEW_HIRE: &str = "hr.user_created";
pub const KIND_DIRECTORY_SYNC: &str = "directory.sync";

/// The service's job handler.
pub struct Provisioning {
    departments: DepartmentMap,
    /// None when no Genesys credentials are configured: jobs are parked with that reason.
    genesys: Option<Arc<GenesysClient>>,
    audit: AuditLog,
    groups: provision::GroupLocks,
    sync: SyncConfig,
    /// Where discrepancy reports are kept.
    store: JobStore,
    /// Directory events in progress, at most `sync.chunk_size`.
    sync_chunk: tokio::sync::Semaphore,
}

impl Provisioning {
    pub fn new(
        departments: DepartmentMap,
        genesys: Option<Arc<GenesysClient>>,
        audit: AuditLog,
        sync: SyncConfig,
        store: JobStore,
    ) -> Self {
        let sync_chunk = tokio::sync::Semaphore::new(sync.chunk_size);
        Provisioning { departments, genesys, audit, groups: Default::default(), sync, store, sync_chunk }
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
        let create = async |user: &crate::genesys::types::ScimUser| {
            Ok(provision::create_user(client, &self.groups, user.clone(), department, None).await?.scim_id)
        };
        let cx = directory::SyncContext {
            client,
            mapping: &self.sync.mapping,
            groups: &self.groups,
            target_group: department.map(|d| d.group_id.to_string()),
            department_name: department.map(|d| d.name.clone()),
            department_groups: self.departments.iter().map(|d| d.group_id.to_string()).collect(),
            on_terminate: self.sync.on_terminate,
            remove_groups_on_terminate: self.sync.remove_groups_on_terminate,
            allowed_roles: &self.sync.allowed_roles,
        };
        let line = |event: &'static str, status: &'static str| {
            AuditRecord::new(event, status)
                .audit_id(job.audit_id)
                .webhook_id(&job.webhook_id)
                .retry_count(job.attempts.saturating_sub(1))
                .field("externalId", event_external_id(&job.payload))
        };
        match directory::apply(&cx, &event, create).await {
            Ok(done) => {
                let name = match done.outcome {
                    "unchanged" | "already_inactive" => "scim.user.unchanged",
                    "created" => "scim.user.created",
                    "deactivated" => "scim.user.deactivated",
                    "deleted" => "scim.user.deleted",
                    "not_found" => "scim.user.not_found",
                    _ => "scim.user.updated",
                };
                self.report_discrepancies(job, &done).await;
                let result = serde_json::to_value(&done).unwrap_or_default();
                let mut record = line(name, "success");
                if let serde_json::Value::Object(fields) = &result {
                    record.extra.extend(fields.clone());
                }
                self.audit.record(record);
                Ok(JobSuccess { result })
            }
            Err(SyncError::Genesys(g)) if g.is_credentials_refused() => {
                Err(JobFailure::CredentialsRefused { error: g.to_string() })
            }
            Err(e) => {
                let retryable = e.is_retryable();
                let name = if matches!(e, SyncError::Policy(_)) { "policy.violation" } else { "scim.user.sync_failed" };
                let mut record = line(name, if retryable { "retry" } else { "failed" }).detail(e.to_string());
                if let Some(status) = e.genesys_status() {
                    record = record.field("genesysResponseCode", status);
                }
                self.audit.record(record);
                let retry_after = match &e {
                    SyncError::Genesys(g) => g.retry_after(),
                    _ => None,
                };
                Err(JobFailure::new(retryable, e.to_string(), retry_after))
            }
        }
    }

    /// Stores and audits each attribute Genesys holds differently from what was sent.
    async fn report_discrepancies(&self, job: &Job, done: &directory::Synced) {
        if done.discrepancies.is_empty() {
            return;
        }
        let external_id = event_external_id(&job.payload);
        let at = self.store.clock().now_ms();
        let items: Vec<Discrepancy> = done
            .discrepancies
            .iter()
            .map(|m| Discrepancy {
                audit_id: job.audit_id,
                external_id: external_id.clone(),
                kind: "attribute_mismatch".to_string(),
                field: m.field.clone(),
                expected: m.expected.clone(),
                actual: m.actual.clone(),
                at,
            })
            .collect();
        for d in &items {
            self.audit.record(
                AuditRecord::new("discrepancy.attribute_mismatch", "mismatch")
                    .audit_id(job.audit_id)
                    .webhook_id(&job.webhook_id)
                    .field("externalId", &d.external_id)
                    .field("field", &d.field)
                    .field("expected", &d.expected)
                    .field("actual", &d.actual),
            );
        }
        if let Err(e) = self.store.record_discrepancies(&items).await {
            // The audit lines above hold them; the report endpoint will miss them.
            tracing::error!(audit_id = %job.audit_id, error = %e, "storing discrepancies failed");
        }
    }

    async fn new_hire(&self, job: &Job) -> Result<JobSuccess, JobFailure> {
        let hire: NewHire = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobFailure::Permanent { error: format!("stored new-hire payload is unreadable: {e}") })?;
        let department = self.departments.get(&hire.department_code).ok_or_else(|| JobFailure::Permanent {
            error: format!("Unmapped department code: {} (removed from the config after intake)", hire.department_code),
        })?;
        let client = self.client()?;
        let line = |event: &'static str, status: &'static str| {
            AuditRecord::new(event, status)
                .audit_id(job.audit_id)
                .webhook_id(&job.webhook_id)
                .subject(&job.payload)
                .retry_count(job.attempts.saturating_sub(1))
        };
        let checkpoint = provision::Checkpoint { store: &self.store, job };
        match provision::new_hire(client, &self.groups, &hire, department, Some(&checkpoint)).await {
            Ok(done) => {
                let event = match (done.adopted, done.resumed) {
                    (true, _) => "scim.user.adopted",
                    (false, true) => "scim.user.resumed",
                    (false, false) => "scim.user.created",
                };
                let mut record = line(event, "success");
                if let serde_json::Value::Object(fields) = serde_json::to_value(&done).unwrap_or_default() {
                    record.extra.extend(fields);
                }
                self.audit.record(record);
                Ok(JobSuccess { result: serde_json::to_value(&done).unwrap_or_default() })
            }
            // Not this job's failure: the worker pauses, audits it once and puts the job back.
            Err(ProvisionError::Genesys(g)) if g.is_credentials_refused() => {
                Err(JobFailure::CredentialsRefused { error: g.to_string() })
            }
            Err(e) => {
                let retryable = e.is_retryable();
                let mut record =
                    line("scim.user.failed", if retryable { "retry" } else { "failed" }).detail(e.to_string());
                match &e {
                    ProvisionError::Genesys(g) => {
                        record = record.field("genesysResponseCode", g.status());
                    }
                    ProvisionError::Uncorrectable { status, corrections, .. } => {
                        record = record.field("genesysResponseCode", status).field("corrections", corrections);
                    }
                    ProvisionError::Transient(_) => {}
                }
                self.audit.record(record);
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
            match job.kind.as_str() {
                KIND_NEW_HIRE => self.new_hire(job).await,
                KIND_DIRECTORY_SYNC => self.directory_sync(job).await,
                other => Err(JobFailure::Permanent { error: format!("unknown job kind {other:?}") }),
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
