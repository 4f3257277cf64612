//! A local Mangopay: the calls crowdledger makes (OAuth tokens, users, wallets, card web and
//! bank-wire pay-ins, transfers, IBAN bank accounts, payouts, refunds, disputes read back, hooks,
//! API responses by idempotency key), served on `127.0.0.1:0` under `/v2.01/{ClientId}/…` as
//! Mangopay's API reference describes them, with controls for what a test needs Mangopay to do:
//! fail, answer late, move a transaction and send the hook that says so.
//!
//! Sources and the choices made where they are silent: docs/providers/mangopay-api.md. Faithful
//! there, and unlike Stripe: a Bearer token from `oauth/token` that expires, PascalCase JSON,
//! amounts in minor units, an `Idempotency-Key` that is never replayed (a second use is 409 and
//! the first answer is read from `responses/{key}`), transactions that end `SUCCEEDED` or
//! `FAILED` with a `ResultCode` rather than an HTTP error, and hooks that are unsigned GETs naming
//! the resource (`RessourceId`), which the service must read back.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use crowdledger_provider_fakes::mangopay::{Kind, MangopayFake};
//! use serde_json::{Value, json};
//!
//! let mangopay = MangopayFake::start().await;
//! // The service would be configured with these three and the hook URL it serves.
//! let (api_base, client_id, api_key) = (mangopay.base_url(), mangopay.client_id(), mangopay.api_key());
//! let http = reqwest::Client::builder().no_proxy().build().unwrap();
//! let token: Value = http
//!     .post(format!("{api_base}/v2.01/oauth/token"))
//!     .basic_auth(client_id, Some(api_key))
//!     .form(&[("grant_type", "client_credentials")])
//!     .send()
//!     .await
//!     .unwrap()
//!     .json()
//!     .await
//!     .unwrap();
//! let user: Value = http
//!     .post(format!("{api_base}/v2.01/{client_id}/users/natural"))
//!     .bearer_auth(token["access_token"].as_str().unwrap())
//!     .header("idempotency-key", "0f8fad5b-d9cb-469f-a165-70867728950e")
//!     .json(&json!({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com", "UserCategory": "PAYER"}))
//!     .send()
//!     .await
//!     .unwrap()
//!     .json()
//!     .await
//!     .unwrap();
//! assert!(user["Id"].as_str().unwrap().starts_with("user_m_"));
//! assert_eq!(mangopay.created(Kind::User), 1);
//! # }
//! ```

mod api;
mod error;
mod server;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use serde_json::Value;

use crate::local_server::{LocalServer, outbound_client};
pub use crate::next_replies::HeldReply;
use crate::token;
use server::handle;
use state::State;

/// How long a token lives unless the builder says otherwise: the sandbox's 1200 s
/// (docs/providers/mangopay-api.md section 2).
pub const DEFAULT_TOKEN_LIFETIME_SECONDS: u64 = 1200;

/// How long the service may take to answer a hook before Mangopay counts it failed: "within 2
/// seconds" (docs:webhooks). The fake waits no longer unless the builder says otherwise.
pub const HOOK_DEADLINE: Duration = Duration::from_secs(2);

/// The objects the fake keeps. Ids are opaque strings shaped like Mangopay's newer ones,
/// `<prefix>_m_<26 characters>` (`user_m_…`, `wlt_m_…`, `payin_m_…`, `transfer_m_…`,
/// `bankacc_m_…`, `payout_m_…`, `refund_m_…`, `dispute_m_…`, `hook_m_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Wallet,
    PayIn,
    Transfer,
    BankAccount,
    PayOut,
    Refund,
    Dispute,
    Hook,
}

impl Kind {
    fn id_prefix(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Wallet => "wlt",
            Kind::PayIn => "payin",
            Kind::Transfer => "transfer",
            Kind::BankAccount => "bankacc",
            Kind::PayOut => "payout",
            Kind::Refund => "refund",
            Kind::Dispute => "dispute",
            Kind::Hook => "hook",
        }
    }

    /// The resource's name in a 404's message.
    fn ressource(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Wallet => "Wallet",
            Kind::PayIn => "PayIn",
            Kind::Transfer => "Transfer",
            Kind::BankAccount => "BankAccount",
            Kind::PayOut => "PayOut",
            Kind::Refund => "Refund",
            Kind::Dispute => "Dispute",
            Kind::Hook => "Hook",
        }
    }
}

/// An answer the fake gives instead of the work. Where it comes from decides whether the
/// request's `Idempotency-Key` is spent: an answer from in front of the API spends nothing, so a
/// retry with the same key runs for real; an answer from the API is its outcome like any other,
/// so the key is spent and `responses/{key}` shows it (docs/providers/mangopay-api.md section 3:
/// "blocked regardless of the HTTP response code of the first API call").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 `rate_limit`, with `x-ratelimit-remaining` at 0 for the 15-minute window. In front of
    /// the API: nothing done, the key not spent.
    RateLimited,
    /// 500 from the API: nothing done, but the key is spent on this answer.
    ServerError,
    /// 503 from in front of the API: nothing done, the key not spent.
    ServiceUnavailable,
    /// The connection closes without an answer: nothing done, the key not spent.
    DropConnection,
}

/// A request as the fake received it, kept in arrival order whatever it was answered.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// The JSON body; the text when it is not JSON (the token endpoint's form); `null` when empty.
    pub body: Value,
    pub idempotency_key: Option<String>,
}

/// A hook notification: what Mangopay puts in the query string of its GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub event_type: String,
    pub ressource_id: String,
    /// Unix seconds, on the fake's clock.
    pub date: i64,
}

/// One GET of a hook to its URL.
#[derive(Debug, Clone)]
pub struct HookDelivery {
    pub hook: Hook,
    pub url: String,
    /// The receiver's status code; `None` when it could not be reached or did not answer in time.
    pub status: Option<u16>,
    /// How long the receiver took to answer (or to fail).
    pub elapsed: Duration,
}

impl HookDelivery {
    /// Whether Mangopay would count it delivered: 200 within [`HOOK_DEADLINE`].
    pub fn delivered(&self) -> bool {
        self.status == Some(200) && self.elapsed <= HOOK_DEADLINE
    }
}

/// How a dispute closes: its `ResultCode` (docs:api-reference/disputes/close-dispute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeOutcome {
    Won,
    Lost,
    /// Cancelled: no money moved.
    Void,
}

impl DisputeOutcome {
    fn result_code(self) -> &'static str {
        match self {
            DisputeOutcome::Won => "WON",
            DisputeOutcome::Lost => "LOST",
            DisputeOutcome::Void => "VOID",
        }
    }
}

/// Builds a [`MangopayFake`] with chosen credentials and timings; [`MangopayFake::start`] takes
/// random credentials and the sandbox's timings.
#[derive(Debug, Clone)]
pub struct MangopayFakeBuilder {
    client_id: String,
    api_key: String,
    token_lifetime_seconds: u64,
    hook_timeout: Duration,
}

impl MangopayFakeBuilder {
    /// The `ClientId` in every path and in the token request's Basic credentials.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// The API key of the token request's Basic credentials.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = api_key.into();
        self
    }

    /// The `expires_in` of new tokens; each stops working that many seconds after it was issued.
    pub fn token_expires_in(mut self, seconds: u64) -> Self {
        self.token_lifetime_seconds = seconds;
        self
    }

    /// How long a hook's GET may take before the fake gives up on it ([`HOOK_DEADLINE`] unless
    /// set; a longer one lets a test see how late a slow receiver answers).
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hook_timeout = timeout;
        self
    }

    /// Binds `127.0.0.1:0` and serves in a task of the current runtime.
    pub async fn start(self) -> MangopayFake {
        let shared = Arc::new(Shared {
            client_id: self.client_id,
            api_key: self.api_key,
            token_lifetime_seconds: self.token_lifetime_seconds,
            state: Mutex::new(State::new()),
            http: outbound_client(self.hook_timeout, "Mangopay-Hooks/fake"),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = LocalServer::start(app, "Mangopay").await;
        MangopayFake { server, shared }
    }
}

/// A running fake Mangopay. Dropping it stops the server.
pub struct MangopayFake {
    server: LocalServer,
    shared: Arc<Shared>,
}

impl MangopayFake {
    /// Starts a fake with random credentials.
    pub async fn start() -> MangopayFake {
        MangopayFake::builder().start().await
    }

    /// A builder whose credentials are random until set.
    pub fn builder() -> MangopayFakeBuilder {
        MangopayFakeBuilder {
            client_id: format!("crowdledger-fake-{}", token(8)),
            api_key: token(32),
            token_lifetime_seconds: DEFAULT_TOKEN_LIFETIME_SECONDS,
            hook_timeout: HOOK_DEADLINE,
        }
    }

    /// `http://127.0.0.1:<port>`: the service's `payments.mangopay.api_base`; paths add `/v2.01/…`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The service's `payments.mangopay.client_id`.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The API key the service asks for tokens with.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// Stops serving and waits until the server has let go of its port.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    // --- what the fake holds ---

    /// How many objects of `kind` were really created (a request refused, or blocked by its
    /// idempotency key, creates none).
    pub fn created(&self, kind: Kind) -> usize {
        self.shared.lock().created.get(&kind).copied().unwrap_or(0)
    }

    /// An object as it is now, by id, without a request.
    pub fn object(&self, id: &str) -> Option<Value> {
        self.shared.lock().objects.get(id).map(|stored| stored.object.clone())
    }

    /// A wallet's `Balance.Amount`. Panics if there is no such wallet.
    pub fn wallet_balance(&self, wallet: &str) -> i64 {
        self.shared.lock().balance(wallet)
    }

    /// Every request received, in order, faults and refusals included.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests reached `oauth/token`, granted or not.
    pub fn token_requests(&self) -> usize {
        self.shared.lock().token_requests
    }

    /// Every access token issued, in order, expired or not: what a test checks never reaches the
    /// service's logs.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().issued_tokens.clone()
    }

    /// Every hook notification the fake made, in order, sent or not.
    pub fn hooks(&self) -> Vec<Hook> {
        self.shared.lock().hooks.clone()
    }

    /// Every GET of a hook attempted, in order.
    pub fn hook_deliveries(&self) -> Vec<HookDelivery> {
        self.shared.lock().deliveries.clone()
    }

    // --- controls ---

    /// Where hooks go from now on, for every event type no `POST hooks` registered a URL for.
    /// Until then such hooks are made (see [`hooks`](Self::hooks)) but not sent.
    pub fn set_hook_url(&self, url: impl Into<String>) {
        self.shared.lock().hook_url = Some(url.into());
    }

    /// The clock for `CreationDate`, `ExecutionDate`, error `Date`s and hooks' `Date` (Unix
    /// seconds). Unset: the system clock. Tokens expire on the system clock whatever it says.
    pub fn set_now(&self, unix_seconds: i64) {
        self.shared.lock().now = Some(unix_seconds);
    }

    /// Every token issued so far stops working: the next call with one gets 401.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// The next `times` requests to `path` answer `fault`. `path` is what follows
    /// `/v2.01/{ClientId}/` (`payins/card/web`), or `oauth/token`; `*` stands for any one
    /// segment (`payins/*/refunds`).
    pub fn fail_next(&self, path: &str, times: usize, fault: Fault) {
        self.shared.lock().next_replies.fail(path, times, fault);
    }

    /// The next request to `path` (as [`fail_next`](Self::fail_next) writes it) that gets past
    /// the token and idempotency checks is processed at once (objects created, answer saved under
    /// its key, hooks sent) and answered `delay` later: what a client that times out sees of a
    /// provider that acted.
    pub fn delay_next_reply(&self, path: &str, delay: Duration) {
        self.shared.lock().next_replies.delay(path, delay);
    }

    /// Like [`delay_next_reply`](Self::delay_next_reply), until the test lets the reply go: the
    /// request is processed at once, its reply waits for [`HeldReply::release`] (or the handle's
    /// drop). For a client that dies between the provider's work and its own write.
    pub fn hold_next_reply(&self, path: &str) -> HeldReply {
        self.shared.lock().next_replies.hold(path)
    }

    /// The investor paid on the hosted page: the card web pay-in `SUCCEEDED`, its wallet credited
    /// with `CreditedFunds`, `PAYIN_NORMAL_SUCCEEDED` sent.
    pub async fn succeed_payin(&self, payin: &str) -> Hook {
        let hook = self.shared.lock().succeed_card_payin(payin);
        self.notify(hook).await
    }

    /// The pay-in `FAILED` with `result_code` (`101109`: the hosted session or the wire's month
    /// ran out; `101002`: cancelled by the user), `PAYIN_NORMAL_FAILED` sent.
    pub async fn fail_payin(&self, payin: &str, result_code: &str) -> Hook {
        let hook = self.shared.lock().fail_payin(payin, result_code);
        self.notify(hook).await
    }

    /// An investor's bank wire of `amount` arrived for a bank-wire pay-in: it `SUCCEEDED` with
    /// `DebitedFunds` = `amount` whatever was declared (`Fees` as declared), its wallet credited
    /// with `amount - Fees`, `PAYIN_NORMAL_SUCCEEDED` sent. The service finds a mismatch by
    /// reading the pay-in back.
    pub async fn receive_wire(&self, payin: &str, amount: i64) -> Hook {
        let hook = self.shared.lock().receive_wire(payin, amount);
        self.notify(hook).await
    }

    /// The payout reached the bank: `SUCCEEDED`, `PAYOUT_NORMAL_SUCCEEDED` sent.
    pub async fn succeed_payout(&self, payout: &str) -> Hook {
        let hook = self.shared.lock().succeed_pending(Kind::PayOut, payout);
        self.notify(hook).await
    }

    /// The payout `FAILED` (`121999`, generic withdrawal error): its amount back in the wallet,
    /// `PAYOUT_NORMAL_FAILED` sent.
    pub async fn fail_payout(&self, payout: &str) -> Hook {
        let hook = self
            .shared
            .lock()
            .fail_pending(Kind::PayOut, payout, state::GENERIC_PAYOUT_FAILURE);
        self.notify(hook).await
    }

    /// A succeeded payout bounced (`reason`: `BANKACCOUNT_INCORRECT`,
    /// `BANKACCOUNT_HAS_BEEN_CLOSED`, …): the payout stays `SUCCEEDED`, a refund of it
    /// `SUCCEEDED` puts the money back in the wallet, `PAYOUT_REFUND_SUCCEEDED` sent with the
    /// refund's id.
    pub async fn return_payout(&self, payout: &str, reason: &str) -> Hook {
        let hook = self.shared.lock().return_payout(payout, reason);
        self.notify(hook).await
    }

    /// The pay-in refund reached the card: `SUCCEEDED`, `PAYIN_REFUND_SUCCEEDED` sent.
    pub async fn succeed_refund(&self, refund: &str) -> Hook {
        let hook = self.shared.lock().succeed_pending(Kind::Refund, refund);
        self.notify(hook).await
    }

    /// The pay-in refund `FAILED` (`001999`): its amount back in the wallet,
    /// `PAYIN_REFUND_FAILED` sent.
    pub async fn fail_refund(&self, refund: &str) -> Hook {
        let hook = self
            .shared
            .lock()
            .fail_pending(Kind::Refund, refund, state::GENERIC_FAILURE);
        self.notify(hook).await
    }

    /// The cardholder disputes `amount` of a succeeded card pay-in: a `CONTESTABLE` dispute in
    /// `PENDING_CLIENT_ACTION`, `DISPUTE_CREATED` sent; the hook's `ressource_id` is the dispute.
    /// No wallet moves: Mangopay takes the money from the platform's repudiation wallet.
    pub async fn open_dispute(&self, payin: &str, amount: i64) -> Hook {
        let hook = self.shared.lock().open_dispute(payin, amount);
        self.notify(hook).await
    }

    /// The dispute is decided: `CLOSED` with `ResultCode` `WON`, `LOST` or `VOID`,
    /// `DISPUTE_CLOSED` sent.
    pub async fn close_dispute(&self, dispute: &str, outcome: DisputeOutcome) -> Hook {
        let hook = self.shared.lock().close_dispute(dispute, outcome);
        self.notify(hook).await
    }

    /// Sends any hook, now, for any id: a duplicate, one out of order, or one about a resource
    /// the fake never had (a forged or foreign notification; the fake does not police them, and
    /// neither can the service but by reading the resource back). The receiver's status, `None`
    /// if it did not answer in time or no URL is set.
    pub async fn send_hook(&self, event_type: &str, ressource_id: &str) -> Option<u16> {
        let hook = self.shared.lock().hook(event_type, ressource_id);
        self.shared.deliver(&hook).await
    }

    async fn notify(&self, hook: Hook) -> Hook {
        self.shared.deliver(&hook).await;
        hook
    }
}

struct Shared {
    client_id: String,
    api_key: String,
    token_lifetime_seconds: u64,
    state: Mutex<State>,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// GETs `hook` to its URL, as Mangopay does (`?EventType=…&RessourceId=…&Date=…`, no
    /// signature), and records the outcome.
    async fn deliver(&self, hook: &Hook) -> Option<u16> {
        let url = self.lock().hook_url(&hook.event_type)?;
        let started = Instant::now();
        let status = self
            .http
            .get(&url)
            .query(&[
                ("EventType", hook.event_type.as_str()),
                ("RessourceId", hook.ressource_id.as_str()),
                ("Date", &hook.date.to_string()),
            ])
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16());
        self.lock().deliveries.push(HookDelivery {
            hook: hook.clone(),
            url,
            status,
            elapsed: started.elapsed(),
        });
        status
    }
}
