//! The environment layer: the variables of `ENV_VARS` put on top of the file's keys (`overlay`),
//! and the secrets, which only the environment gives. What the values mean is checked afterwards
//! (`validate`), the same whichever layer a value came from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use super::PLACEHOLDER_SECRETS;
use super::file::RawConfig;

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
    (
        "VALIDATION_WEBHOOK_SECRET",
        "shared secret a validation webhook caller sends in [validation_webhook] secret_header",
    ),
    (
        "VALIDATION_SIGNING_SECRET",
        "Standard Webhooks secret(s), whsec_..., a validation webhook caller may sign with instead",
    ),
    (
        "GENESYS_EVENTS_SECRET",
        "shared secret the Genesys event callback sends in [genesys_events] secret_header (the API key)",
    ),
    ("LOG_FORMAT", "text (default) or json for operational logs"),
    ("PROVISIONER_ENV_FILE", "file of variables read at start (default .env in the current folder; none: no file)"),
];

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

/// What only the environment gives: secrets are never read from the file.
pub(super) struct Secrets {
    /// `HR_WEBHOOK_SECRET` as set: one or more `whsec_` keys, space or comma separated.
    pub(super) webhook: Option<String>,
    pub(super) admin_token: Option<String>,
    pub(super) genesys_client: Option<String>,
    pub(super) validation_secret: Option<String>,
    pub(super) validation_signing: Option<String>,
    pub(super) events_secret: Option<String>,
    /// Variables that hold a development value of `.env.example` (`PLACEHOLDER_SECRETS`).
    pub(super) placeholders: Vec<&'static str>,
    /// The SIEM destinations' secrets (`SIEM_<NAME>_TOKEN`, ...) by variable.
    pub(super) siem: BTreeMap<String, String>,
}

/// Puts each variable that is set on top of its key in `raw` (the file's paths already made
/// relative to its folder: a path from the environment means the working directory). A value that
/// does not parse is a problem named by its variable, and the key falls back to its default, not to
/// the file's value.
pub(super) fn overlay(raw: &mut RawConfig, env: &dyn Environment, problems: &mut Vec<String>) -> Secrets {
    let text = |name: &str, key: &mut Option<String>| {
        if let Some(v) = env.var(name) {
            *key = Some(v);
        }
    };
    text("LISTEN_ADDR", &mut raw.server.listen_addr);
    text("DATABASE_URL", &mut raw.server.database_url);
    text("GENESYS_REGION", &mut raw.genesys.region);
    text("GENESYS_CLIENT_ID", &mut raw.genesys.client_id);
    text("GENESYS_API_URL", &mut raw.genesys.api_url);
    text("GENESYS_LOGIN_URL", &mut raw.genesys.login_url);
    text("LOG_FORMAT", &mut raw.log.format);
    if let Some(dir) = env.var("AUDIT_DIR") {
        raw.audit.dir = Some(PathBuf::from(dir));
    }
    boolean(env, "VERIFY_SIGNATURES", &mut raw.webhooks.verify_signatures, problems);
    boolean(env, "RUN_WORKERS", &mut raw.queue.run_workers, problems);
    number(env, "AUDIT_KEEP_FILES", &mut raw.audit.keep_files, problems);
    number(env, "WORKER_CONCURRENCY", &mut raw.queue.concurrency, problems);
    number(env, "JOB_MAX_LOST_ATTEMPTS", &mut raw.queue.max_lost_attempts, problems);
    number(env, "JOB_RETRY_WINDOW_SECS", &mut raw.queue.retry_window_secs, problems);
    // Gone, like the file's queue.max_attempts: set at all, it is refused by name (`validate`).
    if env.var("JOB_MAX_ATTEMPTS").is_some() {
        raw.queue.max_attempts.get_or_insert(0);
    }
    let placeholders = PLACEHOLDER_SECRETS
        .iter()
        .filter(|(name, value)| env.var(name).is_some_and(|v| v.split([',', ' ']).any(|part| part == *value)))
        .map(|(name, _)| *name)
        .collect();
    Secrets {
        webhook: env.var("HR_WEBHOOK_SECRET"),
        admin_token: env.var("ADMIN_TOKEN"),
        genesys_client: env.var("GENESYS_CLIENT_SECRET"),
        validation_secret: env.var("VALIDATION_WEBHOOK_SECRET"),
        validation_signing: env.var("VALIDATION_SIGNING_SECRET"),
        events_secret: env.var("GENESYS_EVENTS_SECRET"),
        placeholders,
        siem: super::siem::secrets(&raw.siem, env),
    }
}

fn number<T: FromStr>(env: &dyn Environment, name: &str, key: &mut Option<T>, problems: &mut Vec<String>) {
    if let Some(v) = env.var(name) {
        *key = v.parse().ok();
        if key.is_none() {
            problems.push(format!("{name} {v:?} is not a number"));
        }
    }
}

fn boolean(env: &dyn Environment, name: &str, key: &mut Option<bool>, problems: &mut Vec<String>) {
    if let Some(v) = env.var(name) {
        *key = parse_bool(&v);
        if key.is_none() {
            problems.push(format!("{name} {v:?} is not true or false"));
        }
    }
}

/// A boolean as an environment variable may spell it.
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
    use crate::config::Config;
    use crate::config::tests::good_env;

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

    /// Each variable of `ENV_VARS` wins over the file's key, with the value as set; the two that
    /// are not settings of the service are read elsewhere (`main`, `sandbox`).
    #[test]
    fn every_variable_goes_on_top_of_its_key() {
        use secrecy::ExposeSecret;
        let file = "[server]\nlisten_addr = \"127.0.0.1:1\"\ndatabase_url = \"sqlite://file.db\"\n\
                    [webhooks]\nverify_signatures = true\n[audit]\ndir = \"file-audit\"\nkeep_files = 3\n\
                    [genesys]\nregion = \"mypurecloud.de\"\nclient_id = \"file-client\"\n\
                    api_url = \"https://api.file.example\"\nlogin_url = \"https://login.file.example\"\n\
                    [queue]\nrun_workers = true\nconcurrency = 3\nmax_lost_attempts = 3\nretry_window_secs = 3\n\
                    [log]\nformat = \"text\"\n\
                    [departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        type Read = fn(&Config) -> String;
        let cases: &[(&str, &str, Read)] = &[
            ("LISTEN_ADDR", "127.0.0.1:4567", |c| c.server.listen_addr.to_string()),
            ("DATABASE_URL", "sqlite://env.db", |c| c.database_summary()),
            (
                "HR_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                |c| c.webhooks.secrets.len().to_string(),
            ),
            ("VERIFY_SIGNATURES", "false", |c| c.webhooks.verify_signatures.to_string()),
            ("ADMIN_TOKEN", "a-token-from-the-environment", |c| c.admin_token.expose_secret().to_string()),
            ("AUDIT_DIR", "env-audit", |c| c.audit.dir.display().to_string()),
            ("AUDIT_KEEP_FILES", "7", |c| c.audit.keep_files.to_string()),
            ("GENESYS_REGION", "mypurecloud.ie", |c| c.genesys.region.clone()),
            ("GENESYS_CLIENT_ID", "env-client", |c| c.genesys.client_id.clone().unwrap_or_default()),
            ("GENESYS_CLIENT_SECRET", "env-secret", |c| {
                c.genesys.client_secret.as_ref().map(|s| s.expose_secret().to_string()).unwrap_or_default()
            }),
            ("GENESYS_API_URL", "https://api.env.example", |c| c.genesys.api_url.clone()),
            ("GENESYS_LOGIN_URL", "https://login.env.example", |c| c.genesys.login_url.clone()),
            ("WORKER_CONCURRENCY", "7", |c| c.queue.concurrency.to_string()),
            ("RUN_WORKERS", "false", |c| c.queue.run_workers.to_string()),
            ("JOB_RETRY_WINDOW_SECS", "7", |c| c.queue.retry_window.as_secs().to_string()),
            ("JOB_MAX_LOST_ATTEMPTS", "7", |c| c.queue.max_lost_attempts.to_string()),
            ("VALIDATION_WEBHOOK_SECRET", "a-validation-secret-0123", |c| {
                c.validation.shared_secret.as_ref().is_some_and(|s| s.matches(b"a-validation-secret-0123")).to_string()
            }),
            ("VALIDATION_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", |c| {
                c.validation.signing_secrets.len().to_string()
            }),
            ("GENESYS_EVENTS_SECRET", "an-events-api-key-0123", |c| {
                c.genesys_events.secret.as_ref().is_some_and(|s| s.matches(b"an-events-api-key-0123")).to_string()
            }),
            ("LOG_FORMAT", "json", |c| format!("{:?}", c.log_format).to_lowercase()),
        ];
        let mut base = good_env();
        base.insert("GENESYS_CLIENT_SECRET".into(), "file-client-has-a-secret".into());
        for (name, value, read) in cases {
            let mut env = base.clone();
            env.insert(name.to_string(), value.to_string());
            let cfg = Config::from_toml(file, &env).unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = match *name {
                "HR_WEBHOOK_SECRET" => "2",
                "VALIDATION_WEBHOOK_SECRET" => "true",
                "VALIDATION_SIGNING_SECRET" => "1",
                "GENESYS_EVENTS_SECRET" => "true",
                _ => value,
            };
            assert_eq!(read(&cfg), expected, "{name}");
        }
        for (name, _) in ENV_VARS {
            let elsewhere = ["SANDBOX_DATABASE_URL", "PROVISIONER_ENV_FILE"].contains(name);
            assert!(elsewhere || cases.iter().any(|(n, _, _)| n == name), "{name} has no case here");
        }
        // A value that does not parse is named, and the setting is not taken from the file instead.
        let mut env = base.clone();
        env.insert("WORKER_CONCURRENCY".into(), "many".into());
        let err = Config::from_toml(file, &env).unwrap_err();
        assert_eq!(err.problems, ["WORKER_CONCURRENCY \"many\" is not a number"]);
    }
}
