//! A conversation's life: which conversation a pair gets, the list and archiving, edits and
//! deletions, typing, the limits on sending, and devices that come back after a long absence.

use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use convene_protocol::{ConversationId, DirectMessage, ErrorCode, Role, ServerMessage};
use serde_json::{Value, json};

use super::fixture::{Fixture, Setup};
use crate::common::Client;
use crate::on_one_node_and_two;

on_one_node_and_two!(
    a_pair_has_one_conversation_unless_a_subject_or_context_tells_them_apart,
    the_list_is_newest_first_and_paged_and_archiving_is_mine_until_a_new_message,
    senders_edit_and_delete_their_own_messages_and_both_sides_see_it,
    typing_reaches_the_other_person_and_sends_are_limited,
    a_device_too_far_behind_is_told_to_page_and_pages_exactly_what_it_missed,
    a_device_given_up_for_dead_resumes_with_exactly_what_it_missed,
);

/// The conversation an `open_conversation` with `extra` fields answers.
async fn open(device: &mut Client, extra: Value) -> Result<ConversationId> {
    let mut request = json!({"type": "open_conversation"});
    if let (Some(request), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        request.extend(extra.clone());
    }
    match device.ask(request).await? {
        ServerMessage::Conversation { conversation, .. } => Ok(conversation.id),
        other => bail!("expected a conversation, got {other:?}"),
    }
}

/// The ids of a page of the device's conversations, and where the next page starts.
async fn list(device: &mut Client, request: Value) -> Result<(Vec<ConversationId>, Option<Value>)> {
    match device.ask(request).await? {
        ServerMessage::Conversations { conversations, next, .. } => {
            let next = next.map(serde_json::to_value).transpose()?;
            Ok((conversations.iter().map(|c| c.conversation.id).collect(), next))
        }
        other => bail!("expected conversations, got {other:?}"),
    }
}

/// The last message of `conversation` as the device's conversation list shows it.
async fn last_message_listed(device: &mut Client, conversation: ConversationId) -> Result<Option<DirectMessage>> {
    match device.ask(json!({"type": "list_conversations"})).await? {
        ServerMessage::Conversations { conversations, .. } => conversations
            .into_iter()
            .find(|summary| summary.conversation.id == conversation)
            .map(|summary| summary.last_message)
            .ok_or_else(|| anyhow!("{conversation} is not listed")),
        other => bail!("expected conversations, got {other:?}"),
    }
}

async fn a_pair_has_one_conversation_unless_a_subject_or_context_tells_them_apart(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let (mentor, mentee) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    let mut mentor_device = Client::connect(fx.node(0), &mentor).await?;
    let mut mentee_device = Client::connect(fx.node(1), &mentee).await?;

    let plain = open(&mut mentor_device, json!({"user_id": mentee.id})).await?;
    ensure!(open(&mut mentor_device, json!({"user_id": mentee.id})).await? == plain, "opened twice");
    ensure!(open(&mut mentee_device, json!({"user_id": mentor.id})).await? == plain, "from the other side");
    let subject = open(&mut mentor_device, json!({"user_id": mentee.id, "subject": "career plan"})).await?;
    let context = json!({"user_id": mentee.id, "context": {"type": "appointment", "id": "42"}});
    let appointment = open(&mut mentor_device, context.clone()).await?;
    ensure!(
        open(&mut mentee_device, json!({"user_id": mentor.id, "context": context["context"]})).await? == appointment
    );
    let distinct = [plain, subject, appointment];
    ensure!(distinct.iter().collect::<std::collections::HashSet<_>>().len() == 3, "{distinct:?}");

    // The first message to someone opens a conversation too; the other side hears of it first.
    let send = json!({"type": "send_direct", "to": {"user_id": mentee.id, "subject": "new topic"},
        "client_msg_id": "first", "body": "shall we start?"});
    let started = match mentor_device.ask(send).await? {
        ServerMessage::DirectAck { conversation_id, seq: 1, .. } => conversation_id,
        other => bail!("the first message was not acknowledged as seq 1: {other:?}"),
    };
    ensure!(!distinct.contains(&started));
    let told = mentee_device
        .recv_until(|m| match m {
            ServerMessage::ConversationStarted { conversation } if conversation.id == started => Some(Ok(conversation)),
            ServerMessage::DirectMessage { message } if message.conversation_id == started => Some(Err(message)),
            _ => None,
        })
        .await?
        .map_err(|message| anyhow!("the message came before its conversation: {message:?}"))?;
    ensure!(told.subject.as_deref() == Some("new topic"), "{told:?}");
    ensure!(mentee_device.next_dm().await?.body == "shall we start?");
    Ok(())
}

async fn the_list_is_newest_first_and_paged_and_archiving_is_mine_until_a_new_message(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let mentor = fx.user(Role::Mentor);
    let mentees = [fx.user(Role::Mentee), fx.user(Role::Mentee), fx.user(Role::Mentee)];
    let mut mentor_device = Client::connect(fx.node(0), &mentor).await?;
    let mut conversations = Vec::new();
    for (i, mentee) in mentees.iter().enumerate() {
        // Known to Convene before they ever connect: the backend keeps the directory.
        fx.profile(mentee, "mentee", true, "public").await?;
        let id = open(&mut mentor_device, json!({"user_id": mentee.id})).await?;
        ensure!(mentor_device.send_dm(id, &format!("m{i}"), "hello").await? == Ok(1));
        conversations.push(id);
    }
    let [first, second, third] = conversations[..] else { bail!("three conversations") };

    let (page, next) = list(&mut mentor_device, json!({"type": "list_conversations", "limit": 2})).await?;
    ensure!(page == [third, second], "newest activity first: {page:?}");
    let next = next.ok_or_else(|| anyhow!("no next page"))?;
    let (rest, after) =
        list(&mut mentor_device, json!({"type": "list_conversations", "limit": 2, "before": next})).await?;
    ensure!(rest == [first] && after.is_none(), "{rest:?} {after:?}");

    // The first mentee archives: gone from their list, not from the mentor's.
    let mut mentee_device = Client::connect(fx.node(1), &mentees[0]).await?;
    let archive = json!({"type": "archive_conversation", "conversation_id": first, "archived": true});
    ensure!(mentee_device.request(archive).await? == Ok(()));
    let (unarchived, _) = list(&mut mentee_device, json!({"type": "list_conversations"})).await?;
    let (archived, _) = list(&mut mentee_device, json!({"type": "list_conversations", "archived": true})).await?;
    ensure!(unarchived.is_empty() && archived == [first], "{unarchived:?} {archived:?}");
    let (mentors, _) = list(&mut mentor_device, json!({"type": "list_conversations"})).await?;
    ensure!(mentors.len() == 3, "archiving is the mentee's alone: {mentors:?}");

    // A new message brings it back, and to the top of the mentor's list.
    ensure!(mentor_device.send_dm(first, "again", "still there?").await? == Ok(2));
    let (unarchived, _) = list(&mut mentee_device, json!({"type": "list_conversations"})).await?;
    ensure!(unarchived == [first], "{unarchived:?}");
    let (mentors, _) = list(&mut mentor_device, json!({"type": "list_conversations"})).await?;
    ensure!(mentors == [first, third, second], "{mentors:?}");
    Ok(())
}

async fn senders_edit_and_delete_their_own_messages_and_both_sides_see_it(setup: Setup) -> Result<()> {
    let fx = Fixture::start(setup).await?;
    let (mentor, mentee) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    let mut mentor_device = Client::connect(fx.node(0), &mentor).await?;
    let mut mentee_device = Client::connect(fx.node(1), &mentee).await?;
    let id = open(&mut mentee_device, json!({"user_id": mentor.id})).await?;
    let listed = last_message_listed(&mut mentor_device, id).await?;
    ensure!(listed.is_none(), "a conversation with no message lists none: {listed:?}");
    let ServerMessage::DirectAck { message_id, .. } = mentee_device
        .ask(json!({"type": "send_direct", "conversation_id": id, "client_msg_id": "a", "body": "typo"}))
        .await?
    else {
        bail!("not acknowledged")
    };

    let edit = json!({"type": "edit_direct", "conversation_id": id, "message_id": message_id, "body": "fixed"});
    ensure!(mentor_device.request(edit.clone()).await? == Err(ErrorCode::Forbidden), "only the sender edits");
    ensure!(mentee_device.request(edit).await? == Ok(()));
    for device in [&mut mentor_device, &mut mentee_device] {
        let edited = device
            .recv_until(|m| match m {
                ServerMessage::DirectMessageEdited { message } => Some(message),
                _ => None,
            })
            .await?;
        ensure!(edited.body == "fixed" && edited.edited_at.is_some(), "{edited:?}");
    }
    let listed = last_message_listed(&mut mentor_device, id).await?;
    ensure!(listed.as_ref().is_some_and(|m| m.body == "fixed" && m.edited_at.is_some()), "listed: {listed:?}");
    let delete = json!({"type": "delete_direct", "conversation_id": id, "message_id": message_id});
    ensure!(mentor_device.request(delete.clone()).await? == Err(ErrorCode::Forbidden), "only the sender deletes");
    ensure!(mentee_device.request(delete.clone()).await? == Ok(()));
    let deleted = mentor_device
        .recv_until(|m| match m {
            ServerMessage::DirectMessageDeleted { message } => Some(message),
            _ => None,
        })
        .await?;
    ensure!(deleted.body.is_empty() && deleted.deleted_at.is_some(), "{deleted:?}");
    ensure!(mentee_device.request(delete).await? == Err(ErrorCode::NotFound), "deleted once");
    let listed = last_message_listed(&mut mentee_device, id).await?;
    ensure!(
        listed.as_ref().is_some_and(|m| m.seq == 1 && m.body.is_empty() && m.deleted_at.is_some()),
        "listed after deleting: {listed:?}"
    );

    // The deleted message keeps its place in the history, without its words.
    let ServerMessage::DirectHistory { messages, .. } =
        mentor_device.ask(json!({"type": "fetch_direct_history", "conversation_id": id})).await?
    else {
        bail!("no history")
    };
    ensure!(messages.len() == 1 && messages[0].seq == 1 && messages[0].body.is_empty(), "{messages:?}");
    Ok(())
}

async fn typing_reaches_the_other_person_and_sends_are_limited(setup: Setup) -> Result<()> {
    // The burst of the default, without its refill: how many are refused does not depend on
    // how fast the machine handles the flood.
    let fx = Fixture::start_with(setup, |config| config.chat.rate_per_sec = 0.0).await?;
    let (mentor, mentee) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    let mut mentor_device = Client::connect(fx.node(0), &mentor).await?;
    let mut mentee_device = Client::connect(fx.node(1), &mentee).await?;
    let id = open(&mut mentee_device, json!({"user_id": mentor.id})).await?;

    let typing = json!({"type": "direct_typing", "conversation_id": id, "active": true});
    ensure!(mentee_device.request(typing).await? == Ok(()));
    let who = mentor_device
        .recv_until(|m| match m {
            ServerMessage::ConversationTyping { conversation_id, user_id, active: true } if conversation_id == id => {
                Some(user_id)
            }
            _ => None,
        })
        .await?;
    ensure!(who == mentee.id);

    ensure!(mentee_device.send_dm(id, "empty", "  ").await? == Err(ErrorCode::Invalid));
    ensure!(mentee_device.send_dm(id, "big", &"x".repeat(4097)).await? == Err(ErrorCode::TooLarge));
    // Sent without waiting: past the burst (20, of which the two refusals above spent two) the
    // rest are refused, and only what was acknowledged is stored.
    for i in 0..30 {
        let send = json!({"type": "send_direct", "request_id": format!("f{i}"), "conversation_id": id,
            "client_msg_id": format!("f{i}"), "body": "flood"});
        mentee_device.send_json(send).await?;
    }
    let (mut acked, mut limited) = (0, 0);
    while acked + limited < 30 {
        match mentee_device.recv().await? {
            ServerMessage::DirectAck { .. } => acked += 1,
            ServerMessage::Error(e) if e.code == ErrorCode::RateLimited => limited += 1,
            ServerMessage::Error(e) => bail!("unexpected {e:?}"),
            _ => {}
        }
    }
    ensure!((acked, limited) == (18, 12), "acked {acked}, limited {limited}");
    let ServerMessage::DirectHistory { messages, .. } =
        mentor_device.ask(json!({"type": "fetch_direct_history", "conversation_id": id, "limit": 100})).await?
    else {
        bail!("no history")
    };
    ensure!(messages.len() == acked, "stored {} but acknowledged {acked}", messages.len());
    Ok(())
}

async fn a_device_too_far_behind_is_told_to_page_and_pages_exactly_what_it_missed(setup: Setup) -> Result<()> {
    let fx = Fixture::start_with(setup, |config| {
        config.chat.rate_per_sec = 10_000.0;
        config.chat.burst = 10_000;
        config.budgets.frames = convene_server::limits::Budget::new(10_000.0, 10_000);
    })
    .await?;
    let (mentor, mentee) = (fx.user(Role::Mentor), fx.user(Role::Mentee));
    fx.profile(&mentee, "mentee", true, "public").await?;
    let mut mentor_device = Client::connect(fx.node(0), &mentor).await?;
    let id = open(&mut mentor_device, json!({"user_id": mentee.id})).await?;
    // More than a sync replays (200): the device must page.
    let sent = 230;
    for i in 1..=sent {
        ensure!(mentor_device.send_dm(id, &format!("m{i}"), &format!("{i}")).await? == Ok(i));
    }
    let mut mentee_device = Client::connect(fx.node(1), &mentee).await?;
    let sync = json!({"type": "sync_conversations", "positions": [{"conversation_id": id, "last_seq": 0}]});
    let ServerMessage::ConversationsSynced { conversations, .. } = mentee_device.ask(sync).await? else {
        bail!("no sync outcome")
    };
    ensure!(conversations.len() == 1, "{conversations:?}");
    let outcome = &conversations[0];
    ensure!(outcome.gap && outcome.replayed == 0 && outcome.last_seq == sent, "{outcome:?}");
    ensure!(mentee_device.dms_so_far().await?.is_empty(), "nothing is replayed past the window");

    let mut paged = Vec::new();
    loop {
        let after = paged.last().copied().unwrap_or(0);
        let fetch = json!({"type": "fetch_direct_history", "conversation_id": id, "after_seq": after, "limit": 100});
        let ServerMessage::DirectHistory { messages, has_more, .. } = mentee_device.ask(fetch).await? else {
            bail!("no history")
        };
        paged.extend(messages.iter().map(|m| m.seq));
        if !has_more {
            break;
        }
    }
    ensure!(paged == (1..=sent).collect::<Vec<_>>(), "paged {} messages", paged.len());
    Ok(())
}

async fn a_device_given_up_for_dead_resumes_with_exactly_what_it_missed(setup: Setup) -> Result<()> {
    // A phone that loses its network sends no close: the server gives it up after the heartbeat
    // timeout (30 s by default, shortened here, but not so far that a device the test is not
    // reading for a few requests on a busy machine is given up too), and the phone comes back
    // later on a new connection, on the other node.
    let fx = Fixture::start_with(setup, |config| config.heartbeat_timeout = Duration::from_secs(2)).await?;
    let (mentor, mentee, host) = (fx.user(Role::Mentor), fx.user(Role::Mentee), fx.user(Role::Therapist));
    let mut mentor_device = Client::connect(fx.node(1), &mentor).await?;
    let mut phone = Client::connect(fx.node(0), &mentee).await?;
    // The phone is also in a group session, whose host sees it leave when it is given up.
    let session = fx.node(0).create_session(&host, json!({"session_type": "group"})).await?;
    let mut host_device = Client::connect(fx.node(1), &host).await?;
    host_device.join(session.id).await?;
    phone.join(session.id).await?;
    let id = open(&mut phone, json!({"user_id": mentor.id})).await?;
    ensure!(mentor_device.send_dm(id, "1", "one").await? == Ok(1));
    ensure!(phone.next_dm().await?.seq == 1);

    // From here the phone reads nothing, so it answers no ping.
    for seq in 2..=4 {
        ensure!(mentor_device.send_dm(id, &seq.to_string(), "while you were away").await? == Ok(seq));
    }
    host_device.recv_departure_of(mentee.id).await?;
    // The mentor's device, unread while the host waited, may have been given up too.
    let mut mentor_device = Client::connect(fx.node(1), &mentor).await?;
    ensure!(mentor_device.send_dm(id, "5", "and after").await? == Ok(5));

    let mut back = Client::connect(fx.node(1), &mentee).await?;
    let (replayed, outcome) = back.sync_from(id, 1).await?;
    ensure!(replayed == [2, 3, 4, 5], "{replayed:?}");
    ensure!(outcome.len() == 1 && !outcome[0].gap && outcome[0].replayed == 4, "{outcome:?}");
    ensure!(mentor_device.send_dm(id, "6", "welcome back").await? == Ok(6));
    ensure!(back.next_dm().await?.seq == 6);
    ensure!(back.dms_so_far().await?.is_empty(), "nothing twice");
    Ok(())
}
