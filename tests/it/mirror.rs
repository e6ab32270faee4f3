//! The mirror of Genesys users: an update to a user the service wrote is one PATCH with the version
//! Genesys confirmed last; an edit made inside Genesys is found on the way (drift) and still updated.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const SYNC: &str = "/webhooks/directory-sync";

fn record(external_id: &str, email: &str) -> Value {
    json!({
        "externalId": external_id, "firstName": "Jane", "lastName": "Doe", "workEmail": email,
        "department": "Engineering", "jobTitle": "Engineer", "employeeNumber": "1042", "hireDate": "2026-12-01"
    })
}

async fn sync(app: &TestApp, kind: &str, data: Value) -> Value {
    let id = format!("sync-{}", uuid::Uuid::new_v4().simple());
    let (status, answer) = app.post_signed(SYNC, &json!({"event": kind, "data": data}), &id).await;
    assert_eq!(status, 202, "{answer}");
    let audit_id: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
    app.wait_for_state(audit_id, "succeeded", Duration::from_secs(15)).await
}

/// Requests to the Genesys API so far, by `METHOD /route`.
fn api_routes(emulator: &genesys_emulator::Emulator) -> std::collections::BTreeMap<String, u64> {
    emulator.stats().requests_by_route.into_iter().filter(|(r, _)| r.contains(" /api/v2/")).collect()
}

/// The API requests made by `f`, by route (routes with none left out).
async fn calls_during<F: std::future::Future<Output = Value>>(
    emulator: &genesys_emulator::Emulator,
    f: F,
) -> (Value, Vec<(String, u64)>) {
    let before = api_routes(emulator);
    let out = f.await;
    let after = api_routes(emulator);
    let calls = after
        .into_iter()
        .filter_map(|(route, n)| {
            let d = n - before.get(&route).copied().unwrap_or(0);
            (d > 0).then_some((route, d))
        })
        .collect();
    (out, calls)
}

fn version_of(emulator: &genesys_emulator::Emulator, id: &str) -> String {
    let user = emulator.users().into_iter().find(|u| u.id.as_deref() == Some(id)).unwrap();
    user.meta.unwrap().version.unwrap()
}

#[tokio::test]
async fn an_update_to_a_mirrored_user_is_one_patch_with_the_mirrored_version() {
    let emulator = start_emulator().await;
    let app = Spawn::new(Backend::Sqlite).provisioning(&emulator).start().await.unwrap();
    let created = sync(&app, "user.created", record("E-300", "mirror@example.com")).await;
    assert_eq!(created["result"]["outcome"], "created");
    let id = created["result"]["scimId"].as_str().unwrap().to_string();
    let mut confirmed = version_of(&emulator, &id);
    for title in ["Staff Engineer", "Principal Engineer"] {
        let mut data = record("E-300", "mirror@example.com");
        data["jobTitle"] = json!(title);
        let (job, calls) = calls_during(&emulator, sync(&app, "user.updated", data)).await;
        assert_eq!(job["result"]["outcome"], "updated", "{title}");
        assert_eq!(calls, [("PATCH /api/v2/scim/v2/users/{id}".to_string(), 1)], "{title}: one PATCH, no lookup");
        let sent = emulator.received().into_iter().rev().find(|r| r.method == "PATCH").unwrap();
        assert_eq!(sent.if_match.as_deref(), Some(confirmed.as_str()), "{title}: guarded by the mirrored version");
        assert_eq!(sent.body["Operations"], json!([{"op": "replace", "path": "title", "value": title}]));
        assert_eq!(job["result"]["drift"], Value::Null, "the service's own writes are not drift");
        // The version this PATCH was answered with guards the next one.
        let next = version_of(&emulator, &id);
        assert_ne!(next, confirmed);
        confirmed = next;
    }

    // Nothing differs from the mirror: no call at all.
    let (job, calls) = calls_during(
        &emulator,
        sync(&app, "user.updated", {
            let mut data = record("E-300", "mirror@example.com");
            data["jobTitle"] = json!("Principal Engineer");
            data
        }),
    )
    .await;
    assert_eq!(job["result"]["outcome"], "unchanged");
    assert!(calls.is_empty(), "{calls:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_user_changed_inside_genesys_is_reread_reported_as_drift_and_still_updated() {
    let emulator = start_emulator().await;
    let app = Spawn::new(Backend::Sqlite).provisioning(&emulator).start().await.unwrap();
    let since = chrono::Utc::now().to_rfc3339();
    let created = sync(&app, "user.created", record("E-310", "drift.inside@example.com")).await;
    let id = created["result"]["scimId"].as_str().unwrap().to_string();
    // Someone changes the title and the department in the Genesys admin UI.
    emulator
        .edit_user(&id, |u| {
            u.title = Some("Edited in Genesys".into());
            u.enterprise.get_or_insert_default().department = Some("Marketing".into());
        })
        .unwrap();

    let mut data = record("E-310", "drift.inside@example.com");
    data["lastName"] = json!("Roe");
    let (job, calls) = calls_during(&emulator, sync(&app, "user.updated", data)).await;
    // The PATCH with the mirrored version is refused (invalidVers), the user is read, and the PATCH
    // made from the fresh state goes through: three calls, only because someone else touched it.
    assert_eq!(
        calls,
        [("GET /api/v2/scim/v2/users/{id}".to_string(), 1), ("PATCH /api/v2/scim/v2/users/{id}".to_string(), 2)]
    );
    let result = &job["result"];
    assert_eq!(result["outcome"], "updated");
    let enterprise_department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department";
    assert_eq!(
        result["drift"],
        json!([
            {"field": "title", "mirrored": "Engineer", "genesys": "Edited in Genesys"},
            {"field": enterprise_department, "mirrored": "Engineering", "genesys": "Marketing"}
        ])
    );
    // Still updated: HR's values win over the edit, and the new name is there.
    let user = emulator.users().into_iter().find(|u| u.id.as_deref() == Some(id.as_str())).unwrap();
    assert_eq!((user.title.as_deref(), user.display_name.as_deref()), (Some("Engineer"), Some("Jane Roe")));
    assert_eq!(user.enterprise.unwrap().department.as_deref(), Some("Engineering"));

    // The drift is in the discrepancy report as its own kind, and in the audit.
    let (status, report) =
        app.admin_get(&format!("/admin/reports/discrepancies?since={}", since.replace('+', "%2B"))).await;
    assert_eq!(status, 200, "{report}");
    let drift: Vec<&Value> =
        report["discrepancies"].as_array().unwrap().iter().filter(|d| d["kind"] == "drift").collect();
    assert_eq!(drift.len(), 2, "{report}");
    assert_eq!(
        (
            drift[0]["field"].clone(),
            drift[0]["expected"].clone(),
            drift[0]["actual"].clone(),
            drift[0]["externalId"].clone()
        ),
        (json!("title"), json!("Engineer"), json!("Edited in Genesys"), json!("E-310"))
    );
    let line = app
        .wait_for_audit(Duration::from_secs(5), |l| l["event"] == "discrepancy.drift" && l["field"] == "title")
        .await;
    assert_eq!((line["mirrored"].clone(), line["genesys"].clone()), (json!("Engineer"), json!("Edited in Genesys")));

    // The mirror now holds what Genesys confirmed: the next update is one PATCH again.
    let mut data = record("E-310", "drift.inside@example.com");
    data["lastName"] = json!("Poe");
    let (_, calls) = calls_during(&emulator, sync(&app, "user.updated", data)).await;
    assert_eq!(calls, [("PATCH /api/v2/scim/v2/users/{id}".to_string(), 1)]);
    app.shutdown().await;
}

#[tokio::test]
async fn a_mover_changes_groups_from_what_genesys_said_without_reading_a_group() {
    let emulator = start_emulator().await;
    let app = Spawn::new(Backend::Sqlite).provisioning(&emulator).start().await.unwrap();
    let mut data = record("E-320", "mover@example.com");
    data["departmentCode"] = json!("ENG");
    let created = sync(&app, "user.created", data.clone()).await;
    let id = created["result"]["scimId"].as_str().unwrap().to_string();
    let (eng, sales) = (GROUPS[0].1, GROUPS[2].1);
    assert!(emulator.group(eng).unwrap().members.iter().any(|m| m.value == id));

    // Same department, new title: the user's groups are known, so no group call.
    data["jobTitle"] = json!("Lead");
    let (_, calls) = calls_during(&emulator, sync(&app, "user.updated", data.clone())).await;
    assert_eq!(calls, [("PATCH /api/v2/scim/v2/users/{id}".to_string(), 1)]);

    // A move to SALES: the user PATCH (department), one add, one remove, and no group read.
    data["departmentCode"] = json!("SALES");
    let (job, calls) = calls_during(&emulator, sync(&app, "user.updated", data)).await;
    assert_eq!(
        calls,
        [("PATCH /api/v2/scim/v2/groups/{id}".to_string(), 2), ("PATCH /api/v2/scim/v2/users/{id}".to_string(), 1)]
    );
    assert_eq!(
        (job["result"]["joinedGroups"].clone(), job["result"]["leftGroups"].clone()),
        (json!([sales]), json!([eng]))
    );
    assert!(emulator.group(sales).unwrap().members.iter().any(|m| m.value == id));
    assert!(!emulator.group(eng).unwrap().members.iter().any(|m| m.value == id));
    app.shutdown().await;
}
