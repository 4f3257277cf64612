//! The manual books: what operators may do by hand on the ledger. They open accounts and post
//! and reverse entries only under the `manual:` prefix, so a hand-made account or reference can
//! never take one a domain flow will need, and domain entries are corrected by their own flows.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ledger::{self, AccountCode, LedgerError, NewEntry, Posted};

/// The prefix of manual account codes and entry references.
pub(crate) const PREFIX: &str = "manual:";
/// The kind of every entry posted by hand.
pub(crate) const KIND: &str = "manual";
/// Ledger references have at most 200 characters, the prefix included.
const MAX_REFERENCE: usize = 200 - PREFIX.len();

/// Why the manual books refuse something.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("account codes created through the API start with '{PREFIX}'; domain accounts are opened by the service")]
    NotManualCode,
    #[error("reference has 1 to {MAX_REFERENCE} bytes")]
    BadReference,
    #[error("memo has at most 500 characters")]
    MemoTooLong,
    /// Postgres can hold NUL neither in text (the reference) nor in jsonb (the memo).
    #[error("{0} contains a NUL character")]
    Nul(&'static str),
    #[error("no manual account {0}: manual entries post only to '{PREFIX}' accounts")]
    NotManualAccount(Uuid),
    #[error("no entry {0}")]
    NoEntry(Uuid),
    #[error("only manual entries are reversed by hand; domain entries are corrected by their own flows")]
    NotManualEntry,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<sqlx::Error> for ManualError {
    fn from(err: sqlx::Error) -> Self {
        ManualError::Ledger(LedgerError::Database(err))
    }
}

/// A manual entry's full reference.
pub fn reference(reference: &str) -> Result<String, ManualError> {
    if reference.is_empty() || reference.len() > MAX_REFERENCE {
        return Err(ManualError::BadReference);
    }
    if reference.contains('\0') {
        return Err(ManualError::Nul("reference"));
    }
    Ok(format!("{PREFIX}{reference}"))
}

/// A manual entry's metadata: the operator's memo and who posted it (`bootstrap` for the
/// configured key).
pub fn metadata(posted_by: Option<Uuid>, memo: Option<String>) -> Result<serde_json::Value, ManualError> {
    if memo.as_ref().is_some_and(|m| m.chars().count() > 500) {
        return Err(ManualError::MemoTooLong);
    }
    if memo.as_ref().is_some_and(|m| m.contains('\0')) {
        return Err(ManualError::Nul("memo"));
    }
    let posted_by = posted_by.map_or_else(|| "bootstrap".to_string(), |id| id.to_string());
    Ok(serde_json::json!({ "memo": memo, "posted_by": posted_by }))
}

/// A manual account's code: under the prefix, and a valid code.
pub fn account_code(code: String) -> Result<AccountCode, ManualError> {
    if !code.starts_with(PREFIX) {
        return Err(ManualError::NotManualCode);
    }
    Ok(AccountCode::parse(code)?)
}

/// Posts a manual entry, which may touch manual accounts only.
pub async fn post(conn: &mut PgConnection, entry: NewEntry) -> Result<Posted, ManualError> {
    entry.check()?;
    let ids: Vec<Uuid> = entry.postings.iter().map(|p| p.account_id).collect();
    let manual: Vec<Uuid> =
        sqlx::query_scalar("select id from ledger_accounts where id = any($1) and code like 'manual:%'")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    if let Some(other) = ids.iter().find(|id| !manual.contains(id)) {
        return Err(ManualError::NotManualAccount(*other));
    }
    Ok(ledger::post(conn, entry).await?)
}

/// Reverses a manual entry; a domain entry is refused.
pub async fn reverse(
    conn: &mut PgConnection,
    id: Uuid,
    reference: Option<&str>,
    now: DateTime<Utc>,
    metadata: serde_json::Value,
) -> Result<Posted, ManualError> {
    let original = ledger::entry(conn, id).await?.ok_or(ManualError::NoEntry(id))?;
    if original.kind != KIND {
        return Err(ManualError::NotManualEntry);
    }
    let reference = reference.map(self::reference).transpose()?;
    Ok(ledger::reverse(conn, id, reference, now, metadata).await?)
}
