//! Virtual prize cheques: value a sponsor sets aside for a contest winner, spendable only as
//! pledge funding, never cashed. The value is the ledger account `cheque:<id>`:
//! issued `sponsor budget → cheque`, spent `cheque → offer escrow`, given back `offer escrow →
//! cheque` (or `→ sponsor budget` once the cheque has ended), ended `cheque → sponsor budget`.
//!
//! Locks: offer, then pledge, then the cheque's row, then ledger accounts. Spending takes no
//! cheque row lock at all: the `no_overdraft` cheque account refuses a second spend of the same
//! value, and ending a cheque empties that account under its row lock, so a spend that read the
//! cheque as active just before finds nothing left.

pub mod attempts;
pub mod code;
pub mod http;
pub mod redeem;

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, PgPool, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::books::{EntryKind, chart};
use crate::fields::{self, Email, FieldError};
use crate::ledger::{self, LedgerError, NewEntry};
use crate::money::{Amount, Currency, Money, MoneyError, PositiveAmount};
use crate::outbox::{self, EventType};
use crate::paging::PageRequest;
use crate::projects::Theme;
use crate::sponsors;

/// Why a cheque could not be issued, spent, given back or ended. The refusals of a cheque as
/// pledge funding (`UnknownCode` to `InsufficientBalance`) share one code, `cheque_invalid`,
/// told apart by its `reason`.
#[derive(Debug, thiserror::Error)]
pub enum ChequeError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The sponsor a new cheque names: a field of the request, not the resource asked for.
    #[error("no sponsor {0}")]
    UnknownSponsor(Uuid),
    #[error("sponsor {sponsor} issues cheques in {currency}, not {asked}")]
    CurrencyMismatch {
        sponsor: Uuid,
        currency: Currency,
        asked: Currency,
    },
    #[error("sponsor {sponsor}'s budget does not cover {face}")]
    InsufficientBudget { sponsor: Uuid, face: Money },
    #[error("no cheque {0}")]
    NotFound(Uuid),
    /// A code that names no cheque: the one refusal that counts as a guess (`attempts.rs`).
    #[error("no cheque has this code")]
    UnknownCode,
    #[error("the cheque was cancelled")]
    Cancelled,
    #[error("the cheque has expired")]
    Expired,
    #[error("the cheque is in {cheque}, the offer in {offer}")]
    WrongCurrency { cheque: Currency, offer: Currency },
    #[error("the cheque may not be spent on this project")]
    ProjectNotEligible,
    #[error("the cheque may be spent on projects about {}", .themes.join(", "))]
    ThemeNotEligible { themes: Vec<String> },
    #[error("the cheque does not cover {amount}")]
    InsufficientBalance { amount: Money },
    /// The investor is blocked from trying codes for `wait` seconds (`attempts.rs`).
    #[error("too many wrong cheque codes; try again in {wait} s")]
    TooManyAttempts { wait: u64 },
    /// A pledge's books say it holds cheque money no redemption accounts for: a bug.
    #[error("pledge {pledge} has {owed} of cheque money to give back that no cheque spent")]
    Unaccounted { pledge: Uuid, owed: Decimal },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The stored state; `spent` is an active cheque with nothing left on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "cheque_status", rename_all = "snake_case")]
pub enum Stored {
    Active,
    Expired,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChequeStatus {
    Active,
    Spent,
    Expired,
    Cancelled,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChequeInput {
    pub sponsor_id: Uuid,
    #[schema(example = "Camille Martin")]
    pub beneficiary_name: String,
    #[schema(example = "camille@example.org")]
    pub beneficiary_email: String,
    #[schema(value_type = PositiveAmount, example = "2000.00")]
    pub face_value: Amount,
    #[schema(value_type = crate::money::CurrencyCode)]
    pub currency: Currency,
    /// In the future.
    #[schema(example = "2099-12-31T23:59:59Z")]
    pub expires_at: DateTime<Utc>,
    /// Spendable only on projects with one of these themes (any theme when absent or empty).
    pub eligible_themes: Option<Vec<Theme>>,
    /// Spendable only on these projects (any project when absent or empty).
    pub eligible_project_ids: Option<Vec<Uuid>>,
    #[schema(example = "SenseTour Belgium 2026 contest")]
    pub memo: Option<String>,
}

/// A cheque request that satisfies every rule that needs no database; canonical, so it is also
/// the request's identity for `Idempotency-Key`.
#[derive(Debug, Serialize)]
pub struct NewCheque {
    sponsor_id: Uuid,
    beneficiary_name: String,
    beneficiary_email: Email,
    #[serde(serialize_with = "money_json")]
    face_value: Money,
    expires_at: DateTime<Utc>,
    eligible_themes: Vec<Theme>,
    eligible_project_ids: Vec<Uuid>,
    memo: Option<String>,
}

fn money_json<S: serde::Serializer>(money: &Money, s: S) -> Result<S::Ok, S::Error> {
    serde_json::json!({"amount": money.amount_string(), "currency": money.currency().code()}).serialize(s)
}

impl NewCheque {
    pub fn parse(input: ChequeInput, now: DateTime<Utc>) -> Result<Self, ChequeError> {
        let face_value = Money::exact_positive(input.face_value.value(), input.currency)
            .map_err(|e| FieldError(format!("face_value: {e}")))?;
        if input.expires_at <= now {
            return Err(FieldError("expires_at must be in the future".into()).into());
        }
        let (themes, projects) = eligibility(input.eligible_themes, input.eligible_project_ids)?;
        Ok(NewCheque {
            sponsor_id: input.sponsor_id,
            beneficiary_name: fields::line("beneficiary_name", &input.beneficiary_name, 200)?,
            beneficiary_email: Email::parse(&input.beneficiary_email)?,
            face_value,
            expires_at: input.expires_at,
            eligible_themes: themes,
            eligible_project_ids: projects,
            memo: input
                .memo
                .as_deref()
                .map(|m| fields::text("memo", m, 1000))
                .transpose()?
                .filter(|m| !m.is_empty()),
        })
    }
}

/// Restrictions to themes and projects, canonical (sorted, once each; empty means any), for a
/// cheque or a matchfunding pool: at most 100 projects.
pub(crate) fn eligibility(
    themes: Option<Vec<Theme>>,
    projects: Option<Vec<Uuid>>,
) -> Result<(Vec<Theme>, Vec<Uuid>), FieldError> {
    let mut themes = themes.unwrap_or_default();
    themes.sort();
    themes.dedup();
    let mut projects = projects.unwrap_or_default();
    if projects.len() > 100 {
        return Err(FieldError("eligible_project_ids lists at most 100 projects".into()));
    }
    projects.sort();
    projects.dedup();
    Ok((themes, projects))
}

#[derive(Clone, Debug, FromRow)]
pub struct Cheque {
    pub id: Uuid,
    pub sponsor_id: Uuid,
    pub beneficiary_name: String,
    pub beneficiary_email: String,
    pub face_value: Decimal,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    pub expires_at: DateTime<Utc>,
    pub eligible_themes: Vec<String>,
    pub eligible_project_ids: Vec<Uuid>,
    pub memo: Option<String>,
    pub status: Stored,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Cheque {
    /// Still spendable at `now`, whether or not the expiry job has run yet.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.status == Stored::Active && now < self.expires_at
    }
}

const COLUMNS: &str = "id, sponsor_id, beneficiary_name, beneficiary_email, face_value, currency, expires_at, \
                       eligible_themes, eligible_project_ids, memo, status, created_at, ended_at";

pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Cheque>> {
    sqlx::query_as(&format!("select {COLUMNS} from cheques where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The cheque's row, locked (see the module's lock order).
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Cheque>> {
    sqlx::query_as(&format!("select {COLUMNS} from cheques where id = $1 for update"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub(crate) async fn by_code_hash(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<Option<Cheque>> {
    sqlx::query_as(&format!("select {COLUMNS} from cheques where code_hash = $1"))
        .bind(hash)
        .fetch_optional(conn)
        .await
}

/// What is left on the cheque.
pub async fn balance(conn: &mut PgConnection, cheque: &Cheque, now: DateTime<Utc>) -> Result<Money, ChequeError> {
    let account = chart::cheque(conn, cheque.id, cheque.currency, now).await?;
    Ok(ledger::balance(conn, account).await?)
}

/// A sponsor's cheques, newest first, those in `status` when given, a page at a time. `spent`
/// and `active` are told apart as [`status`] does, by what is left on the cheque's account.
pub(crate) async fn of_sponsor(
    conn: &mut PgConnection,
    sponsor: Uuid,
    status: Option<ChequeStatus>,
    page: &PageRequest<sponsors::ListKey>,
) -> sqlx::Result<Vec<Cheque>> {
    let mut q = QueryBuilder::new(format!("select {COLUMNS} from cheques c where sponsor_id = "));
    q.push_bind(sponsor);
    let left = |q: &mut QueryBuilder<'_, sqlx::Postgres>, some: bool| {
        q.push(if some { " and exists" } else { " and not exists" })
            .push(" (select 1 from ledger_accounts a where a.code = ")
            .push_bind(chart::CHEQUE_PREFIX)
            .push(" || c.id::text and a.balance > 0)");
    };
    match status {
        None => {}
        Some(ChequeStatus::Expired) => {
            q.push(" and status = ").push_bind(Stored::Expired);
        }
        Some(ChequeStatus::Cancelled) => {
            q.push(" and status = ").push_bind(Stored::Cancelled);
        }
        Some(ChequeStatus::Active) => {
            q.push(" and status = ").push_bind(Stored::Active);
            left(&mut q, true);
        }
        Some(ChequeStatus::Spent) => {
            q.push(" and status = ").push_bind(Stored::Active);
            left(&mut q, false);
        }
    }
    crate::paging::push_newest_first(&mut q, page.after, page.fetch());
    q.build_query_as().fetch_all(conn).await
}

/// What is left on each cheque, in their order, read in one statement (nothing for a cheque
/// whose account was never opened).
pub(crate) async fn balances(conn: &mut PgConnection, cheques: &[Cheque]) -> Result<Vec<Money>, ChequeError> {
    let codes: Vec<String> = cheques.iter().map(|c| chart::cheque_code(c.id)).collect();
    let left: HashMap<String, Decimal> = ledger::accounts_by_code(conn, &codes)
        .await?
        .into_iter()
        .map(|a| (a.code, a.balance))
        .collect();
    cheques
        .iter()
        .zip(&codes)
        .map(|(c, code)| Ok(Money::new(left.get(code).copied().unwrap_or_default(), c.currency)?))
        .collect()
}

pub fn status(cheque: &Cheque, balance: Money) -> ChequeStatus {
    match cheque.status {
        Stored::Expired => ChequeStatus::Expired,
        Stored::Cancelled => ChequeStatus::Cancelled,
        Stored::Active if balance.amount().is_zero() => ChequeStatus::Spent,
        Stored::Active => ChequeStatus::Active,
    }
}

/// What a cheque's code tells its winner without spending anything: the cheque, what is left on
/// it, and its status at `now` (an expiry that is due counts at once, as when spending). Where
/// it may be spent is the offers' to say (`offers::store::open_for`).
pub(crate) struct Lookup {
    pub cheque: Cheque,
    pub balance: Money,
    pub status: ChequeStatus,
}

/// Looks a cheque up by its code, for `investor` when named (who must exist, as for a pledge).
/// Reads only: no ledger entry, no event, no account opened. [`ChequeError::UnknownCode`] is the
/// one answer that counts as a guess (`attempts.rs`).
pub(crate) async fn look_up(
    conn: &mut PgConnection,
    given: &str,
    investor: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Lookup, ChequeError> {
    if let Some(id) = investor
        && crate::investors::store::get(conn, id).await?.is_none()
    {
        return Err(FieldError(format!("no investor {id}")).into());
    }
    let canonical = code::normalise(given).ok_or(ChequeError::UnknownCode)?;
    let cheque = by_code_hash(conn, &code::hash(&canonical))
        .await?
        .ok_or(ChequeError::UnknownCode)?;
    let balance = balances(conn, std::slice::from_ref(&cheque)).await?.remove(0);
    let status = match cheque.status {
        Stored::Active if !cheque.live(now) => ChequeStatus::Expired,
        _ => status(&cheque, balance),
    };
    Ok(Lookup {
        cheque,
        balance,
        status,
    })
}

/// A cheque's projects must be real, and one of them able to take pledges: a cheque that could
/// never be spent is refused (422). A project archived later leaves its cheques valid for the
/// others they name.
pub(crate) async fn check_eligible_projects(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), ChequeError> {
    if ids.is_empty() {
        return Ok(());
    }
    let found: Vec<(Uuid, crate::projects::ProjectStatus)> =
        sqlx::query_as("select id, status from projects where id = any($1)")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
    if let Some(unknown) = ids.iter().find(|id| !found.iter().any(|(f, _)| f == *id)) {
        return Err(FieldError(format!("eligible_project_ids names no project {unknown}")).into());
    }
    if found
        .iter()
        .all(|(_, status)| *status == crate::projects::ProjectStatus::Archived)
    {
        return Err(FieldError(
            "eligible_project_ids names only archived projects: the cheque could never be spent".into(),
        )
        .into());
    }
    Ok(())
}

/// Issues a cheque: `sponsor budget → cheque` for its face value. Returns the cheque and its
/// code, which exists nowhere else from then on. Concurrent issues queue on the budget account;
/// its `no_overdraft` refuses the one that would overdraw it.
pub async fn issue(
    conn: &mut PgConnection,
    new: &NewCheque,
    now: DateTime<Utc>,
) -> Result<(Cheque, String), ChequeError> {
    let sponsor = sponsors::get(conn, new.sponsor_id)
        .await?
        .ok_or(ChequeError::UnknownSponsor(new.sponsor_id))?;
    let face = new.face_value;
    if face.currency() != sponsor.currency {
        return Err(ChequeError::CurrencyMismatch {
            sponsor: sponsor.id,
            currency: sponsor.currency,
            asked: face.currency(),
        });
    }
    check_eligible_projects(conn, &new.eligible_project_ids).await?;
    let code = code::generate();
    let canonical = code::normalise(&code).expect("generated codes are canonical");
    let themes: Vec<String> = new
        .eligible_themes
        .iter()
        .map(|t| {
            serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    let cheque: Cheque = sqlx::query_as(&format!(
        "insert into cheques (id, sponsor_id, code_hash, beneficiary_name, beneficiary_email, face_value, currency,
                              expires_at, eligible_themes, eligible_project_ids, memo, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(sponsor.id)
    .bind(code::hash(&canonical))
    .bind(&new.beneficiary_name)
    .bind(new.beneficiary_email.as_str())
    .bind(face.amount())
    .bind(face.currency().code())
    .bind(new.expires_at)
    .bind(&themes)
    .bind(&new.eligible_project_ids)
    .bind(&new.memo)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let budget = chart::sponsor_budget(conn, sponsor.id, face.currency(), now).await?;
    let account = chart::cheque(conn, cheque.id, face.currency(), now).await?;
    let entry = NewEntry::new(EntryKind::ChequeIssued, format!("cheque:{}:issued", cheque.id), now)
        .metadata(serde_json::json!({ "cheque_id": cheque.id, "sponsor_id": sponsor.id }))
        .debit(budget, face)
        .credit(account, face);
    ledger::post(conn, entry).await.map_err(|err| match err {
        LedgerError::Overdraft => ChequeError::InsufficientBudget {
            sponsor: sponsor.id,
            face,
        },
        other => other.into(),
    })?;
    outbox::emit(
        conn,
        EventType::ChequeIssued,
        serde_json::json!({ "cheque_id": cheque.id, "sponsor_id": sponsor.id, "face_value": face.amount_string(),
                            "currency": face.currency(), "expires_at": cheque.expires_at }),
        now,
    )
    .await?;
    Ok((cheque, code))
}

/// Ends an active cheque (`Expired` or `Cancelled`): what is left goes back `cheque → sponsor
/// budget`. `None` when it had already ended.
pub async fn end(
    conn: &mut PgConnection,
    id: Uuid,
    to: Stored,
    now: DateTime<Utc>,
) -> Result<Option<Cheque>, ChequeError> {
    let cheque = lock(conn, id).await?.ok_or(ChequeError::NotFound(id))?;
    if cheque.status != Stored::Active {
        return Ok(None);
    }
    let account = chart::cheque(conn, cheque.id, cheque.currency, now).await?;
    let left = ledger::lock_balance(conn, account).await?;
    if left.amount() > Decimal::ZERO {
        let budget = chart::sponsor_budget(conn, cheque.sponsor_id, cheque.currency, now).await?;
        let entry = NewEntry::new(EntryKind::ChequeEnded, format!("cheque:{}:ended", cheque.id), now)
            .metadata(serde_json::json!({ "cheque_id": cheque.id, "sponsor_id": cheque.sponsor_id, "status": format!("{to:?}").to_lowercase() }))
            .debit(account, left)
            .credit(budget, left);
        ledger::post(conn, entry).await?;
    }
    let ended: Cheque = sqlx::query_as(&format!(
        "update cheques set status = $2, ended_at = $3 where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(to)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let ended_as = match to {
        Stored::Expired => Some(EventType::ChequeExpired),
        Stored::Cancelled => Some(EventType::ChequeCancelled),
        Stored::Active => None,
    };
    if let Some(event) = ended_as {
        outbox::emit(
            conn,
            event,
            serde_json::json!({ "cheque_id": cheque.id, "sponsor_id": cheque.sponsor_id,
                                "returned_to_budget": left.amount_string(), "currency": cheque.currency }),
            now,
        )
        .await?;
    }
    Ok(Some(ended))
}

/// Expires the cheques whose time has come, each in its own transaction. Several processes may
/// run this at once: the row lock in [`end`] lets each cheque end once.
pub(crate) async fn expire_due(pool: &PgPool, now: DateTime<Utc>) -> Result<usize, ChequeError> {
    let due: Vec<Uuid> = sqlx::query_scalar(
        "select id from cheques where status = 'active' and expires_at <= $1 order by expires_at limit 500",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut expired = 0;
    for id in due {
        let mut tx = pool.begin().await?;
        if end(&mut tx, id, Stored::Expired, now).await?.is_some() {
            expired += 1;
        }
        tx.commit().await?;
    }
    Ok(expired)
}

/// Reminds the winners of cheques that expire within `notice` of `now` and still hold money:
/// `cheque.expiring` with the balance, once per cheque (`expiring_notified_at`, migration 0040),
/// each in its own transaction under the cheque's row lock, so processes running it together
/// remind each once. A spent cheque (nothing left) is not reminded; if money comes back to it
/// before it expires, it is. Returns how many were reminded.
pub(crate) async fn remind_expiring(
    pool: &PgPool,
    notice: TimeDelta,
    now: DateTime<Utc>,
) -> Result<usize, ChequeError> {
    let due: Vec<Uuid> = sqlx::query_scalar(
        "select c.id from cheques c
           join ledger_accounts a on a.code = $3 || c.id::text
          where c.status = 'active' and c.expiring_notified_at is null
            and c.expires_at > $1 and c.expires_at <= $2 and a.balance > 0
          order by c.expires_at limit 500",
    )
    .bind(now)
    .bind(now + notice)
    .bind(chart::CHEQUE_PREFIX)
    .fetch_all(pool)
    .await?;
    let mut reminded = 0;
    for id in due {
        let mut tx = pool.begin().await?;
        // Marked, locked and re-checked in one statement; rolled back below if nothing is left.
        let marked: Option<Cheque> = sqlx::query_as(&format!(
            "update cheques set expiring_notified_at = $2
              where id = $1 and status = 'active' and expiring_notified_at is null and expires_at > $2
              returning {COLUMNS}"
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(cheque) = marked else { continue };
        let left = balance(&mut tx, &cheque, now).await?;
        if left.amount().is_zero() {
            continue;
        }
        outbox::emit(
            &mut tx,
            EventType::ChequeExpiring,
            serde_json::json!({ "cheque_id": cheque.id, "sponsor_id": cheque.sponsor_id,
                                "balance": left.amount_string(), "currency": cheque.currency,
                                "expires_at": cheque.expires_at }),
            now,
        )
        .await?;
        tx.commit().await?;
        reminded += 1;
    }
    Ok(reminded)
}
