//! Live fault controls (rate limit, injected 5xx, latency, scripted write and read failures, strict emails,
//! strict attributes) and
//! the rate-limit window they drive. Changed through `&self` while the emulator serves.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

const WINDOW: Duration = Duration::from_secs(60);

/// The fault settings as `GET`/`POST /emulator/faults` show them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSettings {
    pub rate_limit_per_minute: Option<u32>,
    pub server_error_rate: f64,
    pub latency_ms: u64,
    pub fail_next_writes: Option<FailWrites>,
    pub fail_next_reads: Option<FailWrites>,
    pub strict_emails: bool,
    /// True (the default): an attribute outside the SDK models is refused with 400 `invalidValue`
    /// naming it; false: it is ignored on write. Either way it is never stored or returned.
    pub strict_attributes: bool,
}

/// The next `count` writes (or reads) answer `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailWrites {
    pub count: u32,
    pub status: u16,
}

struct State {
    rate_limit: Option<u32>,
    /// When each request admitted in the last minute arrived (sliding window, one per OAuth client).
    admitted: VecDeque<Instant>,
    server_error_rate: f64,
    latency: Duration,
    fail_writes: Option<FailWrites>,
    fail_reads: Option<FailWrites>,
    strict_emails: bool,
    strict_attributes: bool,
    concurrent_group_changes: u32,
    concurrent_user_changes: u32,
    keep_title: bool,
    /// Group PATCHes still to fail, and with which status.
    failing_group_patches: Option<FailWrites>,
    /// While set, the token endpoint refuses every client (401 `invalid_client`).
    refuse_credentials: bool,
}

/// The fault controls of a running emulator.
pub struct Faults {
    state: Mutex<State>,
}

/// What the rate limiter says about one request.
pub(super) struct RateInfo {
    pub allowed: u32,
    /// Requests counted in the window, this one included when admitted.
    pub count: u32,
    /// Whole seconds until the oldest counted request leaves the window (at least 1).
    pub reset_secs: u64,
    pub admitted: bool,
}

impl Faults {
    pub(super) fn new(rate_limit_per_minute: Option<u32>) -> Self {
        Faults {
            state: Mutex::new(State {
                rate_limit: rate_limit_per_minute,
                admitted: VecDeque::new(),
                server_error_rate: 0.0,
                latency: Duration::ZERO,
                fail_writes: None,
                fail_reads: None,
                strict_emails: true,
                strict_attributes: true,
                concurrent_group_changes: 0,
                concurrent_user_changes: 0,
                keep_title: false,
                failing_group_patches: None,
                refuse_credentials: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests per minute per OAuth client; None lifts the limit.
    pub fn set_rate_limit_per_minute(&self, limit: Option<u32>) {
        let mut s = self.lock();
        s.rate_limit = limit;
        if limit.is_none() {
            s.admitted.clear();
        }
    }

    /// Fraction (0..=1) of authorized API requests answered 503.
    pub fn set_server_error_rate(&self, rate: f64) {
        self.lock().server_error_rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
    }

    /// Delay added before every answer (the `/emulator/*` control routes excepted).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// The next `n` POST/PUT/PATCH/DELETE requests under `/api/v2` answer `status` with a SCIM error body
    /// (after auth and rate limiting). `n == 0` cancels.
    pub fn fail_next_writes(&self, n: u32, status: u16) {
        self.lock().fail_writes = (n > 0).then_some(FailWrites { count: n, status });
    }

    /// The next `n` GET requests under `/api/v2` answer `status` (after auth and rate limiting), e.g. a
    /// 403 for a client without the permission to read users. `n == 0` cancels.
    pub fn fail_next_reads(&self, n: u32, status: u16) {
        self.lock().fail_reads = (n > 0).then_some(FailWrites { count: n, status });
    }

    /// Takes one scripted read failure, if any is pending.
    pub(super) fn take_read_failure(&self) -> Option<u16> {
        let mut s = self.lock();
        let fail = s.fail_reads.as_mut()?;
        let status = fail.status;
        fail.count -= 1;
        if fail.count == 0 {
            s.fail_reads = None;
        }
        Some(status)
    }

    /// Strict (the default): a user attribute outside the SDK models is refused with 400
    /// `invalidValue` naming it. Lenient: it is ignored on write. It is never stored or returned.
    pub fn set_strict_attributes(&self, strict: bool) {
        self.lock().strict_attributes = strict;
    }

    pub(super) fn strict_attributes(&self) -> bool {
        self.lock().strict_attributes
    }

    /// The next `n` group PATCHes find that someone else changed the group since it was read: its
    /// version moves on just before the `If-Match` check, as a concurrent admin edit would.
    pub fn stale_next_group_patches(&self, n: u32) {
        self.lock().concurrent_group_changes = n;
    }

    /// Takes one pending concurrent group change, if any.
    pub(super) fn take_concurrent_group_change(&self) -> bool {
        let mut s = self.lock();
        let pending = s.concurrent_group_changes > 0;
        s.concurrent_group_changes = s.concurrent_group_changes.saturating_sub(1);
        pending
    }

    /// Like `stale_next_group_patches`, for user PATCHes: someone else edited the user since it was read.
    pub fn stale_next_user_patches(&self, n: u32) {
        self.lock().concurrent_user_changes = n;
    }

    /// While set, user PATCHes answer success but keep the user's `title` as it was, as a Genesys that
    /// stores a different value than it was sent would (the service must report the discrepancy).
    pub fn keep_user_titles(&self, keep: bool) {
        self.lock().keep_title = keep;
    }

    pub(super) fn keeps_title(&self) -> bool {
        self.lock().keep_title
    }

    pub(super) fn take_concurrent_user_change(&self) -> bool {
        let mut s = self.lock();
        let pending = s.concurrent_user_changes > 0;
        s.concurrent_user_changes = s.concurrent_user_changes.saturating_sub(1);
        pending
    }

    /// The next `n` group PATCHes answer `status` (after auth), whatever other writes do: a step that
    /// fails after the user was created. `n == 0` cancels.
    pub fn fail_next_group_patches(&self, n: u32, status: u16) {
        self.lock().failing_group_patches = (n > 0).then_some(FailWrites { count: n, status });
    }

    /// Takes one scripted group PATCH failure, if any is pending.
    pub(super) fn take_group_patch_failure(&self) -> Option<u16> {
        let mut s = self.lock();
        let fail = s.failing_group_patches.as_mut()?;
        let status = fail.status;
        fail.count -= 1;
        if fail.count == 0 {
            s.failing_group_patches = None;
        }
        Some(status)
    }

    /// While true, `POST /oauth/token` answers 401 `invalid_client` to every client, as Genesys does
    /// for a deleted or disabled OAuth client or a rotated secret.
    pub fn refuse_credentials(&self, refuse: bool) {
        self.lock().refuse_credentials = refuse;
    }

    pub(super) fn refuses_credentials(&self) -> bool {
        self.lock().refuse_credentials
    }

    /// When true (the default), created/changed emails must be trimmed and lower-case and userName must
    /// equal the work email.
    pub fn set_strict_emails(&self, strict: bool) {
        self.lock().strict_emails = strict;
    }

    /// The current settings.
    pub fn settings(&self) -> FaultSettings {
        let s = self.lock();
        FaultSettings {
            rate_limit_per_minute: s.rate_limit,
            server_error_rate: s.server_error_rate,
            latency_ms: s.latency.as_millis() as u64,
            fail_next_writes: s.fail_writes,
            fail_next_reads: s.fail_reads,
            strict_emails: s.strict_emails,
            strict_attributes: s.strict_attributes,
        }
    }

    pub(super) fn latency(&self) -> Duration {
        self.lock().latency
    }

    pub(super) fn strict_emails(&self) -> bool {
        self.lock().strict_emails
    }

    /// Counts one request against the window; None when there is no limit.
    pub(super) fn admit(&self) -> Option<RateInfo> {
        let mut s = self.lock();
        let allowed = s.rate_limit?;
        let now = Instant::now();
        while s.admitted.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            s.admitted.pop_front();
        }
        let admitted = (s.admitted.len() as u64) < u64::from(allowed);
        if admitted {
            s.admitted.push_back(now);
        }
        let reset = match s.admitted.front() {
            Some(oldest) => WINDOW.saturating_sub(now.duration_since(*oldest)),
            None => WINDOW,
        };
        let reset_secs = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
        Some(RateInfo { allowed, count: s.admitted.len() as u32, reset_secs: reset_secs.max(1), admitted })
    }

    /// Takes one scripted write failure, if any is pending.
    pub(super) fn take_write_failure(&self) -> Option<u16> {
        let mut s = self.lock();
        let fail = s.fail_writes.as_mut()?;
        let status = fail.status;
        fail.count -= 1;
        if fail.count == 0 {
            s.fail_writes = None;
        }
        Some(status)
    }

    /// Whether this request gets an injected 503.
    pub(super) fn roll_server_error(&self) -> bool {
        let rate = self.lock().server_error_rate;
        rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_up_to_the_limit_then_refuses() {
        let f = Faults::new(Some(2));
        assert!(f.admit().unwrap().admitted);
        assert!(f.admit().unwrap().admitted);
        let refused = f.admit().unwrap();
        assert!(!refused.admitted);
        assert_eq!((refused.count, refused.allowed), (2, 2));
        assert!((1..=60).contains(&refused.reset_secs));
        f.set_rate_limit_per_minute(None);
        assert!(f.admit().is_none());
    }

    #[test]
    fn scripted_failures_run_out() {
        let f = Faults::new(None);
        f.fail_next_writes(2, 500);
        assert_eq!(f.take_write_failure(), Some(500));
        assert_eq!(f.take_write_failure(), Some(500));
        assert_eq!(f.take_write_failure(), None);
    }
}
