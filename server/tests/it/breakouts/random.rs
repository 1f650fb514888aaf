//! The randomized breakout test: several hosts change rooms at once, and every rule must hold
//! afterwards, on one node and across two (with a node restart halfway through).

use std::collections::{HashMap, HashSet};

use anyhow::{Result, anyhow, ensure};
use convene_protocol::{ErrorCode, Role, RoomId, ServerMessage, UserId};
use serde_json::json;

use super::{create_rooms, fixture, overview, stop_nodes};
use crate::common::{Backend, Client, TestUser};
use crate::{across_nodes, on_both_backends};

across_nodes!(random_concurrent_changes_keep_every_rule);
on_both_backends!(random_concurrent_changes_keep_every_rule);

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
