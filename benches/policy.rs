//! Policy benchmark: evaluations per second on one core, every rule configured (two email domains,
//! a department list, a cost-center pattern, the role matrix), for the users the policy meets:
//!
//! 1. a compliant new hire, as the typed SCIM user the job sends (`UserView::of_scim`);
//! 2. a compliant user as SCIM JSON (a mapped directory record, a validation webhook's `data`);
//! 3. a user that breaks five rules at once (six violations, each message written);
//! 4. what a new hire's intake adds: building its SCIM user (`scim_user::build`) and judging it.
//!
//! Each case runs for 2 s after a short warm-up; the users are built once, outside the timing, so
//! what is measured is the judging alone. A compliant user is judged without allocating (the
//! sets are built at start, lookups borrow), so cases 1 and 2 are the hot path; case 3 shows what
//! writing six messages costs.
//!
//! Run: `cargo bench --bench policy` (`BENCH_SECONDS`, default 2).

// Benchmark code: a panic is a failed run, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use genesys_provisioner::config::Config;
use genesys_provisioner::genesys::types::{
    EnterpriseUser, SCHEMA_ENTERPRISE, SCHEMA_GENESYS, ScimMultiValue, ScimUser, ScimValue,
};
use genesys_provisioner::pipeline::NewHire;
use genesys_provisioner::pipeline::scim_user;
use genesys_provisioner::policy::{Policy, UserView};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[policy]
email_domains = ["example.com", "example.org", "corp.example.net"]
departments = ["ENG", "SUPPORT", "SALES"]
cost_center_pattern = "^(CC-[0-9]{4}|UNASSIGNED)$"
[policy.roles]
ENG = ["agent", "supervisor", "admin"]
SALES = ["agent", "supervisor"]
SUPPORT = ["agent", "supervisor"]
[departments.ENG]
name = "Engineering"
group_id = "a1b2c3d4-5678-90ab-cdef-1234567890ab"
roles = ["employee"]
[departments.SUPPORT]
name = "Support"
group_id = "b2c3d4e5-6789-01bc-defa-234567890abc"
roles = ["employee"]
[departments.SALES]
name = "Sales"
group_id = "c3d4e5f6-7890-12cd-efab-34567890abcd"
roles = ["employee"]
[departments.HR]
name = "Human Resources"
group_id = "d4e5f6a7-8901-23de-fabc-4567890abcde"
roles = ["employee"]
"#;

fn config() -> Config {
    let env: BTreeMap<String, String> = [
        ("HR_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("ADMIN_TOKEN", "bench-admin-token-0123456789"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Config::from_toml(CONFIG, &env).expect("the benchmark's config is valid")
}

/// A new hire's create body, as `pipeline::scim_user::build` makes it.
fn typed_user() -> ScimUser {
    ScimUser {
        user_name: "jane.doe@example.com".into(),
        display_name: Some("Jane Doe".into()),
        emails: vec![ScimMultiValue {
            value: "jane.doe@example.com".into(),
            kind: Some("work".into()),
            primary: Some(true),
        }],
        enterprise: Some(EnterpriseUser { department: Some("Engineering".into()), ..Default::default() }),
        genesys: Some(json!({"externalIds": [{"authority": "costCenter", "value": "CC-1042"}]})),
        roles: vec![ScimValue { value: "employee".into() }, ScimValue { value: "agent".into() }],
        ..Default::default()
    }
}

/// The same user as the sample mapping writes it.
fn json_user() -> Value {
    json!({
        "userName": "jane.doe@example.com", "displayName": "Jane Doe", "title": "Engineer",
        "emails": [{"value": "jane.doe@example.com", "type": "work", "primary": true}],
        "roles": [{"value": "employee"}, {"value": "agent"}],
        SCHEMA_ENTERPRISE: {"department": "Engineering", "employeeNumber": "1042"},
        SCHEMA_GENESYS: {"externalIds": [{"authority": "costCenter", "value": "CC-1042"}, {"authority": "jobLevel", "value": "L4"}]}
    })
}

/// A user that breaks every rule it can at once (a missing primary email leaves no domain to
/// judge): no userName, a foreign domain, a department off the list, a cost center off the
/// pattern, two roles its department does not give.
fn violating_user() -> Value {
    json!({
        "userName": "",
        "emails": [{"value": "x@elsewhere.example", "type": "work", "primary": true}],
        SCHEMA_ENTERPRISE: {"department": "Human Resources", "costCenter": "0042"},
        "roles": [{"value": "admin"}, {"value": "root"}]
    })
}

/// Runs `judge` for `seconds` on this thread and prints the rate; returns it.
fn measure(name: &str, seconds: f64, expected: usize, mut judge: impl FnMut() -> usize) -> f64 {
    assert_eq!(judge(), expected, "{name}: unexpected number of violations");
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        black_box(judge());
    }
    let started = Instant::now();
    let mut evaluations = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        for _ in 0..1_000 {
            black_box(judge());
        }
        evaluations += 1_000;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = evaluations as f64 / elapsed;
    println!("{name:<52} {rate:>12.0} evaluations/s  {:>7.0} ns each", 1e9 / rate);
    rate
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let config = config();
    let policy: &Policy = &config.policy;
    let (typed, compliant, violating) = (typed_user(), json_user(), violating_user());
    let hire = NewHire::from_json(&json!({
        "id": "evt-1", "email": "jane.doe@example.com", "firstName": "Jane", "lastName": "Doe",
        "departmentCode": "ENG", "title": "Engineer", "employeeId": "E-1042", "hireDate": "2026-12-01"
    }))
    .expect("a valid hire");
    let department = config.departments.get("ENG").expect("ENG is configured");
    println!("policy evaluations on one core, every rule configured ({seconds} s each)");
    measure("compliant new hire (typed ScimUser)", seconds, 0, || {
        policy.evaluate(&UserView::of_scim(black_box(&typed))).as_slice().len()
    });
    measure("compliant user (SCIM JSON)", seconds, 0, || {
        policy.evaluate(&UserView::of_json(black_box(&compliant))).as_slice().len()
    });
    measure("user breaking five rules (SCIM JSON, 6 violations)", seconds, 6, || {
        policy.evaluate(&UserView::of_json(black_box(&violating))).as_slice().len()
    });
    measure("new hire at intake (scim_user::build, then judged)", seconds, 0, || {
        let user = scim_user::build(black_box(&hire), department, None);
        policy.evaluate(&UserView::of_scim(&user)).as_slice().len()
    });
}
