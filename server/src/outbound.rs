//! The queue between the rest of the server and one connection.
//!
//! Sessions never touch a socket: they push encoded [`Frame`]s into a connection's bounded queue
//! with [`ConnLink::try_send`], which never waits. A full queue means the client is not reading
//! fast enough; the sender then closes the connection as slow ([`CloseReason::Slow`]) instead of
//! buffering without bound. Frames are encoded once per event and shared by every recipient, so
//! sending one to a connection costs a reference-count increment.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;

use axum::extract::ws::Utf8Bytes;
use convene_protocol::{ConnId, ServerMessage, UserId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

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
    /// healthy client away, no when the client is the problem (it cannot or will not read).
    pub fn delivers_queued(self) -> bool {
        match self {
            Self::Restarting | Self::TokenExpired => true,
            Self::Slow
            | Self::Unresponsive
            | Self::TooBig
            | Self::ProtocolError
            | Self::InvalidText
            | Self::Flooding => false,
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

/// Closes a connection from elsewhere, remembering the first reason given.
#[derive(Debug, Default)]
pub struct Closer {
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
}

impl Closer {
    pub fn close(&self, reason: CloseReason) {
        // Only the first reason counts; later ones describe the same closing.
        if self.reason.set(reason).is_ok() {
            self.token.cancel();
        }
    }

    pub fn reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    pub async fn closed(&self) {
        self.token.cancelled().await;
    }
}

/// What a session holds to reach one connection.
#[derive(Clone, Debug)]
pub struct ConnLink {
    pub conn_id: ConnId,
    pub user_id: UserId,
    tx: mpsc::Sender<Frame>,
    closer: Arc<Closer>,
}

/// The connection's end of its queue.
#[derive(Debug)]
pub struct ConnQueue {
    pub rx: mpsc::Receiver<Frame>,
    pub closer: Arc<Closer>,
}

impl ConnLink {
    pub fn new(conn_id: ConnId, user_id: UserId) -> (Self, ConnQueue) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE_CAPACITY);
        let closer = Arc::new(Closer::default());
        (Self { conn_id, user_id, tx, closer: closer.clone() }, ConnQueue { rx, closer })
    }

    /// Queues a frame without waiting. Returns `false` when the connection is gone or was just
    /// closed as slow because its queue was full.
    pub fn try_send(&self, frame: Frame) -> bool {
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
}

/// Every connection of this node, by id: how a session reaches a connection it does not hold,
/// such as one whose join it refused, to answer its requests.
#[derive(Debug, Default)]
pub struct Connections {
    links: DashMap<ConnId, ConnLink>,
}

impl Connections {
    pub fn insert(&self, link: ConnLink) {
        self.links.insert(link.conn_id, link);
    }

    pub fn remove(&self, conn: ConnId) {
        self.links.remove(&conn);
    }

    /// The link of a connection that is still open on this node.
    pub fn get(&self, conn: ConnId) -> Option<ConnLink> {
        self.links.get(&conn).map(|link| link.clone())
    }
}
