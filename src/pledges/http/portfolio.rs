//! An investor's own investments over HTTP, what a platform's "my investments" page shows: their
//! pledges (every state, newest first) and their holdings (the shares they hold once rounds
//! succeeded).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::PledgePage;
use crate::http::auth::{Auth, PlatformUsers};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppPath, AppQuery};
use crate::http::state::AppState;
use crate::investors::InvestorError;
use crate::money::{Currency, format_amount};
use crate::paging::{Page, PageRequest};
use crate::payments;
use crate::pledges::view::PledgeView;
use crate::pledges::{PledgeStatus, store};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvestorPledgesQuery {
    /// Only the pledges on this offer.
    offer_id: Option<Uuid>,
    /// Only pledges in this status.
    #[param(inline)]
    status: Option<PledgeStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// 404 unless the investor exists.
async fn known_investor(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<(), ApiError> {
    crate::investors::store::get(conn, id)
        .await?
        .ok_or(InvestorError::NotFound(id))?;
    Ok(())
}

/// An investor's pledges, newest first, by offer and status; each as `GET /v1/pledges/{id}`
/// shows it (with its card payment).
#[utoipa::path(get, path = "/v1/investors/{id}/pledges", tag = "investors",
    params(("id" = Uuid, Path), InvestorPledgesQuery), security(("api_key" = [])),
    responses((status = 200, body = PledgePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_investor_pledges(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<InvestorPledgesQuery>,
) -> Result<Json<PledgePage>, ApiError> {
    let request = PageRequest::<(DateTime<Utc>, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let filter = store::InvestorPledgeFilter {
        offer_id: q.offer_id,
        status: q.status,
    };
    let mut conn = state.pool.acquire().await?;
    known_investor(&mut conn, id).await?;
    let pledges = store::of_investor(&mut conn, id, &filter, request.after, request.fetch()).await?;
    let page = Page::of(pledges, &request, |p| (p.created_at, p.id));
    // The page's payments in one statement, not one per pledge.
    let ids: Vec<Uuid> = page.items.iter().map(|p| p.id).collect();
    let mut paid = payments::card::payments_of_pledges(&mut conn, &ids).await?;
    let mut page: PledgePage = page
        .map(|p| {
            let payment = paid.remove(&p.id);
            PledgeView::new(p, payment)
        })
        .into();
    PledgeView::fill_lists(&mut conn, &mut page.items).await?;
    Ok(Json(page))
}

/// What an investor holds in one succeeded offer.
#[derive(Serialize, ToSchema)]
pub(crate) struct HoldingView {
    offer_id: Uuid,
    project_id: Uuid,
    project_name: String,
    currency: String,
    /// The shares allocated to the investor's pledges on the offer.
    shares: i64,
    /// What those shares cost: what the investor's pledges kept once the round closed.
    amount_invested: String,
    /// The part of `amount_invested` paid by cheques.
    amount_by_cheque: String,
}

crate::page_of!(
    /// A page of holdings, the latest closed round first.
    HoldingPage,
    HoldingView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldingsQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// An investor's holdings: one per succeeded offer they were allocated shares in, the latest
/// closed first, with the project, the shares, what they cost and the part paid by cheques.
#[utoipa::path(get, path = "/v1/investors/{id}/holdings", tag = "investors",
    params(("id" = Uuid, Path), HoldingsQuery), security(("api_key" = [])),
    responses((status = 200, body = HoldingPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_holdings(
    State(state): State<AppState>,
    _auth: Auth<PlatformUsers>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<HoldingsQuery>,
) -> Result<Json<HoldingPage>, ApiError> {
    let request = PageRequest::<(DateTime<Utc>, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    known_investor(&mut conn, id).await?;
    let holdings = store::holdings(&mut conn, id, request.after, request.fetch()).await?;
    let page = Page::of(holdings, &request, |h| (h.closed_at, h.offer_id));
    let mut items = Vec::with_capacity(page.items.len());
    for h in page.items {
        let currency = Currency::parse(&h.currency)?;
        items.push(HoldingView {
            offer_id: h.offer_id,
            project_id: h.project_id,
            project_name: h.project_name,
            currency: h.currency,
            shares: h.shares,
            amount_invested: format_amount(h.amount_invested, currency),
            amount_by_cheque: format_amount(h.amount_by_cheque, currency),
        });
    }
    Ok(Json(HoldingPage {
        items,
        next_cursor: page.next_cursor,
    }))
}
