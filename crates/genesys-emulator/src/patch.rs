//! SCIM PATCH operations on a user, applied to its JSON form (`ScimUser` serialized without id, meta, groups).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::filter::{self, FilterValue};
use crate::models;
use crate::store::Fail;
use crate::wire::{PatchOperation, SCHEMA_ENTERPRISE, SCHEMA_GENESYS, SCHEMA_USER};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// What kind of value an attribute holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Str,
    Bool,
    /// A single complex value with these sub-attributes.
    Complex(&'static [&'static str]),
    /// A list of complex values with these sub-attributes.
    Multi(&'static [&'static str]),
    ReadOnly,
}

/// The core attributes a PATCH may not change.
const READ_ONLY: &[&str] = &["id", "meta", "groups", "schemas"];

/// The attributes of each part of the user, derived from the pinned SDK models
/// (`crate::models`), so the emulator knows exactly what Genesys keeps.
static CORE: LazyLock<Vec<(&'static str, Kind)>> = LazyLock::new(|| table(models::USER));
static ENTERPRISE: LazyLock<Vec<(&'static str, Kind)>> = LazyLock::new(|| table("ScimV2EnterpriseUser"));
static GENESYS: LazyLock<Vec<(&'static str, Kind)>> = LazyLock::new(|| table("ScimUserExtensions"));
/// The sub-attributes of each complex model.
static SUBS: LazyLock<HashMap<&'static str, Vec<&'static str>>> =
    LazyLock::new(|| models::model_names().into_iter().map(|m| (m, models::attributes(m))).collect());

fn subs(model: &str) -> &'static [&'static str] {
    SUBS.get(model).map(Vec::as_slice).unwrap_or_default()
}

fn table(model: &str) -> Vec<(&'static str, Kind)> {
    models::attributes(model)
        .into_iter()
        // The extensions are addressed by their URN, not as attributes of the core.
        .filter(|name| !name.starts_with("urn:"))
        .map(|name| {
            let ty = models::attribute(model, name).map(|(_, ty)| ty).unwrap_or_default();
            let kind = match models::model_of(ty) {
                _ if model == models::USER && READ_ONLY.contains(&name) => Kind::ReadOnly,
                Some(inner) if models::is_list(ty) => Kind::Multi(subs(inner)),
                Some(inner) => Kind::Complex(subs(inner)),
                None if ty == "bool" => Kind::Bool,
                None => Kind::Str,
            };
            (name, kind)
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ext {
    Core,
    Enterprise,
    Genesys,
}

impl Ext {
    fn table(self) -> &'static [(&'static str, Kind)] {
        match self {
            Ext::Core => CORE.as_slice(),
            Ext::Enterprise => ENTERPRISE.as_slice(),
            Ext::Genesys => GENESYS.as_slice(),
        }
    }

    fn urn(self) -> &'static str {
        match self {
            Ext::Core => SCHEMA_USER,
            Ext::Enterprise => SCHEMA_ENTERPRISE,
            Ext::Genesys => SCHEMA_GENESYS,
        }
    }
}

/// `[sub eq value]` on a multi-valued attribute.
#[derive(Debug)]
struct ValueFilter {
    sub: &'static str,
    value: FilterValue,
}

/// A parsed PATCH path.
#[derive(Debug)]
struct Target {
    ext: Ext,
    /// None: the whole extension object (`path` is the extension URN itself).
    attr: Option<(&'static str, Kind)>,
    filter: Option<ValueFilter>,
    sub: Option<&'static str>,
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn invalid_path(detail: String) -> Fail {
    Fail::bad(Some("invalidPath"), detail)
}

fn canonical_sub(subs: &'static [&'static str], name: &str, attr: &str) -> Result<&'static str, Fail> {
    subs.iter()
        .copied()
        .find(|s| s.eq_ignore_ascii_case(name))
        .ok_or_else(|| invalid_path(format!("{attr}.{name}: unknown sub-attribute")))
}

/// A path naming an attribute the Genesys models do not have (`name`, `emails[...].display`, ...).
struct NotKept(String);

/// The refusal of an attribute Genesys does not keep (strict), naming it.
fn not_kept(attribute: &str) -> Fail {
    crate::store::not_kept("user", attribute)
}

/// The target of a path; None when it names an attribute Genesys does not keep and `strict` is off
/// (a lenient Genesys ignores it).
fn resolve(path: &str, strict: bool) -> Result<Option<Target>, Fail> {
    match parse_path(path)? {
        Ok(target) => Ok(Some(target)),
        Err(NotKept(attribute)) if strict => Err(not_kept(&attribute)),
        Err(NotKept(_)) => Ok(None),
    }
}

fn parse_path(path: &str) -> Result<Result<Target, NotKept>, Fail> {
    let p = path.trim();
    let mut ext = Ext::Core;
    let mut rest = p;
    for candidate in [Ext::Enterprise, Ext::Genesys, Ext::Core] {
        if let Some(r) = strip_prefix_ci(p, candidate.urn()) {
            if r.is_empty() && candidate != Ext::Core {
                return Ok(Ok(Target { ext: candidate, attr: None, filter: None, sub: None }));
            }
            rest = r.strip_prefix(':').ok_or_else(|| invalid_path(format!("path: cannot read {path:?}")))?;
            ext = candidate;
            break;
        }
    }
    let name_end = rest.find(['[', '.']).unwrap_or(rest.len());
    let name = &rest[..name_end];
    let remainder = &rest[name_end..];
    let Some((attr_name, kind)) = ext.table().iter().copied().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
        return Ok(Err(NotKept(name.to_string())));
    };
    if kind == Kind::ReadOnly {
        return Err(Fail::bad(Some("mutability"), format!("{attr_name}: attribute is read-only")));
    }
    let (filter_text, sub_text) = if let Some(inner) = remainder.strip_prefix('[') {
        let close = inner.rfind(']').ok_or_else(|| invalid_path(format!("path: unclosed filter in {path:?}")))?;
        let after = &inner[close + 1..];
        let sub = match after {
            "" => None,
            _ => Some(after.strip_prefix('.').ok_or_else(|| invalid_path(format!("path: cannot read {path:?}")))?),
        };
        (Some(&inner[..close]), sub)
    } else if let Some(sub) = remainder.strip_prefix('.') {
        (None, Some(sub))
    } else {
        (None, None)
    };
    let subs: &'static [&'static str] = match kind {
        Kind::Complex(s) | Kind::Multi(s) => s,
        _ => &[],
    };
    let filter = match filter_text {
        None => None,
        Some(text) => {
            if !matches!(kind, Kind::Multi(_)) {
                return Err(invalid_path(format!("{attr_name}: a filter needs a multi-valued attribute")));
            }
            let f = filter::parse(text).map_err(|e| Fail::bad(Some("invalidFilter"), format!("{attr_name}: {e}")))?;
            Some(ValueFilter { sub: canonical_sub(subs, &f.attr, attr_name)?, value: f.value })
        }
    };
    let sub = match sub_text {
        None => None,
        Some(s) if subs.is_empty() => {
            return Err(invalid_path(format!("{attr_name}.{s}: {attr_name} has no sub-attributes")));
        }
        Some(s) => match subs.iter().copied().find(|k| k.eq_ignore_ascii_case(s)) {
            Some(known) => Some(known),
            None => return Ok(Err(NotKept(format!("{attr_name}.{s}")))),
        },
    };
    Ok(Ok(Target { ext, attr: Some((attr_name, kind)), filter, sub }))
}

/// Applies one operation to `doc`, the user as a JSON object. An attribute Genesys does not keep is
/// refused when `strict`, else skipped.
pub(crate) fn apply(doc: &mut Map<String, Value>, operation: &PatchOperation, strict: bool) -> Result<(), Fail> {
    let op = match operation.op.to_ascii_lowercase().as_str() {
        "add" => Op::Add,
        "replace" => Op::Replace,
        "remove" => Op::Remove,
        other => {
            return Err(Fail::bad(Some("invalidSyntax"), format!("op: {other:?} is not add, replace or remove")));
        }
    };
    let path = operation.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
    match path {
        None => {
            if op == Op::Remove {
                return Err(Fail::bad(Some("noTarget"), "path: remove needs a path"));
            }
            let Some(Value::Object(attrs)) = &operation.value else {
                return Err(Fail::bad(
                    Some("invalidSyntax"),
                    "value: must be an object of attributes when there is no path",
                ));
            };
            for (key, value) in attrs {
                if key.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                if let Some(target) = resolve(key, strict)? {
                    apply_at(doc, target, op, Some(value), strict)?;
                }
            }
            Ok(())
        }
        Some(p) => match resolve(p, strict)? {
            Some(target) => apply_at(doc, target, op, operation.value.as_ref(), strict),
            None => Ok(()),
        },
    }
}

fn apply_at(
    doc: &mut Map<String, Value>,
    target: Target,
    op: Op,
    value: Option<&Value>,
    strict: bool,
) -> Result<(), Fail> {
    let Some((name, kind)) = target.attr else {
        // The extension as a whole.
        if op == Op::Remove {
            doc.remove(target.ext.urn());
            return Ok(());
        }
        let Some(Value::Object(attrs)) = value else {
            return Err(Fail::bad(Some("invalidValue"), format!("{}: value must be an object", target.ext.urn())));
        };
        for (key, v) in attrs {
            if let Some(inner) = resolve(&format!("{}:{key}", target.ext.urn()), strict)? {
                apply_at(doc, inner, op, Some(v), strict)?;
            }
        }
        return Ok(());
    };
    match target.ext {
        Ext::Core => apply_attr(doc, (name, kind), target.filter, target.sub, op, value, strict),
        ext => edit_object(doc, ext.urn(), false, |section| {
            apply_attr(section, (name, kind), target.filter, target.sub, op, value, strict)
        }),
    }
}

/// Applies one operation to attribute `name` of `container`: the user itself, or one of its extensions.
fn apply_attr(
    container: &mut Map<String, Value>,
    (name, kind): (&'static str, Kind),
    filter: Option<ValueFilter>,
    sub: Option<&'static str>,
    op: Op,
    value: Option<&Value>,
    strict: bool,
) -> Result<(), Fail> {
    let value = value.filter(|v| !v.is_null());
    if op != Op::Remove && value.is_none() {
        if op == Op::Replace && filter.is_none() && sub.is_none() {
            container.remove(name);
            return Ok(());
        }
        return Err(Fail::bad(Some("invalidValue"), format!("{name}: a value is required")));
    }
    match (kind, filter, sub) {
        (Kind::Str | Kind::Bool, None, None) => {
            match value {
                None => {
                    container.remove(name);
                }
                Some(v) => {
                    let v = if kind == Kind::Bool { as_bool(name, v)? } else { as_string(name, v)? };
                    container.insert(name.to_string(), v);
                }
            }
            Ok(())
        }
        (Kind::Complex(subs), None, None) => {
            let Some(v) = value else {
                container.remove(name);
                return Ok(());
            };
            let incoming = match v {
                // `manager` is often sent as the bare id.
                Value::String(s) if subs.contains(&"value") => Map::from_iter([("value".to_string(), json!(s))]),
                Value::Object(m) => m.clone(),
                _ => return Err(Fail::bad(Some("invalidValue"), format!("{name}: value must be an object"))),
            };
            edit_object(container, name, op == Op::Replace && name == "manager", |obj| {
                for (k, sv) in incoming {
                    match subs.iter().copied().find(|s| s.eq_ignore_ascii_case(&k)) {
                        Some(sub) => {
                            obj.insert(sub.to_string(), as_string(&format!("{name}.{sub}"), &sv)?);
                        }
                        None if strict => return Err(not_kept(&format!("{name}.{k}"))),
                        None => {}
                    }
                }
                Ok(())
            })
        }
        (Kind::Complex(_), None, Some(sub)) => {
            match value {
                None => {
                    if let Some(Value::Object(obj)) = container.get_mut(name) {
                        obj.remove(sub);
                        if obj.is_empty() {
                            container.remove(name);
                        }
                    }
                }
                Some(v) => {
                    let v = as_string(&format!("{name}.{sub}"), v)?;
                    edit_object(container, name, false, |obj| obj.insert(sub.to_string(), v));
                }
            }
            Ok(())
        }
        (Kind::Multi(_), None, None) => {
            // Only a remove comes here without a value (see above): it removes the whole list.
            let Some(v) = value else {
                container.remove(name);
                return Ok(());
            };
            edit_list(container, name, |list| {
                match op {
                    Op::Remove => {
                        let gone: Vec<Value> =
                            entries(name, v)?.iter().filter_map(|e| e.get("value").cloned()).collect();
                        list.retain(|e| e.get("value").is_none_or(|x| !gone.contains(x)));
                    }
                    Op::Add => {
                        for e in entries(name, v)? {
                            if !list.contains(&e) {
                                list.push(e);
                            }
                        }
                    }
                    Op::Replace => *list = entries(name, v)?,
                }
                Ok(())
            })
        }
        (Kind::Multi(_), Some(f), None) => edit_list(container, name, |list| {
            match value {
                None => list.retain(|e| !matches_filter(e, &f)),
                Some(v) => {
                    let Value::Object(incoming) = v else {
                        return Err(Fail::bad(Some("invalidValue"), format!("{name}: value must be an object")));
                    };
                    let mut hit = false;
                    for e in list.iter_mut().filter(|e| matches_filter(e, &f)) {
                        hit = true;
                        if let Value::Object(obj) = e {
                            obj.extend(incoming.clone());
                        }
                    }
                    if !hit {
                        let mut fresh = Map::from_iter([(f.sub.to_string(), filter_json(&f.value))]);
                        fresh.extend(incoming.clone());
                        list.push(Value::Object(fresh));
                    }
                }
            }
            Ok(())
        }),
        (Kind::Multi(_), Some(f), Some(sub)) => edit_list(container, name, |list| {
            match value {
                None if sub == "value" => list.retain(|e| !matches_filter(e, &f)),
                None => {
                    for e in list.iter_mut().filter(|e| matches_filter(e, &f)) {
                        if let Value::Object(obj) = e {
                            obj.remove(sub);
                        }
                    }
                }
                Some(v) => {
                    let mut hit = false;
                    for e in list.iter_mut().filter(|e| matches_filter(e, &f)) {
                        hit = true;
                        if let Value::Object(obj) = e {
                            obj.insert(sub.to_string(), v.clone());
                        }
                    }
                    if !hit {
                        let fresh =
                            Map::from_iter([(f.sub.to_string(), filter_json(&f.value)), (sub.to_string(), v.clone())]);
                        list.push(Value::Object(fresh));
                    }
                }
            }
            Ok(())
        }),
        (Kind::Multi(_), None, Some(sub)) => {
            Err(invalid_path(format!("{name}.{sub}: say which entry, e.g. {name}[type eq \"work\"].{sub}")))
        }
        (_, _, _) => Err(invalid_path(format!("{name}: cannot be addressed this way"))),
    }
}

/// Edits the object at `name`, made empty first when it is missing, not an object, or `reset`. The
/// object is taken out for the edit and put back at the same key whatever `edit` answers, as an edit
/// in place would leave it.
fn edit_object<T>(
    container: &mut Map<String, Value>,
    name: &str,
    reset: bool,
    edit: impl FnOnce(&mut Map<String, Value>) -> T,
) -> T {
    let mut obj = match container.get_mut(name) {
        Some(Value::Object(obj)) if !reset => std::mem::take(obj),
        _ => Map::new(),
    };
    let out = edit(&mut obj);
    container.insert(name.to_string(), Value::Object(obj));
    out
}

/// Edits the list at `name`, made empty first when it is missing or not a list; put back like
/// `edit_object`'s.
fn edit_list<T>(container: &mut Map<String, Value>, name: &str, edit: impl FnOnce(&mut Vec<Value>) -> T) -> T {
    let mut list = match container.get_mut(name) {
        Some(Value::Array(list)) => std::mem::take(list),
        _ => Vec::new(),
    };
    let out = edit(&mut list);
    container.insert(name.to_string(), Value::Array(list));
    out
}

/// A multi-valued attribute's value: a list of objects, or one object.
fn entries(name: &str, v: &Value) -> Result<Vec<Value>, Fail> {
    let list = match v {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![v.clone()],
        _ => return Err(Fail::bad(Some("invalidValue"), format!("{name}: value must be a list of objects"))),
    };
    if list.iter().any(|e| !e.is_object()) {
        return Err(Fail::bad(Some("invalidValue"), format!("{name}: value must be a list of objects")));
    }
    Ok(list)
}

fn matches_filter(entry: &Value, f: &ValueFilter) -> bool {
    match (entry.get(f.sub), &f.value) {
        (Some(Value::String(s)), FilterValue::Str(want) | FilterValue::Bare(want)) => {
            if f.sub == "type" {
                s.eq_ignore_ascii_case(want)
            } else {
                s == want
            }
        }
        (Some(Value::Bool(b)), FilterValue::Bool(want)) => b == want,
        _ => false,
    }
}

fn filter_json(v: &FilterValue) -> Value {
    match v {
        FilterValue::Bool(b) => json!(b),
        other => json!(other.text()),
    }
}

fn as_string(name: &str, v: &Value) -> Result<Value, Fail> {
    match v {
        Value::String(_) => Ok(v.clone()),
        Value::Number(n) => Ok(json!(n.to_string())),
        _ => Err(Fail::bad(Some("invalidValue"), format!("{name}: must be a string"))),
    }
}

fn as_bool(name: &str, v: &Value) -> Result<Value, Fail> {
    match v {
        Value::Bool(_) => Ok(v.clone()),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(json!(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(json!(false)),
        _ => Err(Fail::bad(Some("invalidValue"), format!("{name}: must be true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(doc: Value, ops: Value) -> Result<Value, Fail> {
        let mut doc = doc.as_object().unwrap().clone();
        let ops: Vec<PatchOperation> = serde_json::from_value(ops).unwrap();
        for op in &ops {
            apply(&mut doc, op, true)?;
        }
        Ok(Value::Object(doc))
    }

    #[test]
    fn work_email_phone_and_enterprise_paths() {
        let doc = json!({"userName": "a@x.io", "emails": [{"value": "a@x.io", "type": "work"}]});
        let out = run(
            doc,
            json!([
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x.io"},
                {"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555"},
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "ENG"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "m1"}},
                {"op": "Replace", "path": "displayName", "value": "Ann"},
                {"op": "replace", "value": {"active": false, "title": "Boss"}}
            ]),
        )
        .unwrap();
        assert_eq!(out["emails"], json!([{"value": "b@x.io", "type": "work"}]));
        assert_eq!(out["phoneNumbers"], json!([{"type": "work", "value": "+1 555"}]));
        assert_eq!(out[SCHEMA_ENTERPRISE], json!({"department": "ENG", "manager": {"value": "m1"}}));
        assert_eq!(out["displayName"], json!("Ann"));
        assert_eq!(out["active"], json!(false));
        assert_eq!(out["title"], json!("Boss"));
    }

    #[test]
    fn remove_and_refusals() {
        let doc =
            json!({"title": "t", "phoneNumbers": [{"value": "1", "type": "work"}, {"value": "2", "type": "home"}]});
        let out = run(
            doc.clone(),
            json!([{"op": "remove", "path": "title"}, {"op": "remove", "path": "phoneNumbers[type eq \"work\"]"}]),
        )
        .unwrap();
        assert!(out.get("title").is_none());
        assert_eq!(out["phoneNumbers"], json!([{"value": "2", "type": "home"}]));
        let groups = run(doc.clone(), json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]));
        assert_eq!(groups.unwrap_err().scim_type, Some("mutability"));
        let unknown = run(doc.clone(), json!([{"op": "add", "path": "customFields", "value": "x"}]));
        assert_eq!(unknown.unwrap_err().scim_type, Some("invalidValue"), "not a Genesys attribute");
        let name = run(doc.clone(), json!([{"op": "replace", "path": "name.familyName", "value": "Roe"}]));
        assert_eq!(name.unwrap_err().detail, "name: not an attribute of the Genesys Cloud user");
        let bad_op = run(doc, json!([{"op": "move", "path": "title", "value": "x"}]));
        assert_eq!(bad_op.unwrap_err().scim_type, Some("invalidSyntax"));
    }
}
