//! Matchfunding pools (PRODUCT.md section 13, docs/matchfunding.md): a foundation or a territory
//! sets part of its sponsor budget aside, `sponsor budget → match:<id>`, and each funded
//! eligible pledge is matched from it at `ratio`, up to `max_per_pledge` and `max_per_project`
//! (`crate::rounds::matching`). At `expires_at` what is left returns to the sponsor.
//!
//! Locks: a pool's row serialises everything that moves its money (matching, giving back, its
//! end), and is taken after the offer's row and before ledger accounts, as everywhere.

pub mod http;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, PgPool, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::books::{EntryKind, chart};
use crate::fields::FieldError;
use crate::ledger::{self, LedgerError, NewEntry};
use crate::money::{Amount, Currency, Money, MoneyError, PositiveAmount};
use crate::outbox::{self, EventType};
use crate::paging::PageRequest;
use crate::projects::Theme;
use crate::sponsors;

#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no sponsor {0}")]
    NoSponsor(Uuid),
    #[error("no match pool {0}")]
    NotFound(Uuid),
    #[error("sponsor {sponsor} keeps its budget in {currency}, not {asked}")]
    CurrencyMismatch {
        sponsor: Uuid,
        currency: Currency,
        asked: Currency,
    },
    #[error("sponsor {sponsor}'s budget does not cover {amount}")]
    InsufficientBudget { sponsor: Uuid, amount: Money },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The most a pool may add per unit pledged: 10 € per euro is already more than any known
/// matchfunding call gives.
const MAX_RATIO: Decimal = Decimal::from_parts(10, 0, 0, false, 0);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchPoolInput {
    /// Taken from the sponsor's budget when the pool is created.
    #[schema(value_type = PositiveAmount, example = "10000.00")]
    pub amount: Amount,
    /// The sponsor's currency when absent.
    #[schema(value_type = Option<crate::money::CurrencyCode>)]
    pub currency: Option<Currency>,
    /// Money matched per unit pledged, above 0 and at most 10, e.g. `"1"` doubles each pledge.
    #[schema(value_type = PositiveAmount, example = "1")]
    pub ratio: Amount,
    /// The most one pledge is matched with.
    #[schema(value_type = PositiveAmount, example = "500.00")]
    pub max_per_pledge: Amount,
    /// The most the pool gives one project, over all its offers.
    #[schema(value_type = PositiveAmount, example = "5000.00")]
    pub max_per_project: Amount,
    /// Only projects with one of these themes (any theme when absent or empty).
    pub eligible_themes: Option<Vec<Theme>>,
    /// Only these projects (any project when absent or empty).
    pub eligible_project_ids: Option<Vec<Uuid>>,
    /// In the future; what is left then returns to the sponsor's budget.
    #[schema(example = "2099-12-31T23:59:59Z")]
    pub expires_at: DateTime<Utc>,
}

/// A pool request that satisfies every rule needing no database; canonical, so it is also the
/// request's identity for `Idempotency-Key`.
#[derive(Debug, Serialize)]
pub struct NewPool {
    sponsor_id: Uuid,
    amount: Decimal,
    currency: Option<Currency>,
    ratio: Decimal,
    max_per_pledge: Decimal,
    max_per_project: Decimal,
    eligible_themes: Vec<String>,
    eligible_project_ids: Vec<Uuid>,
    expires_at: DateTime<Utc>,
}

fn positive(name: &str, amount: Amount) -> Result<Decimal, FieldError> {
    let value = amount.value();
    if value <= Decimal::ZERO {
        return Err(FieldError(format!("{name} must be above zero")));
    }
    Ok(value.normalize())
}

impl NewPool {
    pub fn parse(sponsor_id: Uuid, input: MatchPoolInput, now: DateTime<Utc>) -> Result<Self, FieldError> {
        let ratio = positive("ratio", input.ratio)?;
        if ratio > MAX_RATIO {
            return Err(FieldError("ratio is at most 10".into()));
        }
        if input.expires_at <= now {
            return Err(FieldError("expires_at must be in the future".into()));
        }
        let (themes, projects) = crate::cheques::eligibility(input.eligible_themes, input.eligible_project_ids)?;
        let themes: Vec<String> = themes.iter().map(|t| t.as_str().to_owned()).collect();
        Ok(NewPool {
            sponsor_id,
            amount: positive("amount", input.amount)?,
            currency: input.currency,
            ratio,
            max_per_pledge: positive("max_per_pledge", input.max_per_pledge)?,
            max_per_project: positive("max_per_project", input.max_per_project)?,
            eligible_themes: themes,
            eligible_project_ids: projects,
            expires_at: input.expires_at,
        })
    }
}

#[derive(Clone, Debug, FromRow)]
pub struct Pool {
    pub id: Uuid,
    pub sponsor_id: Uuid,
    pub amount: Decimal,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    pub ratio: Decimal,
    pub max_per_pledge: Decimal,
    pub max_per_project: Decimal,
    pub eligible_themes: Vec<String>,
    pub eligible_project_ids: Vec<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub returned: Option<Decimal>,
}

impl Pool {
    /// Still matching at `now`, whether or not the job has ended it yet.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

pub(crate) const COLUMNS: &str = "id, sponsor_id, amount, currency, ratio, max_per_pledge, max_per_project, \
                                  eligible_themes, eligible_project_ids, expires_at, created_at, ended_at, returned";

/// The SQL test of whether pool `mp` may match pledges to project `p`: the restrictions of a
/// cheque, and a project not archived.
pub(crate) const APPLIES: &str = "(cardinality(mp.eligible_project_ids) = 0 or p.id = any(mp.eligible_project_ids))
     and (cardinality(mp.eligible_themes) = 0 or p.themes && mp.eligible_themes)
     and p.status <> 'archived'";

pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Pool>> {
    sqlx::query_as(&format!("select {COLUMNS} from match_pools where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Creates a pool: `sponsor budget → match:<id>` for its amount (422
/// `insufficient_sponsor_budget` when the budget does not cover it; the budget account's
/// `no_overdraft` decides under concurrency), and marks the offers it may apply to.
pub async fn create(conn: &mut PgConnection, new: &NewPool, now: DateTime<Utc>) -> Result<Pool, MatchError> {
    let sponsor = sponsors::get(conn, new.sponsor_id)
        .await?
        .ok_or(MatchError::NoSponsor(new.sponsor_id))?;
    let currency = new.currency.unwrap_or(sponsor.currency);
    if currency != sponsor.currency {
        return Err(MatchError::CurrencyMismatch {
            sponsor: sponsor.id,
            currency: sponsor.currency,
            asked: currency,
        });
    }
    let exact = |name: &str, value: Decimal| {
        Money::exact_positive(value, currency).map_err(|e| MatchError::Invalid(FieldError(format!("{name}: {e}"))))
    };
    let amount = exact("amount", new.amount)?;
    exact("max_per_pledge", new.max_per_pledge)?;
    exact("max_per_project", new.max_per_project)?;
    crate::cheques::check_eligible_projects(conn, &new.eligible_project_ids)
        .await
        .map_err(|e| match e {
            crate::cheques::ChequeError::Invalid(f) => MatchError::Invalid(f),
            crate::cheques::ChequeError::Database(d) => MatchError::Database(d),
            other => MatchError::Invalid(FieldError(other.to_string())),
        })?;
    let pool: Pool = sqlx::query_as(&format!(
        "insert into match_pools (id, sponsor_id, amount, currency, ratio, max_per_pledge, max_per_project,
                                  eligible_themes, eligible_project_ids, expires_at, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(sponsor.id)
    .bind(amount.amount())
    .bind(currency.code())
    .bind(new.ratio)
    .bind(new.max_per_pledge)
    .bind(new.max_per_project)
    .bind(&new.eligible_themes)
    .bind(&new.eligible_project_ids)
    .bind(new.expires_at)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let budget = chart::sponsor_budget(conn, sponsor.id, currency, now).await?;
    let account = chart::match_pool(conn, pool.id, currency, now).await?;
    let entry = NewEntry::new(
        EntryKind::MatchPoolReserved,
        format!("match_pool:{}:reserved", pool.id),
        now,
    )
    .metadata(serde_json::json!({ "match_pool_id": pool.id, "sponsor_id": sponsor.id }))
    .debit(budget, amount)
    .credit(account, amount);
    ledger::post(conn, entry).await.map_err(|err| match err {
        LedgerError::Overdraft => MatchError::InsufficientBudget {
            sponsor: sponsor.id,
            amount,
        },
        other => other.into(),
    })?;
    // Offers already open (or to open) of the projects it may match: their card payments now
    // take the path that matches (migration 0042).
    sqlx::query(&format!(
        "update offers o set matchable = true
           from projects p, match_pools mp
          where mp.id = $1 and p.id = o.project_id and o.status in ('draft', 'open') and not o.matchable
            and o.currency = mp.currency and {APPLIES}"
    ))
    .bind(pool.id)
    .execute(&mut *conn)
    .await?;
    Ok(pool)
}

/// Marks an offer that is opening as matchable when a live pool may apply to it.
pub(crate) async fn mark_if_matchable(conn: &mut PgConnection, offer_id: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "update offers o set matchable = true
          where o.id = $1 and not o.matchable
            and exists (select 1 from match_pools mp join projects p on p.id = o.project_id
                         where mp.ended_at is null and mp.expires_at > $2 and mp.currency = o.currency and {APPLIES})"
    ))
    .bind(offer_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// What a pool holds and has done, for reads.
#[derive(Clone, Debug, Default, FromRow)]
pub struct Figures {
    /// Left in the pool's account.
    pub balance: Decimal,
    /// Matched and not given back.
    pub matched: Decimal,
    pub match_count: i64,
}

/// Each pool's [`Figures`], in their order, read in two statements.
pub(crate) async fn figures(conn: &mut PgConnection, pools: &[Pool]) -> Result<Vec<Figures>, MatchError> {
    let codes: Vec<String> = pools.iter().map(|p| chart::match_pool_code(p.id)).collect();
    let balances: std::collections::HashMap<String, Decimal> = ledger::accounts_by_code(conn, &codes)
        .await?
        .into_iter()
        .map(|a| (a.code, a.balance))
        .collect();
    let ids: Vec<Uuid> = pools.iter().map(|p| p.id).collect();
    let matched: Vec<(Uuid, Decimal, i64)> = sqlx::query_as(
        "select pool_id, coalesce(sum(amount - returned_to_pool - returned_to_sponsor), 0), count(*)
           from matches where pool_id = any($1) group by pool_id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(pools
        .iter()
        .zip(&codes)
        .map(|(p, code)| {
            let (matched, match_count) = matched
                .iter()
                .find(|(id, _, _)| *id == p.id)
                .map(|(_, m, c)| (*m, *c))
                .unwrap_or_default();
            Figures {
                balance: balances.get(code).copied().unwrap_or_default(),
                matched,
                match_count,
            }
        })
        .collect())
}

/// A sponsor's pools, newest first, a page at a time.
pub(crate) async fn of_sponsor(
    conn: &mut PgConnection,
    sponsor: Uuid,
    page: &PageRequest<sponsors::ListKey>,
) -> sqlx::Result<Vec<Pool>> {
    let mut q = QueryBuilder::new(format!("select {COLUMNS} from match_pools where sponsor_id = "));
    q.push_bind(sponsor);
    crate::paging::push_newest_first(&mut q, page.after, page.fetch());
    q.build_query_as().fetch_all(conn).await
}

/// Ends the pools whose time has come: what is left returns `match:<id> → sponsor budget`, under
/// the pool's row lock, once (`match_pool.ended`). Returns how many ended.
pub async fn end_expired(pool: &PgPool, now: DateTime<Utc>) -> Result<usize, MatchError> {
    let due: Vec<Uuid> = sqlx::query_scalar(
        "select id from match_pools where ended_at is null and expires_at <= $1 order by expires_at limit 100",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut ended = 0;
    for id in due {
        let mut tx = pool.begin().await?;
        let locked: Pool = sqlx::query_as(&format!("select {COLUMNS} from match_pools where id = $1 for update"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if locked.ended_at.is_some() || locked.expires_at > now {
            continue;
        }
        let account = chart::match_pool(&mut tx, id, locked.currency, now).await?;
        let left = ledger::lock_balance(&mut tx, account).await?;
        if left.amount() > Decimal::ZERO {
            let budget = chart::sponsor_budget(&mut tx, locked.sponsor_id, locked.currency, now).await?;
            let entry = NewEntry::new(EntryKind::MatchPoolReturned, format!("match_pool:{id}:returned"), now)
                .metadata(serde_json::json!({ "match_pool_id": id, "sponsor_id": locked.sponsor_id }))
                .debit(account, left)
                .credit(budget, left);
            ledger::post(&mut tx, entry).await?;
        }
        sqlx::query("update match_pools set ended_at = $2, returned = $3 where id = $1")
            .bind(id)
            .bind(now)
            .bind(left.amount())
            .execute(&mut *tx)
            .await?;
        outbox::emit(
            &mut tx,
            EventType::MatchPoolEnded,
            serde_json::json!({ "match_pool_id": id, "sponsor_id": locked.sponsor_id,
                                "returned": left.amount_string(), "currency": locked.currency }),
            now,
        )
        .await?;
        tx.commit().await?;
        ended += 1;
    }
    Ok(ended)
}
