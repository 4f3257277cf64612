//! The books as an auditor reads them: `verify`, each invariant by name, as
//! `GET /v1/ledger/verify` reports them.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::Session;
use super::pages::{Nav, internal, page};
use crate::http::state::AppState;

struct CheckRow {
    name: &'static str,
    description: &'static str,
    ok: bool,
    violations: i64,
    examples: Vec<String>,
}

#[derive(Template)]
#[template(path = "verify.html")]
struct Verify {
    nav: Option<Nav>,
    ok: bool,
    checked_at: String,
    checks: Vec<CheckRow>,
}

/// Every invariant of the books, checked now on one snapshot.
pub(super) async fn verify(State(state): State<AppState>, session: Session) -> Result<Response, Response> {
    let checks = crate::books::audit::verify(&state.pool, state.read_timeout)
        .await
        .map_err(internal)?;
    let rows: Vec<CheckRow> = checks
        .into_iter()
        .map(|c| CheckRow {
            name: c.name,
            description: c.description,
            ok: c.ok,
            violations: c.violations,
            examples: c.examples,
        })
        .collect();
    Ok(page(
        &Verify {
            nav: Some(Nav::from(&session)),
            ok: rows.iter().all(|c| c.ok),
            checked_at: state.clock.now().format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            checks: rows,
        },
        StatusCode::OK,
    ))
}
