//! Card payments for pledges: asked of a provider, stored, and settled when the provider
//! confirms (the round's side of a confirmation is `rounds::funding`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PaymentError;
use super::calls::{self, BankInstructions, Call, Method, Payer};
use super::payee::Payee;
use super::provider::PaymentProvider;
use crate::money::Money;

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
    /// None while a networked provider has not answered the call that creates it.
    pub provider_payment_id: Option<String>,
    pub pledge_id: Uuid,
    pub amount: Decimal,
    pub currency: String,
    pub status: PaymentStatus,
    /// When the provider first told us the investor disputed it (migration 0031); the dispute
    /// itself, and its money, is `super::disputes`'s.
    pub disputed_at: Option<DateTime<Utc>>,
    pub method: Method,
    /// For a bank transfer, once the provider gave them: where the investor wires the money.
    pub instructions: Option<sqlx::types::Json<BankInstructions>>,
}

/// Whose payment it is: a pledge in an offer of a project, by an investor.
pub(crate) struct PaymentOf {
    pub pledge_id: Uuid,
    pub offer_id: Uuid,
    pub project_id: Uuid,
    pub payer: Payer,
    pub method: Method,
    /// The project's legal identity, for a provider that needs it ([`PaymentProvider::needs_payee`]).
    pub payee: Option<Payee>,
}

/// Asks `provider` for a card payment of a pledge's card part: named at once by an in-process
/// provider, or queued for a networked one (`super::calls`), to be named when it answers.
pub(crate) async fn create_payment(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    of: PaymentOf,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<Payment, PaymentError> {
    let id = Uuid::now_v7();
    let PaymentOf {
        pledge_id,
        offer_id,
        project_id,
        payer,
        method,
        payee,
    } = of;
    if method == Method::BankTransfer && !provider.takes_bank_transfers() {
        return Err(PaymentError::Unavailable);
    }
    let provider_payment_id = if provider.networked() {
        let call = Call::CreatePayment {
            payment_id: id,
            pledge_id,
            offer_id,
            project_id,
            payer,
            method,
            amount: amount.amount(),
            currency: amount.currency().code().to_owned(),
            payee: payee.map(Box::new),
        };
        calls::enqueue(conn, provider.name(), &call, now).await?;
        None
    } else {
        Some(provider.create_payment(id, amount)?)
    };
    Ok(sqlx::query_as(&format!(
        "insert into payments (id, provider, provider_payment_id, pledge_id, amount, currency, created_at, method)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         returning {PAYMENT_COLUMNS}"
    ))
    .bind(id)
    .bind(provider.name())
    .bind(provider_payment_id)
    .bind(pledge_id)
    .bind(amount.amount())
    .bind(amount.currency().code())
    .bind(now)
    .bind(method.as_str())
    .fetch_one(conn)
    .await?)
}

/// [`create_payment`] for many pledges in one statement (the batcher's, whose provider is
/// in-process), in the order given.
pub(crate) async fn create_payments(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    requests: &[(Uuid, Money, DateTime<Utc>)],
) -> Result<Vec<Payment>, PaymentError> {
    debug_assert!(!provider.networked(), "networked providers take the single-pledge path");
    let ids: Vec<Uuid> = requests.iter().map(|_| Uuid::now_v7()).collect();
    let references = ids
        .iter()
        .zip(requests)
        .map(|(id, (_, amount, _))| provider.create_payment(*id, *amount))
        .collect::<Result<Vec<String>, _>>()?;
    let rows: Vec<Payment> = sqlx::query_as(&format!(
        "insert into payments (id, provider, provider_payment_id, pledge_id, amount, currency, created_at)
         select u.id, $2, u.reference, u.pledge_id, u.amount, u.currency, u.created_at
           from unnest($1::uuid[], $3::text[], $4::uuid[], $5::numeric[], $6::text[], $7::timestamptz[])
                as u(id, reference, pledge_id, amount, currency, created_at)
         returning {PAYMENT_COLUMNS}"
    ))
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

pub(crate) const PAYMENT_COLUMNS: &str =
    "id, provider, provider_payment_id, pledge_id, amount, currency, status, disputed_at, method, instructions";

pub(crate) async fn payment(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as(&format!("select {PAYMENT_COLUMNS} from payments where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The provider gave a bank-transfer payment's instructions: kept to show the investor again.
pub(crate) async fn set_instructions(
    conn: &mut PgConnection,
    id: Uuid,
    instructions: &BankInstructions,
) -> sqlx::Result<()> {
    sqlx::query("update payments set instructions = $2 where id = $1 and method = 'bank_transfer'")
        .bind(id)
        .bind(sqlx::types::Json(instructions))
        .execute(conn)
        .await?;
    Ok(())
}

/// [`payment_of_pledge`], locked for the transaction.
pub(crate) async fn payment_of_pledge_locked(
    conn: &mut PgConnection,
    pledge_id: Uuid,
) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS} from payments where pledge_id = $1 for update"
    ))
    .bind(pledge_id)
    .fetch_optional(conn)
    .await
}

pub(crate) async fn payment_of_pledge(conn: &mut PgConnection, pledge_id: Uuid) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as(&format!("select {PAYMENT_COLUMNS} from payments where pledge_id = $1"))
        .bind(pledge_id)
        .fetch_optional(conn)
        .await
}

/// The payments of many pledges in one statement (a page of pledges), by pledge.
pub(crate) async fn payments_of_pledges(
    conn: &mut PgConnection,
    pledge_ids: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, Payment>> {
    let payments: Vec<Payment> = sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS} from payments where pledge_id = any($1)"
    ))
    .bind(pledge_ids)
    .fetch_all(conn)
    .await?;
    Ok(payments.into_iter().map(|p| (p.pledge_id, p)).collect())
}

pub(crate) async fn find_payment(
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

/// The payment a provider's event names; one we do not know is refused, so the event is
/// quarantined.
pub(crate) async fn named_payment(
    conn: &mut PgConnection,
    provider: &str,
    provider_id: &str,
    lock: bool,
) -> Result<Payment, PaymentError> {
    find_payment(conn, provider, provider_id, lock)
        .await?
        .ok_or_else(|| super::unknown("payment", provider_id))
}

pub(crate) async fn set_payment_status(
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
pub(crate) async fn capture(conn: &mut PgConnection, id: Uuid, entry: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query("update payments set status = 'succeeded', settled_at = $3, captured_entry_id = $2 where id = $1")
        .bind(id)
        .bind(entry)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the provider's dispute of a captured payment, for `amount` of it, the first time only:
/// `false` when a dispute was recorded before (the first one stands).
pub(crate) async fn record_dispute(
    conn: &mut PgConnection,
    id: Uuid,
    amount: Decimal,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let recorded =
        sqlx::query("update payments set disputed_at = $3, disputed_amount = $2 where id = $1 and disputed_at is null")
            .bind(id)
            .bind(amount)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected();
    Ok(recorded == 1)
}
