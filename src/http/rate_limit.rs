//! The per-client rate limit: each client spends from a bucket of its own (GCRA, the `governor`
//! crate), and a request beyond its budget gets 429 `rate_limited` with `Retry-After` before it
//! takes one of the `max_in_flight` slots.
//!
//! A client is its API key, known by the key's SHA-256 (the identity `api_keys` stores, never the
//! key itself), or, for a request without a key, its remote address (IPv6 by its /64, which one
//! subscriber usually holds whole). A made-up key buys no budget of its own: the 401 it earns is
//! charged to its address as well, so cycling through made-up keys is limited like asking
//! without one.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::auth::bearer_key;
use super::error::{ApiError, Code};
use crate::keys::{self, KeyHash};

/// How often buckets back to full are forgotten: a client's entry lives only while it has spent
/// part of its burst (burst / rate, a second with the defaults), so the maps hold the clients of
/// the last moments, not every address or made-up key ever seen.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The budgets of every client, shared by all routes and connections.
pub struct RateLimits {
    keys: Option<DefaultKeyedRateLimiter<KeyHash>>,
    addresses: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

#[derive(Clone, Copy)]
enum Scope {
    Key,
    Address,
}

impl RateLimits {
    /// The limiters `settings` asks for (a rate of 0: none), and, on a Tokio runtime, the task
    /// that forgets full buckets; it ends when the limits are dropped.
    pub fn new(settings: &RateLimitSettings) -> Arc<RateLimits> {
        let limits = Arc::new(RateLimits {
            keys: quota(settings.key_per_second, settings.key_burst).map(RateLimiter::keyed),
            addresses: quota(settings.address_per_second, settings.address_burst).map(RateLimiter::keyed),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&limits);
            runtime.spawn(async move {
                let mut every = tokio::time::interval(SWEEP_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let Some(limits) = weak.upgrade() else { return };
                    limits.sweep();
                }
            });
        }
        limits
    }

    fn sweep(&self) {
        if let Some(keys) = &self.keys {
            keys.retain_recent();
            keys.shrink_to_fit();
        }
        if let Some(addresses) = &self.addresses {
            addresses.retain_recent();
            addresses.shrink_to_fit();
        }
    }

    /// Charges a request to the key it carries (hashed only when keys are limited).
    fn check_key(&self, key: &str) -> Result<(), Refusal> {
        match &self.keys {
            Some(limiter) => check(limiter, &keys::hash(key), Scope::Key),
            None => Ok(()),
        }
    }

    fn check_address(&self, address: &IpAddr) -> Result<(), Refusal> {
        match &self.addresses {
            Some(limiter) => check(limiter, address, Scope::Address),
            None => Ok(()),
        }
    }
}

fn check<K: Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>, key: &K, scope: Scope) -> Result<(), Refusal> {
    limiter.check_key(key).map_err(|not_until| Refusal {
        wait: not_until.wait_time_from(limiter.clock().now()),
        scope,
    })
}

/// `rate` requests a second sustained, `burst` at once; `None` for a rate of 0 (no limit).
fn quota(rate: f64, burst: u32) -> Option<Quota> {
    let burst = NonZeroU32::new(burst)?;
    if rate <= 0.0 {
        return None;
    }
    // Settings::validate keeps the rate between a thousandth and a billion a second.
    let period = Duration::try_from_secs_f64(1.0 / rate)
        .ok()?
        .max(Duration::from_nanos(1));
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

struct Refusal {
    wait: Duration,
    scope: Scope,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (scope, detail) = match self.scope {
            Scope::Key => (
                "key",
                "this API key has spent its budget of requests; retry after Retry-After seconds",
            ),
            Scope::Address => (
                "address",
                "this address has spent its budget of requests without a valid API key; retry after Retry-After seconds",
            ),
        };
        metrics::counter!("http_rate_limited_total", "client" => scope).increment(1);
        // Whole seconds, rounded up: retrying at the rounded-down second would be refused again.
        let seconds = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        ApiError::new(Code::RateLimited, detail)
            .retry_after(seconds.max(1))
            .into_response()
    }
}

/// The middleware: charges the request to its client, or refuses it.
pub async fn limit(State(limits): State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    let address = client_address(&req);
    let key = req.headers().get(AUTHORIZATION).and_then(bearer_key);
    let charged = match key {
        Some(key) => limits.check_key(key),
        None => limits.check_address(&address),
    };
    if let Err(refusal) = charged {
        return refusal.into_response();
    }
    let with_key = key.is_some();
    let response = next.run(req).await;
    if with_key
        && response.status() == StatusCode::UNAUTHORIZED
        && let Err(refusal) = limits.check_address(&address)
    {
        return refusal.into_response();
    }
    response
}

/// The remote address as a client: an IPv4 address (mapped IPv6 ones included), or an IPv6
/// address's /64. Served without the connection's address (a router called directly), every
/// request is one client.
fn client_address(req: &Request) -> IpAddr {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// The per-client budgets (src/http/rate_limit.rs): a sustained rate and a burst, per API key
/// and per remote address; a rate of 0 turns that limit off.
#[derive(Clone, Copy, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub key_per_second: f64,
    pub key_burst: u32,
    pub address_per_second: f64,
    pub address_burst: u32,
}
