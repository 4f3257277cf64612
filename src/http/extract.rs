//! Extractors whose rejections are [`ApiError`]s, so a malformed body, path or query gets the
//! same problem+json shape as every other error.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, Code};

/// `Json` whose rejection is a problem: 400 `malformed_json` for bad syntax, 415 for a missing
/// `Content-Type: application/json`, 413 for a body over the limit, 422 `validation_failed` for
/// well-formed JSON of the wrong shape (a JSON number where an amount string belongs, say).
/// Every body is a JSON object: serde would also fill a struct from an array of its fields, in
/// order, which no client means and the OpenAPI document does not describe.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let AppBytes(bytes) = AppBytes::from_request(req, state).await?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::validation("the body must be a JSON object"));
        }
        Ok(AppJson(value))
    }
}

/// `application/json`, or any `application/…+json`, as axum's `Json` takes.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || (subtype.ends_with("+json") && subtype.len() > 5))
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let detail = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => ApiError::validation(detail),
            JsonRejection::JsonSyntaxError(_) => ApiError::new(Code::MalformedJson, detail),
            JsonRejection::MissingJsonContentType(_) => not_json(),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            other => ApiError::rejected(other.status(), other.body_text()),
        }
    }
}

fn not_json() -> ApiError {
    ApiError::new(
        Code::UnsupportedMediaType,
        "expected a body with Content-Type: application/json",
    )
}

pub(crate) fn too_large() -> ApiError {
    ApiError::new(Code::PayloadTooLarge, "the request body is too large")
}

/// The raw body, for routes that verify bytes before reading them (signed webhooks). Its
/// rejection, a body over the limit above all, is a problem like every other.
pub(crate) struct AppBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for AppBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(AppBytes)
            .map_err(ApiError::from)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            status => ApiError::rejected(status, rejection.body_text()),
        }
    }
}

/// `Path` whose rejection is a 404 problem: an id that cannot exist names no resource, and
/// that includes one holding a NUL (`%00`), which no Postgres text can hold.
pub(crate) struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        if holds_nul(parts.uri.path()) {
            return Err(ApiError::not_found("no such resource: the path holds a NUL character"));
        }
        Ok(AppPath(value))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::not_found(format!("no such resource: {}", rejection.body_text()))
    }
}

/// `Query` whose rejection is a 422 `validation_failed` problem, a NUL (`%00`) included.
pub(crate) struct AppQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        if parts.uri.query().is_some_and(holds_nul) {
            return Err(ApiError::validation("query parameters cannot hold a NUL character"));
        }
        Ok(AppQuery(value))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::validation(rejection.body_text())
    }
}

/// Whether a raw (percent-encoded) path or query decodes to a NUL somewhere.
fn holds_nul(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w == b"%00")
}
