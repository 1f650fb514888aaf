//! Presence: devices, statuses and the heartbeat; diffs per room, coalesced per window; what a
//! device coming back to a room is sent; rooms too large to follow live.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use convene_protocol::{PresenceStatus, Role, ServerMessage, UserId};
use serde_json::json;

use crate::breakouts::{Fixture, create_rooms, moved};
use crate::common::{
    Backend, Client, RosterBook, TestServer, TestUser, allow_flooding, flood_room, group_session,
    session_with_silent_member,
};
use crate::nodes::owner_and_other_with;
use crate::{across_nodes, on_both_backends};

on_both_backends!(
    a_second_device_is_the_same_member_with_two_devices,
    status_changes_reach_others_as_updates,
    silent_connections_are_removed_and_announced,
    a_silent_connection_is_removed_on_time_while_a_write_to_it_waits,
    a_burst_of_joins_reaches_a_member_as_one_frame_per_window,
    people_back_from_breakouts_are_sent_what_changed_not_the_room,
    a_room_over_the_limit_is_shown_by_count_and_paged,
);

across_nodes!(
    a_burst_of_joins_reaches_a_member_as_one_frame_per_window,
    people_back_from_breakouts_are_sent_what_changed_not_the_room,
);

async fn a_second_device_is_the_same_member_with_two_devices(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Mentee, host.org);
    let mut phone = Client::connect(&server, &member).await?;
    phone.join(session.id).await?;
    assert_eq!(host_client.recv_presence_of(member.id).await?.devices, 1);
    let mut laptop = Client::connect(&server, &member).await?;
    let joined = laptop.join(session.id).await?;
    assert_eq!(joined.you.devices, 2);
    assert_eq!(host_client.recv_presence_of(member.id).await?.devices, 2);
    let seen: Vec<UserId> = joined.members.iter().map(|m| m.user_id).collect();
    assert_eq!(seen.iter().filter(|user| **user == member.id).count(), 1, "one member per person: {seen:?}");

    drop(phone);
    assert_eq!(host_client.recv_presence_of(member.id).await?.devices, 1);
    drop(laptop);
    host_client.recv_departure_of(member.id).await?;
    Ok(())
}

async fn status_changes_reach_others_as_updates(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut client = Client::connect(&server, &member).await?;
    client.join(session.id).await?;
    host_client.recv_presence_of(member.id).await?;
    let away = json!({"type": "set_status", "session_id": session.id, "status": "away"});
    assert_eq!(client.request(away).await?, Ok(()));
    assert_eq!(host_client.recv_presence_of(member.id).await?.status, PresenceStatus::Away);
    Ok(())
}

async fn silent_connections_are_removed_and_announced(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.heartbeat_timeout = Duration::from_millis(600);
    })
    .await?;
    let (mut host_client, _, member, _silent) = session_with_silent_member(&server).await?;
    // The member's client is never read again, so it never answers a ping. The host keeps
    // reading (and so answering pings) while it waits for the departure.
    host_client.recv_departure_of(member.id).await?;
    Ok(())
}

async fn a_silent_connection_is_removed_on_time_while_a_write_to_it_waits(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.heartbeat_timeout = Duration::from_secs(2);
        config.write_timeout = Duration::from_secs(30);
        allow_flooding(config);
    })
    .await?;
    let (mut host_client, session, member, _silent) = session_with_silent_member(&server).await?;
    flood_room(&mut host_client, &session).await?;
    // The heartbeat (2 s) ends the connection while that write waits. The write's own timeout
    // (30 s here) must not hold up the departure: it comes well before that timeout could end it.
    tokio::time::timeout(Duration::from_secs(7), host_client.recv_departure_of(member.id))
        .await
        .map_err(|_| anyhow::anyhow!("the departure waited for the stuck write"))??;
    assert_eq!(server.metric("convene_slow_disconnects_total").await?, 0.0, "it went for its silence");
    Ok(())
}

/// A session whose presence window is `window`: its host, a participant watching, and the
/// server everyone else connects to (another node than the owner across nodes).
async fn watched_session(backend: Backend, window: Duration, roster_limit: usize) -> Result<Fixture> {
    let (owner, server) = owner_and_other_with(backend, |config| {
        config.presence.window = window;
        config.presence.roster_limit = roster_limit;
    })
    .await?;
    crate::breakouts::fixture_on(owner, server, 0).await
}

/// Adds a participant to `f` who keeps its rosters in a [`RosterBook`], as a client does.
async fn add_watcher(f: &mut Fixture) -> Result<RosterBook> {
    let user = TestUser::new(Role::Patient, f.host.org);
    let mut client = Client::connect(&f.server, &user).await?;
    let joined = client.join(f.session).await?;
    let mut book = RosterBook::default();
    joined.rosters.iter().try_for_each(|roster| book.apply(roster))?;
    joined.followed.iter().try_for_each(|message| book.observe(message))?;
    f.people.insert(0, (user, client));
    Ok(book)
}

async fn a_burst_of_joins_reaches_a_member_as_one_frame_per_window(backend: Backend) -> Result<()> {
    let window = Duration::from_millis(500);
    let mut f = watched_session(backend, window, 1_500).await?;
    let mut book = add_watcher(&mut f).await?;
    let people: Vec<TestUser> = (0..100).map(|_| TestUser::new(Role::Patient, f.host.org)).collect();
    let mut clients = Vec::new();
    for person in &people {
        clients.push(Client::connect(&f.server, person).await?);
    }
    // Everyone asks at once, then everyone waits for their answer.
    let started = Instant::now();
    for client in &mut clients {
        client.send_json(json!({"type": "join_session", "request_id": "join", "session_id": f.session})).await?;
    }
    for client in &mut clients {
        client.recv_until(|m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;
    }
    let burst = started.elapsed();
    // Read until every newcomer is in the watcher's roster; the frames must add up as diffs.
    let watcher = &mut f.people[0].1;
    let mut frames = 0;
    let everyone: HashSet<UserId> = people.iter().map(|p| p.id).collect();
    while !everyone.iter().all(|user| book.members(f.main).contains(user)) {
        let message = watcher.recv().await?;
        if matches!(message, ServerMessage::PresenceChanged { .. }) {
            frames += 1;
            book.observe(&message)?;
        }
    }
    // The first change of a window opens it and the window's end publishes everything in it, so
    // a burst lasting `burst` is published in at most one frame per window it spans, plus one.
    let bound = 2 + (burst.as_millis() / window.as_millis()) as usize;
    ensure!(frames <= bound, "100 joins over {burst:?} reached the watcher as {frames} frames (at most {bound})");
    assert_eq!(book.members(f.main).len(), 102, "the host, the watcher and the hundred");
    Ok(())
}

async fn people_back_from_breakouts_are_sent_what_changed_not_the_room(backend: Backend) -> Result<()> {
    let (owner, server) = owner_and_other_with(backend, |config| config.presence.window = Duration::ZERO).await?;
    let mut f = crate::breakouts::fixture_on(owner, server, 11).await?;
    // One of them keeps its rosters the way a client does, from its own join on.
    let mut book = add_watcher(&mut f).await?;
    let rooms = create_rooms(&mut f, 3, 4, "automatic").await?;
    f.host_client
        .send_json(json!({"type": "plan_breakouts", "request_id": "plan", "session_id": f.session, "automatic": true}))
        .await?;
    f.host_client.recv_until(|m| matches!(m, ServerMessage::BreakoutPlan { .. }).then_some(())).await?;
    assert_eq!(f.host_client.request(json!({"type": "open_breakouts", "session_id": f.session})).await?, Ok(()));
    for (_, client) in &mut f.people[1..] {
        moved(client).await?;
    }
    for message in f.people[0].1.sync().await? {
        book.observe(&message)?;
    }
    ensure!(rooms.iter().any(|room| book.members(*room).contains(&f.people[0].0.id)), "in a breakout");
    // While they are away, someone new arrives in the main room.
    let newcomer = TestUser::new(Role::Patient, f.host.org);
    let mut late = Client::connect(&f.server, &newcomer).await?;
    late.join(f.session).await?;
    f.host_client.recv_presence_of(newcomer.id).await?;

    let close = json!({"type": "close_breakout_rooms", "session_id": f.session, "countdown_secs": 0});
    assert_eq!(f.host_client.request(close).await?, Ok(()));
    for (_, client) in &mut f.people[1..] {
        let (room, _, total, _) = moved(client).await?;
        assert_eq!((room, total), (f.main, 14), "the host, the newcomer and the twelve");
    }
    let back = f.people[0].1.recv_until(|m| matches!(m, ServerMessage::Moved { .. }).then_some(m)).await?;
    let ServerMessage::Moved { roster, .. } = &back else { unreachable!("matched above") };
    ensure!(roster.since.is_some(), "a diff against the roster held: {roster:?}");
    let changed: Vec<UserId> = roster.members.iter().map(|m| m.user_id).collect();
    assert_eq!(changed, [newcomer.id], "only the newcomer is new to someone who was here");
    assert!(roster.left.is_empty());
    book.observe(&back)?;
    for message in f.people[0].1.sync().await? {
        book.observe(&message)?;
    }
    let mut expected: Vec<UserId> = f.people.iter().map(|(user, _)| user.id).chain([f.host.id, newcomer.id]).collect();
    expected.sort();
    let mut held = book.members(f.main);
    held.sort();
    assert_eq!(held, expected, "the diff brought the roster held back to everyone present");
    // The newcomer, who stayed, hears the twelve return.
    let mut returned = HashSet::new();
    while returned.len() < 12 {
        returned.extend(crate::common::arrivals(&late.recv().await?).into_iter().map(|m| m.user_id));
    }
    Ok(())
}

async fn a_room_over_the_limit_is_shown_by_count_and_paged(backend: Backend) -> Result<()> {
    let f = watched_session(backend, Duration::ZERO, 3).await?;
    let people: Vec<TestUser> = (0..4).map(|_| TestUser::new(Role::Patient, f.host.org)).collect();
    let mut present = Vec::new();
    for person in &people {
        let mut client = Client::connect(&f.server, person).await?;
        client.join(f.session).await?;
        present.push(client);
    }
    // Five members, over the limit of three: a participant arriving is shown the hosts and the
    // count, and pages the rest.
    let newcomer = TestUser::new(Role::Patient, f.host.org);
    let mut client = Client::connect(&f.server, &newcomer).await?;
    let joined = client.join(f.session).await?;
    let roster = &joined.rosters[0];
    ensure!(!roster.live, "{roster:?}");
    assert_eq!(roster.members.iter().map(|m| m.user_id).collect::<Vec<_>>(), [f.host.id]);
    let mut paged = Vec::new();
    let mut after: Option<UserId> = None;
    loop {
        let mut fetch = json!({"type": "fetch_roster", "request_id": "page", "session_id": f.session, "room_id": f.main, "limit": 2});
        if let Some(after) = after {
            fetch["after"] = json!(after);
        }
        client.send_json(fetch).await?;
        let (members, next, total) = client
            .recv_until(|m| match m {
                ServerMessage::RosterPage { members, next, total, .. } => Some((members, next, total)),
                _ => None,
            })
            .await?;
        assert_eq!(total, 6);
        paged.extend(members.into_iter().map(|m| m.user_id));
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged.len(), 6, "everyone, once: {paged:?}");
    assert!(paged.windows(2).all(|pair| pair[0] < pair[1]), "in user id order");
    Ok(())
}
