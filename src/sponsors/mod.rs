//! Sponsors: companies that fund virtual prize cheques from a budget. The budget is the ledger
//! account `sponsor:<id>:budget:<cur>`; it grows only when the payment provider confirms a
//! deposit (`psp → sponsor budget`), never when one is merely requested.
//!
//! Unused budget is paid back by withdrawals (`withdrawals`), and the statement (`statement`)
//! accounts for every move of the budget.
//!
//! Each sponsor has one currency: its deposits, budget, cheques and withdrawals are all in it.

pub mod deposits;
pub mod http;
pub mod statement;
pub mod withdrawals;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::books::chart;
use crate::fields::Email;
use crate::fields::{self, FieldError};
use crate::ledger::{self, LedgerError};
use crate::money::{Currency, Money};
use crate::paging::PageRequest;
use crate::payments::provider::ProviderError;

/// Why a sponsor's budget or deposit could not be read or moved.
#[derive(Debug, thiserror::Error)]
pub enum SponsorError {
    #[error("no sponsor {0}")]
    NotFound(Uuid),
    /// Named by the provider's id for it.
    #[error("no deposit {0}")]
    DepositNotFound(String),
    #[error("sponsor {sponsor} keeps its budget in {budget}, not {asked}")]
    CurrencyMismatch {
        sponsor: Uuid,
        budget: Currency,
        asked: Currency,
    },
    /// The provider confirmed another amount than the one asked of it.
    #[error("deposit {deposit} is for {} {currency}, not {paid}", crate::money::format_amount(*expected, *currency))]
    DepositMismatch {
        deposit: String,
        expected: Decimal,
        currency: Currency,
        paid: Money,
    },
    /// Named by the provider's id for it.
    #[error("no withdrawal {0}")]
    WithdrawalNotFound(String),
    /// The budget holds less than the withdrawal asks for.
    #[error("sponsor {sponsor}'s budget does not cover {amount}")]
    InsufficientBudget { sponsor: Uuid, amount: Money },
    /// The statement's lines do not add up to the budget's balance: a bug, never a statement.
    #[error("sponsor {sponsor}'s statement closes at {lines}, its budget account holds {account}")]
    StatementMismatch {
        sponsor: Uuid,
        lines: Decimal,
        account: Decimal,
    },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Payment(#[from] crate::payments::PaymentError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A sponsor as a client describes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SponsorInput {
    #[schema(example = "SenseTour Belgium")]
    pub name: String,
    #[schema(example = "prizes@sensetour.example")]
    pub email: Option<String>,
    /// The currency of its budget and cheques; EUR when not given.
    #[schema(value_type = Option<crate::money::CurrencyCode>)]
    pub currency: Option<Currency>,
}

/// A sponsor that satisfies every rule; its canonical form is the request's identity for
/// `Idempotency-Key`.
#[derive(Debug, Serialize)]
pub struct NewSponsor {
    name: String,
    email: Option<Email>,
    currency: Currency,
}

impl NewSponsor {
    pub fn parse(input: SponsorInput) -> Result<Self, FieldError> {
        Ok(NewSponsor {
            name: fields::line("name", &input.name, 200)?,
            email: input.email.as_deref().map(Email::parse).transpose()?,
            currency: input.currency.unwrap_or(Currency::EUR),
        })
    }
}

#[derive(Clone, Debug, FromRow)]
pub struct Sponsor {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, email, currency, created_at";

pub async fn insert(conn: &mut PgConnection, new: &NewSponsor, now: DateTime<Utc>) -> sqlx::Result<Sponsor> {
    sqlx::query_as(&format!(
        "insert into sponsors (id, name, email, currency, created_at) values ($1, $2, $3, $4, $5)
         returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&new.name)
    .bind(new.email.as_ref().map(Email::as_str))
    .bind(new.currency.code())
    .bind(now)
    .fetch_one(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Sponsor>> {
    sqlx::query_as(&format!("select {COLUMNS} from sponsors where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A sponsor, or [`SponsorError::NotFound`].
pub(crate) async fn require(conn: &mut PgConnection, id: Uuid) -> Result<Sponsor, SponsorError> {
    get(conn, id).await?.ok_or(SponsorError::NotFound(id))
}

/// The position of an item in the lists of sponsors, cheques and deposits: newest first.
pub type ListKey = (DateTime<Utc>, Uuid);

/// Sponsors, newest first, a page at a time.
pub(crate) async fn list(conn: &mut PgConnection, page: &PageRequest<ListKey>) -> sqlx::Result<Vec<Sponsor>> {
    let mut q = QueryBuilder::new(format!("select {COLUMNS} from sponsors where true"));
    crate::paging::push_newest_first(&mut q, page.after, page.fetch());
    q.build_query_as().fetch_all(conn).await
}

/// What the sponsor can still issue as cheques: its budget account's balance (zero before the
/// first confirmed deposit).
pub async fn budget(conn: &mut PgConnection, sponsor: &Sponsor) -> Result<Money, SponsorError> {
    Ok(budgets(conn, std::slice::from_ref(sponsor)).await?.remove(0))
}

/// Each sponsor's [`budget`], in their order, read in one statement.
pub(crate) async fn budgets(conn: &mut PgConnection, sponsors: &[Sponsor]) -> Result<Vec<Money>, SponsorError> {
    let codes: Vec<String> = sponsors
        .iter()
        .map(|s| chart::sponsor_budget_code(s.id, s.currency))
        .collect();
    let balances: HashMap<String, Decimal> = ledger::accounts_by_code(conn, &codes)
        .await?
        .into_iter()
        .map(|a| (a.code, a.balance))
        .collect();
    sponsors
        .iter()
        .zip(&codes)
        .map(|(s, code)| {
            let balance = balances.get(code).copied().unwrap_or_default();
            Ok(Money::new(balance, s.currency).map_err(LedgerError::from)?)
        })
        .collect()
}
