//! The mirror table: what Genesys last confirmed for each user the service manages (SQL only; the
//! pipeline's `mirror` module decides what goes in).

use serde_json::Value;

use super::{Db, JobStore, QueueError};

/// One user as Genesys last confirmed it.
#[derive(Clone, Debug, PartialEq)]
pub struct MirroredUser {
    pub scim_id: String,
    pub external_id: Option<String>,
    /// Lower-cased.
    pub user_name: String,
    /// The work email, lower-cased (a manager is found by userName or email).
    pub email: Option<String>,
    /// `meta.version` / the ETag, quotes included; None when Genesys gave none.
    pub version: Option<String>,
    /// The user as Genesys returned it, without `id`, `meta`, `groups` and `schemas`.
    pub attributes: Value,
    /// The groups it is known to be in.
    pub groups: Vec<String>,
    /// When Genesys confirmed this (Unix ms).
    pub confirmed_at: i64,
}

macro_rules! mirror_columns {
    () => {
        "scim_id, external_id, user_name, email, version, attributes, groups, confirmed_at"
    };
}

type MirrorRow = (String, Option<String>, String, Option<String>, Option<String>, String, String, i64);

impl TryFrom<MirrorRow> for MirroredUser {
    type Error = QueueError;

    fn try_from(row: MirrorRow) -> Result<Self, QueueError> {
        let (scim_id, external_id, user_name, email, version, attributes, groups, confirmed_at) = row;
        let corrupt =
            |what: &str, e: serde_json::Error| QueueError::Corrupt(format!("mirror of {scim_id}: {what}: {e}"));
        Ok(MirroredUser {
            attributes: serde_json::from_str(&attributes).map_err(|e| corrupt("attributes", e))?,
            groups: serde_json::from_str(&groups).map_err(|e| corrupt("groups", e))?,
            scim_id,
            external_id,
            user_name,
            email,
            version,
            confirmed_at,
        })
    }
}

impl JobStore {
    /// The mirrored user with this SCIM id.
    pub async fn mirror_get(&self, scim_id: &str) -> Result<Option<MirroredUser>, QueueError> {
        let sql = concat!("SELECT ", mirror_columns!(), " FROM genesys_users WHERE scim_id = $1");
        let row: Option<MirrorRow> =
            on_pool!(&self.db, |p| sqlx::query_as(sql).bind(scim_id).fetch_optional(p).await?);
        row.map(MirroredUser::try_from).transpose()
    }

    /// The mirrored user for an HR person: by externalId, else (when given) by userName, as the
    /// sync finds people in Genesys. The most recently confirmed one if several match.
    pub async fn mirror_find(&self, external_id: &str, user_name: &str) -> Result<Option<MirroredUser>, QueueError> {
        let by_key = concat!(
            "SELECT ",
            mirror_columns!(),
            " FROM genesys_users WHERE external_id = $1 ORDER BY confirmed_at DESC LIMIT 1"
        );
        let by_name = concat!(
            "SELECT ",
            mirror_columns!(),
            " FROM genesys_users WHERE user_name = $1 ORDER BY confirmed_at DESC LIMIT 1"
        );
        if !external_id.is_empty() {
            let row: Option<MirrorRow> =
                on_pool!(&self.db, |p| sqlx::query_as(by_key).bind(external_id).fetch_optional(p).await?);
            if let Some(row) = row {
                return MirroredUser::try_from(row).map(Some);
            }
        }
        if user_name.is_empty() {
            return Ok(None);
        }
        let name = user_name.to_lowercase();
        let row: Option<MirrorRow> =
            on_pool!(&self.db, |p| sqlx::query_as(by_name).bind(&name).fetch_optional(p).await?);
        row.map(MirroredUser::try_from).transpose()
    }

    /// The mirrored user whose userName or work email is `address` (how HR names a manager).
    pub async fn mirror_find_login(&self, address: &str) -> Result<Option<MirroredUser>, QueueError> {
        let sql = concat!(
            "SELECT ",
            mirror_columns!(),
            " FROM genesys_users WHERE user_name = $1 OR email = $1 ORDER BY confirmed_at DESC LIMIT 1"
        );
        let address = address.trim().to_lowercase();
        let row: Option<MirrorRow> =
            on_pool!(&self.db, |p| sqlx::query_as(sql).bind(&address).fetch_optional(p).await?);
        row.map(MirroredUser::try_from).transpose()
    }

    /// Stores what Genesys confirmed, replacing the user's earlier entry.
    pub async fn mirror_put(&self, user: &MirroredUser) -> Result<(), QueueError> {
        let sql = concat!(
            "INSERT INTO genesys_users (",
            mirror_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (scim_id) DO UPDATE SET \
             external_id = excluded.external_id, user_name = excluded.user_name, email = excluded.email, \
             version = excluded.version, attributes = excluded.attributes, groups = excluded.groups, \
             confirmed_at = excluded.confirmed_at"
        );
        let attributes = user.attributes.to_string();
        let groups = serde_json::to_string(&user.groups).map_err(|e| QueueError::Corrupt(e.to_string()))?;
        on_pool!(&self.writer, |p| {
            sqlx::query(sql)
                .bind(&user.scim_id)
                .bind(&user.external_id)
                .bind(user.user_name.to_lowercase())
                .bind(user.email.as_ref().map(|e| e.to_lowercase()))
                .bind(&user.version)
                .bind(&attributes)
                .bind(&groups)
                .bind(user.confirmed_at)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Forgets a user (deleted in Genesys, or its entry can no longer be trusted).
    pub async fn mirror_forget(&self, scim_id: &str) -> Result<(), QueueError> {
        on_pool!(&self.writer, |p| {
            sqlx::query("DELETE FROM genesys_users WHERE scim_id = $1").bind(scim_id).execute(p).await?;
        });
        Ok(())
    }

    /// Up to `limit` mirrored users with an id after `after`, in id order (for paging through all).
    pub async fn mirror_page(&self, after: &str, limit: u32) -> Result<Vec<MirroredUser>, QueueError> {
        let sql =
            concat!("SELECT ", mirror_columns!(), " FROM genesys_users WHERE scim_id > $1 ORDER BY scim_id LIMIT $2");
        let rows: Vec<MirrorRow> =
            on_pool!(&self.db, |p| sqlx::query_as(sql).bind(after).bind(i64::from(limit)).fetch_all(p).await?);
        rows.into_iter().map(MirroredUser::try_from).collect()
    }
}
