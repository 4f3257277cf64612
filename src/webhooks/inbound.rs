//! Events from payment providers: `POST /v1/webhooks/{provider}`.
//!
//! The raw bytes are verified before anything is parsed (401 `invalid_signature` and no effect
//! otherwise). Every verified event is stored raw and deduplicated by (provider, event id) in the
//! same transaction that applies it, with its ledger entry and outbox event. An event that does
//! not fit (amount or currency mismatch, unknown payment) is quarantined: stored, listed for
//! operators, never applied.

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Acquire, PgConnection, PgPool, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::WebhookError;
use crate::batch::{self, Lanes};
use crate::paging::PageRequest;
use crate::payments::Applied;
use crate::payments::provider::{Event, Received};
use crate::sponsors::{deposits, withdrawals};

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, ToSchema)]
#[sqlx(type_name = "inbound_event_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It changed something.
    Applied,
    /// Verified and stored, but nothing to do (a repeat in effect, or a type we do not act on).
    Ignored,
    /// Stored for operators, never applied: it does not match what we know.
    Quarantined,
}

#[derive(Serialize, ToSchema)]
pub struct Ack {
    event_id: String,
    outcome: Outcome,
    /// True when this event id had been received before: nothing was done this time.
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

async fn apply(
    conn: &mut PgConnection,
    provider: &str,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Applied, WebhookError> {
    Ok(match event {
        // Money paid to us is a pledge's card payment or a sponsor's deposit.
        Event::PaymentSucceeded { payment_id, amount } => {
            if deposits::find(conn, provider, payment_id, false).await?.is_some() {
                deposits::confirm(conn, provider, payment_id, *amount, now).await?
            } else {
                crate::rounds::funding::confirm_payment(conn, provider, payment_id, *amount, now).await?
            }
        }
        Event::PaymentFailed { payment_id } => {
            if deposits::find(conn, provider, payment_id, false).await?.is_some() {
                deposits::fail(conn, provider, payment_id, now).await?
            } else {
                crate::rounds::funding::fail_payment(conn, provider, payment_id, now).await?
            }
        }
        // Only a pledge's card payment can be disputed: a deposit's dispute names no payment of
        // ours and is quarantined as unknown.
        Event::PaymentDisputed {
            payment_id,
            dispute_id,
            amount,
        } => crate::rounds::disputes::open(conn, provider, payment_id, dispute_id, *amount, now).await?,
        Event::DisputeClosed {
            payment_id,
            dispute_id,
            amount,
            lost,
        } => crate::rounds::disputes::close(conn, provider, payment_id, dispute_id, *amount, *lost, now).await?,
        Event::RefundSucceeded { refund_id, amount } => {
            crate::payments::refunds::confirm_refund(conn, provider, refund_id, *amount, now).await?
        }
        // Money paid out is a project's payout or a sponsor's withdrawal.
        Event::PayoutPaid { payout_id, amount } => {
            if withdrawals::find(conn, provider, payout_id, false).await?.is_some() {
                withdrawals::confirm(conn, provider, payout_id, *amount, now).await?
            } else {
                crate::rounds::payouts::confirm_payout(conn, provider, payout_id, *amount, now).await?
            }
        }
        Event::Other => Applied::Nothing,
    })
}

/// Applies a verified event and stores it with its outcome, in one transaction. A repeat of a
/// stored event id changes nothing. A domain refusal ([`WebhookError::Refused`]) quarantines
/// the event; anything else rolls back so the provider retries. The event is stored last, after
/// the rows it changes are locked, in the same order as a batch's ([`receive_many`]), so the two
/// never wait on each other in a cycle; a deadlock with anything else is retried.
pub async fn receive(conn: &mut PgConnection, inbound: &Inbound) -> Result<Ack, WebhookError> {
    let mut attempt = 1;
    loop {
        match receive_once(conn, inbound).await {
            Err(err) if attempt < 3 && err.is_retryable() => {
                attempt += 1;
                tracing::warn!(event_id = %inbound.received.event_id, attempt, "webhook event rolled back by a deadlock; again");
            }
            done => return done,
        }
    }
}

async fn receive_once(conn: &mut PgConnection, inbound: &Inbound) -> Result<Ack, WebhookError> {
    let repeat = |(outcome, detail)| Ack {
        event_id: inbound.received.event_id.clone(),
        outcome,
        duplicate: true,
        detail,
    };
    let mut tx = conn.begin().await?;
    if let Some(stored) = stored(&mut tx, inbound).await? {
        tx.commit().await?;
        return Ok(repeat(stored));
    }
    let (outcome, detail) = settle(&mut tx, &inbound.provider, &inbound.received, inbound.now).await?;
    if !store(&mut tx, &[(inbound, outcome, detail.as_deref())]).await? {
        // Stored meanwhile by a concurrent delivery, which applied it: this one is a repeat.
        tx.rollback().await?;
        let stored = stored(conn, inbound).await?.expect("stored by a committed transaction");
        return Ok(repeat(stored));
    }
    tx.commit().await?;
    Ok(acknowledge(
        &inbound.provider,
        inbound.received.clone(),
        outcome,
        detail,
    ))
}

/// What a stored event became, if it is stored.
async fn stored(conn: &mut PgConnection, inbound: &Inbound) -> sqlx::Result<Option<(Outcome, Option<String>)>> {
    sqlx::query_as("select status, detail from inbound_events where provider = $1 and event_id = $2")
        .bind(&inbound.provider)
        .bind(&inbound.received.event_id)
        .fetch_optional(conn)
        .await
}

/// Stores events with their outcomes in one statement. `false` if any of them was stored
/// meanwhile (by a transaction that committed first): the caller must roll back.
async fn store(conn: &mut PgConnection, events: &[(&Inbound, Outcome, Option<&str>)]) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "insert into inbound_events (id, provider, event_id, event_type, body, received_at, status, detail)
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::timestamptz[],
                              $7::inbound_event_status[], $8::text[])
         on conflict (provider, event_id) do nothing",
    )
    .bind(events.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.0.provider.as_str()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.0.received.event_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.0.received.event_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.0.body.as_ref()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.0.now).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.1).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.2).collect::<Vec<_>>())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == events.len() as u64)
}

/// Applies a stored event's meaning in a savepoint: all of it, or nothing if it is refused.
async fn settle(
    tx: &mut PgConnection,
    provider: &str,
    received: &Received,
    now: DateTime<Utc>,
) -> Result<(Outcome, Option<String>), WebhookError> {
    let events = match &received.event {
        Err(why) => return Ok((Outcome::Quarantined, Some(why.clone()))),
        Ok(events) => events,
    };
    let mut outcome = Outcome::Ignored;
    let mut detail = None;
    let mut savepoint = tx.begin().await?;
    for named in &received.named {
        crate::payments::calls::write_name(&mut savepoint, provider, named).await?;
    }
    for event in events {
        match apply(&mut savepoint, provider, event, now).await {
            Ok(Applied::Done) => outcome = Outcome::Applied,
            Ok(Applied::Nothing) => {}
            Err(WebhookError::Refused { note, .. }) => {
                outcome = Outcome::Quarantined;
                detail = Some(note);
                break;
            }
            Err(err) => return Err(err),
        }
    }
    if outcome == Outcome::Quarantined {
        // Nothing of a refused event may stick, not even the part applied before it.
        savepoint.rollback().await?;
    } else {
        savepoint.commit().await?;
    }
    if outcome == Outcome::Ignored {
        detail = detail.or_else(|| received.note.clone());
    }
    Ok((outcome, detail))
}

fn acknowledge(provider: &str, received: Received, outcome: Outcome, detail: Option<String>) -> Ack {
    if outcome == Outcome::Quarantined {
        tracing::warn!(provider, event_id = %received.event_id, detail = detail.as_deref().unwrap_or(""), "webhook event quarantined");
    }
    Ack {
        event_id: received.event_id,
        outcome,
        duplicate: false,
        detail,
    }
}

/// A verified event waiting for its batch.
pub struct Inbound {
    pub provider: String,
    pub received: Received,
    pub body: Bytes,
    pub now: DateTime<Utc>,
}

/// Verified events, many per transaction: one lane for the process, whose task ends when idle.
#[derive(Clone)]
pub struct Batcher {
    pool: PgPool,
    lane: Lanes<(), Inbound, Ack, WebhookError>,
}

/// Events per transaction, at most.
const MAX_BATCH: usize = 256;
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl Batcher {
    pub fn new(pool: PgPool) -> Self {
        Batcher {
            pool,
            lane: Lanes::default(),
        }
    }

    /// Queues a verified event and waits for its acknowledgement. `Err(inbound)` when it must
    /// be received on its own ([`receive`]).
    pub(crate) async fn submit(&self, inbound: Inbound) -> Result<Result<Ack, WebhookError>, Box<Inbound>> {
        let pool = self.pool.clone();
        self.lane
            .submit((), inbound, |rx| {
                tokio::spawn(batch::run(
                    "inbound",
                    rx,
                    MAX_BATCH,
                    // One batch at a time: a second, started while the first holds the hot
                    // accounts until its commit, is small and waits for them anyway (measured: a
                    // quarter fewer payments funded per second).
                    1,
                    IDLE,
                    move |batch: Vec<Inbound>, _turn| {
                        let pool = pool.clone();
                        async move {
                            let acks = receive_many(&pool, &batch).await;
                            let decided = acks.map(|acks| acks.into_iter().map(|ack| ack.map(Ok)).collect());
                            (batch, decided)
                        }
                    },
                ));
            })
            .await
    }
}

/// Applies and stores many verified events in one transaction (the `inbound` lane of
/// crate::batch): the common payment confirmations set-wise ([`crate::rounds::funding::confirm_payments`]), the rest one by one, each in its own
/// savepoint. `None` for an event to hand to [`receive`] after the batch commits: a repeat of
/// a stored event id (which [`receive`] answers as a duplicate).
pub(crate) async fn receive_many(pool: &PgPool, batch: &[Inbound]) -> Result<Vec<Option<Ack>>, WebhookError> {
    let mut tx = pool.begin().await?;
    // Event ids already stored are repeats; so is an id listed again later in the batch. The
    // new ones are stored at the end with their outcome, in one statement: written once, not
    // stored and then updated.
    let known: Vec<(String, String)> = sqlx::query_as(
        "select e.provider, e.event_id from inbound_events e
           join unnest($1::text[], $2::text[]) as u(provider, event_id)
             on e.provider = u.provider and e.event_id = u.event_id",
    )
    .bind(batch.iter().map(|i| i.provider.as_str()).collect::<Vec<_>>())
    .bind(batch.iter().map(|i| i.received.event_id.as_str()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let mut seen: std::collections::HashSet<(&str, &str)> =
        known.iter().map(|(p, e)| (p.as_str(), e.as_str())).collect();
    let new: Vec<bool> = batch
        .iter()
        .map(|i| seen.insert((i.provider.as_str(), i.received.event_id.as_str())))
        .collect();

    let mut outcomes: Vec<Option<(Outcome, Option<String>)>> = vec![None; batch.len()];
    let mut captures = Vec::new();
    // Payment confirmations first, set-wise per provider.
    let mut providers: Vec<&str> = batch.iter().map(|i| i.provider.as_str()).collect();
    providers.sort_unstable();
    providers.dedup();
    for provider in providers {
        let mut positions = Vec::new();
        let mut paid = Vec::new();
        for (n, inbound) in batch.iter().enumerate() {
            if let (true, Ok([Event::PaymentSucceeded { payment_id, amount }])) = (
                inbound.provider == provider && new[n],
                inbound.received.event.as_deref(),
            ) {
                positions.push(n);
                paid.push((payment_id.as_str(), *amount));
            }
        }
        if paid.is_empty() {
            continue;
        }
        let now = batch.iter().map(|i| i.now).max().expect("a batch is never empty");
        let (applied, captured) = crate::rounds::funding::confirm_payments(&mut tx, provider, &paid, now).await?;
        for (n, applied) in positions.into_iter().zip(applied) {
            if applied.is_some() {
                outcomes[n] = Some((Outcome::Applied, None));
            }
        }
        captures.push(captured);
    }
    // The rest, in arrival order.
    for (n, inbound) in batch.iter().enumerate() {
        if new[n] && outcomes[n].is_none() {
            outcomes[n] = Some(settle(&mut tx, &inbound.provider, &inbound.received, inbound.now).await?);
        }
    }
    // The hot accounts are locked from here to the commit.
    for captured in captures {
        captured.post(&mut tx).await?;
    }
    let stored: Vec<(&Inbound, Outcome, Option<&str>)> = batch
        .iter()
        .zip(&outcomes)
        .filter_map(|(inbound, o)| {
            o.as_ref()
                .map(|(outcome, detail)| (inbound, *outcome, detail.as_deref()))
        })
        .collect();
    if !store(&mut tx, &stored).await? {
        // A concurrent delivery stored one of these events meanwhile: roll back; one by one,
        // each is then answered as what it is (applied once, a repeat everywhere else).
        return Err(WebhookError::StoredMeanwhile);
    }
    tx.commit().await?;
    Ok(batch
        .iter()
        .zip(outcomes)
        .map(|(inbound, o)| {
            o.map(|(outcome, detail)| acknowledge(&inbound.provider, inbound.received.clone(), outcome, detail))
        })
        .collect())
}

/// A quarantined event as stored: the verified body as received, and why it was held back.
#[derive(sqlx::FromRow)]
pub struct Quarantined {
    pub id: Uuid,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub received_at: DateTime<Utc>,
    pub detail: Option<String>,
    pub body: Vec<u8>,
}

/// The position of a quarantined event in their list, newest first.
pub type QuarantineKey = (DateTime<Utc>, Uuid);

/// Quarantined events, newest first, a page at a time (keyset paging on `received_at, id`, so
/// events quarantined meanwhile neither shift nor repeat later pages).
pub async fn quarantined(
    conn: &mut PgConnection,
    page: &PageRequest<QuarantineKey>,
) -> Result<Vec<Quarantined>, WebhookError> {
    let mut q = QueryBuilder::new(
        "select id, provider, event_id, event_type, received_at, detail, body from inbound_events
          where status = 'quarantined'",
    );
    if let Some((at, id)) = page.after {
        q.push(" and (received_at, id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" order by received_at desc, id desc limit ")
        .push_bind(page.fetch());
    Ok(q.build_query_as().fetch_all(&mut *conn).await?)
}
