//! Stripe, inbound: `Stripe-Signature` verification and the mapping of `payment_intent.succeeded`,
//! `payment_intent.payment_failed`, `charge.dispute.created`, `charge.refunded` and `payout.paid`
//! onto our [`Event`]s.
//! Creating Stripe objects needs Stripe's API, which no network reaches from here, so this
//! adapter refuses to create; new payments go to the sandbox (docs/payments.md).

use axum::http::HeaderMap;
use rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::PaymentError;
use super::provider::{Event, Object, PaymentProvider, ProviderError, Received, WebhookSecrets, header};
use crate::money::{Currency, Money};
use crate::webhooks::signature;

pub(crate) const STRIPE: &str = "stripe";

pub struct Stripe;

impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        STRIPE
    }

    fn create(&self, object: Object, _id: Uuid, _amount: Money) -> Result<String, ProviderError> {
        Err(ProviderError::Unsupported {
            provider: STRIPE,
            object,
            why: "Stripe's API is not reachable from this service; only its webhooks are read",
        })
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

/// Stripe's envelope: `{"id":"evt_…","type":"payment_intent.succeeded","data":{"object":{…}}}`.
#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeData,
}

#[derive(Deserialize)]
struct StripeData {
    object: serde_json::Value,
}

/// Verifies and reads a Stripe delivery.
fn read(secrets: &WebhookSecrets<'_>, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Received, PaymentError> {
    let secret = secrets.stripe.ok_or(PaymentError::NotConfigured(STRIPE))?;
    let sig = header(headers, "stripe-signature")?;
    signature::stripe_verify(secret.expose_secret().as_bytes(), sig, body, now)
        .map_err(PaymentError::InvalidSignature)?;
    let parsed: StripeEvent = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(_) => return Ok(Received::unreadable(None, body, "unreadable body")),
    };
    let event = stripe_events(&parsed.kind, &parsed.data.object);
    Ok(Received::read(parsed.id, parsed.kind, event, body))
}

/// Stripe amounts are integers in the currency's minor unit, currencies lowercase.
fn stripe_money(object: &serde_json::Value) -> Result<Money, String> {
    let minor = object["amount"].as_i64().ok_or("no integer amount")?;
    let currency = Currency::parse(&object["currency"].as_str().ok_or("no currency")?.to_ascii_uppercase())
        .map_err(|e| e.to_string())?;
    Money::new(Decimal::new(minor, currency.minor_units()), currency).map_err(|e| e.to_string())
}

fn stripe_events(kind: &str, object: &serde_json::Value) -> Result<Vec<Event>, String> {
    let id = || {
        object["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no object id".to_string())
    };
    Ok(match kind {
        "payment_intent.succeeded" => vec![Event::PaymentSucceeded {
            payment_id: id()?,
            amount: stripe_money(object)?,
        }],
        "payment_intent.payment_failed" => vec![Event::PaymentFailed { payment_id: id()? }],
        // A dispute names the payment intent it disputes (our payment's id), and how much of it.
        "charge.dispute.created" => vec![Event::PaymentDisputed {
            payment_id: object["payment_intent"]
                .as_str()
                .ok_or("a dispute without its payment intent")?
                .to_owned(),
            amount: stripe_money(object)?,
        }],
        // A charge lists its refunds; each one is confirmed.
        "charge.refunded" => object["refunds"]["data"]
            .as_array()
            .ok_or("no refunds on the charge")?
            .iter()
            .map(|r| {
                Ok(Event::RefundSucceeded {
                    refund_id: r["id"].as_str().ok_or("a refund without an id")?.to_owned(),
                    amount: stripe_money(r)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        "payout.paid" => vec![Event::PayoutPaid {
            payout_id: id()?,
            amount: stripe_money(object)?,
        }],
        _ => vec![Event::Other],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stripe_events_map_onto_ours() {
        let eur = |s: &str| Money::new(s.parse().unwrap(), Currency::EUR).unwrap();
        let paid = stripe_events(
            "payment_intent.succeeded",
            &json!({"id": "pi_1", "amount": 12050, "currency": "eur"}),
        );
        assert_eq!(
            paid,
            Ok(vec![Event::PaymentSucceeded {
                payment_id: "pi_1".into(),
                amount: eur("120.50")
            }])
        );
        let failed = stripe_events("payment_intent.payment_failed", &json!({"id": "pi_1"}));
        assert_eq!(
            failed,
            Ok(vec![Event::PaymentFailed {
                payment_id: "pi_1".into()
            }])
        );
        let disputed = stripe_events(
            "charge.dispute.created",
            &json!({"id": "dp_1", "charge": "ch_1", "payment_intent": "pi_1", "amount": 12050,
                    "currency": "eur", "reason": "fraudulent"}),
        );
        assert_eq!(
            disputed,
            Ok(vec![Event::PaymentDisputed {
                payment_id: "pi_1".into(),
                amount: eur("120.50")
            }])
        );
        assert!(
            stripe_events(
                "charge.dispute.created",
                &json!({"id": "dp_2", "amount": 100, "currency": "eur"})
            )
            .is_err()
        );
        let refunded = stripe_events(
            "charge.refunded",
            &json!({"id": "ch_1", "refunds": {"data": [
                {"id": "re_1", "amount": 500, "currency": "eur"},
                {"id": "re_2", "amount": 1250, "currency": "eur"}]}}),
        );
        assert_eq!(
            refunded,
            Ok(vec![
                Event::RefundSucceeded {
                    refund_id: "re_1".into(),
                    amount: eur("5.00")
                },
                Event::RefundSucceeded {
                    refund_id: "re_2".into(),
                    amount: eur("12.50")
                }
            ])
        );
        let payout = stripe_events("payout.paid", &json!({"id": "po_1", "amount": 100, "currency": "eur"}));
        assert_eq!(
            payout,
            Ok(vec![Event::PayoutPaid {
                payout_id: "po_1".into(),
                amount: eur("1.00")
            }])
        );
        assert_eq!(stripe_events("customer.created", &json!({})), Ok(vec![Event::Other]));
        // Yen has no minor unit: 500 is 500 JPY.
        let yen = stripe_events(
            "payment_intent.succeeded",
            &json!({"id": "pi_2", "amount": 500, "currency": "jpy"}),
        );
        let expected = Money::new(500.into(), Currency::parse("JPY").unwrap()).unwrap();
        assert_eq!(
            yen,
            Ok(vec![Event::PaymentSucceeded {
                payment_id: "pi_2".into(),
                amount: expected
            }])
        );
        assert!(
            stripe_events(
                "payment_intent.succeeded",
                &json!({"id": "pi_3", "amount": "12", "currency": "eur"})
            )
            .is_err()
        );
        assert!(stripe_events("charge.refunded", &json!({"id": "ch_2"})).is_err());
        // A refund or payout without its amount cannot be checked against ours.
        assert!(
            stripe_events(
                "charge.refunded",
                &json!({"id": "ch_3", "refunds": {"data": [{"id": "re_3"}]}})
            )
            .is_err()
        );
        assert!(stripe_events("payout.paid", &json!({"id": "po_2"})).is_err());
    }
}
