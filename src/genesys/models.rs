//! The attributes of the Genesys Cloud SDK models (`purecloudplatformclientv2` 269.0.0), read from a
//! pinned copy of shared/genesys-sdk-models.json (`sdk-models.json` beside this file, the repository's
//! one copy: the emulator crate validates requests against the same file). The sync diffs only
//! attributes Genesys keeps, and the emulator refuses (or, lenient, drops) every other one, so both
//! follow the same list.

use std::sync::LazyLock;

use serde_json::{Map, Value};

/// The pinned models file: model name -> attribute name -> `{"type": ..., "enum"?: [...]}`.
const MODELS_JSON: &str = include_str!("sdk-models.json");

static MODELS: LazyLock<Map<String, Value>> = LazyLock::new(|| match serde_json::from_str(MODELS_JSON) {
    Ok(Value::Object(models)) => models,
    // A test reads the file; an unreadable copy would show there, not here.
    _ => Map::new(),
});

/// The user as sent on create (`POST`).
pub const CREATE_USER: &str = "ScimV2CreateUser";
/// The user as read, replaced (`PUT`) or patched.
pub const USER: &str = "ScimV2User";

/// `Manager` (the enterprise `manager`) is referenced by the models file but not listed in it; its
/// attributes as Genesys documents them: the manager's user id, and the display name it adds.
const MANAGER: &[&str] = &["value", "displayName"];

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

/// The type of one attribute of a model as the file writes it (`str`, `bool`, `list[ScimEmail]`,
/// `ScimV2EnterpriseUser`, ...), found case-insensitively (SCIM attribute names are); with its
/// canonical name.
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

/// The model a type refers to, for a single (`ScimV2EnterpriseUser`) or a list (`list[ScimEmail]`)
/// of complex values; None for plain values (`str`, `bool`, `list[str]`, ...).
pub fn model_of(ty: &str) -> Option<&str> {
    let inner = ty.strip_prefix("list[").and_then(|t| t.strip_suffix(']')).unwrap_or(ty);
    (inner == "Manager" || MODELS.get(inner).is_some_and(Value::is_object)).then_some(inner)
}

/// The attributes of `value` (a JSON object of `model`) that the models do not have, as paths
/// (`name`, `emails.display`, `urn:...:enterprise:2.0:User:costCenter`); with `remove`, they are
/// also taken out of `value`. Complex values are checked all the way down.
pub fn unknown_attributes(model: &str, value: &mut Value, remove: bool) -> Vec<String> {
    let mut found = Vec::new();
    walk(model, value, "", '.', remove, &mut found);
    found
}

/// `sep` joins `prefix` and an attribute: `.` for a sub-attribute, `:` inside an extension (whose
/// attributes are named after its URN, as in a PATCH path).
fn walk(model: &str, value: &mut Value, prefix: &str, sep: char, remove: bool, found: &mut Vec<String>) {
    let Value::Object(obj) = value else { return };
    let mut unknown = Vec::new();
    for (key, child) in obj.iter_mut() {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}{sep}{key}") };
        let child_sep = if prefix.is_empty() && key.starts_with("urn:") { ':' } else { '.' };
        let Some((_, ty)) = attribute(model, key) else {
            found.push(path);
            unknown.push(key.clone());
            continue;
        };
        let Some(inner) = model_of(ty) else { continue };
        match child {
            Value::Array(items) => {
                for item in items {
                    walk(inner, item, &path, child_sep, remove, found);
                }
            }
            other => walk(inner, other, &path, child_sep, remove, found),
        }
    }
    if remove {
        for key in unknown {
            obj.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesys::types::{
        EnterpriseUser, SCHEMA_ENTERPRISE, ScimManager, ScimMeta, ScimMultiValue, ScimUser, ScimValue,
    };
    use serde_json::json;

    #[test]
    fn the_pinned_models_file_is_read_and_is_the_shared_one() {
        for model in [CREATE_USER, USER, "ScimV2EnterpriseUser", "ScimUserExtensions", "ScimEmail", "ScimV2Group"] {
            assert!(!attributes(model).is_empty(), "{model} is missing from the pinned models file");
        }
        assert!(attribute(USER, "name").is_none(), "Genesys has no `name` attribute");
        assert_eq!(attribute(USER, "USERNAME"), Some(("userName", "str")));
        assert_eq!(model_of("list[ScimEmail]"), Some("ScimEmail"));
        assert_eq!(model_of("list[str]"), None);
    }

    #[test]
    fn finds_and_removes_attributes_outside_the_models() {
        let mut user = json!({
            "userName": "a@x.io", "name": {"givenName": "A"},
            "emails": [{"value": "a@x.io", "type": "work", "display": "A"}],
            SCHEMA_ENTERPRISE: {"department": "ENG", "costCenter": "CC", "manager": {"value": "m", "$ref": "r"}},
            "urn:ietf:params:scim:schemas:extension:genesys:purecloud:2.0:User": {"routingSkills": [{"name": "x", "level": 1}]}
        });
        let mut found = unknown_attributes(CREATE_USER, &mut user, true);
        found.sort();
        assert_eq!(
            found,
            [
                "emails.display".to_string(),
                "name".to_string(),
                format!("{SCHEMA_ENTERPRISE}:costCenter"),
                format!("{SCHEMA_ENTERPRISE}:manager.$ref"),
                "urn:ietf:params:scim:schemas:extension:genesys:purecloud:2.0:User:routingSkills.level".to_string(),
            ]
        );
        assert!(unknown_attributes(CREATE_USER, &mut user, false).is_empty(), "all removed: {user}");
        assert_eq!(user[SCHEMA_ENTERPRISE], json!({"department": "ENG", "manager": {"value": "m"}}));
    }

    /// The client's golden test: a user with every field this service can send or read serializes to
    /// attributes of the SDK models only.
    #[test]
    fn the_scim_user_type_has_only_genesys_attributes() {
        let typed = |kind: &str| ScimMultiValue { value: "v".into(), kind: Some(kind.into()), primary: Some(true) };
        let user = ScimUser {
            schemas: vec!["s".into()],
            id: Some("id".into()),
            user_name: "a@x.io".into(),
            active: Some(true),
            display_name: Some("A".into()),
            title: Some("t".into()),
            emails: vec![typed("work")],
            phone_numbers: vec![typed("work")],
            external_id: Some("E-1".into()),
            roles: vec![ScimValue { value: "employee".into() }],
            groups: vec![Default::default()],
            enterprise: Some(EnterpriseUser {
                division: Some("d".into()),
                department: Some("ENG".into()),
                manager: Some(ScimManager { value: "m".into(), display_name: Some("M".into()) }),
                employee_number: Some("1".into()),
                date_hire: Some("2026-12-01".into()),
            }),
            genesys: Some(json!({"externalIds": [{"authority": "a", "value": "v"}]})),
            meta: Some(ScimMeta::default()),
        };
        let mut value = serde_json::to_value(&user).unwrap();
        value.as_object_mut().unwrap().remove("meta"); // ScimMetadata is not listed in the file
        assert_eq!(unknown_attributes(USER, &mut value, false), Vec::<String>::new());
    }
}
