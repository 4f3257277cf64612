//! Card pledges on one offer, many per transaction. A hot offer's row is locked by every
//! pledge's reservation until its commit's WAL flush, so one pledge per transaction means one
//! flush per pledge, in single file. Here each offer has a queue in the process; its task takes
//! whatever has queued up (at most [`MAX_BATCH`]) and writes it in one transaction, with two
//! batches written side by side ([`DEPTH`]) so that one's commit overlaps the other's work:
//!
//! 1. read the offer, the batch's investors and the idempotency keys already known (those
//!    requests take the one-pledge path, which replays), without locking anything;
//! 2. judge each pledge by the same rules as the one-pledge path (`rules::judge_card`), in
//!    arrival order, and accept while the cap allows. Where a pledge's investor's total on the
//!    offer could refuse it (a `max_ticket`, a risk warning not acknowledged), the transaction
//!    begins before: it takes those investors' ticket locks and reads their totals
//!    (`store::lock_ticket_totals`), and an investor's earlier pledges in the batch count toward
//!    the later ones;
//! 3. insert pledges, payments, `pledge.created` events and the keys with their responses as
//!    multi-row statements;
//! 4. reserve the accepted shares with one update of the offer row, which locks it, and commit.
//!    The update holds only if the offer is still open and has room for them all.
//!
//! The lane takes its next batch once this one holds the offer's row (`batch::Turn`), so batches
//! reserve in arrival order and one is written while the one before commits. When the
//! unlocked read left any doubt (a pledge refused `offer_full` on it, or the update found the
//! offer closed or full meanwhile) the batch is judged and written again with the row locked
//! first, as it always was before: that decision is final.
//!
//! A request is answered only after that commit, so an acknowledged pledge is durable; a refused
//! one wrote nothing, not even its key. The row lock and the `offers_hard_cap` check keep the
//! cap exact across processes, whatever each process's batcher does. Anything unusual (a key
//! already known, a key taken meanwhile (by the lane's other batch, say), a failed batch, a queue
//! gone) falls back to the one-pledge path (`rules::create` in `idempotency::once`), which is
//! always correct: a batch that failed rolled back entirely.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{Acquire, PgConnection, PgPool};
use uuid::Uuid;

use crate::audit::Author;
use crate::batch::{self, Decided, Lanes, Turn};
use crate::http::error::ApiError;
use crate::http::idempotency::{self, IdempotencyKey, KeyClaim};
use crate::investors::Investor;
use crate::money::Money;
use crate::offers::Offer;
use crate::outbox::{self, EventType};
use crate::payments::provider::PaymentProvider;
use crate::pledges::rules::{self, PledgeRequest};
use crate::pledges::store::NewPledge;
use crate::pledges::view::PledgeView;
use crate::pledges::{PledgeStatus, store};
use crate::{investors, offers, payments};

/// Pledges per transaction, at most.
pub(crate) const MAX_BATCH: usize = 256;
/// Batches of one offer written at once.
const DEPTH: usize = 2;
/// An offer's task ends after this long without a pledge; the next pledge starts another.
const IDLE: Duration = Duration::from_secs(60);

/// One card pledge waiting for its batch.
pub(crate) struct Job {
    pub scope: String,
    pub author: Author,
    pub key: IdempotencyKey,
    pub fingerprint: Vec<u8>,
    pub request: PledgeRequest,
    pub now: DateTime<Utc>,
}

/// The lanes, one per offer that has pledges; each has a task that ends when idle.
#[derive(Clone)]
pub struct Batcher {
    pool: PgPool,
    lanes: Lanes<Uuid, Job, Response, ApiError>,
    /// The provider card payments go to; without one the one-pledge path refuses them.
    card: Option<&'static dyn PaymentProvider>,
}

impl Batcher {
    pub fn new(pool: PgPool, card: Option<&'static dyn PaymentProvider>) -> Self {
        Batcher {
            pool,
            lanes: Lanes::default(),
            card,
        }
    }

    /// Queues a card pledge on its offer and waits for the outcome. `Err(job)` when it must
    /// take the one-pledge path instead.
    pub(crate) async fn submit(&self, offer: Uuid, job: Job) -> Result<Result<Response, ApiError>, Box<Job>> {
        let Some(card) = self.card else {
            return Err(Box::new(job));
        };
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
                    DEPTH,
                    IDLE,
                    move |jobs: Vec<Job>, turn| {
                        let pool = pool.clone();
                        async move {
                            let decided = write(&pool, card, offer, &jobs, turn).await;
                            (jobs, decided)
                        }
                    },
                ));
            })
            .await
    }
}

/// One batch: judged on an unlocked read and reserved last, or, when that read left doubt,
/// judged and written under the offer's row lock. The lane starts its next batch once this one
/// holds the row ([`Turn::taken`]), so batches reserve in arrival order. A batch with pledges
/// that their investor's total on the offer could refuse takes those investors' ticket locks
/// and reads their totals first, in its transaction (`store::lock_ticket_totals`).
async fn write(
    pool: &PgPool,
    card: &dyn PaymentProvider,
    offer_id: Uuid,
    jobs: &[Job],
    mut turn: Turn,
) -> Decided<Response, ApiError> {
    let claims = claims(jobs);
    let mut conn = pool.acquire().await?;
    let Some(offer) = offers::store::get(&mut conn, offer_id).await? else {
        return Ok(no_offer(offer_id, jobs));
    };
    let read = Read::new(&mut conn, jobs, &claims).await?;
    let counted = read.ticket_investors(&offer, jobs);
    let judged;
    let mut tx = if counted.is_empty() {
        // The common case (no max_ticket, no risk warning pending): nothing to lock before.
        judged = judge(&offer, jobs, &read, Default::default());
        if judged.full {
            // The snapshot may be behind a release of shares: only the locked row says "full".
            return write_locked(&mut conn, card, &offer, jobs, &claims, turn).await;
        }
        if judged.accepted.is_empty() {
            return Ok(judged.results);
        }
        conn.begin().await?
    } else {
        let mut tx = conn.begin().await?;
        let totals = store::lock_ticket_totals(&mut tx, offer_id, &counted).await?;
        judged = judge(&offer, jobs, &read, totals);
        if judged.full {
            tx.rollback().await?;
            return write_locked(&mut conn, card, &offer, jobs, &claims, turn).await;
        }
        if judged.accepted.is_empty() {
            tx.rollback().await?;
            return Ok(judged.results);
        }
        tx
    };
    let kiis = judged.kiis();
    let (results, total) = insert(&mut tx, card, &offer, jobs, &claims, judged).await?;
    let kiis: Vec<&str> = kiis.iter().map(String::as_str).collect();
    if !offers::store::reserve_if_room(&mut tx, offer_id, total, &kiis).await? {
        // Closed, or filled by others, since it was read: judged again with the row locked.
        tx.rollback().await?;
        return write_locked(&mut conn, card, &offer, jobs, &claims, turn).await;
    }
    turn.taken();
    tx.commit().await?;
    Ok(results)
}

/// The batch judged and written with the offer's row locked first (after the ticket locks, if
/// any: the order every path takes them in): the decision is final. `unlocked` is the offer as
/// read before, for its terms.
async fn write_locked(
    conn: &mut PgConnection,
    card: &dyn PaymentProvider,
    unlocked: &Offer,
    jobs: &[Job],
    claims: &[KeyClaim<'_>],
    mut turn: Turn,
) -> Decided<Response, ApiError> {
    let mut tx = conn.begin().await?;
    let inputs = Read::new(&mut tx, jobs, claims).await?;
    let counted = inputs.ticket_investors(unlocked, jobs);
    let totals = if counted.is_empty() {
        Default::default()
    } else {
        store::lock_ticket_totals(&mut tx, unlocked.id, &counted).await?
    };
    let Some(offer) = offers::store::lock(&mut tx, unlocked.id).await? else {
        return Ok(no_offer(unlocked.id, jobs));
    };
    turn.taken();
    let judged = judge(&offer, jobs, &inputs, totals);
    if judged.accepted.is_empty() {
        tx.rollback().await?;
        return Ok(judged.results);
    }
    // Judged under the row lock: the KIIS they name are the current ones.
    let (results, total) = insert(&mut tx, card, &offer, jobs, claims, judged).await?;
    if offers::store::reserve(&mut tx, offer.id, total, &[]).await?.is_none() {
        return Err(ApiError::internal(anyhow::anyhow!(
            "offer {} closed or filled under its row lock",
            offer.id
        )));
    }
    tx.commit().await?;
    Ok(results)
}

fn claims(jobs: &[Job]) -> Vec<KeyClaim<'_>> {
    jobs.iter()
        .map(|j| KeyClaim {
            scope: &j.scope,
            key: &j.key,
            fingerprint: &j.fingerprint,
        })
        .collect()
}

fn no_offer(offer_id: Uuid, jobs: &[Job]) -> Vec<Option<Result<Response, ApiError>>> {
    jobs.iter()
        .map(|_| Some(Err(ApiError::not_found(format!("no offer {offer_id}")))))
        .collect()
}

/// What a batch is judged on besides its offer: its investors, and which keys are known already.
struct Read {
    investors: HashMap<Uuid, Investor>,
    known: Vec<bool>,
}

impl Read {
    async fn new(conn: &mut PgConnection, jobs: &[Job], claims: &[KeyClaim<'_>]) -> Result<Read, ApiError> {
        let investor_ids: Vec<Uuid> = jobs.iter().map(|j| j.request.investor_id).collect();
        Ok(Read {
            investors: investors::store::get_many(conn, &investor_ids).await?,
            known: idempotency::known_many(conn, claims).await?,
        })
    }

    /// The investors some of whose pledges here their total on the offer could refuse.
    fn ticket_investors(&self, offer: &Offer, jobs: &[Job]) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = jobs
            .iter()
            .zip(&self.known)
            .filter(|(_, known)| !**known)
            .filter_map(|(job, _)| {
                let investor = self.investors.get(&job.request.investor_id)?;
                rules::TicketLimits::of(offer, investor, job.request.risk_acknowledged)
                    .apply()
                    .then_some(investor.id)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// What the rules say of a batch, against one read of its offer.
struct Judged {
    /// Per job: its answer so far (a refusal, or a placeholder for an accepted pledge), or
    /// `None` to send it down the one-pledge path.
    results: Vec<Option<Result<Response, ApiError>>>,
    /// The accepted pledges, with their job's position.
    accepted: Vec<(usize, NewPledge)>,
    /// Whether a pledge was refused for want of room.
    full: bool,
}

/// Judges every job in arrival order, accepting while the offer as read has room. A job whose
/// key is known already is not judged. `totals` are the live totals on the offer of the
/// investors whose ticket locks the batch holds; the pledges accepted here add to them, so an
/// investor's earlier pledges in the batch count toward the later ones.
fn judge(offer: &Offer, jobs: &[Job], read: &Read, mut totals: HashMap<Uuid, Decimal>) -> Judged {
    let mut room = offer.reserve_limit - offer.shares_reserved;
    let mut judged = Judged {
        results: Vec::with_capacity(jobs.len()),
        accepted: Vec::new(),
        full: false,
    };
    for (job, known) in jobs.iter().zip(&read.known) {
        if *known {
            judged.results.push(None);
            continue;
        }
        let investor = read.investors.get(&job.request.investor_id);
        let ruled = rules::judge_card(offer, investor, &job.request, job.now).and_then(|(pledge, limits)| {
            if limits.apply() {
                let before = totals.get(&pledge.investor_id).copied().unwrap_or_default();
                limits.check(before, pledge.amount)?;
            }
            Ok(pledge)
        });
        match ruled {
            Ok(pledge) if pledge.shares > room => {
                judged.full = true;
                judged.results.push(Some(Err(rules::offer_full(pledge.shares).into())));
            }
            Ok(pledge) => {
                room -= pledge.shares;
                if pledge.in_ticket_totals {
                    *totals.entry(pledge.investor_id).or_default() += pledge.amount.amount();
                }
                judged.accepted.push((judged.results.len(), pledge));
                judged.results.push(Some(Ok(Response::default())));
            }
            Err(err) => judged.results.push(Some(Err(err.into()))),
        }
    }
    judged
}

impl Judged {
    /// The KIIS versions the accepted pledges name, each once: the reservation holds only if the
    /// offer's are still these.
    fn kiis(&self) -> Vec<String> {
        let mut kiis: Vec<String> = self
            .accepted
            .iter()
            .filter_map(|(_, p)| p.consent.kiis_sha256.clone())
            .collect();
        kiis.sort_unstable();
        kiis.dedup();
        kiis
    }
}

/// Writes the accepted pledges, their payments, events and keys with their responses; returns
/// the answers and the shares to reserve.
async fn insert(
    conn: &mut PgConnection,
    card: &dyn PaymentProvider,
    offer: &Offer,
    jobs: &[Job],
    claims: &[KeyClaim<'_>],
    judged: Judged,
) -> Result<(Vec<Option<Result<Response, ApiError>>>, i64), ApiError> {
    let Judged {
        mut results, accepted, ..
    } = judged;
    let new: Vec<_> = accepted
        .iter()
        .map(|(i, p)| (p, jobs[*i].now, jobs[*i].author))
        .collect();
    let pledges = store::insert_many(conn, &new).await?;
    let requests = pledges
        .iter()
        .zip(&accepted)
        .map(|(p, (i, _))| Ok((p.id, Money::new(p.card_amount, offer.currency)?, jobs[*i].now)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let paid = payments::card::create_payments(conn, card, &requests).await?;
    let created: Vec<_> = pledges
        .iter()
        .zip(&accepted)
        .map(|(p, (i, _))| {
            (
                EventType::PledgeCreated,
                crate::pledges::PledgeEvent::new(p, PledgeStatus::PendingPayment),
                jobs[*i].now,
            )
        })
        .collect();
    outbox::emit_many(conn, &created).await?;
    let total: i64 = pledges.iter().map(|p| p.shares).sum();
    let mut stored = Vec::with_capacity(accepted.len());
    for ((pledge, payment), (i, _)) in pledges.into_iter().zip(paid).zip(&accepted) {
        let body = serde_json::to_string(&PledgeView::new(pledge, Some(payment))).map_err(ApiError::internal)?;
        results[*i] = Some(Ok(idempotency::json_response(StatusCode::CREATED, body.clone())));
        stored.push((&claims[*i], StatusCode::CREATED, body));
    }
    let now = jobs.iter().map(|j| j.now).max().expect("a batch is never empty");
    if !idempotency::insert_many(conn, stored, now).await? {
        // A request with one of these keys committed first, through another process or path.
        return Err(ApiError::internal(anyhow::anyhow!(
            "an idempotency key was taken during the batch"
        )));
    }
    Ok((results, total))
}
