//! Closing big rounds, and preloading the database.
//!
//! Funding 100,000 pledges through the API (pledge, sandbox success, signed webhook) runs at a
//! couple of hundred per second, so the funded pledges here are SEEDED IN SQL, in bulk: exactly
//! the rows the real path leaves for a funded card pledge (the pledge, `funded`; its payment,
//! `succeeded`; the offer's `shares_reserved`; the money `psp → offer escrow` in the ledger, one
//! entry per chunk of pledges). Their outbox events are not written: they would have been
//! delivered long ago and play no part in a close. Seeding is not timed as part of the close.
//! What is measured goes through the real HTTP API: `POST /v1/offers/{id}/close` until the offer
//! has succeeded, then `GET /v1/offers/{id}/cap-table`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crowdledger::books::chart;
use crowdledger::ledger::{self, NewEntry};
use crowdledger::money::{Currency, Money};
use crowdledger::payments;
use crowdledger_client::Api;

/// Pledges seeded per transaction (and per ledger entry).
const CHUNK: i64 = 100_000;

/// The shares of the `g`-th seeded pledge (from 0): 1 to 5, like the flood's.
fn shares_of(g: i64) -> i64 {
    1 + g % 5
}

/// Shares of `n` seeded pledges.
pub fn total_shares(n: i64) -> i64 {
    (0..n).map(shares_of).sum()
}

/// A published project with one open offer at 1.00 a share, open for a month of the service's
/// (manual) clock.
pub async fn open_offer(
    api: &Api,
    name: &str,
    allocation: &str,
    min_shares: i64,
    max_shares: i64,
) -> anyhow::Result<String> {
    let now = api.now().await?;
    api.open_offer(
        name,
        allocation,
        (min_shares, max_shares),
        (now, now + chrono::TimeDelta::days(30)),
    )
    .await
}

/// What was seeded.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Seeded {
    pub pledges: i64,
    pub shares: i64,
    pub seconds: f64,
}

/// Whose the seeded pledges are.
#[derive(Clone, Copy)]
pub enum Owners<'a> {
    /// A fresh verified investor for every two pledges: a round's own crowd (the closes).
    Pairs,
    /// A platform's investors, drawn with a long tail (see `preload`): the `k`-th of `M` (from
    /// 0) owns about `n·(√(k+1) − √k)/√M` of the `n` pledges, the first ones thousands.
    Pool(&'a [Uuid]),
}

/// Inserts `count` verified sophisticated investors, numbered from `first` in their names and
/// addresses; returns their ids in that order.
async fn insert_investors(
    conn: &mut sqlx::PgConnection,
    first: i64,
    count: i64,
    run: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "insert into investors (id, kind, name, email, country, classification, kyc_status, created_at,
                                updated_at, kyc_decided_at)
         select gen_random_uuid(), 'natural', 'Seeded investor ' || g, 'seeded' || g || '.' || $2 || '@bench.example',
                'FR', 'sophisticated', 'verified', $3, $3, $3
           from generate_series($1::bigint, $1::bigint + $4::bigint - 1) g
          order by g
         returning id",
    )
    .bind(first)
    .bind(run)
    .bind(now)
    .bind(count)
    .fetch_all(conn)
    .await?)
}

/// Seeds `n` funded card pledges of verified sophisticated investors (`owners`) into the open EUR
/// offer `offer`, in SQL, `CHUNK` per transaction; each names the offer's KIIS, as a pledge made
/// through the API does.
pub async fn seed_funded(
    pool: &sqlx::PgPool,
    offer: Uuid,
    n: i64,
    now: DateTime<Utc>,
    owners: Owners<'_>,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let run = Uuid::new_v4().simple().to_string();
    // The owner of the `g`-th pledge, `$4` being the investors' ids: the pairs' (`$2` is the
    // chunk's first `g`), or the pool's, the `floor(M·r²)`-th for a uniform `r` in [0, 1).
    let owner = match owners {
        Owners::Pairs => "($4::uuid[])[(1 + (g - $2) / 2)::int]",
        Owners::Pool(_) => "($4::uuid[])[1 + floor(cardinality($4::uuid[]) * power(random(), 2))::int]",
    };
    let mut shares = 0;
    let mut from = 0;
    while from < n {
        let count = CHUNK.min(n - from);
        let mut tx = pool.begin().await?;
        let investors = match owners {
            Owners::Pairs => insert_investors(&mut tx, from, (count + 1) / 2, &run, now).await?,
            Owners::Pool(ids) => ids.to_vec(),
        };
        // The entry that captures the chunk's money (posted below), which its payments name.
        let capture = Uuid::now_v7();
        // One statement: the pledges, their succeeded payments and the offer's reservation. The
        // `g`-th pledge has 1 + g % 5 shares, as `shares_of` says.
        let (pledged, shares_in_chunk, amount): (i64, i64, Decimal) = sqlx::query_as(&format!(
            "with o as (select id, currency, share_price, payment_window_seconds, kiis_sha256s from offers
                         where id = $1 and status = 'open'),
                  p as (insert into pledges (id, offer_id, investor_id, shares, amount, currency, funding,
                                             card_amount, status, payment_due_at, created_at, kiis_sha256)
                        select gen_random_uuid(), o.id, {owner}, 1 + g % 5,
                               (1 + g % 5) * o.share_price, o.currency,
                               jsonb_build_array(jsonb_build_object('kind', 'card',
                                   'amount', ((1 + g % 5) * o.share_price)::numeric(20, 2)::text)),
                               (1 + g % 5) * o.share_price, 'pending_payment',
                               $5::timestamptz + make_interval(secs => o.payment_window_seconds), $5,
                               o.kiis_sha256s[1]
                          from o, generate_series($2::bigint, $2::bigint + $3::bigint - 1) g
                         order by g
                        returning id, shares, amount, currency),
                  pay as (insert into payments (id, provider, provider_payment_id, pledge_id, amount, currency,
                                                status, created_at, settled_at, captured_entry_id)
                          select x.id, $6, 'pay_' || replace(x.id::text, '-', ''), x.pledge_id, x.amount, x.currency,
                                 'succeeded', $5, $5, $7
                            from (select gen_random_uuid() as id, p.id as pledge_id, p.amount, p.currency from p) x),
                  r as (update offers set shares_reserved = shares_reserved + (select sum(shares) from p)
                         where id = $1)
             select count(*), coalesce(sum(shares), 0)::bigint, coalesce(sum(amount), 0) from p"
        ))
        .bind(offer)
        .bind(from)
        .bind(count)
        .bind(&investors)
        .bind(now)
        .bind(payments::SANDBOX)
        .bind(capture)
        .fetch_one(&mut *tx)
        .await
        .context("seeding funded pledges")?;
        if pledged != count {
            bail!("seeded {pledged} pledges instead of {count}: is offer {offer} open?");
        }
        // Funded afterwards, as the service funds them: every pledge row gets the second
        // version a real one has, so pages hold what they would after a flood.
        sqlx::query(
            "update pledges set status = 'funded', funded_at = $2 where offer_id = $1 and status = 'pending_payment'",
        )
        .bind(offer)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("funding the seeded pledges")?;
        // The money those payments captured: psp → escrow, as `payments::confirm_payments` posts
        // it for a batch, one entry for the chunk.
        let money = Money::new(amount, Currency::parse("EUR")?)?;
        let psp = chart::psp(&mut tx, payments::SANDBOX, money.currency(), now).await?;
        let escrow = chart::offer_escrow(&mut tx, offer, money.currency(), now).await?;
        let mut entry = NewEntry::new("pledge.funded", format!("bench:seed:{offer}:{from}"), now)
            .metadata(json!({"offer_id": offer, "seeded_by": "crowdledger-bench", "pledges": pledged}))
            .debit(psp, money)
            .credit(escrow, money);
        entry.id = capture;
        ledger::post(&mut tx, entry).await?;
        tx.commit().await?;
        shares += shares_in_chunk;
        from += count;
        if n > CHUNK {
            eprintln!("  seeded {from} of {n} pledges");
        }
    }
    Ok(Seeded {
        pledges: n,
        shares,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Pledges per preloaded round: a platform's million pledges are many rounds', and a round of
/// 100,000 closes in seconds.
const PRELOAD_ROUND: i64 = 100_000;

/// Pledges per investor of the preload, on average.
const PLEDGES_PER_INVESTOR: i64 = 50;

/// What the preload left: its pledges and the platform's investors who own them.
pub struct Preloaded {
    pub seeded: Seeded,
    /// The investors, the heaviest first (`Owners::Pool`).
    pub investors: Vec<Uuid>,
    pub rounds: usize,
    /// Rounds closed through the API (not timed): their pledges are holdings.
    pub closed: usize,
}

/// Seeds `n` funded pledges on rounds of their own (`PRELOAD_ROUND` each), owned by a pool of
/// `n / PLEDGES_PER_INVESTOR` investors with a long tail (`Owners::Pool`: with a million, half
/// own fewer than about 35, one in a hundred over 250, the first ten over 1,000 and the first
/// 7,000); closes every other round through the API, so investors hold shares; then vacuums,
/// analyzes and checkpoints, as a database holding them for a while would be.
pub async fn preload(api: &Api, pool: &sqlx::PgPool, n: i64) -> anyhow::Result<Preloaded> {
    let started = Instant::now();
    let now = api.now().await?;
    let run = Uuid::new_v4().simple().to_string();
    let mut conn = pool.acquire().await?;
    let investors = insert_investors(&mut conn, 0, (n / PLEDGES_PER_INVESTOR).max(1), &run, now).await?;
    drop(conn);
    let mut left = n;
    let mut shares = 0;
    let mut rounds = Vec::new();
    while left > 0 {
        let count = left.min(PRELOAD_ROUND);
        let cap = total_shares(count);
        let offer = open_offer(api, "Preloaded round", "first_come", 1, cap).await?;
        let now = api.now().await?;
        shares += seed_funded(pool, offer.parse()?, count, now, Owners::Pool(&investors))
            .await?
            .shares;
        rounds.push(offer);
        left -= count;
        eprintln!("  seeded {} of {n} pledges", n - left);
    }
    // Sold out, so a first_come round closes at once: everything allocated, nothing refunded.
    let mut closed = 0;
    for offer in rounds.iter().step_by(2) {
        api.post(&format!("/v1/offers/{offer}/close"), json!({})).await.ok();
        let status = settled(api, offer).await?;
        if status != "succeeded" {
            bail!("preloaded round {offer} ended {status}, not succeeded");
        }
        closed += 1;
    }
    eprintln!("  closed {closed} of {} rounds through the API", rounds.len());
    after_seeding(pool, "the flood").await?;
    Ok(Preloaded {
        seeded: Seeded {
            pledges: n,
            shares,
            seconds: started.elapsed().as_secs_f64(),
        },
        investors,
        rounds: rounds.len(),
        closed,
    })
}

/// What a database holding freshly seeded rows for a while would have done: vacuumed and
/// analysed them, and checkpointed. Otherwise autovacuum and the checkpointer would run during
/// the timed part, on rows that arrived in one minute rather than over days.
async fn after_seeding(pool: &sqlx::PgPool, then: &str) -> anyhow::Result<()> {
    sqlx::query("vacuum analyze pledges, payments, investors, offers")
        .execute(pool)
        .await?;
    if let Err(err) = sqlx::query("checkpoint").execute(pool).await {
        eprintln!("  no checkpoint after seeding ({err}); {then} may meet one");
    }
    Ok(())
}

/// One round closed and checked.
#[derive(Clone, Debug, Serialize)]
pub struct CloseRun {
    pub allocation: String,
    pub offer: String,
    pub pledges: i64,
    pub funded_shares: i64,
    pub cap_shares: i64,
    pub seed_seconds: f64,
    /// From `POST /close` until the offer is `succeeded`.
    pub close_seconds: f64,
    /// How the close answered: `200 succeeded`, or what it said before the offer was polled.
    pub close_answer: String,
    pub cap_table_seconds: f64,
    pub cap_table_investors: usize,
    pub cap_table_shares: i64,
    pub allocated_shares: i64,
    pub refunds: i64,
    pub refunded: Decimal,
    pub checks: CloseChecks,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct CloseChecks {
    pub succeeded: bool,
    /// first_come: every funded share; pro_rata: exactly the cap.
    pub allocated_as_expected: bool,
    pub cap_table_matches: bool,
    /// The refunds owed add up to the funded money less what was allocated.
    pub refunds_match: bool,
    pub ledger_verified: bool,
}

impl CloseChecks {
    pub fn passed(&self) -> bool {
        self.succeeded
            && self.allocated_as_expected
            && self.cap_table_matches
            && self.refunds_match
            && self.ledger_verified
    }
}

/// A round of `n` funded pledges: `first_come` sold out, or `pro_rata` oversubscribed twice.
/// Seeds it, closes it through the API (timed), reads its cap table (timed) and checks it.
pub async fn close_round(api: &Api, pool: &sqlx::PgPool, allocation: &str, n: i64) -> anyhow::Result<CloseRun> {
    let funded = total_shares(n);
    let cap = match allocation {
        "first_come" => funded,
        _ => (funded / 2).max(1),
    };
    let offer = open_offer(api, &format!("Closing round {n}"), allocation, (cap / 2).max(1), cap).await?;
    let now = api.now().await?;
    eprintln!("close, {allocation}, {n} pledges: seeding in SQL");
    let seeded = seed_funded(pool, offer.parse()?, n, now, Owners::Pairs).await?;
    after_seeding(pool, "the close").await?;

    let started = Instant::now();
    let close_answer = match api.post(&format!("/v1/offers/{offer}/close"), json!({})).await {
        Ok(v) => format!("200 {}", v["status"].as_str().unwrap_or("?")),
        Err(e) => format!("{e:#}"),
    };
    let status = settled(api, &offer).await?;
    let close_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let table = api.get(&format!("/v1/offers/{offer}/cap-table")).await;
    let cap_table_seconds = started.elapsed().as_secs_f64();
    let table = table.unwrap_or(Value::Null);
    let view = api.get(&format!("/v1/offers/{offer}")).await?;
    let allocated = view["shares_allocated"].as_i64().unwrap_or(-1);
    let (refunds, refunded): (i64, Decimal) = sqlx::query_as(
        "select count(*), coalesce(sum(r.amount), 0) from refunds r join pledges p on p.id = r.pledge_id
          where p.offer_id = $1::uuid",
    )
    .bind(&offer)
    .fetch_one(pool)
    .await?;
    let verified = api.get("/v1/ledger/verify").await?;
    let cap_table_shares = table["total_shares"].as_i64().unwrap_or(-1);
    let run = CloseRun {
        allocation: allocation.to_string(),
        offer,
        pledges: n,
        funded_shares: funded,
        cap_shares: cap,
        seed_seconds: seeded.seconds,
        close_seconds,
        close_answer,
        cap_table_seconds,
        cap_table_investors: table["investors"].as_array().map_or(0, Vec::len),
        cap_table_shares,
        allocated_shares: allocated,
        refunds,
        refunded,
        checks: CloseChecks {
            succeeded: status == "succeeded",
            allocated_as_expected: allocated == cap,
            cap_table_matches: cap_table_shares == allocated,
            // At 1.00 a share.
            refunds_match: refunded == Decimal::from(funded - allocated),
            ledger_verified: verified["ok"] == true,
        },
    };
    eprintln!(
        "  closed in {:.2} s ({}), cap table in {:.2} s ({} investors), {} refunds; checks {}",
        run.close_seconds,
        run.close_answer,
        run.cap_table_seconds,
        run.cap_table_investors,
        run.refunds,
        if run.checks.passed() { "passed" } else { "FAILED" }
    );
    Ok(run)
}

/// Waits for a closing offer to end (the background job takes it on if the request gave up).
async fn settled(api: &Api, offer: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let view = api.get(&format!("/v1/offers/{offer}")).await?;
        let status = view["status"].as_str().unwrap_or_default().to_string();
        if status != "closing" && status != "open" {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("offer {offer} still {status} after an hour");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
