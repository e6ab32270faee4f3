//! The one Genesys Cloud HTTP client of the process: pacing, token handling, retries, error mapping.
//!
//! - Pacing: requests leave at most at the configured rate (default 300/min per OAuth client), spaced
//!   evenly, so a backlog drains at the pace Genesys allows instead of as a storm of 429s. Replicas
//!   on one job store share that rate (`set_share`, kept current by `crate::replicas`).
//! - A 429 pauses the shared pace for `Retry-After` (3 s when absent), and an `inin-ratelimit-allowed`
//!   lower than our rate lowers it for good. Waits longer than `max_inline_wait` go back to the queue.
//! - 5xx, timeouts and connection errors are retried a few times here, then reported as retryable.
//! - A 401 drops the token and retries that request once.
//! - Every request carries an `ININ-Correlation-Id`; answers report it.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::auth::{Credentials, TokenCache, transport_reason};
use super::types::{SCIM_CONTENT_TYPE, ScimError};
use crate::clock::{Clock, Moment};

/// Errors of calls to Genesys. Texts name the region, status and Genesys detail, never a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenesysError {
    #[error("Genesys token request failed (region {region}): HTTP {status}")]
    Token { region: String, status: u16 },
    #[error("Genesys token endpoint unreachable (region {region}): {reason}")]
    TokenTransport { region: String, reason: String },
    #[error("Genesys rate limit: retry after {} s (correlation {correlation_id})", retry_after.as_secs())]
    RateLimited { retry_after: Duration, correlation_id: String },
    #[error("Genesys answered HTTP {status}{}: {detail} (correlation {correlation_id})", scim_type.as_deref().map(|t| format!(" {t}")).unwrap_or_default())]
    Api { status: u16, scim_type: Option<String>, detail: String, correlation_id: String },
    #[error("Genesys unreachable: {reason} (correlation {correlation_id})")]
    Transport { reason: String, correlation_id: String },
    /// The request could not be sent at all (a URL too long to send, say): it never left, and the
    /// same request will fail again.
    #[error("the request to Genesys cannot be sent: {0}")]
    Request(String),
    #[error("unexpected Genesys answer: {0}")]
    Decode(String),
}

impl GenesysError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            GenesysError::Token { status, .. } => *status >= 500 || *status == 429,
            GenesysError::TokenTransport { .. } | GenesysError::RateLimited { .. } | GenesysError::Transport { .. } => {
                true
            }
            GenesysError::Api { status, .. } => *status >= 500 || *status == 429,
            GenesysError::Decode(_) | GenesysError::Request(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GenesysError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GenesysError::Api { status, .. } | GenesysError::Token { status, .. } => Some(*status),
            GenesysError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The SCIM error type, e.g. `uniqueness`, `invalidValue`, `invalidVers`.
    pub fn scim_type(&self) -> Option<&str> {
        match self {
            GenesysError::Api { scim_type, .. } => scim_type.as_deref(),
            _ => None,
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            GenesysError::Api { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

/// Settings of the client.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub api_url: String,
    pub credentials: Credentials,
    pub requests_per_minute: u32,
    pub token_refresh_margin: Duration,
    pub timeout: Duration,
    /// A `Retry-After` up to this long is waited out in place; longer ones go back to the queue.
    pub max_inline_wait: Duration,
    /// Extra tries for 5xx, timeouts and connection errors before giving the job back to the queue.
    pub transient_retries: u32,
}

/// An answer that was not an error.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub correlation_id: String,
    pub body: Bytes,
}

impl Answer {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, GenesysError> {
        serde_json::from_slice(&self.body).map_err(|e| GenesysError::Decode(format!("HTTP {}: {e}", self.status)))
    }
}

/// Spaces requests evenly at this process's share of the allowed rate; a 429 pushes every waiting
/// request back.
struct Pace {
    /// Requests per minute Genesys allows the OAuth client: the configured rate, or less when an
    /// `inin-ratelimit-allowed` said so.
    allowed: u32,
    /// How many processes send with the same OAuth client (replicas whose workers run), this one
    /// included: each paces itself at `allowed / share`.
    share: u32,
    /// Between two requests of this process.
    interval: Duration,
    next: Moment,
}

impl Pace {
    fn new(allowed: u32, next: Moment) -> Self {
        Pace { allowed, share: 1, interval: pace_interval(allowed, 1), next }
    }

    /// Spaces the requests from now on by `interval`. When that is slower, the turns already
    /// handed out (up to one per waiting job, at the old spacing) are counted as if spaced at the
    /// new one: the next turn comes after them as late as that would put it, so a minute holds no
    /// more than the new rate allows. When it is faster they keep their spacing (never a burst).
    fn respace(&mut self, interval: Duration, now: Moment) {
        if interval > self.interval {
            let handed_out = self.next.saturating_duration_since(now);
            self.next = now + handed_out.mul_f64(interval.as_secs_f64() / self.interval.as_secs_f64());
        }
        self.interval = interval;
    }
}

/// The share of the allowed rate we use. Genesys counts a sliding minute by arrival, we space by
/// departure, so pacing exactly at the limit meets a 429 once the two drift apart; the headroom
/// absorbs that jitter (docs/performance.md has the benchmark).
const PACE_HEADROOM: f64 = 0.98;

/// The spacing of requests when `share` processes divide `per_minute` between them.
fn pace_interval(per_minute: u32, share: u32) -> Duration {
    Duration::from_secs_f64(60.0 * f64::from(share.max(1)) / (f64::from(per_minute.max(1)) * PACE_HEADROOM))
}

/// How the client paces its requests now (`GenesysClient::pace`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PaceView {
    /// Requests per minute Genesys allows the OAuth client (configured, or lowered by Genesys).
    pub allowed_per_minute: u32,
    /// Processes sharing that rate, this one included.
    pub share: u32,
    /// Requests per minute this process sends at most: its share, with the headroom taken off.
    pub per_minute: f64,
}

/// Counters for tests, the benchmark and metrics.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: std::sync::atomic::AtomicU64,
    pub rate_limited: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
}

pub struct GenesysClient {
    http: reqwest::Client,
    settings: ClientSettings,
    tokens: TokenCache,
    pace: Mutex<Pace>,
    pub stats: ClientStats,
    /// What the pace, the waits between tries and the token's lifetime run on.
    clock: Clock,
}

impl GenesysClient {
    /// The client for the configured region and credentials; None when no credentials are set.
    pub fn from_config(config: &crate::config::GenesysConfig) -> Option<Result<Self, GenesysError>> {
        let (client_id, client_secret) = (config.client_id.clone()?, config.client_secret.clone()?);
        Some(Self::new(ClientSettings {
            api_url: config.api_url.clone(),
            credentials: Credentials {
                login_url: config.login_url.clone(),
                region: config.region.clone(),
                client_id,
                client_secret,
            },
            requests_per_minute: config.requests_per_minute,
            token_refresh_margin: config.token_refresh_margin,
            timeout: config.request_timeout,
            max_inline_wait: config.max_inline_wait,
            transient_retries: 2,
        }))
    }

    pub fn new(settings: ClientSettings) -> Result<Self, GenesysError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("genesys-provisioner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GenesysError::Decode(format!("cannot build the HTTP client: {e}")))?;
        let clock = Clock::system();
        let tokens = TokenCache::new(settings.credentials.clone(), settings.token_refresh_margin, clock.clone());
        Ok(GenesysClient {
            http,
            tokens,
            pace: Mutex::new(Pace::new(settings.requests_per_minute, clock.now())),
            settings,
            stats: ClientStats::default(),
            clock,
        })
    }

    /// The client on `clock` (it is on the system clock otherwise), before its first request.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.tokens =
            TokenCache::new(self.settings.credentials.clone(), self.settings.token_refresh_margin, clock.clone());
        self.pace = Mutex::new(Pace::new(self.settings.requests_per_minute, clock.now()));
        self.clock = clock;
        self
    }

    pub fn token_requests(&self) -> u64 {
        self.tokens.requests()
    }

    /// A token from the cache, or asked for when none is cached: whether Genesys grants our credentials one.
    pub async fn check_token(&self) -> Result<(), GenesysError> {
        self.tokens.get(&self.http).await.map(|_| ())
    }

    /// The OAuth client this process acts as (Genesys names it in the audit events of its writes).
    pub fn client_id(&self) -> &str {
        &self.settings.credentials.client_id
    }

    pub fn api_url(&self) -> &str {
        &self.settings.api_url
    }

    fn pace_lock(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How requests are paced now.
    pub fn pace(&self) -> PaceView {
        let pace = self.pace_lock();
        PaceView { allowed_per_minute: pace.allowed, share: pace.share, per_minute: 60.0 / pace.interval.as_secs_f64() }
    }

    /// Paces this process at `1 / share` of the allowed rate: `share` processes (this one included)
    /// send with the same OAuth client. Takes effect from the next request that waits for its turn
    /// (see `Pace::respace` for the turns already handed out). Returns whether the share changed.
    pub fn set_share(&self, share: u32) -> bool {
        let mut pace = self.pace_lock();
        let share = share.max(1);
        if pace.share == share {
            return false;
        }
        pace.share = share;
        let interval = pace_interval(pace.allowed, share);
        pace.respace(interval, self.clock.now());
        true
    }

    /// Sends a request and returns any answer that is not a 401, 429 or 5xx (those are handled
    /// here); 4xx answers come back as `GenesysError::Api` with the SCIM error parsed.
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&B>,
        if_match: Option<&str>,
    ) -> Result<Answer, GenesysError> {
        use std::sync::atomic::Ordering::Relaxed;
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| GenesysError::Decode(e.to_string()))?),
            None => None,
        };
        let url = format!("{}{}", self.settings.api_url, path_and_query);
        let mut transient_left = self.settings.transient_retries;
        let mut reauthorised = false;
        let mut rate_limited = 0u32;
        loop {
            self.wait_turn().await;
            let token = self.tokens.get(&self.http).await?;
            let correlation_id = uuid::Uuid::new_v4().to_string();
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose_secret())
                .header("ININ-Correlation-Id", &correlation_id)
                .header(reqwest::header::ACCEPT, SCIM_CONTENT_TYPE);
            if let Some(b) = &body {
                req = req.header(reqwest::header::CONTENT_TYPE, SCIM_CONTENT_TYPE).body(b.clone());
            }
            if let Some(tag) = if_match {
                req = req.header(reqwest::header::IF_MATCH, tag);
            }
            self.stats.requests.fetch_add(1, Relaxed);
            let resp = match req.send().await {
                Ok(r) => r,
                // Not a transport failure: the request cannot be built (e.g. a URL over the length
                // an HTTP request may have). Without the URL, which may be that long.
                Err(e) if e.is_builder() => return Err(GenesysError::Request(e.without_url().to_string())),
                Err(e) => {
                    let reason = transport_reason(&e);
                    if transient_left > 0 {
                        transient_left -= 1;
                        self.stats.retried.fetch_add(1, Relaxed);
                        self.clock.sleep(self.transient_delay(transient_left)).await;
                        continue;
                    }
                    return Err(GenesysError::Transport { reason, correlation_id });
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let correlation_id = header("inin-correlation-id").unwrap_or(correlation_id);
            let body = resp.bytes().await.map_err(|e| GenesysError::Transport {
                reason: transport_reason(&e),
                correlation_id: correlation_id.clone(),
            })?;
            match status {
                401 if !reauthorised => {
                    reauthorised = true;
                    self.tokens.invalidate(&token).await;
                    continue;
                }
                429 => {
                    self.stats.rate_limited.fetch_add(1, Relaxed);
                    let retry_after = header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_secs(3));
                    let allowed = header("inin-ratelimit-allowed").and_then(|v| v.trim().parse::<u32>().ok());
                    self.slow_down(retry_after, allowed);
                    rate_limited += 1;
                    if retry_after > self.settings.max_inline_wait || rate_limited > 3 {
                        return Err(GenesysError::RateLimited { retry_after, correlation_id });
                    }
                    // The pace now starts after the wait; the next turn honours it.
                    continue;
                }
                s if s >= 500 && transient_left > 0 => {
                    transient_left -= 1;
                    self.stats.retried.fetch_add(1, Relaxed);
                    self.clock.sleep(self.transient_delay(transient_left)).await;
                    continue;
                }
                s if s >= 400 => {
                    let scim: Option<ScimError> = serde_json::from_slice(&body).ok();
                    let detail = scim
                        .as_ref()
                        .and_then(|e| e.detail.clone())
                        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(500).collect());
                    return Err(GenesysError::Api {
                        status: s,
                        scim_type: scim.and_then(|e| e.scim_type),
                        detail,
                        correlation_id,
                    });
                }
                _ => {
                    return Ok(Answer { status, etag: header("etag"), correlation_id, body });
                }
            }
        }
    }

    fn transient_delay(&self, left: u32) -> Duration {
        let tried = self.settings.transient_retries.saturating_sub(left);
        Duration::from_millis(200u64 << tried.min(5))
    }

    /// Waits for this request's slot in the shared pace.
    async fn wait_turn(&self) {
        let slot = {
            let mut pace = self.pace_lock();
            let now = self.clock.now();
            let slot = pace.next.max(now);
            pace.next = slot + pace.interval;
            slot
        };
        self.clock.sleep_until(slot).await;
    }

    /// After a 429: nobody sends before `retry_after` has passed, and if Genesys says it allows
    /// fewer requests than we pace for, the pace follows it (still divided among the replicas: the
    /// limit is the OAuth client's, not this process's).
    fn slow_down(&self, retry_after: Duration, allowed_per_minute: Option<u32>) {
        let mut pace = self.pace_lock();
        let now = self.clock.now();
        if let Some(allowed) = allowed_per_minute.filter(|a| *a > 0 && *a < pace.allowed) {
            tracing::warn!(allowed, "Genesys allows fewer requests per minute than configured; pacing down");
            pace.allowed = allowed;
            let interval = pace_interval(allowed, pace.share);
            pace.respace(interval, now);
        }
        pace.next = pace.next.max(now + retry_after);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{ClientSettings, GenesysClient};
    use crate::clock::ManualClock;
    use crate::genesys::auth::Credentials;

    fn client(per_minute: u32, manual: &ManualClock) -> GenesysClient {
        GenesysClient::new(ClientSettings {
            api_url: "http://127.0.0.1:9".into(),
            credentials: Credentials {
                login_url: "http://127.0.0.1:9".into(),
                region: "mypurecloud.com".into(),
                client_id: "id".into(),
                client_secret: "secret".to_string().into(),
            },
            requests_per_minute: per_minute,
            token_refresh_margin: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            max_inline_wait: Duration::from_secs(1),
            transient_retries: 0,
        })
        .unwrap()
        .with_clock(manual.clock())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.01
    }

    #[test]
    fn the_share_divides_the_pace_and_a_departed_replica_restores_it() {
        let client = client(600, &ManualClock::new());
        let alone = client.pace();
        assert_eq!((alone.allowed_per_minute, alone.share), (600, 1));
        assert!(close(alone.per_minute, 588.0), "{alone:?}");
        assert!(client.set_share(2));
        assert!(!client.set_share(2), "no change");
        assert!(close(client.pace().per_minute, 294.0), "{:?}", client.pace());
        // Genesys says the client may send fewer: the share divides that.
        client.slow_down(Duration::ZERO, Some(300));
        let lowered = client.pace();
        assert_eq!((lowered.allowed_per_minute, lowered.share), (300, 2));
        assert!(close(lowered.per_minute, 147.0), "{lowered:?}");
        // A higher `allowed` does not raise it again.
        client.slow_down(Duration::ZERO, Some(1_000));
        assert_eq!(client.pace().allowed_per_minute, 300);
        // The other replica stopped: this one has the whole (lowered) rate again.
        assert!(client.set_share(1));
        assert!(close(client.pace().per_minute, 294.0), "{:?}", client.pace());
        // Nobody is no share: a count of 0 means this process alone.
        assert!(!client.set_share(0));
        assert_eq!(client.pace().share, 1);
    }

    fn ready(turn: &mut std::pin::Pin<Box<impl std::future::Future<Output = ()>>>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        turn.as_mut().poll(&mut cx).is_ready()
    }

    /// For real, on the clock: a turn waits one shared interval after the one before.
    #[tokio::test]
    async fn turns_are_spaced_by_the_shared_interval() {
        let manual = ManualClock::new();
        let client = client(600, &manual);
        client.set_share(2);
        let interval = Duration::from_secs_f64(60.0 * 2.0 / (600.0 * super::PACE_HEADROOM));
        let within = Duration::from_secs(5);
        tokio::time::timeout(within, client.wait_turn()).await.expect("the first turn is now");
        let mut second = Box::pin(client.wait_turn());
        assert!(!ready(&mut second));
        manual.advance(interval - Duration::from_millis(2));
        assert!(!ready(&mut second), "a single process's interval is half as long: not yet");
        manual.advance(Duration::from_millis(2));
        tokio::time::timeout(within, second).await.expect("due after one shared interval");
    }

    /// Turns handed out at the full rate before another replica came are made up for: the next
    /// turn after them comes as late as if they had been spaced at the share.
    #[tokio::test]
    async fn a_larger_share_makes_up_for_the_turns_already_handed_out() {
        let manual = ManualClock::new();
        let client = client(600, &manual);
        let alone = Duration::from_secs_f64(60.0 / (600.0 * super::PACE_HEADROOM));
        // Three jobs wait for their turns: now, 1 and 2 intervals from now.
        let mut handed_out: Vec<_> = (0..3).map(|_| Box::pin(client.wait_turn())).collect();
        let now: Vec<bool> = handed_out.iter_mut().map(ready).collect();
        assert_eq!(now, [true, false, false]);
        client.set_share(2);
        // The fourth would have come 3 intervals from now; it comes after 3 shared ones (6 intervals).
        let mut fourth = Box::pin(client.wait_turn());
        manual.advance(alone * 2);
        assert!(handed_out[1..].iter_mut().all(ready), "the turns handed out keep their times");
        manual.advance(alone * 4 - Duration::from_millis(2));
        assert!(!ready(&mut fourth), "not yet");
        // (and a millisecond for the rounding of the stretched span)
        manual.advance(Duration::from_millis(3));
        tokio::time::timeout(Duration::from_secs(5), fourth).await.expect("due after the made-up spacing");
    }
}
