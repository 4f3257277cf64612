//! Events for the platform (`offer.opened`, `pledge.funded`, …), written to the outbox in the
//! transaction of the change they describe, so a change is never committed without its event nor
//! an event without its change. The webhook worker delivers them (step 3).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// An outbox row's payload: `{"id", "type", "created_at", "data"}`.
#[derive(Serialize)]
struct Envelope<'a, T> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: DateTime<Utc>,
    data: &'a T,
}

/// Writes events in one statement, their payloads serialised here, straight from `(id, type,
/// data, time)` each: no JSON tree is built for them (a round's close writes one per pledge).
async fn insert_all<'a, T: Serialize + 'a>(
    conn: &mut PgConnection,
    events: impl ExactSizeIterator<Item = (&'a str, &'a T, DateTime<Utc>)>,
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
        kinds.push(kind);
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
pub async fn emit_many<T: Serialize>(conn: &mut PgConnection, events: &[(&str, T, DateTime<Utc>)]) -> sqlx::Result<()> {
    insert_all(conn, events.iter().map(|(kind, data, at)| (*kind, data, *at))).await
}

/// Writes events of one type and time in one statement, their data serialised from its type.
pub async fn emit_all<T: Serialize>(
    conn: &mut PgConnection,
    event_type: &str,
    data: &[T],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    insert_all(conn, data.iter().map(|d| (event_type, d, now))).await
}

pub async fn emit(conn: &mut PgConnection, event_type: &str, data: Value, now: DateTime<Utc>) -> sqlx::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("insert into outbox_events (id, event_type, payload, created_at) values ($1, $2, $3, $4)")
        .bind(id)
        .bind(event_type)
        .bind(serde_json::json!({ "id": id, "type": event_type, "created_at": now, "data": data }))
        .bind(now)
        .execute(conn)
        .await?;
    Ok(id)
}
