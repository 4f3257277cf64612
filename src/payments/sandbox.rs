//! The sandbox provider: its adapter and its test controls (make a payment succeed or fail,
//! confirm a refund, a payout or a deposit, move the manual clock). A control never touches the
//! books itself: it sends a signed webhook over HTTP to the service's own
//! `POST /v1/webhooks/sandbox`, as an outside provider would, and reports what that endpoint
//! answered. The controls are routed only under a manual clock (`crate::http::api`).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Providers;
use super::SANDBOX;
use super::provider::{Event, Object, PaymentProvider, ProviderError, Received, header, invalid_signature};
use crate::clock::{ClockError, wall_clock};
use crate::http::auth::{Auth, Operators};
use crate::http::error::{ApiError, Code, Problem};
use crate::http::extract::{AppJson, AppPath};
use crate::http::state::AppState;
use crate::money::{Currency, Money, format_amount};
use crate::webhooks::signature;
use uuid::Uuid;

/// The built-in test-mode provider. Its objects are our rows; its ids name them.
pub struct Sandbox;

/// The sandbox's signing secret when `payments.sandbox.webhook_secret` is unset: public (it is
/// in this repository), so it serves only with a manual clock, and the settings refuse it under
/// the system clock.
pub const DEVELOPMENT_SECRET: &str = "whsec_c2FuZGJveC1kZXZlbG9wbWVudC1zZWNyZXQtY2hhbmdlLW1l";

/// The sandbox where it exists (a manual clock).
pub struct SandboxSetup {
    /// Signs the sandbox's webhooks and verifies them on arrival.
    pub secret: signature::WebhookSecret,
    /// The sandbox confirms refunds, payouts and deposits by itself (`payments.sandbox.auto_confirm`).
    pub auto_confirm: bool,
}

impl Providers {
    /// The sandbox, or the answer of a path that does not exist where it does not.
    fn sandbox_setup(&self) -> Result<&SandboxSetup, ApiError> {
        self.sandbox.as_ref().ok_or_else(crate::http::no_such_route)
    }
}

impl PaymentProvider for Sandbox {
    fn name(&self) -> &'static str {
        SANDBOX
    }

    fn create(&self, object: Object, id: Uuid, _amount: Money) -> Result<String, ProviderError> {
        let prefix = match object {
            Object::Payment => "pay",
            Object::Refund => "re",
            Object::Payout => "po",
            Object::Deposit => "dep",
        };
        Ok(format!("{prefix}_{}", id.simple()))
    }

    fn read_webhook(
        &self,
        settings: &Providers,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Received, ApiError> {
        read(settings, headers, body, now)
    }
}

/// The sandbox's body: `{"id":"evt_…","type":"payment.succeeded","created":…,"data":{…}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SandboxEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: SandboxData,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SandboxData {
    /// The payment's id; for refund and payout events, the refund's or payout's.
    pub payment_id: String,
    pub amount: String,
    pub currency: String,
}

/// Verifies and reads a sandbox (Standard Webhooks) delivery.
fn read(settings: &Providers, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Received, ApiError> {
    let id = header(headers, "webhook-id")?;
    let timestamp = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    signature::verify(
        &[&settings.sandbox_setup()?.secret],
        id,
        timestamp,
        signatures,
        body,
        now,
    )
    .map_err(invalid_signature)?;
    let parsed: Result<SandboxEvent, _> = serde_json::from_slice(body);
    let Ok(parsed) = parsed else {
        return Ok(Received::unreadable(Some(id), body, "unreadable body"));
    };
    let event = sandbox_event(&parsed).map(|e| vec![e]);
    Ok(Received::read(parsed.id, parsed.kind, event, body))
}

fn sandbox_event(e: &SandboxEvent) -> Result<Event, String> {
    let id = e.data.payment_id.clone();
    let money = || -> Result<Money, String> {
        let currency = Currency::parse(&e.data.currency).map_err(|err| err.to_string())?;
        let amount: crate::money::Amount = e
            .data
            .amount
            .parse()
            .map_err(|err: crate::money::MoneyError| err.to_string())?;
        Money::new(amount.value(), currency).map_err(|e| e.to_string())
    };
    Ok(match e.kind.as_str() {
        "payment.succeeded" => Event::PaymentSucceeded {
            payment_id: id,
            amount: money()?,
        },
        "payment.failed" => Event::PaymentFailed { payment_id: id },
        "refund.succeeded" => Event::RefundSucceeded {
            refund_id: id,
            amount: money()?,
        },
        "payout.paid" => Event::PayoutPaid {
            payout_id: id,
            amount: money()?,
        },
        _ => Event::Other,
    })
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(payment_succeed))
        .routes(routes!(payment_fail))
        .routes(routes!(refund_succeed))
        .routes(routes!(payout_succeed))
        .routes(routes!(deposit_succeed))
        .routes(routes!(get_clock, move_clock))
}

#[derive(Serialize, ToSchema)]
pub struct Outcome {
    /// The payment's, refund's or payout's id.
    id: String,
    /// The id of the webhook event the sandbox sent.
    event_id: String,
    /// False when the event had already been applied, no longer applies, or was quarantined.
    applied: bool,
    /// What the service's webhook endpoint answered: applied, ignored or quarantined.
    outcome: String,
}

/// Looks up what the sandbox holds under `id` in `table`: its amount and currency.
async fn lookup(state: &AppState, table: &str, id_column: &str, id: &str) -> Result<(Decimal, String), ApiError> {
    sqlx::query_as(&format!(
        "select amount, currency from {table} where provider = $1 and {id_column} = $2"
    ))
    .bind(SANDBOX)
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no sandbox {} {id}", table.trim_end_matches('s'))))
}

/// Sends one signed event to the service's own webhook endpoint, exactly as an outside
/// provider would (Standard Webhooks headers), and reports what the endpoint answered.
async fn send(
    state: &AppState,
    kind: &str,
    id: String,
    amount: Decimal,
    currency: String,
) -> Result<Json<Outcome>, ApiError> {
    // A provider stamps and signs with its own clock, the real one: the manual clock is ours.
    let now = wall_clock().timestamp();
    let currency_code = Currency::parse(&currency)?;
    let event = SandboxEvent {
        id: format!("evt_{}", Uuid::now_v7().simple()),
        kind: kind.to_string(),
        created: now,
        data: SandboxData {
            payment_id: id.clone(),
            amount: format_amount(amount, currency_code),
            currency,
        },
    };
    let body = serde_json::to_vec(&event).map_err(ApiError::internal)?;
    let signature = signature::signature_header(&[&state.providers.sandbox_setup()?.secret], &event.id, now, &body);
    let base = state
        .providers
        .self_url
        .get()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the service's own address is not known yet")))?;
    let response = state
        .providers
        .client
        .post(format!("{base}/v1/webhooks/{SANDBOX}"))
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| ApiError::new(Code::WebhookFailed, format!("delivering the sandbox event: {e}")))?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(ApiError::new(
            Code::WebhookFailed,
            format!(
                "the webhook endpoint answered {status}: {}",
                answer["detail"].as_str().unwrap_or("")
            ),
        ));
    }
    let outcome = answer["outcome"].as_str().unwrap_or("unknown").to_string();
    let applied = outcome == "applied" && answer["duplicate"] != true;
    Ok(Json(Outcome {
        id,
        event_id: event.id,
        applied,
        outcome,
    }))
}

/// Sandbox: the card payment succeeds (a signed `payment.succeeded` webhook is sent).
#[utoipa::path(post, path = "/v1/sandbox/payments/{id}/succeed", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn payment_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let (amount, currency) = lookup(&state, "payments", "provider_payment_id", &id).await?;
    send(&state, "payment.succeeded", id, amount, currency).await
}

/// Sandbox: the card payment fails (a signed `payment.failed` webhook is sent).
#[utoipa::path(post, path = "/v1/sandbox/payments/{id}/fail", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn payment_fail(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let (amount, currency) = lookup(&state, "payments", "provider_payment_id", &id).await?;
    send(&state, "payment.failed", id, amount, currency).await
}

/// Sandbox: the refund reached the investor's card (a signed `refund.succeeded` webhook).
#[utoipa::path(post, path = "/v1/sandbox/refunds/{id}/succeed", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn refund_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let (amount, currency) = lookup(&state, "refunds", "provider_refund_id", &id).await?;
    send(&state, "refund.succeeded", id, amount, currency).await
}

/// Sandbox: the payout reached the project (a signed `payout.paid` webhook).
#[utoipa::path(post, path = "/v1/sandbox/payouts/{id}/succeed", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn payout_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let (amount, currency) = lookup(&state, "payouts", "provider_payout_id", &id).await?;
    send(&state, "payout.paid", id, amount, currency).await
}

/// Sandbox: the sponsor's deposit arrived (a signed `payment.succeeded` webhook for it).
#[utoipa::path(post, path = "/v1/sandbox/deposits/{id}/succeed", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn deposit_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let (amount, currency) = lookup(&state, "deposits", "provider_deposit_id", &id).await?;
    send(&state, "payment.succeeded", id, amount, currency).await
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
        ClockError::NotManual => ApiError::new(Code::ClockNotManual, e.to_string()),
        ClockError::OutOfRange => ApiError::validation(e.to_string()),
    })?;
    Ok(Json(ClockView { now }))
}

/// With `payments.sandbox.auto_confirm`, the sandbox confirms pending refunds, payouts and deposits by
/// itself, through the same signed webhook as its test controls. Card payments always wait for
/// `/succeed` or `/fail`. Several processes may send the same confirmation; the endpoint applies
/// it once (the refund or payout row is locked and re-checked there).
pub async fn auto_confirm(state: &AppState) -> Result<usize, ApiError> {
    let pending: Vec<(&'static str, String, Decimal, String)> = sqlx::query_as(
        "(select 'refund.succeeded', provider_refund_id, amount, currency from refunds
           where provider = $1 and status = 'pending' order by created_at limit 100)
         union all
         (select 'payout.paid', provider_payout_id, amount, currency from payouts
           where provider = $1 and status = 'pending' order by created_at limit 100)
         union all
         (select 'payment.succeeded', provider_deposit_id, amount, currency from deposits
           where provider = $1 and status = 'pending' order by created_at limit 100)",
    )
    .bind(SANDBOX)
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .map(|(kind, id, amount, currency): (String, String, Decimal, String)| {
        let kind = match kind.as_str() {
            "payout.paid" => "payout.paid",
            "payment.succeeded" => "payment.succeeded",
            _ => "refund.succeeded",
        };
        (kind, id, amount, currency)
    })
    .collect();
    let count = pending.len();
    for (kind, id, amount, currency) in pending {
        let Json(sent) = send(state, kind, id, amount, currency).await?;
        tracing::debug!(id = %sent.id, outcome = %sent.outcome, "sandbox confirmed by itself");
    }
    Ok(count)
}
