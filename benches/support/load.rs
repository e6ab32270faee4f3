//! The intake benchmark's load: where the generator and the service run (`Pinning`), the signed
//! new-hire webhooks it sends (`Hires`, `EventIds`), and one phase of requests from many keep-alive
//! connections with what it measured (`run_phase`, `Phase`, `Usage`). `benches/intake.rs` runs the
//! rounds and reports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys_provisioner::signing::WebhookSecret;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

use super::{CpuTicks, Process, WEBHOOK_SECRET, cpu_seconds};

/// `BENCH_PIN` (default on where there are at least 2 CPUs): the service on the last CPU, this load
/// generator on the others, so the two do not interleave on the same cores. That is the nearest
/// this machine gets to load that comes from elsewhere; `BENCH_PIN=0` lets them share every CPU.
pub struct Pinning {
    /// The one CPU the service runs on.
    pub service_cpu: usize,
    pub service: CpuSet,
    pub generator: CpuSet,
    /// For the report: "service on CPU 1, generator on CPU 0".
    pub describe: String,
}

impl Pinning {
    pub fn from_env() -> Option<Pinning> {
        if std::env::var("BENCH_PIN").is_ok_and(|v| v == "0" || v == "false") {
            return None;
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if cpus < 2 {
            return None;
        }
        let (mut service, mut generator) = (CpuSet::new(), CpuSet::new());
        service.set(cpus - 1);
        for cpu in 0..cpus - 1 {
            generator.set(cpu);
        }
        let describe = format!("service on CPU {}, load generator on CPU 0-{}", cpus - 1, cpus - 2);
        Some(Pinning { service_cpu: cpus - 1, service, generator, describe })
    }

    /// Runs `spawn`, which starts the service, with the calling thread on the service's CPU: a
    /// process starts on the CPUs of the thread that starts it (its runtime then sizes itself to that
    /// one CPU). The thread then goes back to the CPUs it had.
    pub fn on_service_cpu<T>(&self, spawn: impl FnOnce() -> T) -> T {
        let before = sched_getaffinity(None).unwrap_or_else(|e| panic!("cannot read this thread's CPUs: {e}"));
        sched_setaffinity(None, &self.service).unwrap_or_else(|e| panic!("cannot pin the service: {e}"));
        let started = spawn();
        sched_setaffinity(None, &before).unwrap_or_else(|e| panic!("cannot unpin this thread: {e}"));
        started
    }

    /// Moves the calling thread, and every thread it starts afterwards, to the generator's CPUs.
    pub fn generator_here(&self) {
        sched_setaffinity(None, &self.generator).unwrap_or_else(|e| panic!("cannot pin the load generator: {e}"));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Healthz,
    Intake,
    /// `POST /webhook/scim-validation` with the shared secret: every other user breaks the policy
    /// (a 400 REJECTED), the others pass (a 200 ACCEPTED); both are decisions.
    Validation,
}

/// The shared secret the validation phase sends (the bench service gets it as VALIDATION_WEBHOOK_SECRET).
pub const VALIDATION_SECRET: &str = "bench-validation-secret-0123456789";

/// A validation webhook call: user `n` of connection `task`, compliant when `n` is even.
fn validation_request(url: &reqwest::Url, task: usize, n: u64) -> reqwest::Request {
    let domain = if n.is_multiple_of(2) { "example.com" } else { "elsewhere.invalid" };
    let body = serde_json::json!({
        "eventType": "user.created",
        "eventTimestamp": "2026-11-29T12:00:00Z",
        "data": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("v{task}-{n}@{domain}"),
            "emails": [{"value": format!("v{task}-{n}@{domain}"), "type": "work", "primary": true}],
            "active": true
        }
    });
    let mut request = reqwest::Request::new(reqwest::Method::POST, url.clone());
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(HeaderName::from_static("x-validation-secret"), HeaderValue::from_static(VALIDATION_SECRET));
    headers.insert(
        HeaderName::from_static("x-genesys-webhook-id"),
        HeaderValue::from_str(&format!("wh-{task}-{n}")).expect("an ASCII header value"),
    );
    *request.body_mut() = Some(body.to_string().into());
    request
}

/// What one phase measured (warm-up excluded).
#[derive(Default)]
pub struct Phase {
    /// Latencies of the successful requests (200 for healthz, 202 for intake), sorted.
    pub latencies: Vec<Duration>,
    /// From the end of the warm-up until the last counted answer arrived.
    pub wall: Duration,
    /// Failed requests, by status or transport error.
    pub errors: BTreeMap<String, u64>,
    /// Webhooks accepted during the warm-up (they are stored too).
    pub warm_up_accepted: u64,
    /// The CPU time used during the measured part.
    pub usage: Usage,
}

/// CPU counters read at one moment; two readings give what a phase used. `None` where the system
/// does not have them (no `/proc`, or the service not pinned).
#[derive(Clone, Copy, Default)]
pub struct Usage {
    /// CPU seconds (user + system) of the service process and of this load generator.
    pub service: Option<f64>,
    pub generator: Option<f64>,
    /// This machine's CPUs (for the hypervisor's steal).
    pub machine: Option<CpuTicks>,
    /// The service's own CPU, when it has one (`BENCH_PIN`): interrupt work included, so it shows
    /// whether that core was full and what a request costs it.
    pub service_core: Option<CpuTicks>,
}

impl Usage {
    pub fn read(service_pid: u32, service_cpu: Option<usize>) -> Usage {
        Usage {
            service: cpu_seconds(service_pid),
            generator: cpu_seconds(std::process::id()),
            machine: CpuTicks::read(None),
            service_core: service_cpu.and_then(|n| CpuTicks::read(Some(n))),
        }
    }

    /// What was used between `earlier` and this reading.
    pub fn since(self, earlier: Usage) -> Usage {
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
    pub fn plus(self, other: Usage) -> Usage {
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
    pub fn merge(&mut self, other: Phase, side_by_side: bool) {
        self.latencies.extend(other.latencies);
        self.wall = if side_by_side { self.wall.max(other.wall) } else { self.wall + other.wall };
        self.warm_up_accepted += other.warm_up_accepted;
        for (e, count) in other.errors {
            *self.errors.entry(e).or_default() += count;
        }
        self.usage = self.usage.plus(other.usage);
    }

    /// Sorts the latencies, which the percentiles need.
    pub fn sorted(mut self) -> Phase {
        self.latencies.sort_unstable();
        self
    }

    /// Share of the machine's CPU time stolen by the hypervisor while this phase ran.
    pub fn steal_percent(&self) -> String {
        percent(self.usage.machine.map(|t| (t.steal, t.total)))
    }

    /// How busy the service's CPU was (interrupts included) while this phase ran.
    pub fn core_busy_percent(&self) -> String {
        percent(self.usage.service_core.map(|t| (t.busy, t.total)))
    }

    pub fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }

    pub fn rps(&self) -> f64 {
        self.ok() as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        ms(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }

    /// CPU seconds per counted request, from CPU seconds.
    pub fn per_request(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.map(|s| s / self.ok().max(1) as f64)
    }

    /// Busy time of the service's own CPU per answered request, when it has one (`BENCH_PIN`).
    pub fn core_seconds_per_request(&self) -> Option<f64> {
        self.per_request(self.usage.service_core.map(CpuTicks::busy_seconds))
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies.last().map_or(f64::NAN, |d| ms(*d))
    }
}

/// `part` of `total` in whole percent; "n/a" where there is nothing to divide.
pub fn percent(counts: Option<(u64, u64)>) -> String {
    counts
        .filter(|(_, total)| *total > 0)
        .map_or("n/a".to_string(), |(part, total)| format!("{:.0}", 100.0 * part as f64 / total as f64))
}

/// Seconds as whole microseconds for the table; "n/a" when not measured.
pub fn whole_us(seconds: Option<f64>) -> String {
    seconds.map_or("n/a".to_string(), |s| format!("{:.0}", s * 1e6))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How long each phase runs, and how often.
#[derive(Clone, Copy)]
pub struct Timing {
    pub duration: Duration,
    pub warm_up: Duration,
    pub rounds: u32,
}

/// Runs `connections` tasks, each on its own keep-alive connection: warm-up, then `duration` measured.
/// `service_cpu`: the CPU the service is pinned to, if it is.
pub async fn run_phase(
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
        Load::Validation => format!("{base}/webhook/scim-validation"),
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
            Load::Validation => (0..PRESIGNED_PER_CONNECTION).map(|n| validation_request(&url, task, n)).collect(),
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
                        Load::Validation => ready.next().unwrap_or_else(|| validation_request(&url, task, n)),
                    };
                    let result = client.execute(request).await;
                    n += 1;
                    let finished = Instant::now();
                    let expected = match (load, n % 2) {
                        (Load::Intake, _) => StatusCode::ACCEPTED,
                        // `n` was counted above: an odd count is an even user, a compliant one.
                        (Load::Validation, 0) => StatusCode::BAD_REQUEST,
                        _ => StatusCode::OK,
                    };
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
pub const PRESIGNED_PER_CONNECTION: u64 = 2_500;

/// Phases run so far in this process (part of every event id).
pub static PHASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The shape of the event ids the bench sends. Each event's id lands in the idempotency index, and
/// where it lands decides how many index pages a commit writes.
#[derive(Clone, Copy)]
pub enum EventIds {
    /// `bench-<phase>-<connection>-<n>`: one ascending series per connection, 64 places in the index.
    Interleaved,
    /// Ascending in the order they are sent, as time-ordered ids (KSUID, ULID, UUIDv7) are.
    Ordered,
    /// Random (a v4 UUID), as `send-webhook` makes them.
    Random,
}

impl EventIds {
    pub fn from_env() -> EventIds {
        match std::env::var("BENCH_EVENT_IDS").as_deref() {
            Err(_) | Ok("") | Ok("interleaved") => EventIds::Interleaved,
            Ok("ordered") => EventIds::Ordered,
            Ok("random") => EventIds::Random,
            Ok(other) => panic!("BENCH_EVENT_IDS={other:?}: expected interleaved, ordered or random"),
        }
    }

    /// The id of the `n`th event of connection `task` (of `connections`) in `phase`.
    pub fn id(self, phase: u64, task: usize, connections: usize, n: u64) -> String {
        match self {
            EventIds::Interleaved => format!("bench-{phase}-{task}-{n}"),
            // The connections advance at about the same pace, so n-major order is about send order.
            EventIds::Ordered => format!("evt_{phase:04}_{:012}", n * connections as u64 + task as u64),
            EventIds::Random => format!("msg_{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// What a phase needs to make its signed new-hire webhooks.
pub struct Hires {
    pub url: reqwest::Url,
    pub secret: WebhookSecret,
    pub ids: EventIds,
    pub phase: u64,
    pub connections: usize,
}

impl Hires {
    /// The `n`th webhook of connection `task`, signed and ready to send.
    pub fn make(&self, task: usize, n: u64) -> reqwest::Request {
        let id = self.ids.id(self.phase, task, self.connections, n);
        signed_hire(&self.url, &self.secret, id, (self.phase, task, n))
    }
}

/// One signed new-hire webhook for `url`, ready to send, under event id `id`; `(phase, task, n)`
/// makes its email unique.
pub fn signed_hire(
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
