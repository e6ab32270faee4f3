//! Users: create, read, replace, patch, delete and list, with the Genesys rules of genesys-api.md.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::validation::{self, check_if_match};
use super::{Fail, Store, StoredGroup, StoredUser, etag, now};
use crate::filter::{self, FilterValue};
use crate::models;
use crate::patch;
use crate::wire::{
    ListResponse, PatchOp, SCHEMA_ENTERPRISE, SCHEMA_GENESYS, SCHEMA_LIST, SCHEMA_USER, ScimGroupRef, ScimMeta,
    ScimMultiValue, ScimUser,
};

pub(super) fn is_other(e: &ScimMultiValue) -> bool {
    e.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("other"))
}

pub(super) fn is_work(e: &ScimMultiValue) -> bool {
    e.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("work"))
}

/// A stored user as `GET` shows it: its id, the groups it is a member of, and meta. It takes the
/// stored user itself, not its id, so a caller that has just written one shows exactly that one.
fn render_user(base_url: &str, groups: &BTreeMap<String, StoredGroup>, id: &str, stored: &StoredUser) -> ScimUser {
    let mut user = stored.user.clone();
    user.id = Some(id.to_string());
    user.groups = groups
        .iter()
        .filter(|(_, g)| g.members.iter().any(|m| m == id))
        .map(|(gid, _)| ScimGroupRef {
            value: gid.clone(),
            reference: Some(format!("{base_url}/api/v2/scim/v2/groups/{gid}")),
            kind: Some("Group".to_string()),
        })
        .collect();
    user.meta = Some(ScimMeta {
        resource_type: Some("User".to_string()),
        created: Some(stored.created.clone()),
        last_modified: Some(stored.last_modified.clone()),
        location: Some(format!("{base_url}/api/v2/scim/v2/users/{id}")),
        version: Some(etag(stored.version)),
    });
    user
}

/// Replaces a stored user's attributes (already normalized), bumps its version and moves its
/// userName key.
fn overwrite(by_name: &mut HashMap<String, String>, id: &str, stored: &mut StoredUser, user: ScimUser) {
    let old_key = stored.user.user_name.to_lowercase();
    stored.user = user;
    stored.version += 1;
    stored.last_modified = now();
    let new_key = stored.user.user_name.to_lowercase();
    if by_name.get(&old_key).is_some_and(|owner| owner == id) {
        by_name.remove(&old_key);
    }
    by_name.insert(new_key, id.to_string());
}

impl Store {
    /// The stored form: read-only parts dropped, the `other` email set to userName, schemas listed.
    fn normalize(mut user: ScimUser) -> ScimUser {
        user.id = None;
        user.meta = None;
        user.groups.clear();
        user.emails.retain(|e| !is_other(e));
        if !user.user_name.is_empty() {
            user.emails.push(ScimMultiValue {
                value: user.user_name.clone(),
                kind: Some("other".to_string()),
                primary: None,
            });
        }
        if user.active.is_none() {
            user.active = Some(true);
        }
        if user.enterprise.as_ref().is_some_and(|e| *e == Default::default()) {
            user.enterprise = None;
        }
        user.schemas = vec![SCHEMA_USER.to_string()];
        if user.enterprise.is_some() {
            user.schemas.push(SCHEMA_ENTERPRISE.to_string());
        }
        if user.genesys.is_some() {
            user.schemas.push(SCHEMA_GENESYS.to_string());
        }
        user
    }

    fn store_new(&mut self, id: String, user: ScimUser) -> ScimUser {
        let user = Self::normalize(user);
        let stamp = now();
        let stored = StoredUser { user, version: 1, created: stamp.clone(), last_modified: stamp };
        let shown = render_user(&self.base_url, &self.groups, &id, &stored);
        self.by_name.insert(stored.user.user_name.to_lowercase(), id.clone());
        self.users.insert(id.clone(), stored);
        self.order.push(id);
        shown
    }

    /// Changes a user as an admin would inside Genesys (no validation): the version moves on.
    pub(crate) fn edit_user(&mut self, id: &str, edit: impl FnOnce(&mut ScimUser)) -> Option<ScimUser> {
        let mut user = self.users.get(id)?.user.clone();
        edit(&mut user);
        self.write_user(id, user).ok()
    }

    /// Replaces a stored user's attributes and bumps its version.
    fn write_user(&mut self, id: &str, user: ScimUser) -> Result<ScimUser, Fail> {
        let Some(stored) = self.users.get_mut(id) else { return Err(Fail::not_found("User", id)) };
        overwrite(&mut self.by_name, id, stored, Self::normalize(user));
        Ok(render_user(&self.base_url, &self.groups, id, stored))
    }

    pub(crate) fn create_user(&mut self, body: &[u8], strict: bool, strict_attributes: bool) -> Result<ScimUser, Fail> {
        self.created.push(serde_json::from_slice(body).unwrap_or(Value::Null));
        let user = validation::parse_user_body(body, models::CREATE_USER, strict_attributes)?;
        self.check_user(&user, None, None, strict)?;
        Ok(self.store_new(uuid::Uuid::new_v4().to_string(), user))
    }

    /// The user and its current version.
    pub(crate) fn get_user(&self, id: &str) -> Result<(ScimUser, u64), Fail> {
        let stored = self.users.get(id).ok_or_else(|| Fail::not_found("User", id))?;
        Ok((render_user(&self.base_url, &self.groups, id, stored), stored.version))
    }

    pub(crate) fn replace_user(
        &mut self,
        id: &str,
        body: &[u8],
        if_match: Option<&str>,
        strict: bool,
        strict_attributes: bool,
    ) -> Result<ScimUser, Fail> {
        let stored = self.users.get(id).ok_or_else(|| Fail::not_found("User", id))?;
        let mut user = validation::parse_user_body(body, models::USER, strict_attributes)?;
        check_if_match(if_match, stored.version)?;
        if user.active.is_none() {
            user.active = stored.user.active;
        }
        self.check_user(&user, Some(&stored.user), Some(id), strict)?;
        self.write_user(id, user)
    }

    pub(crate) fn patch_user(
        &mut self,
        id: &str,
        body: &[u8],
        if_match: Option<&str>,
        strict: bool,
        strict_attributes: bool,
        keep_title: bool,
    ) -> Result<ScimUser, Fail> {
        let Some(stored) = self.users.get(id) else { return Err(Fail::not_found("User", id)) };
        let (patch, raw) = validation::parse_patch(body)?;
        self.patches.entry(id.to_string()).or_default().push(patch.clone());
        check_if_match(if_match, stored.version)?;
        let before = stored.user.clone();
        let doc = serde_json::to_value(&before)
            .map_err(|e| Fail::new(500, None, format!("the stored user does not serialize: {e}")))?;
        let Value::Object(mut doc) = doc else {
            return Err(Fail::new(500, None, "the stored user does not serialize to a JSON object"));
        };
        for op in &patch.operations {
            patch::apply(&mut doc, op, strict_attributes)?;
        }
        // Values may carry sub-attributes Genesys does not keep (an `emails` entry with `display`).
        // Only those: the stored part of the user is not held to the models again.
        let mut doc = Value::Object(doc);
        let mut unknown = models::validate(models::USER, &doc);
        unknown.retain(models::Violation::is_unknown_attribute);
        validation::enforce(&unknown, "user", strict_attributes)?;
        models::strip_unknown(models::USER, &mut doc);
        // What applying does not see: the message's own attributes, values outside an enum.
        validation::enforce(&models::validate_patch(models::USER, &raw), "user", strict_attributes)?;
        let mut after: ScimUser = serde_json::from_value(doc)
            .map_err(|e| Fail::bad(Some("invalidValue"), format!("the patched user is not valid: {e}")))?;
        self.check_user(&after, Some(&before), Some(id), strict)?;
        if keep_title {
            // A fault: the write "succeeds" but the title stays as it was (a discrepancy to report).
            after.title = before.title.clone();
        }
        self.write_user(id, after)
    }

    pub(crate) fn delete_user(&mut self, id: &str, if_match: Option<&str>) -> Result<(), Fail> {
        let Entry::Occupied(entry) = self.users.entry(id.to_string()) else { return Err(Fail::not_found("User", id)) };
        check_if_match(if_match, entry.get().version)?;
        let stored = entry.remove();
        let key = stored.user.user_name.to_lowercase();
        if self.by_name.get(&key).is_some_and(|owner| owner == id) {
            self.by_name.remove(&key);
        }
        self.order.retain(|u| u != id);
        let stamp = now();
        for group in self.groups.values_mut() {
            if group.members.iter().any(|m| m == id) {
                group.members.retain(|m| m != id);
                group.version += 1;
                group.last_modified = stamp.clone();
            }
        }
        Ok(())
    }

    pub(crate) fn list_users(
        &self,
        filter: Option<&str>,
        start_index: u64,
        count: u64,
    ) -> Result<ListResponse<ScimUser>, Fail> {
        type Pred<'a> = Box<dyn Fn(&str, &ScimUser) -> bool + 'a>;
        let pred: Pred = match filter.map(str::trim).filter(|f| !f.is_empty()) {
            None => Box::new(|_, u| u.active != Some(false)),
            Some(text) => {
                let f = filter::parse(text).map_err(|e| Fail::bad(Some("invalidFilter"), format!("filter: {e}")))?;
                let quoted = |v: &FilterValue| match v {
                    FilterValue::Str(s) => Ok(s.clone()),
                    _ => Err(Fail::bad(Some("invalidFilter"), format!("filter: {} needs a quoted value", f.attr))),
                };
                match f.attr.as_str() {
                    "username" => {
                        let s = quoted(&f.value)?;
                        Box::new(move |_, u| u.user_name.eq_ignore_ascii_case(&s))
                    }
                    "email" | "emails" | "emails.value" => {
                        let s = quoted(&f.value)?;
                        Box::new(move |_, u| u.emails.iter().any(|e| e.value.eq_ignore_ascii_case(&s)))
                    }
                    "externalid" => {
                        let s = quoted(&f.value)?;
                        Box::new(move |_, u| u.external_id.as_deref() == Some(s.as_str()))
                    }
                    "id" => {
                        let s = quoted(&f.value)?;
                        Box::new(move |id, _| id == s)
                    }
                    "manager" | "manager.value" => {
                        let s = quoted(&f.value)?;
                        Box::new(move |_, u| {
                            u.enterprise.as_ref().and_then(|e| e.manager.as_ref()).is_some_and(|m| m.value == s)
                        })
                    }
                    "division" => {
                        let s = quoted(&f.value)?;
                        Box::new(move |_, u| {
                            u.enterprise
                                .as_ref()
                                .and_then(|e| e.division.as_deref())
                                .is_some_and(|d| d.eq_ignore_ascii_case(&s))
                        })
                    }
                    "employeenumber" => {
                        let s = quoted(&f.value)?;
                        Box::new(move |_, u| {
                            u.enterprise.as_ref().and_then(|e| e.employee_number.as_deref()) == Some(s.as_str())
                        })
                    }
                    "active" => match f.value {
                        FilterValue::Bool(b) => Box::new(move |_, u| u.active.unwrap_or(true) == b),
                        _ => return Err(Fail::bad(Some("invalidFilter"), "filter: active needs true or false")),
                    },
                    other => {
                        return Err(Fail::bad(
                            Some("invalidFilter"),
                            format!("filter: cannot filter users on {other}"),
                        ));
                    }
                }
            }
        };
        let hits: Vec<(&String, &StoredUser)> = self.in_order().filter(|(id, stored)| pred(id, &stored.user)).collect();
        let start = start_index.max(1);
        let page: Vec<ScimUser> = hits
            .iter()
            .skip((start - 1) as usize)
            .take(count as usize)
            .map(|(id, stored)| render_user(&self.base_url, &self.groups, id, stored))
            .collect();
        Ok(ListResponse {
            schemas: vec![SCHEMA_LIST.to_string()],
            total_results: hits.len() as u64,
            start_index: start,
            items_per_page: page.len() as u64,
            resources: page,
        })
    }

    /// Seeds a user as it is, without validation; keeps its id when it has one.
    pub(crate) fn insert_user(&mut self, mut user: ScimUser) -> ScimUser {
        let id = user.id.take().filter(|id| !id.is_empty()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        match self.users.get_mut(&id) {
            Some(stored) => {
                overwrite(&mut self.by_name, &id, stored, Self::normalize(user));
                render_user(&self.base_url, &self.groups, &id, stored)
            }
            None => self.store_new(id, user),
        }
    }

    /// The stored users with their ids, in creation order.
    fn in_order(&self) -> impl Iterator<Item = (&String, &StoredUser)> {
        self.order.iter().filter_map(|id| self.users.get_key_value(id))
    }

    pub(crate) fn users(&self) -> Vec<ScimUser> {
        self.in_order().map(|(id, stored)| render_user(&self.base_url, &self.groups, id, stored)).collect()
    }

    pub(crate) fn created_bodies(&self) -> Vec<Value> {
        self.created.clone()
    }

    pub(crate) fn patches(&self, user_id: &str) -> Vec<PatchOp> {
        self.patches.get(user_id).cloned().unwrap_or_default()
    }

    pub(crate) fn bump_user_version(&mut self, id: &str) {
        if let Some(user) = self.users.get_mut(id) {
            user.version += 1;
        }
    }
}
