//! Video peers: after every command, what each device was told to open and close adds up to
//! exactly the other people's devices in its room, each pair agrees on who offers, and signals
//! pass only between such peers.

use std::collections::{BTreeMap, HashMap};

use convene_protocol::{SendSignal, Signal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// What each device believes: its open peer connections, and whether it offers on each.
#[derive(Debug, Default)]
struct Devices {
    peers: HashMap<ConnId, BTreeMap<ConnId, bool>>,
}

impl Devices {
    /// Carries out the `peers_changed` in `effects` as a client would, refusing any that opens
    /// a connection already open or closes one that is not.
    fn follow(&mut self, effects: &[Effect]) {
        for effect in effects {
            let Effect::Send { to: Audience::Conn(device), event: Event::PeersChanged { open, close, .. } } = effect
            else {
                continue;
            };
            let peers = self.peers.entry(*device).or_default();
            for (_, peer) in close {
                assert!(peers.remove(peer).is_some(), "{device:?} told to close {peer:?}, which it does not have");
            }
            for (_, peer, offer) in open {
                assert!(peers.insert(*peer, *offer).is_none(), "{device:?} told to open {peer:?} twice");
            }
        }
    }

    /// A device that left the session drops its connections by itself.
    fn forget(&mut self, device: ConnId) {
        self.peers.remove(&device);
    }

    /// Checks what the devices believe against the session: each present device connects to
    /// the other people's devices in its room (none in a room over the limit), and of each pair
    /// exactly one offers.
    fn check(&self, state: &SessionState, step: &str) {
        for member in state.presence.members() {
            let room: Vec<&crate::presence::Member> =
                state.presence.members().filter(|other| other.room == member.room).collect();
            let video = |conn: &ConnId| state.mesh.video.contains(conn);
            let devices_in_room = room.iter().flat_map(|m| m.conns.iter()).filter(|c| video(c)).count();
            for device in member.conns.iter().filter(|c| video(c)) {
                let expected: Vec<ConnId> = if devices_in_room > MAX_MESH_DEVICES {
                    Vec::new()
                } else {
                    let mut peers: Vec<ConnId> = room
                        .iter()
                        .filter(|other| other.user_id != member.user_id)
                        .flat_map(|other| other.conns.iter().copied())
                        .filter(video)
                        .collect();
                    peers.sort();
                    peers
                };
                let has: Vec<ConnId> =
                    self.peers.get(device).map(|peers| peers.keys().copied().collect()).unwrap_or_default();
                assert_eq!(has, expected, "{step}: the peers of {device:?}");
            }
            for device in member.conns.iter().filter(|c| !video(c)) {
                assert!(self.peers.get(device).is_none_or(BTreeMap::is_empty), "{step}: {device:?} has no video");
                for (peer, offers) in self.peers.get(device).into_iter().flatten() {
                    let theirs = self.peers.get(peer).and_then(|peers| peers.get(device));
                    assert_eq!(theirs, Some(&!offers), "{step}: exactly one of {device:?} and {peer:?} offers");
                    assert_eq!(*offers, device < peer, "{step}: the smaller id offers");
                }
            }
        }
    }
}

fn join_session(conn: u64, who: Identity) -> Command {
    joining(
        conn_id(conn),
        who,
        JoinSession { request_id: None, resume: vec![], rosters: vec![], session_id: SESSION, video: true },
    )
}

fn move_to(user: UserId, from: RoomId, to: RoomId) -> Command {
    asks(
        conn_id(1),
        MoveParticipant { request_id: None, session_id: SESSION, user_id: user, from_room_id: from, to_room_id: to },
    )
}

#[test]
fn peers_follow_every_change_of_room_and_device() {
    let mut f = fixture(SessionType::Group, false);
    let mut devices = Devices::default();
    let people: Vec<Identity> = (0..3).map(|_| identity(Role::Patient, f.org)).collect();
    let [a, b, c] = [people[0], people[1], people[2]];
    let host = f.host;
    devices.follow(&apply(&mut f.state, join_session(1, host)));
    let rooms = create_rooms(&mut f, 2, 5);
    let main = f.room;
    let steps: Vec<(&str, Command, Option<u64>)> = vec![
        ("a joins", join_session(10, a), None),
        ("b joins", join_session(11, b), None),
        ("c joins", join_session(12, c), None),
        ("a opens a second device", join_session(13, a), None),
        ("a moves to a breakout", move_to(a.user_id, main, rooms[0]), None),
        ("b follows", move_to(b.user_id, main, rooms[0]), None),
        (
            "b and c swap",
            asks(
                conn_id(1),
                SwapParticipants { request_id: None, session_id: SESSION, user_a: b.user_id, user_b: c.user_id },
            ),
            None,
        ),
        ("c goes to the other breakout", move_to(c.user_id, rooms[0], rooms[1]), None),
        ("a's first device dies", Command::Disconnect { conn: conn_id(10) }, Some(10)),
        ("b leaves", asks(conn_id(11), LeaveSession { request_id: None, session_id: SESSION }), Some(11)),
        (
            "the host removes c",
            asks(conn_id(1), RemoveParticipant { request_id: None, session_id: SESSION, user_id: c.user_id }),
            Some(12),
        ),
        ("a comes back to the main room", move_to(a.user_id, rooms[0], main), None),
    ];
    for (step, command, gone) in steps {
        let effects = apply(&mut f.state, command);
        assert_eq!(refusal(&effects), None, "{step}: {effects:?}");
        if let Some(gone) = gone {
            devices.forget(conn_id(gone));
        }
        devices.follow(&effects);
        devices.check(&f.state, step);
    }
    let host_peers: Vec<ConnId> = devices.peers[&conn_id(1)].keys().copied().collect();
    assert_eq!(host_peers, [conn_id(13)], "the host and a's remaining device see each other");
}

#[test]
fn random_changes_of_room_keep_every_device_in_step() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut f = fixture(SessionType::Group, false);
    let mut devices = Devices::default();
    let host = f.host;
    devices.follow(&apply(&mut f.state, join_session(1, host)));
    let rooms = create_rooms(&mut f, 3, 40);
    let everywhere: Vec<RoomId> = [f.room].into_iter().chain(rooms).collect();
    let people: Vec<Identity> = (0..16).map(|_| identity(Role::Patient, f.org)).collect();
    let mut next_conn = 100;
    for step in 0..400 {
        let person = people[rng.random_range(0..people.len())];
        let member = f.state.presence.get(person.user_id).cloned();
        let (label, command, gone) = match (rng.random_range(0..4), member) {
            (0, _) | (_, None) => {
                next_conn += 1;
                let video = rng.random_bool(0.8);
                let join =
                    JoinSession { request_id: None, resume: vec![], rosters: vec![], session_id: SESSION, video };
                ("join", joining(conn_id(next_conn), person, join), None)
            }
            (1, Some(member)) => {
                let device = member.conns[rng.random_range(0..member.conns.len())];
                ("disconnect", Command::Disconnect { conn: device }, Some(device))
            }
            (_, Some(member)) => {
                let to = everywhere[rng.random_range(0..everywhere.len())];
                ("move", move_to(person.user_id, member.room, to), None)
            }
        };
        let effects = apply(&mut f.state, command);
        if let Some(gone) = gone {
            devices.forget(gone);
        }
        devices.follow(&effects);
        devices.check(&f.state, &format!("step {step} ({label})"));
    }
}

#[test]
fn a_room_over_the_limit_connects_nobody_until_it_is_small_again() {
    let mut f = fixture(SessionType::Group, false);
    let mut devices = Devices::default();
    let host = f.host;
    devices.follow(&apply(&mut f.state, join_session(1, host)));
    let people: Vec<Identity> = (0..MAX_MESH_DEVICES).map(|_| identity(Role::Patient, f.org)).collect();
    for (i, person) in people.iter().enumerate() {
        devices.follow(&apply(&mut f.state, join_session(10 + i as u64, *person)));
        devices.check(&f.state, &format!("join {i}"));
    }
    assert!(devices.peers.values().all(BTreeMap::is_empty), "13 devices: nobody is connected");
    let effects = apply(&mut f.state, Command::Disconnect { conn: conn_id(10) });
    devices.forget(conn_id(10));
    devices.follow(&effects);
    devices.check(&f.state, "back to 12");
    assert_eq!(devices.peers[&conn_id(1)].len(), MAX_MESH_DEVICES - 1);
}

#[test]
fn signals_pass_only_between_peers() {
    let mut f = fixture(SessionType::Group, false);
    let host = f.host;
    apply(&mut f.state, join_session(1, host));
    let (a, b, c) = (identity(Role::Patient, f.org), identity(Role::Patient, f.org), identity(Role::Patient, f.org));
    for (conn, who) in [(10, a), (11, a), (20, b)] {
        apply(&mut f.state, join_session(conn, who));
    }
    // c only chats.
    join(&mut f.state, 30, c);
    let rooms = create_rooms(&mut f, 1, 5);
    let offer = || Signal::Offer { sdp: "v=0".into() };
    let signal = |from: u64, to: UserId, device: Option<u64>| {
        asks(
            conn_id(from),
            SendSignal {
                request_id: None,
                session_id: SESSION,
                to_user_id: to,
                to_device: device.map(conn_id),
                signal: Box::new(offer()),
            },
        )
    };
    let relayed = |effects: &[Effect]| -> Vec<ConnId> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to: Audience::Conn(to), event: Event::SignalReceived { .. } } => Some(*to),
                _ => None,
            })
            .collect()
    };
    type Case = (&'static str, Command, Result<Vec<ConnId>, ErrorCode>);
    let cases: Vec<Case> = vec![
        ("to b's only device, unnamed", signal(10, b.user_id, None), Ok(vec![conn_id(20)])),
        ("to one of a's two devices", signal(20, a.user_id, Some(11)), Ok(vec![conn_id(11)])),
        ("to a without naming a device", signal(20, a.user_id, None), Err(ErrorCode::Invalid)),
        ("to a device that is not a's", signal(20, a.user_id, Some(1)), Err(ErrorCode::Forbidden)),
        ("to one's own other device", signal(10, a.user_id, Some(11)), Err(ErrorCode::Forbidden)),
        ("from a connection not in the session", signal(99, b.user_id, None), Err(ErrorCode::Forbidden)),
        ("to a device that joined without video", signal(20, c.user_id, None), Err(ErrorCode::Forbidden)),
        ("from a device that joined without video", signal(30, b.user_id, None), Err(ErrorCode::Forbidden)),
    ];
    for (case, command, expected) in cases {
        let effects = apply(&mut f.state, command);
        let got = match refusal(&effects) {
            Some(code) => Err(code),
            None => Ok(relayed(&effects)),
        };
        assert_eq!(got, expected, "{case}: {effects:?}");
    }
    let main = f.room;
    apply(&mut f.state, move_to(b.user_id, main, rooms[0]));
    let effects = apply(&mut f.state, signal(10, b.user_id, None));
    assert_eq!(refusal(&effects), Some(ErrorCode::Forbidden), "b is in another room now");
    assert!(relayed(&effects).is_empty());
}
