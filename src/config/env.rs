//! The environment layer: the variables read on top of the file, and where they come from.

use std::collections::BTreeMap;

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

/// A boolean as an environment variable may spell it.
pub(super) fn parse_bool(v: &str) -> Option<bool> {
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
}
