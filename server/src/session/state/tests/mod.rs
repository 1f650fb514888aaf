//! The session state machine, driven directly: no sockets, no database.

use chrono::Utc;
use convene_protocol::{
    AdmitParticipant, AssignParticipants, Assignment, ClientMsgId, CloseBreakoutRooms, ConnId, CreateBreakoutRooms,
    DeleteBreakoutRoom, DeleteMessage, DenyParticipant, EndSession, ErrorCode, FetchHistory, JoinSession, LeaveSession,
    MoveParticipant, OpenBreakouts, OrgId, RemoveParticipant, RequestId, Role, RoomId, SelectRoom, SendMessage,
    SessionId, SessionRequest, SessionRole, SessionStatus, SessionType, SetBreakoutOptions, SetLobby, SetRole,
    SwapParticipants, Typing, UpdateBreakoutRoom, UserId,
};
use uuid::Uuid;

use super::*;
use crate::chat::RoomChat;
use crate::config::{ChatLimits, PresenceConfig};
use crate::store::{InsertOutcome, ParticipantRecord, SessionRecord, WriteFailed};

struct Fixture {
    state: SessionState,
    host: Identity,
    org: Option<OrgId>,
    invited: UserId,
    room: RoomId,
}

fn identity(role: Role, org: Option<OrgId>) -> Identity {
    Identity { user_id: UserId(Uuid::new_v4()), role, organization_id: org, expires_at: i64::MAX }
}

fn fixture(session_type: SessionType, lobby_enabled: bool) -> Fixture {
    // Every command's presence changes are published as it ends, unless a test sets a window.
    let presence = PresenceConfig {
        window: std::time::Duration::ZERO,
        counts_interval: std::time::Duration::ZERO,
        ..PresenceConfig::default()
    };
    fixture_with(session_type, lobby_enabled, presence)
}

fn fixture_with(session_type: SessionType, lobby_enabled: bool, presence: PresenceConfig) -> Fixture {
    let org = Some(ORG);
    let host = identity(Role::Therapist, org);
    let invited = UserId(Uuid::new_v4());
    let id = SessionId(Uuid::new_v4());
    let session = SessionRecord {
        id,
        organization_id: org,
        session_type,
        status: SessionStatus::Scheduled,
        room_name: "room".into(),
        created_by: host.user_id,
        lobby_enabled,
        created_at: Utc::now(),
        started_at: None,
        ended_at: None,
        expires_at: None,
    };
    let participants = vec![
        ParticipantRecord {
            user_id: host.user_id,
            role: SessionRole::Host,
            invited: false,
            joined_at: None,
            left_at: None,
            removed_at: None,
        },
        ParticipantRecord {
            user_id: invited,
            role: SessionRole::Participant,
            invited: true,
            joined_at: None,
            left_at: None,
            removed_at: None,
        },
    ];
    let room = RoomId::from(id);
    let chat = RoomChat::new(room, MAIN_ROOM_NAME.into(), 0, vec![], 10);
    let rules = Rules {
        chat: ChatLimits::default(),
        budgets: crate::limits::Budgets::default(),
        deny_cooldown: std::time::Duration::from_secs(60),
        presence,
    };
    let loaded = Loaded {
        epoch: 1,
        session,
        participants,
        main_chat: chat,
        open_rooms: vec![],
        closed_rooms: vec![],
        transitions: vec![],
    };
    let state = SessionState::new(loaded, rules);
    Fixture { state, host, org, invited, room }
}

/// Connection `local` of a node.
fn conn_id(local: u64) -> ConnId {
    ConnId::new(convene_protocol::NodeId(1), local)
}

/// The session id requests name. The state machine never reads it: requests reach it because
/// their session id routed them there.
const SESSION: SessionId = SessionId(Uuid::nil());

/// The organization of every fixture's session.
const ORG: OrgId = OrgId(Uuid::from_u128(0x0c0ffee));

/// A connection's request other than a join. Such requests are judged by the connection's place
/// in the session, never by who the identity they carry says they are (see
/// `a_request_is_judged_by_its_connection_not_the_identity_it_carries`), so they carry nobody in
/// particular of the session's organization.
fn asks(conn: ConnId, request: impl Into<SessionRequest>) -> Command {
    let nobody =
        Identity { user_id: UserId(Uuid::nil()), role: Role::Mentee, organization_id: Some(ORG), expires_at: 0 };
    Command::Request { conn, identity: nobody, request: request.into() }
}

/// A connection's join, decided on the identity it carries.
fn joining(conn: ConnId, identity: Identity, join: JoinSession) -> Command {
    Command::Request { conn, identity, request: join.into() }
}

fn assignments(pairs: Vec<(UserId, RoomId)>) -> Vec<Assignment> {
    pairs.into_iter().map(|(user_id, room_id)| Assignment { user_id, room_id }).collect()
}

/// Applies a command as the actor would with a database that commits: a change of rooms it
/// stages is committed at once.
fn apply(state: &mut SessionState, command: Command) -> Vec<Effect> {
    apply_at(state, command, Now::current())
}

fn apply_at(state: &mut SessionState, command: Command, now: Now) -> Vec<Effect> {
    let mut out = Vec::new();
    state.apply(command, now, &mut out);
    while state.is_staging() {
        state.apply(Command::Internal(Internal::Committed { result: Ok(()) }), now, &mut out);
    }
    out
}

/// Applies a command and leaves whatever it stages in flight.
fn apply_uncommitted(state: &mut SessionState, command: Command) -> Vec<Effect> {
    let mut out = Vec::new();
    state.apply(command, Now::current(), &mut out);
    out
}

fn join(state: &mut SessionState, conn: u64, who: Identity) -> Vec<Effect> {
    apply(
        state,
        joining(
            conn_id(conn),
            who,
            JoinSession { request_id: None, resume: vec![], rosters: vec![], session_id: SESSION, video: false },
        ),
    )
}

/// The host joins on connection 1, then `count` new people with `role` on connections 10, 11, …
fn host_and_people(f: &mut Fixture, count: usize, role: Role) -> Vec<Identity> {
    join(&mut f.state, 1, f.host);
    let people: Vec<Identity> = (0..count).map(|_| identity(role, f.org)).collect();
    for (i, person) in people.iter().enumerate() {
        join(&mut f.state, 10 + i as u64, *person);
    }
    people
}

/// What the joining connection itself was told.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Joined,
    Lobby,
    Refused(ErrorCode),
}

fn outcome(effects: &[Effect], conn: u64) -> Option<Outcome> {
    effects.iter().find_map(|effect| match effect {
        Effect::Send { to: Audience::Conn(c), event } if *c == conn_id(conn) => match event {
            Event::Joined { .. } => Some(Outcome::Joined),
            Event::LobbyWaiting { .. } => Some(Outcome::Lobby),
            Event::Failed { error, .. } => Some(Outcome::Refused(error.code())),
            _ => None,
        },
        _ => None,
    })
}

#[test]
fn who_joins_directly_who_waits_and_who_is_refused() {
    #[derive(Clone, Copy, Debug)]
    enum Who {
        Host,
        Invited,
        Stranger,
        OrgAdmin,
        OtherOrg,
    }
    use Outcome::*;
    let cases = [
        (SessionType::Appointment, false, Who::Host, Joined),
        (SessionType::Appointment, false, Who::Invited, Lobby),
        (SessionType::Appointment, false, Who::Stranger, Refused(ErrorCode::Forbidden)),
        (SessionType::Appointment, false, Who::OrgAdmin, Joined),
        (SessionType::Appointment, false, Who::OtherOrg, Refused(ErrorCode::NotFound)),
        (SessionType::Group, false, Who::Stranger, Joined),
        (SessionType::Group, true, Who::Stranger, Lobby),
        (SessionType::Group, true, Who::Host, Joined),
        (SessionType::Instant, false, Who::Invited, Joined),
        (SessionType::Group, false, Who::OtherOrg, Refused(ErrorCode::NotFound)),
    ];
    for (session_type, lobby, who, expected) in cases {
        let mut f = fixture(session_type, lobby);
        let person = match who {
            Who::Host => f.host,
            Who::Invited => Identity { user_id: f.invited, ..identity(Role::Patient, f.org) },
            Who::Stranger => identity(Role::Patient, f.org),
            Who::OrgAdmin => identity(Role::Admin, f.org),
            Who::OtherOrg => identity(Role::Admin, Some(OrgId(Uuid::new_v4()))),
        };
        let effects = join(&mut f.state, 1, person);
        assert_eq!(outcome(&effects, 1), Some(expected), "{session_type:?} lobby={lobby} {who:?}");
    }
}

#[test]
fn a_request_is_judged_by_its_connection_not_the_identity_it_carries() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let member = identity(Role::Mentee, f.org);
    join(&mut f.state, 2, member);
    let end = EndSession { request_id: None, session_id: SESSION };
    let claimed = Command::Request { conn: conn_id(2), identity: f.host, request: end.into() };
    let effects = apply(&mut f.state, claimed);
    assert_eq!(refusal(&effects), Some(ErrorCode::Forbidden), "{effects:?}");
    assert_eq!(f.state.session().status, SessionStatus::Active);
}

#[test]
fn requests_from_another_organization_find_no_session() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let stranger = identity(Role::Admin, Some(OrgId(Uuid::new_v4())));
    let end = EndSession { request_id: None, session_id: SESSION };
    let effects = apply(&mut f.state, Command::Request { conn: conn_id(1), identity: stranger, request: end.into() });
    assert_eq!(refusal(&effects), Some(ErrorCode::NotFound), "{effects:?}");
    assert_eq!(f.state.session().status, SessionStatus::Active);
}

#[test]
fn participants_may_not_take_host_actions() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let member = identity(Role::Patient, f.org);
    join(&mut f.state, 2, member);
    let conn = conn_id(2);
    let commands = [
        asks(conn, EndSession { request_id: None, session_id: SESSION }),
        asks(conn, SetLobby { request_id: None, session_id: SESSION, enabled: true }),
        asks(conn, AdmitParticipant { request_id: None, session_id: SESSION, user_id: f.host.user_id }),
        asks(conn, DenyParticipant { request_id: None, session_id: SESSION, user_id: f.host.user_id }),
    ];
    for command in commands {
        let effects = apply(&mut f.state, command.clone());
        assert_eq!(outcome(&effects, 2), Some(Outcome::Refused(ErrorCode::Forbidden)), "{command:?}");
        assert_eq!(effects.len(), 1, "a refused command has no other effect: {effects:?}");
    }
}

#[test]
fn a_message_is_announced_only_after_its_commit_and_a_retry_waits_for_it() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let cid = ClientMsgId::new("c1").expect("valid");
    let post = |conn| {
        asks(
            conn_id(conn),
            SendMessage {
                request_id: None,
                session_id: SESSION,
                room_id: f.room,
                client_msg_id: cid.clone(),
                body: "hi".into(),
            },
        )
    };

    let effects = apply(&mut f.state, post(1));
    let Some(Effect::Persist(Persist::Message(message))) = effects.first().cloned() else {
        panic!("expected a write, got {effects:?}");
    };
    assert_eq!(effects.len(), 1, "nothing is announced before the commit");
    let retry = apply(&mut f.state, post(1));
    assert!(retry.is_empty(), "a retry while pending neither writes nor announces: {retry:?}");

    let stored = message.stored(1);
    let posted = Command::Internal(Internal::Posted {
        room: f.room,
        sender: f.host.user_id,
        client_msg_id: cid.clone(),
        result: Ok(InsertOutcome::Inserted(stored)),
    });
    let effects = apply(&mut f.state, posted);
    let acks = effects.iter().filter(|e| matches!(e, Effect::Send { event: Event::MessageAcked { .. }, .. })).count();
    let posts: Vec<_> =
        effects.iter().filter(|e| matches!(e, Effect::Send { event: Event::MessagePosted(_), .. })).collect();
    assert_eq!(acks, 2, "the first send and its retry are both acknowledged");
    assert_eq!(posts.len(), 1, "announced once");

    let late_retry = apply(&mut f.state, post(1));
    assert!(
        matches!(late_retry.as_slice(), [Effect::Send { to: Audience::Conn(c), event: Event::MessageAcked { message, .. } }] if *c == conn_id(1) && message.seq == 1)
    );
}

#[test]
fn a_failed_write_fails_every_waiter_and_announces_nothing() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let cid = ClientMsgId::new("c1").expect("valid");
    apply(
        &mut f.state,
        asks(
            conn_id(1),
            SendMessage {
                request_id: None,
                session_id: SESSION,
                room_id: f.room,
                client_msg_id: cid.clone(),
                body: "hi".into(),
            },
        ),
    );
    let effects = apply(
        &mut f.state,
        Command::Internal(Internal::Posted {
            room: f.room,
            sender: f.host.user_id,
            client_msg_id: cid,
            result: Err(WriteFailed::Unavailable),
        }),
    );
    assert!(
        matches!(
            effects.as_slice(),
            [Effect::Send { event: Event::Failed { error: SessionError::Unavailable, .. }, .. }]
        ),
        "{effects:?}"
    );
}

#[test]
fn ending_tells_everyone_detaches_everyone_and_stops() {
    let mut f = fixture(SessionType::Group, true);
    join(&mut f.state, 1, f.host);
    join(&mut f.state, 2, identity(Role::Patient, f.org));
    let waiting = join(&mut f.state, 3, identity(Role::Patient, f.org));
    assert_eq!(outcome(&waiting, 3), Some(Outcome::Lobby));
    let effects = apply(&mut f.state, asks(conn_id(1), EndSession { request_id: None, session_id: SESSION }));
    let told: Vec<ConnId> = effects
        .iter()
        .find_map(|e| match e {
            Effect::Send { to: Audience::Conns(conns), event: Event::SessionEnded { .. } } => Some(conns.clone()),
            _ => None,
        })
        .unwrap_or_default();
    assert_eq!(told.len(), 3, "members and the lobby hear of the end");
    let detached = effects.iter().filter(|e| matches!(e, Effect::Detach(_))).count();
    assert_eq!(detached, 3);
    assert!(effects.contains(&Effect::Stop), "the session stops");
    assert_eq!(replies(&effects, 1), [Ok(())], "the host is answered once");
    let rejoin = join(&mut f.state, 4, f.host);
    assert_eq!(outcome(&rejoin, 4), Some(Outcome::Refused(ErrorCode::Gone)));
}

/// Creates `count` rooms of `max` as the host on conn 1; returns their ids.
fn create_rooms(f: &mut Fixture, count: u32, max: u32) -> Vec<RoomId> {
    let effects = apply(
        &mut f.state,
        asks(
            conn_id(1),
            CreateBreakoutRooms {
                request_id: None,
                session_id: SESSION,
                names: vec![],
                count: Some(count),
                max_participants: max,
                assignment_mode: convene_protocol::AssignmentMode::Manual,
            },
        ),
    );
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Send { event: Event::BreakoutsChanged { rooms, .. }, .. } => {
                Some(rooms.iter().map(|r| r.id).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn refusal(effects: &[Effect]) -> Option<ErrorCode> {
    effects.iter().find_map(|e| match e {
        Effect::Send { event: Event::Failed { error, .. }, .. } => Some(error.code()),
        _ => None,
    })
}

/// Who was told `moved`, one entry per device.
fn moved_users(state: &SessionState, effects: &[Effect]) -> Vec<UserId> {
    effects
        .iter()
        .flat_map(|e| match e {
            Effect::Send { to: Audience::Conns(conns), event: Event::Moved { .. } } => conns.clone(),
            _ => vec![],
        })
        .filter_map(|conn| state.conns.get(&conn).map(|attachment| attachment.user))
        .collect()
}

fn staged_writes(effects: &[Effect]) -> usize {
    effects.iter().filter(|e| matches!(e, Effect::Persist(Persist::Staged { .. }))).count()
}

fn replies(effects: &[Effect], conn: u64) -> Vec<Result<(), ErrorCode>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to: Audience::Conn(c), event: Event::Succeeded { .. } } if *c == conn_id(conn) => {
                Some(Ok(()))
            }
            Effect::Send { to: Audience::Conn(c), event: Event::Failed { error, .. } } if *c == conn_id(conn) => {
                Some(Err(error.code()))
            }
            _ => None,
        })
        .collect()
}

mod audiences;
mod audit;
mod closed_rooms;
mod media;
mod presence;
mod rooms;

#[test]
fn a_rooms_typing_announcements_are_bounded_however_many_type() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let typists = 40u64;
    for conn in 2..2 + typists {
        join(&mut f.state, conn, identity(Role::Patient, f.org));
    }
    let now = Now::current();
    let mut announced = 0;
    for conn in 2..2 + typists {
        let command =
            asks(conn_id(conn), Typing { request_id: None, session_id: SESSION, room_id: f.room, active: true });
        let effects = apply_at(&mut f.state, command, now);
        assert_eq!(replies(&effects, conn), [Ok(())], "every typist is answered");
        announced += effects.iter().filter(|e| matches!(e, Effect::Send { event: Event::Typed { .. }, .. })).count();
    }
    assert_eq!(announced, 20, "the room's burst, not one announcement per typist");
}
