//! 1:1 conversations and notifications follow the person: every device of both people, on any
//! node, gets each message once and in order; offline devices catch up on their next
//! connection; the rules of who may talk to whom hold; the backend pushes notifications.

mod batch;
pub mod fixture;
mod lifecycle;
mod rules;

use anyhow::{Result, bail, ensure};
use convene_protocol::{Role, ServerMessage};
use serde_json::json;

use self::fixture::{Fixture, Pair, Setup};
use crate::common::Client;
use crate::on_one_node_and_two;

on_one_node_and_two!(
    messages_reach_every_device_once_and_in_order,
    a_device_that_was_offline_gets_what_it_missed_and_its_unread_count,
    a_retried_send_is_stored_once,
    notifications_are_pushed_listed_counted_and_read_on_every_device,
    a_message_notifies_only_a_recipient_not_looking_at_it,
    an_inbox_starts_its_task_only_once_its_user_is_sent_something,
    message_ids_sort_in_the_order_the_messages_were_sent,
);

async fn messages_reach_every_device_once_and_in_order(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let (mentor, mentee) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    // The mentee has two devices, on different nodes (with two nodes); the mentor a third.
    let mut phone = Client::connect(fx.node(0), &mentee).await?;
    let mut laptop = Client::connect(fx.node(1), &mentee).await?;
    let mut mentor_device = Client::connect(fx.node(1), &mentor).await?;
    let conversation = phone.open_with(mentor.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;

    // Both send, interleaved, from different nodes.
    let mut expected = Vec::new();
    // What each sender's device received while it waited for its own acks.
    let (mut seen_by_phone, mut seen_by_mentor) = (Vec::new(), Vec::new());
    for round in 0..10 {
        let (sender, seen, who) = if round % 2 == 0 {
            (&mut phone, &mut seen_by_phone, "mentee")
        } else {
            (&mut mentor_device, &mut seen_by_mentor, "mentor")
        };
        let body = format!("{who} {round}");
        let seq = sender.send_dm_seeing(conversation.id, &format!("m{round}"), &body, seen).await?;
        ensure!(seq == Ok(round + 1), "round {round}: {seq:?}");
        expected.push((round + 1, body));
    }
    let devices = [
        ("phone", &mut phone, seen_by_phone),
        ("laptop", &mut laptop, Vec::new()),
        ("mentor", &mut mentor_device, seen_by_mentor),
    ];
    for (name, device, early) in devices {
        let mut seen: Vec<(i64, String)> = early.into_iter().map(|m| (m.seq, m.body)).collect();
        while seen.len() < expected.len() {
            let message = device.next_dm().await.map_err(|e| anyhow::anyhow!("{name} after {seen:?}: {e}"))?;
            seen.push((message.seq, message.body));
        }
        ensure!(seen == expected, "{name} saw {seen:?}");
        let extra = device.dms_so_far().await?;
        ensure!(extra.is_empty(), "{name} got messages twice: {extra:?}");
    }
    Ok(())
}

async fn message_ids_sort_in_the_order_the_messages_were_sent(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let Pair { mut mentor_device, mut mentee_device, conversation, .. } = fx.pair().await?;
    for i in 0..10 {
        let seq = mentor_device.send_dm(conversation.id, &format!("m{i}"), "hello").await?;
        ensure!(seq == Ok(i + 1), "message {i}: {seq:?}");
    }
    let mut ids = Vec::new();
    while ids.len() < 10 {
        ids.push(mentee_device.next_dm().await?.id.0);
    }
    ensure!(ids.iter().all(|id| id.get_version_num() == 7), "not time-ordered ids: {ids:?}");
    ensure!(ids.is_sorted_by(|a, b| a < b), "ids out of the messages' order: {ids:?}");
    Ok(())
}

async fn an_inbox_starts_its_task_only_once_its_user_is_sent_something(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let (mentor, mentee) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    // A device of the mentee's comes and goes before anything is sent to them; the next one
    // gets what is sent after, whether it found the first one's inbox or a new one.
    let mut gone = Client::connect(fx.node(1), &mentee).await?;
    gone.sync().await?;
    drop(gone);
    let mut mentee_device = Client::connect(fx.node(1), &mentee).await?;
    let mut mentor_device = Client::connect(fx.node(0), &mentor).await?;
    // A ping's answer means the device is attached to its inbox (it is, before it is served).
    mentee_device.sync().await?;
    mentor_device.sync().await?;
    let (inboxes, tasks) = inbox_gauges(&fx).await?;
    ensure!((inboxes, tasks) == (2.0, 0.0), "idle users: {inboxes} inboxes, {tasks} running");

    let conversation = mentor_device.open_with(mentee.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;
    let seq = mentor_device.send_dm(conversation.id, "first", "hello").await?;
    ensure!(seq == Ok(1), "send: {seq:?}");
    let received = mentee_device.next_dm().await?;
    ensure!((received.seq, received.body.as_str()) == (1, "hello"), "mentee got {received:?}");
    let echoed = mentor_device.next_dm().await?;
    ensure!(echoed.seq == 1, "the sender's device got {echoed:?}");
    let (inboxes, tasks) = inbox_gauges(&fx).await?;
    ensure!((inboxes, tasks) == (2.0, 2.0), "after a message: {inboxes} inboxes, {tasks} running");
    Ok(())
}

/// Inboxes and running inbox tasks, over every node.
async fn inbox_gauges(fx: &Fixture) -> Result<(f64, f64)> {
    let (mut inboxes, mut tasks) = (0.0, 0.0);
    for node in &fx.nodes {
        inboxes += node.metric("convene_inboxes_active").await?;
        tasks += node.metric("convene_inbox_tasks").await?;
    }
    Ok((inboxes, tasks))
}

async fn a_device_that_was_offline_gets_what_it_missed_and_its_unread_count(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let (mentor, mentee) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    // The backend keeps Convene's directory in sync, so the mentee is known before connecting.
    fx.profile(&mentee, "mentee", true, "public").await?;
    let mut mentor_device = Client::connect(fx.node(0), &mentor).await?;
    let conversation = mentor_device.open_with(mentee.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;
    // The mentee was here once and read the first message, then went away.
    ensure!(mentor_device.send_dm(conversation.id, "a", "before").await? == Ok(1));
    {
        let mut mentee_device = Client::connect(fx.node(1), &mentee).await?;
        let read = mentee_device
            .request(json!({"type": "mark_conversation_read", "conversation_id": conversation.id, "seq": 1}))
            .await?;
        ensure!(read == Ok(()));
    }
    for (i, body) in ["while", "you", "were", "away"].iter().enumerate() {
        ensure!(mentor_device.send_dm(conversation.id, &format!("b{i}"), body).await? == Ok(i as i64 + 2));
    }

    // Back on the other node: the list says 4 unread; a sync from 1 replays 2..=5, then answers.
    let mut mentee_device = Client::connect(fx.node(1), &mentee).await?;
    let ServerMessage::Conversations { conversations, .. } =
        mentee_device.ask(json!({"type": "list_conversations"})).await?
    else {
        bail!("no list")
    };
    ensure!(conversations.len() == 1, "{conversations:?}");
    let summary = &conversations[0];
    ensure!(summary.unread == 4 && summary.read_seq == 1 && summary.last_seq == 5, "{summary:?}");
    ensure!(summary.other_user_id == mentor.id);
    ensure!(summary.last_message.as_ref().is_some_and(|m| m.body == "away"), "{summary:?}");

    let (replayed, outcome) = mentee_device.sync_from(conversation.id, 1).await?;
    ensure!(replayed == [2, 3, 4, 5], "{replayed:?}");
    ensure!(
        outcome.len() == 1 && outcome[0].replayed == 4 && !outcome[0].gap && outcome[0].last_seq == 5,
        "{outcome:?}"
    );

    // Live again: the next message arrives once, right after.
    ensure!(mentor_device.send_dm(conversation.id, "c", "welcome back").await? == Ok(6));
    ensure!(mentee_device.next_dm().await?.seq == 6);
    ensure!(mentee_device.dms_so_far().await?.is_empty());

    // Reading all moves the unread count to 0 on the mentee's devices, and the mentor sees it.
    let read = mentee_device
        .request(json!({"type": "mark_conversation_read", "conversation_id": conversation.id, "seq": 6}))
        .await?;
    ensure!(read == Ok(()));
    mentor_device
        .recv_until(|m| match m {
            ServerMessage::ConversationRead { user_id, read_seq: 6, unread: 0, .. } if user_id == mentee.id => Some(()),
            _ => None,
        })
        .await?;
    Ok(())
}

async fn a_retried_send_is_stored_once(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let Pair { mentor_device: mut sender, mentee_device: mut receiver, conversation, .. } = fx.pair().await?;
    ensure!(sender.send_dm(conversation.id, "same", "once").await? == Ok(1));
    // The client did not see the ack (say) and sends again with the same id, then a new one.
    let retried = sender.send_dm(conversation.id, "same", "once").await?;
    ensure!(retried == Ok(1), "the retry is the first message, not {retried:?}");
    ensure!(sender.send_dm(conversation.id, "next", "twice").await? == Ok(2));
    ensure!(receiver.next_dm().await?.seq == 1);
    ensure!(receiver.next_dm().await?.seq == 2);
    ensure!(receiver.dms_so_far().await?.is_empty(), "the retry was delivered again");
    let ServerMessage::DirectHistory { messages, has_more, .. } =
        receiver.ask(json!({"type": "fetch_direct_history", "conversation_id": conversation.id})).await?
    else {
        bail!("no history")
    };
    let stored: Vec<(i64, &str)> = messages.iter().map(|m| (m.seq, m.body.as_str())).collect();
    ensure!(stored == [(1, "once"), (2, "twice")] && !has_more, "{stored:?}");
    Ok(())
}

async fn notifications_are_pushed_listed_counted_and_read_on_every_device(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let patient = fx.user(Role::Patient);
    let mut phone = Client::connect(fx.node(0), &patient).await?;
    let mut laptop = Client::connect(fx.node(1), &patient).await?;
    // The backend pushes two reminders and a billing notice, through either node.
    let mut ids = Vec::new();
    for (i, (kind, title)) in
        [("reminder", "Tomorrow 10:00"), ("reminder", "Today 10:00"), ("billing", "Invoice")].iter().enumerate()
    {
        let body = json!({"user_id": patient.id, "type": kind, "title": title, "message": "details", "data": {"n": i}});
        let (status, created) = fx.service(i, reqwest::Method::POST, "/v1/service/notifications", Some(body)).await?;
        ensure!(status == 201, "{status} {created}");
        ids.push(created["id"].as_i64().unwrap_or_default());
        for device in [&mut phone, &mut laptop] {
            let live = device
                .recv_until(|m| match m {
                    ServerMessage::Notification { notification } => Some(notification),
                    _ => None,
                })
                .await?;
            ensure!(live.title == *title && live.data == json!({"n": i}), "{live:?}");
        }
    }
    let ServerMessage::Notifications { notifications, counts, has_more, .. } =
        phone.ask(json!({"type": "list_notifications", "limit": 2})).await?
    else {
        bail!("no list")
    };
    let listed: Vec<i64> = notifications.iter().map(|n| n.id.0).collect();
    ensure!(listed == [ids[2], ids[1]] && has_more, "newest first, paged: {listed:?}");
    ensure!(counts.total == 3 && counts.by_type.get("reminder") == Some(&2), "{counts:?}");

    // Reading one on the phone: the laptop hears it with the new counts.
    let read = phone.request(json!({"type": "mark_notifications_read", "ids": [ids[0]]})).await?;
    ensure!(read == Ok(()));
    let counts = laptop
        .recv_until(|m| match m {
            ServerMessage::NotificationsRead { ids: read, counts, .. } if read.len() == 1 => Some(counts),
            _ => None,
        })
        .await?;
    ensure!(counts.total == 2 && counts.by_type.get("reminder") == Some(&1), "{counts:?}");
    // The backend reads the same counts for its emails.
    let path = format!("/v1/service/users/{}/unread", patient.id);
    let (status, unread) = fx.service(1, reqwest::Method::GET, &path, None).await?;
    ensure!(status == 200 && unread["notifications"]["total"] == 2, "{status} {unread}");
    // All read.
    ensure!(laptop.request(json!({"type": "mark_notifications_read", "all": true})).await? == Ok(()));
    let ServerMessage::NotificationCounts { counts, .. } = phone.ask(json!({"type": "count_notifications"})).await?
    else {
        bail!("no counts")
    };
    ensure!(counts.total == 0 && counts.by_type.is_empty(), "{counts:?}");
    Ok(())
}

async fn a_message_notifies_only_a_recipient_not_looking_at_it(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let (mentor, mentee) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    let mut mentor_device = Client::connect(fx.node(0), &mentor).await?;
    let mut mentee_device = Client::connect(fx.node(1), &mentee).await?;
    let conversation = mentor_device.open_with(mentee.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;

    // Not looking: the mentee is notified, on the mentee's devices only.
    ensure!(mentor_device.send_dm(conversation.id, "1", "are you there?").await? == Ok(1));
    let notification = mentee_device
        .recv_until(|m| match m {
            ServerMessage::Notification { notification } => Some(notification),
            _ => None,
        })
        .await?;
    ensure!(notification.kind == "message" && notification.data["seq"] == 1, "{notification:?}");
    ensure!(notification.data["conversation_id"] == json!(conversation.id));

    // Looking at it: no notification for the next one.
    let focus = json!({"type": "focus_conversation", "conversation_id": conversation.id});
    ensure!(mentee_device.request(focus).await? == Ok(()));
    ensure!(mentor_device.send_dm(conversation.id, "2", "yes I see you").await? == Ok(2));
    let seen = mentee_device.sync().await?;
    ensure!(!seen.iter().any(|m| matches!(m, ServerMessage::Notification { .. })), "{seen:?}");
    // Once that device is gone, messages notify again.
    drop(mentee_device);
    let mut other_device = Client::connect(fx.node(0), &mentee).await?;
    let deadline = tokio::time::Instant::now() + crate::common::EVENT_TIMEOUT;
    let mut n = 3;
    loop {
        // The closed socket's focus is forgotten when the server sees it close. A notification
        // is stored with its message, before the ack, so the count tells whether it notified.
        ensure!(mentor_device.send_dm(conversation.id, &format!("{n}"), "hello again").await? == Ok(n));
        let ServerMessage::NotificationCounts { counts, .. } =
            other_device.ask(json!({"type": "count_notifications"})).await?
        else {
            bail!("no counts")
        };
        match counts.by_type.get("message") {
            Some(2) => break,
            Some(1) => {}
            _ => bail!("one while not looking, then one once the focus is gone: {counts:?}"),
        }
        ensure!(tokio::time::Instant::now() < deadline, "the closed device's focus was never forgotten");
        n += 1;
    }
    Ok(())
}
