//! Finds the actor of a session, loading the session and starting its actor on first use.
//!
//! The registry only maps ids to handles; it never holds session state. Its lock guards a map
//! lookup and is never held across an `.await`: concurrent first uses of one session wait on a
//! per-session cell instead, so a session is loaded once and has at most one actor.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use convene_protocol::{RoomId, SessionId};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actor::{Actor, SessionHandle};
use super::state::{Loaded, MAIN_ROOM_NAME, Rules, SessionState};
use crate::chat::RoomChat;
use crate::metrics::Metrics;
use crate::outbound::Connections;
use crate::rooms::Breakout;
use crate::store::{HistoryQuery, Store, StoreError, Writer};

/// What every session actor needs.
#[derive(Debug)]
pub struct SessionDeps {
    pub store: Store,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    /// This node's connections, for replies to connections a session does not hold.
    pub connections: Arc<Connections>,
    pub rules: Rules,
    /// How long loading a session or reading history may wait for the database.
    pub db_timeout: Duration,
    /// How long an actor with no connections waits before releasing its session.
    pub idle_grace: Duration,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("session not found")]
    NotFound,
    #[error("the session could not be loaded: {0}")]
    Store(#[from] StoreError),
}

type Slot = Arc<OnceCell<SessionHandle>>;

#[derive(Debug)]
pub struct Registry {
    slots: Mutex<HashMap<SessionId, Slot>>,
    deps: Arc<SessionDeps>,
    generations: AtomicU64,
}

impl Registry {
    pub fn new(deps: SessionDeps) -> Arc<Self> {
        Arc::new(Self { slots: Mutex::new(HashMap::new()), deps: Arc::new(deps), generations: AtomicU64::new(0) })
    }

    /// The running actor of `id`, started if needed.
    pub async fn get(self: &Arc<Self>, id: SessionId) -> Result<SessionHandle, RegistryError> {
        let slot = self.lock().entry(id).or_default().clone();
        let loaded = slot.get_or_try_init(|| self.start(id)).await.cloned();
        if let Err(RegistryError::Store(err)) = &loaded {
            tracing::warn!(error = %err, session_id = %id, "session load failed");
        }
        if loaded.is_err() {
            // Failures are not cached: the next use tries again.
            let mut slots = self.lock();
            if slots.get(&id).is_some_and(|current| Arc::ptr_eq(current, &slot)) {
                slots.remove(&id);
            }
        }
        loaded
    }

    /// Called by an actor as it stops, so that later uses start a new one.
    pub(super) fn retire(&self, id: SessionId, generation: u64) {
        let mut slots = self.lock();
        if slots.get(&id).and_then(|slot| slot.get()).is_some_and(|handle| handle.generation == generation) {
            slots.remove(&id);
        }
    }

    /// Loads the session and spawns its actor. The future is boxed with its `Send` bound
    /// spelled out because an actor may call back into [`Registry::get`] as it retires; without
    /// the box, the compiler would need each future's type to infer the other's.
    fn start(
        self: &Arc<Self>,
        id: SessionId,
    ) -> Pin<Box<dyn Future<Output = Result<SessionHandle, RegistryError>> + Send>> {
        let registry = self.clone();
        Box::pin(async move {
            let limit = registry.deps.db_timeout;
            match tokio::time::timeout(limit, registry.clone().load_and_spawn(id)).await {
                Ok(loaded) => loaded,
                Err(_elapsed) => Err(RegistryError::Store(StoreError::TimedOut)),
            }
        })
    }

    async fn load_and_spawn(self: Arc<Self>, id: SessionId) -> Result<SessionHandle, RegistryError> {
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
        let loaded = Loaded { session, participants, main_chat, open_rooms, closed_rooms, transitions };
        let state = SessionState::new(loaded, self.deps.rules);
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let (handle, mailbox) = SessionHandle::new(id, state.session().organization_id, generation);
        let actor = Actor::new(state, self.deps.clone(), self.clone(), generation);
        self.deps.tracker.spawn(actor.run(mailbox));
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Slot>> {
        // The map stays consistent even if a holder panicked: every critical section is a single
        // insert, lookup or remove.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
