//! Refunds: money owed back to a card, booked `escrow → refunds` (or `psp → refunds` for money
//! that arrived after its pledge ended) when owed, and `refunds → psp` when the provider confirms.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::card::payment_of_pledge;
use super::provider::Object;
use super::{Applied, PaymentError, expect_money, unknown};
use crate::books::{EntryKind, chart};
use crate::ledger::{self, NewEntry};
use crate::money::{Currency, Money};

/// A refund to write: its id, its pledge and the amount back to the card.
pub(crate) struct NewRefund {
    pub(crate) id: Uuid,
    pub(crate) pledge_id: Uuid,
    pub(crate) amount: Decimal,
}

/// Writes refunds to one provider in one statement, each naming the entry that owes it.
pub(crate) async fn insert_refunds(
    conn: &mut PgConnection,
    provider: &str,
    currency: Currency,
    refunds: &[NewRefund],
    reason: &str,
    owed_entry: Uuid,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
    let adapter = super::providers::of_row(provider);
    let provider_ids = refunds
        .iter()
        .map(|r| Ok(adapter.create_refund(r.id, Money::new(r.amount, currency)?)?))
        .collect::<Result<Vec<String>, PaymentError>>()?;
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
pub(crate) async fn refund_from_escrow(
    conn: &mut PgConnection,
    pledge_id: Uuid,
    offer_id: Uuid,
    amount: Money,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, PaymentError> {
    let payment = payment_of_pledge(conn, pledge_id)
        .await?
        .expect("a funded pledge has a payment");
    let refund = Uuid::now_v7();
    let escrow = chart::offer_escrow(conn, offer_id, amount.currency(), now).await?;
    let refunds = chart::refunds(conn, &payment.provider, amount.currency(), now).await?;
    let entry = NewEntry::new(EntryKind::PledgeRefund, format!("refund:{refund}:owed"), now)
        .metadata(serde_json::json!({ "pledge_id": pledge_id, "offer_id": offer_id, "reason": reason }))
        .debit(escrow, amount)
        .credit(refunds, amount);
    let owed = ledger::post(conn, entry).await?.entry.id;
    let new = NewRefund {
        id: refund,
        pledge_id,
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
    reason: &str,
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
        .metadata(serde_json::json!({ "offer_id": offer_id, "reason": reason, "refunds": refunds.len() }))
        .debit(escrow, total)
        .credit(to, total);
        let owed = ledger::post(conn, entry).await?.entry.id;
        insert_refunds(conn, provider, currency, &refunds, reason, owed, now).await?;
    }
    Ok(())
}

/// The provider gave a refund back to the card: `refunds → psp`, for the refund's exact amount.
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
    sqlx::query("update refunds set status = 'succeeded', settled_at = $2, paid_entry_id = $3 where id = $1")
        .bind(id)
        .bind(now)
        .bind(paid)
        .execute(&mut *conn)
        .await?;
    Ok(Applied::Done)
}
