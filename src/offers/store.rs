//! The SQL of the `offers` table.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Allocation, Offer, OfferStatus, Terms};
use crate::money::{Currency, Money};

#[derive(sqlx::FromRow)]
struct OfferRow {
    id: Uuid,
    project_id: Uuid,
    currency: String,
    share_price: Decimal,
    min_shares: i64,
    max_shares: i64,
    min_ticket: Decimal,
    max_ticket: Option<Decimal>,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    success_fee_rate: Decimal,
    allocation: Allocation,
    payment_window_seconds: i32,
    bank_transfer_window_seconds: i32,
    oversubscription_limit: Decimal,
    reserve_limit: i64,
    status: OfferStatus,
    shares_reserved: i64,
    ballot_commitment: Option<String>,
    ballot_seed: Option<Vec<u8>>,
    ballot_nonce: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
    opened_at: Option<DateTime<Utc>>,
    closing_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    kiis_sha256s: Vec<String>,
}

impl From<OfferRow> for Offer {
    fn from(r: OfferRow) -> Offer {
        let currency = Currency::parse(&r.currency).expect("offers hold valid currencies");
        let money = |d: Decimal| Money::new(d, currency).expect("offers hold valid amounts");
        Offer {
            id: r.id,
            project_id: r.project_id,
            currency,
            share_price: money(r.share_price),
            min_shares: r.min_shares,
            max_shares: r.max_shares,
            min_ticket: money(r.min_ticket),
            max_ticket: r.max_ticket.map(money),
            opens_at: r.opens_at,
            closes_at: r.closes_at,
            success_fee_rate: r.success_fee_rate,
            allocation: r.allocation,
            payment_window_seconds: r.payment_window_seconds,
            bank_transfer_window_seconds: r.bank_transfer_window_seconds,
            oversubscription_limit: r.oversubscription_limit,
            reserve_limit: r.reserve_limit,
            status: r.status,
            shares_reserved: r.shares_reserved,
            ballot_commitment: r.ballot_commitment,
            ballot_seed: r.ballot_seed,
            ballot_nonce: r.ballot_nonce,
            created_at: r.created_at,
            opened_at: r.opened_at,
            closing_at: r.closing_at,
            closed_at: r.closed_at,
            kiis_sha256s: r.kiis_sha256s,
        }
    }
}

const COLUMNS: &str = "id, project_id, currency, share_price, min_shares, max_shares, min_ticket, max_ticket,
    opens_at, closes_at, success_fee_rate, allocation, payment_window_seconds, bank_transfer_window_seconds,
    oversubscription_limit, reserve_limit, status, shares_reserved, ballot_commitment, ballot_seed, ballot_nonce, created_at, opened_at,
    closing_at, closed_at, kiis_sha256s";

pub async fn insert(
    conn: &mut PgConnection,
    project_id: Uuid,
    terms: &Terms,
    now: DateTime<Utc>,
) -> sqlx::Result<Offer> {
    let row: OfferRow = sqlx::query_as(&format!(
        "insert into offers (id, project_id, currency, share_price, min_shares, max_shares, min_ticket,
                             max_ticket, opens_at, closes_at, success_fee_rate, allocation,
                             payment_window_seconds, oversubscription_limit, reserve_limit, created_at,
                             bank_transfer_window_seconds)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(project_id)
    .bind(terms.currency.code())
    .bind(terms.share_price.amount())
    .bind(terms.min_shares)
    .bind(terms.max_shares)
    .bind(terms.min_ticket.amount())
    .bind(terms.max_ticket.map(|t| t.amount()))
    .bind(terms.opens_at)
    .bind(terms.closes_at)
    .bind(terms.success_fee_rate)
    .bind(terms.allocation)
    .bind(terms.payment_window_seconds)
    .bind(terms.oversubscription_limit)
    .bind(terms.reserve_limit())
    .bind(now)
    .bind(terms.bank_transfer_window_seconds)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Offer>> {
    let row: Option<OfferRow> = sqlx::query_as(&format!("select {COLUMNS} from offers where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Offer::from))
}

pub async fn exists(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from offers where id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Whether one of the project's offers is open (takes pledges).
pub(crate) async fn has_open(conn: &mut PgConnection, project_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from offers where project_id = $1 and status = 'open')")
        .bind(project_id)
        .fetch_one(conn)
        .await
}

/// Reads and locks the offer row: lifecycle changes of one offer run one at a time.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Offer>> {
    let row: Option<OfferRow> = sqlx::query_as(&format!("select {COLUMNS} from offers where id = $1 for update"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Offer::from))
}

/// Sum of the max targets of a project's offers opened since `since` and not failed or cancelled.
pub(crate) async fn ecsp_committed(
    conn: &mut PgConnection,
    project_id: Uuid,
    since: DateTime<Utc>,
) -> sqlx::Result<Decimal> {
    sqlx::query_scalar(
        "select coalesce(sum(max_shares * share_price), 0) from offers
          where project_id = $1 and currency = 'EUR' and opened_at >= $2
            and status not in ('failed', 'cancelled', 'draft')",
    )
    .bind(project_id)
    .bind(since)
    .fetch_one(conn)
    .await
}

pub(crate) async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: OfferStatus,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let column = match status {
        OfferStatus::Open => "opened_at",
        OfferStatus::Closing => "closing_at",
        OfferStatus::Succeeded | OfferStatus::Failed | OfferStatus::Cancelled => "closed_at",
        OfferStatus::Draft => unreachable!("no offer goes back to draft"),
    };
    sqlx::query(&format!("update offers set status = $2, {column} = $3 where id = $1"))
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// At open: the ballot's nonce and the commitment to its seed (the seed itself is not stored).
pub(crate) async fn set_ballot(conn: &mut PgConnection, id: Uuid, nonce: &[u8], commitment: &str) -> sqlx::Result<()> {
    sqlx::query("update offers set ballot_nonce = $2, ballot_commitment = $3 where id = $1")
        .bind(id)
        .bind(nonce)
        .bind(commitment)
        .execute(conn)
        .await?;
    Ok(())
}

/// At the draw: the seed, stored so the offer reveals it.
pub(crate) async fn reveal_ballot_seed(conn: &mut PgConnection, id: Uuid, seed: &[u8]) -> sqlx::Result<()> {
    sqlx::query("update offers set ballot_seed = $2 where id = $1")
        .bind(id)
        .bind(seed)
        .execute(conn)
        .await?;
    Ok(())
}

/// Reserves `shares` on an open offer whose current KIIS include every one of `kiis` (the
/// versions the pledges name: an amendment committed since they were judged replaced none).
/// `Ok(None)` when the offer is not open or an amendment did; else whether a sponsor's pool may
/// match its pledges (`matchable`, read under the row lock the update takes). The
/// `offers_hard_cap` check constraint fails the statement when the shares do not fit.
pub async fn reserve(conn: &mut PgConnection, id: Uuid, shares: i64, kiis: &[&str]) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(
        "update offers set shares_reserved = shares_reserved + $2
          where id = $1 and status = 'open' and kiis_sha256s @> $3::text[]
          returning matchable",
    )
    .bind(id)
    .bind(shares)
    .bind(kiis)
    .fetch_optional(conn)
    .await
}

/// Reserves `shares` on an open offer if they fit, and if its current KIIS include every one of
/// `kiis`. `Ok(false)`, and nothing changed, when the offer is not open, has no room for them
/// all, or was amended since.
pub(crate) async fn reserve_if_room(
    conn: &mut PgConnection,
    id: Uuid,
    shares: i64,
    kiis: &[&str],
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update offers set shares_reserved = shares_reserved + $2
          where id = $1 and status = 'open' and shares_reserved + $2 <= reserve_limit and kiis_sha256s @> $3::text[]",
    )
    .bind(id)
    .bind(shares)
    .bind(kiis)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives back shares of pledges that ended without being allocated.
pub(crate) async fn release(conn: &mut PgConnection, id: Uuid, shares: i64) -> sqlx::Result<()> {
    sqlx::query("update offers set shares_reserved = shares_reserved - $2 where id = $1")
        .bind(id)
        .bind(shares)
        .execute(conn)
        .await?;
    Ok(())
}

/// Figures computed from the pledges, for reads.
#[derive(Debug, Default, sqlx::FromRow)]
pub struct Figures {
    pub pledge_count: i64,
    pub investor_count: i64,
    pub shares_funded: i64,
    pub amount_funded: Decimal,
    pub shares_allocated: i64,
    /// Shares of sponsors' matches in the offer's escrow or allocated (docs/matchfunding.md).
    pub shares_matched: i64,
    pub amount_matched: Decimal,
}

pub async fn figures(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Figures> {
    Ok(figures_many(conn, &[id]).await?.remove(&id).unwrap_or_default())
}

/// The figures of many offers in one statement (a page of offers); an offer without pledges is
/// absent (its figures are all zero).
pub(crate) async fn figures_many(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<HashMap<Uuid, Figures>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        offer_id: Uuid,
        #[sqlx(flatten)]
        figures: Figures,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "select f.offer_id, f.pledge_count, f.investor_count, f.shares_funded, f.amount_funded,
                f.shares_allocated + coalesce(m.allocated, 0) as shares_allocated,
                coalesce(m.shares, 0) as shares_matched, coalesce(m.amount, 0) as amount_matched
           from (select offer_id,
                        count(*) filter (where status in ('pending_payment', 'funded', 'allocated')) as pledge_count,
                        count(distinct investor_id) filter (where status in ('pending_payment', 'funded', 'allocated'))
                            as investor_count,
                        coalesce(sum(shares) filter (where status in ('funded', 'allocated')), 0)::bigint as shares_funded,
                        coalesce(sum(amount) filter (where status in ('funded', 'allocated')), 0) as amount_funded,
                        coalesce(sum(allocated_shares), 0)::bigint as shares_allocated
                   from pledges where offer_id = any($1)
                  group by offer_id) f
           left join lateral (
                 select sum(coalesce(allocated_shares, shares))::bigint as shares,
                        sum(amount - returned_to_pool - returned_to_sponsor) as amount,
                        sum(allocated_shares)::bigint as allocated
                   from matches where offer_id = f.offer_id and status in ('applied', 'allocated')) m on true",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.offer_id, r.figures)).collect())
}

/// Which offers a list shows.
#[derive(Debug, Default)]
pub(crate) struct OfferFilter {
    pub project_id: Option<Uuid>,
    pub status: Option<OfferStatus>,
}

/// Offers matching `filter`, newest first, after the keyset position `after`.
pub(crate) async fn list(
    conn: &mut PgConnection,
    filter: &OfferFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<Offer>> {
    // Only the predicates asked for, so each shape gets a plan that uses its index.
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("select {COLUMNS} from offers where true"));
    if let Some(project_id) = filter.project_id {
        q.push(" and project_id = ").push_bind(project_id);
    }
    if let Some(status) = filter.status {
        q.push(" and status = ").push_bind(status);
    }
    crate::paging::push_newest_first(&mut q, after, limit);
    let rows: Vec<OfferRow> = q.build_query_as().fetch_all(conn).await?;
    Ok(rows.into_iter().map(Offer::from).collect())
}

/// Offers whose time has come: open past `closes_at`, or closing.
pub(crate) async fn due_for_closing(conn: &mut PgConnection, now: DateTime<Utc>) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "select id from offers where (status = 'open' and closes_at <= $1) or status = 'closing' order by closes_at",
    )
    .bind(now)
    .fetch_all(conn)
    .await
}

/// An open offer a cheque could be spent in: its id, its project's id and name.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct OpenFor {
    pub offer_id: Uuid,
    pub project_id: Uuid,
    pub project_name: String,
}

/// The offers taking pledges at `now` in `currency`, of projects not archived, restricted to
/// `project_ids` and to projects with one of `themes` when those are not empty: where a cheque
/// with these restrictions may be spent (the rules of `cheques::redeem::check`). Oldest first.
pub(crate) async fn open_for(
    conn: &mut PgConnection,
    currency: Currency,
    project_ids: &[Uuid],
    themes: &[String],
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<OpenFor>> {
    sqlx::query_as(
        "select o.id as offer_id, p.id as project_id, p.name as project_name
           from offers o join projects p on p.id = o.project_id
          where o.status = 'open' and o.opens_at <= $2 and o.closes_at > $2 and o.currency = $1
            and p.status <> 'archived'
            and (cardinality($3::uuid[]) = 0 or p.id = any($3))
            and (cardinality($4::text[]) = 0 or p.themes && $4)
          order by o.created_at, o.id
          limit 1000",
    )
    .bind(currency.code())
    .bind(now)
    .bind(project_ids)
    .bind(themes)
    .fetch_all(conn)
    .await
}
