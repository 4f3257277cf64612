//! Retention: idempotency keys, verified provider events and webhook delivery attempts are kept
//! for their configured number of days of the service clock (`[retention]`), then deleted in
//! bounded batches (docs/reliability.md, "Retention"). Quarantined provider events are kept:
//! each is money that did not fit and waits for a person. The audit trail is kept for ever
//! unless `retention.audit_log_days` is set.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

/// Rows per delete statement: each is short and its locks and WAL bounded, whatever the backlog.
const BATCH: i64 = 1000;

/// A pass runs when this much of the service clock has gone by since the last one (or the clock
/// went back): records expire by the day, so an hour late is on time.
pub(crate) const EVERY: TimeDelta = TimeDelta::hours(1);

struct Purge {
    table: &'static str,
    /// The record's time, from the service clock when it was written.
    time: &'static str,
    /// Rows kept whatever their age, in SQL.
    keep: &'static str,
    /// None: kept for ever.
    days: fn(&RetentionSettings) -> Option<u32>,
}

const PURGES: &[Purge] = &[
    Purge {
        table: "idempotency_keys",
        time: "created_at",
        keep: "false",
        days: |r| Some(r.idempotency_keys_days),
    },
    Purge {
        table: "inbound_events",
        time: "received_at",
        keep: "status = 'quarantined'",
        days: |r| Some(r.inbound_events_days),
    },
    Purge {
        table: "webhook_attempts",
        time: "attempted_at",
        keep: "false",
        days: |r| Some(r.webhook_attempts_days),
    },
    Purge {
        table: "audit_log",
        time: "at",
        keep: "false",
        days: |r| r.audit_log_days,
    },
];

/// Deletes every record past its retention at `now`, table by table, a batch per statement,
/// until none is left or `stopping()` says to stop. Returns how many rows each table lost.
pub async fn purge(
    pool: &PgPool,
    now: DateTime<Utc>,
    retention: &RetentionSettings,
    stopping: impl Fn() -> bool,
) -> sqlx::Result<Vec<(&'static str, u64)>> {
    let mut purged = Vec::with_capacity(PURGES.len());
    for purge in PURGES {
        let Some(days) = (purge.days)(retention) else {
            continue;
        };
        let cutoff = now - TimeDelta::days(i64::from(days));
        // By ctid: the rows just found, without a second lookup by key. The times are indexed
        // by BRIN (migration 0021; the audit trail's by a B-tree, 0029), so a pass reads the old end
        // of the table, not all of it.
        let sql = format!(
            "delete from {table} where ctid = any(array(
                 select ctid from {table} where {time} < $1 and not ({keep}) limit $2))",
            table = purge.table,
            time = purge.time,
            keep = purge.keep,
        );
        let mut deleted = 0;
        loop {
            let n = sqlx::query(&sql)
                .bind(cutoff)
                .bind(BATCH)
                .execute(pool)
                .await?
                .rows_affected();
            deleted += n;
            if n < BATCH as u64 || stopping() {
                break;
            }
        }
        purged.push((purge.table, deleted));
        if stopping() {
            break;
        }
    }
    Ok(purged)
}

/// How many days of the service clock the background job keeps each kind of record before
/// deleting it (docs/reliability.md, "Retention").
#[derive(Clone, Copy, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// A replay of a POST with the same Idempotency-Key is recognised for this long.
    pub idempotency_keys_days: u32,
    /// Verified provider events that were applied or ignored; quarantined ones are kept.
    pub inbound_events_days: u32,
    /// The log of outbound webhook delivery attempts (the deliveries themselves are kept).
    pub webhook_attempts_days: u32,
    /// The audit trail (docs/audit-log.md); unset, it is kept for ever.
    #[serde(default)]
    pub audit_log_days: Option<u32>,
}
