//! Calls to networked providers, queued (migration 0034, docs/providers.md).
//!
//! A provider's API is never called inside a database transaction: the transaction that writes
//! our payment, refund or payout queues the call that creates it at the provider, by value, and
//! the call is made after commit, by whoever leases it (the request that made the object, for
//! a first try whose answer it needs; else the worker, `rounds::calls`). Each attempt is
//! recorded. A call that fails in a way a repeat may cure is repeated with the same request and
//! the same idempotency key after a backoff on the service clock, so the provider creates the
//! object once however often we ask; one that a repeat cannot cure is `failed`; one still
//! unanswered after [`STUCK_AFTER`] is `stuck`, since providers forget idempotency keys after a
//! day, and a person decides (`crowdledger reconcile`).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::payee::{BankAccount, Payee};
use super::provider::{Named, Object};

/// Waits before the 2nd, 3rd, … attempt; the last repeats until the call is stuck.
pub const BACKOFF_SECONDS: [i64; 8] = [1, 5, 30, 120, 600, 3600, 3 * 3600, 6 * 3600];
/// How long after its first attempt a call may still be repeated. Stripe and Mangopay keep an
/// idempotency key for 24 hours; past that a repeat could create a second object.
pub const STUCK_AFTER: TimeDelta = TimeDelta::hours(20);
/// A lease outlasts the longest request a provider is given, so two callers never call at once.
const LEASE_MARGIN_SECONDS: i64 = 30;
/// Calls leased and made at once by the worker.
pub const CALL_BATCH: usize = 16;

/// What is asked of a provider, with everything the request needs, stored as it will be sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Call {
    /// A payment of a pledge's part paid through the provider, by its investor (`payer`).
    CreatePayment {
        payment_id: Uuid,
        pledge_id: Uuid,
        offer_id: Uuid,
        project_id: Uuid,
        payer: Payer,
        #[serde(default)]
        method: Method,
        amount: Decimal,
        currency: String,
        /// The project's legal identity, for a provider that keeps the project as a user of its
        /// own, owner of the offer's escrow (Mangopay); none for the others.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payee: Option<Box<Payee>>,
    },
    /// A payment that will not be paid any more (its pledge cancelled): no money may arrive
    /// for it at the provider.
    CancelPayment {
        payment_id: Uuid,
        provider_payment_id: String,
    },
    /// Money back to the card of a captured payment (`payment`: the provider's id for it).
    CreateRefund {
        refund_id: Uuid,
        pledge_id: Uuid,
        payment: String,
        amount: Decimal,
        currency: String,
    },
    /// A project's money, `amount`, to its account at the provider (`destination`).
    CreatePayout {
        payout_id: Uuid,
        offer_id: Uuid,
        project_id: Uuid,
        destination: Destination,
        amount: Decimal,
        currency: String,
        /// The platform's fee on the round, which a provider that keeps each offer's escrow
        /// apart (Mangopay) moves out of it with the payout; zero after an offer's first payout,
        /// and for providers whose balance is the platform's own (Stripe).
        #[serde(default)]
        fee: Decimal,
    },
}

/// How an investor pays through the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Method {
    #[default]
    Card,
    /// The investor wires the money, to the account and with the reference the provider gives.
    BankTransfer,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Card => "card",
            Method::BankTransfer => "bank_transfer",
        }
    }
}

/// Where a payout goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Destination {
    /// A Stripe connected account (`acct_…`), paid by a Connect transfer: a bare string, as
    /// queued before there were other destinations.
    StripeAccount(String),
    /// A bank account the provider pays by wire, held by the project as `payee` (boxed: a call
    /// is mostly read, rarely moved).
    BankAccount {
        bank_account: Box<BankAccount>,
        payee: Box<Payee>,
    },
}

/// Namespace of the ids parties are kept under when they are ours by their details, not by one
/// of our rows.
const PARTY_NAMESPACE: Uuid = Uuid::from_u128(0x946dfe5f_7ecd_485e_b04d_31d44089843b);

impl Destination {
    /// The id a bank account is kept under among our parties (`provider_parties`, role
    /// `bank_account`): derived from the project and the account's details, so the same account
    /// is registered at the provider once and a changed one is a new party.
    pub fn party_id(&self, project_id: Uuid) -> Option<Uuid> {
        match self {
            Destination::StripeAccount(_) => None,
            Destination::BankAccount { bank_account, .. } => {
                let details = serde_json::to_vec(&(project_id, bank_account)).expect("a bank account serialises");
                Some(Uuid::new_v5(&PARTY_NAMESPACE, &details))
            }
        }
    }
}

/// Where an investor wires a bank-transfer payment, as the provider gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankInstructions {
    pub iban: String,
    pub bic: Option<String>,
    /// The account's holder, as the investor's bank asks for it.
    pub account_holder: Option<String>,
    /// What the investor must write on the transfer, for the provider to match it.
    pub reference: String,
}

/// The investor who pays, as a provider that keeps its payers needs them (a Stripe customer,
/// a Mangopay user), taken when the payment was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    pub investor_id: Uuid,
    /// `natural` or `legal`.
    pub kind: String,
    pub name: String,
    pub email: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// One of our parties at a provider (migration 0035): a customer, a user, a wallet.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Party {
    /// `investor`, `project` or `offer`.
    pub party_kind: String,
    pub party_id: Uuid,
    /// `customer`, `user`, `wallet` or `bank_account`.
    pub role: String,
    pub provider_id: String,
}

/// What a call is made with besides its request: the parties already known at the provider,
/// and the generation of its idempotency key.
#[derive(Debug, Default)]
pub struct Context {
    pub parties: Vec<Party>,
    pub key_generation: i32,
}

impl Context {
    /// The provider's id of one of our parties, if it has one yet.
    pub fn party(&self, party_kind: &str, party_id: Uuid, role: &str) -> Option<&str> {
        self.parties
            .iter()
            .find(|p| p.party_kind == party_kind && p.party_id == party_id && p.role == role)
            .map(|p| p.provider_id.as_str())
    }
}

impl Call {
    /// The kind, as stored in `provider_calls.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Call::CreatePayment { .. } => "create_payment",
            Call::CancelPayment { .. } => "cancel_payment",
            Call::CreateRefund { .. } => "create_refund",
            Call::CreatePayout { .. } => "create_payout",
        }
    }

    /// Our parties the call may need at the provider.
    pub fn party_ids(&self) -> Vec<Uuid> {
        match self {
            Call::CreatePayment {
                offer_id,
                project_id,
                payer,
                ..
            } => vec![payer.investor_id, *offer_id, *project_id],
            Call::CreateRefund { pledge_id, .. } => vec![*pledge_id],
            Call::CancelPayment { .. } => Vec::new(),
            Call::CreatePayout {
                offer_id,
                project_id,
                destination,
                ..
            } => [*offer_id, *project_id]
                .into_iter()
                .chain(destination.party_id(*project_id))
                .collect(),
        }
    }

    /// Our row the call creates at the provider.
    pub fn object_id(&self) -> Uuid {
        match self {
            Call::CreatePayment { payment_id, .. } | Call::CancelPayment { payment_id, .. } => *payment_id,
            Call::CreateRefund { refund_id, .. } => *refund_id,
            Call::CreatePayout { payout_id, .. } => *payout_id,
        }
    }

    /// The object the call creates, named `provider_id` by the provider.
    pub fn named(&self, provider_id: String) -> Named {
        let object = match self {
            Call::CreatePayment { .. } | Call::CancelPayment { .. } => Object::Payment,
            Call::CreateRefund { .. } => Object::Refund,
            Call::CreatePayout { .. } => Object::Payout,
        };
        Named {
            object,
            ours: self.object_id(),
            provider_id,
        }
    }
}

/// What the provider created for a call.
#[derive(Default)]
pub struct Created {
    /// The provider's id of its object.
    pub provider_id: String,
    /// What the platform's front-end needs to let the investor pay (Stripe's `client_secret`):
    /// handed to the caller once, never stored or logged.
    pub client_secret: Option<secrecy::SecretString>,
    /// Where the investor pays (Mangopay's hosted card page), for the front-end to redirect to.
    pub redirect_url: Option<String>,
    /// Parties the call created at the provider on its way, to be kept.
    pub parties: Vec<Party>,
    /// Where the investor wires a bank-transfer payment.
    pub instructions: Option<BankInstructions>,
}

/// Why a call did not create its object.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Refused before the provider acted, in a way a repeat with the same key may cure (a
    /// connection refused, 409 for a concurrent request, 429, 5xx).
    #[error("{why}")]
    Retry {
        status: Option<u16>,
        /// How long the provider asked us to wait.
        after: Option<Duration>,
        /// The key is spent (a provider that does not replay a failed first call, Mangopay): the
        /// next try needs a new one.
        new_key: bool,
        why: String,
    },
    /// No answer (a timeout after the request was sent): the provider may have acted. Repeated
    /// with the same key, which answers what the first one did.
    #[error("no answer: {why}")]
    Unknown { why: String },
    /// Refused in a way no repeat can cure (400, 401, 402, 403, 404).
    #[error("{why}")]
    Permanent { status: Option<u16>, why: String },
}

impl CallError {
    fn outcome(&self) -> &'static str {
        match self {
            CallError::Retry { .. } => "retry",
            CallError::Unknown { .. } => "unknown",
            CallError::Permanent { .. } => "failed",
        }
    }

    /// The HTTP status the provider answered, if it answered.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            CallError::Retry { status, .. } | CallError::Permanent { status, .. } => *status,
            CallError::Unknown { .. } => None,
        }
    }
}

/// An object as its provider says it is now.
#[derive(Debug)]
pub struct Fetched {
    pub state: RemoteState,
    /// What moved or is to move, in its currency (for a payment, what was captured once it
    /// succeeded).
    pub amount: Decimal,
    pub currency: String,
    /// For a payment still to be paid: what the investor's front-end needs again (Stripe's
    /// `client_secret`, Mangopay's hosted page). Never stored.
    pub client_secret: Option<secrecy::SecretString>,
    pub redirect_url: Option<String>,
}

/// A provider object's state, in our words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteState {
    /// Not settled yet: a payment awaiting the investor, a refund or payout under way.
    Pending,
    /// The money moved.
    Succeeded,
    /// It will not move (declined, failed, returned).
    Failed,
    /// Cancelled before any money moved.
    Cancelled,
}

/// A networked provider's outbound half: makes one call, idempotent by its object, and says
/// what came of it; reads one of its objects back. Runs with no transaction open.
pub trait Remote: Send + Sync {
    fn call<'a>(
        &'a self,
        call: &'a Call,
        context: &'a Context,
    ) -> futures::future::BoxFuture<'a, Result<Created, CallError>>;

    /// Reads an object back, by the provider's id for it.
    fn fetch<'a>(
        &'a self,
        object: Object,
        provider_id: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Fetched, CallError>>;
    /// How long one call may take; a lease outlasts it.
    fn timeout(&self) -> Duration;
}

/// A call leased for one attempt.
#[derive(Debug, sqlx::FromRow)]
pub struct Leased {
    pub id: Uuid,
    pub provider: String,
    #[sqlx(json)]
    pub request: Call,
    pub attempts: i32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub key_generation: i32,
}

/// Queues `call` to `provider`, due now. Call inside the transaction that writes its object.
pub async fn enqueue(conn: &mut PgConnection, provider: &str, call: &Call, now: DateTime<Utc>) -> sqlx::Result<()> {
    enqueue_many(conn, provider, std::slice::from_ref(call), now).await
}

/// [`enqueue`] for many calls in one statement (a failed round's refunds).
pub async fn enqueue_many(
    conn: &mut PgConnection,
    provider: &str,
    calls: &[Call],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into provider_calls (id, provider, kind, object_id, request, next_attempt_at, created_at)
         select c.id, $2, c.kind, c.object_id, c.request, $6, $6
           from unnest($1::uuid[], $3::text[], $4::uuid[], $5::jsonb[]) as c(id, kind, object_id, request)",
    )
    .bind(calls.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(provider)
    .bind(calls.iter().map(Call::kind).collect::<Vec<_>>())
    .bind(calls.iter().map(Call::object_id).collect::<Vec<_>>())
    .bind(calls.iter().map(sqlx::types::Json).collect::<Vec<_>>())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// A pending payment given up here (its pledge cancelled) is given up at its provider too, if
/// networked: a queued call cancels it there, so no money can arrive for it; one the provider
/// has not named yet is not asked for any more. Call in the transaction that cancels it.
pub async fn cancel_at_provider(
    conn: &mut PgConnection,
    provider: &str,
    payment_id: Uuid,
    provider_payment_id: Option<String>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    if !super::providers::of_row(provider).networked() {
        return Ok(());
    }
    match provider_payment_id {
        Some(provider_payment_id) => {
            let call = Call::CancelPayment {
                payment_id,
                provider_payment_id,
            };
            enqueue(conn, provider, &call, now).await
        }
        // One being made may still make it; unpaid and unshown, it lapses at the provider.
        None => cancel_unmade(conn, &[payment_id], now).await,
    }
}

/// Leases up to `limit` due calls to `providers` (or only those of our object `only`, when due
/// and free), for `lease` plus a margin.
pub async fn lease(
    pool: &PgPool,
    providers: &[&str],
    only: Option<Uuid>,
    limit: usize,
    lease: Duration,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Leased>> {
    sqlx::query_as(
        "with due as (
             select id from provider_calls
              where status = 'pending' and next_attempt_at <= $1
                and (leased_until is null or leased_until < $1)
                and ($4::uuid is null or object_id = $4) and provider = any($5)
              order by next_attempt_at limit $3
              for update skip locked)
         update provider_calls c set leased_until = $1 + $2 * interval '1 second'
           from due where c.id = due.id
         returning c.id, c.provider, c.request, c.attempts, c.first_attempt_at, c.key_generation",
    )
    .bind(now)
    .bind(lease.as_secs() as i64 + LEASE_MARGIN_SECONDS)
    .bind(limit as i64)
    .bind(only)
    .bind(providers)
    .fetch_all(pool)
    .await
}

/// How an attempt ended, for the queue.
pub enum Settled {
    Done,
    /// To be repeated at `at`.
    Again {
        at: DateTime<Utc>,
    },
    Failed,
    Stuck,
}

/// Records an attempt of a leased call and settles the call: done, again after a backoff,
/// failed, or stuck. Call in the transaction that applies the result to the call's object.
pub async fn record(
    conn: &mut PgConnection,
    call: &Leased,
    result: &Result<Created, CallError>,
    started: DateTime<Utc>,
    took: Duration,
    now: DateTime<Utc>,
) -> sqlx::Result<Settled> {
    let first = call.first_attempt_at.unwrap_or(started);
    let attempts = call.attempts + 1;
    let settled = match result {
        Ok(_) => Settled::Done,
        Err(CallError::Permanent { .. }) => Settled::Failed,
        Err(err) => {
            let step = BACKOFF_SECONDS[(call.attempts as usize).min(BACKOFF_SECONDS.len() - 1)];
            let asked = match err {
                CallError::Retry { after: Some(after), .. } => after.as_secs() as i64,
                _ => 0,
            };
            let at = now + TimeDelta::seconds(step.max(asked));
            if at - first > STUCK_AFTER {
                Settled::Stuck
            } else {
                Settled::Again { at }
            }
        }
    };
    let (status, next) = match settled {
        Settled::Done => ("done", now),
        Settled::Again { at } => ("pending", at),
        Settled::Failed => ("failed", now),
        Settled::Stuck => ("stuck", now),
    };
    let error = result.as_ref().err().map(ToString::to_string);
    sqlx::query(
        "update provider_calls
            set status = $2::provider_call_status, attempts = $3, next_attempt_at = $4, leased_until = null,
                first_attempt_at = $5, provider_object_id = coalesce($6, provider_object_id),
                last_error = coalesce($7, last_error), key_generation = key_generation + $9,
                finished_at = case when $2 = 'pending' then null else $8 end
          where id = $1",
    )
    .bind(call.id)
    .bind(status)
    .bind(attempts)
    .bind(next)
    .bind(first)
    .bind(result.as_ref().ok().map(|c| c.provider_id.as_str()))
    .bind(&error)
    .bind(now)
    .bind(i32::from(matches!(result, Err(CallError::Retry { new_key: true, .. }))))
    .execute(&mut *conn)
    .await?;
    if let Ok(created) = result {
        remember(&mut *conn, &call.provider, &created.parties, now).await?;
    }
    sqlx::query(
        "insert into provider_call_attempts (call_id, attempted_at, duration_ms, http_status, outcome, error)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(call.id)
    .bind(started)
    .bind(i32::try_from(took.as_millis()).unwrap_or(i32::MAX))
    .bind(result.as_ref().err().and_then(CallError::status).map(i32::from))
    .bind(result.as_ref().map_or_else(CallError::outcome, |_| "done"))
    .bind(&error)
    .execute(conn)
    .await?;
    Ok(settled)
}

/// The parties of ours among `ids` that `provider` knows.
pub async fn parties(conn: &mut PgConnection, provider: &str, ids: &[Uuid]) -> sqlx::Result<Vec<Party>> {
    sqlx::query_as(
        "select party_kind, party_id, role, provider_id from provider_parties
          where provider = $1 and party_id = any($2)",
    )
    .bind(provider)
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Keeps the parties a call created. One created twice at once (two calls for one investor)
/// keeps the first: the provider answered both from the same idempotency key, or the second is
/// an unused duplicate at the provider, left to `reconcile`.
async fn remember(conn: &mut PgConnection, provider: &str, parties: &[Party], now: DateTime<Utc>) -> sqlx::Result<()> {
    if parties.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into provider_parties (provider, party_kind, party_id, role, provider_id, created_at)
         select $1, p.kind, p.id, p.role, p.provider_id, $6
           from unnest($2::text[], $3::uuid[], $4::text[], $5::text[]) as p(kind, id, role, provider_id)
         on conflict do nothing",
    )
    .bind(provider)
    .bind(parties.iter().map(|p| p.party_kind.as_str()).collect::<Vec<_>>())
    .bind(parties.iter().map(|p| p.party_id).collect::<Vec<_>>())
    .bind(parties.iter().map(|p| p.role.as_str()).collect::<Vec<_>>())
    .bind(parties.iter().map(|p| p.provider_id.as_str()).collect::<Vec<_>>())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Withdraws the calls that would create `object_ids` at their provider and that nobody is
/// making (not leased): a refund cancelled before it reached the provider is never asked for.
/// One being made goes on; what it creates is the provider's to refuse or ours to see (a
/// cancelled refund's confirmation is quarantined).
pub async fn cancel_unmade(conn: &mut PgConnection, object_ids: &[Uuid], now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(
        "update provider_calls set status = 'cancelled', finished_at = $2
          where object_id = any($1) and status = 'pending' and (leased_until is null or leased_until < $2)",
    )
    .bind(object_ids)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the provider's id on the row of ours it names, unless one is there already: written
/// by the call's answer, or by an event that named the object first (through our id in its
/// metadata). The rows are those this module's calls create; only the name is written here.
pub async fn write_name(conn: &mut PgConnection, provider: &str, named: &Named) -> sqlx::Result<()> {
    let (table, column) = match named.object {
        Object::Payment => ("payments", "provider_payment_id"),
        Object::Refund => ("refunds", "provider_refund_id"),
        Object::Payout => ("payouts", "provider_payout_id"),
        // Deposits and withdrawals are created by in-process providers only, named when written.
        Object::Deposit | Object::Withdrawal => return Ok(()),
    };
    sqlx::query(&format!(
        "update {table} set {column} = $3 where id = $1 and provider = $2 and {column} is null"
    ))
    .bind(named.ours)
    .bind(provider)
    .bind(&named.provider_id)
    .execute(conn)
    .await?;
    Ok(())
}
