//! An owner that lost its session writes nothing more: every write of a session's actor is
//! fenced with the token it claimed, and a newer claim (another node taking the session over)
//! makes the store refuse the old owner's writes.

use anyhow::{Context as _, Result, ensure};
use convene_protocol::{ErrorCode, NodeId, RoomId, ServerMessage};
use convene_server::store::HistoryQuery;
use serde_json::json;

use crate::common::{Backend, TestServer, group_session};
use crate::on_both_backends;

on_both_backends!(an_owner_whose_session_was_claimed_writes_nothing_more);

async fn an_owner_whose_session_was_claimed_writes_nothing_more(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (_host, mut client, session) = group_session(&server).await?;
    let room = RoomId::from(session.id);
    ensure!(client.post(session.id, room, "before", "written by the first owner").await? == 1);

    // Another node claims the session, as it does when it takes the session's lease over.
    let store = server.db.store().await?;
    let claimed = store.claim_session(session.id, NodeId(7), chrono::Utc::now()).await?;
    ensure!(claimed.is_some_and(|fence| fence.token == 2), "the second claim gets the next token: {claimed:?}");

    // The first owner's next write is refused, and its connections are told to join again.
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
    client.interrupted(session.id).await.context("the stale owner's connections are told to join again")?;
    let stored = store.history(room, HistoryQuery::Latest, 10).await?.messages;
    ensure!(stored.len() == 1 && stored[0].client_msg_id.as_str() == "before", "nothing more was written: {stored:?}");

    // Joining again (on the same connection) loads the session under a new claim, which
    // writes again.
    client.join(session.id).await?;
    ensure!(client.post(session.id, room, "after", "written by the new owner").await? == 2);
    Ok(())
}

/// An owner stalled in the middle of a transaction (paused, swapped out, cut off) holds its
/// session's ownership row; Postgres aborts the idle transaction, so a successor's claim goes
/// through instead of waiting for the stalled process forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_owners_open_transaction_does_not_keep_the_successor_out() -> Result<()> {
    use sqlx::Connection as _;
    let server = TestServer::start(Backend::Postgres).await?;
    let (_host, _client, session) = group_session(&server).await?;

    // A connection made as the server makes its own starts a batch (the fence check locks the
    // ownership row) and then stops talking, as a process that froze mid-commit would.
    let options = convene_server::store::postgres_options(&server.db.url)?;
    let mut stalled = sqlx::PgConnection::connect_with(&options).await?;
    sqlx::query("BEGIN").execute(&mut stalled).await?;
    let locked = sqlx::query("UPDATE session_owners SET fence = fence WHERE session_id = $1")
        .bind(session.id.0)
        .execute(&mut stalled)
        .await?;
    ensure!(locked.rows_affected() == 1, "the session has an owner row to lock");

    let store = server.db.store().await?;
    let claim = store.claim_session(session.id, NodeId(7), chrono::Utc::now());
    let claimed = tokio::time::timeout(crate::common::EVENT_TIMEOUT, claim)
        .await
        .map_err(|_| anyhow::anyhow!("the successor's claim waited on the stalled transaction"))??;
    ensure!(claimed.is_some_and(|fence| fence.token == 2), "the successor gets the next token: {claimed:?}");
    ensure!(
        sqlx::query("COMMIT").execute(&mut stalled).await.is_err(),
        "the stalled transaction was aborted, so nothing it held can be committed"
    );
    Ok(())
}
