//! Inboxes: how a user's conversation messages, receipts and notifications reach every device
//! of theirs, on whichever node each is connected.
//!
//! The store is the sequencer: a conversation's messages are numbered in the transaction that
//! stores them, under the conversation's row lock, so a message is committed only after every
//! message before it. Whoever committed a change publishes it once ([`Inboxes::publish`]): to
//! the users' inboxes on this node, and in one bus message to each other live node, which hands
//! it to its own. There is no owner per user, so no lease, no takeover and no hop.
//!
//! On each node, every user with a device there has an [`Inbox`]. Until the user is first sent
//! something it only holds their devices and where their conversations stood when the first one
//! attached (most users connected are never sent anything, and a waiting inbox costs no task and
//! no queue). From then on it is a task that owns the user's devices and their positions in each
//! conversation. It delivers a message once and in order to each device: one it already passed
//! is skipped; one that arrives ahead of a missing one (two senders on two nodes publish in the
//! order their commits finished, not their numbers) makes it read the missing ones from the
//! store first, which is always possible because they committed first. When messages between
//! nodes may have been lost (a gap on the bus) or its mailbox overflowed, an inbox reads what it
//! missed from the store by itself; a waiting inbox starts its task for that only if something
//! it was not sent was committed meanwhile ([`catch_up`]).

mod catch_up;
mod hub;
pub mod policy;
mod requests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use convene_protocol::{ConnId, ConversationId, ConversationView, NodeId, SyncConversations, UserId};
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::auth::Identity;
use crate::bus::{Bus, NodeMessage};
use crate::limits::Ledger;
use crate::metrics::Metrics;
use crate::outbound::{ConnLink, Frame};
use crate::store::{Store, Writer};
pub use requests::{Caller, DirectBudgets, DirectError, handle};

/// Commands waiting for one user's inbox on this node: deliveries and the requests of their
/// devices. A burst of several hundred messages fits; past it deliveries are not queued but the
/// inbox is marked behind and reads what it missed from the store.
const INBOX_CAPACITY: usize = 512;

/// How often a connection tries to attach before giving up. It races an inbox's end at most
/// once (the inbox started after that is its own), so failing again means the node is going
/// away and no inbox will take it.
const ATTACH_ATTEMPTS: usize = 3;

/// Why a connection could not attach to its user's inbox.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// What a user's devices are told.
#[derive(Clone, Debug)]
pub enum UserEvent {
    /// A conversation's new message `seq`: delivered in sequence order, once per device.
    Message { conversation: ConversationId, seq: i64, frame: Frame },
    /// A change to message `seq` (an edit, a deletion): delivered after the message itself.
    Changed { conversation: ConversationId, seq: i64, frame: Frame },
    /// Anything else: receipts, typing, archiving, notifications, a new conversation.
    Other { frame: Frame },
}

/// What an inbox's task is asked to do. Payloads are boxed to keep the command at 24 bytes: a
/// mailbox allocates its first block of 32 slots when it is made.
#[derive(Debug)]
enum HubCommand {
    Attach(Box<Attach>),
    Detach(ConnId),
    Deliver(Box<UserEvent>),
    Sync(Box<SyncRequest>),
    /// Messages may have been lost: read what was missed from the store.
    Resync,
    /// Answered once every command queued before it was handled.
    Barrier(oneshot::Sender<()>),
}

const _: () = assert!(std::mem::size_of::<HubCommand>() <= 24, "allocated per running inbox");

/// A device joining the inbox. Answered once the device is in; an inbox that ended first drops
/// `attached` unanswered, and the connection tries the user's next inbox.
#[derive(Debug)]
struct Attach {
    link: ConnLink,
    attached: oneshot::Sender<()>,
}

/// A device catching up on its conversations.
#[derive(Debug)]
struct SyncRequest {
    conn: ConnId,
    request: SyncConversations,
}

/// One user's inbox on this node, as its connections hold it.
#[derive(Debug)]
pub struct Inbox {
    user: UserId,
    /// Where the inbox's work happens. Locked only to look or to change, never across an await.
    state: Mutex<State>,
    /// Set when a delivery found the mailbox full: the inbox catches up from the store.
    behind: AtomicBool,
    /// The user's budgets for conversations, shared by their connections on this node.
    budgets: Mutex<Ledger<requests::DirectSpend>>,
    /// Conversations this user is known to be a member of (membership never changes). Only the
    /// user's own connections here touch it, and a map allocates nothing until its first entry,
    /// which matters with an inbox for every user connected.
    known: Mutex<HashMap<ConversationId, ConversationView>>,
}

/// An inbox's life: waiting with no task until its user is sent something (or a device asks it
/// to sync), then running, until its last device leaves.
#[derive(Debug)]
enum State {
    Waiting(Waiting),
    /// Its task runs; a closed mailbox means the task ended.
    Running(mpsc::Sender<HubCommand>),
    /// Its last device left while it was waiting.
    Ended,
}

/// What a waiting inbox holds for its task.
#[derive(Debug)]
struct Waiting {
    devices: Vec<ConnLink>,
    /// Where each of the user's conversations stood, read after the inbox was in the registry
    /// (so anything committed later is published to it); `None` until read, or if reading failed,
    /// and then the task reads it itself before anything else.
    positions: Option<HashMap<ConversationId, i64>>,
}

/// Where a device joining an inbox stands.
enum Joined {
    /// It is in: the inbox was waiting.
    In,
    /// The inbox's task takes it.
    Ask(mpsc::Sender<HubCommand>),
    /// The inbox ended; the user's next one takes it.
    Ended,
}

impl Inbox {
    fn new(user: UserId, first: ConnLink) -> Self {
        Self {
            user,
            // Most users have one device on a node; a vector's first growth would hold four.
            state: Mutex::new(State::Waiting(Waiting { devices: vec![first], positions: None })),
            behind: AtomicBool::new(false),
            budgets: Mutex::new(Ledger::default()),
            known: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The conversation, if this user is known to be one of its members.
    fn known(&self, id: ConversationId) -> Option<ConversationView> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }

    /// Remembers that this user is a member of the conversation.
    fn remember(&self, view: &ConversationView) {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).insert(view.id, view.clone());
    }

    fn join(&self, link: ConnLink) -> Joined {
        match &mut *self.state() {
            State::Waiting(waiting) => {
                waiting.devices.push(link);
                Joined::In
            }
            State::Running(tx) => Joined::Ask(tx.clone()),
            State::Ended => Joined::Ended,
        }
    }

    /// Keeps where the user's conversations stood, for the task, unless it started and read
    /// them itself.
    fn loaded(&self, positions: HashMap<ConversationId, i64>) {
        if let State::Waiting(waiting) = &mut *self.state() {
            waiting.positions.get_or_insert(positions);
        }
    }

    /// The inbox's mailbox, starting its task if it was waiting; `None` once it ended.
    fn mailbox(self: &Arc<Self>, inboxes: &Arc<Inboxes>) -> Option<mpsc::Sender<HubCommand>> {
        let mut state = self.state();
        match std::mem::replace(&mut *state, State::Ended) {
            State::Running(tx) => {
                *state = State::Running(tx.clone());
                Some(tx)
            }
            State::Ended => None,
            State::Waiting(waiting) => {
                let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
                *state = State::Running(tx.clone());
                inboxes.metrics.inbox_tasks.fetch_add(1, Ordering::Relaxed);
                inboxes.tracker.spawn(hub::run(inboxes.clone(), self.clone(), rx, waiting));
                Some(tx)
            }
        }
    }

    /// Queues a delivery without waiting; a full mailbox makes the inbox catch up instead.
    fn deliver(self: &Arc<Self>, inboxes: &Arc<Inboxes>, event: UserEvent) {
        let Some(tx) = self.mailbox(inboxes) else {
            debug!(user_id = %self.user, "delivery to an inbox that ended");
            return;
        };
        match tx.try_send(HubCommand::Deliver(Box::new(event))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(user_id = %self.user, "inbox full; it will read what it missed from the store");
                self.behind.store(true, Ordering::Release);
                // The resync is queued behind whatever fills the mailbox, when there is room.
                if tx.try_send(HubCommand::Resync).is_err() {
                    debug!(user_id = %self.user, "resync already pending behind a full inbox");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!(user_id = %self.user, "delivery to an inbox that ended")
            }
        }
    }

    fn spend(&self, spend: requests::DirectSpend, budget: crate::limits::Budget) -> bool {
        self.budgets.lock().unwrap_or_else(PoisonError::into_inner).try_spend(spend, budget, std::time::Instant::now())
    }
}

/// Every inbox on this node, by user, and the way to everyone else's: one message on the
/// cluster's channel that every node hears (a node that just started has no device yet, and one
/// subscribed before serving; so no node with a device of the user can miss it, short of a gap).
#[derive(Debug)]
pub struct Inboxes {
    users: DashMap<UserId, Arc<Inbox>>,
    store: Store,
    writer: Writer,
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    db_timeout: Duration,
    budgets: DirectBudgets,
    /// Passes over the waiting inboxes after gaps on the bus, one at a time.
    catch_up: Mutex<catch_up::Passes>,
}

impl Inboxes {
    pub fn new(
        store: Store,
        writer: Writer,
        bus: Arc<Bus>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        db_timeout: Duration,
        budgets: DirectBudgets,
    ) -> Arc<Self> {
        Arc::new(Self {
            users: DashMap::new(),
            store,
            writer,
            bus,
            metrics,
            tracker: TaskTracker::new(),
            shutdown,
            db_timeout,
            budgets,
            catch_up: Mutex::default(),
        })
    }

    /// Attaches a connection to its user's inbox here, making one if it is the user's first
    /// connection on this node; then the user is known to others for conversations, with what
    /// their token says (their organization and role) unless the backend set a profile.
    ///
    /// Fails only when the node is shutting down: then the connection closes, to reconnect to
    /// another node.
    pub async fn attach(self: &Arc<Self>, link: ConnLink, identity: &Identity) -> Result<Arc<Inbox>, AttachError> {
        let user = link.user_id;
        for _ in 0..ATTACH_ATTEMPTS {
            if self.shutdown.is_cancelled() {
                break;
            }
            let (inbox, first) = match self.users.entry(user) {
                dashmap::Entry::Occupied(entry) => (entry.get().clone(), false),
                dashmap::Entry::Vacant(entry) => (entry.insert(Arc::new(Inbox::new(user, link.clone()))).clone(), true),
            };
            if first {
                self.metrics.inboxes_active.fetch_add(1, Ordering::Relaxed);
                // Both before the connection is told it is in: that others can reach the user,
                // and where the inbox starts delivering from (read after it is in the registry,
                // so that whatever commits later is published to it).
                let ((), positions) = tokio::join!(self.make_known(user, identity), self.positions(user));
                if let Some(positions) = positions {
                    inbox.loaded(positions);
                }
                return Ok(inbox);
            }
            match inbox.join(link.clone()) {
                Joined::In => return Ok(inbox),
                Joined::Ask(tx) => {
                    let (attached, answer) = oneshot::channel();
                    let sent = tx.send(HubCommand::Attach(Box::new(Attach { link: link.clone(), attached }))).await;
                    if sent.is_ok() && answer.await.is_ok() {
                        return Ok(inbox);
                    }
                }
                Joined::Ended => {}
            }
            // It ended just now; the next one takes the connection.
            self.users.remove_if(&user, |_, current| Arc::ptr_eq(current, &inbox));
        }
        Err(AttachError::ShuttingDown)
    }

    /// Makes the user known for conversations as their token describes them, unless they are
    /// already.
    async fn make_known(&self, user: UserId, identity: &Identity) {
        let Some(organization) = identity.organization_id else { return };
        let kind = policy::kind_of_role(identity.role);
        let register = self.store.register_chat_profile(user, organization, kind, chrono::Utc::now());
        if let Err(err) = Store::within(self.db_timeout, register).await {
            warn!(error = %err, user_id = %user, "could not make the user known for conversations");
        }
    }

    /// Where each of the user's conversations stands; `None` if it could not be read, and then
    /// the inbox's task reads it when it starts.
    async fn positions(&self, user: UserId) -> Option<HashMap<ConversationId, i64>> {
        match Store::within(self.db_timeout, self.store.conversation_positions(user)).await {
            Ok(positions) => Some(positions.into_iter().collect()),
            Err(err) => {
                warn!(error = %err, user_id = %user, "could not read conversation positions; retrying later");
                None
            }
        }
    }

    /// Detaches a connection that closed.
    pub async fn detach(&self, inbox: &Arc<Inbox>, conn: ConnId) {
        let tx = {
            let mut state = inbox.state();
            match &mut *state {
                State::Running(tx) => tx.clone(),
                State::Waiting(waiting) => {
                    waiting.devices.retain(|device| device.conn_id != conn);
                    if waiting.devices.is_empty() {
                        *state = State::Ended;
                        drop(state);
                        self.users.remove_if(&inbox.user, |_, current| Arc::ptr_eq(current, inbox));
                        self.metrics.inboxes_active.fetch_sub(1, Ordering::Relaxed);
                        debug!(user_id = %inbox.user, "inbox ended before it was sent anything");
                    }
                    return;
                }
                State::Ended => {
                    debug!(%conn, "detach from an inbox that ended");
                    return;
                }
            }
        };
        if tx.send(HubCommand::Detach(conn)).await.is_err() {
            debug!(%conn, "detach from an inbox that ended");
        }
    }

    /// Returns once the inbox handled everything queued to it so far, such as a connection's
    /// `sync_conversations`, whose answer is then queued to the connection.
    pub async fn settle(&self, inbox: &Arc<Inbox>) {
        let tx = match &*inbox.state() {
            State::Running(tx) => tx.clone(),
            // No task: nothing is queued to it.
            State::Waiting(_) | State::Ended => return,
        };
        let (done, handled) = oneshot::channel();
        if tx.send(HubCommand::Barrier(done)).await.is_err() || handled.await.is_err() {
            debug!(user_id = %inbox.user, "settled with an inbox that ended");
        }
    }

    /// Tells `users`' devices, here and on every other live node. Called only after the change
    /// committed.
    pub fn publish(self: &Arc<Self>, users: &[UserId], event: &UserEvent) {
        if self.bus.is_clustered() {
            let message = NodeMessage::users(self.bus.node(), users, event);
            if let Err(err) = self.bus.send_all(&message) {
                // Lost for the other nodes: a gap, after which their inboxes catch up.
                warn!(error = %err, "could not tell the other nodes of a user event");
            }
        }
        self.deliver_here(users, event);
    }

    /// Hands an event to the inboxes of `users` on this node (those with a device here).
    pub fn deliver_here(self: &Arc<Self>, users: &[UserId], event: &UserEvent) {
        for user in users {
            if let Some(inbox) = self.users.get(user).map(|inbox| inbox.clone()) {
                inbox.deliver(self, event.clone());
            }
        }
    }

    /// Forgets which conversations the devices of nodes other than `alive` were looking at.
    pub async fn forget_focus_except(&self, alive: &[NodeId]) {
        match crate::store::Store::within(self.db_timeout, self.store.clear_focus_except(alive)).await {
            Ok(cleared) if cleared > 0 => debug!(cleared, "forgot the focus of devices of nodes that are gone"),
            Ok(_) => {}
            Err(err) => warn!(error = %err, "could not forget the focus of devices of nodes that are gone"),
        }
    }

    /// Waits for every inbox to end (after the connections did).
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}
