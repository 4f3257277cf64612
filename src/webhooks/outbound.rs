//! Outbound webhooks: telling the platform what happened.
//!
//! Events are written to the outbox in the transaction of their change (`crate::outbox`). The
//! worker fans each new event out into one delivery per matching endpoint, then delivers: it
//! leases due deliveries in a short transaction, sends them signed (Standard Webhooks) with no
//! transaction open, and records each attempt. A failed attempt is retried after 5 s, 5 min,
//! 30 min, 2 h, 5 h, 10 h and 10 h; after the eighth failure the delivery is exhausted and the
//! endpoint disabled. Delivery is at least once: a worker that dies mid-request loses its lease,
//! and another sends again. What a delivery may reach is `super::guard`'s to decide.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::guard::{self, GuardedClient};
use super::signature::{self, WebhookSecret};
use crate::outbox::{self, EventType};
use crate::paging::{Page, PageRequest};

/// Waits before the 2nd, 3rd, … 8th attempt; the 1st is immediate.
pub const RETRY_DELAYS_SECONDS: [i64; 7] = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600];
pub(crate) const MAX_ATTEMPTS: i32 = RETRY_DELAYS_SECONDS.len() as i32 + 1;
/// How long the old secret keeps signing after a rotation.
pub(crate) const ROTATION_OVERLAP: TimeDelta = TimeDelta::hours(24);
/// A delivery's lease: longer than the request timeout, so two workers never send at once.
const LEASE_SECONDS: i64 = 60;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Deliveries claimed and sent at once.
pub const DELIVERY_BATCH: usize = 32;

/// Whether an endpoint receives events. Stored as `active` (migration 0007), shown as
/// `enabled`, the word operators set it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "webhook_endpoint_status")]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    /// Events it subscribes to are fanned out to it and delivered.
    #[sqlx(rename = "active")]
    Enabled,
    /// Set by an operator, or by the service when a delivery exhausted its retries: new events
    /// are not fanned out to it, and its pending deliveries wait until it is enabled again.
    #[sqlx(rename = "disabled")]
    Disabled,
}

/// An operator's endpoint. Its `Debug` leaves the secrets out, so it can be logged.
#[derive(Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub status: EndpointStatus,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"[REDACTED]")
            .field("previous_secret", &self.previous_secret.as_ref().map(|_| "[REDACTED]"))
            .field("previous_secret_until", &self.previous_secret_until)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

const ENDPOINT_COLUMNS: &str =
    "id, url, events, secret, previous_secret, previous_secret_until, status, created_at, disabled_at";

pub async fn create_endpoint(
    conn: &mut PgConnection,
    url: &str,
    events: &[String],
    now: DateTime<Utc>,
) -> sqlx::Result<Endpoint> {
    sqlx::query_as(&format!(
        "insert into webhook_endpoints (id, url, events, secret, created_at) values ($1, $2, $3, $4, $5)
         returning {ENDPOINT_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(url)
    .bind(events)
    .bind(WebhookSecret::generate().expose_string())
    .bind(now)
    .fetch_one(conn)
    .await
}

/// An endpoint, unless it is unknown or deleted.
pub async fn endpoint(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Endpoint>> {
    sqlx::query_as(&format!(
        "select {ENDPOINT_COLUMNS} from webhook_endpoints where id = $1 and deleted_at is null"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The position of an endpoint in their list, newest first.
pub(crate) type EndpointKey = (DateTime<Utc>, Uuid);

/// Endpoints not deleted, newest first, a page at a time.
pub(crate) async fn endpoints(conn: &mut PgConnection, page: &PageRequest<EndpointKey>) -> sqlx::Result<Vec<Endpoint>> {
    let mut q = QueryBuilder::new(format!(
        "select {ENDPOINT_COLUMNS} from webhook_endpoints where deleted_at is null"
    ));
    crate::paging::push_newest_first(&mut q, page.after, page.fetch());
    q.build_query_as().fetch_all(conn).await
}

/// What an operator changes on an endpoint; `None` keeps what is there. `events` is checked and
/// deduplicated by the caller, as at registration.
pub(crate) struct EndpointChanges<'a> {
    pub url: Option<&'a str>,
    pub events: Option<&'a [String]>,
    pub status: Option<EndpointStatus>,
}

/// Changes an endpoint; `None` for an unknown or deleted one. Enabling one (even one the service
/// disabled after a delivery exhausted its retries) clears `disabled_at`; disabling one keeps the
/// time it was first disabled.
pub(crate) async fn update_endpoint(
    conn: &mut PgConnection,
    id: Uuid,
    changes: &EndpointChanges<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<Endpoint>> {
    sqlx::query_as(&format!(
        "update webhook_endpoints
            set url = coalesce($2, url), events = coalesce($3, events), status = coalesce($4, status),
                disabled_at = case coalesce($4, status) when 'active' then null else coalesce(disabled_at, $5) end
          where id = $1 and deleted_at is null
         returning {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(changes.url)
    .bind(changes.events)
    .bind(changes.status)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// Deletes an endpoint: it is disabled and marked deleted, so nothing is fanned out to it or
/// delivered to it again, while its deliveries stay as history. False for an unknown or already
/// deleted one.
pub(crate) async fn delete_endpoint(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<bool> {
    let deleted = sqlx::query(
        "update webhook_endpoints set deleted_at = $2, status = 'disabled', disabled_at = coalesce(disabled_at, $2)
          where id = $1 and deleted_at is null",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(deleted == 1)
}

/// A new secret; the old one keeps signing for 24 hours so receivers can switch over.
pub(crate) async fn rotate_secret(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<Endpoint>> {
    sqlx::query_as(&format!(
        "update webhook_endpoints
            set previous_secret = secret, previous_secret_until = $3, secret = $2
          where id = $1 and deleted_at is null
         returning {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(WebhookSecret::generate().expose_string())
    .bind(now + ROTATION_OVERLAP)
    .fetch_optional(conn)
    .await
}

/// Queues a delivery again, now; an endpoint disabled by exhaustion is enabled again, since the
/// operator asked for it. Returns the endpoint id, or None for an unknown delivery or one of a
/// deleted endpoint (which is never sent to again).
pub async fn redeliver(conn: &mut PgConnection, delivery: Uuid, now: DateTime<Utc>) -> sqlx::Result<Option<Uuid>> {
    let endpoint: Option<Uuid> = sqlx::query_scalar(
        "update webhook_deliveries d
            set status = 'pending', attempts = 0, next_attempt_at = $2, leased_until = null
           from webhook_endpoints w
          where d.id = $1 and w.id = d.endpoint_id and w.deleted_at is null
         returning d.endpoint_id",
    )
    .bind(delivery)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(endpoint) = endpoint {
        sqlx::query("update webhook_endpoints set status = 'active', disabled_at = null where id = $1")
            .bind(endpoint)
            .execute(conn)
            .await?;
    }
    Ok(endpoint)
}

/// Events fanned out per transaction.
const FAN_OUT_BATCH: i64 = 1000;

/// Turns new outbox events into deliveries for the active endpoints that subscribe to them (never
/// a disabled or deleted one: a deleted endpoint is disabled too, `webhook_endpoints_deleted_disabled`), all
/// of them: a flood writes thousands of events a second, and a tick must not fall behind.
pub async fn fan_out(pool: &PgPool, now: DateTime<Utc>) -> sqlx::Result<()> {
    while fan_out_some(pool, now).await? == FAN_OUT_BATCH as usize {}
    Ok(())
}

/// Fans out up to [`FAN_OUT_BATCH`] events past the cursor; returns how many. Events are taken
/// in (transaction, seq) order, and only from transactions below the snapshot's xmin: all of
/// those have ended, so none of their events can commit behind the cursor later (migration
/// 0015). The cursor's row lock makes one worker at a time do it; the others skip.
async fn fan_out_some(pool: &PgPool, now: DateTime<Utc>) -> sqlx::Result<usize> {
    let mut tx = pool.begin().await?;
    let Some((xact, seq)): Option<(i64, i64)> =
        sqlx::query_as("select xact::text::bigint, seq from outbox_cursor for update skip locked")
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(0);
    };
    let last: Option<(i64, i64, i64)> = sqlx::query_as(
        "with next as (
             select e.id, e.event_type, e.created_xact, e.seq from outbox_events e
              where (e.created_xact, e.seq) > ($1::text::xid8, $2)
                and e.created_xact < pg_snapshot_xmin(pg_current_snapshot())
              order by e.created_xact, e.seq limit $4),
         delivered as (
             insert into webhook_deliveries (id, endpoint_id, event_id, next_attempt_at, created_at)
             select gen_random_uuid(), w.id, n.id, $3, $3
               from next n join webhook_endpoints w on w.status = 'active' and n.event_type = any(w.events)
             on conflict (endpoint_id, event_id) do nothing)
         select count(*), (array_agg(created_xact::text::bigint order by created_xact desc, seq desc))[1],
                (array_agg(seq order by created_xact desc, seq desc))[1]
           from next having count(*) > 0",
    )
    .bind(xact)
    .bind(seq)
    .bind(now)
    .bind(FAN_OUT_BATCH)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((count, xact, seq)) = last else {
        return Ok(0);
    };
    sqlx::query("update outbox_cursor set xact = $1::text::xid8, seq = $2")
        .bind(xact)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(count as usize)
}

#[derive(sqlx::FromRow)]
struct Claimed {
    id: Uuid,
    attempts: i32,
    event_id: Uuid,
    payload: serde_json::Value,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_until: Option<DateTime<Utc>>,
}

/// Sends due deliveries batch after batch until none is left due or `stop` says so; returns how
/// many were attempted. `now` is read for each batch, so a long drain's leases stay current.
/// One batch a tick had let a torture run's flood outpace delivery: 2,000 deliveries still
/// waited when it ended. A failed attempt is due again only seconds later, so this ends.
pub async fn deliver_all_due(
    pool: &PgPool,
    client: &GuardedClient,
    now: impl Fn() -> DateTime<Utc>,
    stop: impl Fn() -> bool,
) -> sqlx::Result<usize> {
    let mut attempted = 0;
    while !stop() {
        let sent = deliver_due(pool, client, now()).await?;
        attempted += sent;
        if sent < DELIVERY_BATCH {
            break;
        }
    }
    Ok(attempted)
}

/// Sends one batch of due deliveries, each once; returns how many were attempted.
pub(crate) async fn deliver_due(pool: &PgPool, client: &GuardedClient, now: DateTime<Utc>) -> sqlx::Result<usize> {
    let claimed: Vec<Claimed> = sqlx::query_as(
        "with due as (
             select d.id from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
              where d.status = 'pending' and d.next_attempt_at <= $1 and w.status = 'active'
                and (d.leased_until is null or d.leased_until < $1)
              order by d.next_attempt_at limit $3
              for update of d skip locked)
         update webhook_deliveries d set leased_until = $1 + $2 * interval '1 second'
           from due, outbox_events e, webhook_endpoints w
          where d.id = due.id and e.id = d.event_id and w.id = d.endpoint_id
         returning d.id, d.attempts, d.event_id, e.payload, w.url, w.secret, w.previous_secret, w.previous_secret_until",
    )
    .bind(now)
    .bind(LEASE_SECONDS)
    .bind(DELIVERY_BATCH as i64)
    .fetch_all(pool)
    .await?;
    let count = claimed.len();
    let sends = claimed.into_iter().map(|c| async move {
        let outcome = send(client, &c, now).await;
        record(pool, &c, outcome, now).await
    });
    for result in futures::future::join_all(sends).await {
        result?;
    }
    Ok(count)
}

struct Sent {
    status_code: Option<u16>,
    error: Option<String>,
    /// The first [`guard::MAX_ANSWER_BYTES`] of the answer, if it had a body.
    answer: Option<String>,
    elapsed: Duration,
}

async fn send(client: &GuardedClient, c: &Claimed, now: DateTime<Utc>) -> Sent {
    let started = Instant::now();
    let failed = |error: String| Sent {
        status_code: None,
        error: Some(error),
        answer: None,
        elapsed: started.elapsed(),
    };
    // Judged again at each send: the guard checks the very address it connects to.
    let request = match client.post(&c.url) {
        Ok(request) => request,
        Err(err) => return failed(err.to_string()),
    };
    let mut secrets = Vec::new();
    for s in std::iter::once(Some(&c.secret))
        .chain(std::iter::once(
            c.previous_secret
                .as_ref()
                .filter(|_| c.previous_secret_until.is_some_and(|t| t > now)),
        ))
        .flatten()
    {
        match s.parse::<WebhookSecret>() {
            Ok(secret) => secrets.push(secret),
            Err(err) => return failed(format!("stored secret unusable: {err}")),
        }
    }
    let body = c.payload.to_string().into_bytes();
    let refs: Vec<&WebhookSecret> = secrets.iter().collect();
    let msg_id = c.event_id.to_string();
    // Transport time: the receiver checks it against its own real clock, whatever ours says.
    let timestamp = crate::clock::wall_clock().timestamp();
    let header = signature::signature_header(&refs, &msg_id, timestamp, &body);
    let response = request
        .timeout(REQUEST_TIMEOUT)
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", header)
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) => {
            let status = r.status();
            let (body, unread) = guard::read_at_most(r, guard::MAX_ANSWER_BYTES).await;
            // A 3xx is an answer like any other non-2xx: a failed attempt, retried on schedule.
            let error = if status.is_redirection() {
                Some(format!("answered {status}: redirects are not followed"))
            } else {
                unread.map(|e| format!("reading the answer: {}", guard::describe(&e)))
            };
            Sent {
                status_code: Some(status.as_u16()),
                error,
                answer: answer_text(&body),
                elapsed: started.elapsed(),
            }
        }
        Err(err) => failed(guard::describe(&err)),
    }
}

/// An answer as text to keep: invalid UTF-8 replaced, NULs (which Postgres text refuses)
/// dropped, at most [`guard::MAX_ANSWER_BYTES`].
fn answer_text(body: &[u8]) -> Option<String> {
    let mut text = String::from_utf8_lossy(body).replace('\0', "");
    if text.len() > guard::MAX_ANSWER_BYTES {
        let mut end = guard::MAX_ANSWER_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    (!text.is_empty()).then_some(text)
}

async fn record(pool: &PgPool, c: &Claimed, sent: Sent, now: DateTime<Utc>) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "insert into webhook_attempts (delivery_id, attempted_at, status_code, error, duration_ms, response_body)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(c.id)
    .bind(now)
    .bind(sent.status_code.map(i32::from))
    .bind(sent.error.as_deref())
    .bind(i32::try_from(sent.elapsed.as_millis()).unwrap_or(i32::MAX))
    .bind(sent.answer.as_deref())
    .execute(&mut *tx)
    .await?;
    let attempts = c.attempts + 1;
    if sent.status_code.is_some_and(|s| (200..300).contains(&s)) {
        sqlx::query(
            "update webhook_deliveries set status = 'delivered', attempts = $2, delivered_at = $3, leased_until = null
              where id = $1",
        )
        .bind(c.id)
        .bind(attempts)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    } else if attempts >= MAX_ATTEMPTS {
        let endpoint: Uuid = sqlx::query_scalar(
            "update webhook_deliveries set status = 'exhausted', attempts = $2, leased_until = null where id = $1
             returning endpoint_id",
        )
        .bind(c.id)
        .bind(attempts)
        .fetch_one(&mut *tx)
        .await?;
        let disabled = sqlx::query(
            "update webhook_endpoints set status = 'disabled', disabled_at = $2 where id = $1 and status = 'active'",
        )
        .bind(endpoint)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if disabled == 1 {
            tracing::warn!(endpoint = %endpoint, "webhook endpoint disabled: a delivery exhausted its retries");
            outbox::emit(
                &mut tx,
                EventType::EndpointDisabled,
                serde_json::json!({ "endpoint_id": endpoint, "url": c.url }),
                now,
            )
            .await?;
        }
    } else {
        let delay = RETRY_DELAYS_SECONDS[(attempts - 1) as usize];
        sqlx::query(
            "update webhook_deliveries set attempts = $2, next_attempt_at = $3, leased_until = null where id = $1",
        )
        .bind(c.id)
        .bind(attempts)
        .bind(now + TimeDelta::seconds(delay))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AttemptView {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    /// What the receiver answered: at most its first 64 KiB (the rest is never read); null
    /// when there was no answer or it had no body.
    pub response_body: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// When the event was fanned out to the endpoint.
    pub created_at: DateTime<Utc>,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<AttemptView>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    created_at: DateTime<Utc>,
    seq: i64,
    event_id: Uuid,
    event_type: String,
    status: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

/// The position of a delivery in its endpoint's list: newest first, and among those fanned out
/// at once, the latest event first.
pub(crate) type DeliveryKey = (DateTime<Utc>, i64);

#[derive(sqlx::FromRow)]
struct AttemptRow {
    delivery_id: Uuid,
    #[sqlx(flatten)]
    attempt: AttemptView,
}

/// An endpoint's deliveries, newest first, a page at a time, each with its attempts (read in one
/// statement for the page).
pub(crate) async fn deliveries(
    conn: &mut PgConnection,
    endpoint: Uuid,
    page: &PageRequest<DeliveryKey>,
) -> sqlx::Result<Page<DeliveryView>> {
    let mut q = QueryBuilder::new(
        "select d.id, d.created_at, e.seq, d.event_id, e.event_type, d.status::text as status, d.attempts,
                d.next_attempt_at, d.delivered_at
           from webhook_deliveries d join outbox_events e on e.id = d.event_id
          where d.endpoint_id = ",
    );
    q.push_bind(endpoint);
    if let Some((at, seq)) = page.after {
        q.push(" and (d.created_at, e.seq) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(seq)
            .push(")");
    }
    q.push(" order by d.created_at desc, e.seq desc limit ")
        .push_bind(page.fetch());
    let rows: Vec<DeliveryRow> = q.build_query_as().fetch_all(&mut *conn).await?;
    let rows = Page::of(rows, page, |r| (r.created_at, r.seq));
    let ids: Vec<Uuid> = rows.items.iter().map(|r| r.id).collect();
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "select delivery_id, attempted_at, status_code, error, duration_ms, response_body from webhook_attempts
          where delivery_id = any($1) order by delivery_id, id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut logs: HashMap<Uuid, Vec<AttemptView>> = HashMap::new();
    for a in attempts {
        logs.entry(a.delivery_id).or_default().push(a.attempt);
    }
    Ok(rows.map(|r| DeliveryView {
        id: r.id,
        created_at: r.created_at,
        event_id: r.event_id,
        event_type: r.event_type,
        next_attempt_at: (r.status == "pending").then_some(r.next_attempt_at),
        status: r.status,
        attempts: r.attempts,
        delivered_at: r.delivered_at,
        attempt_log: logs.remove(&r.id).unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_prints_without_its_secrets() {
        let (secret, previous) = (
            WebhookSecret::generate().expose_string(),
            WebhookSecret::generate().expose_string(),
        );
        let endpoint = Endpoint {
            id: Uuid::now_v7(),
            url: "https://platform.example/hooks".into(),
            events: vec!["pledge.funded".into()],
            secret: secret.clone(),
            previous_secret: Some(previous.clone()),
            previous_secret_until: None,
            status: EndpointStatus::Enabled,
            created_at: Utc::now(),
            disabled_at: None,
        };
        let printed = format!("{endpoint:?} {endpoint:#?}");
        assert!(!printed.contains(&secret) && !printed.contains(&previous), "{printed}");
        assert!(printed.contains("https://platform.example/hooks") && printed.contains("[REDACTED]"));
    }

    #[test]
    fn answers_are_kept_as_text_of_at_most_64_kib() {
        assert_eq!(answer_text(b""), None);
        assert_eq!(answer_text(b"ok\0\xff").as_deref(), Some("ok\u{fffd}"));
        let long = "é".repeat(guard::MAX_ANSWER_BYTES);
        let kept = answer_text(long.as_bytes()).unwrap();
        assert_eq!(kept.len(), guard::MAX_ANSWER_BYTES);
        assert!(long.starts_with(&kept));
    }

    #[test]
    fn the_retry_schedule_is_the_documented_one() {
        assert_eq!(MAX_ATTEMPTS, 8);
        assert_eq!(
            RETRY_DELAYS_SECONDS.iter().sum::<i64>(),
            5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000
        );
    }
}
