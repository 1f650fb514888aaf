//! The queue between the rest of the server and one connection.
//!
//! Sessions never touch a socket: they push encoded [`Frame`]s into a connection's bounded queue
//! with [`ConnLink::try_send`], which never waits. A full queue means the client is not reading
//! fast enough; the sender then closes the connection as slow ([`CloseReason::Slow`]) instead of
//! buffering without bound. Frames are encoded once per event and shared by every recipient, so
//! sending one to a connection costs a reference-count increment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use dashmap::DashMap;
use futures_util::task::AtomicWaker;

use axum::extract::ws::Utf8Bytes;
use convene_protocol::{ConnId, ErrorCode, RequestId, ServerMessage, SessionId, UserId};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::awaiting::{Awaiting, NodeAwaiting, Settled, Waiter};

/// Frames queued for one connection. A burst of this many events (a whole replay, a busy room)
/// fits; a client that falls further behind than this is not keeping up and is disconnected. At
/// about 200 bytes a frame, the queue bounds a stalled client's cost to some 200 KB.
pub const OUTBOUND_QUEUE_CAPACITY: usize = 1024;

/// One encoded server message, shareable between recipients.
///
/// A pointer-sized handle: every connection's queue allocates its first block of slots up front,
/// so the handle's size is paid per idle connection (32 slots of 8 bytes instead of 32).
#[derive(Clone, Debug)]
pub struct Frame(Arc<Utf8Bytes>);

impl Frame {
    /// Encodes a message. Encoding cannot fail for the protocol's types; should it ever, the
    /// failure is logged and the message skipped rather than sending a broken frame.
    pub fn encode(message: &ServerMessage) -> Option<Self> {
        match message.to_json() {
            Ok(text) => Some(Self(Arc::new(Utf8Bytes::from(text)))),
            Err(err) => {
                error!(error = %err, "a server message failed to encode");
                None
            }
        }
    }

    /// A frame received from another node, if it is text.
    pub fn from_bytes(bytes: bytes::Bytes) -> Option<Self> {
        Utf8Bytes::try_from(bytes).ok().map(|text| Self(Arc::new(text)))
    }

    /// The encoded message.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The text to write; shares the encoded bytes rather than copying them.
    pub fn into_text(self) -> Utf8Bytes {
        Utf8Bytes::clone(&self.0)
    }
}

/// Why the server closed a connection; each maps to a WebSocket close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client did not read its queue fast enough.
    Slow,
    /// The server is shutting down; reconnect (to this or another node).
    Restarting,
    /// The client stopped answering pings.
    Unresponsive,
    /// The access token expired.
    TokenExpired,
    /// A frame exceeded the size limit.
    TooBig,
    /// The client broke the protocol at the WebSocket level.
    ProtocolError,
    /// A text frame was not valid UTF-8.
    InvalidText,
    /// The client kept sending past its frame budget after being told to slow down.
    Flooding,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            Self::Slow => 4008,
            Self::Restarting => 1012,
            Self::Unresponsive => 4000,
            Self::TokenExpired => 4001,
            Self::TooBig => 1009,
            Self::ProtocolError => 1002,
            Self::InvalidText => 1007,
            Self::Flooding => 4029,
        }
    }

    /// Whether frames already queued are written before the close: yes when the server sends a
    /// healthy client away, or one that sent too much but reads (it is owed the replies to the
    /// requests it was allowed); no when the client cannot or will not read, or speaks garbage.
    pub fn delivers_queued(self) -> bool {
        match self {
            Self::Restarting | Self::TokenExpired | Self::Flooding => true,
            Self::Slow | Self::Unresponsive | Self::TooBig | Self::ProtocolError | Self::InvalidText => false,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::Slow => "slow consumer",
            Self::Restarting => "server restarting",
            Self::Unresponsive => "heartbeat timeout",
            Self::TokenExpired => "token expired",
            Self::TooBig => "frame too large",
            Self::ProtocolError => "protocol error",
            Self::InvalidText => "text frame is not valid UTF-8",
            Self::Flooding => "too many frames",
        }
    }
}

/// What the rest of the node asks of one connection's reader, besides reading requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Close, for this reason.
    Close(CloseReason),
    /// Stop reading requests: the node is shutting down. Those already read are answered
    /// before the close that follows ([`Connections::stop_reading_all`]).
    StopReading,
    /// Check again which sessions it is still in: sessions that let it go
    /// ([`Closer::interrupt`]), and sessions whose owner died or whose messages to this node
    /// were lost.
    Recheck,
}

/// What a connection's writer is asked, besides writing frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterSignal {
    /// Stop, for this reason.
    Close(CloseReason),
    /// Write a ping: the heartbeat is due.
    Ping,
}

/// Signals one connection's two tasks from elsewhere: close it (the first reason given counts),
/// make its reader stop reading or check its sessions again, or make its writer send a ping.
///
/// The writer polls this on every wake-up, that is about once per batch of frames it writes, so
/// polling is an atomic load and a waker registration on the connection's own state: no lock,
/// nothing shared with other connections. Each task registers its own waker, so a signal wakes
/// only the task that acts on it. Node-wide events (shutdown, a dead node) reach each
/// connection through [`Connections`] instead of every task watching one shared primitive.
#[derive(Debug, Default)]
pub struct Closer {
    reason: OnceLock<CloseReason>,
    stop_reading: AtomicBool,
    recheck: AtomicBool,
    ping: AtomicBool,
    /// Sessions that let the connection go, for the reader to tell the client. Rare, and only
    /// this connection's: the lock is never contended on the delivery path.
    interrupted: Mutex<Vec<SessionId>>,
    /// The connection's requests waiting on other nodes (see [`crate::awaiting`]).
    awaiting: Awaiting,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Closer {
    /// A connection's signals, its awaited requests counted in its node's `awaiting`.
    fn new(awaiting: NodeAwaiting) -> Self {
        Self { awaiting: Awaiting::new(awaiting), ..Self::default() }
    }

    pub fn close(&self, reason: CloseReason) {
        // Only the first reason counts; later ones describe the same closing.
        if self.reason.set(reason).is_ok() {
            self.reader.wake();
            self.writer.wake();
        }
    }

    /// Asks the reader to stop reading requests; the writer goes on until the close.
    pub fn stop_reading(&self) {
        self.stop_reading.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Asks the reader to check its sessions again.
    pub fn recheck(&self) {
        self.recheck.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Asks the writer to send a ping.
    pub fn ping(&self) {
        self.ping.store(true, Ordering::Release);
        self.writer.wake();
    }

    /// The session let the connection go (it stopped here, or lost its messages to this node);
    /// the reader tells the client, which joins again.
    pub fn interrupt(&self, session: SessionId) {
        self.interrupted.lock().unwrap_or_else(PoisonError::into_inner).push(session);
        self.recheck();
    }

    /// The sessions that let the connection go since the last call.
    pub fn take_interrupted(&self) -> Vec<SessionId> {
        std::mem::take(&mut *self.interrupted.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// The reader's signals: a close first, then a request to stop reading, then a pending
    /// recheck (each of the last two taken by this call).
    pub fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<Signal> {
        // Registered before looking, so a signal given in between still wakes the task.
        self.reader.register(cx.waker());
        if let Some(reason) = self.reason() {
            return Poll::Ready(Signal::Close(reason));
        }
        if self.stop_reading.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Signal::StopReading);
        }
        if self.recheck.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Signal::Recheck);
        }
        Poll::Pending
    }

    /// The writer's signals: a close first, then a pending ping (taken by this call).
    pub fn poll_writer(&self, cx: &mut Context<'_>) -> Poll<WriterSignal> {
        self.writer.register(cx.waker());
        if let Some(reason) = self.reason() {
            return Poll::Ready(WriterSignal::Close(reason));
        }
        if self.ping.swap(false, Ordering::AcqRel) {
            return Poll::Ready(WriterSignal::Ping);
        }
        Poll::Pending
    }

    /// Ready once the connection is to close, with the reason; for the writer while it writes,
    /// leaving a ping pending.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        self.writer.register(cx.waker());
        self.reason().map_or(Poll::Pending, Poll::Ready)
    }
}

/// What a session holds to reach one connection.
#[derive(Clone, Debug)]
pub struct ConnLink {
    pub conn_id: ConnId,
    pub user_id: UserId,
    tx: mpsc::Sender<Frame>,
    closer: Arc<Closer>,
    /// The node's count of connections awaiting answers from other nodes, read before the
    /// connection's own: it stays in cache, where the connection's state would be a miss on
    /// every frame.
    node_awaiting: NodeAwaiting,
}

/// The connection's end of its queue.
#[derive(Debug)]
pub struct ConnQueue {
    pub rx: mpsc::Receiver<Frame>,
    pub closer: Arc<Closer>,
}

impl ConnLink {
    /// A connection of the node whose connections' awaited requests `awaiting` counts.
    pub fn new(conn_id: ConnId, user_id: UserId, awaiting: NodeAwaiting) -> (Self, ConnQueue) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE_CAPACITY);
        let closer = Arc::new(Closer::new(awaiting.clone()));
        (Self { conn_id, user_id, tx, closer: closer.clone(), node_awaiting: awaiting }, ConnQueue { rx, closer })
    }

    /// Queues a frame without waiting. Returns `false` when the connection is gone or was just
    /// closed as slow because its queue was full. A late answer to a request the connection
    /// answered itself is dropped here (see [`crate::awaiting`]).
    pub fn try_send(&self, frame: Frame) -> bool {
        if self.node_awaiting.any() && self.closer.awaiting.settle(frame.as_bytes()) == Settled::Drop {
            debug!(conn_id = %self.conn_id, "dropped a late answer to a request already answered");
            return true;
        }
        self.queue(frame)
    }

    fn queue(&self, frame: Frame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(conn_id = %self.conn_id, user_id = %self.user_id, capacity = OUTBOUND_QUEUE_CAPACITY,
                    "outbound queue full; closing connection as slow");
                self.closer.close(CloseReason::Slow);
                false
            }
            // The connection already ended; its departure reaches the session on its own.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Encodes and queues a message for this connection alone.
    pub fn send(&self, message: &ServerMessage) -> bool {
        Frame::encode(message).is_some_and(|frame| self.try_send(frame))
    }

    pub fn close(&self, reason: CloseReason) {
        self.closer.close(reason);
    }

    /// Tells the connection that `session` let it go (see [`Closer::interrupt`]).
    pub fn interrupt(&self, session: SessionId) {
        self.closer.interrupt(session);
    }

    /// Notes a request sent to another node, before sending it; `false` when too many wait.
    pub fn expect_answer(&self, request: &RequestId, waiter: Waiter) -> bool {
        self.closer.awaiting.expect(request, waiter)
    }

    /// A request named `request` is being sent; see [`Awaiting::reuse`].
    pub fn reuse_request_id(&self, request: &RequestId) {
        self.closer.awaiting.reuse(request);
    }

    /// The request noted by [`Self::expect_answer`] could not be sent; the connection answers it.
    pub fn forget_answer(&self, request: &RequestId) {
        self.closer.awaiting.forget(request);
    }

    /// Returns once none of the connection's requests waits on another node.
    pub async fn answered_by_other_nodes(&self) {
        self.closer.awaiting.answered().await;
    }

    /// Answers `unavailable`, saying `why`, to the requests waiting on a node that is `lost`:
    /// each gets this answer and no other.
    pub fn abandon_requests(&self, lost: impl Fn(&Waiter) -> bool, why: &str) {
        self.closer.awaiting.abandon(lost, |request| {
            let message = ServerMessage::error(RequestId::new(request), ErrorCode::Unavailable, why);
            if let Some(frame) = Frame::encode(&message) {
                // Not through `try_send`: this answer is the one that counts. A queue that is full
                // closes the connection as slow, and nobody is left to answer.
                if !self.queue(frame) {
                    debug!(conn_id = %self.conn_id, request, "could not answer a request of a lost node");
                }
            }
        });
    }
}

/// Every connection of this node, by id: how a session reaches a connection it does not hold,
/// such as one whose join it refused, to answer its requests.
#[derive(Debug, Default)]
pub struct Connections {
    links: DashMap<ConnId, ConnLink>,
    /// How many of them have requests waiting on other nodes.
    awaiting: NodeAwaiting,
}

impl Connections {
    /// What counts this node's connections with requests waiting on other nodes, for
    /// [`ConnLink::new`].
    pub fn awaiting(&self) -> NodeAwaiting {
        self.awaiting.clone()
    }

    pub fn insert(&self, link: ConnLink) {
        self.links.insert(link.conn_id, link);
    }

    pub fn remove(&self, conn: ConnId) {
        self.links.remove(&conn);
    }

    /// Makes every connection of this node stop reading requests, the first step of shutting
    /// down: what they read is answered before [`Self::close_all`] closes them.
    pub fn stop_reading_all(&self) {
        for link in self.links.iter() {
            link.closer.stop_reading();
        }
    }

    /// Closes every connection of this node, for `reason`. Requests they have waiting on other
    /// nodes are answered `unavailable` first, queued ahead of the close.
    pub fn close_all(&self, reason: CloseReason) {
        let why = format!("{}; join again and retry", reason.text());
        for link in self.links.iter() {
            link.abandon_requests(|_| true, &why);
            link.close(reason);
        }
    }

    /// Makes every connection of this node check the sessions it relies on.
    pub fn recheck_all(&self) {
        for link in self.links.iter() {
            link.closer.recheck();
        }
    }

    /// The link of a connection that is still open on this node.
    pub fn get(&self, conn: ConnId) -> Option<ConnLink> {
        self.links.get(&conn).map(|link| link.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::{CloseReason, Closer, Signal, WriterSignal};

    #[test]
    fn signals_are_seen_once_and_a_close_wins_over_a_recheck() {
        let mut cx = Context::from_waker(Waker::noop());
        let closer = Closer::default();
        assert_eq!(closer.poll_signal(&mut cx), Poll::Pending);

        closer.recheck();
        // Waiting for a close leaves the recheck for the connection's next look.
        assert_eq!(closer.poll_closed(&mut cx), Poll::Pending);
        assert_eq!(closer.poll_signal(&mut cx), Poll::Ready(Signal::Recheck));
        assert_eq!(closer.poll_signal(&mut cx), Poll::Pending, "a recheck is taken once");

        closer.recheck();
        closer.close(CloseReason::Slow);
        closer.close(CloseReason::Restarting);
        for _ in 0..2 {
            assert_eq!(closer.poll_signal(&mut cx), Poll::Ready(Signal::Close(CloseReason::Slow)), "the first reason");
        }
        assert_eq!(closer.poll_closed(&mut cx), Poll::Ready(CloseReason::Slow));
    }

    #[test]
    fn stopping_to_read_is_the_readers_alone_and_a_close_wins_over_it() {
        let mut cx = Context::from_waker(Waker::noop());
        let closer = Closer::default();
        closer.recheck();
        closer.stop_reading();
        assert_eq!(closer.poll_writer(&mut cx), Poll::Pending, "the writer goes on writing");
        assert_eq!(closer.poll_closed(&mut cx), Poll::Pending);
        assert_eq!(closer.poll_signal(&mut cx), Poll::Ready(Signal::StopReading), "before a recheck");
        assert_eq!(closer.poll_signal(&mut cx), Poll::Ready(Signal::Recheck));
        assert_eq!(closer.poll_signal(&mut cx), Poll::Pending, "each is taken once");

        closer.stop_reading();
        closer.close(CloseReason::Restarting);
        assert_eq!(closer.poll_signal(&mut cx), Poll::Ready(Signal::Close(CloseReason::Restarting)));
    }

    #[test]
    fn a_ping_is_the_writers_alone_and_a_close_reaches_both_tasks() {
        let mut cx = Context::from_waker(Waker::noop());
        let closer = Closer::default();
        assert_eq!(closer.poll_writer(&mut cx), Poll::Pending);

        closer.ping();
        assert_eq!(closer.poll_signal(&mut cx), Poll::Pending, "the reader does not see a ping");
        // Waiting for a close while writing leaves the ping for the writer's next look.
        assert_eq!(closer.poll_closed(&mut cx), Poll::Pending);
        assert_eq!(closer.poll_writer(&mut cx), Poll::Ready(WriterSignal::Ping));
        assert_eq!(closer.poll_writer(&mut cx), Poll::Pending, "a ping is taken once");

        closer.recheck();
        assert_eq!(closer.poll_writer(&mut cx), Poll::Pending, "the writer does not see a recheck");
        closer.ping();
        closer.close(CloseReason::Restarting);
        assert_eq!(closer.poll_writer(&mut cx), Poll::Ready(WriterSignal::Close(CloseReason::Restarting)));
        assert_eq!(closer.poll_signal(&mut cx), Poll::Ready(Signal::Close(CloseReason::Restarting)));
    }

    #[test]
    fn a_signal_wakes_only_the_task_that_acts_on_it() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let reader = Arc::new(Count(AtomicUsize::new(0)));
        let writer = Arc::new(Count(AtomicUsize::new(0)));
        let (reader_waker, writer_waker) = (Waker::from(reader.clone()), Waker::from(writer.clone()));
        let closer = Closer::default();
        let poll_both = || {
            assert_eq!(closer.poll_signal(&mut Context::from_waker(&reader_waker)), Poll::Pending);
            assert_eq!(closer.poll_writer(&mut Context::from_waker(&writer_waker)), Poll::Pending);
        };
        let counts = || (reader.0.load(Ordering::SeqCst), writer.0.load(Ordering::SeqCst));

        poll_both();
        closer.recheck();
        assert_eq!(counts(), (1, 0), "a recheck wakes the reader");
        assert_eq!(closer.poll_signal(&mut Context::from_waker(&reader_waker)), Poll::Ready(Signal::Recheck));

        poll_both();
        closer.ping();
        assert_eq!(counts(), (1, 1), "a ping wakes the writer");
        assert_eq!(closer.poll_writer(&mut Context::from_waker(&writer_waker)), Poll::Ready(WriterSignal::Ping));

        poll_both();
        closer.close(CloseReason::Restarting);
        assert_eq!(counts(), (2, 2), "a close wakes both");
    }
}
