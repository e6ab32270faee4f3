//! Standard Webhooks signatures: HMAC-SHA256 over `id.timestamp.body`, sent as `v1,<base64>`.
//!
//! Several signatures may be sent at once (space separated) and several secrets may be configured,
//! so either side can rotate its secret without a window where events are refused.
//!
//! Not part of `http/`: the configuration parses the secrets and the `send-webhook` command signs
//! with them, and neither should depend on the HTTP edge that verifies.

use std::fmt;
use std::time::Duration;

use axum::http::HeaderName;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Header names of the Standard Webhooks specification.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// The same three names, ready for header lookups.
pub const ID_HEADER: HeaderName = HeaderName::from_static(HEADER_ID);
pub const TIMESTAMP_HEADER: HeaderName = HeaderName::from_static(HEADER_TIMESTAMP);
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static(HEADER_SIGNATURE);

/// A signing key decoded from its `whsec_<base64>` form, held as the HMAC keyed with it (keyed once,
/// where a failure is a refused secret, then cloned per message). Never printed.
#[derive(Clone)]
pub struct WebhookSecret {
    keyed: HmacSha256,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    /// Accepts `whsec_<base64>`; the key must decode to at least 16 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded =
            text.strip_prefix("whsec_").ok_or_else(|| "must start with whsec_ followed by base64".to_string())?;
        let key = B64.decode(encoded).map_err(|_| "the part after whsec_ is not valid base64".to_string())?;
        if key.len() < 16 {
            return Err(format!("the key is {} bytes; at least 16 are needed", key.len()));
        }
        let keyed = HmacSha256::new_from_slice(&key).map_err(|e| format!("the key cannot key an HMAC: {e}"))?;
        Ok(WebhookSecret { keyed })
    }

    /// `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", B64.encode(self.mac(id, &timestamp.to_string(), body)))
    }

    /// The three headers a sender attaches: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
        [
            (HEADER_ID, id.to_string()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_SIGNATURE, self.sign(id, timestamp, body)),
        ]
    }

    /// `timestamp` is the header's text as sent: that is what the sender signed.
    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

/// A secret a caller sends as it is, in a header: a Genesys data action or an API destination can
/// send a fixed header but cannot sign. Compared by SHA-256 digest in constant time, so the time a
/// comparison takes says nothing about the secret, its length included. Never printed.
#[derive(Clone)]
pub struct SharedSecret(secrecy::SecretString);

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret([redacted])")
    }
}

impl SharedSecret {
    /// Shortest secret accepted: a guessable one would let anybody through.
    pub const MIN_LEN: usize = 16;

    pub fn parse(text: &str) -> Result<Self, String> {
        match text.len() < Self::MIN_LEN {
            true => Err(format!("is too short (at least {} characters)", Self::MIN_LEN)),
            false => Ok(SharedSecret(secrecy::SecretString::from(text.to_string()))),
        }
    }

    /// Whether `presented` is the secret.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use secrecy::ExposeSecret;
        let expected = Sha256::digest(self.0.expose_secret().as_bytes());
        bool::from(Sha256::digest(presented).ct_eq(&expected))
    }
}

/// Why a request's signature was refused. The texts name the problem, never a signature or key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("Missing webhook signature headers: {0}")]
    MissingHeaders(String),
    #[error("Invalid webhook-timestamp: not a Unix time in seconds")]
    BadTimestamp,
    #[error("Webhook timestamp is outside the allowed tolerance")]
    TimestampOutOfTolerance,
    #[error("Invalid webhook signature")]
    NoMatch,
}

/// The three signature headers of one request, as sent.
pub struct SignedRequest<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks a request against every configured secret; any `v1` signature matching any secret passes.
pub fn verify(
    secrets: &[WebhookSecret],
    request: &SignedRequest<'_>,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut missing = Vec::new();
    if request.id.is_none_or(str::is_empty) {
        missing.push(HEADER_ID);
    }
    if request.timestamp.is_none_or(str::is_empty) {
        missing.push(HEADER_TIMESTAMP);
    }
    if request.signature.is_none_or(str::is_empty) {
        missing.push(HEADER_SIGNATURE);
    }
    if !missing.is_empty() {
        return Err(SignatureError::MissingHeaders(missing.join(", ")));
    }
    let (id, ts, sigs) =
        (request.id.unwrap_or_default(), request.timestamp.unwrap_or_default(), request.signature.unwrap_or_default());
    let timestamp: i64 = ts.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    if now_unix.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::TimestampOutOfTolerance);
    }
    let offered: Vec<Vec<u8>> =
        sigs.split(' ').filter_map(|s| s.strip_prefix("v1,")).filter_map(|b| B64.decode(b).ok()).collect();
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        // Over the header text as sent, not the parsed number: `+1614265330` or `01614265330` is
        // signed as written, and re-formatting it would refuse a correctly signed request.
        let expected = secret.mac(id, ts, body);
        for sig in &offered {
            // Constant time per comparison; every pair is compared so timing does not say which matched.
            matched |= expected.as_slice().ct_eq(sig.as_slice());
        }
    }
    if bool::from(matched) { Ok(()) } else { Err(SignatureError::NoMatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn req<'a>(sig: &'a str, ts: &'a str) -> SignedRequest<'a> {
        SignedRequest { id: Some(ID), timestamp: Some(ts), signature: Some(sig) }
    }

    #[test]
    fn matches_the_reference_vector() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TS, BODY.as_bytes()), EXPECTED);
        let tol = Duration::from_secs(300);
        assert_eq!(verify(&[secret], &req(EXPECTED, "1614265330"), BODY.as_bytes(), TS, tol), Ok(()));
    }

    #[test]
    fn refuses_a_changed_body_old_timestamp_or_unknown_version() {
        let secrets = [WebhookSecret::parse(SECRET).unwrap()];
        let tol = Duration::from_secs(300);
        let ts = TS.to_string();
        assert_eq!(
            verify(&secrets, &req(EXPECTED, &ts), br#"{"test": 2432232315}"#, TS, tol),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(&secrets, &req(EXPECTED, &ts), BODY.as_bytes(), TS + 301, tol),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        let v2 = EXPECTED.replacen("v1,", "v2,", 1);
        assert_eq!(verify(&secrets, &req(&v2, &ts), BODY.as_bytes(), TS, tol), Err(SignatureError::NoMatch));
        assert_eq!(
            verify(&secrets, &req(EXPECTED, "soon"), BODY.as_bytes(), TS, tol),
            Err(SignatureError::BadTimestamp)
        );
    }

    #[test]
    fn any_of_several_signatures_and_secrets_may_match() {
        let old = WebhookSecret::parse(SECRET).unwrap();
        let new = WebhookSecret::parse("whsec_bmV3LXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmchIQ==").unwrap();
        let tol = Duration::from_secs(300);
        let both = format!("{} {}", new.sign(ID, TS, BODY.as_bytes()), old.sign(ID, TS, BODY.as_bytes()));
        let ts = TS.to_string();
        assert_eq!(verify(std::slice::from_ref(&old), &req(&both, &ts), BODY.as_bytes(), TS, tol), Ok(()));
        let only_new = new.sign(ID, TS, BODY.as_bytes());
        assert_eq!(verify(&[old.clone(), new], &req(&only_new, &ts), BODY.as_bytes(), TS, tol), Ok(()));
        assert_eq!(verify(&[old], &req(&only_new, &ts), BODY.as_bytes(), TS, tol), Err(SignatureError::NoMatch));
    }

    /// Standard Webhooks signs `id.timestamp.body` with the timestamp header's text as sent: a
    /// sender that writes `+1614265330` or `01614265330` signs those characters, not the number.
    #[test]
    fn the_timestamp_is_verified_as_sent_not_as_reformatted() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let tol = Duration::from_secs(300);
        for sent in ["01614265330", "+1614265330"] {
            let key = B64.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
            let mut mac = HmacSha256::new_from_slice(&key).unwrap();
            mac.update(format!("{ID}.{sent}.{BODY}").as_bytes());
            let signature = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
            let secrets = std::slice::from_ref(&secret);
            assert_eq!(verify(secrets, &req(&signature, sent), BODY.as_bytes(), TS, tol), Ok(()), "{sent}");
            // The reformatted number is another text: its signature does not match this header.
            assert_eq!(
                verify(secrets, &req(EXPECTED, sent), BODY.as_bytes(), TS, tol),
                Err(SignatureError::NoMatch),
                "{sent}"
            );
        }
    }

    #[test]
    fn names_missing_headers() {
        let secrets = [WebhookSecret::parse(SECRET).unwrap()];
        let r = SignedRequest { id: Some(ID), timestamp: None, signature: Some("") };
        assert_eq!(
            verify(&secrets, &r, b"{}", TS, Duration::from_secs(300)),
            Err(SignatureError::MissingHeaders("webhook-timestamp, webhook-signature".into()))
        );
    }

    #[test]
    fn a_shared_secret_matches_only_itself_and_is_never_printed() {
        let secret = SharedSecret::parse("a-shared-secret-0123456789").unwrap();
        assert!(secret.matches(b"a-shared-secret-0123456789"));
        for wrong in
            [&b"a-shared-secret-012345678"[..], b"a-shared-secret-01234567890", b"", b"A-SHARED-SECRET-0123456789"]
        {
            assert!(!secret.matches(wrong));
        }
        assert_eq!(format!("{secret:?}"), "SharedSecret([redacted])");
        assert!(SharedSecret::parse("short").unwrap_err().contains("at least 16"));
    }

    #[test]
    fn bad_secrets_are_refused_without_echo() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err().contains("bytes"));
        assert_eq!(format!("{:?}", WebhookSecret::parse(SECRET).unwrap()), "WebhookSecret([redacted])");
    }
}
