//! Settings: a TOML file, then the environment on top, validated once at start.
//!
//! Every problem found is collected, so an operator sees all of them in one go, one line each.
//! Secrets only ever come from the environment and are held as `SecretString`.
//!
//! Three steps, each in its module: `file` reads the file as written (its relative paths made
//! relative to its folder), `env` puts the environment on top of it (and alone gives the secrets),
//! `validate` checks the result into the typed `Config` below. `report` says what was loaded.

mod env;
mod file;
mod report;
mod siem;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::policy::Policy;
use crate::signing::{SharedSecret, WebhookSecret};

pub use env::{ENV_VARS, Environment, Layered, ProcessEnv};
pub use siem::{SiemConfig, SiemDestination, SiemKind, SyslogConfirm, SyslogSettings, secret_variable};

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
    /// `[policy]`, compiled: what a user must be to be provisioned (intake, jobs, validation webhook).
    pub policy: Arc<Policy>,
    pub validation: ValidationWebhookConfig,
    /// `[genesys_events]`: the subscription to Genesys user events and their callback.
    pub genesys_events: GenesysEventsConfig,
    pub log_format: LogFormat,
    /// Delivery of the audit records to SIEMs (`[siem]`); off without destinations.
    pub siem: SiemConfig,
}

/// The header that carries `GENESYS_EVENTS_SECRET` when `[genesys_events] secret_header` names none
/// (the API destination's API-key header).
pub const DEFAULT_EVENTS_SECRET_HEADER: &str = "x-api-key";
/// The registration's name in Genesys when `[genesys_events] name` names none.
pub const DEFAULT_EVENTS_NAME: &str = "genesys-provisioner user events";
/// The user audit topic: every create, update and delete of a user.
pub const USER_AUDIT_TOPIC: &str = "v2.audits.entitytype.User.entityid.{id}";

/// How Genesys Cloud is subscribed to user events (`register-webhook`) and how their callback
/// (`POST /webhooks/genesys/events`) knows its caller.
#[derive(Clone, Debug)]
pub struct GenesysEventsConfig {
    /// Whether the config has a `[genesys_events]` section; without one, registering is refused.
    pub configured: bool,
    pub name: String,
    pub route: EventsRoute,
    pub secret_header: axum::http::HeaderName,
    /// `GENESYS_EVENTS_SECRET`; without it, every callback is refused (401).
    pub secret: Option<SharedSecret>,
    /// The public URL of `/webhooks/genesys/events`, for the AWS side's API destination.
    pub callback_url: Option<String>,
}

/// Which of Genesys's two ways out carries the events.
#[derive(Clone, Debug, PartialEq)]
pub enum EventsRoute {
    /// The `amazon-eventbridge-source` integration; an AWS API destination calls the service.
    EventBridge { aws_account_id: String, aws_region: String, event_source_suffix: String, topic_filters: Vec<String> },
    /// A Process Automation trigger starting an Architect workflow that calls the service.
    ProcessAutomation { workflow_id: String, topic_name: String, match_criteria: Vec<serde_json::Value> },
}

/// Who may call the validation webhook (`POST /webhook/scim-validation`): a caller sends the shared
/// secret in `secret_header`, or signs as Standard Webhooks prescribes. With neither configured,
/// every call is refused (401).
#[derive(Clone, Debug)]
pub struct ValidationWebhookConfig {
    pub secret_header: axum::http::HeaderName,
    /// `VALIDATION_WEBHOOK_SECRET`.
    pub shared_secret: Option<SharedSecret>,
    /// `VALIDATION_SIGNING_SECRET`: one or more `whsec_` keys.
    pub signing_secrets: Vec<WebhookSecret>,
}

/// The header that carries the validation webhook's shared secret when `[validation_webhook]
/// secret_header` names none.
pub const DEFAULT_VALIDATION_SECRET_HEADER: &str = "x-validation-secret";

/// Directory sync: the HR-to-SCIM mapping (compiled) and what a termination does.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub mapping: crate::mapping::Mapping,
    pub on_terminate: TerminateAction,
    /// Also take a leaver out of the department groups.
    pub remove_groups_on_terminate: bool,
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
    /// How often a process whose workers run writes its heartbeat to the job store and counts the
    /// replicas that share `requests_per_minute` with it (`crate::replicas`).
    pub replica_heartbeat: Duration,
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
    /// A succeeded job's personal data (payload, result, progress, errors) is purged this long
    /// after it succeeded; dead letters keep theirs until an admin replays or deletes them.
    pub retention: Duration,
    /// A succeeded job's event id is recognised as a repeat this long after it succeeded (at least
    /// `retention`); then the job and its attempts are deleted.
    pub dedupe_window: Duration,
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

impl Config {
    /// Reads the file (when given), applies the environment, validates. Relative paths written in
    /// the file (sync.mapping, audit.dir, a SQLite file in server.database_url) are relative to the
    /// file's folder; those from the environment or the built-in defaults, to the working directory.
    pub fn load(path: Option<&Path>, env: &dyn Environment) -> Result<Config, ConfigError> {
        let Some(p) = path else { return Self::from_toml("", env) };
        let mut config = layered(file::read(p)?.relative_to(p.parent().unwrap_or(Path::new(""))), env)?;
        config.source = Some(p.to_path_buf());
        Ok(config)
    }

    /// Parses TOML text, applies the environment, validates; relative paths in the text are relative
    /// to the working directory (there is no file to be relative to).
    pub fn from_toml(text: &str, env: &dyn Environment) -> Result<Config, ConfigError> {
        layered(file::parse(text)?.relative_to(Path::new("")), env)
    }

    /// Only the department map of a config file (the emulator seeds its groups from it); secrets
    /// and the rest are not needed for that. Checked by the same parser `load` uses, so a map the
    /// service would refuse never seeds an emulator.
    pub fn departments_in(path: &Path) -> Result<DepartmentMap, ConfigError> {
        let mut problems = Vec::new();
        let departments = validate::departments(file::read(path)?.departments, &mut problems);
        if problems.is_empty() { Ok(departments) } else { Err(ConfigError { problems }) }
    }
}

/// The environment on top of the file, then every check.
fn layered(mut raw: file::RawConfig, env: &dyn Environment) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let secrets = env::overlay(&mut raw, env, &mut problems);
    validate::build(raw, secrets, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const GOOD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    pub(super) fn good_env() -> BTreeMap<String, String> {
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
    fn unknown_keys_in_the_file_are_errors() {
        let err = Config::from_toml("[server]\nlisten_adr = \"x\"\n", &good_env()).unwrap_err();
        assert!(err.to_string().contains("listen_adr"), "{err}");
    }

    #[test]
    fn retention_defaults_to_30_days_and_the_dedupe_window_may_not_be_shorter() {
        let dept = "[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        let day = Duration::from_secs(24 * 3600);
        let cfg = Config::from_toml(dept, &good_env()).unwrap();
        assert_eq!((cfg.queue.retention, cfg.queue.dedupe_window), (day * 30, day * 90));
        let same = format!("[queue]\nretention_days = 7\ndedupe_window_days = 7\n{dept}");
        let cfg = Config::from_toml(&same, &good_env()).unwrap();
        assert_eq!((cfg.queue.retention, cfg.queue.dedupe_window), (day * 7, day * 7));
        let shorter = format!("[queue]\nretention_days = 30\ndedupe_window_days = 10\n{dept}");
        let err = Config::from_toml(&shorter, &good_env()).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.problems[0].starts_with("queue.dedupe_window_days (10) must be at least queue.retention_days (30)")
        );
        let never = format!("[queue]\nretention_days = 0\n{dept}");
        let err = Config::from_toml(&never, &good_env()).unwrap_err();
        assert!(err.problems.iter().any(|p| p == "queue.retention_days must be from 1 to 36500"), "{err}");
    }
}
