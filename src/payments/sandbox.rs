//! The sandbox provider's test controls: make a payment succeed or fail, confirm a refund or a
//! payout, move the manual clock. For now they call the domain directly; step 3 routes them
//! through a signed webhook to `POST /v1/webhooks/sandbox`, as an outside provider would.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Applied, SANDBOX};
use crate::clock::ClockError;
use crate::http::AppState;
use crate::http::auth::{Auth, Operators};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath};
use crate::money::{Currency, Money};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(payment_succeed))
        .routes(routes!(payment_fail))
        .routes(routes!(refund_succeed))
        .routes(routes!(payout_succeed))
        .routes(routes!(get_clock, move_clock))
}

#[derive(Serialize, ToSchema)]
pub struct Outcome {
    id: String,
    /// False when the event had already been applied or no longer applies.
    applied: bool,
}

fn outcome(id: String, applied: Applied) -> Json<Outcome> {
    Json(Outcome {
        id,
        applied: applied == Applied::Done,
    })
}

/// Sandbox: the card payment succeeds.
#[utoipa::path(post, path = "/v1/sandbox/payments/{id}/succeed", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn payment_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let (amount, currency): (Decimal, String) =
        sqlx::query_as("select amount, currency from payments where provider = $1 and provider_payment_id = $2")
            .bind(SANDBOX)
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no sandbox payment {id}")))?;
    let paid = Money::new(amount, Currency::parse(&currency)?)?;
    let applied = super::confirm_payment(&mut tx, SANDBOX, &id, paid, state.clock.now()).await?;
    tx.commit().await?;
    Ok(outcome(id, applied))
}

/// Sandbox: the card payment fails.
#[utoipa::path(post, path = "/v1/sandbox/payments/{id}/fail", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn payment_fail(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let applied = super::fail_payment(&mut tx, SANDBOX, &id, state.clock.now()).await?;
    tx.commit().await?;
    Ok(outcome(id, applied))
}

/// Sandbox: the refund reached the investor's card.
#[utoipa::path(post, path = "/v1/sandbox/refunds/{id}/succeed", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn refund_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let applied = super::confirm_refund(&mut tx, SANDBOX, &id, state.clock.now()).await?;
    tx.commit().await?;
    Ok(outcome(id, applied))
}

/// Sandbox: the payout reached the project.
#[utoipa::path(post, path = "/v1/sandbox/payouts/{id}/succeed", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn payout_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let applied = super::confirm_payout(&mut tx, SANDBOX, &id, state.clock.now()).await?;
    tx.commit().await?;
    Ok(outcome(id, applied))
}

#[derive(Serialize, ToSchema)]
pub struct ClockView {
    now: DateTime<Utc>,
}

/// Sandbox: the service's business time.
#[utoipa::path(get, path = "/v1/sandbox/clock", tag = "sandbox", security(("api_key" = [])),
    responses((status = 200, body = ClockView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_clock(State(state): State<AppState>, _auth: Auth<Operators>) -> Json<ClockView> {
    Json(ClockView { now: state.clock.now() })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveClock {
    /// Move by this many seconds (negative moves back).
    advance_seconds: Option<i64>,
    /// Or set to this time.
    now: Option<DateTime<Utc>>,
}

/// Sandbox: move the manual clock (`clock.mode = "manual"` only). Background jobs act on the
/// new time within a second.
#[utoipa::path(post, path = "/v1/sandbox/clock", tag = "sandbox", request_body = MoveClock, security(("api_key" = [])),
    responses((status = 200, body = ClockView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn move_clock(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppJson(body): AppJson<MoveClock>,
) -> Result<Json<ClockView>, ApiError> {
    let moved = match (body.advance_seconds, body.now) {
        (Some(seconds), None) => state.clock.advance(seconds),
        (None, Some(to)) => state.clock.set(to),
        _ => return Err(ApiError::validation("give exactly one of advance_seconds and now")),
    };
    let now = moved.map_err(|e| match e {
        ClockError::NotManual => ApiError::new(StatusCode::CONFLICT, "clock_not_manual", e.to_string()),
        ClockError::OutOfRange => ApiError::validation(e.to_string()),
    })?;
    Ok(Json(ClockView { now }))
}
