//! A database outage: requests are refused within the configured bound instead of hanging,
//! nothing acknowledged is lost, retries store nothing twice, and the server recovers on its own.
//! The server reaches its own Postgres database through a proxy the test cuts and restores.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use convene_protocol::{ErrorCode, Role, ServerMessage};
use convene_server::store::HistoryQuery;
use serde_json::json;

use crate::common::{Backend, Client, Outage, TcpProxy, TestDb, TestServer, TestUser, group_session};
use crate::nodes::{join_cluster, redis_url};
use crate::on_both_backends;

on_both_backends!(
    a_move_that_cannot_be_stored_is_not_announced_and_a_retry_runs_again,
    a_request_queued_behind_failing_bookkeeping_is_answered_in_time,
);

/// The request timeout the server is given here.
const DB_TIMEOUT: Duration = Duration::from_secs(1);
/// How late past the bound a reply may come: one backoff step and scheduling.
const SLACK: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_database_dropped_while_idle_are_replaced_before_use() -> Result<()> {
    let db = TestDb::new(Backend::Postgres).await?;
    let server = TestServer::start_on(db.clone(), |_| {}).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    host_client.post(session.id, session.main_room_id, "before", "before the restart").await?;
    let dropped = db.drop_connections().await?;
    ensure!(dropped > 0, "the server held no connection to drop");
    // Past the idle time after which a pooled connection is checked before use (half a second):
    // what this test is about is a pool that sat quiet while the database went away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A read straight from the pool, answered once (no retry hides a failed first attempt).
    let url = server.http(&format!("/v1/sessions/{}/transitions", session.id));
    let response = reqwest::Client::new().get(url).bearer_auth(host.token()).send().await?;
    ensure!(response.status() == 200, "the first read after the restart: {}", response.status());
    host_client.post(session.id, session.main_room_id, "after", "after the restart").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_refused_in_time_and_loses_nothing() -> Result<()> {
    let db = TestDb::new(Backend::Postgres).await?;
    let proxy = TcpProxy::start(db.server_addr()?).await?;
    let server = TestServer::start_on(db.through(&proxy)?, |config| config.db_timeout = DB_TIMEOUT).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    let room = session.main_room_id;
    member_client.post(session.id, room, "before", "before the outage").await?;

    proxy.cut();
    let ids: Vec<String> = (0..5).map(|i| format!("during-{i}")).collect();
    for id in &ids {
        let sent = Instant::now();
        member_client
            .send_json(json!({"type": "send_message", "request_id": id, "session_id": session.id,
                "room_id": room, "client_msg_id": id, "body": id}))
            .await?;
        let reply = member_client
            .recv_until(|m| match m {
                ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == id) => Some(Ok(e.code)),
                ServerMessage::MessageAck { client_msg_id, .. } if client_msg_id.as_str() == id => Some(Err(())),
                _ => None,
            })
            .await?;
        ensure!(reply == Ok(ErrorCode::Unavailable), "the send during the outage was answered {reply:?}");
        ensure!(sent.elapsed() < DB_TIMEOUT + SLACK, "unavailable came after {:?}", sent.elapsed());
    }
    let asked = Instant::now();
    let ready =
        reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?.get(server.http("/readyz")).send().await?;
    ensure!(ready.status() == 503, "readyz during the outage: {}", ready.status());
    ensure!(asked.elapsed() < Duration::from_millis(1500), "readyz took {:?}", asked.elapsed());

    proxy.restore();
    // The same sends, retried with the same ids, are stored once each; the session works again
    // without a restart.
    let mut seqs = Vec::new();
    for id in &ids {
        seqs.push(member_client.post(session.id, room, id, id).await?);
    }
    seqs.push(member_client.post(session.id, room, "after", "after the outage").await?);
    let mut sorted = seqs.clone();
    sorted.dedup();
    ensure!(sorted.len() == seqs.len(), "every retry got its own sequence number: {seqs:?}");

    // The host saw each message exactly once, in order.
    let mut seen = Vec::new();
    while seen.len() < 7 {
        if let ServerMessage::Message { message } = host_client.recv().await? {
            seen.push(message.body);
        }
    }
    let mut expected = vec!["before the outage".to_owned()];
    expected.extend(ids.iter().cloned());
    expected.push("after the outage".to_owned());
    assert_eq!(seen, expected);

    let stored = server.db.store().await?.history(room, HistoryQuery::Latest, 100).await?.messages;
    let bodies: Vec<String> = stored.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, expected, "each message stored exactly once, in order");
    let stored_seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(stored_seqs, (1..=7).collect::<Vec<i64>>(), "sequence numbers have no gaps");
    Ok(())
}

async fn a_move_that_cannot_be_stored_is_not_announced_and_a_retry_runs_again(backend: Backend) -> Result<()> {
    let (server, mut outage) = Outage::server(backend, |config| config.db_timeout = DB_TIMEOUT).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    host_client
        .send_json(json!({"type": "create_breakout_rooms", "request_id": "rooms", "session_id": session.id,
            "names": ["Pairs"], "max_participants": 4}))
        .await?;
    let room = host_client
        .recv_until(|m| match m {
            ServerMessage::BreakoutsChanged { rooms, .. } => rooms.first().map(|r| r.room_id),
            _ => None,
        })
        .await?;
    host_client.sync().await?;
    member_client.sync().await?;

    let move_it = json!({"type": "move_participant", "request_id": "mv", "session_id": session.id,
        "user_id": member.id, "from_room_id": session.main_room_id, "to_room_id": room});
    outage.begin().await?;
    host_client.send_json(move_it.clone()).await?;
    let mut before_reply = Vec::new();
    let reply = loop {
        match host_client.recv().await? {
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == "mv") => break Err(e.code),
            ServerMessage::Ok { request_id: Some(r) } if r.as_str() == "mv" => break Ok(()),
            other => before_reply.push(other),
        }
    };
    assert_eq!(reply, Err(ErrorCode::Unavailable));
    ensure!(before_reply.is_empty(), "the host was told of a move that was not stored: {before_reply:?}");
    let told = member_client.sync().await?;
    ensure!(told.is_empty(), "the member was told of a move that was not stored: {told:?}");
    outage.end().await?;

    // The retry runs again; this time the move is stored, then announced.
    host_client.send_json(move_it).await?;
    host_client
        .recv_until(|m| matches!(m, ServerMessage::Ok { request_id: Some(r) } if r.as_str() == "mv").then_some(()))
        .await?;
    let moved = member_client
        .recv_until(|m| match m {
            ServerMessage::Moved { room, .. } => Some(room.room_id),
            _ => None,
        })
        .await?;
    assert_eq!(moved, room);

    let db = server.stop().await?;
    let moves: Vec<_> = db
        .store()
        .await?
        .transitions(session.id)
        .await?
        .into_iter()
        .filter(|t| t.user_id == member.id && t.from_room.is_some() && t.to_room.is_some())
        .map(|t| (t.from_room, t.to_room))
        .collect();
    assert_eq!(moves, [(Some(session.main_room_id), Some(room))], "one move stored");
    Ok(())
}

/// Bookkeeping (a join's rows) may keep retrying for the writer's long window; a request that
/// arrives behind it is still answered within its own, short bound.
async fn a_request_queued_behind_failing_bookkeeping_is_answered_in_time(backend: Backend) -> Result<()> {
    let (server, mut outage) = Outage::server(backend, |config| config.db_timeout = DB_TIMEOUT).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    outage.begin().await?;
    // This join writes bookkeeping that cannot be stored now.
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    let sent = Instant::now();
    let id = "behind";
    host_client
        .send_json(json!({"type": "send_message", "request_id": id, "session_id": session.id,
            "room_id": session.main_room_id, "client_msg_id": id, "body": id}))
        .await?;
    let reply = host_client
        .recv_until(|m| match m {
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == id) => Some(Ok(e.code)),
            ServerMessage::MessageAck { client_msg_id, .. } if client_msg_id.as_str() == id => Some(Err(())),
            _ => None,
        })
        .await?;
    ensure!(reply == Ok(ErrorCode::Unavailable), "the send was answered {reply:?}");
    ensure!(sent.elapsed() < DB_TIMEOUT + SLACK, "unavailable came after {:?}", sent.elapsed());
    outage.end().await?;
    host_client.post(session.id, session.main_room_id, id, id).await?;
    Ok(())
}

/// A request relayed to the session's owner, which does not answer in time (its database is
/// away, and it waits longer than the relaying node does), is answered `unavailable` once by
/// the relaying node; the owner's late answer is dropped, and the request sent again is
/// acknowledged as the one message it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_request_the_owner_does_not_answer_in_time_is_answered_once_by_the_relaying_node() -> Result<()> {
    const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
    let db = TestDb::new(Backend::Postgres).await?;
    let proxy = TcpProxy::start(db.server_addr()?).await?;
    let name = format!("test-{}", uuid::Uuid::new_v4().simple());
    let node = |config: &mut convene_server::Config| {
        join_cluster(config, &redis_url(), &name);
        config.cluster.answer_timeout = ANSWER_TIMEOUT;
        // Heartbeats every second: the relaying node looks at its waiting requests as often.
        config.heartbeat_timeout = Duration::from_secs(3);
    };
    let owner = TestServer::start_on(db.through(&proxy)?, |config| {
        node(config);
        config.db_timeout = Duration::from_secs(15);
    })
    .await?;
    let relay = TestServer::start_on(db.clone(), node).await?;
    let (host, _host_client, session) = group_session(&owner).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&relay, &member).await?;
    member_client.join(session.id).await?;
    let send = |request_id: &str| {
        json!({"type": "send_message", "request_id": request_id, "session_id": session.id,
            "room_id": session.main_room_id, "client_msg_id": "once", "body": "waits on the owner"})
    };

    proxy.cut();
    let sent = Instant::now();
    member_client.send_json(send("first")).await?;
    let replies = member_client.read_until_reply_to("first").await?;
    let waited = sent.elapsed();
    let reply = replies.last().map(|frame| (frame["type"].clone(), frame["code"].clone()));
    ensure!(reply == Some((json!("error"), json!("unavailable"))), "the first answer: {replies:?}");
    ensure!(waited < Duration::from_secs(5), "answered after {waited:?}, not by the relaying node");

    proxy.restore();
    // The owner answers in order: its late answer to the first comes before this one's.
    member_client.send_json(send("again")).await?;
    let replies = member_client.read_until_reply_to("again").await?;
    ensure!(replies.iter().all(|frame| frame["request_id"] != json!("first")), "answered twice: {replies:?}");
    let ack = replies.last().context("a reply")?;
    ensure!(ack["type"] == json!("message_ack"), "sent again: {ack}");
    let stored = db.store().await?.history(session.main_room_id, HistoryQuery::Latest, 10).await?;
    ensure!(stored.messages.len() == 1, "stored {} messages", stored.messages.len());
    ensure!(json!(stored.messages[0].id) == ack["message_id"], "acknowledged as the stored message");
    Ok(())
}

/// A request to the user's inbox still being answered when the node stops (its read of the
/// database hangs) is answered before the connection's 1012 close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_sync_in_flight_when_the_server_stops_is_answered_before_the_close() -> Result<()> {
    let db = TestDb::new(Backend::Postgres).await?;
    let proxy = TcpProxy::start(db.server_addr()?).await?;
    let server = TestServer::start_on(db.through(&proxy)?, |config| config.db_timeout = DB_TIMEOUT).await?;
    let mentee = TestUser::new(Role::Mentee, Some(uuid::Uuid::new_v4()));
    let mut client = Client::connect(&server, &mentee).await?;

    proxy.stall();
    // A conversation the inbox does not know is looked up in the database, which does not
    // answer: the inbox answers once its wait is over.
    let unknown = uuid::Uuid::new_v4();
    client
        .send_json(json!({"type": "sync_conversations", "request_id": "sync",
            "positions": [{"conversation_id": unknown, "last_seq": 0}]}))
        .await?;
    // Answered once the sync was handed to the inbox: requests are read in order.
    client.send_json(json!({"type": "ping", "request_id": "ping"})).await?;
    let mut frames = client.read_until_reply_to("ping").await?;
    let stopping = tokio::spawn(server.stop());
    let (rest, code) = client.read_to_close().await?;
    frames.extend(rest);
    proxy.cut();
    proxy.restore();
    ensure!(code == Some(1012), "closed with {code:?}");
    let synced: Vec<_> = frames.iter().filter(|frame| frame["request_id"] == json!("sync")).collect();
    ensure!(synced.len() == 1, "the sync was answered {} times before the close: {frames:?}", synced.len());
    ensure!(synced[0]["type"] == json!("conversations_synced"), "answered {}", synced[0]);
    stopping.await??;
    Ok(())
}
