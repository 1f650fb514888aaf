//! Presence: devices, statuses and the heartbeat.

use std::time::Duration;

use anyhow::Result;
use convene_protocol::{PresenceStatus, Role, ServerMessage};
use serde_json::json;

use crate::common::{Backend, Client, TestServer, TestUser, group_session};
use crate::on_both_backends;

on_both_backends!(
    a_second_device_is_the_same_member_with_two_devices,
    status_changes_reach_others_as_updates,
    silent_connections_are_removed_and_announced,
);

async fn a_second_device_is_the_same_member_with_two_devices(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Mentee, host.org);
    let mut phone = Client::connect(&server, &member).await?;
    phone.join(session.id).await?;
    let mut laptop = Client::connect(&server, &member).await?;
    let joined = laptop.join(session.id).await?;
    assert_eq!(joined.members.len(), 2, "one member per person");
    assert_eq!(joined.you.devices, 2);

    let joined_diff = host_client.recv().await?;
    assert!(
        matches!(joined_diff, ServerMessage::MemberJoined { ref member, .. } if member.devices == 1),
        "{joined_diff:?}"
    );
    let updated = host_client.recv().await?;
    assert!(matches!(updated, ServerMessage::MemberUpdated { ref member, .. } if member.devices == 2), "{updated:?}");

    drop(phone);
    let after = host_client.recv().await?;
    assert!(matches!(after, ServerMessage::MemberUpdated { ref member, .. } if member.devices == 1), "{after:?}");
    drop(laptop);
    let gone = host_client.recv().await?;
    assert!(matches!(gone, ServerMessage::MemberLeft { user_id, .. } if user_id == member.id), "{gone:?}");
    Ok(())
}

async fn status_changes_reach_others_as_updates(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut client = Client::connect(&server, &member).await?;
    client.join(session.id).await?;
    host_client.recv_until(|m| matches!(m, ServerMessage::MemberJoined { .. }).then_some(())).await?;
    client
        .send_json(json!({"type": "set_status", "request_id": "s", "session_id": session.id, "status": "away"}))
        .await?;
    assert!(matches!(client.recv().await?, ServerMessage::Ok { .. }));
    let updated = host_client.recv().await?;
    assert!(
        matches!(updated, ServerMessage::MemberUpdated { ref member, .. } if member.status == PresenceStatus::Away),
        "{updated:?}"
    );
    Ok(())
}

async fn silent_connections_are_removed_and_announced(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.heartbeat_timeout = Duration::from_millis(600);
    })
    .await?;
    let (host, mut host_client, session) = group_session(&server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut silent = Client::connect(&server, &member).await?;
    silent.join(session.id).await?;
    host_client.recv_until(|m| matches!(m, ServerMessage::MemberJoined { .. }).then_some(())).await?;
    // `silent` is never read again, so it never answers a ping. The host keeps reading (and so
    // answering pings) while it waits for the departure.
    let left = host_client
        .recv_until(|m| match m {
            ServerMessage::MemberLeft { user_id, .. } => Some(user_id),
            _ => None,
        })
        .await?;
    assert_eq!(left, member.id);
    let code = silent.closed_with().await?;
    assert_eq!(code, Some(4000));
    Ok(())
}
