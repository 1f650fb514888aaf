//! Room chat: durable, sequenced, idempotent, paged, editable, limited.

use anyhow::{Result, ensure};
use convene_protocol::{ErrorCode, Role, ServerMessage};
use convene_server::store::HistoryQuery;
use serde_json::json;

use crate::common::{Backend, Client, TestServer, TestUser, arrivals, group_session};
use crate::on_both_backends;

on_both_backends!(
    messages_get_gapless_sequence_numbers_and_reach_the_room_in_order,
    a_retried_send_returns_the_first_ack_and_delivers_nothing_new,
    history_pages_backwards_and_forwards,
    senders_edit_and_delete_their_own_messages_and_hosts_delete_any,
    typing_is_relayed_to_the_room_and_not_stored,
    oversized_bodies_and_fast_senders_get_their_own_codes,
    message_ids_sort_in_the_order_the_messages_were_sent,
);

async fn messages_get_gapless_sequence_numbers_and_reach_the_room_in_order(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    let room = session.main_room_id;

    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(member_client.post(session.id, room, &format!("m{i}"), &format!("hello {i}")).await?);
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<i64>>());

    let mut received = Vec::new();
    while received.len() < 10 {
        if let ServerMessage::Message { message } = host_client.recv().await? {
            received.push((message.seq, message.body, message.sender_id));
        }
    }
    let expected: Vec<_> = (0..10).map(|i| (i + 1, format!("hello {i}"), member.id)).collect();
    assert_eq!(received, expected);

    let stored = server.db.store().await?.history(room, HistoryQuery::Latest, 100).await?;
    let stored: Vec<_> = stored.messages.into_iter().map(|m| (m.seq, m.body, m.sender_id)).collect();
    assert_eq!(stored, expected, "every acknowledged message is in the database");
    Ok(())
}

async fn message_ids_sort_in_the_order_the_messages_were_sent(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (_host, mut host_client, session) = group_session(&server).await?;
    for i in 0..20 {
        host_client.post(session.id, session.main_room_id, &format!("m{i}"), "hello").await?;
    }
    let stored = server.db.store().await?.history(session.main_room_id, HistoryQuery::Latest, 100).await?;
    let ids: Vec<uuid::Uuid> = stored.messages.iter().map(|m| m.id.0).collect();
    ensure!(ids.len() == 20, "{} messages stored", ids.len());
    ensure!(ids.iter().all(|id| id.get_version_num() == 7), "not time-ordered ids: {ids:?}");
    ensure!(ids.is_sorted_by(|a, b| a < b), "ids out of the messages' order: {ids:?}");
    Ok(())
}

async fn a_retried_send_returns_the_first_ack_and_delivers_nothing_new(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    host_client.recv_until(|m| (!arrivals(&m).is_empty()).then_some(())).await?;
    let room = session.main_room_id;

    let send = json!({"type": "send_message", "request_id": "r1", "session_id": session.id, "room_id": room,
        "client_msg_id": "once", "body": "only once"});
    member_client.send_json(send.clone()).await?;
    member_client.send_json(send.clone()).await?;
    let mut acks = Vec::new();
    while acks.len() < 2 {
        if let ServerMessage::MessageAck { message_id, seq, .. } = member_client.recv().await? {
            acks.push((message_id, seq));
        }
    }
    assert_eq!(acks[0], acks[1], "the retry got the first acknowledgement");
    // Later, once committed, a retry still gets the same acknowledgement.
    member_client.send_json(send).await?;
    let third = member_client
        .recv_until(|m| match m {
            ServerMessage::MessageAck { message_id, seq, .. } => Some((message_id, seq)),
            _ => None,
        })
        .await?;
    assert_eq!(third, acks[0]);

    let deliveries: Vec<_> =
        host_client.sync().await?.into_iter().filter(|m| matches!(m, ServerMessage::Message { .. })).collect();
    assert_eq!(deliveries.len(), 1, "one delivery: {deliveries:?}");
    let stored = server.db.store().await?.history(room, HistoryQuery::Latest, 100).await?;
    assert_eq!(stored.messages.len(), 1);
    Ok(())
}

async fn history_pages_backwards_and_forwards(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| config.chat.burst = 100).await?;
    let (_host, mut client, session) = group_session(&server).await?;
    let room = session.main_room_id;
    for i in 1..=25 {
        client.post(session.id, room, &format!("h{i}"), &format!("n{i}")).await?;
    }
    let page = |query: serde_json::Value| {
        let mut request =
            json!({"type": "fetch_history", "request_id": "h", "session_id": session.id, "room_id": room});
        if let (Some(request), Some(query)) = (request.as_object_mut(), query.as_object()) {
            request.extend(query.clone());
        }
        request
    };
    let cases = [
        (json!({"limit": 10}), (16..=25).collect::<Vec<i64>>(), true),
        (json!({"before_seq": 16, "limit": 10}), (6..=15).collect(), true),
        (json!({"before_seq": 6, "limit": 10}), (1..=5).collect(), false),
        (json!({"after_seq": 0, "limit": 10}), (1..=10).collect(), true),
        (json!({"after_seq": 20, "limit": 10}), (21..=25).collect(), false),
    ];
    for (query, seqs, more) in cases {
        client.send_json(page(query.clone())).await?;
        let (messages, has_more) = client
            .recv_until(|m| match m {
                ServerMessage::History { messages, has_more, .. } => Some((messages, has_more)),
                _ => None,
            })
            .await?;
        assert_eq!(messages.iter().map(|m| m.seq).collect::<Vec<_>>(), seqs, "{query}");
        assert_eq!(has_more, more, "{query}");
    }
    for bad in [json!({"limit": 101}), json!({"limit": 0}), json!({"before_seq": 3, "after_seq": 1})] {
        client.send_json(page(bad.clone())).await?;
        client.expect_error(ErrorCode::Invalid).await?;
    }
    Ok(())
}

async fn senders_edit_and_delete_their_own_messages_and_hosts_delete_any(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let room = session.main_room_id;
    let alice = TestUser::new(Role::Patient, host.org);
    let bob = TestUser::new(Role::Patient, host.org);
    let mut alice_client = Client::connect(&server, &alice).await?;
    alice_client.join(session.id).await?;
    let mut bob_client = Client::connect(&server, &bob).await?;
    bob_client.join(session.id).await?;
    alice_client.post(session.id, room, "a1", "first draft").await?;
    alice_client.post(session.id, room, "a2", "second").await?;
    let stored = server.db.store().await?.history(room, HistoryQuery::Latest, 10).await?;
    let (first, second) = (stored.messages[0].id, stored.messages[1].id);

    alice_client.send_json(json!({"type": "edit_message", "request_id": "e", "session_id": session.id, "room_id": room, "message_id": first, "body": "final"})).await?;
    let edited = bob_client
        .recv_until(|m| match m {
            ServerMessage::MessageEdited { message } => Some(message),
            _ => None,
        })
        .await?;
    assert_eq!((edited.body.as_str(), edited.seq), ("final", 1));
    assert!(edited.edited_at.is_some());

    bob_client.send_json(json!({"type": "edit_message", "request_id": "e2", "session_id": session.id, "room_id": room, "message_id": first, "body": "hijack"})).await?;
    bob_client
        .recv_until(|m| match m {
            ServerMessage::Error(e) if e.code == ErrorCode::Forbidden => Some(()),
            _ => None,
        })
        .await?;
    bob_client.send_json(json!({"type": "delete_message", "request_id": "d", "session_id": session.id, "room_id": room, "message_id": first})).await?;
    bob_client.expect_error(ErrorCode::Forbidden).await?;

    alice_client.send_json(json!({"type": "delete_message", "request_id": "d1", "session_id": session.id, "room_id": room, "message_id": first})).await?;
    let deleted = host_client
        .recv_until(|m| match m {
            ServerMessage::MessageDeleted { message, deleted_by } => Some((message, deleted_by)),
            _ => None,
        })
        .await?;
    assert_eq!(deleted.1, alice.id);
    assert!(deleted.0.body.is_empty() && deleted.0.deleted_at.is_some());

    host_client.send_json(json!({"type": "delete_message", "request_id": "d2", "session_id": session.id, "room_id": room, "message_id": second})).await?;
    let by_host = bob_client
        .recv_until(|m| match m {
            ServerMessage::MessageDeleted { message, deleted_by } if message.id == second => Some(deleted_by),
            _ => None,
        })
        .await?;
    assert_eq!(by_host, host.id);

    let stored = server.db.store().await?.history(room, HistoryQuery::Latest, 10).await?;
    let summary: Vec<_> = stored.messages.iter().map(|m| (m.body.as_str(), m.deleted_at.is_some())).collect();
    assert_eq!(summary, [("final", true), ("second", true)], "soft deletes keep the rows");
    Ok(())
}

async fn typing_is_relayed_to_the_room_and_not_stored(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    member_client
        .send_json(json!({"type": "typing", "session_id": session.id, "room_id": session.main_room_id, "active": true}))
        .await?;
    let typing = host_client
        .recv_until(|m| match m {
            ServerMessage::Typing { user_id, active, .. } => Some((user_id, active)),
            _ => None,
        })
        .await?;
    assert_eq!(typing, (member.id, true));
    // The typist hears `ok` for its request, and never its own indicator.
    let own = member_client.sync().await?;
    ensure!(matches!(own.as_slice(), [ServerMessage::Ok { .. }]), "the typist got {own:?}");
    let stored = server.db.store().await?.history(session.main_room_id, HistoryQuery::Latest, 10).await?;
    assert!(stored.messages.is_empty());
    Ok(())
}

async fn oversized_bodies_and_fast_senders_get_their_own_codes(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.chat.max_body_bytes = 100;
        config.chat.burst = 3;
        config.chat.rate_per_sec = 0.001;
    })
    .await?;
    let (_host, mut client, session) = group_session(&server).await?;
    let room = session.main_room_id;
    client.send_json(json!({"type": "send_message", "request_id": "big", "session_id": session.id, "room_id": room, "client_msg_id": "big", "body": "x".repeat(101)})).await?;
    assert_eq!(
        client.expect_error(ErrorCode::TooLarge).await?.request_id.map(|r| r.as_str().to_owned()),
        Some("big".into())
    );
    for i in 0..3 {
        client.post(session.id, room, &format!("ok{i}"), "fits").await?;
    }
    client.send_json(json!({"type": "send_message", "request_id": "fast", "session_id": session.id, "room_id": room, "client_msg_id": "fast", "body": "too fast"})).await?;
    client
        .recv_until(|m| match m {
            ServerMessage::Error(e) if e.code == ErrorCode::RateLimited => Some(()),
            _ => None,
        })
        .await?;
    let stored = server.db.store().await?.history(room, HistoryQuery::Latest, 10).await?;
    assert_eq!(stored.messages.len(), 3, "refused messages are not stored");
    Ok(())
}
