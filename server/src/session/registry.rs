//! Finds a session's owner: this node's actor of it (taking the session's lease and loading it
//! on first use, when nobody owns it), or another node. Releases an actor when it stops
//! (forwarding joins that raced the release to the next one).
//!
//! The registry only maps ids to handles; it never holds session state. Its map is concurrent and
//! no lock is held across an `.await`: concurrent first uses of one session wait on a
//! per-session cell instead, so a session is loaded once and has at most one actor per node (and,
//! by its lease, one in the cluster).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use convene_protocol::{RoomId, SessionId};
use dashmap::DashMap;
use tokio::sync::{OnceCell, mpsc};
use tracing::{Instrument as _, info_span, warn};

use super::actor::{Actor, SessionDeps};
use super::handle::{LocalSession, RemoteSession, SessionHandle};
use super::state::{Command, Loaded, MAIN_ROOM_NAME, SessionState};
use crate::bus::BusError;
use crate::chat::RoomChat;
use crate::rooms::Breakout;
use crate::store::{HistoryQuery, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("session not found")]
    NotFound,
    #[error("the session could not be loaded: {0}")]
    Store(#[from] StoreError),
    #[error("the session's owner could not be found: {0}")]
    Bus(#[from] BusError),
}

type Slot = Arc<OnceCell<LocalSession>>;

/// The sessions this node runs, and the way to every other session's owner.
#[derive(Debug)]
pub struct Registry {
    /// Sessions whose actors run here (or are being loaded). Shared by every connection, so a
    /// concurrent map: lookups of different sessions never wait on each other.
    slots: DashMap<SessionId, Slot>,
    deps: Arc<SessionDeps>,
    generations: AtomicU64,
}

impl Registry {
    pub fn new(deps: SessionDeps) -> Arc<Self> {
        Arc::new(Self { slots: DashMap::new(), deps: Arc::new(deps), generations: AtomicU64::new(0) })
    }

    /// The session `id`, wherever it is owned: its actor here (started, after taking its lease,
    /// if nobody owned it), or its owner on another node.
    pub async fn get(self: &Arc<Self>, id: SessionId) -> Result<SessionHandle, RegistryError> {
        if let Some(local) = self.running(id) {
            return Ok(SessionHandle::Local(local));
        }
        let owner = self.deps.bus.owner(id).await.inspect_err(|err| {
            warn!(error = %err, session_id = %id, "could not find the session's owner");
        })?;
        if owner != self.deps.bus.node() {
            return Ok(SessionHandle::Remote(RemoteSession::new(id, owner, self.deps.bus.clone())));
        }
        self.local(id).await.map(SessionHandle::Local)
    }

    /// The session's actor on this node, if it runs here.
    pub fn running(&self, id: SessionId) -> Option<LocalSession> {
        self.slots.get(&id).and_then(|slot| slot.get().cloned())
    }

    /// Every actor running on this node.
    pub fn all_running(&self) -> Vec<LocalSession> {
        self.slots.iter().filter_map(|slot| slot.get().cloned()).collect()
    }

    /// Stops the actor of a session whose lease this node lost.
    pub fn evict(&self, id: SessionId) {
        if let Some(local) = self.running(id) {
            local.evict.cancel();
        }
    }

    /// The session's actor on this node, started if needed. The caller holds its lease.
    async fn local(self: &Arc<Self>, id: SessionId) -> Result<LocalSession, RegistryError> {
        let slot = self.slots.entry(id).or_default().clone();
        let loaded = slot.get_or_try_init(|| self.start(id)).await.cloned();
        if let Err(RegistryError::Store(err)) = &loaded {
            warn!(error = %err, session_id = %id, "session load failed");
        }
        if loaded.is_err() {
            // Failures are not cached: the next use tries again.
            self.slots.remove_if(&id, |_, current| Arc::ptr_eq(current, &slot));
        }
        loaded
    }

    /// Runs an actor to its end, then lets its session go and settles the commands that raced
    /// its departure: departures of its own connections are applied by it, the rest go on to the
    /// session's next actor (here or on the node that owns the session now).
    async fn run_actor(
        self: Arc<Self>,
        actor: Actor,
        mailbox: mpsc::Receiver<Command>,
        id: SessionId,
        generation: u64,
    ) {
        let mut retiring = actor.run(mailbox).await;
        async move {
            self.retire(id, generation);
            retiring.mailbox.close();
            while let Some(command) = retiring.mailbox.recv().await {
                let Some(onward) = retiring.leftover(command) else { continue };
                match self.get(id).await {
                    Ok(next) => {
                        if let Err(err) = next.send(onward).await {
                            warn!(error = %err, "the session's next actor did not take a forwarded command");
                        }
                    }
                    Err(err) => warn!(error = %err, "could not forward a command to the session's next actor"),
                }
            }
        }
        .instrument(info_span!("session", session_id = %id))
        .await;
    }

    /// Lets a stopped actor's session go, so that later uses start a new one. Its lease is left
    /// to run out: until then, requests from other nodes still come here and load it again.
    fn retire(&self, id: SessionId, generation: u64) {
        self.slots.remove_if(&id, |_, slot| slot.get().is_some_and(|local| local.generation == generation));
    }

    /// Loads the session and spawns its actor. The future is boxed with its `Send` bound
    /// spelled out because a retiring actor's leftover joins call back into [`Registry::get`]; without
    /// the box, the compiler would need each future's type to infer the other's.
    fn start(
        self: &Arc<Self>,
        id: SessionId,
    ) -> Pin<Box<dyn Future<Output = Result<LocalSession, RegistryError>> + Send>> {
        let registry = self.clone();
        Box::pin(async move {
            let limit = registry.deps.db_timeout;
            match tokio::time::timeout(limit, registry.clone().load_and_spawn(id)).await {
                Ok(loaded) => loaded,
                Err(_elapsed) => Err(RegistryError::Store(StoreError::TimedOut)),
            }
        })
    }

    async fn load_and_spawn(self: Arc<Self>, id: SessionId) -> Result<LocalSession, RegistryError> {
        // Claimed before it is read: the claim fences off any earlier owner, and waits for a
        // transaction of theirs that is committing, so the load below sees all they wrote.
        let claimed = self.deps.store.claim_session(id, self.deps.bus.node(), chrono::Utc::now()).await?;
        let fence = claimed.ok_or(RegistryError::NotFound)?;
        let (session, participants) = self.deps.store.load_session(id).await?.ok_or(RegistryError::NotFound)?;
        let main_room = RoomId::from(id);
        let main_chat = self.room_chat(main_room, MAIN_ROOM_NAME.to_owned()).await?;
        let mut open_rooms = Vec::new();
        for room in self.deps.store.active_breakout_rooms(id).await? {
            let chat = self.room_chat(room.id, room.room_name.clone()).await?;
            let breakout = Breakout {
                name: room.room_name,
                max_participants: room.max_participants,
                mode: room.assignment_mode,
                created_by: room.created_by,
                created_at: room.created_at,
                ends: None,
                closes: None,
                closing_by: None,
            };
            open_rooms.push((chat, breakout));
        }
        let closed_rooms = self.deps.store.closed_breakout_rooms(id).await?;
        let transitions = self.deps.store.transitions(id).await?;
        // The claim's token grows with every load of the session: it tells this load's roster
        // versions from every earlier one's.
        let epoch = u64::try_from(fence.token).unwrap_or_default();
        let loaded = Loaded { epoch, session, participants, main_chat, open_rooms, closed_rooms, transitions };
        let state = SessionState::new(loaded, self.deps.rules);
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let (handle, mailbox) = LocalSession::new(id, generation);
        let actor = Actor::new(state, fence, handle.evict.clone(), self.deps.clone());
        self.deps.tracker.spawn(self.clone().run_actor(actor, mailbox, id, generation));
        Ok(handle)
    }

    /// A room's chat as it stands in the store: its latest sequence and its resume window.
    async fn room_chat(&self, room: RoomId, name: String) -> Result<RoomChat, RegistryError> {
        let last_seq = self.deps.store.last_seq(room).await?;
        let window = u32::try_from(self.deps.rules.chat.resume_window).unwrap_or(u32::MAX);
        let recent = if window > 0 {
            self.deps.store.history(room, HistoryQuery::Latest, window).await?.messages
        } else {
            Vec::new()
        };
        Ok(RoomChat::new(room, name, last_seq, recent, self.deps.rules.chat.resume_window))
    }
}
