//! Money through the payment provider: card payments for pledges, refunds, payouts to projects.
//!
//! Objects are created through a provider adapter ([`provider::PaymentProvider`]). Each provider
//! confirmation is one domain call (`confirm_payment`, `fail_payment`, `confirm_refund`,
//! `confirm_payout`), made only by the signed-webhook handler, that moves state, ledger and outbox
//! in one transaction.
//! Lock order, everywhere: offer, then pledge, then payment or refund. A payment confirmed in
//! time takes no offer lock at all.

pub mod inbound;
pub mod provider;
pub mod sandbox;
pub mod stripe;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use self::provider::PaymentProvider;
use crate::books::chart;
use crate::clock::ClockMode;
use crate::config::CardProvider;
use crate::http::error::ApiError;
use crate::ledger::{self, NewEntry};
use crate::money::{Currency, Money};
use crate::offers;
use crate::outbox;
use crate::pledges::{self, Pledge, PledgeStatus};

/// The built-in test-mode provider.
pub const SANDBOX: &str = "sandbox";

/// What the service needs to talk to payment providers: the providers that exist here, built
/// once from the settings and the clock's mode.
pub struct Providers {
    /// The sandbox, with a manual clock only. Under the system clock it does not exist: its
    /// webhook is an unknown path and it takes no payments (PRODUCT.md section 10).
    pub sandbox: Option<sandbox::SandboxSetup>,
    /// Where new card payments, deposits and payouts go (`payments.card_provider`).
    card: Option<&'static dyn PaymentProvider>,
    /// Verifies `Stripe-Signature`; without it the stripe endpoint answers 404.
    pub stripe_secret: Option<secrecy::SecretString>,
    /// Where the sandbox posts its webhooks: this service's own address, known once it listens.
    pub self_url: std::sync::OnceLock<String>,
    /// Delivers outbound webhooks, only where they may go (`webhooks/guard.rs`; private and
    /// loopback addresses too with `webhooks.allow_private_targets`).
    pub webhooks: crate::webhooks::guard::GuardedClient,
    pub client: reqwest::Client,
}

impl Providers {
    pub fn new(settings: &crate::config::PaymentsSettings, clock: ClockMode, allow_private_targets: bool) -> Self {
        use secrecy::ExposeSecret;
        let sandbox = (clock == ClockMode::Manual).then(|| sandbox::SandboxSetup {
            secret: settings
                .sandbox
                .webhook_secret
                .as_ref()
                .map_or(sandbox::DEVELOPMENT_SECRET, |s| s.expose_secret())
                .parse()
                .expect("validated when the settings were loaded"),
            auto_confirm: settings.sandbox.auto_confirm,
        });
        let card: Option<&'static dyn PaymentProvider> = match (clock, settings.card_provider) {
            // No adapter here creates real payments yet; the settings refuse the sandbox.
            (ClockMode::System, _) => None,
            (ClockMode::Manual, None | Some(CardProvider::Sandbox)) => Some(&sandbox::Sandbox),
        };
        Providers {
            sandbox,
            card,
            stripe_secret: settings.stripe.webhook_secret.clone(),
            self_url: std::sync::OnceLock::new(),
            webhooks: crate::webhooks::guard::GuardedClient::new(
                allow_private_targets,
                crate::webhooks::outbound::REQUEST_TIMEOUT,
            ),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    /// The adapter of `POST /v1/webhooks/{name}`: the sandbox only where it exists; stripe
    /// always (its endpoint answers 404 until its secret is set).
    pub fn adapter(&self, name: &str) -> Option<&'static dyn PaymentProvider> {
        match name {
            SANDBOX if self.sandbox.is_some() => Some(&sandbox::Sandbox),
            stripe::STRIPE => Some(&stripe::Stripe),
            _ => None,
        }
    }

    /// The provider new card payments go to, and sponsors' deposits and projects' payouts
    /// until each has a setting of its own: `payments.card_provider`, the sandbox by default
    /// under a manual clock. None under the system clock: 422 `payment_provider_unavailable`.
    pub fn card_provider(&self) -> Result<&'static dyn PaymentProvider, ApiError> {
        self.card.ok_or_else(provider::unavailable)
    }

    /// Whether the sandbox confirms refunds, payouts and deposits by itself.
    pub fn auto_confirm(&self) -> bool {
        self.sandbox.as_ref().is_some_and(|s| s.auto_confirm)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "payment_status", rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Payment {
    pub id: Uuid,
    pub provider: String,
    pub provider_payment_id: String,
    pub pledge_id: Uuid,
    pub amount: Decimal,
    pub currency: String,
    pub status: PaymentStatus,
}

/// Asks `provider` for a card payment of a pledge's card part.
pub async fn create_payment(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    pledge_id: Uuid,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<Payment, ApiError> {
    let id = Uuid::now_v7();
    let provider_payment_id = provider.create_payment(id, amount)?;
    Ok(sqlx::query_as(
        "insert into payments (id, provider, provider_payment_id, pledge_id, amount, currency, created_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning id, provider, provider_payment_id, pledge_id, amount, currency, status",
    )
    .bind(id)
    .bind(provider.name())
    .bind(provider_payment_id)
    .bind(pledge_id)
    .bind(amount.amount())
    .bind(amount.currency().code())
    .bind(now)
    .fetch_one(conn)
    .await?)
}

/// [`create_payment`] for many pledges in one statement (the batcher's), in the order given.
pub async fn create_payments(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    requests: &[(Uuid, Money, DateTime<Utc>)],
) -> Result<Vec<Payment>, ApiError> {
    let ids: Vec<Uuid> = requests.iter().map(|_| Uuid::now_v7()).collect();
    let references = ids
        .iter()
        .zip(requests)
        .map(|(id, (_, amount, _))| provider.create_payment(*id, *amount))
        .collect::<Result<Vec<String>, _>>()?;
    let rows: Vec<Payment> = sqlx::query_as(
        "insert into payments (id, provider, provider_payment_id, pledge_id, amount, currency, created_at)
         select u.id, $2, u.reference, u.pledge_id, u.amount, u.currency, u.created_at
           from unnest($1::uuid[], $3::text[], $4::uuid[], $5::numeric[], $6::text[], $7::timestamptz[])
                as u(id, reference, pledge_id, amount, currency, created_at)
         returning id, provider, provider_payment_id, pledge_id, amount, currency, status",
    )
    .bind(&ids)
    .bind(provider.name())
    .bind(&references)
    .bind(requests.iter().map(|r| r.0).collect::<Vec<Uuid>>())
    .bind(requests.iter().map(|r| r.1.amount()).collect::<Vec<Decimal>>())
    .bind(requests.iter().map(|r| r.1.currency().code()).collect::<Vec<&str>>())
    .bind(requests.iter().map(|r| r.2).collect::<Vec<DateTime<Utc>>>())
    .fetch_all(conn)
    .await?;
    let mut by_id: std::collections::HashMap<Uuid, Payment> = rows.into_iter().map(|p| (p.id, p)).collect();
    Ok(ids
        .iter()
        .map(|id| by_id.remove(id).expect("every payment was inserted"))
        .collect())
}

const PAYMENT_COLUMNS: &str = "id, provider, provider_payment_id, pledge_id, amount, currency, status";

pub async fn payment_of_pledge(conn: &mut PgConnection, pledge_id: Uuid) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as(&format!("select {PAYMENT_COLUMNS} from payments where pledge_id = $1"))
        .bind(pledge_id)
        .fetch_optional(conn)
        .await
}

async fn find_payment(
    conn: &mut PgConnection,
    provider: &str,
    provider_id: &str,
    lock: bool,
) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS} from payments where provider = $1 and provider_payment_id = $2 {}",
        if lock { "for update" } else { "" }
    ))
    .bind(provider)
    .bind(provider_id)
    .fetch_optional(conn)
    .await
}

async fn set_payment_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: PaymentStatus,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("update payments set status = $2, settled_at = $3 where id = $1")
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// A payment has succeeded, its money captured by ledger entry `entry`.
async fn capture(conn: &mut PgConnection, id: Uuid, entry: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query("update payments set status = 'succeeded', settled_at = $3, captured_entry_id = $2 where id = $1")
        .bind(id)
        .bind(entry)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a provider's confirmation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Done,
    /// It had already been applied, or no longer applies; nothing changed.
    Nothing,
}

fn unknown(what: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no {what} {id}"))
}

/// Refuses a confirmation whose money is not what the provider was asked for: 422 `code`
/// (`payment_mismatch`, `refund_mismatch`, `payout_mismatch`), so the event is quarantined and
/// moves nothing. Checked before the object's state, so a wrong amount is never taken for a
/// mere repeat.
pub(crate) fn expect_money(
    code: &'static str,
    what: &str,
    provider_id: &str,
    expected: Decimal,
    currency: &str,
    paid: Money,
) -> Result<(), ApiError> {
    if paid.amount() == expected && paid.currency().code() == currency {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        format!("{what} {provider_id} is for {expected} {currency}, not {paid}"),
    ))
}

/// The provider captured a payment: the pledge is funded and the money moves `psp → escrow`.
/// Money captured is always booked (PRODUCT.md section 10): a payment arriving for a pledge
/// that ended meanwhile (its window lapsed, its round closed, or the provider had declared the
/// payment failed) is captured `psp → refunds` and refunded in full at once.
pub async fn confirm_payment(
    conn: &mut PgConnection,
    provider: &str,
    provider_payment_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, ApiError> {
    let seen = find_payment(conn, provider, provider_payment_id, false)
        .await?
        .ok_or_else(|| unknown("payment", provider_payment_id))?;
    let unlocked = pledges::store::get(conn, seen.pledge_id)
        .await?
        .expect("payments belong to pledges");
    // A capture after the payment window ends the pledge here, whether or not the expiry job
    // has run yet; ending it releases shares, so only then is the (hot) offer row locked.
    // The window and `now` are fixed, so this decision holds once the rows are locked.
    let overdue = unlocked.status == PledgeStatus::PendingPayment && now >= unlocked.payment_due_at;
    if overdue {
        offers::store::lock(conn, unlocked.offer_id).await?;
    }
    let mut pledge = pledges::store::lock(conn, seen.pledge_id)
        .await?
        .expect("pledges are never deleted");
    let payment = find_payment(conn, provider, provider_payment_id, true)
        .await?
        .expect("payments are never deleted");
    expect_money(
        "payment_mismatch",
        "payment",
        provider_payment_id,
        payment.amount,
        &payment.currency,
        paid,
    )?;
    if payment.status == PaymentStatus::Succeeded {
        return Ok(Applied::Nothing);
    }
    if overdue && pledge.status == PledgeStatus::PendingPayment {
        cancel_pledge(conn, &pledge, now).await?;
        pledge.status = PledgeStatus::Cancelled;
    }
    let psp = chart::psp(conn, provider, paid.currency(), now).await?;
    // A success after a failure is money moved all the same (a provider may retry a declined
    // card): it funds the pledge if that is still waiting, as a pending payment's would.
    let fundable = matches!(payment.status, PaymentStatus::Pending | PaymentStatus::Failed);
    if pledge.status == PledgeStatus::PendingPayment && fundable {
        let escrow = chart::offer_escrow(conn, pledge.offer_id, paid.currency(), now).await?;
        let entry = NewEntry::new("pledge.funded", format!("payment:{}:captured", payment.id), now)
            .metadata(serde_json::json!({ "pledge_id": pledge.id, "offer_id": pledge.offer_id, "provider_payment_id": provider_payment_id }))
            .debit(psp, paid)
            .credit(escrow, paid);
        let captured = ledger::post(conn, entry).await?.entry.id;
        capture(conn, payment.id, captured, now).await?;
        pledges::store::set_status(conn, pledge.id, PledgeStatus::Funded, now).await?;
        outbox::emit(conn, "pledge.funded", pledge_event(&pledge, PledgeStatus::Funded), now).await?;
    } else {
        // The pledge ended before its money arrived: the money is owed straight back.
        let reason = if payment.status == PaymentStatus::Failed {
            "payment_after_failure"
        } else {
            "payment_after_pledge_ended"
        };
        let refunds = chart::refunds(conn, provider, paid.currency(), now).await?;
        let refund = Uuid::now_v7();
        let entry = NewEntry::new("payment.late", format!("payment:{}:captured", payment.id), now)
            .metadata(serde_json::json!({ "pledge_id": pledge.id, "refund_id": refund, "reason": reason }))
            .debit(psp, paid)
            .credit(refunds, paid);
        let owed = ledger::post(conn, entry).await?.entry.id;
        capture(conn, payment.id, owed, now).await?;
        let new = NewRefund {
            id: refund,
            pledge_id: pledge.id,
            amount: paid.amount(),
        };
        insert_refunds(conn, provider, paid.currency(), &[new], reason, owed, now).await?;
    }
    Ok(Applied::Done)
}

/// [`confirm_payment`] for many payments of one provider at once, in the common case only: a
/// pending payment of a pending pledge, confirmed in time, for its exact amount. Those pledges
/// are funded and their payments settled set-wise (one update each) and answered
/// `Some(Applied::Done)`; their ledger entries and events are returned as [`Captures`], to be
/// written with [`Captures::post`] before the transaction commits (last, as the batch of inbound
/// events does, so that the hot `psp` and escrow rows are locked as briefly as possible). Every
/// other confirmation is `None`, for the caller to apply one by one with [`confirm_payment`] in
/// the same transaction.
pub async fn confirm_payments(
    conn: &mut PgConnection,
    provider: &str,
    paid: &[(&str, Money)],
    now: DateTime<Utc>,
) -> Result<(Vec<Option<Applied>>, Captures), ApiError> {
    let mut captures = Captures {
        entries: Vec::new(),
        events: Vec::new(),
        now,
    };
    let references: Vec<&str> = paid.iter().map(|(id, _)| *id).collect();
    // Unlocked: a payment's pledge, amount and currency never change; its state is checked
    // again below, under the locks.
    let seen: Vec<Payment> = sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS} from payments where provider = $1 and provider_payment_id = any($2)"
    ))
    .bind(provider)
    .bind(&references)
    .fetch_all(&mut *conn)
    .await?;
    let seen: std::collections::HashMap<&str, &Payment> =
        seen.iter().map(|p| (p.provider_payment_id.as_str(), p)).collect();
    // One candidate per pledge: a second confirmation of a payment takes the slow path.
    let mut candidates: std::collections::HashMap<Uuid, (usize, &Payment, Money)> = std::collections::HashMap::new();
    for (n, (reference, amount)) in paid.iter().enumerate() {
        if let Some(payment) = seen.get(reference)
            && payment.status == PaymentStatus::Pending
            && amount.amount() == payment.amount
            && amount.currency().code() == payment.currency
        {
            candidates.entry(payment.pledge_id).or_insert((n, payment, *amount));
        }
    }
    let mut results = vec![None; paid.len()];
    if candidates.is_empty() {
        return Ok((results, captures));
    }
    // Lock order as everywhere: pledges, then payments. A pledge is funded only if it is still
    // pending and in time under its lock; its payment is then pending too (the paths that end
    // a payment end its pending pledge in the same transaction), which the update checks.
    let pledge_ids: Vec<Uuid> = candidates.keys().copied().collect();
    let pledges = pledges::store::fund_many(conn, &pledge_ids, now).await?;
    if pledges.is_empty() {
        return Ok((results, captures));
    }
    let funded: Vec<(&Payment, &Pledge, Money)> = pledges
        .iter()
        .map(|pledge| {
            let (n, payment, amount) = candidates[&pledge.id];
            results[n] = Some(Applied::Done);
            (payment, pledge, amount)
        })
        .collect();
    // One entry per currency for the whole batch: the provider's money in one debit, each
    // offer's escrow in one credit; each payment names the entry (migration 0018).
    let mut by_currency: std::collections::BTreeMap<&str, Vec<&(&Payment, &Pledge, Money)>> = Default::default();
    for captured in &funded {
        by_currency
            .entry(captured.2.currency().code())
            .or_default()
            .push(captured);
    }
    let mut captured_by = Vec::with_capacity(funded.len());
    for group in by_currency.values() {
        let currency = group[0].2.currency();
        let psp = chart::psp(conn, provider, currency, now).await?;
        let mut escrows: std::collections::BTreeMap<Uuid, Decimal> = Default::default();
        for (_, pledge, amount) in group {
            *escrows.entry(pledge.offer_id).or_default() += amount.amount();
        }
        let total = Money::new(group.iter().map(|(_, _, amount)| amount.amount()).sum(), currency)?;
        let mut entry = NewEntry::new("pledge.funded", format!("payments:{}:captured", group[0].0.id), now)
            .metadata(serde_json::json!({ "provider": provider, "payments": group.len() }))
            .debit(psp, total);
        for (offer, amount) in escrows {
            let escrow = chart::offer_escrow(conn, offer, currency, now).await?;
            entry = entry.credit(escrow, Money::new(amount, currency)?);
        }
        captured_by.extend(group.iter().map(|(payment, _, _)| (payment.id, entry.id)));
        captures.entries.push(entry);
    }
    let settled = sqlx::query(
        "update payments p set status = 'succeeded', settled_at = $3, captured_entry_id = c.entry
           from unnest($1::uuid[], $2::uuid[]) as c(id, entry)
          where p.id = c.id and p.status = 'pending'",
    )
    .bind(captured_by.iter().map(|(payment, _)| *payment).collect::<Vec<Uuid>>())
    .bind(captured_by.iter().map(|(_, entry)| *entry).collect::<Vec<Uuid>>())
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if settled != funded.len() as u64 {
        return Err(ApiError::internal(anyhow::anyhow!(
            "{} payments of pending pledges were not pending",
            funded.len() as u64 - settled
        )));
    }
    captures.events = funded
        .iter()
        .map(|(_, pledge, _)| PledgeEvent::new(pledge, PledgeStatus::Funded))
        .collect();
    Ok((results, captures))
}

/// The ledger entries and events of payments [`confirm_payments`] captured, still to write.
pub struct Captures {
    entries: Vec<NewEntry>,
    events: Vec<PledgeEvent>,
    now: DateTime<Utc>,
}

impl Captures {
    /// Posts the money `psp → escrow` (one entry per currency) and their events.
    pub async fn post(self, conn: &mut PgConnection) -> Result<(), ApiError> {
        ledger::post_many(conn, &self.entries).await?;
        outbox::emit_all(conn, "pledge.funded", &self.events, self.now).await?;
        Ok(())
    }
}

/// The provider declined a payment: a pending pledge is cancelled and its shares released.
pub async fn fail_payment(
    conn: &mut PgConnection,
    provider: &str,
    provider_payment_id: &str,
    now: DateTime<Utc>,
) -> Result<Applied, ApiError> {
    let seen = find_payment(conn, provider, provider_payment_id, false)
        .await?
        .ok_or_else(|| unknown("payment", provider_payment_id))?;
    let unlocked = pledges::store::get(conn, seen.pledge_id)
        .await?
        .expect("payments belong to pledges");
    offers::store::lock(conn, unlocked.offer_id).await?;
    let pledge = pledges::store::lock(conn, seen.pledge_id)
        .await?
        .expect("pledges are never deleted");
    let payment = find_payment(conn, provider, provider_payment_id, true)
        .await?
        .expect("payments are never deleted");
    if payment.status != PaymentStatus::Pending {
        // A failure after a success (or a repeat) changes nothing: the money was captured and
        // stays booked where the success put it.
        return Ok(Applied::Nothing);
    }
    set_payment_status(conn, payment.id, PaymentStatus::Failed, now).await?;
    if pledge.status == PledgeStatus::PendingPayment {
        cancel_pledge(conn, &pledge, now).await?;
    }
    Ok(Applied::Done)
}

/// Ends a pledge whose card money never arrived: its shares go back to the offer, and the
/// cheque money it had reserved goes back to its cheques. The caller holds the offer's and the
/// pledge's locks.
pub async fn cancel_pledge(conn: &mut PgConnection, pledge: &Pledge, now: DateTime<Utc>) -> Result<(), ApiError> {
    pledges::store::set_status(conn, pledge.id, PledgeStatus::Cancelled, now).await?;
    let reserved_by_cheques = pledge.amount.amount() - pledge.card_amount;
    if reserved_by_cheques > Decimal::ZERO {
        crate::cheques::redeem::give_back(conn, pledge, reserved_by_cheques, now).await?;
    }
    sqlx::query(
        "update payments set status = 'cancelled', settled_at = $2 where pledge_id = $1 and status = 'pending'",
    )
    .bind(pledge.id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    offers::store::release(conn, pledge.offer_id, pledge.shares).await?;
    outbox::emit(
        conn,
        "pledge.cancelled",
        pledge_event(pledge, PledgeStatus::Cancelled),
        now,
    )
    .await?;
    Ok(())
}

/// The data of a `pledge.*` event.
#[derive(serde::Serialize)]
pub struct PledgeEvent {
    pledge_id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    shares: i64,
    amount: String,
    currency: Currency,
    status: PledgeStatus,
    /// After a round's allocation: the shares the pledge got, and the money given back.
    #[serde(skip_serializing_if = "Option::is_none")]
    allocated_shares: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded_amount: Option<String>,
}

impl PledgeEvent {
    pub fn new(pledge: &Pledge, status: PledgeStatus) -> Self {
        PledgeEvent {
            pledge_id: pledge.id,
            offer_id: pledge.offer_id,
            investor_id: pledge.investor_id,
            shares: pledge.shares,
            amount: pledge.amount.amount_string(),
            currency: pledge.amount.currency(),
            status,
            allocated_shares: None,
            refunded_amount: None,
        }
    }

    /// The outcome of allocation: `allocated` shares, `refunded` given back.
    pub fn allocated(mut self, allocated: i64, refunded: Money) -> Self {
        self.allocated_shares = Some(allocated);
        self.refunded_amount = Some(refunded.amount_string());
        self
    }
}

pub fn pledge_event(pledge: &Pledge, status: PledgeStatus) -> serde_json::Value {
    serde_json::to_value(PledgeEvent::new(pledge, status)).expect("a pledge event serialises")
}

/// A refund to write: its id, its pledge and the amount back to the card.
struct NewRefund {
    id: Uuid,
    pledge_id: Uuid,
    amount: Decimal,
}

/// Writes refunds to one provider in one statement, each naming the entry that owes it.
async fn insert_refunds(
    conn: &mut PgConnection,
    provider: &str,
    currency: Currency,
    refunds: &[NewRefund],
    reason: &str,
    owed_entry: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let adapter = provider::of_row(provider);
    let provider_ids = refunds
        .iter()
        .map(|r| Ok(adapter.create_refund(r.id, Money::new(r.amount, currency)?)?))
        .collect::<Result<Vec<String>, ApiError>>()?;
    sqlx::query(
        "insert into refunds (id, provider, provider_refund_id, pledge_id, amount, currency, reason, owed_entry_id,
                              created_at)
         select r.id, $2, r.provider_refund_id, r.pledge_id, r.amount, $5, $6, $7, $8
           from unnest($1::uuid[], $3::text[], $4::uuid[], $9::numeric[]) as r(id, provider_refund_id, pledge_id, amount)",
    )
    .bind(refunds.iter().map(|r| r.id).collect::<Vec<Uuid>>())
    .bind(provider)
    .bind(&provider_ids)
    .bind(refunds.iter().map(|r| r.pledge_id).collect::<Vec<Uuid>>())
    .bind(currency.code())
    .bind(reason)
    .bind(owed_entry)
    .bind(now)
    .bind(refunds.iter().map(|r| r.amount).collect::<Vec<Decimal>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a pledge's money back from escrow: `escrow → refunds`, and a refund awaiting the
/// provider's confirmation.
pub async fn refund_from_escrow(
    conn: &mut PgConnection,
    pledge: &Pledge,
    amount: Money,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, ApiError> {
    let payment = payment_of_pledge(conn, pledge.id)
        .await?
        .expect("a funded pledge has a payment");
    let refund = Uuid::now_v7();
    let escrow = chart::offer_escrow(conn, pledge.offer_id, amount.currency(), now).await?;
    let refunds = chart::refunds(conn, &payment.provider, amount.currency(), now).await?;
    let entry = NewEntry::new("pledge.refund", format!("refund:{refund}:owed"), now)
        .metadata(serde_json::json!({ "pledge_id": pledge.id, "offer_id": pledge.offer_id, "reason": reason }))
        .debit(escrow, amount)
        .credit(refunds, amount);
    let owed = ledger::post(conn, entry).await?.entry.id;
    let new = NewRefund {
        id: refund,
        pledge_id: pledge.id,
        amount: amount.amount(),
    };
    insert_refunds(conn, &payment.provider, amount.currency(), &[new], reason, owed, now).await?;
    Ok(refund)
}

/// [`refund_from_escrow`] for the card money of many pledges of one offer (a round's close
/// gives back the unallocated money of each): one refund per pledge, each confirmed on its own
/// later (`refunds → psp`), but for each provider a single entry `escrow → refunds` for their
/// total, which every refund names. A constant number of statements, whatever the number of
/// pledges. `parts` are `(pledge, card amount > 0)`.
pub async fn refund_many_from_escrow(
    conn: &mut PgConnection,
    offer_id: Uuid,
    currency: Currency,
    parts: &[(Uuid, Decimal)],
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if parts.is_empty() {
        return Ok(());
    }
    // Each pledge's provider, as one row per provider (not one per pledge).
    let providers: Vec<(String, Vec<Uuid>)> = sqlx::query_as(
        "select provider, array_agg(pledge_id) from payments where pledge_id = any($1) group by provider",
    )
    .bind(parts.iter().map(|p| p.0).collect::<Vec<Uuid>>())
    .fetch_all(&mut *conn)
    .await?;
    let provider_of: std::collections::HashMap<Uuid, &str> = providers
        .iter()
        .flat_map(|(provider, pledges)| pledges.iter().map(move |p| (*p, provider.as_str())))
        .collect();
    let mut by_provider: std::collections::BTreeMap<&str, Vec<NewRefund>> = Default::default();
    for &(pledge_id, amount) in parts {
        let provider = provider_of.get(&pledge_id).expect("a funded pledge has a payment");
        by_provider.entry(provider).or_default().push(NewRefund {
            id: Uuid::now_v7(),
            pledge_id,
            amount,
        });
    }
    let escrow = chart::offer_escrow(conn, offer_id, currency, now).await?;
    for (provider, refunds) in by_provider {
        let total = Money::new(refunds.iter().map(|r| r.amount).sum(), currency)?;
        let to = chart::refunds(conn, provider, currency, now).await?;
        let entry = NewEntry::new(
            "pledge.refund",
            format!("offer:{offer_id}:refunds:{}:owed", refunds[0].id),
            now,
        )
        .metadata(serde_json::json!({ "offer_id": offer_id, "reason": reason, "refunds": refunds.len() }))
        .debit(escrow, total)
        .credit(to, total);
        let owed = ledger::post(conn, entry).await?.entry.id;
        insert_refunds(conn, provider, currency, &refunds, reason, owed, now).await?;
    }
    Ok(())
}

/// The provider gave a refund back to the card: `refunds → psp`, for the refund's exact amount.
pub async fn confirm_refund(
    conn: &mut PgConnection,
    provider: &str,
    provider_refund_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, ApiError> {
    let row: Option<(Uuid, Decimal, String, String)> = sqlx::query_as(
        "select id, amount, currency, status::text from refunds where provider = $1 and provider_refund_id = $2 for update",
    )
    .bind(provider)
    .bind(provider_refund_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (id, amount, currency, status) = row.ok_or_else(|| unknown("refund", provider_refund_id))?;
    expect_money("refund_mismatch", "refund", provider_refund_id, amount, &currency, paid)?;
    if status != "pending" {
        return Ok(Applied::Nothing);
    }
    let amount = Money::new(amount, Currency::parse(&currency)?)?;
    let refunds = chart::refunds(conn, provider, amount.currency(), now).await?;
    let psp = chart::psp(conn, provider, amount.currency(), now).await?;
    let entry = NewEntry::new("refund.paid", format!("refund:{id}:paid"), now)
        .metadata(serde_json::json!({ "refund_id": id, "provider_refund_id": provider_refund_id }))
        .debit(refunds, amount)
        .credit(psp, amount);
    let paid = ledger::post(conn, entry).await?.entry.id;
    // Settled and named in one statement: Postgres refuses either without the other
    // (`refunds_paid_once`), and verify checks the entry (`refunds_paid`).
    sqlx::query("update refunds set status = 'succeeded', settled_at = $2, paid_entry_id = $3 where id = $1")
        .bind(id)
        .bind(now)
        .bind(paid)
        .execute(&mut *conn)
        .await?;
    Ok(Applied::Done)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Payout {
    pub id: Uuid,
    pub provider: String,
    pub provider_payout_id: String,
    pub offer_id: Uuid,
    pub amount: Decimal,
    pub currency: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Asks `provider` to pay a succeeded offer's project what it is still owed for that offer.
pub async fn request_payout(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    offer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Payout, ApiError> {
    let offer = offers::store::lock(conn, offer_id)
        .await?
        .ok_or_else(|| unknown("offer", &offer_id.to_string()))?;
    if offer.status != offers::OfferStatus::Succeeded {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_state_transition",
            "only a succeeded offer is paid out",
        ));
    }
    let settled: Option<Decimal> = sqlx::query_scalar(
        "select sum(p.amount) from ledger_postings p join ledger_entries e on e.id = p.entry_id
          where e.reference = $1 and p.account_id = $2",
    )
    .bind(offers::closing::settlement_reference(offer_id))
    .bind(chart::project_payable(conn, offer.project_id, offer.currency, now).await?)
    .fetch_one(&mut *conn)
    .await?;
    let requested: Decimal = sqlx::query_scalar("select coalesce(sum(amount), 0) from payouts where offer_id = $1")
        .bind(offer_id)
        .fetch_one(&mut *conn)
        .await?;
    let owed = settled.unwrap_or_default() - requested;
    if owed <= Decimal::ZERO {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_pay",
            "the project has been paid everything it is owed for this offer",
        ));
    }
    let id = Uuid::now_v7();
    let provider_payout_id = provider.create_payout(id, Money::new(owed, offer.currency)?)?;
    let payout = sqlx::query_as(
        "insert into payouts (id, provider, provider_payout_id, offer_id, amount, currency, created_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning id, provider, provider_payout_id, offer_id, amount, currency, status::text, created_at",
    )
    .bind(id)
    .bind(provider.name())
    .bind(provider_payout_id)
    .bind(offer_id)
    .bind(owed)
    .bind(offer.currency.code())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(payout)
}

/// The provider paid the project: `project payable → psp`, for the payout's exact amount.
pub async fn confirm_payout(
    conn: &mut PgConnection,
    provider: &str,
    provider_payout_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, ApiError> {
    let payout: Payout = sqlx::query_as(
        "select id, provider, provider_payout_id, offer_id, amount, currency, status::text, created_at
           from payouts where provider = $1 and provider_payout_id = $2 for update",
    )
    .bind(provider)
    .bind(provider_payout_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| unknown("payout", provider_payout_id))?;
    expect_money(
        "payout_mismatch",
        "payout",
        provider_payout_id,
        payout.amount,
        &payout.currency,
        paid,
    )?;
    if payout.status != "pending" {
        return Ok(Applied::Nothing);
    }
    let offer = offers::store::get(conn, payout.offer_id)
        .await?
        .expect("payouts belong to offers");
    let amount = Money::new(payout.amount, offer.currency)?;
    let payable = chart::project_payable(conn, offer.project_id, offer.currency, now).await?;
    let psp = chart::psp(conn, provider, offer.currency, now).await?;
    let entry = NewEntry::new("payout.paid", format!("payout:{}:paid", payout.id), now)
        .metadata(serde_json::json!({ "payout_id": payout.id, "offer_id": offer.id, "project_id": offer.project_id }))
        .debit(payable, amount)
        .credit(psp, amount);
    let paid = ledger::post(conn, entry).await?.entry.id;
    // Settled and named in one statement (`payouts_paid_once`; verify: `payouts_paid`).
    sqlx::query("update payouts set status = 'paid', settled_at = $2, paid_entry_id = $3 where id = $1")
        .bind(payout.id)
        .bind(now)
        .bind(paid)
        .execute(&mut *conn)
        .await?;
    outbox::emit(
        conn,
        "payout.paid",
        serde_json::json!({ "payout_id": payout.id, "offer_id": offer.id, "project_id": offer.project_id,
                            "amount": amount.amount_string(), "currency": offer.currency }),
        now,
    )
    .await?;
    Ok(Applied::Done)
}
