//! The config file as written: every field optional, so the environment can fill it in, and
//! unknown keys refused (serde names the expected ones, which the docs test reads back).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// The file as written; every field optional so the environment can fill it in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) webhooks: RawWebhooks,
    #[serde(default)]
    pub(super) audit: RawAudit,
    #[serde(default)]
    pub(super) genesys: RawGenesys,
    #[serde(default)]
    pub(super) queue: RawQueue,
    #[serde(default)]
    pub(super) departments: BTreeMap<String, RawDepartment>,
    #[serde(default)]
    pub(super) sync: RawSync,
    #[serde(default)]
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) validation_webhook: RawValidationWebhook,
    /// `[genesys_events]`: absent, no registration and no event callback.
    pub(super) genesys_events: Option<RawGenesysEvents>,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) siem: super::siem::RawSiem,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    /// The JSONata file; a relative path is relative to the config file's folder.
    pub(super) mapping: Option<PathBuf>,
    pub(super) on_terminate: Option<String>,
    pub(super) remove_groups_on_terminate: Option<bool>,
    pub(super) chunk_size: Option<usize>,
    pub(super) max_record_bytes: Option<usize>,
    pub(super) max_result_bytes: Option<usize>,
    pub(super) mapping_threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    /// Domains a primary email may have (unset: any).
    pub(super) email_domains: Option<Vec<String>>,
    /// Department codes a user may be in (unset: any).
    pub(super) departments: Option<Vec<String>>,
    /// A regular expression every cost center must match (unset: any).
    pub(super) cost_center_pattern: Option<String>,
    /// `[policy.roles]`: department code -> allowed role names (a department name is still read,
    /// with a warning).
    #[serde(default)]
    pub(super) roles: BTreeMap<String, Vec<String>>,
    /// `[policy.rules]`: each rule on (default) or off.
    #[serde(default)]
    pub(super) rules: RawPolicyRules,
}

/// `[policy.rules]`: one switch per rule (`policy::Rule::key`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyRules {
    pub(super) user_name: Option<bool>,
    pub(super) primary_email: Option<bool>,
    pub(super) email_domain: Option<bool>,
    pub(super) department: Option<bool>,
    pub(super) cost_center: Option<bool>,
    pub(super) roles: Option<bool>,
}

/// `[validation_webhook]`: how `POST /webhook/scim-validation` knows its caller (the secrets come
/// from the environment).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValidationWebhook {
    /// The header that carries `VALIDATION_WEBHOOK_SECRET`.
    pub(super) secret_header: Option<String>,
}

/// `[genesys_events]`: how Genesys Cloud is subscribed to user events and how their callback is
/// authenticated (the secret, `GENESYS_EVENTS_SECRET`, comes from the environment).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGenesysEvents {
    /// `eventbridge` (default) or `process-automation`.
    pub(super) route: Option<String>,
    pub(super) name: Option<String>,
    pub(super) secret_header: Option<String>,
    /// Where the events are delivered (the service's `/webhooks/genesys/events`), for the AWS side.
    pub(super) callback_url: Option<String>,
    pub(super) aws_account_id: Option<String>,
    pub(super) aws_region: Option<String>,
    pub(super) event_source_suffix: Option<String>,
    pub(super) topic_filters: Option<Vec<String>>,
    pub(super) workflow_id: Option<String>,
    pub(super) topic_name: Option<String>,
    /// Each `{jsonPath, operator, value}` as the trigger API takes it.
    pub(super) match_criteria: Option<Vec<toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen_addr: Option<String>,
    /// A relative SQLite file: to the config file's folder (DATABASE_URL: to the working directory).
    pub(super) database_url: Option<String>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) header_timeout_secs: Option<u64>,
    pub(super) body_timeout_secs: Option<u64>,
    pub(super) idle_timeout_secs: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_drain_bytes: Option<u64>,
    // Accepted in the [server] section too, as the design's sample has it.
    pub(super) audit_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhooks {
    pub(super) verify_signatures: Option<bool>,
    pub(super) timestamp_tolerance_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    /// Relative: to the config file's folder (AUDIT_DIR: to the working directory).
    pub(super) dir: Option<PathBuf>,
    pub(super) keep_files: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGenesys {
    pub(super) region: Option<String>,
    pub(super) api_url: Option<String>,
    pub(super) login_url: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) requests_per_minute: Option<u32>,
    pub(super) token_refresh_margin_secs: Option<u64>,
    pub(super) request_timeout_secs: Option<u64>,
    pub(super) max_inline_wait_secs: Option<u64>,
    pub(super) replica_heartbeat_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub(super) run_workers: Option<bool>,
    pub(super) concurrency: Option<usize>,
    /// Replaced by `retry_window_secs` and `max_lost_attempts`; kept to say so clearly.
    pub(super) max_attempts: Option<u32>,
    pub(super) max_lost_attempts: Option<u32>,
    pub(super) retry_window_secs: Option<u64>,
    pub(super) auth_retry_interval_ms: Option<u64>,
    pub(super) lease_secs: Option<u64>,
    pub(super) backoff_base_ms: Option<u64>,
    pub(super) backoff_max_secs: Option<u64>,
    pub(super) poll_interval_ms: Option<u64>,
    pub(super) shutdown_grace_secs: Option<u64>,
    pub(super) intake_batch_max: Option<usize>,
    pub(super) retention_days: Option<u64>,
    pub(super) dedupe_window_days: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDepartment {
    pub(super) group_id: String,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    /// Display name (enterprise `department` in Genesys); default: the code.
    #[serde(default)]
    pub(super) name: Option<String>,
}

impl RawDepartment {
    /// The display name: as configured (trimmed), else the code.
    pub(super) fn display_name(&self, code: &str) -> String {
        self.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(code).to_string()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<String>,
}

/// The file at `path`, parsed; a problem names the file.
pub(super) fn read(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError { problems: vec![format!("cannot read config file {}: {e}", path.display())] })?;
    toml::from_str(&text).map_err(|e| ConfigError {
        problems: vec![format!("config file {} is not valid: {}", path.display(), e.to_string().trim())],
    })
}

impl RawConfig {
    /// The paths written in the file made relative to its folder `base` (`""`: the working
    /// directory), before the environment goes on top; `[server] audit_dir` folded into `[audit] dir`.
    pub(super) fn relative_to(mut self, base: &Path) -> RawConfig {
        self.server.database_url = self.server.database_url.map(|url| sqlite_from_file(base, url));
        let audit_dir = self.audit.dir.take().or(self.server.audit_dir.take());
        self.audit.dir = audit_dir.map(|dir| from_file(base, dir));
        self.sync.mapping = self.sync.mapping.map(|mapping| from_file(base, mapping));
        for destination in &mut self.siem.destinations {
            destination.ca_file = destination.ca_file.take().map(|file| from_file(base, file));
        }
        self
    }
}

/// TOML text, parsed.
pub(super) fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text)
        .map_err(|e| ConfigError { problems: vec![format!("config file is not valid: {}", e.to_string().trim())] })
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
