//! The HR-to-SCIM mapping: a JSONata expression in a config file, compiled once at start (and by
//! `check-config`), evaluated per directory-sync job.
//!
//! The engine is jsonata-core, pinned to an exact version (its patch releases have changed results),
//! behind this module. Its values are not `Send`, so one evaluation runs start to end on one thread;
//! the parsed AST is shared. `evaluate` runs it on tokio's blocking threads, at most `threads` at once,
//! so a slow mapping never holds up the async runtime (health checks, intake).
//!
//! Limits, because the HR record is input and the engine's own time limit is not checked everywhere:
//! the record's size is checked before evaluation, sequences (`[1..1e7]`, `$map` over them) stop at
//! `MAX_SEQUENCE`, `$pad` refuses widths over `MAX_PAD_WIDTH`, and the result's size is checked after.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorOptions};
use jsonata_core::value::JValue;
use serde_json::Value;

/// Why a mapping could not be loaded or applied.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("cannot read mapping file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("mapping {source_name} has a syntax error at line {line}, column {column}: {message}")]
    Syntax { source_name: String, line: usize, column: usize, message: String },
    #[error("mapping evaluation failed: {0}")]
    Evaluation(String),
    #[error("mapping result is not a SCIM user: {0}")]
    NotAUser(String),
    #[error("the HR record is {size} bytes as JSON; the mapping takes at most {limit}")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("the mapping result is {size} bytes as JSON; at most {limit} are accepted")]
    ResultTooLarge { size: usize, limit: usize },
}

/// How much one evaluation may take in, give out and occupy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingLimits {
    /// Largest HR record (as JSON text) that is evaluated at all.
    pub max_record_bytes: usize,
    /// Largest mapping result (as JSON text).
    pub max_result_bytes: usize,
    /// Evaluations running at once in this process (each holds one blocking thread).
    pub threads: usize,
}

impl Default for MappingLimits {
    fn default() -> Self {
        MappingLimits { max_record_bytes: 64 * 1024, max_result_bytes: 64 * 1024, threads: 2 }
    }
}

/// A compiled mapping. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Mapping {
    ast: Arc<AstNode>,
    source_name: String,
    limits: MappingLimits,
    /// Permits for running evaluations, shared by the clones. A permit is released when the
    /// evaluation's thread is done, not when its caller stops waiting, so runaway evaluations
    /// cannot pile up beyond `limits.threads`.
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapping({})", self.source_name)
    }
}

/// Limits of one evaluation: an HR record maps in microseconds; anything near these is a bug.
const TIMEOUT_MS: u64 = 500;
const MAX_DEPTH: usize = 500;
/// Longest sequence an evaluation may build (a range, a `$map` result, ...): an HR record has tens of fields.
const MAX_SEQUENCE: usize = 10_000;
/// Widest `$pad`: the engine allocates the padding at once, outside its time limit.
pub const MAX_PAD_WIDTH: f64 = 10_000.0;
/// How long a caller waits for an evaluation that ignores the engine's time limit.
const WAIT: Duration = Duration::from_secs(2);

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MappingError::Unreadable { path: path.display().to_string(), reason: e.to_string() })?;
        Self::compile(&text, &path.display().to_string())
    }

    /// Where the mapping came from: the file as named in the configuration.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Parses `text`; a syntax error is reported with its line and column.
    pub fn compile(text: &str, source_name: &str) -> Result<Mapping, MappingError> {
        match jsonata_core::parser::parse(text) {
            Ok(ast) => Ok(Mapping {
                ast: Arc::new(ast),
                source_name: source_name.to_string(),
                limits: MappingLimits::default(),
                slots: Arc::new(tokio::sync::Semaphore::new(MappingLimits::default().threads)),
            }),
            Err(e) => {
                let at = error_offset(text);
                let (line, column) = line_column(text, at);
                Err(MappingError::Syntax { source_name: source_name.to_string(), line, column, message: e.to_string() })
            }
        }
    }

    /// The same mapping with other limits (and its own pool of `limits.threads`).
    pub fn with_limits(mut self, limits: MappingLimits) -> Mapping {
        let limits = MappingLimits { threads: limits.threads.max(1), ..limits };
        self.slots = Arc::new(tokio::sync::Semaphore::new(limits.threads));
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> MappingLimits {
        self.limits
    }

    /// `apply` on a blocking thread of the bounded pool, for async callers (the sync jobs).
    pub async fn evaluate(&self, record: &Value) -> Result<Value, MappingError> {
        // Checked here too, so an oversized record costs neither a copy nor a thread.
        self.check_record(record)?;
        let busy = || MappingError::Evaluation("the mapping pool is shut down".to_string());
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| busy())?;
        // One copy, moved to the thread and turned into the engine's value there (its values are
        // not Send); the size was checked above.
        let (mapping, record) = (self.clone(), record.clone());
        let running = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            mapping.map_checked(&record.into())
        });
        match tokio::time::timeout(WAIT, running).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(MappingError::Evaluation(format!("the mapping failed: {e}"))),
            Err(_) => Err(MappingError::Evaluation(format!(
                "the mapping did not finish within {} s (a builtin that ignores the time limit)",
                WAIT.as_secs()
            ))),
        }
    }

    /// Whether a record is small enough to be mapped (also checked at intake).
    pub fn check_record(&self, record: &Value) -> Result<(), MappingError> {
        let size = json_size(record);
        match size > self.limits.max_record_bytes {
            true => Err(MappingError::RecordTooLarge { size, limit: self.limits.max_record_bytes }),
            false => Ok(()),
        }
    }

    /// Applies the mapping to an HR record, on the calling thread. The result must be a JSON
    /// object with a `userName`; `undefined` fields are left out, as JSONata does.
    pub fn apply(&self, record: &Value) -> Result<Value, MappingError> {
        self.check_record(record)?;
        self.map_checked(&record.clone().into())
    }

    /// The evaluation itself, of a record whose size was checked.
    fn map_checked(&self, data: &JValue) -> Result<Value, MappingError> {
        let options = EvaluatorOptions {
            timeout_ms: Some(TIMEOUT_MS),
            max_stack_depth: Some(MAX_DEPTH),
            max_sequence_length: Some(MAX_SEQUENCE),
            ..Default::default()
        };
        let mut evaluator = Evaluator::with_options(Context::new(), options);
        evaluator
            .register_fn_override("pad", bounded_pad)
            .map_err(|e| MappingError::Evaluation(format!("cannot bound $pad: {e}")))?;
        let out = evaluator.evaluate(&self.ast, data).map_err(|e| MappingError::Evaluation(e.to_string()))?;
        let json = out.to_json_string().map_err(|e| MappingError::Evaluation(e.to_string()))?;
        if json.len() > self.limits.max_result_bytes {
            return Err(MappingError::ResultTooLarge { size: json.len(), limit: self.limits.max_result_bytes });
        }
        let value: Value = serde_json::from_str(&json).map_err(|e| MappingError::Evaluation(e.to_string()))?;
        match &value {
            Value::Object(m) if m.get("userName").and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty()) => {
                Ok(value)
            }
            Value::Object(_) => Err(MappingError::NotAUser("it has no userName".to_string())),
            other => Err(MappingError::NotAUser(format!("it is {}, not an object", kind(other)))),
        }
    }
}

/// The length of a value's JSON text, without building it.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// `$pad(string, width[, char])` as JSONata defines it (a negative width pads on the left; widths
/// count characters; a multi-character `char` is repeated and cut, an empty one is a space), refusing widths over
/// `MAX_PAD_WIDTH`: the built-in allocates whatever width it is given, however large.
fn bounded_pad(args: &[JValue]) -> Result<JValue, jsonata_core::evaluator::EvaluatorError> {
    use jsonata_core::evaluator::EvaluatorError;
    let text = match args.first() {
        Some(JValue::String(s)) => s.to_string(),
        Some(JValue::Null) => return Ok(JValue::Null),
        None | Some(JValue::Undefined) => return Ok(JValue::Undefined),
        Some(_) => return Err(EvaluatorError::TypeError("T0410: Argument 1 of function $pad must be a string".into())),
    };
    let width = match args.get(1) {
        Some(JValue::Number(n)) => n.trunc(),
        None | Some(JValue::Undefined) => return Ok(JValue::string(text)),
        Some(_) => return Err(EvaluatorError::TypeError("T0410: Argument 2 of function $pad must be a number".into())),
    };
    if width.abs() > MAX_PAD_WIDTH {
        return Err(EvaluatorError::EvaluationError(format!(
            "$pad width {width} is over this service's limit of {MAX_PAD_WIDTH}"
        )));
    }
    let fill = match args.get(2) {
        Some(JValue::String(s)) if !s.is_empty() => s.to_string(),
        None | Some(JValue::Undefined) | Some(JValue::String(_)) => " ".to_string(),
        Some(_) => return Err(EvaluatorError::TypeError("T0410: Argument 3 of function $pad must be a string".into())),
    };
    let missing = (width.abs() as usize).saturating_sub(text.chars().count());
    if missing == 0 {
        return Ok(JValue::string(text));
    }
    let padding: String = fill.chars().cycle().take(missing).collect();
    Ok(JValue::string(if width > 0.0 { text + &padding } else { padding + &text }))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where parsing goes wrong (the engine's errors carry no position): the end of the longest prefix
/// that is still a valid start of an expression, i.e. parses or fails only for ending too soon
/// (or inside an unterminated string); the offending character follows it.
fn error_offset(text: &str) -> usize {
    let fine_so_far = |prefix: &str| match jsonata_core::parser::parse(prefix) {
        Ok(_) => true,
        Err(e) => {
            let m = e.to_string();
            m.contains("end of expression") || m.starts_with("S0101")
        }
    };
    let mut last_fine = 0;
    for (i, c) in text.char_indices() {
        if fine_so_far(&text[..i + c.len_utf8()]) {
            last_fine = i + c.len_utf8();
        }
    }
    (last_fine + 1).min(text.len())
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0).max(1);
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Mapping {
        Mapping::load(Path::new("config/mappings/directory.jsonata")).expect("the sample mapping compiles")
    }

    #[test]
    fn the_sample_maps_a_realistic_record_to_real_scim_paths() {
        let record = json!({
            "externalId": "E-1042", "employeeNumber": 1042, "firstName": "Jane", "preferredName": "",
            "lastName": "Doe", "workEmail": " Jane.Doe@Example.com ", "department": "Engineering",
            "costCenter": null, "level": "L4", "hireDate": "2026-12-01", "jobTitle": "Engineer",
            "workPhone": "+1 317 555 0142"
        });
        let expected = json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                "urn:ietf:params:scim:schemas:extension:genesys:purecloud:2.0:User"
            ],
            "externalId": "E-1042",
            "userName": "jane.doe@example.com",
            "displayName": "Jane Doe",
            "title": "Engineer",
            "emails": [{"value": "jane.doe@example.com", "type": "work", "primary": true}],
            "phoneNumbers": [{"value": "+1 317 555 0142", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "department": "Engineering", "employeeNumber": "1042", "dateHire": "2026-12-01"
            },
            "urn:ietf:params:scim:schemas:extension:genesys:purecloud:2.0:User": {
                "externalIds": [{"authority": "costCenter", "value": "UNASSIGNED"}, {"authority": "jobLevel", "value": "L4"}]
            }
        });
        assert_eq!(sample().apply(&record).unwrap(), expected);
    }

    #[test]
    fn missing_optional_fields_are_left_out() {
        let out = sample()
            .apply(&json!({"externalId": "E-7", "email": "a@b.io", "firstName": "A", "lastName": "B"}))
            .unwrap();
        assert!(out.get("phoneNumbers").is_none(), "{out}");
        assert!(out.get("title").is_none(), "{out}");
        let ext = &out["urn:ietf:params:scim:schemas:extension:genesys:purecloud:2.0:User"]["externalIds"];
        assert_eq!(ext, &json!([{"authority": "costCenter", "value": "UNASSIGNED"}]));
    }

    #[test]
    fn the_nested_vendor_sample_maps_its_shape() {
        let m = Mapping::load(Path::new("config/mappings/nested-vendor.jsonata")).unwrap();
        let record = json!({
            "worker": {"id": "W-9"},
            "person": {"name": {"first": "Ana", "last": "Lima"},
                       "contact": {"emails": [{"type": "HOME", "address": "ana@home.example"},
                                              {"type": "WORK", "address": " Ana.Lima@Example.com"}]}},
            "job": {"title": "Agent", "org": {"name": "Support"}, "start": "2027-01-04"}
        });
        assert_eq!(
            m.apply(&record).unwrap(),
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "externalId": "W-9",
                "userName": "ana.lima@example.com",
                "displayName": "Ana Lima",
                "emails": [{"value": "ana.lima@example.com", "type": "work", "primary": true}],
                "title": "Agent",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Support", "dateHire": "2027-01-04"}
            })
        );
    }

    #[test]
    fn roles_become_scim_role_values() {
        let out = sample().apply(&json!({"externalId": "E", "email": "a@b.io", "roles": ["agent"]})).unwrap();
        assert_eq!(out["roles"], json!([{"value": "agent"}]));
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let err = Mapping::compile("{\n  \"a\": x,\n  \"b\": ,\n}", "test.jsonata").unwrap_err();
        match err {
            MappingError::Syntax { line, column, .. } => assert_eq!((line, column), (3, 8), "{err}"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_result_that_is_not_a_user_is_an_error_not_a_panic() {
        let m = Mapping::compile("{\"title\": t}", "t").unwrap();
        assert_eq!(m.apply(&json!({"t": "x"})).unwrap_err(), MappingError::NotAUser("it has no userName".into()));
        let m = Mapping::compile("[1, 2]", "t").unwrap();
        assert!(matches!(m.apply(&json!({})), Err(MappingError::NotAUser(_))));
        let m = Mapping::compile("$number(\"x\")", "t").unwrap();
        assert!(matches!(m.apply(&json!({})), Err(MappingError::Evaluation(_)) | Err(MappingError::NotAUser(_))));
    }

    /// The job's evaluation runs on a blocking thread: the runtime it was awaited on keeps running
    /// other tasks (health checks, intake) meanwhile. On a current-thread runtime the spinner
    /// would not run at all if the evaluation ran on the runtime's own thread.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_evaluation_does_not_hold_up_the_runtime() {
        // Close to the engine's time limit: 5,000 x 5,000 additions.
        let m =
            Mapping::compile("{\"userName\": \"a@b.io\", \"n\": $sum([1..5000].($sum([1..5000])))}", "slow").unwrap();
        let spins = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let (spins, stop) = (spins.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    spins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        let started = std::time::Instant::now();
        let _ = m.evaluate(&json!({})).await;
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.await.unwrap();
        let spun = spins.load(std::sync::atomic::Ordering::Relaxed);
        assert!(took > Duration::from_millis(20), "the mapping was not slow enough to show anything ({took:?})");
        assert!(spun > 100, "the runtime ran other tasks only {spun} times in {took:?}");
    }

    #[test]
    fn huge_sequences_and_pads_are_refused_instead_of_allocated() {
        let m = Mapping::compile("{\"userName\": \"a@b.io\", \"n\": $count([1..1e7])}", "range").unwrap();
        let e = m.apply(&json!({})).unwrap_err().to_string();
        assert!(e.contains("D2015"), "{e}");
        let m = Mapping::compile("{\"userName\": \"a@b.io\", \"p\": $pad(\"x\", w)}", "pad").unwrap();
        let e = m.apply(&json!({"w": 100_000_000})).unwrap_err().to_string();
        assert!(e.contains("$pad width 100000000 is over"), "{e}");
        let e = m.apply(&json!({"w": -100_000_000})).unwrap_err().to_string();
        assert!(e.contains("over"), "{e}");
    }

    /// The bounded `$pad` answers exactly as the engine's own within the limit.
    #[test]
    fn the_bounded_pad_matches_the_builtin() {
        for call in [
            "$pad(\"x\", 5)",
            "$pad(\"x\", -5, \"#\")",
            "$pad(\"abcdef\", 2)",
            "$pad(\"x\", 6, \"ab\")",
            "$pad(\"x\", -6, \"ab\")",
            "$pad(\"ünï\", 5, \"é\")",
            "$pad(\"x\", 3.7)",
            "$pad(\"x\", 4, \"\")",
            "$pad(missing, 4)",
            "$pad(\"7\", -3, \"0\")",
        ] {
            let ast = jsonata_core::parser::parse(call).unwrap();
            let data: JValue = json!({}).into();
            let builtin = Evaluator::with_options(Context::new(), EvaluatorOptions::default())
                .evaluate(&ast, &data)
                .map(|v| v.to_json_string().ok());
            let mut ours = Evaluator::with_options(Context::new(), EvaluatorOptions::default());
            ours.register_fn_override("pad", bounded_pad).unwrap();
            let ours = ours.evaluate(&ast, &data).map(|v| v.to_json_string().ok());
            assert_eq!(ours.ok(), builtin.ok(), "{call}");
        }
    }

    #[tokio::test]
    async fn oversized_records_and_results_are_refused() {
        let m = sample().with_limits(MappingLimits { max_record_bytes: 200, max_result_bytes: 64 * 1024, threads: 1 });
        let big = json!({"externalId": "E-1", "email": "a@b.io", "jobTitle": "x".repeat(500)});
        let e = m.evaluate(&big).await.unwrap_err();
        assert!(matches!(e, MappingError::RecordTooLarge { limit: 200, .. }), "{e}");
        assert!(e.to_string().contains("at most 200"), "{e}");
        let m = sample().with_limits(MappingLimits { max_record_bytes: 64 * 1024, max_result_bytes: 600, threads: 1 });
        let e = m.evaluate(&big).await.unwrap_err();
        assert!(matches!(e, MappingError::ResultTooLarge { limit: 600, .. }), "{e}");
        let small = json!({"externalId": "E-1", "email": "a@b.io"});
        assert!(m.evaluate(&small).await.is_ok());
    }
}
