//! Groups: read, list by filter, and membership changes (PATCH, PUT); SCIM cannot create or delete them.

use serde_json::Value;

use super::validation::{check_if_match, enforce, parse_json, parse_patch};
use super::{Fail, Store, StoredGroup, etag, now};
use crate::wire::{ListResponse, SCHEMA_GROUP, SCHEMA_LIST, ScimGroup, ScimMember, ScimMeta};
use crate::{filter, models};

/// A stored group as `GET` shows it. It takes the stored group itself, not its id, so a caller that
/// has just written one shows exactly that one.
fn render_group(base_url: &str, id: &str, g: &StoredGroup) -> ScimGroup {
    let members = g
        .members
        .iter()
        .map(|m| ScimMember {
            value: m.clone(),
            reference: Some(format!("{base_url}/api/v2/scim/v2/users/{m}")),
            kind: Some("User".to_string()),
        })
        .collect();
    ScimGroup {
        schemas: vec![SCHEMA_GROUP.to_string()],
        id: id.to_string(),
        display_name: g.display_name.clone(),
        members,
        meta: Some(ScimMeta {
            resource_type: Some("Group".to_string()),
            created: Some(g.created.clone()),
            last_modified: Some(g.last_modified.clone()),
            location: Some(format!("{base_url}/api/v2/scim/v2/groups/{id}")),
            version: Some(etag(g.version)),
        }),
    }
}

impl Store {
    pub(crate) fn group(&self, id: &str) -> Option<ScimGroup> {
        self.groups.get(id).map(|g| render_group(&self.base_url, id, g))
    }

    pub(crate) fn get_group(&self, id: &str) -> Result<(ScimGroup, u64), Fail> {
        let group = self.groups.get(id).ok_or_else(|| Fail::not_found("Group", id))?;
        Ok((render_group(&self.base_url, id, group), group.version))
    }

    pub(crate) fn list_groups(&self, filter: Option<&str>) -> Result<ListResponse<ScimGroup>, Fail> {
        let Some(text) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
            return Err(Fail::bad(
                Some("invalidFilter"),
                "filter: required for groups (displayName eq \"...\" or id eq \"...\")",
            ));
        };
        let f = filter::parse(text).map_err(|e| Fail::bad(Some("invalidFilter"), format!("filter: {e}")))?;
        let want = f.value.text();
        let hits: Vec<ScimGroup> = match f.attr.as_str() {
            "displayname" => self
                .groups
                .iter()
                .filter(|(_, g)| g.display_name.eq_ignore_ascii_case(&want))
                .map(|(id, g)| render_group(&self.base_url, id, g))
                .collect(),
            "id" => self.group(&want).into_iter().collect(),
            other => {
                return Err(Fail::bad(Some("invalidFilter"), format!("filter: cannot filter groups on {other}")));
            }
        };
        Ok(ListResponse {
            schemas: vec![SCHEMA_LIST.to_string()],
            total_results: hits.len() as u64,
            start_index: 1,
            items_per_page: hits.len() as u64,
            resources: hits,
        })
    }

    fn known_members(&self, value: Option<&Value>) -> Result<Vec<String>, Fail> {
        let shape = || Fail::bad(Some("invalidValue"), "members: value must be a list of {\"value\": \"<userId>\"}");
        let list = match value {
            Some(Value::Array(a)) => a.clone(),
            Some(v @ Value::Object(_)) => vec![v.clone()],
            _ => return Err(shape()),
        };
        let mut ids = Vec::new();
        for entry in list {
            let id = entry.get("value").and_then(Value::as_str).ok_or_else(shape)?;
            if !self.users.contains_key(id) {
                return Err(Fail::bad(Some("invalidValue"), format!("members: no user with id {id}")));
            }
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }

    fn set_members(&mut self, id: &str, members: Vec<String>) -> Result<ScimGroup, Fail> {
        let Some(group) = self.groups.get_mut(id) else { return Err(Fail::not_found("Group", id)) };
        if group.members != members {
            group.members = members;
            group.version += 1;
            group.last_modified = now();
        }
        Ok(render_group(&self.base_url, id, group))
    }

    /// Membership changes; the body is held to the models once its operations are known to be
    /// ones a group takes, so a path other than `members` is refused as one.
    pub(crate) fn patch_group(
        &mut self,
        id: &str,
        body: &[u8],
        if_match: Option<&str>,
        strict_attributes: bool,
    ) -> Result<ScimGroup, Fail> {
        let group = self.groups.get(id).ok_or_else(|| Fail::not_found("Group", id))?;
        let (patch, raw) = parse_patch(body)?;
        check_if_match(if_match, group.version)?;
        let mut members = group.members.clone();
        for op in &patch.operations {
            let kind = op.op.to_ascii_lowercase();
            let path = op.path.as_deref().map(str::trim).unwrap_or_default();
            // A path-less operation may carry `{"members": [...]}`.
            let (path, value) = if path.is_empty() {
                match &op.value {
                    Some(Value::Object(m)) if m.len() == 1 && m.keys().all(|k| k.eq_ignore_ascii_case("members")) => {
                        ("members", m.values().next())
                    }
                    _ => return Err(Fail::bad(Some("invalidPath"), "path: only members can be changed here")),
                }
            } else {
                (path, op.value.as_ref())
            };
            if path.eq_ignore_ascii_case("members") {
                match kind.as_str() {
                    "add" => {
                        for m in self.known_members(value)? {
                            if !members.contains(&m) {
                                members.push(m);
                            }
                        }
                    }
                    "replace" => members = self.known_members(value)?,
                    "remove" => match value {
                        None | Some(Value::Null) => members.clear(),
                        Some(v) => {
                            let gone: Vec<&str> = match v {
                                Value::Array(a) => a.iter().filter_map(|e| e.get("value")?.as_str()).collect(),
                                other => other.get("value").and_then(Value::as_str).into_iter().collect(),
                            };
                            members.retain(|m| !gone.contains(&m.as_str()));
                        }
                    },
                    other => {
                        return Err(Fail::bad(
                            Some("invalidSyntax"),
                            format!("op: {other:?} is not add, replace or remove"),
                        ));
                    }
                }
            } else if path.len() > "members[".len() && path[.."members[".len()].eq_ignore_ascii_case("members[") {
                let inner = path["members[".len()..]
                    .strip_suffix(']')
                    .ok_or_else(|| Fail::bad(Some("invalidPath"), format!("path: cannot read {path:?}")))?;
                let f = filter::parse(inner).map_err(|e| Fail::bad(Some("invalidFilter"), format!("members: {e}")))?;
                if f.attr != "value" {
                    return Err(Fail::bad(
                        Some("invalidFilter"),
                        "members: filter on value, e.g. members[value eq \"id\"]",
                    ));
                }
                if kind != "remove" {
                    return Err(Fail::bad(Some("invalidPath"), "members[...]: only remove takes a member filter"));
                }
                let gone = f.value.text();
                members.retain(|m| *m != gone);
            } else {
                return Err(Fail::bad(
                    Some("invalidPath"),
                    format!("path: {path:?} (only members can be changed here)"),
                ));
            }
        }
        enforce(&models::validate_patch(models::GROUP, &raw), "group", strict_attributes)?;
        self.set_members(id, members)
    }

    /// `displayName` and `members` are taken from the body; whatever else it has must still be
    /// attributes of the group model.
    pub(crate) fn replace_group(
        &mut self,
        id: &str,
        body: &[u8],
        if_match: Option<&str>,
        strict_attributes: bool,
    ) -> Result<ScimGroup, Fail> {
        let group = self.groups.get(id).ok_or_else(|| Fail::not_found("Group", id))?;
        let value = parse_json(body)?;
        enforce(&models::validate(models::GROUP, &value), "group", strict_attributes)?;
        check_if_match(if_match, group.version)?;
        let members = match value.get("members") {
            None | Some(Value::Null) => Vec::new(),
            some => self.known_members(some)?,
        };
        let Some(group) = self.groups.get_mut(id) else { return Err(Fail::not_found("Group", id)) };
        let name = value.get("displayName").and_then(Value::as_str).filter(|n| !n.trim().is_empty());
        let renamed = name.is_some_and(|n| n != group.display_name);
        if renamed || group.members != members {
            if let Some(n) = name {
                group.display_name = n.to_string();
            }
            group.members = members;
            group.version += 1;
            group.last_modified = now();
        }
        Ok(render_group(&self.base_url, id, group))
    }

    pub(crate) fn bump_group_version(&mut self, id: &str) {
        if let Some(group) = self.groups.get_mut(id) {
            group.version += 1;
            group.last_modified = now();
        }
    }
}
