//! API keys over HTTP, for operators (docs/api-keys.md): create one (its secret shown once, in
//! that response only), list them (never the secret nor its hash), revoke one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::auth::{Auth, Operators};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::idempotency::{self, MaybeKey};
use crate::http::state::AppState;
use crate::keys::{self, KeyInfo, Role};
use crate::paging::{Page, PageRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// `operator`, `platform` or `auditor`.
    role: Role,
    /// What the key is for, 1 to 100 characters: shown in the list.
    #[schema(example = "front-end, production")]
    name: String,
}

/// A key just made, with its secret: the only answer that holds it.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedKeyView {
    id: Uuid,
    name: String,
    role: Role,
    /// The key, for `Authorization: Bearer <key>`. Shown once; null in a replay of the
    /// request with its `Idempotency-Key` (the secret is never stored).
    #[schema(example = "clk_Vv5oX2…")]
    key: Option<String>,
    /// The key's first characters, to recognise it in the list.
    #[schema(example = "clk_Vv5o")]
    prefix: String,
    created_at: DateTime<Utc>,
}

/// A key as the list shows it: never the secret nor its hash.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyView {
    id: Uuid,
    name: String,
    role: Role,
    /// The key's first characters, to recognise it.
    #[schema(example = "clk_Vv5o")]
    prefix: String,
    created_at: DateTime<Utc>,
    /// When it was revoked; null while it is active.
    revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyInfo> for KeyView {
    fn from(k: KeyInfo) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            role: k.role,
            prefix: k.key_prefix,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

crate::page_of!(
    /// A page of API keys, newest first.
    KeyPage,
    KeyView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// Create an API key. Its secret is in this answer only. Honours `Idempotency-Key`: a replay
/// answers the same key with `key: null`, as the secret is never stored.
#[utoipa::path(post, path = "/v1/api-keys", tag = "keys", request_body = NewKey,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Replays the first response (without the secret) for the same key and body")),
    security(("api_key" = [])),
    responses((status = 201, body = CreatedKeyView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_key(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    MaybeKey(key): MaybeKey,
    AppJson(body): AppJson<NewKey>,
) -> Result<Response, ApiError> {
    let name = crate::fields::line("name", &body.name, 100).map_err(|e| ApiError::invalid("name", e.0))?;
    let fingerprint = idempotency::fingerprint(
        "POST /v1/api-keys",
        &NewKey {
            role: body.role,
            name: name.clone(),
        },
    );
    let now = state.clock.now();
    idempotency::once_keeping_secret(
        &state.pool,
        &caller,
        key.as_ref(),
        &fingerprint,
        now,
        Some("key"),
        async |conn| {
            let created = keys::create(conn, &name, body.role, now).await?;
            let secret = created.key.expose_secret();
            Ok((
                StatusCode::CREATED,
                CreatedKeyView {
                    id: created.id,
                    prefix: secret[..8].to_string(),
                    key: Some(secret.to_string()),
                    name: created.name,
                    role: created.role,
                    created_at: now,
                },
            ))
        },
    )
    .await
}

/// The API keys, newest first, revoked ones included.
#[utoipa::path(get, path = "/v1/api-keys", tag = "keys", params(KeysQuery),
    security(("api_key" = [])),
    responses((status = 200, body = KeyPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_keys(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppQuery(q): AppQuery<KeysQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    let request = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let rows = keys::page(&mut conn, &request).await?;
    Ok(Json(Page::of(rows, &request, |k| (k.created_at, k.id)).into()))
}

/// Revoke an API key: from this answer on, it gets 401. Revoking a revoked key answers 200 with
/// the key as it is, revoked at its first revocation.
#[utoipa::path(post, path = "/v1/api-keys/{id}/revoke", tag = "keys", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = KeyView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn revoke_key(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<KeyView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let key = keys::revoke_once(&mut conn, id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no API key {id}")))?;
    Ok(Json(key.into()))
}
