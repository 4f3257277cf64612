//! The sandbox provider's adapter: test-mode references for payments, refunds, payouts and
//! deposits, and its signed events (Standard Webhooks). Its test controls, which make it send
//! those events, are `crate::sandbox`; neither touches the books itself.

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::provider::{Event, Object, PaymentProvider, ProviderError, Received, WebhookSecrets, header};
use super::{PaymentError, SANDBOX};
use crate::money::{Currency, Money};
use crate::webhooks::signature;
use uuid::Uuid;

/// The built-in test-mode provider. Its objects are our rows; its ids name them.
pub(crate) struct Sandbox;

/// The sandbox's signing secret when `payments.sandbox.webhook_secret` is unset: public (it is
/// in this repository), so it serves only with a manual clock, and the settings refuse it under
/// the system clock.
pub const DEVELOPMENT_SECRET: &str = "whsec_c2FuZGJveC1kZXZlbG9wbWVudC1zZWNyZXQtY2hhbmdlLW1l";

/// The sandbox where it exists (a manual clock).
pub struct SandboxSetup {
    /// Signs the sandbox's webhooks and verifies them on arrival.
    pub secret: signature::WebhookSecret,
    /// The sandbox confirms refunds, payouts and deposits by itself (`payments.sandbox.auto_confirm`).
    pub auto_confirm: bool,
}

impl PaymentProvider for Sandbox {
    fn name(&self) -> &'static str {
        SANDBOX
    }

    fn create(&self, object: Object, id: Uuid, _amount: Money) -> Result<String, ProviderError> {
        let prefix = match object {
            Object::Payment => "pay",
            Object::Refund => "re",
            Object::Payout => "po",
            Object::Deposit => "dep",
            Object::Withdrawal => "wd",
        };
        Ok(format!("{prefix}_{}", id.simple()))
    }

    fn read_webhook(
        &self,
        secrets: &WebhookSecrets<'_>,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Received, PaymentError> {
        read(secrets, headers, body, now)
    }
}

/// The sandbox's body: `{"id":"evt_…","type":"payment.succeeded","created":…,"data":{…}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SandboxEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: SandboxData,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SandboxData {
    /// The payment's id; for refund and payout events, the refund's or payout's.
    pub payment_id: String,
    pub amount: String,
    pub currency: String,
    /// A dispute's events: the dispute's id ([`dispute_id_of`] its payment's when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute_id: Option<String>,
    /// `dispute.closed`: `won` or `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The sandbox's id of the dispute of a payment: a card network allows one dispute of a charge,
/// so the payment's own id names it (`pay_…` → `dp_…`), and its close can be asked for before
/// the dispute was ever sent.
pub(crate) fn dispute_id_of(payment_id: &str) -> String {
    format!("dp_{}", payment_id.strip_prefix("pay_").unwrap_or(payment_id))
}

/// The payment a sandbox dispute id names: the inverse of [`dispute_id_of`].
pub(crate) fn payment_of_dispute(dispute_id: &str) -> Option<String> {
    dispute_id.strip_prefix("dp_").map(|id| format!("pay_{id}"))
}

/// Verifies and reads a sandbox (Standard Webhooks) delivery.
fn read(secrets: &WebhookSecrets<'_>, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Received, PaymentError> {
    let id = header(headers, "webhook-id")?;
    let timestamp = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    signature::verify(
        &[secrets.sandbox.ok_or(PaymentError::NoSuchProvider)?],
        id,
        timestamp,
        signatures,
        body,
        now,
    )
    .map_err(PaymentError::InvalidSignature)?;
    let parsed: Result<SandboxEvent, _> = serde_json::from_slice(body);
    let Ok(parsed) = parsed else {
        return Ok(Received::unreadable(Some(id), body, "unreadable body"));
    };
    let event = sandbox_event(&parsed).map(|e| vec![e]);
    Ok(Received::read(parsed.id, parsed.kind, event, body))
}

fn sandbox_event(e: &SandboxEvent) -> Result<Event, String> {
    let id = e.data.payment_id.clone();
    let money = || -> Result<Money, String> {
        let currency = Currency::parse(&e.data.currency).map_err(|err| err.to_string())?;
        let amount: crate::money::Amount = e
            .data
            .amount
            .parse()
            .map_err(|err: crate::money::MoneyError| err.to_string())?;
        Money::new(amount.value(), currency).map_err(|e| e.to_string())
    };
    Ok(match e.kind.as_str() {
        "payment.succeeded" => Event::PaymentSucceeded {
            payment_id: id,
            amount: money()?,
        },
        "payment.failed" => Event::PaymentFailed { payment_id: id },
        "payment.disputed" => Event::PaymentDisputed {
            dispute_id: e.data.dispute_id.clone().unwrap_or_else(|| dispute_id_of(&id)),
            payment_id: id,
            amount: money()?,
        },
        "dispute.closed" => {
            let lost = match e.data.status.as_deref() {
                Some("lost") => true,
                Some("won") => false,
                _ => return Err("a dispute.closed without its status, won or lost".into()),
            };
            Event::DisputeClosed {
                dispute_id: e.data.dispute_id.clone().unwrap_or_else(|| dispute_id_of(&id)),
                payment_id: id,
                amount: money()?,
                lost,
            }
        }
        "refund.succeeded" => Event::RefundSucceeded {
            refund_id: id,
            amount: money()?,
        },
        "payout.paid" => Event::PayoutPaid {
            payout_id: id,
            amount: money()?,
        },
        _ => Event::Other,
    })
}
