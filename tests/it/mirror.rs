//! The mirror of Genesys users: an update to a user the service wrote is one PATCH with the version
//! Genesys confirmed last; an edit made inside Genesys is found on the way (drift) and still updated.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::directory::{record, sync};

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
    a_user_changed_inside_genesys_is_reread_reported_as_drift_and_still_updated_on(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_user_changed_inside_genesys_is_reread_reported_as_drift_and_still_updated_on_postgres() {
    a_user_changed_inside_genesys_is_reread_reported_as_drift_and_still_updated_on(Backend::Postgres).await;
}

async fn a_user_changed_inside_genesys_is_reread_reported_as_drift_and_still_updated_on(backend: Backend) {
    let emulator = start_emulator().await;
    // PostgreSQL without TEST_DATABASE_URL: SKIPPED (printed by TestDb).
    let Some(app) = Spawn::new(backend).provisioning(&emulator).start().await else { return };
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

#[tokio::test]
async fn reconcile_reports_and_repairs_a_mirror_edited_behind_the_services_back() {
    reconcile_reports_and_repairs_a_mirror_edited_behind_the_services_back_on(Backend::Sqlite).await;
}

#[tokio::test]
async fn reconcile_reports_and_repairs_a_mirror_edited_behind_the_services_back_on_postgres() {
    reconcile_reports_and_repairs_a_mirror_edited_behind_the_services_back_on(Backend::Postgres).await;
}

async fn reconcile_reports_and_repairs_a_mirror_edited_behind_the_services_back_on(backend: Backend) {
    let emulator = start_emulator().await;
    // PostgreSQL without TEST_DATABASE_URL: SKIPPED (printed by TestDb).
    let Some(app) = Spawn::new(backend).provisioning(&emulator).start().await else { return };
    let mut ids = Vec::new();
    for n in 0..30 {
        let done = sync(&app, "user.created", record(&format!("E-5{n:02}"), &format!("r{n}@example.com"))).await;
        ids.push(done["result"]["scimId"].as_str().unwrap().to_string());
    }
    // Inside Genesys: a title edited, a user deleted, and a user made by someone else with an externalId.
    emulator.edit_user(&ids[0], |u| u.title = Some("Edited in Genesys".into())).unwrap();
    assert!(emulator.remove_user(&ids[1]));
    let stranger = emulator.insert_user(genesys_emulator::wire::ScimUser {
        user_name: "stranger@example.com".into(),
        display_name: Some("Stranger".into()),
        active: Some(true),
        external_id: Some("E-999".into()),
        ..Default::default()
    });
    // Behind the service's back: the mirror entry of another user is edited in the database.
    let mut tampered = app.store.mirror_get(&ids[2]).await.unwrap().unwrap();
    tampered.attributes["displayName"] = json!("Tampered");
    app.store.mirror_put(&tampered).await.unwrap();

    let before = api_routes(&emulator);
    let (status, answer) = app.admin(reqwest::Method::POST, "/admin/reconcile").await;
    assert_eq!(status, 202, "{answer}");
    let audit_id: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
    let job = app.wait_for_state(audit_id, "succeeded", Duration::from_secs(15)).await;
    let report = &job["result"];
    // 29 active users of ours plus the stranger: two pages of at most 25, then the (empty) inactive list.
    assert_eq!((report["pages"].clone(), report["listed"].clone()), (json!(3), json!(30)), "{report}");
    let lists: Vec<_> = emulator
        .list_queries()
        .into_iter()
        .filter(|q| q.contains("attributes=") || q.contains("startIndex="))
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists.iter().all(|q| q.contains("count=25") && q.contains("attributes=")), "{lists:?}");
    let after = api_routes(&emulator);
    assert_eq!(after["GET /api/v2/scim/v2/users"] - before.get("GET /api/v2/scim/v2/users").copied().unwrap_or(0), 3);

    let drifted: Vec<(String, Value)> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["scimId"].as_str().unwrap().to_string(), d["fields"].clone()))
        .collect();
    // In the order Genesys lists them.
    assert_eq!(
        drifted,
        [
            (ids[0].clone(), json!([{"field": "title", "mirrored": "Engineer", "genesys": "Edited in Genesys"}])),
            (ids[2].clone(), json!([{"field": "displayName", "mirrored": "Tampered", "genesys": "Jane Doe"}])),
        ]
    );
    assert_eq!(report["missing"], json!([{"scimId": ids[1], "externalId": "E-501"}]));
    assert_eq!(report["added"], 1);

    // Repaired: the mirror holds what Genesys holds; the deleted user is gone from it.
    let repaired = app.store.mirror_get(&ids[2]).await.unwrap().unwrap();
    assert_eq!(repaired.attributes["displayName"], "Jane Doe");
    assert_eq!(app.store.mirror_get(&ids[0]).await.unwrap().unwrap().attributes["title"], "Edited in Genesys");
    assert!(app.store.mirror_get(&ids[1]).await.unwrap().is_none());
    assert!(app.store.mirror_get(stranger.id.as_deref().unwrap()).await.unwrap().is_some());
    // The drift is in the report endpoint and the audit.
    let line = app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "mirror.reconciled").await;
    assert_eq!((line["drifted"].clone(), line["missing"].clone()), (json!(2), json!(1)));
    app.wait_for_audit(Duration::from_secs(5), |l| l["event"] == "discrepancy.drift" && l["field"] == "id").await;

    // A second run finds nothing new.
    let (_, answer) = app.admin(reqwest::Method::POST, "/admin/reconcile").await;
    let again: uuid::Uuid = answer["auditId"].as_str().unwrap().parse().unwrap();
    let job = app.wait_for_state(again, "succeeded", Duration::from_secs(15)).await;
    assert_eq!((job["result"]["drift"].clone(), job["result"]["refreshed"].clone()), (json!([]), json!(0)));
    app.shutdown().await;
}

/// `genesys-provisioner reconcile` (docs/operations.md) asks the running service and prints the report.
#[tokio::test]
async fn the_reconcile_command_prints_the_report_of_the_running_service() {
    let emulator = start_emulator().await;
    let app = Spawn::new(Backend::Sqlite).provisioning(&emulator).start().await.unwrap();
    let done = sync(&app, "user.created", record("E-600", "cli@example.com")).await;
    let id = done["result"]["scimId"].as_str().unwrap().to_string();
    emulator.edit_user(&id, |u| u.title = Some("Edited in Genesys".into())).unwrap();

    let base = app.base.clone();
    let run = move |token: &'static str| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            crate::common::process::cli(&["reconcile", "--url", &base], &[("ADMIN_TOKEN", token)])
        })
    };
    let (code, out, err) = run(ADMIN_TOKEN).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["drift"][0]["scimId"], id.as_str(), "{report}");
    assert_eq!(report["drift"][0]["fields"][0]["genesys"], "Edited in Genesys");

    let (code, _, err) = run("wrong-token").await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 401"), "{err}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_mirrored_user_deleted_inside_genesys_is_forgotten_and_created_again() {
    let emulator = start_emulator().await;
    let app = Spawn::new(Backend::Sqlite).provisioning(&emulator).start().await.unwrap();
    let created = sync(&app, "user.created", record("E-700", "gone@example.com")).await;
    let id = created["result"]["scimId"].as_str().unwrap().to_string();
    assert!(emulator.remove_user(&id));

    let mut data = record("E-700", "gone@example.com");
    data["jobTitle"] = json!("Returning Engineer");
    let job = sync(&app, "user.updated", data).await;
    let result = &job["result"];
    assert_eq!(result["outcome"], "created", "{result}");
    assert_ne!(result["scimId"], id.as_str());
    assert_eq!(result["drift"], json!([{"field": "id", "mirrored": id, "genesys": null}]));
    assert!(app.store.mirror_get(&id).await.unwrap().is_none(), "the deleted user left the mirror");
    let new_id = result["scimId"].as_str().unwrap();
    assert_eq!(app.store.mirror_find("E-700", "").await.unwrap().unwrap().scim_id, new_id);
    app.shutdown().await;
}
