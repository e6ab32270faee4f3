//! The SIEM record of a lifecycle event: its audit line (the body), wrapped with what a SIEM needs to
//! file and deduplicate it.
//!
//! ```json
//! {"eventId":"0193…","correlationId":"msg_2a8f@2026-11-23T10:00:00.123Z","kind":"intake.accepted",
//!  "time":"2026-11-23T10:00:00.125Z","severity":"info","source":"genesys-provisioner",
//!  "subject":{"auditId":"0193…","externalId":"E-1042","email":"jane.doe@example.com"},
//!  "body":{…the audit line…}}
//! ```
//!
//! `eventId` is new for every record (UUID v7) and stays the same through every delivery attempt, so
//! a SIEM can drop the repeats of at-least-once delivery. `correlationId` ties together the records
//! of one event: the sender's event id (`webhook-id`) and the event's time: the `eventTimestamp` the
//! sender gave when its line carries one (a Genesys webhook's), else when the service first accepted
//! the event (the time in its job's auditId), so a reuse of an event id after the dedupe window is
//! told apart.
//!
//! A new kind of record is a new lifecycle event with an audit line (`lifecycle::audit::line`); its
//! emitter commits the record (see `crate::lifecycle::Recorder`) and `Outbox::observe` must say which
//! way it goes, or the crate does not compile.

use serde::Serialize;
use uuid::Uuid;

use crate::audit::AuditRecord;
use crate::lifecycle::{Event, Intake, JobKind, Refused, Sender};
use crate::queue::{Job, OutboxRow};

/// What goes in every record's `source`.
pub const SOURCE: &str = "genesys-provisioner";

/// RFC 5424 severities the records use.
pub const WARNING: u8 = 4;
pub const NOTICE: u8 = 5;
pub const INFO: u8 = 6;

/// Whom a record is about, as far as it is known.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Subject<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

/// The record of `event`, or None when the event has no audit line.
pub fn of_event(event: &Event<'_>) -> Option<OutboxRow> {
    let mut line = crate::lifecycle::audit::line(event)?;
    let now = chrono::Utc::now();
    let at = now.timestamp_millis();
    // The record and its body tell the same time.
    line.timestamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Some(wrap(&line, job_of(event), at))
}

/// `line` as a record about `job` (when the event is about one), made at `at` (Unix ms).
fn wrap(line: &AuditRecord<'_>, job: Option<&Job>, at: i64) -> OutboxRow {
    let event_id = Uuid::now_v7();
    let severity = severity(line.status);
    let external_id =
        line.extra.get("externalId").and_then(|v| v.as_str()).map(str::to_string).or_else(|| job.and_then(person_key));
    let email = line.user_email.as_deref().or_else(|| job.and_then(email_of));
    let subject = Subject { audit_id: line.audit_id, external_id, email };
    let correlation =
        line.webhook_id.as_deref().map(|webhook| match line.extra.get("eventTimestamp").and_then(|t| t.as_str()) {
            Some(sent) => format!("{webhook}@{sent}"),
            None => {
                let accepted = line.audit_id.and_then(v7_millis).or(job.map(|j| j.created_at)).unwrap_or(at);
                format!("{webhook}@{}", crate::queue::worker::ms_to_rfc3339(accepted))
            }
        });
    let mut out = Vec::with_capacity(768);
    out.extend_from_slice(b"{\"eventId\":\"");
    out.extend_from_slice(event_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
    out.push(b'"');
    // Writing strings and plain values into a Vec cannot fail; the line's own writer neither.
    if let Some(c) = &correlation {
        out.extend_from_slice(b",\"correlationId\":");
        let _ = serde_json::to_writer(&mut out, c);
    }
    out.extend_from_slice(b",\"kind\":");
    let _ = serde_json::to_writer(&mut out, line.event);
    out.extend_from_slice(b",\"time\":");
    let _ = serde_json::to_writer(&mut out, &line.timestamp);
    out.extend_from_slice(b",\"severity\":\"");
    out.extend_from_slice(severity_name(severity).as_bytes());
    out.extend_from_slice(b"\",\"source\":\"");
    out.extend_from_slice(SOURCE.as_bytes());
    out.extend_from_slice(b"\",\"subject\":");
    let _ = serde_json::to_writer(&mut out, &subject);
    out.extend_from_slice(b",\"body\":");
    let _ = line.write_json(&mut out);
    out.push(b'}');
    // The pieces are JSON text: UTF-8 throughout.
    let record = String::from_utf8(out).unwrap_or_default();
    OutboxRow::new(event_id, line.event, at, severity, record)
}

/// How serious a decision is, by the status of its line: refusals, failures and dead letters are
/// warnings, retries and lost attempts notices, the rest information.
fn severity(status: &str) -> u8 {
    match status {
        "rejected" | "failed" | "dead" | "paused" | "mismatch" | "drift" => WARNING,
        "retry" | "lost" | "deleted" => NOTICE,
        _ => INFO,
    }
}

pub fn severity_name(severity: u8) -> &'static str {
    match severity {
        0 => "emergency",
        1 => "alert",
        2 => "critical",
        3 => "error",
        WARNING => "warning",
        NOTICE => "notice",
        INFO => "info",
        _ => "debug",
    }
}

/// The Unix milliseconds in a time-ordered (v7) id: when the service made it.
fn v7_millis(id: Uuid) -> Option<i64> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    i64::try_from(secs).ok().map(|s| s * 1000 + i64::from(nanos / 1_000_000))
}

/// The job an event is about, if any.
fn job_of<'a>(event: &Event<'a>) -> Option<&'a Job> {
    match *event {
        Event::AttemptStarted { job, .. }
        | Event::Succeeded { job }
        | Event::DeadLettered { job, .. }
        | Event::Replayed { job }
        | Event::Deleted { job }
        | Event::Provisioned { job, .. }
        | Event::ProvisionFailed { job, .. }
        | Event::Synced { job, .. }
        | Event::Reconciled { job, .. }
        | Event::SyncFailed { job, .. }
        | Event::Discrepancy { job, .. } => Some(job),
        Event::AttemptFinished(attempt) => Some(attempt.job),
        Event::Refused(Refused { sender: Sender::Signed { .. } | Sender::Unauthenticated { .. }, .. })
        | Event::Accepted(Intake { .. })
        | Event::Duplicate(Intake { .. })
        | Event::Conflict { .. }
        | Event::IntakeCommitted { .. }
        | Event::AuthPaused { .. }
        | Event::AuthRecovered { .. }
        | Event::Validated(_)
        | Event::Swept(_) => None,
    }
}

/// A text or a number of a JSON value, as text.
fn text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The person key of a job's payload (the Genesys `externalId`), when it has one (not once purged).
fn person_key(job: &Job) -> Option<String> {
    match job.kind.parse::<JobKind>().ok()? {
        JobKind::DirectorySync => {
            Some(crate::pipeline::directory::person_key(job.payload.get("data")?)).filter(|k| !k.is_empty())
        }
        JobKind::NewHire => text(job.payload.get("employeeId")).or_else(|| text(job.payload.get("employeeNumber"))),
        // About a Genesys user, not an HR person.
        JobKind::Reconcile | JobKind::GenesysEvent => None,
    }
}

/// The work email a directory event names, when it names one.
fn email_of(job: &Job) -> Option<&str> {
    let data = job.payload.get("data")?;
    ["workEmail", "email"].iter().find_map(|k| data.get(*k).and_then(|v| v.as_str()))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::lifecycle::{Attempt, AttemptOutcome, Subject as Person};

    fn parse(row: &OutboxRow) -> Value {
        serde_json::from_str(row.record()).expect("a record is JSON")
    }

    #[test]
    fn an_acceptance_record_wraps_its_audit_line_with_ids_subject_and_correlation() {
        let audit_id = Uuid::now_v7();
        let intake = Intake {
            audit_id,
            webhook_id: "msg_1",
            endpoint: "/webhooks/hr/user-created",
            subject: Person::person(Some("ann@example.com"), Some("ENG")),
        };
        let row = of_event(&Event::Accepted(intake)).expect("accepted has a record");
        let record = parse(&row);
        assert_eq!(record["eventId"], row.event_id());
        assert_eq!(Uuid::parse_str(row.event_id()).unwrap().get_version_num(), 7);
        assert_eq!(record["kind"], "intake.accepted");
        assert_eq!(row.kind(), "intake.accepted");
        assert_eq!(record["severity"], "info");
        assert_eq!(record["source"], "genesys-provisioner");
        assert_eq!(record["subject"], json!({"auditId": audit_id, "email": "ann@example.com"}));
        let accepted = crate::queue::worker::ms_to_rfc3339(v7_millis(audit_id).unwrap());
        assert_eq!(record["correlationId"], format!("msg_1@{accepted}"));
        assert_eq!(record["body"]["event"], "intake.accepted");
        assert_eq!(record["body"]["auditId"], audit_id.to_string());
        assert_eq!(record["body"]["timestamp"], record["time"]);
        let at = chrono::DateTime::parse_from_rfc3339(record["time"].as_str().unwrap()).unwrap();
        assert_eq!(at.timestamp_millis(), row.at());
    }

    #[test]
    fn a_dead_attempt_of_a_directory_job_is_a_warning_about_its_person() {
        let mut job = Job::running(
            json!({"event": "user.updated", "data": {"externalId": "E-7", "workEmail": "e7@example.com"}}),
            2,
        );
        job.kind = JobKind::DirectorySync.as_str().to_string();
        job.created_at = 1_700_000_000_000;
        let attempt = Attempt {
            job: &job,
            outcome: AttemptOutcome::Dead,
            took: None,
            detail: Some("refused"),
            next_attempt_at: None,
            result: None,
        };
        let row = of_event(&Event::AttemptFinished(attempt)).unwrap();
        let record = parse(&row);
        assert_eq!((record["severity"].as_str(), row.severity()), (Some("warning"), WARNING));
        assert_eq!(record["subject"]["externalId"], "E-7");
        assert_eq!(record["subject"]["email"], "e7@example.com");
        // The nil audit id is no v7: the job's acceptance time stands in.
        assert_eq!(record["correlationId"], "msg_1@2023-11-14T22:13:20.000Z");
        // Events without an audit line have no record.
        assert!(of_event(&Event::Succeeded { job: &job }).is_none());
    }

    #[test]
    fn an_event_timestamp_the_sender_gave_is_the_correlations_time() {
        let line = AuditRecord::new("validation.accepted", "accepted")
            .webhook_id("wh-1")
            .field("eventTimestamp", "2026-11-23T09:59:59.000Z");
        let record = parse(&wrap(&line, None, 0));
        assert_eq!(record["correlationId"], "wh-1@2026-11-23T09:59:59.000Z");
    }
}
