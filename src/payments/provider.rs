//! The payment provider adapter: what the service asks of a provider (create a payment, a
//! refund, a payout, a deposit) and how it understands what the provider says back (a signed
//! webhook, verified and mapped onto [`Event`]s).
//!
//! An in-process provider (the sandbox, with a manual clock only) names its object inside the
//! transaction that writes our row, and does no I/O there. A networked one (Stripe) is called
//! after commit instead, through the queue in `super::calls`, whose `Remote` is its outbound
//! half; our row waits without the provider's id until it answers (docs/providers.md).

use axum::http::HeaderMap;
use uuid::Uuid;

use super::PaymentError;
use crate::money::Money;
use crate::webhooks::signature::SignatureError;

/// What a provider tells us, whatever its wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Money arrived: a card payment of a pledge, or a sponsor's deposit.
    PaymentSucceeded {
        payment_id: String,
        amount: Money,
    },
    PaymentFailed {
        payment_id: String,
    },
    /// The investor disputed a captured card payment with their bank, for `amount` of it:
    /// the provider's dispute `dispute_id` is open.
    PaymentDisputed {
        payment_id: String,
        dispute_id: String,
        amount: Money,
    },
    /// The provider's dispute `dispute_id` of a card payment was decided: `lost`, the bank
    /// took `amount` back; else it was won (or closed without a chargeback) and nothing moved.
    DisputeClosed {
        payment_id: String,
        dispute_id: String,
        amount: Money,
        lost: bool,
    },
    /// A refund reached the card, for `amount`: it must be the refund's.
    RefundSucceeded {
        refund_id: String,
        amount: Money,
    },
    /// A payout reached the project, for `amount`: it must be the payout's.
    PayoutPaid {
        payout_id: String,
        amount: Money,
    },
    /// A verified event of a type we do not act on.
    Other,
}

/// An event as received: its provider's id and type, and its meaning.
#[derive(Clone, Debug)]
pub struct Received {
    pub event_id: String,
    pub event_type: String,
    /// `Err` when the verified body could not be understood: it is quarantined.
    pub event: Result<Vec<Event>, String>,
    /// Which of our rows the provider's object is, as the event says (Stripe: our id in the
    /// object's metadata): an event may arrive before we wrote the provider's answer to the
    /// call that created the object, and is still understood.
    pub named: Vec<Named>,
    /// Why an event that moves nothing is ignored, when the provider's adapter knows (Mangopay:
    /// a notification about something that is not ours), kept as the stored event's detail.
    pub note: Option<String>,
}

/// A provider's object named by one of our ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub object: Object,
    pub ours: Uuid,
    pub provider_id: String,
}

/// Longest id or type stored from a provider's event; real ones are a few dozen characters,
/// and Postgres indexes only so much of a key.
const MAX_STORED_ID: usize = 255;

/// Whether the database can store and index `s` as it is: Postgres text cannot hold NUL.
fn storable(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_STORED_ID && !s.contains('\0')
}

impl Event {
    /// The provider's ids of the objects the event is about: a payment, refund or payout, and
    /// for a dispute's events the dispute too.
    fn object_ids(&self) -> [Option<&str>; 2] {
        match self {
            Event::PaymentSucceeded { payment_id, .. } | Event::PaymentFailed { payment_id } => {
                [Some(payment_id), None]
            }
            Event::PaymentDisputed {
                payment_id, dispute_id, ..
            }
            | Event::DisputeClosed {
                payment_id, dispute_id, ..
            } => [Some(payment_id), Some(dispute_id)],
            Event::RefundSucceeded { refund_id, .. } => [Some(refund_id), None],
            Event::PayoutPaid { payout_id, .. } => [Some(payout_id), None],
            Event::Other => [None, None],
        }
    }
}

impl Received {
    /// A verified event as read from its body. One whose id, type or object ids the database
    /// could not store as they are is kept as [`Received::unreadable`], never half-stored.
    pub fn read(event_id: String, event_type: String, event: Result<Vec<Event>, String>, body: &[u8]) -> Received {
        let ids_storable = event.as_ref().map_or(true, |events| {
            events.iter().flat_map(Event::object_ids).flatten().all(storable)
        });
        if !(storable(&event_id) && storable(&event_type) && ids_storable) {
            return Received::unreadable(None, body, "an id or type that cannot be stored");
        }
        Received {
            event_id,
            event_type,
            // The reason quoted what the body said, which may hold a NUL.
            event: event.map_err(|why| why.replace('\0', "\u{fffd}")),
            named: Vec::new(),
            note: None,
        }
    }

    /// The event, with the rows of ours it names; ids that could not be stored are left out.
    pub fn naming(mut self, named: Vec<Named>) -> Received {
        self.named = named.into_iter().filter(|n| storable(&n.provider_id)).collect();
        self
    }

    /// The event, with why it moves nothing.
    pub fn noting(mut self, note: impl Into<String>) -> Received {
        self.note = Some(note.into());
        self
    }

    /// A verified body that could not be understood, to be quarantined: under `event_id` where
    /// it can be stored, else under the body's hash, so that a repeat is still a repeat.
    pub fn unreadable(event_id: Option<&str>, body: &[u8], why: &str) -> Received {
        use sha2::Digest;
        let event_id = event_id.filter(|id| storable(id)).map_or_else(
            || format!("unreadable:{}", hex::encode(sha2::Sha256::digest(body))),
            str::to_owned,
        );
        Received {
            event_id,
            event_type: "unknown".into(),
            event: Err(why.into()),
            named: Vec::new(),
            note: None,
        }
    }
}

/// Where an object of ours lives at its provider: `{provider, payment_id}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PaymentRef {
    #[schema(example = "sandbox")]
    pub provider: String,
    /// The provider's id for the payment, refund, payout or deposit; null while a networked
    /// provider (Stripe) has not yet answered the call that creates it, which the service
    /// repeats until it does.
    pub payment_id: Option<String>,
    /// What the platform's front-end confirms a card payment with (Stripe's PaymentIntent
    /// `client_secret`): in the answer to the pledge's creation only, never stored, so neither
    /// in a replay nor in a read (`GET /v1/pledges/{id}/payment-session` asks Stripe again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Where the investor pays (Mangopay's hosted card page, `RedirectURL`): the front-end sends
    /// them there, and Mangopay sends them back to `payments.mangopay.return_url`. In the answer
    /// to the pledge's creation only, never stored, like `client_secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// A bank transfer's: the account the investor wires the money to, once the provider gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "FR7630006000011234567890189")]
    pub iban: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bic: Option<String>,
    /// The account's holder, as the investor's bank may ask for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_holder: Option<String>,
    /// What the investor must write on the transfer, for the provider to match it to the pledge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl PaymentRef {
    pub fn new(provider: impl Into<String>, payment_id: Option<impl Into<String>>) -> Self {
        PaymentRef {
            provider: provider.into(),
            payment_id: payment_id.map(Into::into),
            client_secret: None,
            redirect_url: None,
            iban: None,
            bic: None,
            account_holder: None,
            reference: None,
        }
    }

    /// Where a bank transfer is to be wired, when it is one.
    pub fn wired_to(mut self, instructions: Option<super::calls::BankInstructions>) -> Self {
        if let Some(i) = instructions {
            self.iban = Some(i.iban);
            self.bic = i.bic;
            self.account_holder = i.account_holder;
            self.reference = Some(i.reference);
        }
        self
    }
}

/// What a provider is asked to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Payment,
    Refund,
    Payout,
    Deposit,
    /// Unused budget paid back to a sponsor.
    Withdrawal,
}

impl Object {
    /// What it is called in a sentence.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Object::Payment => "payment",
            Object::Refund => "refund",
            Object::Payout => "payout",
            Object::Deposit => "deposit",
            Object::Withdrawal => "withdrawal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the {provider} provider cannot create a {object:?} here: {why}")]
    Unsupported {
        provider: &'static str,
        object: Object,
        why: &'static str,
    },
}

/// The secrets inbound events are verified with, as configured here: each adapter reads its
/// own, and one that is absent is a provider that does not receive events.
#[derive(Clone, Copy)]
pub struct WebhookSecrets<'a> {
    /// The sandbox's (Standard Webhooks), with a manual clock only.
    pub sandbox: Option<&'a crate::webhooks::signature::WebhookSecret>,
    pub stripe: Option<&'a secrecy::SecretString>,
}

/// A payment provider, as the domain sees it.
pub trait PaymentProvider: Sync {
    /// The name in `POST /v1/webhooks/{provider}`, in `psp:<name>:…` accounts and in our rows.
    fn name(&self) -> &'static str;

    /// Whether the provider is reached over the network: its objects are then created by a
    /// queued call after commit (`super::calls`), and named when it answers. An in-process one
    /// (the sandbox) names them in the transaction, by [`PaymentProvider::create`].
    fn networked(&self) -> bool {
        false
    }

    /// Whether the provider keeps the project as a user of its own, owner of the offers' escrow
    /// (Mangopay): its card payments then carry the project's legal identity
    /// ([`super::payee::Payee`]), and cannot be made without it.
    fn needs_payee(&self) -> bool {
        false
    }

    /// Whether investors may pay through it by bank transfer, with instructions it gives.
    fn takes_bank_transfers(&self) -> bool {
        false
    }

    /// The provider's id for a new object of ours, idempotent by `id` (our row's id).
    fn create(&self, object: Object, id: Uuid, amount: Money) -> Result<String, ProviderError>;

    /// Verifies a delivery's raw bytes ([`PaymentError::InvalidSignature`] when it fails), then
    /// reads it.
    fn read_webhook(
        &self,
        secrets: &WebhookSecrets<'_>,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Received, PaymentError>;

    fn create_payment(&self, id: Uuid, amount: Money) -> Result<String, ProviderError> {
        self.create(Object::Payment, id, amount)
    }
    fn create_refund(&self, id: Uuid, amount: Money) -> Result<String, ProviderError> {
        self.create(Object::Refund, id, amount)
    }
    fn create_payout(&self, id: Uuid, amount: Money) -> Result<String, ProviderError> {
        self.create(Object::Payout, id, amount)
    }
    fn create_deposit(&self, id: Uuid, amount: Money) -> Result<String, ProviderError> {
        self.create(Object::Deposit, id, amount)
    }
    fn create_withdrawal(&self, id: Uuid, amount: Money) -> Result<String, ProviderError> {
        self.create(Object::Withdrawal, id, amount)
    }
}

/// A header's value, or a refusal as a missing signature.
pub(super) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, PaymentError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(PaymentError::InvalidSignature(SignatureError::NoSignature))
}
