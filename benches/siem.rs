//! SIEM delivery benchmark: how fast the outbox drains into Splunk's HTTP Event Collector.
//!
//! 1. Fills the outbox of a fresh SQLite store with `BENCH_SIEM_RECORDS` records (default 100,000;
//!    half `intake.accepted`, half `job.attempt` with a provisioning result, as the service writes
//!    them), all waiting for one destination: the backlog a SIEM outage leaves.
//! 2. Starts a local HEC receiver (Splunk cannot run here: it checks the token and the envelopes and
//!    counts the events) and the service (release build, its own process) pointed at it, with
//!    `[siem] batch_size = BENCH_SIEM_BATCH` (default 500).
//! 3. Prints the records per second from the first delivery to the last (target: at least 10,000),
//!    the service's CPU time, and checks the outbox is empty afterwards.
//!
//! Run: `cargo bench --bench siem`.

// Benchmark code: a panic is a failed run, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use genesys_provisioner::config::DatabaseUrl;
use genesys_provisioner::lifecycle::{Attempt, AttemptOutcome, Event, Intake, Subject};
use genesys_provisioner::queue::{Job, JobStore, OutboxRow};
use serde_json::json;
use support::{Process, cpu_seconds, env_number, free_port, hec, serve_command};

#[path = "support/mod.rs"]
mod support;

const TARGET_PER_SECOND: f64 = 10_000.0;
/// Records per fill transaction.
const FILL_CHUNK: usize = 5_000;

/// A job as the worker holds it after a successful new hire.
fn job(n: u64) -> Job {
    let payload =
        json!({"email": format!("user{n}@example.com"), "departmentCode": "ENG", "employeeId": format!("E-{n}")});
    Job { audit_id: uuid::Uuid::now_v7(), webhook_id: format!("evt-bench-{n}"), ..Job::running(payload, 1) }
}

/// Record `n`: an acceptance (even) or a succeeded attempt with its result (odd).
fn record(n: u64) -> OutboxRow {
    let job = job(n);
    let email = format!("user{n}@example.com");
    let event = match n % 2 {
        0 => Event::Accepted(Intake {
            audit_id: job.audit_id,
            webhook_id: &job.webhook_id,
            endpoint: "/webhooks/hr/user-created",
            subject: Subject::person(Some(&email), Some("ENG")),
        }),
        _ => {
            let result = json!({"scimId": uuid::Uuid::new_v4(), "groupId": "a1b2c3d4-5678-90ab-cdef-1234567890ab",
                "adopted": false, "resumed": false, "corrections": [], "genesysResponseCode": 201});
            let attempt = Attempt {
                job: &job,
                outcome: AttemptOutcome::Succeeded,
                took: Some(Duration::from_millis(140)),
                detail: None,
                next_attempt_at: None,
                result: Some(&result),
            };
            return genesys_provisioner::outbox::record::of_event(&Event::AttemptFinished(attempt)).unwrap();
        }
    };
    genesys_provisioner::outbox::record::of_event(&event).unwrap()
}

fn main() {
    let records = env_number("BENCH_SIEM_RECORDS", 100_000);
    let batch = env_number("BENCH_SIEM_BATCH", 500);
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let (hec_addr, counts) = hec::start().await;

        // The backlog, written as the service writes records (group commits into the outbox).
        let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
        let store = JobStore::connect(&DatabaseUrl::parse(&db_url).unwrap(), 5)
            .await
            .expect("the store opens")
            .with_outbox(vec!["splunk".to_string()]);
        store.register_destinations(&[("splunk", "splunk-hec")]).await.expect("the destination is registered");
        let filling = Instant::now();
        let mut bytes = 0usize;
        let mut n = 0u64;
        while n < records {
            let rows: Vec<OutboxRow> = (n..records.min(n + FILL_CHUNK as u64)).map(record).collect();
            bytes += rows.iter().map(|r| r.record().len()).sum::<usize>();
            n += rows.len() as u64;
            store.append_outbox(&rows).await.expect("the records are written");
        }
        store.close().await;
        println!(
            "outbox: {records} records ({:.0} bytes each on average) written in {:.1} s",
            bytes as f64 / records.max(1) as f64,
            filling.elapsed().as_secs_f64()
        );

        let mut destination = toml::Table::new();
        destination.insert("name".into(), "splunk".into());
        destination.insert("kind".into(), "splunk-hec".into());
        destination.insert("url".into(), format!("http://{hec_addr}").into());
        let addr = free_port();
        let mut command = serve_command(
            dir.path(),
            addr,
            &[
                ("siem", "batch_size", toml::Value::Integer(batch as i64)),
                ("siem", "destinations", toml::Value::Array(vec![toml::Value::Table(destination)])),
            ],
        );
        command.env("SIEM_SPLUNK_TOKEN", hec::TOKEN);
        let mut service = Process::spawn("service", command, addr, dir.path().join("service.log"));
        service.wait_until_ready(&http, "/healthz").await;
        let deadline = Instant::now() + Duration::from_secs(600);
        while counts.events.load(Ordering::Relaxed) < records {
            assert!(Instant::now() < deadline, "not delivered within 600 s; the service's log:\n{}", service.log());
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("the service exited ({status}); its log:\n{}", service.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (first, last) = counts.span.lock().unwrap().expect("deliveries came");
        let cpu = cpu_seconds(service.child.id());
        let took = (last - first).as_secs_f64();
        let delivered = counts.events.load(Ordering::Relaxed);
        let requests = counts.requests.load(Ordering::Relaxed);
        let refused = counts.refused.load(Ordering::Relaxed);
        // Confirmed and marked delivered: the outbox empties (/admin/siem reads the tables).
        let emptied = async {
            loop {
                let view: serde_json::Value = http
                    .get(format!("{}/admin/siem", service.base))
                    .bearer_auth(support::ADMIN_TOKEN)
                    .send()
                    .await
                    .expect("GET /admin/siem")
                    .json()
                    .await
                    .expect("its JSON");
                if view["records"] == 0 {
                    return view;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let view = tokio::time::timeout(Duration::from_secs(60), emptied).await.expect("the outbox empties");
        let rate = delivered as f64 / took;
        println!();
        println!("SIEM delivery to a local Splunk HEC (batches of up to {batch}, one destination, SQLite)");
        println!("  records delivered        {delivered:>9}   in {requests} requests ({refused} refused)");
        println!("  first to last delivery   {took:>9.2} s");
        println!(
            "  records per second       {rate:>9.0}   target >= {TARGET_PER_SECOND:.0}   {}",
            if rate >= TARGET_PER_SECOND && refused == 0 { "PASS" } else { "MISS" }
        );
        if let Some(cpu) = cpu {
            println!(
                "  service CPU time         {cpu:>9.2} s   ({:.0} records per CPU second, start-up included)",
                delivered as f64 / cpu
            );
        }
        println!(
            "  outbox afterwards        {:>9}   records (delivered count {})",
            view["records"], view["destinations"][0]["delivered"]
        );
        drop(service);
    });
}
