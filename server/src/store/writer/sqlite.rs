//! SQLite's statements for a batch's messages.

use sqlx::{QueryBuilder, Sqlite};

use super::commit::{ADVANCE_CONFLICT, BatchRows, Numbering};
use crate::store::StoreError;

/// SQLite runs both statements in one call to its connection's thread: the counters advance,
/// and each message's number is read back from its room's counter in the same statement that
/// inserts it. A batch has at most [`MAX_BATCH`](super::MAX_BATCH) messages of 9 parameters
/// each, and as many rooms of 3: at most 12,000, far below SQLite's 32,766.
impl BatchRows for sqlx::SqliteConnection {
    async fn insert_messages(&mut self, batch: &Numbering<'_>) -> Result<Vec<i64>, StoreError> {
        let mut sql = QueryBuilder::new("");
        push_message_statements(&mut sql, batch);
        let lasts: Vec<(uuid::Uuid, i64)> = sql.build_query_as().fetch_all(&mut *self).await?;
        batch.numbers(lasts)
    }
}

/// Appends the two statements that write `batch`'s messages: the first advances each room's
/// counter and returns its new last number, the second inserts the messages.
fn push_message_statements<'a>(sql: &mut QueryBuilder<'a, Sqlite>, batch: &'a Numbering<'a>) {
    sql.push("INSERT INTO room_sequences (room_id, session_id, last_seq) ");
    sql.push_values(&batch.counts, |mut row, (room, session, count)| {
        row.push_bind(room.0).push_bind(session.0).push_bind(*count);
    });
    sql.push(ADVANCE_CONFLICT);
    sql.push("; INSERT INTO room_messages (id, session_id, room_id, seq, sender_id, client_msg_id, body, created_at) ");
    sql.push_values(batch.messages.iter().zip(&batch.later), |mut row, (message, later)| {
        row.push_bind(message.id.0)
            .push_bind(message.session_id.0)
            .push_bind(message.room_id.0)
            .push("(SELECT last_seq FROM room_sequences WHERE room_id = ")
            .push_bind_unseparated(message.room_id.0)
            .push_unseparated(") - ")
            .push_bind_unseparated(*later)
            .push_bind(message.sender_id.0)
            .push_bind(message.client_msg_id.as_str())
            .push_bind(message.body.as_str())
            .push_bind(message.created_at);
    });
}
