//! Offers over HTTP: create, read, open, close, cancel, pledge list, cap table, payouts (made
//! and listed).

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

use crate::paging::{Page, PageRequest};
use crate::payments::provider::PaymentRef;
use crate::rounds::payouts::{self, Payout, PayoutKey, Requested};

use super::cap_table::{self, CapTable};
use super::documents::{self, Document, DocumentInput, DocumentKind, NewDocument};
use super::store::Figures;
use super::{Allocation, Offer, OfferStatus, RawTerms, Terms, lifecycle, store};
use crate::fields::FieldError;
use crate::http::auth::{AnyRole, Auth, BookReaders, Operators};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::keys::Role;
use crate::money::{Amount, PositiveAmount};
use crate::pledges::http::PledgePage;
use crate::pledges::view::PledgeView;
use crate::projects::ProjectError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_offer, list_project_offers))
        .routes(routes!(list_offers))
        .routes(routes!(get_offer))
        .routes(routes!(open_offer))
        .routes(routes!(close_offer))
        .routes(routes!(cancel_offer))
        .routes(routes!(list_pledges))
        .routes(routes!(cap_table))
        .routes(routes!(create_payout))
        .routes(routes!(list_payouts))
        .routes(routes!(get_payout))
        .routes(routes!(add_document, list_documents))
}

/// In the document only: the currencies an offer may be in ([`Terms::parse`](crate::offers::Terms)).
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)] // never built: the schema is all it is for
enum OfferCurrency {
    EUR,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOffer {
    /// Only EUR for now: the ECSP cap is in euros and the service has no exchange rates.
    #[schema(value_type = OfferCurrency)]
    currency: String,
    #[schema(value_type = PositiveAmount, example = "10.00")]
    share_price: Amount,
    /// All-or-nothing threshold: a whole number of shares at share_price.
    #[schema(value_type = PositiveAmount, example = "5000.00")]
    min_target: Amount,
    /// Hard cap: a whole number of shares at share_price.
    #[schema(value_type = PositiveAmount, example = "20000.00")]
    max_target: Amount,
    #[schema(value_type = PositiveAmount, example = "100.00")]
    min_ticket: Amount,
    #[schema(value_type = Option<PositiveAmount>, example = "5000.00")]
    max_ticket: Option<Amount>,
    #[schema(example = "2026-06-01T00:00:00Z")]
    opens_at: DateTime<Utc>,
    /// After opens_at.
    #[schema(example = "2026-07-01T00:00:00Z")]
    closes_at: DateTime<Utc>,
    /// A fraction, e.g. "0.05" for 5%.
    #[schema(value_type = String, example = "0.05", pattern = r"^0+(\.[0-9]{1,6}0*)?$")]
    success_fee_rate: Amount,
    allocation: Allocation,
    /// Default 1800 (30 minutes).
    #[schema(minimum = 60, maximum = 604800)]
    #[serde(default, deserialize_with = "crate::fields::whole_opt")]
    payment_window_seconds: Option<i32>,
    /// How long a bank-transfer pledge waits for its money, never past the offer's close.
    /// Default 432000 (5 days).
    #[schema(minimum = 3600, maximum = 2592000)]
    #[serde(default, deserialize_with = "crate::fields::whole_opt")]
    bank_transfer_window_seconds: Option<i32>,
    /// For pro_rata and ballot: pledges are accepted up to this multiple of the cap (default "5"),
    /// from 1 to 100.
    #[schema(value_type = Option<String>, example = "5", pattern = r"^(0*([1-9][0-9]?)(\.[0-9]{1,18})?|0*100(\.0{1,18})?)$")]
    oversubscription_limit: Option<Amount>,
}

impl CreateOffer {
    /// The terms asked for, if they meet every rule; the message names the field.
    pub fn terms(&self) -> Result<Terms, FieldError> {
        Terms::parse(RawTerms {
            currency: self.currency.clone(),
            share_price: self.share_price.value(),
            min_target: self.min_target.value(),
            max_target: self.max_target.value(),
            min_ticket: self.min_ticket.value(),
            max_ticket: self.max_ticket.map(Amount::value),
            opens_at: self.opens_at,
            closes_at: self.closes_at,
            success_fee_rate: self.success_fee_rate.value(),
            allocation: self.allocation,
            payment_window_seconds: self.payment_window_seconds,
            bank_transfer_window_seconds: self.bank_transfer_window_seconds,
            oversubscription_limit: self.oversubscription_limit.map(Amount::value),
        })
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OfferView {
    id: Uuid,
    project_id: Uuid,
    status: OfferStatus,
    currency: String,
    share_price: String,
    min_target: String,
    max_target: String,
    min_ticket: String,
    max_ticket: Option<String>,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    success_fee_rate: String,
    allocation: Allocation,
    payment_window_seconds: i32,
    bank_transfer_window_seconds: i32,
    oversubscription_limit: String,
    min_shares: i64,
    max_shares: i64,
    shares_reserved: i64,
    shares_funded: i64,
    /// What the funded pledges came to, oversubscription included.
    amount_funded: String,
    /// Shares of sponsors' matches (docs/matchfunding.md): counted toward the targets, held in
    /// the sponsor's name; after a close, what was allocated of them.
    shares_matched: i64,
    amount_matched: String,
    /// Investors' and sponsors' matches' together.
    shares_allocated: i64,
    /// What the round raised: the price of the shares allocated. Set once the round has ended
    /// (`0.00` for a round that failed or was cancelled); below `amount_funded` after an
    /// oversubscribed pro-rata or ballot close, whose difference was refunded.
    amount_raised: Option<String>,
    pledge_count: i64,
    investor_count: i64,
    /// Ballot only: sha256(seed), hex, published when the offer opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    commitment: Option<String>,
    /// Ballot only: the seed, hex, revealed once the draw is made (the offer succeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<String>,
    created_at: DateTime<Utc>,
    opened_at: Option<DateTime<Utc>>,
    closing_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
}

impl OfferView {
    fn new(o: Offer, f: Figures) -> Self {
        let ended = matches!(
            o.status,
            OfferStatus::Succeeded | OfferStatus::Failed | OfferStatus::Cancelled
        );
        OfferView {
            id: o.id,
            project_id: o.project_id,
            status: o.status,
            currency: o.currency.code().to_string(),
            share_price: o.share_price.amount_string(),
            min_target: o.min_target().amount_string(),
            max_target: o.max_target().amount_string(),
            min_ticket: o.min_ticket.amount_string(),
            max_ticket: o.max_ticket.map(|t| t.amount_string()),
            opens_at: o.opens_at,
            closes_at: o.closes_at,
            success_fee_rate: o.success_fee_rate.normalize().to_string(),
            allocation: o.allocation,
            payment_window_seconds: o.payment_window_seconds,
            bank_transfer_window_seconds: o.bank_transfer_window_seconds,
            oversubscription_limit: o.oversubscription_limit.normalize().to_string(),
            min_shares: o.min_shares,
            max_shares: o.max_shares,
            shares_reserved: o.shares_reserved,
            shares_funded: f.shares_funded,
            amount_funded: crate::money::format_amount(f.amount_funded, o.currency),
            shares_matched: f.shares_matched,
            amount_matched: crate::money::format_amount(f.amount_matched, o.currency),
            shares_allocated: f.shares_allocated,
            amount_raised: ended.then(|| o.price_of(f.shares_allocated).amount_string()),
            pledge_count: f.pledge_count,
            investor_count: f.investor_count,
            commitment: o.ballot_commitment,
            seed: o.ballot_seed.filter(|_| ended).map(hex::encode),
            created_at: o.created_at,
            opened_at: o.opened_at,
            closing_at: o.closing_at,
            closed_at: o.closed_at,
        }
    }
}

async fn view(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<OfferView, ApiError> {
    let offer = store::get(conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no offer {id}")))?;
    let figures = store::figures(conn, id).await?;
    Ok(OfferView::new(offer, figures))
}

/// Create a share offer (a funding round) for a project.
#[utoipa::path(post, path = "/v1/projects/{id}/offers", tag = "offers", params(("id" = Uuid, Path),
    ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    request_body = CreateOffer, security(("api_key" = [])),
    responses((status = 201, body = OfferView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_offer(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppPath(project_id): AppPath<Uuid>,
    AppJson(body): AppJson<CreateOffer>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let fingerprint = idempotency::fingerprint(&format!("POST /v1/projects/{project_id}/offers"), &body);
    let terms = body.terms()?;
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let offer = lifecycle::create(conn, project_id, &terms, now).await?;
        Ok((StatusCode::CREATED, OfferView::new(offer, Figures::default())))
    })
    .await
}

/// An offer with its figures.
#[utoipa::path(get, path = "/v1/offers/{id}", tag = "offers", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = OfferView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_offer(
    State(state): State<AppState>,
    _auth: Auth<AnyRole>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<OfferView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(view(&mut conn, id).await?))
}

crate::page_of!(
    /// A page of offers, newest first.
    OfferPage,
    OfferView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct OffersQuery {
    /// Only the offers of this project.
    project_id: Option<Uuid>,
    /// Only offers in this status.
    #[param(inline)]
    status: Option<OfferStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectOffersQuery {
    /// Only offers in this status.
    #[param(inline)]
    status: Option<OfferStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// A page of offers with their figures: the figures of the whole page in one statement.
async fn offer_page(
    conn: &mut sqlx::PgConnection,
    filter: &store::OfferFilter,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<OfferPage, ApiError> {
    let request = PageRequest::<(DateTime<Utc>, Uuid)>::parse(limit, cursor)?;
    let offers = store::list(conn, filter, request.after, request.fetch()).await?;
    let page = Page::of(offers, &request, |o| (o.created_at, o.id));
    let ids: Vec<Uuid> = page.items.iter().map(|o| o.id).collect();
    let mut figures = store::figures_many(conn, &ids).await?;
    Ok(page
        .map(|o| {
            let f = figures.remove(&o.id).unwrap_or_default();
            OfferView::new(o, f)
        })
        .into())
}

/// Offers, newest first, by project and status; each as `GET /v1/offers/{id}` shows it.
#[utoipa::path(get, path = "/v1/offers", tag = "offers", params(OffersQuery), security(("api_key" = [])),
    responses((status = 200, body = OfferPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_offers(
    State(state): State<AppState>,
    _auth: Auth<AnyRole>,
    AppQuery(q): AppQuery<OffersQuery>,
) -> Result<Json<OfferPage>, ApiError> {
    let filter = store::OfferFilter {
        project_id: q.project_id,
        status: q.status,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        offer_page(&mut conn, &filter, q.limit, q.cursor.as_deref()).await?,
    ))
}

/// A project's offers (its rounds), newest first; each as `GET /v1/offers/{id}` shows it. 404 for
/// a project the caller cannot see (callers other than operators see published projects only).
#[utoipa::path(get, path = "/v1/projects/{id}/offers", tag = "offers", params(("id" = Uuid, Path), ProjectOffersQuery),
    security(("api_key" = [])),
    responses((status = 200, body = OfferPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_project_offers(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<AnyRole>,
    AppPath(project_id): AppPath<Uuid>,
    AppQuery(q): AppQuery<ProjectOffersQuery>,
) -> Result<Json<OfferPage>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    crate::projects::store::get(&mut conn, project_id)
        .await?
        .filter(|p| caller.role == Role::Operator || p.is_public())
        .ok_or(ProjectError::NotFound(project_id))?;
    let filter = store::OfferFilter {
        project_id: Some(project_id),
        status: q.status,
    };
    Ok(Json(
        offer_page(&mut conn, &filter, q.limit, q.cursor.as_deref()).await?,
    ))
}

/// Open the offer to pledges (draft → open).
#[utoipa::path(post, path = "/v1/offers/{id}/open", tag = "offers", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = OfferView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn open_offer(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<OfferView>, ApiError> {
    let mut tx = state.pool.begin().await?;
    lifecycle::open(&mut tx, id, state.seed_key.as_ref(), state.clock.now()).await?;
    // A live pool may match its pledges from the first (docs/matchfunding.md).
    crate::matchfunding::mark_if_matchable(&mut tx, id, state.clock.now()).await?;
    tx.commit().await?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(view(&mut conn, id).await?))
}

/// Close the offer: early once the minimum target is funded, or after closes_at. It stays
/// `closing` until every remaining pledge's reflection period has ended.
#[utoipa::path(post, path = "/v1/offers/{id}/close", tag = "offers", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = OfferView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn close_offer(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<OfferView>, ApiError> {
    crate::rounds::closing::close(&state.pool, id, state.seed_key.as_ref(), state.clock.now()).await?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(view(&mut conn, id).await?))
}

/// Cancel a draft or open offer; funded pledges are refunded in full.
#[utoipa::path(post, path = "/v1/offers/{id}/cancel", tag = "offers", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = OfferView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn cancel_offer(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<OfferView>, ApiError> {
    let mut tx = state.pool.begin().await?;
    crate::rounds::ending::cancel_offer(&mut tx, id, state.clock.now()).await?;
    tx.commit().await?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(view(&mut conn, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PledgesQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// An offer's pledges in arrival order (`seq`, oldest first, unlike other lists): the public list
/// a ballot can be recomputed from.
#[utoipa::path(get, path = "/v1/offers/{id}/pledges", tag = "offers", params(("id" = Uuid, Path), PledgesQuery),
    security(("api_key" = [])),
    responses((status = 200, body = PledgePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_pledges(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<PledgesQuery>,
) -> Result<Json<PledgePage>, ApiError> {
    // The key is the last `seq` shown.
    let request = PageRequest::<i64>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    store::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no offer {id}")))?;
    let pledges =
        crate::pledges::store::of_offer(&mut conn, id, None, request.after.unwrap_or(0), request.fetch(), false)
            .await?;
    let page = Page::of(pledges, &request, |p| p.seq);
    let mut page: PledgePage = page.map(|p| PledgeView::new(p, None)).into();
    PledgeView::fill_lists(&mut conn, &mut page.items).await?;
    Ok(Json(page))
}

/// The cap table after a successful round: each investor's shares and amount. JSON, or CSV with
/// `Accept: text/csv`.
#[utoipa::path(get, path = "/v1/offers/{id}/cap-table", tag = "offers", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, description = "the cap table: JSON, or CSV with `Accept: text/csv`",
               content((CapTable = "application/json"), (String = "text/csv"))),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn cap_table(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let table = cap_table::build(&mut conn, id).await?;
    if crate::http::extract::wants_csv(&headers) {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            cap_table::csv(&table),
        )
            .into_response());
    }
    Ok(Json(table).into_response())
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PayoutView {
    id: Uuid,
    offer_id: Uuid,
    /// `pending` until the provider confirms it paid the project, then `paid`.
    #[schema(example = "paid")]
    status: String,
    #[schema(example = "9500.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    /// The provider paying it, and its id for the payout.
    payment: PaymentRef,
    created_at: DateTime<Utc>,
    /// When the provider confirmed it paid; null while pending.
    paid_at: Option<DateTime<Utc>>,
}

impl From<Payout> for PayoutView {
    fn from(p: Payout) -> Self {
        PayoutView {
            id: p.id,
            offer_id: p.offer_id,
            status: p.status,
            amount: crate::money::format_amount(p.amount, p.currency),
            currency: p.currency.code().to_string(),
            payment: PaymentRef::new(p.provider, p.provider_payout_id),
            created_at: p.created_at,
            paid_at: p.settled_at,
        }
    }
}

/// Pay the project what it is owed for a succeeded offer (net of the success fee).
#[utoipa::path(post, path = "/v1/offers/{id}/payouts", tag = "offers", params(("id" = Uuid, Path),
    ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")), security(("api_key" = [])),
    responses((status = 201, body = PayoutView, description = "a payout of what the project was still owed"),
              (status = 200, body = PayoutView, description = "the project was owed nothing more: the payout already made"),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_payout(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppPath(id): AppPath<Uuid>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let fingerprint = idempotency::fingerprint(&format!("POST /v1/offers/{id}/payouts"), &());
    // Without a provider to pay through, refused before anything is written.
    let provider = state.providers.card_provider()?;
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let (status, p) = match crate::rounds::payouts::request_payout(conn, provider, id, now).await? {
            Requested::Created(p) => (StatusCode::CREATED, p),
            Requested::Existing(p) => (StatusCode::OK, p),
        };
        Ok((status, PayoutView::from(p)))
    })
    .await
}

crate::page_of!(
    /// A page of payouts, newest first.
    PayoutPage,
    PayoutView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayoutsQuery {
    /// Only the payouts of this offer.
    offer_id: Option<Uuid>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// Payouts to projects, newest first, a page at a time; those of one offer with `offer_id`.
#[utoipa::path(get, path = "/v1/payouts", tag = "offers", params(PayoutsQuery), security(("api_key" = [])),
    responses((status = 200, body = PayoutPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_payouts(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppQuery(q): AppQuery<PayoutsQuery>,
) -> Result<Json<PayoutPage>, ApiError> {
    let page = PageRequest::<PayoutKey>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let rows = payouts::list(&mut conn, q.offer_id, &page).await?;
    Ok(Json(Page::of(rows, &page, |p| (p.created_at, p.id)).into()))
}

/// One payout and whether the provider has paid it.
#[utoipa::path(get, path = "/v1/payouts/{id}", tag = "offers", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = PayoutView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_payout(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<PayoutView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let payout = payouts::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no payout {id}")))?;
    Ok(Json(payout.into()))
}

/// A document of an offer as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct DocumentView {
    id: Uuid,
    offer_id: Uuid,
    kind: DocumentKind,
    language: String,
    url: String,
    sha256: String,
    added_at: DateTime<Utc>,
    /// The document of its kind and language it replaced; null for a first version.
    supersedes: Option<Uuid>,
    /// Whether it is the current version of its kind and language (for a KIIS: one a pledge may
    /// name).
    current: bool,
}

impl DocumentView {
    fn new(d: Document, current: bool) -> Self {
        DocumentView {
            id: d.id,
            offer_id: d.offer_id,
            kind: d.kind,
            language: d.language,
            url: d.url,
            sha256: d.sha256,
            added_at: d.added_at,
            supersedes: d.supersedes,
            current,
        }
    }
}

/// What adding a document did.
#[derive(Serialize, ToSchema)]
pub struct DocumentAdded {
    document: DocumentView,
    /// For a KIIS that replaced one while the offer is open: until when its live pledges of
    /// non-sophisticated investors may be reconfirmed (`offer.amended`); null otherwise.
    reconfirm_by: Option<DateTime<Utc>>,
    /// How many pledges must be reconfirmed.
    pledges_to_reconfirm: usize,
}

/// Add a document to a draft or open offer: above all its Key Investment Information Sheet
/// (ECSP art. 23, kind `kiis`), without which it cannot open. A KIIS in a language the offer has
/// one in already is a new version; while the offer is open that amends it (`offer.amended`):
/// its live pledges of non-sophisticated investors must be reconfirmed within 4 days. Honours
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/offers/{id}/documents", tag = "offers", params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    request_body = DocumentInput, security(("api_key" = [])),
    responses((status = 201, body = DocumentAdded), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn add_document(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppPath(offer_id): AppPath<Uuid>,
    AppJson(body): AppJson<DocumentInput>,
) -> Result<Response, ApiError> {
    let new = NewDocument::parse(body)?;
    let fingerprint = idempotency::fingerprint(&format!("POST /v1/offers/{offer_id}/documents"), &new);
    let now = state.clock.now();
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let added = crate::rounds::reconfirmation::add_document(conn, offer_id, &new, now).await?;
        let (reconfirm_by, pledges_to_reconfirm) = added.amendment.unzip();
        Ok((
            StatusCode::CREATED,
            DocumentAdded {
                document: DocumentView::new(added.document, true),
                reconfirm_by,
                pledges_to_reconfirm: pledges_to_reconfirm.unwrap_or(0),
            },
        ))
    })
    .await
}

/// The documents of an offer, all versions, oldest first.
#[derive(Serialize, ToSchema)]
pub struct DocumentList {
    items: Vec<DocumentView>,
}

/// An offer's documents, every version oldest first, the current ones marked: what an investor
/// reads before pledging, and what a pledge's `consent.kiis_sha256` names.
#[utoipa::path(get, path = "/v1/offers/{id}/documents", tag = "offers", params(("id" = Uuid, Path)), security(("api_key" = [])),
    responses((status = 200, body = DocumentList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_documents(
    State(state): State<AppState>,
    _auth: Auth<AnyRole>,
    AppPath(offer_id): AppPath<Uuid>,
) -> Result<Json<DocumentList>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    if !store::exists(&mut conn, offer_id).await? {
        return Err(ApiError::not_found(format!("no offer {offer_id}")));
    }
    let documents = documents::of_offer(&mut conn, offer_id).await?;
    // The last of each kind and language is current.
    let mut seen = std::collections::HashSet::new();
    let mut items: Vec<DocumentView> = documents
        .into_iter()
        .rev()
        .map(|d| {
            let current = seen.insert((d.kind, d.language.clone()));
            DocumentView::new(d, current)
        })
        .collect();
    items.reverse();
    Ok(Json(DocumentList { items }))
}
