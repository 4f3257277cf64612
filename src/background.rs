//! The loops that run the clock's jobs (`crate::jobs`), webhook delivery and retention beside
//! the router, on the app's own state, until the service shuts down. At the top of the house with
//! `lib.rs`: the sandbox's auto-confirmation posts webhooks to the service itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::http::state::AppState;
use crate::jobs::{retention, tick};
use crate::webhooks::outbound;

const TICK: Duration = Duration::from_secs(1);

/// Runs until `shutdown` turns true: the clock's jobs and webhook delivery side by side, so a
/// slow receiver never holds up closing offers, and a backlog of deliveries never waits a tick
/// per batch.
pub async fn run(state: AppState, shutdown: watch::Receiver<bool>) {
    tokio::join!(
        run_clocked(&state, shutdown.clone()),
        run_delivery(&state, shutdown.clone()),
        run_provider_calls(&state, shutdown.clone()),
        run_retention(&state, shutdown)
    );
}

/// Purges what is past its retention once per [`retention::EVERY`] of the service clock, on
/// its own, so a long first purge never holds up closing offers.
async fn run_retention(state: &AppState, mut shutdown: watch::Receiver<bool>) {
    let mut moved = state.clock.subscribe();
    let mut last: Option<DateTime<Utc>> = None;
    loop {
        let now = state.clock.now();
        if last.is_none_or(|last| now < last || now - last >= retention::EVERY) {
            let stopping = || *shutdown.borrow();
            match retention::purge(&state.pool, now, &state.retention, stopping).await {
                Ok(purged) => {
                    last = Some(now);
                    for (table, deleted) in purged.into_iter().filter(|(_, n)| *n > 0) {
                        tracing::info!(table, deleted, "deleted records past their retention");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "retention purge failed; retrying at the next tick"),
            }
        }
        if wait_for_tick(&mut moved, &mut shutdown).await {
            return;
        }
    }
}

async fn run_clocked(state: &AppState, mut shutdown: watch::Receiver<bool>) {
    let mut moved = state.clock.subscribe();
    loop {
        let now = state.clock.now();
        if let Err(err) = tick(&state.pool, state.seed_key.as_ref(), state.cheque_notice, now).await {
            tracing::warn!(error = ?err, "background jobs failed; retrying at the next tick");
        }
        if state.providers.auto_confirm()
            && let Err(err) = crate::sandbox::http::auto_confirm(state).await
        {
            tracing::warn!(error = ?err, "sandbox auto-confirmation failed; retrying at the next tick");
        }
        if wait_for_tick(&mut moved, &mut shutdown).await {
            return;
        }
    }
}

/// Fans out new events, then sends every due delivery, each tick.
async fn run_delivery(state: &AppState, mut shutdown: watch::Receiver<bool>) {
    let mut moved = state.clock.subscribe();
    let providers = &state.providers;
    loop {
        let delivered = async {
            outbound::fan_out(&state.pool, state.clock.now()).await?;
            let stopping = || *shutdown.borrow();
            outbound::deliver_all_due(&state.pool, &providers.webhooks, || state.clock.now(), stopping).await
        };
        if let Err(err) = delivered.await {
            tracing::warn!(error = %err, "webhook delivery failed; retrying at the next tick");
        }
        if wait_for_tick(&mut moved, &mut shutdown).await {
            return;
        }
    }
}

/// Makes the due calls to payment providers each tick, on their own, so a slow provider holds up
/// neither the clock's jobs nor webhook delivery.
async fn run_provider_calls(state: &AppState, mut shutdown: watch::Receiver<bool>) {
    let mut moved = state.clock.subscribe();
    loop {
        let stopping = || *shutdown.borrow();
        if let Err(err) =
            crate::rounds::calls::run_due(&state.pool, &state.providers, || state.clock.now(), stopping).await
        {
            tracing::warn!(error = ?err, "provider calls failed; retrying at the next tick");
        }
        if wait_for_tick(&mut moved, &mut shutdown).await {
            return;
        }
    }
}

/// Sleeps until the next tick or a move of a manual clock; true when it is time to stop.
async fn wait_for_tick(moved: &mut watch::Receiver<()>, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(TICK) => {}
        _ = moved.changed() => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}
