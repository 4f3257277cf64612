//! Operators' webhook endpoints: register, list deliveries, rotate the secret, redeliver.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::inbound::{Ack, Inbound, receive};
use super::outbound::{self, DeliveryView, Endpoint};
use crate::clock::wall_clock;
use crate::http::auth::{Auth, Operators};
use crate::http::error::{ApiError, Code, Problem};
use crate::http::extract::{AppBytes, AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::outbox::EventType;

pub fn router() -> OpenApiRouter<AppState> {
    inbound_router()
        .routes(routes!(create_endpoint))
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
    events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointView {
    id: Uuid,
    url: String,
    events: Vec<String>,
    status: String,
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
        EndpointView {
            id: e.id,
            url: e.url,
            events: e.events,
            status: e.status,
            secret: Some(e.secret),
            previous_secret_valid_until: e.previous_secret_until,
            created_at: e.created_at,
        }
    }
}

fn unprocessable(code: Code, detail: impl Into<String>) -> ApiError {
    ApiError::new(code, detail)
}

/// Register an endpoint for events. Its signing secret is returned once. Honours
/// `Idempotency-Key` (a replay answers with `secret: null`: the secret is never stored with it).
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = CreateEndpoint,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response (without the secret) for the same key and body")),
    security(("api_key" = [])),
    responses((status = 201, body = EndpointView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_endpoint(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppJson(body): AppJson<CreateEndpoint>,
) -> Result<Response, ApiError> {
    if body.events.is_empty() || body.events.len() > EventType::ALL.len() {
        return Err(ApiError::validation("events lists 1 or more event types"));
    }
    if let Some(unknown) = body.events.iter().find(|e| EventType::parse(e).is_none()) {
        return Err(ApiError::validation(format!(
            "unknown event type '{unknown}'; known: {}",
            EventType::ALL.map(EventType::as_str).join(", ")
        )));
    }
    // Shown to operators in listings: a single line that shows what it holds.
    crate::fields::address("url", &body.url, 2000)?;
    state
        .providers
        .webhooks
        .check(&body.url)
        .await
        .map_err(|e| unprocessable(Code::InvalidTarget, e.to_string()))?;
    let mut events = body.events.clone();
    events.sort();
    events.dedup();
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveriesQuery {
    /// How many, newest first: 1 to 500 (default 50).
    limit: Option<i64>,
}

/// An endpoint's deliveries, newest first, with every attempt.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path), DeliveriesQuery), security(("api_key" = [])),
    responses((status = 200, body = Vec<DeliveryView>), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_deliveries(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<DeliveriesQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 500"));
    }
    let mut conn = state.pool.acquire().await?;
    outbound::endpoint(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no webhook endpoint {id}")))?;
    Ok(Json(outbound::deliveries(&mut conn, id, limit).await?))
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
        .ok_or_else(|| ApiError::not_found(format!("no webhook endpoint {id}")))?;
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

/// The providers' signed events and the quarantine.
fn inbound_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhook))
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
    let inbound = Inbound {
        provider,
        received,
        body,
        now,
    };
    // Confirmations arrive in floods too: many per transaction (the `inbound` lane of crate::batch), else one by one.
    let inbound = match state.inbound.submit(inbound).await {
        Ok(ack) => return Ok(Json(ack?)),
        Err(inbound) => inbound,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(receive(&mut conn, &inbound).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuarantineQuery {
    /// The `id` of the last event of the previous page (its `next_before`): the page goes on
    /// with older events.
    before: Option<Uuid>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
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

#[derive(Serialize, ToSchema)]
pub struct QuarantinePage {
    items: Vec<QuarantinedEvent>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<Uuid>,
}

/// Events held back because they did not match what the books know, newest first, a page at
/// a time (keyset paging on `received_at, id`, so events quarantined meanwhile neither shift
/// nor repeat the pages that follow).
#[utoipa::path(get, path = "/v1/webhooks/quarantine", tag = "webhooks", params(QuarantineQuery),
    security(("api_key" = [])),
    responses((status = 200, body = QuarantinePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn quarantine(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppQuery(q): AppQuery<QuarantineQuery>,
) -> Result<Json<QuarantinePage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 1000"));
    }
    let mut conn = state.pool.acquire().await?;
    let rows = super::inbound::quarantined(&mut conn, q.before, limit)
        .await?
        .ok_or_else(|| {
            ApiError::validation(format!("before: no quarantined event {}", q.before.unwrap_or_default()))
        })?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(QuarantinePage {
        items: rows
            .into_iter()
            .map(|r| QuarantinedEvent {
                id: r.id,
                provider: r.provider,
                event_id: r.event_id,
                event_type: r.event_type,
                received_at: r.received_at,
                detail: r.detail,
                body: String::from_utf8_lossy(&r.body).into_owned(),
            })
            .collect(),
        next_before,
    }))
}
