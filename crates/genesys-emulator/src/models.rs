//! The Genesys Cloud API models every request body is checked against: the attribute names, types
//! and enum values of the SDK models (`purecloudplatformclientv2` 269.0.0), read from the
//! repository's one pinned copy of shared/genesys-sdk-models.json (`src/genesys/sdk-models.json`,
//! which the service reads too; a test keeps it equal to the shared file).
//!
//! `validate` and `validate_patch` are public so that the service's tests hold the bodies its client
//! sends to the same models: the emulator and those tests cannot drift apart on what Genesys keeps.

use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::filter::{self, FilterValue};
use crate::wire::{SCHEMA_GROUP, SCHEMA_USER};

/// The pinned models file: model name -> attribute name -> `{"type": ..., "enum"?: [...]}`.
pub const PINNED: &str = include_str!("../../../src/genesys/sdk-models.json");

static MODELS: LazyLock<Map<String, Value>> = LazyLock::new(|| match serde_json::from_str(PINNED) {
    Ok(Value::Object(models)) => models,
    // A test reads the file; an unreadable copy would show there, not here.
    _ => Map::new(),
});

/// The user as sent on create (`POST`).
pub const CREATE_USER: &str = "ScimV2CreateUser";
/// The user as read, replaced (`PUT`) or patched.
pub const USER: &str = "ScimV2User";
/// The group as read, replaced (`PUT`) or patched.
pub const GROUP: &str = "ScimV2Group";
/// A PATCH body: `schemas` and `Operations`.
pub const PATCH_REQUEST: &str = "ScimV2PatchRequest";

/// `Manager` (the enterprise `manager`) is referenced by the models file but not listed in it; its
/// attributes as Genesys documents them: the manager's user id, and the display name it adds.
const MANAGER: &[&str] = &["value", "displayName"];

/// Every model the file lists, and `Manager`.
pub fn model_names() -> Vec<&'static str> {
    MODELS.keys().map(String::as_str).filter(|m| !m.starts_with('_')).chain(["Manager"]).collect()
}

fn is_model(model: &str) -> bool {
    model == "Manager" || MODELS.get(model).is_some_and(Value::is_object)
}

/// The attribute names of a model, in the file's order; empty for a model the file does not list.
pub fn attributes(model: &str) -> Vec<&'static str> {
    if model == "Manager" {
        return MANAGER.to_vec();
    }
    match MODELS.get(model) {
        Some(Value::Object(attrs)) => attrs.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

/// One attribute of a model, found case-insensitively (SCIM attribute names are): its canonical
/// name and its type as the file writes it (`str`, `bool`, `list[ScimEmail]`, `ScimV2EnterpriseUser`).
pub fn attribute(model: &str, name: &str) -> Option<(&'static str, &'static str)> {
    if model == "Manager" {
        return MANAGER.iter().find(|a| a.eq_ignore_ascii_case(name)).map(|a| (*a, "str"));
    }
    let Some(Value::Object(attrs)) = MODELS.get(model) else { return None };
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(k, v)| (k.as_str(), v.get("type").and_then(Value::as_str).unwrap_or_default()))
}

/// The values an attribute may take, when the model restricts them (`ScimEmail.type`: work, other).
pub fn enum_values(model: &str, name: &str) -> Option<Vec<&'static str>> {
    let Some(Value::Object(attrs)) = MODELS.get(model) else { return None };
    let (_, spec) = attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?;
    let values = spec.get("enum")?.as_array()?;
    Some(values.iter().filter_map(Value::as_str).collect())
}

/// The model a type refers to, for a single (`ScimV2EnterpriseUser`) or a list (`list[ScimEmail]`)
/// of complex values; None for plain values (`str`, `bool`, `list[str]`, `object`, ...).
pub fn model_of(ty: &str) -> Option<&str> {
    let inner = ty.strip_prefix("list[").and_then(|t| t.strip_suffix(']')).unwrap_or(ty);
    is_model(inner).then_some(inner)
}

/// Whether a type is a list.
pub fn is_list(ty: &str) -> bool {
    ty.starts_with("list[")
}

/// What is wrong with one part of a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The model has no attribute of that name: Genesys does not keep it.
    UnknownAttribute,
    /// A value the attribute's enum does not list.
    NotInEnum { value: String, allowed: Vec<String> },
    /// The models file does not list the model asked for.
    UnknownModel,
}

/// One place where a body leaves the models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The attribute, as a path into the body: `name`, `emails.display`, `emails.type`,
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter` (an extension's
    /// attributes after its URN, as in a PATCH path), `Operations.op`.
    pub path: String,
    /// The model the attribute was looked up in.
    pub model: String,
    pub problem: Problem,
}

impl Violation {
    fn unknown(path: String, model: &str) -> Self {
        Violation { path, model: model.to_string(), problem: Problem::UnknownAttribute }
    }

    pub fn is_unknown_attribute(&self) -> bool {
        self.problem == Problem::UnknownAttribute
    }

    /// An enum value that differs from an allowed one only in letter case (`Work`, `Replace`):
    /// SCIM compares these without regard to case, the SDK's spelling does not.
    pub fn differs_only_in_case(&self) -> bool {
        match &self.problem {
            Problem::NotInEnum { value, allowed } => allowed.iter().any(|a| a.eq_ignore_ascii_case(value)),
            _ => false,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::UnknownAttribute => write!(f, "{}: not an attribute of {}", self.path, self.model),
            Problem::NotInEnum { value, allowed } => {
                write!(f, "{}: {value:?} is not one of {}", self.path, allowed.join(", "))
            }
            Problem::UnknownModel => write!(f, "{}: not a model of the pinned models file", self.model),
        }
    }
}

/// Checks a body of `model` against the models, all the way down: every attribute must be one of
/// its model's, and every value of an attribute with an enum one of the enum's (exactly as the SDK
/// spells it). Empty when the body keeps to the models.
pub fn validate(model: &str, body: &Value) -> Vec<Violation> {
    if !is_model(model) {
        return vec![Violation { path: String::new(), model: model.to_string(), problem: Problem::UnknownModel }];
    }
    let mut found = Vec::new();
    walk(model, body, "", '.', &mut found);
    found
}

/// `sep` joins `prefix` and an attribute: `.` for a sub-attribute, `:` inside an extension (whose
/// attributes are named after its URN, as in a PATCH path).
fn walk(model: &str, value: &Value, prefix: &str, sep: char, found: &mut Vec<Violation>) {
    let Value::Object(obj) = value else { return };
    for (key, child) in obj {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}{sep}{key}") };
        let child_sep = if prefix.is_empty() && key.starts_with("urn:") { ':' } else { '.' };
        let Some((name, ty)) = attribute(model, key) else {
            found.push(Violation::unknown(path, model));
            continue;
        };
        check_enum(model, name, child, &path, found);
        let Some(inner) = model_of(ty) else { continue };
        match child {
            Value::Array(items) => items.iter().for_each(|item| walk(inner, item, &path, child_sep, found)),
            other => walk(inner, other, &path, child_sep, found),
        }
    }
}

/// A value (or each value of a list) of an attribute with an enum must be one of it.
fn check_enum(model: &str, name: &str, value: &Value, path: &str, found: &mut Vec<Violation>) {
    let Some(allowed) = enum_values(model, name) else { return };
    let values: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for v in values {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        if !allowed.contains(&text.as_str()) {
            found.push(Violation {
                path: path.to_string(),
                model: model.to_string(),
                problem: Problem::NotInEnum { value: text, allowed: allowed.iter().map(|a| a.to_string()).collect() },
            });
        }
    }
}

/// Takes every attribute outside the models out of `body` (a lenient Genesys ignores them); what
/// `validate` reports as unknown is exactly what goes.
pub fn strip_unknown(model: &str, body: &mut Value) {
    let Value::Object(obj) = body else { return };
    obj.retain(|key, _| attribute(model, key).is_some());
    for (key, child) in obj.iter_mut() {
        let Some(inner) = attribute(model, key).and_then(|(_, ty)| model_of(ty)) else { continue };
        match child {
            Value::Array(items) => items.iter_mut().for_each(|item| strip_unknown(inner, item)),
            other => strip_unknown(inner, other),
        }
    }
}

/// Checks a PATCH body (`ScimV2PatchRequest`) on a resource of `resource` (`USER` or `GROUP`):
/// the message itself (its attributes, `op` in add | replace | remove), and what each operation
/// names: the attribute its `path` addresses (an extension's by its URN; a value filter's
/// sub-attribute and its value; a sub-attribute), and its `value` against that attribute's model.
/// A path-less operation's `value` is an object of the resource's attributes.
pub fn validate_patch(resource: &str, body: &Value) -> Vec<Violation> {
    let mut found = validate(PATCH_REQUEST, body);
    if !is_model(resource) {
        found.push(Violation { path: String::new(), model: resource.to_string(), problem: Problem::UnknownModel });
        return found;
    }
    let operations = body.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("Operations")));
    let Some((_, Value::Array(operations))) = operations else { return found };
    for operation in operations {
        let Value::Object(operation) = operation else { continue };
        let field = |name: &str| operation.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let value = field("value").filter(|v| !v.is_null());
        match field("path").and_then(Value::as_str).map(str::trim).filter(|p| !p.is_empty()) {
            None => {
                if let Some(v) = value {
                    walk(resource, v, "", '.', &mut found);
                }
            }
            Some(path) => check_path(resource, path, value, &mut found),
        }
    }
    found
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// The attribute a PATCH path addresses, and the operation's value against it. A path that cannot
/// be read at all is left to the server to refuse (`invalidPath`, `invalidFilter`): that is syntax,
/// not the models.
fn check_path(resource: &str, path: &str, value: Option<&Value>, found: &mut Vec<Violation>) {
    // Which part of the resource: an extension (by its URN), the core (with or without its URN).
    let mut model = resource;
    let mut prefix = String::new();
    let mut rest = path;
    let core = if resource == GROUP { SCHEMA_GROUP } else { SCHEMA_USER };
    if let Some(r) = strip_prefix_ci(path, core).and_then(|r| r.strip_prefix(':')) {
        rest = r;
    } else {
        for ext in attributes(resource).into_iter().filter(|a| a.starts_with("urn:")) {
            let Some(r) = strip_prefix_ci(path, ext) else { continue };
            let Some(inner) = attribute(resource, ext).and_then(|(_, ty)| model_of(ty)) else { return };
            if r.is_empty() {
                // The extension as a whole: its value is an object of the extension's attributes.
                if let Some(v) = value {
                    walk(inner, v, ext, ':', found);
                }
                return;
            }
            let Some(r) = r.strip_prefix(':') else { return };
            (model, prefix, rest) = (inner, format!("{ext}:"), r);
            break;
        }
    }
    if prefix.is_empty() && rest.starts_with("urn:") {
        // An extension the resource does not have, named by its URN.
        found.push(Violation::unknown(path.to_string(), model));
        return;
    }
    let name_end = rest.find(['[', '.']).unwrap_or(rest.len());
    let (name, remainder) = rest.split_at(name_end);
    let attr_path = format!("{prefix}{name}");
    let Some((name, ty)) = attribute(model, name) else {
        found.push(Violation::unknown(attr_path, model));
        return;
    };
    let inner = model_of(ty);
    let (filter_text, sub) = match remainder.strip_prefix('[') {
        Some(inner_text) => {
            let Some(close) = inner_text.rfind(']') else { return };
            let after = &inner_text[close + 1..];
            (Some(&inner_text[..close]), after.strip_prefix('.'))
        }
        None => (None, remainder.strip_prefix('.')),
    };
    if let (Some(text), Some(inner)) = (filter_text, inner)
        && let Ok(f) = filter::parse(text)
    {
        match attribute(inner, &f.attr) {
            None => found.push(Violation::unknown(format!("{attr_path}.{}", f.attr), inner)),
            Some((sub_name, _)) => {
                if let FilterValue::Str(s) | FilterValue::Bare(s) = &f.value {
                    check_enum(inner, sub_name, &Value::String(s.clone()), &format!("{attr_path}.{sub_name}"), found);
                }
            }
        }
    }
    match (sub, inner) {
        (Some(sub), Some(inner)) => match attribute(inner, sub) {
            None => found.push(Violation::unknown(format!("{attr_path}.{sub}"), inner)),
            Some((sub_name, _)) => {
                if let Some(v) = value {
                    check_enum(inner, sub_name, v, &format!("{attr_path}.{sub_name}"), found);
                }
            }
        },
        // A sub-attribute of a plain value: a path the server refuses (`invalidPath`).
        (Some(_), None) => {}
        (None, Some(inner)) => match value {
            Some(Value::Array(items)) => items.iter().for_each(|item| walk(inner, item, &attr_path, '.', found)),
            // One complex value, or a filtered entry's new sub-attributes (`emails[type eq "work"]`).
            Some(v @ Value::Object(_)) => walk(inner, v, &attr_path, '.', found),
            // `manager` is often sent as the bare id.
            _ => {}
        },
        (None, None) => {
            if let Some(v) = value {
                check_enum(model, name, v, &attr_path, found);
            }
        }
    }
}
