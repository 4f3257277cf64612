//! Card pledges on one offer, many per transaction. A hot offer's row is locked by every
//! pledge's reservation until its commit's WAL flush, so one pledge per transaction means one
//! flush per pledge, in single file. Here each offer has a queue in the process; its task takes
//! whatever has queued up (at most [`MAX_BATCH`]) and writes it in one transaction:
//!
//! 1. claim the idempotency keys;
//! 2. lock the offer row, accept in arrival order while the cap allows (`offer_full` after);
//! 3. insert pledges, payments and `pledge.created` events as multi-row statements, store the
//!    responses, update `shares_reserved` once, commit.
//!
//! A request is answered only after that commit, so an acknowledged pledge is durable. The row
//! lock and the `offers_hard_cap` check keep the cap exact across processes, whatever each
//! process's batcher does. Anything unusual (a key already known, a failed batch, a queue gone)
//! falls back to the one-pledge path (`rules::create` in `idempotency::once`), which is always
//! correct: a batch that failed rolled back entirely.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::http::PledgeView;
use super::rules::{self, Checked};
use super::{PledgeStatus, store};
use crate::http::error::ApiError;
use crate::idempotency::{self, IdempotencyKey, KeyClaim};
use crate::money::Money;
use crate::{events, offers, payments};

/// Pledges per transaction, at most.
pub const MAX_BATCH: usize = 256;
const QUEUE: usize = 8192;

/// One card pledge waiting for its batch.
pub struct Job {
    pub scope: String,
    pub key: IdempotencyKey,
    pub fingerprint: Vec<u8>,
    pub checked: Checked,
    pub now: DateTime<Utc>,
}

/// What became of a job: answered, or handed back for the one-pledge path.
enum Outcome {
    Answered(Result<Response, ApiError>),
    FallBack(Box<Job>),
}

type Queued = (Job, oneshot::Sender<Outcome>);

/// The queues, one per offer; each has a task that lives as long as the process.
#[derive(Clone)]
pub struct Batcher {
    pool: PgPool,
    queues: Arc<Mutex<HashMap<Uuid, mpsc::Sender<Queued>>>>,
}

impl Batcher {
    pub fn new(pool: PgPool) -> Self {
        Batcher {
            pool,
            queues: Arc::default(),
        }
    }

    /// Queues a card pledge on its offer and waits for the outcome. `Err(job)` when it must
    /// take the one-pledge path instead.
    pub async fn submit(&self, offer: Uuid, job: Job) -> Result<Result<Response, ApiError>, Box<Job>> {
        let (reply, answer) = oneshot::channel();
        let queue = {
            let mut queues = self.queues.lock().expect("batcher queues poisoned");
            queues
                .entry(offer)
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(run(self.pool.clone(), offer, rx));
                    tx
                })
                .clone()
        };
        if let Err(mpsc::error::SendError((job, _))) = queue.send((job, reply)).await {
            // The offer's task is gone: forget its queue, so that the next pledge starts another.
            let mut queues = self.queues.lock().expect("batcher queues poisoned");
            if queues.get(&offer).is_some_and(|q| q.same_channel(&queue)) {
                queues.remove(&offer);
            }
            return Err(Box::new(job));
        }
        match answer.await {
            Ok(Outcome::Answered(result)) => Ok(result),
            Ok(Outcome::FallBack(job)) => Err(job),
            // The task is gone (it never drops a job it took): the job went with it, unanswered
            // and uncommitted or committed with its response stored; the caller's retry through
            // the one-pledge path tells which.
            Err(_) => Ok(Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "batch_lost",
                "the pledge's batch was interrupted; retry with the same Idempotency-Key",
            ))),
        }
    }
}

async fn run(pool: PgPool, offer: Uuid, mut queue: mpsc::Receiver<Queued>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        write(&pool, offer, batch).await;
    }
}

/// Writes one batch and answers each of its jobs. (A client that has gone away is not
/// answered; its pledge stands or not all the same.)
async fn write(pool: &PgPool, offer: Uuid, queued: Vec<Queued>) {
    let (jobs, replies): (Vec<Job>, Vec<_>) = queued.into_iter().unzip();
    metrics::histogram!("pledge_batch_size").record(jobs.len() as f64);
    match try_write(pool, offer, &jobs).await {
        Ok(results) => {
            for ((job, reply), result) in jobs.into_iter().zip(replies).zip(results) {
                let _ = reply.send(match result {
                    Some(result) => Outcome::Answered(result),
                    None => Outcome::FallBack(Box::new(job)),
                });
            }
        }
        Err(err) => {
            // Nothing of the batch was committed: each pledge goes its own way.
            tracing::warn!(error = %err.detail(), offer = %offer, size = jobs.len(), "pledge batch failed; one by one");
            metrics::counter!("pledge_batches_failed_total").increment(1);
            for (job, reply) in jobs.into_iter().zip(replies) {
                let _ = reply.send(Outcome::FallBack(Box::new(job)));
            }
        }
    }
}

/// One transaction for the batch. `None` for a job to send down the one-pledge path.
async fn try_write(
    pool: &PgPool,
    offer_id: Uuid,
    jobs: &[Job],
) -> Result<Vec<Option<Result<Response, ApiError>>>, ApiError> {
    let mut tx = pool.begin().await?;
    let claims: Vec<KeyClaim> = jobs
        .iter()
        .map(|j| KeyClaim {
            scope: &j.scope,
            key: &j.key,
            fingerprint: &j.fingerprint,
        })
        .collect();
    let now = jobs.iter().map(|j| j.now).max().expect("a batch is never empty");
    let claimed = idempotency::claim_many(&mut tx, &claims, now).await?;
    let offer = offers::store::lock(&mut tx, offer_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no offer {offer_id}")))?;

    let mut room = offer.reserve_limit - offer.shares_reserved;
    let mut results: Vec<Option<Result<Response, ApiError>>> = Vec::with_capacity(jobs.len());
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let shares = job.checked.shares();
        let result = if !claimed[i] {
            None
        } else if !offer.accepts_pledges(job.now) {
            refused.push(&claims[i]);
            Some(Err(rules::not_open(&offer, job.now)))
        } else if shares > room {
            refused.push(&claims[i]);
            Some(Err(rules::offer_full(shares)))
        } else {
            room -= shares;
            accepted.push(i);
            Some(Ok(Response::default()))
        };
        results.push(result);
    }
    if !refused.is_empty() {
        idempotency::release_many(&mut tx, &refused).await?;
    }
    if !accepted.is_empty() {
        let new: Vec<_> = accepted
            .iter()
            .map(|&i| (jobs[i].checked.new_pledge(), jobs[i].now))
            .collect();
        let pledges = store::insert_many(&mut tx, &new).await?;
        let requests = pledges
            .iter()
            .zip(&accepted)
            .map(|(p, &i)| Ok((p.id, Money::new(p.card_amount, offer.currency)?, jobs[i].now)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let paid = payments::create_payments(&mut tx, &requests).await?;
        let created: Vec<_> = pledges
            .iter()
            .zip(&accepted)
            .map(|(p, &i)| {
                (
                    "pledge.created",
                    payments::pledge_event(p, PledgeStatus::PendingPayment),
                    jobs[i].now,
                )
            })
            .collect();
        events::emit_many(&mut tx, &created).await?;
        let mut stored = Vec::with_capacity(accepted.len());
        for ((pledge, payment), &i) in pledges.into_iter().zip(paid).zip(&accepted) {
            let body = serde_json::to_value(PledgeView::new(pledge, Some(payment))).map_err(ApiError::internal)?;
            results[i] = Some(Ok((StatusCode::CREATED, Json(&body)).into_response()));
            stored.push((&claims[i], StatusCode::CREATED, body));
        }
        idempotency::store_many(&mut tx, stored).await?;
        let total: i64 = accepted.iter().map(|&i| jobs[i].checked.shares()).sum();
        if !offers::store::reserve(&mut tx, offer_id, total).await? {
            return Err(ApiError::internal(anyhow::anyhow!(
                "offer {offer_id} closed under its row lock"
            )));
        }
    }
    tx.commit().await?;
    Ok(results)
}
