//! The connections a room's events reach are remembered between posts; every change of room or
//! device is seen by the next event.

use super::*;

/// Posts a message from `conn` into `room` and commits it; returns the connections its
/// announcement reaches, resolved as the actor resolves them.
fn announced_to(state: &mut SessionState, conn: u64, room: RoomId, posts: &mut u32) -> Vec<ConnId> {
    *posts += 1;
    let cid = ClientMsgId::new(format!("c{posts}")).expect("valid");
    let send = SendMessage {
        request_id: None,
        session_id: SESSION,
        room_id: room,
        client_msg_id: cid.clone(),
        body: "hi".into(),
    };
    let effects = apply(state, asks(conn_id(conn), send));
    let Some(Effect::Persist(Persist::Message(message))) = effects.first().cloned() else {
        panic!("expected a write, got {effects:?}");
    };
    let stored = message.stored(i64::from(*posts));
    let posted = Internal::Posted {
        room,
        sender: message.sender_id,
        client_msg_id: cid,
        result: Ok(InsertOutcome::Inserted(stored)),
    };
    let effects = apply(state, posted.into());
    let to = effects
        .iter()
        .find_map(|e| match e {
            Effect::Send { to, event: Event::MessagePosted(_) } => Some(to.clone()),
            _ => None,
        })
        .expect("the message is announced");
    resolved(state, &to)
}

fn resolved(state: &mut SessionState, audience: &Audience) -> Vec<ConnId> {
    let mut conns = Vec::new();
    state.resolve(audience, &mut conns);
    conns.sort();
    conns
}

fn conns(locals: &[u64]) -> Vec<ConnId> {
    locals.iter().map(|local| conn_id(*local)).collect()
}

#[test]
fn a_rooms_remembered_audience_follows_every_change_of_room_and_device() {
    let mut f = fixture(SessionType::Group, false);
    // The host on connection 1, a on 10, b on 11.
    let people = host_and_people(&mut f, 2, Role::Patient);
    let (a, b) = (people[0], people[1]);
    let breakout = create_rooms(&mut f, 1, 5)[0];
    let main = f.room;
    let mut posts = 0;
    let second_device =
        JoinSession { request_id: None, resume: vec![], rosters: vec![], session_id: SESSION, video: false };
    let moving = |user: UserId, from: RoomId, to: RoomId| {
        asks(
            conn_id(1),
            MoveParticipant {
                request_id: None,
                session_id: SESSION,
                user_id: user,
                from_room_id: from,
                to_room_id: to,
            },
        )
    };
    let steps: Vec<(&str, Command, &[u64], &[u64])> = vec![
        ("b joins on a second device", joining(conn_id(12), b, second_device), &[1, 10, 11, 12], &[]),
        ("a moves to the breakout room", moving(a.user_id, main, breakout), &[1, 11, 12], &[10]),
        ("b's first device closes", Command::Disconnect { conn: conn_id(11) }, &[1, 12], &[10]),
        ("a comes back", moving(a.user_id, breakout, main), &[1, 10, 12], &[]),
        (
            "a leaves the session",
            asks(conn_id(10), LeaveSession { request_id: None, session_id: SESSION }),
            &[1, 12],
            &[],
        ),
    ];
    // Each room's audience is remembered before the first change.
    assert_eq!(announced_to(&mut f.state, 1, main, &mut posts), conns(&[1, 10, 11]));
    assert_eq!(resolved(&mut f.state, &Audience::Room(breakout)), conns(&[]));
    for (change, command, in_main, in_breakout) in steps {
        apply(&mut f.state, command);
        // Twice: the first post finds the room's connections, the second is sent to those
        // remembered.
        for _ in 0..2 {
            assert_eq!(announced_to(&mut f.state, 1, main, &mut posts), conns(in_main), "main room after: {change}");
        }
        assert_eq!(resolved(&mut f.state, &Audience::Room(breakout)), conns(in_breakout), "breakout after: {change}");
    }
}
