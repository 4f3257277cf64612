//! The double-entry ledger: accounts, journal entries, postings, balances and their invariants.
//!
//! It knows no domain words. Domain modules open accounts and post entries through this API,
//! inside their own transactions; Postgres enforces the invariants (migrations/0001_ledger.sql)
//! and [`verify`] proves them. See docs/ledger.md.

mod journal;
mod model;
mod verify;

pub mod http;
pub mod trial_balance;

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

pub use journal::{
    account, account_as_of, account_by_code, account_lines, accounts_by_code, all_accounts, all_accounts_as_of,
    balance, entry, entry_by_reference, list_accounts, lock_balance, open_account, post, post_many, reverse,
};
pub use model::{
    Account, AccountCode, AccountKind, AccountLine, Entry, LedgerError, NewAccount, NewEntry, NewPosting, Posted,
    Posting, Side,
};
pub use verify::{CheckResult, run_check, run_checks};

/// Runs the ledger's own checks against one consistent snapshot of the books (domain checks
/// are added by `crate::books::audit`), with no time limit.
pub async fn verify(pool: &PgPool) -> Result<Vec<CheckResult>, LedgerError> {
    let mut tx = read_snapshot(pool, None).await?;
    let results = run_checks(&mut tx).await?;
    tx.commit().await?;
    Ok(results)
}

/// A read-only transaction on one snapshot of the books, for reads that scan them whole (verify,
/// the trial balance): every statement sees the same moment, so a posting committed between two
/// of them cannot look like a violation. With `timeout`, each statement is cancelled after it
/// (SQLSTATE 57014, which the API answers with 503 `statement_timeout`): such a read must not
/// hold a connection, and a snapshot that keeps vacuum from cleaning up, for ever.
pub async fn read_snapshot(
    pool: &PgPool,
    timeout: Option<Duration>,
) -> Result<Transaction<'static, Postgres>, LedgerError> {
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    if let Some(timeout) = timeout {
        // Local: it ends with the transaction, and the pooled connection forgets it.
        sqlx::query("select set_config('statement_timeout', $1, true)")
            .bind(format!("{}ms", timeout.as_millis().max(1)))
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}
