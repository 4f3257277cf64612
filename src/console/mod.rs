//! The operator console (PRODUCT.md section 14, docs/console.md): pages served at `/console`,
//! rendered on the server from compile-time checked templates (askama), for operators and
//! auditors. It calls the same domain functions as the API, under the same keys and roles.
//!
//! The session is the API key itself, in a cookie the browser keeps for the session only:
//! `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it),
//! `Path=/console`. It is never in a URL, a page or a log (the trace layer marks `Cookie` as
//! sensitive). Every request checks the key afresh, so a revoked key ends its sessions at once.
//! Every form carries a CSRF token derived from the key, checked in constant time.

mod books;
mod pages;
mod rounds;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::http::auth::{Caller, KeyCheck, caller_of_key};
use crate::http::state::AppState;

/// The session cookie's name.
const COOKIE: &str = "crowdledger_console";

/// What every console page answers with: no script, style or frame from anywhere else, no
/// inline script, forms posting only here, never cached.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes; its writes go through `recorder`, the API's audit trail.
pub(crate) fn router(recorder: crate::http::audit::Recorder) -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/projects") }))
        .route("/console/sign-in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/console/sign-out", axum::routing::post(pages::sign_out))
        .route("/console/projects", get(pages::projects))
        .route("/console/projects/{id}", get(pages::project))
        .route("/console/offers/{id}", get(rounds::round))
        .route(
            "/console/offers/{id}/close",
            get(rounds::confirm_close).post(rounds::close),
        )
        .route("/console/offers/{id}/cap-table", get(rounds::cap_table))
        .route("/console/offers/{id}/cap-table.csv", get(rounds::cap_table_csv))
        .route("/console/books/verify", get(books::verify))
        .route("/console/console.css", get(stylesheet))
        .layer(axum::middleware::from_fn_with_state(
            recorder,
            crate::http::audit::record,
        ))
        .layer(axum::middleware::map_response(secure_headers))
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |h: &mut HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("console.css"),
    )
}

/// A signed-in operator or auditor: their key's caller, and the CSRF token of their forms.
pub(crate) struct Session {
    pub caller: Caller,
    pub csrf: String,
}

/// The CSRF token of a session: HMAC-SHA256 of a fixed label under the key itself, so only a
/// page served to the key's holder can carry it, and no server-side state is needed.
fn csrf_token(key: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"crowdledger/console/csrf/v1");
    hex::encode(mac.finalize().into_bytes())
}

impl Session {
    /// Whether a form's token is this session's.
    pub fn allows(&self, token: &str) -> bool {
        self.csrf.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

/// The session's key, from the cookie.
fn key_in(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

/// Whether `key` can be kept in a cookie as it is: printable ASCII without the characters a
/// cookie value may not hold. Any API key the service issues is.
fn cookie_safe(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 200
        && key
            .bytes()
            .all(|b| (b'!'..=b'~').contains(&b) && !b";,\"\\".contains(&b))
}

/// The cookie that starts a session with `key`.
fn session_cookie(key: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={key}; Path=/console; HttpOnly; SameSite=Strict; Secure"
    ))
    .expect("a cookie-safe key makes a valid header")
}

/// The cookie that ends it.
fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("crowdledger_console=; Path=/console; HttpOnly; SameSite=Strict; Secure; Max-Age=0")
}

impl<S: Send + Sync> FromRequestParts<S> for Session
where
    KeyCheck: FromRef<S>,
{
    /// Without a valid session, to the sign-in page.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let key = key_in(&parts.headers).ok_or_else(to_sign_in)?;
        let caller = caller_of_key(&KeyCheck::from_ref(state), &key)
            .await
            .map_err(|_| to_sign_in())?;
        // The audit trail records the console's writes as the API's (docs/audit-log.md).
        if let Some(slot) = parts.extensions.get::<crate::http::auth::CallerSlot>() {
            slot.fill(caller);
        }
        Ok(Session {
            caller,
            csrf: csrf_token(&key),
        })
    }
}

/// A page's answer when rendering failed: a plain 500, its cause logged.
fn render_failed(err: askama::Error) -> Response {
    tracing::error!(error = %err, "a console page failed to render");
    (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_read_from_its_cookie_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; crowdledger_console=k-123; b=2"),
        );
        assert_eq!(key_in(&h).as_deref(), Some("k-123"));
        h.insert(header::COOKIE, HeaderValue::from_static("crowdledger_console="));
        assert_eq!(key_in(&h), None);
        assert!(cookie_safe("test-bootstrap-operator-key-0123456789abcdef"));
        assert!(!cookie_safe("a;b") && !cookie_safe("a b") && !cookie_safe(""));
    }

    #[test]
    fn the_csrf_token_is_the_keys_own() {
        assert_eq!(csrf_token("k1"), csrf_token("k1"));
        assert_ne!(csrf_token("k1"), csrf_token("k2"));
        let s = Session {
            caller: Caller {
                role: crate::keys::Role::Auditor,
                key_id: None,
            },
            csrf: csrf_token("k1"),
        };
        assert!(s.allows(&csrf_token("k1")));
        assert!(!s.allows(&csrf_token("k2")) && !s.allows(""));
    }
}
