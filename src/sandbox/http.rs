//! The sandbox's test controls: make the built-in provider succeed, fail or dispute a payment,
//! decide a dispute, or succeed a refund, payout, deposit or withdrawal (it then posts its signed webhook to this service like
//! a real provider), and read or move the manual clock. Routed only under a manual clock (`crate::app`), and
//! above the domains like any handler: the adapter itself is `payments::sandbox`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::{ClockError, wall_clock};
use crate::http::auth::{Auth, Operators};
use crate::http::error::{ApiError, Code, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::state::AppState;
use crate::money::{Amount, Currency, Money, format_amount};
use crate::payments::SANDBOX;
use crate::payments::refunds::{self, RefundView};
use crate::payments::sandbox::{SandboxData, SandboxEvent, dispute_id_of, payment_of_dispute};
use crate::webhooks::signature;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(payment_succeed))
        .routes(routes!(payment_fail))
        .routes(routes!(payment_dispute))
        .routes(routes!(dispute_close))
        .routes(routes!(refund_succeed))
        .routes(routes!(payout_succeed))
        .routes(routes!(deposit_succeed))
        .routes(routes!(withdrawal_succeed))
        .routes(routes!(get_clock, move_clock))
}

/// Named apart in the document: the inbound webhook's `Outcome` (an enum) has the plain name,
/// and two schemas of one name leave only one of them there.
#[derive(Serialize, ToSchema)]
#[schema(as = SandboxOutcome)]
pub struct Outcome {
    /// The payment's, refund's or payout's id.
    id: String,
    /// A dispute's controls: the dispute's id (`dp_…`), which
    /// `POST /v1/sandbox/disputes/{id}/close` takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    dispute_id: Option<String>,
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

/// An event's data: `id` names the payment, refund or payout, the amount is written with its
/// currency's decimals.
fn data(id: String, amount: Decimal, currency: String) -> Result<SandboxData, ApiError> {
    let code = Currency::parse(&currency)?;
    Ok(SandboxData {
        payment_id: id,
        amount: format_amount(amount, code),
        currency,
        dispute_id: None,
        status: None,
    })
}

/// Sends one signed event to the service's own webhook endpoint, exactly as an outside
/// provider would (Standard Webhooks headers), and reports what the endpoint answered.
async fn send(state: &AppState, kind: &str, data: SandboxData) -> Result<Json<Outcome>, ApiError> {
    // A provider stamps and signs with its own clock, the real one: the manual clock is ours.
    let now = wall_clock().timestamp();
    let (id, dispute_id) = (data.payment_id.clone(), data.dispute_id.clone());
    let event = SandboxEvent {
        id: format!("evt_{}", Uuid::now_v7().simple()),
        kind: kind.to_string(),
        created: now,
        data,
    };
    let body = serde_json::to_vec(&event).map_err(ApiError::internal)?;
    let signature = signature::signature_header(
        &[&state
            .providers
            .sandbox
            .as_ref()
            .ok_or_else(crate::http::no_such_route)?
            .secret],
        &event.id,
        now,
        &body,
    );
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
        dispute_id,
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
    send(&state, "payment.succeeded", data(id, amount, currency)?).await
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
    send(&state, "payment.failed", data(id, amount, currency)?).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisputeQuery {
    /// Dispute only this much of the payment, with its currency's decimals (default: all of it).
    #[param(value_type = Option<String>, example = "50.00")]
    amount: Option<String>,
}

/// Sandbox: the investor disputes the captured card payment with their bank, for all of it or
/// `amount` (a signed `payment.disputed` webhook is sent, naming the dispute `dispute_id`). The
/// pledge is announced disputed (`pledge.disputed`) once; its status and the books do not change
/// until the dispute is decided (`/v1/sandbox/disputes/{id}/close`).
#[utoipa::path(post, path = "/v1/sandbox/payments/{id}/dispute", tag = "sandbox", params(("id" = String, Path), DisputeQuery),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn payment_dispute(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<DisputeQuery>,
) -> Result<Json<Outcome>, ApiError> {
    let (paid, currency) = lookup(&state, "payments", "provider_payment_id", &id).await?;
    let amount = match q.amount {
        Some(asked) => {
            let asked: Amount = asked
                .parse()
                .map_err(|e| ApiError::validation(format!("amount: {e}")))?;
            Money::positive(asked.value(), Currency::parse(&currency)?)
                .map_err(|e| ApiError::validation(format!("amount: {e}")))?
                .amount()
        }
        None => paid,
    };
    let mut data = data(id, amount, currency)?;
    data.dispute_id = Some(dispute_id_of(&data.payment_id));
    send(&state, "payment.disputed", data).await
}

/// How the bank decided a dispute.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DisputeOutcome {
    /// For the platform: no money moves.
    Won,
    /// For the investor: the bank takes the disputed money back.
    Lost,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"outcome": "lost"}))]
pub(crate) struct CloseDispute {
    outcome: DisputeOutcome,
}

/// Sandbox: the bank decides the dispute `id` (the `dispute_id` the dispute control answered),
/// and a signed `dispute.closed` webhook is sent: `lost` books the chargeback
/// (docs/disputes.md), `won` moves nothing. A dispute the sandbox never sent is closed for all
/// of its payment, and the service opens it as it closes it; asking again changes nothing.
#[utoipa::path(post, path = "/v1/sandbox/disputes/{id}/close", tag = "sandbox", params(("id" = String, Path)),
    request_body = CloseDispute, security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn dispute_close(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<CloseDispute>,
) -> Result<Json<Outcome>, ApiError> {
    let no_such = || ApiError::not_found(format!("no sandbox dispute {id}"));
    let payment = payment_of_dispute(&id).ok_or_else(no_such)?;
    let (amount, currency) = match lookup(&state, "disputes", "provider_dispute_id", &id).await {
        Ok(opened) => opened,
        Err(_) => lookup(&state, "payments", "provider_payment_id", &payment)
            .await
            .map_err(|_| no_such())?,
    };
    let mut data = data(payment, amount, currency)?;
    data.dispute_id = Some(id.clone());
    data.status = Some(
        match body.outcome {
            DisputeOutcome::Won => "won",
            DisputeOutcome::Lost => "lost",
        }
        .to_string(),
    );
    send(&state, "dispute.closed", data).await
}

/// Sandbox: the refund reached the investor's card (a signed `refund.succeeded` webhook). `id` is
/// the refund's own (`GET /v1/refunds`); the answer is the refund after the webhook, `succeeded`
/// (asking again changes nothing).
#[utoipa::path(post, path = "/v1/sandbox/refunds/{id}/succeed", tag = "sandbox", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = RefundView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn refund_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<RefundView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let refund = refunds::get(&mut conn, id)
        .await?
        .filter(|r| r.provider == SANDBOX)
        .ok_or_else(|| ApiError::not_found(format!("no sandbox refund {id}")))?;
    let provider_refund_id = refund
        .provider_refund_id
        .clone()
        .expect("the sandbox names its refunds when they are written");
    drop(conn);
    let amount = refund.amount;
    // The refund read afterwards says what the webhook did (a repeat changes nothing).
    let _ = send(
        &state,
        "refund.succeeded",
        data(
            provider_refund_id,
            amount.amount(),
            amount.currency().code().to_string(),
        )?,
    )
    .await?;
    let mut conn = state.pool.acquire().await?;
    let refund = refunds::get(&mut conn, id).await?.expect("refunds are never deleted");
    Ok(Json(refund.into()))
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
    send(&state, "payout.paid", data(id, amount, currency)?).await
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
    send(&state, "payment.succeeded", data(id, amount, currency)?).await
}

/// Sandbox: the sponsor received its withdrawal (a signed `payout.paid` webhook for it). `id` is
/// the provider's id (`wd_…`, the withdrawal's `payment.payment_id`).
#[utoipa::path(post, path = "/v1/sandbox/withdrawals/{id}/succeed", tag = "sandbox", params(("id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Outcome), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn withdrawal_succeed(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Outcome>, ApiError> {
    let (amount, currency) = lookup(&state, "withdrawals", "provider_withdrawal_id", &id).await?;
    send(&state, "payout.paid", data(id, amount, currency)?).await
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ClockView {
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
    #[serde(default, deserialize_with = "crate::fields::whole_opt")]
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

/// With `payments.sandbox.auto_confirm`, the sandbox confirms pending refunds, payouts, deposits and
/// withdrawals by itself, through the same signed webhook as its test controls. Card payments always wait for
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
           where provider = $1 and status = 'pending' order by created_at limit 100)
         union all
         (select 'payout.paid', provider_withdrawal_id, amount, currency from withdrawals
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
        let Json(sent) = send(state, kind, data(id, amount, currency)?).await?;
        tracing::debug!(id = %sent.id, outcome = %sent.outcome, "sandbox confirmed by itself");
    }
    Ok(count)
}
