//! Nodes that die, pause and drain, run as real `convene` processes against one Redis and one
//! Postgres database: what their members and the other nodes see, and that nothing acknowledged
//! is lost or written twice.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use convene_protocol::{ErrorCode, Role, RoomId, ServerMessage, SessionId, SessionView};
use convene_server::store::HistoryQuery;
use rustix::process::Signal;
use serde_json::json;

use crate::common::{Client, EVENT_TIMEOUT, TestDb, TestUser};
use crate::nodes::{NodeProcess, process_cluster};

/// Creates a group session through `owner`, whose host joins there first (so `owner` holds the
/// session), and a mentee who joins through `other`.
async fn session_across(owner: &NodeProcess, other: &NodeProcess) -> Result<(SessionView, [TestUser; 2], [Client; 2])> {
    let org = Some(uuid::Uuid::new_v4());
    let host = TestUser::new(Role::Therapist, org);
    let response = reqwest::Client::new()
        .post(owner.http("/v1/sessions"))
        .bearer_auth(host.token())
        .json(&json!({"session_type": "group"}))
        .send()
        .await?;
    let session: SessionView = serde_json::from_str(&response.text().await?)?;
    let mut on_owner = Client::connect_url(&owner.ws_url(), &host).await?;
    on_owner.join(session.id).await?;
    let mentee = TestUser::new(Role::Mentee, org);
    let mut on_other = Client::connect_url(&other.ws_url(), &mentee).await?;
    on_other.join(session.id).await?;
    Ok((session, [host, mentee], [on_owner, on_other]))
}

/// Sends `count` messages and waits for every acknowledgement: client message id to sequence.
async fn post_many(
    client: &mut Client,
    session: &SessionView,
    prefix: &str,
    count: usize,
) -> Result<BTreeMap<String, i64>> {
    for i in 0..count {
        client
            .send_json(json!({"type": "send_message", "session_id": session.id, "room_id": session.main_room_id,
                "client_msg_id": format!("{prefix}{i}"), "body": format!("{prefix} {i}")}))
            .await?;
    }
    let mut acked = BTreeMap::new();
    while acked.len() < count {
        if let ServerMessage::MessageAck { client_msg_id, seq, .. } = client.recv().await? {
            acked.insert(client_msg_id.as_str().to_owned(), seq);
        }
    }
    Ok(acked)
}

/// Reconnects `user` through `node` and joins with a resume cursor, retrying (as a client does,
/// with a short pause) while the session is between owners. Returns the client and the outcome
/// of the resume for the main room.
async fn rejoin(
    node: &NodeProcess,
    user: &TestUser,
    session: SessionId,
    room: RoomId,
    last_seq: i64,
) -> Result<(Client, bool)> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let mut client = Client::connect_url(&node.ws_url(), user).await?;
        match join_resuming(&mut client, session, room, last_seq).await {
            Ok(Ok(recovered)) => return Ok((client, recovered)),
            Ok(Err(ErrorCode::Unavailable)) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Ok(Err(code)) => bail!("rejoining was refused: {code:?}"),
            Err(err) => return Err(err.context("rejoining never succeeded")),
        }
    }
}

/// Joins again on a connection that was told `session_interrupted`, as a client does: with
/// `resume`, retrying (after a short pause) while the session is between owners. Returns
/// whether the resume recovered everything.
async fn rejoin_here(client: &mut Client, session: SessionId, room: RoomId, last_seq: i64) -> Result<bool> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        match join_resuming(client, session, room, last_seq).await? {
            Ok(recovered) => return Ok(recovered),
            Err(ErrorCode::Unavailable) if Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(code) => bail!("rejoining was refused: {code:?}"),
        }
    }
}

/// One `join_session` with `resume`: whether everything was recovered, or the refusal.
async fn join_resuming(
    client: &mut Client,
    session: SessionId,
    room: RoomId,
    last_seq: i64,
) -> Result<std::result::Result<bool, ErrorCode>> {
    client
        .send_json(json!({"type": "join_session", "request_id": "rejoin", "session_id": session,
            "resume": [{"room_id": room, "last_seq": last_seq}]}))
        .await?;
    client
        .recv_until(|m| match m {
            ServerMessage::Joined { resume, .. } => Some(Ok(resume.iter().all(|r| r.recovered))),
            ServerMessage::Error(e) => Some(Err(e.code)),
            _ => None,
        })
        .await
}

/// Every acknowledged message is stored exactly once, with the sequence it was acknowledged
/// with, and the room's sequence has no gaps.
async fn stored_exactly(db: &TestDb, room: RoomId, acked: &BTreeMap<String, i64>) -> Result<()> {
    let stored = db.store().await?.history(room, HistoryQuery::After(0), 100).await?.messages;
    let by_id: BTreeMap<String, i64> = stored.iter().map(|m| (m.client_msg_id.as_str().to_owned(), m.seq)).collect();
    ensure!(by_id.len() == stored.len(), "a client message id was stored twice: {stored:?}");
    for (id, seq) in acked {
        ensure!(by_id.get(id) == Some(seq), "{id} was acknowledged as {seq} but stored as {:?}", by_id.get(id));
    }
    let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    ensure!(seqs == (1..=stored.len() as i64).collect::<Vec<_>>(), "the sequence has gaps: {seqs:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_members_leave_and_the_others_stay() -> Result<()> {
    let (db, name) = process_cluster().await?;
    let owner = NodeProcess::spawn(&db, &name).await?;
    let doomed = NodeProcess::spawn(&db, &name).await?;
    let bystander = NodeProcess::spawn(&db, &name).await?;
    let (session, [_host, mentee], [mut on_owner, _on_doomed]) = session_across(&owner, &doomed).await?;
    // A member on a third node, which has nothing to do with the dead one.
    let stays = TestUser::new(Role::Mentee, session.organization_id.map(|org| org.0));
    let mut staying = Client::connect_url(&bystander.ws_url(), &stays).await?;
    staying.join(session.id).await?;

    let killed = Instant::now();
    doomed.signal(Signal::KILL)?;
    // The owner keeps sending to the dead node's member until it learns of the death: those
    // messages find nobody listening, which must not count as a loss for the living.
    ensure!(on_owner.post(session.id, session.main_room_id, "unheard", "to the dead too").await? == 1);
    on_owner.recv_departure_of(mentee.id).await.context("the dead node's member is announced as left")?;
    let elapsed = killed.elapsed();
    ensure!(elapsed.as_secs_f64() < 2.0 * 2.0 + 1.0, "announced after {elapsed:?}, past twice the node timeout");
    eprintln!("the dead node's member left after {elapsed:?}");
    // The others noticed only that: both still connected and in the session, never
    // interrupted.
    ensure!(on_owner.post(session.id, session.main_room_id, "still", "still here").await? == 2);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        match staying.recv().await.context("the other member still hears the session")? {
            ServerMessage::Message { message } => heard.push(message.seq),
            ServerMessage::SessionInterrupted { .. } => bail!("a member on a third node was interrupted"),
            _ => {}
        }
    }
    ensure!(heard == [1, 2], "the other member heard {heard:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_death_hands_the_session_over_and_loses_nothing_acknowledged() -> Result<()> {
    let (db, name) = process_cluster().await?;
    let owner = NodeProcess::spawn(&db, &name).await?;
    let survivor = NodeProcess::spawn(&db, &name).await?;
    let (session, [host, _mentee], [mut on_owner, mut on_survivor]) = session_across(&owner, &survivor).await?;
    let room = session.main_room_id;
    let mut acked = post_many(&mut on_survivor, &session, "before-b", 10).await?;
    acked.extend(post_many(&mut on_owner, &session, "before-a", 5).await?);
    let last_seen = *acked.values().max().unwrap_or(&0);

    let killed = Instant::now();
    owner.signal(Signal::KILL)?;
    // The survivor's member relied on the dead owner: it stays connected, is told, and joins
    // again on the same connection.
    on_survivor.interrupted(session.id).await.context("the survivor's member is told to join again")?;
    let recovered = rejoin_here(&mut on_survivor, session.id, room, last_seen).await?;
    let failover = killed.elapsed();
    ensure!(recovered, "the resume says nothing was lost");
    ensure!(failover.as_secs_f64() < 10.0, "the session took {failover:?} to accept commands again");
    acked.extend(post_many(&mut on_survivor, &session, "after-b", 5).await?);
    let mut again = on_survivor;
    let (mut host_again, _) = rejoin(&survivor, &host, session.id, room, last_seen).await?;
    acked.extend(post_many(&mut host_again, &session, "after-a", 3).await?);

    stored_exactly(&db, room, &acked).await?;
    ensure!(
        again.history(session.id, room).await?.map(|seqs| seqs.len()) == Ok(acked.len()),
        "every message reads back"
    );
    eprintln!("failover took {failover:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_its_sessions_over_at_once() -> Result<()> {
    let (db, name) = process_cluster().await?;
    let mut draining = NodeProcess::spawn(&db, &name).await?;
    let successor = NodeProcess::spawn(&db, &name).await?;
    let (session, [host, _mentee], [mut on_draining, mut on_successor]) = session_across(&draining, &successor).await?;
    let room = session.main_room_id;
    let acked = post_many(&mut on_draining, &session, "before", 3).await?;

    draining.signal(Signal::TERM)?;
    ensure!(on_draining.closed_with().await? == Some(1012), "the draining node's clients are told to reconnect");
    ensure!(draining.wait().await?, "the node drains and exits cleanly");
    let drained = Instant::now();
    // Members on the other node stay connected; they are told, and join again there.
    on_successor.interrupted(session.id).await.context("members relying on the drained owner are told")?;
    // The lease was given up: the successor takes the session at once, not when it runs out.
    let recovered = rejoin_here(&mut on_successor, session.id, room, 3).await?;
    let mut again = on_successor;
    let handover = drained.elapsed();
    ensure!(recovered);
    ensure!(handover.as_secs_f64() < 2.0, "took over after {handover:?}: the lease (2s) was not given up");
    let (mut host_again, _) = rejoin(&successor, &host, session.id, room, 3).await?;
    ensure!(host_again.post(session.id, room, "after", "on the successor").await? == 4);
    again.recv_until(|m| matches!(m, ServerMessage::Message { message } if message.seq == 4).then_some(())).await?;
    stored_exactly(&db, room, &acked).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_cannot_write_after_another_node_took_over() -> Result<()> {
    let (db, name) = process_cluster().await?;
    let mut paused = NodeProcess::spawn(&db, &name).await?;
    let survivor = NodeProcess::spawn(&db, &name).await?;
    let (session, [_host, _mentee], [mut on_paused, mut on_survivor]) = session_across(&paused, &survivor).await?;
    let room = session.main_room_id;
    let mut acked = post_many(&mut on_survivor, &session, "before", 2).await?;

    paused.signal(Signal::STOP)?;
    // The host keeps sending to the paused owner; the request waits in its socket.
    on_paused
        .send_json(json!({"type": "send_message", "request_id": "paused", "session_id": session.id,
            "room_id": room, "client_msg_id": "paused", "body": "sent to a paused owner"}))
        .await?;
    // Past the node timeout and the lease, the survivor takes the session over; its member
    // stays connected and joins again.
    on_survivor.interrupted(session.id).await?;
    rejoin_here(&mut on_survivor, session.id, room, 2).await?;
    acked.extend(post_many(&mut on_survivor, &session, "taken-over", 2).await?);

    paused.signal(Signal::CONT)?;
    // The old owner finds out (its lease is gone, or its first write is fenced) and stops.
    paused.logged("no longer owns the session").await?;
    // Its member there stays connected and is told to join again.
    loop {
        match on_paused.recv().await? {
            ServerMessage::MessageAck { client_msg_id, seq, .. } => {
                // Acknowledged only if it was stored, by the new owner.
                acked.insert(client_msg_id.as_str().to_owned(), seq);
            }
            ServerMessage::SessionInterrupted { session_id } if session_id == session.id => break,
            _ => {}
        }
    }
    // What was acknowledged is stored once, in one gapless sequence: the old owner allocated
    // nothing after the new one claimed the session (its writes are fenced; see `fencing`).
    stored_exactly(&db, room, &acked).await?;
    Ok(())
}

/// A request that reached an owner which then stopped answering gets exactly one answer: its
/// connection's node answers `unavailable` once it gives the owner up, before telling the client
/// the session left; whatever the old owner answers when it wakes up is not passed on; and the
/// retry, under a new request id, is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_owner_that_is_lost_gets_one_answer() -> Result<()> {
    let (db, name) = process_cluster().await?;
    let mut paused = NodeProcess::spawn(&db, &name).await?;
    let survivor = NodeProcess::spawn(&db, &name).await?;
    let (session, [_host, _mentee], [_on_paused, mut on_survivor]) = session_across(&paused, &survivor).await?;
    let room = session.main_room_id;

    paused.signal(Signal::STOP)?;
    on_survivor
        .send_json(json!({"type": "send_message", "request_id": "lost", "session_id": session.id,
            "room_id": room, "client_msg_id": "lost", "body": "sent to an owner that stops"}))
        .await?;
    let mut answers = Vec::new();
    loop {
        let message = on_survivor.recv().await?;
        if answers_to(&message) == Some("lost") {
            answers.push(message);
            continue;
        }
        if matches!(message, ServerMessage::SessionInterrupted { session_id } if session_id == session.id) {
            break;
        }
    }
    ensure!(
        matches!(&answers[..], [ServerMessage::Error(error)] if error.code == ErrorCode::Unavailable),
        "one answer, unavailable, before the interruption: {answers:?}"
    );

    // The survivor takes the session over; the old owner wakes up to find it gone, and may
    // answer what it had read.
    rejoin_here(&mut on_survivor, session.id, room, 0).await?;
    paused.signal(Signal::CONT)?;
    paused.logged("no longer owns the session").await?;
    on_survivor
        .send_json(json!({"type": "send_message", "request_id": "retry", "session_id": session.id,
            "room_id": room, "client_msg_id": "lost", "body": "sent to an owner that stops"}))
        .await?;
    loop {
        let message = on_survivor.recv().await?;
        match answers_to(&message) {
            Some("lost") => bail!("a second answer to the lost request: {message:?}"),
            Some("retry") => {
                ensure!(matches!(message, ServerMessage::MessageAck { seq: 1, .. }), "{message:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The request a message answers, if it names one.
fn answers_to(message: &ServerMessage) -> Option<&str> {
    match message {
        ServerMessage::MessageAck { request_id, .. } => request_id.as_ref().map(|id| id.as_str()),
        ServerMessage::Error(error) => error.request_id.as_ref().map(|id| id.as_str()),
        _ => None,
    }
}

/// A killed node's devices are gone for conversations too: the mentee's phone there, which was
/// looking at the conversation, stops keeping notifications away once the survivor notices the
/// death; the mentee's laptop on the survivor keeps receiving without a break; and the phone,
/// reconnected to the survivor, resumes with exactly what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_devices_stop_looking_and_the_others_keep_receiving() -> Result<()> {
    let is_notification = |m: &ServerMessage| matches!(m, ServerMessage::Notification { .. });
    let (db, name) = process_cluster().await?;
    let mut survivor = NodeProcess::spawn(&db, &name).await?;
    let doomed = NodeProcess::spawn(&db, &name).await?;
    let org = Some(uuid::Uuid::new_v4());
    let (mentor, mentee) = (TestUser::new(Role::Mentor, org), TestUser::new(Role::Mentee, org));
    let mut mentor_device = Client::connect_url(&survivor.ws_url(), &mentor).await?;
    let mut laptop = Client::connect_url(&survivor.ws_url(), &mentee).await?;
    let mut phone = Client::connect_url(&doomed.ws_url(), &mentee).await?;
    let conversation = mentor_device.open_with(mentee.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;
    let focus = json!({"type": "focus_conversation", "conversation_id": conversation.id});
    ensure!(phone.request(focus).await? == Ok(()));
    ensure!(mentor_device.send_dm(conversation.id, "1", "one").await? == Ok(1));
    ensure!(phone.next_dm().await?.seq == 1);
    ensure!(laptop.next_dm().await?.seq == 1);
    ensure!(!laptop.sync().await?.iter().any(is_notification), "the phone was looking");

    doomed.signal(Signal::KILL)?;
    survivor.logged("nodes stopped answering").await.context("the survivor notices the death")?;
    // It forgets what the dead node's devices looked at just after saying so.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut seq = 2;
    loop {
        ensure!(mentor_device.send_dm(conversation.id, &seq.to_string(), "are you there?").await? == Ok(seq));
        ensure!(laptop.next_dm().await?.seq == seq, "the laptop missed {seq}");
        if laptop.sync().await?.iter().any(is_notification) {
            break;
        }
        ensure!(Instant::now() < deadline, "the dead phone's focus was never forgotten");
        seq += 1;
    }

    let mut phone = Client::connect_url(&survivor.ws_url(), &mentee).await?;
    let (replayed, outcome) = phone.sync_from(conversation.id, 1).await?;
    ensure!(replayed == (2..=seq).collect::<Vec<_>>(), "{replayed:?}");
    ensure!(outcome.len() == 1 && !outcome[0].gap, "{outcome:?}");
    Ok(())
}
