//! Between a session and the connections it reaches. The session resolves an event's audience to
//! connection ids and hands over one encoded frame with them; the [`Outbox`] gets the frame to
//! each: queued with `try_send` to a connection of this node (never waiting on it), published
//! once per other node for all of that node's recipients.
//!
//! A session's outbox keeps the queues of its connections on this node, looked up once when they
//! attach, so a local delivery costs a map lookup and a reference-count increment, no lock. A
//! connection it does not hold (one whose join was refused, or that left) is reached through the
//! node's connection table, or its node, for the replies to its own requests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use convene_protocol::{ConnId, NodeId, ServerMessage, SessionId};
use tracing::{debug, warn};

use crate::bus::{Bus, Control, NodeMessage};
use crate::outbound::{ConnLink, Connections, Frame};

/// How one session reaches its connections.
#[derive(Debug)]
pub struct Outbox {
    connections: Arc<Connections>,
    bus: Arc<Bus>,
    attached: HashMap<ConnId, ConnLink>,
    /// Attached connections of other nodes.
    remote: HashSet<ConnId>,
    /// Recipients on other nodes of the frame being sent, by node; kept to reuse its allocations.
    by_node: HashMap<NodeId, Vec<ConnId>>,
}

impl Outbox {
    pub fn new(connections: Arc<Connections>, bus: Arc<Bus>) -> Self {
        Self { connections, bus, attached: HashMap::new(), remote: HashSet::new(), by_node: HashMap::new() }
    }

    /// Starts holding `conn`. A connection of this node that is already gone is not held:
    /// whatever is sent to it is dropped, and its departure reaches the session from its task.
    pub fn attach(&mut self, conn: ConnId) {
        if conn.node != self.bus.node() {
            self.remote.insert(conn);
        } else if let Some(link) = self.connections.get(conn) {
            self.attached.insert(conn, link);
        }
    }

    pub fn detach(&mut self, conn: ConnId) {
        if self.attached.remove(&conn).is_none() {
            self.remote.remove(&conn);
        }
    }

    /// Whether the session holds no connection at all.
    pub fn is_empty(&self) -> bool {
        self.attached.is_empty() && self.remote.is_empty()
    }

    /// Queues `frame` to each of `recipients`, returning how many took it (a recipient on
    /// another node counts once its node's message is queued). Recipients that could not take
    /// it (closed as slow, ended, or on a node the bus cannot reach now) are added to `gone`, so
    /// that the session lets them go now rather than when their tasks notice.
    pub fn send(&mut self, frame: &Frame, recipients: &[ConnId], gone: &mut Vec<ConnId>) -> u64 {
        let mut sent = 0;
        let here = self.bus.node();
        for &conn in recipients {
            if conn.node != here {
                self.by_node.entry(conn.node).or_default().push(conn);
                continue;
            }
            match self.attached.get(&conn) {
                Some(link) if link.try_send(frame.clone()) => sent += 1,
                Some(_) => gone.push(conn),
                None => match self.connections.get(conn) {
                    Some(link) if link.try_send(frame.clone()) => sent += 1,
                    Some(_) | None => debug!(%conn, "reply to a connection that is gone"),
                },
            }
        }
        for (node, conns) in &mut self.by_node {
            if conns.is_empty() {
                continue;
            }
            match self.bus.deliver(*node, conns, frame.as_bytes()) {
                Ok(()) => sent += conns.len() as u64,
                Err(err) => {
                    warn!(error = %err, %node, recipients = conns.len(), "could not reach a node; its connections leave");
                    gone.extend(conns.iter().filter(|conn| self.remote.contains(conn)));
                }
            }
            // Emptied, not dropped: the next frame fills it again without allocating.
            conns.clear();
        }
        sent
    }

    /// Lets every connection the session holds go: each is told `session_interrupted` and
    /// joins again (with whichever node owns the session by then).
    pub fn interrupt_all(&self, session: SessionId) {
        for link in self.attached.values() {
            link.interrupt(session);
        }
        self.interrupt_remote(session);
    }

    /// Lets the connections of other nodes go, as [`Outbox::interrupt_all`] does.
    pub fn interrupt_remote(&self, session: SessionId) {
        let mut by_node: HashMap<NodeId, Vec<ConnId>> = HashMap::new();
        for conn in &self.remote {
            by_node.entry(conn.node).or_default().push(*conn);
        }
        for (node, conns) in by_node {
            if let Err(err) = self.bus.send(node, &NodeMessage::Control(Control::Interrupt { session, conns })) {
                // That node's connections find out themselves: a node that cannot be reached
                // counts a gap, and its connections check their sessions.
                warn!(error = %err, %node, "could not tell a node its connections left a session");
            }
        }
    }

    /// Encodes and queues a message for one connection, held or not.
    pub fn send_one(&mut self, conn: ConnId, message: &ServerMessage) {
        if let Some(frame) = Frame::encode(message) {
            self.send(&frame, &[conn], &mut Vec::new());
        }
    }

    /// What reaches `conn` later, off the session's task (a history page read from the store).
    pub fn route(&self, conn: ConnId) -> Option<Route> {
        if conn.node != self.bus.node() {
            return Some(Route::Remote { bus: self.bus.clone(), conn });
        }
        self.attached.get(&conn).cloned().or_else(|| self.connections.get(conn)).map(Route::Local)
    }

    /// The connections of `node` the session holds.
    pub fn held_on(&self, node: NodeId) -> impl Iterator<Item = ConnId> + '_ {
        self.remote.iter().copied().filter(move |conn| conn.node == node)
    }
}

/// One connection, wherever it is.
#[derive(Debug)]
pub enum Route {
    Local(ConnLink),
    Remote { bus: Arc<Bus>, conn: ConnId },
}

impl Route {
    /// Encodes and queues a message for the connection, never waiting.
    pub fn send(&self, message: &ServerMessage) {
        match self {
            Self::Local(link) => {
                link.send(message);
            }
            Self::Remote { bus, conn } => {
                let Some(frame) = Frame::encode(message) else { return };
                if let Err(err) = bus.deliver(conn.node, &[*conn], frame.as_bytes()) {
                    warn!(error = %err, %conn, "could not reach a connection's node");
                }
            }
        }
    }
}
