//! Room chat state: a room's recent messages, the sends waiting for their commit, and the
//! per-user rate limit.
//!
//! A room keeps its last `resume_window` committed messages in memory, so a reconnecting client
//! can be handed exactly what it missed without a database read, in order and before anything
//! live. The same window makes retried sends cheap to recognise; older retries are recognised by
//! the database's unique key on `(room, sender, client_msg_id)`.

use std::collections::{HashMap, VecDeque};

use convene_protocol::{ClientMsgId, ConnId, RequestId, RoomId, UserId};

use crate::store::MessageRecord;

/// Someone waiting for a send to be acknowledged: the first sender and any retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub conn: ConnId,
    pub request_id: Option<RequestId>,
}

/// What the room knows of a client message id.
#[derive(Debug, PartialEq, Eq)]
pub enum Known<'a> {
    /// Committed recently: acknowledge again with this message.
    Committed(&'a MessageRecord),
    /// Its commit is under way.
    Pending,
    New,
}

/// Why a gap cannot be filled from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// The client is further behind than the resume window reaches.
    TooFarBehind,
    /// The client claims a position the room never reached.
    Ahead,
}

type Key = (UserId, ClientMsgId);

#[derive(Debug)]
pub struct RoomChat {
    pub id: RoomId,
    pub name: String,
    last_seq: i64,
    window: usize,
    recent: VecDeque<MessageRecord>,
    recent_ids: HashMap<Key, i64>,
    pending: HashMap<Key, Vec<Waiter>>,
}

impl RoomChat {
    /// A room whose latest sequence is `last_seq`, with `recent` (oldest first) as its window.
    pub fn new(id: RoomId, name: String, last_seq: i64, recent: Vec<MessageRecord>, window: usize) -> Self {
        let mut room = Self {
            id,
            name,
            last_seq,
            window,
            recent: VecDeque::with_capacity(recent.len().min(window)),
            recent_ids: HashMap::new(),
            pending: HashMap::new(),
        };
        for message in recent {
            room.remember(message);
        }
        room
    }

    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// The room has closed: nobody resumes in it any more, so its window is let go. Its position
    /// and any sends whose commit is under way stay, so that they are still answered.
    pub fn close(&mut self) {
        self.window = 0;
        self.recent = VecDeque::new();
        self.recent_ids = HashMap::new();
    }

    pub fn known(&self, sender: UserId, client_msg_id: &ClientMsgId) -> Known<'_> {
        let key = (sender, client_msg_id.clone());
        if self.pending.contains_key(&key) {
            return Known::Pending;
        }
        match self.recent_ids.get(&key).and_then(|seq| self.by_seq(*seq)) {
            Some(message) => Known::Committed(message),
            None => Known::New,
        }
    }

    /// Whether anything was ever written here, or a send is being committed.
    pub fn has_history(&self) -> bool {
        self.last_seq > 0 || !self.pending.is_empty()
    }

    /// Records a send whose commit is under way, or another wait on one.
    pub fn wait(&mut self, sender: UserId, client_msg_id: ClientMsgId, waiter: Waiter) {
        self.pending.entry((sender, client_msg_id)).or_default().push(waiter);
    }

    /// A send is settled (committed, found to be a duplicate, or failed): returns its waiters.
    pub fn settle(&mut self, sender: UserId, client_msg_id: &ClientMsgId) -> Vec<Waiter> {
        self.pending.remove(&(sender, client_msg_id.clone())).unwrap_or_default()
    }

    /// Adds a newly committed message to the window.
    pub fn committed(&mut self, message: MessageRecord) {
        self.last_seq = self.last_seq.max(message.seq);
        self.remember(message);
    }

    /// Replaces a message in the window after an edit or delete.
    pub fn changed(&mut self, message: &MessageRecord) {
        let Some(first) = self.recent.front().map(|m| m.seq) else { return };
        let Ok(index) = usize::try_from(message.seq - first) else { return };
        if let Some(slot) = self.recent.get_mut(index).filter(|slot| slot.id == message.id) {
            *slot = message.clone();
        }
    }

    /// The messages after `last_seq`, oldest first, when the window still holds all of them.
    pub fn since(&self, last_seq: i64) -> Result<impl Iterator<Item = &MessageRecord>, Gap> {
        if last_seq > self.last_seq {
            return Err(Gap::Ahead);
        }
        let first = self.recent.front().map_or(self.last_seq + 1, |m| m.seq);
        if last_seq + 1 < first {
            return Err(Gap::TooFarBehind);
        }
        let skip = usize::try_from(last_seq + 1 - first).unwrap_or(0);
        Ok(self.recent.iter().skip(skip))
    }

    fn remember(&mut self, message: MessageRecord) {
        if self.window == 0 {
            return;
        }
        if self.recent.len() == self.window
            && let Some(old) = self.recent.pop_front()
            && let Some(id) = ClientMsgId::new(old.client_msg_id)
        {
            self.recent_ids.remove(&(old.sender_id, id));
        }
        if let Some(id) = ClientMsgId::new(message.client_msg_id.clone()) {
            self.recent_ids.insert((message.sender_id, id), message.seq);
        }
        self.recent.push_back(message);
    }

    fn by_seq(&self, seq: i64) -> Option<&MessageRecord> {
        let first = self.recent.front()?.seq;
        self.recent.get(usize::try_from(seq - first).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use convene_protocol::{MessageId, NodeId, SessionId};
    use uuid::Uuid;

    fn message(room: RoomId, seq: i64, sender: UserId) -> MessageRecord {
        MessageRecord {
            id: MessageId(Uuid::new_v4()),
            session_id: SessionId(room.0),
            room_id: room,
            seq,
            sender_id: sender,
            client_msg_id: format!("c{seq}"),
            body: format!("message {seq}"),
            created_at: Utc::now(),
            edited_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn since_replays_within_the_window_and_reports_gaps_beyond_it() {
        let room_id = RoomId(Uuid::new_v4());
        let sender = UserId(Uuid::new_v4());
        let mut room = RoomChat::new(room_id, "main".into(), 0, vec![], 3);
        for seq in 1..=5 {
            room.committed(message(room_id, seq, sender));
        }
        // The window holds 3, 4 and 5.
        let cases: [(i64, Result<Vec<i64>, Gap>); 6] = [
            (5, Ok(vec![])),
            (4, Ok(vec![5])),
            (2, Ok(vec![3, 4, 5])),
            (1, Err(Gap::TooFarBehind)),
            (0, Err(Gap::TooFarBehind)),
            (6, Err(Gap::Ahead)),
        ];
        for (last_seq, expected) in cases {
            let got = room.since(last_seq).map(|it| it.map(|m| m.seq).collect::<Vec<_>>());
            assert_eq!(got, expected, "last_seq {last_seq}");
        }
    }

    #[test]
    fn retried_client_ids_are_known_while_pending_and_after_commit_within_the_window() {
        let room_id = RoomId(Uuid::new_v4());
        let sender = UserId(Uuid::new_v4());
        let mut room = RoomChat::new(room_id, "main".into(), 0, vec![], 2);
        let id = |s: &str| ClientMsgId::new(s).expect("valid id");
        assert_eq!(room.known(sender, &id("c1")), Known::New);
        room.wait(sender, id("c1"), Waiter { conn: ConnId::new(NodeId(1), 1), request_id: None });
        assert_eq!(room.known(sender, &id("c1")), Known::Pending);
        assert_eq!(room.settle(sender, &id("c1")).len(), 1);
        room.committed(message(room_id, 1, sender));
        assert!(matches!(room.known(sender, &id("c1")), Known::Committed(m) if m.seq == 1));
        room.committed(message(room_id, 2, sender));
        room.committed(message(room_id, 3, sender));
        // c1 fell out of the window; the database's unique key recognises it from here on.
        assert_eq!(room.known(sender, &id("c1")), Known::New);
    }
}
