//! Refunds: money owed back to a card, booked `escrow → refunds` (or `psp → refunds` for money
//! that arrived after its pledge ended) when owed, and `refunds → psp` when the provider confirms;
//! or cancelled when a lost dispute gave the money back through the bank instead.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::calls::Call;
use super::card::payment_of_pledge;
use super::provider::{Object, PaymentRef};
use super::{Applied, PaymentError, expect_money, unknown};
use crate::books::{EntryKind, chart};
use crate::ledger::{self, NewEntry};
use crate::money::{Currency, Money};
use crate::outbox::{self, EventType};

/// Where a refund stands: owed until the provider confirms the money reached the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "refund_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Owed: asked of the provider, not yet confirmed.
    Pending,
    /// The provider confirmed the money is back on the card.
    Succeeded,
    /// Never to be paid: a lost dispute of the pledge's payment gave this money back to the card
    /// through the bank (docs/disputes.md). What it owed beyond the dispute is owed by a new
    /// refund.
    Cancelled,
}

/// Why card money is given back: a stable word, stored as written here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// The investor revoked the pledge within its reflection period.
    Revoked,
    /// The operator cancelled the round.
    OfferCancelled,
    /// The round closed below its minimum target.
    OfferFailed,
    /// The round was oversubscribed: the part of the pledge its allocation did not take.
    NotAllocated,
    /// The card payment arrived after the pledge had ended (its window lapsed, or it was
    /// revoked or cancelled while unpaid).
    PaymentAfterPledgeEnded,
    /// The card payment succeeded after the provider had declined it and the pledge had ended.
    PaymentAfterFailure,
    /// A lost dispute took back part of a funded pledge's card payment and ended the pledge: the
    /// rest of the payment.
    DisputeLost,
    /// The offer's KIIS was amended and the investor did not reconfirm the pledge in time
    /// (docs/investor-protection.md).
    NotReconfirmed,
}

impl RefundReason {
    const ALL: [RefundReason; 8] = [
        RefundReason::Revoked,
        RefundReason::OfferCancelled,
        RefundReason::OfferFailed,
        RefundReason::NotAllocated,
        RefundReason::PaymentAfterPledgeEnded,
        RefundReason::PaymentAfterFailure,
        RefundReason::DisputeLost,
        RefundReason::NotReconfirmed,
    ];

    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::Revoked => "revoked",
            RefundReason::OfferCancelled => "offer_cancelled",
            RefundReason::OfferFailed => "offer_failed",
            RefundReason::NotAllocated => "not_allocated",
            RefundReason::PaymentAfterPledgeEnded => "payment_after_pledge_ended",
            RefundReason::PaymentAfterFailure => "payment_after_failure",
            RefundReason::DisputeLost => "dispute_lost",
            RefundReason::NotReconfirmed => "not_reconfirmed",
        }
    }

    fn parse(word: &str) -> Option<RefundReason> {
        RefundReason::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

/// A refund: card money of one pledge owed back, and whether the provider has paid it.
#[derive(Clone, Debug)]
pub(crate) struct Refund {
    pub id: Uuid,
    pub pledge_id: Uuid,
    pub offer_id: Uuid,
    pub amount: Money,
    pub status: RefundStatus,
    pub reason: RefundReason,
    pub provider: String,
    /// None while a networked provider has not answered the call that creates it.
    pub provider_refund_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the provider paid it, or when a lost dispute cancelled it.
    pub settled_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RefundRow {
    id: Uuid,
    pledge_id: Uuid,
    offer_id: Uuid,
    amount: Decimal,
    currency: String,
    status: RefundStatus,
    reason: String,
    provider: String,
    provider_refund_id: Option<String>,
    created_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, pledge_id, offer_id, amount, currency, status, reason, provider, provider_refund_id, created_at, settled_at";

impl From<RefundRow> for Refund {
    fn from(r: RefundRow) -> Refund {
        let currency = Currency::parse(&r.currency).expect("refunds hold valid currencies");
        Refund {
            id: r.id,
            pledge_id: r.pledge_id,
            offer_id: r.offer_id,
            amount: Money::new(r.amount, currency).expect("refunds hold valid amounts"),
            status: r.status,
            reason: RefundReason::parse(&r.reason).expect("refunds hold the reasons RefundReason names"),
            provider: r.provider,
            provider_refund_id: r.provider_refund_id,
            created_at: r.created_at,
            settled_at: r.settled_at,
        }
    }
}

/// A refund as the API and the `refund.succeeded` event show it.
#[derive(Serialize, ToSchema)]
pub(crate) struct RefundView {
    id: Uuid,
    /// The pledge whose money this is; a pledge lists its refunds' ids in `refunds`.
    pledge_id: Uuid,
    offer_id: Uuid,
    /// Card money given back, with the currency's decimals.
    #[schema(example = "250.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    status: RefundStatus,
    reason: RefundReason,
    /// The refund at its provider: `payment_id` is the provider's id for the refund.
    payment: PaymentRef,
    created_at: DateTime<Utc>,
    /// When the provider confirmed it; absent unless succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    succeeded_at: Option<DateTime<Utc>>,
    /// When a lost dispute cancelled it; absent unless cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_at: Option<DateTime<Utc>>,
}

impl From<Refund> for RefundView {
    fn from(r: Refund) -> RefundView {
        RefundView {
            id: r.id,
            pledge_id: r.pledge_id,
            offer_id: r.offer_id,
            amount: r.amount.amount_string(),
            currency: r.amount.currency().code().to_string(),
            status: r.status,
            reason: r.reason,
            payment: PaymentRef::new(r.provider, r.provider_refund_id),
            created_at: r.created_at,
            succeeded_at: r.settled_at.filter(|_| r.status == RefundStatus::Succeeded),
            cancelled_at: r.settled_at.filter(|_| r.status == RefundStatus::Cancelled),
        }
    }
}

/// Which refunds a list shows; `None` is any.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RefundFilter {
    pub offer_id: Option<Uuid>,
    pub pledge_id: Option<Uuid>,
    pub status: Option<RefundStatus>,
}

pub(crate) async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Refund>> {
    let row: Option<RefundRow> = sqlx::query_as(&format!("select {COLUMNS} from refunds where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Refund::from))
}

/// Up to `fetch` refunds matching `filter`, newest first (`created_at`, then `id`, descending),
/// after the keyset position `after`. Only the filters given are written into the statement, so
/// each combination gets a plan of its own over the index that serves it (migration 0027).
pub(crate) async fn list(
    conn: &mut PgConnection,
    filter: RefundFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    fetch: i64,
) -> sqlx::Result<Vec<Refund>> {
    let mut query = QueryBuilder::<Postgres>::new(format!("select {COLUMNS} from refunds where true"));
    if let Some(offer_id) = filter.offer_id {
        query.push(" and offer_id = ").push_bind(offer_id);
    }
    if let Some(pledge_id) = filter.pledge_id {
        query.push(" and pledge_id = ").push_bind(pledge_id);
    }
    if let Some(status) = filter.status {
        query.push(" and status = ").push_bind(status);
    }
    if let Some((created_at, id)) = after {
        query
            .push(" and (created_at, id) < (")
            .push_bind(created_at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    query.push(" order by created_at desc, id desc limit ").push_bind(fetch);
    let rows: Vec<RefundRow> = query.build_query_as().fetch_all(conn).await?;
    Ok(rows.into_iter().map(Refund::from).collect())
}

/// The ids of these pledges' refunds, oldest first, by pledge; pledges without any are left out.
pub(crate) async fn ids_by_pledge(
    conn: &mut PgConnection,
    pledge_ids: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, Vec<Uuid>>> {
    let rows: Vec<(Uuid, Vec<Uuid>)> = sqlx::query_as(
        "select pledge_id, array_agg(id order by created_at, id) from refunds
          where pledge_id = any($1) group by pledge_id",
    )
    .bind(pledge_ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A refund to write: its id, its pledge (and the pledge's offer) and the amount back to the card.
pub(crate) struct NewRefund {
    pub(crate) id: Uuid,
    pub(crate) pledge_id: Uuid,
    pub(crate) offer_id: Uuid,
    pub(crate) amount: Decimal,
}

/// Writes refunds to one provider in one statement, each naming the entry that owes it: named
/// at once by an in-process provider, or queued to a networked one (`super::calls`), each
/// against its pledge's payment there.
pub(crate) async fn insert_refunds(
    conn: &mut PgConnection,
    provider: &str,
    currency: Currency,
    refunds: &[NewRefund],
    reason: RefundReason,
    owed_entry: Uuid,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
    let adapter = super::providers::of_row(provider);
    let provider_ids = if adapter.networked() {
        let pledges: Vec<Uuid> = refunds.iter().map(|r| r.pledge_id).collect();
        let paid = super::card::payments_of_pledges(conn, &pledges).await?;
        let calls = refunds
            .iter()
            .map(|r| Call::CreateRefund {
                refund_id: r.id,
                pledge_id: r.pledge_id,
                // Only captured money is refunded, and a captured payment is named
                // (`payments_settled_named`).
                payment: paid
                    .get(&r.pledge_id)
                    .and_then(|p| p.provider_payment_id.clone())
                    .expect("a refunded payment was captured, so named"),
                amount: r.amount,
                currency: currency.code().to_owned(),
            })
            .collect::<Vec<_>>();
        super::calls::enqueue_many(conn, provider, &calls, now).await?;
        vec![None; refunds.len()]
    } else {
        refunds
            .iter()
            .map(|r| Ok(Some(adapter.create_refund(r.id, Money::new(r.amount, currency)?)?)))
            .collect::<Result<Vec<Option<String>>, PaymentError>>()?
    };
    sqlx::query(
        "insert into refunds (id, provider, provider_refund_id, pledge_id, amount, currency, reason, owed_entry_id,
                              created_at, offer_id)
         select r.id, $2, r.provider_refund_id, r.pledge_id, r.amount, $5, $6, $7, $8, r.offer_id
           from unnest($1::uuid[], $3::text[], $4::uuid[], $9::numeric[], $10::uuid[])
                as r(id, provider_refund_id, pledge_id, amount, offer_id)",
    )
    .bind(refunds.iter().map(|r| r.id).collect::<Vec<Uuid>>())
    .bind(provider)
    .bind(&provider_ids)
    .bind(refunds.iter().map(|r| r.pledge_id).collect::<Vec<Uuid>>())
    .bind(currency.code())
    .bind(reason.as_str())
    .bind(owed_entry)
    .bind(now)
    .bind(refunds.iter().map(|r| r.amount).collect::<Vec<Decimal>>())
    .bind(refunds.iter().map(|r| r.offer_id).collect::<Vec<Uuid>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a pledge's money back from escrow: `escrow → refunds`, and a refund awaiting the
/// provider's confirmation.
pub(crate) async fn refund_from_escrow(
    conn: &mut PgConnection,
    pledge_id: Uuid,
    offer_id: Uuid,
    amount: Money,
    reason: RefundReason,
    now: DateTime<Utc>,
) -> Result<Uuid, PaymentError> {
    let payment = payment_of_pledge(conn, pledge_id)
        .await?
        .expect("a funded pledge has a payment");
    let refund = Uuid::now_v7();
    let escrow = chart::offer_escrow(conn, offer_id, amount.currency(), now).await?;
    let refunds = chart::refunds(conn, &payment.provider, amount.currency(), now).await?;
    let entry = NewEntry::new(EntryKind::PledgeRefund, format!("refund:{refund}:owed"), now)
        .metadata(serde_json::json!({ "pledge_id": pledge_id, "offer_id": offer_id, "reason": reason.as_str() }))
        .debit(escrow, amount)
        .credit(refunds, amount);
    let owed = ledger::post(conn, entry).await?.entry.id;
    let new = NewRefund {
        id: refund,
        pledge_id,
        offer_id,
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
pub(crate) async fn refund_many_from_escrow(
    conn: &mut PgConnection,
    offer_id: Uuid,
    currency: Currency,
    parts: &[(Uuid, Decimal)],
    reason: RefundReason,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
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
            offer_id,
            amount,
        });
    }
    let escrow = chart::offer_escrow(conn, offer_id, currency, now).await?;
    for (provider, refunds) in by_provider {
        let total = Money::new(refunds.iter().map(|r| r.amount).sum(), currency)?;
        let to = chart::refunds(conn, provider, currency, now).await?;
        let entry = NewEntry::new(
            EntryKind::PledgeRefund,
            format!("offer:{offer_id}:refunds:{}:owed", refunds[0].id),
            now,
        )
        .metadata(serde_json::json!({ "offer_id": offer_id, "reason": reason.as_str(), "refunds": refunds.len() }))
        .debit(escrow, total)
        .credit(to, total);
        let owed = ledger::post(conn, entry).await?.entry.id;
        insert_refunds(conn, provider, currency, &refunds, reason, owed, now).await?;
    }
    Ok(())
}

/// The provider gave a refund back to the card: `refunds → psp`, for the refund's exact amount,
/// and a `refund.succeeded` event whose data is the refund.
pub(crate) async fn confirm_refund(
    conn: &mut PgConnection,
    provider: &str,
    provider_refund_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, PaymentError> {
    let row: Option<(Uuid, Decimal, String, String)> = sqlx::query_as(
        "select id, amount, currency, status::text from refunds where provider = $1 and provider_refund_id = $2 for update",
    )
    .bind(provider)
    .bind(provider_refund_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (id, amount, currency, status) = row.ok_or_else(|| unknown("refund", provider_refund_id))?;
    expect_money(Object::Refund, provider_refund_id, amount, &currency, paid)?;
    if status == "cancelled" {
        // The bank gave this money back already (a lost dispute): paid again, it left the
        // provider twice, which an operator must see.
        return Err(PaymentError::RefundCancelled {
            provider_id: provider_refund_id.to_owned(),
        });
    }
    if status != "pending" {
        return Ok(Applied::Nothing);
    }
    let amount = Money::new(amount, Currency::parse(&currency)?)?;
    let refunds = chart::refunds(conn, provider, amount.currency(), now).await?;
    let psp = chart::psp(conn, provider, amount.currency(), now).await?;
    let entry = NewEntry::new(EntryKind::RefundPaid, format!("refund:{id}:paid"), now)
        .metadata(serde_json::json!({ "refund_id": id, "provider_refund_id": provider_refund_id }))
        .debit(refunds, amount)
        .credit(psp, amount);
    let paid = ledger::post(conn, entry).await?.entry.id;
    // Settled and named in one statement: Postgres refuses either without the other
    // (`refunds_paid_once`), and verify checks the entry (`refunds_paid`).
    let settled: RefundRow = sqlx::query_as(&format!(
        "update refunds set status = 'succeeded', settled_at = $2, paid_entry_id = $3 where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(now)
    .bind(paid)
    .fetch_one(&mut *conn)
    .await?;
    let data = serde_json::to_value(RefundView::from(Refund::from(settled))).expect("a refund serialises");
    outbox::emit(conn, EventType::RefundSucceeded, data, now).await?;
    Ok(Applied::Done)
}

/// A pledge's refunds still owed (pending), oldest first, locked: what a lost dispute of its
/// payment may cancel.
pub(crate) async fn owed_to_pledge_locked(conn: &mut PgConnection, pledge_id: Uuid) -> sqlx::Result<Vec<Refund>> {
    let rows: Vec<RefundRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from refunds where pledge_id = $1 and status = 'pending' order by created_at, id for update"
    ))
    .bind(pledge_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Refund::from).collect())
}

/// A lost dispute's chargeback gave the card back `taken`: the refunds `owed` (oldest first, of
/// one pledge, locked) that money stands in for are cancelled, naming the dispute, each with the
/// call that would create it at a networked provider if it was not made yet, so they are never
/// paid; what one of them owed beyond `taken` is owed again by a new refund (its reason, the
/// entry that owed it). Returns how much of `taken` they covered; the books are the caller's.
pub(crate) async fn cancel_for_dispute(
    conn: &mut PgConnection,
    owed: &[Refund],
    taken: Decimal,
    dispute_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Decimal, PaymentError> {
    let mut left = taken;
    let mut cancelled = Vec::new();
    let mut again = Vec::new();
    for refund in owed {
        if left <= Decimal::ZERO {
            break;
        }
        let covered = left.min(refund.amount.amount());
        left -= covered;
        cancelled.push(refund.id);
        if covered < refund.amount.amount() {
            again.push((refund, refund.amount.amount() - covered));
        }
    }
    if cancelled.is_empty() {
        return Ok(Decimal::ZERO);
    }
    sqlx::query(
        "update refunds set status = 'cancelled', settled_at = $2, cancelled_by_dispute_id = $3
          where id = any($1) and status = 'pending'",
    )
    .bind(&cancelled)
    .bind(now)
    .bind(dispute_id)
    .execute(&mut *conn)
    .await?;
    super::calls::cancel_unmade(conn, &cancelled, now).await?;
    for (refund, rest) in again {
        let owed_entry: Option<Uuid> = sqlx::query_scalar("select owed_entry_id from refunds where id = $1")
            .bind(refund.id)
            .fetch_one(&mut *conn)
            .await?;
        let owed_entry = owed_entry.expect("refunds name the entry that owed them (migration 0010)");
        let new = NewRefund {
            id: Uuid::now_v7(),
            pledge_id: refund.pledge_id,
            offer_id: refund.offer_id,
            amount: rest,
        };
        let currency = refund.amount.currency();
        insert_refunds(conn, &refund.provider, currency, &[new], refund.reason, owed_entry, now).await?;
    }
    Ok(taken - left)
}
