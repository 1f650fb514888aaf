//! Budgets: what one member can make the server fan out or write is bounded, and a connection
//! that keeps flooding is closed.

use anyhow::{Result, ensure};
use convene_protocol::{ErrorCode, Role, ServerMessage};
use convene_server::limits::Budget;
use serde_json::json;

use crate::common::{Backend, Client, TestServer, TestUser, group_session};
use crate::on_both_backends;

on_both_backends!(
    a_typing_flood_reaches_the_room_as_a_few_frames,
    join_and_leave_flapping_is_limited_and_writes_little,
    a_connection_flooding_frames_is_refused_then_closed_with_4029,
    a_connection_steadily_over_its_frame_budget_is_closed_with_4029,
    a_users_connections_share_one_frame_budget,
);

/// Frames are not what these tests limit.
fn unlimited_frames(config: &mut convene_server::Config) {
    config.budgets.frames = Budget::new(1_000_000.0, 1_000_000);
}

async fn a_typing_flood_reaches_the_room_as_a_few_frames(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, unlimited_frames).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let typist = TestUser::new(Role::Patient, host.org);
    let mut typist_client = Client::connect(&server, &typist).await?;
    typist_client.join(session.id).await?;
    host_client.sync().await?;
    let room = session.main_room_id;
    // 1,500 repeats of "typing", then 1,500 alternations between typing and not.
    for i in 0..3000 {
        let active = i < 1500 || i % 2 == 0;
        typist_client
            .send_json(json!({"type": "typing", "request_id": format!("t{i}"), "session_id": session.id,
                "room_id": room, "active": active}))
            .await?;
    }
    let (mut ok, mut limited) = (0, 0);
    while ok + limited < 3000 {
        match typist_client.recv().await? {
            ServerMessage::Ok { .. } => ok += 1,
            ServerMessage::Error(e) if e.code == ErrorCode::RateLimited => limited += 1,
            _ => {}
        }
    }
    ensure!(limited > 0, "alternating typing states beyond the budget is refused");
    let typing_frames = host_client.sync().await?.iter().filter(|m| matches!(m, ServerMessage::Typing { .. })).count();
    // The default budget is a burst of 6 changes (and 2/s): the room hears a handful of frames,
    // not 3,000.
    ensure!((1..=10).contains(&typing_frames), "the host received {typing_frames} typing frames");
    Ok(())
}

async fn join_and_leave_flapping_is_limited_and_writes_little(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, unlimited_frames).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let flapper = TestUser::new(Role::Patient, host.org);
    let mut client = Client::connect(&server, &flapper).await?;
    for i in 0..500 {
        client
            .send_json(json!({"type": "join_session", "request_id": format!("j{i}"), "session_id": session.id}))
            .await?;
        client
            .send_json(json!({"type": "leave_session", "request_id": format!("l{i}"), "session_id": session.id}))
            .await?;
    }
    let (mut joined, mut limited, mut answered) = (0, 0, 0);
    while answered < 1000 {
        match client.recv().await? {
            ServerMessage::Joined { .. } => (joined, answered) = (joined + 1, answered + 1),
            ServerMessage::Error(e) if e.code == ErrorCode::RateLimited => {
                (limited, answered) = (limited + 1, answered + 1)
            }
            ServerMessage::Left { .. } | ServerMessage::Error(_) => answered += 1,
            _ => {}
        }
    }
    ensure!(limited > 0 && joined <= 20, "{joined} joins went through, {limited} were limited");
    let host_heard =
        host_client.sync().await?.iter().filter(|m| matches!(m, ServerMessage::PresenceChanged { .. })).count();
    ensure!(host_heard <= 2 * joined, "the host heard {host_heard} presence frames for {joined} joins");
    let db = server.stop().await?;
    let rows = db.store().await?.transitions(session.id).await?;
    let flapper_rows = rows.iter().filter(|t| t.user_id == flapper.id).count();
    ensure!(flapper_rows <= 2 * joined, "{flapper_rows} transition rows for {joined} joins");
    Ok(())
}

async fn a_connection_flooding_frames_is_refused_then_closed_with_4029(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| config.budgets.frames = Budget::new(10.0, 20)).await?;
    let mut client = Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    for i in 0..100 {
        if client.send_json(json!({"type": "ping", "request_id": format!("p{i}")})).await.is_err() {
            break;
        }
    }
    let (mut pongs, mut limited) = (0, 0);
    let code = loop {
        match tokio::time::timeout(crate::common::EVENT_TIMEOUT, futures_util::StreamExt::next(&mut client.ws)).await? {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                match serde_json::from_str::<ServerMessage>(text.as_str())? {
                    ServerMessage::Pong { .. } => pongs += 1,
                    ServerMessage::Error(e) if e.code == ErrorCode::RateLimited => limited += 1,
                    other => anyhow::bail!("unexpected {other:?}"),
                }
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(code, Some(4029));
    ensure!(pongs >= 20 && limited >= 1, "{pongs} pongs, {limited} refusals before the close");
    Ok(())
}

/// A client that sends a little faster than its budget for good is closed too, not only one
/// that sends a whole burst of refused frames in a row.
async fn a_connection_steadily_over_its_frame_budget_is_closed_with_4029(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| config.budgets.frames = Budget::new(10.0, 20)).await?;
    let mut client = Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    // Four times the budget's rate, for at most ten seconds.
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(25));
    let mut sent = 0;
    let code = loop {
        tokio::select! {
            _ = pace.tick() => {
                sent += 1;
                ensure!(sent < 400, "still open after {sent} frames at four times the budget");
                if client.send_json(json!({"type": "ping", "request_id": format!("p{sent}")})).await.is_err() {
                    break client.closed_with().await?;
                }
            }
            next = futures_util::StreamExt::next(&mut client.ws) => match next {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break None,
            },
        }
    };
    assert_eq!(code, Some(4029));
    Ok(())
}

/// Reconnecting, or opening a second socket, does not refill a user's frame budget.
async fn a_users_connections_share_one_frame_budget(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| config.budgets.frames = Budget::new(0.1, 5)).await?;
    let user = TestUser::new(Role::Patient, None);
    let mut first = Client::connect(&server, &user).await?;
    for i in 0..5 {
        first.send_json(json!({"type": "ping", "request_id": format!("a{i}")})).await?;
        ensure!(matches!(first.recv().await?, ServerMessage::Pong { .. }), "within the burst");
    }
    let mut second = Client::connect(&server, &user).await?;
    second.send_json(json!({"type": "ping", "request_id": "b"})).await?;
    second.expect_error(ErrorCode::RateLimited).await?;
    let mut other = Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    other.send_json(json!({"type": "ping", "request_id": "c"})).await?;
    ensure!(matches!(other.recv().await?, ServerMessage::Pong { .. }), "another user has their own budget");
    Ok(())
}
