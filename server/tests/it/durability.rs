//! What was acknowledged survives: a killed process, a graceful shutdown, racing migrations;
//! and it is stored as it was acknowledged.

use std::collections::HashMap;
use std::process::Stdio;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use convene_protocol::{Role, ServerMessage};
use convene_server::store::{HistoryQuery, Store};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::common::{Backend, Client, SECRET, TestDb, TestServer, TestUser, allow_flooding, group_session};
use crate::nodes::owner_and_other_with;
use crate::{across_nodes, on_both_backends};

on_both_backends!(
    acknowledged_messages_survive_sigkill,
    graceful_shutdown_closes_connections_with_1012_and_keeps_every_ack,
    requests_in_flight_when_the_server_stops_are_each_answered_before_the_close,
);
across_nodes!(requests_in_flight_when_the_server_stops_are_each_answered_before_the_close);

/// Postgres only: several nodes may start against one Postgres at once, and the migrator's
/// advisory lock serializes them. An SQLite file belongs to a single node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_on_postgres_apply_once() -> Result<()> {
    concurrent_migrations_apply_once(Backend::Postgres).await
}

/// Starts the real binary on a free port; returns it and the address it printed.
async fn spawn_binary(db: &TestDb, data_dir: &std::path::Path) -> Result<(Child, std::net::SocketAddr)> {
    spawn_binary_with(db, data_dir, "full").await
}

async fn spawn_binary_with(
    db: &TestDb,
    data_dir: &std::path::Path,
    sqlite_sync: &str,
) -> Result<(Child, std::net::SocketAddr)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_convene"))
        .env("CONVENE_SQLITE_SYNC", sqlite_sync)
        .env("CONVENE_BIND", "127.0.0.1:0")
        .env("DATABASE_URL", &db.url)
        .env("CONVENE_JWT_SECRET", SECRET)
        .env("CONVENE_DATA_DIR", data_dir)
        .env("CONVENE_LOG_JSON", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = tokio::time::timeout(crate::common::EVENT_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if entry["fields"]["message"] == "convene listening" {
                let addr = entry["fields"]["addr"].as_str().unwrap_or_default().parse()?;
                return Ok::<_, anyhow::Error>(addr);
            }
        }
        bail!("the server exited before listening")
    })
    .await
    .context("waiting for the server to listen")??;
    // Keep draining stderr so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

async fn acknowledged_messages_survive_sigkill(backend: Backend) -> Result<()> {
    acknowledged_messages_survive_sigkill_with(backend, "full").await
}

/// `normal` promises less than `full` (a power loss may take the latest commits), but a killed
/// process must still lose nothing acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_with_sqlite_sync_normal() -> Result<()> {
    acknowledged_messages_survive_sigkill_with(Backend::Sqlite, "normal").await
}

async fn acknowledged_messages_survive_sigkill_with(backend: Backend, sqlite_sync: &str) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let data_dir = tempfile::tempdir()?;
    let (mut child, addr) = spawn_binary_with(&db, data_dir.path(), sqlite_sync).await?;
    let host = TestUser::new(Role::Therapist, None);
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws?access_token={}", host.token())).await?;
    let mut client = Client { ws };
    client.recv().await?;
    client.send_json(json!({"type": "create_session", "session_type": "group"})).await?;
    let session = client
        .recv_until(|m| match m {
            ServerMessage::SessionCreated { session, .. } => Some(session),
            _ => None,
        })
        .await?;
    client.join(session.id).await?;
    // Pipeline the sends so some are committed in shared batches, then kill at the last ack.
    let total = 20;
    for i in 0..total {
        client
            .send_json(json!({"type": "send_message", "session_id": session.id, "room_id": session.main_room_id,
            "client_msg_id": format!("k{i}"), "body": format!("durable {i}")}))
            .await?;
    }
    let mut acked = Vec::new();
    while acked.len() < total {
        if let ServerMessage::MessageAck { message_id, seq, .. } = client.recv().await? {
            acked.push((seq, message_id));
        }
    }
    child.start_kill()?;
    child.wait().await?;

    let store = db.store().await?;
    let stored = store.history(session.main_room_id, HistoryQuery::After(0), 100).await?;
    let stored: Vec<_> = stored.messages.iter().map(|m| (m.seq, m.id)).collect();
    acked.sort();
    assert_eq!(stored, acked, "every acknowledged message is stored, with its sequence number");

    // And a restarted server continues the sequence.
    let (_child, addr) = spawn_binary(&db, data_dir.path()).await?;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws?access_token={}", host.token())).await?;
    let mut client = Client { ws };
    client.recv().await?;
    client.join(session.id).await?;
    assert_eq!(client.post(session.id, session.main_room_id, "after", "next").await?, total as i64 + 1);
    Ok(())
}

async fn graceful_shutdown_closes_connections_with_1012_and_keeps_every_ack(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (_host, mut client, session) = group_session(&server).await?;
    for i in 0..10 {
        client
            .send_json(json!({"type": "send_message", "session_id": session.id, "room_id": session.main_room_id,
            "client_msg_id": format!("g{i}"), "body": "before shutdown"}))
            .await?;
    }
    let mut acked = 0;
    while acked < 10 {
        if let ServerMessage::MessageAck { .. } = client.recv().await? {
            acked += 1;
        }
    }
    let stopping = tokio::spawn(server.stop());
    assert_eq!(client.closed_with().await?, Some(1012));
    let db = stopping.await??;
    let stored = db.store().await?.history(session.main_room_id, HistoryQuery::Latest, 100).await?;
    assert_eq!(stored.messages.len(), 10);
    Ok(())
}

/// A client that sent requests without waiting for their replies, when its node stops: every
/// request the node read is carried out and answered exactly once before the 1012 close, whether
/// the session's owner is that node or another one it relays to. Requests are read in order, so
/// the answered ones are the first ones sent, and only requests never read go unanswered (the
/// client sends them again after reconnecting). Every message stored was acknowledged.
async fn requests_in_flight_when_the_server_stops_are_each_answered_before_the_close(backend: Backend) -> Result<()> {
    // Fewer than a connection may have waiting on another node at once (64).
    const SENT: usize = 60;
    let (owner, server) = owner_and_other_with(backend, allow_flooding).await?;
    let alone = owner.is_none();
    let (host, mut host_client, session) = group_session(owner.as_ref().unwrap_or(&server)).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut client = Client::connect(&server, &member).await?;
    client.join(session.id).await?;
    host_client.recv_presence_of(member.id).await?;
    // Requests answered by other parts of the node (a read of the room's history, the
    // conversations' sync), then messages.
    client
        .send_json(json!({"type": "fetch_history", "request_id": "history", "session_id": session.id,
            "room_id": session.main_room_id}))
        .await?;
    client.send_json(json!({"type": "sync_conversations", "request_id": "sync", "positions": []})).await?;
    let mut requests = vec!["history".to_owned(), "sync".to_owned()];
    requests.extend((0..SENT).map(|i| format!("m{i}")));
    for request in &requests[2..] {
        client
            .send_json(json!({"type": "send_message", "request_id": request, "session_id": session.id,
                "room_id": session.main_room_id, "client_msg_id": request, "body": "in flight"}))
            .await?;
    }
    // The node is stopped once it answered the first message, with the rest being read and
    // handled.
    let mut frames = client.read_until_reply_to("m0").await?;
    let stopping = tokio::spawn(server.stop());
    let (rest, code) = client.read_to_close().await?;
    ensure!(code == Some(1012), "closed with {code:?}");
    frames.extend(rest);

    let mut replies: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut acked = Vec::new();
    for frame in &frames {
        let Some(request) = frame.get("request_id").and_then(|id| id.as_str()) else { continue };
        let kind = frame.get("type").and_then(|kind| kind.as_str()).unwrap_or_default();
        let code = frame.get("code").and_then(|code| code.as_str()).unwrap_or(kind);
        replies.entry(request).or_default().push(code);
        if kind == "message_ack" {
            acked.push((frame["seq"].as_i64().unwrap_or_default(), frame["message_id"].clone()));
        }
    }
    let answered = requests.iter().take_while(|request| replies.contains_key(request.as_str())).count();
    ensure!(replies.len() == answered, "answered {answered} requests in order, then more: {replies:?}");
    for (request, answers) in &replies {
        let once = matches!(answers.as_slice(), ["message_ack" | "history" | "conversations_synced"]);
        ensure!(once, "request {request} was answered {answers:?}");
    }

    let db = stopping.await??;
    let store = db.store().await?;
    let stored = store.history(session.main_room_id, HistoryQuery::Latest, 1_000).await?.messages;
    let stored: Vec<_> = stored.iter().map(|m| (m.seq, json!(m.id))).collect();
    acked.sort_by_key(|(seq, _)| *seq);
    ensure!(stored == acked, "stored {} messages, acknowledged {}", stored.len(), acked.len());
    if alone {
        // The node's people were recorded as having left: a node starting next finds nobody.
        let (_, participants) = store.load_session(session.id).await?.context("the session is stored")?;
        ensure!(participants.iter().all(|p| p.left_at.is_some()), "still present after the stop: {participants:?}");
    } else {
        // The owner elsewhere heard that the member left.
        host_client.recv_departure_of(member.id).await?;
    }
    eprintln!("{answered} of {} requests answered before the close, {} messages stored", requests.len(), stored.len());
    Ok(())
}

async fn concurrent_migrations_apply_once(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let migrate = || async {
        let store = Store::connect(Some(&db.url), std::path::Path::new(".")).await?;
        store.migrate().await
    };
    let (first, second) = tokio::join!(migrate(), migrate());
    first.map_err(|e| anyhow!("{e}"))?;
    second.map_err(|e| anyhow!("{e}"))?;
    db.store().await?.ping().await?;
    Ok(())
}
