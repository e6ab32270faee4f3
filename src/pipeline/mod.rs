//! What a job does, as plain async functions: no axum in here.
//!
//! `Provisioning` is the `JobHandler` the service runs; it dispatches on the job's kind.

pub mod new_hire;

use crate::config::DepartmentMap;
use crate::queue::Job;
use crate::queue::worker::{HandlerFuture, JobFailure, JobHandler, JobSuccess};

pub use new_hire::NewHire;

/// Job kinds, as stored in the queue.
pub const KIND_NEW_HIRE: &str = "hr.user_created";

/// The service's job handler.
pub struct Provisioning {
    departments: DepartmentMap,
}

impl Provisioning {
    pub fn new(departments: DepartmentMap) -> Self {
        Provisioning { departments }
    }

    async fn new_hire(&self, job: &Job) -> Result<JobSuccess, JobFailure> {
        let hire: NewHire = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobFailure::Permanent { error: format!("stored new-hire payload is unreadable: {e}") })?;
        let department = self.departments.get(&hire.department_code).ok_or_else(|| JobFailure::Permanent {
            error: format!("Unmapped department code: {} (removed from the config after intake)", hire.department_code),
        })?;
        // The Genesys client and the SCIM steps arrive with the provisioning issue; until then the job
        // is parked as a dead letter with this reason, and a replay after the upgrade runs it for real.
        Err(JobFailure::Permanent {
            error: format!(
                "Genesys provisioning is not available in this build: {} was not created in group {}",
                hire.email, department.group_id
            ),
        })
    }
}

impl JobHandler for Provisioning {
    fn handle<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            match job.kind.as_str() {
                KIND_NEW_HIRE => self.new_hire(job).await,
                other => Err(JobFailure::Permanent { error: format!("unknown job kind {other:?}") }),
            }
        })
    }
}
