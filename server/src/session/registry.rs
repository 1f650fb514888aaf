//! Finds the actor of a session, loading the session and starting its actor on first use, and
//! releases the actor when it stops (forwarding joins that raced the release to the next one).
//!
//! The registry only maps ids to handles; it never holds session state. Its lock guards a map
//! lookup and is never held across an `.await`: concurrent first uses of one session wait on a
//! per-session cell instead, so a session is loaded once and has at most one actor.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use convene_protocol::{RoomId, SessionId};
use tokio::sync::{OnceCell, mpsc};
use tracing::{Instrument as _, info_span, warn};

use super::actor::{Actor, Mail, SessionDeps, SessionHandle};
use super::state::{Loaded, MAIN_ROOM_NAME, SessionState};
use crate::chat::RoomChat;
use crate::rooms::Breakout;
use crate::store::{HistoryQuery, StoreError};

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
            warn!(error = %err, session_id = %id, "session load failed");
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

    /// Runs an actor to its end, then lets its session go and settles the mail that raced its
    /// departure: joins go on to the session's next actor, departures are applied by the old one.
    async fn run_actor(self: Arc<Self>, actor: Actor, mailbox: mpsc::Receiver<Mail>, id: SessionId, generation: u64) {
        let mut retiring = actor.run(mailbox).await;
        async move {
            self.retire(id, generation);
            retiring.mailbox.close();
            while let Some(mail) = retiring.mailbox.recv().await {
                let Some(join) = retiring.leftover(mail) else { continue };
                match self.get(id).await {
                    Ok(next) => {
                        if next.send(join).await.is_err() {
                            warn!("the session's next actor stopped before a forwarded join");
                        }
                    }
                    Err(err) => warn!(error = %err, "could not forward a join to the session's next actor"),
                }
            }
        }
        .instrument(info_span!("session", session_id = %id))
        .await;
    }

    /// Lets a stopped actor's session go, so that later uses start a new one.
    fn retire(&self, id: SessionId, generation: u64) {
        let mut slots = self.lock();
        if slots.get(&id).and_then(|slot| slot.get()).is_some_and(|handle| handle.generation == generation) {
            slots.remove(&id);
        }
    }

    /// Loads the session and spawns its actor. The future is boxed with its `Send` bound
    /// spelled out because a retiring actor's leftover joins call back into [`Registry::get`]; without
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
        let actor = Actor::new(state, self.deps.clone());
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Slot>> {
        // The map stays consistent even if a holder panicked: every critical section is a single
        // insert, lookup or remove.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
