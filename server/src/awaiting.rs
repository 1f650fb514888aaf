//! A connection's requests that wait for an answer from another node, so that each still gets
//! exactly one: when the node that should answer is lost (it died, or messages from it to this
//! node were lost, or the session left it), the connection answers the request itself with
//! `unavailable`, and an answer that arrives later after all is dropped.
//!
//! Answers are recognized by the `request_id` of the frames queued to the connection, and only
//! while it has requests waiting. While no connection of the node has any (always, on a node
//! alone), a frame costs one load of a counter the whole node shares, which stays in cache; the
//! connection's own count sits on a line that delivering a frame does not otherwise touch.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use convene_protocol::{NodeId, RequestId, SessionId};
use serde::Deserialize;
use tokio::sync::Notify;

/// Most requests of one connection that may wait on other nodes at once. A client that sends
/// more without reading the answers is refused (`rate_limited`) until answers come.
pub const MAX_AWAITING: usize = 64;

/// How many requests the connection answered itself are remembered, to drop a late answer to
/// one. A late answer comes, if ever, from a node that was paused or cut off; past this many
/// such requests the oldest is forgotten, and its late answer would reach the client.
const ABANDONED_KEPT: usize = 64;

/// Where a request went: the session, the node that owns it and the bus's count of gaps then,
/// and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub session: SessionId,
    pub owner: NodeId,
    pub gaps: u64,
    pub sent: std::time::Instant,
}

/// How many connections of a node have entries in their [`Awaiting`] lists.
#[derive(Clone, Debug, Default)]
pub struct NodeAwaiting(Arc<AtomicUsize>);

impl NodeAwaiting {
    /// Whether some connection of the node may have a request waiting.
    pub fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) != 0
    }
}

/// One connection's requests waiting on other nodes.
#[derive(Debug, Default)]
pub struct Awaiting {
    /// Entries in both lists below: frames are looked at only while there are any.
    tracked: AtomicUsize,
    lists: Mutex<Lists>,
    /// Counts this connection while `tracked` is not zero.
    node: NodeAwaiting,
    /// Told when the last waiting request is answered (or given up).
    answered: Notify,
}

#[derive(Debug, Default)]
struct Lists {
    waiting: HashMap<String, Waiter>,
    /// Requests answered here because their node was lost, oldest first.
    abandoned: VecDeque<String>,
    /// Whether `waiting` had entries at the last count.
    was_waiting: bool,
}

/// What to do with a frame queued to the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    Deliver,
    /// A late answer to a request the connection answered itself.
    Drop,
}

impl Lists {
    fn len(&self) -> usize {
        self.waiting.len() + self.abandoned.len()
    }
}

impl Awaiting {
    /// A connection's list, counted in its node's `node`.
    pub fn new(node: NodeAwaiting) -> Self {
        Self { tracked: AtomicUsize::new(0), lists: Mutex::default(), node, answered: Notify::new() }
    }

    fn lists(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `request` went to another node, before it is sent (so that its answer cannot
    /// come first). `false` when too many wait already: the request is not sent.
    pub fn expect(&self, request: &RequestId, waiter: Waiter) -> bool {
        let mut lists = self.lists();
        if lists.waiting.len() >= MAX_AWAITING {
            return false;
        }
        lists.waiting.insert(request.as_str().to_owned(), waiter);
        self.recount(&mut lists);
        true
    }

    /// A request named `request` is being sent (anywhere): a late answer to an earlier one of
    /// that name can no longer be told from its answer, so it is no longer dropped. Clients
    /// retry with a new `request_id` to get exactly one answer for each.
    pub fn reuse(&self, request: &RequestId) {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut lists = self.lists();
        lists.abandoned.retain(|abandoned| abandoned != request.as_str());
        self.recount(&mut lists);
    }

    /// The request could not be sent after all; the connection answers it.
    pub fn forget(&self, request: &RequestId) {
        let mut lists = self.lists();
        lists.waiting.remove(request.as_str());
        self.recount(&mut lists);
    }

    /// Sets the count of entries after a change to `lists` (whose lock the caller holds), and
    /// the node's count of connections with entries. The node's count goes up before a request
    /// that needs it is sent, and down after the connection's own.
    fn recount(&self, lists: &mut Lists) {
        let waiting = !lists.waiting.is_empty();
        if std::mem::replace(&mut lists.was_waiting, waiting) && !waiting {
            self.answered.notify_waiters();
        }
        let now = lists.len();
        let before = self.tracked.swap(now, Ordering::AcqRel);
        if before == 0 && now != 0 {
            self.node.0.fetch_add(1, Ordering::AcqRel);
        } else if before != 0 && now == 0 {
            self.node.0.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Returns once no request of the connection waits on another node: each was answered,
    /// or given up.
    pub async fn answered(&self) {
        loop {
            let mut notified = std::pin::pin!(self.answered.notified());
            // Registered before looking, so an answer in between still wakes this.
            notified.as_mut().enable();
            if self.lists().waiting.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Whether `frame` may go to the client: an answer to a waiting request settles it; a late
    /// answer to one the connection answered itself is dropped.
    pub fn settle(&self, frame: &[u8]) -> Settled {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return Settled::Deliver;
        }
        let Some(request) = answered(frame) else { return Settled::Deliver };
        let mut lists = self.lists();
        let settled = if lists.waiting.remove(&request).is_some() {
            Settled::Deliver
        } else if let Some(index) = lists.abandoned.iter().position(|abandoned| *abandoned == request) {
            lists.abandoned.remove(index);
            Settled::Drop
        } else {
            Settled::Deliver
        };
        self.recount(&mut lists);
        settled
    }

    /// Gives up on the waiting requests whose node is `lost`, calling `answer` for each while
    /// the lists are held, so that no answer from the node can slip in between.
    pub fn abandon(&self, lost: impl Fn(&Waiter) -> bool, mut answer: impl FnMut(&str)) {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut lists = self.lists();
        let given_up: Vec<String> =
            lists.waiting.extract_if(|_, waiter| lost(waiter)).map(|(request, _)| request).collect();
        for request in given_up {
            answer(&request);
            lists.abandoned.push_back(request);
            if lists.abandoned.len() > ABANDONED_KEPT {
                lists.abandoned.pop_front();
            }
        }
        self.recount(&mut lists);
    }
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        if *self.tracked.get_mut() != 0 {
            self.node.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The request a frame answers, if it names one. Encoded JSON has `"request_id":"` only where
/// a field is named so (a quote inside a string is escaped), so most frames are passed over
/// without being parsed.
fn answered(frame: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Answer {
        request_id: Option<String>,
    }
    memchr::memmem::find(frame, br#""request_id":""#)?;
    match serde_json::from_slice::<Answer>(frame) {
        Ok(answer) => answer.request_id,
        // Every frame is this server's own encoding of a message object, so this is not
        // reached; a frame that were not one would answer no request.
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(owner: u64) -> Waiter {
        Waiter { session: SessionId::new_v4(), owner: NodeId(owner), gaps: 0, sent: std::time::Instant::now() }
    }

    fn id(text: &str) -> RequestId {
        RequestId::new(text.to_owned()).expect("a valid request id")
    }

    const OK_R1: &[u8] = br#"{"type":"ok","request_id":"r1"}"#;

    #[test]
    fn frames_pass_untouched_while_nothing_waits() {
        let awaiting = Awaiting::default();
        assert_eq!(awaiting.settle(OK_R1), Settled::Deliver);
    }

    #[test]
    fn an_answer_settles_its_request_once() {
        let awaiting = Awaiting::default();
        assert!(awaiting.expect(&id("r1"), waiter(1)));
        assert_eq!(awaiting.settle(OK_R1), Settled::Deliver);
        assert_eq!(awaiting.settle(OK_R1), Settled::Deliver, "an answer to nothing waiting is not ours to drop");
        assert_eq!(awaiting.tracked.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_request_of_a_lost_node_is_answered_here_and_its_late_answer_dropped() {
        let awaiting = Awaiting::default();
        let (lost, alive) = (waiter(1), waiter(2));
        assert!(awaiting.expect(&id("r1"), lost));
        assert!(awaiting.expect(&id("r2"), alive));
        let mut answered_here = Vec::new();
        awaiting.abandon(|waiter| waiter.owner == lost.owner, |request| answered_here.push(request.to_owned()));
        assert_eq!(answered_here, ["r1"]);
        assert_eq!(awaiting.settle(OK_R1), Settled::Drop, "the late answer");
        assert_eq!(awaiting.settle(OK_R1), Settled::Deliver, "dropped once");
        assert_eq!(awaiting.settle(br#"{"type":"ok","request_id":"r2"}"#), Settled::Deliver);
        assert_eq!(awaiting.tracked.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_request_named_like_an_abandoned_one_gets_its_answer() {
        let awaiting = Awaiting::default();
        assert!(awaiting.expect(&id("r1"), waiter(1)));
        awaiting.abandon(|_| true, |_| {});
        awaiting.reuse(&id("r1"));
        assert_eq!(awaiting.settle(OK_R1), Settled::Deliver);
    }

    #[test]
    fn frames_that_answer_nothing_are_delivered_while_requests_wait() {
        let awaiting = Awaiting::default();
        assert!(awaiting.expect(&id("r1"), waiter(1)));
        let frames: [&[u8]; 3] = [
            br#"{"type":"message","body":"\"request_id\":\"r1\""}"#,
            br#"{"type":"error","request_id":null,"code":"invalid"}"#,
            br#"{"type":"ok","request_id":"other"}"#,
        ];
        for frame in frames {
            assert_eq!(awaiting.settle(frame), Settled::Deliver);
        }
        assert_eq!(awaiting.settle(OK_R1), Settled::Deliver, "still waiting after all of them");
    }

    #[test]
    fn a_node_counts_its_connections_with_requests_waiting_until_each_has_none() {
        let node = NodeAwaiting::default();
        let (first, second) = (Awaiting::new(node.clone()), Awaiting::new(node.clone()));
        assert!(!node.any());
        assert!(first.expect(&id("r1"), waiter(1)));
        assert!(first.expect(&id("r2"), waiter(1)));
        assert!(second.expect(&id("r1"), waiter(2)));
        assert_eq!(node.0.load(Ordering::Acquire), 2, "connections, not requests");

        // An abandoned request still counts: its late answer is to be dropped.
        first.abandon(|waiter| waiter.owner == NodeId(1), |_| {});
        assert_eq!(second.settle(OK_R1), Settled::Deliver);
        assert_eq!(node.0.load(Ordering::Acquire), 1);
        assert_eq!(first.settle(OK_R1), Settled::Drop);
        assert_eq!(node.0.load(Ordering::Acquire), 1, "r2's late answer is still awaited");

        // A connection that ends with entries stops counting.
        drop(first);
        assert!(!node.any());
    }

    #[test]
    fn waiting_for_the_answers_ends_once_each_request_was_answered_or_given_up() {
        use std::future::Future as _;
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        let awaiting = Awaiting::default();
        assert!(std::pin::pin!(awaiting.answered()).poll(&mut cx).is_ready(), "nothing waits");

        assert!(awaiting.expect(&id("r1"), waiter(1)));
        assert!(awaiting.expect(&id("r2"), waiter(2)));
        let mut answered = std::pin::pin!(awaiting.answered());
        assert_eq!(answered.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(awaiting.settle(OK_R1), Settled::Deliver);
        assert_eq!(answered.as_mut().poll(&mut cx), Poll::Pending, "r2 still waits");
        awaiting.abandon(|waiter| waiter.owner == NodeId(2), |_| {});
        assert_eq!(answered.as_mut().poll(&mut cx), Poll::Ready(()), "an abandoned request waits no more");
    }

    #[test]
    fn a_connection_waits_on_at_most_so_many_requests() {
        let awaiting = Awaiting::default();
        for n in 0..MAX_AWAITING {
            assert!(awaiting.expect(&id(&format!("r{n}")), waiter(1)));
        }
        assert!(!awaiting.expect(&id("one-more"), waiter(1)));
        awaiting.forget(&id("r0"));
        assert!(awaiting.expect(&id("one-more"), waiter(1)));
    }
}
