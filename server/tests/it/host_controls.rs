//! What a therapist running a group needs: co-hosts, and denial that sticks.

use std::time::Duration;

use anyhow::{Result, ensure};
use convene_protocol::{ErrorCode, Role, ServerMessage, SessionRole};
use serde_json::json;

use crate::common::{Backend, Client, TestServer, TestUser, group_session};
use crate::on_both_backends;

on_both_backends!(
    a_host_makes_a_member_co_host_and_takes_it_back,
    a_denied_person_cannot_knock_again_until_the_cool_down_ends,
    a_removed_participant_leaves_on_every_device_and_returns_only_through_the_lobby,
);

async fn a_host_makes_a_member_co_host_and_takes_it_back(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Mentor, host.org);
    let mut member_client = Client::connect(&server, &member).await?;
    member_client.join(session.id).await?;
    let set_role =
        |role: &str| json!({"type": "set_role", "session_id": session.id, "user_id": member.id, "role": role});
    let set_lobby = json!({"type": "set_lobby", "session_id": session.id, "enabled": false});

    // Only hosts change roles, and nobody becomes a second host.
    assert_eq!(member_client.request(set_role("co_host")).await?, Err(ErrorCode::Forbidden));
    assert_eq!(host_client.request(set_role("host")).await?, Err(ErrorCode::Invalid));
    assert_eq!(member_client.request(set_lobby.clone()).await?, Err(ErrorCode::Forbidden));

    assert_eq!(host_client.request(set_role("co_host")).await?, Ok(()));
    let updated = member_client.recv_presence_of(member.id).await?;
    assert_eq!(updated.session_role, SessionRole::CoHost);
    assert_eq!(member_client.request(set_lobby.clone()).await?, Ok(()), "a co-host moderates");

    // The role is stored: after a restart the member joins as co-host again.
    drop((host_client, member_client));
    let db = server.stop().await?;
    let server = TestServer::start_on(db, |_| {}).await?;
    let mut member_client = Client::connect(&server, &member).await?;
    let joined = member_client.join(session.id).await?;
    assert_eq!(joined.you.session_role, SessionRole::CoHost);
    let mut host_client = Client::connect(&server, &host).await?;
    host_client.join(session.id).await?;

    assert_eq!(host_client.request(set_role("participant")).await?, Ok(()));
    assert_eq!(member_client.request(set_lobby).await?, Err(ErrorCode::Forbidden));
    Ok(())
}

async fn a_denied_person_cannot_knock_again_until_the_cool_down_ends(backend: Backend) -> Result<()> {
    for cool_down in [Duration::from_secs(600), Duration::ZERO] {
        let server = TestServer::start_with(backend, |config| config.deny_cooldown = cool_down).await?;
        let org = Some(uuid::Uuid::new_v4());
        let host = TestUser::new(Role::Therapist, org);
        let session = server.create_session(&host, json!({"session_type": "group", "lobby_enabled": true})).await?;
        let mut host_client = Client::connect(&server, &host).await?;
        host_client.join(session.id).await?;
        let knocker = TestUser::new(Role::Patient, org);
        let mut client = Client::connect(&server, &knocker).await?;
        let knock = json!({"type": "join_session", "request_id": "knock", "session_id": session.id});
        client.send_json(knock.clone()).await?;
        client.recv_until(|m| matches!(m, ServerMessage::LobbyWaiting { .. }).then_some(())).await?;
        host_client.recv_until(|m| matches!(m, ServerMessage::LobbyEntered { .. }).then_some(())).await?;
        let deny = json!({"type": "deny_participant", "session_id": session.id, "user_id": knocker.id});
        assert_eq!(host_client.request(deny).await?, Ok(()));
        client.recv_until(|m| matches!(m, ServerMessage::Denied { .. }).then_some(())).await?;

        client.send_json(knock).await?;
        let again = client
            .recv_until(|m| match m {
                ServerMessage::LobbyWaiting { .. } => Some(Ok(())),
                ServerMessage::Error(e) => Some(Err(e.code)),
                _ => None,
            })
            .await?;
        let host_heard =
            host_client.sync().await?.iter().filter(|m| matches!(m, ServerMessage::LobbyEntered { .. })).count();
        if cool_down.is_zero() {
            ensure!(again == Ok(()) && host_heard == 1, "without a cool-down the knock reaches the host");
        } else {
            ensure!(again == Err(ErrorCode::Forbidden), "a knock within the cool-down: {again:?}");
            ensure!(host_heard == 0, "the host was bothered again");
        }
    }
    Ok(())
}

async fn a_removed_participant_leaves_on_every_device_and_returns_only_through_the_lobby(
    backend: Backend,
) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut phone = Client::connect(&server, &member).await?;
    let mut laptop = Client::connect(&server, &member).await?;
    phone.join(session.id).await?;
    laptop.join(session.id).await?;
    let other = TestUser::new(Role::Patient, host.org);
    let mut other_client = Client::connect(&server, &other).await?;
    other_client.join(session.id).await?;
    host_client.sync().await?;
    other_client.sync().await?;

    let remove = json!({"type": "remove_participant", "session_id": session.id, "user_id": member.id});
    assert_eq!(other_client.request(remove.clone()).await?, Err(ErrorCode::Forbidden));
    assert_eq!(host_client.request(remove).await?, Ok(()));
    for device in [&mut phone, &mut laptop] {
        let by = device
            .recv_until(|m| match m {
                ServerMessage::Removed { removed_by, .. } => Some(removed_by),
                _ => None,
            })
            .await?;
        assert_eq!(by, host.id);
        // Out of the session: its requests are refused, the connection stays open.
        let history = json!({"type": "fetch_history", "session_id": session.id, "room_id": session.main_room_id});
        assert_eq!(device.request(history).await?, Err(ErrorCode::Forbidden));
    }
    other_client.recv_departure_of(member.id).await?;

    // Coming back, with the lobby off, they wait until a host admits them.
    phone.send_json(json!({"type": "join_session", "request_id": "back", "session_id": session.id})).await?;
    phone.recv_until(|m| matches!(m, ServerMessage::LobbyWaiting { .. }).then_some(())).await?;
    host_client.recv_until(|m| matches!(m, ServerMessage::LobbyEntered { .. }).then_some(())).await?;

    // That holds across a restart, and admitting them lets them in again.
    drop((phone, laptop, host_client, other_client));
    let db = server.stop().await?;
    let server = TestServer::start_on(db, |_| {}).await?;
    let mut host_client = Client::connect(&server, &host).await?;
    host_client.join(session.id).await?;
    let mut phone = Client::connect(&server, &member).await?;
    phone.send_json(json!({"type": "join_session", "request_id": "again", "session_id": session.id})).await?;
    phone.recv_until(|m| matches!(m, ServerMessage::LobbyWaiting { .. }).then_some(())).await?;
    host_client.recv_until(|m| matches!(m, ServerMessage::LobbyEntered { .. }).then_some(())).await?;
    let admit = json!({"type": "admit_participant", "session_id": session.id, "user_id": member.id});
    assert_eq!(host_client.request(admit).await?, Ok(()));
    phone.recv_until(|m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;

    // The removal is a transition: a leave from the main room.
    let db = server.stop().await?;
    let transitions = db.store().await?.transitions(session.id).await?;
    let member_moves: Vec<_> = transitions
        .iter()
        .filter(|t| t.user_id == member.id)
        .map(|t| (t.from_room.is_some(), t.to_room.is_some()))
        .collect();
    ensure!(
        member_moves.first() == Some(&(false, true)) && member_moves.get(1) == Some(&(true, false)),
        "joined, then removed: {member_moves:?}"
    );
    Ok(())
}
