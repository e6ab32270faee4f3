//! The file with the environment on top, checked into a typed `Config`; every problem is collected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::env::Secrets;
use super::file::{RawConfig, RawDepartment, RawGenesys, RawGenesysEvents, RawPolicy, RawQueue, RawValidationWebhook};
use super::*;
use crate::policy::{Policy, PolicySettings, Rule};
use crate::signing::{SharedSecret, WebhookSecret};

/// `raw` is the file with the environment on top (`env::overlay`); `problems` holds what the overlay
/// found. A setting is named by its variable where it has one, whichever layer its value came from.
pub(super) fn build(raw: RawConfig, secrets: Secrets, mut problems: Vec<String>) -> Result<Config, ConfigError> {
    let listen_addr = raw.server.listen_addr.unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let listen_addr = listen_addr.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(format!("LISTEN_ADDR {listen_addr:?} is not an address like 127.0.0.1:3000"));
        SocketAddr::from(([127, 0, 0, 1], 3000))
    });

    let database_url = raw.server.database_url.unwrap_or_else(|| "sqlite://data/provisioner.db?mode=rwc".to_string());
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
    let verify_signatures = raw.webhooks.verify_signatures.unwrap_or(true);
    let mut webhook_secrets = Vec::new();
    match secrets.webhook {
        Some(list) => {
            for (i, part) in list.split([',', ' ']).filter(|s| !s.is_empty()).enumerate() {
                match WebhookSecret::parse(part) {
                    Ok(s) => webhook_secrets.push(s),
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

    let admin_token = match secrets.admin_token {
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

    let audit_dir = raw.audit.dir.unwrap_or_else(|| PathBuf::from("logs/audit"));
    let keep_files = raw.audit.keep_files.unwrap_or(90);
    if keep_files == 0 {
        problems.push("audit keep_files must be at least 1".to_string());
    }

    let genesys = build_genesys(raw.genesys, secrets.genesys_client, &mut problems);
    let queue = build_queue(raw.queue, &mut problems);

    let departments = departments(raw.departments, &mut problems);
    if departments.is_empty() && problems.is_empty() {
        problems.push("no [departments.<CODE>] is configured: every new hire would be refused".to_string());
    }
    let policy = Arc::new(build_policy(raw.policy, &departments, &mut problems));
    let validation =
        build_validation(raw.validation_webhook, secrets.validation_secret, secrets.validation_signing, &mut problems);

    let genesys_events = build_events(raw.genesys_events, secrets.events_secret, &mut problems);

    let on_terminate = match raw.sync.on_terminate.as_deref() {
        None | Some("deactivate") => TerminateAction::Deactivate,
        Some("delete") => TerminateAction::Delete,
        Some(other) => {
            problems.push(format!("sync.on_terminate {other:?} is not deactivate or delete"));
            TerminateAction::Deactivate
        }
    };
    let remove_groups_on_terminate = raw.sync.remove_groups_on_terminate.unwrap_or(true);
    let mapping_path = raw.sync.mapping.unwrap_or_else(|| PathBuf::from(DEFAULT_MAPPING_PATH));
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

    let log_format = match raw.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(format!("LOG_FORMAT {other:?} is not text or json"));
            LogFormat::Text
        }
    };

    let siem = super::siem::build(raw.siem, &secrets.siem, &mut problems);

    let mapping = match (problems.is_empty(), mapping) {
        (true, Some(m)) => m,
        _ => return Err(ConfigError { problems }),
    };
    Ok(Config {
        source: None,
        sandbox: false,
        placeholder_secrets: secrets.placeholders,
        server: ServerConfig { listen_addr, database_url, max_body_bytes, limits: server_limits },
        webhooks: WebhookConfig { secrets: webhook_secrets, verify_signatures, timestamp_tolerance },
        admin_token,
        audit: AuditConfig { dir: audit_dir, keep_files },
        genesys,
        queue,
        departments,
        sync: SyncConfig {
            mapping,
            on_terminate,
            remove_groups_on_terminate,
            chunk_size: raw.sync.chunk_size.unwrap_or(25).max(1),
        },
        policy,
        validation,
        genesys_events,
        log_format,
        siem,
    })
}

/// `[genesys_events]`: the route's keys checked (each missing one named), the secret from the environment.
fn build_events(
    raw: Option<RawGenesysEvents>,
    secret: Option<String>,
    problems: &mut Vec<String>,
) -> GenesysEventsConfig {
    let configured = raw.is_some();
    let raw = raw.unwrap_or_default();
    let header = raw.secret_header.unwrap_or_else(|| DEFAULT_EVENTS_SECRET_HEADER.to_string());
    let secret_header = axum::http::HeaderName::from_bytes(header.trim().as_bytes()).unwrap_or_else(|_| {
        problems.push(format!("genesys_events.secret_header {header:?} is not an HTTP header name"));
        axum::http::HeaderName::from_static(DEFAULT_EVENTS_SECRET_HEADER)
    });
    let secret = secret
        .and_then(|s| SharedSecret::parse(&s).map_err(|e| problems.push(format!("GENESYS_EVENTS_SECRET {e}"))).ok());
    let mut required = |key: &str, value: Option<String>| -> String {
        match value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
            Some(v) => v,
            None => {
                problems.push(format!(
                    "genesys_events.{key} is required for route {:?}",
                    raw.route.as_deref().unwrap_or("eventbridge")
                ));
                String::new()
            }
        }
    };
    let route = match raw.route.as_deref() {
        _ if !configured => EventsRoute::EventBridge {
            aws_account_id: String::new(),
            aws_region: String::new(),
            event_source_suffix: String::new(),
            topic_filters: vec![USER_AUDIT_TOPIC.to_string()],
        },
        None | Some("eventbridge") => EventsRoute::EventBridge {
            aws_account_id: required("aws_account_id", raw.aws_account_id),
            aws_region: required("aws_region", raw.aws_region),
            event_source_suffix: required("event_source_suffix", raw.event_source_suffix),
            topic_filters: raw.topic_filters.unwrap_or_else(|| vec![USER_AUDIT_TOPIC.to_string()]),
        },
        Some("process-automation") => EventsRoute::ProcessAutomation {
            workflow_id: required("workflow_id", raw.workflow_id),
            topic_name: required("topic_name", raw.topic_name),
            match_criteria: raw
                .match_criteria
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
        },
        Some(other) => {
            problems.push(format!("genesys_events.route {other:?} is not eventbridge or process-automation"));
            EventsRoute::EventBridge {
                aws_account_id: String::new(),
                aws_region: String::new(),
                event_source_suffix: String::new(),
                topic_filters: Vec::new(),
            }
        }
    };
    if let EventsRoute::EventBridge { aws_account_id, .. } = &route
        && configured
        && !aws_account_id.is_empty()
        && (aws_account_id.len() != 12 || !aws_account_id.bytes().all(|b| b.is_ascii_digit()))
    {
        problems.push(format!("genesys_events.aws_account_id {aws_account_id:?} is not a 12-digit AWS account id"));
    }
    let name = raw.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    GenesysEventsConfig {
        configured,
        name: name.unwrap_or_else(|| DEFAULT_EVENTS_NAME.to_string()),
        route,
        secret_header,
        secret,
        callback_url: raw.callback_url,
    }
}

/// `[policy]` compiled against the department map (see `policy::Policy::compile`).
fn build_policy(raw: RawPolicy, departments: &DepartmentMap, problems: &mut Vec<String>) -> Policy {
    let r = raw.rules;
    let switches = [
        (Rule::UserName, r.user_name),
        (Rule::PrimaryEmail, r.primary_email),
        (Rule::EmailDomain, r.email_domain),
        (Rule::Department, r.department),
        (Rule::CostCenter, r.cost_center),
        (Rule::Roles, r.roles),
    ];
    let settings = PolicySettings {
        email_domains: raw.email_domains,
        departments: raw.departments,
        cost_center_pattern: raw.cost_center_pattern,
        roles: raw.roles,
        rules: switches.into_iter().filter_map(|(rule, on)| Some((rule, on?))).collect(),
    };
    Policy::compile(settings, departments, problems)
}

/// The validation webhook's header name and secrets (never echoed, even when malformed).
fn build_validation(
    raw: RawValidationWebhook,
    shared: Option<String>,
    signing: Option<String>,
    problems: &mut Vec<String>,
) -> ValidationWebhookConfig {
    let header = raw.secret_header.unwrap_or_else(|| DEFAULT_VALIDATION_SECRET_HEADER.to_string());
    let secret_header = axum::http::HeaderName::from_bytes(header.trim().as_bytes()).unwrap_or_else(|_| {
        problems.push(format!("validation_webhook.secret_header {header:?} is not an HTTP header name"));
        axum::http::HeaderName::from_static(DEFAULT_VALIDATION_SECRET_HEADER)
    });
    let shared_secret = shared.and_then(|s| {
        SharedSecret::parse(&s).map_err(|e| problems.push(format!("VALIDATION_WEBHOOK_SECRET {e}"))).ok()
    });
    let mut signing_secrets = Vec::new();
    for (i, part) in signing.iter().flat_map(|list| list.split([',', ' '])).filter(|s| !s.is_empty()).enumerate() {
        match WebhookSecret::parse(part) {
            Ok(s) => signing_secrets.push(s),
            Err(e) => problems.push(format!("VALIDATION_SIGNING_SECRET (entry {}): {e}", i + 1)),
        }
    }
    ValidationWebhookConfig { secret_header, shared_secret, signing_secrets }
}

/// `[departments.<CODE>]` as the department map: the one parser of the table, for the service
/// (`build`) and for the emulator's seed (`Config::departments_in`).
pub(super) fn departments(raw: BTreeMap<String, RawDepartment>, problems: &mut Vec<String>) -> DepartmentMap {
    let mut departments = BTreeMap::new();
    for (code, d) in raw {
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
    DepartmentMap { departments }
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

fn build_genesys(raw: RawGenesys, client_secret: Option<String>, problems: &mut Vec<String>) -> GenesysConfig {
    let region = raw.region.unwrap_or_else(|| "mypurecloud.com".to_string());
    if !GENESYS_REGIONS.contains(&region.as_str()) {
        problems.push(format!(
            "GENESYS_REGION {region:?} is not a Genesys Cloud region (one of: {})",
            GENESYS_REGIONS.join(", ")
        ));
    }
    let mut url = |name: &str, set: Option<String>, derived: String| {
        let value = set.unwrap_or(derived);
        if !(value.starts_with("https://") || value.starts_with("http://")) {
            problems.push(format!("{name} {value:?} is not an http(s) URL"));
        }
        value.trim_end_matches('/').to_string()
    };
    let api_url = url("GENESYS_API_URL", raw.api_url, format!("https://api.{region}"));
    let login_url = url("GENESYS_LOGIN_URL", raw.login_url, format!("https://login.{region}"));
    let client_id = raw.client_id;
    let client_secret = client_secret.map(SecretString::from);
    match (&client_id, &client_secret) {
        (Some(_), None) => problems.push("GENESYS_CLIENT_SECRET is missing (GENESYS_CLIENT_ID is set)".to_string()),
        (None, Some(_)) => problems.push("GENESYS_CLIENT_ID is missing (GENESYS_CLIENT_SECRET is set)".to_string()),
        _ => {}
    }
    let requests_per_minute = raw.requests_per_minute.unwrap_or(300);
    if requests_per_minute == 0 {
        problems.push("genesys.requests_per_minute must be at least 1".to_string());
    }
    let replica_heartbeat_ms = raw.replica_heartbeat_ms.unwrap_or(5_000);
    if !(50..=60_000).contains(&replica_heartbeat_ms) {
        problems.push("genesys.replica_heartbeat_ms must be from 50 to 60000".to_string());
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
        replica_heartbeat: Duration::from_millis(replica_heartbeat_ms),
    }
}

fn build_queue(raw: RawQueue, problems: &mut Vec<String>) -> QueueConfig {
    let run_workers = raw.run_workers.unwrap_or(true);
    // Jobs retry by time now; an old count would silently mean something else.
    if raw.max_attempts.is_some() {
        problems.push(
            "queue.max_attempts / JOB_MAX_ATTEMPTS are gone: jobs retry until queue.retry_window_secs \
             (JOB_RETRY_WINDOW_SECS) has passed; queue.max_lost_attempts (JOB_MAX_LOST_ATTEMPTS) caps attempts \
             lost to crashes"
                .to_string(),
        );
    }
    let mut number = |name: &str, set: Option<u64>, default: u64, min: u64| -> u64 {
        let value = set.unwrap_or(default);
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
    let (retention_days, dedupe_window_days) = (raw.retention_days.unwrap_or(30), raw.dedupe_window_days.unwrap_or(90));
    if !(1..=36_500).contains(&retention_days) {
        problems.push("queue.retention_days must be from 1 to 36500".to_string());
    }
    if dedupe_window_days < retention_days || dedupe_window_days > 36_500 {
        problems.push(format!(
            "queue.dedupe_window_days ({dedupe_window_days}) must be at least queue.retention_days \
             ({retention_days}) and at most 36500: a purged job is still needed to recognise a repeat"
        ));
    }
    let days = |n: u64| Duration::from_secs(n.min(36_500) * 24 * 3600);
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
        retention: days(retention_days),
        dedupe_window: days(dedupe_window_days),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;
    use crate::config::tests::{env, good_env};

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
}
