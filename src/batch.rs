//! Many requests per transaction: a lane is a queue in the process and a task that takes
//! whatever has queued up (up to a maximum) and writes it in one transaction, so a flood pays
//! one commit, one WAL flush and one hold of each hot row per batch instead of per request.
//! Each request is answered after its batch commits, or handed back to take its own
//! transaction ("falls back") when the batch cannot decide it or failed and rolled back.
//! Used by the pledge batcher (pledges/batcher.rs) and inbound provider events
//! (payments/inbound.rs).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use crate::http::error::ApiError;

/// What became of a job: answered, or handed back for its own transaction.
pub enum Outcome<J, A> {
    Answered(Result<A, ApiError>),
    FallBack(Box<J>),
}

/// A job and where its outcome goes.
pub type Queued<J, A> = (J, oneshot::Sender<Outcome<J, A>>);

/// A lane's sending end.
pub type Sender<J, A> = mpsc::Sender<Queued<J, A>>;

/// What one batch decided: per job, its answer, or `None` to hand it back.
pub type Decided<A> = Result<Vec<Option<Result<A, ApiError>>>, ApiError>;

/// Queued jobs at most, per lane; senders wait beyond that.
const QUEUE: usize = 8192;

/// Lanes by key (one per offer, say), each started on first use by `start`, which spawns its
/// task, and forgotten once that task has ended, so the next job starts another.
pub struct Lanes<K, J, A> {
    lanes: Arc<Mutex<HashMap<K, Sender<J, A>>>>,
}

impl<K, J, A> Clone for Lanes<K, J, A> {
    fn clone(&self) -> Self {
        Lanes {
            lanes: self.lanes.clone(),
        }
    }
}

impl<K, J, A> Default for Lanes<K, J, A> {
    fn default() -> Self {
        Lanes { lanes: Arc::default() }
    }
}

impl<K: Hash + Eq + Clone, J, A> Lanes<K, J, A> {
    /// Whether the lane of `key` is running.
    pub fn running(&self, key: &K) -> bool {
        self.lanes.lock().expect("lanes poisoned").contains_key(key)
    }

    /// [`submit`] to the lane of `key`.
    pub async fn submit(
        &self,
        key: K,
        job: J,
        start: impl FnOnce(mpsc::Receiver<Queued<J, A>>),
    ) -> Result<Result<A, ApiError>, Box<J>> {
        let lane = {
            let mut lanes = self.lanes.lock().expect("lanes poisoned");
            lanes
                .entry(key.clone())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    start(rx);
                    tx
                })
                .clone()
        };
        let outcome = submit(&lane, job).await;
        if outcome.is_err() && lane.is_closed() {
            let mut lanes = self.lanes.lock().expect("lanes poisoned");
            if lanes.get(&key).is_some_and(|l| l.same_channel(&lane)) {
                lanes.remove(&key);
            }
        }
        outcome
    }
}

/// Queues a job and waits for its outcome. `Err(job)` when it must take its own transaction:
/// handed back by the batch, or the lane's task is gone.
async fn submit<J, A>(queue: &Sender<J, A>, job: J) -> Result<Result<A, ApiError>, Box<J>> {
    let (reply, answer) = oneshot::channel();
    if let Err(mpsc::error::SendError((job, _))) = queue.send((job, reply)).await {
        return Err(Box::new(job));
    }
    match answer.await {
        Ok(Outcome::Answered(result)) => Ok(result),
        Ok(Outcome::FallBack(job)) => Err(job),
        // The task is gone (it never drops a job it took): the job went with it, unanswered
        // and either uncommitted or committed with its outcome stored; a retry tells which.
        Err(_) => Ok(Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "batch_lost",
            "the request's batch was interrupted; retry it (with the same Idempotency-Key, if any)",
        ))),
    }
}

/// Runs a lane until it has been idle for `idle`: each batch of at most
/// `max` jobs goes to `write`. If `write` fails, nothing of the batch was committed and every
/// job falls back. `name` labels the `batch_size` and `batches_failed_total` metrics.
pub async fn run<J, A>(
    name: &'static str,
    mut queue: mpsc::Receiver<Queued<J, A>>,
    max: usize,
    idle: Duration,
    mut write: impl AsyncFnMut(&[J]) -> Decided<A>,
) {
    let mut taken = Vec::with_capacity(max);
    loop {
        let received = tokio::time::timeout(idle, queue.recv_many(&mut taken, max))
            .await
            .unwrap_or(0);
        if received == 0 {
            break;
        }
        let (jobs, replies): (Vec<J>, Vec<_>) = std::mem::take(&mut taken).into_iter().unzip();
        metrics::histogram!("batch_size", "lane" => name).record(jobs.len() as f64);
        match write(&jobs).await {
            Ok(decided) => {
                for ((job, reply), decision) in jobs.into_iter().zip(replies).zip(decided) {
                    // A client that has gone away is not answered; its change stands or not all the same.
                    let _ = reply.send(match decision {
                        Some(result) => Outcome::Answered(result),
                        None => Outcome::FallBack(Box::new(job)),
                    });
                }
            }
            Err(err) => {
                tracing::warn!(lane = name, error = ?err, size = jobs.len(), "batch failed; one by one");
                metrics::counter!("batches_failed_total", "lane" => name).increment(1);
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let _ = reply.send(Outcome::FallBack(Box::new(job)));
                }
            }
        }
    }
    // Idle: jobs sent from now on fail to send and fall back; any that made it into the queue
    // before it closed are handed back the same way.
    queue.close();
    while let Ok((job, reply)) = queue.try_recv() {
        let _ = reply.send(Outcome::FallBack(Box::new(job)));
    }
}
