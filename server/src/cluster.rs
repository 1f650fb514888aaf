//! This node's part in a cluster: what arrives from other nodes, and the heartbeat that keeps
//! its leases and its view of the other nodes fresh.
//!
//! Three tasks. The receiver takes the bus's messages in order: deliveries go straight to this
//! node's connections (never waiting), the rest to the control task. The control task hands
//! other nodes' requests to the sessions this node owns (loading a session when a join needs it)
//! and answers those it cannot place. The heartbeat task records this node's heartbeat, renews
//! its leases, tells its sessions when a node died (its connections leave them), and tells its
//! connections when what other nodes sent them may have been lost (they are told `session_interrupted` and join again, resuming).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use convene_protocol::{ConnId, ErrorCode, NodeId, RequestId, ServerMessage, SessionId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::bus::{Bus, Control, NodeMessage, UserEventKind};
use crate::inbox::{Inboxes, UserEvent};
use crate::metrics::Metrics;
use crate::outbound::{Connections, Frame};
use crate::session::{Command, Registry, RegistryError, SessionHandle, Undelivered};

/// Messages from other nodes waiting to be read. Deliveries are read as fast as they come (they
/// only queue frames); the capacity covers the bursts of a few large sessions at once.
pub const INBOX_CAPACITY: usize = 65_536;
/// Requests and departures from other nodes waiting for the control task, which may wait on a
/// session's mailbox or load a session. When it is full the receiver waits, and the inbox fills.
const CONTROL_CAPACITY: usize = 4_096;
/// How many times a request may be passed on between nodes that each believe another owns the
/// session (leases changing hands); past it the request is answered `unavailable`.
const MAX_HOPS: u8 = 2;

/// What the cluster's tasks share.
#[derive(Debug)]
pub struct Cluster {
    pub bus: Arc<Bus>,
    pub registry: Arc<Registry>,
    pub connections: Arc<Connections>,
    pub inboxes: Arc<Inboxes>,
    pub metrics: Arc<Metrics>,
}

impl Cluster {
    /// Starts the receiver, the control task and the heartbeat on `tracker`.
    pub fn spawn(
        self: &Arc<Self>,
        inbox: mpsc::Receiver<bytes::Bytes>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        let (controls, control_queue) = mpsc::channel(CONTROL_CAPACITY);
        tracker.spawn(self.clone().receive(inbox, controls, shutdown.clone()));
        tracker.spawn(self.clone().control(control_queue));
        tracker.spawn(self.clone().heartbeat(shutdown.clone()));
    }

    async fn receive(
        self: Arc<Self>,
        mut inbox: mpsc::Receiver<bytes::Bytes>,
        controls: mpsc::Sender<Control>,
        shutdown: CancellationToken,
    ) {
        loop {
            let payload = tokio::select! {
                payload = inbox.recv() => payload,
                () = shutdown.cancelled() => None,
            };
            let Some(payload) = payload else { break };
            self.metrics.bus_received.fetch_add(1, Ordering::Relaxed);
            match NodeMessage::decode(&payload) {
                Ok(NodeMessage::Deliver { conns, frame }) => self.deliver(&conns, frame),
                // Its origin delivered it to its own inboxes.
                Ok(NodeMessage::Users { origin, .. }) if origin == self.bus.node() => {}
                Ok(NodeMessage::Users { users, kind, frame, .. }) => self.deliver_to_users(&users, kind, frame),
                Ok(NodeMessage::Control(Control::Interrupt { session, conns })) => {
                    for link in conns.iter().filter_map(|conn| self.connections.get(*conn)) {
                        link.interrupt(session);
                    }
                }
                Ok(NodeMessage::Control(control)) => {
                    if controls.send(control).await.is_err() {
                        break;
                    }
                }
                Err(err) => error!(error = %err, "an unreadable message from another node"),
            }
        }
        debug!("cluster receiver stopped");
    }

    /// Queues a frame from another node to this node's connections.
    fn deliver(&self, conns: &[ConnId], frame: bytes::Bytes) {
        let Some(frame) = Frame::from_bytes(frame) else {
            error!("a delivery from another node is not text; dropped");
            return;
        };
        let mut sent = 0;
        for conn in conns {
            match self.connections.get(*conn) {
                Some(link) if link.try_send(frame.clone()) => sent += 1,
                // Closed as slow, or already gone: its departure reaches the session on its own.
                Some(_) | None => debug!(%conn, "delivery to a connection that is gone"),
            }
        }
        self.metrics.frames_out.fetch_add(sent, Ordering::Relaxed);
    }

    /// Hands another node's user event to the inboxes of its users here.
    fn deliver_to_users(&self, users: &[convene_protocol::UserId], kind: UserEventKind, frame: bytes::Bytes) {
        let Some(frame) = Frame::from_bytes(frame) else {
            error!("a user event from another node is not text; dropped");
            return;
        };
        let event = match kind {
            UserEventKind::Message { conversation, seq } => UserEvent::Message { conversation, seq, frame },
            UserEventKind::Changed { conversation, seq } => UserEvent::Changed { conversation, seq, frame },
            UserEventKind::Other => UserEvent::Other { frame },
        };
        self.inboxes.deliver_here(users, &event);
    }

    async fn control(self: Arc<Self>, mut queue: mpsc::Receiver<Control>) {
        while let Some(control) = queue.recv().await {
            match control {
                Control::Request { session, hops, conn, identity, request } => {
                    debug!(%session, %conn, kind = request.kind(), hops, "a request from another node");
                    let request_id = request.request_id().cloned();
                    let command = Command::Request { conn, identity, request };
                    self.place(session, hops, conn, request_id, command).await;
                }
                Control::Disconnect { session, conn } => {
                    let Some(local) = self.registry.running(session) else { continue };
                    if local.send(Command::Disconnect { conn }).await.is_err() {
                        debug!(%session, %conn, "departure for a session that stopped");
                    }
                }
                Control::Interrupt { .. } => error!("an interruption reached the control task"),
            }
        }
        debug!("cluster control stopped");
    }

    /// Hands another node's request to the session's actor here, passes it on to the owner
    /// when that is yet another node, or answers it when neither works.
    async fn place(
        &self,
        session: SessionId,
        hops: u8,
        conn: ConnId,
        request_id: Option<RequestId>,
        mut command: Command,
    ) {
        let refusal = 'placed: {
            // An actor that stops just as the request arrives hands it back; the next one takes it.
            for _attempt in 0..2 {
                let handle = match self.registry.get(session).await {
                    Ok(handle) => handle,
                    Err(RegistryError::NotFound) => break 'placed (ErrorCode::NotFound, "session not found"),
                    Err(_) => break 'placed (ErrorCode::Unavailable, "the session could not be loaded; retry"),
                };
                match handle {
                    SessionHandle::Local(local) => match local.send(command).await {
                        Ok(()) => return,
                        Err(Undelivered::Stopped(returned)) => command = *returned,
                        Err(Undelivered::Unreachable(_)) => break 'placed (ErrorCode::Unavailable, "retry"),
                    },
                    SessionHandle::Remote(remote) if hops < MAX_HOPS => match remote.forward(command, hops + 1) {
                        Ok(()) => return,
                        Err(_) => break 'placed (ErrorCode::Unavailable, "the session's owner is out of reach; retry"),
                    },
                    SessionHandle::Remote(_) => {
                        break 'placed (ErrorCode::Unavailable, "the session is changing owners; retry");
                    }
                }
            }
            (ErrorCode::Unavailable, "the session is restarting; retry")
        };
        let (code, reason) = refusal;
        self.reply(conn, &ServerMessage::error(request_id, code, reason));
    }

    /// Answers a connection of another node.
    fn reply(&self, conn: ConnId, message: &ServerMessage) {
        let Some(frame) = Frame::encode(message) else { return };
        if let Err(err) = self.bus.deliver(conn.node, &[conn], frame.as_bytes()) {
            warn!(error = %err, %conn, "could not answer a connection of another node");
        }
    }

    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let timing = self.bus.timing();
        let mut beats = tokio::time::interval(timing.heartbeat_interval);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewals = tokio::time::interval(timing.lease_ttl / 3);
        renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gaps = self.bus.gaps();
        loop {
            tokio::select! {
                _ = beats.tick() => {
                    match self.bus.heartbeat().await {
                        Ok(gone) if !gone.is_empty() => self.nodes_gone(&gone).await,
                        Ok(_) => {}
                        Err(err) => warn!(error = %err, "heartbeat failed"),
                    }
                    if self.bus.gaps() != gaps {
                        gaps = self.bus.gaps();
                        self.messages_lost().await;
                    }
                }
                _ = renewals.tick() => self.renew().await,
                () = self.bus.gap() => {
                    gaps = self.bus.gaps();
                    self.messages_lost().await;
                }
                () = shutdown.cancelled() => break,
            }
        }
        debug!("cluster heartbeat stopped");
    }

    /// Tells every session here that the nodes' connections are gone, and every connection here
    /// that sessions owned there must be found again.
    async fn nodes_gone(&self, gone: &[NodeId]) {
        info!(nodes = ?gone, "nodes stopped answering; their connections leave their sessions");
        for local in self.registry.all_running() {
            for node in gone {
                if local.send(Command::NodeGone { node: *node }).await.is_err() {
                    debug!(session = %local.id, "a session stopped before hearing of a dead node");
                }
            }
        }
        self.connections.recheck_all();
        self.inboxes.forget_focus_except(&self.bus.alive()).await;
    }

    /// Messages between this node and others were lost. Connections here that rely on another
    /// node's session leave it and join again, resuming (they check their handles); sessions
    /// here let their other nodes' connections go, and those nodes tell them to join again.
    async fn messages_lost(&self) {
        warn!("messages between this node and others were lost; connections relying on them resume");
        self.connections.recheck_all();
        // Inboxes read what their users missed from the store.
        self.inboxes.resync_all();
        let here = self.bus.node();
        for local in self.registry.all_running() {
            if local.send(Command::RemotesLost { here }).await.is_err() {
                debug!(session = %local.id, "a session stopped before hearing of lost messages");
            }
        }
    }

    /// Renews the leases of the sessions this node runs. A lease found lost is taken again if
    /// nobody holds it (Redis forgot it); an actor whose lease another node holds is evicted.
    async fn renew(&self) {
        let sessions: Vec<SessionId> = self.registry.all_running().iter().map(|local| local.id).collect();
        let kept = match self.bus.renew(&sessions).await {
            Ok(kept) => kept,
            Err(err) => {
                // Redis is out of reach: nobody else can take the leases either. Keep serving.
                warn!(error = %err, "could not renew leases");
                return;
            }
        };
        for (session, kept) in sessions.into_iter().zip(kept) {
            if kept {
                continue;
            }
            match self.bus.owner(session).await {
                Ok(owner) if owner == self.bus.node() => info!(%session, "lease taken again after Redis lost it"),
                Ok(owner) => {
                    error!(%session, %owner, "another node holds this session's lease; stopping its actor here");
                    self.registry.evict(session);
                }
                Err(err) => warn!(error = %err, %session, "could not check a lost lease"),
            }
        }
    }
}
