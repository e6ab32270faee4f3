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
//!   signature check, validation, a durable commit (group commit) and an audit line per request.
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
//! | `BENCH_EVENT_IDS`   | `interleaved`                         | shape of the event ids, see `EventIds`   |
//!
//! The default SQLite database is the service's embedded default: WAL, `synchronous = FULL`.
//! A PostgreSQL database given in `BENCH_DATABASE_URL` should be empty: the final job count is compared
//! with the number of webhooks accepted during this run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys_provisioner::signing::WebhookSecret;
use support::{CpuTicks, Process, WEBHOOK_SECRET, cpu_seconds, env_number, free_port, serve_command};

#[path = "support/mod.rs"]
mod support;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

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
        let (mut healthz, mut intake) = (Phase::default(), Phase::default());
        let mut ratios = Vec::with_capacity(rounds as usize);
        for round in 1..=rounds {
            let h = run_phase(Load::Healthz, &server, service_cpu, connections, timing).await;
            let i = run_phase(Load::Intake, &server, service_cpu, connections, timing).await;
            ratios.push(i.rps() / h.rps().max(f64::EPSILON));
            println!(
                "  round {round}: healthz {:>7.0} req/s, intake {:>7.0} req/s (p99 {:.2} ms), ratio {:.3}, \
                 steal {}% / {}%",
                h.rps(),
                i.rps(),
                i.percentile_ms(99.0),
                ratios[ratios.len() - 1],
                h.steal_percent(),
                i.steal_percent()
            );
            healthz.merge(h, false);
            intake.merge(i, false);
        }
        let (healthz, intake) = (healthz.sorted(), intake.sorted());
        let metrics = scrape_metrics(&server.base).await;
        report(&healthz, &intake, &metrics, connections, timing, &ratios, backend);
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
    let mut command = serve_command(dir, addr, &[]);
    command
        .env("DATABASE_URL", database_url)
        // BENCH_RUN_WORKERS=false measures an intake-only replica (no worker writes competing).
        .env("RUN_WORKERS", std::env::var("BENCH_RUN_WORKERS").unwrap_or_else(|_| "true".into()));
    if let Some(pin) = pin {
        pin.service_only(&mut command);
    }
    Process::spawn("service", command, addr, dir.join("service.log"))
}

/// `BENCH_PIN` (default on where there are at least 2 CPUs): the service on the last CPU, this load
/// generator on the others, so the two do not interleave on the same cores. That is the nearest
/// this machine gets to load that comes from elsewhere; `BENCH_PIN=0` lets them share every CPU.
struct Pinning {
    /// The one CPU the service runs on.
    service_cpu: usize,
    service: libc::cpu_set_t,
    generator: libc::cpu_set_t,
    /// For the report: "service on CPU 1, generator on CPU 0".
    describe: String,
}

impl Pinning {
    fn from_env() -> Option<Pinning> {
        if std::env::var("BENCH_PIN").is_ok_and(|v| v == "0" || v == "false") {
            return None;
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if cpus < 2 {
            return None;
        }
        // SAFETY: cpu_set_t is a plain bit set; CPU_ZERO/CPU_SET only write inside it.
        let (mut service, mut generator) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        unsafe {
            libc::CPU_ZERO(&mut service);
            libc::CPU_ZERO(&mut generator);
            libc::CPU_SET(cpus - 1, &mut service);
            for cpu in 0..cpus - 1 {
                libc::CPU_SET(cpu, &mut generator);
            }
        }
        let describe = format!("service on CPU {}, load generator on CPU 0-{}", cpus - 1, cpus - 2);
        Some(Pinning { service_cpu: cpus - 1, service, generator, describe })
    }

    /// Starts `command` on the service's CPU (its runtime then sizes itself to that one CPU).
    fn service_only(&self, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let set = self.service;
        // SAFETY: between fork and exec only sched_setaffinity runs, which is async-signal-safe.
        unsafe {
            command.pre_exec(move || match libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
    }

    /// Moves the calling thread, and every thread it starts afterwards, to the generator's CPUs.
    fn generator_here(&self) {
        // SAFETY: a valid cpu_set_t for this thread (pid 0).
        let done = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&self.generator), &self.generator) };
        assert_eq!(done, 0, "cannot pin the load generator: {}", std::io::Error::last_os_error());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    Healthz,
    Intake,
}

/// What one phase measured (warm-up excluded).
#[derive(Default)]
struct Phase {
    /// Latencies of the successful requests (200 for healthz, 202 for intake), sorted.
    latencies: Vec<Duration>,
    /// From the end of the warm-up until the last counted answer arrived.
    wall: Duration,
    /// Failed requests, by status or transport error.
    errors: BTreeMap<String, u64>,
    /// Webhooks accepted during the warm-up (they are stored too).
    warm_up_accepted: u64,
    /// The CPU time used during the measured part.
    usage: Usage,
}

/// CPU counters read at one moment; two readings give what a phase used. `None` where the system
/// does not have them (no `/proc`, or the service not pinned).
#[derive(Clone, Copy, Default)]
struct Usage {
    /// CPU seconds (user + system) of the service process and of this load generator.
    service: Option<f64>,
    generator: Option<f64>,
    /// This machine's CPUs (for the hypervisor's steal).
    machine: Option<CpuTicks>,
    /// The service's own CPU, when it has one (`BENCH_PIN`): interrupt work included, so it shows
    /// whether that core was full and what a request costs it.
    service_core: Option<CpuTicks>,
}

impl Usage {
    fn read(service_pid: u32, service_cpu: Option<usize>) -> Usage {
        Usage {
            service: cpu_seconds(service_pid),
            generator: cpu_seconds(std::process::id()),
            machine: CpuTicks::read(None),
            service_core: service_cpu.and_then(|n| CpuTicks::read(Some(n))),
        }
    }

    /// What was used between `earlier` and this reading.
    fn since(self, earlier: Usage) -> Usage {
        let seconds = |now: Option<f64>, then: Option<f64>| Some(now? - then?);
        let ticks = |now: Option<CpuTicks>, then: Option<CpuTicks>| Some(now?.since(then?));
        Usage {
            service: seconds(self.service, earlier.service),
            generator: seconds(self.generator, earlier.generator),
            machine: ticks(self.machine, earlier.machine),
            service_core: ticks(self.service_core, earlier.service_core),
        }
    }

    /// Both together (a phase's rounds); a counter either side lacks is left out.
    fn plus(self, other: Usage) -> Usage {
        let seconds = |a: Option<f64>, b: Option<f64>| Some(a.unwrap_or(0.0) + b?);
        let ticks = |a: Option<CpuTicks>, b: Option<CpuTicks>| Some(a.unwrap_or_default().plus(b?));
        Usage {
            service: seconds(self.service, other.service),
            generator: seconds(self.generator, other.generator),
            machine: ticks(self.machine, other.machine),
            service_core: ticks(self.service_core, other.service_core),
        }
    }
}

impl Phase {
    /// Adds what `other` measured: one connection's part of this phase (`side_by_side`: the wall
    /// clocks overlap), or a later round (they add up). Latencies stay unsorted until `sorted`.
    fn merge(&mut self, other: Phase, side_by_side: bool) {
        self.latencies.extend(other.latencies);
        self.wall = if side_by_side { self.wall.max(other.wall) } else { self.wall + other.wall };
        self.warm_up_accepted += other.warm_up_accepted;
        for (e, count) in other.errors {
            *self.errors.entry(e).or_default() += count;
        }
        self.usage = self.usage.plus(other.usage);
    }

    /// Sorts the latencies, which the percentiles need.
    fn sorted(mut self) -> Phase {
        self.latencies.sort_unstable();
        self
    }

    /// Share of the machine's CPU time stolen by the hypervisor while this phase ran.
    fn steal_percent(&self) -> String {
        percent(self.usage.machine.map(|t| (t.steal, t.total)))
    }

    /// How busy the service's CPU was (interrupts included) while this phase ran.
    fn core_busy_percent(&self) -> String {
        percent(self.usage.service_core.map(|t| (t.busy, t.total)))
    }

    fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }

    fn rps(&self) -> f64 {
        self.ok() as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        ms(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }

    /// CPU seconds per counted request, from CPU seconds.
    fn per_request(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.map(|s| s / self.ok().max(1) as f64)
    }

    /// Busy time of the service's own CPU per answered request, when it has one (`BENCH_PIN`).
    fn core_seconds_per_request(&self) -> Option<f64> {
        self.per_request(self.usage.service_core.map(CpuTicks::busy_seconds))
    }

    fn max_ms(&self) -> f64 {
        self.latencies.last().map_or(f64::NAN, |d| ms(*d))
    }
}

/// `part` of `total` in whole percent; "n/a" where there is nothing to divide.
fn percent(counts: Option<(u64, u64)>) -> String {
    counts
        .filter(|(_, total)| *total > 0)
        .map_or("n/a".to_string(), |(part, total)| format!("{:.0}", 100.0 * part as f64 / total as f64))
}

/// Seconds as whole microseconds for the table; "n/a" when not measured.
fn whole_us(seconds: Option<f64>) -> String {
    seconds.map_or("n/a".to_string(), |s| format!("{:.0}", s * 1e6))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How long each phase runs, and how often.
#[derive(Clone, Copy)]
struct Timing {
    duration: Duration,
    warm_up: Duration,
    rounds: u32,
}

/// Runs `connections` tasks, each on its own keep-alive connection: warm-up, then `duration` measured.
/// `service_cpu`: the CPU the service is pinned to, if it is.
async fn run_phase(
    load: Load,
    service: &Process,
    service_cpu: Option<usize>,
    connections: usize,
    timing: Timing,
) -> Phase {
    let base = service.base.as_str();
    let service_pid = service.child.id();
    let secret = WebhookSecret::parse(WEBHOOK_SECRET).expect("the benchmark webhook secret is not valid");
    let url = match load {
        Load::Healthz => format!("{base}/healthz"),
        Load::Intake => format!("{base}/webhooks/hr/user-created"),
    };
    let url = reqwest::Url::parse(&url).expect("the service URL is valid");
    // Event ids must be new in every phase of every round.
    let phase = PHASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Sign the webhooks before the clock starts, so the load generator's own work (JSON, HMAC)
    // does not take CPU from the service during the phase; live signing takes over if they run out.
    let hires = std::sync::Arc::new(Hires { url: url.clone(), secret, ids: EventIds::from_env(), phase, connections });
    let mut presigned: Vec<Vec<reqwest::Request>> = (0..connections)
        .map(|task| match load {
            Load::Intake => (0..PRESIGNED_PER_CONNECTION).map(|n| hires.make(task, n)).collect(),
            Load::Healthz => Vec::new(),
        })
        .collect();
    let measure_from = Instant::now() + timing.warm_up;
    let stop_at = measure_from + timing.duration;
    let tasks: Vec<_> = (0..connections)
        .map(|task| {
            let mut ready = std::mem::take(&mut presigned[task]).into_iter();
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("cannot build the HTTP client");
            let url = url.clone();
            let hires = hires.clone();
            tokio::spawn(async move {
                let mut out = Phase::default();
                let mut last_answer = measure_from;
                let mut n: u64 = 0;
                loop {
                    let started = Instant::now();
                    if started >= stop_at {
                        break;
                    }
                    let request = match load {
                        Load::Healthz => reqwest::Request::new(reqwest::Method::GET, url.clone()),
                        Load::Intake => ready.next().unwrap_or_else(|| hires.make(task, n)),
                    };
                    let result = client.execute(request).await;
                    n += 1;
                    let finished = Instant::now();
                    let expected = if load == Load::Intake { StatusCode::ACCEPTED } else { StatusCode::OK };
                    let outcome = match result {
                        Ok(r) => {
                            let status = r.status();
                            // Read the whole answer so the connection can be reused.
                            let _ = r.bytes().await;
                            if status == expected { Ok(()) } else { Err(format!("HTTP {status}")) }
                        }
                        Err(e) => Err(format!("transport: {e}")),
                    };
                    if started < measure_from {
                        out.warm_up_accepted += u64::from(load == Load::Intake && outcome.is_ok());
                        continue;
                    }
                    last_answer = finished;
                    match outcome {
                        Ok(()) => out.latencies.push(finished - started),
                        Err(e) => *out.errors.entry(e).or_default() += 1,
                    }
                }
                out.wall = last_answer - measure_from;
                out
            })
        })
        .collect();
    // CPU use over the measured part: sampled when the warm-up ends and when the last task is done.
    tokio::time::sleep_until(measure_from.into()).await;
    let at_start = Usage::read(service_pid, service_cpu);
    let mut phase = Phase::default();
    for task in tasks {
        phase.merge(task.await.expect("a load task panicked"), true);
    }
    phase.usage = Usage::read(service_pid, service_cpu).since(at_start);
    phase.sorted()
}

/// Webhooks signed per connection ahead of each intake phase (about 4 times what this machine takes).
const PRESIGNED_PER_CONNECTION: u64 = 2_500;

/// Phases run so far in this process (part of every event id).
static PHASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The shape of the event ids the bench sends. Each event's id lands in the idempotency index, and
/// where it lands decides how many index pages a commit writes.
#[derive(Clone, Copy)]
enum EventIds {
    /// `bench-<phase>-<connection>-<n>`: one ascending series per connection, 64 places in the index.
    Interleaved,
    /// Ascending in the order they are sent, as time-ordered ids (KSUID, ULID, UUIDv7) are.
    Ordered,
    /// Random (a v4 UUID), as `send-webhook` makes them.
    Random,
}

impl EventIds {
    fn from_env() -> EventIds {
        match std::env::var("BENCH_EVENT_IDS").as_deref() {
            Err(_) | Ok("") | Ok("interleaved") => EventIds::Interleaved,
            Ok("ordered") => EventIds::Ordered,
            Ok("random") => EventIds::Random,
            Ok(other) => panic!("BENCH_EVENT_IDS={other:?}: expected interleaved, ordered or random"),
        }
    }

    /// The id of the `n`th event of connection `task` (of `connections`) in `phase`.
    fn id(self, phase: u64, task: usize, connections: usize, n: u64) -> String {
        match self {
            EventIds::Interleaved => format!("bench-{phase}-{task}-{n}"),
            // The connections advance at about the same pace, so n-major order is about send order.
            EventIds::Ordered => format!("evt_{phase:04}_{:012}", n * connections as u64 + task as u64),
            EventIds::Random => format!("msg_{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// What a phase needs to make its signed new-hire webhooks.
struct Hires {
    url: reqwest::Url,
    secret: WebhookSecret,
    ids: EventIds,
    phase: u64,
    connections: usize,
}

impl Hires {
    /// The `n`th webhook of connection `task`, signed and ready to send.
    fn make(&self, task: usize, n: u64) -> reqwest::Request {
        let id = self.ids.id(self.phase, task, self.connections, n);
        signed_hire(&self.url, &self.secret, id, (self.phase, task, n))
    }
}

/// One signed new-hire webhook for `url`, ready to send, under event id `id`; `(phase, task, n)`
/// makes its email unique.
fn signed_hire(
    url: &reqwest::Url,
    secret: &WebhookSecret,
    id: String,
    (phase, task, n): (u64, usize, u64),
) -> reqwest::Request {
    let body = serde_json::to_vec(&serde_json::json!({
        "id": id,
        "email": format!("user{phase}_{task}_{n}@example.com"),
        "firstName": "Bench",
        "lastName": "User",
        "departmentCode": "ENG",
    }))
    .expect("a JSON value always serialises");
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is before 1970").as_secs() as i64;
    let mut request = reqwest::Request::new(reqwest::Method::POST, url.clone());
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in secret.headers(&id, timestamp, &body) {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_str(&value).expect("a valid header value"));
    }
    *request.body_mut() = Some(body.into());
    request
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
fn report(
    healthz: &Phase,
    intake: &Phase,
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
    for (name, phase) in [("A  GET /healthz", healthz), ("B  POST user-created (202)", intake)] {
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
