//! Matchfunding pools over HTTP: operators create a sponsor's pools; operators and auditors read
//! them and the matches they made.

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

use super::{Figures, MatchPoolInput, NewPool, Pool};
use crate::http::auth::{Auth, BookReaders, Operators};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::money::format_amount;
use crate::paging::{Page, PageRequest};
use crate::rounds::matching::{self, Match, MatchStatus};
use crate::sponsors::ListKey;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_pools, create_pool))
        .routes(routes!(get_pool))
        .routes(routes!(list_matches))
}

#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PoolStatus {
    /// Matching funded eligible pledges.
    Active,
    /// Past `expires_at`: it matches nothing more (what it held returns to the sponsor).
    Expired,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MatchPoolView {
    id: Uuid,
    sponsor_id: Uuid,
    status: PoolStatus,
    /// Reserved from the sponsor's budget when the pool was created.
    #[schema(example = "10000.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    #[schema(example = "1")]
    ratio: String,
    #[schema(example = "500.00")]
    max_per_pledge: String,
    #[schema(example = "5000.00")]
    max_per_project: String,
    eligible_themes: Vec<String>,
    eligible_project_ids: Vec<Uuid>,
    expires_at: DateTime<Utc>,
    /// What the pool still holds: reserved − matched + given back (− returned once ended).
    #[schema(example = "8750.00")]
    balance: String,
    /// Matched and not given back.
    #[schema(example = "1250.00")]
    matched: String,
    match_count: i64,
    /// What went back to the sponsor when it ended.
    returned: Option<String>,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

fn pool_view(pool: Pool, figures: Figures, now: DateTime<Utc>) -> MatchPoolView {
    let c = pool.currency;
    MatchPoolView {
        id: pool.id,
        sponsor_id: pool.sponsor_id,
        status: if pool.live(now) {
            PoolStatus::Active
        } else {
            PoolStatus::Expired
        },
        amount: format_amount(pool.amount, c),
        currency: c.code().to_string(),
        ratio: pool.ratio.normalize().to_string(),
        max_per_pledge: format_amount(pool.max_per_pledge, c),
        max_per_project: format_amount(pool.max_per_project, c),
        eligible_themes: pool.eligible_themes,
        eligible_project_ids: pool.eligible_project_ids,
        expires_at: pool.expires_at,
        balance: format_amount(figures.balance, c),
        matched: format_amount(figures.matched, c),
        match_count: figures.match_count,
        returned: pool.returned.map(|r| format_amount(r, c)),
        created_at: pool.created_at,
        ended_at: pool.ended_at,
    }
}

/// Create a matchfunding pool from a sponsor's budget (`sponsor budget → match:<id>`): each
/// pledge funded from now on in an eligible project's open offer is matched at `ratio`, up to
/// `max_per_pledge` and `max_per_project`, in whole shares held in the sponsor's name, while the
/// pool has money and until `expires_at`. 422 `insufficient_sponsor_budget` when the budget does
/// not cover `amount`. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/sponsors/{id}/match-pools", tag = "sponsors", request_body = MatchPoolInput,
    params(("id" = Uuid, Path),
           ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    security(("api_key" = [])),
    responses((status = 201, body = MatchPoolView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_pool(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<MatchPoolInput>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let new = NewPool::parse(id, body, now).map_err(|e| ApiError::validation(e.to_string()))?;
    let fingerprint = idempotency::fingerprint(&format!("POST /v1/sponsors/{id}/match-pools"), &new);
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let pool = super::create(conn, &new, now).await?;
        let figures = Figures {
            balance: pool.amount,
            ..Figures::default()
        };
        Ok((StatusCode::CREATED, pool_view(pool, figures, now)))
    })
    .await
}

crate::page_of!(
    /// A page of a sponsor's matchfunding pools, newest first.
    MatchPoolPage,
    MatchPoolView
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

/// A sponsor's matchfunding pools, newest first, each with what it holds and has matched.
#[utoipa::path(get, path = "/v1/sponsors/{id}/match-pools", tag = "sponsors", params(("id" = Uuid, Path), PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = MatchPoolPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_pools(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<MatchPoolPage>, ApiError> {
    let page = PageRequest::<ListKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    crate::sponsors::require(&mut conn, id).await?;
    let pools = super::of_sponsor(&mut conn, id, &page).await?;
    let figures = super::figures(&mut conn, &pools).await?;
    let now = state.clock.now();
    let page = Page::of(
        pools.into_iter().zip(figures).collect(),
        &page,
        |(p, _): &(Pool, Figures)| (p.created_at, p.id),
    );
    Ok(Json(page.map(|(p, f)| pool_view(p, f, now)).into()))
}

/// One matchfunding pool: its terms, what it holds and what it has matched.
#[utoipa::path(get, path = "/v1/match-pools/{id}", tag = "sponsors", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = MatchPoolView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_pool(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<MatchPoolView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let pool = super::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no match pool {id}")))?;
    let figures = super::figures(&mut conn, std::slice::from_ref(&pool)).await?.remove(0);
    Ok(Json(pool_view(pool, figures, state.clock.now())))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MatchView {
    id: Uuid,
    match_pool_id: Uuid,
    pledge_id: Uuid,
    offer_id: Uuid,
    project_id: Uuid,
    status: MatchStatus,
    /// Shares matched, held in the sponsor's name.
    shares: i64,
    #[schema(example = "250.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    /// Once its round succeeded.
    allocated_shares: Option<i64>,
    /// Given back to the pool, or to the sponsor once the pool had ended.
    #[schema(example = "0.00")]
    returned: String,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

impl From<Match> for MatchView {
    fn from(m: Match) -> Self {
        MatchView {
            id: m.id,
            match_pool_id: m.pool_id,
            pledge_id: m.pledge_id,
            offer_id: m.offer_id,
            project_id: m.project_id,
            status: m.status,
            shares: m.shares,
            amount: format_amount(m.amount, m.currency),
            currency: m.currency.code().to_string(),
            allocated_shares: m.allocated_shares,
            returned: format_amount(m.returned_to_pool + m.returned_to_sponsor, m.currency),
            created_at: m.created_at,
            ended_at: m.ended_at,
        }
    }
}

crate::page_of!(
    /// A page of a pool's matches, newest first.
    MatchPage,
    MatchView
);

/// The matches a pool made, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/match-pools/{id}/matches", tag = "sponsors", params(("id" = Uuid, Path), PageQuery),
    security(("api_key" = [])),
    responses((status = 200, body = MatchPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_matches(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<MatchPage>, ApiError> {
    let page = PageRequest::<ListKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    super::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no match pool {id}")))?;
    let matches = matching::of_pool(&mut conn, id, &page).await?;
    let page = Page::of(matches, &page, |m: &Match| (m.created_at, m.id));
    Ok(Json(page.map(MatchView::from).into()))
}
