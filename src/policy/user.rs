//! A SCIM user as the policy reads it, borrowed: from the typed `ScimUser` the service sends, or
//! from SCIM JSON (a mapped directory record, a user as Genesys holds it, a validation webhook's
//! `data`). Nothing is copied, so judging a user allocates nothing of its own.

use serde_json::Value;

use crate::genesys::types::{SCHEMA_ENTERPRISE, SCHEMA_GENESYS, ScimUser, ScimValue};

/// The `authority` of the Genesys extension's `externalIds` entry that carries the cost center:
/// Genesys has no cost-center attribute (`ScimV2EnterpriseUser` in the pinned SDK models has none),
/// so the mapping writes it there, as `{"authority": "costCenter", "value": ...}`.
pub const COST_CENTER_AUTHORITY: &str = "costCenter";

/// The attributes of one SCIM user the rules look at.
#[derive(Clone, Copy, Debug)]
pub struct UserView<'a> {
    pub user_name: Option<&'a str>,
    /// The entry of `emails` marked `primary: true` that has a value, and its index in `emails`.
    pub primary_email: Option<(usize, &'a str)>,
    /// The enterprise extension's `department` (the department's display name), else a top-level
    /// `department` (the validation webhook's payload may carry one there).
    pub department: Option<&'a str>,
    /// Every place a cost center may be given (see `UserView::cost_centers`).
    cost_centers: [Option<&'a str>; 3],
    roles: Roles<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Roles<'a> {
    Typed(&'a [ScimValue]),
    Json(&'a [Value]),
}

impl<'a> UserView<'a> {
    /// A user the service built (a new hire's create body).
    pub fn of_scim(user: &'a ScimUser) -> Self {
        let primary_email = user
            .emails
            .iter()
            .enumerate()
            .find(|(_, e)| e.primary == Some(true) && !e.value.trim().is_empty())
            .map(|(i, e)| (i, e.value.as_str()));
        UserView {
            user_name: Some(user.user_name.as_str()),
            primary_email,
            department: user.enterprise.as_ref().and_then(|e| e.department.as_deref()),
            cost_centers: [user.genesys.as_ref().and_then(external_cost_center), None, None],
            roles: Roles::Typed(&user.roles),
        }
    }

    /// A user as SCIM JSON. Attributes of another type than SCIM gives them are taken as absent
    /// (the validation webhook refuses them before it gets here).
    pub fn of_json(user: &'a Value) -> Self {
        let text = |v: Option<&'a Value>| v.and_then(Value::as_str);
        let enterprise = user.get(SCHEMA_ENTERPRISE);
        let primary_email =
            user.get("emails").and_then(Value::as_array).into_iter().flatten().enumerate().find_map(|(i, e)| {
                let value = text(e.get("value")).filter(|v| !v.trim().is_empty())?;
                (e.get("primary") == Some(&Value::Bool(true))).then_some((i, value))
            });
        UserView {
            user_name: text(user.get("userName")),
            primary_email,
            department: text(enterprise.and_then(|e| e.get("department"))).or(text(user.get("department"))),
            cost_centers: [
                text(user.get("costCenter")),
                text(enterprise.and_then(|e| e.get("costCenter"))),
                user.get(SCHEMA_GENESYS).and_then(external_cost_center),
            ],
            roles: Roles::Json(user.get("roles").and_then(Value::as_array).map_or(&[], Vec::as_slice)),
        }
    }

    /// The role names the user asks for (`roles[].value`).
    pub fn roles(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (typed, json): (&[ScimValue], &[Value]) = match self.roles {
            Roles::Typed(r) => (r, &[]),
            Roles::Json(r) => (&[], r),
        };
        typed.iter().map(|r| r.value.as_str()).chain(json.iter().filter_map(|r| r.get("value").and_then(Value::as_str)))
    }

    /// The cost centers the user carries, each different value once: a top-level `costCenter` (the
    /// seed's payload), the enterprise extension's `costCenter` (RFC 7643 has one; Genesys does
    /// not), and the Genesys extension's `externalIds` entry with authority `costCenter` (where
    /// this service writes it and Genesys keeps it). All are judged, so a good value in one place
    /// cannot hide a bad one in another.
    pub fn cost_centers(&self) -> impl Iterator<Item = &'a str> + 'a {
        let all = self.cost_centers;
        (0..all.len()).filter_map(move |i| all[i].filter(|v| !all[..i].contains(&Some(*v))))
    }
}

/// The cost center in the Genesys extension's `externalIds`, when it has one.
fn external_cost_center(extension: &Value) -> Option<&str> {
    extension.get("externalIds")?.as_array()?.iter().find_map(|entry| {
        let authority = entry.get("authority")?.as_str()?;
        authority.eq_ignore_ascii_case(COST_CENTER_AUTHORITY).then(|| entry.get("value")?.as_str()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::genesys::types::{EnterpriseUser, ScimMultiValue};

    #[test]
    fn json_users_are_read_where_scim_and_the_seed_put_each_attribute() {
        let user = json!({
            "userName": "jane@example.com",
            "emails": [{"value": "other@example.com", "type": "other"}, {"value": "jane@example.com", "primary": true}],
            "department": "Top level",
            "costCenter": "CC-1",
            SCHEMA_ENTERPRISE: {"department": "Engineering", "costCenter": "CC-1"},
            SCHEMA_GENESYS: {"externalIds": [{"authority": "jobLevel", "value": "L4"}, {"authority": "costCenter", "value": "CC-2"}]},
            "roles": [{"value": "agent"}, {"value": 7}, {"value": "admin"}]
        });
        let view = UserView::of_json(&user);
        assert_eq!(view.user_name, Some("jane@example.com"));
        assert_eq!(view.primary_email, Some((1, "jane@example.com")));
        assert_eq!(view.department, Some("Engineering"), "the enterprise extension first");
        assert_eq!(view.cost_centers().collect::<Vec<_>>(), ["CC-1", "CC-2"], "each value once");
        assert_eq!(view.roles().collect::<Vec<_>>(), ["agent", "admin"]);

        let seed = json!({"userName": "a", "department": "Sales", "emails": [{"value": " ", "primary": true}]});
        let view = UserView::of_json(&seed);
        assert_eq!(view.department, Some("Sales"));
        assert_eq!(view.primary_email, None, "a blank primary email is no primary email");
        assert_eq!(view.roles().count(), 0);
    }

    #[test]
    fn typed_users_read_the_same_attributes() {
        let user = ScimUser {
            user_name: "jane@example.com".into(),
            emails: vec![ScimMultiValue { value: "jane@example.com".into(), kind: None, primary: Some(true) }],
            enterprise: Some(EnterpriseUser { department: Some("Engineering".into()), ..Default::default() }),
            genesys: Some(json!({"externalIds": [{"authority": "costCenter", "value": "CC-9"}]})),
            roles: vec![ScimValue { value: "employee".into() }],
            ..Default::default()
        };
        let view = UserView::of_scim(&user);
        assert_eq!(view.primary_email, Some((0, "jane@example.com")));
        assert_eq!(view.department, Some("Engineering"));
        assert_eq!(view.cost_centers().collect::<Vec<_>>(), ["CC-9"]);
        assert_eq!(view.roles().collect::<Vec<_>>(), ["employee"]);
    }
}
