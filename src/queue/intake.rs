//! Group commit of accepted webhooks: concurrent requests share one transaction (one fsync), and each
//! request is answered only after the transaction holding its row has committed.
//!
//! A single committer task drains whatever arrived while the previous commit was on disk, so batches
//! grow with load on their own and a lone request waits for nothing but its own commit.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Enqueued, JobRecord, JobStore, QueueError};
use crate::lifecycle::{Bus, Event};

type Reply = oneshot::Sender<Result<Enqueued, QueueError>>;

/// The handle the edge uses to store a job durably.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<(JobRecord, Reply)>,
}

/// The receiving end, until `run_until_stopped` starts the committer on it.
pub struct Committer {
    rx: mpsc::Receiver<(JobRecord, Reply)>,
    batch_max: usize,
}

impl Intake {
    /// A channel for up to a few batches of waiting requests; the committer drains it.
    pub fn channel(batch_max: usize) -> (Intake, Committer) {
        let (tx, rx) = mpsc::channel(batch_max * 4);
        (Intake { tx }, Committer { rx, batch_max })
    }

    /// Stores one job; returns once it is committed (or was already stored under the same event id).
    pub async fn enqueue(&self, job: JobRecord) -> Result<Enqueued, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((job, reply)).await.map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }
}

impl Committer {
    /// Starts committing. `committed` is notified after every commit so idle workers wake at once;
    /// each commit is told on `bus` (`IntakeCommitted`). On `stop` the channel is closed, what is
    /// already in it is committed, and the task ends.
    pub fn start(
        self,
        store: JobStore,
        committed: Arc<Notify>,
        bus: Bus,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run_committer(store, self, committed, bus, stop))
    }
}

async fn run_committer(
    store: JobStore,
    Committer { mut rx, batch_max }: Committer,
    committed: Arc<Notify>,
    bus: Bus,
    stop: CancellationToken,
) {
    let mut batch: Vec<(JobRecord, Reply)> = Vec::with_capacity(batch_max);
    loop {
        // Let every request that is ready to run reach the channel first (the answers just sent, the
        // connections with a request waiting): a busy service then commits more rows per fsync
        // instead of starting a small commit that competes with them for the CPU.
        tokio::task::yield_now().await;
        let received = tokio::select! {
            // Requests already in the channel are still committed after a stop: they were accepted.
            n = rx.recv_many(&mut batch, batch_max) => n,
            _ = stop.cancelled() => {
                rx.close();
                rx.recv_many(&mut batch, batch_max).await
            }
        };
        if received == 0 {
            return;
        }
        let (jobs, replies): (Vec<JobRecord>, Vec<Reply>) = batch.drain(..).unzip();
        let started = std::time::Instant::now();
        let answers = commit(&store, &jobs).await;
        bus.emit(Event::IntakeCommitted { rows: jobs.len(), took: started.elapsed() });
        for (reply, answer) in replies.into_iter().zip(answers) {
            // The requester may have gone away (client hung up); its row is stored all the same.
            let _ = reply.send(answer);
        }
        committed.notify_waiters();
    }
}

/// Commits the whole batch at once; if that fails, each job alone, so one bad row cannot sink the
/// others that arrived with it.
async fn commit(store: &JobStore, jobs: &[JobRecord]) -> Vec<Result<Enqueued, QueueError>> {
    match store.enqueue_records(jobs).await {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, rows = jobs.len(), "batch commit failed; committing one by one");
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                let one = store.enqueue_records(std::slice::from_ref(job)).await;
                out.push(
                    one.and_then(|v| v.into_iter().next().ok_or(QueueError::Corrupt("empty commit answer".into()))),
                );
            }
            out
        }
    }
}
