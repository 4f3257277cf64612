//! The SQL of the `pledges` table.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Pledge, PledgeStatus};
use crate::audit::{Author, Record};
use crate::money::{Currency, Money};

#[derive(sqlx::FromRow)]
struct PledgeRow {
    id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    seq: i64,
    shares: i64,
    amount: Decimal,
    currency: String,
    funding: serde_json::Value,
    card_amount: Decimal,
    status: PledgeStatus,
    risk_acknowledged: bool,
    reflection_ends_at: Option<DateTime<Utc>>,
    payment_due_at: DateTime<Utc>,
    allocated_shares: Option<i64>,
    refunded_amount: Option<Decimal>,
    created_at: DateTime<Utc>,
    funded_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    kiis_sha256: Option<String>,
    risk_warning_version: Option<String>,
    appropriateness_id: Option<Uuid>,
    reconfirm_by: Option<DateTime<Utc>>,
    reconfirmed_at: Option<DateTime<Utc>>,
}

impl From<PledgeRow> for Pledge {
    fn from(r: PledgeRow) -> Pledge {
        let currency = Currency::parse(&r.currency).expect("pledges hold valid currencies");
        Pledge {
            id: r.id,
            offer_id: r.offer_id,
            investor_id: r.investor_id,
            seq: r.seq,
            shares: r.shares,
            amount: Money::new(r.amount, currency).expect("pledges hold valid amounts"),
            funding: r.funding,
            card_amount: r.card_amount,
            status: r.status,
            risk_acknowledged: r.risk_acknowledged,
            reflection_ends_at: r.reflection_ends_at,
            payment_due_at: r.payment_due_at,
            allocated_shares: r.allocated_shares,
            refunded_amount: r.refunded_amount,
            created_at: r.created_at,
            funded_at: r.funded_at,
            ended_at: r.ended_at,
            consent: super::Consent {
                kiis_sha256: r.kiis_sha256,
                risk_warning_version: r.risk_warning_version,
                appropriateness_id: r.appropriateness_id,
            },
            reconfirm_by: r.reconfirm_by,
            reconfirmed_at: r.reconfirmed_at,
        }
    }
}

const COLUMNS: &str = "id, offer_id, investor_id, seq, shares, amount, currency, funding, card_amount, status,
    risk_acknowledged, reflection_ends_at, payment_due_at, allocated_shares, refunded_amount, created_at,
    funded_at, ended_at, kiis_sha256, risk_warning_version, appropriateness_id, reconfirm_by, reconfirmed_at";

pub struct NewPledge {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub investor_id: Uuid,
    pub shares: i64,
    pub amount: Money,
    pub funding: serde_json::Value,
    pub card_amount: Decimal,
    pub risk_acknowledged: bool,
    pub reflection_ends_at: Option<DateTime<Utc>>,
    pub payment_due_at: DateTime<Utc>,
    /// Whether it counts in the totals [`lock_ticket_totals`] reads (migration 0022).
    pub in_ticket_totals: bool,
    pub consent: super::Consent,
}

/// Inserts a pledge made by `author` (kept for the audit trail, docs/audit-log.md).
pub(crate) async fn insert(
    conn: &mut PgConnection,
    p: &NewPledge,
    author: Author,
    now: DateTime<Utc>,
) -> sqlx::Result<Pledge> {
    let row: PledgeRow = sqlx::query_as(&format!(
        "insert into pledges (id, offer_id, investor_id, shares, amount, currency, funding, card_amount,
                              risk_acknowledged, reflection_ends_at, payment_due_at, created_at,
                              in_ticket_totals, made_by_key, made_by_role, kiis_sha256, risk_warning_version,
                              appropriateness_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::api_role, $16, $17, $18)
         returning {COLUMNS}"
    ))
    .bind(p.id)
    .bind(p.offer_id)
    .bind(p.investor_id)
    .bind(p.shares)
    .bind(p.amount.amount())
    .bind(p.amount.currency().code())
    .bind(&p.funding)
    .bind(p.card_amount)
    .bind(p.risk_acknowledged)
    .bind(p.reflection_ends_at)
    .bind(p.payment_due_at)
    .bind(now)
    .bind(p.in_ticket_totals)
    .bind(author.key_id)
    .bind(author.role.as_str())
    .bind(&p.consent.kiis_sha256)
    .bind(&p.consent.risk_warning_version)
    .bind(p.consent.appropriateness_id)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Inserts many pledges in one statement (the batcher's); each with its own `created_at` and
/// author. Returns them in the order given.
pub(crate) async fn insert_many(
    conn: &mut PgConnection,
    pledges: &[(&NewPledge, DateTime<Utc>, Author)],
) -> sqlx::Result<Vec<Pledge>> {
    let col = |f: fn(&NewPledge) -> _| pledges.iter().map(|(p, ..)| f(p)).collect::<Vec<_>>();
    let ids: Vec<Uuid> = col(|p| p.id);
    let rows: Vec<PledgeRow> = sqlx::query_as(&format!(
        "insert into pledges (id, offer_id, investor_id, shares, amount, currency, funding, card_amount,
                              risk_acknowledged, reflection_ends_at, payment_due_at, created_at,
                              in_ticket_totals, made_by_key, made_by_role, kiis_sha256, risk_warning_version,
                              appropriateness_id)
         select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::numeric[], $6::text[],
                              $7::jsonb[], $8::numeric[], $9::bool[], $10::timestamptz[], $11::timestamptz[],
                              $12::timestamptz[], $13::bool[], $14::uuid[], $15::api_role[], $16::text[],
                              $17::text[], $18::uuid[])
         returning {COLUMNS}"
    ))
    .bind(&ids)
    .bind(col(|p| p.offer_id))
    .bind(col(|p| p.investor_id))
    .bind(pledges.iter().map(|(p, ..)| p.shares).collect::<Vec<i64>>())
    .bind(
        pledges
            .iter()
            .map(|(p, ..)| p.amount.amount())
            .collect::<Vec<Decimal>>(),
    )
    .bind(
        pledges
            .iter()
            .map(|(p, ..)| p.amount.currency().code())
            .collect::<Vec<&str>>(),
    )
    .bind(
        pledges
            .iter()
            .map(|(p, ..)| p.funding.clone())
            .collect::<Vec<serde_json::Value>>(),
    )
    .bind(pledges.iter().map(|(p, ..)| p.card_amount).collect::<Vec<Decimal>>())
    .bind(pledges.iter().map(|(p, ..)| p.risk_acknowledged).collect::<Vec<bool>>())
    .bind(
        pledges
            .iter()
            .map(|(p, ..)| p.reflection_ends_at)
            .collect::<Vec<Option<DateTime<Utc>>>>(),
    )
    .bind(
        pledges
            .iter()
            .map(|(p, ..)| p.payment_due_at)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .bind(pledges.iter().map(|(_, now, _)| *now).collect::<Vec<DateTime<Utc>>>())
    .bind(pledges.iter().map(|(p, ..)| p.in_ticket_totals).collect::<Vec<bool>>())
    .bind(pledges.iter().map(|(.., a)| a.key_id).collect::<Vec<Option<Uuid>>>())
    .bind(pledges.iter().map(|(.., a)| a.role.as_str()).collect::<Vec<&str>>())
    .bind(
        pledges
            .iter()
            .map(|(p, ..)| p.consent.kiis_sha256.as_deref())
            .collect::<Vec<Option<&str>>>(),
    )
    .bind(
        pledges
            .iter()
            .map(|(p, ..)| p.consent.risk_warning_version.as_deref())
            .collect::<Vec<Option<&str>>>(),
    )
    .bind(
        pledges
            .iter()
            .map(|(p, ..)| p.consent.appropriateness_id)
            .collect::<Vec<Option<Uuid>>>(),
    )
    .fetch_all(conn)
    .await?;
    let mut by_id: std::collections::HashMap<Uuid, Pledge> =
        rows.into_iter().map(|r| (r.id, Pledge::from(r))).collect();
    Ok(ids
        .iter()
        .map(|id| by_id.remove(id).expect("every pledge was inserted"))
        .collect())
}

/// The route pledges are made on, as the audit trail names it.
pub(crate) const CREATE_ROUTE: &str = "/v1/offers/{id}/pledges";

/// Pledges' creations as records of the audit trail (docs/audit-log.md), newest first: the
/// pledge's id is the record's (both are UUIDv7) and its object, `created_at` its time. Only
/// pledges that keep their author (made since migration 0032); `pledge` and `key_id` filter,
/// `after` is the previous page's last id. The primary key serves the order.
pub(crate) async fn creations(
    conn: &mut PgConnection,
    pledge: Option<Uuid>,
    key_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Record>> {
    let mut conditions = vec!["made_by_role is not null"];
    if pledge.is_some() {
        conditions.push("id = $1");
    }
    if key_id.is_some() {
        conditions.push("made_by_key = $2");
    }
    if after.is_some() {
        conditions.push("id < $3");
    }
    sqlx::query_as(&format!(
        "select id, created_at as at, made_by_key as key_id, made_by_role as role, 'POST' as method,
                $5 as route, id::text as object_id, 201::int2 as status
           from pledges
          where {}
          order by id desc
          limit $4",
        conditions.join(" and ")
    ))
    .bind(pledge)
    .bind(key_id)
    .bind(after)
    .bind(limit)
    .bind(CREATE_ROUTE)
    .fetch_all(conn)
    .await
}

/// The key of an investor's ticket lock on an offer: a transaction-scoped Postgres advisory lock,
/// so it holds across `serve` processes and ends with the transaction. The first 8 bytes of a
/// SHA-256, the same in every process and release; two pairs that happened to share a key would
/// only wait for each other.
fn ticket_lock_key(offer_id: Uuid, investor_id: Uuid) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"ticket:")
        .chain_update(offer_id.as_bytes())
        .chain_update(investor_id.as_bytes())
        .finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

/// Takes the ticket locks of these investors on an offer, in ascending key order (so two
/// transactions never wait on each other in a cycle), then reads each one's total of live
/// pledges (pending, funded or allocated) on it. Investors with none are left out. Call inside
/// a transaction, before locking the offer's row: the locks are held until it ends, so each
/// pledge of these investors on the offer that could be refused for its total is judged after
/// the ones before it commit (docs/rounds.md, "Per-offer totals").
pub(crate) async fn lock_ticket_totals(
    conn: &mut PgConnection,
    offer_id: Uuid,
    investor_ids: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, Decimal>> {
    let mut keys: Vec<i64> = investor_ids.iter().map(|i| ticket_lock_key(offer_id, *i)).collect();
    keys.sort_unstable();
    keys.dedup();
    // `unnest` yields the keys in the array's order.
    sqlx::query("select pg_advisory_xact_lock(k) from unnest($1::bigint[]) as k")
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
    // A statement of its own, begun once the locks are held: under read committed its snapshot
    // then sees every pledge committed by the lock's previous holders.
    let totals: Vec<(Uuid, Decimal)> = sqlx::query_as(
        "select investor_id, sum(amount) from pledges
          where offer_id = $1 and investor_id = any($2) and in_ticket_totals
            and status in ('pending_payment', 'funded', 'allocated')
          group by investor_id",
    )
    .bind(offer_id)
    .bind(investor_ids)
    .fetch_all(conn)
    .await?;
    Ok(totals.into_iter().collect())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Pledge>> {
    let row: Option<PledgeRow> = sqlx::query_as(&format!("select {COLUMNS} from pledges where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Pledge::from))
}

/// Reads and locks a pledge. Lock order everywhere: ticket locks ([`lock_ticket_totals`]), offer,
/// then pledge, then payment.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Pledge>> {
    let row: Option<PledgeRow> = sqlx::query_as(&format!("select {COLUMNS} from pledges where id = $1 for update"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Pledge::from))
}

/// An offer's pledges in arrival order, optionally only those in `statuses`, locked if asked.
pub(crate) async fn of_offer(
    conn: &mut PgConnection,
    offer_id: Uuid,
    statuses: Option<&[PledgeStatus]>,
    after_seq: i64,
    limit: i64,
    for_update: bool,
) -> sqlx::Result<Vec<Pledge>> {
    let lock = if for_update { "for update" } else { "" };
    let rows: Vec<PledgeRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from pledges
          where offer_id = $1 and ($2::pledge_status[] is null or status = any($2)) and seq > $3
          order by seq limit $4 {lock}"
    ))
    .bind(offer_id)
    .bind(statuses)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Pledge::from).collect())
}

/// Which of an investor's pledges a list shows.
#[derive(Debug, Default)]
pub(crate) struct InvestorPledgeFilter {
    pub offer_id: Option<Uuid>,
    pub status: Option<PledgeStatus>,
}

/// An investor's pledges, newest first, after the keyset position `after`: a range of the
/// `pledges_investor_created_idx` index (migration 0025), however many pledges are stored.
pub(crate) async fn of_investor(
    conn: &mut PgConnection,
    investor_id: Uuid,
    filter: &InvestorPledgeFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<Pledge>> {
    // Only the predicates asked for: a cursor's row comparison then bounds the index scan.
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("select {COLUMNS} from pledges where investor_id = "));
    q.push_bind(investor_id);
    if let Some(offer_id) = filter.offer_id {
        q.push(" and offer_id = ").push_bind(offer_id);
    }
    if let Some(status) = filter.status {
        q.push(" and status = ").push_bind(status);
    }
    crate::paging::push_newest_first(&mut q, after, limit);
    let rows: Vec<PledgeRow> = q.build_query_as().fetch_all(conn).await?;
    Ok(rows.into_iter().map(Pledge::from).collect())
}

/// What an investor holds in one succeeded offer: the shares allocated to their pledges on it,
/// what those shares cost, and the part of that paid by cheques.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Holding {
    pub offer_id: Uuid,
    pub project_id: Uuid,
    pub project_name: String,
    pub currency: String,
    pub shares: i64,
    pub amount_invested: Decimal,
    pub amount_by_cheque: Decimal,
    pub closed_at: DateTime<Utc>,
}

/// An investor's holdings, one per succeeded offer they were allocated shares in, the latest
/// closed first, after the keyset position `after` (the offer's `closed_at` and id).
///
/// What a pledge kept is its amount less what was refunded; a close refunds the card part first
/// (`rounds::ending::give_back_many`), so the cheques' part of what it kept is what the cheques
/// paid less what was given back to them (`cheque_redemptions.returned`). Only a pledge with a
/// cheque part (`card_amount < amount`, fixed when pledged) has redemptions: the others skip the
/// probe, which was a third of the time for an investor of thousands of pledges.
pub(crate) async fn holdings(
    conn: &mut PgConnection,
    investor_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<Holding>> {
    let (after_at, after_id) = after.unzip();
    sqlx::query_as(
        "select o.id as offer_id, o.project_id, pr.name as project_name, o.currency,
                sum(p.allocated_shares)::bigint as shares,
                sum(p.amount - coalesce(p.refunded_amount, 0)) as amount_invested,
                coalesce(sum(c.by_cheque), 0) as amount_by_cheque,
                o.closed_at
           from pledges p
           join offers o on o.id = p.offer_id
           join projects pr on pr.id = o.project_id
           left join lateral (select sum(r.amount - r.returned) as by_cheque
                                from cheque_redemptions r
                               where r.pledge_id = p.id and p.card_amount < p.amount) c on true
          where p.investor_id = $1 and p.status = 'allocated' and p.allocated_shares > 0
            and o.status = 'succeeded'
            and ($2::timestamptz is null or (o.closed_at, o.id) < ($2, $3))
          group by o.id, pr.name
          order by o.closed_at desc, o.id desc
          limit $4",
    )
    .bind(investor_id)
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Funds those of many pledges that are still pending and within their payment window at `now`,
/// locking them in id order (so two batches lock them in one order); returns the funded ones.
/// Pledges of an offer a sponsor's pool may match are left for the one-by-one path, which
/// locks the offer first to match them (migration 0042).
pub(crate) async fn fund_many(conn: &mut PgConnection, ids: &[Uuid], now: DateTime<Utc>) -> sqlx::Result<Vec<Pledge>> {
    let rows: Vec<PledgeRow> = sqlx::query_as(&format!(
        "update pledges set status = 'funded', funded_at = $2
          where id in (select id from pledges
                        where id = any($1) and status = 'pending_payment' and payment_due_at > $2
                          and not (select matchable from offers o where o.id = pledges.offer_id)
                        order by id for update)
          returning {COLUMNS}"
    ))
    .bind(ids)
    .bind(now)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Pledge::from).collect())
}

pub(crate) async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: PledgeStatus,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let column = match status {
        PledgeStatus::Funded => "funded_at",
        _ => "ended_at",
    };
    sqlx::query(&format!("update pledges set status = $2, {column} = $3 where id = $1"))
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends funded pledges whose whole amount was given back (`revoked`, or `refunded` when their
/// round failed or was cancelled): `refunded_amount` is then their amount.
pub(crate) async fn end_given_back(
    conn: &mut PgConnection,
    ids: &[Uuid],
    status: PledgeStatus,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    debug_assert!(matches!(status, PledgeStatus::Revoked | PledgeStatus::Refunded));
    sqlx::query("update pledges set status = $2, ended_at = $3, refunded_amount = amount where id = any($1)")
        .bind(ids)
        .bind(status)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds card money owed straight back to an ended pledge (its payment arrived too late) to
/// what it was given back.
pub(crate) async fn add_refunded(conn: &mut PgConnection, id: Uuid, amount: Decimal) -> sqlx::Result<()> {
    sqlx::query("update pledges set refunded_amount = coalesce(refunded_amount, 0) + $2 where id = $1")
        .bind(id)
        .bind(amount)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the outcome of allocation for many pledges at once.
pub async fn set_allocations(
    conn: &mut PgConnection,
    ids: &[Uuid],
    allocated: &[i64],
    refunded: &[Decimal],
    statuses: &[PledgeStatus],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "update pledges p set allocated_shares = a.allocated, refunded_amount = a.refunded, status = a.status,
                              ended_at = $5
           from unnest($1::uuid[], $2::bigint[], $3::numeric[], $4::pledge_status[]) as a(id, allocated, refunded, status)
          where p.id = a.id",
    )
    .bind(ids)
    .bind(allocated)
    .bind(refunded)
    .bind(statuses)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Pending pledges whose payment window has passed, oldest first (`awaiting_payment_until` is
/// set only while a pledge is pending: migration 0019).
pub async fn overdue(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> sqlx::Result<Vec<(Uuid, Uuid)>> {
    sqlx::query_as(
        "select id, offer_id from pledges where awaiting_payment_until <= $1
          order by awaiting_payment_until limit $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Asks the investors of an offer's live pledges of non-sophisticated investors (those with a
/// reflection period) to reconfirm them by `by`; returns them. The caller holds the offer's lock.
pub(crate) async fn ask_reconfirmation(
    conn: &mut PgConnection,
    offer_id: Uuid,
    by: DateTime<Utc>,
) -> sqlx::Result<Vec<Pledge>> {
    let rows: Vec<PledgeRow> = sqlx::query_as(&format!(
        "update pledges set reconfirm_by = $2
          where offer_id = $1 and status in ('pending_payment', 'funded') and reflection_ends_at is not null
          returning {COLUMNS}"
    ))
    .bind(offer_id)
    .bind(by)
    .fetch_all(conn)
    .await?;
    let mut pledges: Vec<Pledge> = rows.into_iter().map(Pledge::from).collect();
    pledges.sort_by_key(|p| p.seq);
    Ok(pledges)
}

/// Records a pledge's reconfirmation under the KIIS `kiis_sha256`: kept for good in
/// `pledge_reconfirmations`, and nothing pending any more.
pub(crate) async fn record_reconfirmation(
    conn: &mut PgConnection,
    id: Uuid,
    kiis_sha256: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("insert into pledge_reconfirmations (pledge_id, kiis_sha256, reconfirmed_at) values ($1, $2, $3)")
        .bind(id)
        .bind(kiis_sha256)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("update pledges set reconfirm_by = null, reconfirmed_at = $2 where id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Nothing pending any more for a pledge that ended (so it leaves the index the job reads).
pub(crate) async fn clear_reconfirmation(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("update pledges set reconfirm_by = null where id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Pledges whose time to reconfirm has passed at `now`, the earliest first: `(pledge, offer)`.
pub(crate) async fn reconfirmation_lapsed(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid)>> {
    sqlx::query_as("select id, offer_id from pledges where reconfirm_by <= $1 order by reconfirm_by limit $2")
        .bind(now)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// One reconfirmation of a pledge: the KIIS, and when.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct Reconfirmation {
    pub pledge_id: Uuid,
    pub kiis_sha256: String,
    pub reconfirmed_at: DateTime<Utc>,
}

/// The reconfirmations of these pledges, oldest first.
pub(crate) async fn reconfirmations(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Reconfirmation>> {
    sqlx::query_as(
        "select pledge_id, kiis_sha256, reconfirmed_at from pledge_reconfirmations
          where pledge_id = any($1) order by pledge_id, reconfirmed_at",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}
