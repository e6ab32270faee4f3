//! This process as one replica of the service: while its workers run, it announces itself in the job
//! store with a heartbeat, counts the replicas heard from recently, and paces its Genesys client at
//! its share of the rate. Genesys limits requests per OAuth client, not per process: two replicas
//! each pacing at the full rate would send twice what Genesys allows.
//!
//! The share is the configured rate (or the lower `inin-ratelimit-allowed`) divided by the live
//! replicas, this one included. A replica that joins counts the others at once and holds its workers
//! back for one heartbeat, by which time the others have counted it too; one that stops deletes its
//! row, so the others speed up at their next heartbeat; one that crashed stops counting after
//! `LIVE_BEATS` heartbeats without a word. Every replica runs on one OAuth client and one
//! `replica_heartbeat_ms`, and the hosts' clocks agree to within a heartbeat or so (the rows hold
//! each replica's own wall-clock time, as the jobs' leases do).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::genesys::GenesysClient;
use crate::queue::{JobStore, QueueError, ReplicaRow};

/// A replica is live while its last heartbeat is at most this many heartbeat intervals old: one
/// late beat (a slow database, a busy host) does not make the others speed up.
pub const LIVE_BEATS: u32 = 3;

/// Rows of replicas not heard from for this long are deleted (by whichever replica beats next). A
/// crashed replica's row stays a while for an operator who wants to see when it went quiet.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// This process's row in the replicas table, and the client whose pace follows the count.
pub struct PaceShare {
    store: JobStore,
    client: Arc<GenesysClient>,
    row: ReplicaRow,
    every: Duration,
    /// Whether a heartbeat has been written: the first is logged even when the share is 1.
    announced: AtomicBool,
}

impl PaceShare {
    /// A new replica (a new id) of `store`, beating every `every`; nothing is written before `beat`.
    pub fn new(store: JobStore, client: Arc<GenesysClient>, every: Duration) -> Self {
        let now = store.clock().now_ms();
        let row = ReplicaRow {
            id: Uuid::new_v4(),
            host: hostname(),
            pid: std::process::id(),
            started_at: now,
            heartbeat_at: now,
        };
        PaceShare { store, client, row, every, announced: AtomicBool::new(false) }
    }

    /// This replica's id in the replicas table (new at every start).
    pub fn id(&self) -> Uuid {
        self.row.id
    }

    /// One heartbeat: writes this replica's, counts the live replicas and sets the client's share to
    /// that count (logged at the first beat and whenever it changes). Returns the count.
    pub async fn beat(&self) -> Result<u32, QueueError> {
        let live = self.store.replica_beat(&self.row, self.every * LIVE_BEATS, FORGET_AFTER).await?;
        let first = !self.announced.swap(true, Ordering::Relaxed);
        if self.client.set_share(live) || first {
            let pace = self.client.pace();
            tracing::info!(
                replica = %self.row.id,
                replicas = live,
                allowed_per_minute = pace.allowed_per_minute,
                "Genesys requests shared by {live} replica(s): this one sends at most {:.0} a minute",
                pace.per_minute
            );
        }
        Ok(live)
    }

    /// Announces this replica and beats every `every` until `stop`, then deletes its row. `ready`
    /// fires when this replica's workers may start: at once when it is alone (or the store does not
    /// answer: then there is no count to wait for), else one heartbeat later, when the others have
    /// counted it and slowed down. A failed heartbeat keeps the share as it was.
    pub async fn run(self, ready: oneshot::Sender<()>, stop: CancellationToken) {
        let mut ready = Some(ready);
        let mut first = true;
        loop {
            if let Err(e) = self.beat().await {
                tracing::warn!(error = %e, "replica heartbeat failed; the Genesys pace stays as it was");
            }
            // A newcomer among others holds its workers until the next beat: by then each of
            // them has beaten once, counted it and slowed down.
            let hold = first && self.client.pace().share > 1;
            first = false;
            if !hold && let Some(r) = ready.take() {
                let _ = r.send(());
            }
            tokio::select! {
                _ = self.store.clock().sleep(self.every) => {},
                _ = stop.cancelled() => break,
            }
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
        }
        match self.store.replica_gone(self.row.id).await {
            Ok(()) => {
                tracing::info!(replica = %self.row.id, "replica left: the others take its share of the Genesys rate")
            }
            Err(e) => tracing::warn!(error = %e, "could not delete this replica's row; it ages out"),
        }
    }
}

/// The host's name, for operators reading the replicas table; empty when unknown.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::{FORGET_AFTER, LIVE_BEATS, PaceShare};
    use crate::clock::ManualClock;
    use crate::config::DatabaseUrl;
    use crate::genesys::auth::Credentials;
    use crate::genesys::{ClientSettings, GenesysClient};
    use crate::queue::JobStore;

    const EVERY: Duration = Duration::from_secs(1);

    fn client(manual: &ManualClock) -> Arc<GenesysClient> {
        let settings = ClientSettings {
            api_url: "http://127.0.0.1:9".into(),
            credentials: Credentials {
                login_url: "http://127.0.0.1:9".into(),
                region: "mypurecloud.com".into(),
                client_id: "id".into(),
                client_secret: "secret".to_string().into(),
            },
            requests_per_minute: 600,
            token_refresh_margin: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            max_inline_wait: Duration::from_secs(1),
            transient_retries: 0,
        };
        Arc::new(GenesysClient::new(settings).unwrap().with_clock(manual.clock()))
    }

    async fn store(dir: &tempfile::TempDir, manual: &ManualClock) -> JobStore {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("replicas.db").display());
        JobStore::connect(&DatabaseUrl::parse(&url).unwrap(), 3).await.unwrap().with_clock(manual.clock())
    }

    #[tokio::test]
    async fn the_share_follows_the_live_replicas_and_a_departed_one_gives_its_share_back() {
        let (dir, manual) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let store = store(&dir, &manual).await;
        let (client_a, client_b) = (client(&manual), client(&manual));
        let a = PaceShare::new(store.clone(), client_a.clone(), EVERY);
        let b = PaceShare::new(store.clone(), client_b.clone(), EVERY);
        assert_eq!(a.beat().await.unwrap(), 1);
        assert_eq!(client_a.pace().share, 1);
        assert_eq!(b.beat().await.unwrap(), 2, "b counts a at once");
        assert_eq!(client_b.pace().share, 2);
        assert_eq!(a.beat().await.unwrap(), 2, "and a counts b at its next beat");
        assert_eq!(client_a.pace().share, 2);
        assert!((client_a.pace().per_minute - 294.0).abs() < 0.01, "{:?}", client_a.pace());

        // b stops: its row goes, and a has the whole rate again at its next beat.
        store.replica_gone(b.id()).await.unwrap();
        assert_eq!(a.beat().await.unwrap(), 1);
        assert_eq!(client_a.pace().share, 1);

        // b again, then it crashes: it counts for LIVE_BEATS heartbeats after its last, then no more.
        b.beat().await.unwrap();
        let crashed_at = manual.now_ms();
        manual.advance(EVERY * LIVE_BEATS);
        assert_eq!(a.beat().await.unwrap(), 2, "still within the live window");
        manual.advance(Duration::from_millis(1));
        assert_eq!(a.beat().await.unwrap(), 1, "aged out");
        assert_eq!(client_a.pace().share, 1);
        // Its row stays for operators, then goes.
        let rows = store.replicas().await.unwrap();
        assert_eq!(rows.len(), 2);
        let crashed = rows.iter().find(|r| r.id == b.id()).unwrap();
        assert_eq!((crashed.heartbeat_at, crashed.pid), (crashed_at, std::process::id()));
        manual.advance(FORGET_AFTER);
        a.beat().await.unwrap();
        let rows = store.replicas().await.unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [a.id()]);
        store.close().await;
    }

    #[tokio::test]
    async fn a_newcomer_holds_its_workers_one_heartbeat_and_a_stopped_replica_deletes_its_row() {
        let (dir, manual) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let store = store(&dir, &manual).await;
        let within = Duration::from_secs(10);

        // Alone: its workers may start at once.
        let a = PaceShare::new(store.clone(), client(&manual), EVERY);
        let (ready, a_may_start) = tokio::sync::oneshot::channel();
        let stop_a = CancellationToken::new();
        let a_task = tokio::spawn(a.run(ready, stop_a.clone()));
        tokio::time::timeout(within, a_may_start).await.expect("at once").expect("sent");

        // A second replica counts the first and waits one heartbeat before its workers start.
        let client_b = client(&manual);
        let b = PaceShare::new(store.clone(), client_b.clone(), EVERY);
        let b_id = b.id();
        let (ready, mut b_may_start) = tokio::sync::oneshot::channel();
        let stop_b = CancellationToken::new();
        let b_task = tokio::spawn(b.run(ready, stop_b.clone()));
        let announced = tokio::time::timeout(within, async {
            while client_b.pace().share != 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(announced.is_ok(), "b counted a");
        assert!(b_may_start.try_recv().is_err(), "b's workers wait for the others to count it");
        manual.advance(EVERY);
        tokio::time::timeout(within, b_may_start).await.expect("one heartbeat later").expect("sent");

        // b stops: its row is gone when its task ends.
        stop_b.cancel();
        b_task.await.unwrap();
        let ids: Vec<_> = store.replicas().await.unwrap().into_iter().map(|r| r.id).collect();
        assert!(!ids.contains(&b_id) && ids.len() == 1, "{ids:?}");
        stop_a.cancel();
        a_task.await.unwrap();
        assert!(store.replicas().await.unwrap().is_empty());
        store.close().await;
    }
}
