//! Who may talk to whom, as the backend set it over the service API; refusals change nothing.

use anyhow::{Result, bail, ensure};
use convene_protocol::{ErrorCode, Role, ServerMessage};
use convene_server::limits::Budget;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use super::fixture::{Fixture, Pair, Setup};
use crate::common::{Client, TestUser};
use crate::on_one_node_and_two;

on_one_node_and_two!(
    mentees_reach_only_mentors_who_take_messages_and_are_visible_to_them,
    patients_reach_only_their_own_therapists,
    a_block_stops_both_sides_and_lifts,
    only_the_two_members_read_a_conversation,
    the_service_api_takes_only_the_service_key,
    the_http_api_and_the_service_api_refuse_callers_past_their_budgets,
);

async fn mentees_reach_only_mentors_who_take_messages_and_are_visible_to_them(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let mentee = fx.user(Role::Mentee);
    let mut device = Client::connect(fx.node(0), &mentee).await?;
    fx.profile(&mentee, "mentee", true, "public").await?;
    let cases = [
        ("chat disabled", false, "public", false, Err(ErrorCode::Forbidden)),
        ("private", true, "private", true, Err(ErrorCode::Forbidden)),
        ("partners only, no shared programme", true, "partners_only", false, Err(ErrorCode::Forbidden)),
        ("partners only, shared programme", true, "partners_only", true, Ok(())),
        ("public", true, "public", false, Ok(())),
    ];
    for (case, chat_enabled, visibility, shared, expected) in cases {
        let mentor = fx.user(Role::Mentor);
        fx.profile(&mentor, "mentor", chat_enabled, visibility).await?;
        if shared {
            let programme = Uuid::new_v4();
            for member in [&mentor, &mentee] {
                let path = format!("/v1/service/programmes/{programme}/members/{}", member.id);
                let body = json!({"organization_id": fx.org, "active": true});
                let (status, _) = fx.service(1, Method::PUT, &path, Some(body)).await?;
                ensure!(status == 204, "{case}: programme membership {status}");
            }
        }
        let opened = device.open_with(mentor.id).await?.map(|_| ());
        ensure!(opened == expected, "{case}: {opened:?}");
        // Sending to them directly is refused the same way, and stores nothing.
        let send = json!({"type": "send_direct", "to": {"user_id": mentor.id}, "client_msg_id": "x", "body": "hi"});
        let reply = device.ask(send).await?;
        let sent = match reply {
            ServerMessage::DirectAck { .. } => Ok(()),
            ServerMessage::Error(error) => Err(error.code),
            other => bail!("{case}: {other:?}"),
        };
        ensure!(sent == expected, "{case}: send {sent:?}");
    }
    // Only the two allowed conversations exist.
    let ServerMessage::Conversations { conversations, .. } = device.ask(json!({"type": "list_conversations"})).await?
    else {
        bail!("no list")
    };
    ensure!(conversations.len() == 2, "{conversations:?}");
    Ok(())
}

async fn patients_reach_only_their_own_therapists(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let (patient, theirs, other_therapist) =
        (fx.user(Role::Patient), fx.user(Role::Therapist), fx.user(Role::Therapist));
    for (user, kind) in [(&patient, "patient"), (&theirs, "therapist"), (&other_therapist, "therapist")] {
        fx.profile(user, kind, true, "public").await?;
    }
    let path = format!("/v1/service/therapists/{}/patients/{}", theirs.id, patient.id);
    let (status, _) = fx.service(0, Method::PUT, &path, Some(json!({"organization_id": fx.org}))).await?;
    ensure!(status == 204);
    let mut device = Client::connect(fx.node(1), &patient).await?;
    ensure!(device.open_with(theirs.id).await?.is_ok(), "their own therapist");
    ensure!(device.open_with(other_therapist.id).await? == Err(ErrorCode::Forbidden), "another therapist");
    // Nor may the other therapist open one with them.
    let mut therapist_device = Client::connect(fx.node(0), &other_therapist).await?;
    ensure!(therapist_device.open_with(patient.id).await? == Err(ErrorCode::Forbidden));
    // Ending the relationship ends new conversations with them too.
    let (status, _) = fx.service(1, Method::DELETE, &path, None).await?;
    ensure!(status == 204);
    let fresh = json!({"type": "open_conversation", "user_id": theirs.id, "subject": "new topic"});
    let reply = device.ask(fresh).await?;
    ensure!(matches!(reply, ServerMessage::Error(ref e) if e.code == ErrorCode::Forbidden), "{reply:?}");
    Ok(())
}

async fn a_block_stops_both_sides_and_lifts(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let Pair { mentor: a, mentee: b, mentor_device: mut a_device, mentee_device: mut b_device, conversation } =
        fx.pair().await?;
    ensure!(a_device.send_dm(conversation.id, "1", "hello").await? == Ok(1));
    ensure!(b_device.next_dm().await?.seq == 1);
    ensure!(b_device.request(json!({"type": "block_user", "user_id": a.id})).await? == Ok(()));
    // Neither side can send or open.
    ensure!(a_device.send_dm(conversation.id, "2", "hello?").await? == Err(ErrorCode::Forbidden));
    ensure!(b_device.send_dm(conversation.id, "3", "go away").await? == Err(ErrorCode::Forbidden));
    ensure!(a_device.open_with(b.id).await? == Err(ErrorCode::Forbidden));
    ensure!(b_device.request(json!({"type": "block_user", "user_id": b.id})).await? == Err(ErrorCode::Invalid));
    // Nothing was stored, nothing delivered.
    ensure!(b_device.dms_so_far().await?.is_empty());
    // Lifted: messages flow again, numbered on from 1.
    ensure!(b_device.request(json!({"type": "unblock_user", "user_id": a.id})).await? == Ok(()));
    ensure!(a_device.send_dm(conversation.id, "4", "hello again").await? == Ok(2));
    ensure!(b_device.next_dm().await?.seq == 2);
    Ok(())
}

async fn only_the_two_members_read_a_conversation(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let (a, b) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    fx.profile(&b, "mentee", true, "public").await?;
    let mut a_device = Client::connect(fx.node(0), &a).await?;
    let conversation = a_device.open_with(b.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;
    ensure!(a_device.send_dm(conversation.id, "1", "private").await? == Ok(1));
    let admin = fx.user(Role::Admin);
    let elsewhere = TestUser::new(Role::Mentee, Some(Uuid::new_v4()));
    let requests = [
        json!({"type": "fetch_direct_history", "conversation_id": conversation.id}),
        json!({"type": "send_direct", "conversation_id": conversation.id, "client_msg_id": "x", "body": "me too"}),
        json!({"type": "mark_conversation_read", "conversation_id": conversation.id, "seq": 1}),
        json!({"type": "direct_typing", "conversation_id": conversation.id, "active": true}),
        json!({"type": "archive_conversation", "conversation_id": conversation.id, "archived": true}),
        json!({"type": "focus_conversation", "conversation_id": conversation.id}),
    ];
    for outsider in [&admin, &elsewhere] {
        let mut device = Client::connect(fx.node(1), outsider).await?;
        for request in &requests {
            let reply = device.ask(request.clone()).await?;
            ensure!(
                matches!(reply, ServerMessage::Error(ref e) if e.code == ErrorCode::NotFound),
                "{:?} {request}: {reply:?}",
                outsider.role
            );
        }
        // Nor can they start one with a member of another organization.
        let reached = device.open_with(a.id).await?;
        if outsider.org != a.org {
            ensure!(reached == Err(ErrorCode::NotFound), "another organization: {reached:?}");
        }
    }
    // The conversation is as it was.
    let ServerMessage::DirectHistory { messages, .. } =
        a_device.ask(json!({"type": "fetch_direct_history", "conversation_id": conversation.id})).await?
    else {
        bail!("no history")
    };
    ensure!(messages.len() == 1);
    Ok(())
}

async fn the_service_api_takes_only_the_service_key(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let user = fx.user(Role::Admin);
    let body = json!({"user_id": user.id, "type": "x", "title": "t", "message": "m"});
    for bearer in [Some(user.token()), Some("wrong-key".to_owned()), None] {
        let (status, answer) =
            fx.call(0, Method::POST, "/v1/service/notifications", Some(body.clone()), bearer.as_deref()).await?;
        ensure!(status == 401 && answer["code"] == "unauthorized", "{status} {answer}");
    }
    let profile =
        json!({"organization_id": fx.org, "kind": "mentor", "chat_enabled": true, "profile_visibility": "public"});
    let path = format!("/v1/service/users/{}/profile", user.id);
    let (status, _) = fx.call(1, Method::PUT, &path, Some(profile), Some(&user.token())).await?;
    ensure!(status == 401);
    // Nothing was stored.
    let (status, unread) = fx.service(0, Method::GET, &format!("/v1/service/users/{}/unread", user.id), None).await?;
    ensure!(status == 200 && unread["notifications"]["total"] == 0, "{unread}");
    // Bad input is refused.
    let bad = json!({"user_id": user.id, "type": "", "title": "t", "message": "m"});
    let (status, answer) = fx.service(0, Method::POST, "/v1/service/notifications", Some(bad)).await?;
    ensure!(status == 400 && answer["code"] == "invalid", "{status} {answer}");
    // The document describes every service route.
    let (status, document) = fx.call(1, Method::GET, "/v1/openapi.json", None, None).await?;
    ensure!(status == 200);
    for path in [
        "/v1/service/users/{user_id}/profile",
        "/v1/service/users/{user_id}/unread",
        "/v1/service/programmes/{programme_id}/members/{user_id}",
        "/v1/service/therapists/{therapist_id}/patients/{patient_id}",
        "/v1/service/notifications",
        "/v1/sessions",
    ] {
        ensure!(document["paths"].get(path).is_some(), "{path} is not documented");
    }
    Ok(())
}

async fn the_http_api_and_the_service_api_refuse_callers_past_their_budgets(setup: Setup) -> Result<()> {
    // No refill, so that nothing the test does in between gives a request back.
    let fx = Fixture::start_with(setup, |config| {
        config.budgets.http = Budget::new(0.0, 3);
        config.budgets.service = Budget::new(0.0, 2);
    })
    .await?;
    let (host, other_host) = (fx.user(Role::Therapist), fx.user(Role::Therapist));
    let create = json!({"session_type": "group"});
    // Three requests of a user's, of any kind, then 429 on that node.
    for (method, path) in
        [(Method::GET, "/v1/ice-servers"), (Method::POST, "/v1/sessions"), (Method::GET, "/v1/ice-servers")]
    {
        let body = (method == Method::POST).then(|| create.clone());
        let (status, answer) = fx.call(0, method, path, body, Some(&host.token())).await?;
        ensure!(status == 200 || status == 201, "within the budget: {status} {answer}");
    }
    let refused = reqwest::Client::new()
        .post(fx.node(0).http("/v1/sessions"))
        .bearer_auth(host.token())
        .json(&create)
        .send()
        .await?;
    ensure!(refused.status() == 429, "past the budget: {}", refused.status());
    let retry_after = refused.headers().get("retry-after").and_then(|value| value.to_str().ok()).map(str::to_owned);
    ensure!(retry_after.as_deref() == Some("60"), "no refill: retry after a minute, not {retry_after:?}");
    let answer: serde_json::Value = refused.json().await?;
    ensure!(answer["code"] == "rate_limited", "{answer}");
    // Another user has a budget of their own.
    let (status, answer) = fx.call(0, Method::POST, "/v1/sessions", Some(create), Some(&other_host.token())).await?;
    ensure!(status == 201, "another user: {status} {answer}");

    // The service API: two pushes, then 429; the refused one is not stored or sent.
    let patient = fx.user(Role::Patient);
    let mut statuses = Vec::new();
    for title in ["first", "second", "third"] {
        let body = json!({"user_id": patient.id, "type": "reminder", "title": title, "message": "m"});
        let (status, answer) = fx.service(0, Method::POST, "/v1/service/notifications", Some(body)).await?;
        ensure!(status != 429 || answer["code"] == "rate_limited", "{answer}");
        statuses.push(status);
    }
    ensure!(statuses == [201, 201, 429], "{statuses:?}");
    let mut device = Client::connect(fx.node(1), &patient).await?;
    let ServerMessage::NotificationCounts { counts, .. } = device.ask(json!({"type": "count_notifications"})).await?
    else {
        bail!("no counts")
    };
    ensure!(counts.total == 2, "only the two accepted were stored: {counts:?}");
    let refused = fx.node(0).metric("convene_http_rate_limited_total").await?;
    ensure!(refused == 2.0, "one refusal of each API is counted: {refused}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_api_is_off_without_a_key() -> Result<()> {
    let server = crate::common::TestServer::start(crate::common::Backend::Sqlite).await?;
    let response = reqwest::Client::new()
        .post(server.http("/v1/service/notifications"))
        .bearer_auth("anything")
        .json(&json!({}))
        .send()
        .await?;
    ensure!(response.status() == 404);
    Ok(())
}
