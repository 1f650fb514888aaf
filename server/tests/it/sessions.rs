//! Sessions: creation, joining, the lobby, ending, expiry and organization boundaries.

use anyhow::{Result, ensure};
use convene_protocol::{ErrorCode, Role, ServerMessage, SessionRole, SessionStatus};
use serde_json::json;
use uuid::Uuid;

use crate::common::{Backend, Client, TestServer, TestUser, arrivals, group_session};
use crate::on_both_backends;

on_both_backends!(
    a_session_released_when_idle_is_loaded_again_by_every_join,
    hosts_create_sessions_over_http_and_others_cannot,
    hosts_create_sessions_over_the_socket,
    duplicate_room_names_conflict,
    joining_gives_a_snapshot_and_others_a_diff,
    leaving_is_announced_and_recorded,
    ending_tells_everyone_and_refuses_later_joins,
    participants_cannot_act_as_hosts,
    appointment_invitees_wait_in_the_lobby_until_admitted,
    denied_participants_are_told_and_stay_out,
    uninvited_users_are_refused_from_appointments,
    hosts_can_turn_the_lobby_on_for_group_sessions,
    unstarted_instant_sessions_expire,
    other_organizations_sessions_are_not_found,
);

async fn hosts_create_sessions_over_http_and_others_cannot(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let org = Some(Uuid::new_v4());
    let therapist = TestUser::new(Role::Therapist, org);
    let session =
        server.create_session(&therapist, json!({"session_type": "group", "room_name": "tuesday-group"})).await?;
    assert_eq!(session.room_name, "tuesday-group");
    assert_eq!(session.status, SessionStatus::Scheduled);
    assert_eq!(session.created_by, therapist.id);
    assert_eq!(session.organization_id.map(|o| o.0), org);

    let patient = TestUser::new(Role::Patient, org);
    let refused = server.create_session(&patient, json!({"session_type": "group"})).await;
    ensure!(refused.is_err_and(|e| e.to_string().contains("403")), "a patient created a session");

    let stored = server.db.store().await?.load_session(session.id).await?;
    let (record, participants) = stored.ok_or_else(|| anyhow::anyhow!("session not stored"))?;
    assert_eq!(record.room_name, "tuesday-group");
    assert!(participants.iter().any(|p| p.user_id == therapist.id && p.role == SessionRole::Host));
    Ok(())
}

async fn hosts_create_sessions_over_the_socket(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let mentor = TestUser::new(Role::Mentor, None);
    let mentee = TestUser::new(Role::Mentee, None);
    let mut client = Client::connect(&server, &mentor).await?;
    client.send_json(json!({"type": "create_session", "request_id": "c1", "session_type": "appointment", "invitees": [mentee.id]})).await?;
    let session = match client.recv().await? {
        ServerMessage::SessionCreated { request_id, session } => {
            assert_eq!(request_id.map(|r| r.as_str().to_owned()), Some("c1".to_owned()));
            session
        }
        other => anyhow::bail!("expected session_created, got {other:?}"),
    };
    assert!(session.lobby_enabled, "appointments always have a lobby");

    let mut patient = Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    patient.send_json(json!({"type": "create_session", "request_id": "c2", "session_type": "group"})).await?;
    let error = patient.expect_error(ErrorCode::Forbidden).await?;
    assert_eq!(error.request_id.map(|r| r.as_str().to_owned()), Some("c2".to_owned()));
    Ok(())
}

async fn duplicate_room_names_conflict(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let host = TestUser::new(Role::Therapist, None);
    server.create_session(&host, json!({"session_type": "group", "room_name": "same"})).await?;
    let second = server.create_session(&host, json!({"session_type": "group", "room_name": "same"})).await;
    ensure!(second.is_err_and(|e| e.to_string().contains("409")), "duplicate room name accepted");
    Ok(())
}

async fn joining_gives_a_snapshot_and_others_a_diff(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    let joined = member_client.join(session.id).await?;
    // The room as last published (the host), then the member's own arrival in its next diff.
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.followed.iter().flat_map(arrivals).map(|m| m.user_id).collect::<Vec<_>>(), [member.id]);
    assert_eq!(joined.you.user_id, member.id);
    assert_eq!(joined.you.session_role, SessionRole::Participant);
    assert_eq!(joined.session.status, SessionStatus::Active);
    assert_eq!(joined.rooms.len(), 1);
    assert_eq!(joined.rooms[0].room_id.0, session.id.0);

    let diff = host_client.recv().await?;
    let arrived: Vec<_> = arrivals(&diff).into_iter().map(|m| m.user_id).collect();
    assert_eq!(arrived, [member.id], "{diff:?}");
    // No full list follows the diff.
    ensure!(host_client.sync().await?.is_empty(), "the host got more than one diff");
    Ok(())
}

async fn leaving_is_announced_and_recorded(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    host_client.recv_presence_of(member.id).await?;

    member_client.send_json(json!({"type": "leave_session", "request_id": "bye", "session_id": session.id})).await?;
    match member_client.recv().await? {
        ServerMessage::Left { .. } => {}
        other => anyhow::bail!("expected left, got {other:?}"),
    }
    host_client.recv_departure_of(member.id).await?;
    // A graceful stop flushes every write; the row must then record both times.
    let db = server.stop().await?;
    let (_, participants) = db.store().await?.load_session(session.id).await?.unwrap_or_else(|| unreachable!());
    let row = participants.iter().find(|p| p.user_id == member.id);
    ensure!(row.is_some_and(|p| p.joined_at.is_some() && p.left_at.is_some()), "participant row: {row:?}");
    Ok(())
}

async fn ending_tells_everyone_and_refuses_later_joins(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;

    host_client.send_json(json!({"type": "end_session", "request_id": "end", "session_id": session.id})).await?;
    for client in [&mut host_client, &mut member_client] {
        let by = client
            .recv_until(|m| match m {
                ServerMessage::SessionEnded { ended_by, .. } => Some(ended_by),
                _ => None,
            })
            .await?;
        assert_eq!(by, host.id);
    }
    let mut late = Client::connect(&server, &TestUser::new(Role::Patient, host.org)).await?;
    late.send_json(json!({"type": "join_session", "session_id": session.id})).await?;
    late.expect_error(ErrorCode::Gone).await?;
    let db = server.stop().await?;
    let (record, _) = db.store().await?.load_session(session.id).await?.unwrap_or_else(|| unreachable!());
    assert_eq!(record.status, SessionStatus::Ended);
    assert!(record.ended_at.is_some());
    Ok(())
}

async fn participants_cannot_act_as_hosts(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    let attempts = [
        json!({"type": "end_session", "request_id": "x", "session_id": session.id}),
        json!({"type": "set_lobby", "request_id": "x", "session_id": session.id, "enabled": true}),
        json!({"type": "admit_participant", "request_id": "x", "session_id": session.id, "user_id": host.id}),
        json!({"type": "deny_participant", "request_id": "x", "session_id": session.id, "user_id": host.id}),
    ];
    for attempt in attempts {
        member_client.send_json(attempt.clone()).await?;
        let error = member_client.expect_error(ErrorCode::Forbidden).await?;
        assert_eq!(error.request_id.map(|r| r.as_str().to_owned()), Some("x".to_owned()), "{attempt}");
    }
    // Nothing reached the host but the member's arrival, and the session is still live.
    let seen = host_client.sync().await?;
    ensure!(seen.iter().all(|m| !arrivals(m).is_empty()), "host saw {seen:?}");
    // The session's start is bookkeeping nobody waits on; a graceful stop flushes it.
    let db = server.stop().await?;
    let (record, _) = db.store().await?.load_session(session.id).await?.unwrap_or_else(|| unreachable!());
    assert_eq!(record.status, SessionStatus::Active);
    assert!(!record.lobby_enabled);
    Ok(())
}

async fn appointment_invitees_wait_in_the_lobby_until_admitted(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let org = Some(Uuid::new_v4());
    let therapist = TestUser::new(Role::Therapist, org);
    let patient = TestUser::new(Role::Patient, org);
    let session =
        server.create_session(&therapist, json!({"session_type": "appointment", "invitees": [patient.id]})).await?;
    let mut host = Client::connect(&server, &therapist).await?;
    host.join(session.id).await?;

    let mut waiting = Client::connect(&server, &patient).await?;
    waiting.send_json(json!({"type": "join_session", "request_id": "j", "session_id": session.id})).await?;
    assert!(matches!(waiting.recv().await?, ServerMessage::LobbyWaiting { .. }));
    let entered = host
        .recv_until(|m| match m {
            ServerMessage::LobbyEntered { entry, .. } => Some(entry),
            _ => None,
        })
        .await?;
    assert_eq!(entered.user_id, patient.id);

    // While waiting, the patient is not a member: chat is refused.
    waiting
        .send_json(json!({"type": "send_message", "request_id": "m", "session_id": session.id,
        "room_id": session.id, "client_msg_id": "m1", "body": "hello?"}))
        .await?;
    waiting.expect_error(ErrorCode::Forbidden).await?;

    host.send_json(
        json!({"type": "admit_participant", "request_id": "a", "session_id": session.id, "user_id": patient.id}),
    )
    .await?;
    let joined = waiting
        .recv_until(|m| match m {
            ServerMessage::Joined { request_id, rosters, .. } => Some((request_id, rosters)),
            _ => None,
        })
        .await?;
    assert_eq!(joined.0.map(|r| r.as_str().to_owned()), Some("j".to_owned()));
    assert_eq!(joined.1[0].total, 1, "the host, as last published; the patient's arrival follows");
    host.recv_presence_of(patient.id).await?;

    // A reconnect of an admitted participant does not wait again.
    drop(waiting);
    let mut again = Client::connect(&server, &patient).await?;
    again.join(session.id).await?;
    Ok(())
}

async fn denied_participants_are_told_and_stay_out(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    host_client
        .send_json(json!({"type": "set_lobby", "request_id": "l", "session_id": session.id, "enabled": true}))
        .await?;
    host_client.recv_until(|m| matches!(m, ServerMessage::Ok { .. }).then_some(())).await?;
    let guest = TestUser::new(Role::Patient, host.org);
    let mut guest_client = Client::connect(&server, &guest).await?;
    guest_client.send_json(json!({"type": "join_session", "session_id": session.id})).await?;
    assert!(matches!(guest_client.recv().await?, ServerMessage::LobbyWaiting { .. }));
    host_client.recv_until(|m| matches!(m, ServerMessage::LobbyEntered { .. }).then_some(())).await?;
    host_client
        .send_json(
            json!({"type": "deny_participant", "request_id": "d", "session_id": session.id, "user_id": guest.id}),
        )
        .await?;
    assert!(matches!(guest_client.recv().await?, ServerMessage::Denied { .. }));
    let seen = host_client.sync().await?;
    ensure!(seen.iter().any(|m| matches!(m, ServerMessage::LobbyLeft { .. })), "no lobby_left: {seen:?}");
    ensure!(!seen.iter().any(|m| !arrivals(m).is_empty()), "denied guest joined: {seen:?}");
    Ok(())
}

async fn uninvited_users_are_refused_from_appointments(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let therapist = TestUser::new(Role::Therapist, None);
    let invited = TestUser::new(Role::Patient, None);
    let session =
        server.create_session(&therapist, json!({"session_type": "appointment", "invitees": [invited.id]})).await?;
    let mut stranger = Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    stranger.send_json(json!({"type": "join_session", "request_id": "j", "session_id": session.id})).await?;
    stranger.expect_error(ErrorCode::Forbidden).await?;
    Ok(())
}

async fn hosts_can_turn_the_lobby_on_for_group_sessions(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let early = TestUser::new(Role::Patient, host.org);
    let mut early_client = Client::connect(&server, &early).await?;
    early_client.join(session.id).await?;
    host_client
        .send_json(json!({"type": "set_lobby", "request_id": "l", "session_id": session.id, "enabled": true}))
        .await?;
    let updated = early_client
        .recv_until(|m| match m {
            ServerMessage::SessionUpdated { session } => Some(session),
            _ => None,
        })
        .await?;
    assert!(updated.lobby_enabled);
    let mut late = Client::connect(&server, &TestUser::new(Role::Patient, host.org)).await?;
    late.send_json(json!({"type": "join_session", "session_id": session.id})).await?;
    assert!(matches!(late.recv().await?, ServerMessage::LobbyWaiting { .. }));
    Ok(())
}

async fn unstarted_instant_sessions_expire(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.instant_session_ttl = std::time::Duration::ZERO;
    })
    .await?;
    let host = TestUser::new(Role::Mentor, None);
    let session = server.create_session(&host, json!({"session_type": "instant"})).await?;
    let mut client = Client::connect(&server, &host).await?;
    client.send_json(json!({"type": "join_session", "session_id": session.id})).await?;
    client.expect_error(ErrorCode::Gone).await?;
    Ok(())
}

async fn other_organizations_sessions_are_not_found(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (_host, _client, session) = group_session(&server).await?;
    let outsider = TestUser::new(Role::Admin, Some(Uuid::new_v4()));
    let mut client = Client::connect(&server, &outsider).await?;
    client.send_json(json!({"type": "join_session", "request_id": "j", "session_id": session.id})).await?;
    client.expect_error(ErrorCode::NotFound).await?;
    client.send_json(json!({"type": "join_session", "request_id": "k", "session_id": Uuid::new_v4()})).await?;
    client.expect_error(ErrorCode::NotFound).await?;
    Ok(())
}

/// With no idle grace the session's actor is released whenever its last member leaves, so
/// joins keep arriving while it retires: each is answered by the next actor, which loads the
/// session with what was stored.
async fn a_session_released_when_idle_is_loaded_again_by_every_join(backend: Backend) -> Result<()> {
    let server =
        TestServer::start_with(backend, |config| config.session_idle_grace = std::time::Duration::ZERO).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let first = host_client.post(session.id, session.main_room_id, "before", "said before the cycles").await?;
    host_client.send_json(json!({"type": "leave_session", "session_id": session.id})).await?;
    host_client.recv_until(|m| matches!(m, ServerMessage::Left { .. }).then_some(())).await?;
    // Many people, each joining and leaving once, two at a time, so that one's join meets the
    // other's departure and the release it causes.
    for _ in 0..60 {
        let mut pair = Vec::new();
        for _ in 0..2 {
            pair.push(Client::connect(&server, &TestUser::new(Role::Patient, host.org)).await?);
        }
        for client in &mut pair {
            client.send_json(json!({"type": "join_session", "request_id": "j", "session_id": session.id})).await?;
        }
        for client in &mut pair {
            let joined = client
                .recv_until(|m| match m {
                    ServerMessage::Joined { .. } => Some(Ok(())),
                    ServerMessage::Error(e) => Some(Err(e.code)),
                    _ => None,
                })
                .await?;
            ensure!(joined.is_ok(), "a join was refused: {joined:?}");
            client.send_json(json!({"type": "leave_session", "session_id": session.id})).await?;
        }
    }
    let mut again = Client::connect(&server, &host).await?;
    let joined = again.join(session.id).await?;
    ensure!(joined.rooms.iter().any(|r| r.last_seq == first), "the stored chat was loaded again: {:?}", joined.rooms);
    Ok(())
}
