//! Pledges over HTTP: make one, read it, revoke it; an investor's pledges and holdings
//! (`portfolio`).

pub mod batcher;
mod portfolio;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::rules::{self, PledgeRequest};
use super::view::PledgeView;
use super::{PledgeError, PledgeStatus, store};
use crate::cheques::{ChequeError, attempts};
use crate::http::auth::{Auth, Caller, PlatformUsers};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath};
use crate::http::idempotency::{self, IdempotencyKey, RequiredKey};
use crate::http::state::AppState;
use crate::payments;
use crate::payments::provider::PaymentProvider;
use crate::rounds;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_pledge))
        .routes(routes!(revoke_pledge))
        .routes(routes!(reconfirm_pledge))
        .routes(routes!(payment_session))
        .routes(routes!(portfolio::list_investor_pledges))
        .routes(routes!(portfolio::list_holdings))
}

/// A pledge's creation, the hot path: outside the audit middleware, as the pledge keeps its
/// author on its own row (`pledges.made_by_*`, docs/audit-log.md).
pub fn create_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_pledge))
}

crate::page_of!(
    /// A page of pledges.
    PledgePage,
    PledgeView
);

/// Pledge shares in an open offer. `Idempotency-Key` is required: the same key and body return
/// the same pledge; the key with another body is refused.
#[utoipa::path(post, path = "/v1/offers/{id}/pledges", tag = "pledges", params(("id" = Uuid, Path),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "required; 1 to 255 visible ASCII characters")),
    request_body = PledgeRequest, security(("api_key" = [])),
    responses((status = 201, body = PledgeView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_pledge(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<PlatformUsers>,
    RequiredKey(key): RequiredKey,
    AppPath(offer_id): AppPath<Uuid>,
    AppJson(mut body): AppJson<PledgeRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    // Card money needs a provider to take it: without one, refused before anything is read or
    // written (no pledge, no key to replay). Cheque-only pledges need none.
    let card = if body.funding.iter().any(|s| s.kind.through_provider()) {
        Some(state.providers.card_provider()?)
    } else {
        None
    };
    let fingerprint = idempotency::fingerprint(&format!("POST /v1/offers/{offer_id}/pledges"), &body);
    // After the fingerprint: a replay is the same request whatever the setting is by then.
    if body.risk_acknowledged && body.risk_warning_version.is_none() {
        body.risk_warning_version = Some(state.risk_warning_version.to_string());
    }
    if body.card_only() {
        // Card pledges are judged and written in their offer's batch (pledges/http/batcher.rs).
        let job = batcher::Job {
            scope: idempotency::scope(&caller),
            author: caller.author(),
            key,
            fingerprint,
            request: body,
            now,
        };
        return match state.batcher.submit(offer_id, job).await {
            Ok(answered) => answered,
            Err(job) => {
                let mut conn = state.pool.acquire().await?;
                let checked = rules::check(&mut conn, offer_id, &job.request, now)
                    .await
                    .map_err(ApiError::from);
                drop(conn);
                one_by_one(&state, &caller, &job.key, &job.fingerprint, now, checked, card).await
            }
        };
    }
    // Guessing cheque codes is slowed down (cheques/attempts.rs): the attempt is claimed before
    // any code is tested, so racing requests cannot all slip under the investor's allowance.
    let scopes = attempts::Scopes::new(body.investor_id, caller.key_id);
    let claim = attempts::claim(&state.pool, scopes, now).await?;
    // Checks that need no lock run before the transaction.
    let mut conn = state.pool.acquire().await?;
    let checked = rules::check(&mut conn, offer_id, &body, now).await;
    drop(conn);
    let wrong = matches!(&checked, Err(PledgeError::Cheque(ChequeError::UnknownCode)));
    let checked = checked.map_err(ApiError::from);
    let created = one_by_one(&state, &caller, &key, &fingerprint, now, checked, card).await;
    let tested = match &created {
        _ if wrong => attempts::Tested::Wrong,
        Ok(_) => attempts::Tested::Right,
        Err(_) => attempts::Tested::NotAGuess,
    };
    // The answer stands either way: an unsettled claim only counts against the investor.
    if let Err(err) = claim.settle(&state.pool, tested, now).await {
        tracing::error!(error = ?err, "a cheque-code attempt was not settled");
    }
    created
}

/// A pledge in a transaction of its own.
async fn one_by_one(
    state: &AppState,
    caller: &Caller,
    key: &IdempotencyKey,
    fingerprint: &[u8],
    now: DateTime<Utc>,
    checked: Result<rules::Checked, ApiError>,
    card: Option<&'static dyn PaymentProvider>,
) -> Result<Response, ApiError> {
    // The payment a networked provider is yet to create, when this request made one.
    let mut to_call: Option<Uuid> = None;
    let response = idempotency::once(&state.pool, caller, Some(key), fingerprint, now, async |conn| {
        // A replayed key answers before this runs, even once the offer is full or closed.
        let rules::Created {
            pledge,
            payment,
            matchable,
        } = rules::create(conn, checked?, card, caller.author(), now).await?;
        // Funded at once by cheques: matched now, under the offer's row lock its reservation took.
        if pledge.status == PledgeStatus::Funded && matchable {
            rounds::matching::apply(conn, &pledge, now).await?;
        }
        to_call = payment
            .as_ref()
            .filter(|p| p.provider_payment_id.is_none())
            .map(|p| p.id);
        Ok((StatusCode::CREATED, PledgeView::new(pledge, payment)))
    })
    .await?;
    let Some(payment_id) = to_call else {
        return Ok(response);
    };
    // The first try, after commit and with no transaction open: its answer (the provider's id,
    // and the secret the investor's front-end confirms the payment with, or the page they pay
    // on) is the investor's next step. Without one the pledge stands as stored, and the worker repeats the call.
    let created =
        match rounds::calls::attempt_now(&state.pool, &state.providers, payment_id, || state.clock.now()).await {
            Ok(Some(made)) => made.ok(),
            Ok(None) => return Ok(response),
            Err(err) => {
                tracing::error!(error = ?err, payment = %payment_id, "a payment's first call could not be recorded");
                return Ok(response);
            }
        };
    // Read again: named, or cancelled when the provider refused it for good.
    let mut conn = state.pool.acquire().await?;
    let payment = payments::card::payment(&mut conn, payment_id)
        .await?
        .expect("payments are never deleted");
    let pledge = store::get(&mut conn, payment.pledge_id)
        .await?
        .expect("pledges are never deleted");
    let (secret, redirect_url) = created.map_or((None, None), |c| (c.client_secret, c.redirect_url));
    let view = PledgeView::read(&mut conn, pledge, Some(payment))
        .await?
        .with_client_secret(secret)
        .with_redirect_url(redirect_url);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// A pledge and its state, for the platform and operators; an auditor reads pledges in their
/// offer's list.
#[utoipa::path(get, path = "/v1/pledges/{id}", tag = "pledges", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = PledgeView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_pledge(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<PledgeView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let pledge = store::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no pledge {id}")))?;
    let payment = payments::card::payment_of_pledge(&mut conn, id).await?;
    Ok(Json(PledgeView::read(&mut conn, pledge, payment).await?))
}

/// Revoke a non-sophisticated investor's pledge within its 4-day reflection period: its money
/// is given back in full, without reason or penalty.
#[utoipa::path(post, path = "/v1/pledges/{id}/revoke", tag = "pledges", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = PledgeView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn revoke_pledge(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<PledgeView>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let pledge = crate::rounds::ending::revoke(&mut tx, id, state.clock.now()).await?;
    let payment = payments::card::payment_of_pledge(&mut tx, id).await?;
    let view = PledgeView::read(&mut tx, pledge, payment).await?;
    tx.commit().await?;
    Ok(Json(view))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconfirmation {
    /// The SHA-256 of the amended key investment information sheet the investor read: the
    /// version the amendment added (or a later one), still current.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    kiis_sha256: String,
}

/// Reconfirm a pledge after its offer's Key Investment Information Sheet was amended (ECSP art.
/// 23): the investor read the new version and keeps the pledge. Until `reconfirm_by`; after it,
/// an unconfirmed pledge is revoked and its money given back.
#[utoipa::path(post, path = "/v1/pledges/{id}/reconfirm", tag = "pledges", params(("id" = Uuid, Path)),
    request_body = Reconfirmation, security(("api_key" = [])),
    responses((status = 200, body = PledgeView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn reconfirm_pledge(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<Reconfirmation>,
) -> Result<Json<PledgeView>, ApiError> {
    let kiis = crate::offers::documents::parse_sha256("kiis_sha256", &body.kiis_sha256)?;
    let mut tx = state.pool.begin().await?;
    let pledge = rounds::reconfirmation::reconfirm(&mut tx, id, &kiis, state.clock.now()).await?;
    let payment = payments::card::payment_of_pledge(&mut tx, id).await?;
    let view = PledgeView::read(&mut tx, pledge, payment).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// What the investor's front-end needs to pay a pledge's payment that is still pending, asked of
/// the provider again (Stripe's `client_secret`, Mangopay's hosted page), never stored: the
/// answer to the pledge's creation carries it once; this is for a replay of that creation, or a
/// page reloaded. The sandbox has nothing to hand over (its payments are confirmed by its
/// controls).
#[utoipa::path(get, path = "/v1/pledges/{id}/payment-session", tag = "pledges", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = payments::provider::PaymentRef), (status = "4XX", body = Problem, content_type = "application/problem+json"),
              (status = 502, body = Problem, content_type = "application/problem+json")))]
async fn payment_session(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<payments::provider::PaymentRef>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    store::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no pledge {id}")))?;
    let payment = payments::card::payment_of_pledge(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("pledge {id} has no card payment")))?;
    drop(conn);
    let not_pending = || {
        ApiError::new(
            crate::http::error::Code::PaymentNotPending,
            format!("pledge {id}'s payment is no longer waiting for the investor"),
        )
    };
    if payment.status != payments::card::PaymentStatus::Pending {
        return Err(not_pending());
    }
    let mut session =
        payments::provider::PaymentRef::new(payment.provider.clone(), payment.provider_payment_id.clone());
    let Some(remote) = state.providers.remote(&payment.provider) else {
        // An in-process provider: nothing to hand over.
        return Ok(Json(session));
    };
    let Some(provider_id) = payment.provider_payment_id else {
        return Err(ApiError::new(
            crate::http::error::Code::ProviderUnavailable,
            format!(
                "{} has not yet created pledge {id}'s payment; the service keeps asking",
                payment.provider
            ),
        )
        .retry_after(5));
    };
    let fetched = remote
        .fetch(payments::provider::Object::Payment, &provider_id)
        .await
        .map_err(|err| crate::http::error::provider_call_failed(&payment.provider, err))?;
    if fetched.state != payments::calls::RemoteState::Pending {
        return Err(not_pending());
    }
    session.client_secret = fetched
        .client_secret
        .map(|s| secrecy::ExposeSecret::expose_secret(&s).to_owned());
    session.redirect_url = fetched.redirect_url;
    Ok(Json(session))
}
