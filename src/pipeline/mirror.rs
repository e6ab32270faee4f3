//! The mirror of the Genesys users the service manages: what Genesys last confirmed (id, version,
//! attributes, groups), so an update is one PATCH guarded by the mirrored version, and a stale
//! version shows that someone changed the user inside Genesys (drift).
//!
//! The mirror is an optimisation with a safety net, never a source of truth: a read that fails is a
//! miss (the user is looked up in Genesys, as before), and a write that fails forgets the entry, so a
//! version the service did not record is never taken for someone else's edit.

use serde::Serialize;
use serde_json::Value;

use crate::genesys::GenesysClient;
use crate::genesys::scim::Versioned;
use crate::genesys::types::ScimUser;
use crate::queue::{JobStore, MirroredUser};

use super::directory::{diff, value_at};

/// The pipeline's handle on the mirror table.
#[derive(Clone, Debug)]
pub struct Mirror {
    store: JobStore,
}

/// A managed attribute that someone changed inside Genesys since the service last wrote it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Drift {
    pub field: String,
    /// What the mirror held: what Genesys confirmed to the service last time.
    pub mirrored: Value,
    /// What Genesys holds now.
    pub genesys: Value,
}

/// The user as the pipeline last knew it: from the mirror, or as just read from Genesys.
#[derive(Clone, Debug)]
pub struct Known {
    pub entry: MirroredUser,
    /// Whether it came from the mirror without a read (a stale version then means drift).
    pub from_mirror: bool,
}

impl Mirror {
    pub fn new(store: JobStore) -> Self {
        Mirror { store }
    }

    fn now(&self) -> i64 {
        self.store.clock().now_ms()
    }

    /// The mirrored user for an HR person (by externalId, else userName); None on a miss or error.
    pub async fn find(&self, external_id: &str, user_name: &str) -> Option<MirroredUser> {
        self.store.mirror_find(external_id, user_name).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the user mirror failed; looking the user up in Genesys");
            None
        })
    }

    /// The SCIM id of the mirrored user whose userName or work email is `address`.
    pub async fn find_login(&self, address: &str) -> Option<String> {
        match self.store.mirror_find_login(address).await {
            Ok(found) => found.map(|u| u.scim_id),
            Err(e) => {
                tracing::warn!(error = %e, "reading the user mirror failed; looking the manager up in Genesys");
                None
            }
        }
    }

    /// The entry for a user as Genesys answered it (create, read, list or PATCH answer).
    pub fn entry(&self, user: &ScimUser, etag: Option<&str>) -> Option<MirroredUser> {
        entry(user, etag, self.now())
    }

    /// Records an entry; on failure forgets the user instead (see the module's doc).
    pub async fn put(&self, entry: &MirroredUser) {
        if let Err(e) = self.store.mirror_put(entry).await {
            tracing::warn!(scim_id = %entry.scim_id, error = %e, "recording the user in the mirror failed");
            self.forget(&entry.scim_id).await;
        }
    }

    /// Records a user as Genesys answered it; returns the entry (None for an answer without an id).
    pub async fn confirm(&self, user: &ScimUser, etag: Option<&str>) -> Option<MirroredUser> {
        let entry = self.entry(user, etag)?;
        self.put(&entry).await;
        Some(entry)
    }

    pub async fn forget(&self, scim_id: &str) {
        if let Err(e) = self.store.mirror_forget(scim_id).await {
            tracing::error!(%scim_id, error = %e, "forgetting a user in the mirror failed; its next update may report false drift");
        }
    }

    /// GET the user and record it: a `Known` that is Genesys's current state.
    pub async fn read(&self, client: &GenesysClient, scim_id: &str) -> Result<Known, crate::genesys::GenesysError> {
        let Versioned { value, etag, .. } = client.get_user(scim_id).await?;
        let entry = self
            .confirm(&value, etag.as_deref())
            .await
            .ok_or_else(|| crate::genesys::GenesysError::Decode(format!("user {scim_id} came back without an id")))?;
        Ok(Known { entry, from_mirror: false })
    }
}

/// A mirror entry for a user as Genesys returned it. Its attributes are the user without `id`,
/// `meta`, `groups` and `schemas`; its groups are the read-only `groups` Genesys fills in.
pub fn entry(user: &ScimUser, etag: Option<&str>, now: i64) -> Option<MirroredUser> {
    let scim_id = user.id.clone()?;
    let version = etag.map(str::to_string).or_else(|| user.meta.as_ref().and_then(|m| m.version.clone()));
    let groups = user.groups.iter().map(|g| g.value.clone()).collect();
    let email = user
        .emails
        .iter()
        .find(|e| e.kind.as_deref() == Some("work"))
        .or_else(|| user.emails.iter().find(|e| e.primary == Some(true)))
        .map(|e| e.value.to_lowercase());
    let attributes = ScimUser { id: None, meta: None, groups: vec![], ..user.clone() };
    let mut attributes = serde_json::to_value(&attributes).unwrap_or_default();
    if let Value::Object(a) = &mut attributes {
        a.remove("schemas");
    }
    Some(MirroredUser {
        scim_id,
        external_id: user.external_id.clone(),
        user_name: user.user_name.to_lowercase(),
        email,
        version,
        attributes,
        groups,
        confirmed_at: now,
    })
}

/// The managed attributes (those the sync compares) that differ between what the mirror held and
/// what Genesys holds now: attributes changed or added inside Genesys, and those removed there.
pub fn drift(mirrored: &Value, genesys: &Value) -> Vec<Drift> {
    let mut fields: Vec<String> = diff(mirrored, genesys).into_iter().filter_map(|op| op.path).collect();
    for path in diff(genesys, mirrored).into_iter().filter_map(|op| op.path) {
        if !fields.contains(&path) {
            fields.push(path);
        }
    }
    fields
        .into_iter()
        .map(|field| Drift { mirrored: value_at(mirrored, &field), genesys: value_at(genesys, &field), field })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::genesys::types::{SCHEMA_ENTERPRISE, ScimGroupRef, ScimMeta};

    #[test]
    fn an_entry_keeps_what_genesys_confirmed_without_id_meta_and_groups() {
        let user: ScimUser = serde_json::from_value(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u-1", "userName": "Jane@Example.com",
            "displayName": "Jane", "externalId": "E-1",
            "emails": [{"value": "Jane@Example.com", "type": "work", "primary": true}],
            "groups": [{"value": "g-1"}], "meta": {"version": "\"3\""}
        }))
        .unwrap();
        let e = entry(&user, None, 7).unwrap();
        assert_eq!(
            (e.scim_id.as_str(), e.version.as_deref(), e.groups.clone()),
            ("u-1", Some("\"3\""), vec!["g-1".into()])
        );
        assert_eq!((e.user_name.as_str(), e.email.as_deref()), ("jane@example.com", Some("jane@example.com")));
        for gone in ["id", "meta", "groups", "schemas"] {
            assert!(e.attributes.get(gone).is_none(), "{gone} is not an attribute the sync compares");
        }
        // The header wins over meta.version: it is what the answer itself says.
        assert_eq!(entry(&user, Some("\"4\""), 7).unwrap().version.as_deref(), Some("\"4\""));
        let no_id =
            ScimUser { id: None, groups: vec![ScimGroupRef::default()], meta: Some(ScimMeta::default()), ..user };
        assert!(entry(&no_id, None, 7).is_none());
    }

    #[test]
    fn drift_names_changed_added_and_removed_managed_attributes() {
        let mirrored = json!({"userName": "j@x.io", "title": "Engineer", "phoneNumbers": [{"value": "1", "type": "work"}],
            SCHEMA_ENTERPRISE: {"department": "Eng"}});
        let genesys =
            json!({"userName": "j@x.io", "title": "Boss", SCHEMA_ENTERPRISE: {"department": "Eng", "costCenter": "C"}});
        let found = drift(&mirrored, &genesys);
        let fields: Vec<&str> = found.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["title", "phoneNumbers[type eq \"work\"].value"]);
        assert_eq!((found[0].mirrored.clone(), found[0].genesys.clone()), (json!("Engineer"), json!("Boss")));
        assert_eq!(found[1].genesys, Value::Null);
        assert!(drift(&mirrored, &mirrored).is_empty());
    }
}
