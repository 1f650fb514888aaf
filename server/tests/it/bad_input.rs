//! Bad input gets a clear error and changes nothing; misbehaving clients are disconnected.

use std::time::Duration;

use anyhow::{Result, ensure};
use convene_protocol::{ErrorCode, Role, ServerMessage};
use convene_server::store::HistoryQuery;
use serde_json::json;
use uuid::Uuid;

use crate::common::{
    Backend, Client, TestServer, TestUser, allow_flooding, arrivals, departures, flood_room, group_session,
    session_with_silent_member,
};
use crate::on_both_backends;

on_both_backends!(
    malformed_frames_get_invalid_and_the_connection_stays_open,
    requests_for_sessions_not_joined_are_forbidden,
    requests_for_another_organizations_session_are_not_found,
    refused_requests_store_and_broadcast_nothing,
    oversized_frames_close_the_connection_with_1009,
    text_frames_with_invalid_utf8_close_the_connection_with_1007,
    clients_that_stop_reading_are_disconnected_as_slow,
    clients_that_take_in_nothing_are_closed_as_slow_at_the_write_timeout,
);

async fn malformed_frames_get_invalid_and_the_connection_stays_open(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let mut client = Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    let cases = [
        ("{not json", None),
        (r#"{"type":"no_such_thing","request_id":"r1"}"#, Some("r1")),
        (r#"{"request_id":"r2"}"#, Some("r2")),
        (r#"{"type":"join_session","request_id":"r3","session_id":42}"#, Some("r3")),
        (r#"{"type":"join_session","request_id":"r4","session_id":"not-a-uuid"}"#, Some("r4")),
        (
            r#"{"type":"send_message","request_id":"r5","session_id":"00000000-0000-0000-0000-000000000000"}"#,
            Some("r5"),
        ),
        (r#"{"type":"typing","session_id":"00000000-0000-0000-0000-000000000000","room_id":"x","active":"yes"}"#, None),
        (r#"[1,2,3]"#, None),
    ];
    for (frame, request_id) in cases {
        client.send_raw(frame).await?;
        let error = client.expect_error(ErrorCode::Invalid).await?;
        assert_eq!(error.request_id.as_ref().map(|r| r.as_str()), request_id, "{frame}");
    }
    client.ws.send_binary(vec![1, 2, 3]).await?;
    client.expect_error(ErrorCode::Invalid).await?;
    ensure!(client.sync().await?.is_empty(), "the connection is still open and quiet");
    Ok(())
}

trait SendBinary {
    async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()>;
}

impl<S> SendBinary for S
where
    S: futures_util::Sink<tokio_tungstenite::tungstenite::Message, Error = tokio_tungstenite::tungstenite::Error>
        + Unpin,
{
    async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        use futures_util::SinkExt as _;
        self.send(tokio_tungstenite::tungstenite::Message::binary(bytes)).await?;
        Ok(())
    }
}

async fn requests_for_sessions_not_joined_are_forbidden(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, _host_client, session) = group_session(&server).await?;
    let mut outsider = Client::connect(&server, &TestUser::new(Role::Patient, host.org)).await?;
    let attempts = [
        json!({"type": "send_message", "request_id": "a", "session_id": session.id, "room_id": session.main_room_id, "client_msg_id": "c", "body": "hi"}),
        json!({"type": "fetch_history", "request_id": "a", "session_id": session.id, "room_id": session.main_room_id}),
        json!({"type": "end_session", "request_id": "a", "session_id": session.id}),
        json!({"type": "leave_session", "request_id": "a", "session_id": session.id}),
    ];
    for attempt in attempts {
        outsider.send_json(attempt.clone()).await?;
        let error = outsider.expect_error(ErrorCode::Forbidden).await?;
        assert_eq!(error.request_id.map(|r| r.as_str().to_owned()), Some("a".to_owned()), "{attempt}");
    }
    Ok(())
}

async fn requests_for_another_organizations_session_are_not_found(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (_host, _host_client, session) = group_session(&server).await?;
    let mut stranger = Client::connect(&server, &TestUser::new(Role::Therapist, Some(Uuid::new_v4()))).await?;
    let attempts = [
        json!({"type": "join_session", "request_id": "a", "session_id": session.id}),
        json!({"type": "send_message", "request_id": "a", "session_id": session.id, "room_id": session.main_room_id, "client_msg_id": "c", "body": "hi"}),
        json!({"type": "fetch_history", "request_id": "a", "session_id": session.id, "room_id": session.main_room_id}),
        json!({"type": "end_session", "request_id": "a", "session_id": session.id}),
        json!({"type": "move_participant", "request_id": "a", "session_id": session.id, "user_id": Uuid::new_v4(),
            "from_room_id": session.main_room_id, "to_room_id": Uuid::new_v4()}),
    ];
    for attempt in attempts {
        stranger.send_json(attempt.clone()).await?;
        let error = stranger.expect_error(ErrorCode::NotFound).await?;
        assert_eq!(error.request_id.map(|r| r.as_str().to_owned()), Some("a".to_owned()), "{attempt}");
    }
    Ok(())
}

async fn refused_requests_store_and_broadcast_nothing(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut client = Client::connect(&server, &member).await?;
    client.join(session.id).await?;
    host_client.recv_until(|m| (!arrivals(&m).is_empty()).then_some(())).await?;
    let room = session.main_room_id;
    let cases = [
        (
            json!({"type": "send_message", "request_id": "x", "session_id": session.id, "room_id": Uuid::new_v4(), "client_msg_id": "c1", "body": "hi"}),
            ErrorCode::NotFound,
        ),
        (
            json!({"type": "send_message", "request_id": "x", "session_id": session.id, "room_id": room, "client_msg_id": "c2", "body": "   "}),
            ErrorCode::Invalid,
        ),
        (
            json!({"type": "edit_message", "request_id": "x", "session_id": session.id, "room_id": room, "message_id": Uuid::new_v4(), "body": "b"}),
            ErrorCode::NotFound,
        ),
        (json!({"type": "join_session", "request_id": "x", "session_id": session.id}), ErrorCode::Conflict),
        (
            json!({"type": "admit_participant", "request_id": "x", "session_id": session.id, "user_id": Uuid::new_v4()}),
            ErrorCode::Forbidden,
        ),
    ];
    for (request, code) in cases {
        client.send_json(request.clone()).await?;
        let error = client.expect_error(code).await?;
        assert_eq!(error.request_id.map(|r| r.as_str().to_owned()), Some("x".to_owned()), "{request}");
    }
    // A valid broadcast after the refused requests: it must be the first thing the host sees.
    client.send_json(json!({"type": "typing", "session_id": session.id, "room_id": room, "active": true})).await?;
    let first = host_client.recv().await?;
    assert!(matches!(first, ServerMessage::Typing { .. }), "the host saw {first:?} first");
    let stored = server.db.store().await?.history(room, HistoryQuery::Latest, 10).await?;
    assert!(stored.messages.is_empty());
    Ok(())
}

async fn oversized_frames_close_the_connection_with_1009(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let mut client = Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    let frame = json!({"type": "ping", "padding": "x".repeat(70 * 1024)});
    client.send_json(frame).await?;
    assert_eq!(client.closed_with().await?, Some(1009));
    Ok(())
}

async fn text_frames_with_invalid_utf8_close_the_connection_with_1007(backend: Backend) -> Result<()> {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start(backend).await?;
    let mut client = Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    let invalid = vec![b'{', 0xff, 0xfe, b'}'];
    client
        .ws
        .send(tokio_tungstenite::tungstenite::Message::Frame(Frame::message(invalid, OpCode::Data(Data::Text), true)))
        .await?;
    assert_eq!(client.closed_with().await?, Some(1007));
    Ok(())
}

async fn clients_that_stop_reading_are_disconnected_as_slow(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.chat.burst = 1_000_000;
        config.chat.rate_per_sec = 1_000_000.0;
        config.budgets.frames = convene_server::limits::Budget::new(1_000_000.0, 1_000_000);
    })
    .await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let reader = TestUser::new(Role::Patient, host.org);
    let mut stalled = Client::connect(&server, &reader).await?;
    stalled.join(session.id).await?;
    host_client.recv_until(|m| (!arrivals(&m).is_empty()).then_some(())).await?;
    // `stalled` never reads again. The host floods the room until the server gives up on it;
    // the socket buffers plus the outbound queue hold a few megabytes, so this is bounded.
    let body = "y".repeat(4000);
    let room = session.main_room_id;
    for round in 0..40 {
        for i in 0..100 {
            host_client
                .send_json(json!({"type": "send_message", "session_id": session.id, "room_id": room,
                "client_msg_id": format!("f{round}-{i}"), "body": body}))
                .await?;
        }
        let mut acked = 0;
        let mut gone = false;
        while acked < 100 {
            match host_client.recv().await? {
                ServerMessage::MessageAck { .. } => acked += 1,
                m if departures(&m).contains(&reader.id) => gone = true,
                _ => {}
            }
        }
        if gone || host_client.sync().await?.iter().any(|m| departures(m).contains(&reader.id)) {
            // More events for the closed connection must not count it again.
            host_client
                .send_json(json!({"type": "set_status", "request_id": "s", "session_id": session.id, "status": "away"}))
                .await?;
            host_client.sync().await?;
            assert_eq!(server.metric("convene_slow_disconnects_total").await?, 1.0);
            return Ok(());
        }
    }
    anyhow::bail!("the stalled reader was never disconnected")
}

async fn clients_that_take_in_nothing_are_closed_as_slow_at_the_write_timeout(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.write_timeout = Duration::from_secs(1);
        allow_flooding(config);
    })
    .await?;
    let (mut host_client, session, member, _stalled) = session_with_silent_member(&server).await?;
    // The stalled member's queue never fills; its writer waits on the socket until the write
    // timeout gives up on it, long before its heartbeat (30 s) would.
    flood_room(&mut host_client, &session).await?;
    host_client.recv_departure_of(member.id).await?;
    assert_eq!(server.metric("convene_slow_disconnects_total").await?, 1.0);
    Ok(())
}
