//! Any HTTP collector: a batch as one JSON array of records, POSTed to a URL, with a bearer token,
//! a Standard Webhooks signature (the service signs as a sender, `src/signing.rs`), both, or
//! neither. 2xx is delivered; 408, 429 and 5xx mean send again later; any other answer means the
//! destination refuses what it gets (misconfigured): the records are kept and sent again slowly.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::deliver::{SendError, chain, retry_after};
use crate::queue::outbox::PendingRecord;
use crate::signing::WebhookSecret;

pub struct HttpJson {
    http: reqwest::Client,
    url: String,
    authorization: Option<HeaderValue>,
    signing: Option<WebhookSecret>,
}

impl std::fmt::Debug for HttpJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpJson({})", self.url)
    }
}

impl HttpJson {
    pub fn new(
        url: &str,
        token: Option<&SecretString>,
        signing: Option<WebhookSecret>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = super::deliver::http_client(timeout)?;
        let authorization = match token {
            None => None,
            Some(t) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", t.expose_secret()))
                    .map_err(|_| "the token holds characters a header cannot carry".to_string())?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(HttpJson { http, url: url.to_string(), authorization, signing })
    }

    /// The batch as a JSON array of the records.
    pub fn body(batch: &[PendingRecord]) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.iter().map(|r| r.record.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, r) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r.record.as_bytes());
        }
        body.push(b']');
        body
    }

    pub async fn send(&self, batch: &[PendingRecord]) -> Result<(), SendError> {
        let body = Self::body(batch);
        let mut request = self.http.post(&self.url).header(CONTENT_TYPE, "application/json");
        if let Some(value) = &self.authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        if let Some(secret) = &self.signing {
            // The message id names the batch by its first and last outbox row: a resend of the same
            // batch carries the same id. Each record's eventId is what a receiver deduplicates by.
            let (first, last) = (batch.first().map_or(0, |r| r.id), batch.last().map_or(0, |r| r.id));
            let id = format!("msg_siem_{first}_{last}");
            for (name, value) in secret.headers(&id, chrono::Utc::now().timestamp(), &body) {
                request = request.header(name, value);
            }
        }
        let answer = request
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Unavailable { detail: format!("{} unreachable: {}", self.url, chain(&e)) })?;
        let status = answer.status().as_u16();
        let wait = retry_after(answer.headers());
        let text = answer.text().await.unwrap_or_default();
        judge(status, &text, wait)
    }
}

/// What the collector's answer means for the batch.
pub fn judge(status: u16, body: &str, wait: Option<Duration>) -> Result<(), SendError> {
    let detail = || format!("the collector answered {status}: {}", crate::audit::bounded_copy(body.trim()));
    match status {
        200..=299 => Ok(()),
        429 | 503 => Err(SendError::Busy { detail: detail(), retry_after: wait }),
        408 | 500..=599 => Err(SendError::Unavailable { detail: detail() }),
        _ => Err(SendError::Refused { detail: detail() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_one_json_array_and_answers_are_judged_by_status() {
        let record = |id, text: &str| PendingRecord { id, kind: "k".into(), at: 0, severity: 6, record: text.into() };
        let body = HttpJson::body(&[record(1, r#"{"a":1}"#), record(2, r#"{"b":2}"#)]);
        assert_eq!(body, br#"[{"a":1},{"b":2}]"#);
        assert!(judge(204, "", None).is_ok());
        assert!(matches!(judge(503, "", None), Err(SendError::Busy { .. })));
        assert!(matches!(judge(502, "", None), Err(SendError::Unavailable { .. })));
        assert!(matches!(judge(401, "no", None), Err(SendError::Refused { .. })));
    }
}
