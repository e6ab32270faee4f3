//! Directory sync: an HR directory event (created, updated, terminated) mapped to SCIM and applied
//! to the Genesys user it names, with the smallest PATCH that makes Genesys match.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Department, TerminateAction};
use crate::genesys::scim::quote;
use crate::genesys::types::{PatchOp, PatchOperation, SCHEMA_ENTERPRISE, SCHEMA_GENESYS, ScimUser};
use crate::genesys::{GenesysClient, GenesysError};
use crate::lifecycle::SyncOutcome;
use crate::mapping::{Mapping, MappingError};
use crate::policy::{Policy, UserView, Violations};

use super::mirror::{Drift, Known, Mirror};
use super::provision::ProvisionError;

/// The event types the directory webhook accepts (also its OpenAPI schema: what happened to the person).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = SyncEventKind)]
pub enum SyncKind {
    #[serde(rename = "user.created")]
    Created,
    #[serde(rename = "user.updated")]
    Updated,
    #[serde(rename = "user.terminated")]
    Terminated,
}

/// A directory event as stored on its job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncEvent {
    pub event: SyncKind,
    /// The HR record, as the vendor sent it (the mapping reads it).
    pub data: Value,
}

/// Why a directory event was refused at the edge (texts are the webhook's contract).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSyncEvent {
    #[error("Request body must be a JSON object")]
    NotAnObject,
    #[error("Unsupported event type")]
    UnsupportedEvent,
    #[error("Missing required user identifier")]
    MissingIdentifier,
}

impl SyncEvent {
    pub fn from_json(body: &Value) -> Result<SyncEvent, InvalidSyncEvent> {
        let obj = body.as_object().ok_or(InvalidSyncEvent::NotAnObject)?;
        let event = obj
            .get("event")
            .cloned()
            .and_then(|e| serde_json::from_value::<SyncKind>(e).ok())
            .ok_or(InvalidSyncEvent::UnsupportedEvent)?;
        let data = obj.get("data").filter(|d| d.is_object()).ok_or(InvalidSyncEvent::MissingIdentifier)?;
        if person_key(data).is_empty() {
            return Err(InvalidSyncEvent::MissingIdentifier);
        }
        Ok(SyncEvent { event, data: data.clone() })
    }

    /// The person's key (see `person_key`): the Genesys `externalId` of the user this event is about.
    pub fn external_id(&self) -> String {
        person_key(&self.data)
    }
}

/// The fields of an HR record that identify the person, in the order they are preferred: the HR
/// employee identifier, as the new-hire webhook sends it (`employeeId`, else `employeeNumber`) or as
/// directory records name it (`externalId`).
pub const PERSON_KEY_FIELDS: &[&str] = &["employeeId", "externalId", "employeeNumber"];

/// The person's key in an HR record (text or number), empty when it has none. Both the new-hire and
/// the sync paths send it as `externalId` and find the user by it, so one person is one user.
pub fn person_key(data: &Value) -> String {
    PERSON_KEY_FIELDS
        .iter()
        .find_map(|field| match data.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// At most this many re-reads when the user changes between our GET and our PATCH.
pub const MAX_PATCH_TRIES: usize = 3;

/// What a sync job did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Synced {
    pub outcome: SyncOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim_id: Option<String>,
    /// The operations sent (empty when nothing differed).
    pub operations: Vec<PatchOperation>,
    pub tries: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub joined_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_groups: Vec<String>,
    /// Attributes Genesys holds differently from what the PATCH asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discrepancies: Vec<Mismatch>,
    /// Managed attributes someone changed inside Genesys since the service last wrote the user
    /// (found when the mirrored version was stale).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// Attributes the mapping produced that Genesys does not keep: never sent, never compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_attributes: Vec<String>,
    /// Why the manager the record names was left out (not found, or the lookup was refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_unresolved: Option<String>,
}

/// One attribute that did not come out as sent.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub field: String,
    pub expected: Value,
    pub actual: Value,
}

impl Synced {
    fn new(outcome: SyncOutcome, scim_id: Option<String>) -> Self {
        Synced {
            outcome,
            scim_id,
            operations: vec![],
            tries: 0,
            joined_groups: vec![],
            left_groups: vec![],
            discrepancies: vec![],
            drift: vec![],
            ignored_attributes: vec![],
            manager_unresolved: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Mapping(#[from] MappingError),
    #[error("{0}")]
    Genesys(#[from] GenesysError),
    #[error("{0}")]
    Transient(String),
    /// Refused by the provisioning policy before any call.
    #[error("{0}")]
    Policy(Violations),
    /// Genesys refused the user as invalid and no correction applies (the create path).
    #[error("{message}")]
    Refused { message: String, status: u16 },
    /// The user the mirror knew is no longer in Genesys (404): deleted there since.
    #[error("user {scim_id} is no longer in Genesys")]
    Gone { scim_id: String },
}

impl From<ProvisionError> for SyncError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::Genesys(g) => SyncError::Genesys(g),
            ProvisionError::Policy(v) => SyncError::Policy(v),
            ProvisionError::Uncorrectable { status, .. } => SyncError::Refused { message: e.to_string(), status },
            other => SyncError::Transient(other.to_string()),
        }
    }
}

impl SyncError {
    /// The HTTP status Genesys answered, when it answered.
    pub fn genesys_status(&self) -> Option<u16> {
        match self {
            SyncError::Genesys(g) => g.status(),
            SyncError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Mapping(_) | SyncError::Policy(_) | SyncError::Refused { .. } => false,
            SyncError::Genesys(e) => e.is_retryable(),
            SyncError::Transient(_) | SyncError::Gone { .. } => true,
        }
    }
}

/// What a sync job works with besides the event.
pub struct SyncContext<'a> {
    pub client: &'a GenesysClient,
    /// What Genesys last confirmed for the users the service manages.
    pub mirror: &'a Mirror,
    pub mapping: &'a Mapping,
    /// The department the event names (`data.departmentCode`), if configured: its group is the
    /// mover's target, and its name replaces the mapped `department`, so the sync writes what the
    /// new-hire path writes for the same department.
    pub department: Option<&'a Department>,
    /// Every configured department group: a mover leaves the others, a leaver all of them.
    pub department_groups: Vec<String>,
    pub on_terminate: TerminateAction,
    pub remove_groups_on_terminate: bool,
    /// What the user must be before anything is sent for it.
    pub policy: &'a Policy,
}

/// The SCIM user a directory event asks for, as its job sends it (and as the intake judges it):
/// the mapping's result without the attributes Genesys does not keep (returned apart, to be
/// reported), with the person key as `externalId` and, for a configured `departmentCode`, that
/// department's name as `department`, so both paths write the same.
pub async fn map_user(
    mapping: &Mapping,
    department: Option<&Department>,
    event: &SyncEvent,
) -> Result<(Value, Vec<String>), MappingError> {
    // A termination needs only the identifier; HR systems often send nothing else with it.
    let mut mapped = match (event.event, mapping.evaluate(&event.data).await) {
        (_, Ok(m)) => m,
        (SyncKind::Terminated, Err(MappingError::NotAUser(_))) => json!({}),
        (_, Err(e)) => return Err(e),
    };
    // What the mapping produced that Genesys does not keep is dropped here: sent, it would be refused
    // or ignored, and compared, it would differ on every event (a PATCH forever).
    let ignored = crate::genesys::models::unknown_attributes(crate::genesys::models::USER, &mut mapped, true);
    let external_id = event.external_id();
    if let Value::Object(user) = &mut mapped {
        user.insert("externalId".to_string(), json!(external_id));
        if let Some(name) = department.map(|d| &d.name) {
            let ext = user.entry(SCHEMA_ENTERPRISE).or_insert_with(|| json!({}));
            if let Value::Object(ext) = ext {
                ext.insert("department".to_string(), json!(name));
            }
        }
    }
    Ok((mapped, ignored))
}

/// Applies one directory event. A user that does not exist yet is created as on the new-hire path.
///
/// A user the mirror knows costs one PATCH guarded by the mirrored version (none when nothing
/// differs); one it does not know costs a lookup first, and enters the mirror.
pub async fn apply(cx: &SyncContext<'_>, event: &SyncEvent) -> Result<Synced, SyncError> {
    let (mut mapped, ignored) = map_user(cx.mapping, cx.department, event).await?;
    if !ignored.is_empty() {
        tracing::warn!(attributes = ?ignored, "the mapping produced attributes Genesys does not keep; ignored");
    }
    // The policy may have changed since intake. A leaver is never held back by it: leaving only
    // takes access away.
    if event.event != SyncKind::Terminated {
        cx.policy.evaluate(&UserView::of_json(&mapped)).into_result().map_err(SyncError::Policy)?;
    }
    let external_id = event.external_id();
    let manager_unresolved = resolve_manager(cx.client, cx.mirror, &mut mapped).await?;
    let user_name = mapped.get("userName").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut done = match cx.mirror.find(&external_id, &user_name).await {
        Some(entry) => {
            let known = Known { entry, from_mirror: true };
            match apply_to(cx, event, &mapped, Some(known)).await {
                // Deleted inside Genesys since the service last wrote it: forget it and go on as for a
                // user the mirror does not know (an update then creates the person again).
                Err(SyncError::Gone { scim_id }) => {
                    cx.mirror.forget(&scim_id).await;
                    let mut done = apply_to(cx, event, &mapped, lookup(cx, &external_id, &user_name).await?).await?;
                    done.drift.insert(0, Drift { field: "id".into(), mirrored: json!(scim_id), genesys: Value::Null });
                    done
                }
                other => other?,
            }
        }
        None => apply_to(cx, event, &mapped, lookup(cx, &external_id, &user_name).await?).await?,
    };
    done.ignored_attributes = ignored;
    done.manager_unresolved = manager_unresolved;
    Ok(done)
}

/// The user for an HR record the mirror does not know, looked up in Genesys; it enters the mirror.
async fn lookup(cx: &SyncContext<'_>, external_id: &str, user_name: &str) -> Result<Option<Known>, SyncError> {
    let Some(user) = find(cx.client, external_id, user_name).await? else { return Ok(None) };
    Ok(cx.mirror.confirm(&user, None).await.map(|entry| Known { entry, from_mirror: false }))
}

/// The event applied to the user known (or not) for it.
async fn apply_to(
    cx: &SyncContext<'_>,
    event: &SyncEvent,
    mapped: &Value,
    known: Option<Known>,
) -> Result<Synced, SyncError> {
    let client = cx.client;
    let (mut known, mut done) = match (event.event, known) {
        (SyncKind::Terminated, None) => return Ok(Synced::new(SyncOutcome::NotFound, None)),
        (SyncKind::Terminated, Some(mut known)) => {
            let mut done = match cx.on_terminate {
                TerminateAction::Deactivate => {
                    patch_to_match(
                        client,
                        cx.mirror,
                        &mut known,
                        &json!({"active": false}),
                        SyncOutcome::Deactivated,
                        SyncOutcome::AlreadyInactive,
                    )
                    .await?
                }
                TerminateAction::Delete => {
                    // Out of the groups first: a deleted user can no longer be removed from them.
                    let left = leave_groups(cx, &mut known, None).await?;
                    let drift = delete(client, cx.mirror, &mut known).await?;
                    let mut done = Synced::new(SyncOutcome::Deleted, Some(known.entry.scim_id));
                    done.left_groups = left;
                    done.drift = drift;
                    return Ok(done);
                }
            };
            if cx.remove_groups_on_terminate {
                done.left_groups = leave_groups(cx, &mut known, None).await?;
                record_groups(cx.mirror, &known, &done).await;
            }
            return Ok(done);
        }
        (_, None) => {
            let mut user: ScimUser = serde_json::from_value(mapped.clone())
                .map_err(|e| MappingError::NotAUser(format!("it does not read as a SCIM user: {e}")))?;
            // A new user is active, as on the new-hire path, unless the mapping says otherwise.
            user.active.get_or_insert(true);
            let id =
                super::provision::create_user(client, cx.mirror, cx.policy, user, cx.department, None).await?.scim_id;
            return Ok(Synced { tries: 1, ..Synced::new(SyncOutcome::Created, Some(id)) });
        }
        (_, Some(mut known)) => {
            let done =
                patch_to_match(client, cx.mirror, &mut known, mapped, SyncOutcome::Updated, SyncOutcome::Unchanged)
                    .await?;
            (known, done)
        }
    };
    // A mover: into the new department's group first, then out of the others, so the user is
    // never without a department group and, once the job succeeds, in exactly one. Which groups
    // the user is in comes from what Genesys last said (its read-only `groups`), so a user who
    // stays in their department costs no group call.
    if let Some(target) = cx.department.map(|d| d.group_id.to_string()) {
        if !known.entry.groups.contains(&target) {
            super::provision::add_member(client, &target, &known.entry.scim_id).await?;
            known.entry.groups.push(target.clone());
            done.joined_groups.push(target.clone());
        }
        done.left_groups = leave_groups(cx, &mut known, Some(&target)).await?;
        record_groups(cx.mirror, &known, &done).await;
    }
    Ok(done)
}

/// Records the groups a job joined or left in the mirror.
async fn record_groups(mirror: &Mirror, known: &Known, done: &Synced) {
    if !done.joined_groups.is_empty() || !done.left_groups.is_empty() {
        mirror.put(&known.entry).await;
    }
}

/// A manager given by email (as HR knows them) becomes `{"value": <Genesys user id>}`; one that is
/// not in Genesys, or whose lookup Genesys refuses (a 4xx), is left out rather than failing the whole
/// update: returns why. A manager the mirror knows costs no call.
async fn resolve_manager(
    client: &GenesysClient,
    mirror: &Mirror,
    mapped: &mut Value,
) -> Result<Option<String>, SyncError> {
    let Some(ext) = mapped.get_mut(SCHEMA_ENTERPRISE).and_then(Value::as_object_mut) else { return Ok(None) };
    let Some(email) = ext.get("manager").and_then(|m| m.get("value")).and_then(Value::as_str).map(str::to_string)
    else {
        return Ok(None);
    };
    if !email.contains('@') {
        return Ok(None);
    }
    match super::provision::find_manager(client, mirror, &email).await? {
        Ok(id) => {
            ext.insert("manager".to_string(), json!({ "value": id }));
            Ok(None)
        }
        Err(reason) => {
            tracing::warn!(manager = %email, %reason, "manager left out of the update");
            ext.remove("manager");
            Ok(Some(reason))
        }
    }
}

/// Takes the user out of every department group but `keep` that it is known to be in; returns
/// those. One PATCH each, without `If-Match`; a member already gone (`noTarget`) is success.
async fn leave_groups(
    cx: &SyncContext<'_>,
    known: &mut Known,
    keep: Option<&String>,
) -> Result<Vec<String>, SyncError> {
    let mut left = Vec::new();
    let user_id = known.entry.scim_id.clone();
    let leaving: Vec<&String> =
        cx.department_groups.iter().filter(|g| Some(*g) != keep && known.entry.groups.contains(g)).collect();
    for group in leaving {
        super::provision::remove_member(cx.client, group, &user_id).await?;
        known.entry.groups.retain(|g| g != group);
        left.push(group.clone());
    }
    Ok(left)
}

/// Deletes the user with `If-Match`; a stale version is re-read (and is drift when the version came
/// from the mirror), a user already gone is success. Returns the drift found on the way.
async fn delete(client: &GenesysClient, mirror: &Mirror, known: &mut Known) -> Result<Vec<Drift>, SyncError> {
    let id = known.entry.scim_id.clone();
    let mut drift = Vec::new();
    for _ in 0..MAX_PATCH_TRIES {
        match client.delete_user(&id, known.entry.version.as_deref()).await {
            Ok(_) => {
                mirror.forget(&id).await;
                return Ok(drift);
            }
            Err(e) if e.status() == Some(404) => {
                mirror.forget(&id).await;
                return Ok(drift);
            }
            Err(e) if super::provision::is_stale_version(&e) => reread(client, mirror, known, &mut drift).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SyncError::Transient(format!("user {id} changed on each of {MAX_PATCH_TRIES} tries; will try again later")))
}

/// After a stale version: GET the user, note what changed since it was known, and know it afresh.
async fn reread(
    client: &GenesysClient,
    mirror: &Mirror,
    known: &mut Known,
    drift: &mut Vec<Drift>,
) -> Result<(), SyncError> {
    let fresh = mirror.read(client, &known.entry.scim_id).await?;
    let found = super::mirror::drift(&known.entry.attributes, &fresh.entry.attributes);
    if found.is_empty() {
        tracing::info!(scim_id = %known.entry.scim_id, "the user's version moved without a change to a managed attribute");
    }
    drift.extend(found);
    *known = fresh;
    Ok(())
}

/// The Genesys user for an HR record: by `externalId eq`, else by `userName eq`.
/// The list answer carries each user whole, `meta.version` and `groups` included, so it doubles as
/// the read the first PATCH is guarded by: a user the mirror does not know costs two requests.
pub(crate) async fn find(
    client: &GenesysClient,
    external_id: &str,
    user_name: &str,
) -> Result<Option<ScimUser>, GenesysError> {
    if !external_id.is_empty()
        && let Some(u) = client.find_users(&format!("externalId eq {}", quote(external_id))).await?.into_iter().next()
    {
        return Ok(Some(u));
    }
    if user_name.is_empty() {
        return Ok(None);
    }
    Ok(client.find_users(&format!("userName eq {}", quote(user_name))).await?.into_iter().next())
}

/// PATCH only what differs from the known user, with `If-Match: <its version>`, and record what
/// Genesys answered in the mirror. When Genesys answers `invalidVers` (or 412), someone changed the
/// user since: re-read it, note the drift, recompute and try again, at most `MAX_PATCH_TRIES` times.
/// A user known only from the mirror that Genesys no longer has is `SyncError::Gone`.
pub(crate) async fn patch_to_match(
    client: &GenesysClient,
    mirror: &Mirror,
    known: &mut Known,
    wanted: &Value,
    changed: SyncOutcome,
    same: SyncOutcome,
) -> Result<Synced, SyncError> {
    let id = known.entry.scim_id.clone();
    let mut drift = Vec::new();
    for tries in 1..=MAX_PATCH_TRIES {
        if known.entry.version.is_none() {
            // Nothing to guard a PATCH with: read the user first.
            *known = match mirror.read(client, &id).await {
                Err(e) if e.status() == Some(404) && known.from_mirror => return Err(SyncError::Gone { scim_id: id }),
                read => read?,
            };
        }
        let operations = diff(&known.entry.attributes, wanted);
        if operations.is_empty() {
            return Ok(Synced { operations, tries, drift, ..Synced::new(same, Some(id)) });
        }
        match client.patch_user(&id, &PatchOp::new(operations.clone()), known.entry.version.as_deref()).await {
            Ok(answer) => {
                let groups = std::mem::take(&mut known.entry.groups);
                match (answer.value.id.is_some(), answer.etag.as_deref()) {
                    // What Genesys answered is what it holds.
                    (true, etag) => match mirror.entry(&answer.value, etag) {
                        Some(entry) => known.entry = entry,
                        None => *known = mirror.read(client, &id).await?,
                    },
                    // A 204 with the new version: Genesys holds what was sent.
                    (false, Some(etag)) => {
                        apply_operations(&mut known.entry.attributes, &operations);
                        known.entry.version = Some(etag.to_string());
                        known.entry.groups = groups;
                    }
                    (false, None) => *known = mirror.read(client, &id).await?,
                }
                known.from_mirror = false;
                mirror.put(&known.entry).await;
                // Compare what Genesys holds with what was asked for.
                let after = &known.entry.attributes;
                let discrepancies = diff(after, wanted)
                    .into_iter()
                    .filter_map(|op| {
                        let field = op.path?;
                        Some(Mismatch {
                            actual: value_at(after, &field),
                            expected: op.value.unwrap_or_default(),
                            field,
                        })
                    })
                    .collect();
                return Ok(Synced {
                    operations,
                    tries,
                    discrepancies,
                    drift,
                    ..Synced::new(changed, Some(id.to_string()))
                });
            }
            // A stale If-Match: 400 invalidVers from Genesys, 412 from RFC 7644 servers and proxies.
            Err(e) if super::provision::is_stale_version(&e) => reread(client, mirror, known, &mut drift).await?,
            Err(e) if e.status() == Some(404) && known.from_mirror => return Err(SyncError::Gone { scim_id: id }),
            Err(e) => return Err(e.into()),
        }
    }
    Err(SyncError::Transient(format!("user {id} changed on each of {MAX_PATCH_TRIES} tries; will try again later")))
}

/// Applies `replace` operations made by `diff` to a user as JSON (what a 204 says Genesys now holds).
fn apply_operations(user: &mut Value, operations: &[PatchOperation]) {
    for op in operations {
        let (Some(path), Some(value)) = (op.path.as_deref(), op.value.as_ref()) else { continue };
        let Value::Object(user) = user else { return };
        if let Some((attr, rest)) = path.split_once("[type eq \"") {
            let kind = rest.split('"').next().unwrap_or_default();
            let list = user.entry(attr).or_insert_with(|| json!([]));
            if let Value::Array(list) = list {
                match list.iter_mut().find(|e| e.get("type").and_then(Value::as_str) == Some(kind)) {
                    Some(Value::Object(e)) => {
                        e.insert("value".into(), value.clone());
                    }
                    _ => list.push(json!({"value": value, "type": kind})),
                }
            }
            continue;
        }
        let extension = [SCHEMA_ENTERPRISE, SCHEMA_GENESYS]
            .into_iter()
            .find_map(|schema| Some((schema, path.strip_prefix(schema)?.strip_prefix(':')?)));
        match extension {
            Some((schema, attr)) => {
                if let Value::Object(ext) = user.entry(schema).or_insert_with(|| json!({})) {
                    ext.insert(attr.to_string(), value.clone());
                }
            }
            None => {
                user.insert(path.to_string(), value.clone());
            }
        }
    }
}

/// The value at one of the paths `diff` produces (null when absent).
pub(crate) fn value_at(user: &Value, path: &str) -> Value {
    if let Some((attr, rest)) = path.split_once("[type eq \"") {
        let kind = rest.split('"').next().unwrap_or_default();
        return user
            .get(attr)
            .and_then(Value::as_array)
            .and_then(|l| l.iter().find(|e| e.get("type").and_then(Value::as_str) == Some(kind)))
            .and_then(|e| e.get("value"))
            .cloned()
            .unwrap_or(Value::Null);
    }
    for schema in [SCHEMA_ENTERPRISE, SCHEMA_GENESYS] {
        if let Some(attr) = path.strip_prefix(schema).and_then(|p| p.strip_prefix(':')) {
            return user.get(schema).and_then(|e| e.get(attr)).cloned().unwrap_or(Value::Null);
        }
    }
    path.split('.').try_fold(user, |v, k| v.get(k)).cloned().unwrap_or(Value::Null)
}

/// The `replace` operations that make `current` carry every attribute `wanted` has. Attributes the
/// mapping leaves out are not touched; multi-valued attributes are addressed by their `type`. Only
/// attributes Genesys keeps (the SDK models) are compared: one it does not keep never comes back on
/// a read, so comparing it would PATCH it on every event.
pub fn diff(current: &Value, wanted: &Value) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let replace = |ops: &mut Vec<PatchOperation>, path: String, value: &Value| {
        ops.push(PatchOperation { op: "replace".into(), path: Some(path), value: Some(value.clone()) });
    };
    for key in ["userName", "displayName", "title", "externalId", "active"] {
        if let Some(w) = wanted.get(key)
            && current.get(key) != Some(w)
        {
            replace(&mut ops, key.to_string(), w);
        }
    }
    for attr in ["emails", "phoneNumbers"] {
        for entry in wanted.get(attr).and_then(Value::as_array).into_iter().flatten() {
            let (Some(kind), Some(value)) = (entry.get("type").and_then(Value::as_str), entry.get("value")) else {
                continue;
            };
            let have = current
                .get(attr)
                .and_then(Value::as_array)
                .and_then(|list| list.iter().find(|e| e.get("type").and_then(Value::as_str) == Some(kind)))
                .and_then(|e| e.get("value"));
            if have != Some(value) {
                replace(&mut ops, format!("{attr}[type eq \"{kind}\"].value"), value);
            }
        }
    }
    for schema in [SCHEMA_ENTERPRISE, SCHEMA_GENESYS] {
        let model = if schema == SCHEMA_ENTERPRISE { "ScimV2EnterpriseUser" } else { "ScimUserExtensions" };
        if let Some(Value::Object(ext)) = wanted.get(schema) {
            for (k, w) in ext.iter().filter(|(k, _)| crate::genesys::models::attribute(model, k).is_some()) {
                let have = current.get(schema).and_then(|e| e.get(k));
                // A manager is who they are (`value`); Genesys adds a display name of its own.
                let same =
                    if k == "manager" { have.and_then(|h| h.get("value")) == w.get("value") } else { have == Some(w) };
                if !same {
                    replace(&mut ops, format!("{schema}:{k}"), w);
                }
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_with_the_contract_errors() {
        let ok = SyncEvent::from_json(&json!({"event": "user.updated", "data": {"externalId": "E-1"}})).unwrap();
        assert_eq!(ok.event, SyncKind::Updated);
        assert_eq!(ok.external_id(), "E-1");
        // The person key: employeeId, else externalId, else employeeNumber (text or number).
        let key =
            |data: Value| SyncEvent::from_json(&json!({"event": "user.updated", "data": data})).unwrap().external_id();
        assert_eq!(key(json!({"employeeId": "E-7", "externalId": "X", "employeeNumber": 7})), "E-7");
        assert_eq!(key(json!({"externalId": " X-7 ", "employeeNumber": 7})), "X-7");
        assert_eq!(key(json!({"employeeNumber": 7})), "7");
        let e = |v: Value| SyncEvent::from_json(&v).unwrap_err().to_string();
        assert_eq!(e(json!({"event": "user.deleted", "data": {"externalId": "E"}})), "Unsupported event type");
        assert_eq!(e(json!({"data": {"externalId": "E"}})), "Unsupported event type");
        assert_eq!(e(json!({"event": "user.created", "data": {}})), "Missing required user identifier");
        assert_eq!(
            e(json!({"event": "user.created", "data": {"externalId": " "}})),
            "Missing required user identifier"
        );
        assert_eq!(e(json!({"event": "user.created"})), "Missing required user identifier");
        assert_eq!(e(json!([1])), "Request body must be a JSON object");
    }

    #[test]
    fn a_204_is_read_as_genesys_holding_exactly_what_was_sent() {
        let mut held = json!({
            "userName": "jane@example.com", "title": "Engineer",
            "emails": [{"value": "jane@example.com", "type": "work", "primary": true}],
            SCHEMA_ENTERPRISE: {"department": "Engineering"}
        });
        let wanted = json!({
            "userName": "jane@example.com", "title": "Lead",
            "emails": [{"value": "jane.roe@example.com", "type": "work"}],
            "phoneNumbers": [{"value": "+1 555", "type": "work"}],
            SCHEMA_ENTERPRISE: {"department": "Sales", "employeeNumber": "7"}
        });
        let sent = diff(&held, &wanted);
        apply_operations(&mut held, &sent);
        // Nothing is left to send: the mirror now holds what Genesys holds after the PATCH.
        assert!(diff(&held, &wanted).is_empty(), "{held}");
        assert_eq!(held["emails"][0]["primary"], true, "the entry's other fields stay");
        assert_eq!(held["phoneNumbers"], json!([{"value": "+1 555", "type": "work"}]));
    }

    #[test]
    fn the_diff_is_minimal_and_uses_real_scim_paths() {
        let current = json!({
            "userName": "jane@example.com", "displayName": "Jane Doe", "title": "Engineer",
            "emails": [{"value": "jane@example.com", "type": "work", "primary": true}, {"value": "jane@example.com", "type": "other"}],
            SCHEMA_ENTERPRISE: {"department": "Engineering", "employeeNumber": "7"}
        });
        let wanted = json!({
            "userName": "jane@example.com", "displayName": "Jane Roe", "title": "Engineer",
            "name": {"givenName": "Jane", "familyName": "Roe"},
            "nickName": "JR",
            "emails": [{"value": "jane@example.com", "type": "work", "primary": true}],
            "phoneNumbers": [{"value": "+1 555", "type": "work"}],
            SCHEMA_ENTERPRISE: {"department": "Sales", "employeeNumber": "7", "costCenter": "CC-1"}
        });
        let paths: Vec<String> = diff(&current, &wanted).into_iter().filter_map(|o| o.path).collect();
        assert_eq!(
            paths,
            [
                "displayName".to_string(),
                "phoneNumbers[type eq \"work\"].value".to_string(),
                format!("{SCHEMA_ENTERPRISE}:department"),
            ]
        );
        assert!(diff(&current, &current).is_empty());
    }
}
