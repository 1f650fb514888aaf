//! An owner that lost its session writes nothing more: every write of a session's actor is
//! fenced with the token it claimed, and a newer claim (another node taking the session over)
//! makes the store refuse the old owner's writes.

use anyhow::{Result, ensure};
use convene_protocol::{ErrorCode, NodeId, RoomId, ServerMessage};
use convene_server::store::HistoryQuery;
use serde_json::json;

use crate::common::{Backend, Client, TestServer, group_session};
use crate::on_both_backends;

on_both_backends!(an_owner_whose_session_was_claimed_writes_nothing_more);

async fn an_owner_whose_session_was_claimed_writes_nothing_more(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut client, session) = group_session(&server).await?;
    let room = RoomId::from(session.id);
    ensure!(client.post(session.id, room, "before", "written by the first owner").await? == 1);

    // Another node claims the session, as it does when it takes the session's lease over.
    let store = server.db.store().await?;
    let claimed = store.claim_session(session.id, NodeId(7), chrono::Utc::now()).await?;
    ensure!(claimed.is_some_and(|fence| fence.token == 2), "the second claim gets the next token: {claimed:?}");

    // The first owner's next write is refused, and its connections are sent to reconnect.
    client
        .send_json(json!({"type": "send_message", "request_id": "after", "session_id": session.id,
            "room_id": room, "client_msg_id": "after", "body": "written after losing the session"}))
        .await?;
    let refused = client
        .recv_until(|m| match m {
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == "after") => Some(e.code),
            ServerMessage::MessageAck { .. } => Some(ErrorCode::Internal),
            _ => None,
        })
        .await?;
    ensure!(refused == ErrorCode::Unavailable, "the stale owner's write is refused: {refused:?}");
    ensure!(client.closed_with().await? == Some(1012), "the stale owner's connections are closed to reconnect");
    let stored = store.history(room, HistoryQuery::Latest, 10).await?.messages;
    ensure!(stored.len() == 1 && stored[0].client_msg_id.as_str() == "before", "nothing more was written: {stored:?}");

    // Reconnecting loads the session under a new claim, which writes again.
    let mut again = Client::connect(&server, &host).await?;
    again.join(session.id).await?;
    ensure!(again.post(session.id, room, "after", "written by the new owner").await? == 2);
    Ok(())
}
