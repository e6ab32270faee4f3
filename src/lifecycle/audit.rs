//! The audit trail as a subscriber: each lifecycle event as its audit line (`intake.*`, `job.*`,
//! `genesys.*`, `scim.user.*`, `policy.violation`, `discrepancy.*`). The event names, statuses and
//! fields are the trail's contract (docs/operations.md); the tests read them.

use std::borrow::Cow;

use super::{
    Attempt, AttemptOutcome, DiscrepancyKind, Event, Intake, ProvisionFailure, ProvisionOutcome, Refused, Sender,
    Subject, Subscriber, SyncFailure, SyncOutcome, Validation, ValidationDecision,
};
use crate::audit::{AuditLog, AuditRecord};
use crate::queue::Job;
use crate::queue::worker::ms_to_rfc3339;

/// The longest event id an `intake.rejected` line repeats, in characters (longer ones are refused).
const REFUSED_ID_MAX: usize = 255;

/// Writes the audit line of each event that has one.
pub struct AuditTrail {
    log: AuditLog,
}

impl AuditTrail {
    pub fn new(log: AuditLog) -> Self {
        AuditTrail { log }
    }
}

/// The audit line of `event`; None for events the trail does not record, and for refusals before
/// the sender was authenticated, which are counted into a per-source summary instead (anyone can
/// send these: a line each would let them fill the disk). The SIEM outbox record of an event
/// carries this line too.
pub fn line<'a>(event: &Event<'a>) -> Option<AuditRecord<'a>> {
    let line = match *event {
        Event::Refused(Refused { endpoint, http_status, error, violations, sender, .. }) => match sender {
            Sender::Unauthenticated { .. } => return None,
            Sender::Signed { webhook_id, subject } => {
                let mut line = AuditRecord::new("intake.rejected", "rejected")
                    .detail(error.to_string())
                    .endpoint(endpoint)
                    .field("httpStatus", http_status);
                if let Some(id) = webhook_id {
                    line = line.webhook_id(first_chars(id, REFUSED_ID_MAX));
                }
                if !violations.is_empty() {
                    line = line.field("violations", violations);
                }
                about(line, subject)
            }
        },
        Event::Accepted(intake) => intake_line("intake.accepted", "queued", intake),
        Event::Duplicate(intake) => intake_line("intake.duplicate", "duplicate", intake),
        Event::Conflict { intake, error, http_status } => {
            let line = AuditRecord::new("intake.conflict", "rejected")
                .audit_id(intake.audit_id)
                .webhook_id(intake.webhook_id)
                .endpoint(intake.endpoint)
                .detail(error.to_string())
                .field("httpStatus", http_status);
            about(line, intake.subject)
        }
        Event::IntakeCommitted { .. } | Event::AttemptStarted { .. } | Event::Succeeded { .. } => return None,
        Event::AttemptFinished(attempt) => return attempt_line(attempt),
        Event::DeadLettered { job, reason } => {
            job_line("job.dead_lettered", "dead", job).retry_count(job.attempts.saturating_sub(1)).detail(reason)
        }
        Event::Replayed { job } => job_line("job.replayed", "queued", job).detail(format!(
            "replayed by an admin; previous error: {}",
            job.last_error.as_deref().unwrap_or("none")
        )),
        Event::Deleted { job } => job_line("job.deleted", "deleted", job).detail("dead letter deleted by an admin"),
        Event::Swept(swept) => AuditRecord::new("retention.swept", "purged")
            .detail("personal data of succeeded jobs purged after the retention period; jobs past the dedupe window deleted")
            .field("purged", swept.purged)
            .field("forgotten", swept.forgotten)
            .field("discrepancies", swept.discrepancies),
        Event::AuthPaused { reason, retry_every } => {
            AuditRecord::new("genesys.auth_failed", "paused").detail(format!(
                "{reason}; jobs stay queued and the workers pause until a token is granted (asked for every {} s)",
                retry_every.as_secs_f64()
            ))
        }
        Event::AuthRecovered { was } => AuditRecord::new("genesys.auth_recovered", "resumed")
            .detail(format!("a token was granted again; the work resumes (was: {was})")),
        Event::Provisioned { job, outcome, result } => {
            let name = match outcome {
                ProvisionOutcome::Created => "scim.user.created",
                ProvisionOutcome::Adopted => "scim.user.adopted",
                ProvisionOutcome::Resumed => "scim.user.resumed",
            };
            let mut line = job_line(name, "success", job).retry_count(job.attempts.saturating_sub(1));
            if let Some(fields) = result.as_object() {
                line.extra.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            line
        }
        Event::ProvisionFailed { job, retryable, error, cause } => {
            let name = match cause {
                ProvisionFailure::Policy { .. } => "policy.violation",
                _ => "scim.user.failed",
            };
            let line =
                job_line(name, failed_status(retryable), job).retry_count(job.attempts.saturating_sub(1)).detail(error.to_string());
            match cause {
                ProvisionFailure::Genesys { status } => line.field("genesysResponseCode", status),
                ProvisionFailure::Uncorrectable { status, corrections } => {
                    line.field("genesysResponseCode", status).field("corrections", corrections)
                }
                ProvisionFailure::Transient => line,
                ProvisionFailure::Policy { violations } => line.field("violations", violations),
            }
        }
        Event::Reconciled { job, result } => {
            let mut line = AuditRecord::new("mirror.reconciled", "success").audit_id(job.audit_id);
            for key in ["pages", "listed", "compared", "refreshed", "added"] {
                line = line.field(key, &result[key]);
            }
            let count = |key: &str| result[key].as_array().map_or(0, Vec::len);
            line.field("drifted", count("drift")).field("missing", count("missing"))
        }
        Event::Synced { job, external_id, outcome, result } => {
            let name = match outcome {
                SyncOutcome::Unchanged | SyncOutcome::AlreadyInactive => "scim.user.unchanged",
                SyncOutcome::Updated => "scim.user.updated",
                SyncOutcome::Created => "scim.user.created",
                SyncOutcome::Deactivated => "scim.user.deactivated",
                SyncOutcome::Deleted => "scim.user.deleted",
                SyncOutcome::NotFound => "scim.user.not_found",
            };
            let mut line = sync_line(name, "success", job, external_id);
            if let Some(fields) = result.as_object() {
                line.extra.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            line
        }
        Event::SyncFailed { job, external_id, retryable, error, cause } => {
            let name = match cause {
                SyncFailure::Policy { .. } => "policy.violation",
                SyncFailure::Failed { .. } => "scim.user.sync_failed",
            };
            let line = sync_line(name, failed_status(retryable), job, external_id).detail(error.to_string());
            match cause {
                SyncFailure::Failed { genesys_status: Some(status) } => line.field("genesysResponseCode", status),
                SyncFailure::Failed { genesys_status: None } => line,
                SyncFailure::Policy { violations } => line.field("violations", violations),
            }
        }
        Event::Validated(validation) => validation_line(validation),
        Event::Discrepancy { job, external_id, kind, field, expected, actual } => {
            let (action, status, expected_name, actual_name) = match kind {
                DiscrepancyKind::AttributeMismatch => {
                    ("discrepancy.attribute_mismatch", "mismatch", "expected", "actual")
                }
                // What the service last wrote (as Genesys confirmed it) and what Genesys holds now.
                DiscrepancyKind::Drift => ("discrepancy.drift", "drift", "mirrored", "genesys"),
            };
            AuditRecord::new(action, status)
                .audit_id(job.audit_id)
                .webhook_id(job.webhook_id.as_str())
                .field("externalId", external_id)
                .field("field", field)
                .field(expected_name, expected)
                .field(actual_name, actual)
        }
    };
    Some(line)
}

impl Subscriber for AuditTrail {
    fn observe(&self, event: &Event<'_>) {
        if let Event::Refused(Refused {
            endpoint, outcome, error, sender: Sender::Unauthenticated { source }, ..
        }) = *event
        {
            self.log.refused(source, outcome.as_str(), endpoint, || error.to_string());
            return;
        }
        if let Some(line) = line(event) {
            self.log.record(line);
        }
    }
}

/// `retry` when the failure is retried, else `failed`.
fn failed_status(retryable: bool) -> &'static str {
    if retryable { "retry" } else { "failed" }
}

/// At most `max` characters of `text`, borrowed when it is no longer.
fn first_chars(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(text[..cut].to_string()),
        None => Cow::Borrowed(text),
    }
}

/// What an intake line says about its subject: the person's email and department code, a
/// directory event's type and person key, the item's place in a batch.
fn about<'a>(line: AuditRecord<'a>, subject: Subject<'a>) -> AuditRecord<'a> {
    let mut line = line.subject_of(subject.email, subject.department_code);
    if let Some(kind) = subject.sync_event {
        line = line.field("syncEvent", kind);
    }
    if let Some(id) = subject.external_id {
        line = line.field("externalId", id);
    }
    match subject.index {
        Some(i) => line.field("index", i),
        None => line,
    }
}

fn intake_line<'a>(event: &'static str, status: &'static str, intake: Intake<'a>) -> AuditRecord<'a> {
    let line = AuditRecord::new(event, status)
        .audit_id(intake.audit_id)
        .webhook_id(intake.webhook_id)
        .endpoint(intake.endpoint);
    about(line, intake.subject)
}

/// A line about a job: its ids and whom its payload names.
fn job_line<'a>(event: &'static str, status: &'static str, job: &'a Job) -> AuditRecord<'a> {
    AuditRecord::new(event, status).audit_id(job.audit_id).webhook_id(job.webhook_id.as_str()).subject(&job.payload)
}

/// A line about a directory sync job: its ids and the person key.
fn sync_line<'a>(event: &'static str, status: &'static str, job: &'a Job, external_id: &'a str) -> AuditRecord<'a> {
    AuditRecord::new(event, status)
        .audit_id(job.audit_id)
        .webhook_id(job.webhook_id.as_str())
        .retry_count(job.attempts.saturating_sub(1))
        .field("externalId", external_id)
}

/// The line of a validation webhook decision: `validation.accepted`, `validation.rejected` (with
/// the violations) or `validation.ignored`.
fn validation_line(v: Validation<'_>) -> AuditRecord<'_> {
    let event = match v.decision {
        ValidationDecision::Accepted => "validation.accepted",
        ValidationDecision::Rejected => "validation.rejected",
        ValidationDecision::Ignored => "validation.ignored",
    };
    let mut line = AuditRecord::new(event, v.decision.as_str())
        .endpoint(v.endpoint)
        .subject_of(v.user_name, v.department_code)
        .field("eventType", v.event_type);
    if let Some(id) = v.webhook_id {
        line = line.webhook_id(id);
    }
    if let Some(at) = v.event_timestamp {
        line = line.field("eventTimestamp", at);
    }
    if let Some(id) = v.scim_id {
        line = line.field("scimId", id);
    }
    if !v.violations.is_empty() {
        line = line.field("violations", v.violations);
    }
    line
}

/// The `job.attempt` line of an attempt that has one (released and paused attempts are given back
/// uncounted and have none).
fn attempt_line<'a>(attempt: Attempt<'a>) -> Option<AuditRecord<'a>> {
    let Attempt { job, outcome, took, detail, next_attempt_at, result } = attempt;
    let mut line = match outcome {
        AttemptOutcome::Succeeded | AttemptOutcome::Retry | AttemptOutcome::Dead => {
            let latency = took.map_or(0, |t| t.as_millis() as u64);
            job_line("job.attempt", outcome.as_str(), job)
                .retry_count(job.attempts.saturating_sub(1))
                .field("attempt", job.attempts)
                .field("latencyMs", latency)
        }
        // Found by the claim that took the job over: the lost attempt is the one before it.
        AttemptOutcome::Lost => {
            let lost = job.attempts.saturating_sub(1);
            job_line("job.attempt", outcome.as_str(), job).retry_count(lost.saturating_sub(1)).field("attempt", lost)
        }
        AttemptOutcome::Released | AttemptOutcome::Paused => return None,
    };
    if let Some(d) = detail {
        line = line.detail(d);
    }
    if let Some(run_at) = next_attempt_at {
        line = line.field("nextAttemptAt", ms_to_rfc3339(run_at));
    }
    if let Some(fields) = result.and_then(|r| r.as_object()) {
        for (k, v) in fields {
            line.extra.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::lifecycle::WebhookOutcome;

    fn job() -> Job {
        Job::running(json!({"email": "ann@example.com", "departmentCode": "ENG"}), 3)
    }

    /// The lines the trail writes for `events`, as text.
    fn lines_of(events: &[Event<'_>]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), 1).unwrap();
        let trail = AuditTrail::new(log.clone());
        for event in events {
            trail.observe(event);
        }
        assert!(log.flush());
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
        lines
    }

    #[test]
    fn a_refused_batch_item_keeps_its_id_to_255_characters_and_its_index_after_the_status() {
        let long_id = "é".repeat(300);
        let refused = Event::Refused(Refused {
            endpoint: "/webhooks/directory-sync/batch",
            outcome: WebhookOutcome::BadRequest,
            http_status: 400,
            error: &"Unsupported event type",
            violations: &[],
            sender: Sender::Signed { webhook_id: Some(&long_id), subject: Subject::default().at(Some(2)) },
        });
        let lines = lines_of(&[refused]);
        assert_eq!(lines.len(), 1);
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["event"], "intake.rejected");
        assert_eq!(line["webhookId"].as_str().unwrap().chars().count(), 255);
        assert!(lines[0].ends_with(r#""httpStatus":400,"index":2}"#), "{}", lines[0]);
    }

    #[test]
    fn released_and_paused_attempts_write_nothing_and_a_lost_one_names_the_attempt_before() {
        let job = job();
        let attempt = |outcome, took, detail| {
            Event::AttemptFinished(Attempt { job: &job, outcome, took, detail, next_attempt_at: None, result: None })
        };
        let ms = Some(Duration::from_millis(5));
        let lines = lines_of(&[
            attempt(AttemptOutcome::Released, ms, None),
            attempt(AttemptOutcome::Paused, ms, None),
            attempt(AttemptOutcome::Lost, None, Some("its lease expired")),
            Event::AttemptStarted { job: &job, taken_over: true },
            Event::Succeeded { job: &job },
        ]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!((&line["event"], &line["status"]), (&json!("job.attempt"), &json!("lost")));
        assert_eq!((&line["attempt"], &line["retryCount"]), (&json!(2), &json!(1)));
        assert_eq!(line["userEmail"], "ann@example.com");
    }
}
