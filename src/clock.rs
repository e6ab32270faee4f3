//! The one clock of the queue, the worker and the Genesys client: stored times, leases, heartbeats,
//! backoff, retry windows, retention, token expiry and pacing all read it, and wait on it.
//!
//! Production runs on the system clock. Tests give the App a `ManualClock`, which moves only when the
//! test advances it: a lease expires, a backoff ends or a retention period passes because the test
//! says so, not because a busy machine was slow. A sleep on the clock ends when the clock reaches its
//! deadline, so advancing a manual clock wakes whatever sleeps on it. (Tokio's paused time is not
//! used: it moves on by itself whenever the runtime idles, which is also while a database or HTTP
//! answer is on its way, and fires timeouts that real time never would.)
//!
//! Deadlines are `Moment`s on a monotonic scale, so a wall-clock step (NTP, a VM resumed) neither
//! stalls the pace of calls to Genesys nor ends a wait early; `now_ms` is the wall clock, for what is
//! stored and shown.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A clock: the system's, or a `ManualClock`'s. Cheap to clone; clones share one time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

#[derive(Debug)]
struct Manual {
    /// Unix milliseconds at the clock's origin.
    start_ms: i64,
    /// Time since the origin; every sleeper watches it.
    elapsed: watch::Sender<Duration>,
}

/// A point on a clock's monotonic scale (time since the clock's origin), for deadlines. Moments of
/// different clocks do not compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(Duration);

impl Moment {
    /// How long after `earlier` this is; zero when it is not after it.
    pub fn saturating_duration_since(self, earlier: Moment) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for Moment {
    type Output = Moment;
    fn add(self, d: Duration) -> Moment {
        Moment(self.0.saturating_add(d))
    }
}

/// A wait on a clock (`Clock::sleep`, `Clock::sleep_until`).
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where the system clock's moments count from: the first time the process asked.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn system_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Clock {
    /// The system clock (also `Clock::default()`).
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// Milliseconds since the Unix epoch: the time unit of the jobs table.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            None => system_now_ms(),
            Some(m) => m.start_ms.saturating_add(m.elapsed.borrow().as_millis() as i64),
        }
    }

    /// Now, on the monotonic scale deadlines use.
    pub fn now(&self) -> Moment {
        match &self.manual {
            None => Moment(origin().elapsed()),
            Some(m) => Moment(*m.elapsed.borrow()),
        }
    }

    /// Ends `d` from now.
    pub fn sleep(&self, d: Duration) -> Sleep {
        self.sleep_until(self.now() + d)
    }

    /// Ends when the clock reaches `deadline` (at once if it has).
    pub fn sleep_until(&self, deadline: Moment) -> Sleep {
        match &self.manual {
            None => match origin().checked_add(deadline.0) {
                Some(at) => Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(at))),
                // Further than an Instant reaches: as good as never (tokio caps it likewise).
                None => Box::pin(tokio::time::sleep(Duration::MAX)),
            },
            Some(m) => {
                let mut elapsed = m.elapsed.subscribe();
                Box::pin(async move {
                    while *elapsed.borrow_and_update() < deadline.0 {
                        if elapsed.changed().await.is_err() {
                            // The clock is gone, so it never moves again.
                            std::future::pending::<()>().await;
                        }
                    }
                })
            }
        }
    }
}

/// A clock that stands still until it is advanced, for tests (and tools that drive the service by
/// hand). `clock()` is what the App, the store and the client take.
#[derive(Clone, Debug)]
pub struct ManualClock {
    clock: Clock,
    manual: Arc<Manual>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// Starts at the system's time now (whole milliseconds), so stored times look like today's.
    pub fn new() -> Self {
        Self::starting_at(system_now_ms())
    }

    /// Starts at `unix_ms`.
    pub fn starting_at(unix_ms: i64) -> Self {
        let manual = Arc::new(Manual { start_ms: unix_ms, elapsed: watch::Sender::new(Duration::ZERO) });
        ManualClock { clock: Clock { manual: Some(manual.clone()) }, manual }
    }

    /// The clock to give the service.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Moves the clock on by `by`, waking every sleep whose deadline it reaches.
    pub fn advance(&self, by: Duration) {
        self.manual.elapsed.send_modify(|elapsed| *elapsed = elapsed.saturating_add(by));
    }

    /// Moves the clock on to `unix_ms`; nothing when it is there or past it already.
    pub fn advance_to(&self, unix_ms: i64) {
        let by = unix_ms.saturating_sub(self.now_ms());
        if by > 0 {
            self.advance(Duration::from_millis(by as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Clock, ManualClock};

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_is_advanced_to_its_deadline_not_before() {
        let manual = ManualClock::starting_at(1_000);
        let clock = manual.clock();
        let mut sleep = clock.sleep(Duration::from_secs(10));
        let poll = |s: &mut super::Sleep| {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            std::future::Future::poll(s.as_mut(), &mut cx).is_ready()
        };
        assert!(!poll(&mut sleep));
        manual.advance(Duration::from_secs(9));
        assert!(!poll(&mut sleep), "one second short");
        assert_eq!(clock.now_ms(), 10_000);
        manual.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleep).await.expect("woken by the advance");
        // A deadline already reached ends at once; advancing backwards does nothing.
        let at = clock.now();
        tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(at)).await.unwrap();
        manual.advance_to(5_000);
        assert_eq!(manual.now_ms(), 11_000);
        manual.advance_to(11_500);
        assert_eq!(clock.now().saturating_duration_since(at), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_in_real_time_and_a_far_deadline_does_not_overflow() {
        let clock = Clock::system();
        let before = std::time::Instant::now();
        clock.sleep(Duration::from_millis(20)).await;
        assert!(before.elapsed() >= Duration::from_millis(20));
        let never = clock.sleep(Duration::MAX);
        assert!(tokio::time::timeout(Duration::from_millis(10), never).await.is_err());
        let wall = clock.now_ms();
        assert!((wall - chrono::Utc::now().timestamp_millis()).abs() < 5_000);
    }
}
