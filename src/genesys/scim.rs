//! Typed SCIM calls over the shared client (`/api/v2/scim/v2/...`).

use reqwest::Method;

use super::client::{GenesysClient, GenesysError};
use super::types::{ListResponse, PatchOp, PatchOperation, ScimGroup, ScimUser};

const USERS: &str = "/api/v2/scim/v2/users";
const GROUPS: &str = "/api/v2/scim/v2/groups";

/// A resource with the ETag it was read with.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: Option<String>,
    pub correlation_id: String,
    pub status: u16,
}

/// A SCIM filter value, quoted with `"` and `\` escaped.
pub fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

impl GenesysClient {
    pub async fn create_user(&self, user: &ScimUser) -> Result<Versioned<ScimUser>, GenesysError> {
        let answer = self.send(Method::POST, USERS, Some(user), None).await?;
        let value = answer.json::<ScimUser>()?;
        let etag = answer.etag.clone().or_else(|| value.meta.as_ref().and_then(|m| m.version.clone()));
        Ok(Versioned { value, etag, correlation_id: answer.correlation_id, status: answer.status })
    }

    pub async fn get_user(&self, id: &str) -> Result<Versioned<ScimUser>, GenesysError> {
        let answer = self.send::<()>(Method::GET, &format!("{USERS}/{id}"), None, None).await?;
        let value = answer.json::<ScimUser>()?;
        let etag = answer.etag.clone().or_else(|| value.meta.as_ref().and_then(|m| m.version.clone()));
        Ok(Versioned { value, etag, correlation_id: answer.correlation_id, status: answer.status })
    }

    /// Applies a PatchOp to a user, with `If-Match` when an ETag is given.
    pub async fn patch_user(
        &self,
        id: &str,
        patch: &PatchOp,
        etag: Option<&str>,
    ) -> Result<Versioned<ScimUser>, GenesysError> {
        let answer = self.send(Method::PATCH, &format!("{USERS}/{id}"), Some(patch), etag).await?;
        let value = if answer.body.is_empty() { ScimUser::default() } else { answer.json::<ScimUser>()? };
        Ok(Versioned { value, etag: answer.etag.clone(), correlation_id: answer.correlation_id, status: answer.status })
    }

    /// Users matching a filter such as `userName eq "a@b.c"` (first page of at most 25).
    pub async fn find_users(&self, filter: &str) -> Result<Vec<ScimUser>, GenesysError> {
        let query = serde_urlencoded_pair("filter", filter);
        let answer = self.send::<()>(Method::GET, &format!("{USERS}?{query}&count=25"), None, None).await?;
        Ok(answer.json::<ListResponse<ScimUser>>()?.resources)
    }

    pub async fn get_group(&self, id: &str) -> Result<Versioned<ScimGroup>, GenesysError> {
        let answer = self.send::<()>(Method::GET, &format!("{GROUPS}/{id}"), None, None).await?;
        let value = answer.json::<ScimGroup>()?;
        let etag = answer.etag.clone().or_else(|| value.meta.as_ref().and_then(|m| m.version.clone()));
        Ok(Versioned { value, etag, correlation_id: answer.correlation_id, status: answer.status })
    }

    /// Adds a member with `If-Match`; a stale ETag comes back as HTTP 400 `invalidVers`.
    pub async fn add_group_member(
        &self,
        group_id: &str,
        user_id: &str,
        etag: Option<&str>,
    ) -> Result<u16, GenesysError> {
        let patch = PatchOp::new(vec![PatchOperation {
            op: "add".into(),
            path: Some("members".into()),
            value: Some(serde_json::json!([{ "value": user_id }])),
        }]);
        let answer = self.send(Method::PATCH, &format!("{GROUPS}/{group_id}"), Some(&patch), etag).await?;
        Ok(answer.status)
    }
}

fn serde_urlencoded_pair(key: &str, value: &str) -> String {
    let mut out = String::with_capacity(key.len() + value.len() * 2);
    out.push_str(key);
    out.push('=');
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_quoted_and_encoded() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            serde_urlencoded_pair("filter", r#"userName eq "a+b@x.io""#),
            "filter=userName%20eq%20%22a%2Bb%40x.io%22"
        );
    }
}
