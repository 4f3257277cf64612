//! Stripe, outbound: the calls that create PaymentIntents, refunds and Connect transfers, on
//! `payments.stripe.api_base` with the secret key, form encoded, `Stripe-Version` pinned, and an
//! `Idempotency-Key` derived from our row, so a repeat returns what the first call created
//! (docs/providers/stripe-api.md sections 2–5, docs/providers.md).

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::payments::calls::{Call, CallError, Context, Created, Destination, Remote};
use crate::payments::wire::{not_sent, to_minor, without_url};

/// The API version every request is rendered in, and the one the webhook endpoint registered at
/// Stripe must use: the events' shapes this service reads are this version's.
pub const API_VERSION: &str = "2026-09-30.endive";

pub struct StripeClient {
    http: reqwest::Client,
    api_base: String,
    secret_key: SecretString,
    timeout: Duration,
}

impl StripeClient {
    pub fn new(api_base: &str, secret_key: SecretString, timeout: Duration) -> Self {
        StripeClient {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("a plain HTTP client builds"),
            api_base: api_base.trim_end_matches('/').to_owned(),
            secret_key,
            timeout,
        }
    }

    /// POSTs a form to `path`, with our key for the object; the created object's id and, for a
    /// PaymentIntent, its client secret.
    async fn create(&self, path: &str, key: String, form: Vec<(String, String)>) -> Result<Created, CallError> {
        let sent = self
            .http
            .post(format!("{}{path}", self.api_base))
            .bearer_auth(self.secret_key.expose_secret())
            .header("stripe-version", API_VERSION)
            .header("idempotency-key", key)
            .form(&form)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            // Never sent: nothing can have been created.
            Err(err) if err.is_connect() => return Err(not_sent("Stripe", &err)),
            Err(err) => return Err(CallError::Unknown { why: without_url(&err) }),
        };
        let status = response.status();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(err) => return Err(CallError::Unknown { why: without_url(&err) }),
        };
        if status.is_success() {
            let object: StripeObject = serde_json::from_slice(&body).map_err(|err| CallError::Unknown {
                why: format!("Stripe answered {status} with a body we cannot read: {err}"),
            })?;
            return Ok(Created {
                provider_id: object.id,
                client_secret: object.client_secret.map(SecretString::from),
                ..Created::default()
            });
        }
        let error = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_default();
        let why = format!(
            "Stripe answered {status}{}: {}",
            error.code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
            error.message.as_deref().unwrap_or("no message")
        );
        // As Stripe's own libraries decide (stripe-api.md section 2), and a transfer that waits
        // for card money to become available (`balance_insufficient`) is tried again later.
        let again = should_retry.unwrap_or(
            status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::FAILED_DEPENDENCY
                || status.is_server_error()
                || error.code.as_deref() == Some("balance_insufficient"),
        );
        let status = Some(status.as_u16());
        Err(if again {
            // Stripe replays a key's first answer whatever it was: the key is never spent.
            CallError::Retry {
                status,
                after,
                new_key: false,
                why,
            }
        } else {
            CallError::Permanent { status, why }
        })
    }
}

#[derive(Deserialize)]
struct StripeObject {
    id: String,
    client_secret: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(Default, Deserialize)]
struct StripeError {
    code: Option<String>,
    message: Option<String>,
}

/// An amount in the currency's minor unit, as Stripe's forms take it.
fn minor(amount: Decimal, currency: &str) -> Result<String, CallError> {
    to_minor(amount, currency).map(|minor| minor.to_string())
}

fn field(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

impl Remote for StripeClient {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn call<'a>(&'a self, call: &'a Call, _context: &'a Context) -> BoxFuture<'a, Result<Created, CallError>> {
        Box::pin(async move {
            match call {
                Call::CreatePayment {
                    payment_id,
                    pledge_id,
                    offer_id,
                    amount,
                    currency,
                    ..
                } => {
                    let form = vec![
                        field("amount", minor(*amount, currency)?),
                        field("currency", currency.to_ascii_lowercase()),
                        // `payment_method_types` is refused on the pinned version.
                        field("allowed_payment_method_types[0]", "card"),
                        field("transfer_group", format!("offer_{offer_id}")),
                        field("metadata[payment_id]", payment_id),
                        field("metadata[pledge_id]", pledge_id),
                        field("metadata[offer_id]", offer_id),
                    ];
                    self.create("/v1/payment_intents", format!("crowdledger-payment-{payment_id}"), form)
                        .await
                }
                Call::CreateRefund {
                    refund_id,
                    pledge_id,
                    payment,
                    amount,
                    currency,
                } => {
                    let form = vec![
                        field("payment_intent", payment),
                        field("amount", minor(*amount, currency)?),
                        field("metadata[refund_id]", refund_id),
                        field("metadata[pledge_id]", pledge_id),
                    ];
                    self.create("/v1/refunds", format!("crowdledger-refund-{refund_id}"), form)
                        .await
                }
                Call::CreatePayout {
                    payout_id,
                    offer_id,
                    destination,
                    amount,
                    currency,
                    ..
                } => {
                    let Destination::StripeAccount(account) = destination else {
                        return Err(CallError::Permanent {
                            status: None,
                            why: "Stripe pays out to a connected account only".into(),
                        });
                    };
                    let form = vec![
                        field("amount", minor(*amount, currency)?),
                        field("currency", currency.to_ascii_lowercase()),
                        field("destination", account),
                        field("transfer_group", format!("offer_{offer_id}")),
                        field("metadata[payout_id]", payout_id),
                        field("metadata[offer_id]", offer_id),
                    ];
                    self.create("/v1/transfers", format!("crowdledger-payout-{payout_id}"), form)
                        .await
                }
            }
        })
    }
}
