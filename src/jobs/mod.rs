//! Background work driven by the service clock: expiring unpaid pledges and closing offers whose
//! time has come, and deleting records past their retention (`retention.rs`). It runs every
//! second and at once when a manual clock is moved. Several serve processes may run it together:
//! every item is handled under its rows' locks and re-checked there, so each is acted on once.

pub mod retention;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::http::state::AppState;
use crate::offers::ballot::SeedKey;
use crate::rounds::ending::expire_unpaid;
use crate::rounds::{RoundError, closing};
use crate::webhooks::outbound;

const TICK: Duration = Duration::from_secs(1);

/// Runs until `shutdown` turns true: the clock's jobs and webhook delivery side by side, so a
/// slow receiver never holds up closing offers, and a backlog of deliveries never waits a tick
/// per batch.
pub async fn run(state: AppState, shutdown: watch::Receiver<bool>) {
    tokio::join!(
        run_clocked(&state, shutdown.clone()),
        run_delivery(&state, shutdown.clone()),
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
        if let Err(err) = tick(&state.pool, state.seed_key.as_ref(), now).await {
            tracing::warn!(error = ?err, "background jobs failed; retrying at the next tick");
        }
        if state.providers.auto_confirm()
            && let Err(err) = crate::sandbox::auto_confirm(state).await
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

/// Sleeps until the next tick or a move of a manual clock; true when it is time to stop.
async fn wait_for_tick(moved: &mut watch::Receiver<()>, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(TICK) => {}
        _ = moved.changed() => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}

/// One pass of every job at `now` (`seed_key` draws ballots).
pub(crate) async fn tick(pool: &PgPool, seed_key: Option<&SeedKey>, now: DateTime<Utc>) -> Result<(), RoundError> {
    expire_unpaid(pool, now).await?;
    closing::close_due(pool, seed_key, now, |_, _| {}).await?;
    crate::cheques::expire_due(pool, now).await?;
    Ok(())
}
