//! Breakout rooms over real sockets: creating, planning, opening, moving, closing, timers,
//! self-select, broadcast, help, per-room chat and the transition history.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, anyhow, bail, ensure};
use convene_protocol::{BreakoutRoomView, ErrorCode, MoveReason, Role, RoomId, ServerMessage, SessionId, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Backend, Client, TestServer, TestUser};
use crate::nodes::TestCluster;
use crate::{across_nodes, on_both_backends};

// The host on the session's owner, everyone else on another node.
across_nodes!(
    hosts_create_rename_and_delete_rooms,
    opening_a_plan_moves_everyone_at_once_and_records_transitions,
    opening_is_all_or_nothing,
    moves_into_a_full_room_fail_with_full,
    of_two_hosts_moving_one_person_one_wins_and_the_other_gets_conflict,
    a_retried_move_does_not_move_twice,
    swapping_exchanges_rooms,
    self_select_and_return_follow_the_hosts_settings,
    closing_counts_down_then_returns_everyone_to_main,
    a_room_timer_fires_even_after_the_host_left,
    broadcast_reaches_every_room_and_help_reaches_the_hosts,
    breakout_chat_is_seen_only_in_its_room,
    late_joiners_in_automatic_mode_go_to_the_least_full_room,
    participants_cannot_run_breakouts,
    random_concurrent_changes_keep_every_rule,
    presence_moves_with_the_person,
    the_transitions_endpoint_reports_history_and_attendance,
);

on_both_backends!(
    hosts_create_rename_and_delete_rooms,
    opening_a_plan_moves_everyone_at_once_and_records_transitions,
    opening_is_all_or_nothing,
    moves_into_a_full_room_fail_with_full,
    of_two_hosts_moving_one_person_one_wins_and_the_other_gets_conflict,
    a_retried_move_does_not_move_twice,
    swapping_exchanges_rooms,
    self_select_and_return_follow_the_hosts_settings,
    closing_counts_down_then_returns_everyone_to_main,
    a_room_timer_fires_even_after_the_host_left,
    broadcast_reaches_every_room_and_help_reaches_the_hosts,
    breakout_chat_is_seen_only_in_its_room,
    late_joiners_in_automatic_mode_go_to_the_least_full_room,
    participants_cannot_run_breakouts,
    random_concurrent_changes_keep_every_rule,
    presence_moves_with_the_person,
    the_transitions_endpoint_reports_history_and_attendance,
    after_a_restart_people_rejoin_the_breakout_room_they_were_in,
);

/// A group session with a host and `n` participants, all joined. With [`Backend::TwoNodes`] the
/// host joined first on one node (which owns the session) and `server`, through which everyone
/// else connects, is the other node.
pub(crate) struct Fixture {
    pub(crate) server: TestServer,
    /// The session's owner, when it is not `server`.
    pub(crate) owner: Option<TestServer>,
    pub(crate) host: TestUser,
    pub(crate) host_client: Client,
    pub(crate) session: SessionId,
    pub(crate) main: RoomId,
    pub(crate) people: Vec<(TestUser, Client)>,
}

pub(crate) async fn fixture(backend: Backend, n: usize) -> Result<Fixture> {
    let (owner, server) = match backend {
        Backend::TwoNodes => {
            let mut nodes = TestCluster::start(2).await?.nodes.into_iter();
            let (Some(owner), Some(other)) = (nodes.next(), nodes.next()) else { bail!("two nodes started") };
            (Some(owner), other)
        }
        Backend::Sqlite | Backend::Postgres => (None, TestServer::start(backend).await?),
    };
    let org = Some(Uuid::new_v4());
    let host = TestUser::new(Role::Therapist, org);
    let view = server.create_session(&host, json!({"session_type": "group"})).await?;
    let mut host_client = Client::connect(owner.as_ref().unwrap_or(&server), &host).await?;
    host_client.join(view.id).await?;
    let mut people = Vec::new();
    for _ in 0..n {
        let user = TestUser::new(Role::Patient, org);
        let mut client = Client::connect(&server, &user).await?;
        client.join(view.id).await?;
        people.push((user, client));
    }
    Ok(Fixture { server, owner, host, host_client, session: view.id, main: view.main_room_id, people })
}

impl Fixture {
    /// Stops the nodes and hands back the database, with every departure recorded.
    pub(crate) async fn stop(&mut self) -> Result<crate::common::TestDb> {
        stop_nodes(&mut self.server, &mut self.owner, &self.host, self.session).await
    }
}

/// Stops a fixture's nodes: the other node first, then (once the owner has seen its people
/// leave) the owner.
async fn stop_nodes(
    server: &mut TestServer,
    owner: &mut Option<TestServer>,
    host: &TestUser,
    session: SessionId,
) -> Result<crate::common::TestDb> {
    let Some(mut owner) = owner.take() else { return server.halt().await };
    let mut watcher = Client::connect(&owner, host).await?;
    let joined = watcher.join(session).await?;
    let mut present: HashSet<UserId> =
        joined.members.iter().map(|m| m.user_id).filter(|user| *user != host.id).collect();
    server.halt().await?;
    while !present.is_empty() {
        if let ServerMessage::MemberLeft { user_id, .. } = watcher.recv().await? {
            present.remove(&user_id);
        }
    }
    drop(watcher);
    owner.halt().await
}

/// Creates `count` rooms and returns their ids, in creation order.
pub(crate) async fn create_rooms(f: &mut Fixture, count: u32, max: u32, mode: &str) -> Result<Vec<RoomId>> {
    let id = format!("c-{}", Uuid::new_v4().simple());
    f.host_client
        .send_json(json!({"type": "create_breakout_rooms", "request_id": id, "session_id": f.session, "count": count, "max_participants": max, "assignment_mode": mode}))
        .await?;
    let mut rooms = Vec::new();
    loop {
        match f.host_client.recv().await? {
            ServerMessage::BreakoutsChanged { rooms: changed, .. } => {
                rooms.extend(changed.into_iter().map(|r| r.room_id))
            }
            ServerMessage::Ok { request_id: Some(r) } if r.as_str() == id => return Ok(rooms),
            ServerMessage::Error(e) => bail!("create failed: {e:?}"),
            _ => {}
        }
    }
}

/// The next `moved` event of a client: (room, reason, member count).
pub(crate) async fn moved(client: &mut Client) -> Result<(RoomId, MoveReason, usize, i64)> {
    client
        .recv_until(|m| match m {
            ServerMessage::Moved { room, reason, members, .. } => {
                Some((room.room_id, reason, members.len(), room.last_seq))
            }
            _ => None,
        })
        .await
}

pub(crate) fn mv(session: SessionId, user: UserId, from: RoomId, to: RoomId) -> Value {
    json!({"type": "move_participant", "session_id": session, "user_id": user, "from_room_id": from, "to_room_id": to})
}

/// The breakout overview a host sees on (re)joining.
async fn overview(server: &TestServer, host: &TestUser, session: SessionId) -> Result<Vec<BreakoutRoomView>> {
    let mut client = Client::connect(server, host).await?;
    client.send_json(json!({"type": "join_session", "session_id": session})).await?;
    match client.recv().await? {
        ServerMessage::Joined { breakouts: Some(overview), .. } => Ok(overview.rooms),
        other => bail!("expected joined with an overview, got {other:?}"),
    }
}

async fn hosts_create_rename_and_delete_rooms(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 1).await?;
    let rooms = create_rooms(&mut f, 2, 5, "manual").await?;
    assert_eq!(rooms.len(), 2);
    let named = f.host_client.request(json!({"type": "create_breakout_rooms", "session_id": f.session, "names": ["Mentors", "Mentees"], "max_participants": 3})).await?;
    assert_eq!(named, Ok(()));
    assert_eq!(
        f.host_client.request(json!({"type": "update_breakout_room", "session_id": f.session, "room_id": rooms[0], "name": "Quiet room"})
        )
        .await?,
        Ok(())
    );
    let (user, _) = &f.people[0];
    assert_eq!(f.host_client.request(mv(f.session, user.id, f.main, rooms[1])).await?, Ok(()));
    assert_eq!(
        f.host_client
            .request(json!({"type": "delete_breakout_room", "session_id": f.session, "room_id": rooms[1]}))
            .await?,
        Err(ErrorCode::Conflict)
    );
    assert_eq!(
        f.host_client
            .request(json!({"type": "delete_breakout_room", "session_id": f.session, "room_id": rooms[0]}))
            .await?,
        Ok(())
    );
    assert_eq!(
        f.host_client
            .request(
                json!({"type": "create_breakout_rooms", "session_id": f.session, "count": 1, "max_participants": 0})
            )
            .await?,
        Err(ErrorCode::Invalid)
    );

    let stored = f.server.db.store().await?.active_breakout_rooms(f.session).await?;
    let mut names: Vec<String> = stored.iter().map(|r| r.room_name.clone()).collect();
    names.sort();
    assert_eq!(names, ["Mentees", "Mentors", "Room 2"]);
    assert!(stored.iter().any(|r| r.id == rooms[1] && r.max_participants == 5));
    Ok(())
}

async fn opening_a_plan_moves_everyone_at_once_and_records_transitions(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 6).await?;
    let rooms = create_rooms(&mut f, 3, 2, "automatic").await?;
    let (first, second) = (f.people[0].0.id, f.people[1].0.id);
    let (apart_a, apart_b) = (f.people[2].0.id, f.people[3].0.id);
    f.host_client
        .send_json(json!({"type": "plan_breakouts", "request_id": "p", "session_id": f.session, "automatic": true,
            "assignments": [{"user_id": first, "room_id": rooms[2]}], "keep_together": [[first, second]],
            "keep_apart": [[apart_a, apart_b]]}))
        .await?;
    let (plan, unassigned) = f
        .host_client
        .recv_until(|m| match m {
            ServerMessage::BreakoutPlan { assignments, unassigned, .. } => Some((assignments, unassigned)),
            _ => None,
        })
        .await?;
    assert_eq!(plan.len(), 6, "everyone is planned");
    assert!(unassigned.is_empty());
    let planned: HashMap<UserId, RoomId> = plan.iter().map(|a| (a.user_id, a.room_id)).collect();
    assert_eq!(planned.get(&first), Some(&rooms[2]), "the manual choice stands");
    assert_eq!(planned.get(&second), Some(&rooms[2]), "the pair stays together");
    assert_ne!(planned.get(&apart_a), planned.get(&apart_b), "the other pair stays apart");

    assert_eq!(f.host_client.request(json!({"type": "open_breakouts", "session_id": f.session})).await?, Ok(()));
    for (user, client) in &mut f.people {
        let (room, reason, members, _) = moved(client).await?;
        assert_eq!((Some(&room), reason, members), (planned.get(&user.id), MoveReason::Assigned, 2));
    }
    let view = overview(&f.server, &f.host, f.session).await?;
    assert!(view.iter().all(|r| r.participants == 2), "{view:?}");

    let db = f.stop().await?;
    let transitions = db.store().await?.transitions(f.session).await?;
    let moves = transitions.iter().filter(|t| t.transition_type == convene_server::store::TransitionType::Move).count();
    assert_eq!(moves, 6);
    Ok(())
}

async fn opening_is_all_or_nothing(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 3).await?;
    let rooms = create_rooms(&mut f, 1, 2, "manual").await?;
    let assignments: Vec<Value> = f.people.iter().map(|(u, _)| json!({"user_id": u.id, "room_id": rooms[0]})).collect();
    f.host_client
        .send_json(
            json!({"type": "plan_breakouts", "request_id": "p", "session_id": f.session, "assignments": assignments}),
        )
        .await?;
    f.host_client.recv_until(|m| matches!(m, ServerMessage::BreakoutPlan { .. }).then_some(())).await?;
    assert_eq!(
        f.host_client.request(json!({"type": "open_breakouts", "session_id": f.session})).await?,
        Err(ErrorCode::Full)
    );
    for (_, client) in &mut f.people {
        let seen = client.sync().await?;
        ensure!(!seen.iter().any(|m| matches!(m, ServerMessage::Moved { .. })), "someone moved: {seen:?}");
    }
    assert!(overview(&f.server, &f.host, f.session).await?.iter().all(|r| r.members.is_empty()));
    Ok(())
}

async fn moves_into_a_full_room_fail_with_full(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 2).await?;
    let rooms = create_rooms(&mut f, 1, 1, "manual").await?;
    let (a, b) = (f.people[0].0.id, f.people[1].0.id);
    assert_eq!(f.host_client.request(mv(f.session, a, f.main, rooms[0])).await?, Ok(()));
    assert_eq!(f.host_client.request(mv(f.session, b, f.main, rooms[0])).await?, Err(ErrorCode::Full));
    // Hosts visiting do not count against capacity.
    assert_eq!(f.host_client.request(mv(f.session, f.host.id, f.main, rooms[0])).await?, Ok(()));
    let view = overview(&f.server, &f.host, f.session).await?;
    assert_eq!((view[0].participants, view[0].members.len()), (1, 2));
    Ok(())
}

async fn of_two_hosts_moving_one_person_one_wins_and_the_other_gets_conflict(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 1).await?;
    let rooms = create_rooms(&mut f, 2, 5, "manual").await?;
    let co_host = TestUser::new(Role::Admin, f.host.org);
    let mut co = Client::connect(&f.server, &co_host).await?;
    co.join(f.session).await?;
    let user = f.people[0].0.id;
    let (first, second) = (mv(f.session, user, f.main, rooms[0]), mv(f.session, user, f.main, rooms[1]));
    let (one, two) = tokio::join!(f.host_client.request(first), co.request(second));
    let outcomes = [one?, two?];
    assert!(outcomes.contains(&Ok(())) && outcomes.contains(&Err(ErrorCode::Conflict)), "{outcomes:?}");
    let winner = if outcomes[0].is_ok() { rooms[0] } else { rooms[1] };
    let (room, ..) = moved(&mut f.people[0].1).await?;
    assert_eq!(room, winner);
    let db = f.stop().await?;
    let moves: Vec<_> = db
        .store()
        .await?
        .transitions(f.session)
        .await?
        .into_iter()
        .filter(|t| t.user_id == user && t.transition_type == convene_server::store::TransitionType::Move)
        .collect();
    assert_eq!(moves.len(), 1, "history agrees: one move");
    assert_eq!(moves[0].to_room, Some(winner));
    Ok(())
}

async fn a_retried_move_does_not_move_twice(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 1).await?;
    let rooms = create_rooms(&mut f, 1, 5, "manual").await?;
    let user = f.people[0].0.id;
    let mut body = mv(f.session, user, f.main, rooms[0]);
    body["request_id"] = json!("same");
    for _ in 0..2 {
        f.host_client.send_json(body.clone()).await?;
        f.host_client
            .recv_until(|m| {
                matches!(m, ServerMessage::Ok { request_id: Some(ref r) } if r.as_str() == "same").then_some(())
            })
            .await?;
    }
    moved(&mut f.people[0].1).await?;
    ensure!(!f.people[0].1.sync().await?.iter().any(|m| matches!(m, ServerMessage::Moved { .. })), "moved twice");
    let db = f.stop().await?;
    let moves = db
        .store()
        .await?
        .transitions(f.session)
        .await?
        .into_iter()
        .filter(|t| t.transition_type == convene_server::store::TransitionType::Move)
        .count();
    assert_eq!(moves, 1);
    Ok(())
}

async fn swapping_exchanges_rooms(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 2).await?;
    let rooms = create_rooms(&mut f, 2, 1, "manual").await?;
    let (a, b) = (f.people[0].0.id, f.people[1].0.id);
    let assign = json!({"type": "assign_participants", "session_id": f.session, "assignments": [{"user_id": a, "room_id": rooms[0]}, {"user_id": b, "room_id": rooms[1]}]});
    assert_eq!(f.host_client.request(assign).await?, Ok(()));
    assert_eq!(
        f.host_client
            .request(json!({"type": "swap_participants", "session_id": f.session, "user_a": a, "user_b": b}))
            .await?,
        Ok(())
    );
    for (index, expected) in [(0, rooms[1]), (1, rooms[0])] {
        moved(&mut f.people[index].1).await?;
        let (room, ..) = moved(&mut f.people[index].1).await?;
        assert_eq!(room, expected);
    }
    Ok(())
}

async fn self_select_and_return_follow_the_hosts_settings(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 2).await?;
    let rooms = create_rooms(&mut f, 1, 1, "manual").await?;
    assert_eq!(f.host_client.request(json!({"type": "open_breakouts", "session_id": f.session})).await?, Ok(()));
    let select = |room: RoomId| json!({"type": "select_room", "session_id": f.session, "room_id": room});
    let (first, second) = f.people.split_at_mut(1);
    assert_eq!(first[0].1.request(select(rooms[0])).await?, Err(ErrorCode::Forbidden));
    assert_eq!(f.host_client.request(json!({"type": "set_breakout_options", "session_id": f.session, "allow_self_select": true, "allow_return_to_main": false})).await?, Ok(()));
    assert_eq!(first[0].1.request(select(rooms[0])).await?, Ok(()));
    assert_eq!(second[0].1.request(select(rooms[0])).await?, Err(ErrorCode::Full));
    assert_eq!(first[0].1.request(select(f.main)).await?, Err(ErrorCode::Forbidden), "return is locked");
    // The lock never locks the host out.
    assert_eq!(f.host_client.request(select(rooms[0])).await?, Ok(()));
    assert_eq!(f.host_client.request(select(f.main)).await?, Ok(()));
    Ok(())
}

async fn closing_counts_down_then_returns_everyone_to_main(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 2).await?;
    let rooms = create_rooms(&mut f, 2, 5, "manual").await?;
    let assign = json!({"type": "assign_participants", "session_id": f.session, "assignments": [{"user_id": f.people[0].0.id, "room_id": rooms[0]}, {"user_id": f.people[1].0.id, "room_id": rooms[1]}]});
    assert_eq!(f.host_client.request(assign).await?, Ok(()));
    assert_eq!(
        f.host_client
            .request(json!({"type": "close_breakout_rooms", "session_id": f.session, "countdown_secs": 1}))
            .await?,
        Ok(())
    );
    for (_, client) in &mut f.people {
        moved(client).await?;
        let seconds = client
            .recv_until(|m| match m {
                ServerMessage::RoomClosing { seconds_left, .. } => Some(seconds_left),
                _ => None,
            })
            .await?;
        assert!(seconds <= 1);
        let (room, reason, ..) = moved(client).await?;
        assert_eq!((room, reason), (f.main, MoveReason::RoomClosed));
    }
    assert!(overview(&f.server, &f.host, f.session).await?.is_empty(), "closed rooms are gone");
    let db = f.stop().await?;
    assert!(db.store().await?.active_breakout_rooms(f.session).await?.is_empty());
    Ok(())
}

async fn a_room_timer_fires_even_after_the_host_left(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 1).await?;
    let rooms = create_rooms(&mut f, 1, 5, "manual").await?;
    let user = f.people[0].0.id;
    f.host_client.send_json(json!({"type": "plan_breakouts", "request_id": "p", "session_id": f.session, "assignments": [{"user_id": user, "room_id": rooms[0]}]})).await?;
    f.host_client.recv_until(|m| matches!(m, ServerMessage::BreakoutPlan { .. }).then_some(())).await?;
    assert_eq!(
        f.host_client
            .request(json!({"type": "set_breakout_options", "session_id": f.session, "countdown_secs": 1}))
            .await?,
        Ok(())
    );
    assert_eq!(
        f.host_client.request(json!({"type": "open_breakouts", "session_id": f.session, "timer_secs": 2})).await?,
        Ok(())
    );
    drop(f.host_client);
    let client = &mut f.people[0].1;
    moved(client).await?;
    let warned = client
        .recv_until(|m| match m {
            ServerMessage::RoomClosing { seconds_left, .. } => Some(seconds_left),
            _ => None,
        })
        .await?;
    assert!(warned <= 1, "announced ahead of the end");
    let (room, reason, ..) = moved(client).await?;
    assert_eq!((room, reason), (f.main, MoveReason::RoomClosed));
    Ok(())
}

async fn broadcast_reaches_every_room_and_help_reaches_the_hosts(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 2).await?;
    let rooms = create_rooms(&mut f, 1, 5, "manual").await?;
    let asker = f.people[0].0.id;
    assert_eq!(f.host_client.request(mv(f.session, asker, f.main, rooms[0])).await?, Ok(()));
    assert_eq!(
        f.host_client
            .request(json!({"type": "broadcast", "session_id": f.session, "body": "Five minutes left"}))
            .await?,
        Ok(())
    );
    for (_, client) in &mut f.people {
        let body = client
            .recv_until(|m| match m {
                ServerMessage::Broadcast { body, .. } => Some(body),
                _ => None,
            })
            .await?;
        assert_eq!(body, "Five minutes left");
    }
    assert_eq!(
        f.people[1].1.request(json!({"type": "ask_for_help", "session_id": f.session})).await?,
        Err(ErrorCode::Invalid),
        "only from a breakout room"
    );
    assert_eq!(f.people[0].1.request(json!({"type": "ask_for_help", "session_id": f.session})).await?, Ok(()));
    let help = f
        .host_client
        .recv_until(|m| match m {
            ServerMessage::HelpRequested { request, .. } => Some(request),
            _ => None,
        })
        .await?;
    assert_eq!((help.user_id, help.room_id), (asker, rooms[0]));
    // The host joins the room; the request is answered (before the move's own `ok`).
    f.host_client.send_json(mv(f.session, f.host.id, f.main, rooms[0])).await?;
    let resolved = f.host_client.recv_until(|m| match m {
        ServerMessage::HelpResolved { user_id, .. } => Some(user_id),
        _ => None,
    });
    assert_eq!(resolved.await?, asker);
    Ok(())
}

async fn breakout_chat_is_seen_only_in_its_room(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 3).await?;
    let rooms = create_rooms(&mut f, 2, 5, "manual").await?;
    let ids: Vec<UserId> = f.people.iter().map(|(u, _)| u.id).collect();
    let assign = json!({"type": "assign_participants", "session_id": f.session, "assignments": [{"user_id": ids[0], "room_id": rooms[0]}, {"user_id": ids[1], "room_id": rooms[0]}, {"user_id": ids[2], "room_id": rooms[1]}]});
    assert_eq!(f.host_client.request(assign).await?, Ok(()));
    for (_, client) in &mut f.people {
        moved(client).await?;
    }
    f.people[0].1.post(f.session, rooms[0], "b1", "only for room one").await?;
    f.people[1]
        .1
        .recv_until(|m| matches!(m, ServerMessage::Message { message } if message.room_id == rooms[0]).then_some(()))
        .await?;
    for client in [&mut f.people[2].1, &mut f.host_client] {
        ensure!(
            !client.sync().await?.iter().any(|m| matches!(m, ServerMessage::Message { .. })),
            "seen outside the room"
        );
    }
    f.people[2].1.send_json(json!({"type": "send_message", "request_id": "x", "session_id": f.session, "room_id": rooms[0], "client_msg_id": "x", "body": "sneak"})).await?;
    f.people[2].1.expect_error(ErrorCode::Forbidden).await?;
    // Someone moved into the room learns where its history stands.
    let assign = json!({"type": "assign_participants", "session_id": f.session, "assignments": [{"user_id": ids[2], "room_id": rooms[0]}]});
    assert_eq!(f.host_client.request(assign).await?, Ok(()));
    let (_, _, members, last_seq) = moved(&mut f.people[2].1).await?;
    assert_eq!((members, last_seq), (3, 1));
    Ok(())
}

async fn late_joiners_in_automatic_mode_go_to_the_least_full_room(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 3).await?;
    let rooms = create_rooms(&mut f, 2, 5, "automatic").await?;
    let assign = json!({"type": "assign_participants", "session_id": f.session, "assignments": [{"user_id": f.people[0].0.id, "room_id": rooms[0]}, {"user_id": f.people[1].0.id, "room_id": rooms[0]}, {"user_id": f.people[2].0.id, "room_id": rooms[1]}]});
    assert_eq!(f.host_client.request(assign).await?, Ok(()));
    assert_eq!(f.host_client.request(json!({"type": "open_breakouts", "session_id": f.session})).await?, Ok(()));
    let late = TestUser::new(Role::Patient, f.host.org);
    let mut client = Client::connect(&f.server, &late).await?;
    let joined = client.join(f.session).await?;
    assert_eq!(joined.you.room_id, rooms[1]);
    // And someone who drops out of a room comes back to it.
    drop(f.people.remove(0));
    let back = Client::connect(&f.server, &f.people[0].0).await?;
    let mut back = back;
    let again = back.join(f.session).await?;
    assert_eq!(again.you.room_id, rooms[0]);
    Ok(())
}

async fn participants_cannot_run_breakouts(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 2).await?;
    let rooms = create_rooms(&mut f, 1, 5, "manual").await?;
    let other = f.people[1].0.id;
    let attempts = [
        json!({"type": "create_breakout_rooms", "session_id": f.session, "count": 1, "max_participants": 2}),
        mv(f.session, other, f.main, rooms[0]),
        json!({"type": "assign_participants", "session_id": f.session, "assignments": [{"user_id": other, "room_id": rooms[0]}]}),
        json!({"type": "close_breakout_rooms", "session_id": f.session}),
        json!({"type": "broadcast", "session_id": f.session, "body": "hi"}),
        json!({"type": "open_breakouts", "session_id": f.session}),
        json!({"type": "plan_breakouts", "session_id": f.session, "automatic": true}),
    ];
    for attempt in attempts {
        assert_eq!(f.people[0].1.request(attempt.clone()).await?, Err(ErrorCode::Forbidden), "{attempt}");
    }
    let view = overview(&f.server, &f.host, f.session).await?;
    assert_eq!((view.len(), view[0].members.len()), (1, 0), "nothing changed");
    Ok(())
}

/// Several hosts issue joins, leaves, moves, swaps and closes at once; afterwards every rule
/// must hold and the stored transitions must replay to the final membership. Across nodes, the
/// participants' node restarts halfway through (the hosts are on the owner).
async fn random_concurrent_changes_keep_every_rule(backend: Backend) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let seed: u64 = rand::random();
    let mut f = fixture(backend, 12).await?;
    let rooms = create_rooms(&mut f, 4, 3, "manual").await?;
    let people: Vec<UserId> = f.people.iter().map(|(u, _)| u.id).collect();
    let co_host = TestUser::new(Role::Admin, f.host.org);
    let mut co = Client::connect(f.owner.as_ref().unwrap_or(&f.server), &co_host).await?;
    co.join(f.session).await?;
    let halfway = std::sync::Arc::new(tokio::sync::Notify::new());

    // Participants keep reading, so that none is dropped as slow, and rejoin now and then (and
    // when their node restarts).
    let server_url = f.server.ws_url();
    let session = f.session;
    let mut readers = Vec::new();
    for (index, (user, mut client)) in f.people.drain(..).enumerate() {
        let url = server_url.clone();
        readers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ index as u64);
            for _ in 0..3 {
                let stay = rng.random_range(20..120);
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(stay);
                while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, client.recv()).await {}
                drop(client);
                let give_up = tokio::time::Instant::now() + crate::common::EVENT_TIMEOUT;
                client = loop {
                    let rejoined = async {
                        let mut client = Client::connect_url(&url, &user).await?;
                        client.join(session).await?;
                        Ok::<Client, anyhow::Error>(client)
                    };
                    match rejoined.await {
                        Ok(client) => break client,
                        // The node is restarting (refused, or closed with 1012 while joining):
                        // a client retries, as real clients do.
                        Err(_) if tokio::time::Instant::now() < give_up => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        Err(err) => return Err(err),
                    }
                };
            }
            Ok::<Client, anyhow::Error>(client)
        }));
    }

    let run_host = |mut client: Client, salt: u64| {
        let (people, main, halfway) = (people.clone(), f.main, halfway.clone());
        let mut known: Vec<RoomId> = rooms.clone();
        async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ salt);
            let mut believed: HashMap<UserId, RoomId> = HashMap::new();
            let (mut ok, mut refused, mut closed_rooms) = (0, 0, 0);
            for step in 0..60 {
                if step == 30 {
                    halfway.notify_one();
                }
                let user = people[rng.random_range(0..people.len())];
                let other = people[rng.random_range(0..people.len())];
                let mut targets = known.clone();
                targets.push(main);
                let to = targets[rng.random_range(0..targets.len())];
                let from = believed.get(&user).copied().unwrap_or(main);
                let body = if step % 15 == 14 && !known.is_empty() {
                    // Close a room at once (its members return to main), then open a new one.
                    let room = known[rng.random_range(0..known.len())];
                    json!({"type": "close_breakout_rooms", "session_id": session, "room_ids": [room], "countdown_secs": 0})
                } else if step % 15 == 0 && step > 0 {
                    json!({"type": "create_breakout_rooms", "session_id": session, "count": 1, "max_participants": 3})
                } else {
                    match rng.random_range(0..10) {
                        0 => {
                            json!({"type": "swap_participants", "session_id": session, "user_a": user, "user_b": other})
                        }
                        1 => {
                            json!({"type": "assign_participants", "session_id": session, "assignments": [{"user_id": user, "room_id": to}, {"user_id": other, "room_id": to}]})
                        }
                        _ => {
                            json!({"type": "move_participant", "session_id": session, "user_id": user, "from_room_id": from, "to_room_id": to})
                        }
                    }
                };
                let closing = body["type"] == "close_breakout_rooms";
                let id = format!("h{salt}-{step}");
                let mut body = body;
                body["request_id"] = json!(id);
                client.send_json(body).await?;
                loop {
                    match client.recv().await? {
                        ServerMessage::BreakoutsChanged { rooms, closed, .. } => {
                            for room in rooms {
                                ensure!(room.participants <= room.max_participants, "over capacity: {room:?}");
                                if !known.contains(&room.room_id) {
                                    known.push(room.room_id);
                                }
                                for member in &room.members {
                                    believed.insert(*member, room.room_id);
                                }
                            }
                            known.retain(|room| !closed.contains(room));
                            believed.retain(|_, room| !closed.contains(room));
                        }
                        ServerMessage::Ok { request_id: Some(r) } if r.as_str() == id => {
                            ok += 1;
                            closed_rooms += u32::from(closing);
                            break;
                        }
                        ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == id) => {
                            ensure!(
                                matches!(
                                    e.code,
                                    ErrorCode::Conflict | ErrorCode::Full | ErrorCode::NotFound | ErrorCode::Invalid
                                ),
                                "unexpected {e:?}"
                            );
                            refused += 1;
                            break;
                        }
                        _ => {}
                    }
                }
            }
            Ok::<(u32, u32, u32), anyhow::Error>((ok, refused, closed_rooms))
        }
    };
    let restart = async {
        if backend == Backend::TwoNodes {
            halfway.notified().await;
            f.server.restart().await?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let (one, two, restarted) = tokio::join!(run_host(f.host_client, 1), run_host(co, 2), restart);
    restarted.map_err(|e| anyhow!("seed {seed}: restarting the participants' node: {e}"))?;
    let (one, two) = (one.map_err(|e| anyhow!("seed {seed}: {e}"))?, two.map_err(|e| anyhow!("seed {seed}: {e}"))?);
    ensure!(one.0 + two.0 > 10, "seed {seed}: too few changes succeeded: {one:?} {two:?}");
    ensure!(one.2 + two.2 >= 2, "seed {seed}: rooms were closed too rarely: {one:?} {two:?}");
    let mut clients = Vec::new();
    for reader in readers {
        clients.push(reader.await??);
    }

    // Every rule, from a fresh host view: one room per person, capacities, and the members'
    // own view of their room agreeing with the hosts'.
    let view = overview(&f.server, &f.host, f.session).await?;
    let mut placed: HashMap<UserId, RoomId> = HashMap::new();
    for room in &view {
        ensure!(room.participants <= 3, "seed {seed}: over capacity {room:?}");
        for member in &room.members {
            ensure!(placed.insert(*member, room.room_id).is_none(), "seed {seed}: {member} in two rooms");
        }
    }
    let mut checker = Client::connect(&f.server, &f.host).await?;
    let joined = checker.join(f.session).await?;
    for member in &joined.members {
        let expected = placed.get(&member.user_id).copied().unwrap_or(f.main);
        ensure!(
            member.room_id == expected,
            "seed {seed}: {} is in {} by presence, {expected} by rooms",
            member.user_id,
            member.room_id
        );
    }
    let present: HashSet<UserId> = joined.members.iter().map(|m| m.user_id).collect();
    drop(checker);
    drop(clients);

    // The stored transitions replay to the same membership: every row starts where the
    // previous one of that person ended, and each present person's last row is the leave written
    // at shutdown, from the room the live state had them in.
    let db = stop_nodes(&mut f.server, &mut f.owner, &f.host, f.session).await?;
    let mut current: HashMap<UserId, RoomId> = HashMap::new();
    let mut last_left_from: HashMap<UserId, Option<RoomId>> = HashMap::new();
    for t in db.store().await?.transitions(f.session).await? {
        ensure!(current.get(&t.user_id).copied() == t.from_room, "seed {seed}: history skips a step: {t:?}");
        match t.to_room {
            Some(room) => {
                current.insert(t.user_id, room);
                last_left_from.remove(&t.user_id);
            }
            None => {
                current.remove(&t.user_id);
                last_left_from.insert(t.user_id, t.from_room);
            }
        }
    }
    for user in people.iter().filter(|u| present.contains(u)) {
        let live = placed.get(user).copied().unwrap_or(f.main);
        let history = last_left_from.get(user).copied().flatten();
        ensure!(history == Some(live), "seed {seed}: history ends in {history:?}, the live state had {live}");
    }
    Ok(())
}

async fn presence_moves_with_the_person(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 3).await?;
    let rooms = create_rooms(&mut f, 1, 5, "manual").await?;
    let (mover, stayer, waiting) = (f.people[0].0.id, f.people[1].0.id, f.people[2].0.id);
    assert_eq!(f.host_client.request(mv(f.session, waiting, f.main, rooms[0])).await?, Ok(()));
    assert_eq!(f.host_client.request(mv(f.session, mover, f.main, rooms[0])).await?, Ok(()));
    // The one already in the room sees the newcomer join it.
    let joined = f.people[2]
        .1
        .recv_until(|m| match m {
            ServerMessage::RoomPresence { room_id, joined, .. } if room_id == rooms[0] && !joined.is_empty() => {
                Some(joined)
            }
            _ => None,
        })
        .await?;
    assert_eq!(joined.iter().map(|m| m.user_id).collect::<Vec<_>>(), [mover]);
    // The one left behind in the main room sees them leave it.
    let left = f.people[1]
        .1
        .recv_until(|m| match m {
            ServerMessage::RoomPresence { room_id, left, .. } if room_id == f.main && left.contains(&mover) => {
                Some(left)
            }
            _ => None,
        })
        .await?;
    assert!(!left.contains(&stayer));
    // The mover hears of the move once, with its new room's members.
    let (room, _, members, _) = moved(&mut f.people[0].1).await?;
    assert_eq!((room, members), (rooms[0], 2));
    ensure!(
        !f.people[0]
            .1
            .sync()
            .await?
            .iter()
            .any(|m| matches!(m, ServerMessage::Moved { .. } | ServerMessage::RoomPresence { .. })),
        "told twice"
    );
    Ok(())
}

async fn the_transitions_endpoint_reports_history_and_attendance(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 1).await?;
    let rooms = create_rooms(&mut f, 1, 5, "manual").await?;
    let user = f.people[0].0.id;
    assert_eq!(f.host_client.request(mv(f.session, user, f.main, rooms[0])).await?, Ok(()));
    let url = f.server.http(&format!("/v1/sessions/{}/transitions", f.session));
    let http = reqwest::Client::new();
    let reply: Value = http.get(&url).bearer_auth(f.host.token()).send().await?.json().await?;
    let mine: Vec<&Value> =
        reply["transitions"].as_array().into_iter().flatten().filter(|t| t["user_id"] == json!(user)).collect();
    let kinds: Vec<&str> = mine.iter().filter_map(|t| t["transition_type"].as_str()).collect();
    assert_eq!(kinds, ["join", "move"], "{reply}");
    assert_eq!(mine[1]["to_room_id"], json!(rooms[0]));
    let rooms_attended: HashSet<String> = reply["attendance"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["user_id"] == json!(user))
        .filter_map(|a| a["room_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(rooms_attended, HashSet::from([f.main.to_string(), rooms[0].to_string()]));

    let participant = http.get(&url).bearer_auth(f.people[0].0.token()).send().await?;
    assert_eq!(participant.status(), 403);
    let outsider = TestUser::new(Role::Admin, Some(Uuid::new_v4()));
    assert_eq!(http.get(&url).bearer_auth(outsider.token()).send().await?.status(), 404);
    assert_eq!(http.get(&url).send().await?.status(), 401);
    Ok(())
}

async fn after_a_restart_people_rejoin_the_breakout_room_they_were_in(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 1).await?;
    let rooms = create_rooms(&mut f, 1, 5, "manual").await?;
    let user = f.people[0].0.clone();
    assert_eq!(f.host_client.request(mv(f.session, user.id, f.main, rooms[0])).await?, Ok(()));
    drop(f.host_client);
    drop(f.people);
    let db = stop_nodes(&mut f.server, &mut f.owner, &f.host, f.session).await?;
    let server = TestServer::start_on(db, |_| {}).await?;
    let mut client = Client::connect(&server, &user).await?;
    let joined = client.join(f.session).await?;
    assert_eq!(joined.you.room_id, rooms[0]);
    assert!(joined.rooms.iter().any(|r| r.room_id == rooms[0] && r.max_participants == Some(5)));
    Ok(())
}
