//! Investors over HTTP: the platform registers them, operators decide their KYC.

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

use super::appropriateness::{self, Appropriateness, AppropriatenessInput, KnowledgeTest, NewAppropriateness};
use super::store::InvestorFilter;
use super::{Classification, Investor, InvestorError, InvestorInput, InvestorKind, KycStatus, NewInvestor};
use crate::http::auth::{Auth, Operators, PlatformUsers};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::money::MoneyView;
use crate::paging::{Page, PageRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_investor, list_investors))
        .routes(routes!(get_investor))
        .routes(routes!(decide_kyc))
        .routes(routes!(decide_classification))
        .routes(routes!(record_appropriateness, list_appropriateness))
}

/// An investor's current appropriateness record, as the investor shows it.
#[derive(Serialize, ToSchema)]
pub struct StandingView {
    id: Uuid,
    knowledge_test: KnowledgeTest,
    valid_until: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct InvestorView {
    id: Uuid,
    kind: InvestorKind,
    name: String,
    email: String,
    #[schema(example = "BE")]
    country: String,
    classification: Classification,
    kyc_status: KycStatus,
    /// Declared net worth; null when none was given.
    net_worth: Option<MoneyView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// When an operator last set `kyc_status`; null until then.
    kyc_decided_at: Option<DateTime<Utc>>,
    /// When an operator last set `classification`; null while the one given at registration
    /// stands.
    classification_decided_at: Option<DateTime<Utc>>,
    /// The latest entry knowledge test and loss simulation (ECSP art. 21), valid until
    /// `valid_until`; null until the platform records one. A non-sophisticated investor pledges
    /// only under a valid one.
    appropriateness: Option<StandingView>,
}

impl From<Investor> for InvestorView {
    fn from(i: Investor) -> Self {
        InvestorView {
            id: i.id,
            kind: i.kind,
            name: i.name,
            email: i.email,
            country: i.country.to_string(),
            classification: i.classification,
            kyc_status: i.kyc_status,
            net_worth: i.net_worth.map(MoneyView::from),
            created_at: i.created_at,
            updated_at: i.updated_at,
            kyc_decided_at: i.kyc_decided_at,
            classification_decided_at: i.classification_decided_at,
            appropriateness: i.appropriateness.map(|a| StandingView {
                id: a.id,
                knowledge_test: a.knowledge_test,
                valid_until: a.valid_until,
            }),
        }
    }
}

/// Register an investor, KYC pending. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/investors", tag = "investors", request_body = InvestorInput,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    security(("api_key" = [])),
    responses((status = 201, body = InvestorView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_investor(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<PlatformUsers>,
    MaybeKey(key): MaybeKey,
    AppJson(body): AppJson<InvestorInput>,
) -> Result<Response, ApiError> {
    let new = NewInvestor::parse(body)?;
    let fingerprint = idempotency::fingerprint("POST /v1/investors", &new);
    let now = state.clock.now();
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let investor = super::store::insert(conn, &new, now).await?;
        Ok((StatusCode::CREATED, InvestorView::from(investor)))
    })
    .await
}

crate::page_of!(
    /// A page of investors, newest first.
    InvestorPage,
    InvestorView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvestorsQuery {
    /// Only the investor with this email address, ignoring case.
    email: Option<String>,
    /// Only investors with this KYC status.
    #[param(inline)]
    kyc_status: Option<KycStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// Investors, newest first, by email and KYC status; each as `GET /v1/investors/{id}` shows it.
#[utoipa::path(get, path = "/v1/investors", tag = "investors", params(InvestorsQuery), security(("api_key" = [])),
    responses((status = 200, body = InvestorPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_investors(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppQuery(q): AppQuery<InvestorsQuery>,
) -> Result<Json<InvestorPage>, ApiError> {
    let request = PageRequest::<(DateTime<Utc>, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let filter = InvestorFilter {
        email: q.email.map(|e| e.trim().to_string()),
        kyc_status: q.kyc_status,
    };
    let mut conn = state.pool.acquire().await?;
    let investors = super::store::list(&mut conn, &filter, request.after, request.fetch()).await?;
    Ok(Json(Page::of(investors, &request, |i| (i.created_at, i.id)).into()))
}

/// One investor, for the platform and operators: an auditor reads the books, not investors'
/// records.
#[utoipa::path(get, path = "/v1/investors/{id}", tag = "investors", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = InvestorView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_investor(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<InvestorView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let investor = super::store::get(&mut conn, id)
        .await?
        .ok_or(InvestorError::NotFound(id))?;
    Ok(Json(investor.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KycDecision {
    status: KycStatus,
}

/// Record an operator's KYC decision. Any status may follow any other (a verified investor may
/// be found out later); each decision is timestamped.
#[utoipa::path(post, path = "/v1/investors/{id}/kyc", tag = "investors", params(("id" = Uuid, Path)),
    request_body = KycDecision, security(("api_key" = [])),
    responses((status = 200, body = InvestorView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn decide_kyc(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<KycDecision>,
) -> Result<Json<InvestorView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let investor = super::store::set_kyc(&mut conn, id, body.status, state.clock.now())
        .await?
        .ok_or(InvestorError::NotFound(id))?;
    Ok(Json(investor.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassificationDecision {
    classification: Classification,
}

/// Record an operator's reclassification of an investor (ECSP art. 2(1)(j) and Annex II),
/// timestamped like a KYC decision. It applies to pledges made from then on; a sophisticated
/// investor needs no appropriateness record and cannot revoke.
#[utoipa::path(post, path = "/v1/investors/{id}/classification", tag = "investors", params(("id" = Uuid, Path)),
    request_body = ClassificationDecision, security(("api_key" = [])),
    responses((status = 200, body = InvestorView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn decide_classification(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<ClassificationDecision>,
) -> Result<Json<InvestorView>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let investor = super::store::set_classification(&mut tx, id, body.classification, state.clock.now())
        .await?
        .ok_or(InvestorError::NotFound(id))?;
    tx.commit().await?;
    Ok(Json(investor.into()))
}

/// An appropriateness record as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct AppropriatenessView {
    id: Uuid,
    investor_id: Uuid,
    knowledge_test: KnowledgeTest,
    loss_capacity: MoneyView,
    answers_ref: String,
    recorded_at: DateTime<Utc>,
    /// Two years after `recorded_at`, by the service's clock.
    valid_until: DateTime<Utc>,
}

impl From<Appropriateness> for AppropriatenessView {
    fn from(a: Appropriateness) -> Self {
        AppropriatenessView {
            id: a.id,
            investor_id: a.investor_id,
            knowledge_test: a.knowledge_test,
            loss_capacity: a.loss_capacity.into(),
            answers_ref: a.answers_ref,
            recorded_at: a.recorded_at,
            valid_until: a.valid_until,
        }
    }
}

/// Record an investor's entry knowledge test and simulation of the ability to bear loss (ECSP
/// art. 21), valid two years; it supersedes the ones before and is never edited. Honours
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/investors/{id}/appropriateness", tag = "investors", params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    request_body = AppropriatenessInput, security(("api_key" = [])),
    responses((status = 201, body = AppropriatenessView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn record_appropriateness(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<PlatformUsers>,
    MaybeKey(key): MaybeKey,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<AppropriatenessInput>,
) -> Result<Response, ApiError> {
    let new = NewAppropriateness::parse(body)?;
    let fingerprint = idempotency::fingerprint(&format!("POST /v1/investors/{id}/appropriateness"), &new);
    let now = state.clock.now();
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        super::store::get(conn, id).await?.ok_or(InvestorError::NotFound(id))?;
        let record = appropriateness::insert(conn, id, &new, caller.author(), now).await?;
        Ok((StatusCode::CREATED, AppropriatenessView::from(record)))
    })
    .await
}

crate::page_of!(
    /// A page of appropriateness records, newest (the current one) first.
    AppropriatenessPage,
    AppropriatenessView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppropriatenessQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// An investor's appropriateness records, newest first: the first is the one in force (until its
/// `valid_until`), the others are the ones it superseded.
#[utoipa::path(get, path = "/v1/investors/{id}/appropriateness", tag = "investors",
    params(("id" = Uuid, Path), AppropriatenessQuery), security(("api_key" = [])),
    responses((status = 200, body = AppropriatenessPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_appropriateness(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<AppropriatenessQuery>,
) -> Result<Json<AppropriatenessPage>, ApiError> {
    let request = PageRequest::<(DateTime<Utc>, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    super::store::get(&mut conn, id)
        .await?
        .ok_or(InvestorError::NotFound(id))?;
    let records = appropriateness::of_investor(&mut conn, id, request.after, request.fetch()).await?;
    Ok(Json(Page::of(records, &request, |a| (a.recorded_at, a.id)).into()))
}
