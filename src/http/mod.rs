//! The HTTP layer's parts, below the handlers that use them: the state and limits
//! (`state`), API keys and roles (`auth`; `keys`, their routes), problem+json (`error`),
//! extractors, idempotency, middleware (rate limit, body deadline, metrics, the audit trail)
//! and the connection loop (`serve`). The router that gathers every domain's handlers is
//! `crate::app`, the top of the house.

pub mod audit;
pub mod auth;
pub mod body_deadline;
pub mod error;
pub(crate) mod event_catalogue;
pub(crate) mod events;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod rate_limit;
pub mod serve;
pub mod state;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use error::ApiError;

/// What a path the service does not serve answers, whoever asks: 404 `not_found`.
pub fn no_such_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// Helper for handlers: a 200 JSON response.
pub fn ok<T: Serialize>(body: T) -> Response {
    Json(body).into_response()
}
