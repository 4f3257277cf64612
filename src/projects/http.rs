//! The project catalogue over HTTP: operators write it, every role reads what it may see.

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

use super::payout::{PayoutDetails, PayoutDetailsInput, PayoutDetailsView};
use super::{Lifecycle, NewProject, Project, ProjectError, ProjectFilter, ProjectInput, ProjectStatus, Theme};
use crate::http::auth::{AnyRole, Auth, Caller, Operators};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::keys::Role;
use crate::paging::{Page, PageRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project))
        .routes(routes!(publish_project))
        .routes(routes!(archive_project))
        .routes(routes!(set_payout_details))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct IndicatorView {
    name: String,
    unit: String,
    #[schema(example = "3")]
    baseline: String,
    #[schema(example = "12.5")]
    target: String,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectView {
    id: Uuid,
    name: String,
    legal_name: String,
    legal_form: String,
    #[schema(example = "FR")]
    country: String,
    #[schema(example = "Pays de Brest")]
    territory: String,
    themes: Vec<Theme>,
    description: String,
    impact_indicators: Vec<IndicatorView>,
    status: ProjectStatus,
    /// Where its money is paid out (`PUT /v1/projects/{id}/payout-details`), the IBAN masked.
    payout_details: PayoutDetailsView,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        ProjectView {
            id: p.id,
            name: p.name,
            legal_name: p.legal_name,
            legal_form: p.legal_form,
            country: p.country.to_string(),
            territory: p.territory,
            themes: p.themes,
            description: p.description,
            impact_indicators: p
                .impact_indicators
                .into_iter()
                .map(|i| IndicatorView {
                    name: i.name,
                    unit: i.unit,
                    baseline: i.baseline.to_string(),
                    target: i.target.to_string(),
                })
                .collect(),
            status: p.status,
            payout_details: PayoutDetailsView::from(&p.payout),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

crate::page_of!(
    /// A page of projects, newest first.
    ProjectPage,
    ProjectView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectsQuery {
    /// Only projects with this theme.
    #[param(inline)]
    theme: Option<Theme>,
    /// Only projects in this territory, ignoring case: `pays de brest` finds "Pays de Brest".
    territory: Option<String>,
    /// Only projects in this status. Callers other than operators see published projects only;
    /// asking them for another status gives an empty list.
    #[param(inline)]
    status: Option<ProjectStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

fn is_operator(caller: &Caller) -> bool {
    caller.role == Role::Operator
}

/// List projects, newest first, by theme, territory and status.
#[utoipa::path(get, path = "/v1/projects", tag = "projects", params(ProjectsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = ProjectPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_projects(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<AnyRole>,
    AppQuery(q): AppQuery<ProjectsQuery>,
) -> Result<Json<ProjectPage>, ApiError> {
    let request = PageRequest::<(DateTime<Utc>, Uuid)>::parse(q.limit, q.cursor.as_deref())?;
    let filter = ProjectFilter {
        statuses: ProjectFilter::visible(is_operator(&caller), q.status),
        theme: q.theme,
        territory: q.territory.as_deref().map(ProjectFilter::territory).transpose()?,
    };
    let mut conn = state.pool.acquire().await?;
    let projects = super::store::list(&mut conn, &filter, request.after, request.fetch()).await?;
    Ok(Json(Page::of(projects, &request, |p| (p.created_at, p.id)).into()))
}

/// Create a draft project. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/projects", tag = "projects", request_body = ProjectInput,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response for the same key and body")),
    security(("api_key" = [])),
    responses((status = 201, body = ProjectView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_project(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppJson(body): AppJson<ProjectInput>,
) -> Result<Response, ApiError> {
    let new = NewProject::parse(body)?;
    let fingerprint = idempotency::fingerprint("POST /v1/projects", &new);
    let now = state.clock.now();
    idempotency::once(&state.pool, &caller, key.as_ref(), &fingerprint, now, async |conn| {
        let project = super::store::insert(conn, &new, now).await?;
        Ok((StatusCode::CREATED, ProjectView::from(project)))
    })
    .await
}

/// One project. Callers other than operators see published projects only (404 otherwise).
#[utoipa::path(get, path = "/v1/projects/{id}", tag = "projects", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = ProjectView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_project(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<AnyRole>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<ProjectView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let project = super::store::get(&mut conn, id)
        .await?
        .filter(|p| is_operator(&caller) || p.is_public())
        .ok_or(ProjectError::NotFound(id))?;
    Ok(Json(project.into()))
}

async fn apply(state: &AppState, id: Uuid, action: Lifecycle) -> Result<Json<ProjectView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let project = action.apply(&mut conn, id, state.clock.now()).await?;
    Ok(Json(project.into()))
}

/// Publish a draft project: it enters the catalogue.
#[utoipa::path(post, path = "/v1/projects/{id}/publish", tag = "projects", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = ProjectView),
              (status = 409, description = "the project is not a draft", body = Problem, content_type = "application/problem+json"),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn publish_project(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<ProjectView>, ApiError> {
    apply(&state, id, Lifecycle::Publish).await
}

/// Archive a draft or published project: it leaves the catalogue. Refused (409
/// `project_has_open_offers`) while one of its offers is open.
#[utoipa::path(post, path = "/v1/projects/{id}/archive", tag = "projects", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = ProjectView),
              (status = 409, description = "the project is already archived (`invalid_state_transition`), or one of its offers is open (`project_has_open_offers`)", body = Problem, content_type = "application/problem+json"),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn archive_project(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<ProjectView>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let project = crate::offers::lifecycle::archive_project(&mut tx, id, state.clock.now()).await?;
    tx.commit().await?;
    Ok(Json(project.into()))
}

/// Set where the project's money is paid out: a Stripe connected account, a bank account, or
/// both. The body is the whole of it: a part left out is cleared. The IBAN is checked (its
/// country's format and check digits) and shown masked from then on.
#[utoipa::path(put, path = "/v1/projects/{id}/payout-details", tag = "projects", params(("id" = Uuid, Path)),
    request_body = PayoutDetailsInput, security(("api_key" = [])),
    responses((status = 200, body = ProjectView),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn set_payout_details(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<PayoutDetailsInput>,
) -> Result<Json<ProjectView>, ApiError> {
    let details = PayoutDetails::parse(body)?;
    let mut conn = state.pool.acquire().await?;
    let project = super::store::set_payout(&mut conn, id, &details, state.clock.now())
        .await?
        .ok_or(ProjectError::NotFound(id))?;
    Ok(Json(project.into()))
}
