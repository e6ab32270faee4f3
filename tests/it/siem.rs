//! SIEM delivery: every audit line becomes one record in the outbox, committed with the decision it
//! tells of, and reaches each destination exactly once per eventId, in order per job, after an
//! outage, through busy answers, and after a misconfiguration is fixed. Splunk is a local HEC
//! receiver (`common/siem.rs`); syslog is a real rsyslogd the test starts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use genesys_provisioner::queue::worker::{JobFailure, JobSuccess};

use crate::common::process::{self, free_port};
use crate::common::siem::*;
use crate::common::*;

const WITHIN: Duration = Duration::from_secs(30);

/// `[siem]` with one Splunk HEC destination named `splunk` at `url`.
fn hec_toml(url: &str) -> String {
    format!("{FAST_SIEM}[[siem.destinations]]\nname = \"splunk\"\nkind = \"splunk-hec\"\nurl = \"{url}\"\n")
}

/// What identifies an audit line and the record that carries it (their times differ).
fn key(line: &Value) -> String {
    let text = |k: &str| line[k].as_str().map(str::to_string).unwrap_or_else(|| line[k].to_string());
    format!("{}|{}|{}|{}|{}", text("event"), text("auditId"), text("status"), text("webhookId"), line["attempt"])
}

/// The audit lines a SIEM should get: all but the per-minute summaries of unauthenticated refusals.
fn recorded_lines(app: &TestApp) -> Vec<Value> {
    app.audit_lines().into_iter().filter(|l| l["event"] != "intake.rejected_summary").collect()
}

/// Waits until the destination has as many records as the audit has lines and nothing waits in
/// the outbox; returns (audit lines, records).
async fn delivered_everything(app: &TestApp, records: impl Fn() -> Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    let found = eventually(WITHIN, || async {
        let lines = recorded_lines(app);
        let got = records();
        let waiting = app.store.outbox_records().await.unwrap();
        (got.len() >= lines.len() && waiting == 0).then_some((lines, got))
    })
    .await;
    found.unwrap_or_else(|| {
        panic!("not everything was delivered: {} audit lines, {} records", recorded_lines(app).len(), records().len())
    })
}

/// Every audit line arrived as exactly one record (one eventId each), carrying that line, and the
/// records of each job arrived in the order of its lines.
fn assert_one_record_per_line(lines: &[Value], records: &[Value]) {
    assert_the_records_are_the_lines(lines, records);
    assert_in_order_per_job(lines, records);
}

/// Every audit line arrived as exactly one record (one eventId each), carrying that line.
fn assert_the_records_are_the_lines(lines: &[Value], records: &[Value]) {
    let ids: BTreeSet<&str> = records.iter().map(|r| r["eventId"].as_str().expect("an eventId")).collect();
    assert_eq!(ids.len(), records.len(), "an eventId arrived twice");
    let mut want: Vec<String> = lines.iter().map(key).collect();
    let mut got: Vec<String> = records.iter().map(|r| key(&r["body"])).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the records are not the audit lines");
    for record in records {
        assert_eq!(record["kind"], record["body"]["event"], "{record}");
        assert_eq!(record["time"], record["body"]["timestamp"], "{record}");
        assert_eq!(record["source"], "genesys-provisioner");
        if let Some(audit_id) = record["body"]["auditId"].as_str() {
            assert_eq!(record["subject"]["auditId"], audit_id, "{record}");
        }
    }
}

/// The records of each job arrived in the order of its audit lines (one process's trail).
fn assert_in_order_per_job(lines: &[Value], records: &[Value]) {
    // Per job, in the order of the audit trail. Duplicates and conflicts are answered while the
    // job runs, so they are left out of the comparison of orders.
    let concurrent = |l: &&Value| l["event"] != "intake.duplicate" && l["event"] != "intake.conflict";
    let per_job = |items: Vec<&Value>| {
        let mut jobs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in items.into_iter().filter(concurrent) {
            if let Some(id) = l["auditId"].as_str() {
                jobs.entry(id.to_string()).or_default().push(key(l));
            }
        }
        jobs
    };
    let lines_per_job = per_job(lines.iter().collect());
    let records_per_job = per_job(records.iter().map(|r| &r["body"]).collect());
    assert_eq!(records_per_job, lines_per_job, "a job's records arrived out of order");
}

/// GET /admin/siem with the admin token, as docs/siem.md's `curl` does.
async fn siem_view(app: &TestApp) -> Value {
    let (status, view) = app.admin_get("/admin/siem").await;
    assert_eq!(status, 200, "{view}");
    view
}

/// `view` is what the OpenAPI document says `GET /admin/siem` answers.
async fn assert_documented(app: &TestApp, view: &Value) {
    let doc = crate::openapi::document(app).await;
    let schema = &doc["paths"]["/admin/siem"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    if let Err(e) = crate::openapi::conforms(&doc, schema, view, "$") {
        panic!("GET /admin/siem: {e}\n{view}");
    }
}

fn metric(app: &TestApp, line_start: &str) -> f64 {
    let text = app.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

/// Splunk is down while new hires are provisioned (with a duplicate, a conflict and a refusal):
/// the records wait in the outbox, and once HEC answers, every one arrives once, in order.
#[tokio::test]
async fn every_decision_reaches_splunk_once_after_an_outage() {
    on_each_backend(|backend| async move {
        let emulator = start_emulator().await;
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let Some(app) = Spawn::new(backend)
            .provisioning(&emulator)
            .toml(&hec_toml(&url))
            .env("SIEM_SPLUNK_TOKEN", HecReceiver::TOKEN)
            .start()
            .await
        else {
            return;
        };
        let mut hires = Vec::new();
        for _ in 0..12 {
            hires.push(app.hire(&new_hire("ENG")).await);
        }
        let repeated = new_hire("SALES");
        let (status, first) = app.post_signed(HR_PATH, &repeated, "siem-repeated").await;
        assert_eq!(status, 202, "{first}");
        let (status, again) = app.post_signed(HR_PATH, &repeated, "siem-repeated").await;
        assert_eq!((status, &again["auditId"]), (202, &first["auditId"]), "a duplicate");
        let (status, _) = app.post_signed(HR_PATH, &new_hire("SALES"), "siem-repeated").await;
        assert_eq!(status, 409, "a conflict");
        let (status, _) = app.post_signed(HR_PATH, &new_hire("NOPE"), "siem-unmapped").await;
        assert_eq!(status, 422, "a refusal");
        for id in &hires {
            app.wait_for_state(*id, "succeeded", WITHIN).await;
        }

        // Down: deliveries fail, the records wait.
        let down = eventually(WITHIN, || async {
            let view = siem_view(&app).await;
            let d = &view["destinations"][0];
            (d["failures"].as_u64() > Some(1) && d["pending"].as_u64() > Some(0)).then_some(view)
        })
        .await
        .expect("failed deliveries are recorded while HEC is down");
        let d = &down["destinations"][0];
        assert_eq!((&d["name"], &d["kind"]), (&Value::from("splunk"), &Value::from("splunk-hec")));
        assert_eq!(d["url"], format!("{url}/services/collector/event"));
        assert!(d["lastError"].as_str().unwrap().contains("HEC unreachable"), "{down}");
        assert_eq!(d["delivered"], 0);
        assert_documented(&app, &down).await;
        assert!(
            metric(&app, "provisioner_siem_delivery_failures_total{destination=\"splunk\",reason=\"unavailable\"}")
                >= 1.0
        );

        // Up: everything arrives.
        let hec = HecReceiver::start_on(format!("127.0.0.1:{port}").parse().unwrap(), HecMode::Accept).await;
        let (lines, records) = delivered_everything(&app, || hec.records()).await;
        assert!(hec.violations().is_empty(), "{:?}", hec.violations());
        assert_one_record_per_line(&lines, &records);
        let kinds: BTreeSet<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
        for kind in [
            "intake.accepted",
            "intake.duplicate",
            "intake.conflict",
            "intake.rejected",
            "scim.user.created",
            "job.attempt",
        ] {
            assert!(kinds.contains(kind), "no {kind} record: {kinds:?}");
        }
        // Several events per request, in HEC's envelope.
        assert!(hec.requests().iter().any(|r| r.status == 200 && r.events > 1), "{:?}", hec.requests());
        for envelope in hec.envelopes() {
            assert_eq!(
                (&envelope["host"], &envelope["sourcetype"]),
                (&Value::from("test-host"), &Value::from("_json"))
            );
            let time = chrono::DateTime::parse_from_rfc3339(envelope["event"]["time"].as_str().unwrap()).unwrap();
            assert_eq!((envelope["time"].as_f64().unwrap() * 1000.0).round() as i64, time.timestamp_millis());
        }
        // The records of one event share its correlation id; a duplicate's is its job's.
        let correlation = |kind: &str| {
            records
                .iter()
                .find(|r| r["kind"] == kind && r["body"]["auditId"] == first["auditId"])
                .map(|r| r["correlationId"].clone())
        };
        let accepted = correlation("intake.accepted").expect("the repeated event was accepted");
        assert!(accepted.as_str().unwrap().starts_with("siem-repeated@"), "{accepted}");
        assert_eq!(correlation("intake.duplicate"), Some(accepted.clone()));
        assert_eq!(correlation("job.attempt"), Some(accepted));

        let view = eventually(WITHIN, || async {
            let view = siem_view(&app).await;
            (view["destinations"][0]["pending"] == 0 && view["records"] == 0).then_some(view)
        })
        .await
        .expect("the outbox empties");
        assert_eq!(view["destinations"][0]["delivered"], records.len());
        assert!(view["destinations"][0]["backingOffUntil"].is_null(), "{view}");
        assert_documented(&app, &view).await;
        let delivered = "provisioner_siem_delivered_records_total{destination=\"splunk\"}";
        assert_eq!(metric(&app, delivered), records.len() as f64);
        app.shutdown().await;
    })
    .await;
}

/// Dead letters, a replay and a delete are recorded with the state change they make.
#[tokio::test]
async fn dead_letters_replays_and_deletes_are_recorded_with_the_change() {
    let hec = HecReceiver::start(HecMode::Accept).await;
    let handler = ScriptedHandler::new(|_, _| Err(JobFailure::Permanent { error: "refused by the test".into() }));
    let app = Spawn::new(Backend::Sqlite)
        .handler(handler)
        .no_workers()
        .toml(&hec_toml(&hec.url()))
        .env("SIEM_SPLUNK_TOKEN", HecReceiver::TOKEN)
        .start()
        .await
        .unwrap();
    let id = app.hire(&new_hire("ENG")).await;
    app.worker.drain().await.unwrap();
    let (status, _) = app.admin(Method::POST, &format!("/admin/dead-letters/{id}/replay")).await;
    assert_eq!(status, 202);
    app.worker.drain().await.unwrap();
    let (status, _) = app.admin(Method::DELETE, &format!("/admin/dead-letters/{id}")).await;
    assert_eq!(status, 204);
    let (lines, records) = delivered_everything(&app, || hec.records()).await;
    assert_one_record_per_line(&lines, &records);
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "intake.accepted",
            "job.attempt",
            "job.dead_lettered",
            "job.replayed",
            "job.attempt",
            "job.dead_lettered",
            "job.deleted"
        ]
    );
    let severities: Vec<&str> = records.iter().filter_map(|r| r["severity"].as_str()).collect();
    assert_eq!(severities, ["info", "warning", "warning", "info", "warning", "warning", "notice"]);
    app.shutdown().await;
}

/// A busy HEC (503, then 429 with Retry-After) is retried with backoff until it takes the records.
#[tokio::test]
async fn a_busy_splunk_is_retried_with_backoff_until_it_takes_the_records() {
    let hec = HecReceiver::start(HecMode::Busy).await;
    let handler = ScriptedHandler::new(|_, _| Ok(JobSuccess { result: serde_json::json!({"ok": true}) }));
    let app = Spawn::new(Backend::Sqlite)
        .handler(handler)
        .toml(&hec_toml(&hec.url()))
        .env("SIEM_SPLUNK_TOKEN", HecReceiver::TOKEN)
        .start()
        .await
        .unwrap();
    for _ in 0..5 {
        app.hire(&new_hire("ENG")).await;
    }
    let busy =
        eventually(WITHIN, || async { (hec.answers().get(&503).copied().unwrap_or(0) >= 3).then_some(()) }).await;
    assert!(busy.is_some(), "HEC's 503s are retried: {:?}", hec.answers());
    let view = siem_view(&app).await;
    assert!(view["destinations"][0]["lastError"].as_str().unwrap().contains("Server is busy (HEC code 9)"), "{view}");
    hec.set_mode(HecMode::TooMany);
    let too_many =
        eventually(WITHIN, || async { (hec.answers().get(&429).copied().unwrap_or(0) >= 2).then_some(()) }).await;
    assert!(too_many.is_some(), "HEC's 429s are retried: {:?}", hec.answers());
    // Retry-After: 1 holds the next try back a second (the backoff alone is at most one).
    let requests = hec.requests();
    let after_429 = requests.windows(2).filter(|w| w[0].status == 429).map(|w| w[1].at - w[0].at).min().unwrap();
    assert!(after_429 >= Duration::from_millis(950), "a 429's Retry-After was not honoured: {after_429:?}");
    hec.set_mode(HecMode::Accept);
    let (lines, records) = delivered_everything(&app, || hec.records()).await;
    assert_one_record_per_line(&lines, &records);
    assert!(metric(&app, "provisioner_siem_delivery_failures_total{destination=\"splunk\",reason=\"busy\"}") >= 5.0);
    assert_eq!(metric(&app, "provisioner_siem_destination_refusing{destination=\"splunk\"}"), 0.0);
    app.shutdown().await;
}

/// HEC refusing the records (403 invalid token, 400 incorrect index) keeps them in the outbox,
/// says so (WARN, metric, /admin/siem) and sends them again slowly; fixed, they all arrive.
#[tokio::test]
async fn a_misconfigured_splunk_keeps_the_records_until_it_is_fixed() {
    let hec = HecReceiver::start(HecMode::BadToken).await;
    let app = Spawn::new(Backend::Sqlite)
        .toml(&hec_toml(&hec.url()))
        .env("SIEM_SPLUNK_TOKEN", HecReceiver::TOKEN)
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        app.hire(&new_hire("ENG")).await;
    }
    for (mode, status, said) in [
        (HecMode::BadToken, 403, "Invalid token (HEC code 4)"),
        (HecMode::BadIndex, 400, "Incorrect index (HEC code 7)"),
    ] {
        hec.set_mode(mode);
        let seen = hec.answers().get(&status).copied().unwrap_or(0);
        let refused = eventually(WITHIN, || async {
            let view = siem_view(&app).await;
            let d = &view["destinations"][0];
            let again = hec.answers().get(&status).copied().unwrap_or(0) >= seen + 2;
            (again && d["refusing"] == true && d["lastError"].as_str().is_some_and(|e| e.contains(said)))
                .then_some(view)
        })
        .await
        .unwrap_or_else(|| panic!("{status} is kept and retried: {:?}", hec.answers()));
        assert!(refused["destinations"][0]["pending"].as_u64() >= Some(3), "the records are kept: {refused}");
        assert_eq!(metric(&app, "provisioner_siem_destination_refusing{destination=\"splunk\"}"), 1.0);
    }
    // Refused batches come back slowly (refused_retry_secs = 1), not in a busy loop.
    let requests = hec.requests();
    let gap = requests.windows(2).filter(|w| w[0].status == 403).map(|w| w[1].at - w[0].at).min().unwrap();
    assert!(gap >= Duration::from_millis(950), "refused records are retried every second, not at once: {gap:?}");
    assert!(hec.records().is_empty());
    hec.set_mode(HecMode::Accept);
    let (lines, records) = delivered_everything(&app, || hec.records()).await;
    assert_one_record_per_line(&lines, &records);
    assert!(metric(&app, "provisioner_siem_delivery_failures_total{destination=\"splunk\",reason=\"refused\"}") >= 4.0);
    let recovered = eventually(WITHIN, || async {
        let view = siem_view(&app).await;
        (view["destinations"][0]["refusing"] == false).then_some(())
    })
    .await;
    assert!(recovered.is_some());
    assert_eq!(metric(&app, "provisioner_siem_destination_refusing{destination=\"splunk\"}"), 0.0);
    app.shutdown().await;
}

/// Two destinations each get every record: Splunk, and a collector that checks a bearer token and
/// the service's Standard Webhooks signature.
#[tokio::test]
async fn every_destination_gets_every_record() {
    const BEARER: &str = "collector-bearer-token";
    let hec = HecReceiver::start(HecMode::Accept).await;
    let collector = JsonCollector::start(BEARER, Some(NEW_SECRET)).await;
    let toml = format!(
        "{}[[siem.destinations]]\nname = \"collector\"\nkind = \"http-json\"\nurl = \"{}\"\n",
        hec_toml(&hec.url()),
        collector.url()
    );
    let app = Spawn::new(Backend::Sqlite)
        .toml(&toml)
        .env("SIEM_SPLUNK_TOKEN", HecReceiver::TOKEN)
        .env("SIEM_COLLECTOR_TOKEN", BEARER)
        .env("SIEM_COLLECTOR_SIGNING_SECRET", NEW_SECRET)
        .start()
        .await
        .unwrap();
    for _ in 0..9 {
        app.hire(&new_hire("ENG")).await;
    }
    let (lines, to_splunk) = delivered_everything(&app, || hec.records()).await;
    assert_one_record_per_line(&lines, &to_splunk);
    let to_collector = collector.records();
    assert!(collector.violations().is_empty(), "{:?}", collector.violations());
    assert_one_record_per_line(&lines, &to_collector);
    let ids = |records: &[Value]| records.iter().map(|r| r["eventId"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&to_splunk), ids(&to_collector), "the same records, in the same order");
    let view = siem_view(&app).await;
    let names: Vec<&str> = view["destinations"].as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["splunk", "collector"]);
    app.shutdown().await;
}

/// Without `[[siem.destinations]]` nothing is written to the outbox.
#[tokio::test]
async fn without_a_destination_nothing_is_recorded() {
    let app = Spawn::new(Backend::Sqlite).start().await.unwrap();
    let id = app.hire(&new_hire("ENG")).await;
    app.wait_for_state(id, "succeeded", WITHIN).await;
    let (status, _) = app.post_signed(HR_PATH, &new_hire("NOPE"), "no-siem-refused").await;
    assert_eq!(status, 422);
    assert_eq!(app.store.outbox_records().await.unwrap(), 0);
    let view = siem_view(&app).await;
    assert_eq!(view, serde_json::json!({"enabled": false, "records": 0, "destinations": []}));
    app.shutdown().await;
}

/// `[siem]` with one syslog destination named `rsyslog` on 127.0.0.1:`port`.
fn syslog_toml(port: u16, tls: Option<&TestCa>) -> String {
    let tls = match tls {
        None => String::new(),
        Some(ca) => format!("tls = true\nserver_name = \"localhost\"\nca_file = {:?}\n", ca.ca.display().to_string()),
    };
    format!(
        "{FAST_SIEM}[[siem.destinations]]\nname = \"rsyslog\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{port}\"\nfacility = \"auth\"\n{tls}"
    )
}

/// The records rsyslog wrote, parsed (each line's MSG is a record).
fn syslog_records(rsyslog: &Rsyslog) -> Vec<Value> {
    rsyslog.lines().iter().map(|l| SyslogLine::parse(l).record).collect()
}

/// A real rsyslog is down while jobs run; once it listens, every record arrives once, as an RFC 5424
/// message rsyslog parsed (MSGID the record's kind, PRI from the facility and severity).
#[tokio::test]
async fn every_decision_reaches_rsyslog_once_after_an_outage() {
    if rsyslogd().is_none() {
        say_skipped_because(
            "the rsyslog test",
            "rsyslogd is not installed: .ci/run installs it from .ci/debian-packages.txt",
        );
        return;
    }
    let port = free_port();
    let app = Spawn::new(Backend::Sqlite).toml(&syslog_toml(port, None)).start().await.unwrap();
    let mut hires = Vec::new();
    for _ in 0..10 {
        hires.push(app.hire(&new_hire("ENG")).await);
    }
    let (status, _) = app.post_signed(HR_PATH, &new_hire("NOPE"), "syslog-unmapped").await;
    assert_eq!(status, 422);
    for id in &hires {
        app.wait_for_state(*id, "succeeded", WITHIN).await;
    }
    let down = eventually(WITHIN, || async {
        let view = siem_view(&app).await;
        (view["destinations"][0]["failures"].as_u64() > Some(1)).then_some(view)
    })
    .await
    .expect("deliveries fail while rsyslog is down");
    assert_eq!(down["destinations"][0]["url"], format!("tcp://127.0.0.1:{port}"));

    let rsyslog = Rsyslog::start_on(port, None).await.unwrap();
    let (lines, records) = delivered_everything(&app, || syslog_records(&rsyslog)).await;
    assert_one_record_per_line(&lines, &records);
    for line in rsyslog.lines() {
        let line = SyslogLine::parse(&line);
        assert_eq!(line.msgid, line.record["kind"].as_str().unwrap(), "MSGID is the kind");
        assert_eq!((line.hostname.as_str(), line.app_name.as_str()), ("test-host", "genesys-provisioner"));
        assert_eq!(line.procid, std::process::id().to_string());
        assert_eq!(line.timestamp, line.record["time"].as_str().unwrap(), "TIMESTAMP is the record's time");
        let severity = match line.record["severity"].as_str().unwrap() {
            "warning" => 4,
            "notice" => 5,
            _ => 6,
        };
        assert_eq!(line.pri, 4 * 8 + severity, "facility auth, the record's severity: {line:?}");
    }
    app.shutdown().await;
}

/// The same over TLS: rsyslog's openssl driver with a certificate of a CA the service is told to trust.
#[tokio::test]
async fn records_reach_rsyslog_over_tls() {
    if rsyslogd().is_none() {
        say_skipped_because(
            "the rsyslog TLS test",
            "rsyslogd is not installed: .ci/run installs it from .ci/debian-packages.txt",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(ca) = TestCa::make(dir.path()) else {
        say_skipped_because("the rsyslog TLS test", "the openssl command is not installed");
        return;
    };
    let port = free_port();
    let rsyslog = Rsyslog::start_on(port, Some(&ca)).await.unwrap();
    let app = Spawn::new(Backend::Sqlite).toml(&syslog_toml(port, Some(&ca))).start().await.unwrap();
    for _ in 0..4 {
        app.hire(&new_hire("ENG")).await;
    }
    let (lines, records) = delivered_everything(&app, || syslog_records(&rsyslog)).await;
    assert_one_record_per_line(&lines, &records);
    assert_eq!(siem_view(&app).await["destinations"][0]["url"], format!("tls://127.0.0.1:{port}"));
    app.shutdown().await;
}

/// The service binary is killed (SIGKILL) with records in the outbox that Splunk, down, never got;
/// started again, it delivers every one of them, once.
#[tokio::test]
async fn records_in_the_outbox_at_a_sigkill_are_delivered_after_the_restart() {
    use crate::common::process::Service;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let db_url = format!("sqlite://{}?mode=rwc", db.display());
    let emulator = start_emulator().await;
    let hec_port = free_port();
    let mut config: toml::Table = sample_config_text().parse().unwrap();
    let siem: toml::Table = hec_toml(&format!("http://127.0.0.1:{hec_port}")).parse().unwrap();
    config.insert("siem".to_string(), siem["siem"].clone());
    let config_file = dir.path().join("siem.toml");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let config_path = config_file.to_str().unwrap();
    let env = [("SIEM_SPLUNK_TOKEN", HecReceiver::TOKEN)];
    let port = free_port();
    let mut service =
        Service::start_with_env(dir.path(), &db_url, 0, &emulator.base_url(), port, config_path, &env).await;
    let client = reqwest::Client::new();
    const HIRES: usize = 8;
    for i in 0..HIRES {
        let (status, answer) =
            process::post(&client, &service.base, &format!("kill-{i}"), &new_hire("ENG")).await.unwrap();
        assert_eq!(status, 202, "{answer}");
    }
    // Each hire: intake.accepted, scim.user.created, job.attempt; none delivered (HEC is down).
    let siem = || async {
        let answer = client.get(format!("{}/admin/siem", service.base)).bearer_auth(ADMIN_TOKEN).send().await.ok()?;
        answer.json::<Value>().await.ok()
    };
    let waiting = eventually(WITHIN, || async {
        let view = siem().await?;
        (view["records"] == 3 * HIRES && view["destinations"][0]["failures"].as_u64() > Some(0)).then_some(view)
    })
    .await;
    assert!(waiting.is_some(), "the records wait in the outbox: {:?}", siem().await);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display())).await.unwrap();
    let before: Vec<(String,)> = sqlx::query_as("SELECT event_id FROM outbox").fetch_all(&pool).await.unwrap();
    pool.close().await;
    assert_eq!(before.len(), 3 * HIRES);
    service.child.kill().unwrap();
    service.child.wait().unwrap();

    let hec = HecReceiver::start_on(format!("127.0.0.1:{hec_port}").parse().unwrap(), HecMode::Accept).await;
    let service = Service::start_with_env(dir.path(), &db_url, 1, &emulator.base_url(), port, config_path, &env).await;
    let arrived = eventually(WITHIN, || async {
        let view = siem().await?;
        (hec.records().len() >= before.len() && view["records"] == 0).then_some(())
    })
    .await;
    assert!(arrived.is_some(), "{} of {} records arrived after the restart", hec.records().len(), before.len());
    let mut received: Vec<String> = hec.records().iter().map(|r| r["eventId"].as_str().unwrap().to_string()).collect();
    received.sort();
    let mut expected: Vec<String> = before.into_iter().map(|(id,)| id).collect();
    expected.sort();
    assert_eq!(received, expected, "every record of the outbox, each once");
    drop(service);
}

/// A worker that died during an attempt: the lost attempt is recorded by the claim that takes the job
/// over, and a job whose final attempt is lost is recorded as a dead letter by the reap.
#[tokio::test]
async fn lost_attempts_and_their_dead_letters_are_recorded_by_the_claim_that_finds_them() {
    use genesys_provisioner::queue::no_records;
    let hec = HecReceiver::start(HecMode::Accept).await;
    let app = Spawn::new(Backend::Sqlite)
        .no_workers()
        .manual_clock()
        .toml(&hec_toml(&hec.url()))
        .env("SIEM_SPLUNK_TOKEN", HecReceiver::TOKEN)
        .start()
        .await
        .unwrap();
    let lease = Duration::from_millis(100);
    let past_the_lease = Duration::from_millis(150);
    // One job's worker "crashes" three times, the last time on its last allowed lost attempt (the
    // test, not a worker, takes the first two over: nothing is told or recorded for those).
    let crashing = app.hire(&new_hire("ENG")).await;
    assert_eq!(app.store.claim(1, lease).await.unwrap().len(), 1);
    for _ in 0..2 {
        app.manual().advance(past_the_lease);
        let again = app.store.claim_expired(1, lease, &no_records).await.unwrap();
        assert_eq!(again.iter().map(|j| j.audit_id).collect::<Vec<_>>(), [crashing]);
    }
    // Another job's worker "crashes" once.
    let taken_over = app.hire(&new_hire("ENG")).await;
    assert_eq!(app.store.claim(1, lease).await.unwrap().len(), 1);
    app.manual().advance(past_the_lease);
    // The worker reaps the first (a dead letter) and takes the second over (a lost attempt), then runs it.
    app.worker.drain().await.unwrap();
    app.wait_for_state(taken_over, "succeeded", WITHIN).await;
    let (lines, records) = delivered_everything(&app, || hec.records()).await;
    assert_one_record_per_line(&lines, &records);
    let of = |id: uuid::Uuid| {
        records
            .iter()
            .filter(|r| r["subject"]["auditId"] == id.to_string())
            .map(|r| format!("{} {}", r["kind"].as_str().unwrap(), r["body"]["status"].as_str().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(taken_over), ["intake.accepted queued", "job.attempt lost", "job.attempt succeeded"]);
    assert_eq!(of(crashing), ["intake.accepted queued", "job.dead_lettered dead"]);
    app.shutdown().await;
}

/// Two replicas on one PostgreSQL store share the outbox: one at a time delivers to a destination
/// (no record twice), and when it stops, the other takes the deliveries over.
#[tokio::test]
async fn replicas_on_one_postgres_store_deliver_each_record_once() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let url = db.url.clone();
    let hec = HecReceiver::start(HecMode::Accept).await;
    let replica = |db: TestDb| {
        Spawn::new(Backend::Postgres)
            .on_db(db)
            .toml(&hec_toml(&hec.url()))
            .env("SIEM_SPLUNK_TOKEN", HecReceiver::TOKEN)
            .start()
    };
    let a = replica(db).await.unwrap();
    let b = replica(TestDb { url, dir: tempfile::tempdir().unwrap() }).await.unwrap();
    let mut hires = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &a } else { &b };
        hires.push(app.hire(&new_hire("ENG")).await);
    }
    for id in &hires {
        a.wait_for_state(*id, "succeeded", WITHIN).await;
    }
    let lines = || {
        let mut all = recorded_lines(&a);
        all.extend(recorded_lines(&b));
        all
    };
    let arrived = eventually(WITHIN, || async {
        let (want, got) = (lines(), hec.records());
        (got.len() >= want.len() && a.store.outbox_records().await.unwrap() == 0).then_some((want, got))
    })
    .await;
    let (want, got) = arrived.unwrap_or_else(|| panic!("{} of {} records arrived", hec.records().len(), lines().len()));
    // A job's lines may be in two trails (accepted by one replica, run by the other): its order is
    // checked on the records alone.
    assert_the_records_are_the_lines(&want, &got);
    for id in &hires {
        let kinds: Vec<&str> = got
            .iter()
            .filter(|r| r["subject"]["auditId"] == id.to_string())
            .filter_map(|r| r["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["intake.accepted", "job.attempt"], "{id}");
    }
    // One replica stops (giving its lease back); the other delivers what comes next at once.
    a.shutdown().await;
    let id = b.hire(&new_hire("ENG")).await;
    b.wait_for_state(id, "succeeded", WITHIN).await;
    let taken_over = eventually(WITHIN, || async {
        hec.records()
            .iter()
            .any(|r| r["kind"] == "job.attempt" && r["subject"]["auditId"] == id.to_string())
            .then_some(())
    })
    .await;
    assert!(taken_over.is_some(), "the remaining replica delivers");
    let ids: BTreeSet<String> = hec.records().iter().map(|r| r["eventId"].to_string()).collect();
    assert_eq!(ids.len(), hec.records().len(), "no record twice");
    b.shutdown().await;
}
