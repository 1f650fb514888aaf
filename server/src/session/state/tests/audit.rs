//! The audit trail: each host action stages exactly one audit row with its change, and actions
//! that are not a host's stage none.

use super::*;
use convene_protocol::MessageId;

use crate::store::{AuditAction, AuditRecord, SessionWrite};

/// The audit rows a command's effects write, staged or alongside a delete.
fn audit_rows(effects: &[Effect]) -> Vec<AuditRecord> {
    effects
        .iter()
        .flat_map(|e| match e {
            Effect::Persist(Persist::Staged { changes } | Persist::Bookkeeping { changes }) => changes
                .iter()
                .filter_map(|c| match c {
                    SessionWrite::Audit(record) => Some(record.clone()),
                    _ => None,
                })
                .collect(),
            Effect::Persist(Persist::Delete { audit: Some(record), .. }) => vec![(**record).clone()],
            _ => vec![],
        })
        .collect()
}

fn request(n: usize) -> Option<RequestId> {
    RequestId::new(format!("r{n}"))
}

#[test]
fn every_host_action_is_audited_once_under_its_request() {
    let mut f = fixture(SessionType::Group, true);
    let host = f.host.user_id;
    join(&mut f.state, 1, f.host);
    let invited = Identity { user_id: f.invited, ..identity(Role::Patient, f.org) };
    join(&mut f.state, 2, invited);
    apply(
        &mut f.state,
        asks(conn_id(1), AdmitParticipant { request_id: None, session_id: SESSION, user_id: f.invited }),
    );
    let (first, second) = (identity(Role::Patient, f.org), identity(Role::Patient, f.org));
    assert_eq!(outcome(&join(&mut f.state, 3, first), 3), Some(Outcome::Lobby));
    assert_eq!(outcome(&join(&mut f.state, 4, second), 4), Some(Outcome::Lobby));
    let rooms = create_rooms(&mut f, 3, 5);
    let main = f.room;
    let message = match apply(
        &mut f.state,
        asks(
            conn_id(2),
            SendMessage {
                request_id: None,
                session_id: SESSION,
                room_id: main,
                client_msg_id: ClientMsgId::new("m").expect("valid"),
                body: "hello".into(),
            },
        ),
    )
    .first()
    {
        Some(Effect::Persist(Persist::Message(message))) => message.id,
        other => panic!("expected a write, got {other:?}"),
    };

    let conn = conn_id(1);
    let cases: Vec<(Command, AuditAction, Option<UserId>)> = vec![
        (
            asks(conn, AdmitParticipant { request_id: request(0), session_id: SESSION, user_id: first.user_id }),
            AuditAction::Admit,
            Some(first.user_id),
        ),
        (
            asks(conn, DenyParticipant { request_id: request(1), session_id: SESSION, user_id: second.user_id }),
            AuditAction::Deny,
            Some(second.user_id),
        ),
        (
            asks(conn, SetLobby { request_id: request(2), session_id: SESSION, enabled: false }),
            AuditAction::SetLobby,
            None,
        ),
        (
            asks(
                conn,
                UpdateBreakoutRoom {
                    request_id: request(3),
                    session_id: SESSION,
                    room_id: rooms[0],
                    name: Some("Quiet".into()),
                    max_participants: None,
                },
            ),
            AuditAction::UpdateRoom,
            None,
        ),
        (
            asks(conn, DeleteBreakoutRoom { request_id: request(4), session_id: SESSION, room_id: rooms[2] }),
            AuditAction::DeleteRoom,
            None,
        ),
        (
            asks(
                conn,
                MoveParticipant {
                    request_id: request(5),
                    session_id: SESSION,
                    user_id: f.invited,
                    from_room_id: main,
                    to_room_id: rooms[0],
                },
            ),
            AuditAction::Move,
            Some(f.invited),
        ),
        (
            asks(
                conn,
                AssignParticipants {
                    request_id: request(6),
                    session_id: SESSION,
                    assignments: assignments(vec![(first.user_id, rooms[1])]),
                },
            ),
            AuditAction::Assign,
            Some(first.user_id),
        ),
        (
            asks(
                conn,
                SwapParticipants {
                    request_id: request(7),
                    session_id: SESSION,
                    user_a: f.invited,
                    user_b: first.user_id,
                },
            ),
            AuditAction::Swap,
            None,
        ),
        (
            asks(
                conn,
                SetRole {
                    request_id: request(8),
                    session_id: SESSION,
                    user_id: first.user_id,
                    role: SessionRole::CoHost,
                },
            ),
            AuditAction::SetRole,
            Some(first.user_id),
        ),
        (
            asks(conn, OpenBreakouts { request_id: request(9), session_id: SESSION, timer_secs: None }),
            AuditAction::OpenBreakouts,
            None,
        ),
        (
            asks(
                conn,
                CloseBreakoutRooms {
                    request_id: request(10),
                    session_id: SESSION,
                    room_ids: vec![rooms[0]],
                    countdown_secs: Some(0),
                },
            ),
            AuditAction::CloseBreakouts,
            None,
        ),
        (
            asks(
                conn,
                DeleteMessage { request_id: request(11), session_id: SESSION, room_id: main, message_id: message },
            ),
            AuditAction::DeleteMessage,
            None,
        ),
        (
            asks(conn, RemoveParticipant { request_id: request(12), session_id: SESSION, user_id: f.invited }),
            AuditAction::Remove,
            Some(f.invited),
        ),
        (
            asks(
                conn,
                CreateBreakoutRooms {
                    request_id: request(13),
                    session_id: SESSION,
                    names: vec![],
                    count: Some(1),
                    max_participants: 5,
                    assignment_mode: convene_protocol::AssignmentMode::Manual,
                },
            ),
            AuditAction::CreateRooms,
            None,
        ),
        (asks(conn, EndSession { request_id: request(14), session_id: SESSION }), AuditAction::EndSession, None),
    ];
    for (n, (command, action, target)) in cases.into_iter().enumerate() {
        let effects = apply(&mut f.state, command);
        // A delete is answered once its write comes back; everything else at once.
        assert!(replies(&effects, 1).iter().all(Result::is_ok), "{action:?} succeeds: {effects:?}");
        let rows = audit_rows(&effects);
        assert_eq!(rows.len(), 1, "{action:?} writes one audit row: {rows:?}");
        let row = &rows[0];
        assert_eq!((row.action, row.actor_id, row.target_user_id), (action, host, target), "{action:?}");
        assert_eq!(row.request_id.as_deref(), Some(format!("r{n}").as_str()));
        assert_eq!(row.session_id, f.state.session().id);
    }
}

#[test]
fn what_participants_do_for_themselves_is_not_audited() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let person = identity(Role::Patient, f.org);
    join(&mut f.state, 2, person);
    let rooms = create_rooms(&mut f, 1, 5);
    let options = asks(
        conn_id(1),
        SetBreakoutOptions {
            request_id: None,
            session_id: SESSION,
            allow_self_select: Some(true),
            allow_return_to_main: None,
            countdown_secs: None,
        },
    );
    apply(&mut f.state, options);
    let own = [
        asks(conn_id(2), SelectRoom { request_id: None, session_id: SESSION, room_id: rooms[0] }),
        asks(
            conn_id(2),
            DeleteMessage { request_id: None, session_id: SESSION, room_id: rooms[0], message_id: MessageId::new_v4() },
        ),
        asks(conn_id(2), LeaveSession { request_id: None, session_id: SESSION }),
    ];
    for command in own {
        let effects = apply(&mut f.state, command.clone());
        assert!(audit_rows(&effects).is_empty(), "{command:?} is not a host action: {effects:?}");
    }
}

#[test]
fn lobby_decisions_and_the_end_take_effect_only_once_written() {
    let mut f = fixture(SessionType::Group, true);
    join(&mut f.state, 1, f.host);
    let waiting = identity(Role::Patient, f.org);
    join(&mut f.state, 2, waiting);
    let user = waiting.user_id;
    let decisions = [
        asks(conn_id(1), AdmitParticipant { request_id: None, session_id: SESSION, user_id: user }),
        asks(conn_id(1), DenyParticipant { request_id: None, session_id: SESSION, user_id: user }),
        asks(conn_id(1), SetLobby { request_id: None, session_id: SESSION, enabled: false }),
        asks(conn_id(1), EndSession { request_id: None, session_id: SESSION }),
    ];
    for decision in decisions {
        // Staged: the person waits on and nobody hears anything until the commit.
        let staged = apply_uncommitted(&mut f.state, decision.clone());
        assert_eq!(staged_writes(&staged), 1, "{decision:?}");
        assert!(staged.iter().all(|e| matches!(e, Effect::Persist(_))), "{decision:?}: {staged:?}");
        // The write fails: the host alone hears why, and nothing changed.
        let mut failed = Vec::new();
        f.state.apply(
            Command::Internal(Internal::Committed { result: Err(WriteFailed::Unavailable) }),
            Now::current(),
            &mut failed,
        );
        assert_eq!(replies(&failed, 1), [Err(ErrorCode::Unavailable)], "{decision:?}");
        assert!(
            failed.iter().all(|e| matches!(e, Effect::Send { to: Audience::Conn(c), .. } if *c == conn_id(1))),
            "{failed:?}"
        );
        assert!(f.state.lobby.contains_key(&user), "{decision:?}: still waiting");
        assert!(f.state.session().lobby_enabled && f.state.session().status != SessionStatus::Ended);
    }
    let admitted = apply(
        &mut f.state,
        asks(conn_id(1), AdmitParticipant { request_id: None, session_id: SESSION, user_id: user }),
    );
    assert_eq!(outcome(&admitted, 2), Some(Outcome::Joined));
}
