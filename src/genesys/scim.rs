//! Typed SCIM calls over the shared client (`/api/v2/scim/v2/...`).

use reqwest::Method;

use super::client::{Answer, GenesysClient, GenesysError};
use super::types::{ListResponse, PatchOp, PatchOperation, ScimGroup, ScimMeta, ScimUser};

const USERS: &str = "/api/v2/scim/v2/users";
const GROUPS: &str = "/api/v2/scim/v2/groups";
/// The largest SCIM page Genesys serves without risking a 429 (genesys-api.md).
pub const MAX_PAGE: u64 = 25;

/// A resource with the ETag it was read with.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: Option<String>,
    pub correlation_id: String,
    pub status: u16,
}

/// A SCIM filter value as a quoted JSON string (RFC 7644 compares against JSON values): `"`, `\`
/// and every control character are escaped, so a newline in HR data never reaches the URL raw.
pub fn quote(value: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Control characters are all below U+00A0: one \uXXXX each.
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A SCIM resource that carries `meta.version`.
trait Resource: serde::de::DeserializeOwned + Default {
    fn meta(&self) -> Option<&ScimMeta>;
}

impl Resource for ScimUser {
    fn meta(&self) -> Option<&ScimMeta> {
        self.meta.as_ref()
    }
}

impl Resource for ScimGroup {
    fn meta(&self) -> Option<&ScimMeta> {
        self.meta.as_ref()
    }
}

/// The resource in an answer (none for an empty body) with its ETag: the header, else `meta.version`.
fn versioned<T: Resource>(answer: Answer) -> Result<Versioned<T>, GenesysError> {
    let value: T = if answer.body.is_empty() { T::default() } else { answer.json()? };
    let etag = answer.etag.clone().or_else(|| value.meta().and_then(|m| m.version.clone()));
    Ok(Versioned { value, etag, correlation_id: answer.correlation_id, status: answer.status })
}

impl GenesysClient {
    pub async fn create_user(&self, user: &ScimUser) -> Result<Versioned<ScimUser>, GenesysError> {
        versioned(self.send(Method::POST, USERS, Some(user), None).await?)
    }

    pub async fn get_user(&self, id: &str) -> Result<Versioned<ScimUser>, GenesysError> {
        versioned(self.send::<()>(Method::GET, &format!("{USERS}/{id}"), None, None).await?)
    }

    /// Applies a PatchOp to a user, with `If-Match` when an ETag is given.
    pub async fn patch_user(
        &self,
        id: &str,
        patch: &PatchOp,
        etag: Option<&str>,
    ) -> Result<Versioned<ScimUser>, GenesysError> {
        versioned(self.send(Method::PATCH, &format!("{USERS}/{id}"), Some(patch), etag).await?)
    }

    /// Users matching a filter such as `userName eq "a@b.c"` (first page of at most 25).
    pub async fn find_users(&self, filter: &str) -> Result<Vec<ScimUser>, GenesysError> {
        let query = serde_urlencoded_pair("filter", filter);
        let answer = self.send::<()>(Method::GET, &format!("{USERS}?{query}&count={MAX_PAGE}"), None, None).await?;
        Ok(answer.json::<ListResponse<ScimUser>>()?.resources)
    }

    /// One page of users (`count` at most 25: more "may exceed internal resource limits"), with
    /// only `attributes` when given. Without a filter Genesys lists active users only.
    pub async fn list_users_page(
        &self,
        filter: Option<&str>,
        start_index: u64,
        count: u64,
        attributes: &str,
    ) -> Result<ListResponse<ScimUser>, GenesysError> {
        let mut query = format!("startIndex={start_index}&count={}", count.min(MAX_PAGE));
        if let Some(filter) = filter {
            query.push('&');
            query.push_str(&serde_urlencoded_pair("filter", filter));
        }
        if !attributes.is_empty() {
            query.push('&');
            query.push_str(&serde_urlencoded_pair("attributes", attributes));
        }
        self.send::<()>(Method::GET, &format!("{USERS}?{query}"), None, None).await?.json()
    }

    pub async fn get_group(&self, id: &str) -> Result<Versioned<ScimGroup>, GenesysError> {
        versioned(self.send::<()>(Method::GET, &format!("{GROUPS}/{id}"), None, None).await?)
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

impl GenesysClient {
    /// Removes a member with `If-Match` (`remove` on `members[value eq "<id>"]`).
    pub async fn remove_group_member(
        &self,
        group_id: &str,
        user_id: &str,
        etag: Option<&str>,
    ) -> Result<u16, GenesysError> {
        let patch = PatchOp::new(vec![PatchOperation {
            op: "remove".into(),
            path: Some(format!("members[value eq {}]", quote(user_id))),
            value: None,
        }]);
        let answer = self.send(Method::PATCH, &format!("{GROUPS}/{group_id}"), Some(&patch), etag).await?;
        Ok(answer.status)
    }

    /// Deletes a user (its roles are lost; deactivation is the default for leavers).
    pub async fn delete_user(&self, id: &str, etag: Option<&str>) -> Result<u16, GenesysError> {
        Ok(self.send::<()>(Method::DELETE, &format!("{USERS}/{id}"), None, etag).await?.status)
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

    #[test]
    fn control_characters_in_a_filter_value_are_json_escaped() {
        // RFC 7644 filter values are JSON strings: a raw newline or tab is not one.
        assert_eq!(quote("a\nb\tc\r\u{8}\u{c}"), r#""a\nb\tc\r\b\f""#);
        assert_eq!(quote("x\u{1}\u{1f}\u{7f}"), r#""x\u0001\u001f\u007f""#);
        // What a JSON parser reads back is the value itself.
        let back: String = serde_json::from_str(&quote("tab\there \"q\" back\\slash\u{0}")).unwrap();
        assert_eq!(back, "tab\there \"q\" back\\slash\u{0}");
    }
}
