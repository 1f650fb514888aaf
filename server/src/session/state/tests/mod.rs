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
use crate::config::ChatLimits;
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
    };
    let loaded = Loaded {
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
    apply(state, joining(conn_id(conn), who, JoinSession { request_id: None, resume: vec![], session_id: SESSION }))
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
fn presence_diffs_follow_devices() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let member = identity(Role::Mentee, f.org);
    let diffs = |effects: &[Effect]| -> Vec<&'static str> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to: Audience::SessionExcept(_), event: Event::MemberJoined(_) } => Some("joined"),
                Effect::Send { to: Audience::SessionExcept(_), event: Event::MemberUpdated(_) } => Some("updated"),
                Effect::Send { to: Audience::SessionExcept(_), event: Event::MemberLeft { .. } } => Some("left"),
                _ => None,
            })
            .collect()
    };
    let steps: [(Command, &[&str]); 4] = [
        (
            joining(conn_id(2), member, JoinSession { request_id: None, resume: vec![], session_id: SESSION }),
            &["joined"],
        ),
        (
            joining(conn_id(3), member, JoinSession { request_id: None, resume: vec![], session_id: SESSION }),
            &["updated"],
        ),
        (Command::Disconnect { conn: conn_id(2) }, &["updated"]),
        (Command::Disconnect { conn: conn_id(3) }, &["left"]),
    ];
    for (command, expected) in steps {
        let effects = apply(&mut f.state, command.clone());
        assert_eq!(diffs(&effects), expected, "{command:?}");
    }
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

fn moved_users(effects: &[Effect]) -> Vec<UserId> {
    effects
        .iter()
        .flat_map(|e| match e {
            Effect::Send { to: Audience::User(user), event: Event::Moved { .. } } => vec![*user],
            Effect::Send { to: Audience::Users(users), event: Event::Moved { .. } } => users.clone(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn moves_are_checked_as_a_whole_before_anyone_moves() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let people: Vec<Identity> = (0..3).map(|_| identity(Role::Patient, f.org)).collect();
    for (i, person) in people.iter().enumerate() {
        join(&mut f.state, 10 + i as u64, *person);
    }
    let rooms = create_rooms(&mut f, 2, 2);
    let (a, b, c) = (people[0].user_id, people[1].user_id, people[2].user_id);
    let main = f.room;
    let cases: Vec<(&str, Command, Option<ErrorCode>, usize)> = vec![
        (
            "three into a room of two",
            asks(
                conn_id(1),
                AssignParticipants {
                    request_id: None,
                    session_id: SESSION,
                    assignments: assignments(vec![(a, rooms[0]), (b, rooms[0]), (c, rooms[0])]),
                },
            ),
            Some(ErrorCode::Full),
            0,
        ),
        (
            "a person named twice",
            asks(
                conn_id(1),
                AssignParticipants {
                    request_id: None,
                    session_id: SESSION,
                    assignments: assignments(vec![(a, rooms[0]), (a, rooms[1])]),
                },
            ),
            Some(ErrorCode::Invalid),
            0,
        ),
        (
            "an unknown room",
            asks(
                conn_id(1),
                MoveParticipant {
                    request_id: None,
                    session_id: SESSION,
                    user_id: a,
                    from_room_id: main,
                    to_room_id: RoomId(Uuid::new_v4()),
                },
            ),
            Some(ErrorCode::NotFound),
            0,
        ),
        (
            "two into a room of two",
            asks(
                conn_id(1),
                AssignParticipants {
                    request_id: None,
                    session_id: SESSION,
                    assignments: assignments(vec![(a, rooms[0]), (b, rooms[0])]),
                },
            ),
            None,
            2,
        ),
        (
            "a move from where they no longer are",
            asks(
                conn_id(1),
                MoveParticipant {
                    request_id: None,
                    session_id: SESSION,
                    user_id: a,
                    from_room_id: main,
                    to_room_id: rooms[1],
                },
            ),
            Some(ErrorCode::Conflict),
            0,
        ),
        (
            "a third into the full room",
            asks(
                conn_id(1),
                MoveParticipant {
                    request_id: None,
                    session_id: SESSION,
                    user_id: c,
                    from_room_id: main,
                    to_room_id: rooms[0],
                },
            ),
            Some(ErrorCode::Full),
            0,
        ),
        (
            "a swap keeps counts",
            asks(conn_id(1), SwapParticipants { request_id: None, session_id: SESSION, user_a: a, user_b: c }),
            None,
            2,
        ),
        (
            "a participant moving others",
            asks(
                conn_id(10),
                MoveParticipant {
                    request_id: None,
                    session_id: SESSION,
                    user_id: b,
                    from_room_id: rooms[0],
                    to_room_id: rooms[1],
                },
            ),
            Some(ErrorCode::Forbidden),
            0,
        ),
    ];
    for (name, command, error, moved) in cases {
        let effects = apply(&mut f.state, command);
        assert_eq!(refusal(&effects), error, "{name}");
        assert_eq!(moved_users(&effects).len(), moved, "{name}");
        if error.is_some() {
            assert!(!effects.iter().any(|e| matches!(e, Effect::Persist(_))), "{name}: a refusal writes nothing");
        }
    }
}

#[test]
fn a_timer_warns_ahead_then_closes_its_room_on_the_sessions_clock() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let person = identity(Role::Patient, f.org);
    join(&mut f.state, 2, person);
    let rooms = create_rooms(&mut f, 1, 5);
    apply(
        &mut f.state,
        asks(
            conn_id(1),
            AssignParticipants {
                request_id: None,
                session_id: SESSION,
                assignments: assignments(vec![(person.user_id, rooms[0])]),
            },
        ),
    );
    let start = Now::current();
    apply_at(
        &mut f.state,
        asks(conn_id(1), OpenBreakouts { request_id: None, session_id: SESSION, timer_secs: Some(120) }),
        start,
    );
    let at = |secs: u64| Now {
        wall: start.wall + chrono::Duration::seconds(secs as i64),
        mono: start.mono + std::time::Duration::from_secs(secs),
    };
    // The default countdown is 60 s: the warning is due at 60 s, the close at 120 s.
    assert_eq!(f.state.next_deadline(), Some(at(60).mono));

    let out = apply_at(&mut f.state, Command::Internal(Internal::Tick), at(60));
    let warned = out.iter().find_map(|e| match e {
        Effect::Send { event: Event::RoomClosing { seconds_left, .. }, .. } => Some(*seconds_left),
        _ => None,
    });
    assert_eq!(warned, Some(60));
    assert!(moved_users(&out).is_empty(), "nobody moves before the end");
    assert_eq!(f.state.next_deadline(), Some(at(120).mono));

    let out = apply_at(&mut f.state, Command::Internal(Internal::Tick), at(120));
    assert_eq!(moved_users(&out), [person.user_id]);
    let stored = out.iter().any(|e| {
        matches!(e, Effect::Persist(Persist::Staged { changes })
            if changes.iter().any(|c| matches!(c, crate::store::SessionWrite::CloseRooms { .. })))
    });
    assert!(stored, "the close is written with its transitions");
    assert_eq!(f.state.next_deadline(), None);
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

#[test]
fn a_move_is_announced_only_after_its_commit_and_a_failed_one_changes_nothing() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let person = identity(Role::Patient, f.org);
    join(&mut f.state, 2, person);
    let rooms = create_rooms(&mut f, 1, 5);
    let user = person.user_id;
    let request = RequestId::new("move-1");
    let move_it = || {
        asks(
            conn_id(1),
            MoveParticipant {
                request_id: request.clone(),
                session_id: SESSION,
                user_id: user,
                from_room_id: f.room,
                to_room_id: rooms[0],
            },
        )
    };

    // Checked and written, but nobody is told and nobody moves yet.
    let staged = apply_uncommitted(&mut f.state, move_it());
    assert_eq!(staged_writes(&staged), 1);
    assert!(moved_users(&staged).is_empty() && replies(&staged, 1).is_empty(), "{staged:?}");
    assert_eq!(f.state.presence.get(user).map(|m| m.room), Some(f.room));

    // The write fails: the host alone hears why; the person is still where they were.
    let mut failed = Vec::new();
    f.state.apply(
        Command::Internal(Internal::Committed { result: Err(WriteFailed::Unavailable) }),
        Now::current(),
        &mut failed,
    );
    assert_eq!(replies(&failed, 1), [Err(ErrorCode::Unavailable)]);
    assert!(moved_users(&failed).is_empty());
    assert!(
        failed.iter().all(|e| matches!(e, Effect::Send { to: Audience::Conn(c), .. } if *c == conn_id(1))),
        "{failed:?}"
    );
    assert_eq!(f.state.presence.get(user).map(|m| m.room), Some(f.room));

    // A retry under the same request id runs again, and its commit moves the person.
    let retried = apply(&mut f.state, move_it());
    assert_eq!((staged_writes(&retried), moved_users(&retried)), (1, vec![user]));
    assert_eq!(replies(&retried, 1), [Ok(())]);
    assert_eq!(f.state.presence.get(user).map(|m| m.room), Some(rooms[0]));

    // Once committed, the same request id is answered from memory: no second move, no write.
    let again = apply(&mut f.state, move_it());
    assert_eq!((staged_writes(&again), moved_users(&again).len()), (0, 0));
    assert_eq!(replies(&again, 1), [Ok(())]);
}

#[test]
fn changes_of_rooms_wait_behind_the_one_in_flight_and_see_its_result() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let second_host = identity(Role::Admin, f.org);
    join(&mut f.state, 3, second_host);
    let person = identity(Role::Patient, f.org);
    join(&mut f.state, 2, person);
    let rooms = create_rooms(&mut f, 2, 5);
    let user = person.user_id;
    let first = asks(
        conn_id(1),
        MoveParticipant {
            request_id: None,
            session_id: SESSION,
            user_id: user,
            from_room_id: f.room,
            to_room_id: rooms[0],
        },
    );
    let second = asks(
        conn_id(3),
        MoveParticipant {
            request_id: None,
            session_id: SESSION,
            user_id: user,
            from_room_id: f.room,
            to_room_id: rooms[1],
        },
    );
    apply_uncommitted(&mut f.state, first);
    // The second host's move, the person's departure and a chat message arrive meanwhile.
    let waiting = apply_uncommitted(&mut f.state, second);
    assert!(waiting.is_empty(), "a second change waits: {waiting:?}");
    let chat = apply_uncommitted(
        &mut f.state,
        asks(conn_id(2), Typing { request_id: None, session_id: SESSION, room_id: f.room, active: true }),
    );
    assert_eq!(replies(&chat, 2), [Ok(())], "what changes no room runs at once");

    let mut settled = Vec::new();
    f.state.apply(Command::Internal(Internal::Committed { result: Ok(()) }), Now::current(), &mut settled);
    // The first move happened; the second, checked after it, acted on a stale view.
    assert_eq!(moved_users(&settled), [user]);
    assert_eq!(replies(&settled, 1), [Ok(())]);
    assert_eq!(replies(&settled, 3), [Err(ErrorCode::Conflict)]);
    assert!(!f.state.is_staging());
}

#[test]
fn a_full_deferral_queue_refuses_requests_but_never_a_departure() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let person = identity(Role::Patient, f.org);
    join(&mut f.state, 2, person);
    let rooms = create_rooms(&mut f, 1, 5);
    apply_uncommitted(
        &mut f.state,
        asks(
            conn_id(1),
            MoveParticipant {
                request_id: None,
                session_id: SESSION,
                user_id: person.user_id,
                from_room_id: f.room,
                to_room_id: rooms[0],
            },
        ),
    );
    let join_waiting = |state: &mut SessionState, conn: u64| {
        let who = identity(Role::Patient, f.org);
        apply_uncommitted(
            state,
            joining(conn_id(conn), who, JoinSession { request_id: None, resume: vec![], session_id: SESSION }),
        )
    };
    for i in 0..DEFERRED_CAPACITY {
        assert!(join_waiting(&mut f.state, 100 + i as u64).is_empty());
    }
    let late = join_waiting(&mut f.state, 99_999);
    assert_eq!(outcome(&late, 99_999), Some(Outcome::Refused(ErrorCode::Unavailable)));
    let leaving = apply_uncommitted(&mut f.state, Command::Disconnect { conn: conn_id(2) });
    assert!(leaving.is_empty(), "a departure waits its turn instead of being refused");
    let mut settled = Vec::new();
    f.state.apply(Command::Internal(Internal::Committed { result: Ok(()) }), Now::current(), &mut settled);
    assert!(f.state.presence.get(person.user_id).is_none(), "the departure ran after the move");
}

mod audit;
mod closed_rooms;

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
