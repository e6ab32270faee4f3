//! Replicas share the Genesys request budget: two services on one job store, against one emulator
//! that allows N requests a minute, stay within N together.

use std::time::{Duration, Instant};

use crate::common::*;

/// The emulator's limit and both services' configured rate: 10 requests a second, so the run is short.
const RATE_PER_MINUTE: u32 = 600;
/// Two Genesys calls each: about 12 s at the allowed rate, 6 s at twice that.
const HIRES: usize = 60;

/// Requests the emulator took on the API (the token host excepted).
fn api_requests(emulator: &genesys_emulator::Emulator) -> u64 {
    emulator.stats().requests_by_route.iter().filter(|(route, _)| route.contains(" /api/v2/")).map(|(_, n)| n).sum()
}

/// A service of the two: the real pipeline against `emulator`, paced at `RATE_PER_MINUTE`, on `db`.
async fn replica(backend: Backend, emulator: &genesys_emulator::Emulator, db: TestDb) -> TestApp {
    let base = emulator.base_url();
    Spawn::new(backend)
        .real_pipeline()
        .env("GENESYS_API_URL", &base)
        .env("GENESYS_LOGIN_URL", &base)
        .env("GENESYS_CLIENT_ID", EMULATOR_CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", EMULATOR_CLIENT_SECRET)
        .toml(&format!(
            "[genesys]\nrequests_per_minute = {RATE_PER_MINUTE}\nreplica_heartbeat_ms = 200\nrequest_timeout_secs = 5"
        ))
        .on_db(db)
        .start()
        .await
        .expect("the backend is available")
}

/// The value of the metric line that starts with `name` and a space, in this app's `/metrics` text.
fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Jobs that succeeded, by this app's own count.
fn succeeded_here(app: &TestApp) -> u64 {
    metric(app, "provisioner_job_attempts_total{outcome=\"succeeded\"}") as u64
}

fn share(app: &TestApp) -> f64 {
    metric(app, "provisioner_genesys_pace_share")
}

async fn two_replicas_stay_within_one_rate_limit(backend: Backend) {
    let emulator = start_emulator().await;
    emulator.faults().set_rate_limit_per_minute(Some(RATE_PER_MINUTE));
    let Some(db) = TestDb::new(backend).await else { return };
    // The second service opens the same database (the same SQLite file, or the same PostgreSQL database).
    let same = TestDb { url: db.url.clone(), dir: tempfile::tempdir().unwrap() };
    let a = replica(backend, &emulator, db).await;
    let b = replica(backend, &emulator, same).await;

    // The emulator's request count over time, from before the first hire is posted until every job
    // succeeded: the replicas start work while the hires still arrive.
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let post = async {
        for n in 0..HIRES {
            let app = if n % 2 == 0 { &a } else { &b };
            app.hire(&new_hire(["ENG", "SUPPORT", "SALES", "HR"][n % 4])).await;
        }
    };
    let sample = eventually(Duration::from_secs(60), || {
        samples.push((Instant::now(), api_requests(&emulator)));
        let finished = succeeded_here(&a) + succeeded_here(&b);
        std::future::ready((finished >= HIRES as u64).then_some(()))
    });
    let ((), done) = tokio::join!(post, sample);
    assert!(done.is_some(), "{} of {HIRES} jobs succeeded within 60 s", succeeded_here(&a) + succeeded_here(&b));
    samples.push((Instant::now(), api_requests(&emulator)));

    // From the first sample that saw a request to the last: the aggregate rate of both services.
    let (first_at, first) = *samples.iter().find(|(_, n)| *n > 0).expect("requests were sent");
    let (last_at, last) = *samples.last().unwrap();
    let seconds = last_at.duration_since(first_at).as_secs_f64();
    let rate = (last - first) as f64 / seconds;
    let allowed = f64::from(RATE_PER_MINUTE) / 60.0;
    let stats = emulator.stats();
    let (by_a, by_b) = (succeeded_here(&a), succeeded_here(&b));
    let report = format!(
        "{backend:?}: {} requests in {seconds:.2} s = {rate:.2}/s (allowed {allowed:.2}/s); 429s {}; jobs run by \
         the replicas: {by_a} and {by_b}",
        last - first,
        stats.rate_limited
    );
    eprintln!("{report}");
    // Both worked: one idle replica would halve the rate by itself. (The split is rarely even: the
    // second replica holds its workers for a heartbeat, and a loaded machine skews it further.)
    assert!(by_a >= HIRES as u64 / 10 && by_b >= HIRES as u64 / 10, "{report}");
    // Each replica's first request leaves at once, then one per interval: over `seconds` the two
    // may send one request each above the rate (and 2% for the timing of the samples).
    let most = allowed * seconds * 1.02 + 2.0;
    assert!(
        (last - first) as f64 <= most,
        "together the replicas sent faster than Genesys allows (at most {most:.0} requests): {report}"
    );
    assert!(stats.rate_limited <= 1, "{report}");
    assert_eq!((share(&a), share(&b)), (2.0, 2.0));
    assert_eq!(metric(&a, "provisioner_genesys_pace_per_minute").round(), 294.0, "half of 98% of {RATE_PER_MINUTE}");

    // One stops: its row goes at once, and the other has the whole rate again at its next heartbeat.
    let (a_store, url) = (a.store.clone(), a.db.url.clone());
    b.shutdown().await;
    let alone = eventually(Duration::from_secs(5), || std::future::ready((share(&a) == 1.0).then_some(()))).await;
    assert!(alone.is_some(), "the remaining replica still shares the rate by {}", share(&a));
    assert_eq!(a_store.replicas().await.unwrap().len(), 1);
    a.shutdown().await;
    let store = genesys_provisioner::queue::JobStore::connect(
        &genesys_provisioner::config::DatabaseUrl::parse(&url).unwrap(),
        3,
    )
    .await
    .unwrap();
    assert!(store.replicas().await.unwrap().is_empty(), "a stopped replica deletes its row");
    store.close().await;
}

#[tokio::test]
async fn two_replicas_on_one_sqlite_file_stay_within_one_rate_limit() {
    two_replicas_stay_within_one_rate_limit(Backend::Sqlite).await;
}

#[tokio::test]
async fn two_replicas_on_postgres_stay_within_one_rate_limit() {
    two_replicas_stay_within_one_rate_limit(Backend::Postgres).await;
}
