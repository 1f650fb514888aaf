//! A batch's 1:1 messages: checked for blocks, numbered per conversation under the conversation's
//! row lock (taken in id order, so two nodes' batches never deadlock), stored with their
//! members' state and, for a recipient not looking at the conversation, a notification.
//!
//! Because a conversation's number is taken under its row lock and held until commit, a message
//! numbered `n` commits only after every message below `n`: whoever sees `n` committed can read
//! all the ones before it.
//!
//! A batch costs a fixed number of statements whatever its size (six at most): each step works on
//! all of the batch's messages at once. Postgres binds whole columns as arrays; SQLite, in the
//! same process and without round trips, takes them row by row.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use convene_protocol::{ClientMsgId, ConversationId, DirectMessage, DirectMessageId, Notification, UserId};
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::notifications::NotificationRow;

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

/// Stores the batch's 1:1 messages inside the transaction `conn` is in; returns their outcomes in
/// the order given.
pub(super) async fn commit_direct_sends<C: DirectRows>(
    conn: &mut C,
    sends: &[&NewDirectMessage],
) -> Result<Vec<DirectSent>, StoreError> {
    let pairs: BTreeSet<(Uuid, Uuid)> = sends.iter().map(|send| pair(send.sender_id.0, send.recipient_id.0)).collect();
    let pairs: Vec<(Uuid, Uuid)> = pairs.into_iter().collect();
    let blocked: HashSet<(Uuid, Uuid)> = conn.blocked_pairs(&pairs).await?.into_iter().collect();
    let allowed = |send: &NewDirectMessage| !blocked.contains(&pair(send.sender_id.0, send.recipient_id.0));

    // Conversations in id order: every batch takes their locks in the same order.
    let mut counts: BTreeMap<ConversationId, (i64, DateTime<Utc>)> = BTreeMap::new();
    for send in sends.iter().filter(|send| allowed(send)) {
        let entry = counts.entry(send.conversation_id).or_insert((0, send.created_at));
        entry.0 += 1;
        entry.1 = entry.1.max(send.created_at);
    }
    let counts: Vec<(ConversationId, i64, DateTime<Utc>)> =
        counts.into_iter().map(|(conversation, (count, at))| (conversation, count, at)).collect();
    let mut next_seq: HashMap<ConversationId, i64> = HashMap::with_capacity(counts.len());
    if !counts.is_empty() {
        let added: HashMap<ConversationId, i64> = counts.iter().map(|(id, count, _)| (*id, *count)).collect();
        for (conversation, last) in conn.advance_conversations(&counts).await? {
            let conversation = ConversationId(conversation);
            let count = added.get(&conversation).copied().unwrap_or(0);
            next_seq.insert(conversation, last - count + 1);
        }
    }

    let mut stored: Vec<Option<DirectMessage>> = Vec::with_capacity(sends.len());
    for send in sends {
        if !allowed(send) {
            stored.push(None);
            continue;
        }
        let Some(next) = next_seq.get_mut(&send.conversation_id) else {
            return Err(StoreError::Corrupt(format!("no sequence for conversation {}", send.conversation_id)));
        };
        stored.push(Some(send.stored(*next)));
        *next += 1;
    }
    let messages: Vec<&DirectMessage> = stored.iter().flatten().collect();
    if messages.is_empty() {
        return Ok(vec![DirectSent::Blocked; sends.len()]);
    }
    conn.insert_direct_messages(&messages).await?;

    // A new message brings the conversation back for both, and its sender has read up to it.
    let mut read: BTreeMap<(ConversationId, UserId), i64> = BTreeMap::new();
    for message in &messages {
        let seq = read.entry((message.conversation_id, message.sender_id)).or_insert(message.seq);
        *seq = (*seq).max(message.seq);
    }
    let read: Vec<(ConversationId, UserId, i64)> =
        read.into_iter().map(|((conversation, user), seq)| (conversation, user, seq)).collect();
    let conversations: Vec<ConversationId> = counts.iter().map(|(conversation, _, _)| *conversation).collect();
    conn.mark_sent(&read, &conversations).await?;

    // A recipient not looking at the conversation gets a notification.
    let watched: BTreeSet<(Uuid, Uuid)> =
        sends.iter().filter(|send| allowed(send)).map(|send| (send.recipient_id.0, send.conversation_id.0)).collect();
    let watched: Vec<(Uuid, Uuid)> = watched.into_iter().collect();
    let focused: HashSet<(Uuid, Uuid)> = conn.focused(&watched).await?.into_iter().collect();
    let mut notices = Vec::new();
    for (send, message) in sends.iter().zip(&stored) {
        let Some(message) = message else { continue };
        if focused.contains(&(send.recipient_id.0, send.conversation_id.0)) {
            continue;
        }
        let (title, text) = send.notification_text();
        notices.push(MessageNotice {
            user_id: send.recipient_id.0,
            title,
            message: text,
            data: send.notification_data(message.seq),
            created_at: send.created_at,
        });
    }
    let mut notified: HashMap<String, Notification> = HashMap::with_capacity(notices.len());
    if !notices.is_empty() {
        for row in conn.insert_message_notices(&notices).await? {
            let data = row.data.clone();
            notified.insert(data, Notification::try_from(row)?);
        }
    }

    let mut outcomes = Vec::with_capacity(sends.len());
    for (send, message) in sends.iter().zip(stored) {
        outcomes.push(match message {
            None => DirectSent::Blocked,
            Some(message) => {
                let notification = notified.remove(&send.notification_data(message.seq));
                DirectSent::Stored { message, notification }
            }
        });
    }
    Ok(outcomes)
}

/// Two users as an unordered pair.
fn pair(one: Uuid, other: Uuid) -> (Uuid, Uuid) {
    if one <= other { (one, other) } else { (other, one) }
}

/// A "new message" notification to store; its `data` names the message, so it is unique.
#[derive(Debug)]
pub(super) struct MessageNotice {
    user_id: Uuid,
    title: String,
    message: String,
    data: String,
    created_at: DateTime<Utc>,
}

const NOTIFICATION_RETURNING: &str = "RETURNING id, type, title, message, data, created_at, read_at";

/// How each backend runs a step of [`commit_direct_sends`] over the whole batch.
pub(super) trait DirectRows {
    /// Which of the unordered `pairs` have a block between them, in either direction.
    async fn blocked_pairs(&mut self, pairs: &[(Uuid, Uuid)]) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error>;
    /// Locks the conversations in id order and adds each count to its counter; returns each
    /// conversation's new last sequence.
    async fn advance_conversations(
        &mut self,
        counts: &[(ConversationId, i64, DateTime<Utc>)],
    ) -> Result<Vec<(Uuid, i64)>, sqlx::Error>;
    async fn insert_direct_messages(&mut self, messages: &[&DirectMessage]) -> Result<(), sqlx::Error>;
    /// Moves each sender's read position up to their own latest message and unarchives the
    /// conversations for both members.
    async fn mark_sent(
        &mut self,
        read: &[(ConversationId, UserId, i64)],
        conversations: &[ConversationId],
    ) -> Result<(), sqlx::Error>;
    /// Which of the (user, conversation) pairs have a device looking at it.
    async fn focused(&mut self, pairs: &[(Uuid, Uuid)]) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error>;
    async fn insert_message_notices(&mut self, notices: &[MessageNotice]) -> Result<Vec<NotificationRow>, sqlx::Error>;
}

impl DirectRows for sqlx::PgConnection {
    async fn blocked_pairs(&mut self, pairs: &[(Uuid, Uuid)]) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT p.a, p.b FROM UNNEST($1::uuid[], $2::uuid[]) AS p(a, b) WHERE EXISTS \
             (SELECT 1 FROM user_blocks k WHERE (k.blocker_id = p.a AND k.blocked_id = p.b) \
             OR (k.blocker_id = p.b AND k.blocked_id = p.a))",
        )
        .bind(pairs.iter().map(|(a, _)| *a).collect::<Vec<_>>())
        .bind(pairs.iter().map(|(_, b)| *b).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await
    }

    async fn advance_conversations(
        &mut self,
        counts: &[(ConversationId, i64, DateTime<Utc>)],
    ) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
        let ids: Vec<Uuid> = counts.iter().map(|(id, _, _)| id.0).collect();
        // The locks first, in one order for every batch; the update then finds them held.
        sqlx::query("SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *self)
            .await?;
        sqlx::query_as(
            "UPDATE conversations c SET last_seq = c.last_seq + u.n, \
             last_activity_at = GREATEST(c.last_activity_at, u.at) \
             FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[]) AS u(id, n, at) \
             WHERE c.id = u.id RETURNING c.id, c.last_seq",
        )
        .bind(&ids)
        .bind(counts.iter().map(|(_, count, _)| *count).collect::<Vec<_>>())
        .bind(counts.iter().map(|(_, _, at)| *at).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await
    }

    async fn insert_direct_messages(&mut self, messages: &[&DirectMessage]) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, body, created_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[])",
        )
        .bind(messages.iter().map(|m| m.id.0).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.conversation_id.0).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.seq).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.sender_id.0).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.client_msg_id.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn mark_sent(
        &mut self,
        read: &[(ConversationId, UserId, i64)],
        conversations: &[ConversationId],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE conversation_members m SET read_seq = u.seq \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]) AS u(conversation_id, user_id, seq) \
             WHERE m.conversation_id = u.conversation_id AND m.user_id = u.user_id AND m.read_seq < u.seq",
        )
        .bind(read.iter().map(|(conversation, _, _)| conversation.0).collect::<Vec<_>>())
        .bind(read.iter().map(|(_, user, _)| user.0).collect::<Vec<_>>())
        .bind(read.iter().map(|(_, _, seq)| *seq).collect::<Vec<_>>())
        .execute(&mut *self)
        .await?;
        sqlx::query("UPDATE conversation_members SET archived = false WHERE conversation_id = ANY($1) AND archived")
            .bind(conversations.iter().map(|conversation| conversation.0).collect::<Vec<_>>())
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    async fn focused(&mut self, pairs: &[(Uuid, Uuid)]) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT p.u, p.c FROM UNNEST($1::uuid[], $2::uuid[]) AS p(u, c) WHERE EXISTS \
             (SELECT 1 FROM conversation_focus f WHERE f.user_id = p.u AND f.conversation_id = p.c)",
        )
        .bind(pairs.iter().map(|(user, _)| *user).collect::<Vec<_>>())
        .bind(pairs.iter().map(|(_, conversation)| *conversation).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await
    }

    async fn insert_message_notices(&mut self, notices: &[MessageNotice]) -> Result<Vec<NotificationRow>, sqlx::Error> {
        let sql = format!(
            "INSERT INTO notifications (user_id, type, title, message, data, created_at) \
             SELECT n.user_id, 'message', n.title, n.message, n.data, n.created_at \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
             AS n(user_id, title, message, data, created_at) {NOTIFICATION_RETURNING}"
        );
        sqlx::query_as(&sql)
            .bind(notices.iter().map(|n| n.user_id).collect::<Vec<_>>())
            .bind(notices.iter().map(|n| n.title.as_str()).collect::<Vec<_>>())
            .bind(notices.iter().map(|n| n.message.as_str()).collect::<Vec<_>>())
            .bind(notices.iter().map(|n| n.data.as_str()).collect::<Vec<_>>())
            .bind(notices.iter().map(|n| n.created_at).collect::<Vec<_>>())
            .fetch_all(&mut *self)
            .await
    }
}

impl DirectRows for sqlx::SqliteConnection {
    async fn blocked_pairs(&mut self, pairs: &[(Uuid, Uuid)]) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
        let mut blocked = Vec::new();
        for (a, b) in pairs {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM user_blocks WHERE (blocker_id = $1 AND blocked_id = $2) \
                 OR (blocker_id = $2 AND blocked_id = $1) LIMIT 1",
            )
            .bind(a)
            .bind(b)
            .fetch_optional(&mut *self)
            .await?;
            if found.is_some() {
                blocked.push((*a, *b));
            }
        }
        Ok(blocked)
    }

    async fn advance_conversations(
        &mut self,
        counts: &[(ConversationId, i64, DateTime<Utc>)],
    ) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
        let mut lasts = Vec::with_capacity(counts.len());
        for (conversation, count, at) in counts {
            let last: i64 = sqlx::query_scalar(
                "UPDATE conversations SET last_seq = last_seq + $2, \
                 last_activity_at = CASE WHEN last_activity_at < $3 THEN $3 ELSE last_activity_at END \
                 WHERE id = $1 RETURNING last_seq",
            )
            .bind(conversation.0)
            .bind(*count)
            .bind(*at)
            .fetch_one(&mut *self)
            .await?;
            lasts.push((conversation.0, last));
        }
        Ok(lasts)
    }

    async fn insert_direct_messages(&mut self, messages: &[&DirectMessage]) -> Result<(), sqlx::Error> {
        for message in messages {
            sqlx::query(
                "INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, body, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(message.id.0)
            .bind(message.conversation_id.0)
            .bind(message.seq)
            .bind(message.sender_id.0)
            .bind(message.client_msg_id.as_str())
            .bind(&message.body)
            .bind(message.created_at)
            .execute(&mut *self)
            .await?;
        }
        Ok(())
    }

    async fn mark_sent(
        &mut self,
        read: &[(ConversationId, UserId, i64)],
        conversations: &[ConversationId],
    ) -> Result<(), sqlx::Error> {
        for (conversation, user, seq) in read {
            sqlx::query(
                "UPDATE conversation_members SET read_seq = $3 \
                 WHERE conversation_id = $1 AND user_id = $2 AND read_seq < $3",
            )
            .bind(conversation.0)
            .bind(user.0)
            .bind(*seq)
            .execute(&mut *self)
            .await?;
        }
        for conversation in conversations {
            sqlx::query("UPDATE conversation_members SET archived = false WHERE conversation_id = $1 AND archived")
                .bind(conversation.0)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    async fn focused(&mut self, pairs: &[(Uuid, Uuid)]) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
        let mut focused = Vec::new();
        for (user, conversation) in pairs {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM conversation_focus WHERE user_id = $1 AND conversation_id = $2 LIMIT 1",
            )
            .bind(user)
            .bind(conversation)
            .fetch_optional(&mut *self)
            .await?;
            if found.is_some() {
                focused.push((*user, *conversation));
            }
        }
        Ok(focused)
    }

    async fn insert_message_notices(&mut self, notices: &[MessageNotice]) -> Result<Vec<NotificationRow>, sqlx::Error> {
        let sql = format!(
            "INSERT INTO notifications (user_id, type, title, message, data, created_at) \
             VALUES ($1, 'message', $2, $3, $4, $5) {NOTIFICATION_RETURNING}"
        );
        let mut rows = Vec::with_capacity(notices.len());
        for notice in notices {
            rows.push(
                sqlx::query_as(&sql)
                    .bind(notice.user_id)
                    .bind(&notice.title)
                    .bind(&notice.message)
                    .bind(&notice.data)
                    .bind(notice.created_at)
                    .fetch_one(&mut *self)
                    .await?,
            );
        }
        Ok(rows)
    }
}
