//! Reconnect and resume: exactly the missed messages, in order, then live ones.

use anyhow::{Result, bail};
use convene_protocol::{Role, RoomId, ServerMessage, SessionId};
use serde_json::json;

use crate::common::{Backend, Client, TestServer, TestUser, group_session};
use crate::on_both_backends;

on_both_backends!(
    a_reconnecting_client_gets_exactly_what_it_missed_then_live_messages,
    a_gap_the_server_cannot_fill_is_reported_as_not_recovered,
    resume_works_across_a_server_restart,
);

/// Rejoins with a cursor; returns the resume outcome and the replayed sequence numbers.
async fn rejoin(client: &mut Client, session: SessionId, room: RoomId, last_seq: i64) -> Result<(bool, u32, Vec<i64>)> {
    client
        .send_json(json!({"type": "join_session", "request_id": "rejoin", "session_id": session,
        "resume": [{"room_id": room, "last_seq": last_seq}]}))
        .await?;
    let (recovered, replayed, members) = match client.recv().await? {
        ServerMessage::Joined { resume, rosters, .. } if resume.len() == 1 => {
            (resume[0].recovered, resume[0].replayed, rosters)
        }
        other => bail!("expected joined with one resume outcome, got {other:?}"),
    };
    assert!(!members.is_empty(), "the room's roster comes with the resume");
    let mut seqs = Vec::new();
    while seqs.len() < replayed as usize {
        match client.recv().await? {
            ServerMessage::Replay { messages, .. } => seqs.extend(messages.iter().map(|m| m.seq)),
            other => bail!("expected replay, got {other:?}"),
        }
    }
    Ok((recovered, replayed, seqs))
}

async fn a_reconnecting_client_gets_exactly_what_it_missed_then_live_messages(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let room = session.main_room_id;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    host_client.post(session.id, room, "m1", "one").await?;
    host_client.post(session.id, room, "m2", "two").await?;
    member_client
        .recv_until(|m| matches!(m, ServerMessage::Message { message } if message.seq == 2).then_some(()))
        .await?;
    drop(member_client);

    for i in 3..=5 {
        host_client.post(session.id, room, &format!("m{i}"), "while away").await?;
    }
    let mut back = Client::connect(&server, &member).await?;
    let (recovered, replayed, seqs) = rejoin(&mut back, session.id, room, 2).await?;
    assert!(recovered);
    assert_eq!((replayed, seqs), (3, vec![3, 4, 5]));
    host_client.post(session.id, room, "m6", "live").await?;
    // Its own return reaches it in the room's next diff; the next chat message is the live one.
    let next = back.recv_until(|m| (!matches!(m, ServerMessage::PresenceChanged { .. })).then_some(m)).await?;
    match next {
        ServerMessage::Message { message } => {
            assert_eq!(message.seq, 6, "live messages follow without a gap or a repeat")
        }
        other => bail!("expected the live message, got {other:?}"),
    }
    Ok(())
}

async fn a_gap_the_server_cannot_fill_is_reported_as_not_recovered(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| config.chat.resume_window = 3).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let room = session.main_room_id;
    for i in 1..=6 {
        host_client.post(session.id, room, &format!("m{i}"), "x").await?;
    }
    let member = TestUser::new(Role::Patient, host.org);
    let cases = [(1, false, 0), (3, true, 3), (6, true, 0), (99, false, 0)];
    for (last_seq, recovered, replayed) in cases {
        let mut client = Client::connect(&server, &member).await?;
        let outcome = rejoin(&mut client, session.id, room, last_seq).await?;
        assert_eq!((outcome.0, outcome.1), (recovered, replayed), "from {last_seq}");
    }
    Ok(())
}

async fn resume_works_across_a_server_restart(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let room = session.main_room_id;
    for i in 1..=4 {
        host_client.post(session.id, room, &format!("m{i}"), "before restart").await?;
    }
    drop(host_client);
    let db = server.stop().await?;
    let server = TestServer::start_on(db, |_| {}).await?;
    let mut client = Client::connect(&server, &host).await?;
    let (recovered, _, seqs) = rejoin(&mut client, session.id, room, 1).await?;
    assert!(recovered);
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!(client.post(session.id, room, "m5", "after restart").await?, 5, "sequences continue without a gap");
    Ok(())
}
