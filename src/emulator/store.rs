//! The emulator's state: users, groups, issued tokens and the PATCH bodies received. Plain data and
//! rules, no HTTP: the server locks it, calls one method, unlocks, then answers.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use super::SeedGroup;
use super::filter::{self, FilterValue};
use super::patch;
use crate::genesys::models;
use crate::genesys::types::{
    ListResponse, PatchOp, SCHEMA_ENTERPRISE, SCHEMA_ERROR, SCHEMA_GENESYS, SCHEMA_GROUP, SCHEMA_LIST, SCHEMA_PATCH_OP,
    SCHEMA_USER, ScimError, ScimGroup, ScimGroupRef, ScimMember, ScimMeta, ScimMultiValue, ScimUser,
};

/// A refused request: the SCIM error it answers with.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Fail {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl Fail {
    pub(super) fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Fail { status, scim_type, detail: detail.into() }
    }

    /// A 400.
    pub(super) fn bad(scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self::new(400, scim_type, detail)
    }

    fn not_found(what: &str, id: &str) -> Self {
        Self::new(404, None, format!("{what} {id} not found"))
    }

    pub(super) fn body(&self) -> ScimError {
        ScimError {
            schemas: vec![SCHEMA_ERROR.to_string()],
            status: self.status.to_string(),
            scim_type: self.scim_type.map(str::to_string),
            detail: Some(self.detail.clone()),
        }
    }
}

/// `"3"`, quotes included: both the `ETag` header and `meta.version`.
pub(super) fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Whether an `If-Match` / `If-None-Match` header names `version` (`*` names any).
pub(super) fn etag_matches(header: &str, version: u64) -> bool {
    header.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag.trim_matches('"') == version.to_string()
    })
}

fn check_if_match(if_match: Option<&str>, version: u64) -> Result<(), Fail> {
    match if_match {
        Some(h) if !etag_matches(h, version) => Err(Fail::bad(
            Some("invalidVers"),
            format!("If-Match {h} does not match the current version {}", etag(version)),
        )),
        _ => Ok(()),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn is_other(e: &ScimMultiValue) -> bool {
    e.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("other"))
}

fn is_work(e: &ScimMultiValue) -> bool {
    e.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("work"))
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

struct StoredUser {
    /// Normalized: no id, meta or groups (filled in when shown), `other` email equal to userName.
    user: ScimUser,
    version: u64,
    created: String,
    last_modified: String,
}

struct StoredGroup {
    display_name: String,
    /// User ids, in the order they were added.
    members: Vec<String>,
    version: u64,
    created: String,
    last_modified: String,
}

pub(super) struct Store {
    base_url: String,
    users: HashMap<String, StoredUser>,
    /// User ids in creation order, for stable listing.
    order: Vec<String>,
    /// Lower-cased userName -> id.
    by_name: HashMap<String, String>,
    groups: BTreeMap<String, StoredGroup>,
    patches: HashMap<String, Vec<PatchOp>>,
    /// Every user create body received, as sent (refused ones included).
    created: Vec<Value>,
    tokens: HashMap<String, Instant>,
    /// Every token ever issued, so tests can check none of them leaked into a log.
    issued: Vec<String>,
}

impl Store {
    pub(super) fn new(base_url: String, seeds: &[SeedGroup]) -> Self {
        let stamp = now();
        let groups = seeds
            .iter()
            .map(|g| {
                let group = StoredGroup {
                    display_name: g.display_name.clone(),
                    members: Vec::new(),
                    version: 1,
                    created: stamp.clone(),
                    last_modified: stamp.clone(),
                };
                (g.id.clone(), group)
            })
            .collect();
        Store {
            base_url,
            users: HashMap::new(),
            order: Vec::new(),
            by_name: HashMap::new(),
            groups,
            patches: HashMap::new(),
            created: Vec::new(),
            tokens: HashMap::new(),
            issued: Vec::new(),
        }
    }

    // ---- tokens ----

    /// Issues a random opaque token valid for `ttl`, forgetting expired ones.
    pub(super) fn issue_token(&mut self, ttl: Duration) -> String {
        let now = Instant::now();
        self.tokens.retain(|_, expiry| *expiry > now);
        let bytes: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.tokens.insert(token.clone(), now + ttl);
        self.issued.push(token.clone());
        token
    }

    pub(super) fn issued_tokens(&self) -> Vec<String> {
        self.issued.clone()
    }

    /// Makes every issued token invalid (as a revoked OAuth client or a rotated key would).
    pub(super) fn revoke_tokens(&mut self) {
        self.tokens.clear();
    }

    pub(super) fn token_valid(&self, token: &str) -> bool {
        self.tokens.get(token).is_some_and(|expiry| *expiry > Instant::now())
    }

    // ---- users ----

    fn render_user(&self, id: &str) -> Option<ScimUser> {
        let stored = self.users.get(id)?;
        let mut user = stored.user.clone();
        user.id = Some(id.to_string());
        user.groups = self
            .groups
            .iter()
            .filter(|(_, g)| g.members.iter().any(|m| m == id))
            .map(|(gid, _)| ScimGroupRef {
                value: gid.clone(),
                reference: Some(format!("{}/api/v2/scim/v2/groups/{gid}", self.base_url)),
                kind: Some("Group".to_string()),
            })
            .collect();
        user.meta = Some(ScimMeta {
            resource_type: Some("User".to_string()),
            created: Some(stored.created.clone()),
            last_modified: Some(stored.last_modified.clone()),
            location: Some(format!("{}/api/v2/scim/v2/users/{id}", self.base_url)),
            version: Some(etag(stored.version)),
        });
        Some(user)
    }

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

    /// A user body of `model` (`ScimV2CreateUser` for a create, `ScimV2User` for a replace). An
    /// attribute outside the model is refused naming it (`strict_attributes`), else dropped: either
    /// way it is never stored.
    fn parse_user_body(body: &[u8], model: &str, strict_attributes: bool) -> Result<ScimUser, Fail> {
        let mut value: Value = serde_json::from_slice(body)
            .map_err(|e| Fail::bad(Some("invalidSyntax"), format!("the body is not JSON: {e}")))?;
        let Value::Object(map) = &value else {
            return Err(Fail::bad(Some("invalidSyntax"), "the body must be a JSON object"));
        };
        if map.keys().any(|k| k.eq_ignore_ascii_case("groups")) {
            return Err(Fail::bad(Some("mutability"), "groups: attribute is read-only"));
        }
        let unknown = models::unknown_attributes(model, &mut value, !strict_attributes);
        if let Some(first) = unknown.first().filter(|_| strict_attributes) {
            return Err(patch::not_kept(first));
        }
        serde_json::from_value(value).map_err(|e| Fail::bad(Some("invalidValue"), format!("body: {e}")))
    }

    /// The create/replace/modify rules. `before` is the stored user for a change (emails it already had
    /// are not held to the strict rule again), `self_id` its id (not a duplicate of itself).
    fn validate(
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

    fn store_new(&mut self, id: String, user: ScimUser) -> ScimUser {
        let user = Self::normalize(user);
        let stamp = now();
        self.by_name.insert(user.user_name.to_lowercase(), id.clone());
        self.users.insert(id.clone(), StoredUser { user, version: 1, created: stamp.clone(), last_modified: stamp });
        self.order.push(id.clone());
        self.render_user(&id).expect("just stored")
    }

    /// Replaces a stored user's attributes and bumps its version.
    fn write_user(&mut self, id: &str, user: ScimUser) -> ScimUser {
        let user = Self::normalize(user);
        let stored = self.users.get_mut(id).expect("caller checked");
        let old_key = stored.user.user_name.to_lowercase();
        stored.user = user;
        stored.version += 1;
        stored.last_modified = now();
        let new_key = stored.user.user_name.to_lowercase();
        if self.by_name.get(&old_key).is_some_and(|owner| owner == id) {
            self.by_name.remove(&old_key);
        }
        self.by_name.insert(new_key, id.to_string());
        self.render_user(id).expect("just stored")
    }

    pub(super) fn create_user(&mut self, body: &[u8], strict: bool, strict_attributes: bool) -> Result<ScimUser, Fail> {
        self.created.push(serde_json::from_slice(body).unwrap_or(Value::Null));
        let user = Self::parse_user_body(body, models::CREATE_USER, strict_attributes)?;
        self.validate(&user, None, None, strict)?;
        Ok(self.store_new(uuid::Uuid::new_v4().to_string(), user))
    }

    /// The user and its current version.
    pub(super) fn get_user(&self, id: &str) -> Result<(ScimUser, u64), Fail> {
        let version = self.users.get(id).ok_or_else(|| Fail::not_found("User", id))?.version;
        Ok((self.render_user(id).expect("present"), version))
    }

    pub(super) fn replace_user(
        &mut self,
        id: &str,
        body: &[u8],
        if_match: Option<&str>,
        strict: bool,
        strict_attributes: bool,
    ) -> Result<ScimUser, Fail> {
        let stored = self.users.get(id).ok_or_else(|| Fail::not_found("User", id))?;
        let mut user = Self::parse_user_body(body, models::USER, strict_attributes)?;
        check_if_match(if_match, stored.version)?;
        if user.active.is_none() {
            user.active = stored.user.active;
        }
        self.validate(&user, Some(&stored.user), Some(id), strict)?;
        Ok(self.write_user(id, user))
    }

    pub(super) fn patch_user(
        &mut self,
        id: &str,
        body: &[u8],
        if_match: Option<&str>,
        strict: bool,
        strict_attributes: bool,
        keep_title: bool,
    ) -> Result<ScimUser, Fail> {
        if !self.users.contains_key(id) {
            return Err(Fail::not_found("User", id));
        }
        let patch = parse_patch(body)?;
        self.patches.entry(id.to_string()).or_default().push(patch.clone());
        let stored = &self.users[id];
        check_if_match(if_match, stored.version)?;
        let before = stored.user.clone();
        let Value::Object(mut doc) = serde_json::to_value(&before).expect("a user serializes") else {
            unreachable!("a user serializes to an object")
        };
        for op in &patch.operations {
            patch::apply(&mut doc, op, strict_attributes)?;
        }
        // Values may carry sub-attributes Genesys does not keep (an `emails` entry with `display`).
        let mut doc = Value::Object(doc);
        let unknown = models::unknown_attributes(models::USER, &mut doc, !strict_attributes);
        if let Some(first) = unknown.first().filter(|_| strict_attributes) {
            return Err(patch::not_kept(first));
        }
        let mut after: ScimUser = serde_json::from_value(doc)
            .map_err(|e| Fail::bad(Some("invalidValue"), format!("the patched user is not valid: {e}")))?;
        self.validate(&after, Some(&before), Some(id), strict)?;
        if keep_title {
            // A fault: the write "succeeds" but the title stays as it was (a discrepancy to report).
            after.title = before.title.clone();
        }
        Ok(self.write_user(id, after))
    }

    pub(super) fn delete_user(&mut self, id: &str, if_match: Option<&str>) -> Result<(), Fail> {
        let stored = self.users.get(id).ok_or_else(|| Fail::not_found("User", id))?;
        check_if_match(if_match, stored.version)?;
        let stored = self.users.remove(id).expect("present");
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

    pub(super) fn list_users(
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
        let hits: Vec<&String> = self.order.iter().filter(|id| pred(id, &self.users[id.as_str()].user)).collect();
        let start = start_index.max(1);
        let page: Vec<ScimUser> =
            hits.iter().skip((start - 1) as usize).take(count as usize).filter_map(|id| self.render_user(id)).collect();
        Ok(ListResponse {
            schemas: vec![SCHEMA_LIST.to_string()],
            total_results: hits.len() as u64,
            start_index: start,
            items_per_page: page.len() as u64,
            resources: page,
        })
    }

    /// Seeds a user as it is, without validation; keeps its id when it has one.
    pub(super) fn insert_user(&mut self, mut user: ScimUser) -> ScimUser {
        let id = user.id.take().filter(|id| !id.is_empty()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if self.users.contains_key(&id) { self.write_user(&id, user) } else { self.store_new(id, user) }
    }

    pub(super) fn users(&self) -> Vec<ScimUser> {
        self.order.iter().filter_map(|id| self.render_user(id)).collect()
    }

    pub(super) fn created_bodies(&self) -> Vec<Value> {
        self.created.clone()
    }

    pub(super) fn patches(&self, user_id: &str) -> Vec<PatchOp> {
        self.patches.get(user_id).cloned().unwrap_or_default()
    }

    // ---- groups ----

    fn render_group(&self, id: &str) -> Option<ScimGroup> {
        let g = self.groups.get(id)?;
        let members = g
            .members
            .iter()
            .map(|m| ScimMember {
                value: m.clone(),
                reference: Some(format!("{}/api/v2/scim/v2/users/{m}", self.base_url)),
                kind: Some("User".to_string()),
            })
            .collect();
        Some(ScimGroup {
            schemas: vec![SCHEMA_GROUP.to_string()],
            id: id.to_string(),
            display_name: g.display_name.clone(),
            members,
            meta: Some(ScimMeta {
                resource_type: Some("Group".to_string()),
                created: Some(g.created.clone()),
                last_modified: Some(g.last_modified.clone()),
                location: Some(format!("{}/api/v2/scim/v2/groups/{id}", self.base_url)),
                version: Some(etag(g.version)),
            }),
        })
    }

    pub(super) fn group(&self, id: &str) -> Option<ScimGroup> {
        self.render_group(id)
    }

    pub(super) fn get_group(&self, id: &str) -> Result<(ScimGroup, u64), Fail> {
        let version = self.groups.get(id).ok_or_else(|| Fail::not_found("Group", id))?.version;
        Ok((self.render_group(id).expect("present"), version))
    }

    pub(super) fn list_groups(&self, filter: Option<&str>) -> Result<ListResponse<ScimGroup>, Fail> {
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
                .filter_map(|(id, _)| self.render_group(id))
                .collect(),
            "id" => self.render_group(&want).into_iter().collect(),
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

    fn set_members(&mut self, id: &str, members: Vec<String>) -> ScimGroup {
        let group = self.groups.get_mut(id).expect("caller checked");
        if group.members != members {
            group.members = members;
            group.version += 1;
            group.last_modified = now();
        }
        self.render_group(id).expect("present")
    }

    pub(super) fn patch_group(&mut self, id: &str, body: &[u8], if_match: Option<&str>) -> Result<ScimGroup, Fail> {
        let group = self.groups.get(id).ok_or_else(|| Fail::not_found("Group", id))?;
        let patch = parse_patch(body)?;
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
        Ok(self.set_members(id, members))
    }

    pub(super) fn replace_group(&mut self, id: &str, body: &[u8], if_match: Option<&str>) -> Result<ScimGroup, Fail> {
        let group = self.groups.get(id).ok_or_else(|| Fail::not_found("Group", id))?;
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Fail::bad(Some("invalidSyntax"), format!("the body is not JSON: {e}")))?;
        check_if_match(if_match, group.version)?;
        let members = match value.get("members") {
            None | Some(Value::Null) => Vec::new(),
            some => self.known_members(some)?,
        };
        let group = self.groups.get_mut(id).expect("present");
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
        Ok(self.render_group(id).expect("present"))
    }

    pub(super) fn bump_user_version(&mut self, id: &str) {
        if let Some(user) = self.users.get_mut(id) {
            user.version += 1;
        }
    }

    pub(super) fn bump_group_version(&mut self, id: &str) {
        if let Some(group) = self.groups.get_mut(id) {
            group.version += 1;
            group.last_modified = now();
        }
    }
}

fn parse_patch(body: &[u8]) -> Result<PatchOp, Fail> {
    let patch: PatchOp = serde_json::from_slice(body)
        .map_err(|e| Fail::bad(Some("invalidSyntax"), format!("the body is not a PatchOp: {e}")))?;
    if !patch.schemas.iter().any(|s| s == SCHEMA_PATCH_OP) {
        return Err(Fail::bad(Some("invalidSyntax"), format!("schemas: must list {SCHEMA_PATCH_OP}")));
    }
    if patch.operations.is_empty() {
        return Err(Fail::bad(Some("invalidSyntax"), "Operations: at least one operation is needed"));
    }
    Ok(patch)
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

    #[test]
    fn etags_compare_with_or_without_quotes() {
        assert!(etag_matches("\"3\"", 3));
        assert!(etag_matches("W/\"3\"", 3));
        assert!(etag_matches("*", 9));
        assert!(etag_matches("\"1\", \"3\"", 3));
        assert!(!etag_matches("\"2\"", 3));
    }
}
