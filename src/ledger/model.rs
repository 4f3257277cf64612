use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::money::{Currency, Money, MoneyError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "ledger_account_kind", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Asset,
    Liability,
    Revenue,
    Expense,
    Equity,
}

impl AccountKind {
    /// The side that increases the account's balance.
    pub fn normal_side(self) -> Side {
        match self {
            AccountKind::Asset | AccountKind::Expense => Side::Debit,
            AccountKind::Liability | AccountKind::Revenue | AccountKind::Equity => Side::Credit,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "ledger_side", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Debit => Side::Credit,
            Side::Credit => Side::Debit,
        }
    }
}

/// A readable, unique account code such as `offer:<uuid>:escrow`: lowercase ASCII letters,
/// digits and `_ . : -`, at most 200 characters. Mirrors the `ledger_accounts_code_format` check.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountCode(String);

impl AccountCode {
    pub fn parse(code: impl Into<String>) -> Result<Self, LedgerError> {
        let code = code.into();
        let valid_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b);
        let first_ok = code
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !first_ok || code.len() > 200 || !code.bytes().all(valid_char) {
            return Err(LedgerError::InvalidAccountCode(code.chars().take(64).collect()));
        }
        Ok(AccountCode(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug)]
pub struct NewAccount {
    pub code: AccountCode,
    pub currency: Currency,
    pub kind: AccountKind,
    pub no_overdraft: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub code: String,
    pub currency: Currency,
    pub kind: AccountKind,
    pub no_overdraft: bool,
    /// On the account's normal side: positive means the account holds value.
    pub balance: Decimal,
    pub posting_count: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPosting {
    pub account_id: Uuid,
    pub side: Side,
    pub amount: Money,
}

/// An entry to post. Build it with [`NewEntry::new`], then [`NewEntry::debit`] and
/// [`NewEntry::credit`]; [`crate::ledger::post`] checks it before the database does.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// Chosen when the entry is made, so that the caller's own rows can name it in the same
    /// transaction (a replayed reference keeps the first entry's id: [`super::post`] returns it).
    pub id: Uuid,
    pub kind: String,
    /// Idempotency key: posting the same reference twice yields one entry.
    pub reference: String,
    pub effective_at: DateTime<Utc>,
    pub metadata: serde_json::Value,
    pub postings: Vec<NewPosting>,
    pub(crate) reverses: Option<Uuid>,
}

impl NewEntry {
    pub fn new(kind: impl Into<String>, reference: impl Into<String>, effective_at: DateTime<Utc>) -> Self {
        NewEntry {
            id: Uuid::now_v7(),
            kind: kind.into(),
            reference: reference.into(),
            effective_at,
            metadata: serde_json::json!({}),
            postings: Vec::new(),
            reverses: None,
        }
    }

    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn debit(mut self, account_id: Uuid, amount: Money) -> Self {
        self.postings.push(NewPosting {
            account_id,
            side: Side::Debit,
            amount,
        });
        self
    }

    pub fn credit(mut self, account_id: Uuid, amount: Money) -> Self {
        self.postings.push(NewPosting {
            account_id,
            side: Side::Credit,
            amount,
        });
        self
    }

    /// The checks that need no database: shape, positive amounts, balance per currency.
    pub fn check(&self) -> Result<(), LedgerError> {
        if self.kind.is_empty() || self.kind.len() > 100 {
            return Err(LedgerError::Invalid("an entry's kind has 1 to 100 characters".into()));
        }
        if self.reference.is_empty() || self.reference.len() > 200 {
            return Err(LedgerError::Invalid(
                "an entry's reference has 1 to 200 characters".into(),
            ));
        }
        if !self.metadata.is_object() {
            return Err(LedgerError::Invalid("an entry's metadata is a JSON object".into()));
        }
        if self.postings.len() < 2 {
            return Err(LedgerError::TooFewPostings);
        }
        let mut net: BTreeMap<Currency, Decimal> = BTreeMap::new();
        for p in &self.postings {
            if p.amount.amount() <= Decimal::ZERO {
                return Err(LedgerError::Invalid("posting amounts are greater than zero".into()));
            }
            let signed = match p.side {
                Side::Debit => p.amount.amount(),
                Side::Credit => -p.amount.amount(),
            };
            *net.entry(p.amount.currency()).or_default() += signed;
        }
        match net.into_iter().find(|(_, sum)| !sum.is_zero()) {
            Some((currency, _)) => Err(LedgerError::Unbalanced(currency)),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub account_id: Uuid,
    pub account_code: String,
    pub side: Side,
    pub amount: Money,
    /// Position in the account's history.
    pub account_seq: i64,
    /// The account's normal-side balance right after this posting.
    pub balance_after: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: Uuid,
    pub kind: String,
    pub reference: String,
    pub effective_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub metadata: serde_json::Value,
    pub reverses: Option<Uuid>,
    pub reversed_by: Option<Uuid>,
    pub postings: Vec<Posting>,
}

/// The result of posting: the entry, and whether it already existed under that reference.
#[derive(Clone, Debug)]
pub struct Posted {
    pub entry: Entry,
    pub replayed: bool,
}

/// One line of an account's statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountLine {
    pub account_seq: i64,
    pub entry_id: Uuid,
    pub reference: String,
    pub kind: String,
    pub effective_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub side: Side,
    pub amount: Money,
    pub balance_after: Decimal,
    /// The entry's metadata.
    pub metadata: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}")]
    Invalid(String),
    #[error("'{0}' is not a valid account code (lowercase letters, digits and _ . : -, at most 200)")]
    InvalidAccountCode(String),
    #[error("an entry needs at least two postings")]
    TooFewPostings,
    #[error("the entry does not balance in {0}: debits and credits differ")]
    Unbalanced(Currency),
    #[error("a posting's currency differs from its account's")]
    CurrencyMismatch,
    #[error("no ledger account {0}")]
    UnknownAccount(Uuid),
    #[error("no journal entry {0}")]
    UnknownEntry(Uuid),
    #[error("the entry would take an account that may not be overdrawn below zero")]
    Overdraft,
    #[error("reference '{0}' was already used for an entry with different postings")]
    ReferenceReused(String),
    #[error("entry {0} has already been reversed")]
    AlreadyReversed(Uuid),
    #[error("account '{0}' already exists with a different currency, kind or overdraft rule")]
    AccountConflict(String),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for LedgerError {
    /// Turns the ledger's named constraints into precise errors; anything else stays a
    /// database error.
    fn from(err: sqlx::Error) -> Self {
        let constraint = err.as_database_error().and_then(|e| e.constraint()).map(str::to_owned);
        match constraint.as_deref() {
            Some("ledger_accounts_no_overdraft") => LedgerError::Overdraft,
            Some("ledger_postings_account_currency_fkey") => LedgerError::CurrencyMismatch,
            Some("ledger_entry_min_postings") => LedgerError::TooFewPostings,
            Some("ledger_accounts_code_format") => LedgerError::InvalidAccountCode(String::new()),
            _ => LedgerError::Database(err),
        }
    }
}
