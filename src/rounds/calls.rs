//! Makes the calls queued to networked providers (`payments::calls`) and applies what came of
//! each, in the transaction that records the attempt: the provider's id written on our payment,
//! refund or payout; a payment the provider refused for good fails its pledge, whose shares go
//! back to the offer. Here, above payments, because failing a pledge is a round's move.

use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::RoundError;
use crate::payments::calls::{self, CALL_BATCH, Call, CallError, Context, Created, Leased, Settled};
use crate::payments::providers::Providers;

/// Makes every due call to the providers configured here (a call to another waits for a
/// process that has it), batch after batch, until none is
/// due or `stop` says so; returns how many were attempted.
pub async fn run_due(
    pool: &PgPool,
    providers: &Providers,
    now: impl Fn() -> DateTime<Utc>,
    stop: impl Fn() -> bool,
) -> Result<usize, RoundError> {
    let mut attempted = 0;
    while !stop() {
        let leased = calls::lease(
            pool,
            &providers.networked(),
            None,
            CALL_BATCH,
            providers.longest_call(),
            now(),
        )
        .await?;
        let count = leased.len();
        let made = leased.into_iter().map(|call| attempt(pool, providers, call, &now));
        for result in futures::future::join_all(made).await {
            let _attempted = result?;
        }
        attempted += count;
        if count < CALL_BATCH {
            break;
        }
    }
    Ok(attempted)
}

/// Makes the call that creates `object_id` now, when it is due and nobody else is making it:
/// the first try of a pledge's payment, whose answer the investor's front-end needs. What the
/// call came to, applied; None when there was no call to make.
pub async fn attempt_now(
    pool: &PgPool,
    providers: &Providers,
    object_id: Uuid,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<Option<Result<Created, CallError>>, RoundError> {
    let leased = calls::lease(
        pool,
        &providers.networked(),
        Some(object_id),
        1,
        providers.longest_call(),
        now(),
    )
    .await?;
    match leased.into_iter().next() {
        Some(call) => attempt(pool, providers, call, &now).await.map(Some),
        None => Ok(None),
    }
}

/// One attempt of a leased call, with no transaction open while the provider is called; then
/// the attempt recorded and its result applied, together.
async fn attempt(
    pool: &PgPool,
    providers: &Providers,
    call: Leased,
    now: &impl Fn() -> DateTime<Utc>,
) -> Result<Result<Created, CallError>, RoundError> {
    let remote = providers
        .remote(&call.provider)
        .expect("only calls to providers configured here are leased");
    let mut conn = pool.acquire().await?;
    let context = Context {
        parties: calls::parties(&mut conn, &call.provider, &call.request.party_ids()).await?,
        key_generation: call.key_generation,
    };
    drop(conn);
    let started = now();
    let clock = Instant::now();
    let result = remote.call(&call.request, &context).await;
    let took = clock.elapsed();
    let mut tx = pool.begin().await?;
    let settled = calls::record(&mut tx, &call, &result, started, took, now()).await?;
    match (&result, &settled) {
        (Ok(created), _) => {
            let named = call.request.named(created.provider_id.clone());
            calls::write_name(&mut tx, &call.provider, &named).await?;
            if let (Call::CreatePayment { payment_id, .. }, Some(instructions)) = (&call.request, &created.instructions)
            {
                crate::payments::card::set_instructions(&mut tx, *payment_id, instructions).await?;
            }
        }
        (Err(err), Settled::Failed) => {
            tracing::error!(call = %call.id, kind = call.request.kind(), error = %err, "the provider refused a call for good");
            if let Call::CreatePayment { pledge_id, .. } = call.request {
                super::funding::fail_payment_of_pledge(&mut tx, pledge_id, now()).await?;
            }
        }
        (Err(err), Settled::Stuck) => {
            tracing::error!(call = %call.id, kind = call.request.kind(), error = %err,
                "a call is stuck: unanswered for too long to repeat safely; reconcile it with the provider");
        }
        (Err(err), _) => {
            tracing::warn!(call = %call.id, kind = call.request.kind(), error = %err, "a provider call will be repeated");
        }
    }
    tx.commit().await?;
    Ok(result)
}
