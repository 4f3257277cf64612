//! What a test asks of a fake's next replies, by path: a fault instead of the work, or the work
//! done and its reply late (delayed, or held until the test lets it go). Every fake offers the
//! same three controls; each decides what its faults answer.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::oneshot;

/// The faults, delays and holds queued for requests to come, by path pattern.
pub(crate) struct NextReplies<F> {
    faults: ByPath<F>,
    delays: ByPath<Duration>,
    holds: ByPath<Hold>,
}

impl<F> NextReplies<F> {
    pub(crate) fn new() -> NextReplies<F> {
        NextReplies {
            faults: ByPath::new(),
            delays: ByPath::new(),
            holds: ByPath::new(),
        }
    }

    /// The next `times` requests whose path matches `pattern` answer `fault`.
    pub(crate) fn fail(&mut self, pattern: &str, times: usize, fault: F)
    where
        F: Clone,
    {
        self.faults.push(pattern, std::iter::repeat_n(fault, times));
    }

    pub(crate) fn delay(&mut self, pattern: &str, delay: Duration) {
        self.delays.push(pattern, [delay]);
    }

    pub(crate) fn hold(&mut self, pattern: &str) -> HeldReply {
        let (processed_tx, processed) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        let hold = Hold {
            processed: processed_tx,
            release: release_rx,
        };
        self.holds.push(pattern, [hold]);
        HeldReply { processed, release }
    }

    /// The fault queued for a request to `path`, taken off its queue.
    pub(crate) fn take_fault(&mut self, path: &str) -> Option<F> {
        self.faults.pop(path)
    }

    /// The delay and hold queued for a request to `path` that is being processed.
    pub(crate) fn take_late(&mut self, path: &str) -> LateReply {
        LateReply {
            delay: self.delays.pop(path),
            hold: self.holds.pop(path),
        }
    }
}

/// Queues by path pattern, in the order they were set: segments split on `/`, where `*` stands
/// for any one segment (`/v2.01/*/payins/*/refunds`) and every other segment for itself.
struct ByPath<T> {
    queues: Vec<(Vec<String>, VecDeque<T>)>,
}

impl<T> ByPath<T> {
    fn new() -> ByPath<T> {
        ByPath { queues: Vec::new() }
    }

    fn push(&mut self, pattern: &str, items: impl IntoIterator<Item = T>) {
        let pattern = segments(pattern).map(str::to_owned).collect::<Vec<_>>();
        match self.queues.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, queue)) => queue.extend(items),
            None => self.queues.push((pattern, items.into_iter().collect())),
        }
    }

    fn pop(&mut self, path: &str) -> Option<T> {
        self.queues
            .iter_mut()
            .filter(|(pattern, queue)| !queue.is_empty() && matches(pattern, path))
            .find_map(|(_, queue)| queue.pop_front())
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.trim_matches('/').split('/')
}

fn matches(pattern: &[String], path: &str) -> bool {
    let mut path = segments(path);
    pattern
        .iter()
        .all(|p| path.next().is_some_and(|segment| p == "*" || p == segment))
        && path.next().is_none()
}

/// A reply held back until the test releases it (a fake's `hold_next_reply`).
pub struct HeldReply {
    processed: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl HeldReply {
    /// Waits until the held request was processed: its objects exist, its answer is saved under
    /// its idempotency key, its notifications are on their way.
    pub async fn processed(&mut self) {
        (&mut self.processed).await.ok();
    }

    /// Sends the reply.
    pub fn release(self) {
        self.release.send(()).ok();
    }
}

/// The fake's side of a [`HeldReply`].
struct Hold {
    processed: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// What stands between a processed request and its reply.
pub(crate) struct LateReply {
    delay: Option<Duration>,
    hold: Option<Hold>,
}

impl LateReply {
    /// Sleeps the delay, then says the work is done and waits for the release. A dropped
    /// [`HeldReply`] lets the reply go too.
    pub(crate) async fn wait(self) {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(hold) = self.hold {
            hold.processed.send(()).ok();
            hold.release.await.ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_stands_for_one_segment_and_the_rest_for_themselves() {
        let pattern: Vec<String> = segments("/v2.01/*/payins/*/refunds").map(str::to_owned).collect();
        assert!(matches(&pattern, "/v2.01/client/payins/payin_1/refunds"));
        assert!(!matches(&pattern, "/v2.01/client/payins/payin_1"));
        assert!(!matches(&pattern, "/v2.01/client/payins/payin_1/refunds/x"));
        assert!(!matches(&pattern, "/v2.01/client/transfers/t_1/refunds"));
    }

    #[test]
    fn the_pattern_set_first_answers_first_while_its_queue_lasts() {
        let mut next = NextReplies::new();
        next.fail("/v1/a", 1, 'x');
        next.fail("/v1/*", 2, 'y');
        next.fail("/v1/a", 1, 'z');
        let taken: Vec<Option<char>> = (0..5).map(|_| next.take_fault("/v1/a")).collect();
        assert_eq!(taken, [Some('x'), Some('z'), Some('y'), Some('y'), None]);
    }
}
