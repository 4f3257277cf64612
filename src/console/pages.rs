//! The console's pages: each reads through the domain modules, as the API's handlers do, and
//! renders a template of `templates/`.

use askama::Template;
use axum::Form;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{Session, cleared_cookie, cookie_safe, render_failed, session_cookie};
use crate::http::auth::{KeyCheck, caller_of_key};
use crate::http::state::AppState;
use crate::keys::Role;
use crate::money::format_amount;
use crate::offers::store::{Figures, OfferFilter};
use crate::projects::{ProjectFilter, ProjectStatus, Theme};

/// What the header shows to a signed-in user: their role, and the sign-out form's token.
pub(crate) struct Nav {
    pub role: &'static str,
    pub csrf: String,
}

impl From<&Session> for Nav {
    fn from(s: &Session) -> Self {
        Nav {
            role: s.caller.role.as_str(),
            csrf: s.csrf.clone(),
        }
    }
}

pub(super) fn page(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(err) => render_failed(err),
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn {
    nav: Option<Nav>,
    error: Option<&'static str>,
}

pub(super) async fn sign_in_form() -> Response {
    page(&SignIn { nav: None, error: None }, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    key: String,
}

/// Checks the key as the API would; a known key of an operator or an auditor starts a session.
pub(super) async fn sign_in(State(state): State<AppState>, Form(form): Form<SignInForm>) -> Response {
    let key = form.key.trim();
    let refused = |error| {
        page(
            &SignIn {
                nav: None,
                error: Some(error),
            },
            StatusCode::UNAUTHORIZED,
        )
    };
    if !cookie_safe(key) {
        return refused("This is not an API key.");
    }
    match caller_of_key(&KeyCheck::from_ref(&state), key).await {
        Ok(caller) if matches!(caller.role, Role::Operator | Role::Auditor) => (
            [(header::SET_COOKIE, session_cookie(key))],
            Redirect::to("/console/projects"),
        )
            .into_response(),
        Ok(_) => refused("The console is for operators and auditors: this key is a platform's."),
        Err(_) => refused("Unknown or revoked API key."),
    }
}

#[derive(Deserialize)]
pub(super) struct SignOutForm {
    csrf: String,
}

pub(super) async fn sign_out(session: Session, Form(form): Form<SignOutForm>) -> Response {
    if !session.allows(&form.csrf) {
        return (StatusCode::FORBIDDEN, "this form has expired; reload the page").into_response();
    }
    (
        [(header::SET_COOKIE, cleared_cookie())],
        Redirect::to("/console/sign-in"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct ProjectsQuery {
    theme: Option<String>,
    territory: Option<String>,
}

struct ProjectRow {
    id: Uuid,
    name: String,
    status: &'static str,
    themes: String,
}

struct Territory {
    name: String,
    projects: Vec<ProjectRow>,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct Projects {
    nav: Option<Nav>,
    themes: Vec<(&'static str, bool)>,
    territory: String,
    territories: Vec<Territory>,
}

/// Projects by territory, filtered by theme and territory.
pub(super) async fn projects(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ProjectsQuery>,
) -> Result<Response, Response> {
    let theme = q
        .theme
        .as_deref()
        .filter(|t| !t.is_empty())
        .and_then(|t| Theme::ALL.into_iter().find(|th| th.as_str() == t));
    let territory = q.territory.unwrap_or_default().trim().to_string();
    let filter = ProjectFilter {
        statuses: ProjectFilter::visible(session.caller.role == Role::Operator, None),
        theme,
        territory: (!territory.is_empty()).then(|| territory.clone()),
    };
    let mut conn = state.pool.acquire().await.map_err(internal)?;
    let found = crate::projects::store::list(&mut conn, &filter, None, 1000)
        .await
        .map_err(internal)?;
    let mut territories: Vec<Territory> = Vec::new();
    let mut sorted = found;
    sorted.sort_by(|a, b| (a.territory.to_lowercase(), &a.name).cmp(&(b.territory.to_lowercase(), &b.name)));
    for p in sorted {
        let row = ProjectRow {
            id: p.id,
            name: p.name,
            status: p.status.as_str(),
            themes: p.themes.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
        };
        match territories.last_mut() {
            Some(t) if t.name.eq_ignore_ascii_case(&p.territory) => t.projects.push(row),
            _ => territories.push(Territory {
                name: p.territory,
                projects: vec![row],
            }),
        }
    }
    Ok(page(
        &Projects {
            nav: Some(Nav::from(&session)),
            themes: Theme::ALL.iter().map(|t| (t.as_str(), Some(*t) == theme)).collect(),
            territory,
            territories,
        },
        StatusCode::OK,
    ))
}

struct RoundRow {
    id: Uuid,
    status: &'static str,
    allocation: &'static str,
    currency: &'static str,
    reserved: i64,
    funded: String,
    raised: String,
    investors: i64,
    time_left: String,
    shares_funded: i64,
    min_shares: i64,
    max_shares: i64,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    nav: Option<Nav>,
    name: String,
    territory: String,
    status: &'static str,
    themes: String,
    description: String,
    rounds: Vec<RoundRow>,
}

/// How long until `closes_at`, in words an operator reads at a glance.
pub(super) fn time_left(closes_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let left = closes_at - now;
    if left.num_seconds() <= 0 {
        return "closed".into();
    }
    match (left.num_days(), left.num_hours() % 24, left.num_minutes() % 60) {
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A project with its rounds and their live figures.
pub(super) async fn project(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
) -> Result<Response, Response> {
    let mut conn = state.pool.acquire().await.map_err(internal)?;
    let project = crate::projects::store::get(&mut conn, id).await.map_err(internal)?;
    let Some(project) = project.filter(|p| session.caller.role == Role::Operator || p.status != ProjectStatus::Draft)
    else {
        return Ok(not_found(&session));
    };
    let filter = OfferFilter {
        project_id: Some(id),
        status: None,
    };
    let offers = crate::offers::store::list(&mut conn, &filter, None, 1000)
        .await
        .map_err(internal)?;
    let ids: Vec<Uuid> = offers.iter().map(|o| o.id).collect();
    let figures = crate::offers::store::figures_many(&mut conn, &ids)
        .await
        .map_err(internal)?;
    let now = state.clock.now();
    let zero = Figures::default();
    let rounds = offers
        .iter()
        .map(|o| {
            let f = figures.get(&o.id).unwrap_or(&zero);
            let ended = matches!(
                o.status,
                crate::offers::OfferStatus::Succeeded
                    | crate::offers::OfferStatus::Failed
                    | crate::offers::OfferStatus::Cancelled
            );
            RoundRow {
                id: o.id,
                status: o.status.as_str(),
                allocation: match o.allocation {
                    crate::offers::Allocation::FirstCome => "first come",
                    crate::offers::Allocation::ProRata => "pro rata",
                    crate::offers::Allocation::Ballot => "ballot",
                },
                currency: o.currency.code(),
                reserved: o.shares_reserved,
                funded: format_amount(f.amount_funded + f.amount_matched, o.currency),
                raised: if ended {
                    o.price_of(f.shares_allocated).amount_string()
                } else {
                    "—".into()
                },
                investors: f.investor_count,
                time_left: if ended {
                    "ended".into()
                } else {
                    time_left(o.closes_at, now)
                },
                shares_funded: (f.shares_funded + f.shares_matched).min(o.max_shares),
                min_shares: o.min_shares,
                max_shares: o.max_shares,
            }
        })
        .collect();
    Ok(page(
        &ProjectPage {
            nav: Some(Nav::from(&session)),
            name: project.name,
            territory: project.territory,
            status: project.status.as_str(),
            themes: project.themes.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
            description: project.description,
            rounds,
        },
        StatusCode::OK,
    ))
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound {
    nav: Option<Nav>,
}

pub(super) fn not_found(session: &Session) -> Response {
    page(
        &NotFound {
            nav: Some(Nav::from(session)),
        },
        StatusCode::NOT_FOUND,
    )
}

pub(super) fn internal(err: impl std::fmt::Display) -> Response {
    tracing::error!(error = %err, "a console page failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be read").into_response()
}
