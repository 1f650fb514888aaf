//! Changes of rooms: moves checked as a whole, timers on the session's clock, and the write
//! contract (staged, committed, then announced; one change in flight at a time).

use super::*;

#[test]
fn moves_are_checked_as_a_whole_before_anyone_moves() {
    let mut f = fixture(SessionType::Group, false);
    let people = host_and_people(&mut f, 3, Role::Patient);
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
        assert_eq!(moved_users(&f.state, &effects).len(), moved, "{name}");
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
    assert!(moved_users(&f.state, &out).is_empty(), "nobody moves before the end");
    assert_eq!(f.state.next_deadline(), Some(at(120).mono));

    let out = apply_at(&mut f.state, Command::Internal(Internal::Tick), at(120));
    assert_eq!(moved_users(&f.state, &out), [person.user_id]);
    let stored = out.iter().any(|e| {
        matches!(e, Effect::Persist(Persist::Staged { changes })
            if changes.iter().any(|c| matches!(c, crate::store::SessionWrite::CloseRooms { .. })))
    });
    assert!(stored, "the close is written with its transitions");
    assert_eq!(f.state.next_deadline(), None);
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
    assert!(moved_users(&f.state, &staged).is_empty() && replies(&staged, 1).is_empty(), "{staged:?}");
    assert_eq!(f.state.presence.get(user).map(|m| m.room), Some(f.room));

    // The write fails: the host alone hears why; the person is still where they were.
    let mut failed = Vec::new();
    f.state.apply(
        Command::Internal(Internal::Committed { result: Err(WriteFailed::Unavailable) }),
        Now::current(),
        &mut failed,
    );
    assert_eq!(replies(&failed, 1), [Err(ErrorCode::Unavailable)]);
    assert!(moved_users(&f.state, &failed).is_empty());
    assert!(
        failed.iter().all(|e| matches!(e, Effect::Send { to: Audience::Conn(c), .. } if *c == conn_id(1))),
        "{failed:?}"
    );
    assert_eq!(f.state.presence.get(user).map(|m| m.room), Some(f.room));

    // A retry under the same request id runs again, and its commit moves the person.
    let retried = apply(&mut f.state, move_it());
    assert_eq!((staged_writes(&retried), moved_users(&f.state, &retried)), (1, vec![user]));
    assert_eq!(replies(&retried, 1), [Ok(())]);
    assert_eq!(f.state.presence.get(user).map(|m| m.room), Some(rooms[0]));

    // Once committed, the same request id is answered from memory: no second move, no write.
    let again = apply(&mut f.state, move_it());
    assert_eq!((staged_writes(&again), moved_users(&f.state, &again).len()), (0, 0));
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
    assert_eq!(moved_users(&f.state, &settled), [user]);
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
            joining(
                conn_id(conn),
                who,
                JoinSession { request_id: None, resume: vec![], rosters: vec![], session_id: SESSION, video: false },
            ),
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
