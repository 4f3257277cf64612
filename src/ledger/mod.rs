//! The double-entry ledger: accounts, journal entries, postings, balances and their invariants.
//!
//! It knows no domain words. Domain modules open accounts and post entries through this API,
//! inside their own transactions; Postgres enforces the invariants (migrations/0001_ledger.sql)
//! and [`verify`] proves them. See docs/ledger.md.

mod journal;
mod model;
mod verify;

pub mod http;

use sqlx::PgPool;

pub use journal::{
    account, account_by_code, account_lines, all_accounts, balance, entry, entry_by_reference, list_accounts,
    lock_balance, open_account, post, post_many, reverse,
};
pub use model::{
    Account, AccountCode, AccountKind, AccountLine, Entry, LedgerError, NewAccount, NewEntry, NewPosting, Posted,
    Posting, Side,
};
pub use verify::{CheckResult, run_check, run_checks};

/// Runs the ledger's own checks against one consistent snapshot of the books (domain checks
/// are added by `crate::audit`).
pub async fn verify(pool: &PgPool) -> Result<Vec<CheckResult>, LedgerError> {
    let mut tx = pool.begin().await?;
    // All checks must see the same moment, or a posting committed between two of them would
    // look like a violation.
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let results = run_checks(&mut tx).await?;
    tx.commit().await?;
    Ok(results)
}
