//! The HTTP side of the Mangopay fake: every request goes through one pipeline (recorded, a fault
//! from in front of the API, the token endpoint or the Bearer check, the idempotency key, the
//! endpoint, the answer saved under the key, a delay or hold) and a routing table of the paths the
//! service calls.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::api::{self, Reply};
use super::error::ApiError;
use super::state::{Saved, State};
use super::{Fault, Kind, ReceivedRequest, Shared};
use crate::token;

/// Mangopay's rate-limit windows, in the order its `x-ratelimit*` headers list them: calls
/// allowed, and the window's length in seconds (docs:api-reference/overview/rate-limiting).
const RATE_LIMITS: [(u64, i64); 4] = [(2_300, 900), (4_500, 1_800), (8_800, 3_600), (105_600, 86_400)];

/// Every request: recorded, then a fault, the token endpoint or the Bearer check, the idempotency
/// key, the endpoint, the answer saved under the key, a delay or hold.
pub(super) async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let target = Target::of(&path, &shared.client_id);
    let idempotency_key = text_header(&headers, "idempotency-key").filter(|_| method == Method::POST);
    let (fault, now) = {
        let mut state = shared.lock();
        state.calls += 1;
        if target == Target::Token {
            state.token_requests += 1;
        }
        state.requests.push(ReceivedRequest {
            method: method.to_string(),
            path: path.clone(),
            body: recorded_body(&body),
            idempotency_key: idempotency_key.clone(),
        });
        let fault = state.next_replies.take_fault(target.route().unwrap_or(&path));
        (fault, state.now())
    };
    let respond = |status: StatusCode, body: &Value| shared.respond(status, body, false);
    let error = |e: ApiError| respond(e.status, &e.body(now));
    match fault {
        Some(Fault::DropConnection) => return dropped_connection(),
        Some(Fault::RateLimited) => {
            let e = ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "rate_limit",
                message: "Rate limit exceeded. Please contact support for more assistance".into(),
                errors: None,
            };
            return shared.respond(e.status, &e.body(now), true);
        }
        Some(Fault::ServiceUnavailable) => {
            return error(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "service_unavailable",
                message: "The service is temporarily unavailable. Please try again later.".into(),
                errors: None,
            });
        }
        Some(Fault::ServerError) | None => {}
    }
    let server_error = fault == Some(Fault::ServerError);

    let route = match target {
        Target::Api(route) => route,
        Target::Token if server_error => return error(ApiError::server_error()),
        Target::Token => {
            return match shared.issue_token(&method, &headers, &body) {
                Ok(token) => respond(StatusCode::OK, &token),
                Err(e) => error(e),
            };
        }
        Target::OtherClient => {
            return error(ApiError::unauthorized(
                "The client id in the URL is not the one the token was issued to.",
            ));
        }
        Target::Outside => return error(unknown_route(&method, &path)),
    };
    if let Err(e) = shared.authorize(&headers) {
        return error(e);
    }
    if let Some(key) = &idempotency_key
        && !valid_idempotency_key(key)
    {
        return error(ApiError::param(
            "Idempotency-Key",
            "The Idempotency-Key must be 16 to 36 characters: letters, digits or dashes.",
        ));
    }

    let (status, body, hooks, late) = {
        let mut state = shared.lock();
        if let Some(key) = &idempotency_key
            && state.responses.contains_key(key)
        {
            drop(state);
            return error(ApiError::idempotent_conflict());
        }
        let late = state.next_replies.take_late(route);
        let outcome = if server_error {
            Err(ApiError::server_error())
        } else {
            json_body(&method, &body).and_then(|fields| self::route(&mut state, &method, route, &fields))
        };
        let (status, body, hooks) = match outcome {
            Ok(Reply { object, hooks }) => (StatusCode::OK, object, hooks),
            Err(e) => (e.status, e.body(now), Vec::new()),
        };
        if let Some(key) = idempotency_key {
            let host = text_header(&headers, "host").unwrap_or_default();
            let saved = Saved {
                status,
                body: body.clone(),
                request_url: format!("http://{host}{path}"),
                date: now,
            };
            state.responses.insert(key, saved);
        }
        (status, body, hooks, late)
    };

    // Sent after the reply is decided, as Mangopay sends hooks apart from the API call; a
    // receiver that reads the resource back does not wait on this request.
    for hook in hooks {
        let shared = shared.clone();
        tokio::spawn(async move { shared.deliver(&hook).await });
    }
    late.wait().await;
    respond(status, &body)
}

const TOKEN_ROUTE: &str = "oauth/token";

/// What a path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    /// `/v2.01/oauth/token`.
    Token,
    /// `/v2.01/{ClientId}/<route>`.
    Api(&'a str),
    /// `/v2.01/<another client id>/…`.
    OtherClient,
    Outside,
}

impl<'a> Target<'a> {
    fn of(path: &'a str, client_id: &str) -> Target<'a> {
        let Some(rest) = path.strip_prefix("/v2.01/") else {
            return Target::Outside;
        };
        if rest == TOKEN_ROUTE {
            return Target::Token;
        }
        match rest.strip_prefix(client_id).and_then(|r| r.strip_prefix('/')) {
            Some(route) => Target::Api(route),
            None => Target::OtherClient,
        }
    }

    /// The path as controls name it: what follows `/v2.01/{ClientId}/`, or `oauth/token`.
    fn route(self) -> Option<&'a str> {
        match self {
            Target::Token => Some(TOKEN_ROUTE),
            Target::Api(route) => Some(route),
            Target::OtherClient | Target::Outside => None,
        }
    }
}

fn route(state: &mut State, method: &Method, route: &str, body: &Map<String, Value>) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = route.split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["users", "natural"]) => api::create_natural_user(state, body),
        ("POST", ["users", "legal"]) => api::create_legal_user(state, body),
        ("GET", ["users", id]) => api::view(state, Kind::User, id),
        ("GET", ["users", "natural", id]) => api::view_if(state, Kind::User, id, |u| u["PersonType"] == "NATURAL"),
        ("GET", ["users", "legal", id]) => api::view_if(state, Kind::User, id, |u| u["PersonType"] == "LEGAL"),
        ("POST", ["users", user, "bankaccounts", "iban"]) => api::create_iban_account(state, user, body),
        ("GET", ["users", user, "bankaccounts", id]) => {
            api::view_if(state, Kind::BankAccount, id, |account| account["UserId"] == *user)
        }
        ("POST", ["wallets"]) => api::create_wallet(state, body),
        ("GET", ["wallets", id]) => api::view(state, Kind::Wallet, id),
        ("POST", ["payins", "card", "web"]) => api::create_card_web_payin(state, body),
        ("POST", ["payins", "bankwire", "direct"]) => api::create_bankwire_payin(state, body),
        ("GET", ["payins", id]) => api::view(state, Kind::PayIn, id),
        ("POST", ["payins", id, "refunds"]) => api::create_refund(state, Kind::PayIn, id, body),
        ("POST", ["transfers"]) => api::create_transfer(state, body),
        ("GET", ["transfers", id]) => api::view(state, Kind::Transfer, id),
        ("POST", ["transfers", id, "refunds"]) => api::create_refund(state, Kind::Transfer, id, body),
        ("POST", ["payouts", "bankwire"]) => api::create_payout(state, body),
        ("GET", ["payouts", id]) => api::view(state, Kind::PayOut, id),
        ("GET", ["refunds", id]) => api::view(state, Kind::Refund, id),
        ("GET", ["disputes", id]) => api::view(state, Kind::Dispute, id),
        ("POST", ["hooks"]) => api::create_hook(state, body),
        ("GET", ["hooks", id]) => api::view(state, Kind::Hook, id),
        ("GET", ["responses", key]) if valid_idempotency_key(key) => api::view_response(state, key),
        ("GET", ["responses", _]) => Err(ApiError::param(
            "IdempotencyKey",
            "The IdempotencyKey must be 16 to 36 characters: letters, digits or dashes.",
        )),
        _ => Err(unknown_route(method, route)),
    }
}

fn unknown_route(method: &Method, path: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "ressource_not_found",
        message: format!("The Mangopay fake serves no {method} {path}"),
        errors: None,
    }
}

impl ApiError {
    /// 500, "We invite you to try again later" (docs:errors/http-response-codes).
    fn server_error() -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal_server_error",
            message: "We invite you to try again later".into(),
            errors: None,
        }
    }
}

/// 16 to 36 characters, letters, digits or dashes (docs:api-reference/overview/idempotency).
fn valid_idempotency_key(key: &str) -> bool {
    (16..=36).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A POST's JSON object (an empty body reads as `{}`); GETs carry none.
fn json_body(method: &Method, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if *method != Method::POST || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(ApiError::param("Body", "The request body must be a JSON object.")),
    }
}

fn recorded_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

impl Shared {
    /// `POST /v2.01/oauth/token`: Basic `ClientId:ApiKey`, form `grant_type=client_credentials`
    /// (docs/providers/mangopay-api.md section 2).
    fn issue_token(&self, method: &Method, headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
        if *method != Method::POST {
            return Err(unknown_route(method, "/v2.01/oauth/token"));
        }
        let credentials = text_header(headers, "authorization")
            .and_then(|value| value.strip_prefix("Basic ").map(str::to_owned))
            .and_then(|encoded| BASE64.decode(encoded).ok())
            .and_then(|decoded| String::from_utf8(decoded).ok());
        let expected = format!("{}:{}", self.client_id, self.api_key);
        if credentials.as_deref() != Some(expected.as_str()) {
            return Err(ApiError::unauthorized(
                "The client id and API key in the Basic credentials are not valid.",
            ));
        }
        let grant_type = form_urlencoded::parse(body)
            .find(|(name, _)| name == "grant_type")
            .map(|(_, value)| value.into_owned());
        if grant_type.as_deref() != Some("client_credentials") {
            return Err(ApiError::param(
                "grant_type",
                "The grant_type must be client_credentials.",
            ));
        }
        let access_token = token(32);
        let expires_at = Instant::now() + Duration::from_secs(self.token_lifetime_seconds);
        let mut state = self.lock();
        state.tokens.insert(access_token.clone(), expires_at);
        state.issued_tokens.push(access_token.clone());
        drop(state);
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime_seconds,
        }))
    }

    /// `Authorization: Bearer <a token issued and not expired>`; 401 otherwise.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(presented) =
            text_header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
        else {
            return Err(ApiError::unauthorized(
                "Authorization has been denied for this request: no Bearer token.",
            ));
        };
        let mut state = self.lock();
        match state.tokens.get(&presented) {
            Some(expires_at) if Instant::now() < *expires_at => Ok(()),
            Some(_) => {
                state.tokens.remove(&presented);
                Err(ApiError::unauthorized(
                    "Authorization has been denied for this request: the token has expired.",
                ))
            }
            None => Err(ApiError::unauthorized(
                "Authorization has been denied for this request: unknown token.",
            )),
        }
    }

    /// A JSON answer with the rate-limit headers every Mangopay answer carries.
    fn respond(&self, status: StatusCode, body: &Value, rate_limited: bool) -> Response {
        let (calls, now) = {
            let state = self.lock();
            (state.calls, state.now())
        };
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        for (name, value) in rate_limit_headers(calls, now, rate_limited) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// `x-ratelimit` (calls made), `x-ratelimit-remaining` and `x-ratelimit-reset` (Unix seconds),
/// one comma-separated value per window. Every call counts in every window; a rate-limited
/// answer shows the 15-minute window spent.
fn rate_limit_headers(calls: u64, now: i64, rate_limited: bool) -> [(&'static str, String); 3] {
    let (mut made, mut remaining, mut reset) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (limit, window)) in RATE_LIMITS.into_iter().enumerate() {
        let calls = if rate_limited && i == 0 {
            limit
        } else {
            calls.min(limit)
        };
        made.push(calls.to_string());
        remaining.push((limit - calls).to_string());
        reset.push((now + window).to_string());
    }
    [
        ("x-ratelimit", made.join(", ")),
        ("x-ratelimit-remaining", remaining.join(", ")),
        ("x-ratelimit-reset", reset.join(", ")),
    ]
}

/// An answer that never comes: the status line is not sent, the connection closes.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async { Err::<Bytes, io::Error>(io::Error::other("connection dropped")) });
    Response::new(Body::from_stream(failing))
}

fn text_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
