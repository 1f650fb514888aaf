//! What applying a command produces: events for audiences, writes, reads, and the views they carry.

use chrono::{DateTime, Utc};
use convene_protocol::{
    ClientMsgId, ConnId, MessageId, MoveReason, RequestId, Role, RoomId, SessionRole, Signal, UserId,
};

use super::*;
use crate::store::AuditRecord;

/// Who receives an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    Conn(ConnId),
    Conns(Vec<ConnId>),
    /// Admitted members in a room.
    Room(RoomId),
    RoomExcept(RoomId, UserId),
    /// Members of a room, and every host wherever they are.
    RoomAndHosts(RoomId),
    /// Members of a room who are not hosts (hosts follow every room on their own), but these
    /// (sorted).
    RoomParticipants(RoomId, Vec<UserId>),
    /// Every device of one person.
    User(UserId),
    /// Every admitted member.
    Session,
    SessionExcept(UserId),
    /// Admitted hosts and co-hosts.
    Hosts,
}

/// A room as the snapshot shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSummary {
    pub id: RoomId,
    pub name: String,
    pub last_seq: i64,
    /// Set for breakout rooms.
    pub max_participants: Option<u32>,
    /// Members in the room now.
    pub members: u32,
}

/// A room's roster as one device is sent it: whole, or the changes since a version it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterView {
    pub epoch: u64,
    pub room: RoomId,
    pub version: u64,
    /// Set for a diff against the roster at this version.
    pub since: Option<u64>,
    /// A diff's arrivals and changes, or every member shown.
    pub members: Vec<(UserId, Shown)>,
    pub left: Vec<UserId>,
    pub total: u32,
    /// False for a room too large to follow live: `members` shows its hosts.
    pub live: bool,
}

/// A breakout room as hosts see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakoutView {
    pub id: RoomId,
    pub breakout: Breakout,
    pub members: Vec<UserId>,
    pub participants: u32,
}

/// Everything about the breakouts, for hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overview {
    pub open: bool,
    pub options: BreakoutOptions,
    pub rooms: Vec<BreakoutView>,
    pub help: Vec<Help>,
}

/// Someone asking for help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Help {
    pub user: UserId,
    pub room: RoomId,
    pub since: DateTime<Utc>,
}

/// What participants may do on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakoutOptions {
    pub allow_self_select: bool,
    pub allow_return_to_main: bool,
    pub countdown: std::time::Duration,
}

impl Default for BreakoutOptions {
    fn default() -> Self {
        Self { allow_self_select: false, allow_return_to_main: true, countdown: std::time::Duration::from_secs(60) }
    }
}

/// Who waits for a write to be confirmed, and under which request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub conn: ConnId,
    pub request_id: Option<RequestId>,
}

/// Someone waiting in the lobby, as hosts see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub user: UserId,
    pub role: Role,
    pub since: DateTime<Utc>,
}

/// Whether a resuming client's gap in one room was filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    pub room: RoomId,
    pub recovered: bool,
    pub replayed: usize,
    pub last_seq: i64,
}

/// Everything a member is told on joining.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub session: SessionRecord,
    pub you: Member,
    pub rosters: Vec<RosterView>,
    pub rooms: Vec<RoomSummary>,
    pub lobby: Vec<Waiting>,
    pub resume: Vec<Resumed>,
    /// For hosts only.
    pub breakouts: Option<Overview>,
}

/// Something that happened, to be told to an [`Audience`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Joined {
        request_id: Option<RequestId>,
        snapshot: Box<Snapshot>,
    },
    Replayed {
        room: RoomId,
        messages: Vec<MessageRecord>,
    },
    LobbyWaiting {
        request_id: Option<RequestId>,
    },
    LobbyEntered(Waiting),
    LobbyLeft {
        user: UserId,
    },
    Denied,
    Removed {
        by: UserId,
    },
    /// Coalesced roster changes, one per room the audience follows.
    PresenceChanged {
        rosters: Vec<RosterView>,
    },
    RoomCounts {
        counts: Vec<(RoomId, u32)>,
    },
    RosterPage {
        request_id: Option<RequestId>,
        room: RoomId,
        members: Vec<Member>,
        next: Option<UserId>,
        total: u32,
    },
    Left {
        request_id: Option<RequestId>,
    },
    SessionEnded {
        by: UserId,
    },
    SessionUpdated(Box<SessionRecord>),
    MessagePosted(MessageRecord),
    MessageAcked {
        request_id: Option<RequestId>,
        client_msg_id: ClientMsgId,
        message: MessageRecord,
    },
    MessageEdited(MessageRecord),
    MessageDeleted {
        message: MessageRecord,
        by: UserId,
    },
    Typed {
        room: RoomId,
        user: UserId,
        active: bool,
    },
    Moved {
        room: RoomSummary,
        reason: MoveReason,
        roster: RosterView,
    },
    BreakoutsChanged {
        open: bool,
        rooms: Vec<BreakoutView>,
        closed: Vec<RoomId>,
    },
    RoomClosing {
        room: RoomId,
        seconds_left: u32,
        closes_at: DateTime<Utc>,
    },
    PlanPrepared {
        request_id: Option<RequestId>,
        assignments: Vec<(UserId, RoomId)>,
        unassigned: Vec<UserId>,
    },
    Broadcast {
        from: UserId,
        body: String,
        at: DateTime<Utc>,
    },
    HelpRequested(Help),
    HelpResolved {
        user: UserId,
    },
    Succeeded {
        request_id: Option<RequestId>,
    },
    /// To one device: the peer connections to open (with whose device, and whether this one
    /// offers) and to close, as the device is in `room` now.
    PeersChanged {
        room: RoomId,
        open: Vec<(UserId, ConnId, bool)>,
        close: Vec<(UserId, ConnId)>,
    },
    SignalReceived {
        from_user: UserId,
        from_device: ConnId,
        signal: Box<Signal>,
    },
    Failed {
        request_id: Option<RequestId>,
        error: SessionError,
    },
}

/// A write the session needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    Message(NewMessage),
    Edit {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        editor: UserId,
        body: String,
        at: DateTime<Utc>,
    },
    Delete {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        by: UserId,
        any_sender: bool,
        at: DateTime<Utc>,
        /// Written with the delete when the message turns out to be someone else's.
        audit: Option<Box<AuditRecord>>,
    },
    ParticipantJoined {
        user: UserId,
        role: SessionRole,
        at: DateTime<Utc>,
    },
    ParticipantLeft {
        user: UserId,
        at: DateTime<Utc>,
    },
    SessionStarted {
        at: DateTime<Utc>,
    },
    SessionEnded {
        at: DateTime<Utc>,
    },
    /// Bookkeeping: transitions of joins and leaves, and what ending a session closes. Nobody
    /// waits on it.
    Bookkeeping {
        changes: Vec<SessionWrite>,
    },
    /// The rows of the change in flight, in one transaction; its outcome comes back as
    /// [`Internal::Committed`], and only then is the change applied and announced.
    Staged {
        changes: Vec<SessionWrite>,
    },
}

/// What the actor must carry out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Send {
        to: Audience,
        event: Event,
    },
    Persist(Persist),
    ReadHistory {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        query: HistoryQuery,
        limit: u32,
    },
    /// The connection no longer belongs to the session; forget its link.
    Detach(ConnId),
    /// The session is over; stop once pending writes are done.
    Stop,
}
