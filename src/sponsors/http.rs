//! Sponsors over HTTP: operators register and list them, request deposits into their budgets,
//! withdraw unused budget, and list those; operators and auditors read a sponsor's statement.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::deposits::{self, Deposit, DepositStatus};
use super::statement::{self, Statement};
use super::withdrawals::{self, Withdrawal, WithdrawalStatus};
use super::{ListKey, NewSponsor, Sponsor, SponsorInput};
use crate::http::auth::{Auth, BookReaders, Operators};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::money::{Amount, Currency, Money, MoneyView, PositiveAmount};
use crate::paging::{Page, PageRequest};
use crate::payments::provider::PaymentRef;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sponsors, create_sponsor))
        .routes(routes!(get_sponsor))
        .routes(routes!(list_deposits, create_deposit))
        .routes(routes!(get_deposit))
        .routes(routes!(list_withdrawals, create_withdrawal))
        .routes(routes!(get_withdrawal))
        .routes(routes!(get_statement))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SponsorView {
    id: Uuid,
    name: String,
    email: Option<String>,
    #[schema(example = "EUR")]
    currency: String,
    /// What it can still issue as cheques or withdraw: confirmed deposits, less cheques issued
    /// and withdrawals asked for, plus value given back (`GET /v1/sponsors/{id}/statement`).
    budget: MoneyView,
    created_at: DateTime<Utc>,
}

fn sponsor_view(sponsor: Sponsor, budget: Money) -> SponsorView {
    SponsorView {
        id: sponsor.id,
        name: sponsor.name,
        email: sponsor.email,
        currency: sponsor.currency.code().to_string(),
        budget: budget.into(),
        created_at: sponsor.created_at,
    }
}

crate::page_of!(
    /// A page of sponsors, newest first.
    SponsorPage,
    SponsorView
);

/// A list's page: `limit` and `cursor`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SponsorsQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// Sponsors, newest first, a page at a time, each with its budget.
#[utoipa::path(get, path = "/v1/sponsors", tag = "sponsors", params(SponsorsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = SponsorPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_sponsors(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppQuery(q): AppQuery<SponsorsQuery>,
) -> Result<Json<SponsorPage>, ApiError> {
    let page = PageRequest::<ListKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let sponsors = super::list(&mut conn, &page).await?;
    let budgets = super::budgets(&mut conn, &sponsors).await?;
    let page = Page::of(
        sponsors.into_iter().zip(budgets).collect(),
        &page,
        |(s, _): &(Sponsor, Money)| (s.created_at, s.id),
    );
    Ok(Json(page.map(|(s, budget)| sponsor_view(s, budget)).into()))
}

/// Register a sponsor, with an empty budget. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/sponsors", tag = "sponsors", request_body = SponsorInput,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    security(("api_key" = [])),
    responses((status = 201, body = SponsorView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_sponsor(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppJson(body): AppJson<SponsorInput>,
) -> Result<Response, ApiError> {
    let new = NewSponsor::parse(body).map_err(|e| ApiError::validation(e.to_string()))?;
    let fingerprint = idempotency::fingerprint("POST /v1/sponsors", &new);
    let now = state.clock.now();
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let sponsor = super::insert(conn, &new, now).await?;
        let budget = Money::zero(sponsor.currency);
        Ok((StatusCode::CREATED, sponsor_view(sponsor, budget)))
    })
    .await
}

/// One sponsor, with its budget.
#[utoipa::path(get, path = "/v1/sponsors/{id}", tag = "sponsors", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = SponsorView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_sponsor(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<SponsorView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let sponsor = super::require(&mut conn, id).await?;
    let budget = super::budget(&mut conn, &sponsor).await?;
    Ok(Json(sponsor_view(sponsor, budget)))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositInput {
    /// More than zero, in the currency's precision.
    #[schema(value_type = PositiveAmount, example = "10000.00")]
    amount: Amount,
    #[schema(value_type = crate::money::CurrencyCode)]
    currency: Currency,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DepositView {
    id: Uuid,
    sponsor_id: Uuid,
    status: DepositStatus,
    #[schema(example = "10000.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    /// Where to pay: the provider's payment for this deposit.
    payment: PaymentRef,
    created_at: DateTime<Utc>,
}

impl From<Deposit> for DepositView {
    fn from(d: Deposit) -> Self {
        DepositView {
            id: d.id,
            sponsor_id: d.sponsor_id,
            status: d.status,
            amount: crate::money::format_amount(d.amount, d.currency),
            currency: d.currency.code().to_string(),
            payment: PaymentRef::new(d.provider, Some(d.provider_deposit_id)),
            created_at: d.created_at,
        }
    }
}

/// Request a deposit into the sponsor's budget from the payment provider. The budget grows only
/// when the provider confirms it by its signed webhook. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/sponsors/{id}/deposits", tag = "sponsors", params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    request_body = DepositInput, security(("api_key" = [])),
    responses((status = 201, body = DepositView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_deposit(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<DepositInput>,
) -> Result<Response, ApiError> {
    let amount = Money::exact_positive(body.amount.value(), body.currency)
        .map_err(|e| ApiError::validation(format!("amount: {e}")))?;
    let fingerprint = idempotency::fingerprint(&format!("POST /v1/sponsors/{id}/deposits"), &body);
    let now = state.clock.now();
    // Without a provider to take it, refused before anything is written.
    let provider = state.providers.card_provider()?;
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let sponsor = super::require(conn, id).await?;
        let deposit = deposits::request(conn, provider, &sponsor, amount, now).await?;
        Ok((StatusCode::CREATED, DepositView::from(deposit)))
    })
    .await
}

crate::page_of!(
    /// A page of a sponsor's deposits, newest first.
    DepositPage,
    DepositView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DepositsQuery {
    /// Only the deposits in this status.
    status: Option<DepositStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// A sponsor's deposits, newest first, a page at a time; those in one `status` when given.
#[utoipa::path(get, path = "/v1/sponsors/{id}/deposits", tag = "sponsors", params(("id" = Uuid, Path), DepositsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = DepositPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_deposits(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<DepositsQuery>,
) -> Result<Json<DepositPage>, ApiError> {
    let page = PageRequest::<ListKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    super::require(&mut conn, id).await?;
    let deposits = deposits::of_sponsor(&mut conn, id, q.status, &page).await?;
    Ok(Json(Page::of(deposits, &page, |d| (d.created_at, d.id)).into()))
}

/// One deposit and whether the provider has confirmed it.
#[utoipa::path(get, path = "/v1/deposits/{id}", tag = "sponsors", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = DepositView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_deposit(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<DepositView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let deposit = deposits::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deposit {id}")))?;
    Ok(Json(deposit.into()))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalInput {
    /// More than zero, in the currency's precision; at most the budget.
    #[schema(value_type = PositiveAmount, example = "500.00")]
    amount: Amount,
    /// The sponsor's currency (the default); any other is refused.
    #[schema(value_type = Option<crate::money::CurrencyCode>)]
    currency: Option<Currency>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WithdrawalView {
    id: Uuid,
    sponsor_id: Uuid,
    status: WithdrawalStatus,
    #[schema(example = "500.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    /// The provider's payment to the sponsor for this withdrawal.
    payment: PaymentRef,
    created_at: DateTime<Utc>,
    /// When the provider confirmed it paid.
    settled_at: Option<DateTime<Utc>>,
}

impl From<Withdrawal> for WithdrawalView {
    fn from(w: Withdrawal) -> Self {
        WithdrawalView {
            id: w.id,
            sponsor_id: w.sponsor_id,
            status: w.status,
            amount: crate::money::format_amount(w.amount, w.currency),
            currency: w.currency.code().to_string(),
            payment: PaymentRef::new(w.provider, Some(w.provider_withdrawal_id)),
            created_at: w.created_at,
            settled_at: w.settled_at,
        }
    }
}

/// Withdraw unused budget: it leaves the budget at once (owed to the sponsor until the provider
/// pays it, by its signed webhook) and is paid back through the provider. 422
/// `insufficient_sponsor_budget` beyond the budget, even under concurrency. Honours
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/sponsors/{id}/withdrawals", tag = "sponsors", params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    request_body = WithdrawalInput, security(("api_key" = [])),
    responses((status = 201, body = WithdrawalView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_withdrawal(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<WithdrawalInput>,
) -> Result<Response, ApiError> {
    if body.amount.value() <= rust_decimal::Decimal::ZERO {
        return Err(ApiError::invalid("amount", "amount must be more than zero"));
    }
    let fingerprint = idempotency::fingerprint(&format!("POST /v1/sponsors/{id}/withdrawals"), &body);
    let now = state.clock.now();
    // Without a provider to pay it, refused before anything is written.
    let provider = state.providers.card_provider()?;
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let sponsor = super::require(conn, id).await?;
        let amount = Money::exact_positive(body.amount.value(), body.currency.unwrap_or(sponsor.currency))
            .map_err(|e| ApiError::invalid("amount", format!("amount: {e}")))?;
        let withdrawal = withdrawals::request(conn, provider, &sponsor, amount, now).await?;
        Ok((StatusCode::CREATED, WithdrawalView::from(withdrawal)))
    })
    .await
}

crate::page_of!(
    /// A page of a sponsor's withdrawals, newest first.
    WithdrawalPage,
    WithdrawalView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WithdrawalsQuery {
    /// Only the withdrawals in this status.
    status: Option<WithdrawalStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// A sponsor's withdrawals, newest first, a page at a time; those in one `status` when given.
#[utoipa::path(get, path = "/v1/sponsors/{id}/withdrawals", tag = "sponsors", params(("id" = Uuid, Path), WithdrawalsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = WithdrawalPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_withdrawals(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<WithdrawalsQuery>,
) -> Result<Json<WithdrawalPage>, ApiError> {
    let page = PageRequest::<ListKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    super::require(&mut conn, id).await?;
    let withdrawals = withdrawals::of_sponsor(&mut conn, id, q.status, &page).await?;
    Ok(Json(Page::of(withdrawals, &page, |w| (w.created_at, w.id)).into()))
}

/// One withdrawal and whether the provider has paid it.
#[utoipa::path(get, path = "/v1/withdrawals/{id}", tag = "sponsors", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = WithdrawalView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_withdrawal(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<WithdrawalView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let withdrawal = withdrawals::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no withdrawal {id}")))?;
    Ok(Json(withdrawal.into()))
}

/// A sponsor's statement: every move of its budget (deposits, cheques issued, cheques ended,
/// money given back, withdrawals, match pools) with the balance after each, totals by kind whose
/// net is the budget's balance in the ledger, and what its cheques were spent on per project and
/// offer (with the shares the winners were allocated). JSON, or CSV with `Accept: text/csv` (the
/// lines, then a `closing_balance` row).
#[utoipa::path(get, path = "/v1/sponsors/{id}/statement", tag = "sponsors", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, description = "the statement: JSON, or CSV with `Accept: text/csv`",
               content((Statement = "application/json"), (String = "text/csv"))),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_statement(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let statement = statement::build(&state.pool, state.read_timeout, id, state.clock.now()).await?;
    if crate::http::extract::wants_csv(&headers) {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            statement::csv(&statement),
        )
            .into_response());
    }
    Ok(Json(statement).into_response())
}
