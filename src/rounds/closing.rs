//! Closing a round. `open → closing` (at `closes_at`, or early by an operator once the minimum
//! is funded); then, in `closing`, unpaid pledges are cancelled and the round waits for every
//! remaining pledge's reflection period to end; then `succeeded` (allocation, settlement, refunds
//! of what was not allocated) or `failed` (everything refunded). Every step runs under the offer's
//! row lock, so several serve processes and the CLI may call it at once.

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::RoundError;
use super::ending::{cancel_pledge, give_back_many, refund_in_full};
use super::matching::{self, Match};
use super::reconfirmation;
use crate::books::{EntryKind, chart};
use crate::ledger::{self, NewEntry};
use crate::money::Money;
use crate::offers::allocation::{self, Claim};
use crate::offers::ballot::{self, SeedKey};
use crate::offers::{Allocation, Offer, OfferStatus, offer_event, store};
use crate::outbox::{self, EventType};
use crate::payments::refunds::RefundReason;
use crate::pledges::{self, PledgeStatus};

/// The reference of the entry moving a succeeded offer's escrow to the project and the fee.
pub(crate) fn settlement_reference(offer: Uuid) -> String {
    format!("offer:{offer}:settlement")
}

/// Moves an open offer to `closing`. Before `closes_at` only once the minimum target is funded.
pub async fn start(conn: &mut PgConnection, offer_id: Uuid, now: DateTime<Utc>) -> Result<Offer, RoundError> {
    let offer = store::lock(conn, offer_id)
        .await?
        .ok_or(RoundError::NoOffer(offer_id))?;
    if offer.status != OfferStatus::Open {
        return Err(RoundError::InvalidTransition(
            format!("an offer in status {:?} cannot be closed", offer.status).to_lowercase(),
        ));
    }
    if now < offer.closes_at {
        let figures = store::figures(conn, offer_id).await?;
        // Matched shares count toward the targets like pledged ones.
        let funded = figures.shares_funded + figures.shares_matched;
        if funded < offer.min_shares {
            return Err(RoundError::MinTargetNotReached(format!(
                "only {funded} of the {} shares of the minimum target are funded",
                offer.min_shares
            )));
        }
    }
    store::set_status(conn, offer_id, OfferStatus::Closing, now).await?;
    outbox::emit(
        conn,
        EventType::OfferClosing,
        offer_event(&offer, OfferStatus::Closing),
        now,
    )
    .await?;
    Ok(offer)
}

/// Takes a closing offer as far as it can go at `now`; returns its status afterwards. A ballot's
/// seed is derived with `seed_key` for the draw.
pub async fn advance(
    conn: &mut PgConnection,
    offer_id: Uuid,
    seed_key: Option<&SeedKey>,
    now: DateTime<Utc>,
) -> Result<OfferStatus, RoundError> {
    let offer = store::lock(conn, offer_id)
        .await?
        .ok_or(RoundError::NoOffer(offer_id))?;
    if offer.status != OfferStatus::Closing {
        return Ok(offer.status);
    }
    let unpaid =
        pledges::store::of_offer(conn, offer_id, Some(&[PledgeStatus::PendingPayment]), 0, i64::MAX, true).await?;
    for pledge in &unpaid {
        cancel_pledge(conn, pledge, now).await?;
    }
    // Not locked one by one: a funded pledge changes only under its offer's lock, which is held
    // here (revocations take it; payment confirmations touch pending pledges only). The updates
    // below lock them; 100,000 row locks taken first would be a second write of every row.
    let funded = pledges::store::of_offer(conn, offer_id, Some(&[PledgeStatus::Funded]), 0, i64::MAX, false).await?;
    // A pledge not reconfirmed in time after an amendment of the KIIS ends now, if the clock's
    // job has not ended it yet; one whose time runs still is waited for, like a reflection.
    let (lapsed, funded): (Vec<_>, Vec<_>) = funded
        .into_iter()
        .partition(|p| p.reconfirm_by.is_some_and(|by| by <= now));
    for pledge in &lapsed {
        reconfirmation::end_unconfirmed(conn, pledge, now).await?;
    }
    if funded
        .iter()
        .any(|p| p.reflection_ends_at.is_some_and(|t| t > now) || reconfirmation::awaiting(p, now))
    {
        return Ok(OfferStatus::Closing);
    }
    // Matches of pledges that ended above were given back with them.
    let matches = matching::applied_of_offer(conn, offer_id).await?;
    let funded_shares: i64 =
        funded.iter().map(|p| p.shares).sum::<i64>() + matches.iter().map(|m| m.shares).sum::<i64>();
    if funded_shares >= offer.min_shares {
        succeed(conn, &offer, &funded, &matches, seed_key, now).await?;
        Ok(OfferStatus::Succeeded)
    } else {
        refund_in_full(conn, &offer, &funded, RefundReason::OfferFailed, now).await?;
        store::set_status(conn, offer.id, OfferStatus::Failed, now).await?;
        outbox::emit(
            conn,
            EventType::OfferFailed,
            offer_event(&offer, OfferStatus::Failed),
            now,
        )
        .await?;
        Ok(OfferStatus::Failed)
    }
}

async fn succeed(
    conn: &mut PgConnection,
    offer: &Offer,
    funded: &[pledges::Pledge],
    matches: &[Match],
    seed_key: Option<&SeedKey>,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    // A match is a claim of its own, in its pledge's place in arrival order and drawn by its
    // own id in a ballot (docs/matchfunding.md); the pledges' claims come first.
    let seqs: std::collections::HashMap<Uuid, i64> = funded.iter().map(|p| (p.id, p.seq)).collect();
    let claims: Vec<Claim> = funded
        .iter()
        .map(|p| Claim {
            id: p.id,
            seq: p.seq,
            shares: p.shares,
        })
        .chain(matches.iter().map(|m| Claim {
            id: m.id,
            seq: seqs.get(&m.pledge_id).copied().unwrap_or(i64::MAX),
            shares: m.shares,
        }))
        .collect();
    let mut seed = None;
    let allocated = match offer.allocation {
        Allocation::FirstCome => allocation::first_come(offer.max_shares, &claims),
        Allocation::ProRata => allocation::pro_rata(offer.max_shares, &claims),
        Allocation::Ballot => {
            let drawn = seed.insert(ballot::seed_for_draw(seed_key, offer)?);
            allocation::ballot(offer.max_shares, &claims, drawn)
        }
    };

    let (allocated, matched) = allocated.split_at(funded.len());
    let mut statuses = Vec::with_capacity(funded.len());
    let mut refunded = Vec::with_capacity(funded.len());
    let mut given_back = Vec::new();
    let mut refund_events = Vec::new();
    for (pledge, &shares) in funded.iter().zip(allocated) {
        let back = pledge.amount.amount() - offer.price_of(shares).amount();
        refunded.push(back);
        let status = if shares > 0 {
            PledgeStatus::Allocated
        } else {
            PledgeStatus::Refunded
        };
        statuses.push(status);
        if back > Decimal::ZERO {
            given_back.push((pledge, back));
            refund_events
                .push(pledges::PledgeEvent::new(pledge, status).allocated(shares, Money::new(back, offer.currency)?));
        }
    }
    // A round's unallocated money goes back in a few statements, not a few per pledge.
    give_back_many(conn, offer, &given_back, RefundReason::NotAllocated, now).await?;
    outbox::emit_all(conn, EventType::PledgeRefunded, &refund_events, now).await?;
    let ids: Vec<Uuid> = funded.iter().map(|p| p.id).collect();
    pledges::store::set_allocations(conn, &ids, allocated, &refunded, &statuses, now).await?;
    matching::settle(conn, offer, matches, matched, now).await?;
    // What was reserved but not allocated goes back: afterwards reserved = allocated.
    let unallocated: i64 = funded.iter().zip(allocated).map(|(p, a)| p.shares - a).sum::<i64>()
        + matches.iter().zip(matched).map(|(m, a)| m.shares - a).sum::<i64>();
    store::release(conn, offer.id, unallocated).await?;

    // The fee is computed once on the round's total, half-even to the cent; the project gets the
    // exact rest, so no cent is lost or invented.
    let total = offer.price_of(allocated.iter().chain(matched).sum());
    let fee = (total.amount() * offer.success_fee_rate)
        .round_dp_with_strategy(offer.currency.minor_units(), RoundingStrategy::MidpointNearestEven);
    let fee = Money::new(fee, offer.currency)?;
    let net = Money::new(total.amount() - fee.amount(), offer.currency)?;
    let escrow = chart::offer_escrow(conn, offer.id, offer.currency, now).await?;
    let payable = chart::project_payable(conn, offer.project_id, offer.currency, now).await?;
    let mut entry = NewEntry::new(EntryKind::OfferSettlement, settlement_reference(offer.id), now)
        .metadata(serde_json::json!({
            "offer_id": offer.id, "project_id": offer.project_id,
            "success_fee_rate": offer.success_fee_rate.to_string(), "fee": fee.amount_string(),
        }))
        .debit(escrow, total)
        .credit(payable, net);
    if fee.amount() > Decimal::ZERO {
        entry = entry.credit(chart::platform_fees(conn, offer.currency, now).await?, fee);
    }
    if total.amount() > Decimal::ZERO {
        ledger::post(conn, entry).await?;
    }
    store::set_status(conn, offer.id, OfferStatus::Succeeded, now).await?;
    // Stored once succeeded (migration 0023's check): the offer reveals the seed from now on.
    if let Some(seed) = &seed {
        store::reveal_ballot_seed(conn, offer.id, seed).await?;
    }
    outbox::emit(
        conn,
        EventType::OfferSucceeded,
        offer_event(offer, OfferStatus::Succeeded),
        now,
    )
    .await?;
    Ok(())
}

/// Closes an offer at the operator's request: to `closing`, then as far as it can go now.
pub async fn close(
    pool: &PgPool,
    offer_id: Uuid,
    seed_key: Option<&SeedKey>,
    now: DateTime<Utc>,
) -> Result<OfferStatus, RoundError> {
    let mut tx = pool.begin().await?;
    start(&mut tx, offer_id, now).await?;
    tx.commit().await?;
    let mut tx = pool.begin().await?;
    let status = advance(&mut tx, offer_id, seed_key, now).await?;
    tx.commit().await?;
    Ok(status)
}

/// Moves every offer whose time has come: open ones past `closes_at` to closing, closing ones
/// as far as they can go. Returns how many offers ended (succeeded or failed). `progress` is
/// told `(done, total)` after each offer.
pub async fn close_due(
    pool: &PgPool,
    seed_key: Option<&SeedKey>,
    now: DateTime<Utc>,
    mut progress: impl FnMut(usize, usize),
) -> Result<usize, RoundError> {
    let mut conn = pool.acquire().await?;
    let due = store::due_for_closing(&mut conn, now).await?;
    drop(conn);
    let total = due.len();
    let mut ended = 0;
    for (done, id) in due.into_iter().enumerate() {
        let mut tx = pool.begin().await?;
        let offer = store::lock(&mut tx, id).await?.expect("offers are never deleted");
        if offer.status == OfferStatus::Open && offer.closes_at <= now {
            start(&mut tx, id, now).await?;
        }
        let status = advance(&mut tx, id, seed_key, now).await?;
        tx.commit().await?;
        ended += usize::from(matches!(status, OfferStatus::Succeeded | OfferStatus::Failed));
        progress(done + 1, total);
    }
    Ok(ended)
}
