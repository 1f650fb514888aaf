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
    apply(&mut f.state, Command::Admit { conn: ConnId(1), request_id: None, user: f.invited });
    let (first, second) = (identity(Role::Patient, f.org), identity(Role::Patient, f.org));
    assert_eq!(outcome(&join(&mut f.state, 3, first), 3), Some(Outcome::Lobby));
    assert_eq!(outcome(&join(&mut f.state, 4, second), 4), Some(Outcome::Lobby));
    let rooms = create_rooms(&mut f, 3, 5);
    let main = f.room;
    let message = match apply(
        &mut f.state,
        Command::Post {
            conn: ConnId(2),
            request_id: None,
            room: main,
            client_msg_id: ClientMsgId::new("m").expect("valid"),
            body: "hello".into(),
        },
    )
    .first()
    {
        Some(Effect::Persist(Persist::Message(message))) => message.id,
        other => panic!("expected a write, got {other:?}"),
    };

    let conn = ConnId(1);
    let cases: Vec<(Command, AuditAction, Option<UserId>)> = vec![
        (Command::Admit { conn, request_id: request(0), user: first.user_id }, AuditAction::Admit, Some(first.user_id)),
        (Command::Deny { conn, request_id: request(1), user: second.user_id }, AuditAction::Deny, Some(second.user_id)),
        (Command::SetLobby { conn, request_id: request(2), enabled: false }, AuditAction::SetLobby, None),
        (
            Command::UpdateRoom {
                conn,
                request_id: request(3),
                room: rooms[0],
                name: Some("Quiet".into()),
                max_participants: None,
            },
            AuditAction::UpdateRoom,
            None,
        ),
        (Command::DeleteRoom { conn, request_id: request(4), room: rooms[2] }, AuditAction::DeleteRoom, None),
        (
            Command::Move { conn, request_id: request(5), user: f.invited, from: main, to: rooms[0] },
            AuditAction::Move,
            Some(f.invited),
        ),
        (
            Command::Assign { conn, request_id: request(6), assignments: vec![(first.user_id, rooms[1])] },
            AuditAction::Assign,
            Some(first.user_id),
        ),
        (Command::Swap { conn, request_id: request(7), a: f.invited, b: first.user_id }, AuditAction::Swap, None),
        (
            Command::SetRole { conn, request_id: request(8), user: first.user_id, role: SessionRole::CoHost },
            AuditAction::SetRole,
            Some(first.user_id),
        ),
        (Command::Open { conn, request_id: request(9), timer_secs: None }, AuditAction::OpenBreakouts, None),
        (
            Command::Close { conn, request_id: request(10), rooms: vec![rooms[0]], countdown_secs: Some(0) },
            AuditAction::CloseBreakouts,
            None,
        ),
        (
            Command::Delete { conn, request_id: request(11), room: main, message_id: message },
            AuditAction::DeleteMessage,
            None,
        ),
        (Command::Remove { conn, request_id: request(12), user: f.invited }, AuditAction::Remove, Some(f.invited)),
        (
            Command::CreateRooms {
                conn,
                request_id: request(13),
                names: vec![],
                count: Some(1),
                max_participants: 5,
                mode: convene_protocol::AssignmentMode::Manual,
            },
            AuditAction::CreateRooms,
            None,
        ),
        (Command::End { conn, request_id: request(14) }, AuditAction::EndSession, None),
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
    let options = Command::SetBreakoutOptions {
        conn: ConnId(1),
        request_id: None,
        allow_self_select: Some(true),
        allow_return_to_main: None,
        countdown_secs: None,
    };
    apply(&mut f.state, options);
    let own = [
        Command::Select { conn: ConnId(2), request_id: None, room: rooms[0] },
        Command::Delete { conn: ConnId(2), request_id: None, room: rooms[0], message_id: MessageId::new_v4() },
        Command::Leave { conn: ConnId(2), request_id: None },
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
        Command::Admit { conn: ConnId(1), request_id: None, user },
        Command::Deny { conn: ConnId(1), request_id: None, user },
        Command::SetLobby { conn: ConnId(1), request_id: None, enabled: false },
        Command::End { conn: ConnId(1), request_id: None },
    ];
    for decision in decisions {
        // Staged: the person waits on and nobody hears anything until the commit.
        let staged = apply_uncommitted(&mut f.state, decision.clone());
        assert_eq!(staged_writes(&staged), 1, "{decision:?}");
        assert!(staged.iter().all(|e| matches!(e, Effect::Persist(_))), "{decision:?}: {staged:?}");
        // The write fails: the host alone hears why, and nothing changed.
        let mut failed = Vec::new();
        f.state.apply(Command::Committed { result: Err(WriteFailed::Unavailable) }, Now::current(), &mut failed);
        assert_eq!(replies(&failed, 1), [Err(ErrorCode::Unavailable)], "{decision:?}");
        assert!(failed.iter().all(|e| matches!(e, Effect::Send { to: Audience::Conn(ConnId(1)), .. })), "{failed:?}");
        assert!(f.state.lobby.contains_key(&user), "{decision:?}: still waiting");
        assert!(f.state.session().lobby_enabled && f.state.session().status != SessionStatus::Ended);
    }
    let admitted = apply(&mut f.state, Command::Admit { conn: ConnId(1), request_id: None, user });
    assert_eq!(outcome(&admitted, 2), Some(Outcome::Joined));
}
