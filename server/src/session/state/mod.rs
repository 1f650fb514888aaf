//! The state of one session as a pure state machine: [`SessionState::apply`] takes a
//! [`Command`] and produces [`Effect`]s (events to deliver, writes to make, history to read).
//! It does no I/O and never waits, so unit tests drive it directly; the
//! [actor](super::actor) carries out its effects.
//!
//! Invariants it keeps:
//! - A connection is attached at most once, either waiting in the lobby or admitted.
//! - An admitted user is a member of exactly one room; presence changes reach others as diffs.
//! - A chat message is announced to the room and acknowledged only after its commit
//!   ([`Internal::Posted`]); a retried client message id is acknowledged again, never re-posted.

mod audiences;
mod audit;
mod breakout_setup;
mod breakouts;
mod chat;
mod command;
mod effects;
mod error;
mod lifecycle;
mod media;
mod membership;
mod moderation;
mod moves;
mod rosters;
mod staging;
#[cfg(test)]
mod tests;

pub use command::{Command, Internal};
pub use effects::{
    Audience, BreakoutOptions, BreakoutView, Effect, Event, Help, Overview, Persist, Reply, Resumed, RoomSummary,
    RosterView, Snapshot, Waiting,
};
pub use error::SessionError;
pub use media::MAX_MESH_DEVICES;
pub use staging::{Change, DEFERRED_CAPACITY};

use moderation::Verdict;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use chrono::{DateTime, Utc};
use convene_protocol::{
    Assignment, ConnId, HeldRoster, RequestId, Role, RoomCursor, RoomId, SessionRequest, SessionRole, SessionStatus,
    SessionType, UserId,
};

use crate::auth::Identity;
use crate::chat::{Gap, RoomChat};
use crate::config::{ChatLimits, PresenceConfig};
use crate::limits::{Budget, Budgets, Ledger, Spend};
use crate::presence::{Diff, Member, Presence, Shown};
use crate::rooms::Breakout;
use crate::store::{
    ClosedRoomRecord, EditOutcome, HistoryQuery, InsertOutcome, MessageRecord, NewMessage, ParticipantRecord,
    SessionRecord, SessionWrite, TransitionRecord, WriteFailed,
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

/// The session's limits and policies, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub chat: ChatLimits,
    pub budgets: Budgets,
    /// How long someone a host denied must wait before knocking again.
    pub deny_cooldown: std::time::Duration,
    pub presence: PresenceConfig,
}

/// A user's standing in the session, whether or not they are present.
#[derive(Clone, Copy, Debug)]
struct Standing {
    role: SessionRole,
    invited: bool,
    /// Admitted once already: a reconnect does not wait in the lobby again.
    admitted: bool,
    /// Removed by a host: comes back only through the lobby, lobby or not.
    removed: bool,
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
    conns: Vec<(ConnId, Option<RequestId>, Rejoin)>,
}

#[derive(Debug)]
struct Room {
    chat: RoomChat,
    members: HashSet<UserId>,
    /// Everyone who has been in this breakout room: they may still read its chat once it closes.
    /// Not kept for the main room, which every member may read.
    visited: HashSet<UserId>,
    /// `None` for the main room.
    breakout: Option<Breakout>,
}

impl Room {
    fn new(chat: RoomChat, breakout: Option<Breakout>) -> Self {
        Self { chat, members: HashSet::new(), visited: HashSet::new(), breakout }
    }

    fn enter(&mut self, user: UserId) {
        self.members.insert(user);
        if self.breakout.is_some() {
            self.visited.insert(user);
        }
    }
}

/// A breakout room that has closed. Its chat stays readable to the session's hosts and to those
/// who were in it; it keeps no window of messages, only its position and any sends whose commit
/// was still under way when it closed.
#[derive(Debug)]
struct ClosedRoom {
    chat: RoomChat,
    visited: HashSet<UserId>,
}

/// What a joining device holds from before: chat positions and rosters.
#[derive(Clone, Debug, Default)]
pub struct Rejoin {
    pub resume: Vec<RoomCursor>,
    pub rosters: Vec<HeldRoster>,
}

/// A session as read from the store when its actor starts.
#[derive(Debug)]
pub struct Loaded {
    /// Different for every load of the session (its fencing token): roster versions of an
    /// earlier load never match this one's.
    pub epoch: u64,
    pub session: SessionRecord,
    pub participants: Vec<ParticipantRecord>,
    /// The main room's chat, with its resume window.
    pub main_chat: RoomChat,
    /// The open breakout rooms, with theirs.
    pub open_rooms: Vec<(RoomChat, Breakout)>,
    pub closed_rooms: Vec<ClosedRoomRecord>,
    /// Every change of room so far, oldest first: where each person was last and who has been
    /// in which room.
    pub transitions: Vec<TransitionRecord>,
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
    closed: HashMap<RoomId, ClosedRoom>,
    main_room: RoomId,
    limits: ChatLimits,
    budgets: Budgets,
    deny_cooldown: std::time::Duration,
    /// When each person was last turned away from the lobby: they cannot knock again at once.
    denied: HashMap<UserId, Instant>,
    /// What each member has spent of each budget.
    ledger: Ledger<(UserId, Spend)>,
    /// What each room has spent of its typing announcements.
    room_typing: Ledger<RoomId>,
    /// Each member's last announced typing state per room, and when: repeats are coalesced.
    typing: HashMap<(UserId, RoomId), (bool, Instant)>,
    breakouts: Breakouts,
    staging: staging::Staging,
    mesh: media::Mesh,
    publishing: rosters::Publishing,
    audiences: audiences::RoomAudiences,
}

impl SessionState {
    /// A session as loaded from the store.
    pub fn new(loaded: Loaded, rules: Rules) -> Self {
        let Loaded { epoch, session, participants, main_chat, open_rooms, closed_rooms, transitions } = loaded;
        let Rules { chat: limits, budgets, deny_cooldown, presence } = rules;
        let standing = participants
            .into_iter()
            .map(|p| {
                let removed = p.removed_at.is_some();
                let standing =
                    Standing { role: p.role, invited: p.invited, admitted: p.joined_at.is_some() && !removed, removed };
                (p.user_id, standing)
            })
            .collect();
        let main_room = main_chat.id;
        let mut rooms = HashMap::from([(main_room, Room::new(main_chat, None))]);
        for (chat, breakout) in open_rooms {
            rooms.insert(chat.id, Room::new(chat, Some(breakout)));
        }
        let mut closed: HashMap<RoomId, ClosedRoom> = closed_rooms
            .into_iter()
            .map(|room| {
                let chat = RoomChat::new(room.id, room.room_name, room.last_seq, Vec::new(), 0);
                (room.id, ClosedRoom { chat, visited: HashSet::new() })
            })
            .collect();
        // A participant returns to the room they were last in, if it is still open.
        let mut last_room = HashMap::new();
        for transition in transitions {
            let (user, Some(to)) = (transition.user_id, transition.to_room) else { continue };
            last_room.insert(user, to);
            if let Some(room) = rooms.get_mut(&to).filter(|room| room.breakout.is_some()) {
                room.visited.insert(user);
            } else if let Some(room) = closed.get_mut(&to) {
                room.visited.insert(user);
            }
        }
        Self {
            session,
            standing,
            presence: Presence::new(epoch),
            conns: HashMap::new(),
            lobby: HashMap::new(),
            rooms,
            closed,
            main_room,
            limits,
            budgets,
            deny_cooldown,
            denied: HashMap::new(),
            ledger: Ledger::default(),
            room_typing: Ledger::default(),
            typing: HashMap::new(),
            breakouts: Breakouts { last_room, ..Breakouts::default() },
            staging: staging::Staging::default(),
            mesh: media::Mesh::default(),
            publishing: rosters::Publishing::new(presence),
            audiences: audiences::RoomAudiences::default(),
        }
    }

    pub fn session(&self) -> &SessionRecord {
        &self.session
    }

    /// Detaches every connection `gone` picks, as if each had closed.
    fn detach_where(&mut self, gone: impl Fn(ConnId) -> bool, now: Now, out: &mut Vec<Effect>) {
        let gone: Vec<ConnId> = self.conns.keys().copied().filter(|conn| gone(*conn)).collect();
        for conn in gone {
            self.detach(conn, now, out);
        }
    }

    /// Whether `conn` is attached to the session (admitted or in the lobby).
    pub fn holds(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Connections that must receive an event sent to `audience`.
    pub fn for_each_conn(&self, audience: &Audience, mut deliver: impl FnMut(ConnId)) {
        let mut member_conns = |member: &Member| member.conns.iter().copied().for_each(&mut deliver);
        match audience {
            Audience::Conn(conn) => deliver(*conn),
            Audience::Conns(conns) => conns.iter().copied().for_each(deliver),
            Audience::Room(room) | Audience::RoomExcept(room, _) => {
                let skip = |user: &UserId| match audience {
                    Audience::RoomExcept(_, except) => user == except,
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
            Audience::RoomParticipants(room, except) => {
                if let Some(room) = self.rooms.get(room) {
                    room.members
                        .iter()
                        .filter(|user| except.binary_search(user).is_err())
                        .filter_map(|user| self.presence.get(*user))
                        .filter(|member| !member.session_role.is_host())
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
            Audience::Session => self.presence.members().for_each(member_conns),
            Audience::SessionExcept(user) => {
                self.presence.members().filter(|m| m.user_id != *user).for_each(member_conns);
            }
            Audience::Hosts => {
                self.presence.members().filter(|m| m.session_role.is_host()).for_each(member_conns);
            }
        }
    }

    /// Carries out one command, appending its effects to `out`; then publishes presence changes
    /// whose window has passed, and tells the devices whose video peers changed which
    /// connections to open and close.
    pub fn apply(&mut self, command: Command, now: Now, out: &mut Vec<Effect>) {
        if !command.keeps_audiences() {
            self.audiences.forget();
        }
        self.carry(command, now, out);
        self.publish_presence(now, out);
        self.redraw_peers(out);
    }

    fn carry(&mut self, command: Command, now: Now, out: &mut Vec<Effect>) {
        let Some(command) = self.defer(command, out) else { return };
        let (conn, request_id) = command.origin();
        if let Command::Request { conn, identity, .. } = &command
            && identity.organization_id != self.session.organization_id
        {
            // Another organization's session: indistinguishable from one that does not exist.
            send(out, Audience::Conn(*conn), Event::Failed { request_id, error: SessionError::NotFound });
            if command.is_join() && !self.conns.contains_key(conn) {
                out.push(Effect::Detach(*conn));
            }
            return;
        }
        if let Err(error) = self.charge(&command, now) {
            if let Some(conn) = conn {
                send(out, Audience::Conn(conn), Event::Failed { request_id, error });
            }
            return;
        }
        match command {
            Command::Request { conn, identity, request } => {
                let joining = matches!(request, SessionRequest::JoinSession(_));
                if let Err(error) = self.request(conn, identity, request, now, out) {
                    send(out, Audience::Conn(conn), Event::Failed { request_id, error });
                    if joining && !self.conns.contains_key(&conn) {
                        // A refused join leaves nothing behind: the actor lets go of the connection.
                        out.push(Effect::Detach(conn));
                    }
                }
            }
            Command::Disconnect { conn } => self.detach(conn, now, out),
            Command::NodeGone { node } => self.detach_where(|conn| conn.node == node, now, out),
            Command::RemotesLost { here } => self.detach_where(|conn| conn.node != here, now, out),
            Command::Internal(Internal::Tick) => self.tick(now, out),
            Command::Internal(Internal::Committed { result }) => self.committed(result, now, out),
            Command::Internal(Internal::Posted { room, sender, client_msg_id, result }) => {
                self.posted(room, sender, &client_msg_id, result, out)
            }
            Command::Internal(Internal::Changed { conn, request_id, deleted_by, result }) => {
                self.changed(conn, request_id, deleted_by, result, out)
            }
        }
    }

    /// Answers one request from a connection: the single place a request's kind is matched.
    fn request(
        &mut self,
        conn: ConnId,
        identity: Identity,
        request: SessionRequest,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        use SessionRequest as R;
        let pairs = |assignments: &[Assignment]| assignments.iter().map(|a| (a.user_id, a.room_id)).collect();
        match request {
            R::JoinSession(m) => {
                let rejoin = Rejoin { resume: m.resume, rosters: m.rosters };
                let joined = self.join(conn, identity, m.request_id, rejoin, now, out);
                if joined.is_ok() && m.video && self.conns.contains_key(&conn) {
                    self.mesh.take_part(conn);
                }
                joined
            }
            R::LeaveSession(m) => self.leave(conn, m.request_id, now, out),
            R::EndSession(m) => self.end(conn, m.request_id, now, out),
            R::AdmitParticipant(m) => self.decide(conn, m.request_id, m.user_id, Verdict::Admit, now, out),
            R::DenyParticipant(m) => self.decide(conn, m.request_id, m.user_id, Verdict::Deny, now, out),
            R::SetLobby(m) => self.set_lobby(conn, m.request_id, m.enabled, now, out),
            R::SetRole(m) => self.set_role(conn, m.request_id, m.user_id, m.role, now, out),
            R::RemoveParticipant(m) => self.remove(conn, m.request_id, m.user_id, now, out),
            R::SetStatus(m) => self.set_status(conn, m.request_id, m.status, out),
            R::SendMessage(m) => self.post(conn, m.request_id, m.room_id, m.client_msg_id, m.body, now, out),
            R::EditMessage(m) => self.edit(conn, m.request_id, m.room_id, m.message_id, m.body, now, out),
            R::DeleteMessage(m) => self.delete(conn, m.request_id, m.room_id, m.message_id, now, out),
            R::Typing(m) => self.typing(conn, m.request_id, m.room_id, m.active, now, out),
            R::FetchHistory(m) => self.fetch_history(conn, m, out),
            R::FetchRoster(m) => self.fetch_roster(conn, m.request_id, m.room_id, m.after, m.limit, out),
            R::CreateBreakoutRooms(m) => self.create_rooms(
                conn,
                m.request_id,
                &m.names,
                m.count,
                m.max_participants,
                m.assignment_mode,
                now,
                out,
            ),
            R::UpdateBreakoutRoom(m) => {
                self.update_room(conn, m.request_id, m.room_id, m.name, m.max_participants, now, out)
            }
            R::DeleteBreakoutRoom(m) => self.delete_room(conn, m.request_id, m.room_id, now, out),
            R::SetBreakoutOptions(m) => self.set_breakout_options(
                conn,
                m.request_id,
                m.allow_self_select,
                m.allow_return_to_main,
                m.countdown_secs,
                out,
            ),
            R::PlanBreakouts(m) => self.plan(
                conn,
                m.request_id,
                pairs(&m.assignments),
                m.automatic,
                m.keep_together,
                m.keep_apart,
                m.reset,
                out,
            ),
            R::OpenBreakouts(m) => self.open(conn, m.request_id, m.timer_secs, now, out),
            R::MoveParticipant(m) => {
                self.move_participant(conn, m.request_id, m.user_id, m.from_room_id, m.to_room_id, now, out)
            }
            R::AssignParticipants(m) => self.assign(conn, m.request_id, pairs(&m.assignments), now, out),
            R::SwapParticipants(m) => self.swap(conn, m.request_id, m.user_a, m.user_b, now, out),
            R::SelectRoom(m) => self.select(conn, m.request_id, m.room_id, now, out),
            R::CloseBreakoutRooms(m) => self.close(conn, m.request_id, m.room_ids, m.countdown_secs, now, out),
            R::Broadcast(m) => self.broadcast(conn, m.request_id, m.body, now, out),
            R::AskForHelp(m) => self.ask_for_help(conn, m.request_id, now, out),
            R::ResolveHelp(m) => self.resolve_help(conn, m.request_id, m.user_id, out),
            R::SendSignal(m) => self.signal(conn, m.request_id, m.to_user_id, m.to_device, m.signal, out),
        }
    }

    /// Spends the budget the command draws on, if it draws on one: refused as rate-limited,
    /// before anything is checked or changed, when the member's bucket is empty. Chat posts and
    /// typing spend in their own handlers, where retries and repeats are told apart first.
    fn charge(&mut self, command: &Command, now: Now) -> Result<(), SessionError> {
        let Some(spend) = command.spend() else { return Ok(()) };
        let user = match command {
            Command::Request { identity, request: SessionRequest::JoinSession(_), .. } => Some(identity.user_id),
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
}

fn send(out: &mut Vec<Effect>, to: Audience, event: Event) {
    out.push(Effect::Send { to, event });
}
