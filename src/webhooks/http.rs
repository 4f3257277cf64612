//! Operators' webhook endpoints: register, list, read, change, delete, list deliveries, rotate
//! the secret, redeliver.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::inbound::{Ack, Inbound, QuarantineKey, Quarantined, receive};
use super::outbound::{self, DeliveryKey, DeliveryView, Endpoint, EndpointChanges, EndpointKey, EndpointStatus};
use crate::clock::wall_clock;
use crate::http::auth::{Auth, Operators};
use crate::http::error::{ApiError, Code, Problem};
use crate::http::extract::{AppBytes, AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::outbox::EventType;
use crate::paging::{Page, PageRequest};
use crate::payments::mangopay::hooks::Notification;

pub fn router() -> OpenApiRouter<AppState> {
    inbound_router()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(list_deliveries))
        .routes(routes!(rotate_secret))
        .routes(routes!(redeliver))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    #[schema(example = "https://platform.example/hooks/crowdledger")]
    url: String,
    /// Event types to receive, e.g. ["pledge.funded", "offer.succeeded"].
    #[schema(value_type = Vec<EventType>, min_items = 1, example = json!(["pledge.funded", "offer.succeeded"]))]
    events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointView {
    id: Uuid,
    url: String,
    events: Vec<String>,
    status: EndpointStatus,
    /// When it was disabled (by an operator, or by the service after a delivery exhausted its
    /// retries); null while enabled.
    disabled_at: Option<DateTime<Utc>>,
    /// The signing secret (`whsec_…`): shown only in the response that creates or rotates it;
    /// null in a replay of the registration for the same `Idempotency-Key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// After a rotation, the old secret also signs until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_valid_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl EndpointView {
    fn with_secret(e: Endpoint) -> Self {
        let secret = e.secret.clone();
        EndpointView {
            secret: Some(secret),
            ..EndpointView::from(e)
        }
    }
}

/// Without its secret: only the answers that create or rotate it show one.
impl From<Endpoint> for EndpointView {
    fn from(e: Endpoint) -> Self {
        EndpointView {
            id: e.id,
            url: e.url,
            events: e.events,
            status: e.status,
            disabled_at: e.disabled_at,
            secret: None,
            previous_secret_valid_until: e.previous_secret_until,
            created_at: e.created_at,
        }
    }
}

fn unprocessable(code: Code, detail: impl Into<String>) -> ApiError {
    ApiError::new(code, detail)
}

/// The event types an endpoint subscribes to, checked, sorted and without repeats.
fn checked_events(events: &[String]) -> Result<Vec<String>, ApiError> {
    if events.is_empty() || events.len() > EventType::ALL.len() {
        return Err(ApiError::invalid("events", "events lists 1 or more event types"));
    }
    if let Some(unknown) = events.iter().find(|e| EventType::parse(e).is_none()) {
        return Err(ApiError::invalid(
            "events",
            format!(
                "unknown event type '{unknown}'; known: {}",
                EventType::ALL.map(EventType::as_str).join(", ")
            ),
        ));
    }
    let mut events = events.to_vec();
    events.sort();
    events.dedup();
    Ok(events)
}

/// A URL deliveries may go to: one line, and a target the guard lets deliveries reach
/// (422 `invalid_target` otherwise).
async fn checked_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    // Shown to operators in listings: a single line that shows what it holds.
    crate::fields::address("url", url, 2000)?;
    state
        .providers
        .webhooks
        .check(url)
        .await
        .map_err(|e| unprocessable(Code::InvalidTarget, e.to_string()))
}

/// Register an endpoint for events. Its signing secret is returned once. Honours
/// `Idempotency-Key` (a replay answers with `secret: null`: the secret is never stored with it).
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = CreateEndpoint,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response (without the secret) for the same key and body")),
    security(("api_key" = [])),
    responses((status = 201, body = EndpointView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_endpoint(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppJson(body): AppJson<CreateEndpoint>,
) -> Result<Response, ApiError> {
    let events = checked_events(&body.events)?;
    checked_url(&state, &body.url).await?;
    let now = state.clock.now();
    let fingerprint = idempotency::fingerprint("POST /v1/webhook-endpoints", &body);
    idempotency::once_keeping_secret(
        &state.pool,
        &caller,
        key.as_ref(),
        &fingerprint,
        now,
        Some("secret"),
        async |conn| {
            let endpoint = outbound::create_endpoint(conn, &body.url, &events, now).await?;
            Ok((StatusCode::CREATED, EndpointView::with_secret(endpoint)))
        },
    )
    .await
}

crate::page_of!(
    /// A page of webhook endpoints, newest first.
    EndpointPage,
    EndpointView
);

/// A list's page: `limit` and `cursor`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// The endpoints, newest first, a page at a time (never their secrets; deleted ones are gone).
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", params(PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = EndpointPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_endpoints(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<EndpointPage>, ApiError> {
    let page = PageRequest::<EndpointKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let endpoints = outbound::endpoints(&mut conn, &page).await?;
    Ok(Json(Page::of(endpoints, &page, |e| (e.created_at, e.id)).into()))
}

fn no_endpoint(id: Uuid) -> ApiError {
    ApiError::not_found(format!("no webhook endpoint {id}"))
}

/// One endpoint (never its secret).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = EndpointView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_endpoint(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<EndpointView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let endpoint = outbound::endpoint(&mut conn, id)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok(Json(endpoint.into()))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// Checked as at registration (422 `invalid_target` for a target deliveries may not reach).
    #[schema(example = "https://platform.example/hooks/crowdledger")]
    url: Option<String>,
    /// Replaces the event types it receives.
    #[schema(value_type = Option<Vec<EventType>>, min_items = 1, example = json!(["pledge.funded", "offer.succeeded"]))]
    events: Option<Vec<String>>,
    /// `enabled` also re-enables an endpoint the service disabled after a delivery exhausted its
    /// retries; its pending deliveries are then sent. A disabled endpoint receives no new events.
    status: Option<EndpointStatus>,
}

/// Change an endpoint's URL, events or status; what the body leaves out stays.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = Uuid, Path)),
    request_body = UpdateEndpoint, security(("api_key" = [])),
    responses((status = 200, body = EndpointView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn update_endpoint(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<UpdateEndpoint>,
) -> Result<Json<EndpointView>, ApiError> {
    let events = body.events.as_deref().map(checked_events).transpose()?;
    if let Some(url) = &body.url {
        checked_url(&state, url).await?;
    }
    let changes = EndpointChanges {
        url: body.url.as_deref(),
        events: events.as_deref(),
        status: body.status,
    };
    let mut conn = state.pool.acquire().await?;
    let endpoint = outbound::update_endpoint(&mut conn, id, &changes, state.clock.now())
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok(Json(endpoint.into()))
}

/// Delete an endpoint: nothing is delivered to it any more, and it is gone from the API. Its
/// deliveries are kept as history in the database.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 204, description = "deleted"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn delete_endpoint(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut conn = state.pool.acquire().await?;
    if outbound::delete_endpoint(&mut conn, id, state.clock.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_endpoint(id))
    }
}

crate::page_of!(
    /// A page of an endpoint's deliveries, newest first.
    DeliveryPage,
    DeliveryView
);

/// An endpoint's deliveries, newest first, a page at a time, with every attempt.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path), PageQuery), security(("api_key" = [])),
    responses((status = 200, body = DeliveryPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_deliveries(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let page = PageRequest::<DeliveryKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    outbound::endpoint(&mut conn, id)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok(Json(outbound::deliveries(&mut conn, id, &page).await?.into()))
}

/// A new signing secret, returned once; the old one keeps signing for 24 hours. Each call
/// rotates: no answer is stored to be replayed, so the secret is in no other place.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = EndpointView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn rotate_secret(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<EndpointView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let endpoint = outbound::rotate_secret(&mut conn, id, state.clock.now())
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok(Json(EndpointView::with_secret(endpoint)))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Redelivery {
    delivery_id: Uuid,
    endpoint_id: Uuid,
    status: &'static str,
}

/// Send a delivery again now (re-enabling its endpoint if retries had disabled it).
#[utoipa::path(post, path = "/v1/webhook-deliveries/{id}/redeliver", tag = "webhooks", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 202, body = Redelivery), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn redeliver(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<(StatusCode, Json<Redelivery>), ApiError> {
    let mut tx = state.pool.begin().await?;
    let endpoint = outbound::redeliver(&mut tx, id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no webhook delivery {id}")))?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Redelivery {
            delivery_id: id,
            endpoint_id: endpoint,
            status: "pending",
        }),
    ))
}

/// The providers' signed events and unsigned notifications, and the quarantine.
fn inbound_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhook, notification))
        // Anyone may post here: the body has a deadline of its own (src/http/body_deadline.rs).
        .route_layer(axum::middleware::from_fn(
            crate::http::body_deadline::unauthenticated_body,
        ))
        .routes(routes!(quarantine))
}

/// Events from a payment provider (`stripe`, or `sandbox` with a manual clock only),
/// authenticated by their signature, whose timestamp is judged by the wall clock.
#[utoipa::path(post, path = "/v1/webhooks/{provider}", tag = "webhooks", params(("provider" = String, Path)),
    request_body(content = String, description = "the provider's signed event, verified byte for byte"),
    responses((status = 200, body = Ack), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn webhook(
    State(state): State<AppState>,
    AppPath(provider): AppPath<String>,
    headers: HeaderMap,
    AppBytes(body): AppBytes,
) -> Result<Json<Ack>, ApiError> {
    let now = state.clock.now();
    // A provider that does not exist here (the sandbox under the system clock among them) is a
    // path that does not exist.
    let adapter = state
        .providers
        .adapter(&provider)
        .ok_or_else(crate::http::no_such_route)?;
    // The provider signed by its real clock, not by our business time (PRODUCT.md section 7).
    let received = adapter.read_webhook(
        &state.providers.webhook_secrets(),
        &headers,
        &body,
        wall_clock().timestamp(),
    )?;
    take(
        &state,
        Inbound {
            provider,
            received,
            body,
            now,
        },
    )
    .await
}

/// Applies and stores a provider's event, deduplicated by its id.
async fn take(state: &AppState, inbound: Inbound) -> Result<Json<Ack>, ApiError> {
    // Confirmations arrive in floods too: many per transaction (the `inbound` lane of crate::batch), else one by one.
    let inbound = match state.inbound.submit(inbound).await {
        Ok(ack) => return Ok(Json(ack?)),
        Err(inbound) => inbound,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(receive(&mut conn, &inbound).await?))
}

/// A Mangopay hook's query, as documented (the handler reads the raw query itself, so that a
/// wrong one is a 400 as Mangopay's retries expect, not a 422).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case, dead_code)] // a schema only: Mangopay's names, read from the raw query
struct NotificationQuery {
    /// What happened, e.g. `PAYIN_NORMAL_SUCCEEDED`.
    #[param(pattern = "^[A-Z_]{3,64}$")]
    EventType: String,
    /// The resource it happened to (Mangopay's spelling, two s), read back from Mangopay's API.
    #[param(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    RessourceId: String,
    /// When, in Unix seconds.
    Date: i64,
}

/// How long a notification's read-back may take: Mangopay counts a hook failed unless it gets a
/// 200 within 2 seconds, and the event must still be applied in that time.
const READ_BACK: std::time::Duration = std::time::Duration::from_millis(1500);

/// Notifications from a provider whose hooks are unsigned GETs naming a resource (`mangopay`,
/// when its client id and API key are set; any other provider is a path that does not exist).
/// None is trusted: the resource is read back from the provider's API and what the API says is
/// applied, with the same deduplication (event id `{EventType}:{RessourceId}:{Date}`) and
/// quarantine as signed events; a resource the API does not have, or not tagged as ours, is
/// stored as `ignored`, "not ours". A malformed query is 400 `malformed_request`; when the API
/// cannot be asked within 1.5 s, 503 `provider_unreachable`, and Mangopay sends the notification
/// again.
#[utoipa::path(get, path = "/v1/webhooks/{provider}", tag = "webhooks",
    params(("provider" = String, Path), NotificationQuery),
    responses((status = 200, body = Ack), (status = "4XX", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "the provider's API could not be asked in time (`provider_unreachable`)", body = Problem, content_type = "application/problem+json")))]
async fn notification(
    State(state): State<AppState>,
    AppPath(provider): AppPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Ack>, ApiError> {
    let now = state.clock.now();
    let client = state
        .providers
        .notified(&provider)
        .ok_or_else(crate::http::no_such_route)?;
    let notification = Notification::parse(query.as_deref().unwrap_or_default())
        .map_err(|why| ApiError::new(Code::MalformedRequest, why))?;
    let unreachable = |why: String| {
        tracing::warn!(%provider, event = %notification.event_id(), why, "a notification could not be read back");
        ApiError::new(
            Code::ProviderUnreachable,
            format!("{provider} could not be asked: {why}"),
        )
    };
    let (received, body) = tokio::time::timeout(READ_BACK, client.read_back(&notification))
        .await
        .map_err(|_| unreachable("no answer in time".into()))?
        .map_err(|err| unreachable(err.to_string()))?;
    take(
        &state,
        Inbound {
            provider,
            received,
            body: body.into(),
            now,
        },
    )
    .await
}

#[derive(Serialize, ToSchema)]
pub(crate) struct QuarantinedEvent {
    id: Uuid,
    provider: String,
    event_id: String,
    event_type: String,
    received_at: DateTime<Utc>,
    detail: Option<String>,
    /// The verified body, as received.
    body: String,
}

impl From<Quarantined> for QuarantinedEvent {
    fn from(r: Quarantined) -> Self {
        QuarantinedEvent {
            id: r.id,
            provider: r.provider,
            event_id: r.event_id,
            event_type: r.event_type,
            received_at: r.received_at,
            detail: r.detail,
            body: String::from_utf8_lossy(&r.body).into_owned(),
        }
    }
}

crate::page_of!(
    /// A page of quarantined events, newest first.
    QuarantinePage,
    QuarantinedEvent
);

/// Events held back because they did not match what the books know, newest first, a page at
/// a time (keyset paging on `received_at, id`, so events quarantined meanwhile neither shift
/// nor repeat the pages that follow).
#[utoipa::path(get, path = "/v1/webhooks/quarantine", tag = "webhooks", params(PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = QuarantinePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn quarantine(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<QuarantinePage>, ApiError> {
    let page = PageRequest::<QuarantineKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let rows = super::inbound::quarantined(&mut conn, &page).await?;
    Ok(Json(Page::of(rows, &page, |r| (r.received_at, r.id)).into()))
}
