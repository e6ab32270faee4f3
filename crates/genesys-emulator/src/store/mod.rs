//! The emulator's state: users, groups, issued tokens and the bodies received. Plain data and
//! rules, no HTTP: the server locks it, calls one method, unlocks, then answers. One module per part:
//! `users`, `groups`, `tokens`, and `validation` (what a body must be before any of them takes it).

mod groups;
mod tokens;
mod users;
mod validation;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::SeedGroup;
use crate::wire::{PatchOp, SCHEMA_ERROR, ScimError, ScimUser};
use tokens::Tokens;
pub(crate) use validation::not_kept;

/// A refused request: the SCIM error it answers with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fail {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl Fail {
    pub(crate) fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Fail { status, scim_type, detail: detail.into() }
    }

    /// A 400.
    pub(crate) fn bad(scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self::new(400, scim_type, detail)
    }

    fn not_found(what: &str, id: &str) -> Self {
        Self::new(404, None, format!("{what} {id} not found"))
    }

    pub(crate) fn body(&self) -> ScimError {
        ScimError {
            schemas: vec![SCHEMA_ERROR.to_string()],
            status: self.status.to_string(),
            scim_type: self.scim_type.map(str::to_string),
            detail: Some(self.detail.clone()),
        }
    }
}

/// `"3"`, quotes included: both the `ETag` header and `meta.version`.
pub(crate) fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Whether an `If-Match` / `If-None-Match` header names `version` (`*` names any).
pub(crate) fn etag_matches(header: &str, version: u64) -> bool {
    header.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag.trim_matches('"') == version.to_string()
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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

pub(crate) struct Store {
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
    pub(crate) tokens: Tokens,
}

impl Store {
    pub(crate) fn new(base_url: String, seeds: &[SeedGroup]) -> Self {
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
            tokens: Tokens::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_with_or_without_quotes() {
        assert!(etag_matches("\"3\"", 3));
        assert!(etag_matches("W/\"3\"", 3));
        assert!(etag_matches("*", 9));
        assert!(etag_matches("\"1\", \"3\"", 3));
        assert!(!etag_matches("\"2\"", 3));
    }
}
