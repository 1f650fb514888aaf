//! One batch's transaction: each op's statements, the rooms' sequence numbers, and the
//! backends' multi-row inserts of messages.

use std::collections::HashMap;

use convene_protocol::{RoomId, SessionId, SessionStatus};

use super::{MAX_BATCH, OpResult, Queued, WriteOp};
use crate::store::records::{MESSAGE_COLUMNS, MessageRow};
use crate::store::{BeginWrite as _, EditOutcome, MessageRecord, Store, StoreError, with_db};

impl Store {
    /// Commits `ops` in one transaction and returns what each produced, in order.
    pub(super) async fn commit(&self, ops: &[Queued]) -> Result<Vec<OpResult>, StoreError> {
        // Number the new messages room by room, in submission order.
        let mut per_room: HashMap<RoomId, (SessionId, i64)> = HashMap::new();
        for queued in ops {
            if let WriteOp::InsertMessage { message, .. } = &queued.op {
                per_room.entry(message.room_id).or_insert((message.session_id, 0)).1 += 1;
            }
        }
        // Each session owner's token is checked once, before any of its ops.
        let mut fences: Vec<crate::store::Fence> = Vec::new();
        for fence in ops.iter().filter_map(|queued| queued.fence) {
            if !fences.contains(&fence) {
                fences.push(fence);
            }
        }
        with_db!(write &self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for fence in &fences {
                crate::store::check_fence!(tx, fence);
            }
            // One statement advances every room's counter; the returned value is the room's new
            // last sequence, so this batch's messages take the numbers just below it.
            let mut next_seq: HashMap<RoomId, i64> = HashMap::with_capacity(per_room.len());
            if !per_room.is_empty() {
                let counts: Vec<(RoomId, SessionId, i64)> =
                    per_room.iter().map(|(room, (session, count))| (*room, *session, *count)).collect();
                for (room, last) in BatchRows::advance_sequences(&mut *tx, &counts).await? {
                    let count = per_room.get(&room).map_or(0, |(_, count)| *count);
                    next_seq.insert(room, last - count + 1);
                }
            }
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
            let mut inserts = Vec::new();
            for queued in ops {
                let result = match &queued.op {
                    WriteOp::InsertMessage { message, .. } => {
                        let Some(next) = next_seq.get_mut(&message.room_id) else {
                            return Err(StoreError::Corrupt(format!("no sequence returned for room {}", message.room_id)));
                        };
                        *next += 1;
                        let record = message.stored(*next - 1);
                        inserts.push(record.clone());
                        OpResult::Inserted(record)
                    }
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
            if !inserts.is_empty() {
                BatchRows::insert_messages(&mut *tx, &inserts).await?;
            }
            tx.commit().await?;
            Ok(results)
        })
    }
}

/// How each backend writes a batch's rows. Postgres binds whole columns as arrays, so one prepared
/// statement serves every batch size; SQLite, whose statements are cheap to prepare, takes
/// multi-row `VALUES`.
trait BatchRows {
    /// Adds each count to its room's counter; returns every room's new last sequence.
    async fn advance_sequences(
        &mut self,
        counts: &[(RoomId, SessionId, i64)],
    ) -> Result<Vec<(RoomId, i64)>, sqlx::Error>;
    async fn insert_messages(&mut self, messages: &[MessageRecord]) -> Result<(), sqlx::Error>;
}

const ADVANCE_CONFLICT: &str = " ON CONFLICT (room_id) DO UPDATE SET last_seq = room_sequences.last_seq + excluded.last_seq RETURNING room_id, last_seq";

impl BatchRows for sqlx::PgConnection {
    async fn advance_sequences(
        &mut self,
        counts: &[(RoomId, SessionId, i64)],
    ) -> Result<Vec<(RoomId, i64)>, sqlx::Error> {
        let rooms: Vec<uuid::Uuid> = counts.iter().map(|(room, _, _)| room.0).collect();
        let sessions: Vec<uuid::Uuid> = counts.iter().map(|(_, session, _)| session.0).collect();
        let added: Vec<i64> = counts.iter().map(|(_, _, count)| *count).collect();
        let sql = format!(
            "INSERT INTO room_sequences (room_id, session_id, last_seq) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]){ADVANCE_CONFLICT}"
        );
        let rows: Vec<(uuid::Uuid, i64)> =
            sqlx::query_as(&sql).bind(rooms).bind(sessions).bind(added).fetch_all(&mut *self).await?;
        Ok(rows.into_iter().map(|(room, last)| (RoomId(room), last)).collect())
    }

    async fn insert_messages(&mut self, messages: &[MessageRecord]) -> Result<(), sqlx::Error> {
        let column = |f: fn(&MessageRecord) -> uuid::Uuid| messages.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO room_messages (id, session_id, room_id, seq, sender_id, client_msg_id, body, created_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::uuid[], $6::text[], $7::text[], $8::timestamptz[])",
        )
        .bind(column(|m| m.id.0))
        .bind(column(|m| m.session_id.0))
        .bind(column(|m| m.room_id.0))
        .bind(messages.iter().map(|m| m.seq).collect::<Vec<_>>())
        .bind(column(|m| m.sender_id.0))
        .bind(messages.iter().map(|m| m.client_msg_id.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}

impl BatchRows for sqlx::SqliteConnection {
    async fn advance_sequences(
        &mut self,
        counts: &[(RoomId, SessionId, i64)],
    ) -> Result<Vec<(RoomId, i64)>, sqlx::Error> {
        let mut advance = sqlx::QueryBuilder::new("INSERT INTO room_sequences (room_id, session_id, last_seq) ");
        advance.push_values(counts, |mut row, (room, session, count)| {
            row.push_bind(room.0).push_bind(session.0).push_bind(*count);
        });
        advance.push(ADVANCE_CONFLICT);
        let rows: Vec<(uuid::Uuid, i64)> = advance.build_query_as().fetch_all(&mut *self).await?;
        Ok(rows.into_iter().map(|(room, last)| (RoomId(room), last)).collect())
    }

    async fn insert_messages(&mut self, messages: &[MessageRecord]) -> Result<(), sqlx::Error> {
        for chunk in messages.chunks(MAX_BATCH) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO room_messages (id, session_id, room_id, seq, sender_id, client_msg_id, body, created_at) ",
            );
            insert.push_values(chunk, |mut row, message| {
                row.push_bind(message.id.0)
                    .push_bind(message.session_id.0)
                    .push_bind(message.room_id.0)
                    .push_bind(message.seq)
                    .push_bind(message.sender_id.0)
                    .push_bind(message.client_msg_id.as_str())
                    .push_bind(message.body.as_str())
                    .push_bind(message.created_at);
            });
            insert.build().execute(&mut *self).await?;
        }
        Ok(())
    }
}
