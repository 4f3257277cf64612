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
use crate::payments::calls::{
    BankInstructions, Call, CallError, Context, Created, Destination, Fetched, Method, Party, Payer, Remote,
    RemoteState,
};
use crate::payments::provider::Object;
use crate::payments::wire::{not_sent, to_minor, without_url};

/// The API version every request is rendered in, and the one the webhook endpoint registered at
/// Stripe must use: the events' shapes this service reads are this version's.
pub const API_VERSION: &str = "2026-09-30.endive";

/// The countries whose IBANs Stripe's EU bank transfers offer (docs/providers/stripe-api.md 5.3);
/// an investor elsewhere is given a French one.
const EU_BANK_TRANSFER_COUNTRIES: [&str; 6] = ["BE", "DE", "ES", "FR", "IE", "NL"];
const DEFAULT_BANK_TRANSFER_COUNTRY: &str = "FR";
/// How our parties are named in `provider_parties`.
const INVESTOR: &str = "investor";
const CUSTOMER: &str = "customer";

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

    /// POSTs a form to `path`, with our key for the object; the object Stripe made (or had
    /// made for that key).
    async fn post(&self, path: &str, key: String, form: Vec<(String, String)>) -> Result<StripeObject, CallError> {
        let request = self
            .http
            .post(format!("{}{path}", self.api_base))
            .header("idempotency-key", key)
            .form(&form);
        self.send(request).await
    }

    /// The investor's customer, who holds the virtual account bank transfers go to: the one we
    /// know, or a new one (kept by the call's answer, so made once).
    async fn customer(&self, payer: &Payer, context: &Context, made: &mut Vec<Party>) -> Result<String, CallError> {
        if let Some(known) = context.party(INVESTOR, payer.investor_id, CUSTOMER) {
            return Ok(known.to_owned());
        }
        let form = vec![
            field("name", &payer.name),
            field("email", &payer.email),
            field("metadata[investor_id]", payer.investor_id),
        ];
        let customer = self
            .post(
                "/v1/customers",
                format!("crowdledger-customer-{}", payer.investor_id),
                form,
            )
            .await?
            .id;
        made.push(Party {
            party_kind: INVESTOR.into(),
            party_id: payer.investor_id,
            role: CUSTOMER.into(),
            provider_id: customer.clone(),
        });
        Ok(customer)
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

/// The fields of a PaymentIntent, a refund or a transfer we read.
#[derive(Deserialize)]
struct StripeObject {
    id: String,
    client_secret: Option<String>,
    /// A bank-transfer intent's instructions (`display_bank_transfer_instructions`).
    next_action: Option<serde_json::Value>,
    status: Option<String>,
    amount: Option<i64>,
    amount_received: Option<i64>,
    currency: Option<String>,
    /// A transfer taken back.
    reversed: Option<bool>,
}

impl StripeObject {
    /// What a call made: the object's id, its client secret, and for a bank transfer where to
    /// wire the money (the first IBAN Stripe lists, and the reference).
    fn created(self, parties: Vec<Party>) -> Created {
        let shown = self
            .next_action
            .as_ref()
            .map(|a| &a["display_bank_transfer_instructions"]);
        let instructions = shown.and_then(|shown| {
            let iban = shown["financial_addresses"]
                .as_array()?
                .iter()
                .find_map(|a| a.get("iban"))?;
            Some(BankInstructions {
                iban: iban["iban"].as_str()?.to_owned(),
                bic: iban["bic"].as_str().map(str::to_owned),
                account_holder: iban["account_holder_name"].as_str().map(str::to_owned),
                reference: shown["reference"].as_str()?.to_owned(),
            })
        });
        Created {
            provider_id: self.id,
            client_secret: self.client_secret.map(SecretString::from),
            instructions,
            parties,
            ..Created::default()
        }
    }

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
            (Object::Deposit | Object::Withdrawal, _) => Pending,
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

    fn fetch<'a>(&'a self, object: Object, provider_id: &'a str) -> BoxFuture<'a, Result<Fetched, CallError>> {
        Box::pin(async move {
            let path = match object {
                Object::Payment => "payment_intents",
                Object::Refund => "refunds",
                Object::Payout => "transfers",
                Object::Deposit | Object::Withdrawal => {
                    return Err(CallError::Permanent {
                        status: None,
                        why: format!("{}s are not made through Stripe", object.noun()),
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

    fn call<'a>(&'a self, call: &'a Call, context: &'a Context) -> BoxFuture<'a, Result<Created, CallError>> {
        Box::pin(async move {
            match call {
                Call::CreatePayment {
                    payment_id,
                    pledge_id,
                    offer_id,
                    payer,
                    method,
                    amount,
                    currency,
                    ..
                } => {
                    let mut made = Vec::new();
                    let mut form = vec![
                        field("amount", minor(*amount, currency)?),
                        field("currency", currency.to_ascii_lowercase()),
                        field("transfer_group", format!("offer_{offer_id}")),
                        field("metadata[payment_id]", payment_id),
                        field("metadata[pledge_id]", pledge_id),
                        field("metadata[offer_id]", offer_id),
                    ];
                    // `payment_method_types` is refused on the pinned version.
                    match method {
                        Method::Card => form.push(field("allowed_payment_method_types[0]", "card")),
                        Method::BankTransfer => {
                            let customer = self.customer(payer, context, &mut made).await?;
                            let country = if EU_BANK_TRANSFER_COUNTRIES.contains(&payer.country.as_str()) {
                                payer.country.as_str()
                            } else {
                                DEFAULT_BANK_TRANSFER_COUNTRY
                            };
                            let options = "payment_method_options[customer_balance]";
                            form.extend([
                                field("customer", customer),
                                field("allowed_payment_method_types[0]", "customer_balance"),
                                field("payment_method_data[type]", "customer_balance"),
                                field(&format!("{options}[funding_type]"), "bank_transfer"),
                                field(&format!("{options}[bank_transfer][type]"), "eu_bank_transfer"),
                                field(&format!("{options}[bank_transfer][eu_bank_transfer][country]"), country),
                                field("confirm", "true"),
                            ]);
                        }
                    }
                    let intent = self
                        .post("/v1/payment_intents", format!("crowdledger-payment-{payment_id}"), form)
                        .await?;
                    Ok(intent.created(made))
                }
                Call::CancelPayment {
                    payment_id,
                    provider_payment_id,
                } => {
                    let path = format!(
                        "/v1/payment_intents/{}/cancel",
                        utf8_percent_encode(provider_payment_id, ID)
                    );
                    let form = vec![field("cancellation_reason", "abandoned")];
                    let intent = self
                        .post(&path, format!("crowdledger-cancel-{payment_id}"), form)
                        .await?;
                    Ok(intent.created(Vec::new()))
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
                    let refund = self
                        .post("/v1/refunds", format!("crowdledger-refund-{refund_id}"), form)
                        .await?;
                    Ok(refund.created(Vec::new()))
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
                    let transfer = self
                        .post("/v1/transfers", format!("crowdledger-payout-{payout_id}"), form)
                        .await?;
                    Ok(transfer.created(Vec::new()))
                }
            }
        })
    }
}
