//! `check-config --probe`: asks Genesys Cloud, with the configured credentials, whether what the
//! configuration names exists: a token, every department's group, every role name. Reads only.

use std::collections::BTreeSet;

use reqwest::Method;

use crate::config::Config;
use crate::genesys::{GenesysClient, GenesysError};

/// One thing looked at, and what Genesys said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub text: String,
}

impl Finding {
    fn found(text: String) -> Finding {
        Finding { ok: true, text }
    }

    fn problem(text: String) -> Finding {
        Finding { ok: false, text }
    }
}

/// The role names the configuration uses: the departments' roles and those the policy allows.
pub fn configured_roles(config: &Config) -> BTreeSet<String> {
    let departments = config.departments.iter().flat_map(|d| d.roles.iter().map(String::as_str));
    departments.chain(config.policy.role_names()).map(str::to_string).collect()
}

/// Asks Genesys about everything configured. Stops after the token when Genesys refuses it (every
/// other answer would be a 401 too).
pub async fn probe(config: &Config) -> Vec<Finding> {
    let client = match GenesysClient::from_config(&config.genesys) {
        None => {
            return vec![Finding::problem(
                "GENESYS_CLIENT_ID / GENESYS_CLIENT_SECRET are not set: there is nothing to probe with".to_string(),
            )];
        }
        Some(Err(e)) => return vec![Finding::problem(format!("cannot set up the Genesys client: {e}"))],
        Some(Ok(client)) => client,
    };
    let mut findings = Vec::new();
    let client_id = config.genesys.client_id.as_deref().unwrap_or_default();
    match client.check_token().await {
        Ok(()) => findings
            .push(Finding::found(format!("token       granted to client {client_id} by {}", config.genesys.login_url))),
        Err(e) => {
            findings.push(Finding::problem(format!("token       REFUSED for client {client_id}: {e}")));
            return findings;
        }
    }
    for d in config.departments.iter() {
        let finding = match client.get_group(&d.group_id.to_string()).await {
            Ok(group) => Finding::found(format!(
                "group       {} ({}) found: \"{}\"",
                d.group_id, d.code, group.value.display_name
            )),
            Err(e) if e.status() == Some(404) => {
                Finding::problem(format!("group       {} ({}) MISSING: Genesys has no such group", d.group_id, d.code))
            }
            Err(e) => Finding::problem(format!("group       {} ({}) not read: {e}", d.group_id, d.code)),
        };
        findings.push(finding);
    }
    for role in configured_roles(config) {
        let finding = match find_role(&client, &role).await {
            Ok(Some(id)) => Finding::found(format!("role        \"{role}\" found (id {id})")),
            Ok(None) => Finding::problem(format!("role        \"{role}\" MISSING: Genesys has no role of that name")),
            Err(e) => Finding::problem(format!("role        \"{role}\" not read: {e}")),
        };
        findings.push(finding);
    }
    findings
}

#[derive(serde::Deserialize)]
struct RoleListing {
    #[serde(default)]
    entities: Vec<Role>,
}

#[derive(serde::Deserialize)]
struct Role {
    id: String,
    name: String,
}

/// The id of the role called `name` (Genesys role names are unique, compared without case).
async fn find_role(client: &GenesysClient, name: &str) -> Result<Option<String>, GenesysError> {
    let path = format!("/api/v2/authorization/roles?pageSize=100&name={}", encode(name));
    let listing: RoleListing = client.send::<()>(Method::GET, &path, None, None).await?.json()?;
    Ok(listing.entities.into_iter().find(|r| r.name.eq_ignore_ascii_case(name)).map(|r| r.id))
}

/// Percent-encodes a query value (role names have spaces: "Master Admin").
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_role_name_is_encoded_for_a_query() {
        assert_eq!(super::encode("Master Admin & co"), "Master%20Admin%20%26%20co");
    }
}
