//! The audit trail over HTTP (docs/audit-log.md): a middleware that records every successful
//! write made with a key (which key, which method and route, which object, the service clock's
//! time), a writer that stores those records many per statement off the request's path, and
//! `GET /v1/audit-log` to read them.
//!
//! Why not in each write's own transaction: writes commit in many places (`idempotency::once`,
//! handlers' own transactions, the pledge batcher's shared ones), and the hot pledge path must
//! not pay a statement per request. The cost is a window: rows still queued when the process
//! dies are lost; the ledger and the outbox are not affected. A pledge's creation is not
//! recorded here at all: the pledge keeps its author on its own row (`app::Routes`), and the
//! reader merges those in.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::{self, Filter, Record};
use crate::http::auth::{Auth, BookReaders, CallerSlot};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::AppQuery;
use crate::http::state::AppState;
use crate::keys::Role;
use crate::paging::{Page, PageRequest};
use crate::pledges;

/// Records waiting for the writer; when it falls this far behind, writers wait for room rather
/// than lose a record.
const QUEUE: usize = 16_384;
/// Rows per insert statement.
const BATCH: usize = 1000;
/// Tries of one batch before its rows are given up (and logged, so they can be restored).
const TRIES: u32 = 8;
/// How long the writer gathers records under load before it stores them.
const GATHER: Duration = Duration::from_millis(50);

enum Message {
    Record(Record),
    /// Answered once every record queued before it is stored.
    Flush(oneshot::Sender<()>),
}

/// The queue to the writer, started on first use.
#[derive(Clone)]
pub struct AuditTrail {
    pool: PgPool,
    queue: Arc<OnceLock<mpsc::Sender<Message>>>,
}

impl AuditTrail {
    pub fn new(pool: PgPool) -> Self {
        AuditTrail {
            pool,
            queue: Arc::default(),
        }
    }

    fn queue(&self) -> &mpsc::Sender<Message> {
        self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(write(self.pool.clone(), receiver));
            sender
        })
    }

    async fn record(&self, record: Record) {
        if self.queue().send(Message::Record(record)).await.is_err() {
            tracing::error!("the audit writer has stopped; a record is lost");
        }
    }

    /// Waits until every record queued so far is stored (or given up): a reader of the trail
    /// then sees every write answered before it asked, and a shutdown loses nothing queued.
    pub async fn flush(&self) {
        let Some(queue) = self.queue.get() else {
            return;
        };
        let (done, stored) = oneshot::channel();
        if queue.send(Message::Flush(done)).await.is_ok() {
            let _ = stored.await;
        }
    }
}

/// Stores queued records, up to [`BATCH`] per statement: under load a statement carries many
/// requests' records, so the trail adds no statement per request.
async fn write(pool: PgPool, mut receiver: mpsc::Receiver<Message>) {
    let mut messages = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut messages, BATCH).await > 0 {
        // Under load, gather a while longer: one insert and one commit per GATHER, not per
        // handful of requests, so the trail does not compete with the writes it records for
        // the WAL's flushes. A reader waiting on a flush is not kept waiting.
        let waiting = |m: &[Message]| m.iter().any(|m| matches!(m, Message::Flush(_)));
        if messages.len() < BATCH && !waiting(&messages) {
            let deadline = tokio::time::Instant::now() + GATHER;
            while messages.len() < BATCH && !waiting(&messages) {
                let more = BATCH - messages.len();
                match tokio::time::timeout_at(deadline, receiver.recv_many(&mut messages, more)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        let mut records = Vec::with_capacity(messages.len());
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Record(r) => records.push(r),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !records.is_empty() {
            store(&pool, &records, flushes.is_empty()).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn store(pool: &PgPool, records: &[Record], lazily: bool) {
    let mut wait = Duration::from_millis(50);
    for attempt in 1..=TRIES {
        let stored = async {
            let mut tx = pool.begin().await?;
            if lazily {
                // The trail's rows are already best effort (a crash loses what is queued): their
                // commit need not wait for the WAL's flush, which the writes themselves wait
                // for. A reader's flush (`GET /v1/audit-log`) commits durably.
                sqlx::query("set local synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
            }
            audit::insert_many(&mut tx, records).await?;
            tx.commit().await
        };
        match stored.await {
            Ok(()) => return,
            Err(err) if attempt < TRIES => {
                tracing::warn!(error = %err, attempt, "storing audit records failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                let lost = serde_json::to_string(records).unwrap_or_default();
                tracing::error!(error = %err, count = records.len(), %lost, "audit records could not be stored");
            }
        }
    }
}

/// The middleware: for a write (POST, PUT, PATCH, DELETE) that succeeded (2xx) for a caller with
/// a key, queues its record. A replay of an idempotent request changed nothing and is not
/// recorded; a provider's webhook has no key and is recorded in `inbound_events` instead.
/// What the middleware needs, and no more: it runs on every request, the hot pledge path's
/// included, so it clones two handles rather than the whole state.
#[derive(Clone)]
pub(crate) struct Recorder {
    pub trail: AuditTrail,
    pub clock: crate::clock::Clock,
}

pub(crate) async fn record(State(recorder): State<Recorder>, request: Request, next: Next) -> Response {
    if !matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let slot = CallerSlot::default();
    parts.extensions.insert(slot.clone());
    let route = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let path_id = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| params.iter().find(|(name, _)| *name == "id").map(|(_, v)| v.to_owned()));
    let method = parts.method.as_str().to_owned();
    let response = next.run(Request::from_parts(parts, body)).await;

    let status = response.status();
    let (Some(caller), Some(route)) = (slot.get(), route) else {
        return response;
    };
    // A console form answers a write it made with a redirect to the page that shows it.
    let done = status.is_success() || status.is_redirection();
    if !done || response.headers().contains_key("idempotent-replayed") {
        return response;
    }
    let at = recorder.clock.now();
    // A create names what it made in its body; other writes act on the path's `{id}`.
    let (response, object_id) = match path_id {
        Some(id) if status != StatusCode::CREATED => (response, Some(id)),
        path_id => {
            let (response, made) = id_in_body(response).await;
            (response, made.or(path_id))
        }
    };
    recorder
        .trail
        .record(Record {
            id: Uuid::now_v7(),
            at,
            key_id: caller.key_id,
            role: caller.role,
            method,
            route,
            object_id,
            status: status.as_u16() as i16,
        })
        .await;
    response
}

/// The top-level `id` of a JSON response, and the response as it was.
async fn id_in_body(response: Response) -> (Response, Option<String>) {
    #[derive(Deserialize)]
    struct WithId {
        id: Option<serde_json::Value>,
    }
    let (parts, body) = response.into_parts();
    // The service's answers are in memory already; reading one copies no more than it holds.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    // Views put their `id` first: read it without parsing the body (a pledge's is on the hot
    // path); anything else is parsed.
    if let Some(id) = bytes
        .strip_prefix(br#"{"id":""#)
        .and_then(|rest| rest.get(..36))
        .and_then(|id| std::str::from_utf8(id).ok())
        .filter(|id| Uuid::parse_str(id).is_ok())
    {
        let id = id.to_owned();
        return (Response::from_parts(parts, Body::from(bytes)), Some(id));
    }
    let id = serde_json::from_slice::<WithId>(&bytes)
        .ok()
        .and_then(|b| b.id)
        .and_then(|id| id.as_str().map(str::to_owned));
    (Response::from_parts(parts, Body::from(bytes)), id)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_log))
}

/// One write: who made it, what and when.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEntryView {
    id: Uuid,
    /// The service clock's time when the write answered.
    at: DateTime<Utc>,
    /// The key that made it; null for the bootstrap operator key.
    key_id: Option<Uuid>,
    role: Role,
    #[schema(example = "POST")]
    method: String,
    /// The route's path template.
    #[schema(example = "/v1/projects/{id}/publish")]
    route: String,
    /// What a create made, else the `{id}` of the path; null for a write to no object.
    object_id: Option<String>,
    /// The status the write answered.
    #[schema(example = 200)]
    status: u16,
}

impl From<Record> for AuditEntryView {
    fn from(r: Record) -> Self {
        AuditEntryView {
            id: r.id,
            at: r.at,
            key_id: r.key_id,
            role: r.role,
            method: r.method,
            route: r.route,
            object_id: r.object_id,
            status: r.status as u16,
        }
    }
}

crate::page_of!(
    /// A page of the audit trail, newest first.
    AuditPage,
    AuditEntryView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Only writes to this object (a create's new id, or the `{id}` of a write's path).
    object_id: Option<String>,
    /// Only writes made with this key.
    key_id: Option<Uuid>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// The audit trail: every write made through the API with a key, newest first.
#[utoipa::path(get, path = "/v1/audit-log", tag = "audit", params(AuditQuery),
    security(("api_key" = [])),
    responses((status = 200, body = AuditPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_audit_log(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let request = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    if q.object_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > 200) {
        return Err(ApiError::invalid("object_id", "object_id has 1 to 200 characters"));
    }
    let filter = Filter {
        object_id: q.object_id,
        key_id: q.key_id,
    };
    // Every write answered before this request is in the trail it reads.
    state.audit.flush().await;
    let mut conn = state.pool.acquire().await?;
    let mut rows = audit::page(&mut conn, &filter, &request).await?;
    // Pledges keep their author on their own row (`app::Routes`): their creations are
    // merged in, in the same order (both ids are UUIDv7). An object id that is no UUID is no
    // pledge's.
    let pledge = filter.object_id.as_deref().map(Uuid::parse_str);
    if !matches!(pledge, Some(Err(_))) {
        let pledge = pledge.and_then(Result::ok);
        let made = pledges::store::creations(&mut conn, pledge, filter.key_id, request.after, request.fetch()).await?;
        rows.extend(made);
        rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
        rows.truncate(usize::try_from(request.fetch()).unwrap_or(usize::MAX));
    }
    Ok(Json(Page::of(rows, &request, |r| r.id).into()))
}
