//! The SCIM user built for a new hire, and the deterministic corrections applied when Genesys
//! refuses it as invalid.

use crate::config::Department;
use crate::genesys::types::{
    EnterpriseUser, SCHEMA_ENTERPRISE, SCHEMA_USER, ScimManager, ScimMultiValue, ScimUser, ScimValue,
};

use super::NewHire;

/// The `ScimV2CreateUser` body for a new hire, as HR sent it (the correction loop fixes what
/// Genesys refuses, and the audit shows what was changed). `groups` is read-only in Genesys and is
/// never sent: membership is added on the group afterwards. Genesys has no `name` attribute: first
/// and last name make the `displayName`. `externalId` is the person's key (employee id or number),
/// never the event id; `department` is the department's configured display name.
pub fn build(hire: &NewHire, department: &Department, manager_id: Option<&str>) -> ScimUser {
    let email = hire.email.as_str().to_string();
    // Some HR systems send a login name; Genesys wants the email, which a correction restores.
    // A blank one is no login name at all.
    let user_name = hire
        .extra
        .get("userName")
        .and_then(|v| v.as_str())
        .filter(|n| !n.trim().is_empty())
        .map(str::to_string)
        .unwrap_or(email.clone());
    let full_name = [hire.first_name.as_deref(), hire.last_name.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let display_name =
        if full_name.is_empty() { email.trim().split('@').next().unwrap_or_default().to_string() } else { full_name };
    let enterprise = EnterpriseUser {
        division: None,
        department: Some(department.name.clone()),
        manager: manager_id.map(|id| ScimManager { value: id.to_string(), display_name: None }),
        employee_number: hire.employee_number.clone(),
        date_hire: hire.hire_date.clone(),
    };
    ScimUser {
        schemas: vec![SCHEMA_USER.to_string(), SCHEMA_ENTERPRISE.to_string()],
        user_name,
        active: Some(true),
        display_name: Some(display_name),
        title: hire.title.clone(),
        emails: vec![ScimMultiValue { value: email, kind: Some("work".into()), primary: Some(true) }],
        phone_numbers: hire
            .phone
            .iter()
            .map(|p| ScimMultiValue { value: p.clone(), kind: Some("work".into()), primary: Some(true) })
            .collect(),
        external_id: hire.person_key(),
        roles: department.roles.iter().map(|r| ScimValue { value: r.clone() }).collect(),
        enterprise: Some(enterprise),
        ..Default::default()
    }
}

/// Applies the first correction rule that fits Genesys's `detail` and changes the payload;
/// returns what it did, or None when no rule applies (the payload cannot be fixed here).
pub fn correct(user: &mut ScimUser, detail: &str) -> Option<String> {
    let d = detail.to_ascii_lowercase();
    let primary = |u: &ScimUser| {
        u.emails.iter().find(|e| e.primary == Some(true)).or(u.emails.first()).map(|e| e.value.trim().to_lowercase())
    };
    if d.contains("username")
        && let Some(p) = primary(user).filter(|p| *p != user.user_name)
    {
        user.user_name = p;
        return Some("userName set to the primary email".to_string());
    }
    if d.contains("email") {
        let mut changed = false;
        for e in &mut user.emails {
            let clean = e.value.trim().to_lowercase();
            if clean != e.value {
                e.value = clean;
                changed = true;
            }
        }
        if changed {
            return Some("emails trimmed and lower-cased".to_string());
        }
    }
    if d.contains("$ref") {
        // We send no $ref (groups are read-only and managers go by id); nothing to rebuild.
        return None;
    }
    drop_named_optional(user, &d)
}

/// Drops an optional attribute that the detail names. Required ones (userName, displayName,
/// emails, active) are never dropped.
fn drop_named_optional(user: &mut ScimUser, d: &str) -> Option<String> {
    let mentions = |name: &str| {
        d.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == ':'))
            .map(|w| w.trim_end_matches([':', '.']))
            .any(|w| w == name || w.ends_with(&format!(":{name}")) || w.starts_with(&format!("{name}.")))
    };
    let dropped = if mentions("title") && user.title.take().is_some() {
        "title"
    } else if mentions("phonenumbers") && !user.phone_numbers.is_empty() {
        user.phone_numbers.clear();
        "phoneNumbers"
    } else if mentions("roles") && !user.roles.is_empty() {
        user.roles.clear();
        "roles"
    } else if mentions("manager") && user.enterprise.as_mut().and_then(|e| e.manager.take()).is_some() {
        "manager"
    } else if mentions("employeenumber") && user.enterprise.as_mut().and_then(|e| e.employee_number.take()).is_some() {
        "employeeNumber"
    } else if mentions("datehire") && user.enterprise.as_mut().and_then(|e| e.date_hire.take()).is_some() {
        "dateHire"
    } else if mentions("department") && user.enterprise.as_mut().and_then(|e| e.department.take()).is_some() {
        "department"
    } else if mentions("externalid") && user.external_id.take().is_some() {
        "externalId"
    } else {
        return None;
    };
    Some(format!("dropped the invalid optional attribute {dropped}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dept() -> Department {
        Department {
            code: "ENG".into(),
            name: "Engineering".into(),
            group_id: uuid::Uuid::parse_str("a1b2c3d4-5678-90ab-cdef-1234567890ab").unwrap(),
            roles: vec!["employee".into()],
        }
    }

    fn hire(v: serde_json::Value) -> NewHire {
        NewHire::from_json(&v).unwrap()
    }

    #[test]
    fn builds_the_genesys_create_body() {
        let h = hire(json!({"id": "evt-1", "email": "jane@example.com", "firstName": "Jane", "lastName": "Doe",
            "departmentCode": "ENG", "title": "Engineer", "employeeId": "E-42", "employeeNumber": 42,
            "hireDate": "2026-12-01", "phone": "+1 317 555 0142"}));
        let body = serde_json::to_value(build(&h, &dept(), Some("mgr-id"))).unwrap();
        assert_eq!(body["userName"], "jane@example.com");
        assert_eq!(body["displayName"], "Jane Doe");
        assert_eq!(body["active"], true);
        assert_eq!(body["externalId"], "E-42", "the employee id, not the event id");
        assert!(body.get("name").is_none(), "Genesys has no name attribute");
        assert_eq!(body["emails"], json!([{"value": "jane@example.com", "type": "work", "primary": true}]));
        assert_eq!(body["phoneNumbers"][0]["type"], "work");
        assert_eq!(body["roles"], json!([{"value": "employee"}]));
        let ext = &body[SCHEMA_ENTERPRISE];
        assert_eq!(ext["department"], "Engineering", "the configured display name");
        assert_eq!(ext["employeeNumber"], "42");
        assert_eq!(ext["dateHire"], "2026-12-01");
        assert_eq!(ext["manager"], json!({"value": "mgr-id"}));
        assert!(body.get("groups").is_none(), "groups is read-only and never sent");
        assert_eq!(body["schemas"], json!([SCHEMA_USER, SCHEMA_ENTERPRISE]));
    }

    #[test]
    fn corrects_user_name_and_padded_upper_case_emails() {
        let h = hire(json!({"email": "  JANE@EXAMPLE.COM ", "departmentCode": "ENG", "userName": "jdoe"}));
        let mut u = build(&h, &dept(), None);
        assert_eq!(
            correct(&mut u, "userName: must be the user's email address").as_deref(),
            Some("userName set to the primary email")
        );
        assert_eq!(u.user_name, "jane@example.com");
        assert_eq!(
            correct(&mut u, "emails: value must be trimmed and lower-case").as_deref(),
            Some("emails trimmed and lower-cased")
        );
        assert_eq!(u.emails[0].value, "jane@example.com");
        // Nothing left to change for the same complaint: no rule applies.
        assert_eq!(correct(&mut u, "userName: must be the user's email address"), None);
    }

    #[test]
    fn drops_a_named_optional_attribute_but_never_a_required_one() {
        let h = hire(json!({"email": "a@example.com", "departmentCode": "ENG", "title": "x", "employeeNumber": "7"}));
        let mut u = build(&h, &dept(), None);
        assert_eq!(correct(&mut u, "title: too long").as_deref(), Some("dropped the invalid optional attribute title"));
        assert!(u.title.is_none());
        assert_eq!(
            correct(&mut u, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber: invalid")
                .as_deref(),
            Some("dropped the invalid optional attribute employeeNumber")
        );
        assert_eq!(correct(&mut u, "displayName: required"), None);
        assert_eq!(correct(&mut u, "something else entirely"), None);
    }
}
