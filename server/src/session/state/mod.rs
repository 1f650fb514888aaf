//! The state of one session as a pure state machine: [`SessionState::apply`] takes a
//! [`Command`] and produces [`Effect`]s (events to deliver, writes to make, history to read).
//! It does no I/O and never waits, so unit tests drive it directly; the
//! [actor](super::actor) carries out its effects.
//!
//! Invariants it keeps:
//! - A connection is attached at most once, either waiting in the lobby or admitted.
//! - An admitted user is a member of exactly one room; presence changes reach others as diffs.
//! - A chat message is announced to the room and acknowledged only after its commit
//!   ([`Command::Posted`]); a retried client message id is acknowledged again, never re-posted.

mod breakouts;
mod chat;
mod staging;
#[cfg(test)]
mod tests;

pub use staging::{Change, DEFERRED_CAPACITY};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use chrono::{DateTime, Utc};
use convene_protocol::{
    AssignmentMode, ClientMsgId, ConnId, ErrorCode, MessageId, MoveReason, PresenceStatus, RequestId, Role, RoomCursor,
    RoomId, SessionRole, SessionStatus, SessionType, UserId,
};

use crate::auth::Identity;
use crate::chat::{Gap, RoomChat};
use crate::config::ChatLimits;
use crate::limits::{Budget, Budgets, Ledger, Spend};
use crate::presence::{Diff, Member, Presence};
use crate::rooms::Breakout;
use crate::store::{
    BreakoutChange, EditOutcome, HistoryQuery, InsertOutcome, MessageRecord, NewMessage, ParticipantRecord,
    SessionRecord, WriteFailed,
};

/// Replayed messages per `replay` frame, so a long replay never needs one huge frame.
pub const REPLAY_CHUNK: usize = 100;
/// Name of every session's main room.
pub const MAIN_ROOM_NAME: &str = "main";

/// The time, as both clocks: wall time for what is stored and shown, a monotonic instant for
/// rate limits.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub wall: DateTime<Utc>,
    pub mono: Instant,
}

impl Now {
    pub fn current() -> Self {
        Self { wall: Utc::now(), mono: Instant::now() }
    }
}

/// What a session is asked to do, by a connection or by the outcome of its own writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Join {
        conn: ConnId,
        identity: Identity,
        request_id: Option<RequestId>,
        resume: Vec<RoomCursor>,
    },
    Leave {
        conn: ConnId,
        request_id: Option<RequestId>,
    },
    Disconnect {
        conn: ConnId,
    },
    End {
        conn: ConnId,
        request_id: Option<RequestId>,
    },
    Admit {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
    },
    Deny {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
    },
    SetLobby {
        conn: ConnId,
        request_id: Option<RequestId>,
        enabled: bool,
    },
    SetRole {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        role: SessionRole,
    },
    SetStatus {
        conn: ConnId,
        request_id: Option<RequestId>,
        status: PresenceStatus,
    },
    Post {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        client_msg_id: ClientMsgId,
        body: String,
    },
    Edit {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        body: String,
    },
    Delete {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
    },
    Typing {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        active: bool,
    },
    FetchHistory {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        query: HistoryQuery,
        limit: u32,
    },
    CreateRooms {
        conn: ConnId,
        request_id: Option<RequestId>,
        names: Vec<String>,
        count: Option<u32>,
        max_participants: u32,
        mode: AssignmentMode,
    },
    UpdateRoom {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        name: Option<String>,
        max_participants: Option<u32>,
    },
    DeleteRoom {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
    },
    SetBreakoutOptions {
        conn: ConnId,
        request_id: Option<RequestId>,
        allow_self_select: Option<bool>,
        allow_return_to_main: Option<bool>,
        countdown_secs: Option<u32>,
    },
    Plan {
        conn: ConnId,
        request_id: Option<RequestId>,
        assignments: Vec<(UserId, RoomId)>,
        automatic: bool,
        keep_together: Vec<[UserId; 2]>,
        keep_apart: Vec<[UserId; 2]>,
        reset: bool,
    },
    Open {
        conn: ConnId,
        request_id: Option<RequestId>,
        timer_secs: Option<u32>,
    },
    Move {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        from: RoomId,
        to: RoomId,
    },
    Assign {
        conn: ConnId,
        request_id: Option<RequestId>,
        assignments: Vec<(UserId, RoomId)>,
    },
    Swap {
        conn: ConnId,
        request_id: Option<RequestId>,
        a: UserId,
        b: UserId,
    },
    Select {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
    },
    Close {
        conn: ConnId,
        request_id: Option<RequestId>,
        rooms: Vec<RoomId>,
        countdown_secs: Option<u32>,
    },
    Broadcast {
        conn: ConnId,
        request_id: Option<RequestId>,
        body: String,
    },
    AskForHelp {
        conn: ConnId,
        request_id: Option<RequestId>,
    },
    ResolveHelp {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
    },
    /// The session's clock: timers and countdowns that are due fire.
    Tick,
    /// The outcome of the [`Persist::Staged`] write of the change in flight.
    Committed {
        result: Result<(), WriteFailed>,
    },
    /// The outcome of a [`Persist::Message`].
    Posted {
        room: RoomId,
        sender: UserId,
        client_msg_id: ClientMsgId,
        result: Result<InsertOutcome, WriteFailed>,
    },
    /// The outcome of a [`Persist::Edit`] or [`Persist::Delete`].
    Changed {
        conn: ConnId,
        request_id: Option<RequestId>,
        deleted_by: Option<UserId>,
        result: Result<EditOutcome, WriteFailed>,
    },
}

/// Who receives an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    Conn(ConnId),
    Conns(Vec<ConnId>),
    /// Admitted members in a room.
    Room(RoomId),
    RoomExcept(RoomId, UserId),
    /// Members of a room but these (who are told otherwise).
    RoomExceptUsers(RoomId, Vec<UserId>),
    /// Members of a room, and every host wherever they are.
    RoomAndHosts(RoomId),
    /// Every device of one person.
    User(UserId),
    /// Every device of these people.
    Users(Vec<UserId>),
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
    pub members: Vec<Member>,
    pub rooms: Vec<RoomSummary>,
    pub lobby: Vec<Waiting>,
    pub resume: Vec<Resumed>,
    /// For hosts only.
    pub breakouts: Option<Overview>,
}

/// Something that happened, to be told to an [`Audience`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Joined { request_id: Option<RequestId>, snapshot: Box<Snapshot> },
    Replayed { room: RoomId, messages: Vec<MessageRecord> },
    LobbyWaiting { request_id: Option<RequestId> },
    LobbyEntered(Waiting),
    LobbyLeft { user: UserId },
    Denied,
    MemberJoined(Member),
    MemberUpdated(Member),
    MemberLeft { user: UserId },
    Left { request_id: Option<RequestId> },
    SessionEnded { by: UserId },
    SessionUpdated(Box<SessionRecord>),
    MessagePosted(MessageRecord),
    MessageAcked { request_id: Option<RequestId>, client_msg_id: ClientMsgId, message: MessageRecord },
    MessageEdited(MessageRecord),
    MessageDeleted { message: MessageRecord, by: UserId },
    Typed { room: RoomId, user: UserId, active: bool },
    Moved { room: RoomSummary, reason: MoveReason, members: Vec<Member> },
    RoomPresence { room: RoomId, joined: Vec<Member>, left: Vec<UserId> },
    BreakoutsChanged { open: bool, rooms: Vec<BreakoutView>, closed: Vec<RoomId> },
    RoomClosing { room: RoomId, seconds_left: u32, closes_at: DateTime<Utc> },
    PlanPrepared { request_id: Option<RequestId>, assignments: Vec<(UserId, RoomId)>, unassigned: Vec<UserId> },
    Broadcast { from: UserId, body: String, at: DateTime<Utc> },
    HelpRequested(Help),
    HelpResolved { user: UserId },
    Succeeded { request_id: Option<RequestId> },
    Failed { request_id: Option<RequestId>, error: SessionError },
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
    LobbyChanged {
        enabled: bool,
    },
    /// Bookkeeping: transitions of joins and leaves, and what ending a session closes. Nobody
    /// waits on it.
    Breakout {
        changes: Vec<BreakoutChange>,
    },
    /// The rows of the change in flight, in one transaction; its outcome comes back as
    /// [`Command::Committed`], and only then is the change applied and announced.
    Staged {
        changes: Vec<BreakoutChange>,
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

/// Why a command was refused. The text is safe to show to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session not found")]
    NotFound,
    #[error("you are not in this session")]
    NotMember,
    #[error("only hosts may do this")]
    NotHost,
    #[error("you are not invited to this session")]
    NotInvited,
    #[error("the session has ended")]
    Ended,
    #[error("this connection already joined the session")]
    AlreadyJoined,
    #[error("no such room in this session")]
    NoSuchRoom,
    #[error("you are not in that room")]
    NotInRoom,
    #[error("no such user in the lobby")]
    NotWaiting,
    #[error("no such message")]
    NoSuchMessage,
    #[error("only the sender may change this message")]
    NotSender,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the message body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("you are sending messages too fast")]
    RateLimited,
    #[error("that room is full")]
    Full,
    #[error("that person is not in the session")]
    NotPresent,
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("a host turned you away; you may ask again later")]
    RecentlyDenied,
    #[error("nobody asked for help")]
    NoHelpRequest,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("the database is unavailable; retry")]
    Unavailable,
    #[error("the session is busy; retry")]
    Busy,
    #[error("the server could not carry out the request")]
    Internal,
}

impl SessionError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound | Self::NoSuchRoom | Self::NotWaiting | Self::NoSuchMessage => ErrorCode::NotFound,
            Self::NotMember | Self::NotHost | Self::NotInvited | Self::NotInRoom | Self::NotSender => {
                ErrorCode::Forbidden
            }
            Self::Ended => ErrorCode::Gone,
            Self::AlreadyJoined | Self::Conflict(_) => ErrorCode::Conflict,
            Self::NotPresent | Self::NoHelpRequest => ErrorCode::NotFound,
            Self::NotAllowed(_) | Self::RecentlyDenied => ErrorCode::Forbidden,
            Self::Full => ErrorCode::Full,
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::Unavailable | Self::Busy => ErrorCode::Unavailable,
            Self::Internal => ErrorCode::Internal,
        }
    }
}

impl From<WriteFailed> for SessionError {
    fn from(failure: WriteFailed) -> Self {
        match failure {
            WriteFailed::Unavailable => Self::Unavailable,
            WriteFailed::Rejected => Self::Internal,
        }
    }
}

/// The session's limits and policies, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub chat: ChatLimits,
    pub budgets: Budgets,
    /// How long someone a host denied must wait before knocking again.
    pub deny_cooldown: std::time::Duration,
}

/// A user's standing in the session, whether or not they are present.
#[derive(Clone, Copy, Debug)]
struct Standing {
    role: SessionRole,
    invited: bool,
    /// Admitted once already: a reconnect does not wait in the lobby again.
    admitted: bool,
}

/// A connection attached to the session.
#[derive(Clone, Copy, Debug)]
struct Attachment {
    user: UserId,
    admitted: bool,
}

#[derive(Debug)]
struct LobbyEntry {
    role: Role,
    since: DateTime<Utc>,
    /// The waiting connections and the join request each is owed an answer to.
    conns: Vec<(ConnId, Option<RequestId>, Vec<RoomCursor>)>,
}

#[derive(Debug)]
struct Room {
    chat: RoomChat,
    members: HashSet<UserId>,
    /// `None` for the main room.
    breakout: Option<Breakout>,
}

/// Breakout state that is not per room.
#[derive(Debug, Default)]
struct Breakouts {
    open: bool,
    options: BreakoutOptions,
    /// Choices made by hand, kept across automatic splits.
    manual: HashMap<UserId, RoomId>,
    /// The last automatic split.
    automatic: HashMap<UserId, RoomId>,
    keep_together: Vec<[UserId; 2]>,
    keep_apart: Vec<[UserId; 2]>,
    help: BTreeMap<UserId, Help>,
    /// Where each person was last: a reconnecting participant returns there.
    last_room: HashMap<UserId, RoomId>,
    recent: RecentRequests,
}

/// Outcomes of recent host requests, so that a retried request is answered, not redone.
#[derive(Debug, Default)]
struct RecentRequests {
    order: VecDeque<(UserId, RequestId)>,
    outcomes: HashMap<(UserId, RequestId), Result<(), SessionError>>,
}

/// Host requests remembered for retries, per session.
const RECENT_REQUESTS: usize = 1024;

impl RecentRequests {
    fn get(&self, key: &(UserId, RequestId)) -> Option<&Result<(), SessionError>> {
        self.outcomes.get(key)
    }

    fn remember(&mut self, key: (UserId, RequestId), outcome: Result<(), SessionError>) {
        if self.outcomes.insert(key.clone(), outcome).is_none() {
            self.order.push_back(key);
            if self.order.len() > RECENT_REQUESTS
                && let Some(old) = self.order.pop_front()
            {
                self.outcomes.remove(&old);
            }
        }
    }
}

/// One session's live state.
#[derive(Debug)]
pub struct SessionState {
    session: SessionRecord,
    standing: HashMap<UserId, Standing>,
    presence: Presence,
    conns: HashMap<ConnId, Attachment>,
    lobby: HashMap<UserId, LobbyEntry>,
    rooms: HashMap<RoomId, Room>,
    main_room: RoomId,
    limits: ChatLimits,
    budgets: Budgets,
    deny_cooldown: std::time::Duration,
    /// When each person was last turned away from the lobby: they cannot knock again at once.
    denied: HashMap<UserId, Instant>,
    /// What each member has spent of each budget.
    ledger: Ledger<(UserId, Spend)>,
    /// Each member's last announced typing state per room, and when: repeats are coalesced.
    typing: HashMap<(UserId, RoomId), (bool, Instant)>,
    breakouts: Breakouts,
    staging: staging::Staging,
}

impl SessionState {
    /// A session as loaded from the store, with its main room's chat window.
    /// A session as loaded from the store: its main room's chat window, its open breakout rooms
    /// with theirs, and the room each person was last in.
    pub fn new(
        session: SessionRecord,
        participants: Vec<ParticipantRecord>,
        main_chat: RoomChat,
        breakout_rooms: Vec<(RoomChat, Breakout)>,
        last_room: HashMap<UserId, RoomId>,
        rules: Rules,
    ) -> Self {
        let Rules { chat: limits, budgets, deny_cooldown } = rules;
        let standing = participants
            .into_iter()
            .map(|p| (p.user_id, Standing { role: p.role, invited: p.invited, admitted: p.joined_at.is_some() }))
            .collect();
        let main_room = main_chat.id;
        let mut rooms = HashMap::from([(main_room, Room { chat: main_chat, members: HashSet::new(), breakout: None })]);
        for (chat, breakout) in breakout_rooms {
            rooms.insert(chat.id, Room { chat, members: HashSet::new(), breakout: Some(breakout) });
        }
        Self {
            session,
            standing,
            presence: Presence::default(),
            conns: HashMap::new(),
            lobby: HashMap::new(),
            rooms,
            main_room,
            limits,
            budgets,
            deny_cooldown,
            denied: HashMap::new(),
            ledger: Ledger::default(),
            typing: HashMap::new(),
            breakouts: Breakouts { last_room, ..Breakouts::default() },
            staging: staging::Staging::default(),
        }
    }

    pub fn session(&self) -> &SessionRecord {
        &self.session
    }

    /// Connections that must receive an event sent to `audience`.
    pub fn for_each_conn(&self, audience: &Audience, mut deliver: impl FnMut(ConnId)) {
        let mut member_conns = |member: &Member| member.conns.iter().copied().for_each(&mut deliver);
        match audience {
            Audience::Conn(conn) => deliver(*conn),
            Audience::Conns(conns) => conns.iter().copied().for_each(deliver),
            Audience::Room(room) | Audience::RoomExcept(room, _) | Audience::RoomExceptUsers(room, _) => {
                let skip = |user: &UserId| match audience {
                    Audience::RoomExcept(_, except) => user == except,
                    Audience::RoomExceptUsers(_, except) => except.contains(user),
                    _ => false,
                };
                if let Some(room) = self.rooms.get(room) {
                    room.members
                        .iter()
                        .filter(|user| !skip(user))
                        .filter_map(|user| self.presence.get(*user))
                        .for_each(&mut member_conns);
                }
            }
            Audience::RoomAndHosts(room) => {
                self.presence.members().filter(|m| m.room == *room || m.session_role.is_host()).for_each(member_conns);
            }
            Audience::User(user) => {
                if let Some(member) = self.presence.get(*user) {
                    member_conns(member);
                }
            }
            Audience::Users(users) => users.iter().filter_map(|user| self.presence.get(*user)).for_each(member_conns),
            Audience::Session => self.presence.members().for_each(member_conns),
            Audience::SessionExcept(user) => {
                self.presence.members().filter(|m| m.user_id != *user).for_each(member_conns);
            }
            Audience::Hosts => {
                self.presence.members().filter(|m| m.session_role.is_host()).for_each(member_conns);
            }
        }
    }

    /// Carries out one command, appending its effects to `out`.
    pub fn apply(&mut self, command: Command, now: Now, out: &mut Vec<Effect>) {
        let Some(command) = self.defer(command, out) else { return };
        let (conn, request_id) = command.origin();
        let joining = matches!(command, Command::Join { .. });
        if let Err(error) = self.charge(&command, now) {
            if let Some(conn) = conn {
                send(out, Audience::Conn(conn), Event::Failed { request_id, error });
            }
            return;
        }
        let result = match command {
            Command::Join { conn, identity, request_id, resume } => {
                self.join(conn, identity, request_id, resume, now, out)
            }
            Command::Leave { conn, request_id } => self.leave(conn, request_id, now, out),
            Command::Disconnect { conn } => {
                self.detach(conn, now, out);
                Ok(())
            }
            Command::End { conn, request_id } => self.end(conn, request_id, now, out),
            Command::Admit { conn, request_id, user } => self.admit(conn, request_id, user, now, out),
            Command::Deny { conn, request_id, user } => self.deny(conn, request_id, user, now, out),
            Command::SetLobby { conn, request_id, enabled } => self.set_lobby(conn, request_id, enabled, out),
            Command::SetRole { conn, request_id, user, role } => self.set_role(conn, request_id, user, role, out),
            Command::SetStatus { conn, request_id, status } => self.set_status(conn, request_id, status, out),
            Command::Post { conn, request_id, room, client_msg_id, body } => {
                self.post(conn, request_id, room, client_msg_id, body, now, out)
            }
            Command::Edit { conn, request_id, room, message_id, body } => {
                self.edit(conn, request_id, room, message_id, body, now, out)
            }
            Command::Delete { conn, request_id, room, message_id } => {
                self.delete(conn, request_id, room, message_id, now, out)
            }
            Command::Typing { conn, request_id, room, active } => self.typing(conn, request_id, room, active, now, out),
            Command::FetchHistory { conn, request_id, room, query, limit } => self
                .reader_of(conn, room)
                .map(|_| out.push(Effect::ReadHistory { conn, request_id, room, query, limit })),
            Command::CreateRooms { conn, request_id, names, count, max_participants, mode } => {
                self.create_rooms(conn, request_id, &names, count, max_participants, mode, now, out)
            }
            Command::UpdateRoom { conn, request_id, room, name, max_participants } => {
                self.update_room(conn, request_id, room, name, max_participants, out)
            }
            Command::DeleteRoom { conn, request_id, room } => self.delete_room(conn, request_id, room, out),
            Command::SetBreakoutOptions {
                conn,
                request_id,
                allow_self_select,
                allow_return_to_main,
                countdown_secs,
            } => self.set_breakout_options(
                conn,
                request_id,
                allow_self_select,
                allow_return_to_main,
                countdown_secs,
                out,
            ),
            Command::Plan { conn, request_id, assignments, automatic, keep_together, keep_apart, reset } => {
                self.plan(conn, request_id, assignments, automatic, keep_together, keep_apart, reset, out)
            }
            Command::Open { conn, request_id, timer_secs } => self.open(conn, request_id, timer_secs, now, out),
            Command::Move { conn, request_id, user, from, to } => {
                self.move_participant(conn, request_id, user, from, to, now, out)
            }
            Command::Assign { conn, request_id, assignments } => self.assign(conn, request_id, assignments, now, out),
            Command::Swap { conn, request_id, a, b } => self.swap(conn, request_id, a, b, now, out),
            Command::Select { conn, request_id, room } => self.select(conn, request_id, room, now, out),
            Command::Close { conn, request_id, rooms, countdown_secs } => {
                self.close(conn, request_id, rooms, countdown_secs, now, out)
            }
            Command::Broadcast { conn, request_id, body } => self.broadcast(conn, request_id, body, now, out),
            Command::AskForHelp { conn, request_id } => self.ask_for_help(conn, request_id, now, out),
            Command::ResolveHelp { conn, request_id, user } => self.resolve_help(conn, request_id, user, out),
            Command::Tick => {
                self.tick(now, out);
                Ok(())
            }
            Command::Committed { result } => {
                self.committed(result, now, out);
                Ok(())
            }
            Command::Posted { room, sender, client_msg_id, result } => {
                self.posted(room, sender, &client_msg_id, result, out);
                Ok(())
            }
            Command::Changed { conn, request_id, deleted_by, result } => {
                self.changed(conn, request_id, deleted_by, result, out);
                Ok(())
            }
        };
        if let (Err(error), Some(conn)) = (result, conn) {
            send(out, Audience::Conn(conn), Event::Failed { request_id, error });
            if joining && !self.conns.contains_key(&conn) {
                // A refused join leaves nothing behind: the actor lets go of the connection.
                out.push(Effect::Detach(conn));
            }
        }
    }

    /// Whether `conn` is attached (admitted or waiting in the lobby).
    pub fn is_attached(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Spends the budget the command draws on, if it draws on one: refused as rate-limited,
    /// before anything is checked or changed, when the member's bucket is empty. Chat posts and
    /// typing spend in their own handlers, where retries and repeats are told apart first.
    fn charge(&mut self, command: &Command, now: Now) -> Result<(), SessionError> {
        let Some(spend) = command.spend() else { return Ok(()) };
        let user = match command {
            Command::Join { identity, .. } => Some(identity.user_id),
            _ => command.origin().0.and_then(|conn| self.conns.get(&conn)).map(|a| a.user),
        };
        match user {
            Some(user) => self.spend(user, spend, now),
            // Not attached: refused on its own merits; the connection's frame budget bounds it.
            None => Ok(()),
        }
    }

    pub(super) fn spend(&mut self, user: UserId, spend: Spend, now: Now) -> Result<(), SessionError> {
        let chat = Budget::new(self.limits.rate_per_sec, self.limits.burst);
        let budget = self.budgets.of(spend, chat);
        if self.ledger.try_spend((user, spend), budget, now.mono) { Ok(()) } else { Err(SessionError::RateLimited) }
    }

    fn join(
        &mut self,
        conn: ConnId,
        identity: Identity,
        request_id: Option<RequestId>,
        resume: Vec<RoomCursor>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        if identity.organization_id != self.session.organization_id {
            // Another organization's session: indistinguishable from one that does not exist.
            return Err(SessionError::NotFound);
        }
        if self.conns.contains_key(&conn) {
            return Err(SessionError::AlreadyJoined);
        }
        self.check_open(now, out)?;
        let user = identity.user_id;
        let standing = self.standing.get(&user).copied();
        let session_role = self.session_role_of(&identity, standing);
        let invited = standing.is_some_and(|s| s.invited || s.role.is_host());
        if self.session.session_type == SessionType::Appointment && !session_role.is_host() && !invited {
            return Err(SessionError::NotInvited);
        }
        let lobby_applies = self.session.session_type == SessionType::Appointment || self.session.lobby_enabled;
        let already_admitted = standing.is_some_and(|s| s.admitted) || self.presence.get(user).is_some();
        if lobby_applies && !session_role.is_host() && !already_admitted {
            if self.denied.get(&user).is_some_and(|at| now.mono.saturating_duration_since(*at) < self.deny_cooldown) {
                return Err(SessionError::RecentlyDenied);
            }
            self.conns.insert(conn, Attachment { user, admitted: false });
            let entry = self.lobby.entry(user).or_insert_with(|| LobbyEntry {
                role: identity.role,
                since: now.wall,
                conns: Vec::new(),
            });
            entry.conns.push((conn, request_id.clone(), resume));
            let first = entry.conns.len() == 1;
            let waiting = Waiting { user, role: entry.role, since: entry.since };
            send(out, Audience::Conn(conn), Event::LobbyWaiting { request_id });
            if first {
                send(out, Audience::Hosts, Event::LobbyEntered(waiting));
            }
            return Ok(());
        }
        self.admit_conn(conn, user, identity.role, session_role, request_id, &resume, now, out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn admit_conn(
        &mut self,
        conn: ConnId,
        user: UserId,
        role: Role,
        session_role: SessionRole,
        request_id: Option<RequestId>,
        resume: &[RoomCursor],
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        self.conns.insert(conn, Attachment { user, admitted: true });
        let standing =
            self.standing.entry(user).or_insert(Standing { role: session_role, invited: false, admitted: false });
        standing.admitted = true;
        let placement = match self.presence.get(user) {
            Some(member) => member.room,
            None => self.placement_for(user, session_role),
        };
        let diff = self.presence.add_device(user, conn, session_role, role, placement, now.wall);
        let Some(member) = self.presence.get(user).cloned() else { return };
        if let Some(room) = self.rooms.get_mut(&member.room) {
            room.members.insert(user);
        }
        match diff {
            Diff::Joined => {
                out.push(Effect::Persist(Persist::ParticipantJoined { user, role: session_role, at: now.wall }));
                self.breakouts.last_room.insert(user, member.room);
                let joined = self.transition(user, None, Some(member.room), now);
                out.push(Effect::Persist(Persist::Breakout {
                    changes: vec![BreakoutChange::Transitions(vec![joined])],
                }));
                send(out, Audience::SessionExcept(user), Event::MemberJoined(member.clone()));
                self.announce_breakouts(&[member.room], &[], out);
            }
            Diff::Updated => send(out, Audience::SessionExcept(user), Event::MemberUpdated(member.clone())),
            Diff::Left | Diff::Unchanged => {}
        }
        if self.session.status == SessionStatus::Scheduled {
            self.session.status = SessionStatus::Active;
            self.session.started_at = Some(now.wall);
            out.push(Effect::Persist(Persist::SessionStarted { at: now.wall }));
            send(out, Audience::SessionExcept(user), Event::SessionUpdated(Box::new(self.session.clone())));
        }
        let mut replays = Vec::new();
        let resume = resume
            .iter()
            .map(|cursor| {
                let Some(room) = self.rooms.get(&cursor.room_id).filter(|_| cursor.room_id == member.room) else {
                    return Resumed { room: cursor.room_id, recovered: false, replayed: 0, last_seq: 0 };
                };
                let last_seq = room.chat.last_seq();
                match room.chat.since(cursor.last_seq) {
                    Ok(missed) => {
                        let missed: Vec<MessageRecord> = missed.cloned().collect();
                        let replayed = missed.len();
                        replays.push((room.chat.id, missed));
                        Resumed { room: cursor.room_id, recovered: true, replayed, last_seq }
                    }
                    Err(Gap::TooFarBehind | Gap::Ahead) => {
                        Resumed { room: cursor.room_id, recovered: false, replayed: 0, last_seq }
                    }
                }
            })
            .collect();
        let lobby = if session_role.is_host() { self.lobby_view() } else { Vec::new() };
        let snapshot = Snapshot {
            session: self.session.clone(),
            you: member,
            members: self.presence.members().cloned().collect(),
            rooms: self.rooms.values().filter_map(|room| self.room_summary(room.chat.id)).collect(),
            lobby,
            resume,
            breakouts: session_role.is_host().then(|| self.overview()),
        };
        send(out, Audience::Conn(conn), Event::Joined { request_id, snapshot: Box::new(snapshot) });
        for (room, missed) in replays {
            for chunk in missed.chunks(REPLAY_CHUNK) {
                send(out, Audience::Conn(conn), Event::Replayed { room, messages: chunk.to_vec() });
            }
        }
    }

    fn leave(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        if !self.conns.contains_key(&conn) {
            return Err(SessionError::NotMember);
        }
        send(out, Audience::Conn(conn), Event::Left { request_id });
        self.detach(conn, now, out);
        Ok(())
    }

    /// Removes a connection from the lobby or from presence, telling others what changed.
    fn detach(&mut self, conn: ConnId, now: Now, out: &mut Vec<Effect>) {
        let Some(attachment) = self.conns.remove(&conn) else { return };
        let user = attachment.user;
        if attachment.admitted {
            let room = self.presence.get(user).map(|m| m.room);
            match self.presence.remove_device(user, conn) {
                Diff::Left => {
                    if let Some(room) = room.and_then(|room| self.rooms.get_mut(&room)) {
                        room.members.remove(&user);
                    }
                    out.push(Effect::Persist(Persist::ParticipantLeft { user, at: now.wall }));
                    let left = self.transition(user, room, None, now);
                    out.push(Effect::Persist(Persist::Breakout {
                        changes: vec![BreakoutChange::Transitions(vec![left])],
                    }));
                    send(out, Audience::SessionExcept(user), Event::MemberLeft { user });
                    if let Some(room) = room {
                        self.announce_breakouts(&[room], &[], out);
                    }
                }
                Diff::Updated => {
                    if let Some(member) = self.presence.get(user).cloned() {
                        send(out, Audience::SessionExcept(user), Event::MemberUpdated(member));
                    }
                }
                Diff::Joined | Diff::Unchanged => {}
            }
        } else if let Some(entry) = self.lobby.get_mut(&user) {
            entry.conns.retain(|(c, _, _)| *c != conn);
            if entry.conns.is_empty() {
                self.lobby.remove(&user);
                send(out, Audience::Hosts, Event::LobbyLeft { user });
            }
        }
        out.push(Effect::Detach(conn));
    }

    fn end(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let by = self.host_of(conn)?.user_id;
        self.session.status = SessionStatus::Ended;
        self.session.ended_at = Some(now.wall);
        out.push(Effect::Persist(Persist::SessionEnded { at: now.wall }));
        let everyone: Vec<ConnId> = self.conns.keys().copied().collect();
        send(out, Audience::Conns(everyone.clone()), Event::SessionEnded { by });
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        let mut transitions = Vec::new();
        for member in self.presence.clear() {
            out.push(Effect::Persist(Persist::ParticipantLeft { user: member.user_id, at: now.wall }));
            transitions.push(self.transition(member.user_id, Some(member.room), None, now));
        }
        for room in self.rooms.values_mut() {
            room.members.clear();
        }
        let open: Vec<RoomId> = self.rooms.values().filter(|r| r.breakout.is_some()).map(|r| r.chat.id).collect();
        self.rooms.retain(|_, room| room.breakout.is_none());
        let mut changes = vec![BreakoutChange::Transitions(transitions)];
        if !open.is_empty() {
            changes.push(BreakoutChange::CloseRooms { rooms: open, at: now.wall });
        }
        out.push(Effect::Persist(Persist::Breakout { changes }));
        self.lobby.clear();
        self.conns.clear();
        out.extend(everyone.into_iter().map(Effect::Detach));
        out.push(Effect::Stop);
        Ok(())
    }

    fn admit(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        let entry = self.lobby.remove(&user).ok_or(SessionError::NotWaiting)?;
        self.denied.remove(&user);
        let session_role = self.standing.get(&user).map_or(SessionRole::Participant, |s| s.role);
        send(out, Audience::Hosts, Event::LobbyLeft { user });
        for (waiting_conn, join_request, resume) in entry.conns {
            self.admit_conn(waiting_conn, user, entry.role, session_role, join_request, &resume, now, out);
        }
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    fn deny(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        let entry = self.lobby.remove(&user).ok_or(SessionError::NotWaiting)?;
        self.denied.insert(user, now.mono);
        let denied: Vec<ConnId> = entry.conns.into_iter().map(|(c, _, _)| c).collect();
        for c in &denied {
            self.conns.remove(c);
        }
        send(out, Audience::Conns(denied.clone()), Event::Denied);
        out.extend(denied.into_iter().map(Effect::Detach));
        send(out, Audience::Hosts, Event::LobbyLeft { user });
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    fn set_lobby(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        enabled: bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        if self.session.session_type == SessionType::Appointment && !enabled {
            return Err(SessionError::Invalid("appointment sessions always have a lobby"));
        }
        if self.session.lobby_enabled != enabled {
            self.session.lobby_enabled = enabled;
            out.push(Effect::Persist(Persist::LobbyChanged { enabled }));
            send(out, Audience::Session, Event::SessionUpdated(Box::new(self.session.clone())));
        }
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    /// Makes a member a co-host or a participant again: written, then announced.
    fn set_role(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        role: SessionRole,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        if role == SessionRole::Host {
            return Err(SessionError::Invalid("a session has one host; make people co_host or participant"));
        }
        if user == self.session.created_by {
            return Err(SessionError::NotAllowed("the session's host stays its host"));
        }
        if self.presence.get(user).is_none() && !self.standing.contains_key(&user) {
            return Err(SessionError::NotPresent);
        }
        let rows = vec![BreakoutChange::SetRole { session: self.session.id, user, role }];
        self.stage(Change::SetRole { user, role }, rows, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    /// Applies a committed change of role: everyone sees the member's new role, and a new
    /// co-host learns what hosts know (the lobby and the breakout rooms).
    pub(super) fn apply_role(&mut self, user: UserId, role: SessionRole, out: &mut Vec<Effect>) {
        self.standing.entry(user).or_insert(Standing { role, invited: false, admitted: false }).role = role;
        if self.presence.set_session_role(user, role) == Diff::Updated
            && let Some(member) = self.presence.get(user).cloned()
        {
            send(out, Audience::Session, Event::MemberUpdated(member));
            if role.is_host() {
                for waiting in self.lobby_view() {
                    send(out, Audience::User(user), Event::LobbyEntered(waiting));
                }
                let overview = self.overview();
                let rooms = overview.rooms;
                send(out, Audience::User(user), Event::BreakoutsChanged { open: overview.open, rooms, closed: vec![] });
            }
        }
    }

    fn set_status(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        status: PresenceStatus,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let user = self.member_of(conn)?.user_id;
        if self.presence.set_status(user, status) == Diff::Updated
            && let Some(member) = self.presence.get(user).cloned()
        {
            send(out, Audience::SessionExcept(user), Event::MemberUpdated(member));
        }
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    /// Refuses joins to a session that ended, or to an instant session that expired unstarted.
    fn check_open(&mut self, now: Now, out: &mut Vec<Effect>) -> Result<(), SessionError> {
        let expired =
            self.session.status == SessionStatus::Scheduled && self.session.expires_at.is_some_and(|at| at <= now.wall);
        if expired {
            self.session.status = SessionStatus::Ended;
            self.session.ended_at = Some(now.wall);
            out.push(Effect::Persist(Persist::SessionEnded { at: now.wall }));
        }
        if self.session.status == SessionStatus::Ended {
            return Err(SessionError::Ended);
        }
        Ok(())
    }

    fn session_role_of(&self, identity: &Identity, standing: Option<Standing>) -> SessionRole {
        if identity.user_id == self.session.created_by {
            return SessionRole::Host;
        }
        match standing.map(|s| s.role) {
            Some(role) if role.is_host() => role,
            // Admins of the session's organization moderate all of its sessions.
            _ if identity.role == Role::Admin => SessionRole::CoHost,
            _ => SessionRole::Participant,
        }
    }

    fn member_of(&self, conn: ConnId) -> Result<&Member, SessionError> {
        match self.conns.get(&conn) {
            Some(attachment) if attachment.admitted => {
                self.presence.get(attachment.user).ok_or(SessionError::NotMember)
            }
            _ => Err(SessionError::NotMember),
        }
    }

    fn host_of(&self, conn: ConnId) -> Result<&Member, SessionError> {
        let member = self.member_of(conn)?;
        if member.session_role.is_host() { Ok(member) } else { Err(SessionError::NotHost) }
    }

    /// The member behind `conn`, provided they may read and write in `room`.
    fn reader_of(&self, conn: ConnId, room: RoomId) -> Result<&Member, SessionError> {
        let member = self.member_of(conn)?;
        if !self.rooms.contains_key(&room) {
            return Err(SessionError::NoSuchRoom);
        }
        if member.room != room {
            return Err(SessionError::NotInRoom);
        }
        Ok(member)
    }

    fn lobby_view(&self) -> Vec<Waiting> {
        self.lobby.iter().map(|(user, entry)| Waiting { user: *user, role: entry.role, since: entry.since }).collect()
    }
}

impl Command {
    /// Which budget the command draws on, when it is charged before it runs.
    fn spend(&self) -> Option<Spend> {
        match self {
            Self::Join { .. } => Some(Spend::Join),
            Self::SetStatus { .. } => Some(Spend::Status),
            Self::Edit { .. } | Self::Delete { .. } => Some(Spend::Chat),
            Self::FetchHistory { .. } => Some(Spend::History),
            Self::Broadcast { .. } => Some(Spend::Broadcast),
            Self::AskForHelp { .. } => Some(Spend::Help),
            Self::End { .. }
            | Self::Admit { .. }
            | Self::Deny { .. }
            | Self::SetLobby { .. }
            | Self::SetRole { .. }
            | Self::CreateRooms { .. }
            | Self::UpdateRoom { .. }
            | Self::DeleteRoom { .. }
            | Self::SetBreakoutOptions { .. }
            | Self::Plan { .. }
            | Self::Open { .. }
            | Self::Move { .. }
            | Self::Assign { .. }
            | Self::Swap { .. }
            | Self::Select { .. }
            | Self::Close { .. }
            | Self::ResolveHelp { .. } => Some(Spend::Command),
            Self::Post { .. } | Self::Typing { .. } => None,
            Self::Leave { .. }
            | Self::Disconnect { .. }
            | Self::Tick
            | Self::Committed { .. }
            | Self::Posted { .. }
            | Self::Changed { .. } => None,
        }
    }

    /// The connection that asked, and its request id, for error replies.
    pub(super) fn origin(&self) -> (Option<ConnId>, Option<RequestId>) {
        match self {
            Self::Join { conn, request_id, .. }
            | Self::Leave { conn, request_id }
            | Self::End { conn, request_id }
            | Self::Admit { conn, request_id, .. }
            | Self::Deny { conn, request_id, .. }
            | Self::SetLobby { conn, request_id, .. }
            | Self::SetRole { conn, request_id, .. }
            | Self::SetStatus { conn, request_id, .. }
            | Self::Post { conn, request_id, .. }
            | Self::Edit { conn, request_id, .. }
            | Self::Delete { conn, request_id, .. }
            | Self::FetchHistory { conn, request_id, .. } => (Some(*conn), request_id.clone()),
            Self::CreateRooms { conn, request_id, .. }
            | Self::UpdateRoom { conn, request_id, .. }
            | Self::DeleteRoom { conn, request_id, .. }
            | Self::SetBreakoutOptions { conn, request_id, .. }
            | Self::Plan { conn, request_id, .. }
            | Self::Open { conn, request_id, .. }
            | Self::Move { conn, request_id, .. }
            | Self::Assign { conn, request_id, .. }
            | Self::Swap { conn, request_id, .. }
            | Self::Select { conn, request_id, .. }
            | Self::Close { conn, request_id, .. }
            | Self::Broadcast { conn, request_id, .. }
            | Self::AskForHelp { conn, request_id }
            | Self::ResolveHelp { conn, request_id, .. } => (Some(*conn), request_id.clone()),
            Self::Typing { conn, request_id, .. } => (Some(*conn), request_id.clone()),
            Self::Disconnect { .. }
            | Self::Posted { .. }
            | Self::Changed { .. }
            | Self::Tick
            | Self::Committed { .. } => (None, None),
        }
    }
}

fn send(out: &mut Vec<Effect>, to: Audience, event: Event) {
    out.push(Effect::Send { to, event });
}
