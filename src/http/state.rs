//! What every handler can reach ([`AppState`]) and the limits every request is served under.
//! Its own module, below the handlers that take it, so the router that gathers them is the only
//! file above both.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::clock::Clock;
use crate::http::auth::Authenticator;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub clock: Clock,
    pub auth: Arc<Authenticator>,
    pub providers: Arc<crate::payments::providers::Providers>,
    /// Card pledges, many per transaction per offer (pledges/http/batcher.rs).
    pub batcher: crate::pledges::http::batcher::Batcher,
    /// Verified provider events, many per transaction (webhooks/inbound.rs).
    pub inbound: crate::webhooks::inbound::Batcher,
    /// The audit trail's queue to its writer (http/audit.rs).
    pub audit: crate::http::audit::AuditTrail,
    /// Ballot seeds are derived from it (`ballot.seed_key`, offers/ballot.rs); none under the
    /// system clock when not configured.
    pub seed_key: Option<crate::offers::ballot::SeedKey>,
    /// How long a statement of a full read of the books (verify, trial balance) may run.
    pub read_timeout: Duration,
    /// How long the background job keeps idempotency keys, inbound events, webhook attempts.
    pub retention: crate::jobs::retention::RetentionSettings,
    /// The risk-warning text's version a pledge records when it names none
    /// (`investor_protection.risk_warning_version`).
    pub risk_warning_version: std::sync::Arc<str>,
    /// How long before its expiry a cheque with money left sends `cheque.expiring`
    /// (`cheques.expiring_notice_days`).
    pub cheque_notice: chrono::TimeDelta,
}

/// Limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    /// Requests served at once; more are refused with 503 `overloaded`.
    pub max_in_flight: usize,
    /// A request's head must arrive within this, or its connection is closed ([`serve`]).
    pub header_read_timeout: Duration,
    /// A body on a route that takes no API key must arrive within this ([`body_deadline`]).
    pub unauthenticated_body_timeout: Duration,
    /// Each client's budget ([`rate_limit`]).
    pub rate_limit: crate::http::rate_limit::RateLimitSettings,
}

impl axum::extract::FromRef<AppState> for crate::http::auth::KeyCheck {
    fn from_ref(state: &AppState) -> Self {
        crate::http::auth::KeyCheck {
            pool: state.pool.clone(),
            auth: state.auth.clone(),
        }
    }
}
