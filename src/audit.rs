//! The JSON-lines audit trail: one line per decision (intake accepted or refused, each job attempt,
//! dead letter, replay), in daily files under `AUDIT_DIR`, apart from the operational logs.
//!
//! Callers append lines to a shared buffer; one writer thread hands whatever has gathered to
//! tracing-appender's daily rolling file in a single write. Nothing is dropped: when the disk falls
//! behind and the buffer holds `BUFFER_LIMIT` bytes, callers wait. The first line into an empty
//! buffer wakes the writer, which lets lines gather for `GATHER` (2 ms) and then writes them all in
//! one system call. The writer sleeps on a condition variable, so an idle or busy writer costs no spinning.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::Serialize;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use uuid::Uuid;

/// One audit line. Fields a record does not have are left out of the line. Its texts borrow what
/// they were made from where they can: a record lives only until `AuditLog::record` has written it.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<Uuid>,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department_code: Option<Cow<'a, str>>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'a, str>>,
    /// The webhook endpoint an intake decision is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<&'static str>,
    /// Extra fields a later feature adds (scimId, groupId, genesysResponseCode, ...).
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The keys the record writes itself; `AuditRecord::field` never writes one of them again.
pub const RECORD_KEYS: [&str; 10] = [
    "timestamp",
    "auditId",
    "event",
    "webhookId",
    "userEmail",
    "departmentCode",
    "status",
    "retryCount",
    "detail",
    "endpoint",
];

/// The most bytes of one text value in an audit line (or an error answer that echoes input);
/// longer ones are cut (see `bounded`). A 500 KB department code made a 1 MB audit line.
pub const TEXT_MAX: usize = 1024;

/// `text` unchanged when it fits in `TEXT_MAX` bytes, else its start (cut at a character
/// boundary) followed by `…(truncated, N bytes)`, N being the full length.
pub fn bounded(text: String) -> String {
    match text.len() <= TEXT_MAX {
        true => text,
        false => bounded_copy(&text),
    }
}

/// `bounded` for borrowed text: copies at most `TEXT_MAX` bytes of it.
pub fn bounded_copy(text: &str) -> String {
    if text.len() <= TEXT_MAX {
        return text.to_string();
    }
    let mut cut = TEXT_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…(truncated, {} bytes)", &text[..cut], text.len())
}

/// `bounded` for borrowed or owned text: borrowed text that fits stays borrowed.
pub fn bounded_cow(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(t) if t.len() > TEXT_MAX => Cow::Owned(bounded_copy(t)),
        Cow::Owned(t) => Cow::Owned(bounded(t)),
        fits => fits,
    }
}

/// `bounded` for every text inside a JSON value.
fn bounded_value(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(bounded(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(bounded_value).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (bounded(k), bounded_value(v))).collect()),
        other => other,
    }
}

impl<'a> AuditRecord<'a> {
    pub fn new(event: &'static str, status: &'static str) -> Self {
        AuditRecord { timestamp: now_rfc3339(), event, status, ..Default::default() }
    }

    pub fn audit_id(mut self, id: Uuid) -> Self {
        self.audit_id = Some(id);
        self
    }

    pub fn webhook_id(mut self, id: impl Into<Cow<'a, str>>) -> Self {
        self.webhook_id = Some(bounded_cow(id.into()));
        self
    }

    pub fn detail(mut self, detail: impl Into<Cow<'a, str>>) -> Self {
        self.detail = Some(bounded_cow(detail.into()));
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
    pub fn subject(self, payload: &'a serde_json::Value) -> Self {
        let text = |k: &str| payload.get(k).and_then(|v| v.as_str());
        self.subject_of(text("email"), text("departmentCode"))
    }

    /// Sets the user's email and department code, each when known.
    pub fn subject_of(mut self, email: Option<&'a str>, department_code: Option<&'a str>) -> Self {
        // Bounded, not copied: a refused body's fields can be as long as the body.
        let bounded = |text: &'a str| bounded_cow(Cow::Borrowed(text));
        self.user_email = email.map(bounded).or(self.user_email);
        self.department_code = department_code.map(bounded).or(self.department_code);
        self
    }

    /// Adds a field. A key the record writes itself (`RECORD_KEYS`) is written as `extra<Key>`
    /// instead (`event` as `extraEvent`), so a line never holds the same key twice.
    pub fn field(mut self, key: &str, value: impl Serialize) -> Self {
        if let Ok(v) = serde_json::to_value(value) {
            let key = match RECORD_KEYS.contains(&key) {
                true => {
                    let mut chars = key.chars();
                    let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
                    format!("extra{first}{}", chars.as_str())
                }
                false => key.to_string(),
            };
            self.extra.insert(key, bounded_value(v));
        }
        self
    }

    /// Appends the record as one JSON object, the same text its `Serialize` writes (a unit test
    /// compares them). Written field by field because the derived form goes through serde's map
    /// machinery (`extra` is flattened) and escapes every key: a third of an intake's audit cost.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        /// `,"key":` and the value as a JSON string; the keys are plain ASCII and need no escaping.
        fn text(out: &mut Vec<u8>, key: &str, value: Option<&str>) -> serde_json::Result<()> {
            let Some(value) = value else { return Ok(()) };
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            serde_json::to_writer(&mut *out, value)
        }
        out.extend_from_slice(b"{\"timestamp\":");
        serde_json::to_writer(&mut *out, &self.timestamp)?;
        if let Some(id) = self.audit_id {
            text(out, "auditId", Some(id.hyphenated().encode_lower(&mut Uuid::encode_buffer())))?;
        }
        text(out, "event", Some(self.event))?;
        text(out, "webhookId", self.webhook_id.as_deref())?;
        text(out, "userEmail", self.user_email.as_deref())?;
        text(out, "departmentCode", self.department_code.as_deref())?;
        text(out, "status", Some(self.status))?;
        if let Some(n) = self.retry_count {
            write!(out, ",\"retryCount\":{n}").map_err(serde_json::Error::io)?;
        }
        text(out, "detail", self.detail.as_deref())?;
        text(out, "endpoint", self.endpoint)?;
        for (key, value) in &self.extra {
            out.push(b',');
            serde_json::to_writer(&mut *out, key)?;
            out.push(b':');
            serde_json::to_writer(&mut *out, value)?;
        }
        out.push(b'}');
        Ok(())
    }
}

pub fn now_rfc3339() -> String {
    rfc3339(chrono::Utc::now())
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long one refusal summary covers: at most one line per source and reason this often.
pub const SUMMARY_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// How often the writer looks for summary windows that are over while nothing else is written.
const SUMMARY_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// Most (source, reason) pairs counted at once; refusals from further sources count as source `other`.
const SUMMARY_SOURCES_MAX: usize = 10_000;

/// Refusals of one source for one reason, counted since `started`.
struct RefusalWindow {
    started: chrono::DateTime<chrono::Utc>,
    count: u64,
    endpoint: &'static str,
    /// The first refusal's reason in words.
    detail: String,
}

/// Open refusal windows by (source, reason).
type Summaries = std::collections::HashMap<(String, &'static str), RefusalWindow>;

/// The `intake.rejected_summary` line of a window, ended at `ended` (its full minute, or earlier
/// when the service stops).
fn summary_line(
    (source, reason): (String, &'static str),
    window: RefusalWindow,
    ended: chrono::DateTime<chrono::Utc>,
) -> AuditRecord<'static> {
    let end = ended.min(window.started + SUMMARY_WINDOW);
    AuditRecord::new("intake.rejected_summary", "rejected")
        .endpoint(window.endpoint)
        .detail(window.detail)
        .field("source", source)
        .field("reason", reason)
        .field("count", window.count)
        .field("windowStart", rfc3339(window.started))
        .field("windowEnd", rfc3339(end))
}

/// Writes audit lines. Cheap to clone; all clones share one buffer and one writer thread, which
/// writes out what is left and stops when the last clone is dropped.
#[derive(Clone)]
pub struct AuditLog {
    writer: Arc<Writer>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

/// Bytes of lines waiting for the writer before callers wait for it.
const BUFFER_LIMIT: usize = 4 << 20;

/// How long the writer lets lines gather after the first one wakes it: a busy service then wakes the
/// writer a few hundred times a second instead of once per request, and a line reaches the file at
/// most this much later.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// The longest `AuditLog::flush` waits for the writer.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The shared buffer and the thread that empties it.
struct Writer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Refusals counted but not written yet. Locked after `pending` when both are held.
    summaries: Mutex<Summaries>,
    /// `BUFFER_LIMIT`, smaller in tests.
    limit: usize,
    /// Signalled when the buffer stops being empty, and on close.
    filled: Condvar,
    /// Signalled when the writer has taken the buffer (room for waiting callers).
    drained: Condvar,
    /// Signalled when the writer has handed a batch to the file (for `AuditLog::flush`).
    written: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
    /// Lines recorded since the log opened.
    recorded: u64,
    /// Of those, how many the writer has handed to the file, or tried to.
    written: u64,
    /// A write failed: some recorded lines are not in the file.
    lost: bool,
}

impl Pending {
    /// Serialises one record straight into the buffer, as one line; on failure the buffer is left
    /// as it was.
    fn push(&mut self, record: &AuditRecord<'_>) -> serde_json::Result<()> {
        let start = self.lines.len();
        match record.write_json(&mut self.lines) {
            Ok(()) => {
                self.lines.push(b'\n');
                self.recorded += 1;
                Ok(())
            }
            Err(e) => {
                self.lines.truncate(start);
                Err(e)
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The summary lines of the windows that are over at `now`, or of every window (`all`: the
    /// log is closing), taken out of the open ones.
    fn take_summaries(&self, now: chrono::DateTime<chrono::Utc>, all: bool) -> Vec<AuditRecord<'static>> {
        let mut open = self.summaries.lock().unwrap_or_else(|p| p.into_inner());
        let over: Vec<(String, &'static str)> =
            open.iter().filter(|(_, w)| all || now >= w.started + SUMMARY_WINDOW).map(|(k, _)| k.clone()).collect();
        over.into_iter()
            .filter_map(|key| open.remove_entry(&key))
            .map(|(key, window)| summary_line(key, window, now))
            .collect()
    }

    /// Appends lines to the buffer without waiting for room (the writer thread itself, or the
    /// last handle closing the log, calls this: nobody else would make room).
    fn append_now(&self, pending: &mut Pending, lines: &[AuditRecord<'_>]) {
        for record in lines {
            if let Err(e) = pending.push(record) {
                tracing::error!(error = %e, event = record.event, "audit record could not be serialised");
            }
        }
    }

    /// The writer thread: once woken by a first line, lets lines gather for `GATHER`, then takes
    /// everything and writes it in one call; until closed and empty.
    fn write_out(&self, mut file: impl Write) {
        let mut batch = Vec::new();
        let mut taken;
        loop {
            {
                let mut pending = self.lock();
                while pending.lines.is_empty() && !pending.closed {
                    let (woken, waited) =
                        self.filled.wait_timeout(pending, SUMMARY_TICK).unwrap_or_else(|p| p.into_inner());
                    pending = woken;
                    // A quiet log still writes the summaries of refusal windows that are over.
                    if waited.timed_out() {
                        let lines = self.take_summaries(chrono::Utc::now(), false);
                        self.append_now(&mut pending, &lines);
                    }
                }
                if pending.lines.is_empty() {
                    return;
                }
                if !pending.closed {
                    drop(pending);
                    std::thread::sleep(GATHER);
                    pending = self.lock();
                }
                std::mem::swap(&mut batch, &mut pending.lines);
                taken = pending.recorded;
            }
            self.drained.notify_all();
            let result = file.write_all(&batch).and_then(|()| file.flush());
            if let Err(e) = &result {
                tracing::error!(error = %e, bytes = batch.len(), "audit lines could not be written");
            }
            batch.clear();
            {
                let mut pending = self.lock();
                pending.written = taken;
                pending.lost |= result.is_err();
            }
            self.written.notify_all();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        {
            // Counted refusals are written, not lost, when the service stops.
            let mut pending = self.shared.lock();
            let lines = self.shared.take_summaries(chrono::Utc::now(), true);
            self.shared.append_now(&mut pending, &lines);
            pending.closed = true;
        }
        self.shared.filled.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The file names are `audit.YYYY-MM-DD.jsonl`.
pub const FILE_PREFIX: &str = "audit";
pub const FILE_SUFFIX: &str = "jsonl";

impl AuditLog {
    /// Opens (creating) the audit folder, rotating daily and keeping `keep_files` files.
    pub fn open(dir: &Path, keep_files: usize) -> Result<Self, String> {
        Self::open_with_limit(dir, keep_files, BUFFER_LIMIT)
    }

    fn open_with_limit(dir: &Path, keep_files: usize, limit: usize) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create audit folder {}: {e}", dir.display()))?;
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(FILE_PREFIX)
            .filename_suffix(FILE_SUFFIX)
            .max_log_files(keep_files)
            .build(dir)
            .map_err(|e| format!("cannot open audit file in {}: {e}", dir.display()))?;
        Self::start(appender, limit)
    }

    /// Starts the writer thread on `file`.
    fn start(file: impl Write + Send + 'static, limit: usize) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            summaries: Mutex::default(),
            limit,
            filled: Condvar::new(),
            drained: Condvar::new(),
            written: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shared.write_out(file)
            })
            .map_err(|e| format!("cannot start the audit writer thread: {e}"))?;
        Ok(AuditLog { writer: Arc::new(Writer { shared, thread: Some(thread) }) })
    }

    /// Appends one line.
    pub fn record(&self, record: AuditRecord<'_>) {
        let shared = &self.writer.shared;
        let mut pending = shared.lock();
        while pending.lines.len() >= shared.limit {
            pending = shared.drained.wait(pending).unwrap_or_else(|p| p.into_inner());
        }
        let was_empty = pending.lines.is_empty();
        // Serialised straight into the buffer, under the lock, so lines never interleave.
        if let Err(e) = pending.push(&record) {
            drop(pending);
            tracing::error!(error = %e, event = record.event, "audit record could not be serialised");
            return;
        }
        drop(pending);
        if was_empty {
            shared.filled.notify_one();
        }
    }

    /// Counts a refusal that came before the sender was authenticated (unsigned, bad signature,
    /// wrong content type, too large, ...). Instead of a line each, which lets anyone fill the
    /// disk, each source and reason gets one `intake.rejected_summary` line per `SUMMARY_WINDOW`
    /// with the count, written when the next refusal after the window arrives, when the writer
    /// finds the window over, or when the log closes.
    pub fn refused(&self, source: &str, reason: &'static str, endpoint: &'static str, detail: impl FnOnce() -> String) {
        let now = chrono::Utc::now();
        let fresh = |detail: String| RefusalWindow { started: now, count: 1, endpoint, detail: bounded(detail) };
        let closed = {
            let mut open = self.writer.shared.summaries.lock().unwrap_or_else(|p| p.into_inner());
            let mut key = (source.to_string(), reason);
            if open.len() >= SUMMARY_SOURCES_MAX && !open.contains_key(&key) {
                key.0 = "other".to_string();
            }
            match open.get_mut(&key) {
                Some(window) if now < window.started + SUMMARY_WINDOW => {
                    window.count += 1;
                    None
                }
                Some(window) => {
                    let over = std::mem::replace(window, fresh(detail()));
                    Some(summary_line(key, over, now))
                }
                None => {
                    open.insert(key, fresh(detail()));
                    None
                }
            }
        };
        if let Some(line) = closed {
            self.record(line);
        }
    }

    /// Blocks until every line recorded before the call has been handed to the file (normally
    /// `GATHER` plus one write later), for at most `FLUSH_WAIT`; false if that ran out (a disk that
    /// stopped answering) or if a write failed since the log opened (lines are missing). Whoever
    /// reads the trail right after a decision (tests, an operator's tool in-process) calls this
    /// first; the service itself never waits for it.
    pub fn flush(&self) -> bool {
        let shared = &self.writer.shared;
        let pending = shared.lock();
        let target = pending.recorded;
        let (pending, _) = shared
            .written
            .wait_timeout_while(pending, FLUSH_WAIT, |p| p.written < target)
            .unwrap_or_else(|p| p.into_inner());
        pending.written >= target && !pending.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_text_the_record_serialises_to() {
        let id = Uuid::now_v7();
        // Every field named, none defaulted: a field added to the record fails to compile here
        // until it is set, and then this test fails until `write_json` writes it.
        let full = AuditRecord {
            timestamp: now_rfc3339(),
            audit_id: Some(id),
            event: "intake.rejected",
            webhook_id: Some("evt \"quoted\" \\ \u{1}".into()),
            user_email: Some("ann@example.com".into()),
            department_code: Some("ENG".into()),
            status: "rejected",
            retry_count: Some(3),
            detail: Some("line one\nline two \u{e9}".into()),
            endpoint: Some("/webhooks/hr/user-created"),
            extra: serde_json::Map::new(),
        }
        .field("httpStatus", 400)
        .field("groups", ["a", "b"])
        .field("we\"ird", serde_json::json!({"k": null}));
        let bare = AuditRecord::new("job.attempt", "retry");
        for record in [full, bare] {
            let mut line = Vec::new();
            record.write_json(&mut line).unwrap();
            assert_eq!(String::from_utf8(line).unwrap(), serde_json::to_string(&record).unwrap());
        }
    }

    #[test]
    fn a_field_never_repeats_a_key_of_the_record() {
        let record = AuditRecord::new("intake.accepted", "queued").field("event", "user.updated").field("status", 1);
        let mut line = Vec::new();
        record.write_json(&mut line).unwrap();
        let line = String::from_utf8(line).unwrap();
        for key in RECORD_KEYS {
            assert!(line.matches(&format!("\"{key}\":")).count() <= 1, "{key} twice in {line}");
        }
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!((&parsed["event"], &parsed["extraEvent"]), (&"intake.accepted".into(), &"user.updated".into()));
        assert_eq!(parsed["extraStatus"], 1);
    }

    #[test]
    fn long_texts_are_cut_with_a_marker_saying_how_long_they_were() {
        let long = "é".repeat(3000); // 6,000 bytes, two per character: the cut must fall between them
        let record = AuditRecord::new("intake.rejected", "rejected")
            .detail(long.clone())
            .webhook_id(long.clone())
            .subject_of(Some(&long), Some(&long))
            .field("nested", serde_json::json!({"list": [long.clone()]}));
        for text in [
            record.detail.as_deref().unwrap(),
            record.webhook_id.as_deref().unwrap(),
            record.user_email.as_deref().unwrap(),
            record.department_code.as_deref().unwrap(),
            record.extra["nested"]["list"][0].as_str().unwrap(),
        ] {
            assert!(text.len() < TEXT_MAX + 40, "{} bytes", text.len());
            assert!(text.ends_with("…(truncated, 6000 bytes)"), "{text}");
        }
        assert_eq!(bounded("short".to_string()), "short");
        assert_eq!(bounded("x".repeat(TEXT_MAX)), "x".repeat(TEXT_MAX), "exactly the bound is kept whole");
    }

    #[test]
    fn refusals_are_one_line_per_source_and_reason_and_window_and_none_is_lost_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), 3).unwrap();
        let detail = || "Invalid webhook signature".to_string();
        for _ in 0..5 {
            log.refused("10.0.0.1", "unauthorized", "/h", detail);
        }
        log.refused("10.0.0.2", "unauthorized", "/h", detail);
        log.refused("10.0.0.1", "too_large", "/h", detail);
        assert!(log.flush());
        assert!(lines_in(dir.path()).is_empty(), "nothing written while the windows are open");
        // The first window is over (moved back a minute): the next refusal writes its summary.
        for window in log.writer.shared.summaries.lock().unwrap().values_mut() {
            window.started -= SUMMARY_WINDOW;
        }
        log.refused("10.0.0.1", "unauthorized", "/h", detail);
        assert!(log.flush());
        let written = lines_in(dir.path());
        assert_eq!(written.len(), 1, "{written:?}");
        assert_eq!(written[0]["event"], "intake.rejected_summary");
        assert_eq!((&written[0]["count"], &written[0]["source"]), (&5.into(), &"10.0.0.1".into()));
        assert_eq!(written[0]["reason"], "unauthorized");
        drop(log); // closing writes every open window, the new one included
        let mut counts: Vec<(String, String, u64)> = lines_in(dir.path())
            .iter()
            .map(|l| {
                let text = |k: &str| l[k].as_str().unwrap().to_string();
                (text("source"), text("reason"), l["count"].as_u64().unwrap())
            })
            .collect();
        counts.sort();
        let expected = [
            ("10.0.0.1", "too_large", 1),
            ("10.0.0.1", "unauthorized", 1),
            ("10.0.0.1", "unauthorized", 5),
            ("10.0.0.2", "unauthorized", 1),
        ];
        assert_eq!(counts, expected.map(|(s, r, n)| (s.to_string(), r.to_string(), n)));
    }

    #[test]
    fn a_quiet_log_writes_a_summary_once_its_window_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), 3).unwrap();
        log.refused("10.0.0.3", "unauthorized", "/h", || "Invalid webhook signature".to_string());
        for window in log.writer.shared.summaries.lock().unwrap().values_mut() {
            window.started -= SUMMARY_WINDOW;
        }
        // No further refusal and no other line: the writer's own tick finds the window over.
        let deadline = std::time::Instant::now() + SUMMARY_TICK * 3;
        while lines_in(dir.path()).is_empty() {
            assert!(std::time::Instant::now() < deadline, "the summary was not written while the log stayed open");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(lines_in(dir.path())[0]["count"], 1);
        drop(log);
    }

    fn lines_in(dir: &Path) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            lines.extend(text.lines().map(|l| serde_json::from_str(l).expect("every line is one JSON object")));
        }
        lines
    }

    /// Records `per_thread` lines from each of `threads` threads at once; the details are "t-n".
    fn record_from_threads(log: &AuditLog, threads: usize, per_thread: usize) {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..per_thread {
                        log.record(AuditRecord::new("intake", "accepted").detail(format!("{t}-{n}")));
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    }

    #[test]
    fn concurrent_lines_are_whole_and_all_written_when_the_buffer_is_full() {
        let dir = tempfile::tempdir().unwrap();
        // A 1 KiB buffer holds a few lines, so writers keep waiting for the writer thread.
        let log = AuditLog::open_with_limit(dir.path(), 3, 1024).unwrap();
        record_from_threads(&log, 8, 2000);
        drop(log); // the last clone: the writer thread writes what is left, then stops
        let mut details: Vec<String> =
            lines_in(dir.path()).iter().map(|l| l["detail"].as_str().unwrap().to_string()).collect();
        details.sort();
        let mut expected: Vec<String> = (0..8).flat_map(|t| (0..2000).map(move |n| format!("{t}-{n}"))).collect();
        expected.sort();
        assert_eq!(details, expected);
    }

    #[test]
    fn flush_returns_once_every_line_recorded_before_it_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), 3).unwrap();
        for round in 1..=3 {
            record_from_threads(&log, 4, 50);
            // Read at once, without polling: the writer is still gathering unless flush waited.
            assert!(log.flush());
            assert_eq!(lines_in(dir.path()).len(), round * 200);
        }
        // Nothing recorded since: returns at once.
        assert!(log.flush());
        drop(log);
    }

    /// A file whose every write fails, like a full or vanished disk.
    struct FailingFile;

    impl Write for FailingFile {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk gone"))
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_says_false_at_once_when_lines_could_not_be_written() {
        let log = AuditLog::start(FailingFile, BUFFER_LIMIT).unwrap();
        log.record(AuditRecord::new("intake", "accepted"));
        let started = std::time::Instant::now();
        assert!(!log.flush(), "a line is missing from the file");
        assert!(started.elapsed() < FLUSH_WAIT / 2, "answered when the write failed, not at the deadline");
        drop(log);
    }

    #[test]
    fn a_quiet_line_is_written_without_waiting_for_more() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), 3).unwrap();
        log.record(AuditRecord::new("replay", "queued").webhook_id("evt-1"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while lines_in(dir.path()).is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line was not written while the log stayed open");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(lines_in(dir.path())[0]["webhookId"], "evt-1");
        drop(log);
    }
}
