//! Intake throughput benchmark: how many signed new-hire webhooks the real service stores durably per
//! second, compared with the cheapest request it answers (`GET /healthz`).
//!
//! The release binary is started as a separate process (`serve`) on a free local port, with a fresh
//! database and audit folder in a temporary directory. Then, from `BENCH_CONNECTIONS` concurrent
//! keep-alive connections (one client per task), `BENCH_ROUNDS` times, each phase for `BENCH_SECONDS`
//! after a `BENCH_WARMUP_MS` warm-up (many short rounds in which the phases alternate, so a slow spell
//! of a shared machine hits both alike):
//!
//! * phase A sends `GET /healthz` in a loop: the cost of the HTTP edge alone;
//! * phase B sends `POST /webhooks/hr/user-created`, Standard Webhooks signed (ahead of the phase, so
//!   the generator's HMAC and JSON work does not compete with the service), each with a new event id:
//!   signature check, validation, a durable commit (group commit) and an audit line per request;
//! * phase C sends `POST /webhook/scim-validation` with the shared secret, half of the users
//!   breaking the email-domain rule: a policy decision per request (200 ACCEPTED or 400 REJECTED)
//!   and its audit line.
//!
//! The service runs on the last CPU and the generator on the others (`BENCH_PIN`), so they do not
//! interleave on the same cores. Both phases send requests built before the clock starts (URL parsed
//! once). The report prints requests/s and latency percentiles for both, the CPU time the service and
//! the generator spent per request (from `/proc`, Linux only), when pinned the busy share of the
//! service's CPU and its busy time per request (interrupt work included, which a process's own CPU
//! time leaves out), the ratio intake / healthz against the targets, and the number of jobs in the
//! database (from `GET /metrics`, all states), which must equal the number of webhooks answered 202
//! (warm-up included). The service's own log (stderr) goes to a file
//! in the temporary directory; the report prints how many lines it wrote.
//!
//! Run: `cargo bench --bench intake`
//!
//! | variable            | default                               | meaning                                  |
//! |---------------------|---------------------------------------|------------------------------------------|
//! | `BENCH_SECONDS`     | 2                                     | measured duration of each phase per round |
//! | `BENCH_ROUNDS`      | 8                                     | rounds of both phases                    |
//! | `BENCH_WARMUP_MS`   | 500                                   | unmeasured start of each phase           |
//! | `BENCH_PIN`         | on (2+ CPUs)                          | `0`: service and generator share all CPUs |
//! | `BENCH_CONNECTIONS` | 64                                    | concurrent connections                   |
//! | `BENCH_DATABASE_URL`| `sqlite://<tempdir>/bench.db?mode=rwc`| e.g. `postgres://...` to bench PostgreSQL |
//! | `BENCH_EVENT_IDS`   | `interleaved`                         | shape of the event ids, see `load::EventIds` |
//!
//! The default SQLite database is the service's embedded default: WAL, `synchronous = FULL`.
//! A PostgreSQL database given in `BENCH_DATABASE_URL` should be empty: the final job count is compared
//! with the number of webhooks accepted during this run.

// Benchmark code: a panic is a failed run, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::load::{Load, Phase, Pinning, Timing, VALIDATION_SECRET, run_phase, whole_us};
use support::{Process, env_number, free_port, serve_command};

#[path = "support/mod.rs"]
mod support;

/// The service's allocator in the load generator too, so neither side's allocator skews the comparison.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TARGET_RATIO: f64 = 0.5;
const TARGET_CONNECTIONS: usize = 64;
const TARGET_INTAKE_P99_MS: f64 = 25.0;

fn main() {
    let seconds = env_number("BENCH_SECONDS", 2);
    let rounds = env_number("BENCH_ROUNDS", 8);
    let warm_up = Duration::from_millis(env_number("BENCH_WARMUP_MS", 500));
    let connections = env_number("BENCH_CONNECTIONS", 64) as usize;
    assert!(
        seconds > 0 && rounds > 0 && connections > 0,
        "BENCH_SECONDS, BENCH_ROUNDS and BENCH_CONNECTIONS must be at least 1"
    );
    let duration = Duration::from_secs(seconds);
    let timing = Timing { duration, warm_up, rounds: rounds as u32 };

    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let database_url = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()));
    let backend = if database_url.starts_with("sqlite:") { "sqlite (WAL, synchronous FULL)" } else { "postgres" };

    let pin = Pinning::from_env();
    let mut server = start_service(dir.path(), &database_url, pin.as_ref());
    if let Some(pin) = &pin {
        pin.generator_here();
    }
    let service_cpu = pin.as_ref().map(|p| p.service_cpu);
    let placement =
        pin.as_ref().map_or("service and load generator share every CPU".to_string(), |p| p.describe.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("cannot start tokio");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        server.wait_until_ready(&http, "/healthz").await;
        println!(
            "benchmarking {} ({connections} connections, {rounds} round(s) of both phases, {seconds} s each \
             after a {} ms warm-up, {backend}; {placement})",
            server.base,
            warm_up.as_millis()
        );
        // The phases alternate, so a slow spell of a shared machine does not fall on one phase only.
        let (mut healthz, mut intake, mut validation) = (Phase::default(), Phase::default(), Phase::default());
        let mut ratios = Vec::with_capacity(rounds as usize);
        for round in 1..=rounds {
            let h = run_phase(Load::Healthz, &server, service_cpu, connections, timing).await;
            let i = run_phase(Load::Intake, &server, service_cpu, connections, timing).await;
            let v = run_phase(Load::Validation, &server, service_cpu, connections, timing).await;
            ratios.push(i.rps() / h.rps().max(f64::EPSILON));
            println!(
                "  round {round}: healthz {:>7.0} req/s, intake {:>7.0} req/s (p99 {:.2} ms), ratio {:.3}, \
                 validation {:>7.0} req/s (p99 {:.2} ms), steal {}% / {}% / {}%",
                h.rps(),
                i.rps(),
                i.percentile_ms(99.0),
                ratios[ratios.len() - 1],
                v.rps(),
                v.percentile_ms(99.0),
                h.steal_percent(),
                i.steal_percent(),
                v.steal_percent()
            );
            healthz.merge(h, false);
            intake.merge(i, false);
            validation.merge(v, false);
        }
        let (healthz, intake, validation) = (healthz.sorted(), intake.sorted(), validation.sorted());
        let metrics = scrape_metrics(&server.base).await;
        report(&healthz, &intake, &validation, &metrics, connections, timing, &ratios, backend);
    });
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    println!("service log (stderr, RUST_LOG=warn): {} line(s)", lines.len());
    if let Some(first) = lines.first() {
        println!("  first: {}", first.chars().take(240).collect::<String>());
    }
    if let Some(last) = lines.last().filter(|_| lines.len() > 1) {
        println!("  last: {}", last.chars().take(400).collect::<String>());
    }
    drop(server);
}

/// The service under test, on a fresh database (or `BENCH_DATABASE_URL`), killed when dropped.
fn start_service(dir: &Path, database_url: &str, pin: Option<&Pinning>) -> Process {
    let addr = free_port();
    // Phase C's policy: the primary email's domain must be example.com.
    let domains = ("policy", "email_domains", toml::Value::Array(vec![toml::Value::String("example.com".into())]));
    let mut command = serve_command(dir, addr, &[domains]);
    command
        .env("DATABASE_URL", database_url)
        .env("VALIDATION_WEBHOOK_SECRET", VALIDATION_SECRET)
        // BENCH_RUN_WORKERS=false measures an intake-only replica (no worker writes competing).
        .env("RUN_WORKERS", std::env::var("BENCH_RUN_WORKERS").unwrap_or_else(|_| "true".into()));
    let spawn = || Process::spawn("service", command, addr, dir.join("service.log"));
    match pin {
        Some(pin) => pin.on_service_cpu(spawn),
        None => spawn(),
    }
}

/// The service's `GET /metrics` text.
async fn scrape_metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics failed")
        .error_for_status()
        .expect("GET /metrics did not answer 200")
        .text()
        .await
        .expect("cannot read the /metrics answer")
}

/// Jobs per state (`provisioner_queue_jobs{state="..."} n`).
fn jobs_in_database(metrics: &str) -> BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("provisioner_queue_jobs{state=\""))
        .filter_map(|rest| {
            let (state, value) = rest.split_once("\"}")?;
            Some((state.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of an unlabelled series, 0 when absent.
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `measured` is the measured time of each phase over all rounds (warm-ups not included).
#[allow(clippy::too_many_arguments)]
fn report(
    healthz: &Phase,
    intake: &Phase,
    validation: &Phase,
    metrics: &str,
    connections: usize,
    timing: Timing,
    round_ratios: &[f64],
    backend: &str,
) {
    let measured = timing.duration * timing.rounds;
    println!();
    println!("connections: {connections}   measured: {} s per phase   database: {backend}", measured.as_secs());
    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>9} {:>8} {:>12} {:>12} {:>8} {:>8} {:>8}",
        "phase",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "service µs",
        "generator µs",
        "steal %",
        "core µs",
        "core %"
    );
    let phases =
        [("A  GET /healthz", healthz), ("B  POST user-created (202)", intake), ("C  POST scim-validation", validation)];
    for (name, phase) in phases {
        println!(
            "{:<28} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>12} {:>12} {:>8} {:>8} {:>8}",
            name,
            phase.rps(),
            phase.percentile_ms(50.0),
            phase.percentile_ms(99.0),
            phase.max_ms(),
            phase.error_count(),
            whole_us(phase.per_request(phase.usage.service)),
            whole_us(phase.per_request(phase.usage.generator)),
            phase.steal_percent(),
            whole_us(phase.core_seconds_per_request()),
            phase.core_busy_percent()
        );
        for (error, count) in &phase.errors {
            println!("    {count} x {error}");
        }
    }

    let ratio = intake.rps() / healthz.rps().max(f64::EPSILON);
    let p99 = intake.percentile_ms(99.0);
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    println!();
    let mut sorted = round_ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    println!(
        "ratio intake_rps / healthz_rps: {ratio:.3} (all rounds together; per round: median {median:.3}, \
         lowest {:.3}, highest {:.3})",
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "target: ratio >= {TARGET_RATIO} at {TARGET_CONNECTIONS} connections, intake p99 < {TARGET_INTAKE_P99_MS} ms"
    );
    let note = if connections == TARGET_CONNECTIONS { "" } else { " (measured at a different connection count)" };
    println!("  ratio {ratio:.3} >= {TARGET_RATIO}: {}{note}", verdict(ratio >= TARGET_RATIO));
    println!("  intake p99 {p99:.2} ms < {TARGET_INTAKE_P99_MS} ms: {}", verdict(p99 < TARGET_INTAKE_P99_MS));
    let (v_ratio, v_p99) = (validation.rps() / healthz.rps().max(f64::EPSILON), validation.percentile_ms(99.0));
    println!(
        "  validation decisions {:.0}/s, ratio {v_ratio:.3} >= {TARGET_RATIO}: {}; p99 {v_p99:.2} ms < {TARGET_INTAKE_P99_MS} ms: {}",
        validation.rps(),
        verdict(v_ratio >= TARGET_RATIO),
        verdict(v_p99 < TARGET_INTAKE_P99_MS)
    );
    // Which side limited each phase: the measured ratio compares the service's whole cost of an
    // intake with whatever limited /healthz, which on one shared machine is often the generator.
    if let (Some(h), Some(i)) = (healthz.core_seconds_per_request(), intake.core_seconds_per_request()) {
        println!(
            "service core per request: /healthz {:.1} µs ({}% busy), intake {:.1} µs ({}% busy); with the \
             service's core the limit in both phases (a load generator elsewhere) the ratio would be {:.3}",
            h * 1e6,
            healthz.core_busy_percent(),
            i * 1e6,
            intake.core_busy_percent(),
            h / i.max(f64::EPSILON)
        );
    }

    let accepted = intake.ok() + intake.warm_up_accepted;
    let stored = jobs_in_database(metrics);
    let total: u64 = stored.values().sum();
    let states: Vec<String> = stored.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!();
    println!("jobs in the database: {total} ({})", states.join(", "));
    println!(
        "webhooks answered 202: {accepted} ({} measured + {} in the warm-up): {}",
        intake.ok(),
        intake.warm_up_accepted,
        if total == accepted { "every accepted event is stored" } else { "MISMATCH" }
    );
    let commits = series(metrics, "provisioner_intake_commits_total");
    let rows = series(metrics, "provisioner_intake_rows_total");
    let secs = series(metrics, "provisioner_intake_commit_seconds_total");
    if commits > 0.0 {
        println!(
            "intake commits: {commits} for {rows} rows: {:.1} rows per commit, {:.2} ms per commit, committer busy {:.0}% of the intake phase",
            rows / commits,
            secs * 1000.0 / commits,
            100.0 * secs / (measured + timing.warm_up * timing.rounds).as_secs_f64()
        );
    }
}
