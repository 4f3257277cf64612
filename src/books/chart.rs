//! The chart of accounts (PRODUCT.md section 3): the ledger accounts domain modules post to.
//! Accounts are opened on first use; opening is idempotent, so concurrent first uses agree.
//!
//! Codes shared across offers carry their currency (`psp:sandbox:eur`), because a code names one
//! account and an account has one currency; per-offer accounts have the offer's currency.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ledger::{self, AccountCode, AccountKind, LedgerError, NewAccount};
use crate::money::Currency;

async fn open(
    conn: &mut PgConnection,
    code: String,
    currency: Currency,
    kind: AccountKind,
    now: DateTime<Utc>,
) -> Result<Uuid, LedgerError> {
    // Every domain account is `no_overdraft`: none of them may ever hold less than nothing.
    let new = NewAccount {
        code: AccountCode::parse(code)?,
        currency,
        kind,
        no_overdraft: true,
    };
    Ok(ledger::open_account(conn, &new, now).await?.0.id)
}

fn suffix(currency: Currency) -> String {
    currency.code().to_ascii_lowercase()
}

type Opened = Result<Uuid, LedgerError>;

/// Money held at the payment provider (segregated client money).
pub async fn psp(conn: &mut PgConnection, provider: &str, currency: Currency, now: DateTime<Utc>) -> Opened {
    let code = format!("psp:{provider}:{}", suffix(currency));
    open(conn, code, currency, AccountKind::Asset, now).await
}

/// Investors' money held for an offer until it closes.
pub async fn offer_escrow(conn: &mut PgConnection, offer: Uuid, currency: Currency, now: DateTime<Utc>) -> Opened {
    open(
        conn,
        format!("offer:{offer}:escrow"),
        currency,
        AccountKind::Liability,
        now,
    )
    .await
}

/// Refunds owed, awaiting the provider's confirmation.
pub async fn refunds(conn: &mut PgConnection, provider: &str, currency: Currency, now: DateTime<Utc>) -> Opened {
    let code = format!("refunds:{provider}:{}", suffix(currency));
    open(conn, code, currency, AccountKind::Liability, now).await
}

/// Owed to a project after a successful close, until paid out.
pub(crate) async fn project_payable(
    conn: &mut PgConnection,
    project: Uuid,
    currency: Currency,
    now: DateTime<Utc>,
) -> Opened {
    let code = format!("project:{project}:payable:{}", suffix(currency));
    open(conn, code, currency, AccountKind::Liability, now).await
}

/// Success fees.
pub(crate) async fn platform_fees(conn: &mut PgConnection, currency: Currency, now: DateTime<Utc>) -> Opened {
    let code = format!("platform:fees:{}", suffix(currency));
    open(conn, code, currency, AccountKind::Revenue, now).await
}

/// Chargebacks the platform bears: card money a lost dispute took back after it had left the
/// round (settled to the project and the fee, or already refunded), so no investor's or
/// project's account can give it up (docs/disputes.md).
pub(crate) async fn platform_losses(conn: &mut PgConnection, currency: Currency, now: DateTime<Utc>) -> Opened {
    let code = format!("platform:losses:{}", suffix(currency));
    open(conn, code, currency, AccountKind::Expense, now).await
}

pub(crate) fn sponsor_budget_code(sponsor: Uuid, currency: Currency) -> String {
    format!("sponsor:{sponsor}:budget:{}", suffix(currency))
}

/// A sponsor's prefunded budget, not yet issued as cheques.
pub(crate) async fn sponsor_budget(
    conn: &mut PgConnection,
    sponsor: Uuid,
    currency: Currency,
    now: DateTime<Utc>,
) -> Opened {
    let code = sponsor_budget_code(sponsor, currency);
    open(conn, code, currency, AccountKind::Liability, now).await
}

/// Owed to sponsors, awaiting the provider: withdrawals asked for and not yet paid.
pub(crate) async fn withdrawals(
    conn: &mut PgConnection,
    provider: &str,
    currency: Currency,
    now: DateTime<Utc>,
) -> Opened {
    let code = format!("withdrawals:{provider}:{}", suffix(currency));
    open(conn, code, currency, AccountKind::Liability, now).await
}

/// The start of every cheque's account code, followed by the cheque's id.
pub(crate) const CHEQUE_PREFIX: &str = "cheque:";

pub(crate) fn cheque_code(cheque: Uuid) -> String {
    format!("{CHEQUE_PREFIX}{cheque}")
}

/// A cheque's unspent value; it can never be paid out, only spent in pledges or returned.
pub async fn cheque(conn: &mut PgConnection, cheque: Uuid, currency: Currency, now: DateTime<Utc>) -> Opened {
    open(conn, cheque_code(cheque), currency, AccountKind::Liability, now).await
}

pub(crate) fn match_pool_code(pool: Uuid) -> String {
    format!("match:{pool}")
}

/// A matchfunding pool's money not yet matched: reserved from its sponsor's budget, matched into
/// offers' escrow, given back, and returned to the sponsor when the pool ends.
pub(crate) async fn match_pool(conn: &mut PgConnection, pool: Uuid, currency: Currency, now: DateTime<Utc>) -> Opened {
    open(conn, match_pool_code(pool), currency, AccountKind::Liability, now).await
}
