//! The worker: leases due jobs, runs them through a `JobHandler` with bounded concurrency, and
//! records each attempt (success, retry with backoff, dead letter).
//!
//! The handler is what a job does (the provisioning pipeline); the worker only knows whether an
//! attempt succeeded, failed in a way worth retrying (maybe with a "retry after" hint), or failed for good.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Finish, Job, JobStore, QueueError};
use crate::clock::{Clock, Moment};
use crate::config::QueueConfig;
use crate::lifecycle::{Attempt, AttemptOutcome, Bus, Event};

/// What a successful attempt reports; `result` is stored on the job and shown by `GET /jobs/{id}`.
#[derive(Debug, Clone, Default)]
pub struct JobSuccess {
    pub result: serde_json::Value,
}

/// Why an attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobFailure {
    /// Worth trying again later (upstream 5xx, 429, timeouts); `retry_after` is a floor for the delay.
    #[error("{error}")]
    Retryable { error: String, retry_after: Option<Duration> },
    /// Trying again cannot help (invalid data, refused by policy): straight to dead letter.
    #[error("{error}")]
    Permanent { error: String },
    /// Genesys refused the service's own credentials: no job can succeed until an operator fixes
    /// them, and it is no fault of this job. The job goes back to the queue uncounted, in its place,
    /// and the workers pause until a token is granted again (`JobHandler::check_credentials`).
    #[error("{error}")]
    CredentialsRefused { error: String },
}

impl JobFailure {
    /// `Retryable` (with `retry_after` as the floor of the delay) or `Permanent`, as `retryable` says.
    pub fn new(retryable: bool, error: String, retry_after: Option<Duration>) -> Self {
        match retryable {
            true => JobFailure::Retryable { error, retry_after },
            false => JobFailure::Permanent { error },
        }
    }
}

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<JobSuccess, JobFailure>> + Send + 'a>>;
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JobFailure>> + Send + 'a>>;

/// What a job does. Implemented by the provisioning pipeline, and by tests.
pub trait JobHandler: Send + Sync + 'static {
    fn handle<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a>;

    /// Asked while the workers are paused after a `CredentialsRefused`: still refused
    /// (`Err(CredentialsRefused)`) keeps them paused; anything else resumes the work.
    fn check_credentials(&self) -> CheckFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// Full-jitter exponential backoff: a random delay in [0, min(max, base * 2^(attempt-1))],
/// never less than the handler's `retry_after` hint.
pub fn backoff(attempt: u32, base: Duration, max: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
    let jittered = Duration::from_millis(rand::rng().random_range(0..=exp.as_millis() as u64));
    jittered.max(retry_after.unwrap_or(Duration::ZERO))
}

/// Why the workers are paused, and when to ask for credentials again.
struct Paused {
    reason: String,
    next_check: Moment,
}

/// When a failed attempt's job runs again: after `delay`, but at the retry window's end at the
/// latest, so the last retry is not lost to a delay that overshoots it; a `retry_after` hint from
/// upstream is still honoured (that attempt, if it fails, is the last).
fn next_attempt_at(now: i64, delay: Duration, retry_after: Option<Duration>, window_ends: i64) -> i64 {
    let floor = now + retry_after.unwrap_or(Duration::ZERO).as_millis() as i64;
    (now + delay.as_millis() as i64).min(window_ends.max(floor))
}

/// Runs queued jobs.
pub struct Worker {
    store: JobStore,
    handler: Arc<dyn JobHandler>,
    config: QueueConfig,
    /// Where attempts, dead letters and pauses are told (the audit trail and the metrics listen).
    bus: Bus,
    wake: Arc<Notify>,
    /// Set while Genesys refuses the credentials: nothing is claimed then.
    paused: std::sync::Mutex<Option<Paused>>,
}

impl Worker {
    pub fn new(
        store: JobStore,
        handler: Arc<dyn JobHandler>,
        config: QueueConfig,
        bus: Bus,
        wake: Arc<Notify>,
    ) -> Self {
        Worker { store, handler, config, bus, wake, paused: std::sync::Mutex::new(None) }
    }

    /// The clock of leases, backoff, heartbeats and pauses: the store's.
    fn clock(&self) -> &Clock {
        self.store.clock()
    }

    fn pause_state(&self) -> std::sync::MutexGuard<'_, Option<Paused>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the workers are paused because Genesys refuses the credentials.
    pub fn is_paused(&self) -> bool {
        self.pause_state().is_some()
    }

    /// Pauses the workers; the first job to find the credentials refused says so, once.
    async fn pause(&self, reason: &str) {
        {
            let mut paused = self.pause_state();
            if paused.is_some() {
                return;
            }
            *paused = Some(Paused {
                reason: reason.to_string(),
                next_check: self.clock().now() + self.config.auth_retry_interval,
            });
        }
        tracing::error!(
            reason,
            retry_every_secs = self.config.auth_retry_interval.as_secs_f64(),
            "Genesys refused the client credentials: workers paused, jobs stay queued"
        );
        let paused = Event::AuthPaused { reason, retry_every: self.config.auth_retry_interval };
        if let Err(e) = self.bus.emit_recorded(paused).await {
            tracing::error!(error = %e, "the outbox record of the workers' pause could not be written");
        }
    }

    /// While paused: waits for the next credentials check (or `stop`), asks, and resumes the
    /// work if the credentials are no longer refused.
    async fn check_credentials_when_due(&self, stop: &CancellationToken) {
        let Some(due) = self.pause_state().as_ref().map(|p| p.next_check) else { return };
        tokio::select! {
            _ = self.clock().sleep_until(due) => {},
            _ = stop.cancelled() => return,
        }
        match self.handler.check_credentials().await {
            Err(JobFailure::CredentialsRefused { error }) => {
                tracing::warn!(reason = %error, "Genesys still refuses the client credentials; workers stay paused");
                if let Some(p) = self.pause_state().as_mut() {
                    p.reason = error;
                    p.next_check = self.clock().now() + self.config.auth_retry_interval;
                }
            }
            _ => {
                let Some(was) = self.pause_state().take() else { return };
                tracing::info!("Genesys granted a token again: workers resume");
                if let Err(e) = self.bus.emit_recorded(Event::AuthRecovered { was: &was.reason }).await {
                    tracing::error!(error = %e, "the outbox record of the workers' resumption could not be written");
                }
            }
        }
    }

    /// Runs until `stop`: then claims nothing more, lets running jobs finish for the configured grace,
    /// and releases those still running back to the queue.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let tracker = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        // Expired final attempts are found on the lease's timescale; no need to look on every claim.
        let mut last_reap: Option<Moment> = None;
        while !stop.is_cancelled() {
            if self.is_paused() {
                self.check_credentials_when_due(&stop).await;
                continue;
            }
            // Register for wake-ups before looking, so a commit between the claim and the wait is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();

            let first = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = stop.cancelled() => break,
            };
            let mut held = vec![first];
            while let Ok(p) = permits.clone().try_acquire_owned() {
                held.push(p);
            }
            // Expired leases are looked for on the lease's timescale; new jobs on every pass.
            let now = self.clock().now();
            let look_for_expired =
                last_reap.is_none_or(|t| now.saturating_duration_since(t) >= self.config.poll_interval);
            if look_for_expired {
                last_reap = Some(now);
            }
            let claimed = match self.claim_due(held.len(), look_for_expired).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs failed; will retry");
                    drop(held);
                    tokio::select! {
                        _ = self.clock().sleep(self.config.poll_interval) => {},
                        _ = stop.cancelled() => {},
                    }
                    continue;
                }
            };
            let idle = claimed.is_empty();
            for job in claimed {
                let Some(permit) = held.pop() else { break };
                let this = self.clone();
                let hard_stop = hard_stop.clone();
                tracker.spawn(async move {
                    this.run_job(job, &hard_stop).await;
                    drop(permit);
                });
            }
            drop(held);
            if idle {
                let wait = self.idle_wait().await;
                tokio::select! {
                    _ = &mut woken => {},
                    _ = wait => {},
                    _ = stop.cancelled() => {},
                }
            }
        }
        tracker.close();
        let finished = tokio::select! {
            _ = tracker.wait() => true,
            _ = self.clock().sleep(self.config.shutdown_grace) => false,
        };
        if !finished {
            tracing::warn!("jobs still running after the shutdown grace period; releasing them to the queue");
            hard_stop.cancel();
            tracker.wait().await;
        }
    }

    /// Runs every job that is due now, claim after claim, until none is left; returns how many
    /// attempts were made. Lets tests and tools drive the queue without timers.
    pub async fn drain(self: &Arc<Self>) -> Result<usize, QueueError> {
        let never = CancellationToken::new();
        let mut ran = 0;
        loop {
            if self.is_paused() {
                return Ok(ran);
            }
            let jobs = self.claim_due(self.config.concurrency, true).await?;
            if jobs.is_empty() {
                return Ok(ran);
            }
            ran += jobs.len();
            // Each claim's jobs run at once, as the worker pool would run them.
            let mut running = tokio::task::JoinSet::new();
            for job in jobs {
                let (this, never) = (self.clone(), never.clone());
                running.spawn(async move { this.run_job(job, &never).await });
            }
            while running.join_next().await.is_some() {}
        }
    }

    /// What an idle worker sleeps on: the clock, until the next retry is due, at most one poll
    /// interval. A deadline, not a length, so a clock that moves on meanwhile (a test's) is not
    /// waited out a second time. A job already due that this pass did not get (another replica
    /// holds it) is looked for again after a few real milliseconds, a floor against spinning.
    async fn idle_wait(&self) -> crate::clock::Sleep {
        let clock = self.clock();
        let (now, now_ms) = (clock.now(), clock.now_ms());
        let poll = now + self.config.poll_interval;
        match self.store.next_due().await {
            Ok(Some(due)) if due <= now_ms => Box::pin(tokio::time::sleep(Duration::from_millis(5))),
            Ok(Some(due)) => clock.sleep_until(poll.min(now + Duration::from_millis((due - now_ms) as u64))),
            _ => clock.sleep_until(poll),
        }
    }

    /// Leases up to `limit` jobs: when `expired` is set, first dead-letters expired final attempts
    /// and takes over expired leases, then fills up with queued jobs that are due.
    async fn claim_due(&self, limit: usize, expired: bool) -> Result<Vec<Job>, QueueError> {
        let mut jobs = Vec::new();
        if self.is_paused() {
            return Ok(jobs);
        }
        if expired {
            self.reap().await;
            // Each job's lost attempt is recorded in the claim's transaction.
            let lost = |job: &Job| self.bus.records(&[Event::AttemptFinished(lost_attempt(job))]);
            jobs = self.store.claim_expired(limit, self.config.lease, &lost).await?;
            for job in &jobs {
                self.lost(job);
            }
        }
        let taken_over = jobs.len();
        if jobs.len() < limit {
            jobs.extend(self.store.claim(limit - jobs.len(), self.config.lease).await?);
        }
        for (i, job) in jobs.iter().enumerate() {
            self.bus.emit(Event::AttemptStarted { job, taken_over: i < taken_over });
        }
        Ok(jobs)
    }

    async fn reap(&self) {
        let dead = |job: &Job| {
            self.bus.records(&[Event::DeadLettered { job, reason: job.last_error.as_deref().unwrap_or_default() }])
        };
        match self.store.reap_expired_final_attempts(&dead).await {
            Ok(jobs) => {
                for job in jobs {
                    self.dead_lettered(&job, job.last_error.as_deref().unwrap_or_default());
                }
            }
            Err(e) => tracing::warn!(error = %e, "dead-lettering expired final attempts failed"),
        }
    }

    async fn run_job(&self, job: Job, hard_stop: &CancellationToken) {
        let started = Instant::now();
        let started_ms = self.clock().now_ms();
        let mut attempt = CatchUnwind(self.handler.handle(&job));
        // The lease is renewed three times per lease period, on the clock that grants it.
        let beat_every = self.config.lease / 3;
        let mut next_beat = self.clock().now() + beat_every;
        let outcome = loop {
            tokio::select! {
                r = &mut attempt => break Some(r),
                _ = hard_stop.cancelled() => break None,
                _ = self.clock().sleep_until(next_beat) => {
                    if let Ok(false) = self.store.extend_lease(&job, self.config.lease).await {
                        tracing::warn!(audit_id = %job.audit_id, "lease lost; another worker may have taken the job");
                    }
                    next_beat = self.clock().now() + beat_every;
                }
            }
        };
        drop(attempt);
        let took = started.elapsed();
        // What the pipeline told during the attempt: committed with its result, or dropped with it.
        let told = self.bus.take_attempt(job.audit_id);
        let outcome = match outcome {
            None => {
                self.release(&job, AttemptOutcome::Released, took).await;
                return;
            }
            Some(Ok(r)) => r,
            Some(Err(panic)) => {
                Err(JobFailure::Retryable { error: format!("the job handler panicked: {panic}"), retry_after: None })
            }
        };
        if let Err(JobFailure::CredentialsRefused { error }) = &outcome {
            tracing::warn!(audit_id = %job.audit_id, attempt = job.attempts, reason = %error,
                "job attempt failed: Genesys refused the credentials; the job goes back to the queue uncounted");
            self.pause(error).await;
            self.release(&job, AttemptOutcome::Paused, took).await;
            return;
        }
        let now = self.clock().now_ms();
        // Retries go on until the retry window has passed since the job was accepted (or replayed).
        let window_ends = job.retry_window_start().saturating_add(self.config.retry_window.as_millis() as i64);
        let (finish, status, detail) = match &outcome {
            Ok(success) => (Finish::Succeeded { result: &success.result }, AttemptOutcome::Succeeded, None),
            Err(JobFailure::Retryable { error, retry_after }) if now < window_ends => {
                let delay = backoff(job.run_attempts, self.config.backoff_base, self.config.backoff_max, *retry_after);
                let run_at = next_attempt_at(now, delay, *retry_after, window_ends);
                (Finish::Retry { run_at, error }, AttemptOutcome::Retry, Some(error.clone()))
            }
            Err(JobFailure::Retryable { error, .. }) => {
                let since = if job.replayed_at.is_some() { "replayed" } else { "accepted" };
                let detail = format!(
                    "{error} (gave up: the retry window of {} s since the job was {since} has passed; {} attempts in all)",
                    self.config.retry_window.as_secs(),
                    job.attempts
                );
                (Finish::Dead { error }, AttemptOutcome::Dead, Some(detail))
            }
            Err(JobFailure::Permanent { error } | JobFailure::CredentialsRefused { error }) => {
                (Finish::Dead { error }, AttemptOutcome::Dead, Some(error.clone()))
            }
        };
        if let Some(reason) = &detail {
            tracing::warn!(audit_id = %job.audit_id, attempt = job.attempts, outcome = status.as_str(), reason = %reason,
                "job attempt failed");
        }
        let run_at = match finish {
            Finish::Retry { run_at, .. } => Some(run_at),
            _ => None,
        };
        // Events borrow what they tell and are not `Send`: made where they are used, not held
        // across the commit.
        let finished = || {
            Event::AttemptFinished(Attempt {
                job: &job,
                outcome: status,
                took: Some(took),
                detail: detail.as_deref(),
                next_attempt_at: run_at,
                result: outcome.as_ref().ok().map(|s| &s.result),
            })
        };
        let ended = || match status {
            AttemptOutcome::Succeeded => Some(Event::Succeeded { job: &job }),
            AttemptOutcome::Dead => {
                Some(Event::DeadLettered { job: &job, reason: detail.as_deref().unwrap_or_default() })
            }
            AttemptOutcome::Retry | AttemptOutcome::Released | AttemptOutcome::Paused | AttemptOutcome::Lost => None,
        };
        // The attempt's outbox records go in the transaction that records its result.
        let mut records = told;
        records.extend(self.bus.record(&finished()));
        records.extend(ended().and_then(|e| self.bus.record(&e)));
        match self.store.finish(&job, started_ms, finish, &records).await {
            // An idle worker sleeps until the next retry it knew of; this one may be due sooner.
            Ok(true) if run_at.is_some() => self.wake.notify_waiters(),
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(audit_id = %job.audit_id, "attempt finished after its lease was taken over; result dropped");
                return;
            }
            Err(e) => {
                // Not recorded: the lease will expire and the job runs again. Nothing is lost.
                tracing::error!(audit_id = %job.audit_id, error = %e, "recording the attempt failed");
                return;
            }
        }
        self.bus.emit(finished());
        if let Some(ended) = ended() {
            if let Event::DeadLettered { reason, .. } = ended {
                tracing::warn!(audit_id = %job.audit_id, reason, "job moved to the dead letters");
            }
            self.bus.emit(ended);
        }
    }

    /// Gives a job back to the queue uncounted (`Released` at shutdown, `Paused` for refused credentials).
    async fn release(&self, job: &Job, outcome: AttemptOutcome, took: Duration) {
        match self.store.release(job).await {
            Ok(true) => self.bus.emit(Event::AttemptFinished(Attempt {
                job,
                outcome,
                took: Some(took),
                detail: None,
                next_attempt_at: None,
                result: None,
            })),
            Ok(false) => tracing::warn!(audit_id = %job.audit_id, "job not released: its lease was taken over"),
            Err(e) => {
                tracing::error!(audit_id = %job.audit_id, error = %e, "releasing job failed; its lease will expire")
            }
        }
    }

    /// The attempt before this claim was lost: its worker stopped or crashed while it ran.
    fn lost(&self, job: &Job) {
        let attempt = lost_attempt(job);
        tracing::warn!(audit_id = %job.audit_id, attempt = job.attempts.saturating_sub(1), reason = attempt.detail,
            "job attempt lost; another attempt takes over");
        self.bus.emit(Event::AttemptFinished(attempt));
    }

    fn dead_lettered(&self, job: &Job, reason: &str) {
        tracing::warn!(audit_id = %job.audit_id, reason, "job moved to the dead letters");
        self.bus.emit(Event::DeadLettered { job, reason });
    }
}

/// The attempt lost before `job`'s current claim (its worker stopped or crashed while it ran).
fn lost_attempt(job: &Job) -> Attempt<'_> {
    Attempt {
        job,
        outcome: AttemptOutcome::Lost,
        took: None,
        detail: Some("its lease expired: the worker stopped or crashed during the attempt"),
        next_attempt_at: None,
        result: None,
    }
}

pub fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Turns a panic inside a handler into an error for that one job instead of a lost worker task.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_and_honours_the_hint() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..200 {
            assert!(backoff(1, base, max, None) <= base);
            assert!(backoff(3, base, max, None) <= base * 4);
            assert!(backoff(30, base, max, None) <= max);
            assert!(backoff(1, base, max, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        }
        // Full jitter: the delays spread over the window rather than clustering at its top.
        let spread: Vec<_> = (0..200).map(|_| backoff(4, base, max, None)).collect();
        assert!(spread.iter().any(|d| *d < base * 2) && spread.iter().any(|d| *d > base * 6));
    }

    #[test]
    fn the_last_retry_lands_at_the_end_of_the_window_unless_upstream_asks_for_longer() {
        let secs = Duration::from_secs;
        assert_eq!(next_attempt_at(1_000, secs(5), None, 100_000), 6_000, "well inside the window");
        assert_eq!(next_attempt_at(1_000, secs(500), None, 100_000), 100_000, "capped at the window's end");
        let hinted = next_attempt_at(1_000, secs(500), Some(secs(200)), 100_000);
        assert_eq!(hinted, 201_000, "a Retry-After past the window is honoured");
    }
}
