//! Handles on sessions, wherever their actors run: a connection sends its requests through one
//! without knowing whether the session's owner is this node or another.

use std::sync::Arc;

use convene_protocol::{NodeId, SessionId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::actor::MAILBOX_CAPACITY;
use super::state::Command;
use crate::awaiting::Waiter;
use crate::bus::{Bus, BusError, Control, NodeMessage};

/// A session, owned here or on another node.
#[derive(Clone, Debug)]
pub enum SessionHandle {
    Local(LocalSession),
    Remote(RemoteSession),
}

/// A session whose actor runs on this node.
#[derive(Clone, Debug)]
pub struct LocalSession {
    pub id: SessionId,
    pub(super) generation: u64,
    tx: mpsc::Sender<Command>,
    /// Cancelled when this node lost the session's lease: the actor stops.
    pub(super) evict: CancellationToken,
}

/// A session owned by another node: commands are forwarded to it over the bus.
#[derive(Clone, Debug)]
pub struct RemoteSession {
    pub id: SessionId,
    pub owner: NodeId,
    bus: Arc<Bus>,
    /// The bus's gaps when the handle was made: after another one, what the owner sent this node
    /// may have been lost.
    gaps: u64,
}

/// Why a command did not reach its session.
#[derive(Debug, thiserror::Error)]
pub enum Undelivered {
    /// The session's actor stopped (it ended, or was released with nobody attached).
    #[error("the session's actor stopped")]
    Stopped(Box<Command>),
    /// The session's owner could not be reached.
    #[error("the session's owner could not be reached: {0}")]
    Unreachable(#[from] BusError),
}

impl SessionHandle {
    pub fn id(&self) -> SessionId {
        match self {
            Self::Local(local) => local.id,
            Self::Remote(remote) => remote.id,
        }
    }

    /// Hands a command to the session's actor: into its mailbox (waiting for room), or to its
    /// node. Only a connection's requests and departures travel to another node.
    pub async fn send(&self, command: Command) -> Result<(), Undelivered> {
        match self {
            Self::Local(local) => local.send(command).await,
            Self::Remote(remote) => remote.forward(command, 0),
        }
    }

    /// Whether what this handle's session sends this node may have been lost: its owner died,
    /// or messages for this node were lost since the handle was made. A connection holding a
    /// stale handle drops it, and its client joins again, resuming.
    pub fn is_stale(&self) -> bool {
        match self {
            Self::Local(_) => false,
            Self::Remote(remote) => !remote.bus.is_alive(remote.owner) || remote.bus.gaps() != remote.gaps,
        }
    }
}

impl LocalSession {
    pub(super) fn new(id: SessionId, generation: u64) -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        (Self { id, generation, tx, evict: CancellationToken::new() }, rx)
    }

    /// Delivers a command, waiting for room in the mailbox. Gives it back if the actor stopped.
    pub async fn send(&self, command: Command) -> Result<(), Undelivered> {
        self.tx.send(command).await.map_err(|err| Undelivered::Stopped(Box::new(err.0)))
    }
}

impl RemoteSession {
    pub fn new(id: SessionId, owner: NodeId, bus: Arc<Bus>) -> Self {
        let gaps = bus.gaps();
        Self { id, owner, bus, gaps }
    }

    /// What a connection notes about a request it sends this way now (see [`crate::awaiting`]).
    pub fn waiter(&self) -> Waiter {
        Waiter { session: self.id, owner: self.owner, gaps: self.gaps, sent: std::time::Instant::now() }
    }

    /// Forwards a connection's request or departure to the owner; `hops` counts the forwards
    /// it already went through.
    pub fn forward(&self, command: Command, hops: u8) -> Result<(), Undelivered> {
        let session = self.id;
        let control = match command {
            Command::Request { conn, identity, request } => Control::Request { session, hops, conn, identity, request },
            Command::Disconnect { conn } => Control::Disconnect { session, conn },
            Command::NodeGone { .. } | Command::RemotesLost { .. } | Command::Internal(_) => {
                tracing::error!(?command, "a session's own command cannot travel to another node");
                return Ok(());
            }
        };
        if !self.bus.is_connected() {
            // Its answer could not come back: refused here instead of lost there.
            return Err(Undelivered::Unreachable(BusError::Disconnected));
        }
        tracing::debug!(session = %self.id, owner = %self.owner, "forwarding to the session's owner");
        Ok(self.bus.send(self.owner, &NodeMessage::Control(control))?)
    }
}
