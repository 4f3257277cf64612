//! Events from payment providers: `POST /v1/webhooks/{provider}`.
//!
//! The raw bytes are verified before anything is parsed (401 `invalid_signature` and no effect
//! otherwise). Every verified event is stored raw and deduplicated by (provider, event id) in the
//! same transaction that applies it, with its ledger entry and outbox event. An event that does
//! not fit (amount or currency mismatch, unknown payment) is quarantined: stored, listed for
//! operators, never applied.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::{Acquire, PgConnection};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Applied, SANDBOX};
use crate::http::AppState;
use crate::http::auth::{Auth, Operators};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppPath, AppQuery};
use crate::money::{Currency, Money};
use crate::webhooks::signature::{self, SignatureError};

pub const STRIPE: &str = "stripe";

/// What a provider tells us, whatever its wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    PaymentSucceeded {
        payment_id: String,
        amount: Money,
    },
    PaymentFailed {
        payment_id: String,
    },
    RefundSucceeded {
        refund_id: String,
    },
    PayoutPaid {
        payout_id: String,
    },
    /// A verified event of a type we do not act on.
    Other,
}

/// An event as received: its provider's id and type, and its meaning.
#[derive(Clone, Debug)]
pub struct Received {
    pub event_id: String,
    pub event_type: String,
    /// `None` when the verified body could not be understood: it is quarantined.
    pub event: Result<Vec<Event>, String>,
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

fn invalid_signature(err: SignatureError) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        format!("webhook signature refused: {err}"),
    )
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| invalid_signature(SignatureError::NoSignature))
}

/// Verifies and reads a sandbox (Standard Webhooks) delivery.
pub fn read_sandbox(state: &AppState, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Received, ApiError> {
    let id = header(headers, "webhook-id")?;
    let timestamp = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    signature::verify(&[&state.providers.sandbox_secret], id, timestamp, signatures, body, now)
        .map_err(invalid_signature)?;
    let parsed: Result<SandboxEvent, _> = serde_json::from_slice(body);
    let Ok(parsed) = parsed else {
        return Ok(Received {
            event_id: id.to_string(),
            event_type: "unknown".into(),
            event: Err("unreadable body".into()),
        });
    };
    let event = sandbox_event(&parsed);
    Ok(Received {
        event_id: parsed.id,
        event_type: parsed.kind,
        event: event.map(|e| vec![e]),
    })
}

fn sandbox_event(e: &SandboxEvent) -> Result<Event, String> {
    let id = e.data.payment_id.clone();
    Ok(match e.kind.as_str() {
        "payment.succeeded" => {
            let currency = Currency::parse(&e.data.currency).map_err(|err| err.to_string())?;
            let amount: crate::money::Amount = e
                .data
                .amount
                .parse()
                .map_err(|err: crate::money::MoneyError| err.to_string())?;
            Event::PaymentSucceeded {
                payment_id: id,
                amount: Money::new(amount.value(), currency).map_err(|e| e.to_string())?,
            }
        }
        "payment.failed" => Event::PaymentFailed { payment_id: id },
        "refund.succeeded" => Event::RefundSucceeded { refund_id: id },
        "payout.paid" => Event::PayoutPaid { payout_id: id },
        _ => Event::Other,
    })
}

/// Stripe's envelope: `{"id":"evt_…","type":"payment_intent.succeeded","data":{"object":{…}}}`.
#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeData,
}

#[derive(Deserialize)]
struct StripeData {
    object: serde_json::Value,
}

/// Verifies and reads a Stripe delivery.
pub fn read_stripe(state: &AppState, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Received, ApiError> {
    let secret = state
        .providers
        .stripe_secret
        .as_ref()
        .ok_or_else(|| ApiError::not_found("the stripe provider is not configured"))?;
    let sig = header(headers, "stripe-signature")?;
    signature::stripe_verify(secret.expose_secret().as_bytes(), sig, body, now).map_err(invalid_signature)?;
    let parsed: StripeEvent = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(_) => {
            let id = format!(
                "unreadable:{}",
                hex::encode(sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
                    body
                )))
            );
            return Ok(Received {
                event_id: id,
                event_type: "unknown".into(),
                event: Err("unreadable body".into()),
            });
        }
    };
    let event = stripe_events(&parsed.kind, &parsed.data.object);
    Ok(Received {
        event_id: parsed.id,
        event_type: parsed.kind,
        event,
    })
}

/// Stripe amounts are integers in the currency's minor unit, currencies lowercase.
fn stripe_money(object: &serde_json::Value) -> Result<Money, String> {
    let minor = object["amount"].as_i64().ok_or("no integer amount")?;
    let currency = Currency::parse(&object["currency"].as_str().ok_or("no currency")?.to_ascii_uppercase())
        .map_err(|e| e.to_string())?;
    Money::new(Decimal::new(minor, currency.minor_units()), currency).map_err(|e| e.to_string())
}

fn stripe_events(kind: &str, object: &serde_json::Value) -> Result<Vec<Event>, String> {
    let id = || {
        object["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no object id".to_string())
    };
    Ok(match kind {
        "payment_intent.succeeded" => vec![Event::PaymentSucceeded {
            payment_id: id()?,
            amount: stripe_money(object)?,
        }],
        "payment_intent.payment_failed" => vec![Event::PaymentFailed { payment_id: id()? }],
        // A charge lists its refunds; each one is confirmed.
        "charge.refunded" => object["refunds"]["data"]
            .as_array()
            .ok_or("no refunds on the charge")?
            .iter()
            .map(|r| {
                r["id"].as_str().map(|id| Event::RefundSucceeded {
                    refund_id: id.to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or("a refund without an id")?,
        "payout.paid" => vec![Event::PayoutPaid { payout_id: id()? }],
        _ => vec![Event::Other],
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, ToSchema)]
#[sqlx(type_name = "inbound_event_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It changed something.
    Applied,
    /// Verified and stored, but nothing to do (a repeat in effect, or a type we do not act on).
    Ignored,
    /// Stored for operators, never applied: it does not match what we know.
    Quarantined,
}

#[derive(Serialize, ToSchema)]
pub struct Ack {
    event_id: String,
    outcome: Outcome,
    /// True when this event id had been received before: nothing was done this time.
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

async fn apply(
    conn: &mut PgConnection,
    provider: &str,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Applied, ApiError> {
    match event {
        Event::PaymentSucceeded { payment_id, amount } => {
            super::confirm_payment(conn, provider, payment_id, *amount, now).await
        }
        Event::PaymentFailed { payment_id } => super::fail_payment(conn, provider, payment_id, now).await,
        Event::RefundSucceeded { refund_id } => super::confirm_refund(conn, provider, refund_id, now).await,
        Event::PayoutPaid { payout_id } => super::confirm_payout(conn, provider, payout_id, now).await,
        Event::Other => Ok(Applied::Nothing),
    }
}

/// Stores a verified event and applies it, in one transaction. A replay of a stored event id
/// changes nothing. A domain refusal (4xx) quarantines the event; anything else (5xx) rolls
/// back so the provider retries.
pub async fn receive(
    conn: &mut PgConnection,
    provider: &str,
    received: Received,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Ack, ApiError> {
    let mut tx = conn.begin().await?;
    let id = Uuid::now_v7();
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "insert into inbound_events (id, provider, event_id, event_type, body, received_at, status)
         values ($1, $2, $3, $4, $5, $6, 'ignored')
         on conflict (provider, event_id) do nothing
         returning id",
    )
    .bind(id)
    .bind(provider)
    .bind(&received.event_id)
    .bind(&received.event_type)
    .bind(body)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        let (outcome, detail): (Outcome, Option<String>) =
            sqlx::query_as("select status, detail from inbound_events where provider = $1 and event_id = $2")
                .bind(provider)
                .bind(&received.event_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        return Ok(Ack {
            event_id: received.event_id,
            outcome,
            duplicate: true,
            detail,
        });
    }

    let (outcome, detail) = match &received.event {
        Err(why) => (Outcome::Quarantined, Some(why.clone())),
        Ok(events) => {
            let mut outcome = Outcome::Ignored;
            let mut detail = None;
            let mut savepoint = tx.begin().await?;
            for event in events {
                match apply(&mut savepoint, provider, event, now).await {
                    Ok(Applied::Done) => outcome = Outcome::Applied,
                    Ok(Applied::Nothing) => {}
                    Err(err) if err.status().is_client_error() => {
                        outcome = Outcome::Quarantined;
                        detail = Some(format!("{}: {}", err.code(), err.detail()));
                        break;
                    }
                    Err(err) => return Err(err),
                }
            }
            if outcome == Outcome::Quarantined {
                // Nothing of a refused event may stick, not even the part applied before it.
                savepoint.rollback().await?;
            } else {
                savepoint.commit().await?;
            }
            (outcome, detail)
        }
    };
    sqlx::query("update inbound_events set status = $2, detail = $3 where id = $1")
        .bind(id)
        .bind(outcome)
        .bind(&detail)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if outcome == Outcome::Quarantined {
        tracing::warn!(provider, event_id = %received.event_id, detail = detail.as_deref().unwrap_or(""), "webhook event quarantined");
    }
    Ok(Ack {
        event_id: received.event_id,
        outcome,
        duplicate: false,
        detail,
    })
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhook))
        .routes(routes!(quarantine))
}

/// Events from a payment provider (`sandbox` or `stripe`), authenticated by their signature.
#[utoipa::path(post, path = "/v1/webhooks/{provider}", tag = "webhooks", params(("provider" = String, Path)),
    request_body(content = String, description = "the provider's signed event, verified byte for byte"),
    responses((status = 200, body = Ack), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn webhook(
    State(state): State<AppState>,
    AppPath(provider): AppPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Ack>, ApiError> {
    let now = state.clock.now();
    let received = match provider.as_str() {
        SANDBOX => read_sandbox(&state, &headers, &body, now.timestamp())?,
        STRIPE => read_stripe(&state, &headers, &body, now.timestamp())?,
        _ => return Err(ApiError::not_found(format!("no payment provider '{provider}'"))),
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(receive(&mut conn, &provider, received, &body, now).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct QuarantinedEvent {
    id: Uuid,
    provider: String,
    event_id: String,
    event_type: String,
    received_at: DateTime<Utc>,
    detail: Option<String>,
    /// The verified body, as received.
    body: String,
}

/// Events held back because they did not match what the books know (newest first).
#[utoipa::path(get, path = "/v1/webhooks/quarantine", tag = "webhooks", params(QuarantineQuery),
    security(("api_key" = [])),
    responses((status = 200, body = Vec<QuarantinedEvent>), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn quarantine(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppQuery(q): AppQuery<QuarantineQuery>,
) -> Result<Json<Vec<QuarantinedEvent>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 1000"));
    }
    let rows: Vec<QuarantineRow> = sqlx::query_as(
        "select id, provider, event_id, event_type, received_at, detail, body from inbound_events
          where status = 'quarantined' order by received_at desc, id desc limit $1",
    )
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(
        rows.into_iter()
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
    ))
}

#[derive(sqlx::FromRow)]
struct QuarantineRow {
    id: Uuid,
    provider: String,
    event_id: String,
    event_type: String,
    received_at: DateTime<Utc>,
    detail: Option<String>,
    body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stripe_events_map_onto_ours() {
        let eur = |s: &str| Money::new(s.parse().unwrap(), Currency::EUR).unwrap();
        let paid = stripe_events(
            "payment_intent.succeeded",
            &json!({"id": "pi_1", "amount": 12050, "currency": "eur"}),
        );
        assert_eq!(
            paid,
            Ok(vec![Event::PaymentSucceeded {
                payment_id: "pi_1".into(),
                amount: eur("120.50")
            }])
        );
        let failed = stripe_events("payment_intent.payment_failed", &json!({"id": "pi_1"}));
        assert_eq!(
            failed,
            Ok(vec![Event::PaymentFailed {
                payment_id: "pi_1".into()
            }])
        );
        let refunded = stripe_events(
            "charge.refunded",
            &json!({"id": "ch_1", "refunds": {"data": [{"id": "re_1"}, {"id": "re_2"}]}}),
        );
        assert_eq!(
            refunded,
            Ok(vec![
                Event::RefundSucceeded {
                    refund_id: "re_1".into()
                },
                Event::RefundSucceeded {
                    refund_id: "re_2".into()
                }
            ])
        );
        let payout = stripe_events("payout.paid", &json!({"id": "po_1", "amount": 100, "currency": "eur"}));
        assert_eq!(
            payout,
            Ok(vec![Event::PayoutPaid {
                payout_id: "po_1".into()
            }])
        );
        assert_eq!(stripe_events("customer.created", &json!({})), Ok(vec![Event::Other]));
        // Yen has no minor unit: 500 is 500 JPY.
        let yen = stripe_events(
            "payment_intent.succeeded",
            &json!({"id": "pi_2", "amount": 500, "currency": "jpy"}),
        );
        let expected = Money::new(500.into(), Currency::parse("JPY").unwrap()).unwrap();
        assert_eq!(
            yen,
            Ok(vec![Event::PaymentSucceeded {
                payment_id: "pi_2".into(),
                amount: expected
            }])
        );
        assert!(
            stripe_events(
                "payment_intent.succeeded",
                &json!({"id": "pi_3", "amount": "12", "currency": "eur"})
            )
            .is_err()
        );
        assert!(stripe_events("charge.refunded", &json!({"id": "ch_2"})).is_err());
    }
}
