//! crowdledger: equity crowdfunding for social-impact projects on a double-entry ledger.
//!
//! The binary (`src/main.rs`) is a thin CLI; everything it runs is here: [`App::build`] turns
//! settings into a pool and state, [`launch`] serves a router on a listener until a shutdown
//! future resolves, so tests run the real app on port 0.

mod app;
mod audit;
mod background;
pub mod batch;
pub mod books;
pub mod cheques;
pub mod clock;
pub mod config;
pub mod console;
pub mod db;
pub mod fields;
pub mod http;
pub mod investors;
pub mod jobs;
pub mod keys;
pub mod ledger;
pub mod matchfunding;
pub mod money;
pub mod offers;
pub mod outbox;
pub mod paging;
pub mod payments;
pub mod pledges;
pub mod projects;
pub mod rounds;
pub mod sandbox;
pub mod sponsors;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::Settings;
use crate::http::auth::Authenticator;
use crate::http::state::{AppState, Limits};

/// A configured application, ready to launch.
pub struct App {
    pub state: AppState,
    pub limits: Limits,
}

impl App {
    /// Connects to the database and refuses to start on a schema that is behind the binary.
    pub async fn build(settings: &Settings) -> anyhow::Result<App> {
        let pool = db::connect(settings).await?;
        db::ensure_migrated(&pool).await?;
        if db::can_rewrite_journal(&pool).await? {
            tracing::warn!(
                "database.url logs in as a role that may update, delete or truncate the journal; \
                 serve as a member of crowdledger_app (docs/database-roles.md)"
            );
        }
        Ok(App::with_pool(settings, pool, Clock::new(settings.clock.mode)))
    }

    /// An application over an existing pool (tests hand in their fresh database).
    pub fn with_pool(settings: &Settings, pool: sqlx::PgPool, clock: Clock) -> App {
        // Which providers exist follows the clock that serves, as the sandbox's controls do.
        let providers = payments::providers::Providers::new(
            &settings.payments,
            clock.mode(),
            settings.webhooks.allow_private_targets,
        );
        App {
            state: AppState {
                batcher: pledges::http::batcher::Batcher::new(
                    pool.clone(),
                    // A networked provider's payments are called one pledge at a time.
                    providers.card_provider().ok().filter(|p| !p.networked()),
                ),
                inbound: webhooks::inbound::Batcher::new(pool.clone()),
                audit: http::audit::AuditTrail::new(pool.clone()),
                pool,
                clock,
                auth: Authenticator::new(settings.auth.bootstrap_operator_key.as_ref()),
                providers: std::sync::Arc::new(providers),
                seed_key: offers::ballot::SeedKey::configured(settings.ballot.seed_key.as_ref(), settings.clock.mode),
                read_timeout: settings.database.read_statement_timeout(),
                retention: settings.retention,
                risk_warning_version: settings.investor_protection.risk_warning_version.as_str().into(),
                cheque_notice: chrono::TimeDelta::days(i64::from(settings.cheques.expiring_notice_days)),
            },
            limits: Limits {
                request_timeout: settings.http.request_timeout(),
                body_limit_bytes: settings.http.body_limit_bytes,
                max_in_flight: settings.http.max_in_flight,
                header_read_timeout: Duration::from_secs(settings.http.header_read_timeout_seconds),
                unauthenticated_body_timeout: Duration::from_secs(settings.http.unauthenticated_body_timeout_seconds),
                rate_limit: settings.rate_limit,
            },
        }
    }
}

/// Serves the API on `listener` (and metrics on `metrics`, if given) and runs the background
/// jobs, until `shutdown` resolves; then lets requests in flight finish.
pub async fn launch(
    app: App,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let header_read_timeout = app.limits.header_read_timeout;
    if let Some(metrics) = metrics {
        tokio::spawn(http::serve::serve(
            metrics,
            http::metrics::metrics_router(),
            header_read_timeout,
            std::future::pending(),
        ));
    }
    // The sandbox posts its webhooks to this very listener.
    let local = listener.local_addr().context("reading the listener's address")?;
    let host = if local.ip().is_unspecified() {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        local.ip()
    };
    let _ = app
        .state
        .providers
        .self_url
        .set(format!("http://{}", std::net::SocketAddr::new(host, local.port())));
    let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
    let jobs = tokio::spawn(background::run(app.state.clone(), jobs_stopped));
    let audit = app.state.audit.clone();
    let router = app::router(app.state, app.limits);
    http::serve::serve(listener, router, header_read_timeout, shutdown).await;
    // The answered writes' records still queued are stored before the process ends.
    audit.flush().await;
    // Requests are done; let the jobs finish their current item, then stop.
    let _ = stop_jobs.send(true);
    let _ = jobs.await;
    Ok(())
}
