//! Provisioning a new hire in Genesys Cloud: resolve the manager, create the SCIM user (correcting
//! what Genesys refuses, adopting a user that already exists), add it to the department's group.

use std::time::Instant;

use serde::Serialize;

use crate::config::Department;
use crate::genesys::scim::quote;
use crate::genesys::types::ScimUser;
use crate::genesys::{GenesysClient, GenesysError};
use crate::policy::{Policy, UserView, Violations};
use crate::queue::{Job, JobStore};

use super::NewHire;
use super::directory::SyncError;
use super::mirror::{Known, Mirror};
use super::scim_user;

/// At most this many corrections of a refused create body.
pub const MAX_CORRECTIONS: usize = 2;

/// What provisioning a new hire did; stored as the job's result and written to the audit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provisioned {
    pub scim_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    pub adopted: bool,
    /// The user existed because an earlier attempt of this job created it (its checkpoint says so).
    pub resumed: bool,
    /// An adopted user that was inactive (a rehire) was made active again.
    pub reactivated: bool,
    pub genesys_response_code: u16,
    pub corrections: Vec<String>,
    pub correlation_id: String,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_id: Option<String>,
    /// Why the hire's manager was left out (not found, or Genesys refused the lookup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_unresolved: Option<String>,
}

/// Why provisioning stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Genesys refused or failed; `is_retryable` says whether the queue should try again.
    #[error("{0}")]
    Genesys(#[from] GenesysError),
    /// Genesys refused the user as invalid and no correction rule applies.
    #[error("Genesys refused the user as invalid and no correction applies: {detail}")]
    Uncorrectable { detail: String, status: u16, corrections: Vec<String> },
    /// Retrying later may help (a group that kept changing, a conflict with no user to adopt).
    #[error("{0}")]
    Transient(String),
    /// The user violates the provisioning policy (it may have changed since intake): nothing sent.
    #[error("{0}")]
    Policy(Violations),
}

impl ProvisionError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ProvisionError::Genesys(e) => e.is_retryable(),
            ProvisionError::Uncorrectable { .. } | ProvisionError::Policy(_) => false,
            ProvisionError::Transient(_) => true,
        }
    }
}

/// 400 `invalidValue` / `invalidSyntax` / `mutability` (or no type), or a 422 as proxies send it.
fn is_validation(e: &GenesysError) -> bool {
    match e.status() {
        Some(422) => true,
        Some(400) => matches!(e.scim_type(), None | Some("invalidValue" | "invalidSyntax" | "mutability")),
        _ => false,
    }
}

fn is_uniqueness(e: &GenesysError) -> bool {
    e.status() == Some(409) || e.scim_type() == Some("uniqueness")
}

/// A stale `If-Match`: Genesys answers 400 `invalidVers`, RFC 7644 servers and proxies 412.
pub(crate) fn is_stale_version(e: &GenesysError) -> bool {
    e.scim_type() == Some("invalidVers") || e.status() == Some(412)
}

/// Genesys refused the request itself (a 4xx other than 429): asking again will not help.
fn is_refusal(e: &GenesysError) -> bool {
    matches!(e, GenesysError::Api { status, .. } if (400..500).contains(status) && *status != 429)
}

/// The running job, where an attempt records the user it created before the next step can fail:
/// the attempt after it then knows the existing user is its own (`resumed`), not someone else's.
pub struct Checkpoint<'a> {
    pub store: &'a JobStore,
    pub job: &'a Job,
}

impl Checkpoint<'_> {
    /// The user an earlier attempt of this job created, if it recorded one.
    fn created_before(&self) -> Option<&str> {
        self.job.progress.as_ref()?.get("scimId")?.as_str()
    }

    /// Records the user this attempt created. A failure is logged, not returned: this attempt goes
    /// on knowing it created the user; only a later attempt would call it adopted.
    async fn record_created(&self, scim_id: &str) {
        let audit_id = self.job.audit_id;
        match self.store.save_progress(self.job, &serde_json::json!({ "scimId": scim_id })).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(%audit_id, "created user not recorded: the job's lease was taken over"),
            Err(e) => tracing::warn!(%audit_id, error = %e, "created user not recorded on the job"),
        }
    }
}

/// Provisions one new hire. Safe to run again after a partial failure: the user is adopted and the
/// membership found in place.
pub async fn new_hire(
    client: &GenesysClient,
    mirror: &Mirror,
    policy: &Policy,
    hire: &NewHire,
    department: &Department,
    checkpoint: Option<&Checkpoint<'_>>,
) -> Result<Provisioned, ProvisionError> {
    let started = Instant::now();
    // The manager is optional: one that cannot be found or looked up leaves the hire without one.
    let (manager_id, manager_unresolved) = match &hire.manager_email {
        Some(m) => match find_manager(client, mirror, m.as_str().trim()).await? {
            Ok(id) => (Some(id), None),
            Err(reason) => {
                tracing::warn!(manager = %m, %reason, "new hire created without a manager");
                (None, Some(reason))
            }
        },
        None => (None, None),
    };
    let body = scim_user::build(hire, department, manager_id.as_deref());
    let mut done = create_user(client, mirror, policy, body, Some(department), checkpoint).await?;
    done.manager_id = manager_id;
    done.manager_unresolved = manager_unresolved;
    done.latency_ms = started.elapsed().as_millis() as u64;
    Ok(done)
}

/// Creates a SCIM user (correcting what Genesys refuses, adopting one that exists, reactivating an
/// adopted inactive one) and adds it to the department's group when one is given. Every body is
/// judged by the policy before it is sent (a correction changes the body).
pub async fn create_user(
    client: &GenesysClient,
    mirror: &Mirror,
    policy: &Policy,
    mut body: ScimUser,
    department: Option<&Department>,
    checkpoint: Option<&Checkpoint<'_>>,
) -> Result<Provisioned, ProvisionError> {
    let started = Instant::now();
    let mut corrections = Vec::new();
    let (user, etag, status, correlation_id, adopted) = loop {
        policy.evaluate(&UserView::of_scim(&body)).into_result().map_err(ProvisionError::Policy)?;
        match client.create_user(&body).await {
            Ok(created) => break (created.value, created.etag, created.status, created.correlation_id, false),
            Err(e) if is_uniqueness(&e) => {
                // Found as the sync finds people: by the person key, then by userName.
                let external_id = body.external_id.as_deref().unwrap_or_default();
                let existing =
                    super::directory::find(client, external_id, &body.user_name).await?.ok_or_else(|| {
                        ProvisionError::Transient(format!(
                            "Genesys says {} exists, but no such user was found",
                            body.user_name
                        ))
                    })?;
                let correlation = match &e {
                    GenesysError::Api { correlation_id, .. } => correlation_id.clone(),
                    _ => String::new(),
                };
                break (existing, None, 409, correlation, true);
            }
            Err(e) if is_validation(&e) => {
                let detail = e.detail().unwrap_or_default().to_string();
                let status = e.status().unwrap_or(400);
                if corrections.len() >= MAX_CORRECTIONS {
                    return Err(ProvisionError::Uncorrectable { detail, status, corrections });
                }
                match scim_user::correct(&mut body, &detail) {
                    Some(c) => corrections.push(c),
                    None => return Err(ProvisionError::Uncorrectable { detail, status, corrections }),
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    // What Genesys answered (the created user, or the one found to adopt) enters the mirror once
    // the group step is done: one write per joiner. A retry after a failed group step finds the
    // user by its 409 and lookup, as without a mirror.
    let mut known = mirror
        .entry(&user, etag.as_deref())
        .map(|entry| Known { entry, from_mirror: false })
        .ok_or_else(|| ProvisionError::Transient("Genesys returned a user without an id".into()))?;
    let scim_id = known.entry.scim_id.clone();
    // A rehire: the person's deactivated user is adopted and made active again (deactivation kept
    // its roles for exactly this). The user just found carries its version: one PATCH.
    let reactivated = adopted && user.active == Some(false);
    if reactivated {
        super::directory::patch_to_match(
            client,
            mirror,
            &mut known,
            &serde_json::json!({"active": true}),
            // Only whether it worked counts here: the outcome is not kept.
            crate::lifecycle::SyncOutcome::Updated,
            crate::lifecycle::SyncOutcome::Unchanged,
        )
        .await
        .map_err(|e| match e {
            SyncError::Genesys(g) => ProvisionError::Genesys(g),
            other => ProvisionError::Transient(other.to_string()),
        })?;
    }
    // The user exists because an earlier attempt of this job created it: resumed, not adopted.
    let resumed = adopted && checkpoint.and_then(Checkpoint::created_before) == Some(scim_id.as_str());
    let adopted = adopted && !resumed;
    if let Some(checkpoint) = checkpoint.filter(|_| !adopted && !resumed) {
        checkpoint.record_created(&scim_id).await;
    }
    let group_id = department.map(|d| d.group_id.to_string());
    if let Some(group_id) = group_id.as_ref().filter(|g| !known.entry.groups.contains(g)) {
        add_member(client, group_id, &scim_id).await?;
        known.entry.groups.push(group_id.clone());
    }
    mirror.put(&known.entry).await;
    Ok(Provisioned {
        scim_id,
        group_id,
        adopted,
        resumed,
        reactivated,
        genesys_response_code: status,
        corrections,
        correlation_id,
        latency_ms: started.elapsed().as_millis() as u64,
        manager_id: None,
        manager_unresolved: None,
    })
}

/// Adds the user to the group: one PATCH, without `If-Match` and without reading the group first.
/// Adding one member is commutative (genesys-api.md), so no version is needed, replicas do not
/// contend for the group's ETag, and a joiner costs the create plus this one call. A member already
/// there is success (the add is a no-op, or Genesys calls it a conflict).
pub async fn add_member(client: &GenesysClient, group_id: &str, user_id: &str) -> Result<(), ProvisionError> {
    match client.add_group_member(group_id, user_id, None).await {
        Ok(_) => Ok(()),
        Err(e) if is_uniqueness(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Takes the user out of the group: one PATCH without `If-Match`, as for an add. A member who is
/// gone meanwhile (`noTarget`) is success.
pub async fn remove_member(client: &GenesysClient, group_id: &str, user_id: &str) -> Result<(), ProvisionError> {
    match client.remove_group_member(group_id, user_id, None).await {
        Ok(_) => Ok(()),
        Err(e) if e.scim_type() == Some("noTarget") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn find_user_by_user_name(client: &GenesysClient, user_name: &str) -> Result<Option<ScimUser>, GenesysError> {
    Ok(client.find_users(&format!("userName eq {}", quote(user_name))).await?.into_iter().next())
}

/// The Genesys user id of a manager given by email: `Ok(Ok(id))`, or `Ok(Err(why))` when there is
/// no such user or Genesys refuses the lookup (any 4xx but 429); a failure worth retrying is `Err`.
/// A manager the mirror knows (usually provisioned by this service too) costs no call; one looked
/// up enters the mirror.
pub(crate) async fn find_manager(
    client: &GenesysClient,
    mirror: &Mirror,
    email: &str,
) -> Result<Result<String, String>, GenesysError> {
    if let Some(id) = mirror.find_login(email).await {
        return Ok(Ok(id));
    }
    match find_user_by_email(client, email).await {
        Ok(Some(user @ ScimUser { id: Some(_), .. })) => {
            mirror.confirm(&user, None).await;
            Ok(Ok(user.id.unwrap_or_default()))
        }
        Ok(_) => Ok(Err(format!("no Genesys user has the userName or email {email}"))),
        Err(e) if is_refusal(&e) => Ok(Err(format!("the manager lookup was refused: {e}"))),
        Err(e) => Err(e),
    }
}

/// A user by userName, else by email (a manager's address may be either).
async fn find_user_by_email(client: &GenesysClient, email: &str) -> Result<Option<ScimUser>, GenesysError> {
    if let Some(u) = find_user_by_user_name(client, email).await? {
        return Ok(Some(u));
    }
    Ok(client.find_users(&format!("email eq {}", quote(email))).await?.into_iter().next())
}
