//! `[siem]` and its `[[siem.destinations]]`: where the audit records go besides the audit files, as
//! written in the file and as checked; each destination's secret comes from the environment only
//! (`SIEM_<NAME>_TOKEN`, `SIEM_<NAME>_SIGNING_SECRET`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::env::Environment;
use crate::signing::WebhookSecret;

/// `[siem]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSiem {
    pub(super) batch_size: Option<usize>,
    pub(super) max_batch_bytes: Option<usize>,
    pub(super) backoff_base_ms: Option<u64>,
    pub(super) backoff_max_secs: Option<u64>,
    pub(super) refused_retry_secs: Option<u64>,
    pub(super) poll_interval_ms: Option<u64>,
    pub(super) lease_secs: Option<u64>,
    pub(super) host: Option<String>,
    #[serde(default)]
    pub(super) destinations: Vec<RawDestination>,
}

/// One `[[siem.destinations]]` as written: `kind` says which of the other keys apply.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    pub(super) name: String,
    pub(super) kind: String,
    /// splunk-hec: the HEC base URL (`/services/collector/event` is appended); http-json: the URL.
    pub(super) url: Option<String>,
    pub(super) timeout_secs: Option<u64>,
    // splunk-hec
    pub(super) index: Option<String>,
    pub(super) source: Option<String>,
    pub(super) sourcetype: Option<String>,
    // syslog
    pub(super) address: Option<String>,
    pub(super) tls: Option<bool>,
    pub(super) server_name: Option<String>,
    /// Relative: to the config file's folder.
    pub(super) ca_file: Option<PathBuf>,
    pub(super) facility: Option<String>,
    pub(super) app_name: Option<String>,
    pub(super) confirm: Option<String>,
}

/// SIEM delivery, checked. No destination: the outbox is not written at all.
#[derive(Clone, Debug)]
pub struct SiemConfig {
    pub destinations: Vec<SiemDestination>,
    /// Most records in one delivery.
    pub batch_size: usize,
    /// Most bytes of records in one delivery (at least one record goes, whatever its size).
    pub max_batch_bytes: usize,
    /// While a destination is down or busy: waits of `random(0, min(max, base · 2^(n-1)))`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// While a destination refuses the records as misconfigured (HEC 400/401/403, other 4xx): the
    /// records are kept and sent again this often.
    pub refused_retry: Duration,
    /// An idle destination looks for records written by other processes this often (records this
    /// process writes wake it at once).
    pub poll_interval: Duration,
    /// On a shared PostgreSQL store, one process at a time delivers to a destination, for this long
    /// unless it renews.
    pub lease: Duration,
    /// The host name sent with each record (HEC `host`, syslog HOSTNAME).
    pub host: String,
}

impl SiemConfig {
    pub fn enabled(&self) -> bool {
        !self.destinations.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct SiemDestination {
    /// Names its pending records and its secrets' variables.
    pub name: String,
    /// Per delivery (connect, send, answer).
    pub timeout: Duration,
    pub kind: SiemKind,
}

#[derive(Clone, Debug)]
pub enum SiemKind {
    /// Splunk's HTTP Event Collector.
    SplunkHec {
        /// The collector's base URL, e.g. `https://splunk.example.com:8088`.
        url: String,
        token: SecretString,
        index: Option<String>,
        source: String,
        sourcetype: String,
    },
    /// A JSON array POSTed to a URL, with a bearer token or a Standard Webhooks signature (or both).
    HttpJson { url: String, token: Option<SecretString>, signing: Option<WebhookSecret> },
    /// RFC 5424 over TCP (RFC 6587 octet counting), optionally in TLS.
    Syslog(SyslogSettings),
}

impl SiemKind {
    pub fn name(&self) -> &'static str {
        match self {
            SiemKind::SplunkHec { .. } => "splunk-hec",
            SiemKind::HttpJson { .. } => "http-json",
            SiemKind::Syslog(_) => "syslog",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SyslogSettings {
    /// `host:port` as configured.
    pub address: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The name the server's certificate must carry (default: the host of `address`).
    pub server_name: String,
    /// More trusted roots (PEM), besides the system's.
    pub ca_file: Option<PathBuf>,
    /// RFC 5424 facility number (`local0` = 16).
    pub facility: u8,
    pub app_name: String,
    pub confirm: SyslogConfirm,
}

/// When a batch sent to a syslog collector counts as delivered. TCP syslog has no acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogConfirm {
    /// The service half-closes the connection after the batch and waits until the collector has read
    /// everything and closed its side.
    Close,
    /// Once written and flushed to the socket (for collectors that keep a half-closed connection open).
    Written,
}

/// RFC 5424 facility names and numbers.
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("authpriv", 10),
    ("audit", 13),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The environment variable of a destination's secret: `SIEM_<NAME>_<WHAT>`, the name upper-cased
/// with `-` as `_`.
pub fn secret_variable(name: &str, what: &str) -> String {
    format!("SIEM_{}_{what}", name.to_ascii_uppercase().replace('-', "_"))
}

/// The destinations' secrets as the environment gives them, by variable name.
pub(super) fn secrets(raw: &RawSiem, env: &dyn Environment) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for d in &raw.destinations {
        for what in ["TOKEN", "SIGNING_SECRET"] {
            let name = secret_variable(&d.name, what);
            if let Some(value) = env.var(&name) {
                found.insert(name, value);
            }
        }
    }
    found
}

/// This machine's name, for records that do not configure one.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "genesys-provisioner".to_string())
}

/// Checks `[siem]`; every problem goes into `problems`.
pub(super) fn build(raw: RawSiem, secrets: &BTreeMap<String, String>, problems: &mut Vec<String>) -> SiemConfig {
    let mut destinations: Vec<SiemDestination> = Vec::new();
    for d in raw.destinations {
        let name = d.name.trim().to_string();
        let valid = !name.is_empty()
            && name.len() <= 48
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            problems.push(format!(
                "siem.destinations name {name:?} must be 1 to 48 of a-z, 0-9, - and _ (it names the secret variables)"
            ));
            continue;
        }
        if destinations.iter().any(|other| other.name == name) {
            problems.push(format!("siem.destinations name {name:?} is used twice"));
            continue;
        }
        let at = format!("siem.destinations {name:?}");
        let secret = |what: &str| secrets.get(&secret_variable(&name, what)).cloned();
        let mut url = |url: Option<String>| -> String {
            let url = url.unwrap_or_default().trim().trim_end_matches('/').to_string();
            match reqwest::Url::parse(&url) {
                Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {}
                _ => problems.push(format!("{at}: url {url:?} is not an http(s) URL")),
            }
            url
        };
        let kind = match d.kind.as_str() {
            "splunk-hec" => {
                let url = url(d.url);
                let token = secret("TOKEN").map(SecretString::from);
                let Some(token) = token else {
                    problems.push(format!("{at}: {} is missing (the HEC token)", secret_variable(&name, "TOKEN")));
                    continue;
                };
                SiemKind::SplunkHec {
                    url,
                    token,
                    index: d.index,
                    source: d.source.unwrap_or_else(|| "genesys-provisioner".to_string()),
                    sourcetype: d.sourcetype.unwrap_or_else(|| "_json".to_string()),
                }
            }
            "http-json" => {
                let url = url(d.url);
                let signing = match secret("SIGNING_SECRET").map(|s| WebhookSecret::parse(&s)) {
                    None => None,
                    Some(Ok(s)) => Some(s),
                    Some(Err(e)) => {
                        // Never echo the value: it is a secret even when malformed.
                        problems.push(format!("{}: {e}", secret_variable(&name, "SIGNING_SECRET")));
                        None
                    }
                };
                SiemKind::HttpJson { url, token: secret("TOKEN").map(SecretString::from), signing }
            }
            "syslog" => {
                match syslog(&at, d.address, d.tls, d.server_name, d.ca_file, d.facility, d.app_name, d.confirm) {
                    Ok(settings) => SiemKind::Syslog(settings),
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                }
            }
            other => {
                problems.push(format!("{at}: kind {other:?} is not splunk-hec, http-json or syslog"));
                continue;
            }
        };
        let timeout = Duration::from_secs(d.timeout_secs.unwrap_or(10).max(1));
        destinations.push(SiemDestination { name, timeout, kind });
    }
    let batch_size = raw.batch_size.unwrap_or(500);
    if !(1..=10_000).contains(&batch_size) {
        problems.push("siem.batch_size must be from 1 to 10000".to_string());
    }
    SiemConfig {
        destinations,
        batch_size: batch_size.clamp(1, 10_000),
        max_batch_bytes: raw.max_batch_bytes.unwrap_or(1_000_000).max(1024),
        backoff_base: Duration::from_millis(raw.backoff_base_ms.unwrap_or(500).max(1)),
        backoff_max: Duration::from_secs(raw.backoff_max_secs.unwrap_or(60).max(1)),
        refused_retry: Duration::from_secs(raw.refused_retry_secs.unwrap_or(60).max(1)),
        poll_interval: Duration::from_millis(raw.poll_interval_ms.unwrap_or(1_000).max(10)),
        lease: Duration::from_secs(raw.lease_secs.unwrap_or(15).max(2)),
        host: raw.host.filter(|h| !h.trim().is_empty()).unwrap_or_else(hostname),
    }
}

/// A syslog destination's settings, or the problem with them.
#[allow(clippy::too_many_arguments)]
fn syslog(
    at: &str,
    address: Option<String>,
    tls: Option<bool>,
    server_name: Option<String>,
    ca_file: Option<PathBuf>,
    facility: Option<String>,
    app_name: Option<String>,
    confirm: Option<String>,
) -> Result<SyslogSettings, String> {
    let address = address.unwrap_or_default();
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']').to_string(), p.parse::<u16>().ok()?)))
        .filter(|(h, p)| !h.is_empty() && *p > 0)
        .ok_or_else(|| format!("{at}: address {address:?} is not host:port"))?;
    let facility_name = facility.unwrap_or_else(|| "local0".to_string());
    let facility = FACILITIES
        .iter()
        .find(|(n, _)| *n == facility_name)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("{at}: facility {facility_name:?} is not one of kern, user, daemon, auth, syslog, authpriv, audit, local0 to local7"))?;
    let app_name = app_name.unwrap_or_else(|| "genesys-provisioner".to_string());
    if app_name.is_empty() || app_name.len() > 48 || !app_name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("{at}: app_name must be 1 to 48 printable ASCII characters without spaces (RFC 5424)"));
    }
    let confirm = match confirm.as_deref() {
        None | Some("close") => SyslogConfirm::Close,
        Some("written") => SyslogConfirm::Written,
        Some(other) => return Err(format!("{at}: confirm {other:?} is not close or written")),
    };
    Ok(SyslogSettings {
        server_name: server_name.unwrap_or_else(|| host.clone()),
        address,
        host,
        port,
        tls: tls.unwrap_or(false),
        ca_file,
        facility,
        app_name,
        confirm,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::tests::good_env;

    const DEPT: &str = "[departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n";

    #[test]
    fn no_destination_means_no_siem_delivery() {
        let cfg = Config::from_toml(DEPT, &good_env()).unwrap();
        assert!(!cfg.siem.enabled());
        assert_eq!(cfg.siem.batch_size, 500);
    }

    #[test]
    fn each_kind_takes_its_secret_from_the_environment_and_problems_are_named() {
        let text = format!(
            "[[siem.destinations]]\nname = \"splunk-prod\"\nkind = \"splunk-hec\"\nurl = \"https://splunk.example.com:8088/\"\n\
             [[siem.destinations]]\nname = \"collector\"\nkind = \"http-json\"\nurl = \"https://c.example.com/ingest\"\n\
             [[siem.destinations]]\nname = \"rsyslog\"\nkind = \"syslog\"\naddress = \"siem.example.com:6514\"\ntls = true\nfacility = \"audit\"\n{DEPT}"
        );
        let mut env = good_env();
        env.insert("SIEM_SPLUNK_PROD_TOKEN".into(), "hec-token-value".into());
        env.insert("SIEM_COLLECTOR_SIGNING_SECRET".into(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let cfg = Config::from_toml(&text, &env).unwrap();
        let kinds: Vec<&str> = cfg.siem.destinations.iter().map(|d| d.kind.name()).collect();
        assert_eq!(kinds, ["splunk-hec", "http-json", "syslog"]);
        match &cfg.siem.destinations[0].kind {
            super::SiemKind::SplunkHec { url, sourcetype, .. } => {
                assert_eq!((url.as_str(), sourcetype.as_str()), ("https://splunk.example.com:8088", "_json"))
            }
            other => panic!("{other:?}"),
        }
        match &cfg.siem.destinations[2].kind {
            super::SiemKind::Syslog(s) => {
                assert_eq!((s.host.as_str(), s.port, s.facility, s.tls), ("siem.example.com", 6514, 13, true))
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{cfg:?}").contains("hec-token-value"), "the token never shows");

        let err = Config::from_toml(&text, &good_env()).unwrap_err();
        assert_eq!(
            err.problems,
            ["siem.destinations \"splunk-prod\": SIEM_SPLUNK_PROD_TOKEN is missing (the HEC token)"]
        );
        let bad = format!(
            "[[siem.destinations]]\nname = \"Bad Name\"\nkind = \"syslog\"\n\
             [[siem.destinations]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"nohost\"\n\
             [[siem.destinations]]\nname = \"h\"\nkind = \"http-json\"\nurl = \"ftp://x\"\n\
             [[siem.destinations]]\nname = \"k\"\nkind = \"kafka\"\n{DEPT}"
        );
        let err = Config::from_toml(&bad, &good_env()).unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        assert!(err.problems[0].contains("\"Bad Name\" must be"), "{err}");
        assert!(err.problems[1].contains("address \"nohost\" is not host:port"), "{err}");
        assert!(err.problems[2].contains("url \"ftp://x\" is not an http(s) URL"), "{err}");
        assert!(err.problems[3].contains("kind \"kafka\""), "{err}");
    }
}
