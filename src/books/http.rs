//! `GET /v1/ledger/verify`: every invariant of the books, the ledger's and the domain's
//! (`audit`), checked by name on one snapshot.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::verify;
use crate::http::auth::{Auth, BookReaders};
use crate::http::error::{ApiError, Problem};
use crate::http::state::AppState;
use crate::ledger::CheckResult;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify_books))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VerifyReport {
    /// True when every check passed.
    ok: bool,
    checked_at: DateTime<Utc>,
    checks: Vec<CheckResult>,
}

/// Check every invariant of the books, each reported by name.
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "ledger", security(("api_key" = [])),
    responses((status = 200, body = VerifyReport), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn verify_books(State(state): State<AppState>, _auth: Auth<BookReaders>) -> Result<Json<VerifyReport>, ApiError> {
    let checks = verify(&state.pool, state.read_timeout).await?;
    Ok(Json(VerifyReport {
        ok: checks.iter().all(|c| c.ok),
        checked_at: state.clock.now(),
        checks,
    }))
}
