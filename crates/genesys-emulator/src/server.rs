//! The emulator's HTTP face: routes, the edge every request passes (correlation id, latency, bearer auth,
//! rate limit, injected faults), and thin handlers over the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::Shared;
use crate::faults::RateInfo;
use crate::integrations;
use crate::store::{Fail, etag, etag_matches};
use crate::wire::{ListResponse, SCHEMA_ERROR, SCIM_CONTENT_TYPE, ScimGroup, ScimUser, TokenResponse};

const CORRELATION: HeaderName = HeaderName::from_static("inin-correlation-id");
const RL_COUNT: HeaderName = HeaderName::from_static("inin-ratelimit-count");
const RL_ALLOWED: HeaderName = HeaderName::from_static("inin-ratelimit-allowed");
const RL_RESET: HeaderName = HeaderName::from_static("inin-ratelimit-reset");

type St = State<Arc<Shared>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/api/v2/scim/v2/users", get(list_users).post(create_user))
        .route("/api/v2/scim/v2/users/{id}", get(get_user).put(replace_user).patch(patch_user).delete(delete_user))
        .route("/api/v2/scim/v2/groups", get(list_groups).post(no_group_writes))
        .route(
            "/api/v2/scim/v2/groups/{id}",
            get(get_group).patch(patch_group).put(replace_group).delete(no_group_writes).post(no_group_writes),
        )
        .route("/api/v2/authorization/roles", get(list_roles))
        .route("/api/v2/integrations", get(integrations::list_integrations).post(integrations::create_integration))
        .route(
            "/api/v2/integrations/{id}",
            get(integrations::get_integration)
                .patch(integrations::patch_integration)
                .delete(integrations::delete_integration),
        )
        .route("/api/v2/integrations/{id}/config/current", get(integrations::get_config).put(integrations::put_config))
        .route("/api/v2/processautomation/triggers/topics", get(integrations::trigger_topics))
        .route(
            "/api/v2/processautomation/triggers",
            get(integrations::list_triggers).post(integrations::create_trigger),
        )
        .route(
            "/api/v2/processautomation/triggers/{id}",
            get(integrations::get_trigger).put(integrations::update_trigger).delete(integrations::delete_trigger),
        )
        .route("/emulator/faults", get(faults).post(set_faults))
        .route("/emulator/stats", get(stats))
        .fallback(|| async { fail(&Fail::new(404, None, "no such endpoint in the Genesys emulator")) })
        .method_not_allowed_fallback(|| async { fail(&Fail::new(405, None, "method not allowed on this endpoint")) })
        .layer(middleware::from_fn_with_state(shared.clone(), edge))
        .with_state(shared)
}

// ---------- answers ----------

fn scim_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, SCIM_CONTENT_TYPE)], bytes).into_response(),
        Err(e) => internal_error(&format!("the answer does not serialize: {e}")),
    }
}

/// A 500 SCIM error built as a `Value`, whose `Display` cannot fail: the answer when a body (the
/// error body of `fail` included) does not serialize or a header cannot be made.
fn internal_error(detail: &str) -> Response {
    let body = json!({"schemas": [SCHEMA_ERROR], "status": "500", "detail": detail});
    (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, SCIM_CONTENT_TYPE)], body.to_string()).into_response()
}

pub(crate) fn fail(f: &Fail) -> Response {
    scim_json(StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &f.body())
}

fn with_etag(mut resp: Response, version: Option<&str>) -> Response {
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(v).ok()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn user_answer(status: StatusCode, user: &ScimUser) -> Response {
    let meta = user.meta.as_ref();
    let mut resp = with_etag(scim_json(status, user), meta.and_then(|m| m.version.as_deref()));
    if status == StatusCode::CREATED
        && let Some(location) = meta.and_then(|m| m.location.as_deref()).and_then(|l| HeaderValue::from_str(l).ok())
    {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp
}

fn group_answer(group: &ScimGroup) -> Response {
    with_etag(scim_json(StatusCode::OK, group), group.meta.as_ref().and_then(|m| m.version.as_deref()))
}

fn not_modified(version: u64) -> Response {
    with_etag(StatusCode::NOT_MODIFIED.into_response(), Some(&etag(version)))
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn rate_headers(resp: &mut Response, info: &RateInfo) {
    let h = resp.headers_mut();
    h.insert(RL_COUNT, HeaderValue::from(info.count));
    h.insert(RL_ALLOWED, HeaderValue::from(info.allowed));
    h.insert(RL_RESET, HeaderValue::from(info.reset_secs));
}

// ---------- the edge ----------

async fn edge(State(shared): St, req: Request, next: Next) -> Response {
    let correlation = match req.headers().get(&CORRELATION) {
        Some(sent) => sent.clone(),
        None => {
            let Ok(made) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) else {
                return internal_error("cannot make a correlation id header");
            };
            made
        }
    };
    let path = req.uri().path().to_string();
    let mut resp = if path.starts_with("/emulator/") {
        next.run(req).await
    } else {
        let route = req.extensions().get::<MatchedPath>().map_or(path.as_str(), |m| m.as_str());
        shared.count_route(format!("{} {route}", req.method()));
        let latency = shared.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if path == "/api/v2" || path.starts_with("/api/v2/") {
            guard(&shared, req, next).await
        } else {
            next.run(req).await
        }
    };
    resp.headers_mut().insert(CORRELATION, correlation);
    resp
}

/// Bearer auth, then the rate limit, then injected faults, then the handler.
async fn guard(shared: &Shared, req: Request, next: Next) -> Response {
    let authorized = {
        let token = header_str(req.headers(), header::AUTHORIZATION).and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        token.is_some_and(|t| shared.store().tokens.is_valid(t))
    };
    if !authorized {
        let mut resp = fail(&Fail::new(401, None, "a valid, unexpired Bearer token is required"));
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let rate = shared.faults.admit();
    if let Some(info) = &rate
        && !info.admitted
    {
        Shared::bump(&shared.counters.rate_limited);
        let detail =
            format!("rate limit exceeded: {} requests per minute; retry after {} s", info.allowed, info.reset_secs);
        let mut resp = fail(&Fail::new(429, None, detail));
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(info.reset_secs));
        rate_headers(&mut resp, info);
        return resp;
    }
    let write = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let scripted = if write { shared.faults.take_write_failure() } else { shared.faults.take_read_failure() };
    let injected = match scripted {
        Some(status) => Some(status),
        None => shared.faults.roll_server_error().then_some(503),
    };
    let mut resp = match injected {
        Some(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_server_error() {
                Shared::bump(&shared.counters.server_errors);
            }
            let mut resp = fail(&Fail::new(status.as_u16(), None, "injected by the Genesys emulator"));
            if status == StatusCode::TOO_MANY_REQUESTS {
                Shared::bump(&shared.counters.rate_limited);
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u32));
            }
            resp
        }
        None => next.run(req).await,
    };
    if let Some(info) = &rate {
        rate_headers(&mut resp, info);
    }
    resp
}

// ---------- OAuth ----------

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "description": description}))).into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let (scheme, encoded) = header_str(headers, header::AUTHORIZATION)?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Decodes one `application/x-www-form-urlencoded` component.
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn form_value(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k)? == key).then(|| form_decode(v)).flatten()
    })
}

async fn token(State(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    Shared::bump(&shared.counters.token_requests);
    let valid = !shared.faults.refuses_credentials()
        && basic_credentials(&headers).is_some_and(|(id, secret)| {
            let id_ok = id.as_bytes().ct_eq(shared.client_id.as_bytes());
            let secret_ok = secret.as_bytes().ct_eq(shared.client_secret.as_bytes());
            bool::from(id_ok & secret_ok)
        });
    if !valid {
        let mut resp = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed: send Authorization: Basic base64(client_id:client_secret)",
        );
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        return resp;
    }
    match form_value(&body, "grant_type").as_deref() {
        Some("client_credentials") => {}
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported; use client_credentials"),
            );
        }
    }
    let access_token = shared.store().tokens.issue(shared.token_ttl);
    let answer =
        TokenResponse { access_token, token_type: "bearer".to_string(), expires_in: shared.token_ttl.as_secs() };
    (StatusCode::OK, axum::Json(answer)).into_response()
}

// ---------- users ----------

fn param<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn number(query: &HashMap<String, String>, name: &str, default: u64) -> Result<u64, Fail> {
    match param(query, name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => {
            v.parse().map_err(|_| Fail::bad(Some("invalidValue"), format!("{name}: must be a non-negative integer")))
        }
    }
}

async fn list_users(State(shared): St, uri: Uri, Query(query): Query<HashMap<String, String>>) -> Response {
    shared.list_queries.lock().unwrap_or_else(|e| e.into_inner()).push(uri.to_string());
    let page = number(&query, "startIndex", 1).and_then(|start| Ok((start, number(&query, "count", 25)?)));
    let result = page.and_then(|(start, count)| shared.store().list_users(param(&query, "filter"), start, count));
    match (result, param(&query, "attributes")) {
        (Ok(list), None) => scim_json(StatusCode::OK, &list),
        (Ok(list), Some(attributes)) => scim_json(StatusCode::OK, &only_attributes(list, attributes)),
        (Err(f), _) => fail(&f),
    }
}

/// A list whose users carry only the attributes asked for (RFC 7644 3.4.2.5), plus `id` and
/// `schemas`, which are always returned. `a.b` asks for `a`; names are compared without case.
fn only_attributes(list: ListResponse<ScimUser>, attributes: &str) -> serde_json::Value {
    let wanted: Vec<String> = attributes
        .split(',')
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(|a| {
            // An extension URN names the whole extension; otherwise `a.b` is attribute `a`.
            let top = if a.starts_with("urn:") { a } else { a.split('.').next().unwrap_or(a) };
            top.to_ascii_lowercase()
        })
        .collect();
    let mut value = serde_json::to_value(&list).unwrap_or_default();
    if let Some(users) = value.get_mut("Resources").and_then(serde_json::Value::as_array_mut) {
        for user in users {
            if let Some(user) = user.as_object_mut() {
                user.retain(|k, _| {
                    let k = k.to_ascii_lowercase();
                    k == "id" || k == "schemas" || wanted.contains(&k)
                });
            }
        }
    }
    value
}

async fn create_user(State(shared): St, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    shared.record(&method, &uri, &headers, &body);
    let strict = shared.faults.strict_emails();
    let strict_attributes = shared.faults.strict_attributes();
    let result = shared.store().create_user(&body, strict, strict_attributes);
    match result {
        Ok(user) => user_answer(StatusCode::CREATED, &user),
        Err(f) => fail(&f),
    }
}

async fn get_user(State(shared): St, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = shared.store().get_user(&id);
    match result {
        Ok((_, version)) if header_str(&headers, header::IF_NONE_MATCH).is_some_and(|h| etag_matches(h, version)) => {
            not_modified(version)
        }
        Ok((user, _)) => user_answer(StatusCode::OK, &user),
        Err(f) => fail(&f),
    }
}

async fn replace_user(
    State(shared): St,
    Path(id): Path<String>,
    (method, uri): (Method, Uri),
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    let strict = shared.faults.strict_emails();
    let if_match = header_str(&headers, header::IF_MATCH);
    let strict_attributes = shared.faults.strict_attributes();
    let result = shared.store().replace_user(&id, &body, if_match, strict, strict_attributes);
    match result {
        Ok(user) => user_answer(StatusCode::OK, &user),
        Err(f) => fail(&f),
    }
}

async fn patch_user(
    State(shared): St,
    Path(id): Path<String>,
    (method, uri): (Method, Uri),
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    if shared.faults.take_concurrent_user_change() {
        shared.store().bump_user_version(&id);
    }
    let strict = shared.faults.strict_emails();
    let if_match = header_str(&headers, header::IF_MATCH);
    let keep_title = shared.faults.keeps_title();
    let strict_attributes = shared.faults.strict_attributes();
    let result = shared.store().patch_user(&id, &body, if_match, strict, strict_attributes, keep_title);
    match result {
        Ok(user) => user_answer(StatusCode::OK, &user),
        Err(f) => fail(&f),
    }
}

async fn delete_user(State(shared): St, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = shared.store().delete_user(&id, header_str(&headers, header::IF_MATCH));
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(f) => fail(&f),
    }
}

// ---------- groups ----------

async fn list_groups(State(shared): St, Query(query): Query<HashMap<String, String>>) -> Response {
    let result = shared.store().list_groups(param(&query, "filter"));
    match result {
        Ok(list) => scim_json(StatusCode::OK, &list),
        Err(f) => fail(&f),
    }
}

async fn get_group(State(shared): St, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = shared.store().get_group(&id);
    match result {
        Ok((_, version)) if header_str(&headers, header::IF_NONE_MATCH).is_some_and(|h| etag_matches(h, version)) => {
            not_modified(version)
        }
        Ok((group, _)) => group_answer(&group),
        Err(f) => fail(&f),
    }
}

async fn patch_group(
    State(shared): St,
    Path(id): Path<String>,
    (method, uri): (Method, Uri),
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(status) = shared.faults.take_group_patch_failure() {
        if status >= 500 {
            Shared::bump(&shared.counters.server_errors);
        }
        return fail(&Fail::new(status, None, "injected by the Genesys emulator"));
    }
    if shared.faults.take_concurrent_group_change() {
        shared.store().bump_group_version(&id);
    }
    shared.record(&method, &uri, &headers, &body);
    let strict_attributes = shared.faults.strict_attributes();
    let result = shared.store().patch_group(&id, &body, header_str(&headers, header::IF_MATCH), strict_attributes);
    match result {
        Ok(group) => group_answer(&group),
        Err(f) => fail(&f),
    }
}

async fn replace_group(
    State(shared): St,
    Path(id): Path<String>,
    (method, uri): (Method, Uri),
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(&method, &uri, &headers, &body);
    let strict_attributes = shared.faults.strict_attributes();
    let result = shared.store().replace_group(&id, &body, header_str(&headers, header::IF_MATCH), strict_attributes);
    match result {
        Ok(group) => group_answer(&group),
        Err(f) => fail(&f),
    }
}

async fn no_group_writes() -> Response {
    let detail = "SCIM groups cannot be created or deleted; create groups with POST /api/v2/groups";
    let mut resp = fail(&Fail::new(405, None, detail));
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, PATCH, PUT"));
    resp
}

// ---------- authorization roles (read only) ----------

/// `GET /api/v2/authorization/roles`: the organisation's roles as an entity listing
/// (`OrganizationRoleEntityListing`), optionally only those with a given `name` (case-insensitive),
/// paged by `pageSize` (default 25) and `pageNumber` (from 1).
async fn list_roles(State(shared): St, Query(query): Query<HashMap<String, String>>) -> Response {
    let (size, page) = match (number(&query, "pageSize", 25), number(&query, "pageNumber", 1)) {
        (Ok(size), Ok(page)) => (size.clamp(1, 500) as usize, page.max(1) as usize),
        (Err(f), _) | (_, Err(f)) => return fail(&f),
    };
    let name = param(&query, "name");
    let matching: Vec<&(String, String)> =
        shared.roles.iter().filter(|(_, n)| name.is_none_or(|want| n.eq_ignore_ascii_case(want))).collect();
    let entities: Vec<serde_json::Value> = matching
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|(id, name)| {
            json!({"id": id, "name": name, "default": true, "base": false,
                   "selfUri": format!("/api/v2/authorization/roles/{id}")})
        })
        .collect();
    let body = json!({
        "entities": entities,
        "pageSize": size,
        "pageNumber": page,
        "total": matching.len(),
        "pageCount": matching.len().div_ceil(size),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

// ---------- control routes ----------

/// `POST /emulator/faults`; every field optional, absent ones unchanged.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultsBody {
    /// Absent: unchanged; null: no limit.
    #[serde(default, deserialize_with = "present")]
    rate_limit_per_minute: Option<Option<u32>>,
    server_error_rate: Option<f64>,
    latency_ms: Option<u64>,
    fail_next_writes: Option<crate::FailWrites>,
    fail_next_reads: Option<crate::FailWrites>,
    strict_emails: Option<bool>,
    strict_attributes: Option<bool>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

fn control_error(detail: String) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": detail}))).into_response()
}

async fn faults(State(shared): St) -> Response {
    axum::Json(shared.faults.settings()).into_response()
}

async fn set_faults(State(shared): St, body: Bytes) -> Response {
    let body: FaultsBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return control_error(format!("cannot read the faults body: {e}")),
    };
    if let Some(rate) = body.server_error_rate
        && !(0.0..=1.0).contains(&rate)
    {
        return control_error(format!("serverErrorRate must be between 0 and 1, not {rate}"));
    }
    if let Some(f) = body.fail_next_writes
        && !(400..=599).contains(&f.status)
    {
        return control_error(format!("failNextWrites.status must be a 4xx or 5xx status, not {}", f.status));
    }
    if let Some(f) = body.fail_next_reads
        && !(400..=599).contains(&f.status)
    {
        return control_error(format!("failNextReads.status must be a 4xx or 5xx status, not {}", f.status));
    }
    let faults = &shared.faults;
    if let Some(limit) = body.rate_limit_per_minute {
        faults.set_rate_limit_per_minute(limit);
    }
    if let Some(rate) = body.server_error_rate {
        faults.set_server_error_rate(rate);
    }
    if let Some(ms) = body.latency_ms {
        faults.set_latency(Duration::from_millis(ms));
    }
    if let Some(f) = body.fail_next_writes {
        faults.fail_next_writes(f.count, f.status);
    }
    if let Some(strict) = body.strict_emails {
        faults.set_strict_emails(strict);
    }
    if let Some(f) = body.fail_next_reads {
        faults.fail_next_reads(f.count, f.status);
    }
    if let Some(strict) = body.strict_attributes {
        faults.set_strict_attributes(strict);
    }
    axum::Json(faults.settings()).into_response()
}

async fn stats(State(shared): St) -> Response {
    axum::Json(shared.stats()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        assert_eq!(form_value(b"grant_type=client_credentials", "grant_type").as_deref(), Some("client_credentials"));
        assert_eq!(form_value(b"a=1&grant%5Ftype=x+y%21", "grant_type").as_deref(), Some("x y!"));
        assert_eq!(form_value(b"a=1", "grant_type"), None);
    }
}
