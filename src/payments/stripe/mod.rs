//! Stripe, inbound: `Stripe-Signature` verification and the mapping of `payment_intent.succeeded`,
//! `payment_intent.payment_failed`, `charge.dispute.created` and `charge.dispute.closed`, the refunds' events
//! (`refund.created`, `refund.updated`, `charge.refunded`), `transfer.created` and `payout.paid`
//! onto our [`Event`]s (PRODUCT.md section 10). Outbound calls are `client`'s: Stripe names its
//! objects when it creates them, so nothing is named inside our transactions.

pub mod client;

use axum::http::HeaderMap;
use rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::PaymentError;
use super::provider::{Event, Named, Object, PaymentProvider, ProviderError, Received, WebhookSecrets, header};
use crate::money::Money;
use crate::webhooks::signature;

pub(crate) const STRIPE: &str = "stripe";

pub struct Stripe;

impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        STRIPE
    }

    fn networked(&self) -> bool {
        true
    }

    fn takes_bank_transfers(&self) -> bool {
        true
    }

    fn create(&self, object: Object, _id: Uuid, _amount: Money) -> Result<String, ProviderError> {
        Err(ProviderError::Unsupported {
            provider: STRIPE,
            object,
            why: "Stripe names its objects when it creates them, through a queued call (payments::calls)",
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
    let named = named(&parsed.data.object);
    Ok(Received::read(parsed.id, parsed.kind, event, body).naming(named))
}

/// The row of ours an object is, by the id our calls put in its metadata
/// (`client::StripeClient`): `payment_id` on a PaymentIntent, `refund_id` on a refund,
/// `payout_id` on a transfer.
fn named(object: &serde_json::Value) -> Vec<Named> {
    let kind = match object["object"].as_str() {
        Some("payment_intent") => (Object::Payment, "payment_id"),
        Some("refund") => (Object::Refund, "refund_id"),
        Some("transfer") => (Object::Payout, "payout_id"),
        _ => return Vec::new(),
    };
    let ours = object["metadata"][kind.1].as_str().and_then(|id| id.parse().ok());
    match (ours, object["id"].as_str()) {
        (Some(ours), Some(id)) => vec![Named {
            object: kind.0,
            ours,
            provider_id: id.to_owned(),
        }],
        _ => Vec::new(),
    }
}

/// Stripe amounts are integers in the currency's minor unit, currencies lowercase.
fn stripe_money(object: &serde_json::Value) -> Result<Money, String> {
    money_of(object, "amount")
}

/// The amount in `field` of `object`, in `object`'s currency.
fn money_of(object: &serde_json::Value, field: &str) -> Result<Money, String> {
    let minor = object[field].as_i64().ok_or_else(|| format!("no integer {field}"))?;
    super::wire::from_minor(minor, object["currency"].as_str().ok_or("no currency")?)
}

/// The payment intent a dispute disputes: our payment's id at Stripe.
fn disputed_intent(dispute: &serde_json::Value) -> Result<String, String> {
    dispute["payment_intent"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "a dispute without its payment intent".to_string())
}

fn stripe_events(kind: &str, object: &serde_json::Value) -> Result<Vec<Event>, String> {
    let id = || {
        object["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no object id".to_string())
    };
    // A refund confirms ours once it has reached the card; before (`pending`) or never
    // (`failed`, `canceled`) it moves nothing.
    let refund = |r: &serde_json::Value| -> Result<Option<Event>, String> {
        let refund_id = r["id"].as_str().ok_or("a refund without an id")?.to_owned();
        let amount = stripe_money(r)?;
        Ok((r["status"] == "succeeded").then_some(Event::RefundSucceeded { refund_id, amount }))
    };
    Ok(match kind {
        // What was captured (`amount_received`), not what was asked: a short payment is
        // checked against the pledge, and refused there.
        "payment_intent.succeeded" => vec![Event::PaymentSucceeded {
            payment_id: id()?,
            amount: money_of(object, "amount_received")?,
        }],
        "payment_intent.payment_failed" => vec![Event::PaymentFailed { payment_id: id()? }],
        // A bank transfer short of the payment: the money waits at Stripe, not in our books,
        // until the rest arrives (then `payment_intent.succeeded`) or an operator settles it.
        "payment_intent.partially_funded" => {
            let expected = stripe_money(object)?;
            let remaining = object["next_action"]["display_bank_transfer_instructions"]["amount_remaining"]
                .as_i64()
                .ok_or("a partially funded intent without amount_remaining")?;
            let remaining = Decimal::new(remaining, expected.currency().minor_units());
            return Err(format!(
                "bank_transfer_mismatch: a bank transfer of {} {} received for payment {} of {}",
                expected.amount() - remaining,
                expected.currency().code(),
                id()?,
                expected
            ));
        }
        // A dispute names the payment intent it disputes (our payment's id), and how much of it.
        "charge.dispute.created" => vec![Event::PaymentDisputed {
            payment_id: disputed_intent(object)?,
            dispute_id: id()?,
            amount: stripe_money(object)?,
        }],
        // Decided: `lost` is a chargeback; `won`, or an inquiry closed without becoming one
        // (`warning_closed`), moved no money. Any other status is not a decision.
        "charge.dispute.closed" => match object["status"].as_str() {
            Some(status @ ("lost" | "won" | "warning_closed")) => vec![Event::DisputeClosed {
                payment_id: disputed_intent(object)?,
                dispute_id: id()?,
                amount: stripe_money(object)?,
                lost: status == "lost",
            }],
            _ => vec![Event::Other],
        },
        "refund.created" | "refund.updated" => vec![refund(object)?.unwrap_or(Event::Other)],
        // Before API version 2022-11-15 a charge listed its refunds; since, it lists none, and the
        // refunds' own events confirm them.
        "charge.refunded" => match object["refunds"]["data"].as_array() {
            Some(refunds) => refunds
                .iter()
                .filter_map(|r| refund(r).transpose())
                .collect::<Result<Vec<_>, String>>()?,
            None => vec![Event::Other],
        },
        // A payout to a project is a Connect transfer: made when Stripe answers, so its creation
        // confirms it.
        "transfer.created" | "payout.paid" => vec![Event::PayoutPaid {
            payout_id: id()?,
            amount: stripe_money(object)?,
        }],
        _ => vec![Event::Other],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use serde_json::json;

    #[test]
    fn stripe_events_map_onto_ours() {
        let eur = |s: &str| Money::new(s.parse().unwrap(), Currency::EUR).unwrap();
        let paid = stripe_events(
            "payment_intent.succeeded",
            &json!({"id": "pi_1", "amount": 12050, "amount_received": 12050, "currency": "eur"}),
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
                dispute_id: "dp_1".into(),
                amount: eur("120.50")
            }])
        );
        // Closed: lost is a chargeback; won or an inquiry closed without one moves nothing; a
        // status that decides nothing is not a close.
        for (status, lost) in [
            ("lost", Some(true)),
            ("won", Some(false)),
            ("warning_closed", Some(false)),
            ("under_review", None),
            ("prevented", None),
        ] {
            let closed = stripe_events(
                "charge.dispute.closed",
                &json!({"id": "dp_1", "object": "dispute", "charge": "ch_1", "payment_intent": "pi_1",
                        "amount": 5000, "currency": "eur", "status": status}),
            );
            let expected = match lost {
                Some(lost) => Event::DisputeClosed {
                    payment_id: "pi_1".into(),
                    dispute_id: "dp_1".into(),
                    amount: eur("50.00"),
                    lost,
                },
                None => Event::Other,
            };
            assert_eq!(closed, Ok(vec![expected]), "{status}");
        }
        assert!(
            stripe_events(
                "charge.dispute.closed",
                &json!({"id": "dp_1", "amount": 5000, "currency": "eur", "status": "lost"})
            )
            .is_err()
        );
        assert!(
            stripe_events(
                "charge.dispute.created",
                &json!({"id": "dp_2", "amount": 100, "currency": "eur"})
            )
            .is_err()
        );
        // An old API version's charge lists its refunds: those that reached the card count.
        let refunded = stripe_events(
            "charge.refunded",
            &json!({"id": "ch_1", "refunds": {"data": [
                {"id": "re_1", "amount": 500, "currency": "eur", "status": "succeeded"},
                {"id": "re_0", "amount": 700, "currency": "eur", "status": "pending"},
                {"id": "re_2", "amount": 1250, "currency": "eur", "status": "succeeded"}]}}),
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
        // A newer one's lists none: the refund's own events say it.
        assert_eq!(
            stripe_events("charge.refunded", &json!({"id": "ch_2", "amount_refunded": 500})),
            Ok(vec![Event::Other])
        );
        for kind in ["refund.created", "refund.updated"] {
            let done = json!({"id": "re_3", "object": "refund", "amount": 500, "currency": "eur",
                              "status": "succeeded", "payment_intent": "pi_1"});
            assert_eq!(
                stripe_events(kind, &done),
                Ok(vec![Event::RefundSucceeded {
                    refund_id: "re_3".into(),
                    amount: eur("5.00")
                }])
            );
            for status in ["pending", "requires_action", "failed", "canceled"] {
                let waiting = json!({"id": "re_3", "amount": 500, "currency": "eur", "status": status});
                assert_eq!(stripe_events(kind, &waiting), Ok(vec![Event::Other]), "{kind} {status}");
            }
            assert!(stripe_events(kind, &json!({"id": "re_4", "status": "succeeded"})).is_err());
        }
        for (kind, id) in [("transfer.created", "tr_1"), ("payout.paid", "po_1")] {
            let payout = stripe_events(kind, &json!({"id": id, "amount": 100, "currency": "eur"}));
            assert_eq!(
                payout,
                Ok(vec![Event::PayoutPaid {
                    payout_id: id.into(),
                    amount: eur("1.00")
                }])
            );
        }
        assert_eq!(stripe_events("customer.created", &json!({})), Ok(vec![Event::Other]));
        // Yen has no minor unit: 500 is 500 JPY.
        let yen = stripe_events(
            "payment_intent.succeeded",
            &json!({"id": "pi_2", "amount": 500, "amount_received": 500, "currency": "jpy"}),
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
                &json!({"id": "pi_3", "amount_received": "12", "currency": "eur"})
            )
            .is_err()
        );
        // What was asked is not what was captured: without `amount_received`, nothing is known.
        assert!(
            stripe_events(
                "payment_intent.succeeded",
                &json!({"id": "pi_3", "amount": 1200, "currency": "eur"})
            )
            .is_err()
        );
        // A refund or payout without its amount cannot be checked against ours.
        assert!(
            stripe_events(
                "charge.refunded",
                &json!({"id": "ch_3", "refunds": {"data": [{"id": "re_3", "status": "succeeded"}]}})
            )
            .is_err()
        );
        assert!(stripe_events("payout.paid", &json!({"id": "po_2"})).is_err());
    }
}
