//! Provisioning throughput benchmark: how close the real service comes to the request rate a rate-limited
//! Genesys Cloud allows, and what each new hire costs upstream.
//!
//! Two release-binary processes run on free local ports, each killed when the benchmark ends or panics:
//!
//! 1. the Genesys Cloud emulator (`emulator`, seeded with the groups of `config/default.toml`'s departments),
//!    limited to `BENCH_RATE` API requests per minute (a sliding 60 s window answering 429 with Retry-After);
//! 2. the service (`serve`) with `[genesys] requests_per_minute = BENCH_RATE`, a fresh SQLite database and
//!    audit folder in a temporary directory, 32 workers, pointed at the emulator.
//!
//! `BENCH_HIRES` signed new-hire webhooks (unique ids and emails, departments ENG, SUPPORT, SALES, HR in
//! turn) are posted from 16 concurrent tasks. The clock starts at the first post and stops when
//! `GET /metrics` shows every accepted job succeeded or dead (polled every 250 ms). A new hire costs two
//! Genesys requests (create the user, add it to the group with one PATCH), so the defaults (1000 hires
//! at 3000 requests per minute) need about 40 s at the allowed rate.
//!
//! The report, from the emulator's own counters (`GET /emulator/stats`), against the targets:
//!
//! * upstream API requests per provisioned hire: at most 3;
//! * 429 answers as a share of upstream API requests: at most 1 %;
//! * achieved request rate (upstream requests per elapsed minute) / allowed rate: at least 0.9.
//!
//! Then the emulator's SCIM API is asked how many (active) users exist, which must equal the number of
//! jobs that succeeded. The service's log (stderr, `RUST_LOG=warn`) goes to a file in the temporary
//! directory; the report prints how many lines it wrote and the first few.
//!
//! Run: `cargo bench --bench provision`
//!
//! | variable       | default | meaning                                                    |
//! |----------------|---------|------------------------------------------------------------|
//! | `BENCH_HIRES`  | 1000    | new hires posted                                           |
//! | `BENCH_RATE`   | 3000    | Genesys API requests per minute, allowed and configured    |
//!
//! The run gives up waiting for the jobs after 3 × (3 × `BENCH_HIRES` / `BENCH_RATE`) minutes + 60 s and
//! reports what it has.

// Benchmark code: a panic is a failed run, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys_emulator::Stats;
use genesys_provisioner::signing::WebhookSecret;
use reqwest::StatusCode;
use serde_json::json;
use support::{
    CLIENT_ID, CLIENT_SECRET, WEBHOOK_SECRET, default_config_path, emulator_stats, env_number, labelled,
    start_emulator, start_service,
};

#[path = "support/mod.rs"]
mod support;

const DEPARTMENTS: [&str; 4] = ["ENG", "SUPPORT", "SALES", "HR"];
const POSTERS: usize = 16;
const WORKER_CONCURRENCY: usize = 32;
/// Genesys requests a new hire costs: create the user, patch the group (no read, no `If-Match`).
const REQUESTS_PER_HIRE: f64 = 2.0;
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const TARGET_REQUESTS_PER_HIRE: f64 = 2.0;
const TARGET_429_SHARE: f64 = 0.01;
const TARGET_UTILISATION: f64 = 0.9;

fn main() {
    let hires = env_number("BENCH_HIRES", 1000);
    let rate = env_number("BENCH_RATE", 3000);
    assert!(hires > 0 && rate > 0, "BENCH_HIRES and BENCH_RATE must be at least 1");
    let rate = u32::try_from(rate).expect("BENCH_RATE is too large");

    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("cannot start tokio");
    let mut emulator = start_emulator(dir.path(), &["--config", default_config_path()]);
    let mut service = None;
    runtime.block_on(async {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("cannot build a client");
        emulator.wait_until_ready(&http, "/emulator/stats").await;
        set_rate_limit(&http, &emulator.base, Some(rate)).await;
        let service = service.insert(start_service(dir.path(), &emulator.base, rate, WORKER_CONCURRENCY));
        service.wait_until_ready(&http, "/healthz").await;
        println!(
            "benchmarking provisioning: {hires} hires from {POSTERS} tasks, Genesys emulator {} limited to {rate} \
             requests/min, service {} with {WORKER_CONCURRENCY} workers",
            emulator.base, service.base
        );

        let started = Instant::now();
        let intake = post_hires(&service.base, hires).await;
        println!(
            "posted {hires} webhooks in {:.1} s: {} accepted (202){}",
            intake.took.as_secs_f64(),
            intake.accepted,
            if intake.refused.is_empty() { String::new() } else { format!(", refused: {:?}", intake.refused) }
        );
        let deadline = Duration::from_secs_f64(3.0 * hires as f64 * REQUESTS_PER_HIRE / f64::from(rate) * 60.0)
            + Duration::from_secs(60);
        let done = wait_for_jobs(&http, &service.base, intake.accepted, started, deadline).await;

        // Read the emulator's counters first: the check below makes requests of its own.
        let stats = emulator_stats(&http, &emulator.base).await;
        // The timing is over: lift the limit so the check is not refused by a window the run filled.
        set_rate_limit(&http, &emulator.base, None).await;
        let users = count_emulator_users(&http, &emulator.base).await;
        report(hires, rate, &intake, &done, &stats, users);
    });
    for process in [Some(&emulator), service.as_ref()].into_iter().flatten() {
        let log = process.log();
        let lines: Vec<&str> = log.lines().collect();
        println!("{} log (stderr, RUST_LOG=warn): {} line(s)", process.name, lines.len());
        for line in lines.iter().take(5) {
            println!("  {}", line.chars().take(240).collect::<String>());
        }
    }
    drop(service);
    drop(emulator);
}

/// `POST /emulator/faults {"rateLimitPerMinute": limit}` (null lifts the limit).
async fn set_rate_limit(http: &reqwest::Client, emulator: &str, limit: Option<u32>) {
    http.post(format!("{emulator}/emulator/faults"))
        .json(&json!({ "rateLimitPerMinute": limit }))
        .send()
        .await
        .expect("POST /emulator/faults failed")
        .error_for_status()
        .expect("POST /emulator/faults did not answer 200");
}

/// Active users in the emulator, through its own SCIM API (an unfiltered list shows active users only).
async fn count_emulator_users(http: &reqwest::Client, emulator: &str) -> u64 {
    let token: serde_json::Value = http
        .post(format!("{emulator}/oauth/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("POST /oauth/token failed")
        .error_for_status()
        .expect("POST /oauth/token did not answer 200")
        .json()
        .await
        .expect("the token answer is not JSON");
    let token = token["access_token"].as_str().expect("the token answer has no access_token");
    let list: serde_json::Value = http
        .get(format!("{emulator}/api/v2/scim/v2/users?startIndex=1&count=1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/v2/scim/v2/users failed")
        .error_for_status()
        .expect("GET /api/v2/scim/v2/users did not answer 200")
        .json()
        .await
        .expect("the SCIM list answer is not JSON");
    list["totalResults"].as_u64().expect("the SCIM list answer has no totalResults")
}

/// What posting the webhooks gave.
struct Intake {
    accepted: u64,
    /// Answers other than 202, by status or transport error.
    refused: BTreeMap<String, u64>,
    took: Duration,
}

/// Posts `hires` signed new hires from `POSTERS` tasks (task t sends hires t, t + POSTERS, ...).
async fn post_hires(base: &str, hires: u64) -> Intake {
    let secret = WebhookSecret::parse(WEBHOOK_SECRET).expect("the benchmark webhook secret is not valid");
    let started = Instant::now();
    let tasks: Vec<_> = (0..POSTERS as u64)
        .map(|task| {
            let client =
                reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("cannot build a client");
            let (base, secret) = (base.to_string(), secret.clone());
            tokio::spawn(async move {
                let mut accepted = 0u64;
                let mut refused = BTreeMap::<String, u64>::new();
                for n in (task..hires).step_by(POSTERS) {
                    let outcome = match post_hire(&client, &base, &secret, n).await {
                        Ok(r) => {
                            let status = r.status();
                            let _ = r.bytes().await;
                            if status == StatusCode::ACCEPTED { Ok(()) } else { Err(format!("HTTP {status}")) }
                        }
                        Err(e) => Err(format!("transport: {e}")),
                    };
                    match outcome {
                        Ok(()) => accepted += 1,
                        Err(e) => *refused.entry(e).or_default() += 1,
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    let mut intake = Intake { accepted: 0, refused: BTreeMap::new(), took: Duration::ZERO };
    for task in tasks {
        let (accepted, refused) = task.await.expect("a posting task panicked");
        intake.accepted += accepted;
        for (e, count) in refused {
            *intake.refused.entry(e).or_default() += count;
        }
    }
    intake.took = started.elapsed();
    intake
}

/// New hire `n`, signed as a Standard Webhooks event and posted.
async fn post_hire(
    client: &reqwest::Client,
    base: &str,
    secret: &WebhookSecret,
    n: u64,
) -> reqwest::Result<reqwest::Response> {
    let id = format!("bench-hire-{n}");
    let body = serde_json::to_vec(&json!({
        "id": id,
        "email": format!("bench.hire.{n}@example.com"),
        "firstName": "Bench",
        "lastName": format!("Hire{n}"),
        "departmentCode": DEPARTMENTS[n as usize % DEPARTMENTS.len()],
    }))
    .expect("a JSON value always serialises");
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is before 1970").as_secs() as i64;
    let mut request = client
        .post(format!("{base}/webhooks/hr/user-created"))
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in secret.headers(&id, timestamp, &body) {
        request = request.header(name, value);
    }
    request.send().await
}

/// Where the jobs stood when the clock stopped.
struct Done {
    elapsed: Duration,
    /// Jobs per state, from the last `GET /metrics`.
    jobs: BTreeMap<String, u64>,
    /// Job attempts per outcome (retries show rate limiting or failures the service absorbed).
    attempts: BTreeMap<String, u64>,
    timed_out: bool,
}

impl Done {
    fn state(&self, state: &str) -> u64 {
        self.jobs.get(state).copied().unwrap_or(0)
    }
}

/// Polls `GET /metrics` until succeeded + dead == accepted, or `deadline` after `started` has passed.
async fn wait_for_jobs(
    http: &reqwest::Client,
    base: &str,
    accepted: u64,
    started: Instant,
    deadline: Duration,
) -> Done {
    let mut next_progress = PROGRESS_EVERY;
    loop {
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("GET /metrics failed")
            .error_for_status()
            .expect("GET /metrics did not answer 200")
            .text()
            .await
            .expect("cannot read the /metrics answer");
        let elapsed = started.elapsed();
        let done = Done {
            elapsed,
            jobs: labelled(&metrics, "provisioner_queue_jobs", "state"),
            attempts: labelled(&metrics, "provisioner_job_attempts_total", "outcome"),
            timed_out: elapsed >= deadline,
        };
        let finished = done.state("succeeded") + done.state("dead");
        if finished >= accepted || done.timed_out {
            return done;
        }
        if elapsed >= next_progress {
            next_progress += PROGRESS_EVERY;
            println!("  {:>5.1} s: {}", elapsed.as_secs_f64(), describe(&done.jobs));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn describe(counts: &BTreeMap<String, u64>) -> String {
    counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

fn report(hires: u64, rate: u32, intake: &Intake, done: &Done, stats: &Stats, users: u64) {
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let succeeded = done.state("succeeded");
    let dead = done.state("dead");
    let elapsed = done.elapsed.as_secs_f64();
    let upstream: u64 =
        stats.requests_by_route.iter().filter(|(route, _)| route.contains(" /api/v2/")).map(|(_, n)| n).sum();
    let per_hire = if succeeded == 0 { f64::NAN } else { upstream as f64 / succeeded as f64 };
    let share_429 = if upstream == 0 { 0.0 } else { stats.rate_limited as f64 / upstream as f64 };
    let achieved = upstream as f64 / (elapsed / 60.0).max(f64::EPSILON);
    let utilisation = achieved / f64::from(rate);

    println!();
    println!("provisioning {hires} new hires against a Genesys limit of {rate} requests/min");
    if done.timed_out {
        println!("  NOT FINISHED: the jobs were still running at the deadline ({})", describe(&done.jobs));
    }
    println!("  hires accepted (202)           {:>10}", intake.accepted);
    println!("  provisioned (succeeded)        {succeeded:>10}");
    println!("  dead letters                   {dead:>10}");
    println!("  elapsed                        {elapsed:>10.1} s   (first post until succeeded + dead = accepted)");
    println!("  job attempts                   {}", describe(&done.attempts));
    println!("  upstream API requests          {upstream:>10}");
    for (route, n) in stats.requests_by_route.iter().filter(|(route, _)| route.contains(" /api/v2/")) {
        println!("    {route:<42} {n:>8}");
    }
    println!(
        "  upstream requests per hire     {per_hire:>10.3}   target <= {TARGET_REQUESTS_PER_HIRE}   {}",
        verdict(per_hire <= TARGET_REQUESTS_PER_HIRE)
    );
    println!(
        "  429s received                  {:>10}   {:.2}% of upstream requests, target <= {}%   {}",
        stats.rate_limited,
        share_429 * 100.0,
        TARGET_429_SHARE * 100.0,
        verdict(share_429 <= TARGET_429_SHARE)
    );
    println!("  5xx received                   {:>10}", stats.server_errors);
    println!("  token requests                 {:>10}", stats.token_requests);
    println!("  achieved request rate          {achieved:>10.0} requests/min");
    println!("  allowed request rate           {rate:>10} requests/min");
    println!(
        "  achieved / allowed             {utilisation:>10.3}   target >= {TARGET_UTILISATION}   {}",
        verdict(utilisation >= TARGET_UTILISATION)
    );
    println!(
        "  emulator users (SCIM)          {users:>10}   {}",
        if users == succeeded { "= provisioned: OK" } else { "!= provisioned: MISMATCH" }
    );
    println!();
}
