//! `Idempotency-Key` for POSTs that create something: the same key with the same body returns
//! the first response and does nothing twice; with another body it is 422
//! `idempotency_key_reused`. The key is claimed in the transaction that makes the change, so the
//! change and the stored response commit together or not at all.

use axum::extract::FromRequestParts;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::http::auth::Caller;
use crate::http::error::{ApiError, Code};

pub(crate) const HEADER: &str = "idempotency-key";

/// A valid `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::validation(
                "Idempotency-Key has 1 to 255 visible ASCII characters",
            ));
        }
        Ok(IdempotencyKey(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The optional `Idempotency-Key` header.
pub(crate) struct MaybeKey(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(HEADER) {
            None => Ok(MaybeKey(None)),
            Some(v) => {
                let v = v
                    .to_str()
                    .map_err(|_| ApiError::validation("Idempotency-Key must be ASCII"))?;
                Ok(MaybeKey(Some(IdempotencyKey::parse(v)?)))
            }
        }
    }
}

/// The `Idempotency-Key` header, required: 400 `idempotency_key_required` without it.
pub(crate) struct RequiredKey(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for RequiredKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match MaybeKey::from_request_parts(parts, state).await?.0 {
            Some(key) => Ok(RequiredKey(key)),
            None => Err(ApiError::new(
                Code::IdempotencyKeyRequired,
                "this request needs an Idempotency-Key header",
            )),
        }
    }
}

/// A request's identity for idempotency: what it targets and what it says.
pub fn fingerprint(route: &str, body: &impl Serialize) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    // serde_json's map is ordered by key, so equal bodies serialise equally.
    let canonical = serde_json::to_value(body).map(|v| v.to_string()).unwrap_or_default();
    hasher.update(canonical.as_bytes());
    hasher.finalize().to_vec()
}

/// Whose keys these are: one namespace per API key.
pub fn scope(caller: &Caller) -> String {
    caller
        .key_id
        .map_or_else(|| "bootstrap".to_string(), |id| id.to_string())
}

enum Claim {
    Claimed,
    /// The first response: its status and its JSON body as sent.
    Stored(StatusCode, String),
}

async fn claim(
    conn: &mut PgConnection,
    scope: &str,
    key: &IdempotencyKey,
    fingerprint: &[u8],
    now: DateTime<Utc>,
) -> Result<Claim, ApiError> {
    // A concurrent request with the same key blocks here until it commits or rolls back.
    let claimed = sqlx::query(
        "insert into idempotency_keys (scope, key, fingerprint, created_at) values ($1, $2, $3, $4)
         on conflict (scope, key) do nothing",
    )
    .bind(scope)
    .bind(&key.0)
    .bind(fingerprint)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        return Ok(Claim::Claimed);
    }
    let (stored, status, body): (Vec<u8>, Option<i16>, Option<String>) = sqlx::query_as(
        "select fingerprint, response_status, response_body from idempotency_keys where scope = $1 and key = $2",
    )
    .bind(scope)
    .bind(&key.0)
    .fetch_one(&mut *conn)
    .await?;
    if stored != fingerprint {
        return Err(ApiError::new(
            Code::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request",
        ));
    }
    let status = status
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("idempotency key stored without a response")))?;
    Ok(Claim::Stored(status, body.unwrap_or_else(|| "null".into())))
}

/// Runs `op` in a transaction, at most once per (caller, key): the first time its response is
/// stored with its changes; afterwards the stored response is replayed with the header
/// `Idempotent-Replayed: true`. Without a key, `op` simply runs in a transaction.
/// Errors are not stored: a request that failed may be retried with the same key.
pub async fn once<T: Serialize>(
    pool: &PgPool,
    caller: &Caller,
    key: Option<&IdempotencyKey>,
    fingerprint: &[u8],
    now: DateTime<Utc>,
    op: impl AsyncFnOnce(&mut PgConnection) -> Result<(StatusCode, T), ApiError>,
) -> Result<Response, ApiError> {
    once_keeping_secret(pool, caller, key, fingerprint, now, None, op).await
}

/// [`once`] for a response with a secret that must not be stored: the top-level field `secret`
/// is stored as null, so a replay answers everything but the secret.
pub(crate) async fn once_keeping_secret<T: Serialize>(
    pool: &PgPool,
    caller: &Caller,
    key: Option<&IdempotencyKey>,
    fingerprint: &[u8],
    now: DateTime<Utc>,
    secret: Option<&str>,
    op: impl AsyncFnOnce(&mut PgConnection) -> Result<(StatusCode, T), ApiError>,
) -> Result<Response, ApiError> {
    let scope = scope(caller);
    let mut tx = pool.begin().await?;
    if let Some(key) = key
        && let Claim::Stored(status, body) = claim(&mut tx, &scope, key, fingerprint, now).await?
    {
        tx.rollback().await?;
        let mut response = json_response(status, body);
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(response);
    }
    let (status, value) = op(&mut tx).await?;
    let body = serde_json::to_string(&value).map_err(ApiError::internal)?;
    if let Some(key) = key {
        let stored = match secret {
            None => body.clone(),
            Some(field) => {
                let mut stored: serde_json::Value = serde_json::from_str(&body).map_err(ApiError::internal)?;
                if let Some(value) = stored.get_mut(field) {
                    *value = serde_json::Value::Null;
                }
                stored.to_string()
            }
        };
        sqlx::query(
            "update idempotency_keys set response_status = $3, response_body = $4 where scope = $1 and key = $2",
        )
        .bind(&scope)
        .bind(&key.0)
        .bind(status.as_u16() as i16)
        .bind(&stored)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(json_response(status, body))
}

/// A response whose body is JSON text already.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// One request's key, for the batch functions below.
pub(crate) struct KeyClaim<'a> {
    pub scope: &'a str,
    pub key: &'a IdempotencyKey,
    pub fingerprint: &'a [u8],
}

/// Which of these keys are already known (claimed, answered, or listed earlier in `claims`):
/// `true` for each such key. Those requests are answered like any repeat, through [`once`].
pub(crate) async fn known_many(conn: &mut PgConnection, claims: &[KeyClaim<'_>]) -> sqlx::Result<Vec<bool>> {
    let stored: Vec<(String, String)> = sqlx::query_as(
        "select k.scope, k.key from idempotency_keys k
           join unnest($1::text[], $2::text[]) as u(scope, key) on k.scope = u.scope and k.key = u.key",
    )
    .bind(claims.iter().map(|c| c.scope).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.key.0.as_str()).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    let mut seen: std::collections::HashSet<(&str, &str)> =
        stored.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect();
    // A key twice in the list: the first entry is the request, the later ones its repeats.
    Ok(claims
        .iter()
        .map(|c| !seen.insert((c.scope, c.key.0.as_str())))
        .collect())
}

/// Stores claimed keys with their responses in one statement, in the transaction that made the
/// changes. `Ok(false)` if any key was taken meanwhile (a concurrent request with the same key
/// committed first): the caller must roll back.
pub(crate) async fn insert_many(
    conn: &mut PgConnection,
    done: Vec<(&KeyClaim<'_>, StatusCode, String)>,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let count = done.len() as u64;
    let inserted = sqlx::query(
        "insert into idempotency_keys (scope, key, fingerprint, created_at, response_status, response_body)
         select s, k, f, $6, st, b from unnest($1::text[], $2::text[], $3::bytea[], $4::int2[], $5::text[])
                                      as u(s, k, f, st, b)
         on conflict (scope, key) do nothing",
    )
    .bind(done.iter().map(|d| d.0.scope).collect::<Vec<_>>())
    .bind(done.iter().map(|d| d.0.key.0.as_str()).collect::<Vec<_>>())
    .bind(done.iter().map(|d| d.0.fingerprint).collect::<Vec<_>>())
    .bind(done.iter().map(|d| d.1.as_u16() as i16).collect::<Vec<_>>())
    .bind(done.into_iter().map(|d| d.2).collect::<Vec<_>>())
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == count)
}
