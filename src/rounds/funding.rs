//! Funding on a provider's confirmation: a captured payment funds its pledge (`psp → escrow`),
//! or, when the pledge ended meanwhile, is booked and owed straight back; a failed payment
//! ends its pledge (a disputed one is `disputes`'s). One domain call per confirmation, made only by the signed-webhook handler,
//! moving state, ledger and outbox in one transaction.
//! Lock order, everywhere: offer, then pledge, then payment or refund. A payment confirmed in
//! time takes no offer lock at all.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::RoundError;
use super::ending::{cancel_pledge, lock_pledge_and_payment};
use crate::books::{EntryKind, chart};
use crate::ledger::{self, NewEntry};
use crate::money::Money;
use crate::offers;
use crate::outbox::{self, EventType};
use crate::payments::card::{
    PAYMENT_COLUMNS, Payment, PaymentStatus, capture, find_payment, named_payment, set_payment_status,
};
use crate::payments::provider::Object;
use crate::payments::refunds::{NewRefund, RefundReason, insert_refunds};
use crate::payments::{Applied, expect_money};
use crate::pledges::{self, Pledge, PledgeEvent, PledgeStatus, pledge_event};

/// The provider captured a payment: the pledge is funded and the money moves `psp → escrow`.
/// Money captured is always booked (PRODUCT.md section 10): a payment arriving for a pledge
/// that ended meanwhile (its window lapsed, its round closed, or the provider had declared the
/// payment failed) is captured `psp → refunds` and refunded in full at once.
pub(crate) async fn confirm_payment(
    conn: &mut PgConnection,
    provider: &str,
    provider_payment_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, RoundError> {
    let seen = named_payment(conn, provider, provider_payment_id, false).await?;
    let unlocked = pledges::store::get(conn, seen.pledge_id)
        .await?
        .expect("payments belong to pledges");
    // A capture after the payment window ends the pledge here, whether or not the expiry job
    // has run yet; ending it releases shares, so only then is the (hot) offer row locked.
    // The window and `now` are fixed, so this decision holds once the rows are locked.
    let overdue = unlocked.status == PledgeStatus::PendingPayment && now >= unlocked.payment_due_at;
    // A pledge a sponsor's pool may match takes shares for its match: the offer's row first too.
    let matchable = !overdue
        && unlocked.status == PledgeStatus::PendingPayment
        && super::matching::matchable(conn, unlocked.offer_id).await?;
    if overdue || matchable {
        offers::store::lock(conn, unlocked.offer_id).await?;
    }
    let mut pledge = pledges::store::lock(conn, seen.pledge_id)
        .await?
        .expect("pledges are never deleted");
    let payment = find_payment(conn, provider, provider_payment_id, true)
        .await?
        .expect("payments are never deleted");
    expect_money(
        Object::Payment,
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
        let entry = NewEntry::new(EntryKind::PledgeFunded, format!("payment:{}:captured", payment.id), now)
            .metadata(serde_json::json!({ "pledge_id": pledge.id, "offer_id": pledge.offer_id, "provider_payment_id": provider_payment_id }))
            .debit(psp, paid)
            .credit(escrow, paid);
        let captured = ledger::post(conn, entry).await?.entry.id;
        capture(conn, payment.id, captured, now).await?;
        pledges::store::set_status(conn, pledge.id, PledgeStatus::Funded, now).await?;
        outbox::emit(
            conn,
            EventType::PledgeFunded,
            pledge_event(&pledge, PledgeStatus::Funded),
            now,
        )
        .await?;
        if matchable {
            super::matching::apply(conn, &pledge, now).await?;
        }
    } else {
        // The pledge ended before its money arrived: the money is owed straight back.
        let reason = if payment.status == PaymentStatus::Failed {
            RefundReason::PaymentAfterFailure
        } else {
            RefundReason::PaymentAfterPledgeEnded
        };
        let refunds = chart::refunds(conn, provider, paid.currency(), now).await?;
        let refund = Uuid::now_v7();
        let entry = NewEntry::new(EntryKind::PaymentLate, format!("payment:{}:captured", payment.id), now)
            .metadata(serde_json::json!({ "pledge_id": pledge.id, "refund_id": refund, "reason": reason.as_str() }))
            .debit(psp, paid)
            .credit(refunds, paid);
        let owed = ledger::post(conn, entry).await?.entry.id;
        capture(conn, payment.id, owed, now).await?;
        let new = NewRefund {
            id: refund,
            pledge_id: pledge.id,
            offer_id: pledge.offer_id,
            amount: paid.amount(),
        };
        insert_refunds(conn, provider, paid.currency(), &[new], reason, owed, now).await?;
        pledges::store::add_refunded(conn, pledge.id, paid.amount()).await?;
        outbox::emit(
            conn,
            EventType::PaymentLate,
            serde_json::json!({ "pledge_id": pledge.id, "offer_id": pledge.offer_id, "investor_id": pledge.investor_id,
                                "payment": { "provider": provider, "payment_id": provider_payment_id },
                                "amount": paid.amount_string(), "currency": paid.currency(),
                                "reason": reason, "refund_id": refund }),
            now,
        )
        .await?;
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
) -> Result<(Vec<Option<Applied>>, Captures), RoundError> {
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
    let seen: std::collections::HashMap<&str, &Payment> = seen
        .iter()
        .filter_map(|p| p.provider_payment_id.as_deref().map(|id| (id, p)))
        .collect();
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
        let mut entry = NewEntry::new(
            EntryKind::PledgeFunded,
            format!("payments:{}:captured", group[0].0.id),
            now,
        )
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
        return Err(RoundError::Unaccounted(format!(
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
    pub async fn post(self, conn: &mut PgConnection) -> Result<(), RoundError> {
        ledger::post_many(conn, &self.entries).await?;
        outbox::emit_all(conn, EventType::PledgeFunded, &self.events, self.now).await?;
        Ok(())
    }
}

/// The provider declined a payment: a pending pledge is cancelled and its shares released.
pub(crate) async fn fail_payment(
    conn: &mut PgConnection,
    provider: &str,
    provider_payment_id: &str,
    now: DateTime<Utc>,
) -> Result<Applied, RoundError> {
    let seen = named_payment(conn, provider, provider_payment_id, false).await?;
    fail_payment_of_pledge(conn, seen.pledge_id, now).await
}

/// [`fail_payment`] of a pledge's payment, found by our ids: also for one the provider refused
/// to create (a queued call that failed for good, `rounds::calls`).
pub(crate) async fn fail_payment_of_pledge(
    conn: &mut PgConnection,
    pledge_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Applied, RoundError> {
    let (pledge, payment) = lock_pledge_and_payment(conn, pledge_id).await?;
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
