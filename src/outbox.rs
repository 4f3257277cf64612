//! Events for the platform (`offer.opened`, `pledge.funded`, …), written to the outbox in the
//! transaction of the change they describe, so a change is never committed without its event nor
//! an event without its change. The webhook worker delivers them (step 3).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// The types of event the service emits; operators' endpoints subscribe to them by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    OfferOpened,
    OfferClosing,
    OfferSucceeded,
    OfferFailed,
    OfferCancelled,
    OfferAmended,
    PledgeCreated,
    PledgeFunded,
    PledgeRevoked,
    PledgeCancelled,
    PledgeRefunded,
    PledgeDisputed,
    PledgeReconfirmationRequired,
    PledgeReconfirmed,
    DisputeWon,
    DisputeLost,
    PaymentLate,
    ChequeIssued,
    ChequeRedeemed,
    ChequeExpiring,
    ChequeExpired,
    ChequeCancelled,
    DepositSucceeded,
    WithdrawalRequested,
    WithdrawalPaid,
    PayoutCreated,
    PayoutPaid,
    MatchApplied,
    MatchReturned,
    MatchPoolEnded,
    EndpointDisabled,
    RefundSucceeded,
}

impl EventType {
    /// Every type, in the order the API lists them.
    pub const ALL: [EventType; 32] = [
        EventType::OfferOpened,
        EventType::OfferClosing,
        EventType::OfferSucceeded,
        EventType::OfferFailed,
        EventType::OfferCancelled,
        EventType::OfferAmended,
        EventType::PledgeCreated,
        EventType::PledgeFunded,
        EventType::PledgeRevoked,
        EventType::PledgeCancelled,
        EventType::PledgeRefunded,
        EventType::PledgeDisputed,
        EventType::PledgeReconfirmationRequired,
        EventType::PledgeReconfirmed,
        EventType::DisputeWon,
        EventType::DisputeLost,
        EventType::PaymentLate,
        EventType::ChequeIssued,
        EventType::ChequeRedeemed,
        EventType::ChequeExpiring,
        EventType::ChequeExpired,
        EventType::ChequeCancelled,
        EventType::DepositSucceeded,
        EventType::WithdrawalRequested,
        EventType::WithdrawalPaid,
        EventType::PayoutCreated,
        EventType::PayoutPaid,
        EventType::MatchApplied,
        EventType::MatchReturned,
        EventType::MatchPoolEnded,
        EventType::EndpointDisabled,
        EventType::RefundSucceeded,
    ];

    /// The type's name on the wire: `offer.opened`, `pledge.funded`, …
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OfferOpened => "offer.opened",
            EventType::OfferClosing => "offer.closing",
            EventType::OfferSucceeded => "offer.succeeded",
            EventType::OfferFailed => "offer.failed",
            EventType::OfferCancelled => "offer.cancelled",
            EventType::OfferAmended => "offer.amended",
            EventType::PledgeCreated => "pledge.created",
            EventType::PledgeFunded => "pledge.funded",
            EventType::PledgeRevoked => "pledge.revoked",
            EventType::PledgeCancelled => "pledge.cancelled",
            EventType::PledgeRefunded => "pledge.refunded",
            EventType::PledgeDisputed => "pledge.disputed",
            EventType::PledgeReconfirmationRequired => "pledge.reconfirmation_required",
            EventType::PledgeReconfirmed => "pledge.reconfirmed",
            EventType::DisputeWon => "dispute.won",
            EventType::DisputeLost => "dispute.lost",
            EventType::PaymentLate => "payment.late",
            EventType::ChequeIssued => "cheque.issued",
            EventType::ChequeRedeemed => "cheque.redeemed",
            EventType::ChequeExpiring => "cheque.expiring",
            EventType::ChequeExpired => "cheque.expired",
            EventType::ChequeCancelled => "cheque.cancelled",
            EventType::DepositSucceeded => "deposit.succeeded",
            EventType::WithdrawalRequested => "withdrawal.requested",
            EventType::WithdrawalPaid => "withdrawal.paid",
            EventType::PayoutCreated => "payout.created",
            EventType::PayoutPaid => "payout.paid",
            EventType::MatchApplied => "match.applied",
            EventType::MatchReturned => "match.returned",
            EventType::MatchPoolEnded => "match_pool.ended",
            EventType::EndpointDisabled => "endpoint.disabled",
            EventType::RefundSucceeded => "refund.succeeded",
        }
    }

    /// The type of this name, if there is one.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An outbox row's payload: `{"id", "type", "created_at", "data"}`.
#[derive(Serialize)]
struct Envelope<'a, T> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: EventType,
    created_at: DateTime<Utc>,
    data: &'a T,
}

/// Writes events in one statement, their payloads serialised here, straight from `(id, type,
/// data, time)` each: no JSON tree is built for them (a round's close writes one per pledge).
async fn insert_all<'a, T: Serialize + 'a>(
    conn: &mut PgConnection,
    events: impl ExactSizeIterator<Item = (EventType, &'a T, DateTime<Utc>)>,
) -> sqlx::Result<()> {
    let n = events.len();
    if n == 0 {
        return Ok(());
    }
    let (mut ids, mut kinds, mut payloads, mut times) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (kind, data, at) in events {
        let id = Uuid::now_v7();
        let envelope = Envelope {
            id,
            kind,
            created_at: at,
            data,
        };
        payloads.push(serde_json::to_string(&envelope).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
        ids.push(id);
        kinds.push(kind.as_str());
        times.push(at);
    }
    sqlx::query(
        "insert into outbox_events (id, event_type, payload, created_at)
         select u.id, u.event_type, u.payload::jsonb, u.created_at
           from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) as u(id, event_type, payload, created_at)",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&payloads)
    .bind(&times)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes many events in one statement: `(type, data, time)` each.
pub(crate) async fn emit_many<T: Serialize>(
    conn: &mut PgConnection,
    events: &[(EventType, T, DateTime<Utc>)],
) -> sqlx::Result<()> {
    insert_all(conn, events.iter().map(|(kind, data, at)| (*kind, data, *at))).await
}

/// Writes events of one type and time in one statement, their data serialised from its type.
pub(crate) async fn emit_all<T: Serialize>(
    conn: &mut PgConnection,
    event_type: EventType,
    data: &[T],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    insert_all(conn, data.iter().map(|d| (event_type, d, now))).await
}

/// Writes one event.
pub async fn emit(
    conn: &mut PgConnection,
    event_type: EventType,
    data: Value,
    now: DateTime<Utc>,
) -> sqlx::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("insert into outbox_events (id, event_type, payload, created_at) values ($1, $2, $3, $4)")
        .bind(id)
        .bind(event_type.as_str())
        .bind(serde_json::json!({ "id": id, "type": event_type.as_str(), "created_at": now, "data": data }))
        .bind(now)
        .execute(conn)
        .await?;
    Ok(id)
}

/// An event as the outbox holds it: `payload` is the envelope its webhook deliveries carry.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredEvent {
    pub id: Uuid,
    /// The envelope's time to the microsecond, as Postgres keeps it: the list's order.
    pub created_at: DateTime<Utc>,
    pub payload: Value,
}

/// Events of `types`, newest first (`created_at desc, id desc`), after `after` when given.
///
/// One index serves every filter (migration 0028: `event_type, created_at desc, id desc`): each
/// type's newest `limit` keys are read from the index (index-only), merged, and only the page's
/// rows are fetched, by id: under a millisecond for a page of 200,000 events. Listing all types
/// costs one short index probe per type (a score of them), and the hot pledge path pays for a
/// single extra index on the outbox.
pub(crate) async fn list(
    conn: &mut PgConnection,
    types: &[EventType],
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    // Past the newest key there is nothing: "infinity" and the largest uuid stand for no cursor,
    // so one statement (and one plan, with the cursor in the index condition) serves both.
    let (at, id) = after.map_or((None, Uuid::max()), |(at, id)| (Some(at), id));
    sqlx::query_as(
        "select k.id, k.created_at, p.payload
           from (select o.id, o.created_at
                   from unnest($1::text[]) as t(event_type)
                   cross join lateral (
                       select o.id, o.created_at from outbox_events o
                        where o.event_type = t.event_type
                          and (o.created_at, o.id) < (coalesce($2, 'infinity'::timestamptz), $3)
                        order by o.created_at desc, o.id desc
                        limit $4) o
                  order by o.created_at desc, o.id desc
                  limit $4) k
           -- A lateral probe by id (the limit keeps it one): a plain join is planned as a hash
           -- join over the whole outbox.
           cross join lateral (select e.payload from outbox_events e where e.id = k.id limit 1) p
          order by k.created_at desc, k.id desc",
    )
    .bind(&names)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One event, while the outbox keeps it.
pub(crate) async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<StoredEvent>> {
    sqlx::query_as("select id, created_at, payload from outbox_events where id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}
