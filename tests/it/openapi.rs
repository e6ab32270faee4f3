//! `GET /openapi.json`: a valid OpenAPI 3.1 document that lists every route the service serves, and
//! real answers that match what it says.

use reqwest::Method;
use serde_json::{Value, json};

use genesys_provisioner::queue::worker::JobFailure;

use crate::common::*;

/// Every route of the service. The router and the document are built from one list
/// (`http::openapi::routes`); this is what that list must hold.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/webhooks/hr/user-created"),
    ("post", "/webhooks/directory-sync"),
    ("post", "/webhooks/directory-sync/batch"),
    ("post", "/webhook/scim-validation"),
    ("post", "/webhooks/genesys/events"),
    ("get", "/jobs/{audit_id}"),
    ("get", "/admin/dead-letters"),
    ("post", "/admin/dead-letters/{audit_id}/replay"),
    ("delete", "/admin/dead-letters/{audit_id}"),
    ("get", "/admin/reports/discrepancies"),
    ("post", "/admin/reconcile"),
    ("get", "/admin/siem"),
    ("post", "/admin/register-webhook"),
    ("get", "/admin/register-webhook"),
    ("delete", "/admin/register-webhook"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

pub(crate) async fn document(app: &TestApp) -> Value {
    // No credentials: the document describes no secret.
    let resp = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.expect("the document is JSON")
}

fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            found.push((method.clone(), path.clone()));
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_route_the_router_serves() {
    let app = Spawn::new(Backend::Sqlite).no_workers().start().await.unwrap();
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "genesys-provisioner");
    assert!(doc["info"]["version"].is_string());
    let mut want: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    want.sort();
    assert_eq!(operations(&doc), want);

    // Every reference resolves, and every path parameter is declared.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("odd $ref {reference}"));
        assert!(doc["components"]["schemas"][name].is_object(), "$ref to a missing schema {name}");
    }
    for (method, path) in ROUTES.iter().filter(|(_, p)| p.contains("{audit_id}")) {
        let params = doc["paths"][path][method]["parameters"].to_string();
        assert!(params.contains(r#""name":"audit_id""#) && params.contains(r#""in":"path""#), "{method} {path}");
    }

    let schemes = &doc["components"]["securitySchemes"];
    for (name, header) in [
        ("webhook_id", "webhook-id"),
        ("webhook_timestamp", "webhook-timestamp"),
        ("webhook_signature", "webhook-signature"),
    ] {
        assert_eq!(
            schemes[name],
            json!({"type": "apiKey", "in": "header", "name": header, "description": schemes[name]["description"]})
        );
    }
    assert_eq!(
        (&schemes["admin_token"]["type"], &schemes["admin_token"]["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    assert_eq!(
        (&schemes["validation_secret"]["in"], &schemes["validation_secret"]["name"]),
        (&json!("header"), &json!("x-validation-secret"))
    );

    let audit_id = uuid::Uuid::new_v4().to_string();
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method];
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success answer");
        // Every error answer is described, and in the one error shape (or a superset of it).
        for (status, answer) in responses.iter().filter(|(s, _)| s.starts_with('4') || s.starts_with('5')) {
            let schema = &answer["content"]["application/json"]["schema"];
            assert!(!schema.is_null(), "{method} {path} {status}: no JSON body");
        }
        let security = op["security"].to_string();
        match path {
            p if p.starts_with("/webhook/") => {
                assert_eq!(
                    op["security"],
                    json!([{"validation_secret": []}, {"webhook_id": [], "webhook_timestamp": [], "webhook_signature": []}])
                );
                for status in ["401", "413", "415"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status} is not described");
                }
            }
            &"/webhooks/genesys/events" => {
                assert_eq!(op["security"], json!([{"events_secret": []}]));
                for status in ["401", "413", "415"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status} is not described");
                }
            }
            p if p.starts_with("/webhooks/") => {
                assert_eq!(
                    op["security"],
                    json!([{"webhook_id": [], "webhook_timestamp": [], "webhook_signature": []}])
                );
                for status in ["401", "413", "415"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status} is not described");
                }
            }
            p if p.starts_with("/admin/") || p.starts_with("/jobs/") => {
                assert_eq!(op["security"], json!([{"admin_token": []}]), "{method} {path}");
                assert!(responses.contains_key("401"), "{method} {path}: 401 is not described");
            }
            _ => assert_eq!(security, "null", "{method} {path} needs no credentials"),
        }

        // The router serves what the document lists: never the fallback's 404 or the 405.
        let url = app.url(&path.replace("{audit_id}", &audit_id));
        let resp = app.client.request(method.to_uppercase().parse::<Method>().unwrap(), url).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path}");
        assert!(!body.contains("No such endpoint"), "{method} {path}: {status} {body}");
        assert!(responses.contains_key(&status.to_string()), "{method} {path}: {status} is not described");
    }
    app.shutdown().await;
}

/// Real answers of every kind checked against the document's schema for their endpoint and status.
#[tokio::test]
async fn real_answers_match_the_document() {
    let handler = ScriptedHandler::new(|_, _| Err(JobFailure::Permanent { error: "refused".into() }));
    let app = Spawn::new(Backend::Sqlite)
        .handler(handler)
        .no_workers()
        .env("VALIDATION_WEBHOOK_SECRET", VALIDATION_SECRET)
        .toml("[policy]\nemail_domains = [\"example.com\"]")
        .start()
        .await
        .unwrap();
    let doc = document(&app).await;
    let mut checked = Vec::new();
    let mut check = |method: &str, path: &str, status: u16, body: &Value| {
        let schema =
            &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]["schema"];
        assert!(!schema.is_null(), "{method} {path} {status} is not described: {body}");
        if let Err(e) = conforms(&doc, schema, body, "$") {
            panic!("{method} {path} {status}: {e}\n{body}");
        }
        checked.push(format!("{method} {path} {status}"));
    };

    let id = app.hire(&new_hire("ENG")).await;
    let (status, answer) = app.post_signed(HR_PATH, &new_hire("ENG"), "oa-hire").await;
    check("post", HR_PATH, status, &answer);
    let (status, answer) = app.post_signed(HR_PATH, &new_hire("NOPE"), "oa-unmapped").await;
    check("post", HR_PATH, status, &answer);
    let (status, answer) = app.post_raw(HR_PATH, b"{}".to_vec(), &[("content-type", "application/json".into())]).await;
    check("post", HR_PATH, status, &answer);
    let (status, answer) = app.post_raw(HR_PATH, b"{}".to_vec(), &[]).await;
    check("post", HR_PATH, status, &answer);

    let sync = "/webhooks/directory-sync";
    let event = json!({"event": "user.updated", "data": {"externalId": "E-1", "workEmail": "a@example.com"}});
    let (status, answer) = app.post_signed(sync, &event, "oa-sync").await;
    check("post", sync, status, &answer);
    let batch = "/webhooks/directory-sync/batch";
    let mixed = json!([event, {"event": "user.deleted", "data": {"externalId": "E-2"}}]);
    let (status, answer) = app.post_signed(batch, &mixed, "oa-batch").await;
    assert_eq!(status, 207);
    check("post", batch, status, &answer);
    let (status, answer) = app.post_signed(batch, &json!([{"event": "nope"}]), "oa-batch-bad").await;
    check("post", batch, status, &answer);
    let (status, answer) = app.post_signed(batch, &json!({"not": "a batch"}), "oa-batch-object").await;
    check("post", batch, status, &answer);
    let mut outsider = new_hire("ENG");
    outsider["email"] = json!("jane@example.net");
    let (status, answer) = app.post_signed(HR_PATH, &outsider, "oa-policy").await;
    assert_eq!(status, 422, "{answer}");
    check("post", HR_PATH, status, &answer);
    let outsiders =
        json!([{"event": "user.updated", "data": {"externalId": "E-3", "workEmail": "b@example.net"}}, event]);
    let (status, answer) = app.post_signed(batch, &outsiders, "oa-batch-policy").await;
    assert_eq!(answer["results"][0]["violations"][0]["code"], "SCIM_INVALID_EMAIL_DOMAIN", "{answer}");
    check("post", batch, status, &answer);

    let validation = "/webhook/scim-validation";
    let user = |email: &str| {
        json!({"eventType": "user.created", "eventTimestamp": "2026-11-23T10:00:00.000Z",
        "data": {"userName": email, "emails": [{"value": email, "primary": true}]}})
    };
    for body in [user("a@example.com"), user("a@example.net"), json!({"eventType": 1})] {
        let (status, answer) = validate(&app, &body, Some(VALIDATION_SECRET)).await;
        check("post", validation, status, &answer);
    }
    let (status, answer) = validate(&app, &user("a@example.com"), None).await;
    assert_eq!(status, 401, "{answer}");
    check("post", validation, status, &answer);
    // The ignored answer is text: the document says so.
    let (status, answer) = validate(&app, &json!({"eventType": "user.deleted"}), Some(VALIDATION_SECRET)).await;
    assert_eq!((status, &answer), (200, &json!("OK")));
    let text = &doc["paths"][validation]["post"]["responses"]["200"]["content"]["text/plain"]["schema"];
    assert_eq!(text["type"], "string", "{text}");

    let (status, answer) = app.admin_get(&format!("/jobs/{id}")).await;
    check("get", "/jobs/{audit_id}", status, &answer);
    app.worker.drain().await.unwrap();
    let (status, answer) = app.admin_get(&format!("/jobs/{id}")).await;
    assert_eq!(answer["state"], "dead", "{answer}");
    check("get", "/jobs/{audit_id}", status, &answer);
    let (status, answer) = app.admin_get("/jobs/not-a-uuid").await;
    check("get", "/jobs/{audit_id}", status, &answer);
    let (status, answer) = app.admin_get("/admin/dead-letters?limit=1").await;
    assert_eq!(answer["nextOffset"], 1, "{answer}");
    check("get", "/admin/dead-letters", status, &answer);
    let (status, answer) = app.admin_get("/admin/reports/discrepancies").await;
    assert_eq!(answer["failures"].as_array().map(Vec::len), Some(3), "the three dead sync jobs: {answer}");
    check("get", "/admin/reports/discrepancies", status, &answer);
    let (status, answer) = app.admin(Method::POST, &format!("/admin/dead-letters/{id}/replay")).await;
    check("post", "/admin/dead-letters/{audit_id}/replay", status, &answer);
    let (status, answer) = app.admin(Method::DELETE, &format!("/admin/dead-letters/{id}")).await;
    check("delete", "/admin/dead-letters/{audit_id}", status, &answer);
    let (status, answer) = app.admin(Method::POST, "/admin/reconcile").await;
    assert_eq!(status, 202, "{answer}");
    check("post", "/admin/reconcile", status, &answer);
    // No [genesys_events] in this config: each register-webhook route answers 409.
    for method in [Method::POST, Method::GET, Method::DELETE] {
        let (status, answer) = app.admin(method.clone(), "/admin/register-webhook").await;
        assert_eq!(status, 409, "{answer}");
        check(&method.as_str().to_lowercase(), "/admin/register-webhook", status, &answer);
    }
    let (status, answer) = app.admin(Method::DELETE, &format!("/admin/dead-letters/{}", uuid::Uuid::new_v4())).await;
    check("delete", "/admin/dead-letters/{audit_id}", status, &answer);

    let (status, answer) = app.admin_get("/admin/siem").await;
    assert_eq!(answer["enabled"], false, "{answer}");
    check("get", "/admin/siem", status, &answer);

    for path in ["/healthz", "/readyz"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        check("get", path, status, &resp.json().await.unwrap());
    }
    let resp = app.client.get(app.url("/jobs/x")).send().await.unwrap();
    check("get", "/jobs/{audit_id}", resp.status().as_u16(), &resp.json().await.unwrap());
    assert_eq!(checked.len(), 30, "{checked:#?}");
    app.shutdown().await;
}

pub(crate) const VALIDATION_SECRET: &str = "validation-secret-for-tests-0123";

/// POSTs a body to the validation webhook, with the shared secret when given.
pub(crate) async fn validate(app: &TestApp, body: &Value, secret: Option<&str>) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json".to_string()), ("x-genesys-webhook-id", "wh-1".into())];
    if let Some(secret) = secret {
        headers.push(("x-validation-secret", secret.to_string()));
    }
    app.post_raw("/webhook/scim-validation", serde_json::to_vec(body).unwrap(), &headers).await
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Whether `value` matches `schema`, for the parts of JSON Schema the document uses: `$ref`,
/// `type` (one or several), `properties`, `required`, `items`, `enum`, `oneOf`, `anyOf`, `minimum`,
/// `maximum`, `maxLength`. Anything else is allowed (as JSON Schema allows unknown keywords).
pub(crate) fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.strip_prefix("#/components/schemas/").ok_or(format!("{at}: odd $ref {reference}"))?;
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: $ref to a missing schema {name}"));
        }
        return conforms(doc, target, value, at);
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => return Err(format!("{at}: odd type {other}")),
        };
        let fits = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        });
        if !fits {
            return Err(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array().filter(|_| !value.is_null())
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64())
        && n < min
    {
        return Err(format!("{at}: {n} < minimum {min}"));
    }
    if let (Some(max), Some(n)) = (schema["maximum"].as_f64(), value.as_f64())
        && n > max
    {
        return Err(format!("{at}: {n} > maximum {max}"));
    }
    if let (Some(max), Some(s)) = (schema["maxLength"].as_u64(), value.as_str())
        && s.chars().count() as u64 > max
    {
        return Err(format!("{at}: longer than {max}"));
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Err(format!("{at}: required {name} is missing"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, sub) in properties {
                if let Some(v) = object.get(name) {
                    conforms(doc, sub, v, &format!("{at}.{name}"))?;
                }
            }
            // The document must name every field the service sends.
            if let Some(extra) = object.keys().find(|k| !properties.contains_key(*k)) {
                return Err(format!("{at}: field {extra} is not in the document"));
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            conforms(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let fits = options.iter().filter(|o| conforms(doc, o, value, at).is_ok()).count();
        if fits != 1 {
            return Err(format!("{at}: {value} matches {fits} of the oneOf alternatives, not exactly 1"));
        }
    }
    if let Some(options) = schema["anyOf"].as_array()
        && !options.iter().any(|o| conforms(doc, o, value, at).is_ok())
    {
        return Err(format!("{at}: {value} matches none of the anyOf alternatives"));
    }
    Ok(())
}
