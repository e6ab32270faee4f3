//! Directory-sync benchmark: upstream requests per attribute update, and JSONata speed.
//!
//! 1. Evaluates the sample mapping (`config/mappings/directory.jsonata`) on one thread for 2 s and
//!    prints evaluations per second on one core.
//! 2. Starts the emulator (its own process, seeded with `BENCH_UPDATES` users) and the service, posts
//!    one `user.updated` per user (a title change) in signed batches of 100, waits until every job has
//!    finished, and prints upstream requests per update (target: at most 2, the list and the PATCH),
//!    PATCHes sent and updates per second.
//!
//! Run: `cargo bench --bench sync` (`BENCH_UPDATES`, default 1,000).

// Benchmark code: a panic is a failed run, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys_provisioner::mapping::Mapping;
use genesys_provisioner::signing::WebhookSecret;
use serde_json::{Value, json};
use support::{
    CLIENT_ID, WEBHOOK_SECRET, default_config_path, emulator_stats, env_number, labelled, start_emulator, start_service,
};

#[path = "support/mod.rs"]
mod support;

const TARGET_REQUESTS_PER_UPDATE: f64 = 2.0;
const BATCH: usize = 100;

fn record(i: u64, title: &str) -> Value {
    json!({
        "externalId": format!("E-{i}"), "firstName": "User", "lastName": i.to_string(),
        "workEmail": format!("u{i}@example.com"), "department": "Engineering", "jobTitle": title,
        "employeeNumber": i.to_string(), "hireDate": "2026-01-01"
    })
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

    // The users as Genesys holds them before the sync: what the mapping makes of their records.
    let dir = tempfile::tempdir().expect("temp dir");
    let users: Vec<Value> = (0..updates)
        .map(|i| {
            let mut user = mapping.apply(&record(i, "Engineer")).expect("maps");
            user["active"] = json!(true);
            user
        })
        .collect();
    let seed = dir.path().join("seed.json");
    std::fs::write(&seed, json!({"users": users}).to_string()).expect("write seed");
    let seed = seed.display().to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut emulator = start_emulator(dir.path(), &["--config", default_config_path(), "--seed", &seed]);
        emulator.wait_until_ready(&http, "/emulator/stats").await;
        let mut service = start_service(dir.path(), &emulator.base, 60_000, 32);
        service.wait_until_ready(&http, "/healthz").await;
        let before = emulator_stats(&http, &emulator.base).await;

        let secret = WebhookSecret::parse(WEBHOOK_SECRET).expect("secret");
        let started = Instant::now();
        let mut accepted = 0u64;
        for (n, chunk) in (0..updates).collect::<Vec<_>>().chunks(BATCH).enumerate() {
            let events: Vec<Value> = chunk
                .iter()
                .map(|i| json!({"id": format!("sync-{i}"), "event": "user.updated", "data": record(*i, "Senior Engineer")}))
                .collect();
            let body = serde_json::to_vec(&events).expect("json");
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
            let mut request = http
                .post(format!("{}/webhooks/directory-sync/batch", service.base))
                .header("content-type", "application/json")
                .body(body.clone());
            for (name, value) in secret.headers(&format!("sync-batch-{n}"), ts, &body) {
                request = request.header(name, value);
            }
            let answer: Value = request.send().await.expect("batch sent").json().await.expect("batch answer");
            accepted += answer["accepted"].as_u64().unwrap_or(0);
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        let (succeeded, dead) = loop {
            let metrics = http.get(format!("{}/metrics", service.base)).send().await.expect("metrics").text().await.expect("text");
            let jobs = labelled(&metrics, "provisioner_queue_jobs", "state");
            let (s, d) = (jobs.get("succeeded").copied().unwrap_or(0), jobs.get("dead").copied().unwrap_or(0));
            if s + d >= accepted || Instant::now() > deadline {
                break (s, d);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let elapsed = started.elapsed();
        let after = emulator_stats(&http, &emulator.base).await;
        let api = |s: &genesys_emulator::Stats, f: &dyn Fn(&str) -> bool| -> u64 {
            s.requests_by_route.iter().filter(|(r, _)| f(r)).map(|(_, n)| n).sum()
        };
        let upstream = api(&after, &|r| r.contains(" /api/v2/")) - api(&before, &|r| r.contains(" /api/v2/"));
        let patches = api(&after, &|r| r.starts_with("PATCH /api/v2/scim/v2/users"))
            - api(&before, &|r| r.starts_with("PATCH /api/v2/scim/v2/users"));
        let per_update = upstream as f64 / succeeded.max(1) as f64;
        println!();
        println!("directory sync of {updates} users (client {CLIENT_ID}; a title change each)");
        println!("  events accepted          {accepted:>8}");
        println!("  jobs succeeded / dead    {succeeded:>8} / {dead}");
        println!("  elapsed                  {:>8.1} s   ({:.0} updates/s)", elapsed.as_secs_f64(), succeeded as f64 / elapsed.as_secs_f64());
        println!("  upstream requests        {upstream:>8}   (user PATCHes {patches})");
        println!(
            "  requests per update      {per_update:>8.3}   target <= {TARGET_REQUESTS_PER_UPDATE}   {}",
            if per_update <= TARGET_REQUESTS_PER_UPDATE { "PASS" } else { "MISS" }
        );
        println!("  JSONata evaluations/s    {per_second:>8.0}   (one core)");
        drop(service);
        drop(emulator);
    });
}
