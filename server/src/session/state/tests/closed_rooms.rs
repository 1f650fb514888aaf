//! Closed breakout rooms: who may still read them, and what a resume there is told.

use super::*;

/// Who may page a room's history, and what a read of it is answered with.
fn history_read(state: &mut SessionState, conn: u64, room: RoomId) -> Result<(), ErrorCode> {
    let fetch = FetchHistory {
        request_id: None,
        session_id: SESSION,
        room_id: room,
        before_seq: None,
        after_seq: None,
        limit: Some(10),
    };
    let command = asks(conn_id(conn), fetch);
    let effects = apply(state, command);
    match effects.as_slice() {
        [Effect::ReadHistory { conn: c, room: r, .. }] if *c == conn_id(conn) && *r == room => Ok(()),
        _ => Err(refusal(&effects).unwrap_or_else(|| panic!("neither read nor refused: {effects:?}"))),
    }
}

#[test]
fn a_closed_room_stays_readable_to_hosts_and_those_who_were_in_it() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let (visitor, stranger) = (identity(Role::Patient, f.org), identity(Role::Patient, f.org));
    join(&mut f.state, 2, visitor);
    join(&mut f.state, 3, stranger);
    let rooms = create_rooms(&mut f, 2, 5);
    let (breakout, other) = (rooms[0], rooms[1]);
    let assign = vec![(visitor.user_id, breakout), (stranger.user_id, other)];
    apply(
        &mut f.state,
        asks(
            conn_id(1),
            AssignParticipants { request_id: None, session_id: SESSION, assignments: assignments(assign) },
        ),
    );

    // While the room is open, its members and the hosts may read it.
    let open_rules = [(1, Ok(())), (2, Ok(())), (3, Err(ErrorCode::Forbidden))];
    for (conn, expected) in open_rules {
        assert_eq!(history_read(&mut f.state, conn, breakout), expected, "open room, conn {conn}");
    }

    // A send is under way as the room closes at once.
    let cid = ClientMsgId::new("late").expect("valid");
    let post = asks(
        conn_id(2),
        SendMessage {
            request_id: None,
            session_id: SESSION,
            room_id: breakout,
            client_msg_id: cid.clone(),
            body: "last words".into(),
        },
    );
    let Some(Effect::Persist(Persist::Message(message))) = apply(&mut f.state, post).first().cloned() else {
        panic!("expected a write");
    };
    let close = asks(
        conn_id(1),
        CloseBreakoutRooms { request_id: None, session_id: SESSION, room_ids: vec![breakout], countdown_secs: Some(0) },
    );
    apply(&mut f.state, close);
    assert!(!f.state.rooms.contains_key(&breakout), "the room closed");
    let posted = Command::Internal(Internal::Posted {
        room: breakout,
        sender: visitor.user_id,
        client_msg_id: cid,
        result: Ok(InsertOutcome::Inserted(message.stored(1))),
    });
    let effects = apply(&mut f.state, posted);
    let acked = effects.iter().any(|e| {
        matches!(e, Effect::Send { to: Audience::Conn(c), event: Event::MessageAcked { message, .. } } if *c == conn_id(2) && message.seq == 1)
    });
    assert!(acked, "the sender is answered although the room closed: {effects:?}");
    assert!(!effects.iter().any(|e| matches!(e, Effect::Send { event: Event::MessagePosted(_), .. })));

    // Once closed: hosts and those who were in it; nobody else; unknown rooms are not found.
    let closed_rules = [
        (1, breakout, Ok(())),
        (2, breakout, Ok(())),
        (3, breakout, Err(ErrorCode::Forbidden)),
        (2, RoomId(Uuid::new_v4()), Err(ErrorCode::NotFound)),
    ];
    for (conn, room, expected) in closed_rules {
        assert_eq!(history_read(&mut f.state, conn, room), expected, "closed room, conn {conn}");
    }

    // Rejoining with a cursor in the closed room reports where its chat ended.
    apply(&mut f.state, asks(conn_id(2), LeaveSession { request_id: None, session_id: SESSION }));
    let cursor = RoomCursor { room_id: breakout, last_seq: 0 };
    let effects = apply(
        &mut f.state,
        joining(
            conn_id(4),
            visitor,
            JoinSession { request_id: None, resume: vec![cursor], rosters: vec![], session_id: SESSION, video: false },
        ),
    );
    let resumed = effects.iter().find_map(|e| match e {
        Effect::Send { event: Event::Joined { snapshot, .. }, .. } => snapshot.resume.first().cloned(),
        _ => None,
    });
    assert_eq!(resumed, Some(Resumed { room: breakout, recovered: false, replayed: 0, last_seq: 1 }));
}

#[test]
fn a_room_with_messages_is_closed_not_deleted() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let rooms = create_rooms(&mut f, 2, 5);
    let (written, untouched) = (rooms[0], rooms[1]);
    let host = f.host.user_id;
    apply(
        &mut f.state,
        asks(
            conn_id(1),
            MoveParticipant {
                request_id: None,
                session_id: SESSION,
                user_id: host,
                from_room_id: f.room,
                to_room_id: written,
            },
        ),
    );
    let post = asks(
        conn_id(1),
        SendMessage {
            request_id: None,
            session_id: SESSION,
            room_id: written,
            client_msg_id: ClientMsgId::new("m").expect("valid"),
            body: "hello".into(),
        },
    );
    assert!(matches!(apply(&mut f.state, post).first(), Some(Effect::Persist(Persist::Message(_)))));
    apply(
        &mut f.state,
        asks(
            conn_id(1),
            MoveParticipant {
                request_id: None,
                session_id: SESSION,
                user_id: host,
                from_room_id: written,
                to_room_id: f.room,
            },
        ),
    );
    // The send is still being committed; the room is empty but not deletable, now or later.
    let delete = |room| asks(conn_id(1), DeleteBreakoutRoom { request_id: None, session_id: SESSION, room_id: room });
    assert_eq!(replies(&apply(&mut f.state, delete(written)), 1), [Err(ErrorCode::Conflict)]);
    assert_eq!(replies(&apply(&mut f.state, delete(untouched)), 1), [Ok(())]);
}
