//! Bearer tokens: issued by `POST /oauth/token`, checked on every `/api/v2` request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;

#[derive(Default)]
pub(crate) struct Tokens {
    /// Live tokens and when each expires.
    live: HashMap<String, Instant>,
    /// Every token ever issued, so tests can check none of them leaked into a log.
    issued: Vec<String>,
}

impl Tokens {
    /// Issues a random opaque token valid for `ttl`, forgetting expired ones.
    pub(crate) fn issue(&mut self, ttl: Duration) -> String {
        let now = Instant::now();
        self.live.retain(|_, expiry| *expiry > now);
        let bytes: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.live.insert(token.clone(), now + ttl);
        self.issued.push(token.clone());
        token
    }

    pub(crate) fn issued(&self) -> Vec<String> {
        self.issued.clone()
    }

    /// Makes every issued token invalid (as a revoked OAuth client or a rotated key would).
    pub(crate) fn revoke_all(&mut self) {
        self.live.clear();
    }

    pub(crate) fn is_valid(&self, token: &str) -> bool {
        self.live.get(token).is_some_and(|expiry| *expiry > Instant::now())
    }
}
