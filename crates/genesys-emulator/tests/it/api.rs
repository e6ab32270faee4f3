//! The Genesys Cloud emulator, black-box over HTTP: each test starts its own on a free port.

use std::time::{Duration, Instant};

use genesys_emulator::wire::{PatchOp, PatchOperation, SCHEMA_PATCH_OP, ScimUser};
use genesys_emulator::{Emulator, EmulatorConfig, SeedGroup, Stats};
use reqwest::Method;
use serde_json::{Value, json};

use crate::eventually;

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const USERS: &str = "/api/v2/scim/v2/users";
const GROUPS: &str = "/api/v2/scim/v2/groups";
const SALES: &str = "5d6e7f80-1111-2222-3333-444455556666";

/// One HTTP answer, body parsed as JSON when it is JSON.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The SCIM error's scimType and detail, checking the error shape on the way.
    fn scim_error(&self) -> (String, String) {
        assert_eq!(self.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]), "{}", self.body);
        assert_eq!(self.body["status"], json!(self.status.to_string()), "status is a string: {}", self.body);
        let kind = self.body["scimType"].as_str().unwrap_or_default().to_string();
        (kind, self.body["detail"].as_str().unwrap_or_default().to_string())
    }
}

/// A running emulator with a client holding a fresh token.
struct Api {
    emu: Emulator,
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn start(config: EmulatorConfig) -> Api {
        let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.expect("emulator starts");
        let http = reqwest::Client::new();
        let mut api = Api { emu, http, token: String::new() };
        let answer = api.token_with("emulator-client", "emulator-secret", "client_credentials").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        api.token = answer.body["access_token"].as_str().unwrap().to_string();
        api
    }

    async fn default() -> Api {
        Self::start(EmulatorConfig::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    async fn token_with(&self, id: &str, secret: &str, grant: &str) -> Answer {
        let req = self.http.post(self.url("/oauth/token")).basic_auth(id, Some(secret)).form(&[("grant_type", grant)]);
        read(req.send().await.unwrap()).await
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(serde_json::to_vec(b).unwrap());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    async fn patch(&self, path: &str, body: &Value, if_match: Option<&str>) -> Answer {
        let headers: Vec<(&str, &str)> = if_match.map(|v| ("If-Match", v)).into_iter().collect();
        self.send(Method::PATCH, path, Some(body), &headers).await
    }

    /// Lists users with raw query parameters.
    async fn list(&self, query: &[(&str, &str)]) -> Answer {
        let req = self.http.get(self.url(USERS)).bearer_auth(&self.token).query(query);
        read(req.send().await.unwrap()).await
    }

    /// Creates a valid user and returns its id.
    async fn create(&self, email: &str) -> String {
        let answer = self.post(USERS, &user_body(email)).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["id"].as_str().unwrap().to_string()
    }
}

async fn read(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

fn user_body(email: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "userName": email,
        "displayName": "Jane Doe",
        "emails": [{"value": email, "type": "work", "primary": true}],
        "externalId": format!("hr-{email}"),
        "title": "Engineer",
        ENT: {"department": "ENG", "employeeNumber": "E-1"}
    })
}

fn patch_body(ops: Value) -> Value {
    json!({"schemas": [SCHEMA_PATCH_OP], "Operations": ops})
}

fn with_sales() -> EmulatorConfig {
    EmulatorConfig {
        groups: vec![SeedGroup { id: SALES.to_string(), display_name: "Sales".to_string() }],
        ..EmulatorConfig::default()
    }
}

#[tokio::test]
async fn token_endpoint_checks_client_credentials_and_grant() {
    let api = Api::default().await;
    let good = api.token_with("emulator-client", "emulator-secret", "client_credentials").await;
    assert_eq!(good.status, 200);
    assert_eq!(good.body["token_type"], "bearer");
    assert_eq!(good.body["expires_in"], 3600);
    let second = good.body["access_token"].as_str().unwrap();
    assert_ne!(second, api.token, "every token is new");
    assert!(good.header("inin-correlation-id").is_some());

    let bad_secret = api.token_with("emulator-client", "wrong", "client_credentials").await;
    assert_eq!(bad_secret.status, 401);
    assert_eq!(bad_secret.body["error"], "invalid_client");
    assert!(bad_secret.body["description"].is_string());
    let bad_id = api.token_with("someone-else", "emulator-secret", "client_credentials").await;
    assert_eq!(bad_id.status, 401);
    let no_auth = read(
        api.http.post(api.url("/oauth/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap(),
    )
    .await;
    assert_eq!(no_auth.status, 401);
    assert_eq!(no_auth.body["error"], "invalid_client");
    let wrong_grant = api.token_with("emulator-client", "emulator-secret", "password").await;
    assert_eq!(wrong_grant.status, 400, "{}", wrong_grant.body);

    // The token from the start and the second one both work.
    assert_eq!(api.list(&[]).await.status, 200);
    let with_second = read(api.http.get(api.url(USERS)).bearer_auth(second).send().await.unwrap()).await;
    assert_eq!(with_second.status, 200);
    assert_eq!(api.emu.stats().token_requests, 6, "every call to /oauth/token is counted");
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let api = Api::start(EmulatorConfig { token_ttl: Duration::from_secs(1), ..EmulatorConfig::default() }).await;
    let fresh = api.token_with("emulator-client", "emulator-secret", "client_credentials").await;
    assert_eq!(fresh.body["expires_in"], 1);
    assert_eq!(api.list(&[]).await.status, 200, "valid at first");
    let expired = eventually(Duration::from_secs(5), || async {
        let answer = api.list(&[]).await;
        (answer.status == 401).then_some(answer)
    })
    .await
    .expect("the token stops working after its ttl");
    assert_eq!(expired.scim_error().0, "");
    assert_eq!(expired.body["status"], "401");
}

#[tokio::test]
async fn api_calls_need_a_valid_bearer_token_and_carry_a_correlation_id() {
    let api = Api::default().await;
    let none = read(api.http.get(api.url(USERS)).send().await.unwrap()).await;
    assert_eq!(none.status, 401);
    none.scim_error();
    assert_eq!(none.header("content-type").as_deref(), Some("application/scim+json"));
    let forged = read(api.http.get(api.url(USERS)).bearer_auth("not-a-token").send().await.unwrap()).await;
    assert_eq!(forged.status, 401);
    let basic =
        read(api.http.get(api.url(USERS)).basic_auth("emulator-client", Some("emulator-secret")).send().await.unwrap())
            .await;
    assert_eq!(basic.status, 401, "client credentials are not an API token");

    let echoed = api.send(Method::GET, USERS, None, &[("ININ-Correlation-Id", "corr-42")]).await;
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.header("inin-correlation-id").as_deref(), Some("corr-42"));
    let fresh = api.get(USERS).await.header("inin-correlation-id").expect("always a correlation id");
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "a new uuid when none is sent: {fresh}");
    assert!(none.header("inin-correlation-id").is_some(), "refusals carry one too");
}

#[tokio::test]
async fn create_then_get_with_etag_and_meta() {
    let api = Api::default().await;
    let created = api.post(USERS, &user_body("jane.doe@example.com")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("content-type").as_deref(), Some("application/scim+json"));
    let user: ScimUser = serde_json::from_value(created.body.clone()).unwrap();
    let id = user.id.clone().unwrap();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    let meta = user.meta.clone().unwrap();
    assert_eq!(meta.resource_type.as_deref(), Some("User"));
    assert_eq!(meta.version.as_deref(), Some("\"1\""));
    assert_eq!(created.header("etag").as_deref(), Some("\"1\""));
    assert_eq!(meta.location, Some(api.url(&format!("{USERS}/{id}"))));
    assert!(meta.created.is_some() && meta.last_modified.is_some());
    assert_eq!(user.active, Some(true));
    let other: Vec<_> = user.emails.iter().filter(|e| e.kind.as_deref() == Some("other")).collect();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].value, "jane.doe@example.com", "the Genesys main email equals userName");
    assert_eq!(user.enterprise.unwrap().department.as_deref(), Some("ENG"));
    assert!(created.body.get("password").is_none());

    let got = api.get(&format!("{USERS}/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, created.body);
    assert_eq!(got.header("etag").as_deref(), Some("\"1\""));
    let cached = api.send(Method::GET, &format!("{USERS}/{id}"), None, &[("If-None-Match", "\"1\"")]).await;
    assert_eq!(cached.status, 304);
    let changed = api.send(Method::GET, &format!("{USERS}/{id}"), None, &[("If-None-Match", "\"0\"")]).await;
    assert_eq!(changed.status, 200);
    let missing = api.get(&format!("{USERS}/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(missing.status, 404);
    missing.scim_error();
    assert_eq!(api.emu.users().len(), 1);
}

#[tokio::test]
async fn list_filters_on_the_genesys_attributes() {
    let api = Api::default().await;
    let jane = api.create("jane@example.com").await;
    let john = api.create("john@example.com").await;
    let gone = api.create("gone@example.com").await;
    let off = api
        .patch(
            &format!("{USERS}/{gone}"),
            &patch_body(json!([{"op": "replace", "path": "active", "value": false}])),
            None,
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.body);

    let ids = |a: &Answer| -> Vec<String> {
        a.body["Resources"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_string()).collect()
    };
    let all = api.list(&[]).await;
    assert_eq!(all.body["totalResults"], 2, "no filter: active users only");
    assert_eq!(ids(&all), vec![jane.clone(), john.clone()]);
    assert_eq!(all.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));

    for (filter, want) in [
        (r#"userName eq "JANE@example.com""#, vec![jane.clone()]),
        (r#"USERNAME EQ "john@example.com""#, vec![john.clone()]),
        (r#"email eq "john@example.com""#, vec![john.clone()]),
        (r#"externalId eq "hr-jane@example.com""#, vec![jane.clone()]),
        (&format!(r#"id eq "{john}""#), vec![john.clone()]),
        ("active eq false", vec![gone.clone()]),
        (r#"userName eq "nobody@example.com""#, vec![]),
    ] {
        let answer = api.list(&[("filter", filter)]).await;
        assert_eq!(answer.status, 200, "{filter}: {}", answer.body);
        assert_eq!(ids(&answer), want, "{filter}");
        assert_eq!(answer.body["totalResults"], want.len(), "{filter}");
    }
    for bad in [r#"userName co "jane""#, r#"title eq "x""#, "userName eq jane", r#"userName eq "a" or id eq "b""#] {
        let answer = api.list(&[("filter", bad)]).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.scim_error().0, "invalidFilter", "{bad}");
    }
}

#[tokio::test]
async fn list_pages_with_start_index_and_count() {
    let api = Api::default().await;
    let mut ids = Vec::new();
    for n in 0..30 {
        let seeded = api.emu.insert_user(ScimUser {
            user_name: format!("user{n:02}@example.com"),
            display_name: Some(format!("User {n}")),
            ..ScimUser::default()
        });
        assert_eq!(seeded.meta.as_ref().unwrap().version.as_deref(), Some("\"1\""));
        ids.push(seeded.id.unwrap());
    }
    let page = api.list(&[("startIndex", "3"), ("count", "2")]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["totalResults"], 30);
    assert_eq!(page.body["startIndex"], 3);
    assert_eq!(page.body["itemsPerPage"], 2);
    let got: Vec<&str> = page.body["Resources"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[3].as_str()], "startIndex is 1-based");
    let default = api.list(&[]).await;
    assert_eq!(default.body["itemsPerPage"], 25, "count defaults to 25");
    assert_eq!(default.body["startIndex"], 1);
    let tail = api.list(&[("startIndex", "26"), ("count", "25")]).await;
    assert_eq!(tail.body["itemsPerPage"], 5);
    let bad = api.list(&[("count", "lots")]).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn a_duplicate_user_name_is_a_409_uniqueness() {
    let api = Api::default().await;
    api.create("jane@example.com").await;
    api.emu.faults().set_strict_emails(false);
    let dup = api.post(USERS, &user_body("Jane@Example.com")).await;
    assert_eq!(dup.status, 409, "{}", dup.body);
    let (kind, detail) = dup.scim_error();
    assert_eq!(kind, "uniqueness");
    assert!(detail.starts_with("userName:") && detail.contains("already exists"), "{detail}");
    assert_eq!(api.emu.users().len(), 1);
}

#[tokio::test]
async fn create_validation_names_the_attribute() {
    let api = Api::default().await;
    let mut no_display = user_body("a@example.com");
    no_display.as_object_mut().unwrap().remove("displayName");
    let mut not_email = user_body("a@example.com");
    not_email["userName"] = json!("jane");
    not_email["emails"] = json!([]);
    let mut padded = user_body("a@example.com");
    padded["userName"] = json!(" a@example.com");
    padded["emails"] = json!([]);
    let mut no_name = user_body("a@example.com");
    no_name.as_object_mut().unwrap().remove("userName");
    let mut with_groups = user_body("a@example.com");
    with_groups["groups"] = json!([{"value": SALES}]);
    let mut bad_date = user_body("a@example.com");
    bad_date[ENT]["dateHire"] = json!("01/12/2026");

    for (body, status, kind, prefix) in [
        (no_display, 400, "invalidValue", "displayName:"),
        (not_email, 400, "invalidValue", "userName: must be the user's email address"),
        (padded, 400, "invalidValue", "userName: must be the user's email address"),
        (no_name, 400, "invalidValue", "userName:"),
        (with_groups, 400, "mutability", "groups: attribute is read-only"),
        (bad_date, 400, "invalidValue", "dateHire:"),
    ] {
        let answer = api.post(USERS, &body).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        let (k, detail) = answer.scim_error();
        assert_eq!(k, kind, "{detail}");
        assert!(detail.starts_with(prefix), "{detail:?} should start with {prefix:?}");
    }
    let garbage = read(
        api.http
            .post(api.url(USERS))
            .bearer_auth(&api.token)
            .header("content-type", "application/scim+json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.scim_error().0, "invalidSyntax");
    assert!(api.emu.users().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn strict_emails_refuse_untidy_values_until_relaxed() {
    let api = Api::default().await;
    let mut upper = user_body("jane@example.com");
    upper["emails"] = json!([{"value": "Jane@Example.com", "type": "work"}]);
    let answer = api.post(USERS, &upper).await;
    assert_eq!(answer.status, 400);
    let (kind, detail) = answer.scim_error();
    assert_eq!(kind, "invalidValue");
    assert!(detail.starts_with("emails:") && detail.contains("must be trimmed and lower-case"), "{detail}");

    let mut padded = user_body("jane@example.com");
    padded["emails"] = json!([{"value": "jane@example.com ", "type": "work"}]);
    assert_eq!(api.post(USERS, &padded).await.status, 400);

    let mut mismatch = user_body("jane@example.com");
    mismatch["emails"] = json!([{"value": "j.doe@example.com", "type": "work"}]);
    let answer = api.post(USERS, &mismatch).await;
    assert_eq!(answer.status, 400);
    assert!(answer.scim_error().1.starts_with("userName:"), "{}", answer.body);

    api.emu.faults().set_strict_emails(false);
    let relaxed = api.post(USERS, &upper).await;
    assert_eq!(relaxed.status, 201, "{}", relaxed.body);
    assert_eq!(relaxed.body["emails"][0]["value"], "Jane@Example.com", "stored as sent");
}

#[tokio::test]
async fn patch_honours_if_match_and_records_each_body() {
    let api = Api::default().await;
    let jane = api.create("jane@example.com").await;
    let boss = api.create("boss@example.com").await;
    let path = format!("{USERS}/{jane}");
    let ops = json!([
        {"op": "replace", "path": "title", "value": "Lead"},
        {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:genesys:purecloud:2.0:User:routingSkills", "value": [{"name": "Billing", "proficiency": 3}]},
        {"op": "replace", "path": "userName", "value": "janet@example.com"},
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "janet@example.com"},
        {"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 317 555 0100"},
        {"op": "replace", "path": format!("{ENT}:department"), "value": "SALES"},
        {"op": "add", "path": format!("{ENT}:manager"), "value": {"value": boss}},
        {"op": "add", "path": format!("{ENT}:dateHire"), "value": "2026-12-01"},
        {"op": "remove", "path": format!("{ENT}:employeeNumber")},
        {"op": "replace", "value": {"displayName": "Janet Doe"}}
    ]);
    let good = api.patch(&path, &patch_body(ops), Some("\"1\"")).await;
    assert_eq!(good.status, 200, "{}", good.body);
    assert_eq!(good.header("etag").as_deref(), Some("\"2\""));
    let user: ScimUser = serde_json::from_value(good.body.clone()).unwrap();
    assert_eq!(user.meta.unwrap().version.as_deref(), Some("\"2\""));
    assert_eq!(user.title.as_deref(), Some("Lead"));
    assert_eq!(user.display_name.as_deref(), Some("Janet Doe"));
    assert_eq!(user.genesys.as_ref().unwrap()["routingSkills"], json!([{"name": "Billing", "proficiency": 3}]));
    assert_eq!(user.user_name, "janet@example.com");
    let work: Vec<_> = user.emails.iter().filter(|e| e.kind.as_deref() == Some("work")).collect();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].value, "janet@example.com");
    assert!(user.emails.iter().any(|e| e.kind.as_deref() == Some("other") && e.value == "janet@example.com"));
    assert_eq!(user.phone_numbers[0].value, "+1 317 555 0100");
    let ent = user.enterprise.unwrap();
    assert_eq!(ent.department.as_deref(), Some("SALES"));
    assert_eq!(ent.manager.unwrap().value, boss);
    assert_eq!(ent.date_hire.as_deref(), Some("2026-12-01"));
    assert_eq!(ent.employee_number, None);

    let stale =
        api.patch(&path, &patch_body(json!([{"op": "replace", "path": "title", "value": "CEO"}])), Some("\"1\"")).await;
    assert_eq!(stale.status, 400, "a stale If-Match is a 400, not 409/412");
    assert_eq!(stale.scim_error().0, "invalidVers");
    let now = api.get(&path).await;
    assert_eq!(now.body["title"], "Lead", "the stale change was not applied");
    assert_eq!(now.header("etag").as_deref(), Some("\"2\""));

    let no_if_match =
        api.patch(&path, &patch_body(json!([{"op": "replace", "path": "active", "value": false}])), None).await;
    assert_eq!(no_if_match.status, 200);
    assert_eq!(no_if_match.header("etag").as_deref(), Some("\"3\""));
    assert_eq!(no_if_match.body["active"], false);

    let read_only = api
        .patch(&path, &patch_body(json!([{"op": "add", "path": "groups", "value": [{"value": SALES}]}])), None)
        .await;
    assert_eq!(read_only.status, 400);
    assert_eq!(read_only.scim_error().0, "mutability");

    let patches: Vec<PatchOp> = api.emu.patches(&jane);
    assert_eq!(patches.len(), 4, "every PATCH body received is recorded");
    assert_eq!(
        patches[1].operations,
        vec![PatchOperation { op: "replace".into(), path: Some("title".into()), value: Some(json!("CEO")) }]
    );
    assert!(api.emu.patches(&boss).is_empty());
}

#[tokio::test]
async fn put_replaces_and_delete_removes_with_if_match() {
    let api = Api::default().await;
    let id = api.create("jane@example.com").await;
    let path = format!("{USERS}/{id}");
    let mut body = user_body("jane@example.com");
    body["title"] = json!("Manager");
    body.as_object_mut().unwrap().remove(ENT);
    let put = api.send(Method::PUT, &path, Some(&body), &[("If-Match", "\"1\"")]).await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["title"], "Manager");
    assert!(put.body.get(ENT).is_none(), "PUT replaces the whole user");
    assert_eq!(put.header("etag").as_deref(), Some("\"2\""));
    let stale_put = api.send(Method::PUT, &path, Some(&body), &[("If-Match", "\"1\"")]).await;
    assert_eq!(stale_put.scim_error().0, "invalidVers");

    let stale = api.send(Method::DELETE, &path, None, &[("If-Match", "\"1\"")]).await;
    assert_eq!(stale.status, 400);
    assert_eq!(stale.scim_error().0, "invalidVers");
    let deleted = api.send(Method::DELETE, &path, None, &[("If-Match", "\"2\"")]).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
    assert!(api.emu.users().is_empty());
    assert_eq!(api.post(USERS, &user_body("jane@example.com")).await.status, 201, "the userName is free again");
}

#[tokio::test]
async fn group_membership_changes_with_etags() {
    let api = Api::start(with_sales()).await;
    let jane = api.create("jane@example.com").await;
    let path = format!("{GROUPS}/{SALES}");
    let group = api.get(&path).await;
    assert_eq!(group.status, 200);
    assert_eq!(group.body["displayName"], "Sales");
    assert_eq!(group.body["meta"]["version"], "\"1\"");
    assert_eq!(group.header("etag").as_deref(), Some("\"1\""));

    let add = patch_body(json!([{"op": "add", "path": "members", "value": [{"value": jane}]}]));
    let added = api.patch(&path, &add, Some("\"1\"")).await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.header("etag").as_deref(), Some("\"2\""));
    assert_eq!(added.body["members"][0]["value"], json!(jane));
    let user = api.get(&format!("{USERS}/{jane}")).await;
    assert_eq!(user.body["groups"][0]["value"], SALES, "the user shows its groups");

    let again = api.patch(&path, &add, Some("\"2\"")).await;
    assert_eq!(again.status, 200, "adding a member twice is a no-op");
    assert_eq!(api.emu.group(SALES).unwrap().members.len(), 1);

    let ghost = patch_body(json!([{"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}]));
    let unknown = api.patch(&path, &ghost, None).await;
    assert_eq!(unknown.status, 400);
    let (kind, detail) = unknown.scim_error();
    assert_eq!(kind, "invalidValue");
    assert!(detail.starts_with("members"), "{detail}");

    let current = api.get(&path).await.header("etag").unwrap();
    api.emu.bump_group_version(SALES);
    let remove = patch_body(json!([{"op": "remove", "path": format!("members[value eq \"{jane}\"]")}]));
    let stale = api.patch(&path, &remove, Some(&current)).await;
    assert_eq!(stale.status, 400);
    assert_eq!(stale.scim_error().0, "invalidVers");
    assert_eq!(api.emu.group(SALES).unwrap().members.len(), 1, "bumping the version kept the members");

    let fresh = api.get(&path).await.header("etag").unwrap();
    assert_ne!(fresh, current);
    let removed = api.patch(&path, &remove, Some(&fresh)).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body["members"], json!([]));
    assert_ne!(removed.header("etag"), Some(fresh));
    assert!(api.get(&format!("{USERS}/{jane}")).await.body.get("groups").is_none());
}

#[tokio::test]
async fn groups_are_found_by_filter_only_and_never_created_over_scim() {
    let api = Api::start(with_sales()).await;
    let hits = api.get(&format!("{GROUPS}?filter=displayName%20eq%20%22sales%22")).await;
    assert_eq!(hits.status, 200);
    assert_eq!(hits.body["totalResults"], 1);
    assert_eq!(hits.body["Resources"][0]["id"], SALES);
    let by_id = api.get(&format!("{GROUPS}?filter=id%20eq%20%22{SALES}%22")).await;
    assert_eq!(by_id.body["totalResults"], 1);
    let unfiltered = api.get(GROUPS).await;
    assert_eq!(unfiltered.status, 400);
    assert_eq!(unfiltered.scim_error().0, "invalidFilter");

    let create = api.post(GROUPS, &json!({"displayName": "Support"})).await;
    assert_eq!(create.status, 405);
    create.scim_error();
    let delete = api.send(Method::DELETE, &format!("{GROUPS}/{SALES}"), None, &[]).await;
    assert_eq!(delete.status, 405);
    assert!(api.emu.group(SALES).is_some());
    let unknown = api.get(&format!("{GROUPS}/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn over_the_rate_limit_answers_429_with_retry_after() {
    let api = Api::start(EmulatorConfig { rate_limit_per_minute: Some(3), ..EmulatorConfig::default() }).await;
    for n in 1..=3 {
        let ok = api.list(&[]).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("inin-ratelimit-allowed").as_deref(), Some("3"));
        assert_eq!(ok.header("inin-ratelimit-count"), Some(n.to_string()));
    }
    let limited = api.list(&[]).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["status"], "429");
    limited.scim_error();
    let retry: u64 = limited.header("retry-after").expect("Retry-After").parse().expect("whole seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(limited.header("inin-ratelimit-count").as_deref(), Some("3"));
    assert_eq!(limited.header("inin-ratelimit-allowed").as_deref(), Some("3"));
    assert_eq!(limited.header("inin-ratelimit-reset"), Some(retry.to_string()));
    assert_eq!(api.emu.stats().rate_limited, 1);
    // The token endpoint is not limited.
    assert_eq!(api.token_with("emulator-client", "emulator-secret", "client_credentials").await.status, 200);

    // Lifted over HTTP, as an out-of-process test would.
    let lifted =
        api.http.post(api.url("/emulator/faults")).json(&json!({"rateLimitPerMinute": null})).send().await.unwrap();
    assert_eq!(lifted.status(), 200);
    assert_eq!(api.list(&[]).await.status, 200);
    assert_eq!(api.emu.faults().settings().rate_limit_per_minute, None);
}

#[tokio::test]
async fn a_server_error_rate_of_one_answers_503_after_auth() {
    let api = Api::default().await;
    api.emu.faults().set_server_error_rate(1.0);
    let read_fail = api.list(&[]).await;
    assert_eq!(read_fail.status, 503);
    assert_eq!(read_fail.body["status"], "503");
    let write_fail = api.post(USERS, &user_body("jane@example.com")).await;
    assert_eq!(write_fail.status, 503);
    let anonymous = read(api.http.get(api.url(USERS)).send().await.unwrap()).await;
    assert_eq!(anonymous.status, 401, "auth comes before injected faults");
    assert_eq!(api.token_with("emulator-client", "emulator-secret", "client_credentials").await.status, 200);
    assert_eq!(api.emu.stats().server_errors, 2);
    assert!(api.emu.users().is_empty());

    api.emu.faults().set_server_error_rate(0.0);
    assert_eq!(api.list(&[]).await.status, 200);
}

#[tokio::test]
async fn fail_next_writes_fails_exactly_that_many_writes() {
    let api = Api::default().await;
    api.emu.faults().fail_next_writes(2, 500);
    assert_eq!(api.list(&[]).await.status, 200, "reads are not writes");
    let first = api.post(USERS, &user_body("jane@example.com")).await;
    assert_eq!(first.status, 500);
    assert_eq!(first.body["status"], "500");
    assert_eq!(api.post(USERS, &user_body("jane@example.com")).await.status, 500);
    assert_eq!(api.post(USERS, &user_body("jane@example.com")).await.status, 201);
    assert_eq!(api.emu.users().len(), 1);
    assert_eq!(api.emu.stats().server_errors, 2);

    let set = api
        .http
        .post(api.url("/emulator/faults"))
        .json(&json!({"failNextWrites": {"count": 1, "status": 409}}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let conflict = api.post(USERS, &user_body("john@example.com")).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.body["status"], "409");
    assert_eq!(api.post(USERS, &user_body("john@example.com")).await.status, 201);

    let refused = api.http.post(api.url("/emulator/faults")).json(&json!({"serverErrorRate": 2})).send().await.unwrap();
    assert_eq!(refused.status(), 400, "a rate over 1 is refused");
}

#[tokio::test]
async fn latency_is_added_to_answers() {
    let api = Api::default().await;
    api.emu.faults().set_latency(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(api.list(&[]).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    let set = api.http.post(api.url("/emulator/faults")).json(&json!({"latencyMs": 0})).send().await.unwrap();
    let settings: Value = set.json().await.unwrap();
    assert_eq!(settings["latencyMs"], 0);
}

#[tokio::test]
async fn stats_count_requests_by_route() {
    let api = Api::default().await;
    let id = api.create("jane@example.com").await;
    api.create("john@example.com").await;
    api.get(&format!("{USERS}/{id}")).await;
    api.list(&[]).await;
    let stats = api.emu.stats();
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.requests_by_route.get("POST /api/v2/scim/v2/users"), Some(&2));
    assert_eq!(stats.requests_by_route.get("GET /api/v2/scim/v2/users/{id}"), Some(&1));
    assert_eq!(stats.requests_by_route.get("GET /api/v2/scim/v2/users"), Some(&1));
    assert_eq!(stats.requests_by_route.get("POST /oauth/token"), Some(&1));
    assert_eq!((stats.rate_limited, stats.server_errors), (0, 0));

    let over_http: Stats = api.http.get(api.url("/emulator/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(over_http, stats, "the control routes are not counted");
    api.emu.stop().await;
}

#[tokio::test]
async fn attributes_outside_the_genesys_models_are_refused_or_dropped_and_never_returned() {
    let api = Api::default().await;
    let faults = |body: Value| {
        let req = api.http.post(api.url("/emulator/faults")).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Strict (the default): `name` is not in ScimV2CreateUser, so the create is refused, naming it.
    let mut named = user_body("named@example.com");
    named["name"] = json!({"givenName": "Jane", "familyName": "Doe"});
    let answer = api.post(USERS, &named).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let (kind, detail) = answer.scim_error();
    assert_eq!(kind, "invalidValue");
    assert!(detail.starts_with("name:"), "{detail}");
    // Inside an extension and inside a multi-valued entry too.
    let mut cost_center = user_body("cc@example.com");
    cost_center[ENT]["costCenter"] = json!("CC-7");
    let answer = api.post(USERS, &cost_center).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.scim_error().1.contains("costCenter"), "{}", answer.body);
    let mut display = user_body("display@example.com");
    display["emails"][0]["display"] = json!("Jane");
    let answer = api.post(USERS, &display).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.scim_error().1.contains("display"), "{}", answer.body);
    assert!(api.emu.users().is_empty(), "nothing was stored");
    // A PATCH of it is refused the same way.
    let id = api.create("plain@example.com").await;
    let path = format!("{USERS}/{id}");
    let by_path = patch_body(json!([{"op": "replace", "path": "name.familyName", "value": "Roe"}]));
    let answer = api.patch(&path, &by_path, None).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let (kind, detail) = answer.scim_error();
    assert_eq!(kind, "invalidValue");
    assert!(detail.starts_with("name"), "{detail}");

    // Lenient: ignored on write, still never stored or returned.
    assert_eq!(faults(json!({"strictAttributes": false})).await, 200);
    let created = api.post(USERS, &named).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.body.get("name").is_none(), "{}", created.body);
    let named_id = created.body["id"].as_str().unwrap().to_string();
    let answer = api.patch(&path, &by_path, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let pathless = patch_body(json!([{"op": "replace", "value": {"name": {"familyName": "Roe"}, "title": "Lead"}}]));
    let answer = api.patch(&path, &pathless, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["title"], "Lead", "the known attribute is applied");
    for user_id in [&id, &named_id] {
        let got = api.get(&format!("{USERS}/{user_id}")).await;
        assert!(got.body.get("name").is_none(), "{}", got.body);
    }
    let listed = api.list(&[]).await;
    assert!(!listed.body.to_string().contains("familyName"), "{}", listed.body);
    assert_eq!(faults(json!({"strictAttributes": true})).await, 200);
}

/// Every body is held to the models: values outside an enum are refused (letter case aside, as
/// SCIM compares them), and group bodies follow the same strict or lenient rule as user bodies.
#[tokio::test]
async fn enum_values_and_group_bodies_are_held_to_the_models() {
    let api = Api::start(with_sales()).await;
    let faults = |body: Value| {
        let req = api.http.post(api.url("/emulator/faults")).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let mut home = user_body("home@example.com");
    home["emails"][0]["type"] = json!("home");
    let answer = api.post(USERS, &home).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let (kind, detail) = answer.scim_error();
    assert_eq!(kind, "invalidValue");
    assert_eq!(detail, "emails.type: \"home\" is not one of work, other");
    let mut work = user_body("work@example.com");
    work["emails"][0]["type"] = json!("Work");
    let jane = api.post(USERS, &work).await;
    assert_eq!(jane.status, 201, "SCIM compares type values without case: {}", jane.body);
    let jane = jane.body["id"].as_str().unwrap().to_string();

    let by_filter = patch_body(json!([{"op": "add", "path": "phoneNumbers[type eq \"fax\"].value", "value": "1"}]));
    let answer = api.patch(&format!("{USERS}/{jane}"), &by_filter, None).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.scim_error().1.starts_with("phoneNumbers.type: \"fax\""), "{}", answer.body);

    let group = format!("{GROUPS}/{SALES}");
    let odd_member = patch_body(json!([{"op": "add", "path": "members", "value": [{"value": jane, "display": "J"}]}]));
    let answer = api.patch(&group, &odd_member, None).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.scim_error(),
        ("invalidValue".into(), "members.display: not an attribute of the Genesys Cloud group".into())
    );
    let wrong_type =
        patch_body(json!([{"op": "add", "path": "members", "value": [{"value": jane, "type": "Person"}]}]));
    assert_eq!(api.patch(&group, &wrong_type, None).await.status, 400);
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Sales",
        "members": [{"value": jane}], "description": "not in ScimV2Group"});
    let answer = api.send(Method::PUT, &group, Some(&put), &[]).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.scim_error().1.starts_with("description:"), "{}", answer.body);
    assert!(api.emu.group(SALES).unwrap().members.is_empty(), "nothing was changed");

    // Lenient: the attribute is ignored, the rest applied; an enum is still refused.
    assert_eq!(faults(json!({"strictAttributes": false})).await, 200);
    let answer = api.patch(&group, &odd_member, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["members"][0],
        json!({"value": jane, "$ref": format!("{}{USERS}/{jane}", api.emu.base_url()), "type": "User"})
    );
    let answer = api.send(Method::PUT, &group, Some(&put), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.get("description").is_none(), "{}", answer.body);
    assert_eq!(api.patch(&group, &wrong_type, None).await.status, 400);
    assert_eq!(api.post(USERS, &home).await.status, 400);
}

/// What a client put on the wire, for its golden tests: every body the SCIM API received, in order.
#[tokio::test]
async fn every_body_received_is_logged_as_sent() {
    let api = Api::start(with_sales()).await;
    let jane = api.create("jane@example.com").await;
    let add = patch_body(json!([{"op": "add", "path": "members", "value": [{"value": jane}]}]));
    assert_eq!(api.patch(&format!("{GROUPS}/{SALES}"), &add, None).await.status, 200);
    let refused = api.post(USERS, &json!({"userName": "x"})).await;
    assert_eq!(refused.status, 400);
    api.emu.faults().fail_next_writes(1, 503);
    assert_eq!(api.post(USERS, &user_body("later@example.com")).await.status, 503);
    let received = api.emu.received();
    let seen: Vec<(&str, &str)> = received.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
    let group_path = format!("{GROUPS}/{SALES}");
    assert_eq!(seen, [("POST", USERS), ("PATCH", group_path.as_str()), ("POST", USERS)], "the injected 503 is not");
    assert_eq!(received[0].body, user_body("jane@example.com"));
    assert_eq!(received[1].body, add);
    assert_eq!(received[2].body, json!({"userName": "x"}), "refused bodies too");
}

/// The roles listing `check-config --probe` reads: an entity listing, filtered by name without
/// regard to case, paged, behind the bearer token like the rest of /api/v2.
#[tokio::test]
async fn authorization_roles_are_listed_by_name_and_page() {
    let api = Api::start(EmulatorConfig {
        roles: vec!["employee".into(), "Master Admin".into(), "agent".into()],
        ..EmulatorConfig::default()
    })
    .await;
    let all = api.get("/api/v2/authorization/roles").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!((all.body["total"].clone(), all.body["pageCount"].clone()), (json!(3), json!(1)), "{}", all.body);
    let named = api.get("/api/v2/authorization/roles?name=master%20admin").await;
    let entities = named.body["entities"].as_array().unwrap();
    assert_eq!(entities.len(), 1, "{}", named.body);
    assert_eq!(entities[0]["name"], "Master Admin");
    assert!(entities[0]["id"].as_str().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()), "{}", named.body);
    let none = api.get("/api/v2/authorization/roles?name=astronaut").await;
    assert_eq!((none.body["total"].clone(), none.body["entities"].clone()), (json!(0), json!([])), "{}", none.body);
    let page = api.get("/api/v2/authorization/roles?pageSize=2&pageNumber=2").await;
    assert_eq!(page.body["entities"][0]["name"], "agent", "{}", page.body);
    assert_eq!(page.body["pageCount"], 2, "{}", page.body);
    let anonymous = api.http.get(api.url("/api/v2/authorization/roles")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}
