//! A local Stripe: the endpoints crowdledger calls (customers, PaymentIntents, refunds, Connect
//! transfers, disputes read back), served on `127.0.0.1:0` as Stripe's API reference describes
//! them, with controls for what a test needs Stripe to do: fail, answer late, move an object and
//! send the signed event that says so.
//!
//! Sources and the choices made where they are silent: docs/providers/stripe-api.md. Faithful there:
//! Bearer auth, form bodies in bracket notation, error bodies, `payment_method_types` refused on
//! the pinned version, idempotent replays (same status and body) and `idempotency_error`, event
//! envelopes, `Stripe-Signature`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use crowdledger_provider_fakes::stripe::{Kind, StripeFake};
//!
//! let stripe = StripeFake::start().await;
//! // The service would be configured with these three and the webhook URL it serves.
//! let (api_base, key) = (stripe.base_url(), stripe.secret_key().to_owned());
//! let http = reqwest::Client::builder().no_proxy().build().unwrap();
//! let intent: serde_json::Value = http
//!     .post(format!("{api_base}/v1/payment_intents"))
//!     .bearer_auth(&key)
//!     .header("idempotency-key", "crowdledger-payment-1")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body("amount=12050&currency=eur&metadata[pledge_id]=p1")
//!     .send()
//!     .await
//!     .unwrap()
//!     .json()
//!     .await
//!     .unwrap();
//! let event = stripe.succeed_payment(intent["id"].as_str().unwrap(), 12050).await;
//! assert_eq!(event.event_type, "payment_intent.succeeded");
//! assert_eq!(stripe.created(Kind::PaymentIntent), 1);
//! # }
//! ```

mod api;
mod error;
mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::local_server::{LocalServer, outbound_client};
pub use crate::next_replies::HeldReply;
use crate::next_replies::NextReplies;
use crate::{iban, system_now, token};
use api::Caller;
use server::{handle, json_response};

/// The API version crowdledger pins (docs/providers/stripe-api.md section 1): what the fake's events say
/// they were rendered in, unless the builder names another.
pub const PINNED_VERSION: &str = "2026-09-30.endive";

/// What the platform's available balance holds in each currency until a test sets it: enough
/// that no transfer is refused unless the test means it to be.
pub const DEFAULT_AVAILABLE_BALANCE: i64 = 100_000_000_000;

/// Stripe keeps idempotency keys of up to 255 characters (docs.stripe.com/api/idempotent_requests).
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// How long a webhook delivery may take before it counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The objects the fake keeps, by Stripe's `object` name; ids carry Stripe's prefixes (`cus_`,
/// `pi_`, `re_`, `tr_`, `dp_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Customer,
    PaymentIntent,
    Refund,
    Transfer,
    Dispute,
}

impl Kind {
    /// The object's `object` field.
    pub fn object(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::PaymentIntent => "payment_intent",
            Kind::Refund => "refund",
            Kind::Transfer => "transfer",
            Kind::Dispute => "dispute",
        }
    }
}

/// An answer the fake gives instead of doing the work, as Stripe's edge does when it sheds
/// load. Nothing is created and nothing is saved under the idempotency key, so a retry with the
/// same key runs for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 `api_error`.
    ServerError,
    /// 503 `api_error`.
    ServiceUnavailable,
    /// 429 `rate_limit`, the answer to too many requests per second (docs.stripe.com/rate-limits).
    RateLimited,
}

impl Fault {
    fn response(self, request_id: &str) -> Response {
        let (status, error) = match self {
            Fault::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"type": "api_error", "message": "An unknown error occurred. We have been notified; please retry."}),
            ),
            Fault::ServiceUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"type": "api_error", "message": "Stripe is temporarily unavailable. Please retry."}),
            ),
            Fault::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
                }),
            ),
        };
        let mut response = json_response(status, json!({ "error": error }).to_string(), request_id);
        // The header Stripe's own libraries obey: retry when it says true, never when false. That
        // Stripe sends it on each of these answers is unverified (docs/providers/stripe-api.md 2 and 4).
        response
            .headers_mut()
            .insert("stripe-should-retry", HeaderValue::from_static("true"));
        response
    }
}

/// A request as the fake received it, kept in arrival order whatever it was answered.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// The form body (query string for GETs) decoded into nested values; `null` if undecodable.
    pub params: Value,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
}

/// An event the fake created, with the exact body it signs and sends.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    /// The raw JSON body; a re-send uses these bytes again.
    pub body: String,
}

impl Event {
    /// The whole envelope.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the fake writes its events as JSON")
    }

    /// `data.object`: the resource as it was when the event was created.
    pub fn object(&self) -> Value {
        self.json()["data"]["object"].take()
    }
}

/// One POST of an event to the webhook URL.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    /// The receiver's status code; `None` when it could not be reached in time.
    pub status: Option<u16>,
}

/// How a dispute ends (`charge.dispute.closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeOutcome {
    Won,
    Lost,
}

/// Builds a [`StripeFake`] with chosen keys; [`StripeFake::start`] takes random ones.
#[derive(Debug, Clone)]
pub struct StripeFakeBuilder {
    secret_key: String,
    webhook_secret: String,
    api_version: String,
}

impl StripeFakeBuilder {
    /// The secret key requests must carry (`sk_test_…`).
    pub fn secret_key(mut self, key: impl Into<String>) -> Self {
        self.secret_key = key.into();
        self
    }

    /// The endpoint secret events are signed with (`whsec_…`), used as Stripe uses it: its bytes.
    pub fn webhook_secret(mut self, secret: impl Into<String>) -> Self {
        self.webhook_secret = secret.into();
        self
    }

    /// The `api_version` events are rendered in.
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// Binds `127.0.0.1:0` and serves in a task of the current runtime.
    pub async fn start(self) -> StripeFake {
        let shared = Arc::new(Shared {
            secret_key: self.secret_key,
            webhook_secret: self.webhook_secret,
            state: Mutex::new(State::new(self.api_version)),
            http: outbound_client(DELIVERY_TIMEOUT, "Stripe/1.0 (+https://stripe.com/docs/webhooks)"),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = LocalServer::start(app, "Stripe").await;
        StripeFake { server, shared }
    }
}

/// A running fake Stripe. Dropping it stops the server.
pub struct StripeFake {
    server: LocalServer,
    shared: Arc<Shared>,
}

impl StripeFake {
    /// Starts a fake with a random `sk_test_…` key and `whsec_…` secret.
    pub async fn start() -> StripeFake {
        StripeFake::builder().start().await
    }

    /// A builder whose keys are random until set.
    pub fn builder() -> StripeFakeBuilder {
        StripeFakeBuilder {
            secret_key: format!("sk_test_{}", token(24)),
            webhook_secret: format!("whsec_{}", token(32)),
            api_version: PINNED_VERSION.to_owned(),
        }
    }

    /// `http://127.0.0.1:<port>`: the service's `payments.stripe.api_base`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The `sk_test_…` key requests must carry: the service's `payments.stripe.secret_key`.
    pub fn secret_key(&self) -> &str {
        &self.shared.secret_key
    }

    /// The `whsec_…` secret events are signed with: the service's `payments.stripe.webhook_secret`.
    pub fn webhook_secret(&self) -> &str {
        &self.shared.webhook_secret
    }

    /// Stops serving and waits until the server has let go of its port.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    // --- what the fake holds ---

    /// How many objects of `kind` were really created; replays create none.
    pub fn created(&self, kind: Kind) -> usize {
        self.shared.lock().created.get(&kind).copied().unwrap_or(0)
    }

    /// An object as it is now, by id, without a request.
    pub fn object(&self, id: &str) -> Option<Value> {
        self.shared.lock().objects.get(id).cloned()
    }

    /// Every request received, in order, faults and refusals included.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every event created, in order.
    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().events.clone()
    }

    /// Every delivery attempted, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    // --- controls ---

    /// Where events are POSTed from now on; until set, events are kept but not sent.
    pub fn set_webhook_url(&self, url: impl Into<String>) {
        self.shared.lock().webhook_url = Some(url.into());
    }

    /// The clock for `created` fields and signature timestamps (Unix seconds), for a service on a
    /// manual clock that checks signatures against its own time. Unset: the system clock.
    pub fn set_now(&self, unix_seconds: i64) {
        self.shared.lock().now = Some(unix_seconds);
    }

    /// The platform's available balance in `currency` (lower case), which transfers draw from.
    pub fn set_available_balance(&self, currency: &str, amount: i64) {
        self.shared.lock().set_available_balance(currency, amount);
    }

    /// What transfers in `currency` may still draw.
    pub fn available_balance(&self, currency: &str) -> i64 {
        self.shared.lock().available_balance(currency)
    }

    /// The next `times` requests to `path` answer `fault`. The path is matched by segment,
    /// `*` standing for any one (`/v1/payment_intents`, `/v1/payment_intents/*/cancel`).
    pub fn fail_next(&self, path: &str, times: usize, fault: Fault) {
        self.shared.lock().next_replies.fail(path, times, fault);
    }

    /// The next request to `path` that gets past auth is processed at once (objects created,
    /// saved under its idempotency key, events sent) and answered `delay` later: what a client
    /// that times out sees of a provider that acted.
    pub fn delay_next_reply(&self, path: &str, delay: Duration) {
        self.shared.lock().next_replies.delay(path, delay);
    }

    /// Like [`delay_next_reply`](Self::delay_next_reply), until the test lets the reply go: the
    /// request is processed at once, its reply waits for [`HeldReply::release`] (or the handle's
    /// drop). For a client that dies between the provider's work and its own write.
    pub fn hold_next_reply(&self, path: &str) -> HeldReply {
        self.shared.lock().next_replies.hold(path)
    }

    /// The customer paid: the intent `succeeded` with `amount_received`, a charge to refund or
    /// dispute, and `payment_intent.succeeded` sent.
    pub async fn succeed_payment(&self, payment_intent: &str, amount_received: i64) -> Event {
        let charge = new_id("ch");
        self.change(
            Kind::PaymentIntent,
            payment_intent,
            "payment_intent.succeeded",
            |intent| {
                succeed(intent, amount_received, charge);
            },
        )
        .await
    }

    /// An attempt failed: the intent goes back to `requires_payment_method` with a
    /// `last_payment_error`, so the customer may try again (docs/providers/stripe-api.md 5.2).
    pub async fn fail_payment(&self, payment_intent: &str) -> Event {
        self.change(
            Kind::PaymentIntent,
            payment_intent,
            "payment_intent.payment_failed",
            |intent| {
                intent["status"] = json!("requires_payment_method");
                intent["last_payment_error"] = json!({
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": "Your card was declined.",
                });
            },
        )
        .await
    }

    /// A bank transfer of `amount` arrived for a `customer_balance` intent. Short of what remains:
    /// `amount_remaining` falls and `payment_intent.partially_funded` is sent. Covering it: the
    /// intent `succeeded` and `payment_intent.succeeded` is sent (the excess stays with the
    /// customer, as Stripe keeps it in the customer's balance).
    pub async fn partially_fund(&self, payment_intent: &str, amount: i64) -> Event {
        let event = self.shared.lock().fund_intent(payment_intent, amount, None);
        self.shared.deliver(&event).await;
        event
    }

    /// The refund reached the customer: `succeeded`, `refund.updated` sent.
    pub async fn succeed_refund(&self, refund: &str) -> Event {
        self.change(Kind::Refund, refund, "refund.updated", |refund| {
            refund["status"] = json!("succeeded");
            refund["pending_reason"] = Value::Null;
        })
        .await
    }

    /// The refund failed (`failure_reason: declined`): its amount is refundable again,
    /// `refund.updated` sent.
    pub async fn fail_refund(&self, refund: &str) -> Event {
        self.change(Kind::Refund, refund, "refund.updated", |refund| {
            refund["status"] = json!("failed");
            refund["pending_reason"] = Value::Null;
            refund["failure_reason"] = json!("declined");
        })
        .await
    }

    /// The cardholder disputes `amount` of a succeeded intent's charge: a `dp_…` in
    /// `needs_response`, `charge.dispute.created` sent. The dispute is `event.object()`.
    pub async fn dispute(&self, payment_intent: &str, amount: i64) -> Event {
        let event = {
            let mut state = self.shared.lock();
            let intent = state
                .get(Kind::PaymentIntent, payment_intent)
                .unwrap_or_else(|| panic!("the Stripe fake has no payment_intent {payment_intent}"));
            let charge = intent["latest_charge"].clone();
            assert!(charge.is_string(), "{payment_intent} has no charge to dispute");
            let now = state.now();
            let dispute = json!({
                "id": new_id("dp"),
                "object": "dispute",
                "amount": amount,
                "balance_transactions": [],
                "charge": charge,
                "created": now,
                "currency": intent["currency"],
                "evidence": {},
                "evidence_details": {"due_by": now + 7 * 86_400, "has_evidence": false, "past_due": false, "submission_count": 0},
                "is_charge_refundable": false,
                "livemode": false,
                "metadata": {},
                "payment_intent": payment_intent,
                "reason": "fraudulent",
                "status": "needs_response",
            });
            state.insert(Kind::Dispute, dispute.clone());
            state.event("charge.dispute.created", &dispute, None, None)
        };
        self.shared.deliver(&event).await;
        event
    }

    /// The dispute is decided: `won` or `lost`, `charge.dispute.closed` sent.
    pub async fn close_dispute(&self, dispute: &str, outcome: DisputeOutcome) -> Event {
        let status = match outcome {
            DisputeOutcome::Won => "won",
            DisputeOutcome::Lost => "lost",
        };
        self.change(Kind::Dispute, dispute, "charge.dispute.closed", |dispute| {
            dispute["status"] = json!(status);
        })
        .await
    }

    /// Sends `charge.refunded` for the intent's charge, as Stripe does whenever a charge is
    /// refunded, in part or in full. On the pinned version the Charge no longer lists its refunds
    /// (changelog 2022-11-15), so the object carries `amount_refunded` and `refunded` only.
    pub async fn charge_refunded(&self, payment_intent: &str) -> Event {
        let event = {
            let mut state = self.shared.lock();
            let charge = state
                .charge(payment_intent)
                .unwrap_or_else(|| panic!("{payment_intent} has no charge"));
            state.event("charge.refunded", &charge, None, None)
        };
        self.shared.deliver(&event).await;
        event
    }

    /// Sends an event again, newly signed (duplicates, or any order a test picks); the
    /// receiver's status, `None` if it could not be reached or no URL is set.
    pub async fn deliver(&self, event_id: &str) -> Option<u16> {
        let event = self
            .shared
            .lock()
            .events
            .iter()
            .find(|e| e.id == event_id)
            .cloned()
            .unwrap_or_else(|| panic!("the Stripe fake has no event {event_id}"));
        self.shared.deliver(&event).await
    }

    /// Edits one object, records the event `event_type` with the object as it now is (and, for
    /// `*.updated`, `previous_attributes`), and delivers it.
    async fn change(&self, kind: Kind, id: &str, event_type: &str, edit: impl FnOnce(&mut Value)) -> Event {
        let event = {
            let mut state = self.shared.lock();
            let object = state
                .get_mut(kind, id)
                .unwrap_or_else(|| panic!("the Stripe fake has no {} {id}", kind.object()));
            let before = object.clone();
            edit(object);
            let after = object.clone();
            let previous = event_type
                .ends_with(".updated")
                .then(|| previous_attributes(&before, &after));
            state.event(event_type, &after, previous, None)
        };
        self.shared.deliver(&event).await;
        event
    }
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed by the `whsec_…` string's bytes as
/// they are (stripe-node `src/Webhooks.ts`, `generateTestHeaderString`).
pub fn sign(webhook_secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(webhook_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn succeed(intent: &mut Value, amount_received: i64, charge: String) {
    intent["status"] = json!("succeeded");
    intent["amount_received"] = json!(amount_received);
    intent["amount_capturable"] = json!(0);
    intent["last_payment_error"] = Value::Null;
    intent["next_action"] = Value::Null;
    if intent["latest_charge"].is_null() {
        intent["latest_charge"] = json!(charge);
    }
}

/// The top-level fields `after` changed, with their values before (Stripe's
/// `data.previous_attributes` on `*.updated` events).
fn previous_attributes(before: &Value, after: &Value) -> Value {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return json!({});
    };
    let changed: Map<String, Value> = before
        .iter()
        .filter(|(key, value)| after.get(*key) != Some(value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Value::Object(changed)
}

struct Shared {
    secret_key: String,
    webhook_secret: String,
    state: Mutex<State>,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// POSTs `event` to the webhook URL, signed now, and records the outcome.
    async fn deliver(&self, event: &Event) -> Option<u16> {
        let (url, now) = {
            let state = self.lock();
            (state.webhook_url.clone(), state.now())
        };
        let url = url?;
        let status = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header(
                "stripe-signature",
                sign(&self.webhook_secret, now, event.body.as_bytes()),
            )
            .body(event.body.clone())
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16());
        self.lock().deliveries.push(Delivery {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            status,
        });
        status
    }
}

/// A saved answer under an idempotency key, with what identifies the request it answered.
struct Saved {
    method: Method,
    path: String,
    params: Map<String, Value>,
    status: StatusCode,
    body: String,
}

struct State {
    api_version: String,
    now: Option<i64>,
    webhook_url: Option<String>,
    /// Every object by id; ids carry their kind's prefix, so one map serves all.
    objects: HashMap<String, Value>,
    created: HashMap<Kind, usize>,
    balances: HashMap<String, i64>,
    /// Each customer's virtual bank account per country: Stripe makes one the first time a
    /// customer pays by bank transfer and reuses it.
    virtual_accounts: HashMap<(String, String), Value>,
    /// By (secret key, idempotency key): keys are scoped to the account that sent them.
    idempotency: HashMap<(String, String), Saved>,
    next_replies: NextReplies<Fault>,
    /// Money received by bank transfer that no intent took, by (customer, currency).
    cash_balances: HashMap<(String, String), i64>,
    requests: Vec<ReceivedRequest>,
    events: Vec<Event>,
    deliveries: Vec<Delivery>,
}

impl State {
    fn new(api_version: String) -> State {
        State {
            api_version,
            now: None,
            webhook_url: None,
            objects: HashMap::new(),
            created: HashMap::new(),
            balances: HashMap::new(),
            virtual_accounts: HashMap::new(),
            idempotency: HashMap::new(),
            next_replies: NextReplies::new(),
            cash_balances: HashMap::new(),
            requests: Vec::new(),
            events: Vec::new(),
            deliveries: Vec::new(),
        }
    }

    fn now(&self) -> i64 {
        self.now.unwrap_or_else(system_now)
    }

    fn insert(&mut self, kind: Kind, object: Value) {
        let id = object["id"].as_str().expect("objects have ids").to_owned();
        self.objects.insert(id, object);
        *self.created.entry(kind).or_default() += 1;
    }

    fn get(&self, kind: Kind, id: &str) -> Option<&Value> {
        self.objects.get(id).filter(|o| o["object"] == kind.object())
    }

    fn get_mut(&mut self, kind: Kind, id: &str) -> Option<&mut Value> {
        self.objects.get_mut(id).filter(|o| o["object"] == kind.object())
    }

    /// The intent whose charge is `charge` (the fake keeps no separate charge objects).
    fn intent_of_charge(&self, charge: &str) -> Option<&Value> {
        self.objects
            .values()
            .find(|o| o["object"] == "payment_intent" && o["latest_charge"] == charge)
    }

    /// What the refunds of `payment_intent` hold: all but the failed and cancelled ones.
    fn refunded(&self, payment_intent: &str) -> i64 {
        self.objects
            .values()
            .filter(|o| o["object"] == "refund" && o["payment_intent"] == payment_intent)
            .filter(|o| api::holds_amount(o))
            .filter_map(|o| o["amount"].as_i64())
            .sum()
    }

    /// Applies `amount` received by bank transfer to an intent that shows transfer instructions.
    /// Short of what remains: `amount_remaining` falls, `payment_intent.partially_funded`.
    /// Covering it: the intent succeeds, `payment_intent.succeeded`, and the excess goes to the
    /// customer's cash balance, where Stripe keeps it.
    fn fund_intent(&mut self, id: &str, amount: i64, caller: Option<&Caller>) -> Event {
        let intent = self
            .get_mut(Kind::PaymentIntent, id)
            .unwrap_or_else(|| panic!("the Stripe fake has no payment_intent {id}"));
        let instructions = &mut intent["next_action"]["display_bank_transfer_instructions"];
        let remaining = instructions["amount_remaining"]
            .as_i64()
            .unwrap_or_else(|| panic!("{id} awaits no bank transfer"));
        let (event_type, excess) = if amount < remaining {
            instructions["amount_remaining"] = json!(remaining - amount);
            ("payment_intent.partially_funded", 0)
        } else {
            let full = intent["amount"].as_i64().unwrap_or_default();
            succeed(intent, full, new_id("ch"));
            ("payment_intent.succeeded", amount - remaining)
        };
        let intent = intent.clone();
        if let (Some(customer), Some(currency)) = (intent["customer"].as_str(), intent["currency"].as_str()) {
            self.add_cash_balance(customer, currency, excess);
        }
        self.event(event_type, &intent, None, caller)
    }

    /// The open bank-transfer intent of `customer` whose reference is `reference`.
    fn awaiting_transfer(&self, customer: &str, currency: &str, reference: &str) -> Option<String> {
        self.objects
            .values()
            .filter(|o| o["object"] == "payment_intent" && o["customer"] == customer && o["currency"] == currency)
            .find(|o| o["next_action"]["display_bank_transfer_instructions"]["reference"] == reference)
            .and_then(|o| o["id"].as_str().map(str::to_owned))
    }

    fn add_cash_balance(&mut self, customer: &str, currency: &str, amount: i64) {
        *self
            .cash_balances
            .entry((customer.to_owned(), currency.to_owned()))
            .or_default() += amount;
    }

    /// A customer's cash balance in `currency`: money received that no intent took.
    fn cash_balance(&self, customer: &str, currency: &str) -> i64 {
        self.cash_balances
            .get(&(customer.to_owned(), currency.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The Charge of a succeeded intent, as `charge.refunded` shows it (the fake keeps no
    /// Charge objects; their fields derive from the intent and its refunds).
    fn charge(&self, payment_intent: &str) -> Option<Value> {
        let intent = self.get(Kind::PaymentIntent, payment_intent)?;
        let id = intent["latest_charge"].as_str()?;
        let captured = intent["amount_received"].as_i64().unwrap_or_default();
        let refunded = self.refunded(payment_intent);
        let disputed = self
            .objects
            .values()
            .any(|o| o["object"] == "dispute" && o["payment_intent"] == payment_intent);
        Some(json!({
            "id": id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": captured,
            "amount_refunded": refunded,
            "captured": true,
            "created": intent["created"],
            "currency": intent["currency"],
            "customer": intent["customer"],
            "disputed": disputed,
            "livemode": false,
            "metadata": intent["metadata"],
            "paid": true,
            "payment_intent": payment_intent,
            "refunded": refunded >= captured,
            "status": "succeeded",
            "transfer_group": intent["transfer_group"],
        }))
    }

    fn available_balance(&self, currency: &str) -> i64 {
        self.balances
            .get(currency)
            .copied()
            .unwrap_or(DEFAULT_AVAILABLE_BALANCE)
    }

    fn set_available_balance(&mut self, currency: &str, amount: i64) {
        self.balances.insert(currency.to_owned(), amount);
    }

    /// The `financial_addresses[]` entry of `customer`'s account in `country`, made on first need.
    fn virtual_account(&mut self, customer: &str, country: &str) -> Value {
        let serial = 1_000_000 + self.virtual_accounts.len() as u64;
        self.virtual_accounts
            .entry((customer.to_owned(), country.to_owned()))
            .or_insert_with(|| {
                json!({
                    "type": "iban",
                    "supported_networks": ["sepa"],
                    "iban": {
                        "iban": iban::generate(country, "STRP", serial),
                        "bic": format!("STRP{country}P1"),
                        "country": country,
                        "account_holder_name": "Stripe Fake Payments Europe",
                        "account_holder_address": {"line1": "1 Fake Street", "city": "Dublin", "country": "IE", "postal_code": null, "state": null, "line2": null},
                        "bank_address": {"line1": "2 Fake Street", "city": "Dublin", "country": "IE", "postal_code": null, "state": null, "line2": null},
                    },
                })
            })
            .clone()
    }

    /// Records an event about `object` in Stripe's envelope (stripe-node `EventBase`).
    fn event(&mut self, event_type: &str, object: &Value, previous: Option<Value>, caller: Option<&Caller>) -> Event {
        let id = new_id("evt");
        let mut data = json!({ "object": object });
        if let Some(previous) = previous {
            data["previous_attributes"] = previous;
        }
        let body = json!({
            "id": id,
            "object": "event",
            "api_version": self.api_version,
            "created": self.now(),
            "data": data,
            "livemode": false,
            "pending_webhooks": 1,
            "request": {
                "id": caller.map(|c| c.request_id),
                "idempotency_key": caller.and_then(|c| c.idempotency_key),
            },
            "type": event_type,
        });
        let event = Event {
            id,
            event_type: event_type.to_owned(),
            body: body.to_string(),
        };
        self.events.push(event.clone());
        event
    }
}

/// `<prefix>_<24 random characters>`, the shape of Stripe's ids.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", token(24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hex_hmac_of_the_timestamp_and_body() {
        // Stripe's documented scheme, checked against a value computed with `openssl dgst
        // -sha256 -hmac whsec_test` over "1700000000.{}".
        assert_eq!(
            sign("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
