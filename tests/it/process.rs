//! The service binary as operators run it: SIGKILL in the middle of intake, SIGTERM, the CLI,
//! and a search of every log and audit line for secrets. The processes these tests start, and how,
//! are in `common/process.rs`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use std::time::Duration;

use genesys_provisioner::config::DatabaseUrl;
use genesys_provisioner::queue::JobStore;
use serde_json::Value;

use crate::common::process::*;
use crate::common::*;

#[tokio::test]
async fn sigkill_during_intake_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    let emulator = start_emulator().await;
    let mut acknowledged: Vec<(String, String, Value)> = Vec::new();
    let mut sent = 0usize;
    for run in 0..2u32 {
        let service = Service::start(dir.path(), &db_url, run, &emulator.base_url()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut posters = Vec::new();
        for p in 0..8 {
            let (base, stop) = (service.base.clone(), stop.clone());
            posters.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut mine = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("crash-{run}-{p}-{n}");
                    n += 1;
                    let body = new_hire("ENG");
                    match post(&client, &base, &id, &body).await {
                        Some((202, answer)) => mine.push((id, answer["auditId"].as_str().unwrap().to_string(), body)),
                        Some((status, answer)) => panic!("unexpected {status} {answer}"),
                        None => break, // the service is gone
                    }
                }
                (n, mine)
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut service = service;
        service.child.kill().unwrap(); // SIGKILL, mid-flight
        service.child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        for p in posters {
            let (n, mine) = p.await.unwrap();
            sent += n;
            acknowledged.extend(mine);
        }
    }
    assert!(acknowledged.len() > 50, "only {} events were acknowledged", acknowledged.len());

    // Restart on the same database: every acknowledged event is exactly one job, under its auditId.
    let service = Service::start(dir.path(), &db_url, 9, &emulator.base_url()).await;
    let store = JobStore::connect(&DatabaseUrl::parse(&db_url).unwrap(), 5).await.unwrap();
    for (id, audit_id, body) in &acknowledged {
        let job = store.get(audit_id.parse().unwrap()).await.unwrap();
        let job = job.unwrap_or_else(|| panic!("acknowledged event {id} ({audit_id}) was lost"));
        assert_eq!(&job.webhook_id, id);
        assert_eq!(job.payload["email"], body["email"]);
    }
    // A re-delivery after the crash is recognised: same auditId, no second job.
    let client = reqwest::Client::new();
    for (id, audit_id, body) in acknowledged.iter().step_by(25) {
        let (status, answer) = post(&client, &service.base, id, body).await.unwrap();
        assert_eq!(status, 202);
        assert_eq!(answer["auditId"], audit_id.as_str());
    }
    let total: u64 = store.counts_by_state().await.unwrap().iter().map(|(_, n)| n).sum();
    // Requests in flight at the kill may have been committed without their answer arriving.
    assert!(
        total as usize >= acknowledged.len() && total as usize <= sent,
        "{total} jobs, {} acked, {sent} sent",
        acknowledged.len()
    );
}

#[tokio::test]
async fn sigterm_stops_accepting_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    let emulator = start_emulator().await;
    let mut service = Service::start(dir.path(), &db_url, 0, &emulator.base_url()).await;
    let client = reqwest::Client::new();
    let (status, _) = post(&client, &service.base, "msg_before_term", &new_hire("ENG")).await.unwrap();
    assert_eq!(status, 202);
    service.signal("-TERM");
    let exited = eventually(Duration::from_secs(30), || {
        let status = service.child.try_wait().unwrap();
        async move { status }
    })
    .await
    .expect("exits after SIGTERM");
    assert!(exited.success(), "exit status {exited:?}");
    let log = std::fs::read_to_string(&service.stderr).unwrap();
    assert!(log.contains("shutdown signal received"), "{log}");
    assert!(client.get(format!("{}/healthz", service.base)).send().await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn no_secret_appears_in_any_log_or_audit_line() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    let emulator = start_emulator().await;
    let service = Service::start(dir.path(), &db_url, 0, &emulator.base_url()).await;
    let client = reqwest::Client::new();
    let mut signatures = Vec::new();
    for i in 0..5 {
        let body = new_hire("ENG");
        let bytes = serde_json::to_vec(&body).unwrap();
        let headers = signed_headers(SECRET, &format!("msg_secret_{i}"), now(), &bytes);
        signatures.push(headers[2].1.trim_start_matches("v1,").to_string());
        let mut req = client.post(format!("{}{HR_PATH}", service.base)).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        assert_eq!(req.body(bytes).send().await.unwrap().status().as_u16(), 202);
    }
    // Refused requests too: a wrong signature and a wrong admin token.
    let bad = client
        .post(format!("{}{HR_PATH}", service.base))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_bad")
        .header("webhook-timestamp", now().to_string())
        .header("webhook-signature", "v1,c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtYmUtbG9nZ2Vk")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    let admin =
        client.get(format!("{}/admin/dead-letters", service.base)).bearer_auth("wrong-token-must-not-be-logged");
    assert_eq!(admin.send().await.unwrap().status().as_u16(), 401);
    let page = client.get(format!("{}/admin/dead-letters", service.base)).bearer_auth(ADMIN_TOKEN).send().await;
    assert_eq!(page.unwrap().status().as_u16(), 200);
    // Let the workers provision the five through the emulator (a real token exchange and SCIM calls).
    let store = JobStore::connect(&DatabaseUrl::parse(&db_url).unwrap(), 5).await.unwrap();
    eventually(Duration::from_secs(30), || async {
        let c = store.counts_by_state().await.unwrap();
        (c.iter().find(|(s, _)| s.as_str() == "succeeded").map(|(_, n)| *n) == Some(5)).then_some(())
    })
    .await
    .expect("jobs provisioned");
    assert_eq!(emulator.users().len(), 5);
    service.signal("-TERM");
    let mut service = service;
    service.child.wait().unwrap();

    let mut everything = std::fs::read_to_string(&service.stderr).unwrap();
    let audit = read_audit(&dir.path().join("audit"));
    assert!(audit.len() >= 12, "audit has {} lines", audit.len());
    for line in &audit {
        everything.push_str(&line.to_string());
    }
    let secret_b64 = SECRET.trim_start_matches("whsec_");
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{EMULATOR_CLIENT_ID}:{EMULATOR_CLIENT_SECRET}"));
    let mut forbidden = vec![
        SECRET,
        secret_b64,
        ADMIN_TOKEN,
        EMULATOR_CLIENT_SECRET,
        &basic,
        "c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtYmUtbG9nZ2Vk",
        "wrong-token-must-not-be-logged",
    ];
    forbidden.extend(signatures.iter().map(String::as_str));
    let tokens = emulator.issued_tokens();
    assert!(!tokens.is_empty(), "the service fetched a token");
    forbidden.extend(tokens.iter().map(String::as_str));
    for f in forbidden {
        assert!(!everything.contains(f), "{f:?} found in the logs");
    }
}

#[tokio::test]
async fn check_config_reports_every_problem_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[genesys]\nregion = \"mars.example\"\n[departments.ENG]\ngroup_id = \"eng-group\"\n")
        .unwrap();
    let (code, out, _) = cli(
        &["check-config", "--config", bad.to_str().unwrap()],
        &[("GENESYS_CLIENT_SECRET", GENESYS_SECRET), ("HR_WEBHOOK_SECRET", "whsec_short")],
    );
    assert_eq!(code, 1);
    for expected in [
        "GENESYS_REGION \"mars.example\" is not a Genesys Cloud region",
        "departments.ENG.group_id \"eng-group\" is not a UUID",
        "ADMIN_TOKEN is missing",
        "HR_WEBHOOK_SECRET (entry 1)",
        "GENESYS_CLIENT_ID is missing",
    ] {
        assert!(out.lines().any(|l| l.contains(expected)), "{expected:?} not in:\n{out}");
    }
    assert!(!out.contains(GENESYS_SECRET) && !out.contains("whsec_short"), "{out}");

    let (code, out, _) = cli(&["check-config", "--config", "/nonexistent/x.toml"], &[]);
    assert_eq!(code, 1);
    assert!(out.contains("cannot read config file /nonexistent/x.toml"), "{out}");

    let (code, out, _) = cli(
        &["check-config", "--config", "config/default.toml"],
        &[
            ("HR_WEBHOOK_SECRET", SECRET),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("GENESYS_CLIENT_SECRET", GENESYS_SECRET),
            ("GENESYS_CLIENT_ID", "cid"),
            ("VALIDATION_WEBHOOK_SECRET", VALIDATION_SECRET),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK") && out.contains("ENG"), "{out}");
    // The policy as compiled, and the validation webhook's credentials as set or not.
    assert!(out.contains("  roles of ENG (Engineering): admin, agent, employee, supervisor"), "{out}");
    assert!(out.contains("shared secret in x-validation-secret: set; signatures: 0 secret(s)"), "{out}");
    for secret in [SECRET, SECRET.trim_start_matches("whsec_"), ADMIN_TOKEN, GENESYS_SECRET, VALIDATION_SECRET] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }

    // A cost-center pattern that does not compile is named with its column.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-policy.toml");
    let text =
        sample_config_text().replace("[policy.roles]", "[policy]\ncost_center_pattern = '^CC-(\\d{4}'\n[policy.roles]");
    std::fs::write(&bad, text).unwrap();
    let (code, out, _) = cli(
        &["check-config", "--config", bad.to_str().unwrap()],
        &[("HR_WEBHOOK_SECRET", SECRET), ("ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "policy.cost_center_pattern \"^CC-(\\\\d{4}\" is not a valid regular expression: unclosed group at column 5"
        ),
        "{out}"
    );
}

const VALIDATION_SECRET: &str = "validation-secret-never-printed-0123";

/// Relative paths in a config file mean its folder, wherever the command runs from.
#[tokio::test]
async fn relative_paths_in_the_config_file_mean_its_folder() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("maps")).unwrap();
    std::fs::copy("config/mappings/directory.jsonata", home.path().join("maps/hr.jsonata")).unwrap();
    let config = home.path().join("provisioner.toml");
    std::fs::write(
        &config,
        "[server]\ndatabase_url = \"sqlite://state/jobs.db?mode=rwc\"\n[audit]\ndir = \"trail\"\n\
         [sync]\nmapping = \"maps/hr.jsonata\"\n\
         [departments.ENG]\ngroup_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\n",
    )
    .unwrap();
    let check = |audit_dir: Option<&str>| {
        let mut command = bin();
        command
            .args(["check-config", "--config", config.to_str().unwrap()])
            .current_dir(elsewhere.path())
            .env("HR_WEBHOOK_SECRET", SECRET)
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("DATABASE_URL")
            .env_remove("AUDIT_DIR");
        if let Some(dir) = audit_dir {
            command.env("AUDIT_DIR", dir);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = check(None);
    let folder = home.path().display().to_string();
    for expected in [
        format!("config file         {}", config.display()),
        format!("database            sqlite://{folder}/state/jobs.db?mode=rwc"),
        format!("audit_dir           {folder}/trail "),
        format!("sync mapping        {folder}/maps/hr.jsonata (compiled)"),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains("Mapping("), "no Rust debug output:\n{text}");
    // Values from the environment keep meaning the working directory, as in any shell.
    let text = check(Some("audit-here"));
    assert!(text.contains("audit_dir           audit-here "), "{text}");
}

/// With no config file named and none in the usual place, nothing starts with zero departments.
#[tokio::test]
async fn with_no_config_file_the_commands_say_where_they_looked_and_stop() {
    let empty = tempfile::tempdir().unwrap();
    for args in [&["check-config"][..], &["serve"], &["serve", "--sandbox"]] {
        let out = bin()
            .args(args)
            .current_dir(empty.path())
            .env_remove("PROVISIONER_CONFIG")
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("HR_WEBHOOK_SECRET", SECRET)
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        let looked = format!("looked for config/default.toml in {}", empty.path().display());
        assert!(text.contains("no config file") && text.contains(&looked), "{args:?}: {text}");
        assert!(text.contains("--config") && text.contains("PROVISIONER_CONFIG="), "{args:?}: {text}");
    }
}

#[tokio::test]
async fn probe_finds_every_configured_group_and_role() {
    let emulator = EmulatorProcess::start().await;
    let (code, out, err) = cli(PROBE, &probe_env(&emulator.base, EMULATOR_CLIENT_SECRET));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("token       granted to client emulator-client"), "{out}");
    for group in ["a1b2c3d4-5678-90ab-cdef-1234567890ab", "d4e5f6a7-8901-23de-fabc-4567890abcde"] {
        assert!(out.lines().any(|l| l.contains(group) && l.contains("found")), "{group} not found:\n{out}");
    }
    for role in ["employee", "agent", "supervisor", "admin"] {
        assert!(out.contains(&format!("role        \"{role}\" found")), "{role} not found:\n{out}");
    }
    assert!(out.contains("probe OK"), "{out}");
    // Reads only: nothing was written to the emulator.
    let stats: Value = reqwest::get(format!("{}/emulator/stats", emulator.base)).await.unwrap().json().await.unwrap();
    let routes = stats.to_string();
    for write in ["POST /api/v2/scim", "PATCH ", "PUT ", "DELETE "] {
        assert!(!routes.contains(write), "the probe wrote ({write}): {routes}");
    }
    assert!(routes.contains("GET /api/v2/authorization/roles"), "{routes}");
}

#[tokio::test]
async fn probe_reports_a_missing_group_or_role_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    // Only the Engineering group exists in this organisation, and no "supervisor" role.
    std::fs::write(
        &seed,
        r#"{"groups": [{"id": "a1b2c3d4-5678-90ab-cdef-1234567890ab", "displayName": "ENG"}],
            "roles": ["admin", "agent", "employee"]}"#,
    )
    .unwrap();
    let emulator = EmulatorProcess::start_with(&["--seed", seed.to_str().unwrap()]).await;
    let (code, out, err) = cli(PROBE, &probe_env(&emulator.base, EMULATOR_CLIENT_SECRET));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.lines().any(|l| l.contains("a1b2c3d4-5678-90ab-cdef-1234567890ab") && l.contains("found")), "{out}");
    for (code_name, group) in [
        ("SUPPORT", "b2c3d4e5-6789-01bc-defa-234567890abc"),
        ("SALES", "c3d4e5f6-7890-12cd-efab-34567890abcd"),
        ("HR", "d4e5f6a7-8901-23de-fabc-4567890abcde"),
    ] {
        let line = format!("group       {group} ({code_name}) MISSING");
        assert!(out.contains(&line), "{line:?} not in:\n{out}");
    }
    assert!(out.contains("role        \"supervisor\" MISSING"), "{out}");
    assert!(out.contains("role        \"agent\" found"), "{out}");
    assert!(out.contains("probe FAILED: 4 problem(s)"), "{out}");
}

#[tokio::test]
async fn probe_reports_refused_credentials_and_exits_non_zero() {
    let emulator = EmulatorProcess::start().await;
    let (code, out, err) = cli(PROBE, &probe_env(&emulator.base, "not-the-secret"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("token       REFUSED for client emulator-client"), "{out}");
    assert!(!out.contains("not-the-secret"), "the secret was printed:\n{out}");
    assert!(!out.contains("group       "), "nothing else is asked once the token is refused:\n{out}");
}

/// The warnings an operator must not miss, from `check-config` (start-up logs the same ones).
#[tokio::test]
async fn check_config_warns_about_example_secrets_plain_http_and_unverified_webhooks() {
    let example = std::fs::read_to_string(".env.example").unwrap();
    let value = |name: &str| {
        let prefix = format!("{name}=");
        example.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("{name}")).to_string()
    };
    let (secret, token) = (value("HR_WEBHOOK_SECRET"), value("ADMIN_TOKEN"));
    let (code, out, _) = cli(
        &["check-config", "--config", "config/default.toml"],
        &[
            ("HR_WEBHOOK_SECRET", &secret),
            ("ADMIN_TOKEN", &token),
            ("GENESYS_API_URL", "http://genesys.example.com"),
            ("VERIFY_SIGNATURES", "false"),
        ],
    );
    assert_eq!(code, 0, "warnings do not fail the check:\n{out}");
    for expected in [
        "warning: HR_WEBHOOK_SECRET is the development value from .env.example",
        "warning: ADMIN_TOKEN is the development value from .env.example",
        "warning: GENESYS_API_URL http://genesys.example.com is plain http://",
        "warning: WEBHOOK SIGNATURE VERIFICATION IS OFF",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
    assert!(!out.contains(&secret) && !out.contains(&token), "a secret was printed:\n{out}");
}

/// Start-up says in one line what runs; stderr that is a file carries no colour codes.
#[tokio::test]
async fn start_up_writes_one_summary_line_and_no_colour_codes() {
    let emulator = EmulatorProcess::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    let service = Service::start(dir.path(), &db, 0, &emulator.base).await;
    let log = std::fs::read_to_string(&service.stderr).unwrap();
    let summary: Vec<&str> = log.lines().filter(|l| l.contains(" listening on ")).collect();
    assert_eq!(summary.len(), 1, "{log}");
    let port = service.base.rsplit(':').next().unwrap();
    let host = emulator.base.trim_start_matches("http://");
    for expected in [
        format!("genesys-provisioner {} listening on 127.0.0.1:{port}", env!("CARGO_PKG_VERSION")),
        "config config/default.toml".to_string(),
        "backend sqlite".to_string(),
        format!("genesys {host}"),
        "workers on (8 at once)".to_string(),
        "max body 1048576 bytes, timeouts header 10 s / body 30 s / idle 60 s, 512 connections, retry window 86400 s"
            .to_string(),
    ] {
        assert!(summary[0].contains(&expected), "{expected:?} not in {}", summary[0]);
    }
    assert!(!log.contains('\u{1b}'), "an ESC byte in a log written to a file:\n{log}");
}

#[tokio::test]
async fn send_webhook_signs_and_posts_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    let emulator = start_emulator().await;
    let service = Service::start(dir.path(), &db_url, 0, &emulator.base_url()).await;
    let url = format!("{}{HR_PATH}", service.base);
    let file = "config/samples/new-hire.json";
    let run = |id: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            cli(&["send-webhook", "--url", &url, "--file", file, "--id", id], &[("HR_WEBHOOK_SECRET", SECRET)])
        })
    };
    let (code, out, err) = run("msg_cli_1").await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("202 Accepted") && out.contains("provisioning_queued"), "{out}");
    let (code, again, _) = run("msg_cli_1").await.unwrap();
    assert_eq!(code, 0);
    let audit_id = |s: &str| s.lines().last().map(|l| serde_json::from_str::<Value>(l).unwrap()["auditId"].clone());
    assert_eq!(audit_id(&out), audit_id(&again), "same id, same job");
    // Signed with the wrong secret: refused, and the tool says so with a failing exit code.
    let url2 = url.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        cli(&["send-webhook", "--url", &url2, "--file", file, "--secret", NEW_SECRET], &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(out.contains("401"), "{out}");
}

#[tokio::test]
async fn sigkill_during_provisioning_leaves_one_user_per_accepted_event() {
    const HIRES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    let emulator = EmulatorProcess::start().await;
    // Fast pacing and short leases, so a job held by a killed process comes back within seconds.
    let config = sample_config_text()
        .replace("requests_per_minute = 300", "requests_per_minute = 60000")
        .replace("lease_secs = 60", "lease_secs = 2")
        .replace("backoff_base_ms = 2000", "backoff_base_ms = 50")
        .replace("backoff_max_secs = 900", "backoff_max_secs = 2");
    let config_path = dir.path().join("crash.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_path = config_path.to_str().unwrap().to_string();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    // 300 new hires, each posted until it gets its 202 (as an HR system retries), from 6 senders,
    // while the service is killed twice mid-stream.
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    let depts = ["ENG", "SUPPORT", "SALES", "HR"];
    let mut service = Service::start_with(dir.path(), &db_url, 0, &emulator.base, port, &config_path).await;
    for _ in 0..6 {
        let (base, accepted, next) = (base.clone(), accepted.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= HIRES {
                    return;
                }
                let mut body = new_hire(depts[i % 4]);
                body["email"] = json!(format!("crash.{i}@example.com"));
                let id = format!("crash-hire-{i}");
                loop {
                    match post(&client, &base, &id, &body).await {
                        Some((202, _)) => break,
                        Some((status, answer)) if status < 500 => panic!("unexpected {status} {answer}"),
                        _ => tokio::time::sleep(Duration::from_millis(50)).await, // down: try again
                    }
                }
                accepted.lock().unwrap().push((format!("crash.{i}@example.com"), depts[i % 4].to_string()));
            }
        }));
    }
    for (run, after) in [(1u32, 80usize), (2, 180)] {
        let hit = eventually(Duration::from_secs(60), || {
            let n = accepted.lock().unwrap().len();
            async move { (n >= after).then_some(()) }
        })
        .await;
        assert!(hit.is_some(), "intake stalled before {after} events");
        service.child.kill().unwrap(); // SIGKILL while webhooks arrive and jobs run
        service.child.wait().unwrap();
        service = Service::start_with(dir.path(), &db_url, run, &emulator.base, port, &config_path).await;
    }
    for s in senders {
        s.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), HIRES);

    let store = JobStore::connect(&DatabaseUrl::parse(&db_url).unwrap(), 5).await.unwrap();
    let done = eventually(Duration::from_secs(90), || async {
        let c = store.counts_by_state().await.unwrap();
        (c.iter().find(|(s, _)| s.as_str() == "succeeded").map(|(_, n)| *n) == Some(HIRES as u64)).then_some(())
    })
    .await;
    assert!(done.is_some(), "not all jobs succeeded: {:?}", store.counts_by_state().await.unwrap());

    let users = emulator.scim_get("/api/v2/scim/v2/users?startIndex=1&count=1000").await;
    assert_eq!(users["totalResults"], HIRES as u64, "exactly one user per accepted event");
    let mut ids_by_email = std::collections::BTreeMap::new();
    for u in users["Resources"].as_array().unwrap() {
        let previous =
            ids_by_email.insert(u["userName"].as_str().unwrap().to_string(), u["id"].as_str().unwrap().to_string());
        assert!(previous.is_none(), "a second user for {}", u["userName"]);
    }
    for (dept, group_id) in GROUPS {
        let group = emulator.scim_get(&format!("/api/v2/scim/v2/groups/{group_id}")).await;
        let members: std::collections::BTreeSet<String> =
            group["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_string()).collect();
        for (email, d) in accepted.iter().filter(|(_, d)| d == dept) {
            let id = ids_by_email.get(email).unwrap_or_else(|| panic!("{email} ({d}) was not provisioned"));
            assert!(members.contains(id), "{email} is not in the {dept} group");
        }
        assert_eq!(members.len(), HIRES / 4, "{dept} group has exactly its hires");
    }
    drop(service);
}

#[tokio::test]
async fn the_sandbox_runs_the_whole_job_with_no_credentials() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = bin()
        .args(["serve", "--sandbox", "--config", "config/default.toml"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROVISIONER_ENV_FILE", "none")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SANDBOX_DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.path().join("sandbox.db").display()))
        // The sandbox must not put its jobs in the real queue.
        .env("DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.path().join("real.db").display()))
        .env("AUDIT_DIR", dir.path().join("audit"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Killed however the test ends: a failed assertion must not leave a sandbox running.
    let child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let (mut bound, mut token, mut send) = (false, None, None);
    while token.is_none() || send.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the sandbox prints its development values");
        if line.trim() == format!("service: {base} (listening now)") {
            // The banner comes after the port is bound: asked at once, with no waiting, it answers.
            let health = client.get(format!("{base}/healthz")).send().await;
            assert!(health.is_ok_and(|r| r.status().is_success()), "the banner was printed before the port was bound");
            bound = true;
        }
        if let Some(v) = line.trim().strip_prefix("ADMIN_TOKEN=") {
            token = v.split_whitespace().next().map(str::to_string);
        }
        if line.contains(" send-webhook ") {
            send = Some(line.trim().to_string());
        }
    }
    assert!(bound, "the banner names the service's address");
    let (token, send) = (token.unwrap(), send.unwrap());
    // Pasted as printed: the binary's real path (not run through cargo here), the sample, the secret.
    assert!(send.starts_with(&format!("{BIN} send-webhook --url {base}{HR_PATH} ")), "{send}");
    assert!(send.contains(" --file config/samples/new-hire.json --secret whsec_"), "{send}");
    let (code, out, err) = tokio::task::spawn_blocking(move || shell(&send)).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let audit_id =
        serde_json::from_str::<Value>(out.lines().last().unwrap()).unwrap()["auditId"].as_str().unwrap().to_string();
    let job = eventually(Duration::from_secs(30), || async {
        let job: Value =
            client.get(format!("{base}/jobs/{audit_id}")).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        (job["state"] == "succeeded").then_some(job)
    })
    .await
    .expect("the sample new hire is provisioned in the sandbox's emulator");
    assert!(job["result"]["scimId"].is_string(), "{job}");
    assert_eq!(job["result"]["groupId"], "a1b2c3d4-5678-90ab-cdef-1234567890ab");
    assert!(dir.path().join("sandbox.db").exists(), "the job is in SANDBOX_DATABASE_URL");
    assert!(!dir.path().join("real.db").exists(), "the sandbox never opens DATABASE_URL");
    let sandbox_audit = std::fs::read_dir(dir.path().join("audit/sandbox")).expect("an audit folder of its own");
    assert_eq!(sandbox_audit.count(), 1, "one audit file in audit/sandbox");
    let beside = std::fs::read_dir(dir.path().join("audit")).unwrap().filter(|e| e.as_ref().unwrap().path().is_file());
    assert_eq!(beside.count(), 0, "no sandbox line in the real audit folder");
    drop(child);
}

#[tokio::test]
async fn the_emulator_runs_alone_from_a_seed_file() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"groups": [{"id": "11111111-2222-3333-4444-555555555555", "displayName": "Night shift"}],
            "users": [{"userName": "ops@example.com", "displayName": "Ops", "active": true,
                       "emails": [{"value": "ops@example.com", "type": "work", "primary": true}]}]}"#,
    )
    .unwrap();
    let emulator = EmulatorProcess::start_with(&["--seed", seed.to_str().unwrap()]).await;
    let users = emulator.scim_get("/api/v2/scim/v2/users?filter=userName%20eq%20%22ops%40example.com%22").await;
    assert_eq!(users["totalResults"], 1, "{users}");
    let group = emulator.scim_get("/api/v2/scim/v2/groups/11111111-2222-3333-4444-555555555555").await;
    assert_eq!(group["displayName"], "Night shift");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"groupz": []}"#).unwrap();
    let out = bin().args(["emulator", "--addr", "127.0.0.1:0", "--seed", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a valid seed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_emulator_command_starts_with_the_groups_of_a_config_files_departments() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("provisioner.toml");
    std::fs::write(
        &config,
        "[server]\nlisten_addr = \"127.0.0.1:0\"\n\n[departments.ENG]\nname = \"Engineering\"\n\
         group_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\nroles = [\"employee\"]\n",
    )
    .unwrap();
    let program = EmulatorProcess::start_with(&["--config", config.to_str().unwrap()]).await;
    let group = program.scim_get("/api/v2/scim/v2/groups/a1b2c3d4-5678-90ab-cdef-1234567890ab").await;
    assert_eq!(group["displayName"], "ENG", "named by the department's code: {group}");

    std::fs::write(&config, "[departments.ENG]\ngroup_id = \"not-a-uuid\"\n").unwrap();
    let out = bin().args(["emulator", "--addr", "127.0.0.1:0", "--config", config.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("departments.ENG.group_id \"not-a-uuid\" is not a UUID"), "{stderr}");
}

/// Without `--seed` or `--config`, the service's settings file of a checkout (`config/default.toml`
/// in the working directory) gives the groups.
#[tokio::test]
async fn the_emulator_command_reads_config_default_toml_in_its_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/default.toml"),
        "[departments.SALES]\ngroup_id = \"c3d4e5f6-7890-12cd-efab-34567890abcd\"\n",
    )
    .unwrap();
    let program = EmulatorProcess::start_in(dir.path(), &[]).await;
    let group = program.scim_get("/api/v2/scim/v2/groups/c3d4e5f6-7890-12cd-efab-34567890abcd").await;
    assert_eq!(group["displayName"], "SALES", "{group}");
    // Elsewhere, no groups at all.
    let elsewhere = EmulatorProcess::start_in(&dir.path().join("config"), &[]).await;
    let none = elsewhere.scim_get("/api/v2/scim/v2/groups/c3d4e5f6-7890-12cd-efab-34567890abcd").await;
    assert_eq!(none["status"], "404", "{none}");
}

/// A developer's `.env` (say `cp .env.example .env`, as the README suggests) must not reach the
/// binaries the tests run: `PROVISIONER_ENV_FILE=none` turns the file off, and the file is read
/// when it is not set.
#[tokio::test]
async fn a_dotenv_file_is_read_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "ADMIN_TOKEN=admin-token-from-a-dotenv-file\n").unwrap();
    let config = sample_config_text();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let check = |env_file: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .args(["check-config", "--config", config_path.to_str().unwrap()])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HR_WEBHOOK_SECRET", SECRET);
        if let Some(v) = env_file {
            command.env("PROVISIONER_ENV_FILE", v);
        }
        let out = command.output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let off = check(Some("none"));
    assert!(off.contains("ADMIN_TOKEN is missing"), "the .env was read although turned off:\n{off}");
    let on = check(None);
    assert!(on.contains("configuration OK"), "the .env in the current folder was not read:\n{on}");
}

/// A PostgreSQL test skipped for want of TEST_DATABASE_URL says so in the test run's output, where
/// libtest would swallow an `eprintln!` of a passing test. Runs one such test in a child test process.
#[test]
fn a_skipped_postgres_test_says_so_in_the_test_output() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "queue::two_worker_pools_on_one_postgres_queue_run_each_job_once", "--test-threads=1"])
        .env_remove("TEST_DATABASE_URL")
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(all.contains("1 passed"), "the probe did not run the test:\n{all}");
    assert!(
        all.contains("SKIPPED") && all.contains("two_worker_pools_on_one_postgres_queue_run_each_job_once"),
        "the skip is not visible:\n{all}"
    );
}

/// The README's way towards a real Genesys Cloud starts with `cp .env.example .env` and
/// `cargo run -- serve` in the checkout: the example's values (no Genesys credentials yet) make a
/// service that starts, intake only, and takes a webhook signed with the example's development secret.
#[tokio::test]
async fn the_env_example_as_dotenv_starts_a_service_that_takes_a_signed_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(".env.example").unwrap();
    let secret = example
        .lines()
        .find_map(|l| l.strip_prefix("HR_WEBHOOK_SECRET="))
        .expect("the example has a development signing secret")
        .to_string();
    std::fs::write(dir.path().join(".env"), &example).unwrap();
    let port = free_port();
    let stderr = dir.path().join("stderr.log");
    // The example's own file, in the checkout as the README says; only the address, the database and
    // the audit folder are moved out of the checkout (variables already set win over the file).
    let child = bin()
        .arg("serve")
        .env("PROVISIONER_ENV_FILE", dir.path().join(".env"))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display()))
        .env("AUDIT_DIR", dir.path().join("audit"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let _child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let up = eventually(Duration::from_secs(30), || async {
        client.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    assert!(up.is_some(), "the service did not start: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
    let body = std::fs::read("config/samples/new-hire.json").unwrap();
    let mut request =
        client.post(format!("{base}{HR_PATH}")).header("content-type", "application/json").body(body.clone());
    for (k, v) in signed_headers(&secret, "env-example-1", now(), &body) {
        request = request.header(k, v);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 202, "{}", answer.text().await.unwrap_or_default());
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    for name in ["HR_WEBHOOK_SECRET", "ADMIN_TOKEN"] {
        let warning = format!("{name} is the development value from .env.example");
        assert!(log.contains(&warning), "no warning that {name} is the example's: {log}");
    }
}
