//! The JSON-lines audit trail: one line per decision (intake accepted or refused, each job attempt,
//! dead letter, replay), in daily files under `AUDIT_DIR`, apart from the operational logs.
//!
//! Lines go through tracing-appender's non-blocking writer in its lossless mode: when the disk falls
//! behind, callers wait instead of lines being dropped.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use uuid::Uuid;

/// One audit line. Fields a record does not have are left out of the line.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<Uuid>,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department_code: Option<String>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The webhook endpoint an intake decision is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<&'static str>,
    /// Extra fields a later feature adds (scimId, groupId, genesysResponseCode, ...).
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl AuditRecord {
    pub fn new(event: &'static str, status: &'static str) -> Self {
        AuditRecord { timestamp: now_rfc3339(), event, status, ..Default::default() }
    }

    pub fn audit_id(mut self, id: Uuid) -> Self {
        self.audit_id = Some(id);
        self
    }

    pub fn webhook_id(mut self, id: impl Into<String>) -> Self {
        self.webhook_id = Some(id.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn endpoint(mut self, endpoint: &'static str) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    pub fn retry_count(mut self, n: u32) -> Self {
        self.retry_count = Some(n);
        self
    }

    /// Takes `email` and `departmentCode` from a job payload or a webhook body, when present.
    pub fn subject(self, payload: &serde_json::Value) -> Self {
        let text = |k: &str| payload.get(k).and_then(|v| v.as_str());
        self.subject_of(text("email"), text("departmentCode"))
    }

    /// Sets the user's email and department code, each when known.
    pub fn subject_of(mut self, email: Option<&str>, department_code: Option<&str>) -> Self {
        self.user_email = email.map(str::to_string).or(self.user_email);
        self.department_code = department_code.map(str::to_string).or(self.department_code);
        self
    }

    pub fn field(mut self, key: &str, value: impl Serialize) -> Self {
        if let Ok(v) = serde_json::to_value(value) {
            self.extra.insert(key.to_string(), v);
        }
        self
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes audit lines. Cheap to clone; all clones share one file writer.
#[derive(Clone)]
pub struct AuditLog {
    writer: NonBlocking,
    // Flushes the background writer when the last clone is dropped.
    _guard: Arc<WorkerGuard>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

/// The file names are `audit.YYYY-MM-DD.jsonl`.
pub const FILE_PREFIX: &str = "audit";
pub const FILE_SUFFIX: &str = "jsonl";

impl AuditLog {
    /// Opens (creating) the audit folder, rotating daily and keeping `keep_files` files.
    pub fn open(dir: &Path, keep_files: usize) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create audit folder {}: {e}", dir.display()))?;
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(FILE_PREFIX)
            .filename_suffix(FILE_SUFFIX)
            .max_log_files(keep_files)
            .build(dir)
            .map_err(|e| format!("cannot open audit file in {}: {e}", dir.display()))?;
        // The writer thread flushes whenever it has emptied its queue, so under load a burst of lines
        // goes out in one write instead of one system call per line; a quiet line is written at once.
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(64 * 1024)
            .thread_name("audit-writer")
            .finish(std::io::BufWriter::with_capacity(64 * 1024, appender));
        Ok(AuditLog { writer, _guard: Arc::new(guard) })
    }

    /// Appends one line.
    pub fn record(&self, record: AuditRecord) {
        let mut line = match serde_json::to_vec(&record) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, event = record.event, "audit record could not be serialised");
                return;
            }
        };
        line.push(b'\n');
        // Each write is one message to the writer thread, so lines never interleave.
        let mut w = self.writer.clone();
        if let Err(e) = w.write_all(&line) {
            tracing::error!(error = %e, event = record.event, "audit line could not be written");
        }
    }
}
