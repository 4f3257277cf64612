//! Sponsors' deposits: requested from the payment provider, credited `psp → sponsor budget`
//! only when its signed webhook confirms them. A deposit is money paid to us, so providers
//! confirm it like a card payment (`payment.succeeded`, `payment_intent.succeeded`); the
//! webhook handler finds it by its provider id.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ListKey, Sponsor, SponsorError};
use crate::books::{EntryKind, chart};
use crate::ledger::{self, NewEntry};
use crate::money::{Currency, Money};
use crate::outbox::{self, EventType};
use crate::paging::PageRequest;
use crate::payments::Applied;
use crate::payments::provider::PaymentProvider;

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "deposit_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DepositStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, FromRow)]
pub struct Deposit {
    pub id: Uuid,
    pub provider: String,
    pub provider_deposit_id: String,
    pub sponsor_id: Uuid,
    pub amount: Decimal,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    pub status: DepositStatus,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, provider, provider_deposit_id, sponsor_id, amount, currency, status, created_at";

/// Asks `provider` for a deposit into the sponsor's budget. Nothing is credited yet.
pub async fn request(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    sponsor: &Sponsor,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<Deposit, SponsorError> {
    if amount.currency() != sponsor.currency {
        return Err(SponsorError::CurrencyMismatch {
            sponsor: sponsor.id,
            budget: sponsor.currency,
            asked: amount.currency(),
        });
    }
    let id = Uuid::now_v7();
    let provider_deposit_id = provider.create_deposit(id, amount)?;
    Ok(sqlx::query_as(&format!(
        "insert into deposits (id, provider, provider_deposit_id, sponsor_id, amount, currency, created_at)
         values ($1, $2, $3, $4, $5, $6, $7) returning {COLUMNS}"
    ))
    .bind(id)
    .bind(provider.name())
    .bind(provider_deposit_id)
    .bind(sponsor.id)
    .bind(amount.amount())
    .bind(amount.currency().code())
    .bind(now)
    .fetch_one(conn)
    .await?)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Deposit>> {
    sqlx::query_as(&format!("select {COLUMNS} from deposits where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A sponsor's deposits, newest first, those in `status` when given, a page at a time.
pub(crate) async fn of_sponsor(
    conn: &mut PgConnection,
    sponsor: Uuid,
    status: Option<DepositStatus>,
    page: &PageRequest<ListKey>,
) -> sqlx::Result<Vec<Deposit>> {
    let mut q = QueryBuilder::new(format!("select {COLUMNS} from deposits where sponsor_id = "));
    q.push_bind(sponsor);
    if let Some(status) = status {
        q.push(" and status = ").push_bind(status);
    }
    crate::paging::push_newest_first(&mut q, page.after, page.fetch());
    q.build_query_as().fetch_all(conn).await
}

/// The deposit the provider knows as `provider_deposit_id`, locked when `lock`.
pub async fn find(
    conn: &mut PgConnection,
    provider: &str,
    provider_deposit_id: &str,
    lock: bool,
) -> sqlx::Result<Option<Deposit>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from deposits where provider = $1 and provider_deposit_id = $2 {}",
        if lock { "for update" } else { "" }
    ))
    .bind(provider)
    .bind(provider_deposit_id)
    .fetch_optional(conn)
    .await
}

/// The provider received the deposit: the budget grows, `psp → sponsor budget`, once, even
/// after the provider had declared the deposit failed.
pub async fn confirm(
    conn: &mut PgConnection,
    provider: &str,
    provider_deposit_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, SponsorError> {
    let deposit = find(conn, provider, provider_deposit_id, true)
        .await?
        .ok_or_else(|| SponsorError::DepositNotFound(provider_deposit_id.to_string()))?;
    if paid.amount() != deposit.amount || paid.currency() != deposit.currency {
        return Err(SponsorError::DepositMismatch {
            deposit: provider_deposit_id.to_string(),
            expected: deposit.amount,
            currency: deposit.currency,
            paid,
        });
    }
    if deposit.status == DepositStatus::Succeeded {
        return Ok(Applied::Nothing);
    }
    // Money captured is always booked (PRODUCT.md section 10): a success after a failure (a
    // provider retrying a declined payment) credits the budget too, which can always take it.
    let psp = chart::psp(conn, provider, paid.currency(), now).await?;
    let budget = chart::sponsor_budget(conn, deposit.sponsor_id, paid.currency(), now).await?;
    let entry = NewEntry::new(
        EntryKind::DepositConfirmed,
        format!("deposit:{}:captured", deposit.id),
        now,
    )
    .metadata(
        serde_json::json!({ "sponsor_id": deposit.sponsor_id, "deposit_id": deposit.id,
                                      "provider_deposit_id": provider_deposit_id,
                                      "after_failure": deposit.status == DepositStatus::Failed }),
    )
    .debit(psp, paid)
    .credit(budget, paid);
    let captured = ledger::post(conn, entry).await?.entry.id;
    set_status(conn, deposit.id, DepositStatus::Succeeded, Some(captured), now).await?;
    outbox::emit(
        conn,
        EventType::DepositSucceeded,
        serde_json::json!({ "deposit_id": deposit.id, "sponsor_id": deposit.sponsor_id,
                            "amount": paid.amount_string(), "currency": paid.currency() }),
        now,
    )
    .await?;
    Ok(Applied::Done)
}

/// The provider declined the deposit: nothing was ever credited. A success the provider sends
/// after all is still credited ([`confirm`]).
pub async fn fail(
    conn: &mut PgConnection,
    provider: &str,
    provider_deposit_id: &str,
    now: DateTime<Utc>,
) -> Result<Applied, SponsorError> {
    let deposit = find(conn, provider, provider_deposit_id, true)
        .await?
        .ok_or_else(|| SponsorError::DepositNotFound(provider_deposit_id.to_string()))?;
    if deposit.status != DepositStatus::Pending {
        return Ok(Applied::Nothing);
    }
    set_status(conn, deposit.id, DepositStatus::Failed, None, now).await?;
    Ok(Applied::Done)
}

/// Settles a deposit; a succeeded one names the entry that captured it, in the same statement
/// (`deposits_captured_once`; verify: `deposits_captured`).
async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: DepositStatus,
    captured_entry: Option<Uuid>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("update deposits set status = $2, settled_at = $3, captured_entry_id = $4 where id = $1")
        .bind(id)
        .bind(status)
        .bind(now)
        .bind(captured_entry)
        .execute(conn)
        .await?;
    Ok(())
}
