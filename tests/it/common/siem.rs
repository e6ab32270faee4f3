//! What the SIEM tests deliver to: a local Splunk HTTP Event Collector (Splunk cannot run here: this
//! receiver checks HEC's wire format and answers as HEC does, and can be told to be busy or to refuse),
//! a plain HTTP JSON collector, and a real rsyslogd started by the test with its own configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;

/// How the HEC receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HecMode {
    /// 200 `{"text":"Success","code":0}` for a well-formed batch.
    Accept,
    /// 503 `{"text":"Server is busy","code":9}`.
    Busy,
    /// 429, with `Retry-After: 1`.
    TooMany,
    /// 400 `{"text":"Incorrect index","code":7}`.
    BadIndex,
    /// 403 `{"text":"Invalid token","code":4}`.
    BadToken,
}

/// One request the receiver answered.
#[derive(Clone, Debug)]
pub struct HecRequest {
    pub at: Instant,
    pub status: u16,
    pub events: usize,
}

#[derive(Default)]
struct HecLog {
    /// The envelopes of accepted requests, in arrival order.
    envelopes: Vec<Value>,
    requests: Vec<HecRequest>,
    /// What was wrong with a request's wire format (should stay empty).
    violations: Vec<String>,
}

pub struct HecState {
    token: String,
    mode: Mutex<HecMode>,
    log: Mutex<HecLog>,
}

/// A local HEC on its own port, stopped when dropped.
pub struct HecReceiver {
    pub addr: SocketAddr,
    pub state: Arc<HecState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HecReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hec_answer(status: StatusCode, text: &str, code: u32) -> Response {
    (status, axum::Json(json!({"text": text, "code": code}))).into_response()
}

/// What HEC's `/services/collector/event` checks: the `Splunk` token, a body of concatenated event
/// envelopes, each with a numeric `time`, `host`, `source`, `sourcetype` and an object `event`.
async fn collect(State(state): State<Arc<HecState>>, headers: HeaderMap, body: Bytes) -> Response {
    let mode = *state.mode.lock().unwrap();
    let mut log = state.log.lock().unwrap();
    let (status, text, code, events) = answer(&state.token, mode, &headers, &body, &mut log);
    log.requests.push(HecRequest { at: Instant::now(), status: status.as_u16(), events });
    let mut response = hec_answer(status, text, code);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert("retry-after", "1".parse().unwrap());
    }
    response
}

/// HEC's answer to one request: (status, text, code, events accepted).
fn answer(
    token: &str,
    mode: HecMode,
    headers: &HeaderMap,
    body: &[u8],
    log: &mut HecLog,
) -> (StatusCode, &'static str, u32, usize) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Splunk {token}") {
        log.violations.push(format!("authorization header {auth:?}"));
        return (StatusCode::UNAUTHORIZED, "Invalid authorization", 3, 0);
    }
    match mode {
        HecMode::Busy => return (StatusCode::SERVICE_UNAVAILABLE, "Server is busy", 9, 0),
        HecMode::TooMany => return (StatusCode::TOO_MANY_REQUESTS, "Too many requests", 9, 0),
        HecMode::BadIndex => return (StatusCode::BAD_REQUEST, "Incorrect index", 7, 0),
        HecMode::BadToken => return (StatusCode::FORBIDDEN, "Invalid token", 4, 0),
        HecMode::Accept => {}
    }
    let mut envelopes = Vec::new();
    let mut problems = Vec::new();
    for item in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let envelope = match item {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("not concatenated JSON objects: {e}"));
                break;
            }
        };
        let ok = envelope["time"].is_number()
            && envelope["host"].as_str().is_some_and(|h| !h.is_empty())
            && envelope["source"].is_string()
            && envelope["sourcetype"].is_string()
            && envelope["event"]["eventId"].is_string()
            && envelope.as_object().is_some_and(|o| {
                o.keys().all(|k| ["time", "host", "source", "sourcetype", "index", "event"].contains(&k.as_str()))
            });
        if !ok {
            problems.push(format!("not a HEC event envelope: {envelope}"));
        }
        envelopes.push(envelope);
    }
    if !problems.is_empty() {
        log.violations.extend(problems);
        return (StatusCode::BAD_REQUEST, "Invalid data format", 6, 0);
    }
    if envelopes.is_empty() {
        return (StatusCode::BAD_REQUEST, "No data", 5, 0);
    }
    let n = envelopes.len();
    log.envelopes.extend(envelopes);
    (StatusCode::OK, "Success", 0, n)
}

impl HecReceiver {
    pub const TOKEN: &'static str = "hec-test-token-0123456789";

    /// A receiver on a port of its own.
    pub async fn start(mode: HecMode) -> HecReceiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), mode).await
    }

    /// A receiver on `addr` (a port reserved earlier: the SIEM was down until now).
    pub async fn start_on(addr: SocketAddr, mode: HecMode) -> HecReceiver {
        let state = Arc::new(HecState {
            token: Self::TOKEN.to_string(),
            mode: Mutex::new(mode),
            log: Mutex::new(HecLog::default()),
        });
        let app = axum::Router::new()
            .route("/services/collector/event", axum::routing::post(collect))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("the HEC receiver binds");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HecReceiver { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: HecMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// The records received (each envelope's `event`), in arrival order.
    pub fn records(&self) -> Vec<Value> {
        self.state.log.lock().unwrap().envelopes.iter().map(|e| e["event"].clone()).collect()
    }

    pub fn envelopes(&self) -> Vec<Value> {
        self.state.log.lock().unwrap().envelopes.clone()
    }

    pub fn requests(&self) -> Vec<HecRequest> {
        self.state.log.lock().unwrap().requests.clone()
    }

    /// How many requests got each status.
    pub fn answers(&self) -> BTreeMap<u16, usize> {
        let mut counts = BTreeMap::new();
        for r in self.requests() {
            *counts.entry(r.status).or_insert(0) += 1;
        }
        counts
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.log.lock().unwrap().violations.clone()
    }
}

/// An HTTP JSON collector: takes a JSON array of records, checks a bearer token or a Standard
/// Webhooks signature.
pub struct JsonCollector {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Value>>>,
    violations: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JsonCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JsonCollector {
    /// Checks `Authorization: Bearer <bearer>` and, with `secret`, the signature.
    pub async fn start(bearer: &'static str, secret: Option<&'static str>) -> JsonCollector {
        let records: Arc<Mutex<Vec<Value>>> = Default::default();
        let violations: Arc<Mutex<Vec<String>>> = Default::default();
        let (r, v) = (records.clone(), violations.clone());
        let ingest = move |headers: HeaderMap, body: Bytes| {
            let (records, violations) = (r.clone(), v.clone());
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                if header("authorization").as_deref() != Some(&format!("Bearer {bearer}")) {
                    violations.lock().unwrap().push("no bearer token".to_string());
                    return StatusCode::UNAUTHORIZED;
                }
                if let Some(secret) = secret {
                    let secrets = [genesys_provisioner::signing::WebhookSecret::parse(secret).unwrap()];
                    let (id, ts, sig) =
                        (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
                    let request = genesys_provisioner::signing::SignedRequest {
                        id: id.as_deref(),
                        timestamp: ts.as_deref(),
                        signature: sig.as_deref(),
                    };
                    if let Err(e) =
                        genesys_provisioner::signing::verify(&secrets, &request, &body, now(), Duration::from_secs(300))
                    {
                        violations.lock().unwrap().push(format!("signature: {e}"));
                        return StatusCode::UNAUTHORIZED;
                    }
                }
                match serde_json::from_slice::<Vec<Value>>(&body) {
                    Ok(batch) => {
                        records.lock().unwrap().extend(batch);
                        StatusCode::NO_CONTENT
                    }
                    Err(e) => {
                        violations.lock().unwrap().push(format!("not a JSON array: {e}"));
                        StatusCode::BAD_REQUEST
                    }
                }
            }
        };
        let app = axum::Router::new().route("/ingest", axum::routing::post(ingest));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JsonCollector { addr, records, violations, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    pub fn records(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

/// Where the test's rsyslogd is, if it is installed.
pub fn rsyslogd() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/bin/rsyslogd"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Says, where the test run's reader sees it, that a test was skipped and why; in CI
/// (`CI_REQUIRE_RSYSLOG` set by `.ci/run`, which installs what they need) the test fails instead.
pub fn say_skipped_because(what: &str, why: &str) {
    if std::env::var_os("CI_REQUIRE_RSYSLOG").is_some() {
        panic!("{what} cannot run ({why}), and CI_REQUIRE_RSYSLOG says it must");
    }
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what} in {test} ({why})");
}

/// A TLS server identity for rsyslog: a CA, and a certificate for `localhost` / 127.0.0.1 it signed.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// Made with the `openssl` command in `dir`; None when it is not installed.
    pub fn make(dir: &std::path::Path) -> Option<TestCa> {
        let openssl = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .ok()?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let made = openssl(
            &[
                &["req", "-x509"][..],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=siem-test-ca",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        ) && openssl(
            &[&["req"][..], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]]
                .concat(),
        ) && openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        made.then(|| TestCa { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") })
    }
}

/// A real rsyslogd in the foreground, with its own configuration, work folder and pid file:
/// `imtcp` on 127.0.0.1:`port` (octet-counted framing, which imtcp takes by default), and every
/// message written to a file of its own as `TIMESTAMP|HOSTNAME|APP-NAME|PROCID|MSGID|PRI|MSG`,
/// the fields as rsyslog's RFC 5424 parser read them. Killed when dropped.
pub struct Rsyslog {
    child: KillOnDrop,
    pub out: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Rsyslog {
    /// None (and `SKIPPED` said) when rsyslogd is not installed.
    pub async fn start_on(port: u16, tls: Option<&TestCa>) -> Option<Rsyslog> {
        let Some(binary) = rsyslogd() else {
            say_skipped_because(
                "the rsyslog test",
                "rsyslogd is not installed: .ci/run installs it from .ci/debian-packages.txt",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.path().join("messages.log");
        let (global_tls, module_tls) = match tls {
            None => (String::new(), String::new()),
            Some(ca) => (
                format!(
                    " DefaultNetstreamDriver=\"ossl\" DefaultNetstreamDriverCAFile=\"{}\" \
                     DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\"",
                    ca.ca.display(),
                    ca.cert.display(),
                    ca.key.display()
                ),
                " StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\"".to_string(),
            ),
        };
        let config = format!(
            "global(workDirectory=\"{work}\"{global_tls})\n\
             module(load=\"imtcp\"{module_tls})\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n\
             template(name=\"fields\" type=\"string\" string=\"%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%pri%|%msg%\\n\")\n\
             action(type=\"omfile\" file=\"{out}\" template=\"fields\")\n",
            work = work.display(),
            out = out.display(),
        );
        let conf = dir.path().join("rsyslog.conf");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(dir.path().join("rsyslogd.log")).unwrap();
        let child = std::process::Command::new(binary)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rsyslogd starts");
        let child = KillOnDrop(child);
        let listening = eventually(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        let said = std::fs::read_to_string(dir.path().join("rsyslogd.log")).unwrap_or_default();
        assert!(listening.is_some(), "rsyslogd did not listen on {port}: {said}");
        Some(Rsyslog { child, out, port, _dir: dir })
    }

    /// The lines rsyslog wrote so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// A line rsyslog wrote, split into its fields.
#[derive(Debug)]
pub struct SyslogLine {
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub pri: u32,
    pub record: Value,
}

impl SyslogLine {
    pub fn parse(line: &str) -> SyslogLine {
        let mut fields = line.splitn(7, '|');
        let mut next = || fields.next().unwrap_or_else(|| panic!("a short line: {line}")).to_string();
        let (timestamp, hostname, app_name, procid, msgid, pri) = (next(), next(), next(), next(), next(), next());
        let msg = next();
        let record =
            serde_json::from_str(&msg).unwrap_or_else(|e| panic!("MSG is not the record's JSON ({e}): {line}"));
        SyslogLine { timestamp, hostname, app_name, procid, msgid, pri: pri.parse().unwrap(), record }
    }
}

/// The `[siem]` settings of a test: fast backoff, quick polls, small batches.
pub const FAST_SIEM: &str = "[siem]\nbatch_size = 7\nbackoff_base_ms = 20\nbackoff_max_secs = 1\nrefused_retry_secs = 1\n\
                             poll_interval_ms = 50\nhost = \"test-host\"\n";
