//! The SQL for `investors` (migrations/0004_projects_investors.sql).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::appropriateness::{KnowledgeTest, Standing};
use super::{Classification, Investor, InvestorKind, KycStatus, NewInvestor};
use crate::money::{Currency, Money};
use crate::projects::Country;

const COLUMNS: &str = "id, kind, name, email, country, classification, kyc_status, net_worth, net_worth_currency, \
                       created_at, updated_at, kyc_decided_at, classification_decided_at";

/// Investors (the relation `i`, a table or a CTE) with their latest appropriateness record, in
/// one statement: the pledge batch reads its investors' gate with them, in the read it made
/// anyway. The record's columns are named apart, so the investor's stay unqualified.
fn select_from(investors: &str) -> String {
    format!(
        "select {COLUMNS}, a.a_id, a.a_test, a.a_valid_until
           from {investors} i
           left join lateral (select r.id as a_id, r.knowledge_test as a_test, r.valid_until as a_valid_until
                                from appropriateness_records r
                               where r.investor_id = i.id
                               order by r.recorded_at desc, r.id desc limit 1) a on true"
    )
}

#[derive(FromRow)]
struct InvestorRow {
    id: Uuid,
    kind: InvestorKind,
    name: String,
    email: String,
    country: String,
    classification: Classification,
    kyc_status: KycStatus,
    net_worth: Option<Decimal>,
    net_worth_currency: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    kyc_decided_at: Option<DateTime<Utc>>,
    classification_decided_at: Option<DateTime<Utc>>,
    a_id: Option<Uuid>,
    a_test: Option<KnowledgeTest>,
    a_valid_until: Option<DateTime<Utc>>,
}

impl TryFrom<InvestorRow> for Investor {
    type Error = sqlx::Error;

    fn try_from(row: InvestorRow) -> Result<Self, sqlx::Error> {
        fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
            sqlx::Error::Decode(Box::new(e))
        }
        let net_worth = match (row.net_worth, row.net_worth_currency) {
            (Some(amount), Some(code)) => {
                Some(Money::new(amount, Currency::parse(&code).map_err(decode)?).map_err(decode)?)
            }
            // The `investors_net_worth_pair` check keeps the two together.
            _ => None,
        };
        Ok(Investor {
            id: row.id,
            kind: row.kind,
            name: row.name,
            email: row.email,
            country: Country::parse(&row.country).map_err(decode)?,
            classification: row.classification,
            kyc_status: row.kyc_status,
            net_worth,
            created_at: row.created_at,
            updated_at: row.updated_at,
            kyc_decided_at: row.kyc_decided_at,
            classification_decided_at: row.classification_decided_at,
            appropriateness: match (row.a_id, row.a_test, row.a_valid_until) {
                (Some(id), Some(knowledge_test), Some(valid_until)) => Some(Standing {
                    id,
                    knowledge_test,
                    valid_until,
                }),
                _ => None,
            },
        })
    }
}

/// Stores a new investor, KYC pending.
pub async fn insert(conn: &mut PgConnection, new: &NewInvestor, now: DateTime<Utc>) -> Result<Investor, sqlx::Error> {
    let row: InvestorRow = sqlx::query_as(&format!(
        "with i as (insert into investors (id, kind, name, email, country, classification, kyc_status, net_worth,
                                           net_worth_currency, created_at, updated_at)
                    values ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $9)
                    returning *)
         {}",
        select_from("i")
    ))
    .bind(Uuid::now_v7())
    .bind(new.kind)
    .bind(&new.name)
    .bind(new.email.as_str())
    .bind(new.country.as_str())
    .bind(new.classification)
    .bind(new.net_worth.map(|m| m.amount()))
    .bind(new.net_worth.map(|m| m.currency().code()))
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    row.try_into()
}

/// One investor.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Investor>, sqlx::Error> {
    let row: Option<InvestorRow> = sqlx::query_as(&format!("{} where i.id = $1", select_from("investors")))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(Investor::try_from).transpose()
}

/// Many investors at once, by id; those that do not exist are absent from the map.
pub(crate) async fn get_many(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Investor>, sqlx::Error> {
    let rows: Vec<InvestorRow> = sqlx::query_as(&format!("{} where i.id = any($1)", select_from("investors")))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter()
        .map(|row| Investor::try_from(row).map(|i| (i.id, i)))
        .collect()
}

/// Which investors a list shows.
#[derive(Debug, Default)]
pub(crate) struct InvestorFilter {
    /// The address, ignoring case.
    pub email: Option<String>,
    pub kyc_status: Option<KycStatus>,
}

/// Investors matching `filter`, newest first, after the keyset position `after`.
pub(crate) async fn list(
    conn: &mut PgConnection,
    filter: &InvestorFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Investor>, sqlx::Error> {
    // Only the predicates asked for, so each shape gets a plan that uses its index.
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("{} where true", select_from("investors")));
    if let Some(email) = &filter.email {
        q.push(" and lower(email) = lower(").push_bind(email.clone()).push(")");
    }
    if let Some(status) = filter.kyc_status {
        q.push(" and kyc_status = ").push_bind(status);
    }
    crate::paging::push_newest_first(&mut q, after, limit);
    let rows: Vec<InvestorRow> = q.build_query_as().fetch_all(&mut *conn).await?;
    rows.into_iter().map(Investor::try_from).collect()
}

/// Records an operator's KYC decision; `None` when there is no such investor.
pub(crate) async fn set_kyc(
    conn: &mut PgConnection,
    id: Uuid,
    status: KycStatus,
    now: DateTime<Utc>,
) -> Result<Option<Investor>, sqlx::Error> {
    let row: Option<InvestorRow> = sqlx::query_as(&format!(
        "with i as (update investors set kyc_status = $2, kyc_decided_at = $3, updated_at = $3 where id = $1
                    returning *)
         {}",
        select_from("i")
    ))
    .bind(id)
    .bind(status)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(Investor::try_from).transpose()
}

/// Records an operator's reclassification; `None` when there is no such investor. An investor
/// made non-sophisticated has their live pledges counted in the totals the risk warning reads
/// from now on (migration 0022): a pledge is judged under the classification in force when it
/// is made, and the ones made before count toward what they invest in the offer.
pub(crate) async fn set_classification(
    conn: &mut PgConnection,
    id: Uuid,
    classification: Classification,
    now: DateTime<Utc>,
) -> Result<Option<Investor>, sqlx::Error> {
    let row: Option<InvestorRow> = sqlx::query_as(&format!(
        "with i as (update investors set classification = $2, classification_decided_at = $3, updated_at = $3
                     where id = $1 returning *)
         {}",
        select_from("i")
    ))
    .bind(id)
    .bind(classification)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if row.is_some() && classification == Classification::NonSophisticated {
        sqlx::query(
            "update pledges set in_ticket_totals = true
              where investor_id = $1 and not in_ticket_totals and status in ('pending_payment', 'funded')",
        )
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    row.map(Investor::try_from).transpose()
}
