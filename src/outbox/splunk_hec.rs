//! Splunk's HTTP Event Collector: `POST <url>/services/collector/event` with `Authorization: Splunk
//! <token>`, a batch as concatenated event envelopes (`time`, `host`, `source`, `sourcetype`,
//! `index`, `event`), which is how HEC takes several events in one request.
//!
//! HEC's answers: 200 is every event accepted; 503 ("Server is busy", code 9) and 429 mean back off
//! and send again; 400, 401 and 403 with a HEC error code (invalid token, incorrect index, ...) mean
//! the destination is misconfigured: the records are kept and sent again slowly until an operator
//! fixes it.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::deliver::{SendError, retry_after};
use crate::queue::outbox::PendingRecord;

/// A HEC endpoint and how every event is enveloped.
pub struct SplunkHec {
    http: reqwest::Client,
    endpoint: String,
    authorization: HeaderValue,
    /// `,"host":…,"source":…,"sourcetype":…[,"index":…],"event":`: the same for every event.
    envelope: String,
}

impl std::fmt::Debug for SplunkHec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SplunkHec({})", self.endpoint)
    }
}

/// HEC's path for JSON events, after the collector's base URL.
pub const EVENT_PATH: &str = "/services/collector/event";

impl SplunkHec {
    pub fn new(
        url: &str,
        token: &SecretString,
        index: Option<&str>,
        source: &str,
        sourcetype: &str,
        host: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = super::deliver::http_client(timeout)?;
        let mut authorization = HeaderValue::from_str(&format!("Splunk {}", token.expose_secret()))
            .map_err(|_| "the HEC token holds characters a header cannot carry".to_string())?;
        authorization.set_sensitive(true);
        let json = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
        let mut envelope =
            format!(",\"host\":{},\"source\":{},\"sourcetype\":{}", json(host), json(source), json(sourcetype));
        if let Some(index) = index {
            envelope.push_str(&format!(",\"index\":{}", json(index)));
        }
        envelope.push_str(",\"event\":");
        Ok(SplunkHec { http, endpoint: format!("{url}{EVENT_PATH}"), authorization, envelope })
    }

    /// The URL events are posted to (holds no secret: the token goes in a header).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The batch as HEC takes it: one envelope per record, one per line.
    pub fn body(&self, batch: &[PendingRecord]) -> Vec<u8> {
        let size = batch.iter().map(|r| r.record.len() + self.envelope.len() + 32).sum();
        let mut body = Vec::with_capacity(size);
        for r in batch {
            // HEC's `time`: Unix seconds, with milliseconds.
            let at = r.at.max(0);
            body.extend_from_slice(format!("{{\"time\":{}.{:03}", at / 1000, at % 1000).as_bytes());
            body.extend_from_slice(self.envelope.as_bytes());
            body.extend_from_slice(r.record.as_bytes());
            body.extend_from_slice(b"}\n");
        }
        body
    }

    pub async fn send(&self, batch: &[PendingRecord]) -> Result<(), SendError> {
        let answer = self
            .http
            .post(&self.endpoint)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(self.body(batch))
            .send()
            .await
            .map_err(|e| SendError::Unavailable {
                detail: format!("HEC unreachable: {}", super::deliver::chain(&e)),
            })?;
        let status = answer.status().as_u16();
        let wait = retry_after(answer.headers());
        let text = answer.text().await.unwrap_or_default();
        judge(status, &text, wait)
    }
}

/// What HEC's answer means for the batch.
pub fn judge(status: u16, body: &str, wait: Option<Duration>) -> Result<(), SendError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    // `{"text":"Incorrect index","code":7}`: HEC says what is wrong.
    let said = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| Some(format!("{} (HEC code {})", v.get("text")?.as_str()?, v.get("code")?)))
        .unwrap_or_else(|| crate::audit::bounded_copy(body.trim()));
    let detail = format!("HEC answered {status}: {said}");
    match status {
        429 | 503 => Err(SendError::Busy { detail, retry_after: wait }),
        400..=499 => Err(SendError::Refused { detail }),
        _ => Err(SendError::Unavailable { detail }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_gets_the_hec_envelope_one_per_line() {
        let token = SecretString::from("tok".to_string());
        let hec = SplunkHec::new("https://s:8088", &token, Some("audit"), "gp", "_json", "h1", Duration::from_secs(1))
            .unwrap();
        assert_eq!(hec.endpoint(), "https://s:8088/services/collector/event");
        let batch = [
            PendingRecord { id: 1, kind: "k".into(), at: 1_700_000_000_123, severity: 6, record: r#"{"a":1}"#.into() },
            PendingRecord { id: 2, kind: "k".into(), at: 1_700_000_000_004, severity: 6, record: r#"{"b":2}"#.into() },
        ];
        let body = String::from_utf8(hec.body(&batch)).unwrap();
        assert_eq!(
            body,
            "{\"time\":1700000000.123,\"host\":\"h1\",\"source\":\"gp\",\"sourcetype\":\"_json\",\"index\":\"audit\",\"event\":{\"a\":1}}\n\
             {\"time\":1700000000.004,\"host\":\"h1\",\"source\":\"gp\",\"sourcetype\":\"_json\",\"index\":\"audit\",\"event\":{\"b\":2}}\n"
        );
        assert!(!format!("{hec:?}").contains("tok"));
    }

    #[test]
    fn busy_answers_are_retried_and_hec_error_codes_are_misconfiguration() {
        assert!(judge(200, r#"{"text":"Success","code":0}"#, None).is_ok());
        let busy = judge(503, r#"{"text":"Server is busy","code":9}"#, Some(Duration::from_secs(3))).unwrap_err();
        assert!(
            matches!(&busy, SendError::Busy { retry_after: Some(d), .. } if *d == Duration::from_secs(3)),
            "{busy:?}"
        );
        assert_eq!(busy.to_string(), "HEC answered 503: Server is busy (HEC code 9)");
        assert!(matches!(judge(429, "", None), Err(SendError::Busy { .. })));
        let refused = judge(403, r#"{"text":"Invalid token","code":4}"#, None).unwrap_err();
        assert!(matches!(refused, SendError::Refused { .. }));
        assert_eq!(refused.to_string(), "HEC answered 403: Invalid token (HEC code 4)");
        assert!(matches!(judge(400, r#"{"text":"Incorrect index","code":7}"#, None), Err(SendError::Refused { .. })));
        assert!(matches!(judge(500, "oops", None), Err(SendError::Unavailable { .. })));
    }
}
