//! Stripe, outbound: the calls that create PaymentIntents, refunds and Connect transfers, on
//! `payments.stripe.api_base` with the secret key, form encoded, `Stripe-Version` pinned, and an
//! `Idempotency-Key` derived from our row, so a repeat returns what the first call created
//! (docs/providers/stripe-api.md sections 2–5, docs/providers.md).

use std::time::Duration;

use futures::future::BoxFuture;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::money::Currency;
use crate::payments::calls::{Call, CallError, Context, Created, Fetched, Remote, RemoteState};
use crate::payments::provider::Object;

/// The API version every request is rendered in, and the one the webhook endpoint registered at
/// Stripe must use: the events' shapes this service reads are this version's.
pub const API_VERSION: &str = "2026-09-30.endive";

/// What a Stripe id may hold as it is in a path (`pi_3Mt…`); anything else is escaped.
const ID: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-');

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
        let request = self
            .http
            .post(format!("{}{path}", self.api_base))
            .header("idempotency-key", key)
            .form(&form);
        let object = self.send(request).await?;
        Ok(Created {
            provider_id: object.id,
            client_secret: object.client_secret.map(SecretString::from),
            ..Created::default()
        })
    }

    /// Sends a request with our key and pinned version; the object Stripe answered with, or why
    /// there is none.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<StripeObject, CallError> {
        let sent = request
            .bearer_auth(self.secret_key.expose_secret())
            .header("stripe-version", API_VERSION)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            // Never sent: nothing can have been created.
            Err(err) if err.is_connect() => {
                return Err(CallError::Retry {
                    status: None,
                    after: None,
                    new_key: false,
                    why: format!("Stripe could not be reached: {}", without_url(&err)),
                });
            }
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
            return serde_json::from_slice(&body).map_err(|err| CallError::Unknown {
                why: format!("Stripe answered {status} with a body we cannot read: {err}"),
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

/// A request error's words without its URL, which names no secret but is noise in our records.
fn without_url(err: &reqwest::Error) -> String {
    let mut err = format!("{}", ErrorWithoutUrl(err));
    err.truncate(500);
    err
}

struct ErrorWithoutUrl<'a>(&'a reqwest::Error);

impl std::fmt::Display for ErrorWithoutUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.0.is_timeout() {
            "timed out"
        } else if self.0.is_connect() {
            "connection failed"
        } else if self.0.is_body() || self.0.is_decode() {
            "the answer could not be read"
        } else {
            "the request failed"
        };
        f.write_str(kind)
    }
}

/// The fields of a PaymentIntent, a refund or a transfer we read.
#[derive(Deserialize)]
struct StripeObject {
    id: String,
    client_secret: Option<String>,
    status: Option<String>,
    amount: Option<i64>,
    amount_received: Option<i64>,
    currency: Option<String>,
    /// A transfer taken back.
    reversed: Option<bool>,
}

impl StripeObject {
    /// Its state in our words (docs/providers.md, "Stripe's states"), and the money it moved or
    /// is to move.
    fn fetched(self, object: Object) -> Result<Fetched, CallError> {
        use RemoteState::*;
        let state = match (object, self.status.as_deref()) {
            (Object::Payment, Some("succeeded")) => Succeeded,
            (Object::Payment, Some("canceled")) => Cancelled,
            (Object::Payment, _) => Pending,
            (Object::Refund, Some("succeeded")) => Succeeded,
            (Object::Refund, Some("failed")) => Failed,
            (Object::Refund, Some("canceled")) => Cancelled,
            (Object::Refund, _) => Pending,
            // A transfer has no status: made when created, unless reversed since.
            (Object::Payout, _) if self.reversed == Some(true) => Failed,
            (Object::Payout, _) => Succeeded,
            (Object::Deposit, _) => Pending,
        };
        let currency = self.currency.as_deref().unwrap_or_default().to_ascii_uppercase();
        let minor_amount = match (object, state) {
            (Object::Payment, Succeeded) => self.amount_received.or(self.amount),
            _ => self.amount,
        }
        .unwrap_or_default();
        let units = Currency::parse(&currency).map_or(2, Currency::minor_units);
        Ok(Fetched {
            state,
            amount: Decimal::new(minor_amount, units),
            currency,
            client_secret: (state == Pending)
                .then_some(self.client_secret)
                .flatten()
                .map(SecretString::from),
            redirect_url: None,
        })
    }
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

/// An amount in the currency's minor unit, as Stripe takes it (EUR 120.50 → 12050).
fn minor(amount: Decimal, currency: &str) -> Result<String, CallError> {
    let units = Currency::parse(currency).map_or(2, Currency::minor_units);
    let scaled = amount * Decimal::from(10_i64.pow(units));
    if scaled.fract() != Decimal::ZERO {
        return Err(CallError::Permanent {
            status: None,
            why: format!("{amount} {currency} has more decimals than the currency"),
        });
    }
    Ok(scaled.trunc().to_string())
}

fn field(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

impl Remote for StripeClient {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn fetch<'a>(&'a self, object: Object, provider_id: &'a str) -> BoxFuture<'a, Result<Fetched, CallError>> {
        Box::pin(async move {
            let path = match object {
                Object::Payment => "payment_intents",
                Object::Refund => "refunds",
                Object::Payout => "transfers",
                Object::Deposit => {
                    return Err(CallError::Permanent {
                        status: None,
                        why: "deposits are not made through Stripe".into(),
                    });
                }
            };
            let request = self.http.get(format!(
                "{}/v1/{path}/{}",
                self.api_base,
                utf8_percent_encode(provider_id, ID)
            ));
            self.send(request).await?.fetched(object)
        })
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
                    let form = vec![
                        field("amount", minor(*amount, currency)?),
                        field("currency", currency.to_ascii_lowercase()),
                        field("destination", destination),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_go_in_minor_units() {
        assert_eq!(minor("120.50".parse().unwrap(), "EUR").unwrap(), "12050");
        assert_eq!(minor("7".parse().unwrap(), "JPY").unwrap(), "7");
        assert!(matches!(
            minor("1.005".parse().unwrap(), "EUR"),
            Err(CallError::Permanent { .. })
        ));
    }
}
