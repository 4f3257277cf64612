//! The entry knowledge test and the simulation of the ability to bear loss (ECSP art. 21),
//! recorded by the platform before a non-sophisticated investor's first pledge. The questions
//! and the answers are the platform's; the service keeps the outcome, where the answers are
//! (`answers_ref`), and when it stops being valid. A record is never edited: a new one
//! supersedes it, so the record each pledge was judged under stays provable (migration 0039).

use chrono::{DateTime, Months, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::Author;
use crate::fields::{self, FieldError};
use crate::money::{Amount, Currency, Money};

/// A record is valid this long after it was recorded (ECSP art. 21: the assessment is reviewed every two years).
pub(crate) const VALIDITY_MONTHS: u32 = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "knowledge_test_result", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum KnowledgeTest {
    Passed,
    /// The investor may still pledge, but every pledge needs `risk_acknowledged: true`.
    Failed,
}

/// A record as the platform sends it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppropriatenessInput {
    pub knowledge_test: KnowledgeTest,
    /// The result of the simulation of the ability to bear loss: what the investor could lose.
    pub loss_capacity: Amount,
    /// Defaults to EUR.
    #[schema(value_type = Option<crate::money::CurrencyCode>)]
    pub currency: Option<Currency>,
    /// Where the platform keeps the questions and answers (its own reference, 1 to 500
    /// characters): the service never sees them.
    #[schema(example = "quiz/2026/4f1c", min_length = 1, max_length = 500)]
    pub answers_ref: String,
}

/// A record that satisfies every rule, ready to be stored.
#[derive(Debug, Serialize)]
pub struct NewAppropriateness {
    knowledge_test: KnowledgeTest,
    #[serde(serialize_with = "money_json")]
    loss_capacity: Money,
    answers_ref: String,
}

fn money_json<S: serde::Serializer>(money: &Money, s: S) -> Result<S::Ok, S::Error> {
    serde_json::json!({"amount": money.amount_string(), "currency": money.currency().code()}).serialize(s)
}

impl NewAppropriateness {
    pub fn parse(input: AppropriatenessInput) -> Result<Self, FieldError> {
        let currency = match input.currency {
            Some(c) => c,
            None => Currency::parse("EUR").expect("EUR is a currency"),
        };
        if input.loss_capacity.value() < Decimal::ZERO {
            return Err(FieldError("loss_capacity must not be negative".into()));
        }
        let loss_capacity = Money::exact(input.loss_capacity.value(), currency)
            .map_err(|e| FieldError(format!("loss_capacity: {e}")))?;
        Ok(NewAppropriateness {
            knowledge_test: input.knowledge_test,
            loss_capacity,
            answers_ref: fields::line("answers_ref", &input.answers_ref, 500)?,
        })
    }
}

/// A record as stored.
#[derive(Clone, Debug)]
pub struct Appropriateness {
    pub id: Uuid,
    pub investor_id: Uuid,
    pub knowledge_test: KnowledgeTest,
    pub loss_capacity: Money,
    pub answers_ref: String,
    pub recorded_at: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
}

/// An investor's current record, as a pledge is judged on it: read with the investor, in the
/// same statement (`super::store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub id: Uuid,
    pub knowledge_test: KnowledgeTest,
    pub valid_until: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    investor_id: Uuid,
    knowledge_test: KnowledgeTest,
    loss_capacity: Decimal,
    loss_capacity_currency: String,
    answers_ref: String,
    recorded_at: DateTime<Utc>,
    valid_until: DateTime<Utc>,
}

impl TryFrom<Row> for Appropriateness {
    type Error = sqlx::Error;

    fn try_from(r: Row) -> Result<Self, sqlx::Error> {
        let decode = |e: crate::money::MoneyError| sqlx::Error::Decode(Box::new(e));
        let currency = Currency::parse(&r.loss_capacity_currency).map_err(decode)?;
        Ok(Appropriateness {
            id: r.id,
            investor_id: r.investor_id,
            knowledge_test: r.knowledge_test,
            loss_capacity: Money::new(r.loss_capacity, currency).map_err(decode)?,
            answers_ref: r.answers_ref,
            recorded_at: r.recorded_at,
            valid_until: r.valid_until,
        })
    }
}

const COLUMNS: &str =
    "id, investor_id, knowledge_test, loss_capacity, loss_capacity_currency, answers_ref, recorded_at, valid_until";

/// Records an investor's test, valid for [`VALIDITY_MONTHS`] from `now`; it supersedes the ones
/// before. The caller has checked that the investor exists.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    investor_id: Uuid,
    new: &NewAppropriateness,
    author: Author,
    now: DateTime<Utc>,
) -> sqlx::Result<Appropriateness> {
    let valid_until = now
        .checked_add_months(Months::new(VALIDITY_MONTHS))
        .map_or(crate::clock::last_writable(), |t| t.min(crate::clock::last_writable()));
    let row: Row = sqlx::query_as(&format!(
        "insert into appropriateness_records (id, investor_id, knowledge_test, loss_capacity, loss_capacity_currency,
                                              answers_ref, recorded_at, valid_until, recorded_by_key, recorded_by_role)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::api_role)
         returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(investor_id)
    .bind(new.knowledge_test)
    .bind(new.loss_capacity.amount())
    .bind(new.loss_capacity.currency().code())
    .bind(&new.answers_ref)
    .bind(now)
    .bind(valid_until)
    .bind(author.key_id)
    .bind(author.role.as_str())
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// An investor's records, newest (the current one) first, after the keyset position `after`.
pub(crate) async fn of_investor(
    conn: &mut PgConnection,
    investor_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<Appropriateness>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "select {COLUMNS} from appropriateness_records where investor_id = "
    ));
    q.push_bind(investor_id);
    if let Some((at, id)) = after {
        q.push(" and (recorded_at, id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" order by recorded_at desc, id desc limit ").push_bind(limit);
    let rows: Vec<Row> = q.build_query_as().fetch_all(conn).await?;
    rows.into_iter().map(Appropriateness::try_from).collect()
}
