//! Messages the server sends: replies (which echo the client's `request_id`), events that follow
//! from other people's actions, and errors.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ErrorCode;
use crate::breakout::{Assignment, BreakoutOverview, BreakoutRoomView, HelpRequest, MoveReason};
use crate::claims::Role;
use crate::direct::{
    ConversationCursor, ConversationSummary, ConversationView, DirectMessage, Notification, NotificationCounts,
    SyncOutcome,
};
use crate::ids::{
    ClientMsgId, ConnId, ConversationId, DirectMessageId, MessageId, NotificationId, OrgId, RequestId, RoomId,
    SessionId, UserId,
};
use crate::media::{IceServers, Peer, PeerGone, Signal};
use crate::presence::{RoomCount, Roster};

/// Everything the server may send, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First frame of every connection.
    Hello {
        conn_id: ConnId,
        user_id: UserId,
        role: Role,
        protocol_version: u32,
        /// How often the server pings; a connection that answers nothing for the configured
        /// timeout is closed.
        heartbeat_interval_ms: u64,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    /// A request that has no other reply succeeded.
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
    },
    SessionCreated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        session: SessionView,
    },
    /// The caller is in the session: the rosters it follows (its room's; a host's, every room's),
    /// in full or as diffs against rosters named in the request's `rosters`. Later changes come
    /// as `presence_changed`.
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        session: SessionView,
        you: MemberView,
        rosters: Vec<Roster>,
        rooms: Vec<RoomView>,
        /// Only for hosts: who waits in the lobby.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lobby: Vec<LobbyEntry>,
        /// One entry per room named in the request's `resume`; replayed messages follow as `replay`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resume: Vec<ResumeOutcome>,
        /// Only for hosts: the breakout rooms, who is where, timers and help requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        breakouts: Option<Box<BreakoutOverview>>,
        /// The STUN and TURN servers for this device's peer connections (as `GET /v1/ice-servers`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ice_servers: Option<IceServers>,
    },
    /// The caller waits in the lobby until a host admits or denies them.
    LobbyWaiting {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        session_id: SessionId,
    },
    /// To hosts: someone entered the lobby.
    LobbyEntered {
        session_id: SessionId,
        entry: LobbyEntry,
    },
    /// To hosts: someone left the lobby (admitted, denied or gone).
    LobbyLeft {
        session_id: SessionId,
        user_id: UserId,
    },
    /// To the waiting user: a host turned them away.
    Denied {
        session_id: SessionId,
    },
    /// To every device of someone a host removed: they are out of the session, and may come
    /// back only through the lobby.
    Removed {
        session_id: SessionId,
        removed_by: UserId,
    },
    /// Rosters that changed, coalesced over a short window: one diff per room the recipient
    /// follows (its own room; for hosts, every room that changed).
    PresenceChanged {
        session_id: SessionId,
        rosters: Vec<Roster>,
    },
    /// How many members the rooms that changed have now; at most one a second.
    RoomCounts {
        session_id: SessionId,
        counts: Vec<RoomCount>,
    },
    /// Reply to `fetch_roster`: a page of a room's members, ordered by user id.
    RosterPage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        session_id: SessionId,
        room_id: RoomId,
        members: Vec<MemberView>,
        /// Where the next page starts (its `after`), if there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<UserId>,
        total: u32,
    },
    /// The caller left (reply to `leave_session`).
    Left {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        session_id: SessionId,
    },
    SessionEnded {
        session_id: SessionId,
        ended_by: UserId,
    },
    /// This connection is no longer in the session, which carries on: its owner changed (the
    /// node running it died, was drained or lost it) or events from it may have been lost.
    /// Nothing acknowledged is lost. The client joins again on this same connection, with
    /// `resume`, and gets what it missed; a request it sent to the session just before may have
    /// no reply, and is retried after the rejoin with the same `request_id` / `client_msg_id`.
    SessionInterrupted {
        session_id: SessionId,
    },
    /// To one device: the peer connections it opens and closes, now that it or someone else
    /// changed room (or joined, or left). A device closes every peer connection of the session
    /// when it leaves it or is told `session_interrupted`; the next join tells it what to open.
    PeersChanged {
        session_id: SessionId,
        /// The room this device is in now.
        room_id: RoomId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        open: Vec<Peer>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        close: Vec<PeerGone>,
    },
    /// A signal from another device of this device's room.
    SignalReceived {
        session_id: SessionId,
        from_user_id: UserId,
        from_device: ConnId,
        signal: Box<Signal>,
    },
    SessionUpdated {
        session: SessionView,
    },
    /// A new chat message, delivered to every member of its room in sequence order.
    Message {
        message: ChatMessage,
    },
    /// The sender's acknowledgement: the message is durably stored.
    MessageAck {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        client_msg_id: ClientMsgId,
        session_id: SessionId,
        room_id: RoomId,
        message_id: MessageId,
        seq: i64,
        created_at: DateTime<Utc>,
    },
    MessageEdited {
        message: ChatMessage,
    },
    MessageDeleted {
        message: ChatMessage,
        deleted_by: UserId,
    },
    /// A page of history, oldest first.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        session_id: SessionId,
        room_id: RoomId,
        messages: Vec<ChatMessage>,
        /// Whether more messages lie beyond this page in the direction asked.
        has_more: bool,
    },
    /// Messages a resuming client missed, oldest first, sent before any live message of the room.
    Replay {
        session_id: SessionId,
        room_id: RoomId,
        messages: Vec<ChatMessage>,
    },
    Typing {
        session_id: SessionId,
        room_id: RoomId,
        user_id: UserId,
        active: bool,
    },
    /// To the people moved: their new room, its chat position and its roster: a diff when the
    /// device held that room's roster before (it left the room and comes back), in full
    /// otherwise. Devices moved into the same room holding the same version share one frame.
    Moved {
        session_id: SessionId,
        room: RoomView,
        reason: MoveReason,
        roster: Roster,
    },
    /// To hosts: the breakout rooms that changed (full view of each) and those that closed.
    BreakoutsChanged {
        session_id: SessionId,
        open: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rooms: Vec<BreakoutRoomView>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        closed: Vec<RoomId>,
    },
    /// To a room's members and the hosts: the room closes in `seconds_left`.
    RoomClosing {
        session_id: SessionId,
        room_id: RoomId,
        seconds_left: u32,
        closes_at: DateTime<Utc>,
    },
    /// Reply to `plan_breakouts`: the plan as it stands.
    BreakoutPlan {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        session_id: SessionId,
        assignments: Vec<Assignment>,
        /// Participants present whom the plan leaves in the main room.
        unassigned: Vec<UserId>,
    },
    Broadcast {
        session_id: SessionId,
        from: UserId,
        body: String,
        sent_at: DateTime<Utc>,
    },
    HelpRequested {
        session_id: SessionId,
        request: HelpRequest,
    },
    HelpResolved {
        session_id: SessionId,
        user_id: UserId,
    },
    /// Reply to `open_conversation`: the conversation, new or existing.
    Conversation {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        conversation: ConversationView,
    },
    /// To every device of both members: a conversation was created.
    ConversationStarted {
        conversation: ConversationView,
    },
    /// Reply to `list_conversations`. `next` is where the following page starts, if there is one.
    Conversations {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        conversations: Vec<ConversationSummary>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<ConversationCursor>,
    },
    /// The sender's acknowledgement: the message is durably stored.
    DirectAck {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        client_msg_id: ClientMsgId,
        conversation_id: ConversationId,
        message_id: DirectMessageId,
        seq: i64,
        created_at: DateTime<Utc>,
    },
    /// A conversation's new message, delivered once and in sequence order to every device of
    /// both members (the sender's included).
    DirectMessage {
        message: DirectMessage,
    },
    DirectMessageEdited {
        message: DirectMessage,
    },
    DirectMessageDeleted {
        message: DirectMessage,
    },
    /// A page of a conversation, oldest first.
    DirectHistory {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        conversation_id: ConversationId,
        messages: Vec<DirectMessage>,
        has_more: bool,
    },
    /// Reply to `sync_conversations`, after the messages it replayed.
    ConversationsSynced {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        conversations: Vec<SyncOutcome>,
    },
    /// Messages this device missed and that are too many to send: page them from `after_seq`.
    ConversationGap {
        conversation_id: ConversationId,
        after_seq: i64,
        last_seq: i64,
    },
    /// A member read up to `read_seq`; `unread` is what that member has left.
    ConversationRead {
        conversation_id: ConversationId,
        user_id: UserId,
        read_seq: i64,
        unread: i64,
    },
    ConversationTyping {
        conversation_id: ConversationId,
        user_id: UserId,
        active: bool,
    },
    /// To the caller's devices: the conversation was archived or unarchived for them.
    ConversationArchived {
        conversation_id: ConversationId,
        archived: bool,
    },
    /// Reply to `list_notifications`, newest first.
    Notifications {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        notifications: Vec<Notification>,
        counts: NotificationCounts,
        has_more: bool,
    },
    /// To every device of its user: a new notification.
    Notification {
        notification: Notification,
    },
    /// To every device of the user: notifications were read (these, or all of them).
    NotificationsRead {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ids: Vec<NotificationId>,
        all: bool,
        counts: NotificationCounts,
    },
    /// Reply to `count_notifications`; also sent unasked when notifications may have been
    /// missed (messages between nodes were lost).
    NotificationCounts {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        counts: NotificationCounts,
    },
    Error(ErrorReply),
}

/// A failed request. `request_id` names it when the client gave one that could be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub code: ErrorCode,
    /// For people reading logs; clients should branch on `code`.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SessionType {
    Appointment,
    Instant,
    Group,
}

impl SessionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Appointment => "appointment",
            Self::Instant => "instant",
            Self::Group => "group",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Scheduled,
    Active,
    Ended,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Active => "active",
            Self::Ended => "ended",
        }
    }
}

/// A member's role within one session (distinct from their application [`Role`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SessionRole {
    Host,
    CoHost,
    Participant,
}

impl SessionRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::CoHost => "co_host",
            Self::Participant => "participant",
        }
    }

    /// Hosts and co-hosts may admit, end and moderate.
    pub fn is_host(self) -> bool {
        matches!(self, Self::Host | Self::CoHost)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    #[default]
    Active,
    Away,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SessionView {
    pub id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<OrgId>,
    pub session_type: SessionType,
    pub status: SessionStatus,
    pub room_name: String,
    pub created_by: UserId,
    pub lobby_enabled: bool,
    /// The main room's id (equal to the session id).
    pub main_room_id: RoomId,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

/// One person in a session, however many devices they joined from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MemberView {
    pub user_id: UserId,
    pub session_role: SessionRole,
    pub role: Role,
    pub room_id: RoomId,
    pub devices: u32,
    pub status: PresenceStatus,
    pub joined_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RoomView {
    pub room_id: RoomId,
    pub name: String,
    /// The sequence number of the room's latest message (0 when it has none): where the room's
    /// history starts for someone arriving.
    pub last_seq: i64,
    /// Set for breakout rooms: their capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<u32>,
    /// Members in the room; `room_counts` follows it.
    pub members: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LobbyEntry {
    pub user_id: UserId,
    pub role: Role,
    pub since: DateTime<Utc>,
}

/// Whether a resuming client's gap could be filled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ResumeOutcome {
    pub room_id: RoomId,
    /// `false` means messages were missed that will not be replayed: page `fetch_history` instead.
    pub recovered: bool,
    /// How many messages follow in `replay` frames.
    pub replayed: u32,
    /// The room's latest sequence number at the moment of joining.
    pub last_seq: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ChatMessage {
    pub id: MessageId,
    pub session_id: SessionId,
    pub room_id: RoomId,
    pub seq: i64,
    pub sender_id: UserId,
    /// Empty once deleted.
    pub body: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

impl ServerMessage {
    /// An error reply.
    pub fn error(request_id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error(ErrorReply { request_id, code, message: message.into() })
    }

    /// Encodes the message as the JSON text of one frame.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
