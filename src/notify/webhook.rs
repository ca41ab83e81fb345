//! Webhooks: each notice POSTed as JSON to the configured URLs, signed so that the receiver
//! can check it came from the hotline and was not replayed:
//!
//! ```text
//! X-Hotline-Event: voicemail_new
//! X-Hotline-Delivery: 42                      (the outbox row: the same on a resend)
//! X-Hotline-Signature: t=1767225600,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>
//! ```
//!
//! A 2xx answer is delivery; 4xx other than 408/429 is a permanent refusal; anything else
//! (5xx, timeouts, refused connections) is retried.

use super::{NotifyError, WebhookConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// The webhook client and the signing key of each configured URL.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    secrets: HashMap<String, Option<String>>,
}

impl Webhooks {
    pub fn new(hooks: &[WebhookConfig]) -> Result<Webhooks, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Hotline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Config(format!("webhook client: {e}")))?;
        Ok(Webhooks {
            client,
            secrets: hooks
                .iter()
                .map(|h| (h.url.clone(), h.resolve_secret()))
                .collect(),
        })
    }

    /// POSTs `{"delivery": id, "event": …, "data": payload}` to `url`.
    pub async fn send(
        &self,
        id: i64,
        url: &str,
        event: &str,
        payload: &str,
    ) -> Result<(), NotifyError> {
        let Some(secret) = self.secrets.get(url) else {
            // A notice enqueued for a hook since removed from the config.
            return Err(NotifyError::Permanent(format!(
                "webhook {url} is no longer configured"
            )));
        };
        let data: serde_json::Value = serde_json::from_str(payload)
            .map_err(|e| NotifyError::Permanent(format!("stored payload: {e}")))?;
        let body = serde_json::json!({ "delivery": id, "event": event, "data": data }).to_string();
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-hotline-event", event)
            .header("x-hotline-delivery", id.to_string());
        if let Some(secret) = secret {
            let t = chrono::Utc::now().timestamp();
            request = request.header("x-hotline-signature", signature(secret, t, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| NotifyError::Transient(format!("webhook {url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(NotifyError::Permanent(format!("webhook {url}: {status}")))
        } else {
            Err(NotifyError::Transient(format!("webhook {url}: {status}")))
        }
    }
}

/// The `X-Hotline-Signature` value of `body` sent at Unix time `t`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body)))
}

/// Checks a signature header as a receiver would: the MAC matches (in constant time) and
/// `t` is within `tolerance_s` of `now`.
pub fn verify(secret: &str, header: &str, body: &str, now: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance_s {
        return false;
    }
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    m.update(format!("{t}.{body}").as_bytes());
    m.verify_slice(&v1).is_ok()
}

fn mac(secret: &str, t: i64, body: &str) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    m.update(format!("{t}.{body}").as_bytes());
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let body = r#"{"delivery":1,"event":"voicemail_new","data":{}}"#;
        let h = signature("k3y", 1_767_225_600, body);
        assert!(h.starts_with("t=1767225600,v1="));
        assert!(verify("k3y", &h, body, 1_767_225_660, 300));
        assert!(!verify("other", &h, body, 1_767_225_660, 300));
        assert!(!verify(
            "k3y",
            &h,
            &body.replace("new", "old"),
            1_767_225_660,
            300
        ));
        // Replayed an hour later.
        assert!(!verify("k3y", &h, body, 1_767_229_200, 300));
        assert!(!verify("k3y", "v1=00", body, 1_767_225_600, 300));
    }
}
