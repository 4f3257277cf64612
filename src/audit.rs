//! The audit trail's table (docs/audit-log.md): which key did what to which object, and when by
//! the service clock. Rows are written many per statement by the HTTP layer's writer
//! (`http/audit.rs`) and read, newest first, by `GET /v1/audit-log`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::keys::Role;
use crate::paging::PageRequest;

/// Who made a write: the key, and its role. Kept on the rows of writes recorded where they are
/// made rather than in `audit_log` (a pledge's, on the hot path: `pledges.made_by_*`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Author {
    /// None for the bootstrap operator key, which is not stored.
    pub key_id: Option<Uuid>,
    pub role: Role,
}

/// One write made through the API.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub(crate) struct Record {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// None for the bootstrap operator key, which is not stored.
    pub key_id: Option<Uuid>,
    pub role: Role,
    pub method: String,
    /// The matched path template.
    pub route: String,
    pub object_id: Option<String>,
    pub status: i16,
}

/// Writes `rows` in one statement.
pub(crate) async fn insert_many(conn: &mut PgConnection, rows: &[Record]) -> sqlx::Result<()> {
    sqlx::query(
        "insert into audit_log (id, at, key_id, role, method, route, object_id, status)
         select id, at, key_id, role::api_role, method, route, object_id, status
           from unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::int2[])
                as u(id, at, key_id, role, method, route, object_id, status)",
    )
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.key_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.role.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.method.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.route.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.object_id.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// The keyset of `GET /v1/audit-log`: newest first, in the order the rows were recorded (their
/// ids are UUIDv7, ordered by the time they were made).
pub(crate) type PageKey = Uuid;

/// Which rows a reader asks for.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub object_id: Option<String>,
    pub key_id: Option<Uuid>,
}

/// A page of rows, newest first (rows for [`crate::paging::Page::of`]). Only the conditions
/// asked for are in the statement. The primary key serves the whole trail, the object's index
/// a filter by object; a filter by key walks the trail newest first (the trail is written on
/// the hot pledge path, so it carries no index a reader could do without).
pub(crate) async fn page(
    conn: &mut PgConnection,
    filter: &Filter,
    request: &PageRequest<PageKey>,
) -> sqlx::Result<Vec<Record>> {
    let mut conditions = vec!["true"];
    if filter.object_id.is_some() {
        conditions.push("object_id = $1");
    }
    if filter.key_id.is_some() {
        conditions.push("key_id = $2");
    }
    if request.after.is_some() {
        conditions.push("id < $3");
    }
    sqlx::query_as(&format!(
        "select id, at, key_id, role, method, route, object_id, status from audit_log
          where {}
          order by id desc
          limit $4",
        conditions.join(" and ")
    ))
    .bind(filter.object_id.as_deref())
    .bind(filter.key_id)
    .bind(request.after)
    .bind(request.fetch())
    .fetch_all(conn)
    .await
}
