//! Deliveries to `POST /v1/webhooks/sandbox`, built and signed as the sandbox provider would
//! (or broken on purpose, as a forger would).

use crowdledger::webhooks::signature::{self, WebhookSecret};
use serde_json::json;

use super::{Reply, TestApp};

/// The sandbox's built-in development secret, which the test app (manual clock, no
/// `payments.sandbox.webhook_secret`) runs with.
pub const SANDBOX_SECRET: &str = crowdledger::payments::sandbox::DEVELOPMENT_SECRET;

pub fn secret() -> WebhookSecret {
    SANDBOX_SECRET.parse().unwrap()
}

/// A sandbox event body: `payment` names the payment, refund or payout.
pub fn event(id: &str, kind: &str, payment: &str, amount: &str, currency: &str, created: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": id, "type": kind, "created": created,
        "data": {"payment_id": payment, "amount": amount, "currency": currency}}))
    .unwrap()
}

/// Posts `body` to the sandbox endpoint with the given headers (None leaves a header out).
pub async fn deliver(
    app: &TestApp,
    id: Option<&str>,
    timestamp: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
) -> Reply {
    let mut req = app.client.post(format!("{}/v1/webhooks/sandbox", app.base)).body(body);
    if let Some(id) = id {
        req = req.header("webhook-id", id);
    }
    if let Some(ts) = timestamp {
        req = req.header("webhook-timestamp", ts);
    }
    if let Some(sig) = signature {
        req = req.header("webhook-signature", sig);
    }
    super::read(req.send().await.unwrap()).await
}

/// A correctly signed sandbox delivery, `skew` seconds off the real time: a provider signs by
/// its own clock, and the service judges signatures by the wall clock, not its business time.
pub async fn signed(app: &TestApp, id: &str, body: Vec<u8>, skew: i64) -> Reply {
    let ts = chrono::Utc::now().timestamp() + skew;
    let sig = signature::signature_header(&[&secret()], id, ts, &body);
    deliver(app, Some(id), Some(ts.to_string()), Some(sig), body).await
}
