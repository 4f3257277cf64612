//! A round's page: its terms and figures, its pledges (paged, by status), and the operator's
//! actions, each behind a page that says what will happen to the money before it is done.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::Session;
use super::pages::{Nav, internal, not_found, page, time_left};
use crate::http::state::AppState;
use crate::keys::Role;
use crate::money::format_amount;
use crate::offers::store::Figures;
use crate::offers::{Allocation, Offer, OfferStatus};
use crate::pledges::{self, PledgeStatus};

/// Pledges per page.
const PAGE: i64 = 50;

const STATUSES: [PledgeStatus; 6] = [
    PledgeStatus::PendingPayment,
    PledgeStatus::Funded,
    PledgeStatus::Allocated,
    PledgeStatus::Refunded,
    PledgeStatus::Cancelled,
    PledgeStatus::Revoked,
];

fn status_name(s: PledgeStatus) -> &'static str {
    match s {
        PledgeStatus::PendingPayment => "pending_payment",
        PledgeStatus::Funded => "funded",
        PledgeStatus::Allocated => "allocated",
        PledgeStatus::Refunded => "refunded",
        PledgeStatus::Cancelled => "cancelled",
        PledgeStatus::Revoked => "revoked",
    }
}

fn allocation_name(a: Allocation) -> &'static str {
    match a {
        Allocation::FirstCome => "first come",
        Allocation::ProRata => "pro rata",
        Allocation::Ballot => "ballot",
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

struct PledgeRow {
    seq: i64,
    id: Uuid,
    investor: Uuid,
    shares: i64,
    amount: String,
    status: &'static str,
    created: String,
    allocated: String,
}

/// An offer's terms and figures as its pages show them.
struct Summary {
    id: Uuid,
    project_id: Uuid,
    project_name: String,
    status: &'static str,
    allocation: &'static str,
    currency: &'static str,
    share_price: String,
    min_target: String,
    max_target: String,
    min_shares: i64,
    max_shares: i64,
    closes_at: String,
    time_left: String,
    reserved: i64,
    funded: String,
    shares_funded: i64,
    matched: String,
    raised: String,
    investors: i64,
    fee_rate: String,
}

fn summary(offer: &Offer, project_name: String, f: &Figures, now: DateTime<Utc>) -> Summary {
    let ended = matches!(
        offer.status,
        OfferStatus::Succeeded | OfferStatus::Failed | OfferStatus::Cancelled
    );
    Summary {
        id: offer.id,
        project_id: offer.project_id,
        project_name,
        status: offer.status.as_str(),
        allocation: allocation_name(offer.allocation),
        currency: offer.currency.code(),
        share_price: offer.share_price.amount_string(),
        min_target: offer.price_of(offer.min_shares).amount_string(),
        max_target: offer.price_of(offer.max_shares).amount_string(),
        min_shares: offer.min_shares,
        max_shares: offer.max_shares,
        closes_at: when(offer.closes_at),
        time_left: if ended {
            "ended".into()
        } else {
            time_left(offer.closes_at, now)
        },
        reserved: offer.shares_reserved,
        funded: format_amount(f.amount_funded, offer.currency),
        shares_funded: (f.shares_funded + f.shares_matched).min(offer.max_shares),
        matched: format_amount(f.amount_matched, offer.currency),
        raised: if ended {
            offer.price_of(f.shares_allocated).amount_string()
        } else {
            "—".into()
        },
        investors: f.investor_count,
        fee_rate: format!(
            "{}%",
            (offer.success_fee_rate * rust_decimal::Decimal::ONE_HUNDRED).normalize()
        ),
    }
}

/// The offer, its project's name and figures; `None` for an unknown offer or one the caller
/// may not see (an auditor does not see a draft project's).
async fn read(state: &AppState, session: &Session, id: Uuid) -> Result<Option<(Offer, Summary)>, Response> {
    let mut conn = state.pool.acquire().await.map_err(internal)?;
    let Some(offer) = crate::offers::store::get(&mut conn, id).await.map_err(internal)? else {
        return Ok(None);
    };
    let project = crate::projects::store::get(&mut conn, offer.project_id)
        .await
        .map_err(internal)?
        .filter(|p| session.caller.role == Role::Operator || p.status != crate::projects::ProjectStatus::Draft);
    let Some(project) = project else {
        return Ok(None);
    };
    let figures = crate::offers::store::figures(&mut conn, id).await.map_err(internal)?;
    let s = summary(&offer, project.name, &figures, state.clock.now());
    Ok(Some((offer, s)))
}

#[derive(Template)]
#[template(path = "round.html")]
struct RoundPage {
    nav: Option<Nav>,
    o: Summary,
    /// The actions this caller may take now.
    can_close: bool,
    statuses: Vec<(&'static str, bool)>,
    status: String,
    pledges: Vec<PledgeRow>,
    next: Option<String>,
    /// SVG built from numbers only ([`chart`]).
    chart: String,
}

#[derive(Deserialize)]
pub(super) struct RoundQuery {
    status: Option<String>,
    after: Option<i64>,
}

pub(super) async fn round(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
    Query(q): Query<RoundQuery>,
) -> Result<Response, Response> {
    let Some((offer, o)) = read(&state, &session, id).await? else {
        return Ok(not_found(&session));
    };
    let status = q
        .status
        .as_deref()
        .and_then(|s| STATUSES.into_iter().find(|st| status_name(*st) == s));
    let filter = status.map(|s| vec![s]);
    let mut conn = state.pool.acquire().await.map_err(internal)?;
    let steps = funding_steps(&mut conn, id).await.map_err(internal)?;
    let chart = chart(&offer, &steps, state.clock.now());
    let mut found = pledges::store::of_offer(&mut conn, id, filter.as_deref(), q.after.unwrap_or(0), PAGE + 1, false)
        .await
        .map_err(internal)?;
    let more = found.len() as i64 > PAGE;
    found.truncate(PAGE as usize);
    let next = more.then(|| {
        let last = found.last().map_or(0, |p| p.seq);
        match status {
            Some(s) => format!("/console/offers/{id}?status={}&after={last}", status_name(s)),
            None => format!("/console/offers/{id}?after={last}"),
        }
    });
    let pledges = found
        .into_iter()
        .map(|p| PledgeRow {
            seq: p.seq,
            id: p.id,
            investor: p.investor_id,
            shares: p.shares,
            amount: p.amount.amount_string(),
            status: status_name(p.status),
            created: when(p.created_at),
            allocated: p.allocated_shares.map_or_else(|| "—".into(), |a| a.to_string()),
        })
        .collect();
    Ok(page(
        &RoundPage {
            nav: Some(Nav::from(&session)),
            can_close: session.caller.role == Role::Operator && offer.status == OfferStatus::Open,
            o,
            statuses: STATUSES.iter().map(|s| (status_name(*s), Some(*s) == status)).collect(),
            status: status.map(status_name).unwrap_or_default().to_string(),
            pledges,
            next,
            chart,
        },
        StatusCode::OK,
    ))
}

#[derive(Template)]
#[template(path = "confirm_close.html")]
struct ConfirmClose {
    nav: Option<Nav>,
    o: Summary,
    /// Why it cannot be closed early now, if it cannot.
    refusal: Option<String>,
    unpaid: usize,
    reflecting: usize,
    csrf: String,
}

/// What closing early will do with the money, before the operator confirms it.
pub(super) async fn confirm_close(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
) -> Result<Response, Response> {
    if session.caller.role != Role::Operator {
        return Ok(forbidden(&session));
    }
    let Some((offer, o)) = read(&state, &session, id).await? else {
        return Ok(not_found(&session));
    };
    let now = state.clock.now();
    let mut conn = state.pool.acquire().await.map_err(internal)?;
    let live = [PledgeStatus::PendingPayment, PledgeStatus::Funded];
    let pledges = pledges::store::of_offer(&mut conn, id, Some(&live), 0, i64::MAX, false)
        .await
        .map_err(internal)?;
    let unpaid = pledges
        .iter()
        .filter(|p| p.status == PledgeStatus::PendingPayment)
        .count();
    let funded: Vec<_> = pledges.iter().filter(|p| p.status == PledgeStatus::Funded).collect();
    let reflecting = funded
        .iter()
        .filter(|p| p.reflection_ends_at.is_some_and(|t| t > now))
        .count();
    let funded_shares = o.shares_funded;
    let refusal = if offer.status != OfferStatus::Open {
        Some(format!("The round is {}: only an open round closes.", o.status))
    } else if now < offer.closes_at && funded_shares < offer.min_shares {
        Some(format!(
            "Only {funded_shares} of the minimum's {} shares are funded: a round closes early only once its minimum is funded.",
            offer.min_shares
        ))
    } else {
        None
    };
    Ok(page(
        &ConfirmClose {
            nav: Some(Nav::from(&session)),
            o,
            refusal,
            unpaid,
            reflecting,
            csrf: session.csrf.clone(),
        },
        StatusCode::OK,
    ))
}

#[derive(Deserialize)]
pub(super) struct ActionForm {
    csrf: String,
}

/// Closes the round as `POST /v1/offers/{id}/close` does, then shows it.
pub(super) async fn close(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
    Form(form): Form<ActionForm>,
) -> Result<Response, Response> {
    if !session.allows(&form.csrf) {
        return Ok((StatusCode::FORBIDDEN, "this form has expired; reload the page").into_response());
    }
    if session.caller.role != Role::Operator {
        return Ok(forbidden(&session));
    }
    match crate::rounds::closing::close(&state.pool, id, state.seed_key.as_ref(), state.clock.now()).await {
        Ok(_) => Ok(Redirect::to(&format!("/console/offers/{id}")).into_response()),
        Err(crate::rounds::RoundError::NoOffer(_)) => Ok(not_found(&session)),
        Err(err) => {
            let api = crate::http::error::ApiError::from(err);
            let status = api.status();
            if status.is_server_error() {
                return Err(internal(api.detail()));
            }
            Ok(page(
                &Refused {
                    nav: Some(Nav::from(&session)),
                    back: format!("/console/offers/{id}"),
                    why: api.detail().to_string(),
                },
                StatusCode::CONFLICT,
            ))
        }
    }
}

#[derive(Template)]
#[template(path = "refused.html")]
struct Refused {
    nav: Option<Nav>,
    back: String,
    why: String,
}

fn forbidden(session: &Session) -> Response {
    page(
        &Refused {
            nav: Some(Nav::from(session)),
            back: "/console/projects".into(),
            why: "This needs an operator's key: an auditor reads, and changes nothing.".into(),
        },
        StatusCode::FORBIDDEN,
    )
}

struct HolderRow {
    holder: &'static str,
    id: Uuid,
    name: String,
    shares: i64,
    amount: String,
}

#[derive(Template)]
#[template(path = "cap_table.html")]
struct CapTablePage {
    nav: Option<Nav>,
    o: Summary,
    currency: String,
    total_shares: i64,
    total_amount: String,
    holders: Vec<HolderRow>,
}

/// A succeeded round's cap table, as `GET /v1/offers/{id}/cap-table` gives it, with its CSV.
pub(super) async fn cap_table(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
) -> Result<Response, Response> {
    let Some((_, o)) = read(&state, &session, id).await? else {
        return Ok(not_found(&session));
    };
    let mut conn = state.pool.acquire().await.map_err(internal)?;
    let table = match crate::offers::cap_table::build(&mut conn, id).await {
        Ok(table) => table,
        Err(crate::offers::OfferError::NotSucceeded) => {
            return Ok(page(
                &Refused {
                    nav: Some(Nav::from(&session)),
                    back: format!("/console/offers/{id}"),
                    why: "A round has a cap table once it has succeeded.".into(),
                },
                StatusCode::CONFLICT,
            ));
        }
        Err(err) => return Err(internal(err)),
    };
    let holders = table
        .investors
        .iter()
        .map(|l| HolderRow {
            holder: match l.holder {
                crate::offers::cap_table::Holder::Investor => "investor",
                crate::offers::cap_table::Holder::Sponsor => "sponsor",
            },
            id: l.investor_id,
            name: l.investor_name.clone(),
            shares: l.shares,
            amount: l.amount.clone(),
        })
        .collect();
    Ok(page(
        &CapTablePage {
            nav: Some(Nav::from(&session)),
            o,
            currency: table.currency.clone(),
            total_shares: table.total_shares(),
            total_amount: table.total_amount.clone(),
            holders,
        },
        StatusCode::OK,
    ))
}

/// The cap table as CSV, to download.
pub(super) async fn cap_table_csv(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
) -> Result<Response, Response> {
    if read(&state, &session, id).await?.is_none() {
        return Ok(not_found(&session));
    }
    let mut conn = state.pool.acquire().await.map_err(internal)?;
    match crate::offers::cap_table::build(&mut conn, id).await {
        Ok(table) => Ok((
            [
                (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"cap-table-{id}.csv\""),
                ),
            ],
            crate::offers::cap_table::csv(&table),
        )
            .into_response()),
        Err(crate::offers::OfferError::NotSucceeded) => {
            Ok((StatusCode::CONFLICT, "no cap table before success").into_response())
        }
        Err(err) => Err(internal(err)),
    }
}

/// Shares funded over time: each funding (a pledge's, or a sponsor's match) with its shares, in
/// time order. Pledges given back since are left out: the curve shows what stands.
async fn funding_steps(conn: &mut sqlx::PgConnection, offer: Uuid) -> sqlx::Result<Vec<(DateTime<Utc>, i64)>> {
    sqlx::query_as(
        "select t, shares from (
           select funded_at as t, coalesce(allocated_shares, shares) as shares from pledges
            where offer_id = $1 and funded_at is not null and status in ('funded', 'allocated')
           union all
           select created_at, coalesce(allocated_shares, shares) from matches
            where offer_id = $1 and status <> 'returned') f
          order by t",
    )
    .bind(offer)
    .fetch_all(conn)
    .await
}

/// The round's chart, drawn here as SVG from numbers only: shares funded over time as a step
/// line, against the minimum (dashed) and the cap.
fn chart(offer: &Offer, steps: &[(DateTime<Utc>, i64)], now: DateTime<Utc>) -> String {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const PAD: f64 = 36.0;
    let start = offer.opened_at.unwrap_or(offer.created_at);
    let end = offer
        .closed_at
        .unwrap_or(offer.closes_at)
        .max(start + chrono::TimeDelta::seconds(1));
    let total: i64 = steps.iter().map(|(_, s)| s).sum();
    let top = (offer.max_shares.max(total) as f64 * 1.1).max(1.0);
    let x = |t: DateTime<Utc>| {
        let span = (end - start).num_milliseconds() as f64;
        PAD + (W - 2.0 * PAD) * ((t - start).num_milliseconds() as f64 / span).clamp(0.0, 1.0)
    };
    let y = |shares: i64| H - PAD - (H - 2.0 * PAD) * (shares as f64 / top);
    let mut points = vec![format!("{:.1},{:.1}", x(start), y(0))];
    let mut funded = 0;
    for (t, shares) in steps {
        points.push(format!("{:.1},{:.1}", x(*t), y(funded)));
        funded += shares;
        points.push(format!("{:.1},{:.1}", x(*t), y(funded)));
    }
    points.push(format!("{:.1},{:.1}", x(now.min(end)), y(funded)));
    let level = |shares: i64, label: &str, class: &str| {
        format!(
            r#"<line class="{class}" x1="{PAD}" x2="{x2}" y1="{y:.1}" y2="{y:.1}"/><text class="label" x="{tx}" y="{ty:.1}">{label} {shares}</text>"#,
            x2 = W - PAD,
            y = y(shares),
            tx = PAD + 4.0,
            ty = y(shares) - 4.0,
        )
    };
    format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="Shares funded over time: {funded} of {cap}, minimum {min}"><title>Shares funded over time: {funded} of {cap}, minimum {min}</title><line class="axis" x1="{PAD}" x2="{PAD}" y1="{PAD}" y2="{base}"/><line class="axis" x1="{PAD}" x2="{right}" y1="{base}" y2="{base}"/>{min_line}{cap_line}<polyline class="funded" points="{points}"/><text class="label" x="{PAD}" y="{below}">{from}</text><text class="label end" x="{right}" y="{below}">{to}</text></svg>"#,
        cap = offer.max_shares,
        min = offer.min_shares,
        base = H - PAD,
        right = W - PAD,
        below = H - PAD + 16.0,
        min_line = level(offer.min_shares, "minimum", "min"),
        cap_line = level(offer.max_shares, "cap", "cap"),
        points = points.join(" "),
        from = start.format("%Y-%m-%d"),
        to = end.format("%Y-%m-%d"),
    )
}
