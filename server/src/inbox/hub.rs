//! One user's inbox on one node: a task owning the user's devices here and their positions in
//! each conversation, so that every device gets each message once and in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use convene_protocol::{ConnId, ConversationId, DirectMessage, ServerMessage, SyncConversations, SyncOutcome, UserId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Attach, HubCommand, Inbox, Inboxes, UserEvent, Waiting};
use crate::outbound::{ConnLink, Frame};
use crate::store::{Store, StoreError};

/// Most messages an inbox reads from the store to fill one hole, or replays to a syncing device
/// per conversation; past it the device is told to page (`conversation_gap`, or `gap` in the
/// sync's outcome).
pub const RESUME_WINDOW: u32 = 200;

/// How long a message that arrived ahead of the one before it is held back, waiting for it,
/// before the inbox reads the missing one from the store. Two senders' messages that committed
/// in one batch are published by their own requests, in whichever order those run, so the one
/// before is usually a moment behind; reading it from the store for every such pair costs the
/// database a query each under load. Short next to the delivery latency people notice.
const HOLD_BACK: std::time::Duration = std::time::Duration::from_millis(50);

/// A device and where it is ahead of the inbox: conversations it synced past the inbox's own
/// position (it has those messages already).
#[derive(Debug)]
struct Device {
    link: ConnLink,
    ahead: HashMap<ConversationId, i64>,
}

#[derive(Debug)]
struct Hub {
    user: UserId,
    devices: Vec<Device>,
    /// The last message delivered to the devices, per conversation: from the store when the
    /// inbox started, then from each delivery.
    positions: HashMap<ConversationId, i64>,
    /// Whether `positions` was read from the store; until it is, unknown conversations start
    /// at their first delivery.
    loaded: bool,
    /// Messages that arrived ahead of the one before them, per conversation, by sequence.
    held: HashMap<ConversationId, BTreeMap<i64, Frame>>,
    /// When the held messages stop waiting (set while any are held).
    hold_until: Option<Instant>,
    store: Store,
    db_timeout: std::time::Duration,
}

pub(super) async fn run(
    inboxes: Arc<Inboxes>,
    inbox: Arc<Inbox>,
    mut rx: mpsc::Receiver<HubCommand>,
    waiting: Waiting,
) {
    let Waiting { devices, positions } = waiting;
    let mut hub = Hub {
        user: inbox.user,
        devices: devices.into_iter().map(|link| Device { link, ahead: HashMap::new() }).collect(),
        loaded: positions.is_some(),
        positions: positions.unwrap_or_default(),
        held: HashMap::new(),
        hold_until: None,
        store: inboxes.store.clone(),
        db_timeout: inboxes.db_timeout,
    };
    // Each step's work is boxed: the task holds only the waiting between commands, not the
    // largest store read it might make.
    loop {
        let command = tokio::select! {
            // Held messages stop waiting on time, however busy the mailbox; a device that
            // attached just before the shutdown is answered first.
            biased;
            () = sleep_until(hub.hold_until), if hub.hold_until.is_some() => {
                Box::pin(hub.stop_holding()).await;
                continue;
            }
            command = rx.recv() => command,
            () = inboxes.shutdown.cancelled(), if hub.devices.is_empty() => None,
        };
        let Some(command) = command else { break };
        Box::pin(hub.handle(command)).await;
        if inbox.behind.swap(false, Ordering::AcqRel) {
            Box::pin(hub.resync()).await;
        }
        if hub.devices.is_empty() {
            // Ends only when nothing more is queued; anything sent after this cannot find it.
            let ended = inboxes.users.remove_if(&hub.user, |_, current| Arc::ptr_eq(current, &inbox) && rx.is_empty());
            if ended.is_some() {
                break;
            }
        }
    }
    rx.close();
    // Whatever raced the end goes to the user's next inbox.
    while let Ok(command) = rx.try_recv() {
        match command {
            // Left unanswered: the connection attaches to the user's next inbox itself.
            HubCommand::Attach(_) => {}
            HubCommand::Deliver(event) => inboxes.deliver_here(&[hub.user], &event),
            HubCommand::Sync(sync) => debug!(conn = %sync.conn, "sync from a connection that left"),
            // Dropped: what was queued before it was handled, or went on to the next inbox.
            HubCommand::Detach(_) | HubCommand::Resync | HubCommand::Barrier(_) => {}
        }
    }
    inboxes.metrics.inbox_tasks.fetch_sub(1, Ordering::Relaxed);
    inboxes.metrics.inboxes_active.fetch_sub(1, Ordering::Relaxed);
    debug!(user_id = %hub.user, "inbox ended");
}

impl Hub {
    /// Reads where each of the user's conversations stands.
    async fn load(&mut self) {
        match Store::within(self.db_timeout, self.store.conversation_positions(self.user)).await {
            Ok(positions) => {
                for (conversation, seq) in positions {
                    let position = self.positions.entry(conversation).or_insert(seq);
                    *position = (*position).max(seq);
                }
                self.loaded = true;
            }
            Err(err) => {
                warn!(error = %err, user_id = %self.user, "could not read conversation positions; retrying later")
            }
        }
    }

    async fn handle(&mut self, command: HubCommand) {
        if !self.loaded {
            self.load().await;
        }
        match command {
            HubCommand::Attach(attach) => {
                let Attach { link, attached } = *attach;
                if attached.send(()).is_ok() {
                    self.devices.push(Device { link, ahead: HashMap::new() });
                }
            }
            HubCommand::Detach(conn) => self.devices.retain(|device| device.link.conn_id != conn),
            HubCommand::Deliver(event) => self.deliver(*event).await,
            HubCommand::Sync(sync) => self.sync(sync.conn, sync.request).await,
            HubCommand::Resync => self.resync().await,
            HubCommand::Barrier(done) => {
                if done.send(()).is_err() {
                    debug!(user_id = %self.user, "nobody waits on the inbox's barrier any more");
                }
            }
        }
    }

    async fn deliver(&mut self, event: UserEvent) {
        match event {
            UserEvent::Message { conversation, seq, frame } => {
                let position = self.position(conversation, seq - 1);
                if seq <= position {
                    return;
                }
                if seq > position + 1 {
                    self.held.entry(conversation).or_default().insert(seq, frame);
                    self.hold_until.get_or_insert_with(|| Instant::now() + HOLD_BACK);
                    return;
                }
                self.send_message(conversation, seq, &frame);
                self.release(conversation);
            }
            UserEvent::Changed { conversation, seq, frame } => {
                let position = self.position(conversation, seq);
                if seq > position {
                    // The message itself has not arrived: reading it brings the change too.
                    self.fill(conversation, position, seq).await;
                    self.release(conversation);
                } else {
                    self.send_all(&frame);
                }
            }
            UserEvent::Other { frame } => self.send_all(&frame),
        }
    }

    /// Where the devices are in `conversation` (see [`position_in`]).
    fn position(&self, conversation: ConversationId, otherwise: i64) -> i64 {
        position_in(&self.positions, self.loaded, conversation, otherwise)
    }

    /// Delivers the held messages of `conversation` that follow on from its position, and
    /// forgets those the devices have by now.
    fn release(&mut self, conversation: ConversationId) {
        let Some(mut held) = self.held.remove(&conversation) else { return };
        while let Some(entry) = held.first_entry() {
            let position = self.position(conversation, 0);
            let seq = *entry.key();
            if seq > position + 1 {
                break;
            }
            let frame = entry.remove();
            if seq == position + 1 {
                self.send_message(conversation, seq, &frame);
            }
        }
        if !held.is_empty() {
            self.held.insert(conversation, held);
        }
        if self.held.is_empty() {
            self.hold_until = None;
        }
    }

    /// The held messages waited long enough: what is missing before them is read from the
    /// store (it committed before them), and they are delivered with it.
    async fn stop_holding(&mut self) {
        self.hold_until = None;
        for (conversation, held) in std::mem::take(&mut self.held) {
            let Some(&upto) = held.keys().next_back() else { continue };
            let position = self.position(conversation, 0);
            if upto > position {
                self.fill(conversation, position, upto).await;
            }
        }
    }

    /// Delivers the messages after `after` up to `upto` from the store (they committed before
    /// the one that revealed the hole).
    async fn fill(&mut self, conversation: ConversationId, after: i64, upto: i64) {
        match Store::within(self.db_timeout, self.store.direct_range(conversation, after, upto, RESUME_WINDOW)).await {
            Ok(messages) if messages.last().is_some_and(|last| last.seq == upto) => {
                for message in messages {
                    let seq = message.seq;
                    if let Some(frame) = Frame::encode(&ServerMessage::DirectMessage { message }) {
                        self.send_message(conversation, seq, &frame);
                    }
                }
            }
            Ok(_) => self.gap(conversation, after, upto),
            Err(err) => {
                warn!(error = %err, %conversation, "could not read missed messages; the devices are told to page");
                self.gap(conversation, after, upto);
            }
        }
    }

    fn gap(&mut self, conversation: ConversationId, after: i64, upto: i64) {
        let message =
            ServerMessage::ConversationGap { conversation_id: conversation, after_seq: after, last_seq: upto };
        for device in &self.devices {
            device.link.send(&message);
        }
        self.positions.insert(conversation, upto);
    }

    /// Sends message `seq` to every device that does not have it, and moves the position on.
    fn send_message(&mut self, conversation: ConversationId, seq: i64, frame: &Frame) {
        for device in &mut self.devices {
            match device.ahead.get(&conversation) {
                Some(ahead) if *ahead >= seq => continue,
                Some(_) => {
                    device.ahead.remove(&conversation);
                }
                None => {}
            }
            device.link.try_send(frame.clone());
        }
        self.positions.insert(conversation, seq);
    }

    fn send_all(&self, frame: &Frame) {
        for device in &self.devices {
            device.link.try_send(frame.clone());
        }
    }

    /// Replays to one device what it missed, up to where the inbox is, then answers it.
    async fn sync(&mut self, conn: ConnId, request: SyncConversations) {
        let Some(index) = self.devices.iter().position(|device| device.link.conn_id == conn) else {
            debug!(%conn, "sync from a connection that left");
            return;
        };
        let mut outcomes = Vec::with_capacity(request.positions.len());
        for asked in request.positions {
            let conversation = asked.conversation_id;
            let Some(&position) = self.positions.get(&conversation) else {
                // Not one of the user's conversations, or one with nothing delivered since the
                // inbox loaded: nothing to replay from here.
                match self.member_position(conversation).await {
                    Ok(Some(last)) => outcomes.push(SyncOutcome {
                        conversation_id: conversation,
                        replayed: 0,
                        last_seq: last,
                        gap: last > asked.last_seq,
                    }),
                    Ok(None) => {}
                    Err(err) => warn!(error = %err, %conversation, "could not check a conversation to sync"),
                }
                continue;
            };
            let outcome = self.replay(index, conversation, asked.last_seq, position).await;
            outcomes.push(outcome);
        }
        let reply = ServerMessage::ConversationsSynced { request_id: request.request_id, conversations: outcomes };
        if let Some(device) = self.devices.get(index) {
            device.link.send(&reply);
        }
    }

    async fn member_position(&self, conversation: ConversationId) -> Result<Option<i64>, StoreError> {
        let record = Store::within(self.db_timeout, self.store.conversation(conversation)).await?;
        Ok(record.filter(|record| record.other(self.user).is_some()).map(|record| record.last_seq))
    }

    async fn replay(&mut self, index: usize, conversation: ConversationId, from: i64, upto: i64) -> SyncOutcome {
        let mut outcome = SyncOutcome { conversation_id: conversation, replayed: 0, last_seq: upto, gap: false };
        if from >= upto {
            if from > upto {
                // The device is ahead of this inbox (it read those messages elsewhere).
                if let Some(device) = self.devices.get_mut(index) {
                    device.ahead.insert(conversation, from);
                }
            }
            return outcome;
        }
        let Ok(missed) = u32::try_from(upto - from) else { return SyncOutcome { gap: true, ..outcome } };
        if missed > RESUME_WINDOW {
            outcome.gap = true;
            return outcome;
        }
        match Store::within(self.db_timeout, self.store.direct_range(conversation, from, upto, RESUME_WINDOW)).await {
            Ok(messages) => {
                if let Some(device) = self.devices.get(index) {
                    outcome.replayed = u32::try_from(messages.len()).unwrap_or(u32::MAX);
                    for message in messages {
                        device.link.send(&ServerMessage::DirectMessage { message });
                    }
                }
            }
            Err(err) => {
                warn!(error = %err, %conversation, "could not replay; the device is told to page");
                outcome.gap = true;
            }
        }
        outcome
    }

    /// Reads from the store what the devices may have missed (messages between nodes were
    /// lost, or the mailbox overflowed), and refreshes their notification counts.
    async fn resync(&mut self) {
        let positions = match Store::within(self.db_timeout, self.store.conversation_positions(self.user)).await {
            Ok(positions) => positions,
            Err(err) => {
                warn!(error = %err, user_id = %self.user, "could not catch up after lost messages");
                return;
            }
        };
        for (conversation, last) in positions {
            let position = self.position(conversation, last);
            if last > position {
                self.fill(conversation, position, last).await;
            } else {
                self.positions.entry(conversation).or_insert(last);
            }
        }
        self.loaded = true;
        match Store::within(self.db_timeout, self.store.notification_counts(self.user)).await {
            Ok(counts) => {
                let message = ServerMessage::NotificationCounts { request_id: None, counts };
                if let Some(frame) = Frame::encode(&message) {
                    self.send_all(&frame);
                }
            }
            Err(err) => warn!(error = %err, user_id = %self.user, "could not refresh notification counts"),
        }
    }
}

/// Where an inbox's devices are in `conversation`, by the positions it holds: a conversation
/// not among them started after they were read (so at 0), or, if they were never read
/// (`loaded` false), is taken to be at `otherwise`.
pub(super) fn position_in(
    positions: &HashMap<ConversationId, i64>,
    loaded: bool,
    conversation: ConversationId,
    otherwise: i64,
) -> i64 {
    match positions.get(&conversation) {
        Some(position) => *position,
        None if loaded => 0,
        None => otherwise,
    }
}

/// Waits until `deadline` (for ever without one).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The frame of a new message, for [`UserEvent::Message`].
pub fn message_event(message: DirectMessage) -> Option<UserEvent> {
    let (conversation, seq) = (message.conversation_id, message.seq);
    Frame::encode(&ServerMessage::DirectMessage { message }).map(|frame| UserEvent::Message {
        conversation,
        seq,
        frame,
    })
}
