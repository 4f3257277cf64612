//! A deadline for bodies on routes that take no API key (`POST /v1/webhooks/{provider}`): anyone
//! may open such a request and send its body a byte at a time, holding one of the `max_in_flight`
//! slots until the request timeout. Its body must have arrived whole within
//! `http.unauthenticated_body_timeout_seconds`, or the request gets 408 and its connection is
//! closed. (Routes that take a key read no body before the key is checked.)

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::{ApiError, Code};
use super::extract::too_large;

/// How long an unauthenticated body may take to arrive, and how large it may be; the router puts
/// it in every request's extensions for [`unauthenticated_body`] to read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyDeadline {
    pub timeout: Duration,
    pub limit_bytes: usize,
}

/// Route middleware: reads the whole body within the deadline, then hands the request on with
/// the body in memory (the handler buffers it anyway, to verify its signature byte for byte).
pub(crate) async fn unauthenticated_body(req: Request, next: Next) -> Response {
    let Some(deadline) = req.extensions().get::<BodyDeadline>().copied() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(deadline.timeout, Limited::new(body, deadline.limit_bytes).collect()).await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => return too_large().into_response(),
        Ok(Err(err)) => {
            return ApiError::new(
                Code::MalformedRequest,
                format!("failed to read the request body: {err}"),
            )
            .into_response();
        }
        Err(_) => {
            let mut late = ApiError::new(
                Code::BodyTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    deadline.timeout.as_secs_f64()
                ),
            )
            .into_response();
            // The rest of the body may still be on its way: the connection cannot serve another.
            late.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return late;
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}
