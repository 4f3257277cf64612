//! Disputes of card payments (migration 0036): the rows, opened and closed as a provider says.
//! What a lost dispute does to a round's money is `rounds::disputes`'s.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::card::Payment;

/// Where a dispute stands: open until the provider says how the bank decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, ToSchema)]
#[sqlx(type_name = "dispute_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    /// The bank is looking at it; no money has moved.
    Open,
    /// Decided for the platform (or closed without a chargeback): no money moved.
    Won,
    /// Decided for the investor: the bank took the money back (a chargeback).
    Lost,
}

/// A provider's dispute of one of our card payments.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct Dispute {
    pub id: Uuid,
    pub provider: String,
    pub provider_dispute_id: String,
    pub amount: Decimal,
    pub status: DisputeStatus,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The entry that booked the chargeback, once lost.
    pub lost_entry_id: Option<Uuid>,
}

const COLUMNS: &str = "id, provider, provider_dispute_id, amount, status, opened_at, closed_at, lost_entry_id";

/// The dispute a provider's events name by `provider_dispute_id`, locked if asked.
pub(crate) async fn find(
    conn: &mut PgConnection,
    provider: &str,
    provider_dispute_id: &str,
    lock: bool,
) -> sqlx::Result<Option<Dispute>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from disputes where provider = $1 and provider_dispute_id = $2 {}",
        if lock { "for update" } else { "" }
    ))
    .bind(provider)
    .bind(provider_dispute_id)
    .fetch_optional(conn)
    .await
}

/// The dispute of a payment, if it has one (a payment has at most one: `disputes_one_per_payment`).
pub(crate) async fn of_payment(conn: &mut PgConnection, payment_id: Uuid) -> sqlx::Result<Option<Dispute>> {
    sqlx::query_as(&format!("select {COLUMNS} from disputes where payment_id = $1"))
        .bind(payment_id)
        .fetch_optional(conn)
        .await
}

/// Opens a dispute of `payment` for `amount` of it.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    payment: &Payment,
    provider_dispute_id: &str,
    amount: Decimal,
    now: DateTime<Utc>,
) -> sqlx::Result<Dispute> {
    sqlx::query_as(&format!(
        "insert into disputes (id, payment_id, provider, provider_dispute_id, amount, currency, opened_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(payment.id)
    .bind(&payment.provider)
    .bind(provider_dispute_id)
    .bind(amount)
    .bind(&payment.currency)
    .bind(now)
    .fetch_one(conn)
    .await
}

/// Closes an open dispute: `won`, or `lost` with the entry that booked the chargeback (Postgres
/// refuses either without the other: `disputes_lost_booked`).
pub(crate) async fn close(
    conn: &mut PgConnection,
    id: Uuid,
    status: DisputeStatus,
    lost_entry: Option<Uuid>,
    now: DateTime<Utc>,
) -> sqlx::Result<Dispute> {
    sqlx::query_as(&format!(
        "update disputes set status = $2, closed_at = $3, lost_entry_id = $4 where id = $1 and status = 'open'
         returning {COLUMNS}"
    ))
    .bind(id)
    .bind(status)
    .bind(now)
    .bind(lost_entry)
    .fetch_one(conn)
    .await
}
