//! The one Genesys Cloud HTTP client of the process: pacing, token handling, retries, error mapping.
//!
//! - Pacing: requests leave at most at the configured rate (default 300/min per OAuth client), spaced
//!   evenly, so a backlog drains at the pace Genesys allows instead of as a storm of 429s.
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

/// Spaces requests evenly at the allowed rate; a 429 pushes every waiting request back.
struct Pace {
    interval: Duration,
    next: Moment,
}

/// The share of the allowed rate we use. Genesys counts a sliding minute by arrival, we space by
/// departure, so pacing exactly at the limit meets a 429 once the two drift apart; the headroom
/// absorbs that jitter (docs/performance.md has the benchmark).
const PACE_HEADROOM: f64 = 0.98;

fn pace_interval(per_minute: u32) -> Duration {
    Duration::from_secs_f64(60.0 / (f64::from(per_minute.max(1)) * PACE_HEADROOM))
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
        let interval = pace_interval(settings.requests_per_minute);
        let tokens = TokenCache::new(settings.credentials.clone(), settings.token_refresh_margin, clock.clone());
        Ok(GenesysClient {
            http,
            settings,
            tokens,
            pace: Mutex::new(Pace { interval, next: clock.now() }),
            stats: ClientStats::default(),
            clock,
        })
    }

    /// The client on `clock` (it is on the system clock otherwise), before its first request.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        let interval = pace_interval(self.settings.requests_per_minute);
        self.tokens =
            TokenCache::new(self.settings.credentials.clone(), self.settings.token_refresh_margin, clock.clone());
        self.pace = Mutex::new(Pace { interval, next: clock.now() });
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

    pub fn api_url(&self) -> &str {
        &self.settings.api_url
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
            let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.clock.now();
            let slot = pace.next.max(now);
            pace.next = slot + pace.interval;
            slot
        };
        self.clock.sleep_until(slot).await;
    }

    /// After a 429: nobody sends before `retry_after` has passed, and if Genesys says it allows
    /// fewer requests than we pace for, the pace follows it.
    fn slow_down(&self, retry_after: Duration, allowed_per_minute: Option<u32>) {
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.next = pace.next.max(self.clock.now() + retry_after);
        if let Some(allowed) = allowed_per_minute.filter(|a| *a > 0) {
            let theirs = pace_interval(allowed);
            if theirs > pace.interval {
                tracing::warn!(allowed, "Genesys allows fewer requests per minute than configured; pacing down");
                pace.interval = theirs;
            }
        }
    }
}
