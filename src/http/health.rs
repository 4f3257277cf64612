//! Liveness and readiness: `GET /health` (the process answers) and `GET /ready` (so does the
//! database).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::{ApiError, Code, Problem};
use crate::http::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The health routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

#[derive(Serialize, ToSchema)]
struct Status {
    status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Status)))]
async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/ready", tag = "health", responses(
    (status = 200, body = Status),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let ping = tokio::time::timeout(Duration::from_secs(2), sqlx::query("select 1").execute(&state.pool)).await;
    match ping {
        Ok(Ok(_)) => Ok(Json(Status { status: "ready" })),
        _ => Err(ApiError::new(Code::NotReady, "the database is not reachable")),
    }
}
