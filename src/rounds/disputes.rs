//! Card disputes, opened and decided as the provider says (PRODUCT.md section 10,
//! docs/disputes.md). Opened: recorded and announced (`pledge.disputed`); no money moves, as
//! the bank has not decided. Won: nothing moves (`dispute.won`). Lost: the bank took the
//! disputed money back out of the provider's account, and the books follow it to wherever the
//! pledge's money is (`dispute.lost`):
//!
//! - still in the round (a funded pledge): `offer escrow → psp`; the pledge is cancelled, its
//!   shares released, its cheque money given back and the rest of its card money refunded;
//! - owed back to the card (a refund not yet paid): `refunds → psp`, and that refund is
//!   cancelled, never to be paid twice; what it owed beyond the dispute is owed anew;
//! - gone (settled to the project and the fee, or already refunded): `platform:losses → psp`;
//!   the pledge keeps its allocation.
//!
//! One domain call per event, made only by the signed-webhook handler, moving state, ledger and
//! outbox in one transaction. Lock order as funding and cancelling: offer, pledge, payment, then
//! the dispute and the pledge's refunds.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::RoundError;
use super::ending::{cancel_pledge, lock_pledge_and_payment};
use crate::books::{EntryKind, chart};
use crate::ledger::{self, NewEntry};
use crate::money::Money;
use crate::outbox::{self, EventType};
use crate::payments::card::{Payment, PaymentStatus, named_payment, record_dispute};
use crate::payments::disputes::{self, Dispute, DisputeStatus};
use crate::payments::provider::{Object, PaymentRef};
use crate::payments::refunds::{self, RefundReason};
use crate::payments::{Applied, PaymentError};
use crate::pledges::{self, Pledge, PledgeStatus};

/// The investor disputed a captured card payment with their bank: the dispute is written and
/// announced (`pledge.disputed`, once per payment). The pledge keeps its status and the books
/// are untouched: until the bank decides, the money is where the pledge's funding put it. A
/// dispute already known (a repeat, or one whose close came first) changes nothing.
pub(crate) async fn open(
    conn: &mut PgConnection,
    provider: &str,
    provider_payment_id: &str,
    provider_dispute_id: &str,
    disputed: Money,
    now: DateTime<Utc>,
) -> Result<Applied, RoundError> {
    let payment = named_payment(conn, provider, provider_payment_id, true).await?;
    expect_disputable(&payment, provider_payment_id, disputed)?;
    if disputes::find(conn, provider, provider_dispute_id, false)
        .await?
        .is_some()
    {
        return Ok(Applied::Nothing);
    }
    write(conn, &payment, provider_dispute_id, disputed, now).await?;
    Ok(Applied::Done)
}

/// The bank decided a dispute: won, nothing moves; lost, the chargeback is booked where the
/// pledge's money is (the module's doc) and the dispute names its entry. A close of a dispute
/// never seen opens it first. A repeat changes nothing; a close saying otherwise than the first
/// does not fit, and is quarantined.
pub(crate) async fn close(
    conn: &mut PgConnection,
    provider: &str,
    provider_payment_id: &str,
    provider_dispute_id: &str,
    disputed: Money,
    lost: bool,
    now: DateTime<Utc>,
) -> Result<Applied, RoundError> {
    let seen = named_payment(conn, provider, provider_payment_id, false).await?;
    expect_disputable(&seen, provider_payment_id, disputed)?;
    // A lost dispute may end the pledge and release its shares: the offer's lock first, as
    // every move of a funded pledge takes it.
    let (pledge, payment) = lock_pledge_and_payment(conn, seen.pledge_id).await?;
    let decided = if lost { DisputeStatus::Lost } else { DisputeStatus::Won };
    let dispute = match disputes::find(conn, provider, provider_dispute_id, true).await? {
        Some(known) if known.amount != disputed.amount() => {
            return Err(RoundError::DisputeMismatch {
                dispute: provider_dispute_id.to_owned(),
                expected: known.amount,
                said: disputed,
            });
        }
        Some(known) if known.status == decided => return Ok(Applied::Nothing),
        Some(known) if known.status != DisputeStatus::Open => {
            return Err(RoundError::InvalidTransition(
                format!(
                    "dispute {provider_dispute_id} was closed {:?} before; a close saying {decided:?} does not fit",
                    known.status
                )
                .to_lowercase(),
            ));
        }
        Some(open) => open,
        None => write(conn, &payment, provider_dispute_id, disputed, now).await?,
    };
    let lost_entry = if lost {
        Some(book_lost(conn, &pledge, &payment, &dispute, disputed, now).await?)
    } else {
        None
    };
    let closed = disputes::close(conn, dispute.id, decided, lost_entry, now).await?;
    let event = if lost {
        EventType::DisputeLost
    } else {
        EventType::DisputeWon
    };
    let data = DisputeData::new(&closed, &pledge, provider_payment_id, disputed);
    outbox::emit(
        conn,
        event,
        serde_json::to_value(data).expect("a dispute serialises"),
        now,
    )
    .await?;
    Ok(Applied::Done)
}

/// Refuses a dispute of money we never captured, of nothing, of more than was paid, or in
/// another currency: it does not fit what we know, and is quarantined.
fn expect_disputable(payment: &Payment, provider_payment_id: &str, disputed: Money) -> Result<(), PaymentError> {
    let amount = disputed.amount();
    if disputed.currency().code() != payment.currency || amount <= Decimal::ZERO || amount > payment.amount {
        return Err(PaymentError::Mismatch {
            object: Object::Payment,
            provider_id: provider_payment_id.to_owned(),
            expected: payment.amount,
            currency: payment.currency.clone(),
            paid: disputed,
        });
    }
    if payment.status != PaymentStatus::Succeeded {
        return Err(PaymentError::NotCaptured {
            provider_id: provider_payment_id.to_owned(),
        });
    }
    Ok(())
}

/// Writes a payment's dispute, open, and announces it (`pledge.disputed`) if it is the payment's
/// first: one disputed before migration 0036 was announced then. A payment has one dispute; a
/// second, under another id, is for an operator to look at. The caller holds the payment's lock.
async fn write(
    conn: &mut PgConnection,
    payment: &Payment,
    provider_dispute_id: &str,
    disputed: Money,
    now: DateTime<Utc>,
) -> Result<Dispute, RoundError> {
    if let Some(other) = disputes::of_payment(conn, payment.id).await? {
        return Err(RoundError::InvalidTransition(format!(
            "payment {} is disputed already (dispute {}); a second dispute {provider_dispute_id} of it does not fit",
            payment.provider_payment_id.as_deref().unwrap_or_default(),
            other.provider_dispute_id
        )));
    }
    let dispute = disputes::insert(conn, payment, provider_dispute_id, disputed.amount(), now).await?;
    if record_dispute(conn, payment.id, disputed.amount(), now).await? {
        // A pledge's offer and investor never change: no lock needed to name them.
        let pledge = pledges::store::get(conn, payment.pledge_id)
            .await?
            .expect("payments belong to pledges");
        outbox::emit(
            conn,
            EventType::PledgeDisputed,
            serde_json::json!({ "pledge_id": pledge.id, "offer_id": pledge.offer_id, "investor_id": pledge.investor_id,
                                "payment": { "provider": payment.provider, "payment_id": payment.provider_payment_id },
                                "amount": disputed.amount_string(), "currency": disputed.currency() }),
            now,
        )
        .await?;
    }
    Ok(dispute)
}

/// Books a lost dispute's chargeback, `taken` out of the provider's account, from wherever the
/// pledge's money is (the module's doc), and returns the entry. The caller holds the offer's,
/// the pledge's and the payment's locks.
async fn book_lost(
    conn: &mut PgConnection,
    pledge: &Pledge,
    payment: &Payment,
    dispute: &Dispute,
    taken: Money,
    now: DateTime<Utc>,
) -> Result<Uuid, RoundError> {
    let currency = taken.currency();
    let psp = chart::psp(conn, &payment.provider, currency, now).await?;
    let mut entry = NewEntry::new(EntryKind::DisputeLost, format!("dispute:{}:lost", dispute.id), now).metadata(
        serde_json::json!({ "dispute_id": dispute.id, "provider_dispute_id": dispute.provider_dispute_id,
                            "pledge_id": pledge.id, "offer_id": pledge.offer_id }),
    );
    if pledge.status == PledgeStatus::Funded {
        let escrow = chart::offer_escrow(conn, pledge.offer_id, currency, now).await?;
        let booked = ledger::post(conn, entry.debit(escrow, taken).credit(psp, taken))
            .await?
            .entry
            .id;
        end_funded(conn, pledge, taken, now).await?;
        return Ok(booked);
    }
    // The money left the round: what is still owed back to the card is what the bank gave
    // back, the rest is the platform's loss.
    let owed = refunds::owed_to_pledge_locked(conn, pledge.id).await?;
    let from_owed = refunds::cancel_for_dispute(conn, &owed, taken.amount(), dispute.id, now).await?;
    if from_owed > Decimal::ZERO {
        let refunds = chart::refunds(conn, &payment.provider, currency, now).await?;
        entry = entry.debit(refunds, Money::new(from_owed, currency)?);
    }
    let lost = taken.amount() - from_owed;
    if lost > Decimal::ZERO {
        let losses = chart::platform_losses(conn, currency, now).await?;
        entry = entry.debit(losses, Money::new(lost, currency)?);
    }
    Ok(ledger::post(conn, entry.credit(psp, taken)).await?.entry.id)
}

/// Ends a funded pledge whose card money a lost dispute took `taken` of, out of escrow: it is
/// cancelled as an unpaid one is (shares released, cheque money back to its cheques,
/// `pledge.cancelled`), and the rest of its card money is refunded. Everything it put in
/// went back to the investor, by the bank or by us: its `refunded_amount` is its amount.
async fn end_funded(
    conn: &mut PgConnection,
    pledge: &Pledge,
    taken: Money,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    cancel_pledge(conn, pledge, now).await?;
    let rest = pledge.card_amount - taken.amount();
    if rest > Decimal::ZERO {
        refunds::refund_from_escrow(
            conn,
            pledge.id,
            pledge.offer_id,
            Money::new(rest, taken.currency())?,
            RefundReason::DisputeLost,
            now,
        )
        .await?;
    }
    pledges::store::add_refunded(conn, pledge.id, pledge.amount.amount()).await?;
    Ok(())
}

/// `dispute.won` and `dispute.lost`: the dispute as decided (`event_catalogue::DisputeData`).
#[derive(Serialize)]
struct DisputeData {
    dispute_id: Uuid,
    pledge_id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    payment: PaymentRef,
    provider_dispute_id: String,
    amount: String,
    currency: String,
    status: DisputeStatus,
    opened_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost_entry_id: Option<Uuid>,
}

impl DisputeData {
    fn new(dispute: &Dispute, pledge: &Pledge, provider_payment_id: &str, amount: Money) -> Self {
        DisputeData {
            dispute_id: dispute.id,
            pledge_id: pledge.id,
            offer_id: pledge.offer_id,
            investor_id: pledge.investor_id,
            payment: PaymentRef::new(dispute.provider.clone(), Some(provider_payment_id)),
            provider_dispute_id: dispute.provider_dispute_id.clone(),
            amount: amount.amount_string(),
            currency: amount.currency().code().to_owned(),
            status: dispute.status,
            opened_at: dispute.opened_at,
            closed_at: dispute.closed_at,
            lost_entry_id: dispute.lost_entry_id,
        }
    }
}
