//! The session actor: a task that owns one [`SessionState`] and carries out its effects.
//!
//! Everything that changes a session passes through its bounded mailbox, so changes are applied
//! one at a time in arrival order and no lock guards the state. The actor never waits on a
//! connection (frames are queued with `try_send`) and never waits on the database inside a
//! command: writes are handed to the store's writer, and their outcomes come back, in submission
//! order, as commands of their own. Fan-out happens only after commit, so every member sees a
//! room's messages in sequence order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use convene_protocol::{ClientMsgId, ConnId, RequestId, RoomId, ServerMessage};
use futures_util::stream::{FuturesOrdered, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, error, info_span, warn};

use super::state::{Command, Effect, Internal, Now, Persist, Rules, SessionState};
use super::wire::{chat_message, to_wire};
use crate::bus::Bus;
use crate::delivery::Outbox;
use crate::metrics::Metrics;
use crate::outbound::{Connections, Frame};
use crate::store::{Fence, HistoryQuery, Store, WriteFailed, WriteOp, Writer};

/// Commands waiting for one session. Commands from all of a session's connections funnel into this
/// queue; when it is full a connection waits (its own reads pause) until the actor catches up,
/// which is the back-pressure we want. 1,024 absorbs a burst from every member of a
/// 1,000-person session without pausing anyone.
pub const MAILBOX_CAPACITY: usize = 1024;

/// What every session actor needs.
#[derive(Debug)]
pub struct SessionDeps {
    pub store: Store,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    /// This node's connections, for replies to connections a session does not hold.
    pub connections: Arc<Connections>,
    /// The cluster: this node's id, leases, and the other nodes' connections.
    pub bus: Arc<Bus>,
    pub rules: Rules,
    /// The STUN and TURN servers a joining device is given, with fresh TURN credentials.
    pub ice: crate::ice::IceConfig,
    /// How long loading a session or reading history may wait for the database.
    pub db_timeout: Duration,
    /// How long an actor with no connections waits before releasing its session.
    pub idle_grace: Duration,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

type PendingWrite = Pin<Box<dyn Future<Output = Internal> + Send>>;

/// An actor that stopped: its writes are committed. Once the registry has let its session go,
/// the commands still in its mailbox are settled with [`Retiring::leftover`].
pub(super) struct Retiring {
    actor: Actor,
    pub(super) mailbox: mpsc::Receiver<Command>,
}

impl Retiring {
    /// Settles one command that arrived after the actor stopped. The departure of a connection
    /// this actor held is applied here (and recorded); anything else is handed back to go on to
    /// the session's next actor (a connection may have joined it through this mailbox), or, when
    /// the server is stopping, a request is refused as `unavailable`.
    pub(super) fn leftover(&mut self, command: Command) -> Option<Command> {
        if let Command::Disconnect { conn } = command
            && self.actor.state.holds(conn)
        {
            self.actor.handle(command);
            return None;
        }
        if !self.actor.deps.shutdown.is_cancelled() {
            return Some(command);
        }
        if let (Some(conn), request_id) = command.origin() {
            let error = ServerMessage::error(
                request_id,
                convene_protocol::ErrorCode::Unavailable,
                "the server is restarting; retry",
            );
            self.actor.outbox.send_one(conn, &error);
        }
        None
    }
}

pub(super) struct Actor {
    state: SessionState,
    /// The store's writer, fenced with this actor's token: once another owner claims the
    /// session, nothing more of this actor's is written.
    writer: Writer,
    /// Cancelled when this node lost the session's lease.
    evict: CancellationToken,
    outbox: Outbox,
    /// The recipients of the event being delivered; kept to reuse its allocation.
    recipients: Vec<ConnId>,
    deps: Arc<SessionDeps>,
    /// Writes under way, whose outcomes come back in submission order.
    pending: FuturesOrdered<PendingWrite>,
    /// Commands the actor gives itself (a slow connection's departure, a refused write).
    followups: VecDeque<Command>,
    effects: Vec<Effect>,
    stopping: bool,
}

impl Actor {
    pub(super) fn new(state: SessionState, fence: Fence, evict: CancellationToken, deps: Arc<SessionDeps>) -> Self {
        Self {
            state,
            writer: deps.writer.fenced(fence),
            evict,
            outbox: Outbox::new(deps.connections.clone(), deps.bus.clone()),
            recipients: Vec::new(),
            deps,
            pending: FuturesOrdered::new(),
            followups: VecDeque::new(),
            effects: Vec::new(),
            stopping: false,
        }
    }

    /// Runs the session until it is idle, ended or shut down, and its writes are committed;
    /// then hands itself back, with the mail it did not take, to be retired.
    pub(super) async fn run(mut self, mut mailbox: mpsc::Receiver<Command>) -> Retiring {
        let id = self.state.session().id;
        let span = info_span!("session", session_id = %id);
        async move {
            self.deps.metrics.sessions_active.fetch_add(1, Ordering::Relaxed);
            let idle = tokio::time::sleep(self.deps.idle_grace);
            // The session's own clock (breakout timers and countdowns), re-armed after every
            // command; it fires whether or not any host is still connected.
            let clock = tokio::time::sleep(self.deps.idle_grace);
            tokio::pin!(idle, clock);
            let mut idle_armed = false;
            loop {
                if self.stopping && self.pending.is_empty() {
                    break;
                }
                if self.outbox.is_empty() && !idle_armed {
                    idle.as_mut().reset(tokio::time::Instant::now() + self.deps.idle_grace);
                }
                idle_armed = self.outbox.is_empty();
                let deadline = self.state.next_deadline();
                if let Some(deadline) = deadline {
                    clock.as_mut().reset(tokio::time::Instant::from_std(deadline));
                }
                tokio::select! {
                    () = &mut clock, if deadline.is_some() => self.handle(Internal::Tick.into()),
                    Some(outcome) = self.pending.next(), if !self.pending.is_empty() => self.handle(outcome.into()),
                    mail = mailbox.recv(), if !self.stopping => match mail {
                        Some(command) => self.receive(command),
                        None => break,
                    },
                    () = &mut idle, if idle_armed && deadline.is_none() && self.pending.is_empty() && !self.stopping => {
                        debug!("idle; releasing session");
                        break;
                    }
                    () = self.evict.cancelled(), if !self.stopping => {
                        self.lose_ownership("the session's lease was lost");
                    }
                    () = self.deps.shutdown.cancelled() => {
                        if !self.stopping {
                            self.wind_down(&mut mailbox);
                        }
                        break;
                    }
                }
            }
            self.settle().await;
            self.deps.metrics.sessions_active.fetch_sub(1, Ordering::Relaxed);
            Retiring { actor: self, mailbox }
        }
        .instrument(span)
        .await
    }

    /// Sees the writes under way through, then passes a writer barrier, so that every write of
    /// this actor is committed before the next actor of the session could load it.
    async fn settle(&mut self) {
        while let Some(outcome) = self.pending.next().await {
            self.handle(outcome.into());
        }
        let (done, committed) = oneshot::channel();
        match self.writer.submit(WriteOp::Barrier { done }).await {
            Ok(()) => {
                if committed.await.is_err() {
                    warn!("the writer stopped before the session's last writes were confirmed");
                }
            }
            Err(err) => warn!(error = %err, "could not confirm the session's last writes"),
        }
    }

    /// The node is shutting down, and its connections stopped reading. The commands already
    /// here are carried out, so that their answers go out before the connections close; then
    /// this node's connections leave, recorded like any departure, while the writer still
    /// takes the records. Whatever arrives later is refused as the actor retires
    /// ([`Retiring::leftover`]).
    fn wind_down(&mut self, mailbox: &mut mpsc::Receiver<Command>) {
        for _ in 0..mailbox.len() {
            match mailbox.try_recv() {
                Ok(command) => self.receive(command),
                Err(empty_or_closed) => {
                    debug!(error = %empty_or_closed, "the mailbox emptied while winding down");
                    break;
                }
            }
        }
        self.handle(Command::NodeGone { node: self.deps.bus.node() });
    }

    fn receive(&mut self, command: Command) {
        if let Command::RemotesLost { .. } = command {
            // The state lets them go; their nodes tell them to join again, and resume.
            self.outbox.interrupt_remote(self.state.session().id);
        }
        if let (true, (Some(conn), _)) = (command.is_join(), command.origin()) {
            // The connection is held before its join runs (or waits behind a change in flight);
            // a refused join detaches it again.
            self.outbox.attach(conn);
        }
        self.handle(command);
    }

    fn handle(&mut self, command: Command) {
        self.followups.push_back(command);
        while let Some(command) = self.followups.pop_front() {
            let fenced = command.was_fenced();
            let mut effects = std::mem::take(&mut self.effects);
            self.state.apply(command, Now::current(), &mut effects);
            for effect in effects.drain(..) {
                self.carry_out(effect);
            }
            self.effects = effects;
            // After the refusal is queued, so the requester reads it before the interruption.
            if fenced && !self.stopping {
                self.lose_ownership("the session was claimed by another owner");
            }
        }
    }

    /// Another owner claimed the session: this actor may not write it any more, so it stops,
    /// and its connections are told to join again (and resume) with the session's new owner.
    /// The write that found out is answered `unavailable` by the state machine; so is every
    /// write still in flight, for the same reason.
    fn lose_ownership(&mut self, why: &'static str) {
        error!(why, "this node no longer owns the session; stopping and letting its connections go");
        self.stopping = true;
        self.outbox.interrupt_all(self.state.session().id);
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Send { to, event } => {
                let mut message = to_wire(self.state.session().id, event);
                if let ServerMessage::Joined { you, ice_servers, .. } = &mut message {
                    *ice_servers = Some(self.deps.ice.servers(you.user_id, chrono::Utc::now()));
                }
                let Some(frame) = Frame::encode(&message) else { return };
                let mut recipients = std::mem::take(&mut self.recipients);
                recipients.clear();
                self.state.resolve(&to, &mut recipients);
                let mut gone = Vec::new();
                let sent = self.outbox.send(&frame, &recipients, &mut gone);
                self.recipients = recipients;
                self.deps.metrics.frames_out.fetch_add(sent, Ordering::Relaxed);
                // A connection closed as slow (or already ended) leaves the session now, not when
                // its task notices. The connection's task counts why it closed, once.
                self.followups.extend(gone.into_iter().map(|conn| Command::Disconnect { conn }));
            }
            Effect::Persist(persist) => self.persist(persist),
            Effect::ReadHistory { conn, request_id, room, query, limit } => {
                self.read_history(conn, request_id, room, query, limit)
            }
            Effect::Detach(conn) => self.outbox.detach(conn),
            Effect::Stop => self.stopping = true,
        }
    }

    fn persist(&mut self, persist: Persist) {
        let session_id = self.state.session().id;
        let op = match persist {
            Persist::Message(message) => {
                let (room, sender) = (message.room_id, message.sender_id);
                let Some(client_msg_id) = ClientMsgId::new(message.client_msg_id.clone()) else { return };
                let (done, outcome) = oneshot::channel();
                let posted =
                    move |result| Internal::Posted { room, sender, client_msg_id: client_msg_id.clone(), result };
                match self.writer.try_submit(WriteOp::InsertMessage { message, done }) {
                    Ok(()) => self.pending.push_back(Box::pin(async move {
                        posted(outcome.await.unwrap_or(Err(WriteFailed::Unavailable)))
                    })),
                    Err(err) => {
                        warn!(error = %err, "writer refused a message");
                        self.followups.push_back(posted(Err(WriteFailed::Unavailable)).into());
                    }
                }
                return;
            }
            Persist::Edit { conn, request_id, room, message_id, editor, body, at } => {
                let (done, outcome) = oneshot::channel();
                let op = WriteOp::EditMessage { room_id: room, message_id, editor, body, at, done };
                self.submit_change(op, outcome, conn, request_id, None);
                return;
            }
            Persist::Delete { conn, request_id, room, message_id, by, any_sender, at, audit } => {
                let (done, outcome) = oneshot::channel();
                let audit = audit.map(|record| *record);
                let op =
                    WriteOp::DeleteMessage { room_id: room, message_id, deleted_by: by, any_sender, at, audit, done };
                self.submit_change(op, outcome, conn, request_id, Some(by));
                return;
            }
            Persist::ParticipantJoined { user, role, at } => {
                WriteOp::ParticipantJoined { session_id, user_id: user, role, at }
            }
            Persist::ParticipantLeft { user, at } => WriteOp::ParticipantLeft { session_id, user_id: user, at },
            Persist::SessionStarted { at } => WriteOp::SessionStarted { session_id, at },
            Persist::SessionEnded { at } => WriteOp::SessionEnded { session_id, at },
            Persist::Staged { changes } => {
                let (done, outcome) = oneshot::channel();
                let committed = |result| Internal::Committed { result };
                match self.writer.try_submit(WriteOp::Changes { changes, done: Some(done) }) {
                    Ok(()) => self.pending.push_back(Box::pin(async move {
                        committed(outcome.await.unwrap_or(Err(WriteFailed::Unavailable)))
                    })),
                    Err(err) => {
                        error!(error = %err, "writer refused a change of rooms");
                        self.deps.metrics.write_failures.fetch_add(1, Ordering::Relaxed);
                        self.followups.push_back(committed(Err(WriteFailed::Unavailable)).into());
                    }
                }
                return;
            }
            Persist::Bookkeeping { changes } => WriteOp::Changes { changes, done: None },
        };
        // Bookkeeping is not acknowledged to anyone, so it is not worth stalling the session
        // for; a full queue loses it, loudly.
        if let Err(err) = self.writer.try_submit(op) {
            self.deps.metrics.write_failures.fetch_add(1, Ordering::Relaxed);
            error!(error = %err, "bookkeeping write dropped: the writer's queue is full or closed");
        }
    }

    fn submit_change(
        &mut self,
        op: WriteOp,
        outcome: oneshot::Receiver<Result<crate::store::EditOutcome, WriteFailed>>,
        conn: ConnId,
        request_id: Option<RequestId>,
        deleted_by: Option<convene_protocol::UserId>,
    ) {
        let changed = move |result| Internal::Changed { conn, request_id, deleted_by, result };
        match self.writer.try_submit(op) {
            Ok(()) => self
                .pending
                .push_back(Box::pin(async move { changed(outcome.await.unwrap_or(Err(WriteFailed::Unavailable))) })),
            Err(_) => self.followups.push_back(changed(Err(WriteFailed::Unavailable)).into()),
        }
    }

    /// Reads a page of history off the actor's task and queues it straight to the connection:
    /// reads need no ordering with the session's other events beyond what the client asked.
    fn read_history(&self, conn: ConnId, request_id: Option<RequestId>, room: RoomId, query: HistoryQuery, limit: u32) {
        let Some(route) = self.outbox.route(conn) else {
            debug!(%conn, "history read for a connection that is gone");
            return;
        };
        let store = self.deps.store.clone();
        let session_id = self.state.session().id;
        let bound = self.deps.db_timeout;
        self.deps.tracker.spawn(async move {
            let reply = match Store::within(bound, store.history(room, query, limit)).await {
                Ok(page) => ServerMessage::History {
                    request_id,
                    session_id,
                    room_id: room,
                    messages: page.messages.iter().map(chat_message).collect(),
                    has_more: page.has_more,
                },
                Err(err) => {
                    warn!(error = %err, %room, "history read failed");
                    ServerMessage::error(
                        request_id,
                        convene_protocol::ErrorCode::Unavailable,
                        "history is unavailable; retry",
                    )
                }
            };
            route.send(&reply);
        });
    }
}
