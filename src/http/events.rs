//! The outbox over HTTP: `GET /v1/events` and `GET /v1/events/{id}`, so a platform can catch up
//! on what its webhooks told it (or would have), newest first. Each event is the envelope its
//! webhook delivery carries, `{id, type, created_at, data}`; the schema of each type's `data` is
//! in the document's `webhooks` section (`super::event_catalogue`).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Auth, BookReaders};
use super::error::{ApiError, Problem};
use super::extract::{AppPath, AppQuery};
use super::state::AppState;
use crate::outbox::{self, EventType, StoredEvent};
use crate::paging::{Page, PageRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
}

/// In the document, an event type is one of the names the service emits.
impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(schema::SchemaType::new(Type::String))
            .description(Some("An event type: what happened, `<object>.<what>`"))
            .enum_values(Some(EventType::ALL.map(EventType::as_str)))
            .into()
    }
}

impl ToSchema for EventType {}

/// An event: the body of the webhook delivery that carries it, as stored.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct EventView {
    id: Uuid,
    #[serde(rename = "type")]
    #[schema(value_type = EventType)]
    kind: String,
    /// When it happened, to the nanosecond, as its deliveries say.
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    /// What happened; its fields depend on `type`: the schema of each type's `data` is the
    /// request body of the webhook of that name in this document's `webhooks` section.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

impl TryFrom<StoredEvent> for EventView {
    type Error = ApiError;

    fn try_from(e: StoredEvent) -> Result<Self, ApiError> {
        serde_json::from_value(e.payload).map_err(ApiError::internal)
    }
}

crate::page_of!(
    /// A page of events, newest first.
    EventPage,
    EventView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(value_type = Option<EventType>)]
    kind: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// The events the outbox holds, newest first, of one type or all. Events are kept for ever
/// (retention purges none), so a platform can replay what its webhooks told it.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = EventPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_events(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppQuery(q): AppQuery<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let types = match q.kind.as_deref() {
        None => EventType::ALL.to_vec(),
        Some(name) => vec![EventType::parse(name).ok_or_else(|| {
            ApiError::invalid(
                "type",
                format!(
                    "{name:?} is not an event type; one of: {}",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ),
            )
        })?],
    };
    let page = PageRequest::<(DateTime<Utc>, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let rows = outbox::list(&mut conn, &types, page.after, page.fetch()).await?;
    let page = Page::of(rows, &page, |e| (e.created_at, e.id));
    Ok(Json(EventPage {
        items: page
            .items
            .into_iter()
            .map(EventView::try_from)
            .collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    }))
}

/// One event.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = EventView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_event(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<EventView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let event = outbox::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))?;
    Ok(Json(event.try_into()?))
}
