//! Refunds over HTTP: money owed back to investors' cards, listed and read, so an operator or a
//! platform can find what is still owed and see when the provider paid it.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::refunds::{self, RefundFilter, RefundStatus, RefundView};
use crate::http::auth::{AnyRole, Auth};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppPath, AppQuery};
use crate::http::state::AppState;
use crate::paging::{Page, PageRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_refunds))
        .routes(routes!(get_refund))
}

crate::page_of!(
    /// A page of refunds, newest first.
    RefundPage,
    RefundView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefundsQuery {
    /// Only the refunds of this offer's pledges.
    offer_id: Option<Uuid>,
    /// Only this pledge's refunds.
    pledge_id: Option<Uuid>,
    /// Only refunds in this state: `pending` ones are still owed.
    status: Option<RefundStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// Refunds, newest first: one per pledge given card money back (revoked, its round failed or was
/// cancelled, the part a pro-rata or ballot close did not allocate, a payment that came too
/// late). `status=pending` lists what is still owed.
#[utoipa::path(get, path = "/v1/refunds", tag = "refunds", params(RefundsQuery), security(("api_key" = [])),
    responses((status = 200, body = RefundPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_refunds(
    State(state): State<AppState>,
    _auth: Auth<AnyRole>,
    AppQuery(q): AppQuery<RefundsQuery>,
) -> Result<Json<RefundPage>, ApiError> {
    let request = PageRequest::<(DateTime<Utc>, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let filter = RefundFilter {
        offer_id: q.offer_id,
        pledge_id: q.pledge_id,
        status: q.status,
    };
    let mut conn = state.pool.acquire().await?;
    let rows = refunds::list(&mut conn, filter, request.after, request.fetch()).await?;
    let page = Page::of(rows, &request, |r| (r.created_at, r.id));
    Ok(Json(page.into()))
}

/// A refund: how much card money goes back to which pledge, why, and whether the provider has
/// paid it (`succeeded`).
#[utoipa::path(get, path = "/v1/refunds/{id}", tag = "refunds", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = RefundView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_refund(
    State(state): State<AppState>,
    _auth: Auth<AnyRole>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<RefundView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let refund = refunds::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no refund {id}")))?;
    Ok(Json(refund.into()))
}
