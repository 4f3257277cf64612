//! Slowing down code guessing. Wrong codes are counted per investor and per API client, in
//! Postgres so that every `serve` process sees the same counts. Past a free allowance each
//! further wrong code blocks the scope for twice as long as the last (1 min, 2 min, … at most
//! 1 h), so a guesser gets a handful of tries an hour while an honest winner who mistyped is
//! back within minutes. A correct code clears the investor's count; counts fade after a day.
//!
//! Failures are written outside the pledge's transaction (which rolls back on the refusal).

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::http::error::ApiError;

/// Wrong codes allowed before blocking: an investor's own typos, and a whole platform's.
const INVESTOR_ALLOWANCE: i32 = 5;
const CLIENT_ALLOWANCE: i32 = 100;
const LONGEST_BLOCK_SECONDS: i64 = 3600;
const FADES_AFTER_HOURS: i64 = 24;

/// Who is guessing: the investor the pledge is for, and the API key sending it.
pub struct Scopes {
    investor: String,
    client: String,
}

impl Scopes {
    pub fn new(investor: Uuid, client: Option<Uuid>) -> Self {
        Scopes {
            investor: format!("investor:{investor}"),
            client: format!(
                "client:{}",
                client.map_or_else(|| "bootstrap".to_string(), |id| id.to_string())
            ),
        }
    }
}

/// Refuses with 429 `too_many_attempts` while either scope is blocked.
pub async fn guard(pool: &PgPool, scopes: &Scopes, now: DateTime<Utc>) -> Result<(), ApiError> {
    let until: Option<DateTime<Utc>> = sqlx::query_scalar(
        "select max(blocked_until) from cheque_code_failures where scope in ($1, $2) and blocked_until > $3",
    )
    .bind(&scopes.investor)
    .bind(&scopes.client)
    .bind(now)
    .fetch_one(pool)
    .await?;
    match until {
        Some(until) => {
            let wait = (until - now).num_seconds().max(1) as u64;
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many wrong cheque codes; try again in {wait} s"),
            )
            .retry_after(wait))
        }
        None => Ok(()),
    }
}

/// Counts a wrong code against both scopes.
pub async fn failed(pool: &PgPool, scopes: &Scopes, now: DateTime<Utc>) -> Result<(), ApiError> {
    for (scope, allowance) in [
        (&scopes.investor, INVESTOR_ALLOWANCE),
        (&scopes.client, CLIENT_ALLOWANCE),
    ] {
        // One statement, so concurrent failures count exactly.
        sqlx::query(
            "insert into cheque_code_failures as f (scope, failures, last_failure_at) values ($1, 1, $2)
             on conflict (scope) do update set
                failures = case when f.last_failure_at < $2 - make_interval(hours => $3) then 1
                                else f.failures + 1 end,
                last_failure_at = $2
",
        )
        .bind(scope)
        .bind(now)
        .bind(FADES_AFTER_HOURS as i32)
        .execute(pool)
        .await?;
        sqlx::query(
            "update cheque_code_failures
                set blocked_until = $2 + make_interval(secs => least($4, 60 * power(2, failures - $3))::float8)
              where scope = $1 and failures >= $3",
        )
        .bind(scope)
        .bind(now)
        .bind(allowance)
        .bind(LONGEST_BLOCK_SECONDS as i32)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// A right code: the investor's count starts afresh.
pub async fn succeeded(pool: &PgPool, scopes: &Scopes) -> Result<(), ApiError> {
    sqlx::query("delete from cheque_code_failures where scope = $1")
        .bind(&scopes.investor)
        .execute(pool)
        .await?;
    Ok(())
}
