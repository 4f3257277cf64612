//! Sponsors' withdrawals: unused budget paid back to the sponsor through the provider. The money
//! leaves the budget when the withdrawal is asked for (`sponsor budget → withdrawals:<provider>`,
//! `withdrawal.requested`), in one transaction with the row and its event, so it can never be
//! issued as a cheque meanwhile; it leaves the books when the provider's signed webhook says the
//! sponsor was paid (`payout.paid` naming the withdrawal: `withdrawals → psp`, `withdrawal.paid`).
//!
//! The budget account is `no_overdraft`: concurrent withdrawals (and cheques) queue on it, and
//! the one that would overdraw it is refused by Postgres (422 `insufficient_sponsor_budget`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ListKey, Sponsor, SponsorError};
use crate::books::{EntryKind, chart};
use crate::ledger::{self, LedgerError, NewEntry};
use crate::money::{Currency, Money};
use crate::outbox::{self, EventType};
use crate::paging::PageRequest;
use crate::payments::provider::{Object, PaymentProvider};
use crate::payments::{Applied, expect_money};

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "withdrawal_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatus {
    /// Out of the budget, owed to the sponsor until the provider pays it.
    Pending,
    Paid,
}

#[derive(Clone, Debug, FromRow)]
pub struct Withdrawal {
    pub id: Uuid,
    pub provider: String,
    pub provider_withdrawal_id: String,
    pub sponsor_id: Uuid,
    pub amount: Decimal,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    pub status: WithdrawalStatus,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, provider, provider_withdrawal_id, sponsor_id, amount, currency, status, created_at, settled_at";

/// Takes `amount` out of the sponsor's budget and asks `provider` to pay it to the sponsor, in
/// the caller's transaction. The provider is in-process (its id is known at once); a networked
/// one refuses (`ProviderError::Unsupported`), as for deposits.
pub async fn request(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    sponsor: &Sponsor,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<Withdrawal, SponsorError> {
    if amount.currency() != sponsor.currency {
        return Err(SponsorError::CurrencyMismatch {
            sponsor: sponsor.id,
            budget: sponsor.currency,
            asked: amount.currency(),
        });
    }
    let id = Uuid::now_v7();
    let provider_withdrawal_id = provider.create_withdrawal(id, amount)?;
    let budget = chart::sponsor_budget(conn, sponsor.id, amount.currency(), now).await?;
    let owed = chart::withdrawals(conn, provider.name(), amount.currency(), now).await?;
    let entry = NewEntry::new(
        EntryKind::WithdrawalRequested,
        format!("withdrawal:{id}:requested"),
        now,
    )
    .metadata(serde_json::json!({ "sponsor_id": sponsor.id, "withdrawal_id": id }))
    .debit(budget, amount)
    .credit(owed, amount);
    let requested = ledger::post(conn, entry)
        .await
        .map_err(|err| match err {
            LedgerError::Overdraft => SponsorError::InsufficientBudget {
                sponsor: sponsor.id,
                amount,
            },
            other => other.into(),
        })?
        .entry
        .id;
    let withdrawal: Withdrawal = sqlx::query_as(&format!(
        "insert into withdrawals (id, provider, provider_withdrawal_id, sponsor_id, amount, currency, created_at,
                                  requested_entry_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
    ))
    .bind(id)
    .bind(provider.name())
    .bind(provider_withdrawal_id)
    .bind(sponsor.id)
    .bind(amount.amount())
    .bind(amount.currency().code())
    .bind(now)
    .bind(requested)
    .fetch_one(&mut *conn)
    .await?;
    outbox::emit(
        conn,
        EventType::WithdrawalRequested,
        serde_json::json!({ "withdrawal_id": id, "sponsor_id": sponsor.id,
                            "amount": amount.amount_string(), "currency": amount.currency() }),
        now,
    )
    .await?;
    Ok(withdrawal)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Withdrawal>> {
    sqlx::query_as(&format!("select {COLUMNS} from withdrawals where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A sponsor's withdrawals, newest first, those in `status` when given, a page at a time.
pub(crate) async fn of_sponsor(
    conn: &mut PgConnection,
    sponsor: Uuid,
    status: Option<WithdrawalStatus>,
    page: &PageRequest<ListKey>,
) -> sqlx::Result<Vec<Withdrawal>> {
    let mut q = QueryBuilder::new(format!("select {COLUMNS} from withdrawals where sponsor_id = "));
    q.push_bind(sponsor);
    if let Some(status) = status {
        q.push(" and status = ").push_bind(status);
    }
    crate::paging::push_newest_first(&mut q, page.after, page.fetch());
    q.build_query_as().fetch_all(conn).await
}

/// The withdrawal the provider knows as `provider_withdrawal_id`, locked when `lock`.
pub async fn find(
    conn: &mut PgConnection,
    provider: &str,
    provider_withdrawal_id: &str,
    lock: bool,
) -> sqlx::Result<Option<Withdrawal>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from withdrawals where provider = $1 and provider_withdrawal_id = $2 {}",
        if lock { "for update" } else { "" }
    ))
    .bind(provider)
    .bind(provider_withdrawal_id)
    .fetch_optional(conn)
    .await
}

/// The provider paid the sponsor: `withdrawals → psp`, for the withdrawal's exact amount (other
/// money is refused, and the event quarantined), once.
pub async fn confirm(
    conn: &mut PgConnection,
    provider: &str,
    provider_withdrawal_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, SponsorError> {
    let withdrawal = find(conn, provider, provider_withdrawal_id, true)
        .await?
        .ok_or_else(|| SponsorError::WithdrawalNotFound(provider_withdrawal_id.to_string()))?;
    expect_money(
        Object::Withdrawal,
        provider_withdrawal_id,
        withdrawal.amount,
        withdrawal.currency.code(),
        paid,
    )?;
    if withdrawal.status == WithdrawalStatus::Paid {
        return Ok(Applied::Nothing);
    }
    let amount = Money::new(withdrawal.amount, withdrawal.currency).map_err(LedgerError::from)?;
    let owed = chart::withdrawals(conn, provider, amount.currency(), now).await?;
    let psp = chart::psp(conn, provider, amount.currency(), now).await?;
    let entry = NewEntry::new(
        EntryKind::WithdrawalPaid,
        format!("withdrawal:{}:paid", withdrawal.id),
        now,
    )
    .metadata(serde_json::json!({ "sponsor_id": withdrawal.sponsor_id, "withdrawal_id": withdrawal.id }))
    .debit(owed, amount)
    .credit(psp, amount);
    let paid_entry = ledger::post(conn, entry).await?.entry.id;
    // Settled and named in one statement (`withdrawals_paid_once`; verify: `withdrawals_paid`).
    sqlx::query("update withdrawals set status = 'paid', settled_at = $2, paid_entry_id = $3 where id = $1")
        .bind(withdrawal.id)
        .bind(now)
        .bind(paid_entry)
        .execute(&mut *conn)
        .await?;
    outbox::emit(
        conn,
        EventType::WithdrawalPaid,
        serde_json::json!({ "withdrawal_id": withdrawal.id, "sponsor_id": withdrawal.sponsor_id,
                            "amount": amount.amount_string(), "currency": amount.currency() }),
        now,
    )
    .await?;
    Ok(Applied::Done)
}
