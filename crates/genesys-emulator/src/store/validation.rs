//! What a request body must be before the store takes it: valid JSON of the right shape, inside the
//! Genesys API models (`crate::models`; an attribute outside them refused or ignored as
//! genesys-api.md says, a value outside an enum refused), and within the Genesys rules for users
//! (email-shaped userName, required displayName, tidy emails, a unique userName).

use serde_json::Value;

use super::users::{is_other, is_work};
use super::{Fail, Store, etag, etag_matches};
use crate::models::{self, Problem, Violation};
use crate::wire::{PatchOp, SCHEMA_PATCH_OP, ScimMultiValue, ScimUser};

pub(super) fn check_if_match(if_match: Option<&str>, version: u64) -> Result<(), Fail> {
    match if_match {
        Some(h) if !etag_matches(h, version) => Err(Fail::bad(
            Some("invalidVers"),
            format!("If-Match {h} does not match the current version {}", etag(version)),
        )),
        _ => Ok(()),
    }
}

/// The refusal of an attribute Genesys does not keep (strict), naming it; `resource` is `user` or `group`.
pub(crate) fn not_kept(resource: &str, attribute: &str) -> Fail {
    Fail::bad(Some("invalidValue"), format!("{attribute}: not an attribute of the Genesys Cloud {resource}"))
}

/// Acts on what the models say of a body of a `resource` (`user`, `group`): an attribute outside
/// them is refused naming it when `strict`, else let through for the caller to ignore (it is never
/// stored); a value outside an enum is refused whatever `strict` says (letter case aside: SCIM
/// compares `type` and `op` values without it).
pub(super) fn enforce(violations: &[Violation], resource: &str, strict: bool) -> Result<(), Fail> {
    if strict && let Some(v) = violations.iter().find(|v| v.is_unknown_attribute()) {
        let of_the_resource = v.model != models::PATCH_REQUEST && v.model != "ScimV2PatchOperation";
        return Err(if of_the_resource {
            not_kept(resource, &v.path)
        } else {
            Fail::bad(Some("invalidValue"), v.to_string())
        });
    }
    let off_enum = |v: &&Violation| matches!(v.problem, Problem::NotInEnum { .. }) && !v.differs_only_in_case();
    if let Some(v) = violations.iter().find(off_enum) {
        return Err(Fail::bad(Some("invalidValue"), v.to_string()));
    }
    Ok(())
}

pub(super) fn parse_json(body: &[u8]) -> Result<Value, Fail> {
    serde_json::from_slice(body).map_err(|e| Fail::bad(Some("invalidSyntax"), format!("the body is not JSON: {e}")))
}

/// A user body of `model` (`ScimV2CreateUser` for a create, `ScimV2User` for a replace), held to the
/// models: an attribute outside them is refused naming it (`strict_attributes`), else dropped;
/// either way it is never stored.
pub(super) fn parse_user_body(body: &[u8], model: &str, strict_attributes: bool) -> Result<ScimUser, Fail> {
    let mut value = parse_json(body)?;
    let Value::Object(map) = &value else {
        return Err(Fail::bad(Some("invalidSyntax"), "the body must be a JSON object"));
    };
    if map.keys().any(|k| k.eq_ignore_ascii_case("groups")) {
        return Err(Fail::bad(Some("mutability"), "groups: attribute is read-only"));
    }
    enforce(&models::validate(model, &value), "user", strict_attributes)?;
    models::strip_unknown(model, &mut value);
    serde_json::from_value(value).map_err(|e| Fail::bad(Some("invalidValue"), format!("body: {e}")))
}

/// A PATCH body, typed and as sent (for `models::validate_patch`).
pub(super) fn parse_patch(body: &[u8]) -> Result<(PatchOp, Value), Fail> {
    let not_a_patch =
        |e: serde_json::Error| Fail::bad(Some("invalidSyntax"), format!("the body is not a PatchOp: {e}"));
    let raw: Value = serde_json::from_slice(body).map_err(not_a_patch)?;
    let patch: PatchOp = serde_json::from_value(raw.clone()).map_err(not_a_patch)?;
    if !patch.schemas.iter().any(|s| s == SCHEMA_PATCH_OP) {
        return Err(Fail::bad(Some("invalidSyntax"), format!("schemas: must list {SCHEMA_PATCH_OP}")));
    }
    if patch.operations.is_empty() {
        return Err(Fail::bad(Some("invalidSyntax"), "Operations: at least one operation is needed"));
    }
    Ok((patch, raw))
}

/// A plain syntactic check: one `@`, a dotted domain, no spaces.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"()<>,;:\\\"[]@".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

impl Store {
    /// The create/replace/modify rules. `before` is the stored user for a change (emails it already had
    /// are not held to the strict rule again), `self_id` its id (not a duplicate of itself).
    pub(super) fn check_user(
        &self,
        user: &ScimUser,
        before: Option<&ScimUser>,
        self_id: Option<&str>,
        strict: bool,
    ) -> Result<(), Fail> {
        let name = user.user_name.as_str();
        if name.is_empty() {
            return Err(Fail::bad(Some("invalidValue"), "userName: required; must be the user's email address"));
        }
        if name.trim() != name || !is_email(name) {
            return Err(Fail::bad(
                Some("invalidValue"),
                format!("userName: must be the user's email address (got {name:?})"),
            ));
        }
        if user.display_name.as_deref().is_none_or(|d| d.trim().is_empty()) {
            return Err(Fail::bad(Some("invalidValue"), "displayName: required"));
        }
        let sent: Vec<&ScimMultiValue> = user.emails.iter().filter(|e| !is_other(e)).collect();
        for e in &sent {
            if e.value.trim().is_empty() {
                return Err(Fail::bad(Some("invalidValue"), "emails: value is required"));
            }
        }
        if strict {
            let known = |v: &str| before.is_some_and(|b| b.emails.iter().any(|e| !is_other(e) && e.value == v));
            for e in &sent {
                let clean = e.value.trim() == e.value && !e.value.chars().any(char::is_uppercase);
                if !clean && !known(&e.value) {
                    return Err(Fail::bad(
                        Some("invalidValue"),
                        format!("emails: value {:?} must be trimmed and lower-case", e.value),
                    ));
                }
            }
            let emails_changed = before.is_none_or(|b| {
                let old: Vec<&ScimMultiValue> = b.emails.iter().filter(|e| !is_other(e)).collect();
                old != sent
            });
            let name_changed = before.is_none_or(|b| b.user_name != user.user_name);
            let work: Vec<&str> = sent.iter().filter(|e| is_work(e)).map(|e| e.value.as_str()).collect();
            if (emails_changed || name_changed) && !work.is_empty() && !work.contains(&name) {
                return Err(Fail::bad(
                    Some("invalidValue"),
                    format!("userName: must equal the work email {:?} (got {name:?})", work[0]),
                ));
            }
        }
        if let Some(ent) = &user.enterprise {
            if let Some(date) = &ent.date_hire
                && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err()
            {
                return Err(Fail::bad(Some("invalidValue"), format!("dateHire: must be YYYY-MM-DD (got {date:?})")));
            }
            if ent.manager.as_ref().is_some_and(|m| m.value.trim().is_empty()) {
                return Err(Fail::bad(Some("invalidValue"), "manager: value is required"));
            }
        }
        if let Some(other) = self.by_name.get(&name.to_lowercase())
            && Some(other.as_str()) != self_id
            && self.users.contains_key(other)
        {
            return Err(Fail::new(409, Some("uniqueness"), format!("userName: {name:?} already exists")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_syntax() {
        assert!(is_email("jane.doe@example.com"));
        assert!(is_email("a+b@sub.example.io"));
        for bad in ["jane", "jane@", "@x.io", "a@b", "a b@x.io", "a@@x.io", "a@x..io", ".a@x.io", "a@-x.io"] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
