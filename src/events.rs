//! Events for the platform (`offer.opened`, `pledge.funded`, …), written to the outbox in the
//! transaction of the change they describe, so a change is never committed without its event nor
//! an event without its change. The webhook worker delivers them (step 3).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Writes many events in one statement: `(type, data, time)` each.
pub async fn emit_many(conn: &mut PgConnection, events: &[(&str, Value, DateTime<Utc>)]) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let payloads: Vec<Value> = events
        .iter()
        .zip(&ids)
        .map(|((kind, data, at), id)| serde_json::json!({ "id": id, "type": kind, "created_at": at, "data": data }))
        .collect();
    sqlx::query(
        "insert into outbox_events (id, event_type, payload, created_at)
         select * from unnest($1::uuid[], $2::text[], $3::jsonb[], $4::timestamptz[])",
    )
    .bind(&ids)
    .bind(events.iter().map(|e| e.0).collect::<Vec<&str>>())
    .bind(&payloads)
    .bind(events.iter().map(|e| e.2).collect::<Vec<DateTime<Utc>>>())
    .execute(conn)
    .await?;
    Ok(())
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
