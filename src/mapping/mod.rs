//! The HR-to-SCIM mapping: a JSONata expression in a config file, compiled once at start (and by
//! `check-config`), evaluated per directory-sync job.
//!
//! The engine is jsonata-core, pinned to an exact version (its patch releases have changed results),
//! behind this module. Its values are not `Send`, so evaluation is synchronous and the parsed AST is
//! shared; each evaluation has a time limit and a depth limit.

use std::path::Path;
use std::sync::Arc;

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
}

/// A compiled mapping. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Mapping {
    ast: Arc<AstNode>,
    source_name: String,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapping({})", self.source_name)
    }
}

/// Limits of one evaluation: an HR record maps in microseconds; anything near these is a bug.
const TIMEOUT_MS: u64 = 500;
const MAX_DEPTH: usize = 500;

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MappingError::Unreadable { path: path.display().to_string(), reason: e.to_string() })?;
        Self::compile(&text, &path.display().to_string())
    }

    /// Parses `text`; a syntax error is reported with its line and column.
    pub fn compile(text: &str, source_name: &str) -> Result<Mapping, MappingError> {
        match jsonata_core::parser::parse(text) {
            Ok(ast) => Ok(Mapping { ast: Arc::new(ast), source_name: source_name.to_string() }),
            Err(e) => {
                let at = error_offset(text);
                let (line, column) = line_column(text, at);
                Err(MappingError::Syntax { source_name: source_name.to_string(), line, column, message: e.to_string() })
            }
        }
    }

    /// Applies the mapping to an HR record. The result must be a JSON object with a `userName`;
    /// `undefined` fields are left out, as JSONata does.
    pub fn apply(&self, record: &Value) -> Result<Value, MappingError> {
        let data: JValue = record.clone().into();
        let options =
            EvaluatorOptions { timeout_ms: Some(TIMEOUT_MS), max_stack_depth: Some(MAX_DEPTH), ..Default::default() };
        let mut evaluator = Evaluator::with_options(Context::new(), options);
        let out = evaluator.evaluate(&self.ast, &data).map_err(|e| MappingError::Evaluation(e.to_string()))?;
        let json = out.to_json_string().map_err(|e| MappingError::Evaluation(e.to_string()))?;
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
}
