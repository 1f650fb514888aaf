//! A batch's 1:1 messages: checked for blocks, numbered per conversation under the conversation's
//! row lock (taken in id order, so two nodes' batches never deadlock), stored with their
//! members' state and, for a recipient not looking at the conversation, a notification.
//!
//! Because a conversation's number is taken under its row lock and held until commit, a message
//! numbered `n` commits only after every message below `n`: whoever sees `n` committed can read
//! all the ones before it.

use chrono::{DateTime, Utc};
use convene_protocol::{ClientMsgId, ConversationId, DirectMessage, DirectMessageId, Notification, UserId};

/// A 1:1 message to store; the writer numbers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDirectMessage {
    pub id: DirectMessageId,
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    pub recipient_id: UserId,
    pub client_msg_id: ClientMsgId,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl NewDirectMessage {
    /// The message as stored with sequence number `seq`.
    pub fn stored(&self, seq: i64) -> DirectMessage {
        DirectMessage {
            id: self.id,
            conversation_id: self.conversation_id,
            seq,
            sender_id: self.sender_id,
            client_msg_id: self.client_msg_id.clone(),
            body: self.body.clone(),
            created_at: self.created_at,
            edited_at: None,
            deleted_at: None,
        }
    }

    /// The notification its recipient gets when not looking at the conversation.
    pub(super) fn notification_text(&self) -> (String, String) {
        const PREVIEW_CHARS: usize = 140;
        let preview: String = self.body.chars().take(PREVIEW_CHARS).collect();
        ("New message".to_owned(), preview)
    }

    pub(super) fn notification_data(&self, seq: i64) -> String {
        serde_json::json!({
            "conversation_id": self.conversation_id,
            "message_id": self.id,
            "seq": seq,
            "sender_id": self.sender_id,
        })
        .to_string()
    }
}

/// What became of a 1:1 message.
#[derive(Clone, Debug, PartialEq)]
pub enum DirectSent {
    /// Stored now; `notification` is the one its recipient got, if any.
    Stored { message: DirectMessage, notification: Option<Notification> },
    /// Its client message id was used before: the message stored then.
    Duplicate(DirectMessage),
    /// One of the two blocked the other: nothing was stored.
    Blocked,
}

/// Stores the batch's 1:1 messages (`$sends`: `(index in batch, &NewDirectMessage)`) inside
/// transaction `$tx`; evaluates to their outcomes in the same order.
macro_rules! commit_direct_sends {
    ($tx:expr, $sends:expr) => {{
        let sends: &[(usize, &$crate::store::writer::NewDirectMessage)] = $sends;
        let mut outcomes: Vec<Option<$crate::store::writer::DirectSent>> = vec![None; sends.len()];
        let mut counts: std::collections::BTreeMap<convene_protocol::ConversationId, (i64, chrono::DateTime<chrono::Utc>)> =
            std::collections::BTreeMap::new();
        for (slot, (_, send)) in sends.iter().enumerate() {
            let blocked: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM user_blocks WHERE (blocker_id = $1 AND blocked_id = $2) \
                 OR (blocker_id = $2 AND blocked_id = $1) LIMIT 1",
            )
            .bind(send.sender_id.0)
            .bind(send.recipient_id.0)
            .fetch_optional(&mut *$tx)
            .await?;
            if blocked.is_some() {
                outcomes[slot] = Some($crate::store::writer::DirectSent::Blocked);
                continue;
            }
            let entry = counts.entry(send.conversation_id).or_insert((0, send.created_at));
            entry.0 += 1;
            entry.1 = entry.1.max(send.created_at);
        }
        // Conversations in id order: every batch takes their locks in the same order.
        let mut next_seq: std::collections::HashMap<convene_protocol::ConversationId, i64> =
            std::collections::HashMap::with_capacity(counts.len());
        for (conversation, (count, at)) in &counts {
            let last: i64 = sqlx::query_scalar(
                "UPDATE conversations SET last_seq = last_seq + $2, last_activity_at = $3 WHERE id = $1 RETURNING last_seq",
            )
            .bind(conversation.0)
            .bind(*count)
            .bind(*at)
            .fetch_one(&mut *$tx)
            .await?;
            next_seq.insert(*conversation, last - count + 1);
        }
        for (slot, (_, send)) in sends.iter().enumerate() {
            if outcomes[slot].is_some() {
                continue;
            }
            let Some(next) = next_seq.get_mut(&send.conversation_id) else {
                return Err($crate::store::StoreError::Corrupt(format!("no sequence for {}", send.conversation_id)));
            };
            let seq = *next;
            *next += 1;
            sqlx::query(
                "INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, body, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(send.id.0)
            .bind(send.conversation_id.0)
            .bind(seq)
            .bind(send.sender_id.0)
            .bind(send.client_msg_id.as_str())
            .bind(&send.body)
            .bind(send.created_at)
            .execute(&mut *$tx)
            .await?;
            // A new message brings the conversation back for both, and the sender has read it.
            sqlx::query(
                "UPDATE conversation_members SET archived = false, \
                 read_seq = CASE WHEN user_id = $2 AND read_seq < $3 THEN $3 ELSE read_seq END \
                 WHERE conversation_id = $1",
            )
            .bind(send.conversation_id.0)
            .bind(send.sender_id.0)
            .bind(seq)
            .execute(&mut *$tx)
            .await?;
            let (title, text) = send.notification_text();
            let notification: Option<$crate::store::notifications::NotificationRow> = sqlx::query_as(
                "INSERT INTO notifications (user_id, type, title, message, data, created_at) \
                 SELECT $1, 'message', $2, $3, $4, $5 WHERE NOT EXISTS \
                 (SELECT 1 FROM conversation_focus WHERE user_id = $1 AND conversation_id = $6) \
                 RETURNING id, type, title, message, data, created_at, read_at",
            )
            .bind(send.recipient_id.0)
            .bind(title)
            .bind(text)
            .bind(send.notification_data(seq))
            .bind(send.created_at)
            .bind(send.conversation_id.0)
            .fetch_optional(&mut *$tx)
            .await?;
            let notification = notification.map(convene_protocol::Notification::try_from).transpose()?;
            outcomes[slot] = Some($crate::store::writer::DirectSent::Stored { message: send.stored(seq), notification });
        }
        outcomes
    }};
}
pub(crate) use commit_direct_sends;
