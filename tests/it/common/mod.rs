//! Spawns the real app on a free port with its own database and audit folder, and talks HTTP to it.

#![allow(dead_code)]

pub mod process;
pub mod siem;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use genesys_provisioner::App;
use genesys_provisioner::clock::{Clock, ManualClock};
use genesys_provisioner::config::Config;
use genesys_provisioner::queue::worker::{HandlerFuture, JobFailure, JobHandler, JobSuccess, Worker};
use genesys_provisioner::queue::{Job, JobStore};
use genesys_provisioner::signing::WebhookSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A second secret, for rotation tests.
pub const NEW_SECRET: &str = "whsec_bmV3LXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmchIQ==";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const HR_PATH: &str = "/webhooks/hr/user-created";
pub const EMULATOR_CLIENT_ID: &str = "emulator-client";
pub const EMULATOR_CLIENT_SECRET: &str = "emulator-secret-for-tests-0123";

/// The test departments' groups, as they exist in the emulator at start.
pub const GROUPS: &[(&str, &str)] = &[
    ("ENG", "a1b2c3d4-5678-90ab-cdef-1234567890ab"),
    ("SUPPORT", "b2c3d4e5-6789-01bc-defa-234567890abc"),
    ("SALES", "c3d4e5f6-7890-12cd-efab-34567890abcd"),
    ("HR", "d4e5f6a7-8901-23de-fabc-4567890abcde"),
];

/// A Genesys Cloud emulator with the test departments' groups.
pub async fn start_emulator() -> genesys_emulator::Emulator {
    use genesys_emulator::{Emulator, EmulatorConfig, SeedGroup};
    let config = EmulatorConfig {
        client_id: EMULATOR_CLIENT_ID.to_string(),
        client_secret: EMULATOR_CLIENT_SECRET.to_string(),
        groups: GROUPS
            .iter()
            .map(|(name, id)| SeedGroup { id: id.to_string(), display_name: name.to_string() })
            .collect(),
        ..Default::default()
    };
    Emulator::start("127.0.0.1:0".parse().unwrap(), config).await.expect("emulator starts")
}

/// The test config: sample departments, fast retries, short leases.
pub const TEST_TOML: &str = r#"
[server]
listen_addr = "127.0.0.1:0"
[queue]
concurrency = 4
max_lost_attempts = 3
retry_window_secs = 3
auth_retry_interval_ms = 200
lease_secs = 2
backoff_base_ms = 20
backoff_max_secs = 1
poll_interval_ms = 50
shutdown_grace_secs = 5
[departments.ENG]
group_id = "a1b2c3d4-5678-90ab-cdef-1234567890ab"
roles = ["employee"]
[departments.SUPPORT]
group_id = "b2c3d4e5-6789-01bc-defa-234567890abc"
[departments.SALES]
group_id = "c3d4e5f6-7890-12cd-efab-34567890abcd"
[departments.HR]
group_id = "d4e5f6a7-8901-23de-fabc-4567890abcde"
"#;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database for one test. PostgreSQL tests get their own database, created from
/// TEST_DATABASE_URL; when that is unset they are skipped, and say so.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
                Some(TestDb { url, dir })
            }
            Backend::Postgres => {
                let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
                    say_skipped("PostgreSQL test");
                    return None;
                };
                Some(TestDb { url: fresh_pg_database(&base).await, dir })
            }
        }
    }
}

/// A child process that is killed when the test ends, passed or failed.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Says that (part of) the running test was skipped, where the test run's reader sees it: libtest
/// captures `eprintln!` and shows it only for failing tests, but not a direct write to stderr.
pub fn say_skipped(what: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what} in {test} (TEST_DATABASE_URL is not set)");
}

/// Creates an empty database next to the one TEST_DATABASE_URL names and returns its URL.
pub async fn fresh_pg_database(base: &str) -> String {
    use sqlx::Connection;
    let name = format!("it_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(base).await.expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create db");
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (base, String::new()),
    };
    let root = head.rsplit_once('/').map(|(r, _)| r).unwrap_or(head);
    format!("{root}/{name}{query}")
}

/// What a scripted handler answers for a job on its n-th run.
type Script = dyn Fn(&Job, u32) -> Result<JobSuccess, JobFailure> + Send + Sync;

/// A job handler whose behaviour a test scripts: it counts attempts per job and asks the script.
pub struct ScriptedHandler {
    pub calls: AtomicU32,
    pub per_job: std::sync::Mutex<BTreeMap<uuid::Uuid, u32>>,
    script: Box<Script>,
    delay: Duration,
    /// Set by `held`: each run waits for a permit the test gives (`let_run`).
    gate: Option<tokio::sync::Semaphore>,
}

impl ScriptedHandler {
    pub fn new(script: impl Fn(&Job, u32) -> Result<JobSuccess, JobFailure> + Send + Sync + 'static) -> Arc<Self> {
        Self::slow(Duration::ZERO, script)
    }

    pub fn slow(
        delay: Duration,
        script: impl Fn(&Job, u32) -> Result<JobSuccess, JobFailure> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(ScriptedHandler {
            calls: AtomicU32::new(0),
            per_job: Default::default(),
            script: Box::new(script),
            delay,
            gate: None,
        })
    }

    /// Each run waits until the test lets it finish (`let_run`): a job that runs as long as the test
    /// wants, whatever time the clock says.
    pub fn held(script: impl Fn(&Job, u32) -> Result<JobSuccess, JobFailure> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(ScriptedHandler {
            calls: AtomicU32::new(0),
            per_job: Default::default(),
            script: Box::new(script),
            delay: Duration::ZERO,
            gate: Some(tokio::sync::Semaphore::new(0)),
        })
    }

    /// Lets `runs` held runs finish.
    pub fn let_run(&self, runs: usize) {
        self.gate.as_ref().expect("a held handler").add_permits(runs);
    }

    /// Succeeds at once with `{"handledBy": "test"}`.
    pub fn succeeding() -> Arc<Self> {
        Self::new(|_, _| Ok(JobSuccess { result: json!({"handledBy": "test"}) }))
    }

    pub fn runs_of(&self, id: uuid::Uuid) -> u32 {
        self.per_job.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

impl JobHandler for ScriptedHandler {
    fn handle<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let n = {
                let mut m = self.per_job.lock().unwrap();
                let n = m.entry(job.audit_id).or_insert(0);
                *n += 1;
                *n
            };
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("the gate stays open").forget();
            }
            (self.script)(job, n)
        })
    }
}

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: JobStore,
    pub worker: Arc<Worker>,
    pub audit_dir: PathBuf,
    /// The app's audit log, to flush before reading the trail.
    pub audit: genesys_provisioner::audit::AuditLog,
    pub db: TestDb,
    pub stop: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<Result<(), genesys_provisioner::StartError>>>,
    pub metrics: Arc<genesys_provisioner::metrics::Metrics>,
    /// The clock the app runs on.
    pub clock: Clock,
    /// Set by `Spawn::manual_clock`: the test moves the app's time.
    pub manual: Option<ManualClock>,
}

/// How to start a test app.
pub struct Spawn {
    pub backend: Backend,
    /// None: the real provisioning pipeline.
    pub handler: Option<Arc<dyn JobHandler>>,
    pub workers: bool,
    pub env: BTreeMap<String, String>,
    pub toml: String,
    /// Reuse a database (e.g. a second app on the same PostgreSQL queue).
    pub db: Option<TestDb>,
    /// None: the system clock.
    pub manual: Option<ManualClock>,
}

impl Spawn {
    pub fn new(backend: Backend) -> Self {
        Spawn {
            backend,
            handler: Some(ScriptedHandler::succeeding()),
            workers: true,
            env: base_env(),
            toml: TEST_TOML.to_string(),
            db: None,
            manual: None,
        }
    }

    /// Runs the app on a clock that moves only when the test advances it (`TestApp::manual`).
    pub fn manual_clock(mut self) -> Self {
        self.manual = Some(ManualClock::new());
        self
    }

    pub fn handler(mut self, h: Arc<dyn JobHandler>) -> Self {
        self.handler = Some(h);
        self
    }

    /// The real provisioning pipeline (`App::build`) instead of a scripted handler.
    pub fn real_pipeline(mut self) -> Self {
        self.handler = None;
        self
    }

    /// Runs the real provisioning pipeline against `emulator` (fast pacing, short inline waits).
    pub fn provisioning(mut self, emulator: &genesys_emulator::Emulator) -> Self {
        self = self.real_pipeline();
        let base = emulator.base_url();
        self = self
            .env("GENESYS_API_URL", &base)
            .env("GENESYS_LOGIN_URL", &base)
            .env("GENESYS_CLIENT_ID", EMULATOR_CLIENT_ID)
            .env("GENESYS_CLIENT_SECRET", EMULATOR_CLIENT_SECRET);
        self.toml("[genesys]\nrequests_per_minute = 60000\nmax_inline_wait_secs = 1\nrequest_timeout_secs = 5")
    }

    pub fn no_workers(mut self) -> Self {
        self.workers = false;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_string(), v.to_string());
        self
    }

    pub fn toml(mut self, extra: &str) -> Self {
        self.toml = format!("{extra}\n{}", self.toml);
        self
    }

    pub fn on_db(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }

    /// None when the backend is not available (PostgreSQL without TEST_DATABASE_URL).
    pub async fn start(self) -> Option<TestApp> {
        let db = match self.db {
            Some(db) => db,
            None => TestDb::new(self.backend).await?,
        };
        let audit_dir = db.dir.path().join(format!("audit-{}", uuid::Uuid::new_v4().simple()));
        let mut env = self.env;
        env.insert("DATABASE_URL".into(), db.url.clone());
        env.insert("AUDIT_DIR".into(), audit_dir.display().to_string());
        let mut config = Config::from_toml(&self.toml, &env).expect("test config is valid");
        // No workers: jobs wait in the queue and the test drives them (`Worker::drain`).
        config.queue.run_workers &= self.workers;
        let mut builder = App::builder(config);
        if let Some(h) = self.handler {
            builder = builder.handler(h);
        }
        if let Some(manual) = &self.manual {
            builder = builder.clock(manual.clock());
        }
        let app = builder.build().await.expect("app builds");
        let base = format!("http://{}", app.addr());
        let store = app.store();
        let worker = app.worker();
        let metrics = app.metrics();
        let audit = app.audit();
        let clock = app.clock();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Some(TestApp {
            base,
            client: reqwest::Client::new(),
            store,
            worker,
            audit_dir,
            audit,
            db,
            stop,
            task: Some(task),
            metrics,
            clock,
            manual: self.manual,
        })
    }
}

pub fn base_env() -> BTreeMap<String, String> {
    [("HR_WEBHOOK_SECRET", SECRET), ("ADMIN_TOKEN", ADMIN_TOKEN)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A valid new-hire body with a unique email.
pub fn new_hire(dept: &str) -> Value {
    let n = uuid::Uuid::new_v4().simple().to_string();
    json!({
        "id": format!("evt-{n}"),
        "email": format!("jane.{}@example.com", &n[..8]),
        "firstName": "Jane",
        "lastName": "Doe",
        "departmentCode": dept,
        "title": "Engineer",
        "hireDate": "2026-12-01"
    })
}

/// Signature headers for a body, signed with `secret` at `timestamp`.
pub fn signed_headers(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    WebhookSecret::parse(secret).unwrap().headers(id, timestamp, body).to_vec()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs raw bytes with the given headers.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>, headers: &[(&str, String)]) -> (u16, Value) {
        let mut req = self.client.post(self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// POSTs a JSON body signed with the test secret under event id `id`.
    pub async fn post_signed(&self, path: &str, body: &Value, id: &str) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let mut headers = signed_headers(SECRET, id, now(), &bytes);
        headers.push(("content-type", "application/json".to_string()));
        self.post_raw(path, bytes, &headers).await
    }

    /// A new hire accepted with a fresh event id; returns its auditId.
    pub async fn hire(&self, body: &Value) -> uuid::Uuid {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let (status, answer) = self.post_signed(HR_PATH, body, &id).await;
        assert_eq!(status, 202, "{answer}");
        answer["auditId"].as_str().unwrap().parse().unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.admin(reqwest::Method::GET, path).await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let resp = self.client.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Polls `GET /jobs/{id}` until the job reaches `state`; panics with the last view after `within`.
    pub async fn wait_for_state(&self, id: uuid::Uuid, state: &str, within: Duration) -> Value {
        let last = std::sync::Mutex::new(Value::Null);
        let found = eventually(within, || async {
            let (_, job) = self.admin_get(&format!("/jobs/{id}")).await;
            *last.lock().unwrap() = job.clone();
            (job["state"] == state).then_some(job)
        })
        .await;
        found.unwrap_or_else(|| panic!("job {id} did not reach {state}; last seen {}", last.lock().unwrap()))
    }

    /// The app's manual clock (`Spawn::manual_clock`).
    pub fn manual(&self) -> &ManualClock {
        self.manual.as_ref().expect("the app runs on a manual clock: Spawn::manual_clock")
    }

    /// `wait_for_state` on a manual clock: whenever the job waits for its next attempt (a backoff),
    /// the clock is moved on to exactly when that attempt is due, and only then. Time passes as
    /// the queue's own schedule says, however slowly the machine runs.
    pub async fn wait_for_state_advancing(&self, id: uuid::Uuid, state: &str, within: Duration) -> Value {
        let manual = self.manual();
        let last = std::sync::Mutex::new(Value::Null);
        let found = eventually(within, || async {
            let (_, view) = self.admin_get(&format!("/jobs/{id}")).await;
            *last.lock().unwrap() = view.clone();
            if view["state"] == state {
                return Some(view);
            }
            let job = self.store.get(id).await.unwrap().expect("the job is stored");
            if job.state.as_str() == "queued" && job.run_at > manual.now_ms() {
                manual.advance_to(job.run_at);
            }
            None
        })
        .await;
        found.unwrap_or_else(|| panic!("job {id} did not reach {state}; last seen {}", last.lock().unwrap()))
    }

    /// Every audit line recorded so far (the writer is asynchronous: flushed first).
    pub fn audit_lines(&self) -> Vec<Value> {
        assert!(self.audit.flush(), "the audit writer did not write within 10 s");
        read_audit(&self.audit_dir)
    }

    /// Waits until an audit line satisfies `pred`.
    pub async fn wait_for_audit(&self, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_audit_lines(within, 1, pred).await.swap_remove(0)
    }

    /// Waits until `count` audit lines satisfy `pred` and returns those. A worker writes an attempt's
    /// line after committing its outcome, so a job's new state can be seen a moment before its line.
    pub async fn wait_for_audit_lines(
        &self,
        within: Duration,
        count: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let matching = || self.audit_lines().into_iter().filter(|l| pred(l)).collect::<Vec<_>>();
        eventually(within, || async {
            let lines = matching();
            (lines.len() >= count).then_some(lines)
        })
        .await
        .unwrap_or_else(|| panic!("wanted {count} such audit line(s); have {:#?}", self.audit_lines()))
    }

    pub async fn shutdown(mut self) -> TestDb {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stopped cleanly");
        }
        self.db
    }
}

pub fn read_audit(dir: &std::path::Path) -> Vec<Value> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return lines };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        lines.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    lines
}

/// Calls `probe` until it returns Some or `within` passes. Polls; never a fixed sleep for a result.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a test body on each backend that is available.
pub async fn on_each_backend<F, Fut>(body: F)
where
    F: Fn(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if backend == Backend::Postgres && std::env::var("TEST_DATABASE_URL").is_err() {
            say_skipped("the PostgreSQL run of this test");
            continue;
        }
        body(backend).await;
    }
}

/// `config/default.toml` for a copy written elsewhere (a temporary folder): its relative mapping
/// path means the config file's folder, so the copy points at the checkout's mapping instead.
pub fn sample_config_text() -> String {
    let mapping = std::fs::canonicalize("config/mappings/directory.jsonata").expect("the sample mapping");
    let text = std::fs::read_to_string("config/default.toml").expect("the sample config");
    let relative = "\"mappings/directory.jsonata\"";
    assert!(text.contains(relative), "config/default.toml names its mapping as {relative}");
    text.replace(relative, &format!("{:?}", mapping.display().to_string()))
}
