//! Cheques over HTTP: operators issue, read, list (a sponsor's) and cancel them; the platform
//! looks one up by its code for its winner. They are spent as pledge funding (`POST
//! /v1/offers/{id}/pledges`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::attempts::{self, Scopes, Tested};
use super::{Cheque, ChequeError, ChequeInput, ChequeStatus, NewCheque, Stored};
use crate::http::auth::{Auth, Operators, PlatformUsers};
use crate::http::error::{ApiError, Code, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::money::{Money, MoneyView, format_amount};
use crate::paging::{Page, PageRequest};
use crate::sponsors::ListKey;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_cheque))
        .routes(routes!(get_cheque))
        .routes(routes!(cancel_cheque))
        .routes(routes!(list_cheques))
        .routes(routes!(lookup_cheque))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ChequeView {
    id: Uuid,
    /// Shown once, in the answer to the issue; never stored, so null on a replay and absent
    /// from reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "CHQ-7K3M-Q9TD-X2HB-RW4N")]
    code: Option<Option<String>>,
    status: ChequeStatus,
    sponsor_id: Uuid,
    beneficiary_name: String,
    beneficiary_email: String,
    #[schema(example = "2000.00")]
    face_value: String,
    /// What is left to spend.
    #[schema(example = "500.00")]
    balance: String,
    #[schema(example = "EUR")]
    currency: String,
    expires_at: DateTime<Utc>,
    eligible_themes: Vec<String>,
    eligible_project_ids: Vec<Uuid>,
    memo: Option<String>,
    created_at: DateTime<Utc>,
    /// When it expired or was cancelled.
    ended_at: Option<DateTime<Utc>>,
}

fn view(cheque: Cheque, balance: Money, code: Option<String>) -> ChequeView {
    ChequeView {
        id: cheque.id,
        code: code.map(Some),
        status: super::status(&cheque, balance),
        sponsor_id: cheque.sponsor_id,
        beneficiary_name: cheque.beneficiary_name,
        beneficiary_email: cheque.beneficiary_email,
        face_value: format_amount(cheque.face_value, cheque.currency),
        balance: balance.amount_string(),
        currency: cheque.currency.code().to_string(),
        expires_at: cheque.expires_at,
        eligible_themes: cheque.eligible_themes,
        eligible_project_ids: cheque.eligible_project_ids,
        memo: cheque.memo,
        created_at: cheque.created_at,
        ended_at: cheque.ended_at,
    }
}

/// Issue a cheque from a sponsor's budget. The answer carries the cheque's code, the only time
/// it is ever shown. Honours `Idempotency-Key` (a replay answers with `code: null`).
#[utoipa::path(post, path = "/v1/cheques", tag = "cheques", request_body = ChequeInput,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response (without the code) for the same key and body")),
    security(("api_key" = [])),
    responses((status = 201, body = ChequeView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn issue_cheque(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppJson(body): AppJson<ChequeInput>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let new = NewCheque::parse(body, now)?;
    let fingerprint = idempotency::fingerprint("POST /v1/cheques", &new);
    idempotency::once_keeping_secret(
        &state.pool,
        &caller,
        key.as_ref(),
        &fingerprint,
        now,
        Some("code"),
        async |conn| {
            let (cheque, code) = super::issue(conn, &new, now).await?;
            let balance = Money::new(cheque.face_value, cheque.currency)?;
            Ok((StatusCode::CREATED, view(cheque, balance, Some(code))))
        },
    )
    .await
}

/// One cheque: its status and what is left on it (never its code).
#[utoipa::path(get, path = "/v1/cheques/{id}", tag = "cheques", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = ChequeView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_cheque(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<ChequeView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let cheque = super::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no cheque {id}")))?;
    let balance = super::balance(&mut conn, &cheque, state.clock.now()).await?;
    Ok(Json(view(cheque, balance, None)))
}

/// Cancel a cheque: what is left on it returns to the sponsor's budget, and money given back
/// from pledges later goes there too.
#[utoipa::path(post, path = "/v1/cheques/{id}/cancel", tag = "cheques", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = ChequeView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn cancel_cheque(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<ChequeView>, ApiError> {
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    let cheque = super::end(&mut tx, id, Stored::Cancelled, now)
        .await?
        .ok_or_else(|| ApiError::new(Code::InvalidStateTransition, "only an active cheque can be cancelled"))?;
    let balance = super::balance(&mut tx, &cheque, now).await?;
    tx.commit().await?;
    Ok(Json(view(cheque, balance, None)))
}

crate::page_of!(
    /// A page of a sponsor's cheques, newest first.
    ChequePage,
    ChequeView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChequesQuery {
    /// Only the cheques in this status (`spent`: active with nothing left on it).
    status: Option<ChequeStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// A sponsor's cheques, newest first, a page at a time, each as `GET /v1/cheques/{id}` shows
/// it (never its code); those in one `status` when given.
#[utoipa::path(get, path = "/v1/sponsors/{id}/cheques", tag = "cheques", params(("id" = Uuid, Path), ChequesQuery),
    security(("api_key" = [])),
    responses((status = 200, body = ChequePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_cheques(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<ChequesQuery>,
) -> Result<Json<ChequePage>, ApiError> {
    let page = PageRequest::<ListKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    crate::sponsors::require(&mut conn, id).await?;
    let cheques = super::of_sponsor(&mut conn, id, q.status, &page).await?;
    let balances = super::balances(&mut conn, &cheques).await?;
    let page = Page::of(
        cheques.into_iter().zip(balances).collect(),
        &page,
        |(c, _): &(Cheque, Money)| (c.created_at, c.id),
    );
    Ok(Json(page.map(|(c, balance)| view(c, balance, None)).into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupInput {
    /// The code printed on the cheque (case, spaces and dashes do not matter).
    #[schema(example = "CHQ-7K3M-Q9TD-X2HB-RW4N")]
    code: String,
    /// The winner asking, when the platform knows them: wrong codes then count against this
    /// investor, as in a pledge; without it, against the API key's anonymous lookups.
    investor_id: Option<Uuid>,
}

/// An open offer the cheque may be spent in now.
#[derive(Serialize, ToSchema)]
pub(crate) struct EligibleOffer {
    offer_id: Uuid,
    project_id: Uuid,
    project_name: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LookupView {
    cheque_id: Uuid,
    /// As at the service clock's now: `expired` as soon as `expires_at` has passed.
    status: ChequeStatus,
    /// What is left to spend.
    balance: MoneyView,
    #[schema(example = "EUR")]
    currency: String,
    expires_at: DateTime<Utc>,
    eligible_themes: Vec<String>,
    eligible_project_ids: Vec<Uuid>,
    /// The open offers, in the cheque's currency, of the projects it may be spent on now;
    /// empty unless the cheque is active.
    eligible_open_offers: Vec<EligibleOffer>,
}

impl LookupView {
    fn new(found: super::Lookup, offers: Vec<crate::offers::store::OpenFor>) -> Self {
        let cheque = found.cheque;
        LookupView {
            cheque_id: cheque.id,
            status: found.status,
            balance: found.balance.into(),
            currency: cheque.currency.code().to_string(),
            expires_at: cheque.expires_at,
            eligible_themes: cheque.eligible_themes,
            eligible_project_ids: cheque.eligible_project_ids,
            eligible_open_offers: offers
                .into_iter()
                .map(|o| EligibleOffer {
                    offer_id: o.offer_id,
                    project_id: o.project_id,
                    project_name: o.project_name,
                })
                .collect(),
        }
    }
}

/// Look a cheque up by its code without spending it: its balance, expiry, restrictions and the
/// open offers it may be spent in now. Writes nothing to the books. A wrong code counts like a
/// wrong code in a pledge, against the same allowance (docs/cheques.md, "Codes"): 429
/// `too_many_attempts` with `Retry-After` while blocked, whatever the code.
#[utoipa::path(post, path = "/v1/cheques/lookup", tag = "cheques", request_body = LookupInput,
    security(("api_key" = [])),
    responses((status = 200, body = LookupView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn lookup_cheque(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<PlatformUsers>,
    AppJson(body): AppJson<LookupInput>,
) -> Result<Json<LookupView>, ApiError> {
    let now = state.clock.now();
    let scopes = match body.investor_id {
        Some(investor) => Scopes::new(investor, caller.key_id),
        None => Scopes::anonymous(caller.key_id),
    };
    // Claimed before the code is tested, as for a pledge, so racing lookups share the allowance.
    let claim = attempts::claim(&state.pool, scopes, now).await?;
    let found = async {
        let mut conn = state.pool.acquire().await?;
        let found = super::look_up(&mut conn, &body.code, body.investor_id, now).await?;
        // Where it may be spent now, by the rules of spending (`redeem::check`); nowhere unless
        // it is active.
        let offers = if found.status == ChequeStatus::Active {
            let c = &found.cheque;
            crate::offers::store::open_for(&mut conn, c.currency, &c.eligible_project_ids, &c.eligible_themes, now)
                .await?
        } else {
            Vec::new()
        };
        Ok::<_, ChequeError>((found, offers))
    }
    .await;
    // Settled with the connection given back. A known code gives the claim back but forgives no
    // wrong ones: looking up a cheque one holds must not reset the count of guesses made between
    // lookups.
    let tested = match &found {
        Err(ChequeError::UnknownCode) => Tested::Wrong,
        _ => Tested::NotAGuess,
    };
    if let Err(err) = claim.settle(&state.pool, tested, now).await {
        tracing::error!(error = ?err, "a cheque-code attempt was not settled");
    }
    let (found, offers) = found?;
    Ok(Json(LookupView::new(found, offers)))
}
