//! Directory-sync benchmark: Genesys requests per attribute update, with and without edits made
//! inside Genesys, and JSONata speed.
//!
//! 1. Evaluates the sample mapping (`config/mappings/directory.jsonata`) on one thread for 2 s and
//!    prints evaluations per second on one core.
//! 2. Starts the emulator and the service (each its own process) and lets the service create
//!    `BENCH_UPDATES` users through `user.created` events, so the mirror knows them as it would in
//!    production (not timed).
//! 3. Steady state: one `user.updated` per user (a title change), in signed batches of 100; prints
//!    Genesys requests per update (target: at most 1.05: one PATCH with the mirrored version).
//! 4. Drift: 10% of the users are edited inside the emulator first (their title, through its SCIM
//!    API, as an admin would), then every user is updated again. An edited user costs 3 requests
//!    (the refused PATCH, a read, the PATCH); the others 1. Prints both, and checks that every
//!    edited user, and no other, is in the discrepancy report as drift.
//!
//! Run: `cargo bench --bench sync` (`BENCH_UPDATES`, default 1,000).

// Benchmark code: a panic is a failed run, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys_provisioner::mapping::Mapping;
use genesys_provisioner::signing::WebhookSecret;
use serde_json::{Value, json};
use support::{
    ADMIN_TOKEN, CLIENT_ID, WEBHOOK_SECRET, default_config_path, emulator_stats, emulator_token, env_number, labelled,
    start_emulator, start_service,
};

#[path = "support/mod.rs"]
mod support;

const TARGET_REQUESTS_PER_UPDATE: f64 = 1.05;
const BATCH: usize = 100;
/// One user in this many is edited inside Genesys before the drift round.
const DRIFT_EVERY: u64 = 10;

fn record(i: u64, title: &str) -> Value {
    json!({
        "externalId": format!("E-{i}"), "firstName": "User", "lastName": i.to_string(),
        "workEmail": format!("u{i}@example.com"), "department": "Engineering", "jobTitle": title,
        "employeeNumber": i.to_string(), "hireDate": "2026-01-01"
    })
}

/// Posts one `kind` event per user (with `title`) in signed batches; returns how many were accepted.
async fn post_events(http: &reqwest::Client, service: &str, users: u64, kind: &str, title: &str, round: &str) -> u64 {
    let secret = WebhookSecret::parse(WEBHOOK_SECRET).expect("secret");
    let mut accepted = 0u64;
    for (n, chunk) in (0..users).collect::<Vec<_>>().chunks(BATCH).enumerate() {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("{round}-{i}"), "event": kind, "data": record(*i, title)}))
            .collect();
        let body = serde_json::to_vec(&events).expect("json");
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
        let mut request = http
            .post(format!("{service}/webhooks/directory-sync/batch"))
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in secret.headers(&format!("{round}-batch-{n}"), ts, &body) {
            request = request.header(name, value);
        }
        let answer: Value = request.send().await.expect("batch sent").json().await.expect("batch answer");
        accepted += answer["accepted"].as_u64().unwrap_or(0);
    }
    accepted
}

/// Waits until `total` jobs have finished; returns (succeeded, dead) so far.
async fn wait_for_jobs(http: &reqwest::Client, service: &str, total: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let metrics = http.get(format!("{service}/metrics")).send().await.expect("metrics").text().await.expect("text");
        let jobs = labelled(&metrics, "provisioner_queue_jobs", "state");
        let (s, d) = (jobs.get("succeeded").copied().unwrap_or(0), jobs.get("dead").copied().unwrap_or(0));
        if s + d >= total || Instant::now() > deadline {
            return (s, d);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Genesys API requests the emulator has answered so far, all, and user PATCHes.
async fn api_requests(http: &reqwest::Client, emulator: &str) -> (u64, u64) {
    let stats = emulator_stats(http, emulator).await;
    let sum = |f: &dyn Fn(&str) -> bool| -> u64 {
        stats.requests_by_route.iter().filter(|(r, _)| f(r)).map(|(_, n)| n).sum()
    };
    (sum(&|r| r.contains(" /api/v2/")), sum(&|r| r.starts_with("PATCH /api/v2/scim/v2/users")))
}

/// One measured round: what it cost, printed.
struct Round {
    updates: u64,
    dead: u64,
    elapsed: Duration,
    requests: u64,
    patches: u64,
}

impl Round {
    fn per_update(&self) -> f64 {
        self.requests as f64 / self.updates.max(1) as f64
    }

    fn print(&self, title: &str) {
        println!();
        println!("{title}");
        println!("  jobs succeeded / dead    {:>8} / {}", self.updates, self.dead);
        println!(
            "  elapsed                  {:>8.1} s   ({:.0} updates/s)",
            self.elapsed.as_secs_f64(),
            self.updates as f64 / self.elapsed.as_secs_f64()
        );
        println!("  Genesys requests         {:>8}   (user PATCHes {})", self.requests, self.patches);
    }
}

/// Posts one update per user and waits for them; `finished` counts the jobs before this round.
async fn update_round(
    http: &reqwest::Client,
    service: &str,
    emulator: &str,
    users: u64,
    title: &str,
    finished: u64,
) -> Round {
    let (requests_before, patches_before) = api_requests(http, emulator).await;
    let started = Instant::now();
    let accepted = post_events(http, service, users, "user.updated", title, title).await;
    let (succeeded, dead) = wait_for_jobs(http, service, finished + accepted).await;
    let elapsed = started.elapsed();
    let (requests, patches) = api_requests(http, emulator).await;
    Round {
        updates: succeeded - finished,
        dead,
        elapsed,
        requests: requests - requests_before,
        patches: patches - patches_before,
    }
}

/// Changes the title of every `DRIFT_EVERY`th user inside Genesys (a SCIM PATCH of the emulator's,
/// as an admin's edit would be); returns their externalIds.
async fn edit_inside_genesys(http: &reqwest::Client, emulator: &str, users: u64) -> BTreeSet<String> {
    let token = emulator_token(http, emulator).await;
    let mut edited = BTreeSet::new();
    for i in (0..users).step_by(DRIFT_EVERY as usize) {
        let external_id = format!("E-{i}");
        let list: Value = http
            .get(format!("{emulator}/api/v2/scim/v2/users?filter=externalId%20eq%20%22{external_id}%22"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list JSON");
        let id = list["Resources"][0]["id"].as_str().expect("the user exists").to_string();
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "Edited inside Genesys"}]});
        http.patch(format!("{emulator}/api/v2/scim/v2/users/{id}"))
            .bearer_auth(&token)
            .json(&patch)
            .send()
            .await
            .expect("patch")
            .error_for_status()
            .expect("the edit is accepted");
        edited.insert(external_id);
    }
    edited
}

/// The externalIds with `drift` entries in the discrepancy report since `since` (RFC 3339).
async fn drift_report(http: &reqwest::Client, service: &str, since: &str) -> BTreeSet<String> {
    let report: Value = http
        .get(format!("{service}/admin/reports/discrepancies?since={}", since.replace('+', "%2B")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("report JSON");
    report["discrepancies"]
        .as_array()
        .expect("a list of discrepancies")
        .iter()
        .filter(|d| d["kind"] == "drift")
        .filter_map(|d| d["externalId"].as_str().map(str::to_string))
        .collect()
}

fn main() {
    let updates = env_number("BENCH_UPDATES", 1_000);
    let mapping_path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/mappings/directory.jsonata");
    let mapping = Mapping::load(std::path::Path::new(mapping_path)).expect("the sample mapping compiles");

    // JSONata on one core.
    let sample = record(7, "Engineer");
    let started = Instant::now();
    let mut evaluations = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        mapping.apply(&sample).expect("the sample record maps");
        evaluations += 1;
    }
    let per_second = evaluations as f64 / started.elapsed().as_secs_f64();
    println!("JSONata: {evaluations} evaluations of the sample mapping in 2 s on one core: {per_second:.0}/s");

    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut emulator = start_emulator(dir.path(), &["--config", default_config_path()]);
        emulator.wait_until_ready(&http, "/emulator/stats").await;
        let mut service = start_service(dir.path(), &emulator.base, 60_000, 32);
        service.wait_until_ready(&http, "/healthz").await;
        let (emulator_base, service_base) = (emulator.base.clone(), service.base.clone());

        // The users, created by the service (so the mirror knows them, as in production).
        let created = post_events(&http, &service_base, updates, "user.created", "Engineer", "create").await;
        let (made, dead) = wait_for_jobs(&http, &service_base, created).await;
        assert_eq!((made, dead), (updates, 0), "every user is created");

        let steady = update_round(&http, &service_base, &emulator_base, updates, "Senior Engineer", made).await;
        steady.print(&format!(
            "directory sync of {updates} users the service created (client {CLIENT_ID}; a title change each)"
        ));
        let per_update = steady.per_update();
        println!(
            "  requests per update      {per_update:>8.3}   target <= {TARGET_REQUESTS_PER_UPDATE}   {}",
            if per_update <= TARGET_REQUESTS_PER_UPDATE { "PASS" } else { "MISS" }
        );

        let since = chrono::Utc::now().to_rfc3339();
        let edited = edit_inside_genesys(&http, &emulator_base, updates).await;
        let finished = made + steady.updates + steady.dead;
        let drift = update_round(&http, &service_base, &emulator_base, updates, "Principal Engineer", finished).await;
        drift.print(&format!(
            "the same {updates} users, {} of them ({}%) edited inside Genesys first",
            edited.len(),
            100 / DRIFT_EVERY
        ));
        let clean = updates - edited.len() as u64;
        // The others cost one request each; what is left is the edited users' share.
        let per_edited = (drift.requests as f64 - clean as f64) / edited.len().max(1) as f64;
        println!("  requests per update      {:>8.3}   (all users)", drift.per_update());
        println!("  requests per edited user {per_edited:>8.3}   expected 3 (refused PATCH, read, PATCH)");
        let reported = drift_report(&http, &service_base, &since).await;
        let all_reported = reported == edited;
        println!(
            "  drift report             {:>8}   users ({} edited, {} missing, {} not edited)   {}",
            reported.len(),
            edited.len(),
            edited.difference(&reported).count(),
            reported.difference(&edited).count(),
            if all_reported { "PASS" } else { "MISS" }
        );
        drop(service);
        drop(emulator);
    });
}
