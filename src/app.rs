//! The whole application's router: every domain's routes gathered under one OpenAPI document,
//! `/openapi.json`, `/docs`, and the middleware stack. The top of the house: it imports the
//! handlers, and nothing imports it but `lib.rs`.

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::clock::ClockMode;
use crate::http::error::{ApiError, Code, Problem};
use crate::http::event_catalogue::EventWebhooks;
use crate::http::state::{AppState, Limits};
use crate::http::{body_deadline, metrics, no_such_route, rate_limit};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crowdledger",
        description = "Equity crowdfunding for social-impact projects on a double-entry ledger. \
                       Amounts are decimal strings; errors are application/problem+json with a stable `code`."
    ),
    modifiers(&BearerAuth, &EventWebhooks),
    components(schemas(Problem)),
    tags(
        (name = "health", description = "Liveness and readiness; no key needed"),
        (name = "ledger", description = "The books: accounts, journal entries, trial balance, invariants"),
        (name = "projects", description = "The project catalogue: social enterprises by territory and theme"),
        (name = "investors", description = "Investors, their ECSP classification and KYC decisions"),
        (name = "offers", description = "Share offers (funding rounds): lifecycle, pledges, cap table, payouts"),
        (name = "pledges", description = "Investors' pledges: make, read, revoke"),
        (name = "refunds", description = "Card money owed back to investors, one refund per pledge given money back, until the provider pays it"),
        (name = "sponsors", description = "Sponsors of prize cheques and the deposits that fund their budgets"),
        (name = "cheques", description = "Virtual prize cheques: issued from a sponsor's budget, spent only in pledges"),
        (name = "sandbox", description = "The built-in test provider's controls and the manual clock; served only with clock.mode = \"manual\""),
        (name = "webhooks", description = "Signed events from payment providers, the quarantine, and operators' webhook endpoints"),
        (name = "keys", description = "API keys: create (the secret shown once), list, revoke"),
        (name = "audit", description = "The audit trail: which key did what to which object, and when"),
        (name = "events", description = "What happened, as the outbox holds it: the events webhooks deliver, listed and by id; each type's data is in `webhooks`"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The routes of the API, before state and middleware, in two parts: those the audit
/// middleware wraps, and a pledge's creation, which keeps its author on the pledge's own row
/// (docs/audit-log.md): the hot path carries no audit work at all.
pub struct Routes {
    pub audited: Router<AppState>,
    pub recorded_where_made: Router<AppState>,
}

/// The OpenAPI document and the routes it describes. The sandbox's test controls are there
/// only with a manual clock ("sandbox and tests only"): under a system clock their paths answer
/// 404 like any unknown path, and the document does not list them.
pub fn api(clock: ClockMode) -> (Routes, utoipa::openapi::OpenApi) {
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::http::health::router())
        .merge(crate::ledger::http::router())
        .merge(crate::books::http::router())
        .merge(crate::projects::http::router())
        .merge(crate::investors::http::router())
        .merge(crate::offers::http::router())
        .merge(crate::pledges::http::router())
        .merge(crate::payments::http::router())
        .merge(crate::sponsors::http::router())
        .merge(crate::cheques::http::router())
        .merge(crate::matchfunding::http::router())
        .merge(crate::webhooks::http::router())
        .merge(crate::http::keys::router())
        .merge(crate::http::audit::router())
        .merge(crate::http::events::router());
    let (audited, mut openapi) = match clock {
        ClockMode::Manual => api.merge(crate::sandbox::http::router()),
        ClockMode::System => api,
    }
    .split_for_parts();
    let (recorded_where_made, created) = crate::pledges::http::create_router().split_for_parts();
    openapi.merge(created);
    let routes = Routes {
        audited,
        recorded_where_made,
    };
    (routes, openapi)
}

/// The document as served: utoipa's, with the links between operations.
fn document(openapi: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi).expect("the OpenAPI document serialises");
    let unapplied = crate::http::openapi::add_links(&mut doc);
    debug_assert!(
        unapplied.is_empty(),
        "links from operations not in the document: {unapplied:?}"
    );
    doc
}

/// The whole application: API routes, `/openapi.json`, `/docs`, and the middleware stack.
pub fn router(state: AppState, limits: Limits) -> Router {
    let (api, openapi) = api(state.clock.mode());
    // Rendered once into shared bytes: axum clones every route's handler for each connection
    // (and each request), and a handler holding the document itself made each connection copy
    // it, a megabyte and more apiece.
    let openapi_json = Bytes::from(serde_json::to_vec(&document(&openapi)).expect("the OpenAPI document serialises"));
    let request_id = HeaderName::from_static("x-request-id");
    // Innermost, around each route's handler: it needs the matched route and its `{id}`.
    let recorder = crate::http::audit::Recorder {
        trail: state.audit.clone(),
        clock: state.clock.clone(),
    };
    api.audited
        .layer(axum::middleware::from_fn_with_state(
            recorder.clone(),
            crate::http::audit::record,
        ))
        .merge(api.recorded_where_made)
        // The operator console's pages (docs/console.md), outside the API's document.
        .merge(crate::console::router(recorder))
    .route(
        "/openapi.json",
        get(move || std::future::ready(([(header::CONTENT_TYPE, "application/json")], openapi_json.clone()))),
    )
    // The viewer's files are in the binary: `/docs` works with no network.
    .merge(SwaggerUi::new("/docs").config(Config::from("/openapi.json")))
    .fallback(|| async { no_such_route() })
    .method_not_allowed_fallback(|| async {
        ApiError::new(Code::MethodNotAllowed, "this route does not take that method")
    })
    .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
    .layer(Extension(body_deadline::BodyDeadline {
        timeout: limits.unauthenticated_body_timeout,
        limit_bytes: limits.body_limit_bytes,
    }))
    .layer(
        ServiceBuilder::new()
            // The console's session cookie is the API key: never in a trace either.
            .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
            .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .extensions()
                    .get::<RequestId>()
                    .and_then(|id| id.header_value().to_str().ok());
                let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
                tracing::info_span!("request", method = %req.method(), route, path = req.uri().path(), request_id = id)
            }))
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::internal(anyhow::anyhow!("a request handler panicked")).into_response()
            }))
            .layer(axum::middleware::from_fn(metrics::track))
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                ApiError::new(Code::Timeout, "the request took too long and was abandoned")
            }))
            .layer(TimeoutLayer::new(limits.request_timeout)),
    )
    // Outermost: a request beyond the limit is refused before anything is spent on it.
    .layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                let mut refused = ApiError::new(
                    Code::Overloaded,
                    "the service is at its limit of requests in flight; retry shortly",
                )
                .into_response();
                refused
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                refused
            }))
            .load_shed()
            // Global: `Router::layer` wraps each route apart, and the limit is the process's.
            .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight)),
    )
    // Outside even that: a client beyond its budget takes no slot from the others.
    .layer(axum::middleware::from_fn_with_state(
        rate_limit::RateLimits::new(&limits.rate_limit),
        rate_limit::limit,
    ))
    .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_starts_at_an_operation_of_the_document() {
        for clock in [ClockMode::Manual, ClockMode::System] {
            let (_, openapi) = api(clock);
            let mut doc = serde_json::to_value(&openapi).unwrap();
            assert_eq!(crate::http::openapi::add_links(&mut doc), Vec::<&str>::new());
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let (_, openapi) = api(ClockMode::Manual);
        let doc = serde_json::to_value(&openapi).unwrap();
        let mut ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }
}
