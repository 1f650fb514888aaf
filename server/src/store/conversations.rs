//! 1:1 conversations: creating them, their members' own state (read, archived), reads of their
//! messages, and which conversation each device looks at. Sending goes through the
//! [`writer`](super::writer), which numbers messages in the transaction that stores them.

use chrono::{DateTime, Utc};
use convene_protocol::{
    ClientMsgId, ConnId, ConversationContext, ConversationCursor, ConversationId, ConversationSummary,
    ConversationView, DirectMessage, DirectMessageId, NodeId, OrgId, UserId,
};
use uuid::Uuid;

use super::{BeginWrite as _, HistoryQuery, Store, StoreError, with_db};

const CONVERSATION_COLUMNS: &str = "c.id, c.organization_id, c.user_a, c.user_b, c.subject, c.context_type, \
     c.context_id, c.created_by, c.created_at, c.last_seq, c.last_activity_at";
pub(super) const DIRECT_COLUMNS: &str =
    "id, conversation_id, seq, sender_id, client_msg_id, body, created_at, edited_at, deleted_at";

/// A stored conversation, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationRecord {
    pub view: ConversationView,
    pub last_seq: i64,
    pub last_activity_at: DateTime<Utc>,
}

impl ConversationRecord {
    /// The member who is not `user` (`None` when `user` is not a member).
    pub fn other(&self, user: UserId) -> Option<UserId> {
        match self.view.members {
            [a, b] if a == user => Some(b),
            [a, b] if b == user => Some(a),
            _ => None,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    id: Uuid,
    organization_id: Uuid,
    user_a: Uuid,
    user_b: Uuid,
    subject: String,
    context_type: String,
    context_id: String,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    last_seq: i64,
    last_activity_at: DateTime<Utc>,
}

impl From<ConversationRow> for ConversationRecord {
    fn from(row: ConversationRow) -> Self {
        let context = (!row.context_type.is_empty())
            .then_some(ConversationContext { kind: row.context_type, id: row.context_id });
        Self {
            view: ConversationView {
                id: ConversationId(row.id),
                organization_id: OrgId(row.organization_id),
                members: [UserId(row.user_a), UserId(row.user_b)],
                subject: (!row.subject.is_empty()).then_some(row.subject),
                context,
                created_by: UserId(row.created_by),
                created_at: row.created_at,
            },
            last_seq: row.last_seq,
            last_activity_at: row.last_activity_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DirectRow {
    id: Uuid,
    conversation_id: Uuid,
    seq: i64,
    sender_id: Uuid,
    client_msg_id: String,
    body: String,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
}

impl TryFrom<DirectRow> for DirectMessage {
    type Error = StoreError;

    fn try_from(row: DirectRow) -> Result<Self, StoreError> {
        let client_msg_id = ClientMsgId::new(row.client_msg_id)
            .ok_or_else(|| StoreError::Corrupt(format!("message {} has an invalid client_msg_id", row.id)))?;
        let deleted = row.deleted_at.is_some();
        Ok(Self {
            id: DirectMessageId(row.id),
            conversation_id: ConversationId(row.conversation_id),
            seq: row.seq,
            sender_id: UserId(row.sender_id),
            client_msg_id,
            body: if deleted { String::new() } else { row.body },
            created_at: row.created_at,
            edited_at: row.edited_at,
            deleted_at: row.deleted_at,
        })
    }
}

pub(super) fn direct_messages(rows: Vec<DirectRow>) -> Result<Vec<DirectMessage>, StoreError> {
    rows.into_iter().map(DirectMessage::try_from).collect()
}

/// What a new conversation is: who, in which organization, about what.
#[derive(Clone, Debug)]
pub struct NewConversation {
    pub organization_id: OrgId,
    pub created_by: UserId,
    pub other: UserId,
    pub subject: Option<String>,
    pub context: Option<ConversationContext>,
    pub at: DateTime<Utc>,
}

/// What changing one's own message found.
#[derive(Clone, Debug, PartialEq)]
pub enum DirectEdit {
    Changed(DirectMessage),
    NotSender,
    NotFound,
}

/// A member's read position after marking a conversation read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadPosition {
    pub read_seq: i64,
    pub last_seq: i64,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    #[sqlx(flatten)]
    conversation: ConversationRow,
    read_seq: i64,
    archived: bool,
    /// The last message's columns, read in the same statement (absent with no message).
    last_id: Option<Uuid>,
    last_sender_id: Option<Uuid>,
    last_client_msg_id: Option<String>,
    last_body: Option<String>,
    last_created_at: Option<DateTime<Utc>>,
    last_edited_at: Option<DateTime<Utc>>,
    last_deleted_at: Option<DateTime<Utc>>,
}

impl SummaryRow {
    /// The conversation's last message, if it has one.
    fn last_message(&mut self) -> Result<Option<DirectMessage>, StoreError> {
        let (Some(id), Some(sender_id), Some(client_msg_id), Some(body), Some(created_at)) = (
            self.last_id,
            self.last_sender_id,
            self.last_client_msg_id.take(),
            self.last_body.take(),
            self.last_created_at,
        ) else {
            return Ok(None);
        };
        let row = DirectRow {
            id,
            conversation_id: self.conversation.id,
            seq: self.conversation.last_seq,
            sender_id,
            client_msg_id,
            body,
            created_at,
            edited_at: self.last_edited_at,
            deleted_at: self.last_deleted_at,
        };
        DirectMessage::try_from(row).map(Some)
    }
}

/// A page of the caller's conversations.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationPage {
    pub conversations: Vec<ConversationSummary>,
    pub next: Option<ConversationCursor>,
}

impl Store {
    /// The conversation of this pair, subject and context, created if there was none; says
    /// whether it was created now.
    pub async fn open_conversation(&self, new: &NewConversation) -> Result<(ConversationRecord, bool), StoreError> {
        let (a, b) = if new.created_by < new.other { (new.created_by, new.other) } else { (new.other, new.created_by) };
        let subject = new.subject.clone().unwrap_or_default();
        let (context_type, context_id) =
            new.context.clone().map(|context| (context.kind, context.id)).unwrap_or_default();
        let id = Uuid::new_v4();
        let select = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.organization_id = $1 AND c.user_a = $2 \
             AND c.user_b = $3 AND c.subject = $4 AND c.context_type = $5 AND c.context_id = $6"
        );
        let (row, created): (ConversationRow, bool) = with_db!(write &self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO conversations (id, organization_id, user_a, user_b, subject, context_type, context_id, \
                 created_by, created_at, last_seq, last_activity_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $9) \
                 ON CONFLICT (organization_id, user_a, user_b, subject, context_type, context_id) DO NOTHING",
            )
            .bind(id).bind(new.organization_id.0).bind(a.0).bind(b.0).bind(&subject).bind(&context_type)
            .bind(&context_id).bind(new.created_by.0).bind(new.at)
            .execute(&mut *tx).await?
            .rows_affected() == 1;
            if inserted {
                for member in [a, b] {
                    sqlx::query("INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2)")
                        .bind(id).bind(member.0)
                        .execute(&mut *tx).await?;
                }
            }
            let row: ConversationRow = sqlx::query_as(&select)
                .bind(new.organization_id.0).bind(a.0).bind(b.0).bind(&subject).bind(&context_type).bind(&context_id)
                .fetch_one(&mut *tx).await?;
            tx.commit().await?;
            (row, inserted)
        });
        Ok((row.into(), created))
    }

    pub async fn conversation(&self, id: ConversationId) -> Result<Option<ConversationRecord>, StoreError> {
        let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1");
        let row: Option<ConversationRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(id.0).fetch_optional(pool).await?
        });
        Ok(row.map(ConversationRecord::from))
    }

    /// Every conversation of `user` with its latest sequence.
    pub async fn conversation_positions(&self, user: UserId) -> Result<Vec<(ConversationId, i64)>, StoreError> {
        let rows: Vec<(Uuid, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT c.id, c.last_seq FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE m.user_id = $1",
            )
            .bind(user.0).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(id, seq)| (ConversationId(id), seq)).collect())
    }

    /// A page of `user`'s conversations (archived or not), newest activity first.
    pub async fn list_conversations(
        &self,
        user: UserId,
        archived: bool,
        before: Option<ConversationCursor>,
        limit: u32,
    ) -> Result<ConversationPage, StoreError> {
        let (at, id) = (before.map(|cursor| cursor.last_activity_at), before.map(|cursor| cursor.id.0));
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS}, m.read_seq, m.archived, \
             l.id AS last_id, l.sender_id AS last_sender_id, l.client_msg_id AS last_client_msg_id, \
             l.body AS last_body, l.created_at AS last_created_at, l.edited_at AS last_edited_at, \
             l.deleted_at AS last_deleted_at \
             FROM conversation_members m \
             JOIN conversations c ON c.id = m.conversation_id \
             LEFT JOIN messages l ON l.conversation_id = c.id AND l.seq = c.last_seq \
             WHERE m.user_id = $1 AND m.archived = $2 \
             AND ($3 IS NULL OR c.last_activity_at < $3 OR (c.last_activity_at = $3 AND c.id < $4)) \
             ORDER BY c.last_activity_at DESC, c.id DESC LIMIT $5"
        );
        let fetch = i64::from(limit) + 1;
        let rows: Vec<SummaryRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(user.0).bind(archived).bind(at).bind(id).bind(fetch).fetch_all(pool).await?
        });
        let more = rows.len() as i64 > i64::from(limit);
        let mut conversations = Vec::with_capacity(rows.len());
        for mut row in rows.into_iter().take(limit as usize) {
            let (read_seq, archived) = (row.read_seq, row.archived);
            let last_message = row.last_message()?;
            let record = ConversationRecord::from(row.conversation);
            conversations.push(ConversationSummary {
                other_user_id: record.other(user).unwrap_or(user),
                last_seq: record.last_seq,
                last_message,
                last_activity_at: record.last_activity_at,
                read_seq,
                unread: (record.last_seq - read_seq).max(0),
                archived,
                conversation: record.view,
            });
        }
        let next = more
            .then(|| conversations.last())
            .flatten()
            .map(|last| ConversationCursor { last_activity_at: last.last_activity_at, id: last.conversation.id });
        Ok(ConversationPage { conversations, next })
    }

    /// Up to `limit` messages with `after < seq <= upto`, oldest first.
    pub async fn direct_range(
        &self,
        conversation: ConversationId,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<DirectMessage>, StoreError> {
        let sql = format!(
            "SELECT {DIRECT_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 \
             ORDER BY seq ASC LIMIT $4"
        );
        let rows: Vec<DirectRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(conversation.0).bind(after).bind(upto).bind(i64::from(limit)).fetch_all(pool).await?
        });
        direct_messages(rows)
    }

    /// A page of a conversation, oldest first, and whether more lie beyond it.
    pub async fn direct_history(
        &self,
        conversation: ConversationId,
        query: HistoryQuery,
        limit: u32,
    ) -> Result<(Vec<DirectMessage>, bool), StoreError> {
        let fetch = i64::from(limit) + 1;
        let (bound, order) = match query {
            HistoryQuery::Latest => (i64::MAX, "seq < $2 ORDER BY seq DESC"),
            HistoryQuery::Before(seq) => (seq, "seq < $2 ORDER BY seq DESC"),
            HistoryQuery::After(seq) => (seq, "seq > $2 ORDER BY seq ASC"),
        };
        let sql = format!("SELECT {DIRECT_COLUMNS} FROM messages WHERE conversation_id = $1 AND {order} LIMIT $3");
        let rows: Vec<DirectRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(conversation.0).bind(bound).bind(fetch).fetch_all(pool).await?
        });
        let more = rows.len() as i64 > i64::from(limit);
        let mut messages = direct_messages(rows.into_iter().take(limit as usize).collect())?;
        if !matches!(query, HistoryQuery::After(_)) {
            messages.reverse();
        }
        Ok((messages, more))
    }

    /// The message a sender stored under a client message id, if any.
    pub async fn direct_by_client_id(
        &self,
        conversation: ConversationId,
        sender: UserId,
        client_msg_id: &str,
    ) -> Result<Option<DirectMessage>, StoreError> {
        let sql = format!(
            "SELECT {DIRECT_COLUMNS} FROM messages WHERE conversation_id = $1 AND sender_id = $2 AND client_msg_id = $3"
        );
        let row: Option<DirectRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(conversation.0).bind(sender.0).bind(client_msg_id).fetch_optional(pool).await?
        });
        row.map(DirectMessage::try_from).transpose()
    }

    /// Replaces the body of the sender's own message, or deletes it softly (`body` `None`).
    pub async fn change_direct(
        &self,
        conversation: ConversationId,
        message: DirectMessageId,
        sender: UserId,
        body: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<DirectEdit, StoreError> {
        let set = if body.is_some() { "body = $4, edited_at = $5" } else { "deleted_at = $5" };
        let sql = format!(
            "UPDATE messages SET {set} WHERE id = $1 AND conversation_id = $2 AND sender_id = $3 \
             AND deleted_at IS NULL RETURNING {DIRECT_COLUMNS}"
        );
        let (changed, exists): (Option<DirectRow>, bool) = with_db!(&self.db, pool => {
            let changed: Option<DirectRow> = sqlx::query_as(&sql)
                .bind(message.0).bind(conversation.0).bind(sender.0).bind(body.unwrap_or_default()).bind(at)
                .fetch_optional(pool).await?;
            let exists = changed.is_some() || sqlx::query_scalar::<_, i64>(
                "SELECT seq FROM messages WHERE id = $1 AND conversation_id = $2 AND deleted_at IS NULL",
            )
            .bind(message.0).bind(conversation.0)
            .fetch_optional(pool).await?.is_some();
            (changed, exists)
        });
        match changed {
            Some(row) => Ok(DirectEdit::Changed(row.try_into()?)),
            None if exists => Ok(DirectEdit::NotSender),
            None => Ok(DirectEdit::NotFound),
        }
    }

    /// `user`'s unread messages over all their conversations, and how many conversations
    /// hold them.
    pub async fn unread_messages(&self, user: UserId) -> Result<(i64, i64), StoreError> {
        let rows: Vec<(i64, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT c.last_seq, m.read_seq FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE m.user_id = $1 AND c.last_seq > m.read_seq",
            )
            .bind(user.0).fetch_all(pool).await?
        });
        let messages = rows.iter().map(|(last, read)| last - read).sum();
        Ok((messages, rows.len() as i64))
    }

    /// Moves `user`'s read position up to `seq` (never past the last message, never back).
    pub async fn mark_conversation_read(
        &self,
        conversation: ConversationId,
        user: UserId,
        seq: i64,
    ) -> Result<Option<ReadPosition>, StoreError> {
        let position: Option<(i64, i64)> = with_db!(write &self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let last: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = $1")
                .bind(conversation.0).fetch_optional(&mut *tx).await?;
            let position = match last {
                Some(last) => {
                    sqlx::query(
                        "UPDATE conversation_members SET read_seq = $3 \
                         WHERE conversation_id = $1 AND user_id = $2 AND read_seq < $3",
                    )
                    .bind(conversation.0).bind(user.0).bind(seq.min(last))
                    .execute(&mut *tx).await?;
                    let read: Option<i64> = sqlx::query_scalar(
                        "SELECT read_seq FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
                    )
                    .bind(conversation.0).bind(user.0).fetch_optional(&mut *tx).await?;
                    read.map(|read| (read, last))
                }
                None => None,
            };
            tx.commit().await?;
            position
        });
        Ok(position.map(|(read_seq, last_seq)| ReadPosition { read_seq, last_seq }))
    }

    /// Archives or unarchives the conversation for `user` alone.
    pub async fn set_archived(
        &self,
        conversation: ConversationId,
        user: UserId,
        archived: bool,
    ) -> Result<(), StoreError> {
        with_db!(&self.db, pool => {
            sqlx::query("UPDATE conversation_members SET archived = $3 WHERE conversation_id = $1 AND user_id = $2")
                .bind(conversation.0).bind(user.0).bind(archived)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// Records which conversation a device looks at (`None`: none).
    pub async fn set_focus(
        &self,
        conn: ConnId,
        user: UserId,
        conversation: Option<ConversationId>,
    ) -> Result<(), StoreError> {
        let (node, local) = (node_key(conn.node), conn_key(conn.local));
        with_db!(&self.db, pool => {
            match conversation {
                Some(conversation) => {
                    sqlx::query(
                        "INSERT INTO conversation_focus (node_id, conn, user_id, conversation_id) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (node_id, conn) DO UPDATE SET conversation_id = excluded.conversation_id",
                    )
                    .bind(node).bind(local).bind(user.0).bind(conversation.0)
                    .execute(pool).await?;
                }
                None => {
                    sqlx::query("DELETE FROM conversation_focus WHERE node_id = $1 AND conn = $2")
                        .bind(node).bind(local)
                        .execute(pool).await?;
                }
            }
        });
        Ok(())
    }

    /// Forgets the focus of every device of the nodes not in `alive` (the nodes that died, and
    /// earlier runs of this one).
    pub async fn clear_focus_except(&self, alive: &[NodeId]) -> Result<u64, StoreError> {
        let alive: Vec<i64> = alive.iter().copied().map(node_key).collect();
        let cleared = with_db!(write &self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let nodes: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT node_id FROM conversation_focus")
                .fetch_all(&mut *tx).await?;
            let mut cleared = 0;
            for node in nodes.into_iter().filter(|node| !alive.contains(node)) {
                cleared += sqlx::query("DELETE FROM conversation_focus WHERE node_id = $1")
                    .bind(node).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            cleared
        });
        Ok(cleared)
    }
}

/// A node id as the database keeps it: the same 64 bits, signed.
fn node_key(node: NodeId) -> i64 {
    i64::from_ne_bytes(node.0.to_ne_bytes())
}

fn conn_key(local: u64) -> i64 {
    i64::from_ne_bytes(local.to_ne_bytes())
}
