//! The HTTP side of the Stripe fake: every request goes through one pipeline (recorded, faults,
//! auth, the idempotency layer, the endpoint, a delay or hold) and a routing table of the paths
//! the service calls.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::api::{self, Caller, Reply};
use super::error::{ApiError, Params};
use super::{Kind, MAX_IDEMPOTENCY_KEY_CHARS, ReceivedRequest, Saved, Shared, State, new_id};
use crate::form;

/// Every request: recorded, then faults, auth, the idempotency layer, the endpoint, a delay or hold.
pub(super) async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = new_id("req");
    let path = uri.path().to_owned();
    // GET and DELETE ignore the key (docs.stripe.com/api/idempotent_requests).
    let idempotency_key = text_header(&headers, "idempotency-key").filter(|_| method == Method::POST);
    let stripe_version = text_header(&headers, "stripe-version");
    let raw = match method {
        Method::GET => uri.query().unwrap_or_default().as_bytes().to_vec(),
        _ => body.to_vec(),
    };
    let decoded = form::decode(&raw);

    let fault = {
        let mut state = shared.lock();
        state.requests.push(ReceivedRequest {
            method: method.to_string(),
            path: path.clone(),
            params: decoded.clone().map(Value::Object).unwrap_or(Value::Null),
            idempotency_key: idempotency_key.clone(),
            stripe_version: stripe_version.clone(),
        });
        state.next_replies.take_fault(&path)
    };
    if let Some(fault) = fault {
        return fault.response(&request_id);
    }
    let error = |e: ApiError| json_response(e.status, e.body().to_string(), &request_id);
    if let Err(e) = authorize(&shared.secret_key, &headers) {
        return error(e);
    }
    let params = match decoded {
        Ok(params) => params,
        Err(e) => {
            return error(ApiError::invalid(
                &e.param,
                None,
                format!("Invalid request: unable to read the key {}", e.param),
            ));
        }
    };
    if idempotency_key
        .as_ref()
        .is_some_and(|k| k.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS)
    {
        return error(ApiError::invalid(
            "Idempotency-Key",
            None,
            format!("Keys for idempotent requests can be no longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters."),
        ));
    }

    let (status, body, replayed, events, late) = {
        let mut state = shared.lock();
        let late = state.next_replies.take_late(&path);
        let saved_under = idempotency_key.clone().map(|key| (shared.secret_key.clone(), key));
        let saved = saved_under.as_ref().and_then(|k| state.idempotency.get(k));
        match saved {
            Some(saved) if saved.method == method && saved.path == path && saved.params == params => {
                (saved.status, saved.body.clone(), true, Vec::new(), late)
            }
            Some(_) => {
                let e = ApiError::idempotency(idempotency_key.as_deref().unwrap_or_default());
                (e.status, e.body().to_string(), false, Vec::new(), late)
            }
            None => {
                let caller = Caller {
                    request_id: &request_id,
                    idempotency_key: idempotency_key.as_deref(),
                };
                let outcome = route(
                    &mut state,
                    &method,
                    &path,
                    &Params(&params),
                    stripe_version.as_deref(),
                    &caller,
                );
                let (status, body, keep, events) = match outcome {
                    Ok(Reply { object, events }) => (StatusCode::OK, object.to_string(), true, events),
                    Err(e) => (e.status, e.body().to_string(), e.saved, Vec::new()),
                };
                if keep && let Some(key) = saved_under {
                    let saved = Saved {
                        method: method.clone(),
                        path: path.clone(),
                        params,
                        status,
                        body: body.clone(),
                    };
                    state.idempotency.insert(key, saved);
                }
                (status, body, false, events, late)
            }
        }
    };

    // Sent after the reply is decided, as Stripe sends events apart from the API call; a
    // receiver that calls the fake back does not wait on this request.
    for event in events {
        let shared = shared.clone();
        tokio::spawn(async move { shared.deliver(&event).await });
    }
    late.wait().await;
    let mut response = json_response(status, body, &request_id);
    let headers = response.headers_mut();
    if let Some(version) = stripe_version.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert("stripe-version", version);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    params: &Params,
    stripe_version: Option<&str>,
    caller: &Caller,
) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "customers"]) => api::create_customer(state, params),
        ("GET", ["v1", "customers", id]) => api::retrieve(state, Kind::Customer, id, params),
        ("POST", ["v1", "payment_intents"]) => api::create_payment_intent(state, params, stripe_version),
        ("GET", ["v1", "payment_intents", id]) => api::retrieve(state, Kind::PaymentIntent, id, params),
        ("POST", ["v1", "payment_intents", id, "cancel"]) => api::cancel_payment_intent(state, id, params, caller),
        ("POST", ["v1", "refunds"]) => api::create_refund(state, params, caller),
        ("GET", ["v1", "refunds", id]) => api::retrieve(state, Kind::Refund, id, params),
        ("POST", ["v1", "transfers"]) => api::create_transfer(state, params, caller),
        ("GET", ["v1", "transfers", id]) => api::retrieve(state, Kind::Transfer, id, params),
        ("POST", ["v1", "test_helpers", "customers", id, "fund_cash_balance"]) => {
            api::fund_cash_balance(state, id, params, caller)
        }
        ("GET", ["v1", "disputes", id]) => api::retrieve(state, Kind::Dispute, id, params),
        _ => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: None,
            message: format!("Unrecognized request URL ({method}: {path})."),
            param: None,
            saved: false,
        }),
    }
}

/// `Authorization: Bearer <secret key>` (stripe-node `src/utils.ts`); 401 otherwise.
fn authorize(secret_key: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |message: String| ApiError {
        status: StatusCode::UNAUTHORIZED,
        kind: "invalid_request_error",
        code: None,
        message,
        param: None,
        saved: false,
    };
    let Some(value) = text_header(headers, "authorization") else {
        return Err(unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization \
             header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                .into(),
        ));
    };
    match value.strip_prefix("Bearer ") {
        Some(key) if key == secret_key => Ok(()),
        Some(key) => {
            // Header values that read as text are visible ASCII, so byte offsets are characters.
            let (head, tail) = (&key[..key.len().min(8)], &key[key.len().saturating_sub(4)..]);
            Err(unauthorized(format!("Invalid API Key provided: {head}****{tail}")))
        }
        None => Err(unauthorized(
            "Invalid authorization header: use Bearer auth with your secret key.".into(),
        )),
    }
}

fn text_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub(super) fn json_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("request-id", id);
    }
    response
}
