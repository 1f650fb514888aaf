//! The writer stores a burst of 1:1 messages to several conversations in one go (Postgres binds
//! whole columns; SQLite goes row by row): each send still gets its own outcome, each
//! conversation its own gapless numbering in submission order, each blocked pair nothing, and
//! each notification names the message it is about.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use chrono::Utc;
use convene_protocol::{ClientMsgId, ConnId, ConversationId, DirectMessageId, NodeId, OrgId, UserId};
use convene_server::metrics::Metrics;
use convene_server::store::{DirectSent, NewConversation, NewDirectMessage, Store, WriteOp, Writer};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::common::{Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(a_burst_of_sends_to_several_conversations_gets_one_outcome_each);

async fn a_burst_of_sends_to_several_conversations_gets_one_outcome_each(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let store = db.store().await?;
    store.migrate().await?;
    let org = OrgId(Uuid::new_v4());
    let people: Vec<UserId> = (0..6).map(|_| UserId(Uuid::new_v4())).collect();
    let [watching, busy, pair_a, pair_b, blocker, blocked] = people[..] else { bail!("six people") };
    let open = |one: UserId, other: UserId| {
        let store = store.clone();
        async move {
            let new = NewConversation {
                organization_id: org,
                created_by: one,
                other,
                subject: None,
                context: None,
                at: Utc::now(),
            };
            store.open_conversation(&new).await.map(|(conversation, _)| conversation.view.id)
        }
    };
    let quiet = open(busy, watching).await?;
    let lively = open(pair_a, pair_b).await?;
    let barred = open(blocker, blocked).await?;
    store.set_block(blocker, blocked, true, Utc::now()).await?;
    // `watching` has the conversation with `busy` open on a device.
    store.set_focus(ConnId::new(NodeId(7), 1), watching, Some(quiet)).await?;

    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let writer =
        Writer::spawn(store.clone(), Arc::new(Metrics::default()), &tracker, shutdown.clone(), Duration::from_secs(10));
    // Submitted back to back, interleaving the conversations and both directions of one.
    let burst = [
        (quiet, busy, watching),
        (lively, pair_a, pair_b),
        (barred, blocked, blocker),
        (quiet, busy, watching),
        (lively, pair_b, pair_a),
        (quiet, busy, watching),
        (lively, pair_a, pair_b),
    ];
    let mut waiting = Vec::new();
    for (n, (conversation, sender, recipient)) in burst.iter().enumerate() {
        let (done, outcome) = oneshot::channel();
        let message = NewDirectMessage {
            id: DirectMessageId(Uuid::new_v4()),
            conversation_id: *conversation,
            sender_id: *sender,
            recipient_id: *recipient,
            client_msg_id: ClientMsgId::new(format!("burst-{n}")).ok_or_else(|| anyhow!("client message id"))?,
            body: format!("message {n}"),
            created_at: Utc::now(),
        };
        writer.try_submit(WriteOp::SendDirect { message: message.clone(), done })?;
        waiting.push((message, outcome));
    }

    let mut next: std::collections::HashMap<ConversationId, i64> = std::collections::HashMap::new();
    for (message, outcome) in waiting {
        let outcome = outcome.await?.map_err(|e| anyhow!("{}: {e}", message.body))?;
        if message.conversation_id == barred {
            ensure!(outcome == DirectSent::Blocked, "{}: {outcome:?}", message.body);
            continue;
        }
        let DirectSent::Stored { message: stored, notification } = outcome else {
            bail!("{}: {outcome:?}", message.body);
        };
        let expected = next.entry(message.conversation_id).or_insert(0);
        *expected += 1;
        ensure!(stored.seq == *expected, "{}: seq {} where {expected} was next", message.body, stored.seq);
        ensure!(stored.id == message.id && stored.body == message.body, "{}: stored as {stored:?}", message.body);
        match (message.recipient_id == watching, notification) {
            (true, None) => {}
            (false, Some(notification)) => {
                let about = notification.data.get("message_id").and_then(|id| id.as_str());
                ensure!(about == Some(&*message.id.0.to_string()), "{}: notification {notification:?}", message.body);
                ensure!(notification.data.get("seq").and_then(|seq| seq.as_i64()) == Some(stored.seq));
            }
            (watching, notification) => bail!("{}: watching {watching}, notification {notification:?}", message.body),
        }
    }
    ensure!(next.get(&quiet) == Some(&3) && next.get(&lively) == Some(&3), "numbered {next:?}");

    // What the database holds agrees: nothing of the blocked pair, and each sender has read
    // their own messages.
    let stored_barred = store.conversation_positions(blocker).await?;
    ensure!(stored_barred == vec![(barred, 0)], "blocked pair: {stored_barred:?}");
    ensure!(unread(&store, busy).await? == 0 && unread(&store, watching).await? == 3);
    ensure!(unread(&store, pair_a).await? == 0 && unread(&store, pair_b).await? == 1);
    ensure!(store.notification_counts(pair_a).await?.total == 1);
    ensure!(store.notification_counts(watching).await?.total == 0);
    ensure!(store.notification_counts(pair_b).await?.total == 2);

    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn unread(store: &Store, user: UserId) -> Result<i64> {
    Ok(store.unread_messages(user).await?.0)
}
