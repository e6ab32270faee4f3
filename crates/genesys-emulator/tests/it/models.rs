//! The models validator, and the one pinned copy of the models file it reads.

use std::path::PathBuf;

use genesys_emulator::models::{self, CREATE_USER, GROUP, Problem, USER, Violation};
use genesys_emulator::wire::{
    EnterpriseUser, SCHEMA_ENTERPRISE, SCHEMA_GENESYS, SCHEMA_PATCH_OP, ScimGroup, ScimGroupRef, ScimManager,
    ScimMember, ScimMeta, ScimMultiValue, ScimUser, ScimValue,
};
use serde_json::json;

/// Where the project's shared references live: beside the checkout.
fn shared_models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/genesys-sdk-models.json")
}

#[test]
fn the_pinned_models_file_is_the_shared_one() {
    let shared = shared_models();
    let Ok(text) = std::fs::read_to_string(&shared) else {
        // libtest shows `eprintln!` only for failing tests; a direct write is seen by whoever runs them.
        use std::io::Write;
        let _ =
            writeln!(std::io::stderr(), "SKIPPED: the pinned models file check ({} is not there)", shared.display());
        return;
    };
    assert!(text == models::PINNED, "src/genesys/sdk-models.json differs from {}: copy it again", shared.display());
}

#[test]
fn the_pinned_models_file_has_the_models_the_emulator_takes() {
    for model in [CREATE_USER, USER, GROUP, models::PATCH_REQUEST, "ScimV2EnterpriseUser", "ScimEmail"] {
        assert!(!models::attributes(model).is_empty(), "{model} is missing from the pinned models file");
    }
    assert!(models::attribute(USER, "name").is_none(), "Genesys has no `name` attribute");
    assert_eq!(models::attribute(USER, "USERNAME"), Some(("userName", "str")));
    assert_eq!(models::enum_values("ScimEmail", "type"), Some(vec!["work", "other"]));
    assert_eq!(models::model_of("list[ScimEmail]"), Some("ScimEmail"));
    assert_eq!(models::model_of("list[str]"), None);
}

fn paths(found: &[Violation]) -> Vec<String> {
    let mut p: Vec<String> = found.iter().map(|v| v.path.clone()).collect();
    p.sort();
    p
}

#[test]
fn the_validator_refuses_name_on_a_user() {
    let user = json!({"userName": "a@x.io", "displayName": "A", "name": {"givenName": "A", "familyName": "B"}});
    for model in [CREATE_USER, USER] {
        let found = models::validate(model, &user);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "name");
        assert_eq!(found[0].problem, Problem::UnknownAttribute);
        assert_eq!(found[0].to_string(), format!("name: not an attribute of {model}"));
    }
    // And in a PATCH, by path or inside a path-less value.
    let by_path = json!({"schemas": [SCHEMA_PATCH_OP],
        "Operations": [{"op": "replace", "path": "name.familyName", "value": "Roe"}]});
    assert_eq!(paths(&models::validate_patch(USER, &by_path)), ["name"]);
    let in_value = json!({"schemas": [SCHEMA_PATCH_OP],
        "Operations": [{"op": "replace", "value": {"name": {"familyName": "Roe"}, "title": "Lead"}}]});
    assert_eq!(paths(&models::validate_patch(USER, &in_value)), ["name"]);
    // Without it the same bodies keep to the models.
    assert!(models::validate(CREATE_USER, &json!({"userName": "a@x.io", "displayName": "A"})).is_empty());
}

#[test]
fn unknown_attributes_are_found_all_the_way_down_and_named_as_paths() {
    let user = json!({
        "userName": "a@x.io", "customFields": {"x": 1},
        "emails": [{"value": "a@x.io", "type": "work", "display": "A"}],
        SCHEMA_ENTERPRISE: {"department": "ENG", "costCenter": "CC", "manager": {"value": "m", "$ref": "r"}},
        SCHEMA_GENESYS: {"routingSkills": [{"name": "x", "level": 1}]}
    });
    assert_eq!(
        paths(&models::validate(CREATE_USER, &user)),
        [
            "customFields".to_string(),
            "emails.display".to_string(),
            format!("{SCHEMA_ENTERPRISE}:costCenter"),
            format!("{SCHEMA_ENTERPRISE}:manager.$ref"),
            format!("{SCHEMA_GENESYS}:routingSkills.level"),
        ]
    );
    let mut stripped = user.clone();
    models::strip_unknown(CREATE_USER, &mut stripped);
    assert!(models::validate(CREATE_USER, &stripped).is_empty(), "{stripped}");
    assert_eq!(stripped[SCHEMA_ENTERPRISE], json!({"department": "ENG", "manager": {"value": "m"}}));
    assert_eq!(models::validate("NoSuchModel", &user)[0].problem, Problem::UnknownModel);
}

#[test]
fn values_outside_an_enum_are_found_exactly_as_the_sdk_spells_them() {
    let user = json!({"userName": "a@x.io", "emails": [{"value": "a@x.io", "type": "home"}],
        "phoneNumbers": [{"value": "1", "type": "work"}, {"value": "2", "type": "Mobile"}]});
    let found = models::validate(CREATE_USER, &user);
    assert_eq!(paths(&found), ["emails.type", "phoneNumbers.type"]);
    let home = found.iter().find(|v| v.path == "emails.type").unwrap();
    assert_eq!(home.problem, Problem::NotInEnum { value: "home".into(), allowed: vec!["work".into(), "other".into()] });
    assert!(!home.differs_only_in_case());
    assert!(found.iter().find(|v| v.path == "phoneNumbers.type").unwrap().differs_only_in_case());

    let patch = json!({"schemas": [SCHEMA_PATCH_OP], "Operations": [
        {"op": "move", "path": "title", "value": "x"},
        {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "b@x.io"},
        {"op": "replace", "path": "emails[type eq \"work\"].type", "value": "private"},
        {"op": "add", "path": "members", "value": [{"value": "u", "type": "Person"}]}
    ]});
    assert_eq!(
        paths(&models::validate_patch(USER, &patch)),
        ["Operations.op", "emails.type", "emails.type", "members"]
    );
    let group_patch = json!({"schemas": [SCHEMA_PATCH_OP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": "u", "type": "Person", "display": "U"}]}
    ]});
    assert_eq!(paths(&models::validate_patch(GROUP, &group_patch)), ["members.display", "members.type"]);
}

#[test]
fn the_patches_a_client_sends_keep_to_the_models() {
    let user_patch = json!({"schemas": [SCHEMA_PATCH_OP], "Operations": [
        {"op": "replace", "path": "userName", "value": "b@x.io"},
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x.io"},
        {"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555"},
        {"op": "replace", "path": format!("{SCHEMA_ENTERPRISE}:manager"), "value": {"value": "m1"}},
        {"op": "replace", "path": format!("{SCHEMA_ENTERPRISE}:department"), "value": "Sales"},
        {"op": "replace", "path": SCHEMA_ENTERPRISE, "value": {"division": "Home"}},
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:title", "value": "Lead"},
        {"op": "replace", "path": "active", "value": false},
        {"op": "Replace", "value": {"displayName": "B"}}
    ]});
    let found = models::validate_patch(USER, &user_patch);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].differs_only_in_case(), "only `Replace`, which SCIM reads as replace: {found:?}");
    let group_patch = json!({"schemas": [SCHEMA_PATCH_OP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": "u1"}]},
        {"op": "remove", "path": "members[value eq \"u1\"]"}
    ]});
    assert!(models::validate_patch(GROUP, &group_patch).is_empty());
    // An extension attribute outside the models, by path and inside the extension as a whole.
    let ext = json!({"schemas": [SCHEMA_PATCH_OP], "Operations": [
        {"op": "add", "path": format!("{SCHEMA_ENTERPRISE}:costCenter"), "value": "C"},
        {"op": "add", "path": SCHEMA_ENTERPRISE, "value": {"organization": "O"}},
        {"op": "add", "path": "emails[type eq \"work\"].display", "value": "D"},
        {"op": "add", "path": "emails[kind eq \"work\"].value", "value": "D"},
        {"op": "add", "path": "urn:example:params:scim:schemas:extension:acme:2.0:User:badge", "value": "7"}
    ]});
    assert_eq!(
        paths(&models::validate_patch(USER, &ext)),
        [
            "emails.display".to_string(),
            "emails.kind".to_string(),
            "urn:example:params:scim:schemas:extension:acme:2.0:User:badge".to_string(),
            format!("{SCHEMA_ENTERPRISE}:costCenter"),
            format!("{SCHEMA_ENTERPRISE}:organization"),
        ]
    );
}

/// The emulator's own wire types: a user and a group with every field set serialize to attributes
/// of the models only, so what it answers is what Genesys could.
#[test]
fn the_wire_types_have_only_model_attributes() {
    let typed = |kind: &str| ScimMultiValue { value: "v".into(), kind: Some(kind.into()), primary: Some(true) };
    let user = ScimUser {
        schemas: vec!["s".into()],
        id: Some("id".into()),
        user_name: "a@x.io".into(),
        active: Some(true),
        display_name: Some("A".into()),
        title: Some("t".into()),
        emails: vec![typed("work")],
        phone_numbers: vec![typed("work")],
        external_id: Some("E-1".into()),
        roles: vec![ScimValue { value: "employee".into() }],
        groups: vec![ScimGroupRef { value: "g".into(), reference: Some("r".into()), kind: Some("Group".into()) }],
        enterprise: Some(EnterpriseUser {
            division: Some("d".into()),
            department: Some("ENG".into()),
            manager: Some(ScimManager { value: "m".into(), display_name: Some("M".into()) }),
            employee_number: Some("1".into()),
            date_hire: Some("2026-12-01".into()),
        }),
        genesys: Some(json!({"externalIds": [{"authority": "a", "value": "v"}]})),
        meta: Some(ScimMeta::default()),
    };
    assert_eq!(models::validate(USER, &serde_json::to_value(&user).unwrap()), Vec::<Violation>::new());
    let group = ScimGroup {
        schemas: vec!["s".into()],
        id: "g".into(),
        display_name: "G".into(),
        members: vec![ScimMember { value: "u".into(), reference: Some("r".into()), kind: Some("User".into()) }],
        meta: Some(ScimMeta::default()),
    };
    assert_eq!(models::validate(GROUP, &serde_json::to_value(&group).unwrap()), Vec::<Violation>::new());
}
