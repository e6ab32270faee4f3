//! Reconcile: page through the users in Genesys, compare each managed one with the mirror, refresh
//! the mirror and report drift (edits made inside Genesys, users deleted there).
//!
//! It goes through the one shared client, so it spends the same request budget as the jobs: a
//! page of at most 25 users (`attributes=` asks for the managed ones only) is one request.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::json;

use crate::genesys::scim::MAX_PAGE;
use crate::genesys::types::{SCHEMA_ENTERPRISE, SCHEMA_GENESYS, ScimUser};
use crate::genesys::{GenesysClient, GenesysError};
use crate::queue::JobStore;

use super::mirror::{Drift, Mirror, drift};

/// The attributes a page asks for: what the sync compares, the groups and the version.
pub fn managed_attributes() -> String {
    ["userName", "externalId", "active", "displayName", "title", "emails", "phoneNumbers", "groups", "meta"]
        .into_iter()
        .chain([SCHEMA_ENTERPRISE, SCHEMA_GENESYS])
        .collect::<Vec<_>>()
        .join(",")
}

/// What a reconcile found and did; stored as the job's result.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciled {
    /// List requests made (one per page).
    pub pages: u64,
    /// Users Genesys listed (active and inactive).
    pub listed: u64,
    /// Managed users (mirrored, or carrying an externalId) compared with the mirror.
    pub compared: u64,
    /// Entries refreshed because Genesys holds another version, other attributes or other groups.
    pub refreshed: u64,
    /// Users with an externalId that the mirror did not know: they entered it.
    pub added: u64,
    /// Mirrored users that Genesys no longer lists: deleted there, forgotten here.
    pub missing: Vec<MissingUser>,
    /// Managed attributes (and group membership) changed inside Genesys.
    pub drift: Vec<UserDrift>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDrift {
    pub scim_id: String,
    pub external_id: String,
    pub fields: Vec<Drift>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingUser {
    pub scim_id: String,
    pub external_id: String,
}

/// Pages through the active users, then the inactive ones, and reconciles the mirror with them.
pub async fn reconcile(client: &GenesysClient, store: &JobStore, mirror: &Mirror) -> Result<Reconciled, GenesysError> {
    let attributes = managed_attributes();
    // Entries confirmed after this (by jobs running meanwhile) may be missing from pages already read.
    let started_at = store.clock().now_ms();
    let mut done = Reconciled::default();
    let mut seen = HashSet::new();
    // A list without a filter holds active users only.
    for filter in [None, Some("active eq false")] {
        let mut start = 1;
        loop {
            let page = client.list_users_page(filter, start, MAX_PAGE, &attributes).await?;
            done.pages += 1;
            let got = page.resources.len() as u64;
            for user in page.resources {
                if let Some(id) = user.id.clone() {
                    compare(store, mirror, &user, &mut done).await;
                    seen.insert(id);
                }
            }
            done.listed += got;
            start += got;
            if got == 0 || start > page.total_results {
                break;
            }
        }
    }
    forget_missing(store, mirror, &seen, started_at, &mut done).await;
    Ok(done)
}

/// One listed user against its mirror entry.
async fn compare(store: &JobStore, mirror: &Mirror, user: &ScimUser, done: &mut Reconciled) {
    let Some(fresh) = mirror.entry(user, None) else { return };
    let known = match store.mirror_get(&fresh.scim_id).await {
        Ok(known) => known,
        Err(e) => {
            tracing::warn!(scim_id = %fresh.scim_id, error = %e, "reading the mirror failed; entry refreshed");
            None
        }
    };
    let Some(known) = known else {
        // Only users this service could have written carry an externalId; others are not ours.
        if fresh.external_id.as_deref().is_some_and(|e| !e.is_empty()) {
            done.compared += 1;
            done.added += 1;
            mirror.put(&fresh).await;
        }
        return;
    };
    done.compared += 1;
    let mut fields = drift(&known.attributes, &fresh.attributes);
    let (mut before, mut after) = (known.groups.clone(), fresh.groups.clone());
    before.sort();
    after.sort();
    if before != after {
        fields.push(Drift { field: "groups".into(), mirrored: json!(before), genesys: json!(after) });
    }
    if !fields.is_empty() {
        let external_id = fresh.external_id.clone().or(known.external_id.clone()).unwrap_or_default();
        done.drift.push(UserDrift { scim_id: fresh.scim_id.clone(), external_id, fields });
    }
    if known.version != fresh.version || known.attributes != fresh.attributes || before != after {
        done.refreshed += 1;
        mirror.put(&fresh).await;
    }
}

/// Mirror entries Genesys did not list were deleted there: reported and forgotten.
async fn forget_missing(
    store: &JobStore,
    mirror: &Mirror,
    seen: &HashSet<String>,
    started_at: i64,
    done: &mut Reconciled,
) {
    let mut after = String::new();
    loop {
        let page = match store.mirror_page(&after, 500).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "reading the mirror failed; users deleted in Genesys stay mirrored");
                return;
            }
        };
        let Some(last) = page.last() else { return };
        after = last.scim_id.clone();
        for entry in page.into_iter().filter(|e| !seen.contains(&e.scim_id) && e.confirmed_at < started_at) {
            mirror.forget(&entry.scim_id).await;
            done.missing
                .push(MissingUser { scim_id: entry.scim_id, external_id: entry.external_id.unwrap_or_default() });
        }
    }
}
