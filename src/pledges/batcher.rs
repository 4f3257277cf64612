//! Card pledges on one offer, many per transaction. A hot offer's row is locked by every
//! pledge's reservation until its commit's WAL flush, so one pledge per transaction means one
//! flush per pledge, in single file. Here each offer has a queue in the process; its task takes
//! whatever has queued up (at most [`MAX_BATCH`]) and judges and writes it in one transaction:
//!
//! 1. lock the offer row, read the batch's investors in one statement, and find the
//!    idempotency keys already known (those requests take the one-pledge path, which replays);
//! 2. judge each pledge by the same rules as the one-pledge path (`rules::judge_card`), in
//!    arrival order, and accept while the cap allows (`offer_full` after);
//! 3. insert pledges, payments, `pledge.created` events and the keys with their responses as
//!    multi-row statements, update `shares_reserved` once, commit.
//!
//! A request is answered only after that commit, so an acknowledged pledge is durable; a refused
//! one wrote nothing, not even its key. The row lock and the `offers_hard_cap` check keep the
//! cap exact across processes, whatever each process's batcher does. Anything unusual (a key
//! already known, a key taken meanwhile, a failed batch, a queue gone) falls back to the
//! one-pledge path (`rules::create` in `idempotency::once`), which is always correct: a batch
//! that failed rolled back entirely.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::http::PledgeView;
use super::rules::{self, PledgeRequest};
use super::{PledgeStatus, store};
use crate::batch::{self, Decided, Lanes};
use crate::http::error::ApiError;
use crate::idempotency::{self, IdempotencyKey, KeyClaim};
use crate::money::Money;
use crate::{events, investors, offers, payments};

/// Pledges per transaction, at most.
pub const MAX_BATCH: usize = 256;
/// An offer's task ends after this long without a pledge; the next pledge starts another.
const IDLE: Duration = Duration::from_secs(60);

/// One card pledge waiting for its batch.
pub struct Job {
    pub scope: String,
    pub key: IdempotencyKey,
    pub fingerprint: Vec<u8>,
    pub request: PledgeRequest,
    pub now: DateTime<Utc>,
}

/// The lanes, one per offer that has pledges; each has a task that ends when idle.
#[derive(Clone)]
pub struct Batcher {
    pool: PgPool,
    lanes: Lanes<Uuid, Job, Response>,
}

impl Batcher {
    pub fn new(pool: PgPool) -> Self {
        Batcher {
            pool,
            lanes: Lanes::default(),
        }
    }

    /// Queues a card pledge on its offer and waits for the outcome. `Err(job)` when it must
    /// take the one-pledge path instead.
    pub async fn submit(&self, offer: Uuid, job: Job) -> Result<Result<Response, ApiError>, Box<Job>> {
        // No lane is ever made for a made-up offer id.
        if !self.lanes.running(&offer) {
            let exists = async {
                let mut conn = self.pool.acquire().await?;
                Ok::<_, ApiError>(offers::store::exists(&mut conn, offer).await?)
            };
            match exists.await {
                Ok(true) => {}
                Ok(false) => return Ok(Err(ApiError::not_found(format!("no offer {offer}")))),
                Err(err) => return Ok(Err(err)),
            }
        }
        let pool = self.pool.clone();
        self.lanes
            .submit(offer, job, |rx| {
                tokio::spawn(batch::run(
                    "pledges",
                    rx,
                    MAX_BATCH,
                    IDLE,
                    async move |jobs: &[Job]| try_write(&pool, offer, jobs).await,
                ));
            })
            .await
    }
}

/// One transaction for the batch. `None` for a job to send down the one-pledge path.
async fn try_write(pool: &PgPool, offer_id: Uuid, jobs: &[Job]) -> Decided<Response> {
    let mut tx = pool.begin().await?;
    let Some(offer) = offers::store::lock(&mut tx, offer_id).await? else {
        return Ok(jobs
            .iter()
            .map(|_| Some(Err(ApiError::not_found(format!("no offer {offer_id}")))))
            .collect());
    };
    let investor_ids: Vec<Uuid> = jobs.iter().map(|j| j.request.investor_id).collect();
    let investors = investors::store::get_many(&mut tx, &investor_ids).await?;
    let claims: Vec<KeyClaim> = jobs
        .iter()
        .map(|j| KeyClaim {
            scope: &j.scope,
            key: &j.key,
            fingerprint: &j.fingerprint,
        })
        .collect();
    let known = idempotency::known_many(&mut tx, &claims).await?;

    let mut room = offer.reserve_limit - offer.shares_reserved;
    let mut results: Vec<Option<Result<Response, ApiError>>> = Vec::with_capacity(jobs.len());
    let mut accepted = Vec::new();
    for (job, known) in jobs.iter().zip(known) {
        if known {
            results.push(None);
            continue;
        }
        let judged = rules::judge_card(&offer, investors.get(&job.request.investor_id), &job.request, job.now)
            .and_then(|pledge| {
                if pledge.shares > room {
                    Err(rules::offer_full(pledge.shares))
                } else {
                    room -= pledge.shares;
                    Ok(pledge)
                }
            });
        match judged {
            Ok(pledge) => {
                accepted.push((results.len(), pledge));
                results.push(Some(Ok(Response::default())));
            }
            Err(err) => results.push(Some(Err(err))),
        }
    }
    if accepted.is_empty() {
        tx.rollback().await?;
        return Ok(results);
    }

    let new: Vec<_> = accepted.iter().map(|(i, p)| (p, jobs[*i].now)).collect();
    let pledges = store::insert_many(&mut tx, &new).await?;
    let requests = pledges
        .iter()
        .zip(&accepted)
        .map(|(p, (i, _))| Ok((p.id, Money::new(p.card_amount, offer.currency)?, jobs[*i].now)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let paid = payments::create_payments(&mut tx, &requests).await?;
    let created: Vec<_> = pledges
        .iter()
        .zip(&accepted)
        .map(|(p, (i, _))| {
            (
                "pledge.created",
                payments::PledgeEvent::new(p, PledgeStatus::PendingPayment),
                jobs[*i].now,
            )
        })
        .collect();
    events::emit_many(&mut tx, &created).await?;
    let total: i64 = pledges.iter().map(|p| p.shares).sum();
    let mut stored = Vec::with_capacity(accepted.len());
    for ((pledge, payment), (i, _)) in pledges.into_iter().zip(paid).zip(&accepted) {
        let body = serde_json::to_value(PledgeView::new(pledge, Some(payment))).map_err(ApiError::internal)?;
        results[*i] = Some(Ok((StatusCode::CREATED, Json(&body)).into_response()));
        stored.push((&claims[*i], StatusCode::CREATED, body));
    }
    let now = jobs.iter().map(|j| j.now).max().expect("a batch is never empty");
    if !idempotency::insert_many(&mut tx, stored, now).await? {
        // A request with one of these keys committed first, through another process or path.
        return Err(ApiError::internal(anyhow::anyhow!(
            "an idempotency key was taken during the batch"
        )));
    }
    if !offers::store::reserve(&mut tx, offer_id, total).await? {
        return Err(ApiError::internal(anyhow::anyhow!(
            "offer {offer_id} closed under its row lock"
        )));
    }
    tx.commit().await?;
    Ok(results)
}
