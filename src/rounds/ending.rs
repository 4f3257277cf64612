//! How a pledge's round ends early for it: cancelled when its card money never came (its
//! window lapsed, the provider declined, its round closed or was cancelled), revoked within its
//! reflection period, or refunded in full when its round failed or was cancelled. Its shares
//! return to the offer and its money goes back where it came from: card money as a refund,
//! cheque money to the cheques (or their sponsors).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::RoundError;
use crate::cheques::redeem;
use crate::money::Money;
use crate::offers::{self, Offer, OfferStatus};
use crate::outbox::{self, EventType};
use crate::payments;
use crate::payments::card::Payment;
use crate::payments::refunds::RefundReason;
use crate::pledges::{self, Pledge, PledgeEvent, PledgeStatus, pledge_event, store};

/// Pledges looked at per transaction by [`expire_unpaid`].
const BATCH: i64 = 500;

/// Ends a pledge whose card money never arrived (or, funded, whose card money a lost dispute
/// took back, `super::disputes`): its shares go back to the offer, and the cheque money it had
/// reserved or spent goes back to its cheques. The caller holds the offer's and the pledge's
/// locks.
pub(crate) async fn cancel_pledge(
    conn: &mut PgConnection,
    pledge: &Pledge,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    cancel_pledge_because(conn, pledge, None, now).await
}

/// [`cancel_pledge`], its event naming `reason` when one is given (`not_reconfirmed`).
pub(crate) async fn cancel_pledge_because(
    conn: &mut PgConnection,
    pledge: &Pledge,
    reason: Option<&'static str>,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    store::set_status(conn, pledge.id, PledgeStatus::Cancelled, now).await?;
    if pledge.status == PledgeStatus::Funded {
        // A lost dispute's: a funded pledge may have been matched.
        super::matching::give_back(conn, &[pledge.id], super::matching::Why::Cancelled, now).await?;
    }
    let reserved_by_cheques = pledge.amount.amount() - pledge.card_amount;
    if reserved_by_cheques > Decimal::ZERO {
        redeem::give_back(conn, pledge.funded_by_cheques(), reserved_by_cheques, now).await?;
    }
    let cancelled: Option<(Uuid, String, Option<String>)> = sqlx::query_as(
        "update payments set status = 'cancelled', settled_at = $2 where pledge_id = $1 and status = 'pending'
         returning id, provider, provider_payment_id",
    )
    .bind(pledge.id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((payment_id, provider, provider_payment_id)) = cancelled {
        // No money may arrive any more for a payment a networked provider still awaits.
        crate::payments::calls::cancel_at_provider(conn, &provider, payment_id, provider_payment_id, now).await?;
    }
    offers::store::release(conn, pledge.offer_id, pledge.shares).await?;
    let mut event = PledgeEvent::new(pledge, PledgeStatus::Cancelled);
    if let Some(reason) = reason {
        event = event.because(reason);
    }
    outbox::emit(
        conn,
        EventType::PledgeCancelled,
        serde_json::to_value(event).expect("a pledge event serialises"),
        now,
    )
    .await?;
    Ok(())
}

/// Locks what ending a pledge paid by card changes, in the order every such move takes: its
/// offer (whose shares it returns), the pledge, then its payment.
pub(crate) async fn lock_pledge_and_payment(
    conn: &mut PgConnection,
    pledge_id: Uuid,
) -> Result<(Pledge, Payment), RoundError> {
    // A pledge's offer never changes: read unlocked to find which offer to lock first.
    let unlocked = store::get(conn, pledge_id)
        .await?
        .ok_or(RoundError::NoPledge(pledge_id))?;
    offers::store::lock(conn, unlocked.offer_id).await?;
    let pledge = store::lock(conn, pledge_id).await?.expect("pledges are never deleted");
    let payment = payments::card::payment_of_pledge_locked(conn, pledge_id)
        .await?
        .ok_or(RoundError::Unaccounted(format!("pledge {pledge_id} has no payment")))?;
    Ok((pledge, payment))
}

/// Revokes a non-sophisticated investor's pledge within its reflection period: an unpaid pledge
/// is cancelled, a funded one revoked and its money given back. Either way its shares return.
pub async fn revoke(conn: &mut PgConnection, pledge_id: Uuid, now: DateTime<Utc>) -> Result<Pledge, RoundError> {
    let unlocked = store::get(conn, pledge_id)
        .await?
        .ok_or(RoundError::NoPledge(pledge_id))?;
    offers::store::lock(conn, unlocked.offer_id).await?;
    let pledge = store::lock(conn, pledge_id).await?.expect("pledges are never deleted");
    let not_revocable = RoundError::NotRevocable;
    let Some(ends) = pledge.reflection_ends_at else {
        return Err(not_revocable("pledges of sophisticated investors cannot be revoked"));
    };
    if now >= ends {
        return Err(not_revocable("the reflection period of this pledge has ended"));
    }
    match pledge.status {
        PledgeStatus::PendingPayment => cancel_pledge(conn, &pledge, now).await?,
        PledgeStatus::Funded => {
            give_back(conn, &pledge, pledge.amount.amount(), RefundReason::Revoked, now).await?;
            super::matching::give_back(conn, &[pledge.id], super::matching::Why::Revoked, now).await?;
            store::end_given_back(conn, &[pledge.id], PledgeStatus::Revoked, now).await?;
            offers::store::release(conn, pledge.offer_id, pledge.shares).await?;
            outbox::emit(
                conn,
                EventType::PledgeRevoked,
                pledge_event(&pledge, PledgeStatus::Revoked),
                now,
            )
            .await?;
        }
        _ => return Err(not_revocable("only a pending or funded pledge can be revoked")),
    }
    Ok(store::get(conn, pledge_id).await?.expect("pledges are never deleted"))
}

/// Gives `amount` of a funded pledge's money back from escrow: its card money first (a refund
/// to the card), then its cheque money (to the cheques, or their sponsors once they ended). The
/// caller holds the offer's and the pledge's locks.
pub(crate) async fn give_back(
    conn: &mut PgConnection,
    pledge: &Pledge,
    amount: Decimal,
    reason: RefundReason,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    let card = amount.min(pledge.card_amount);
    if card > Decimal::ZERO {
        payments::refunds::refund_from_escrow(
            conn,
            pledge.id,
            pledge.offer_id,
            Money::new(card, pledge.amount.currency())?,
            reason,
            now,
        )
        .await?;
    }
    if amount > card {
        redeem::give_back(conn, pledge.funded_by_cheques(), amount - card, now).await?;
    }
    Ok(())
}

/// [`give_back`] for many funded pledges of one offer at once (a round's close): the card money
/// of all of them in a few statements ([`payments::refunds::refund_many_from_escrow`]), then the cheque
/// money pledge by pledge. `parts` are `(pledge, amount to give back)`. The caller holds the
/// offer's lock, under which funded pledges do not change.
pub(crate) async fn give_back_many(
    conn: &mut PgConnection,
    offer: &Offer,
    parts: &[(&Pledge, Decimal)],
    reason: RefundReason,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    let cards: Vec<(Uuid, Decimal)> = parts
        .iter()
        .map(|(pledge, amount)| (pledge.id, (*amount).min(pledge.card_amount)))
        .filter(|(_, card)| *card > Decimal::ZERO)
        .collect();
    payments::refunds::refund_many_from_escrow(conn, offer.id, offer.currency, &cards, reason, now).await?;
    for (pledge, amount) in parts {
        let card = (*amount).min(pledge.card_amount);
        if *amount > card {
            redeem::give_back(conn, pledge.funded_by_cheques(), *amount - card, now).await?;
        }
    }
    Ok(())
}

/// Ends funded pledges of an offer that failed or was cancelled: all their money given back,
/// each `refunded`, their shares released, a `pledge.refunded` event each. The caller holds the
/// offer's lock, under which funded pledges do not change.
pub(crate) async fn refund_in_full(
    conn: &mut PgConnection,
    offer: &Offer,
    funded: &[Pledge],
    reason: RefundReason,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    if funded.is_empty() {
        return Ok(());
    }
    let parts: Vec<(&Pledge, Decimal)> = funded.iter().map(|p| (p, p.amount.amount())).collect();
    give_back_many(conn, offer, &parts, reason, now).await?;
    let ids: Vec<Uuid> = funded.iter().map(|p| p.id).collect();
    super::matching::give_back(conn, &ids, super::matching::Why::Refunded, now).await?;
    store::end_given_back(conn, &ids, PledgeStatus::Refunded, now).await?;
    offers::store::release(conn, offer.id, funded.iter().map(|p| p.shares).sum()).await?;
    let refunded: Vec<_> = funded
        .iter()
        .map(|p| PledgeEvent::new(p, PledgeStatus::Refunded))
        .collect();
    outbox::emit_all(conn, EventType::PledgeRefunded, &refunded, now).await?;
    Ok(())
}

/// `draft | open → cancelled`: unpaid pledges are cancelled, funded ones refunded in full.
pub(crate) async fn cancel_offer(
    conn: &mut PgConnection,
    offer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    let offer = offers::store::lock(conn, offer_id)
        .await?
        .ok_or(RoundError::NoOffer(offer_id))?;
    if !matches!(offer.status, OfferStatus::Draft | OfferStatus::Open) {
        return Err(offers::lifecycle::invalid_transition(&offer, "cancelled").into());
    }
    let live = [PledgeStatus::PendingPayment, PledgeStatus::Funded];
    let (unpaid, funded): (Vec<_>, Vec<_>) = pledges::store::of_offer(conn, offer_id, Some(&live), 0, i64::MAX, true)
        .await?
        .into_iter()
        .partition(|p| p.status == PledgeStatus::PendingPayment);
    for pledge in &unpaid {
        cancel_pledge(conn, pledge, now).await?;
    }
    refund_in_full(conn, &offer, &funded, RefundReason::OfferCancelled, now).await?;
    offers::store::set_status(conn, offer_id, OfferStatus::Cancelled, now).await?;
    outbox::emit(
        conn,
        EventType::OfferCancelled,
        offers::offer_event(&offer, OfferStatus::Cancelled),
        now,
    )
    .await?;
    Ok(())
}
/// Cancels pledges whose payment window has passed, releasing their shares.
pub(crate) async fn expire_unpaid(pool: &PgPool, now: DateTime<Utc>) -> Result<usize, RoundError> {
    let mut expired = 0;
    loop {
        let mut conn = pool.acquire().await?;
        let due = pledges::store::overdue(&mut conn, now, BATCH).await?;
        drop(conn);
        if due.is_empty() {
            return Ok(expired);
        }
        for (pledge_id, offer_id) in due {
            let mut tx = pool.begin().await?;
            offers::store::lock(&mut tx, offer_id).await?;
            let pledge = pledges::store::lock(&mut tx, pledge_id)
                .await?
                .expect("pledges are never deleted");
            if pledge.status == PledgeStatus::PendingPayment && pledge.payment_due_at <= now {
                cancel_pledge(&mut tx, &pledge, now).await?;
                expired += 1;
            }
            tx.commit().await?;
        }
    }
}
