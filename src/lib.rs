//! genesys-provisioner: keeps Genesys Cloud in step with an HR system.
//!
//! `App::build` binds the port and opens the job store; `App::run_until_stopped` runs the HTTP edge,
//! the intake committer and the workers until a `CancellationToken` says stop. `main` and the tests
//! both start the service this way.

// `unsafe` only where a module says why it needs it (`queue::wal_gather`, an SQLite VFS).

pub mod audit;
pub mod clock;
pub mod config;
pub mod error;
pub mod events;
pub mod genesys;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod policy;
pub mod probe;
pub mod queue;
pub mod replicas;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod signing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::Config;
use crate::genesys::GenesysClient;
use crate::http::{AppState, Shared};
use crate::lifecycle::audit::AuditTrail;
use crate::lifecycle::{Bus, Subscriber};
use crate::metrics::Metrics;
use crate::queue::JobStore;
use crate::queue::intake::{Committer, Intake};
use crate::queue::worker::{JobHandler, Worker};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the job store ({backend}): {source}")]
    Store { backend: &'static str, source: queue::QueueError },
    #[error("{0}")]
    Audit(String),
    #[error("cannot set up the Genesys client: {0}")]
    Genesys(String),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot set up SIEM delivery: {0}")]
    Siem(String),
}

/// A built, bound, not yet running service.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    audit: AuditLog,
    worker: Arc<Worker>,
    committer: Committer,
    run_workers: bool,
    /// The one Genesys client (None: no credentials, or a test's own handler); its pace is shared
    /// with the other replicas while the workers run.
    genesys: Option<Arc<GenesysClient>>,
    /// SIEM delivery, when destinations are configured.
    siem: Option<outbox::Runner>,
}

/// How to build an `App`: `App::builder(config)`, then what differs from production, then `build`.
pub struct AppBuilder {
    config: Config,
    /// None: the provisioning pipeline.
    handler: Option<Arc<dyn JobHandler>>,
    clock: Clock,
}

impl AppBuilder {
    /// Runs jobs with `handler` instead of the provisioning pipeline (tests use their own).
    pub fn handler(mut self, handler: Arc<dyn JobHandler>) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Runs the queue, the worker, retention and the Genesys client on `clock` instead of the system
    /// clock (tests use a `clock::ManualClock`).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Binds the port and opens the job store.
    pub async fn build(self) -> Result<App, StartError> {
        let AppBuilder { config, handler, clock } = self;
        if let Some(handler) = handler {
            return App::build_with(config, None, clock, move |_, _, _| handler).await;
        }
        // The provisioning pipeline, calling Genesys through one shared client (none when no
        // credentials are configured).
        let genesys = match GenesysClient::from_config(&config.genesys).transpose() {
            Ok(client) => client.map(|c| Arc::new(c.with_clock(clock.clone()))),
            Err(e) => return Err(StartError::Genesys(e.to_string())),
        };
        let for_handler = genesys.clone();
        let has_credentials = genesys.is_some();
        let mut app = App::build_with(config, genesys, clock, move |config, bus, store| {
            Arc::new(pipeline::Provisioning::new(
                config.departments.clone(),
                for_handler,
                bus.clone(),
                config.sync.clone(),
                config.policy.clone(),
                store.clone(),
            ))
        })
        .await?;
        // Without credentials every job would fail: keep them queued for a process that has them.
        app.run_workers &= has_credentials;
        Ok(app)
    }
}

/// How often retention looks for succeeded jobs to purge or forget: its periods are days long.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

impl App {
    /// A builder for the service: the provisioning pipeline on the system clock unless told otherwise.
    pub fn builder(config: Config) -> AppBuilder {
        AppBuilder { config, handler: None, clock: Clock::system() }
    }

    /// Builds the service with its real job handler, the provisioning pipeline, on the system clock.
    pub async fn build(config: Config) -> Result<App, StartError> {
        Self::builder(config).build().await
    }

    async fn build_with(
        config: Config,
        genesys: Option<Arc<GenesysClient>>,
        clock: Clock,
        handler: impl FnOnce(&Config, &Bus, &JobStore) -> Arc<dyn JobHandler>,
    ) -> Result<App, StartError> {
        let addr = config.server.listen_addr;
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        let backend = config.server.database_url.backend();
        let siem = outbox::Outbox::new(&config.siem).map_err(StartError::Siem)?;
        let store = JobStore::connect(&config.server.database_url, config.queue.max_lost_attempts)
            .await
            .map_err(|source| StartError::Store { backend, source })?
            .with_clock(clock)
            .with_outbox(siem.as_ref().map(|(o, _)| o.names()).unwrap_or_default());
        outbox::register(siem.as_ref().map(|(o, _)| o), &store)
            .await
            .map_err(|source| StartError::Store { backend, source })?;
        let audit = AuditLog::open(&config.audit.dir, config.audit.keep_files).map_err(StartError::Audit)?;
        let metrics = Arc::new(Metrics::with_genesys(genesys.clone()));
        // The queue gauges start from one count; the lifecycle events keep them current from here.
        if let Err(e) = metrics.seed_queue(&store).await {
            tracing::warn!(error = %e, "counting the queue for the metrics failed; the next resync counts again");
        }
        // Who hears the lifecycle events: the audit trail and the metrics (a delivery to a SIEM or
        // an HRIS is one more subscriber here).
        let subscribers: Vec<Arc<dyn Subscriber>> = vec![Arc::new(AuditTrail::new(audit.clone())), metrics.clone()];
        // With SIEM delivery, every event's record is made by the outbox (see `lifecycle::Recorder`).
        let (bus, siem, outbox) = match siem {
            Some((outbox, runner)) => {
                (Bus::new(subscribers).with_recorder(Arc::new(outbox.clone())), Some(runner), Some(outbox))
            }
            None => (Bus::new(subscribers), None, None),
        };
        let handler = handler(&config, &bus, &store);
        let wake = Arc::new(Notify::new());
        // The committer starts in `run_until_stopped`; until then requests queue in its channel.
        let (intake, committer) = Intake::channel(config.queue.intake_batch_max);
        let worker = Arc::new(Worker::new(store.clone(), handler, config.queue.clone(), bus.clone(), wake.clone()));
        let state = AppState::new(Shared {
            config: Arc::new(config),
            intake,
            store,
            bus,
            metrics,
            wake,
            genesys: genesys.clone(),
            outbox,
        });
        let run_workers = state.config.queue.run_workers;
        Ok(App { listener, addr, state, audit, worker, committer, run_workers, genesys, siem })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The configuration the service runs with.
    pub fn config(&self) -> Arc<Config> {
        self.state.config.clone()
    }

    pub fn store(&self) -> JobStore {
        self.state.store.clone()
    }

    /// The clock the queue, the worker, retention and the Genesys client run on.
    pub fn clock(&self) -> Clock {
        self.state.store.clock().clone()
    }

    /// The worker, for driving the queue by hand (`Worker::drain`).
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    pub fn audit(&self) -> AuditLog {
        self.audit.clone()
    }

    /// Runs until `stop` is cancelled: stops accepting, lets in-flight requests finish and their
    /// jobs commit, lets running jobs finish (or releases them after the grace period), then returns.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<(), StartError> {
        let App { listener, state, worker, committer, run_workers, genesys, siem, .. } = self;
        for warning in state.config.warnings() {
            tracing::warn!("{warning}");
        }
        let committer_stop = CancellationToken::new();
        let committer =
            committer.start(state.store.clone(), state.wake.clone(), state.bus.clone(), committer_stop.clone());
        // Replicas running workers share the Genesys rate (`replicas`): this one announces itself
        // first, and its workers start once the others have made room for it.
        let share_stop = CancellationToken::new();
        let (share, may_start) = match genesys.filter(|_| run_workers) {
            Some(client) => {
                let (ready, may_start) = tokio::sync::oneshot::channel();
                let every = state.config.genesys.replica_heartbeat;
                let share = replicas::PaceShare::new(state.store.clone(), client, every);
                (Some(tokio::spawn(share.run(ready, share_stop.clone()))), Some(may_start))
            }
            None => (None, None),
        };
        let workers = run_workers.then(|| {
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Some(may_start) = may_start {
                    tokio::select! {
                        _ = may_start => {},
                        _ = stop.cancelled() => {},
                    }
                }
                worker.run(stop).await
            })
        });
        let siem = siem.map(|s| s.start(state.store.clone(), state.metrics.clone(), stop.clone()));
        let checkpoints =
            tokio::spawn(state.store.clone().run_checkpoints(Duration::from_secs(1), committer_stop.clone()));
        let queue = &state.config.queue;
        let retention = tokio::spawn(state.store.clone().run_retention(
            queue.retention,
            queue.dedupe_window,
            RETENTION_EVERY,
            state.bus.clone(),
            committer_stop.clone(),
        ));
        let resync = tokio::spawn(state.metrics.clone().run_queue_resync(
            state.store.clone(),
            metrics::QUEUE_RESYNC,
            committer_stop.clone(),
        ));
        // One line an operator can read at a glance: what runs, from which file, against what, within which limits.
        let addr = listener.local_addr().map_err(StartError::Serve)?;
        tracing::info!("{}", state.config.summary(addr, run_workers));

        let store = state.store.clone();
        let limits = state.config.server.limits.clone();
        let metrics = state.metrics.clone();
        let router = http::router(state);
        http::serve::serve(listener, router, limits, metrics, stop.clone()).await;
        // Every request has been answered; commit whatever is still in the channel, then stop.
        committer_stop.cancel();
        let _ = committer.await;
        let _ = checkpoints.await;
        let _ = retention.await;
        let _ = resync.await;
        if let Some(w) = workers {
            let _ = w.await;
        }
        // Only now that this replica sends nothing more do the others take its share.
        share_stop.cancel();
        if let Some(share) = share {
            let _ = share.await;
        }
        // After the workers: their last records are appended before the appender stops.
        if let Some(siem) = siem {
            siem.stop().await;
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
