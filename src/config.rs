//! Settings: a TOML file, then the environment on top, validated once at start.
//!
//! Every problem found is collected, so an operator sees all of them in one go, one line each.
//! Secrets only ever come from the environment and are held as `SecretString`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::signing::WebhookSecret;

/// The directory-sync mapping used when `[sync] mapping` names none.
pub const DEFAULT_MAPPING_PATH: &str = "config/mappings/directory.jsonata";

/// The config file used when neither `--config` nor `PROVISIONER_CONFIG` names one (relative to the
/// working directory: the checkout, for the quick start).
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// The development values `.env.example` carries (marked `DEV VALUE: replace`): a service running
/// with one of them is warned about, since anybody who read the example knows them. A test keeps
/// them in step with the file.
pub const PLACEHOLDER_SECRETS: &[(&str, &str)] = &[
    ("HR_WEBHOOK_SECRET", "whsec_ZGV2LW9ubHktc2lnbmluZy1zZWNyZXQtY2hhbmdlLW1l"),
    ("ADMIN_TOKEN", "dev-admin-token-change-me"),
];

/// The Genesys Cloud regions, as the domains that `api.` and `login.` are prefixed to.
pub const GENESYS_REGIONS: &[&str] = &[
    "mypurecloud.com",
    "usw2.pure.cloud",
    "use2.us-gov-pure.cloud",
    "cac1.pure.cloud",
    "mypurecloud.ie",
    "euw2.pure.cloud",
    "mypurecloud.de",
    "euc2.pure.cloud",
    "mec1.pure.cloud",
    "aps1.pure.cloud",
    "apne2.pure.cloud",
    "apne3.pure.cloud",
    "mypurecloud.jp",
    "mypurecloud.com.au",
    "apse1.pure.cloud",
    "sae1.pure.cloud",
    "mxc1.pure.cloud",
    "edee1.eusc-pure.cloud",
];

/// The environment variables read on top of the file, with what each sets.
/// `.env.example` and docs/configuration.md list the same names; tests keep them in step.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("LISTEN_ADDR", "address the HTTP server binds"),
    ("DATABASE_URL", "sqlite://... (embedded default) or postgres://..."),
    ("SANDBOX_DATABASE_URL", "database of serve --sandbox (default sqlite://data/sandbox.db); never DATABASE_URL"),
    ("HR_WEBHOOK_SECRET", "Standard Webhooks signing secret(s), whsec_..., space or comma separated"),
    ("VERIFY_SIGNATURES", "true (default) or false; false is for local experiments only"),
    ("ADMIN_TOKEN", "bearer token for /jobs and /admin routes"),
    ("AUDIT_DIR", "folder of the JSON-lines audit files"),
    ("AUDIT_KEEP_FILES", "how many daily audit files are kept"),
    ("GENESYS_REGION", "Genesys Cloud region domain, e.g. mypurecloud.com"),
    ("GENESYS_CLIENT_ID", "OAuth client-credentials client id"),
    ("GENESYS_CLIENT_SECRET", "OAuth client secret"),
    ("GENESYS_API_URL", "override of https://api.<region>"),
    ("GENESYS_LOGIN_URL", "override of https://login.<region>"),
    ("WORKER_CONCURRENCY", "jobs run at once by this process"),
    ("RUN_WORKERS", "true (default) or false: false makes an intake-only replica; no Genesys credentials: false"),
    ("JOB_RETRY_WINDOW_SECS", "how long a failing job is retried after it was accepted (default 86400)"),
    ("JOB_MAX_LOST_ATTEMPTS", "attempts of a job lost to crashes (lease expired) before it becomes a dead letter"),
    ("LOG_FORMAT", "text (default) or json for operational logs"),
    ("PROVISIONER_ENV_FILE", "file of variables read at start (default .env in the current folder; none: no file)"),
];

/// Everything the service needs, typed and checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// The config file read, as it was named (None: environment and built-in defaults only).
    pub source: Option<PathBuf>,
    /// Set by `serve --sandbox`: the Genesys URLs point at the in-process emulator.
    pub sandbox: bool,
    /// Variables that hold a development value of `.env.example` (see `PLACEHOLDER_SECRETS`).
    pub placeholder_secrets: Vec<&'static str>,
    pub server: ServerConfig,
    pub webhooks: WebhookConfig,
    pub admin_token: SecretString,
    pub audit: AuditConfig,
    pub genesys: GenesysConfig,
    pub queue: QueueConfig,
    pub departments: DepartmentMap,
    pub sync: SyncConfig,
    pub log_format: LogFormat,
}

/// Directory sync: the HR-to-SCIM mapping (compiled) and what a termination does.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub mapping: crate::mapping::Mapping,
    pub on_terminate: TerminateAction,
    /// Also take a leaver out of the department groups.
    pub remove_groups_on_terminate: bool,
    /// Department (as the mapping names it) -> roles a user of it may be given.
    pub allowed_roles: BTreeMap<String, Vec<String>>,
    /// At most this many directory events talk to Genesys at once in this process: a large batch goes
    /// in chunks of this size, under the client's pacing.
    pub chunk_size: usize,
}

/// What `user.terminated` does to the Genesys user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminateAction {
    /// `active: false`: the user keeps its roles for a later return (Genesys's advice).
    Deactivate,
    /// `DELETE`: gone; a user re-enabled later comes back without its roles.
    Delete,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    /// Largest webhook body accepted; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// Transport limits against slow, idle and too many connections (`http::serve`).
    pub limits: ServerLimits,
}

/// How long a sender may take and how many connections it may hold (see `http::serve`).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// A request head must arrive within this, from accept or from its first byte.
    pub header_timeout: Duration,
    /// A request body must arrive within this, from the end of its head; else 408.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog, not accepted.
    pub max_connections: usize,
    /// A too-large body up to this size is read and discarded so the sender can read its 413.
    pub max_drain_bytes: u64,
}

/// Where jobs are stored. The URL is kept as a secret because it may carry a password.
#[derive(Clone, Debug)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(SecretString),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            Ok(DatabaseUrl::Sqlite(url.to_string()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(SecretString::from(url.to_string())))
        } else {
            Err("must start with sqlite: or postgres://".to_string())
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Verifying secrets; several are accepted at once while a secret is being rotated.
    pub secrets: Vec<WebhookSecret>,
    /// Off only by an explicit `verify_signatures = false`; start-up then warns.
    pub verify_signatures: bool,
    /// How far a `webhook-timestamp` may be from now.
    pub timestamp_tolerance: Duration,
}

#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub keep_files: usize,
}

#[derive(Clone, Debug)]
pub struct GenesysConfig {
    pub region: String,
    pub api_url: String,
    pub login_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub requests_per_minute: u32,
    /// A token is refreshed this long before it expires.
    pub token_refresh_margin: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// A 429's `Retry-After` up to this long is waited out in place; longer ones go back to the queue.
    pub max_inline_wait: Duration,
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// False for an intake-only process: it stores webhooks and leaves the jobs to other replicas.
    pub run_workers: bool,
    /// Jobs this process runs at once.
    pub concurrency: usize,
    /// Attempts of one run lost to a crash (lease expired) before the job becomes a dead letter: a
    /// job that kills its worker every time must not loop for the whole retry window.
    pub max_lost_attempts: u32,
    /// A job whose attempt fails is retried (backoff below) until this long after it was accepted
    /// (or replayed); the first failure after that makes it a dead letter.
    pub retry_window: Duration,
    /// While Genesys refuses the client credentials the workers pause and ask for a token this often.
    pub auth_retry_interval: Duration,
    /// How long a claimed job is held before another worker may take it over.
    pub lease: Duration,
    /// First retry delay; doubles each attempt, with full jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often an idle worker looks for due jobs (new local jobs wake it at once).
    pub poll_interval: Duration,
    /// How long in-flight jobs may run on after a shutdown signal before they are released.
    pub shutdown_grace: Duration,
    /// Most webhook rows committed in one transaction.
    pub intake_batch_max: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// HR department code -> the Genesys group that carries its roles.
#[derive(Clone, Debug, Default)]
pub struct DepartmentMap {
    departments: BTreeMap<String, Department>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Department {
    pub code: String,
    /// The department as Genesys shows it (enterprise `department`), written alike by the new-hire and
    /// the directory-sync paths; `[departments.X] name`, default the code.
    pub name: String,
    pub group_id: uuid::Uuid,
    pub roles: Vec<String>,
}

impl DepartmentMap {
    pub fn get(&self, code: &str) -> Option<&Department> {
        self.departments.get(code)
    }

    pub fn len(&self) -> usize {
        self.departments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.departments.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Department> {
        self.departments.values()
    }
}

/// The file as written; every field optional so the environment can fill it in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    webhooks: RawWebhooks,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    genesys: RawGenesys,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    departments: BTreeMap<String, RawDepartment>,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    /// The JSONata file; a relative path is relative to the config file's folder.
    mapping: Option<PathBuf>,
    on_terminate: Option<String>,
    remove_groups_on_terminate: Option<bool>,
    chunk_size: Option<usize>,
    max_record_bytes: Option<usize>,
    max_result_bytes: Option<usize>,
    mapping_threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// `[policy.roles]`: department -> allowed role names.
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen_addr: Option<String>,
    /// A relative SQLite file: to the config file's folder (DATABASE_URL: to the working directory).
    database_url: Option<String>,
    max_body_bytes: Option<usize>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_drain_bytes: Option<u64>,
    // Accepted in the [server] section too, as the design's sample has it.
    audit_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    verify_signatures: Option<bool>,
    timestamp_tolerance_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    /// Relative: to the config file's folder (AUDIT_DIR: to the working directory).
    dir: Option<PathBuf>,
    keep_files: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenesys {
    region: Option<String>,
    api_url: Option<String>,
    login_url: Option<String>,
    client_id: Option<String>,
    requests_per_minute: Option<u32>,
    token_refresh_margin_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    max_inline_wait_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    run_workers: Option<bool>,
    concurrency: Option<usize>,
    /// Replaced by `retry_window_secs` and `max_lost_attempts`; kept to say so clearly.
    max_attempts: Option<u32>,
    max_lost_attempts: Option<u32>,
    retry_window_secs: Option<u64>,
    auth_retry_interval_ms: Option<u64>,
    lease_secs: Option<u64>,
    backoff_base_ms: Option<u64>,
    backoff_max_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    intake_batch_max: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepartment {
    group_id: String,
    #[serde(default)]
    roles: Vec<String>,
    /// Display name (enterprise `department` in Genesys); default: the code.
    #[serde(default)]
    name: Option<String>,
}

impl RawDepartment {
    /// The display name: as configured (trimmed), else the code.
    fn display_name(&self, code: &str) -> String {
        self.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(code).to_string()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
}

/// All the problems found in a configuration, one line each.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Where values come from besides the file: the process environment in production, a map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// Values set by the program itself (the sandbox) over another environment.
pub struct Layered<'a> {
    pub overrides: BTreeMap<String, String>,
    pub base: &'a dyn Environment,
}

impl Environment for Layered<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.overrides.get(name).cloned().or_else(|| self.base.var(name))
    }
}

/// The real process environment (after `.env` was loaded by dotenvy).
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Environment for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Reads the file (when given), applies the environment, validates. Relative paths written in
    /// the file (sync.mapping, audit.dir, a SQLite file in server.database_url) are relative to the
    /// file's folder; those from the environment or the built-in defaults, to the working directory.
    pub fn load(path: Option<&Path>, env: &dyn Environment) -> Result<Config, ConfigError> {
        let Some(p) = path else { return Self::from_toml("", env) };
        let text = std::fs::read_to_string(p)
            .map_err(|e| ConfigError { problems: vec![format!("cannot read config file {}: {e}", p.display())] })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError {
            problems: vec![format!("config file {} is not valid: {}", p.display(), e.to_string().trim())],
        })?;
        let mut config = build(raw, env, p.parent().unwrap_or(Path::new("")))?;
        config.source = Some(p.to_path_buf());
        Ok(config)
    }

    /// Parses TOML text, applies the environment, validates; relative paths in the text are relative
    /// to the working directory (there is no file to be relative to).
    pub fn from_toml(text: &str, env: &dyn Environment) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![format!("config file is not valid: {}", e.to_string().trim())],
        })?;
        build(raw, env, Path::new(""))
    }

    /// Only the department map of a config file (the emulator seeds its groups from it); secrets
    /// and the rest are not needed for that.
    pub fn departments_in(path: &Path) -> Result<DepartmentMap, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { problems: vec![format!("cannot read config file {}: {e}", path.display())] })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError {
            problems: vec![format!("config file is not valid: {}", e.to_string().trim())],
        })?;
        let mut departments = BTreeMap::new();
        let mut problems = Vec::new();
        for (code, d) in raw.departments {
            match uuid::Uuid::parse_str(&d.group_id) {
                Ok(group_id) => {
                    let name = d.display_name(&code);
                    departments.insert(code.clone(), Department { code, name, group_id, roles: d.roles });
                }
                Err(_) => problems.push(format!("departments.{code}.group_id {:?} is not a UUID", d.group_id)),
            }
        }
        if problems.is_empty() { Ok(DepartmentMap { departments }) } else { Err(ConfigError { problems }) }
    }

    /// Lines for `check-config`: what was loaded, secrets shown only as set / not set.
    pub fn report(&self) -> Vec<String> {
        let set = |s: bool| if s { "set" } else { "NOT SET" };
        let source = match &self.source {
            Some(p) => p.display().to_string(),
            None => "none (environment and defaults only)".to_string(),
        };
        let mut lines = vec![
            format!("config file         {source}"),
            format!("listen_addr         {}", self.server.listen_addr),
            format!("database            {}", self.database_summary()),
            format!("audit_dir           {} (keep {} daily files)", self.audit.dir.display(), self.audit.keep_files),
            format!(
                "webhook signatures  {} ({} secret(s), {} s tolerance)",
                if self.webhooks.verify_signatures { "verified" } else { "NOT VERIFIED" },
                self.webhooks.secrets.len(),
                self.webhooks.timestamp_tolerance.as_secs()
            ),
            format!(
                "http limits         header {} s, body {} s, idle {} s, {} connections, drain {} bytes",
                self.server.limits.header_timeout.as_secs(),
                self.server.limits.body_timeout.as_secs(),
                self.server.limits.idle_timeout.as_secs(),
                self.server.limits.max_connections,
                self.server.limits.max_drain_bytes
            ),
            format!("admin token         {}", set(!self.admin_token.expose_secret().is_empty())),
            format!("genesys region      {}", self.genesys.region),
            format!("genesys api         {}", self.genesys.api_url),
            format!("genesys login       {}", self.genesys.login_url),
            format!("genesys client id   {}", self.genesys.client_id.as_deref().unwrap_or("NOT SET")),
            format!("genesys secret      {}", set(self.genesys.client_secret.is_some())),
            format!(
                "queue               {} worker(s){}, retry window {} s, {} lost attempts, lease {} s",
                self.queue.concurrency,
                if self.queue.run_workers { "" } else { " (NOT RUN: intake only)" },
                self.queue.retry_window.as_secs(),
                self.queue.max_lost_attempts,
                self.queue.lease.as_secs()
            ),
            format!("sync mapping        {} (compiled)", self.sync.mapping.source_name()),
            format!("departments         {}", self.departments.len()),
        ];
        for d in self.departments.iter() {
            let roles = if d.roles.is_empty() { String::new() } else { format!(" roles {}", d.roles.join(", ")) };
            lines.push(format!("  {:<10} -> group {} name \"{}\"{}", d.code, d.group_id, d.name, roles));
        }
        lines
    }

    /// Warnings that do not stop start-up but that an operator must see.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.webhooks.verify_signatures {
            w.push(
                "WEBHOOK SIGNATURE VERIFICATION IS OFF: anyone who can reach this service can provision users"
                    .to_string(),
            );
        }
        for name in &self.placeholder_secrets {
            w.push(format!(
                "{name} is the development value from .env.example: anybody who read the example knows it; \
                 set a value of your own"
            ));
        }
        if !self.sandbox {
            for (name, url) in
                [("GENESYS_API_URL", &self.genesys.api_url), ("GENESYS_LOGIN_URL", &self.genesys.login_url)]
            {
                if url.starts_with("http://") {
                    w.push(format!(
                        "{name} {url} is plain http://: tokens and personal data would cross the network unencrypted \
                         (only an emulator on this machine should be reached that way)"
                    ));
                }
            }
        }
        if self.genesys.client_id.is_none() {
            w.push(
                "GENESYS_CLIENT_ID / GENESYS_CLIENT_SECRET are not set: webhooks are accepted and kept in the \
                 queue, but this process runs no job (intake only)"
                    .to_string(),
            );
        }
        w
    }

    /// The one start-up line: what runs, from which file, against what, within which limits.
    pub fn summary(&self, listening: SocketAddr, run_workers: bool) -> String {
        let source = match &self.source {
            Some(p) => p.display().to_string(),
            None => "none".to_string(),
        };
        let host = self.genesys.api_url.split_once("://").map_or(self.genesys.api_url.as_str(), |(_, h)| h);
        let workers = if run_workers {
            format!("on ({} at once)", self.queue.concurrency)
        } else if self.queue.run_workers {
            "off (no Genesys credentials: jobs wait in the queue)".to_string()
        } else {
            "off (intake only)".to_string()
        };
        let l = &self.server.limits;
        format!(
            "genesys-provisioner {version} listening on {listening}; config {source}; backend {backend}; \
             genesys {host}{sandbox}; workers {workers}; limits: max body {body} bytes, timeouts header {ht} s / body {bt} \
             s / idle {it} s, {conn} connections, retry window {rw} s, lease {lease} s, {rpm} Genesys requests/min",
            version = env!("CARGO_PKG_VERSION"),
            backend = self.server.database_url.backend(),
            sandbox = if self.sandbox { " (sandbox emulator)" } else { "" },
            body = self.server.max_body_bytes,
            ht = l.header_timeout.as_secs(),
            bt = l.body_timeout.as_secs(),
            it = l.idle_timeout.as_secs(),
            conn = l.max_connections,
            rw = self.queue.retry_window.as_secs(),
            lease = self.queue.lease.as_secs(),
            rpm = self.genesys.requests_per_minute,
        )
    }

    pub fn database_summary(&self) -> String {
        match &self.server.database_url {
            DatabaseUrl::Sqlite(url) => url.clone(),
            // The URL may hold a password: show the backend only.
            DatabaseUrl::Postgres(_) => "postgres (url hidden)".to_string(),
        }
    }
}

/// A path written in the config file, relative to the file's folder `base`.
fn from_file(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() { path } else { base.join(path) }
}

/// A `sqlite:` URL written in the config file with its relative file made relative to `base`;
/// absolute files, `:memory:` and PostgreSQL URLs are kept as written.
fn sqlite_from_file(base: &Path, url: String) -> String {
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else { return url };
    let (file, query) = match rest.split_once('?') {
        Some((file, query)) => (file, format!("?{query}")),
        None => (rest, String::new()),
    };
    if file.is_empty() || file.starts_with(':') || Path::new(file).is_absolute() || base.as_os_str().is_empty() {
        return url;
    }
    format!("sqlite://{}{query}", base.join(file).display())
}

fn build(raw: RawConfig, env: &dyn Environment, base: &Path) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let placeholder_secrets = PLACEHOLDER_SECRETS
        .iter()
        .filter(|(name, value)| env.var(name).is_some_and(|v| v.split([',', ' ']).any(|part| part == *value)))
        .map(|(name, _)| *name)
        .collect();

    let listen_addr = env.var("LISTEN_ADDR").or(raw.server.listen_addr).unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let listen_addr = listen_addr.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(format!("LISTEN_ADDR {listen_addr:?} is not an address like 127.0.0.1:3000"));
        SocketAddr::from(([127, 0, 0, 1], 3000))
    });

    let database_url = env
        .var("DATABASE_URL")
        .or_else(|| raw.server.database_url.map(|url| sqlite_from_file(base, url)))
        .unwrap_or_else(|| "sqlite://data/provisioner.db?mode=rwc".to_string());
    let database_url = DatabaseUrl::parse(&database_url).unwrap_or_else(|e| {
        problems.push(format!("DATABASE_URL {e}"));
        DatabaseUrl::Sqlite(String::new())
    });

    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(1024 * 1024);
    let server_limits = build_limits(
        [
            raw.server.header_timeout_secs,
            raw.server.body_timeout_secs,
            raw.server.idle_timeout_secs,
            raw.server.max_connections.map(|n| n as u64),
        ],
        raw.server.max_drain_bytes,
        max_body_bytes,
        &mut problems,
    );

    // Webhook secrets: required unless verification is explicitly off.
    let verify_signatures = match env.var("VERIFY_SIGNATURES") {
        Some(v) => parse_bool(&v).unwrap_or_else(|| {
            problems.push(format!("VERIFY_SIGNATURES {v:?} is not true or false"));
            true
        }),
        None => raw.webhooks.verify_signatures.unwrap_or(true),
    };
    let mut secrets = Vec::new();
    match env.var("HR_WEBHOOK_SECRET") {
        Some(list) => {
            for (i, part) in list.split([',', ' ']).filter(|s| !s.is_empty()).enumerate() {
                match WebhookSecret::parse(part) {
                    Ok(s) => secrets.push(s),
                    // Never echo the value: it is a secret even when malformed.
                    Err(e) => problems.push(format!("HR_WEBHOOK_SECRET (entry {}): {e}", i + 1)),
                }
            }
        }
        None if verify_signatures => problems.push(
            "HR_WEBHOOK_SECRET is missing (set a whsec_ secret, or verify_signatures = false for local experiments)"
                .to_string(),
        ),
        None => {}
    }
    let timestamp_tolerance = Duration::from_secs(raw.webhooks.timestamp_tolerance_secs.unwrap_or(300));

    let admin_token = match env.var("ADMIN_TOKEN") {
        Some(t) if t.len() < 16 => {
            problems.push("ADMIN_TOKEN is too short (at least 16 characters)".to_string());
            SecretString::from(t)
        }
        Some(t) => SecretString::from(t),
        None => {
            problems.push("ADMIN_TOKEN is missing".to_string());
            SecretString::from(String::new())
        }
    };

    let audit_dir = env
        .var("AUDIT_DIR")
        .map(PathBuf::from)
        .or_else(|| raw.audit.dir.or(raw.server.audit_dir).map(|dir| from_file(base, dir)))
        .unwrap_or_else(|| PathBuf::from("logs/audit"));
    let keep_files = match env.var("AUDIT_KEEP_FILES") {
        Some(v) => v.parse::<usize>().unwrap_or_else(|_| {
            problems.push(format!("AUDIT_KEEP_FILES {v:?} is not a number"));
            90
        }),
        None => raw.audit.keep_files.unwrap_or(90),
    };
    if keep_files == 0 {
        problems.push("audit keep_files must be at least 1".to_string());
    }

    let genesys = build_genesys(raw.genesys, env, &mut problems);
    let queue = build_queue(raw.queue, env, &mut problems);

    let mut departments = BTreeMap::new();
    for (code, d) in raw.departments {
        if code.trim().is_empty() || code.trim() != code {
            problems.push(format!("department code {code:?} must be non-empty with no surrounding spaces"));
            continue;
        }
        match uuid::Uuid::parse_str(&d.group_id) {
            Ok(group_id) => {
                let name = d.display_name(&code);
                departments.insert(code.clone(), Department { code, name, group_id, roles: d.roles });
            }
            Err(_) => problems.push(format!(
                "departments.{code}.group_id {:?} is not a UUID (Genesys group ids are UUIDs)",
                d.group_id
            )),
        }
    }
    if departments.is_empty() && problems.is_empty() {
        problems.push("no [departments.<CODE>] is configured: every new hire would be refused".to_string());
    }

    let on_terminate = match raw.sync.on_terminate.as_deref() {
        None | Some("deactivate") => TerminateAction::Deactivate,
        Some("delete") => TerminateAction::Delete,
        Some(other) => {
            problems.push(format!("sync.on_terminate {other:?} is not deactivate or delete"));
            TerminateAction::Deactivate
        }
    };
    let remove_groups_on_terminate = raw.sync.remove_groups_on_terminate.unwrap_or(true);
    let mapping_path =
        raw.sync.mapping.map(|m| from_file(base, m)).unwrap_or_else(|| PathBuf::from(DEFAULT_MAPPING_PATH));
    let defaults = crate::mapping::MappingLimits::default();
    let limits = crate::mapping::MappingLimits {
        max_record_bytes: raw.sync.max_record_bytes.unwrap_or(defaults.max_record_bytes),
        max_result_bytes: raw.sync.max_result_bytes.unwrap_or(defaults.max_result_bytes),
        threads: raw.sync.mapping_threads.unwrap_or(defaults.threads),
    };
    if limits.threads == 0 {
        problems.push("sync.mapping_threads must be at least 1".to_string());
    }
    if limits.max_record_bytes < 1024 || limits.max_result_bytes < 1024 {
        problems.push("sync.max_record_bytes and sync.max_result_bytes must be at least 1024".to_string());
    }
    let mapping = match crate::mapping::Mapping::load(&mapping_path) {
        Ok(m) => Some(m.with_limits(limits)),
        Err(e) => {
            problems.push(format!("sync.mapping: {e}"));
            None
        }
    };

    let log_format = match env.var("LOG_FORMAT").or(raw.log.format).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(format!("LOG_FORMAT {other:?} is not text or json"));
            LogFormat::Text
        }
    };

    let mapping = match (problems.is_empty(), mapping) {
        (true, Some(m)) => m,
        _ => return Err(ConfigError { problems }),
    };
    Ok(Config {
        source: None,
        sandbox: false,
        placeholder_secrets,
        server: ServerConfig { listen_addr, database_url, max_body_bytes, limits: server_limits },
        webhooks: WebhookConfig { secrets, verify_signatures, timestamp_tolerance },
        admin_token,
        audit: AuditConfig { dir: audit_dir, keep_files },
        genesys,
        queue,
        departments: DepartmentMap { departments },
        sync: SyncConfig {
            mapping,
            on_terminate,
            remove_groups_on_terminate,
            allowed_roles: raw.policy.roles,
            chunk_size: raw.sync.chunk_size.unwrap_or(25).max(1),
        },
        log_format,
    })
}

/// The transport limits; each at least 1 (a zero timeout or cap would refuse every request).
fn build_limits(
    [header, body, idle, connections]: [Option<u64>; 4],
    max_drain_bytes: Option<u64>,
    max_body_bytes: usize,
    problems: &mut Vec<String>,
) -> ServerLimits {
    let mut at_least_one = |name: &str, value: Option<u64>, default: u64| {
        let value = value.unwrap_or(default);
        if value == 0 {
            problems.push(format!("server.{name} must be at least 1"));
        }
        value.max(1)
    };
    let header_timeout = Duration::from_secs(at_least_one("header_timeout_secs", header, 10));
    let body_timeout = Duration::from_secs(at_least_one("body_timeout_secs", body, 30));
    let idle_timeout = Duration::from_secs(at_least_one("idle_timeout_secs", idle, 60));
    let max_connections = at_least_one("max_connections", connections, 512) as usize;
    let max_drain_bytes = max_drain_bytes.unwrap_or(8 * 1024 * 1024);
    if max_drain_bytes < max_body_bytes as u64 {
        problems.push(format!("server.max_drain_bytes must be at least max_body_bytes ({max_body_bytes})"));
    }
    ServerLimits { header_timeout, body_timeout, idle_timeout, max_connections, max_drain_bytes }
}

fn build_genesys(raw: RawGenesys, env: &dyn Environment, problems: &mut Vec<String>) -> GenesysConfig {
    let region = env.var("GENESYS_REGION").or(raw.region).unwrap_or_else(|| "mypurecloud.com".to_string());
    if !GENESYS_REGIONS.contains(&region.as_str()) {
        problems.push(format!(
            "GENESYS_REGION {region:?} is not a Genesys Cloud region (one of: {})",
            GENESYS_REGIONS.join(", ")
        ));
    }
    let mut url = |name: &str, file: Option<String>, derived: String| {
        let value = env.var(name).or(file).unwrap_or(derived);
        if !(value.starts_with("https://") || value.starts_with("http://")) {
            problems.push(format!("{name} {value:?} is not an http(s) URL"));
        }
        value.trim_end_matches('/').to_string()
    };
    let api_url = url("GENESYS_API_URL", raw.api_url, format!("https://api.{region}"));
    let login_url = url("GENESYS_LOGIN_URL", raw.login_url, format!("https://login.{region}"));
    let client_id = env.var("GENESYS_CLIENT_ID").or(raw.client_id);
    let client_secret = env.var("GENESYS_CLIENT_SECRET").map(SecretString::from);
    match (&client_id, &client_secret) {
        (Some(_), None) => problems.push("GENESYS_CLIENT_SECRET is missing (GENESYS_CLIENT_ID is set)".to_string()),
        (None, Some(_)) => problems.push("GENESYS_CLIENT_ID is missing (GENESYS_CLIENT_SECRET is set)".to_string()),
        _ => {}
    }
    let requests_per_minute = raw.requests_per_minute.unwrap_or(300);
    if requests_per_minute == 0 {
        problems.push("genesys.requests_per_minute must be at least 1".to_string());
    }
    GenesysConfig {
        region,
        api_url,
        login_url,
        client_id,
        client_secret,
        requests_per_minute,
        token_refresh_margin: Duration::from_secs(raw.token_refresh_margin_secs.unwrap_or(300)),
        request_timeout: Duration::from_secs(raw.request_timeout_secs.unwrap_or(30).max(1)),
        max_inline_wait: Duration::from_secs(raw.max_inline_wait_secs.unwrap_or(30)),
    }
}

fn build_queue(raw: RawQueue, env: &dyn Environment, problems: &mut Vec<String>) -> QueueConfig {
    let run_workers = match env.var("RUN_WORKERS") {
        Some(v) => parse_bool(&v).unwrap_or_else(|| {
            problems.push(format!("RUN_WORKERS {v:?} is not true or false"));
            true
        }),
        None => raw.run_workers.unwrap_or(true),
    };
    // Jobs retry by time now; an old count would silently mean something else.
    if raw.max_attempts.is_some() || env.var("JOB_MAX_ATTEMPTS").is_some() {
        problems.push(
            "queue.max_attempts / JOB_MAX_ATTEMPTS are gone: jobs retry until queue.retry_window_secs \
             (JOB_RETRY_WINDOW_SECS) has passed; queue.max_lost_attempts (JOB_MAX_LOST_ATTEMPTS) caps attempts \
             lost to crashes"
                .to_string(),
        );
    }
    let mut number = |name: &str, file: Option<u64>, default: u64, min: u64| -> u64 {
        let value = match env.var(name) {
            Some(v) => v.parse::<u64>().unwrap_or_else(|_| {
                problems.push(format!("{name} {v:?} is not a number"));
                default
            }),
            None => file.unwrap_or(default),
        };
        if value < min {
            problems.push(format!("{name} must be at least {min}"));
        }
        value
    };
    let concurrency = number("WORKER_CONCURRENCY", raw.concurrency.map(|v| v as u64), 8, 1) as usize;
    let max_lost_attempts = number("JOB_MAX_LOST_ATTEMPTS", raw.max_lost_attempts.map(u64::from), 5, 1) as u32;
    let retry_window_secs = number("JOB_RETRY_WINDOW_SECS", raw.retry_window_secs, 24 * 3600, 1);
    let lease_secs = raw.lease_secs.unwrap_or(60);
    if lease_secs < 2 {
        problems.push("queue.lease_secs must be at least 2".to_string());
    }
    QueueConfig {
        run_workers,
        concurrency,
        max_lost_attempts,
        retry_window: Duration::from_secs(retry_window_secs),
        auth_retry_interval: Duration::from_millis(raw.auth_retry_interval_ms.unwrap_or(60_000).max(10)),
        lease: Duration::from_secs(lease_secs),
        backoff_base: Duration::from_millis(raw.backoff_base_ms.unwrap_or(2_000)),
        backoff_max: Duration::from_secs(raw.backoff_max_secs.unwrap_or(15 * 60)),
        poll_interval: Duration::from_millis(raw.poll_interval_ms.unwrap_or(1_000).max(10)),
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(20)),
        intake_batch_max: raw.intake_batch_max.unwrap_or(512).max(1),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const GOOD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn good_env() -> BTreeMap<String, String> {
        env(&[("HR_WEBHOOK_SECRET", GOOD_SECRET), ("ADMIN_TOKEN", "an-admin-token-long-enough")])
    }

    #[test]
    fn sample_config_loads_with_the_four_departments() {
        let cfg = Config::load(Some(Path::new("config/default.toml")), &good_env()).expect("valid");
        assert_eq!(cfg.sync.mapping.source_name(), "config/mappings/directory.jsonata");
        for code in ["ENG", "SUPPORT", "SALES", "HR"] {
            assert!(cfg.departments.get(code).is_some(), "{code} missing");
        }
        assert_eq!(cfg.genesys.api_url, "https://api.mypurecloud.com");
        assert_eq!(cfg.genesys.login_url, "https://login.mypurecloud.com");
    }

    #[test]
    fn every_problem_is_reported_on_its_own_line() {
        let text = r#"
            [genesys]
            region = "mars.example"
            [departments.ENG]
            group_id = "not-a-uuid"
        "#;
        let err = Config::from_toml(text, &env(&[])).unwrap_err();
        let all = err.problems.join("\n");
        assert!(all.contains("GENESYS_REGION \"mars.example\""), "{all}");
        assert!(all.contains("departments.ENG.group_id \"not-a-uuid\" is not a UUID"), "{all}");
        assert!(all.contains("HR_WEBHOOK_SECRET is missing"), "{all}");
        assert!(all.contains("ADMIN_TOKEN is missing"), "{all}");
        assert_eq!(err.problems.len(), 4, "{all}");
    }

    #[test]
    fn a_department_name_defaults_to_its_code() {
        let text = "[departments.ENG]\nname = \" Engineering \"\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n\
                    [departments.HR]\ngroup_id = \"d4e5f6a7-8901-23de-fabc-4567890abcde\"\n";
        let cfg = Config::from_toml(text, &good_env()).unwrap();
        assert_eq!(cfg.departments.get("ENG").map(|d| d.name.as_str()), Some("Engineering"));
        assert_eq!(cfg.departments.get("HR").map(|d| d.name.as_str()), Some("HR"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let text = "[server]\nlisten_addr = \"127.0.0.1:1\"\n[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        let mut e = good_env();
        e.insert("LISTEN_ADDR".into(), "0.0.0.0:8080".into());
        e.insert("GENESYS_REGION".into(), "mypurecloud.ie".into());
        e.insert("GENESYS_API_URL".into(), "http://127.0.0.1:9100/".into());
        let cfg = Config::from_toml(text, &e).unwrap();
        assert_eq!(cfg.server.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(cfg.genesys.api_url, "http://127.0.0.1:9100");
        assert_eq!(cfg.genesys.login_url, "https://login.mypurecloud.ie");
    }

    #[test]
    fn a_malformed_secret_is_named_but_never_echoed() {
        let mut e = good_env();
        e.insert("HR_WEBHOOK_SECRET".into(), "whsec_%%%not-base64%%%".into());
        let text = "[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        let err = Config::from_toml(text, &e).unwrap_err();
        let all = err.to_string();
        assert!(all.contains("HR_WEBHOOK_SECRET"), "{all}");
        assert!(!all.contains("not-base64"), "{all}");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let mut e = good_env();
        e.insert("GENESYS_CLIENT_ID".into(), "client-id".into());
        e.insert("GENESYS_CLIENT_SECRET".into(), "super-secret-genesys-value".into());
        e.insert("DATABASE_URL".into(), "postgres://u:db-password-value@localhost/x".into());
        let text = "[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        let cfg = Config::from_toml(text, &e).unwrap();
        let shown = format!("{cfg:?}\n{}", cfg.report().join("\n"));
        for secret in [
            "super-secret-genesys-value",
            "an-admin-token-long-enough",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "db-password-value",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in:\n{shown}");
        }
    }

    #[test]
    fn verification_can_be_turned_off_only_explicitly() {
        let text = "[webhooks]\nverify_signatures = false\n[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        let cfg = Config::from_toml(text, &env(&[("ADMIN_TOKEN", "an-admin-token-long-enough")])).unwrap();
        assert!(!cfg.webhooks.verify_signatures);
        assert!(cfg.warnings().iter().any(|w| w.contains("VERIFICATION IS OFF")));
    }

    #[test]
    fn env_example_lists_every_variable_with_a_comment() {
        let example = std::fs::read_to_string(".env.example").expect(".env.example");
        let lines: Vec<&str> = example.lines().collect();
        for (name, _) in ENV_VARS {
            let at = lines
                .iter()
                .position(|l| l.starts_with(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} missing"));
            assert!(at > 0 && lines[at - 1].starts_with('#'), "{name} has no comment line above it");
        }
    }

    #[test]
    fn a_mapping_with_a_syntax_error_is_reported_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.jsonata");
        std::fs::write(&bad, "{\n  \"userName\": email,\n  \"title\": ,\n}").unwrap();
        let text = format!(
            "[sync]\nmapping = {:?}\n[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n",
            bad.display().to_string()
        );
        let err = Config::from_toml(&text, &good_env()).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].starts_with("sync.mapping: mapping"), "{err}");
        assert!(err.problems[0].contains("line 3, column 12"), "{err}");
    }

    #[test]
    fn server_limits_have_defaults_and_refuse_zero() {
        let text = "[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        let limits = Config::from_toml(text, &good_env()).unwrap().server.limits;
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.body_timeout, Duration::from_secs(30));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_connections, 512);
        assert_eq!(limits.max_drain_bytes, 8 * 1024 * 1024);
        let zeros = format!(
            "[server]\nheader_timeout_secs = 0\nbody_timeout_secs = 0\nidle_timeout_secs = 0\nmax_connections = 0\nmax_drain_bytes = 10\n{text}"
        );
        let err = Config::from_toml(&zeros, &good_env()).unwrap_err();
        assert_eq!(err.problems.len(), 5, "{err}");
        assert!(err.problems.iter().any(|p| p == "server.max_connections must be at least 1"), "{err}");
        assert!(err.problems.iter().any(|p| p.starts_with("server.max_drain_bytes must be at least")), "{err}");
    }

    #[test]
    fn jobs_retry_by_time_and_the_old_attempt_count_is_refused_by_name() {
        let dept = "[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        let cfg = Config::from_toml(dept, &good_env()).unwrap();
        assert_eq!(cfg.queue.retry_window, Duration::from_secs(24 * 3600));
        assert_eq!(cfg.queue.auth_retry_interval, Duration::from_secs(60));
        let mut e = good_env();
        e.insert("JOB_RETRY_WINDOW_SECS".into(), "120".into());
        e.insert("JOB_MAX_LOST_ATTEMPTS".into(), "2".into());
        let cfg = Config::from_toml(dept, &e).unwrap();
        assert_eq!((cfg.queue.retry_window, cfg.queue.max_lost_attempts), (Duration::from_secs(120), 2));
        let old = format!("[queue]\nmax_attempts = 5\n{dept}");
        let err = Config::from_toml(&old, &good_env()).unwrap_err();
        assert!(err.to_string().contains("JOB_RETRY_WINDOW_SECS"), "{err}");
        e.insert("JOB_MAX_ATTEMPTS".into(), "5".into());
        assert!(Config::from_toml(dept, &e).unwrap_err().to_string().contains("JOB_MAX_ATTEMPTS are gone"));
    }

    #[test]
    fn a_sqlite_file_in_the_config_file_means_its_folder_and_other_urls_are_kept() {
        let base = Path::new("/etc/provisioner");
        let from = |url: &str| sqlite_from_file(base, url.to_string());
        assert_eq!(from("sqlite://data/jobs.db?mode=rwc"), "sqlite:///etc/provisioner/data/jobs.db?mode=rwc");
        assert_eq!(from("sqlite:jobs.db"), "sqlite:///etc/provisioner/jobs.db");
        for kept in ["sqlite:///var/lib/jobs.db?mode=rwc", "sqlite::memory:", "postgres://db/jobs"] {
            assert_eq!(from(kept), kept);
        }
        assert_eq!(sqlite_from_file(Path::new(""), "sqlite://a.db".into()), "sqlite://a.db");
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let err = Config::from_toml("[server]\nlisten_adr = \"x\"\n", &good_env()).unwrap_err();
        assert!(err.to_string().contains("listen_adr"), "{err}");
    }
}
