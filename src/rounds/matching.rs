//! A round's matched money (docs/matchfunding.md): a pledge funded while a sponsor's pool may
//! match it is matched in the same transaction, `match:<pool> → offer escrow`, in whole shares
//! held in the sponsor's name; revoked, refunded or cancelled, the pledge gives its match back
//! (`escrow → match:<pool>`, or `→ sponsor budget` once the pool has ended); at a close the
//! match is allocated like a claim of its own, and what is not allocated is given back.
//!
//! Locks: the offer's row (held by every caller), then the pools' rows in id order, then ledger
//! accounts. Under the offer's lock the room left for shares is exact; under a pool's lock its
//! balance and what it gave each project are, so a pool never goes below zero and a project
//! never gets more than `max_per_project`, however many pledges are funded at once.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use utoipa::ToSchema;
use uuid::Uuid;

use super::RoundError;
use crate::books::{EntryKind, chart};
use crate::ledger::{self, NewEntry};
use crate::matchfunding::{self, APPLIES, Pool};
use crate::money::{Currency, Money};
use crate::offers::{self, Offer, OfferStatus};
use crate::outbox::{self, EventType};
use crate::pledges::Pledge;

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, ToSchema)]
#[sqlx(type_name = "match_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MatchStatus {
    /// In the offer's escrow, waiting for the round's end.
    Applied,
    /// Settled with a succeeded round: `allocated_shares` held in the sponsor's name.
    Allocated,
    /// All of it given back.
    Returned,
}

#[derive(Clone, Debug, FromRow)]
pub struct Match {
    pub id: Uuid,
    pub pool_id: Uuid,
    pub pledge_id: Uuid,
    pub offer_id: Uuid,
    pub project_id: Uuid,
    pub shares: i64,
    pub amount: Decimal,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    pub status: MatchStatus,
    pub allocated_shares: Option<i64>,
    pub returned_to_pool: Decimal,
    pub returned_to_sponsor: Decimal,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

pub(crate) const COLUMNS: &str = "id, pool_id, pledge_id, offer_id, project_id, shares, amount, currency, status, \
                                  allocated_shares, returned_to_pool, returned_to_sponsor, created_at, ended_at";

/// Why matched money went back, in `match.returned`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Why {
    Revoked,
    Refunded,
    Cancelled,
    NotReconfirmed,
    NotAllocated,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::Revoked => "revoked",
            Why::Refunded => "refunded",
            Why::Cancelled => "cancelled",
            Why::NotReconfirmed => "not_reconfirmed",
            Why::NotAllocated => "not_allocated",
        }
    }
}

/// Whether a card payment of `offer_id`'s pledges must be confirmed on the path that matches
/// (its offer's row locked first): the offer's `matchable` flag (migration 0042).
pub(crate) async fn matchable(conn: &mut PgConnection, offer_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("select matchable from offers where id = $1")
        .bind(offer_id)
        .fetch_one(conn)
        .await
}

/// Matches `pledge`, funded just now in this transaction, from the oldest live pool that may
/// match it and has something to give; `None` when none does, or the offer has no room left.
/// The caller holds the offer's row lock.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    pledge: &Pledge,
    now: DateTime<Utc>,
) -> Result<Option<Match>, RoundError> {
    // Current under the caller's lock: the room left is exact.
    let offer = offers::store::get(conn, pledge.offer_id)
        .await?
        .ok_or(RoundError::NoOffer(pledge.offer_id))?;
    let room = offer.reserve_limit - offer.shares_reserved;
    if offer.status != OfferStatus::Open || room <= 0 {
        return Ok(None);
    }
    // Locked in id order (every path that locks several pools does), used oldest first.
    let mut pools: Vec<Pool> = sqlx::query_as(&format!(
        "select {} from match_pools mp join projects p on p.id = $1
          where mp.ended_at is null and mp.expires_at > $2 and mp.currency = $3 and {APPLIES}
          order by mp.id for update of mp",
        prefixed(matchfunding::COLUMNS, "mp")
    ))
    .bind(offer.project_id)
    .bind(now)
    .bind(offer.currency.code())
    .fetch_all(&mut *conn)
    .await?;
    pools.sort_by_key(|p| (p.created_at, p.id));
    for pool in pools {
        let account = chart::match_pool(conn, pool.id, pool.currency, now).await?;
        let balance = ledger::balance(conn, account).await?.amount();
        let given: Decimal = sqlx::query_scalar(
            "select coalesce(sum(amount - returned_to_pool - returned_to_sponsor), 0)
               from matches where pool_id = $1 and project_id = $2",
        )
        .bind(pool.id)
        .bind(offer.project_id)
        .fetch_one(&mut *conn)
        .await?;
        let want = (pledge.amount.amount() * pool.ratio)
            .min(pool.max_per_pledge)
            .min(pool.max_per_project - given)
            .min(balance);
        // Whole shares, as every holding of the round.
        let shares = whole_shares(want, &offer).min(room);
        if shares <= 0 {
            continue;
        }
        let amount = offer.price_of(shares);
        if offers::store::reserve(conn, offer.id, shares, &[]).await?.is_none() {
            return Ok(None);
        }
        let matched: Match = sqlx::query_as(&format!(
            "insert into matches (id, pool_id, pledge_id, offer_id, project_id, shares, amount, currency, created_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(pool.id)
        .bind(pledge.id)
        .bind(offer.id)
        .bind(offer.project_id)
        .bind(shares)
        .bind(amount.amount())
        .bind(offer.currency.code())
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        let escrow = chart::offer_escrow(conn, offer.id, offer.currency, now).await?;
        let entry = NewEntry::new(EntryKind::MatchApplied, format!("match:{}:applied", matched.id), now)
            .metadata(
                serde_json::json!({ "match_id": matched.id, "match_pool_id": pool.id, "sponsor_id": pool.sponsor_id,
                                          "pledge_id": pledge.id, "offer_id": offer.id }),
            )
            .debit(account, amount)
            .credit(escrow, amount);
        ledger::post(conn, entry).await?;
        outbox::emit(
            conn,
            EventType::MatchApplied,
            serde_json::json!({ "match_id": matched.id, "match_pool_id": pool.id, "sponsor_id": pool.sponsor_id,
                                "pledge_id": pledge.id, "offer_id": offer.id, "project_id": offer.project_id,
                                "shares": shares, "amount": amount.amount_string(), "currency": offer.currency }),
            now,
        )
        .await?;
        return Ok(Some(matched));
    }
    Ok(None)
}

fn whole_shares(amount: Decimal, offer: &Offer) -> i64 {
    if amount <= Decimal::ZERO {
        return 0;
    }
    i64::try_from((amount / offer.share_price.amount()).floor()).unwrap_or(i64::MAX)
}

/// `cols` with each column named through `alias`.
fn prefixed(cols: &str, alias: &str) -> String {
    cols.split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The matches of an offer still in its escrow, in the order of their pledges.
pub(crate) async fn applied_of_offer(conn: &mut PgConnection, offer_id: Uuid) -> sqlx::Result<Vec<Match>> {
    sqlx::query_as(&format!(
        "select {} from matches m join pledges pl on pl.id = m.pledge_id
          where m.offer_id = $1 and m.status = 'applied' order by pl.seq",
        prefixed(COLUMNS, "m")
    ))
    .bind(offer_id)
    .fetch_all(conn)
    .await
}

/// Gives back in full the matches of pledges that ended (revoked, refunded, cancelled) and
/// releases their shares. The caller holds the offer's lock.
pub(crate) async fn give_back(
    conn: &mut PgConnection,
    pledges: &[Uuid],
    why: Why,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    let matches: Vec<Match> = sqlx::query_as(&format!(
        "select {COLUMNS} from matches where pledge_id = any($1) and status = 'applied' order by pool_id, id"
    ))
    .bind(pledges)
    .fetch_all(&mut *conn)
    .await?;
    for m in &matches {
        return_money(conn, m, m.amount, why, now).await?;
        offers::store::release(conn, m.offer_id, m.shares).await?;
    }
    Ok(())
}

/// Settles an offer's matches at a successful close: each keeps `allocated` shares, and the
/// rest of its money goes back. The caller releases the unallocated shares with the pledges'.
pub(crate) async fn settle(
    conn: &mut PgConnection,
    offer: &Offer,
    matches: &[Match],
    allocated: &[i64],
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    let mut order: Vec<usize> = (0..matches.len()).collect();
    order.sort_by_key(|&i| (matches[i].pool_id, matches[i].id));
    for i in order {
        let (m, shares) = (&matches[i], allocated[i]);
        let back = m.amount - offer.price_of(shares).amount();
        if back > Decimal::ZERO {
            return_money(conn, m, back, Why::NotAllocated, now).await?;
        }
        sqlx::query(
            "update matches set status = $2, allocated_shares = $3, ended_at = coalesce(ended_at, $4) where id = $1",
        )
        .bind(m.id)
        .bind(if shares > 0 {
            MatchStatus::Allocated
        } else {
            MatchStatus::Returned
        })
        .bind(shares)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// `amount` of a match back from escrow: to its pool while the pool is live, else to its
/// sponsor's budget, under the pool's row lock (so an ending pool never misses it). Marks the
/// match returned when nothing of it is left in escrow.
async fn return_money(
    conn: &mut PgConnection,
    m: &Match,
    amount: Decimal,
    why: Why,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    let pool: Pool = sqlx::query_as(&format!(
        "select {} from match_pools where id = $1 for update",
        matchfunding::COLUMNS
    ))
    .bind(m.pool_id)
    .fetch_one(&mut *conn)
    .await?;
    let money = Money::new(amount, m.currency)?;
    let escrow = chart::offer_escrow(conn, m.offer_id, m.currency, now).await?;
    let to_pool = pool.ended_at.is_none();
    let (kind, to, column) = if to_pool {
        (
            EntryKind::MatchReturned,
            chart::match_pool(conn, pool.id, m.currency, now).await?,
            "returned_to_pool",
        )
    } else {
        (
            EntryKind::MatchPoolReturned,
            chart::sponsor_budget(conn, pool.sponsor_id, m.currency, now).await?,
            "returned_to_sponsor",
        )
    };
    let entry = NewEntry::new(kind, format!("match:{}:returned:{}", m.id, why.as_str()), now)
        .metadata(
            serde_json::json!({ "match_id": m.id, "match_pool_id": pool.id, "sponsor_id": pool.sponsor_id,
                                      "pledge_id": m.pledge_id, "offer_id": m.offer_id, "reason": why.as_str() }),
        )
        .debit(escrow, money)
        .credit(to, money);
    ledger::post(conn, entry).await?;
    let whole = amount == m.amount;
    sqlx::query(&format!(
        "update matches set {column} = {column} + $2,
                status = case when $3 then 'returned'::match_status else status end,
                ended_at = case when $3 then $4 else ended_at end
          where id = $1"
    ))
    .bind(m.id)
    .bind(amount)
    .bind(whole)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    outbox::emit(
        conn,
        EventType::MatchReturned,
        serde_json::json!({ "match_id": m.id, "match_pool_id": pool.id, "sponsor_id": pool.sponsor_id,
                            "pledge_id": m.pledge_id, "offer_id": m.offer_id, "amount": money.amount_string(),
                            "currency": m.currency, "to": if to_pool { "pool" } else { "sponsor" },
                            "reason": why.as_str() }),
        now,
    )
    .await?;
    Ok(())
}

/// A pool's matches, newest first, a page at a time.
pub(crate) async fn of_pool(
    conn: &mut PgConnection,
    pool: Uuid,
    page: &crate::paging::PageRequest<(DateTime<Utc>, Uuid)>,
) -> sqlx::Result<Vec<Match>> {
    let mut q = sqlx::QueryBuilder::new(format!("select {COLUMNS} from matches where pool_id = "));
    q.push_bind(pool);
    crate::paging::push_newest_first(&mut q, page.after, page.fetch());
    q.build_query_as().fetch_all(conn).await
}
