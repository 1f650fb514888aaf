//! Breakout rooms over real sockets: creating, planning, opening, moving, closing, timers,
//! self-select, broadcast, help, per-room chat and the transition history.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, ensure};
use convene_protocol::{ErrorCode, MoveReason, Role, RoomId, ServerMessage, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Backend, Client, TestServer, TestUser, arrivals, departures};
use crate::{across_nodes, on_both_backends};

mod fixture;
mod random;

pub(crate) use fixture::{Fixture, create_rooms, fixture, fixture_on, moved, mv, overview, stop_nodes};

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
    presence_moves_with_the_person,
    the_transitions_endpoint_reports_history_and_attendance,
    after_a_restart_people_rejoin_the_breakout_room_they_were_in,
);

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
    assert_eq!((members, last_seq), (2, 1), "the two there; the next diff adds the newcomer");
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

async fn presence_moves_with_the_person(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 3).await?;
    let rooms = create_rooms(&mut f, 1, 5, "manual").await?;
    let (mover, stayer, waiting) = (f.people[0].0.id, f.people[1].0.id, f.people[2].0.id);
    assert_eq!(f.host_client.request(mv(f.session, waiting, f.main, rooms[0])).await?, Ok(()));
    assert_eq!(f.host_client.request(mv(f.session, mover, f.main, rooms[0])).await?, Ok(()));
    // The one already in the room sees the newcomer join it.
    let joined =
        f.people[2].1.recv_until(|m| Some(arrivals(&m)).filter(|a| a.iter().any(|v| v.user_id == mover))).await?;
    assert_eq!(joined.iter().map(|m| (m.user_id, m.room_id)).collect::<Vec<_>>(), [(mover, rooms[0])]);
    // The one left behind in the main room sees them leave it.
    let left = f.people[1].1.recv_until(|m| Some(departures(&m)).filter(|left| left.contains(&mover))).await?;
    assert!(!left.contains(&stayer));
    // The mover hears of the move once, with its new room's roster (as last published: the
    // one there), and then its own arrival in the room's diff.
    let (room, _, members, _) = moved(&mut f.people[0].1).await?;
    assert_eq!((room, members), (rooms[0], 1));
    let after = f.people[0].1.sync().await?;
    ensure!(!after.iter().any(|m| matches!(m, ServerMessage::Moved { .. })), "told twice");
    ensure!(after.iter().any(|m| arrivals(m).iter().any(|v| v.user_id == mover)), "its arrival follows: {after:?}");
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
