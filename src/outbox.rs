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
    PledgeCreated,
    PledgeFunded,
    PledgeRevoked,
    PledgeCancelled,
    PledgeRefunded,
    ChequeIssued,
    ChequeRedeemed,
    ChequeExpired,
    PayoutPaid,
    EndpointDisabled,
    RefundSucceeded,
}

impl EventType {
    /// Every type, in the order the API lists them.
    pub const ALL: [EventType; 15] = [
        EventType::OfferOpened,
        EventType::OfferClosing,
        EventType::OfferSucceeded,
        EventType::OfferFailed,
        EventType::PledgeCreated,
        EventType::PledgeFunded,
        EventType::PledgeRevoked,
        EventType::PledgeCancelled,
        EventType::PledgeRefunded,
        EventType::ChequeIssued,
        EventType::ChequeRedeemed,
        EventType::ChequeExpired,
        EventType::PayoutPaid,
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
            EventType::PledgeCreated => "pledge.created",
            EventType::PledgeFunded => "pledge.funded",
            EventType::PledgeRevoked => "pledge.revoked",
            EventType::PledgeCancelled => "pledge.cancelled",
            EventType::PledgeRefunded => "pledge.refunded",
            EventType::ChequeIssued => "cheque.issued",
            EventType::ChequeRedeemed => "cheque.redeemed",
            EventType::ChequeExpired => "cheque.expired",
            EventType::PayoutPaid => "payout.paid",
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
