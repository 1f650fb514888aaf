//! Presence as members see it: diffs per room, coalesced per window, a returning device sent
//! what changed since the roster it held, and large rooms followed by count.

use std::time::Duration;

use convene_protocol::{CloseBreakoutRooms, FetchRoster, HeldRoster, RosterVersion};

use super::*;

/// The presence frames in `effects`, each with the connections it reaches.
fn presence_frames(state: &SessionState, effects: &[Effect]) -> Vec<(Vec<ConnId>, Vec<RosterView>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, event: Event::PresenceChanged { rosters } } => {
                let mut conns = Vec::new();
                state.for_each_conn(to, |conn| conns.push(conn));
                conns.sort();
                Some((conns, rosters.clone()))
            }
            _ => None,
        })
        .collect()
}

/// A diff as a test looks at it: who arrived or changed (with their device count), who left.
type Seen = (Vec<(UserId, u32)>, Vec<UserId>);

/// The one roster diff `conn` was sent for `room` in `effects`, as (arrived or changed: user and
/// devices, left).
fn diff_for(state: &SessionState, effects: &[Effect], conn: u64, room: RoomId) -> Option<Seen> {
    let mut found = presence_frames(state, effects)
        .into_iter()
        .filter(|(conns, _)| conns.contains(&conn_id(conn)))
        .flat_map(|(_, rosters)| rosters)
        .filter(|roster| roster.room == room);
    let roster = found.next()?;
    assert!(found.next().is_none(), "one diff per room and frame");
    assert!(roster.since.is_some(), "a diff names the version it applies to");
    Some((roster.members.iter().map(|(user, shown)| (*user, shown.devices)).collect(), roster.left))
}

fn joined_rosters(effects: &[Effect], conn: u64) -> Vec<RosterView> {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Send { to: Audience::Conn(c), event: Event::Joined { snapshot, .. } } if *c == conn_id(conn) => {
                Some(snapshot.rosters.clone())
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn join_at(state: &mut SessionState, conn: u64, who: Identity, rosters: Vec<HeldRoster>, now: Now) -> Vec<Effect> {
    let join = JoinSession { request_id: None, resume: vec![], rosters, session_id: SESSION, video: false };
    apply_at(state, joining(conn_id(conn), who, join), now)
}

fn later(start: Now, millis: u64) -> Now {
    Now {
        wall: start.wall + chrono::Duration::milliseconds(millis as i64),
        mono: start.mono + Duration::from_millis(millis),
    }
}

#[test]
fn each_change_of_a_device_reaches_the_others_in_the_room_as_a_diff() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let watcher = identity(Role::Mentee, f.org);
    join(&mut f.state, 9, watcher);
    let member = identity(Role::Mentee, f.org);
    let user = member.user_id;
    let steps: Vec<(Command, Seen)> = vec![
        (
            joining(
                conn_id(2),
                member,
                JoinSession { request_id: None, resume: vec![], rosters: vec![], session_id: SESSION, video: false },
            ),
            (vec![(user, 1)], vec![]),
        ),
        (
            joining(
                conn_id(3),
                member,
                JoinSession { request_id: None, resume: vec![], rosters: vec![], session_id: SESSION, video: false },
            ),
            (vec![(user, 2)], vec![]),
        ),
        (Command::Disconnect { conn: conn_id(2) }, (vec![(user, 1)], vec![])),
        (Command::Disconnect { conn: conn_id(3) }, (vec![], vec![user])),
    ];
    for (command, expected) in steps {
        let effects = apply(&mut f.state, command.clone());
        assert_eq!(diff_for(&f.state, &effects, 9, f.room), Some(expected.clone()), "participant: {command:?}");
        assert_eq!(diff_for(&f.state, &effects, 1, f.room), Some(expected), "host: {command:?}");
    }
}

#[test]
fn a_burst_within_the_window_reaches_each_member_as_one_diff() {
    let window = Duration::from_millis(50);
    let mut f = fixture_with(SessionType::Group, false, PresenceConfig { window, ..PresenceConfig::default() });
    let start = Now::current();
    join_at(&mut f.state, 1, f.host, vec![], start);
    let watcher = identity(Role::Mentee, f.org);
    join_at(&mut f.state, 2, watcher, vec![], start);
    // The first window: the host and the watcher themselves.
    let first = apply_at(&mut f.state, Command::Internal(Internal::Tick), later(start, 50));
    assert_eq!(diff_for(&f.state, &first, 2, f.room).map(|(arrived, _)| arrived.len()), Some(2));

    let burst = later(start, 1_000);
    let mut told = Vec::new();
    let mut people = Vec::new();
    for i in 0..100u64 {
        let person = identity(Role::Mentee, f.org);
        people.push(person.user_id);
        told.extend(join_at(&mut f.state, 100 + i, person, vec![], later(burst, i / 3)));
    }
    // One of them leaves again within the window: never announced at all.
    told.extend(apply_at(&mut f.state, Command::Disconnect { conn: conn_id(100) }, later(burst, 40)));
    assert!(presence_frames(&f.state, &told).is_empty(), "nothing is published inside the window");
    assert_eq!(f.state.next_deadline(), Some(later(burst, 50).mono), "the window starts at the first change");

    let published = apply_at(&mut f.state, Command::Internal(Internal::Tick), later(burst, 50));
    let frames = presence_frames(&f.state, &published);
    assert_eq!(frames.len(), 2, "one frame for the room's participants, one for the hosts: {frames:?}");
    let (arrived, left) = diff_for(&f.state, &published, 2, f.room).expect("the watcher hears the burst");
    assert_eq!(arrived.len(), 99);
    assert!(left.is_empty());
    assert!(!arrived.iter().any(|(user, _)| *user == people[0]), "who came and went is not announced");
    // Each newcomer is in the participants' frame, so it applies to the roster they were sent.
    let (participants, _) = &frames[0];
    assert_eq!(participants.len(), 100, "the watcher and the 99 who stayed");
    assert_eq!(f.state.next_deadline(), None, "nothing is left to publish");
}

#[test]
fn participants_follow_their_own_room_and_hosts_follow_every_room() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let (away, home) = (identity(Role::Mentee, f.org), identity(Role::Mentee, f.org));
    join(&mut f.state, 2, away);
    join(&mut f.state, 3, home);
    let rooms = create_rooms(&mut f, 1, 5);
    let moved = apply(
        &mut f.state,
        asks(
            conn_id(1),
            AssignParticipants {
                request_id: None,
                session_id: SESSION,
                assignments: assignments(vec![(away.user_id, rooms[0])]),
            },
        ),
    );
    assert_eq!(diff_for(&f.state, &moved, 3, f.room), Some((vec![], vec![away.user_id])));
    assert_eq!(diff_for(&f.state, &moved, 3, rooms[0]), None, "a participant does not follow other rooms");
    assert_eq!(diff_for(&f.state, &moved, 1, rooms[0]), Some((vec![(away.user_id, 1)], vec![])));
    assert_eq!(diff_for(&f.state, &moved, 1, f.room), Some((vec![], vec![away.user_id])));

    let newcomer = identity(Role::Mentee, f.org);
    let joined = join(&mut f.state, 4, newcomer);
    assert_eq!(diff_for(&f.state, &joined, 3, f.room), Some((vec![(newcomer.user_id, 1)], vec![])));
    assert_eq!(diff_for(&f.state, &joined, 2, f.room), None, "the one away does not hear the main room");
    assert_eq!(diff_for(&f.state, &joined, 1, f.room), Some((vec![(newcomer.user_id, 1)], vec![])));
    let rosters = joined_rosters(&joined, 4);
    assert_eq!(rosters.iter().map(|r| r.room).collect::<Vec<_>>(), [f.room], "a participant is sent its room");
    let host_view = joined_rosters(&join(&mut f.state, 5, f.host), 5);
    assert_eq!(host_view.len(), 2, "a host is sent every room: {host_view:?}");
}

#[test]
fn coming_back_to_a_room_sends_only_what_changed_since_the_roster_held() {
    let mut f = fixture(SessionType::Group, false);
    let people = host_and_people(&mut f, 10, Role::Mentee);
    let rooms = create_rooms(&mut f, 2, 5);
    let plan: Vec<(UserId, RoomId)> = people.iter().enumerate().map(|(i, p)| (p.user_id, rooms[i % 2])).collect();
    apply(
        &mut f.state,
        asks(conn_id(1), AssignParticipants { request_id: None, session_id: SESSION, assignments: assignments(plan) }),
    );
    // While they are away, one more person arrives in the main room.
    let newcomer = identity(Role::Mentee, f.org);
    join(&mut f.state, 50, newcomer);

    let closed = apply(
        &mut f.state,
        asks(
            conn_id(1),
            CloseBreakoutRooms { request_id: None, session_id: SESSION, room_ids: vec![], countdown_secs: Some(0) },
        ),
    );
    let moves: Vec<(&Vec<ConnId>, &RosterView)> = closed
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to: Audience::Conns(conns), event: Event::Moved { roster, .. } } => Some((conns, roster)),
            _ => None,
        })
        .collect();
    assert_eq!(moves.len(), 1, "everyone back from the same point shares one frame: {moves:?}");
    let (conns, roster) = moves[0];
    assert_eq!(conns.len(), 10);
    assert!(roster.since.is_some(), "a diff, not the whole roster");
    assert_eq!(roster.members.iter().map(|(user, _)| *user).collect::<Vec<_>>(), [newcomer.user_id]);
    assert!(roster.left.is_empty(), "{roster:?}");
    assert_eq!(roster.total, 12, "everyone, back");
    // Those who stayed hear the returns; the returners are not told of each other again.
    let (arrived, _) = diff_for(&f.state, &closed, 50, f.room).expect("the newcomer hears the return");
    assert_eq!(arrived.len(), 10);
    assert_eq!(diff_for(&f.state, &closed, 10, f.room), None);
}

#[test]
fn a_room_over_the_roster_limit_is_followed_by_its_participants_by_count_only() {
    let limit = 4;
    let config = PresenceConfig { window: Duration::ZERO, counts_interval: Duration::ZERO, roster_limit: limit };
    let mut f = fixture_with(SessionType::Group, false, config);
    let mut people = host_and_people(&mut f, 3, Role::Mentee);
    people.extend((0..3).map(|_| identity(Role::Mentee, f.org)));
    // The fifth member takes the room over the limit: participants are told, once.
    let over = join(&mut f.state, 13, people[3]);
    let told: Vec<RosterView> = presence_frames(&f.state, &over)
        .into_iter()
        .filter(|(conns, _)| conns.contains(&conn_id(10)))
        .flat_map(|(_, rosters)| rosters)
        .collect();
    assert_eq!(told.len(), 1);
    assert!(!told[0].live && told[0].since.is_none());
    assert_eq!(told[0].members.iter().map(|(user, _)| *user).collect::<Vec<_>>(), [f.host.user_id]);
    assert_eq!(told[0].total, 5);

    let more = join(&mut f.state, 14, people[4]);
    let large = joined_rosters(&more, 14);
    assert!(!large[0].live, "a participant arriving in a large room is sent its hosts: {large:?}");
    assert_eq!(large[0].members.len(), 1);
    assert_eq!(diff_for(&f.state, &more, 10, f.room), None, "no diffs for participants of a large room");
    assert!(diff_for(&f.state, &more, 1, f.room).is_some(), "hosts still follow it");
    let counted = more.iter().any(|e| {
        matches!(e, Effect::Send { to: Audience::Session, event: Event::RoomCounts { counts } }
            if counts.contains(&(f.room, 6)))
    });
    assert!(counted, "everyone hears the count");

    // Back to half the limit (host included), participants are sent the whole roster again.
    for conn in [14, 13, 12] {
        apply(&mut f.state, Command::Disconnect { conn: conn_id(conn) });
    }
    let live_again = apply(&mut f.state, Command::Disconnect { conn: conn_id(11) });
    let whole: Vec<RosterView> = presence_frames(&f.state, &live_again)
        .into_iter()
        .filter(|(conns, _)| conns.contains(&conn_id(10)))
        .flat_map(|(_, rosters)| rosters)
        .collect();
    assert!(whole[0].live && whole[0].since.is_none(), "{whole:?}");
    assert_eq!(whole[0].members.len(), 2);
}

#[test]
fn a_rejoin_naming_the_roster_it_holds_is_sent_what_changed_since() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    let (stays, returns, arrives) =
        (identity(Role::Mentee, f.org), identity(Role::Mentee, f.org), identity(Role::Mentee, f.org));
    join(&mut f.state, 2, stays);
    join(&mut f.state, 3, returns);
    // What `returns` holds: the roster as of its own arrival's publication.
    let held = RosterVersion { epoch: 1, seq: f.state.presence.rosters().version(f.room) };
    apply(&mut f.state, Command::Disconnect { conn: conn_id(3) });
    join(&mut f.state, 4, arrives);
    apply(&mut f.state, Command::Disconnect { conn: conn_id(2) });

    let cases = [
        ("the roster it holds", held, true),
        ("a roster of an earlier load", RosterVersion { epoch: 0, ..held }, false),
        ("a version never published", RosterVersion { seq: held.seq + 100, ..held }, false),
    ];
    for (i, (name, version, diff)) in cases.into_iter().enumerate() {
        let conn = 30 + i as u64;
        let rejoined =
            join_at(&mut f.state, conn, returns, vec![HeldRoster { room_id: f.room, version }], Now::current());
        let rosters = joined_rosters(&rejoined, conn);
        if diff {
            assert_eq!(rosters[0].since, Some(held.seq), "{name}");
            // It held itself as present: its own departure is in the diff, and its return
            // follows in the next publication.
            let arrived: Vec<UserId> = rosters[0].members.iter().map(|(user, _)| *user).collect();
            assert_eq!(arrived, [arrives.user_id], "{name}");
            let mut left = rosters[0].left.clone();
            left.sort();
            let mut expected = vec![stays.user_id, returns.user_id];
            expected.sort();
            assert_eq!(left, expected, "{name}");
        } else {
            assert_eq!(rosters[0].since, None, "{name}: the whole roster");
            assert_eq!(rosters[0].members.len(), 2, "{name}: the host and the one who arrived");
        }
        apply(&mut f.state, Command::Disconnect { conn: conn_id(conn) });
    }
}

#[test]
fn fetch_roster_pages_a_room_by_user_id_for_its_members_and_hosts() {
    let mut f = fixture(SessionType::Group, false);
    join(&mut f.state, 1, f.host);
    for i in 0..4 {
        join(&mut f.state, 10 + i, identity(Role::Mentee, f.org));
    }
    let rooms = create_rooms(&mut f, 1, 5);
    let fetch = |conn: u64, room: RoomId, after: Option<UserId>| {
        asks(conn_id(conn), FetchRoster { request_id: None, session_id: SESSION, room_id: room, after, limit: Some(2) })
    };
    let page = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::Send { event: Event::RosterPage { members, next, total, .. }, .. } => {
                Some((members.iter().map(|m| m.user_id).collect::<Vec<_>>(), *next, *total))
            }
            _ => None,
        })
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (members, next, total) = page(&apply(&mut f.state, fetch(10, f.room, after))).expect("a page");
        assert_eq!(total, 5);
        seen.extend(members);
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages run in user id order");
    assert_eq!(seen.len(), 5, "every member once");
    assert_eq!(refusal(&apply(&mut f.state, fetch(10, rooms[0], None))), Some(ErrorCode::Forbidden));
    assert_eq!(page(&apply(&mut f.state, fetch(1, rooms[0], None))).map(|(m, _, t)| (m.len(), t)), Some((0, 0)));
}
