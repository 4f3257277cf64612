//! Proof of the books: the ledger's own invariants and the domain's (PRODUCT.md section 3),
//! checked by name on one snapshot. Serves `GET /v1/ledger/verify` and `crowdledger verify`.
//! The ledger knows no domain words, so the domain checks live here, not in `ledger`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::auth::{Auth, BookReaders};
use crate::http::error::{ApiError, Problem};
use crate::ledger::{self, CheckResult, LedgerError};

struct DomainCheck {
    name: &'static str,
    description: &'static str,
    /// One row per violation: a readable identifier of the offender.
    sql: &'static str,
}

const DOMAIN_CHECKS: &[DomainCheck] = &[
    DomainCheck {
        name: "escrow_matches_pledges",
        description: "each offer's escrow holds exactly the money of its funded pledges not yet refunded or settled",
        sql: "select 'offer ' || o.id || ': escrow ' || coalesce(a.balance, 0) || ', funded pledges ' || coalesce(f.total, 0)
                from offers o
                left join ledger_accounts a on a.code = 'offer:' || o.id || ':escrow'
                left join (select offer_id, sum(amount) as total from pledges where status = 'funded' group by offer_id) f
                       on f.offer_id = o.id
               where coalesce(a.balance, 0) <> coalesce(f.total, 0)",
    },
    DomainCheck {
        name: "shares_within_cap",
        description: "per offer, allocated shares are within the cap, and reserved shares are exactly those of its live and allocated pledges",
        sql: "select 'offer ' || o.id || ': reserved ' || o.shares_reserved || ', pledged ' || coalesce(p.held, 0)
                     || ', allocated ' || coalesce(p.allocated, 0) || ', cap ' || o.max_shares
                from offers o
                left join (select offer_id,
                                  sum(case when status in ('pending_payment', 'funded') then shares
                                           when status = 'allocated' then allocated_shares else 0 end) as held,
                                  sum(coalesce(allocated_shares, 0)) as allocated
                             from pledges group by offer_id) p on p.offer_id = o.id
               where coalesce(p.allocated, 0) > o.max_shares
                  or o.shares_reserved > o.reserve_limit
                  or o.shares_reserved <> coalesce(p.held, 0)",
    },
];

async fn run_domain_checks(conn: &mut PgConnection) -> Result<Vec<CheckResult>, LedgerError> {
    let mut results = Vec::with_capacity(DOMAIN_CHECKS.len());
    for check in DOMAIN_CHECKS {
        results.push(ledger::run_check(conn, check.name, check.description, check.sql).await?);
    }
    Ok(results)
}

/// Every check, ledger first, on one consistent snapshot.
pub async fn verify(pool: &PgPool) -> Result<Vec<CheckResult>, LedgerError> {
    let mut tx = pool.begin().await?;
    // One moment for all checks: a change committed between two of them is not a violation.
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let mut results = ledger::run_checks(&mut tx).await?;
    results.extend(run_domain_checks(&mut tx).await?);
    tx.commit().await?;
    Ok(results)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify_books))
}

#[derive(Serialize, ToSchema)]
pub struct VerifyReport {
    /// True when every check passed.
    ok: bool,
    checked_at: DateTime<Utc>,
    checks: Vec<CheckResult>,
}

/// Check every invariant of the books, each reported by name.
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "ledger", security(("api_key" = [])),
    responses((status = 200, body = VerifyReport), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn verify_books(State(state): State<AppState>, _auth: Auth<BookReaders>) -> Result<Json<VerifyReport>, ApiError> {
    let checks = verify(&state.pool).await?;
    Ok(Json(VerifyReport {
        ok: checks.iter().all(|c| c.ok),
        checked_at: state.clock.now(),
        checks,
    }))
}
