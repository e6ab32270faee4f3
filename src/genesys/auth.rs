//! OAuth client credentials at `<login>/oauth/token`, and the token cache shared by every request.
//!
//! The cache refreshes a margin before `expires_in`. Callers that find it stale wait on one async
//! lock while the first of them refreshes, so a cold cache under 50 concurrent jobs makes ONE token
//! request (single flight).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::client::GenesysError;
use super::types::TokenResponse;
use crate::clock::{Clock, Moment};

/// Where and as whom to ask for tokens.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub login_url: String,
    pub region: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

struct Cached {
    token: SecretString,
    refresh_at: Moment,
}

/// The process's one bearer token.
pub struct TokenCache {
    credentials: Credentials,
    margin: Duration,
    current: Mutex<Option<Cached>>,
    requests: std::sync::atomic::AtomicU64,
    /// What a token's lifetime is measured on.
    clock: Clock,
}

impl TokenCache {
    pub fn new(credentials: Credentials, margin: Duration, clock: Clock) -> Self {
        TokenCache { credentials, margin, current: Mutex::new(None), requests: Default::default(), clock }
    }

    /// How many token requests were made (for tests and metrics).
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid token, fetching one when there is none or it is within the margin of expiry.
    pub async fn get(&self, http: &reqwest::Client) -> Result<SecretString, GenesysError> {
        // Holding the lock while refreshing is the single flight: the others wait, then reuse it.
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref().filter(|c| self.clock.now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fetched = self.fetch(http).await?;
        let lifetime = Duration::from_secs(fetched.expires_in);
        // A lifetime shorter than the margin is still used, for half of it.
        let usable = lifetime.checked_sub(self.margin).unwrap_or(lifetime / 2);
        let token = SecretString::from(fetched.access_token);
        *current = Some(Cached { token: token.clone(), refresh_at: self.clock.now() + usable });
        Ok(token)
    }

    /// Drops `token` if it is still the cached one (the API answered 401 to it).
    pub async fn invalidate(&self, token: &SecretString) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| c.token.expose_secret() == token.expose_secret()) {
            *current = None;
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<TokenResponse, GenesysError> {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let c = &self.credentials;
        let basic = B64.encode(format!("{}:{}", c.client_id, c.client_secret.expose_secret()));
        let region = c.region.clone();
        let answer = http
            .post(format!("{}/oauth/token", c.login_url))
            .header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| GenesysError::TokenTransport { region: region.clone(), reason: transport_reason(&e) })?;
        let status = answer.status();
        if !status.is_success() {
            return Err(GenesysError::Token { region, status: status.as_u16() });
        }
        answer.json::<TokenResponse>().await.map_err(|e| GenesysError::Decode(format!("token answer: {e}")))
    }
}

impl GenesysError {
    /// Genesys refused the client credentials themselves (a deleted or disabled OAuth client, a
    /// rotated secret: 401 or 400 `invalid_client`, or 403). No job can succeed until someone fixes
    /// them, so jobs wait instead of failing.
    pub fn is_credentials_refused(&self) -> bool {
        matches!(self, GenesysError::Token { status: 400 | 401 | 403, .. })
    }
}

/// What went wrong on the wire, without the URL (which is fine) or anything secret.
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.to_string()
    }
}
