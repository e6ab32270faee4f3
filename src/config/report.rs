//! What `check-config` prints and start-up logs: the settings loaded (secrets only as set or not),
//! the warnings an operator must see, and the one summary line.

use std::net::SocketAddr;

use secrecy::ExposeSecret;

use super::{Config, DatabaseUrl, SiemKind};

/// Where a SIEM destination sends, secrets only as set / NOT SET.
fn siem_target(kind: &SiemKind, set: impl Fn(bool) -> &'static str) -> String {
    match kind {
        SiemKind::SplunkHec { url, index, sourcetype, .. } => format!(
            "splunk-hec {url} (sourcetype {sourcetype}{}; token set)",
            index.as_deref().map(|i| format!(", index {i}")).unwrap_or_default()
        ),
        SiemKind::HttpJson { url, token, signing } => {
            format!(
                "http-json {url} (bearer token {}, signing secret {})",
                set(token.is_some()),
                set(signing.is_some())
            )
        }
        SiemKind::Syslog(s) => format!(
            "syslog {}://{} (facility {}, app {}, confirm {:?})",
            if s.tls { "tls" } else { "tcp" },
            s.address,
            s.facility,
            s.app_name,
            s.confirm
        ),
    }
}

impl Config {
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
        lines.push("policy".to_string());
        lines.extend(self.policy.summary());
        let v = &self.validation;
        lines.push(format!(
            "validation webhook  shared secret in {}: {}; signatures: {} secret(s){}",
            v.secret_header,
            set(v.shared_secret.is_some()),
            v.signing_secrets.len(),
            if v.shared_secret.is_none() && v.signing_secrets.is_empty() { " (every call is refused)" } else { "" }
        ));
        match self.siem.destinations.len() {
            0 => lines
                .push("siem                off (no [[siem.destinations]]: no outbox record is written)".to_string()),
            n => lines.push(format!("siem                {n} destination(s), host {}", self.siem.host)),
        }
        for d in &self.siem.destinations {
            lines.push(format!("  {:<10} -> {}", d.name, siem_target(&d.kind, set)));
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
        w.extend(self.policy.notices().iter().cloned());
        for d in &self.siem.destinations {
            let plain = match &d.kind {
                SiemKind::SplunkHec { url, .. } | SiemKind::HttpJson { url, .. } => url.starts_with("http://"),
                SiemKind::Syslog(s) => !s.tls,
            };
            if plain && !self.sandbox {
                w.push(format!(
                    "SIEM destination {} ({}) is not encrypted: audit records (personal data) cross the network in \
                     clear (use https://, or tls = true for syslog)",
                    d.name,
                    d.kind.name()
                ));
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::tests::{env, good_env};

    #[test]
    fn debug_output_never_shows_secrets() {
        let mut e = good_env();
        e.insert("GENESYS_CLIENT_ID".into(), "client-id".into());
        e.insert("GENESYS_CLIENT_SECRET".into(), "super-secret-genesys-value".into());
        e.insert("DATABASE_URL".into(), "postgres://u:db-password-value@localhost/x".into());
        e.insert("VALIDATION_WEBHOOK_SECRET".into(), "validation-shared-secret-value".into());
        e.insert("VALIDATION_SIGNING_SECRET".into(), "whsec_bmV3LXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmchIQ==".into());
        let text = "[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";
        let cfg = Config::from_toml(text, &e).unwrap();
        let shown = format!("{cfg:?}\n{}", cfg.report().join("\n"));
        for secret in [
            "super-secret-genesys-value",
            "an-admin-token-long-enough",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "db-password-value",
            "validation-shared-secret-value",
            "bmV3LXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmchIQ",
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
}
