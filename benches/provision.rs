//! Provisioning throughput benchmark: how close the real service comes to the request rate a rate-limited
//! Genesys Cloud allows, and what each new hire costs upstream, with one replica and with two replicas
//! sharing one queue and one rate limit.
//!
//! Each scenario runs release-binary processes on free local ports, each killed when the scenario ends
//! or panics:
//!
//! 1. the Genesys Cloud emulator (`emulator`, seeded with the groups of `config/default.toml`'s departments),
//!    limited to `BENCH_RATE` API requests per minute (a sliding 60 s window answering 429 with Retry-After);
//! 2. the service (`serve`) with `[genesys] requests_per_minute = BENCH_RATE`, 32 workers, pointed at the
//!    emulator, with its audit folder in a temporary directory:
//!    * **one replica, SQLite**: one service with a fresh SQLite database;
//!    * **two replicas, one PostgreSQL queue**: two services on one fresh PostgreSQL database (created next
//!      to `BENCH_DATABASE_URL`, else `TEST_DATABASE_URL`; without either the scenario is skipped and the
//!      run says so). Each paces itself at its share of the rate (`src/replicas.rs`); together they must
//!      stay within the one limit.
//!
//! `BENCH_HIRES` signed new-hire webhooks (unique ids and emails, departments ENG, SUPPORT, SALES, HR in
//! turn) are posted from 16 concurrent tasks (to the services in turn). The clock starts at the first post
//! and stops when the services' `GET /metrics` show a succeeded or dead attempt for every accepted job
//! (polled every 250 ms). A new hire costs two Genesys requests (create the user, add it to the group
//! with one PATCH), so the defaults (1000 hires at 3000 requests per minute) need about 40 s at the
//! allowed rate, per scenario.
//!
//! The report, from the emulator's own counters (`GET /emulator/stats`), against the targets:
//!
//! * upstream API requests per provisioned hire (calls per joiner): 2;
//! * 429 answers as a share of upstream API requests: at most 1 %;
//! * achieved request rate (upstream requests per elapsed minute) / allowed rate: at least 0.95, and at
//!   most 1 (above it the services sent faster than Genesys allows; a run shorter than the emulator's
//!   60 s window may not have met the 429s that would follow).
//!
//! Then the emulator's SCIM API is asked how many (active) users exist, which must equal the number of
//! jobs that succeeded. The services' logs (stderr, `RUST_LOG=warn`) go to files in the temporary
//! directory; the report prints how many lines each wrote and the first few. A summary of both
//! scenarios ends the run.
//!
//! Run: `cargo bench --bench provision`
//!
//! | variable             | default | meaning                                                    |
//! |----------------------|---------|------------------------------------------------------------|
//! | `BENCH_HIRES`        | 1000    | new hires posted, per scenario                             |
//! | `BENCH_RATE`         | 3000    | Genesys API requests per minute, allowed and configured    |
//! | `BENCH_DATABASE_URL` | —       | PostgreSQL for the two-replica scenario (else `TEST_DATABASE_URL`) |
//!
//! A scenario gives up waiting for the jobs after 3 × (2 × `BENCH_HIRES` / `BENCH_RATE`) minutes + 60 s
//! and reports what it has.

// Benchmark code: a panic is a failed run, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys_emulator::Stats;
use genesys_provisioner::signing::WebhookSecret;
use reqwest::StatusCode;
use serde_json::json;
use support::{
    Process, WEBHOOK_SECRET, default_config_path, emulator_stats, emulator_token, env_number, labelled,
    service_command, start_emulator,
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
const TARGET_UTILISATION: f64 = 0.95;

fn main() {
    let hires = env_number("BENCH_HIRES", 1000);
    let rate = env_number("BENCH_RATE", 3000);
    assert!(hires > 0 && rate > 0, "BENCH_HIRES and BENCH_RATE must be at least 1");
    let rate = u32::try_from(rate).expect("BENCH_RATE is too large");
    let postgres = ["BENCH_DATABASE_URL", "TEST_DATABASE_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));

    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("cannot start tokio");
    let mut results =
        vec![run_scenario(&runtime, &dir.path().join("one"), "one replica, SQLite", hires, rate, &[None])];
    match postgres {
        Some(base) => {
            let url = runtime.block_on(fresh_pg_database(&base));
            let stores = [Some(url.clone()), Some(url.clone())];
            let title = "two replicas, one PostgreSQL queue";
            results.push(run_scenario(&runtime, &dir.path().join("two"), title, hires, rate, &stores));
            runtime.block_on(drop_pg_database(&base, &url));
        }
        None => println!(
            "SKIPPED: the two-replica scenario on PostgreSQL (set BENCH_DATABASE_URL or TEST_DATABASE_URL to \
             postgres://user@host:port/db; a fresh database is created next to it)"
        ),
    }
    println!("summary: {hires} hires, Genesys limit {rate} requests/min");
    println!(
        "  {:<36} {:>9} {:>14} {:>16} {:>10}",
        "scenario", "elapsed", "calls/joiner", "allowed rate used", "429 share"
    );
    for r in &results {
        println!(
            "  {:<36} {:>7.1} s {:>14.3} {:>16.3} {:>9.2}%",
            r.title,
            r.elapsed,
            r.per_hire,
            r.utilisation,
            r.share_429 * 100.0
        );
    }
}

/// What one scenario measured, for the summary.
struct Outcome {
    title: &'static str,
    elapsed: f64,
    per_hire: f64,
    utilisation: f64,
    share_429: f64,
}

/// A fresh emulator limited to `rate` requests a minute, and one service per entry of `stores` (None:
/// its own SQLite file; the same PostgreSQL URL twice: two replicas of one queue), each pacing at
/// `rate`; `hires` new hires posted to them in turn, timed until every job is done.
fn run_scenario(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    title: &'static str,
    hires: u64,
    rate: u32,
    stores: &[Option<String>],
) -> Outcome {
    const NAMES: [&str; 3] = ["service", "replica 1", "replica 2"];
    assert!(stores.len() <= 2, "at most two replicas");
    std::fs::create_dir_all(dir).expect("cannot create the scenario's directory");
    let mut emulator = start_emulator(dir, &["--config", default_config_path()]);
    let mut services = Vec::new();
    let outcome = runtime.block_on(async {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("cannot build a client");
        emulator.wait_until_ready(&http, "/emulator/stats").await;
        set_rate_limit(&http, &emulator.base, Some(rate)).await;
        for (n, store) in stores.iter().enumerate() {
            let name = if stores.len() == 1 { NAMES[0] } else { NAMES[n + 1] };
            let own = dir.join(format!("service-{n}"));
            std::fs::create_dir_all(&own).expect("cannot create the service's directory");
            let (mut command, addr) = service_command(&own, &emulator.base, rate, WORKER_CONCURRENCY);
            if let Some(url) = store {
                command.env("DATABASE_URL", url);
            }
            services.push(Process::spawn(name, command, addr, own.join("service.log")));
        }
        for service in &mut services {
            service.wait_until_ready(&http, "/healthz").await;
        }
        let bases: Vec<String> = services.iter().map(|s| s.base.clone()).collect();
        println!(
            "benchmarking provisioning ({title}): {hires} hires from {POSTERS} tasks, Genesys emulator {} limited to \
             {rate} requests/min, {} with {WORKER_CONCURRENCY} workers each",
            emulator.base,
            bases.join(" and ")
        );

        let started = Instant::now();
        let intake = post_hires(&bases, hires).await;
        println!(
            "posted {hires} webhooks in {:.1} s: {} accepted (202){}",
            intake.took.as_secs_f64(),
            intake.accepted,
            if intake.refused.is_empty() { String::new() } else { format!(", refused: {:?}", intake.refused) }
        );
        let deadline = Duration::from_secs_f64(3.0 * hires as f64 * REQUESTS_PER_HIRE / f64::from(rate) * 60.0)
            + Duration::from_secs(60);
        let done = wait_for_jobs(&http, &bases, intake.accepted, started, deadline).await;

        // Read the emulator's counters first: the check below makes requests of its own.
        let stats = emulator_stats(&http, &emulator.base).await;
        // The timing is over: lift the limit so the check is not refused by a window the run filled.
        set_rate_limit(&http, &emulator.base, None).await;
        let users = count_emulator_users(&http, &emulator.base).await;
        report(title, hires, rate, &intake, &done, &stats, users)
    });
    for process in std::iter::once(&emulator).chain(services.iter()) {
        let log = process.log();
        let lines: Vec<&str> = log.lines().collect();
        println!("{} log (stderr, RUST_LOG=warn): {} line(s)", process.name, lines.len());
        for line in lines.iter().take(5) {
            println!("  {}", line.chars().take(240).collect::<String>());
        }
    }
    println!();
    drop(services);
    drop(emulator);
    outcome
}

/// Creates an empty database next to the one `base` names and returns its URL.
async fn fresh_pg_database(base: &str) -> String {
    use sqlx::Connection;
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(base).await.expect("cannot connect to the PostgreSQL URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("cannot create the benchmark database");
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (base, String::new()),
    };
    let root = head.rsplit_once('/').map_or(head, |(r, _)| r);
    format!("{root}/{name}{query}")
}

/// Drops the database `fresh_pg_database` made (the services are stopped by then).
async fn drop_pg_database(base: &str, url: &str) {
    use sqlx::Connection;
    let name = url.rsplit_once('/').map_or(url, |(_, n)| n).split('?').next().unwrap_or_default();
    let mut conn = sqlx::PgConnection::connect(base).await.expect("cannot connect to the PostgreSQL URL");
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut conn)
        .await
    {
        println!("could not drop the benchmark database {name}: {e}");
    }
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
    let token = emulator_token(http, emulator).await;
    let list: serde_json::Value = http
        .get(format!("{emulator}/api/v2/scim/v2/users?startIndex=1&count=1"))
        .bearer_auth(&token)
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

/// Posts `hires` signed new hires from `POSTERS` tasks (task t sends hires t, t + POSTERS, ... to
/// service t modulo their number).
async fn post_hires(bases: &[String], hires: u64) -> Intake {
    let secret = WebhookSecret::parse(WEBHOOK_SECRET).expect("the benchmark webhook secret is not valid");
    let started = Instant::now();
    let tasks: Vec<_> = (0..POSTERS as u64)
        .map(|task| {
            let client =
                reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("cannot build a client");
            let (base, secret) = (bases[task as usize % bases.len()].clone(), secret.clone());
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
    /// Job attempts per outcome, summed over the services (retries show rate limiting or failures the
    /// service absorbed); a job ends with one `succeeded` or one `dead` attempt.
    attempts: BTreeMap<String, u64>,
    /// Per service: the jobs it finished and the replicas it shared the Genesys rate with.
    services: Vec<(u64, f64)>,
    timed_out: bool,
}

impl Done {
    fn attempts(&self, outcome: &str) -> u64 {
        self.attempts.get(outcome).copied().unwrap_or(0)
    }
}

/// Polls every service's `GET /metrics` until their succeeded + dead attempts make `accepted`, or
/// `deadline` after `started` has passed. The attempts, not the queue gauges: on a shared PostgreSQL
/// queue a replica's gauges see the other's work only at their next recount.
async fn wait_for_jobs(
    http: &reqwest::Client,
    bases: &[String],
    accepted: u64,
    started: Instant,
    deadline: Duration,
) -> Done {
    let mut next_progress = PROGRESS_EVERY;
    loop {
        let mut attempts = BTreeMap::<String, u64>::new();
        let mut services = Vec::new();
        for base in bases {
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
            let own = labelled(&metrics, "provisioner_job_attempts_total", "outcome");
            let finished = own.get("succeeded").copied().unwrap_or(0) + own.get("dead").copied().unwrap_or(0);
            let share = metrics
                .lines()
                .find_map(|l| l.strip_prefix("provisioner_genesys_pace_share "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(f64::NAN);
            services.push((finished, share));
            for (outcome, n) in own {
                *attempts.entry(outcome).or_default() += n;
            }
        }
        let elapsed = started.elapsed();
        let done = Done { elapsed, attempts, services, timed_out: elapsed >= deadline };
        let finished = done.attempts("succeeded") + done.attempts("dead");
        if finished >= accepted || done.timed_out {
            return done;
        }
        if elapsed >= next_progress {
            next_progress += PROGRESS_EVERY;
            println!(
                "  {:>5.1} s: {finished} of {accepted} jobs done; attempts {}",
                elapsed.as_secs_f64(),
                describe(&done.attempts)
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn describe(counts: &BTreeMap<String, u64>) -> String {
    counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

fn report(
    title: &'static str,
    hires: u64,
    rate: u32,
    intake: &Intake,
    done: &Done,
    stats: &Stats,
    users: u64,
) -> Outcome {
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let succeeded = done.attempts("succeeded");
    let dead = done.attempts("dead");
    let elapsed = done.elapsed.as_secs_f64();
    let upstream: u64 =
        stats.requests_by_route.iter().filter(|(route, _)| route.contains(" /api/v2/")).map(|(_, n)| n).sum();
    let per_hire = if succeeded == 0 { f64::NAN } else { upstream as f64 / succeeded as f64 };
    let share_429 = if upstream == 0 { 0.0 } else { stats.rate_limited as f64 / upstream as f64 };
    let achieved = upstream as f64 / (elapsed / 60.0).max(f64::EPSILON);
    let utilisation = achieved / f64::from(rate);

    println!();
    println!("provisioning {hires} new hires ({title}) against a Genesys limit of {rate} requests/min");
    if done.timed_out {
        println!("  NOT FINISHED: the jobs were still running at the deadline ({})", describe(&done.attempts));
    }
    println!("  hires accepted (202)           {:>10}", intake.accepted);
    println!("  provisioned (succeeded)        {succeeded:>10}");
    println!("  dead letters                   {dead:>10}");
    println!("  elapsed                        {elapsed:>10.1} s   (first post until succeeded + dead = accepted)");
    println!("  job attempts                   {}", describe(&done.attempts));
    if done.services.len() > 1 {
        for (n, (finished, share)) in done.services.iter().enumerate() {
            // NaN: a build without the gauge (`BENCH_BINARY` of an older version).
            let share = if share.is_nan() { "?".to_string() } else { share.to_string() };
            println!("  replica {}: jobs done          {finished:>10}   pace shared by {share} replica(s)", n + 1);
        }
    }
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
        "  achieved / allowed             {utilisation:>10.3}   target {TARGET_UTILISATION} to 1   {}",
        // Above 1 the service sent faster than Genesys allows (a short run may not fill the window
        // that would have answered 429).
        verdict((TARGET_UTILISATION..=1.0).contains(&utilisation))
    );
    println!(
        "  emulator users (SCIM)          {users:>10}   {}",
        if users == succeeded { "= provisioned: OK" } else { "!= provisioned: MISMATCH" }
    );
    println!();
    Outcome { title, elapsed, per_hire, utilisation, share_429 }
}
