//! One batch's transaction: the messages first, numbered room by room, then each other op's
//! statements in order.

use std::collections::HashMap;

use convene_protocol::{RoomId, SessionId, SessionStatus};

use super::{OpResult, Queued, WriteOp};
use crate::store::records::{MESSAGE_COLUMNS, MessageRow};
use crate::store::{
    BeginWrite as _, CheckFence, Db, EditOutcome, MessageRecord, NewMessage, Store, StoreError, with_db,
};

impl Store {
    /// Commits `ops` in one transaction and returns what each produced, in order.
    pub(super) async fn commit(&self, ops: &[Queued]) -> Result<Vec<OpResult>, StoreError> {
        let messages: Vec<&NewMessage> = ops
            .iter()
            .filter_map(|queued| match &queued.op {
                WriteOp::InsertMessage { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        // Each session owner's token is checked once, before any of its ops.
        let mut fences: Vec<crate::store::Fence> = Vec::new();
        for fence in ops.iter().filter_map(|queued| queued.fence) {
            if !fences.contains(&fence) {
                fences.push(fence);
            }
        }
        // Live chat's batches, one session's messages only, take one call to SQLite's thread
        // rather than one per statement (see `sqlite.rs`).
        if let Db::Sqlite(pools) = &self.db
            && !messages.is_empty()
            && fences.len() <= 1
            && ops.iter().all(|queued| matches!(queued.op, WriteOp::InsertMessage { .. } | WriteOp::Barrier { .. }))
        {
            let batch = Numbering::of(&messages);
            let numbers = super::sqlite::commit_messages(&pools.writer, &batch, fences.first()).await?;
            return inserted(ops, numbers);
        }
        with_db!(write &self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for fence in &fences {
                if !CheckFence::holds(&mut *tx, fence).await? {
                    return Err(StoreError::Fenced(fence.session));
                }
            }
            let mut numbered = if messages.is_empty() {
                Vec::new()
            } else {
                BatchRows::insert_messages(&mut *tx, &Numbering::of(&messages)).await?
            }
            .into_iter();
            let sends: Vec<&super::NewDirectMessage> = ops
                .iter()
                .filter_map(|queued| match &queued.op {
                    WriteOp::SendDirect { message, .. } => Some(message),
                    _ => None,
                })
                .collect();
            let mut sent = if sends.is_empty() {
                Vec::new()
            } else {
                super::direct::commit_direct_sends(&mut *tx, &sends).await?
            }
            .into_iter();
            let mut results = Vec::with_capacity(ops.len());
            for queued in ops {
                let result = match &queued.op {
                    WriteOp::InsertMessage { message, .. } => stored(message, numbered.next())?,
                    WriteOp::EditMessage { room_id, message_id, editor, body, at, .. } => {
                        let sql = format!(
                            "UPDATE room_messages SET body = $1, edited_at = $2 \
                             WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL AND sender_id = $5 \
                             RETURNING {MESSAGE_COLUMNS}"
                        );
                        let row: Option<MessageRow> = sqlx::query_as(&sql)
                            .bind(body).bind(*at).bind(message_id.0).bind(room_id.0).bind(editor.0)
                            .fetch_optional(&mut *tx).await?;
                        OpResult::Changed(match row {
                            Some(row) => EditOutcome::Changed(row.into()),
                            None => {
                                let exists: Option<i64> = sqlx::query_scalar(
                                    "SELECT seq FROM room_messages WHERE id = $1 AND room_id = $2 AND deleted_at IS NULL",
                                )
                                .bind(message_id.0).bind(room_id.0)
                                .fetch_optional(&mut *tx).await?;
                                if exists.is_some() { EditOutcome::NotSender } else { EditOutcome::NotFound }
                            }
                        })
                    }
                    WriteOp::DeleteMessage { room_id, message_id, deleted_by, any_sender, at, audit, .. } => {
                        let sql = format!(
                            "UPDATE room_messages SET deleted_at = $1, deleted_by = $2 \
                             WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL AND ($5 OR sender_id = $2) \
                             RETURNING {MESSAGE_COLUMNS}"
                        );
                        let row: Option<MessageRow> = sqlx::query_as(&sql)
                            .bind(*at).bind(deleted_by.0).bind(message_id.0).bind(room_id.0).bind(*any_sender)
                            .fetch_optional(&mut *tx).await?;
                        OpResult::Changed(match row {
                            Some(row) => {
                                let message = MessageRecord::from(row);
                                if let Some(audit) = audit.as_ref().filter(|_| message.sender_id != *deleted_by) {
                                    let record = crate::store::AuditRecord {
                                        target_user_id: Some(message.sender_id),
                                        ..audit.clone()
                                    };
                                    crate::store::audit::insert_audit!(tx, &record);
                                }
                                EditOutcome::Changed(message)
                            }
                            None => {
                                let exists: Option<i64> = sqlx::query_scalar(
                                    "SELECT seq FROM room_messages WHERE id = $1 AND room_id = $2 AND deleted_at IS NULL",
                                )
                                .bind(message_id.0).bind(room_id.0)
                                .fetch_optional(&mut *tx).await?;
                                if exists.is_some() { EditOutcome::NotSender } else { EditOutcome::NotFound }
                            }
                        })
                    }
                    WriteOp::ParticipantJoined { session_id, user_id, role, at } => {
                        sqlx::query(
                            "INSERT INTO session_participants (session_id, user_id, role, invited, joined_at, left_at) \
                             VALUES ($1, $2, $3, $4, $5, NULL) \
                             ON CONFLICT (session_id, user_id) DO UPDATE SET \
                             joined_at = COALESCE(session_participants.joined_at, excluded.joined_at), left_at = NULL, removed_at = NULL",
                        )
                        .bind(session_id.0).bind(user_id.0).bind(role.as_str()).bind(false).bind(*at)
                        .execute(&mut *tx).await?;
                        OpResult::Done
                    }
                    WriteOp::ParticipantLeft { session_id, user_id, at } => {
                        sqlx::query("UPDATE session_participants SET left_at = $3 WHERE session_id = $1 AND user_id = $2")
                            .bind(session_id.0).bind(user_id.0).bind(*at)
                            .execute(&mut *tx).await?;
                        OpResult::Done
                    }
                    WriteOp::SessionStarted { session_id, at } => {
                        sqlx::query("UPDATE video_sessions SET status = $2, started_at = COALESCE(started_at, $3) WHERE id = $1")
                            .bind(session_id.0).bind(SessionStatus::Active.as_str()).bind(*at)
                            .execute(&mut *tx).await?;
                        OpResult::Done
                    }
                    WriteOp::SessionEnded { session_id, at } => {
                        sqlx::query("UPDATE video_sessions SET status = $2, ended_at = COALESCE(ended_at, $3) WHERE id = $1")
                            .bind(session_id.0).bind(SessionStatus::Ended.as_str()).bind(*at)
                            .execute(&mut *tx).await?;
                        OpResult::Done
                    }
                    WriteOp::SendDirect { .. } => match sent.next() {
                        Some(outcome) => OpResult::Direct(outcome),
                        None => return Err(StoreError::Corrupt("a 1:1 send without an outcome".to_owned())),
                    },
                    WriteOp::Barrier { .. } => OpResult::Done,
                    WriteOp::Changes { changes, .. } => {
                        crate::store::changes::apply_session_writes!(tx, changes);
                        OpResult::Done
                    }
                };
                results.push(result);
            }
            tx.commit().await?;
            Ok(results)
        })
    }
}

/// A message's result, given the number the batch gave it.
fn stored(message: &NewMessage, seq: Option<i64>) -> Result<OpResult, StoreError> {
    match seq {
        Some(seq) => Ok(OpResult::Inserted(message.stored(seq))),
        None => Err(StoreError::Corrupt("a message without a sequence number".to_owned())),
    }
}

/// The results of a batch of messages (and barriers), given each message's number in order.
fn inserted(ops: &[Queued], numbers: Vec<i64>) -> Result<Vec<OpResult>, StoreError> {
    let mut numbers = numbers.into_iter();
    ops.iter()
        .map(|queued| match &queued.op {
            WriteOp::InsertMessage { message, .. } => stored(message, numbers.next()),
            _ => Ok(OpResult::Done),
        })
        .collect()
}

/// A batch's messages and how each is numbered: a room's messages take the numbers up to the
/// room's new last one, in submission order, so a message's number is that last one less the
/// room's messages after it in the batch.
pub(super) struct Numbering<'a> {
    pub(super) messages: &'a [&'a NewMessage],
    /// Per message, how many of its room's messages follow it in the batch.
    pub(super) later: Vec<i64>,
    /// Per room in the batch: its session and how many messages it gets.
    pub(super) counts: Vec<(RoomId, SessionId, i64)>,
}

impl<'a> Numbering<'a> {
    pub(super) fn of(messages: &'a [&'a NewMessage]) -> Self {
        let mut counts: Vec<(RoomId, SessionId, i64)> = Vec::new();
        let mut index: HashMap<RoomId, usize> = HashMap::new();
        let mut later = vec![0; messages.len()];
        for (i, message) in messages.iter().enumerate().rev() {
            let at = *index.entry(message.room_id).or_insert_with(|| {
                counts.push((message.room_id, message.session_id, 0));
                counts.len() - 1
            });
            later[i] = counts[at].2;
            counts[at].2 += 1;
        }
        Self { messages, later, counts }
    }

    /// Each message's number, given every room's new last number.
    pub(super) fn numbers(&self, lasts: impl IntoIterator<Item = (uuid::Uuid, i64)>) -> Result<Vec<i64>, StoreError> {
        let lasts: HashMap<RoomId, i64> = lasts.into_iter().map(|(room, last)| (RoomId(room), last)).collect();
        self.messages
            .iter()
            .zip(&self.later)
            .map(|(message, later)| match lasts.get(&message.room_id) {
                Some(last) => Ok(last - later),
                None => Err(StoreError::Corrupt(format!("no sequence returned for room {}", message.room_id))),
            })
            .collect()
    }
}

/// How each backend writes a batch's messages: each room's counter advances by its messages in
/// the batch, and the messages are inserted with their numbers, in the transaction.
pub(super) trait BatchRows {
    /// Inserts the messages; returns each one's sequence number, in order.
    async fn insert_messages(&mut self, batch: &Numbering<'_>) -> Result<Vec<i64>, StoreError>;
}

pub(super) const ADVANCE_CONFLICT: &str = " ON CONFLICT (room_id) DO UPDATE SET last_seq = room_sequences.last_seq + excluded.last_seq RETURNING room_id, last_seq";

/// Postgres binds whole columns as arrays, so two prepared statements serve every batch size:
/// the counters advance, then the messages are inserted with the numbers they returned.
impl BatchRows for sqlx::PgConnection {
    async fn insert_messages(&mut self, batch: &Numbering<'_>) -> Result<Vec<i64>, StoreError> {
        let rooms: Vec<uuid::Uuid> = batch.counts.iter().map(|(room, _, _)| room.0).collect();
        let sessions: Vec<uuid::Uuid> = batch.counts.iter().map(|(_, session, _)| session.0).collect();
        let added: Vec<i64> = batch.counts.iter().map(|(_, _, count)| *count).collect();
        let sql = format!(
            "INSERT INTO room_sequences (room_id, session_id, last_seq) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]){ADVANCE_CONFLICT}"
        );
        let lasts: Vec<(uuid::Uuid, i64)> =
            sqlx::query_as(&sql).bind(rooms).bind(sessions).bind(added).fetch_all(&mut *self).await?;
        let numbers = batch.numbers(lasts)?;
        let messages = batch.messages;
        let column = |f: fn(&NewMessage) -> uuid::Uuid| messages.iter().map(|m| f(m)).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO room_messages (id, session_id, room_id, seq, sender_id, client_msg_id, body, created_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::uuid[], $6::text[], $7::text[], $8::timestamptz[])",
        )
        .bind(column(|m| m.id.0))
        .bind(column(|m| m.session_id.0))
        .bind(column(|m| m.room_id.0))
        .bind(&numbers)
        .bind(column(|m| m.sender_id.0))
        .bind(messages.iter().map(|m| m.client_msg_id.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .execute(&mut *self)
        .await?;
        Ok(numbers)
    }
}
