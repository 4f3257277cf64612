//! Many requests per transaction: a lane is a queue in the process and a task that takes
//! whatever has queued up (up to a maximum) and writes it in one transaction, so a flood pays
//! one commit, one WAL flush and one hold of each hot row per batch instead of per request.
//! Each request is answered after its batch commits, or handed back to take its own
//! transaction ("falls back") when the batch cannot decide it or failed and rolled back.
//! Used by the pledge batcher (pledges/http/batcher.rs) and inbound provider events
//! (webhooks/inbound.rs), each with the error type of its own answers (`E`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

/// A job's batch went away with it (its task is gone): the job was either not committed, or
/// committed with its outcome stored; a retry tells which.
#[derive(Debug, thiserror::Error)]
#[error("the request's batch was interrupted; retry it (with the same Idempotency-Key, if any)")]
pub struct Lost;

/// What became of a job: answered, or handed back for its own transaction.
pub enum Outcome<J, A, E> {
    Answered(Result<A, E>),
    FallBack(Box<J>),
}

/// A job and where its outcome goes.
pub(crate) type Queued<J, A, E> = (J, oneshot::Sender<Outcome<J, A, E>>);

/// A lane's sending end.
pub type Sender<J, A, E> = mpsc::Sender<Queued<J, A, E>>;

/// What one batch decided: per job, its answer, or `None` to hand it back.
pub(crate) type Decided<A, E> = Result<Vec<Option<Result<A, E>>>, E>;

/// Queued jobs at most, per lane; senders wait beyond that.
const QUEUE: usize = 8192;

/// Lanes by key (one per offer, say), each started on first use by `start`, which spawns its
/// task, and forgotten once that task has ended, so the next job starts another.
pub(crate) struct Lanes<K, J, A, E> {
    lanes: Arc<Mutex<Running<K, J, A, E>>>,
}

/// The running lanes, by key.
type Running<K, J, A, E> = HashMap<K, Sender<J, A, E>>;

impl<K, J, A, E> Clone for Lanes<K, J, A, E> {
    fn clone(&self) -> Self {
        Lanes {
            lanes: self.lanes.clone(),
        }
    }
}

impl<K, J, A, E> Default for Lanes<K, J, A, E> {
    fn default() -> Self {
        Lanes { lanes: Arc::default() }
    }
}

impl<K: Hash + Eq + Clone, J, A, E: From<Lost>> Lanes<K, J, A, E> {
    /// Whether the lane of `key` is running.
    pub fn running(&self, key: &K) -> bool {
        self.lanes.lock().expect("lanes poisoned").contains_key(key)
    }

    /// [`submit`] to the lane of `key`.
    pub(crate) async fn submit(
        &self,
        key: K,
        job: J,
        start: impl FnOnce(mpsc::Receiver<Queued<J, A, E>>),
    ) -> Result<Result<A, E>, Box<J>> {
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
async fn submit<J, A, E: From<Lost>>(queue: &Sender<J, A, E>, job: J) -> Result<Result<A, E>, Box<J>> {
    let (reply, answer) = oneshot::channel();
    if let Err(mpsc::error::SendError((job, _))) = queue.send((job, reply)).await {
        return Err(Box::new(job));
    }
    match answer.await {
        Ok(Outcome::Answered(result)) => Ok(result),
        Ok(Outcome::FallBack(job)) => Err(job),
        // The task is gone (it never drops a job it took): the job went with it, unanswered
        // and either uncommitted or committed with its outcome stored; a retry tells which.
        Err(_) => Ok(Err(Lost.into())),
    }
}

/// A batch's hold on its lane. Batches of a lane may be written side by side, but the next one
/// is only taken from the queue once this one has taken the lock that orders them (an offer's
/// row, say), or has ended: so batches take that lock in arrival order, and the next gathers
/// what arrived meanwhile and is written while this one commits.
pub struct Turn {
    taken: watch::Sender<bool>,
}

impl Turn {
    /// This batch holds the lock now: the lane may start the next.
    pub fn taken(&mut self) {
        self.taken.send_replace(true);
    }
}

/// Until the batch behind `turn` has taken its lock or ended.
async fn taken(turn: &mut watch::Receiver<bool>) {
    // A batch that ended without the lock dropped its sender: that is a turn too.
    let _ = turn.wait_for(|taken| *taken).await;
}

/// Runs a lane until it has been idle for `idle`: each batch of at most `max` jobs goes to
/// `write`, with its [`Turn`]. Up to `depth` batches are written at once: the next batch is
/// taken once the one before has taken its lock, so it gathers what arrived meanwhile and is
/// written while the one before commits. If `write` fails, nothing of the batch was committed
/// and every job falls back. `name` labels the `batch_size` and `batches_failed_total` metrics.
pub async fn run<J, A, E: std::fmt::Debug, W>(
    name: &'static str,
    mut queue: mpsc::Receiver<Queued<J, A, E>>,
    max: usize,
    depth: usize,
    idle: Duration,
    write: impl Fn(Vec<J>, Turn) -> W,
) where
    W: Future<Output = (Vec<J>, Decided<A, E>)>,
{
    let mut in_flight = futures::stream::FuturesUnordered::new();
    // The last batch's turn, and whether it has been taken.
    let mut last: Option<watch::Receiver<bool>> = None;
    let mut last_taken = true;
    let mut taken_buffer = Vec::with_capacity(max);
    loop {
        tokio::select! {
            received = tokio::time::timeout(idle, queue.recv_many(&mut taken_buffer, max)),
                if in_flight.len() < depth && last_taken => {
                let received = received.unwrap_or(0);
                if received == 0 && in_flight.is_empty() {
                    break;
                }
                if received == 0 {
                    continue;
                }
                let (jobs, replies): (Vec<J>, Vec<_>) = std::mem::take(&mut taken_buffer).into_iter().unzip();
                metrics::histogram!("batch_size", "lane" => name).record(jobs.len() as f64);
                let (sender, receiver) = watch::channel(false);
                let turn = Turn { taken: sender };
                last = Some(receiver);
                last_taken = false;
                let written = write(jobs, turn);
                in_flight.push(async move {
                    let (jobs, decided) = written.await;
                    (jobs, replies, decided)
                });
            }
            () = async { taken(last.as_mut().expect("a batch was taken")).await }, if !last_taken => {
                last_taken = true;
            }
            Some((jobs, replies, decided)) = futures::StreamExt::next(&mut in_flight) => {
                answer(name, jobs, replies, decided);
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

/// Sends each job of a written batch its outcome.
fn answer<J, A, E: std::fmt::Debug>(
    name: &'static str,
    jobs: Vec<J>,
    replies: Vec<oneshot::Sender<Outcome<J, A, E>>>,
    decided: Decided<A, E>,
) {
    match decided {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_next_batch_starts_once_the_one_before_holds_its_lock_and_overlaps_its_commit() {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let log = Arc::new(Mutex::new(Vec::new()));
        let written = log.clone();
        let lane = tokio::spawn(run(
            "test",
            jobs,
            4,
            2,
            Duration::from_millis(200),
            move |jobs: Vec<u32>, mut turn| {
                let log = written.clone();
                async move {
                    let first = jobs[0];
                    log.lock().unwrap().push(("start", first));
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    log.lock().unwrap().push(("taken", first));
                    turn.taken();
                    // The commit: the next batch is written meanwhile.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    log.lock().unwrap().push(("end", first));
                    let answers = jobs.iter().map(|j| Some(Ok(*j))).collect();
                    (jobs, Ok(answers))
                }
            },
        ));
        let mut answers = Vec::new();
        for n in 0..40 {
            let queue = queue.clone();
            answers.push(tokio::spawn(async move { submit::<_, _, Lost>(&queue, n).await }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for (n, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap().ok().unwrap().unwrap(), n as u32);
        }
        let log = log.lock().unwrap().clone();
        let starts: Vec<usize> = (0..log.len()).filter(|&i| log[i].0 == "start").collect();
        assert!(starts.len() > 2, "{log:?}");
        let mut overlapped = 0;
        for pair in starts.windows(2) {
            let (before, next) = (log[pair[0]].1, pair[1]);
            let taken = log.iter().position(|e| *e == ("taken", before)).unwrap();
            let ended = log.iter().position(|e| *e == ("end", before)).unwrap();
            assert!(
                taken < next,
                "batch {} started before batch {before} held its lock: {log:?}",
                log[next].1
            );
            overlapped += usize::from(next < ended);
        }
        assert!(
            overlapped > 0,
            "no batch was written while the one before committed: {log:?}"
        );
        drop(queue);
        lane.await.unwrap();
    }
}
