//! The audit trail over real sockets and HTTP: every host action is one row under its request
//! id, read back newest first and paged by the session's hosts and its organization's admins;
//! an action whose write fails leaves neither its change nor its row.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use convene_protocol::{ErrorCode, Role, RoomId, ServerMessage, SessionId, UserId};
use serde_json::{Value, json};

use crate::common::{Backend, Client, Outage, TestServer, TestUser};
use crate::on_both_backends;

on_both_backends!(
    host_actions_are_read_back_newest_first_and_paged,
    only_hosts_and_admins_read_the_audit_trail,
    an_admission_that_cannot_be_stored_leaves_no_row_and_nobody_admitted,
);

/// Sends `body` under `request_id` and waits for its own reply.
async fn act(client: &mut Client, request_id: &str, mut body: Value) -> Result<Result<(), ErrorCode>> {
    body["request_id"] = json!(request_id);
    client.send_json(body).await?;
    client
        .recv_until(|m| match m {
            ServerMessage::Ok { request_id: Some(r) } if r.as_str() == request_id => Some(Ok(())),
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == request_id) => {
                Some(Err(e.code))
            }
            _ => None,
        })
        .await
}

/// A group session with a lobby and its joined host.
async fn lobby_session(server: &TestServer) -> Result<(TestUser, Client, SessionId)> {
    let host = TestUser::new(Role::Therapist, Some(uuid::Uuid::new_v4()));
    let session = server.create_session(&host, json!({"session_type": "group", "lobby_enabled": true})).await?;
    let mut client = Client::connect(server, &host).await?;
    client.join(session.id).await?;
    Ok((host, client, session.id))
}

/// A participant of the host's organization knocking: returns them waiting in the lobby.
async fn knock(
    server: &TestServer,
    host: &mut Client,
    org: Option<uuid::Uuid>,
    session: SessionId,
) -> Result<(TestUser, Client)> {
    let user = TestUser::new(Role::Patient, org);
    let mut client = Client::connect(server, &user).await?;
    client.send_json(json!({"type": "join_session", "request_id": "knock", "session_id": session})).await?;
    client.recv_until(|m| matches!(m, ServerMessage::LobbyWaiting { .. }).then_some(())).await?;
    host.recv_until(|m| matches!(m, ServerMessage::LobbyEntered { .. }).then_some(())).await?;
    Ok((user, client))
}

/// One page of the audit trail as `reader` sees it: the HTTP status and the body.
async fn audit_page(
    server: &TestServer,
    reader: Option<&TestUser>,
    session: SessionId,
    query: &str,
) -> Result<(u16, Value)> {
    let mut request = reqwest::Client::new().get(server.http(&format!("/v1/sessions/{session}/audit{query}")));
    if let Some(reader) = reader {
        request = request.bearer_auth(reader.token());
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

/// (action, target, request id) of each entry.
fn rows(page: &Value) -> Vec<(String, Option<String>, Option<String>)> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    page["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (e["action"].as_str().unwrap_or_default().to_owned(), text(&e["target_user_id"]), text(&e["request_id"]))
        })
        .collect()
}

async fn host_actions_are_read_back_newest_first_and_paged(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = lobby_session(&server).await?;
    let (member, mut member_client) = knock(&server, &mut host_client, host.org, session).await?;
    let (denied, _denied_client) = knock(&server, &mut host_client, host.org, session).await?;
    let main = RoomId::from(session);

    let admit = json!({"type": "admit_participant", "session_id": session, "user_id": member.id});
    assert_eq!(act(&mut host_client, "admit-1", admit).await?, Ok(()));
    member_client.recv_until(|m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;
    let deny = json!({"type": "deny_participant", "session_id": session, "user_id": denied.id});
    assert_eq!(act(&mut host_client, "deny-1", deny).await?, Ok(()));
    member_client.post(session, main, "m1", "something to take back").await?;
    let message = host_client
        .recv_until(|m| match m {
            ServerMessage::Message { message } => Some(message.id),
            _ => None,
        })
        .await?;
    let delete = json!({"type": "delete_message", "session_id": session, "room_id": main, "message_id": message});
    assert_eq!(act(&mut host_client, "delete-1", delete).await?, Ok(()));
    let create = json!({"type": "create_breakout_rooms", "session_id": session, "count": 1, "max_participants": 5});
    assert_eq!(act(&mut host_client, "rooms-1", create).await?, Ok(()));
    let room = match audit_page(&server, Some(&host), session, "?limit=1").await? {
        (200, page) => serde_json::from_value::<Vec<RoomId>>(page["entries"][0]["detail"]["room_ids"].clone())?[0],
        other => bail!("audit read failed: {other:?}"),
    };
    let move_it = json!({"type": "move_participant", "session_id": session, "user_id": member.id,
        "from_room_id": main, "to_room_id": room});
    assert_eq!(act(&mut host_client, "move-1", move_it).await?, Ok(()));
    let promote = json!({"type": "set_role", "session_id": session, "user_id": member.id, "role": "co_host"});
    assert_eq!(act(&mut host_client, "role-1", promote).await?, Ok(()));
    let remove = json!({"type": "remove_participant", "session_id": session, "user_id": member.id});
    assert_eq!(act(&mut host_client, "remove-1", remove).await?, Ok(()));
    assert_eq!(act(&mut host_client, "end-1", json!({"type": "end_session", "session_id": session})).await?, Ok(()));

    let (status, page) = audit_page(&server, Some(&host), session, "").await?;
    assert_eq!(status, 200, "{page}");
    let (m, d) = (Some(member.id.to_string()), Some(denied.id.to_string()));
    let id = |s: &str| Some(s.to_owned());
    let expected = vec![
        ("end_session".to_owned(), None, id("end-1")),
        ("remove".to_owned(), m.clone(), id("remove-1")),
        ("set_role".to_owned(), m.clone(), id("role-1")),
        ("move".to_owned(), m.clone(), id("move-1")),
        ("create_rooms".to_owned(), None, id("rooms-1")),
        ("delete_message".to_owned(), m.clone(), id("delete-1")),
        ("deny".to_owned(), d, id("deny-1")),
        ("admit".to_owned(), m, id("admit-1")),
    ];
    assert_eq!(rows(&page), expected, "{page}");
    let entries = page["entries"].as_array().cloned().unwrap_or_default();
    ensure!(entries.iter().all(|e| e["actor_id"] == json!(host.id)), "every row names the host: {page}");
    assert_eq!(entries[2]["detail"], json!({"role": "co_host"}));
    assert!(page.get("next_before").is_none(), "one page holds it all: {page}");

    // Paged three at a time, the pages add up to the whole, newest first.
    let mut paged = Vec::new();
    let mut query = "?limit=3".to_owned();
    loop {
        let (status, page) = audit_page(&server, Some(&host), session, &query).await?;
        assert_eq!(status, 200, "{page}");
        paged.extend(rows(&page));
        match page["next_before"].as_i64() {
            Some(before) => query = format!("?limit=3&before={before}"),
            None => break,
        }
    }
    assert_eq!(paged, expected);
    Ok(())
}

async fn only_hosts_and_admins_read_the_audit_trail(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let (host, mut host_client, session) = lobby_session(&server).await?;
    let (member, _member_client) = knock(&server, &mut host_client, host.org, session).await?;
    let admit = json!({"type": "admit_participant", "session_id": session, "user_id": member.id});
    assert_eq!(act(&mut host_client, "admit-1", admit).await?, Ok(()));

    let admin = TestUser::new(Role::Admin, host.org);
    let outsider = TestUser::new(Role::Admin, Some(uuid::Uuid::new_v4()));
    let cases: [(Option<&TestUser>, &str, u16, Option<&str>); 7] = [
        (Some(&host), "", 200, None),
        (Some(&admin), "", 200, None),
        (Some(&member), "", 403, Some("forbidden")),
        (Some(&outsider), "", 404, Some("not_found")),
        (None, "", 401, Some("unauthorized")),
        (Some(&host), "?limit=0", 400, Some("invalid")),
        (Some(&host), "?before=abc", 400, Some("invalid")),
    ];
    for (reader, query, status, code) in cases {
        let (got, body) = audit_page(&server, reader, session, query).await?;
        assert_eq!(got, status, "{query}: {body}");
        match code {
            Some(code) => assert_eq!(body["code"], json!(code), "{body}"),
            None => assert_eq!(rows(&body).len(), 1, "{body}"),
        }
    }
    let unknown = SessionId(uuid::Uuid::new_v4());
    assert_eq!(audit_page(&server, Some(&admin), unknown, "").await?.0, 404);
    for report in ["audit", "transitions"] {
        let url = server.http(&format!("/v1/sessions/not-a-uuid/{report}"));
        let response = reqwest::Client::new().get(url).bearer_auth(admin.token()).send().await?;
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await?["code"], json!("invalid"), "{report}");
    }
    Ok(())
}

async fn an_admission_that_cannot_be_stored_leaves_no_row_and_nobody_admitted(backend: Backend) -> Result<()> {
    let (server, mut outage) = Outage::server(backend, |config| config.db_timeout = Duration::from_secs(1)).await?;
    let (host, mut host_client, session) = lobby_session(&server).await?;
    let (member, mut member_client) = knock(&server, &mut host_client, host.org, session).await?;
    let admit = json!({"type": "admit_participant", "session_id": session, "user_id": member.id});

    outage.begin().await?;
    assert_eq!(act(&mut host_client, "admit-1", admit.clone()).await?, Err(ErrorCode::Unavailable));
    let told = member_client.sync().await?;
    ensure!(told.is_empty(), "the member heard of an admission that was not stored: {told:?}");
    outage.end().await?;

    assert_eq!(act(&mut host_client, "admit-1", admit).await?, Ok(()));
    member_client.recv_until(|m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;
    let (status, page) = audit_page(&server, Some(&host), session, "").await?;
    assert_eq!(status, 200, "{page}");
    let admitted: Option<UserId> = serde_json::from_value(page["entries"][0]["target_user_id"].clone())?;
    assert_eq!((rows(&page).len(), admitted), (1, Some(member.id)), "one row, for the stored admission: {page}");
    Ok(())
}
