//! What must hold after the crashes, read from the database and the service: every
//! acknowledged pledge with the right state, no offer oversold, no cheque overspent, each due
//! job done once, every outbox event delivered, the books verified.

use std::collections::{BTreeMap, HashMap, HashSet};

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::work::AckedPledge;

/// One check: how many items it looked at, and what was wrong with them.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub checked: u64,
    pub violations: Vec<String>,
    /// Items that took the documented but rarer path (said in the report).
    pub noted: u64,
}

impl Check {
    fn new(name: &str) -> Self {
        Check {
            name: name.to_string(),
            checked: 0,
            violations: Vec::new(),
            noted: 0,
        }
    }
}

/// Every acknowledged pledge exists, on its offer, with its shares; one acknowledged as funded
/// is funded or later, or — when its payment lost the race with the round's close (captured
/// after `closes_at`, applied after the close cancelled the unpaid pledge) — cancelled with that
/// payment refunded in full, as `payment_after_pledge_ended`.
pub async fn acknowledged_pledges(pool: &PgPool, acked: &[AckedPledge]) -> anyhow::Result<Check> {
    let mut check = Check::new("acknowledged pledges exist, funded ones funded");
    let ids: Vec<Uuid> = acked.iter().filter_map(|p| p.id.parse().ok()).collect();
    if ids.len() != acked.len() {
        check.violations.push("an acknowledged pledge without a UUID".into());
    }
    let rows: Vec<(Uuid, Uuid, i64, String, bool)> = sqlx::query_as(
        "select p.id, p.offer_id, p.shares, p.status::text,
                exists (select 1 from refunds r
                         where r.pledge_id = p.id and r.reason = 'payment_after_pledge_ended' and r.amount = p.amount)
           from pledges p where p.id = any($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let stored: HashMap<Uuid, (Uuid, i64, String, bool)> =
        rows.into_iter().map(|(id, o, s, st, r)| (id, (o, s, st, r))).collect();
    for pledge in acked {
        check.checked += 1;
        let Some((offer, shares, status, late_payment_refunded)) =
            pledge.id.parse().ok().and_then(|id: Uuid| stored.get(&id))
        else {
            check
                .violations
                .push(format!("pledge {} acknowledged but not stored", pledge.id));
            continue;
        };
        if offer.to_string() != pledge.offer || *shares != pledge.shares {
            check
                .violations
                .push(format!("pledge {} stored with other offer or shares", pledge.id));
        }
        let funded_or_later = matches!(status.as_str(), "funded" | "allocated" | "refunded" | "revoked");
        let lost_the_race = status == "cancelled" && *late_payment_refunded;
        if lost_the_race {
            check.noted += 1;
        }
        if pledge.funded && !funded_or_later && !lost_the_race {
            check
                .violations
                .push(format!("pledge {} acknowledged as funded but {status}", pledge.id));
        }
    }
    Ok(check)
}

/// No offer holds more shares than its cap: reserved, pledged (first_come) or allocated.
pub async fn offers_within_cap(pool: &PgPool, offers: &[Uuid]) -> anyhow::Result<Check> {
    let mut check = Check::new("no offer oversold");
    let rows: Vec<(Uuid, String, i64, i64, i64, i64)> = sqlx::query_as(
        "select o.id, o.allocation::text, o.max_shares, o.shares_reserved,
                coalesce(sum(p.shares) filter (where o.allocation = 'first_come'
                                                 and p.status in ('pending_payment', 'funded', 'allocated')), 0)::bigint,
                coalesce(sum(p.allocated_shares), 0)::bigint
           from offers o left join pledges p on p.offer_id = o.id
          where o.id = any($1)
          group by o.id",
    )
    .bind(offers)
    .fetch_all(pool)
    .await?;
    for (id, allocation, cap, reserved, pledged, allocated) in rows {
        check.checked += 1;
        if (allocation == "first_come" && reserved > cap) || pledged > cap || allocated > cap {
            check.violations.push(format!(
                "offer {id} ({allocation}): cap {cap}, reserved {reserved}, pledged {pledged}, allocated {allocated}"
            ));
        }
    }
    Ok(check)
}

/// No cheque spent beyond its face value.
pub async fn cheques_not_overspent(pool: &PgPool) -> anyhow::Result<Check> {
    let mut check = Check::new("no cheque double-spent");
    // The cheque's ledger account may not be overdrawn either: the database refuses it, and
    // `crowdledger verify` checks it.
    let rows: Vec<(Uuid, Decimal, Decimal)> = sqlx::query_as(
        "select c.id, c.face_value, coalesce(sum(r.amount - r.returned), 0)
           from cheques c left join cheque_redemptions r on r.cheque_id = c.id
          group by c.id",
    )
    .fetch_all(pool)
    .await?;
    for (id, face, spent) in rows {
        check.checked += 1;
        if spent > face {
            check
                .violations
                .push(format!("cheque {id}: face {face}, spent {spent}"));
        }
    }
    Ok(check)
}

/// Each closed offer closed once, each pledge funded once, each expired cheque expired once:
/// counted by their outbox events, which are written in the same transaction as the change.
pub async fn jobs_once(pool: &PgPool) -> anyhow::Result<Check> {
    let mut check = Check::new("each due item done once (close, funding, expiry)");
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "select event_type, payload->'data'->>(split_part(event_type, '.', 1) || '_id'), count(*)
           from outbox_events
          where event_type in ('offer.succeeded', 'offer.failed', 'pledge.funded', 'pledge.cancelled', 'cheque.expired')
          group by 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let mut closes: BTreeMap<String, i64> = BTreeMap::new();
    for (event, item, count) in rows {
        let Some(item) = item else {
            check
                .violations
                .push(format!("{event} without the id of what it is about"));
            continue;
        };
        if event.starts_with("offer.") {
            *closes.entry(item.clone()).or_default() += count;
        }
        check.checked += 1;
        if count != 1 {
            check.violations.push(format!("{event} {item}: {count} times"));
        }
    }
    for (offer, count) in closes {
        if count != 1 {
            check
                .violations
                .push(format!("offer {offer} both succeeded and failed"));
        }
    }
    let closed_without_event: i64 = sqlx::query_scalar(
        "select count(*) from offers o
          where o.status in ('succeeded', 'failed')
            and not exists (select 1 from outbox_events e
                             where e.event_type in ('offer.succeeded', 'offer.failed')
                               and e.payload->'data'->>'offer_id' = o.id::text)",
    )
    .fetch_one(pool)
    .await?;
    if closed_without_event > 0 {
        check
            .violations
            .push(format!("{closed_without_event} offers closed without their event"));
    }
    Ok(check)
}

/// What the run's webhook receiver saw.
#[derive(Debug, Default, Serialize)]
pub struct Received {
    pub deliveries: u64,
    pub distinct_events: u64,
    pub bad_signatures: u64,
}

/// Every event fanned out to the run's endpoint was delivered, and the receiver got each one
/// (at least once: a delivery cut by a crash after the receiver answered is sent again).
pub async fn outbox_delivered(pool: &PgPool, endpoint: Uuid, received: &HashSet<String>) -> anyhow::Result<Check> {
    let mut check = Check::new("outbox events delivered after restarts");
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("select event_id, status::text from webhook_deliveries where endpoint_id = $1")
            .bind(endpoint)
            .fetch_all(pool)
            .await?;
    let events: i64 = sqlx::query_scalar("select count(*) from outbox_events")
        .fetch_one(pool)
        .await?;
    if (rows.len() as i64) < events {
        check.violations.push(format!(
            "{} of {events} outbox events never fanned out to the endpoint",
            events - rows.len() as i64
        ));
    }
    for (event, status) in rows {
        check.checked += 1;
        if status != "delivered" {
            check.violations.push(format!("event {event}: delivery {status}"));
        } else if !received.contains(&event.to_string()) {
            check
                .violations
                .push(format!("event {event}: delivered but the receiver never saw it"));
        }
    }
    Ok(check)
}
