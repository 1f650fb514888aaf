//! SQLite's statements for a batch's messages, and a batch of messages written in one call.
//!
//! Every statement sqlx runs on SQLite is a round trip to the connection's own thread: a wake-up
//! of that thread and one of the writer's task, which on a busy core are two context switches.
//! A batch of one session's messages (live chat's batches, each a message or a few) is
//! therefore written in one call: the transaction's start, the fence, the statements and the
//! commit together. A batch of several sessions' messages is large, made under load, and takes
//! the general path: there the calls are shared by many messages, and a fence condition per
//! session in each statement cost more than the calls it saved (`docs/benchmarks.md`).

use sqlx::pool::PoolConnection;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use tracing::debug;

use super::commit::{ADVANCE_CONFLICT, BatchRows, Numbering};
use crate::store::{CheckFence as _, Fence, StoreError};

/// SQLite runs both statements in one call to its connection's thread: the counters advance,
/// and each message's number is read back from its room's counter in the same statement that
/// inserts it. A batch has at most [`MAX_BATCH`](super::MAX_BATCH) messages of 9 parameters
/// each, and as many rooms of 3: at most 12,000, far below SQLite's 32,766.
impl BatchRows for SqliteConnection {
    async fn insert_messages(&mut self, batch: &Numbering<'_>) -> Result<Vec<i64>, StoreError> {
        let mut sql = QueryBuilder::new("");
        push_message_statements(&mut sql, batch, None);
        let lasts: Vec<(uuid::Uuid, i64)> = sql.build_query_as().fetch_all(&mut *self).await?;
        batch.numbers(lasts)
    }
}

/// Commits `batch` in one call to the connection's thread and returns each message's number.
///
/// With a `fence`, each statement writes only while it holds: the transaction begins
/// `IMMEDIATE`, holding the database's write lock, so no claim can change the token before the
/// commit. When the fence does not hold, nothing is written (the commit ends an empty
/// transaction) and the batch fails as [`StoreError::Fenced`], as a separate check would.
pub(super) async fn commit_messages(
    writer: &SqlitePool,
    batch: &Numbering<'_>,
    fence: Option<&Fence>,
) -> Result<Vec<i64>, StoreError> {
    let mut conn = OpenTransaction { conn: writer.acquire().await?, open: true };
    let mut sql = QueryBuilder::new("BEGIN IMMEDIATE; ");
    push_message_statements(&mut sql, batch, fence);
    sql.push("; COMMIT");
    let written = sql.build_query_as::<(uuid::Uuid, i64)>().fetch_all(&mut *conn.conn).await;
    let lasts = match written {
        Ok(lasts) => {
            conn.open = false;
            lasts
        }
        Err(err) => {
            // A statement failed, and the ones after it did not run: the transaction may be
            // open. Rolled back, the connection goes back to the pool; if even that fails (the
            // transaction never began), it is closed instead.
            match sqlx::query("ROLLBACK").execute(&mut *conn.conn).await {
                Ok(_) => conn.open = false,
                Err(rollback) => debug!(error = %rollback, "closing the writer's connection after a failed batch"),
            }
            return Err(err.into());
        }
    };
    // Every room's counter returns a row once its statement runs: fewer rows, and the fence
    // did not hold.
    if lasts.len() < batch.counts.len() {
        if let Some(fence) = fence
            && !conn.conn.holds(fence).await?
        {
            return Err(StoreError::Fenced(fence.session));
        }
        return Err(StoreError::Corrupt(format!(
            "{} of {} rooms' counters advanced, and the fence holds",
            lasts.len(),
            batch.counts.len()
        )));
    }
    batch.numbers(lasts)
}

/// The writer's connection while a transaction begun on it by [`commit_messages`] may be open.
/// Dropped still open (the attempt ran out of time in the middle of the call, or the
/// transaction could not be rolled back), the connection is closed rather than returned to the
/// pool, and closing it rolls the transaction back: the next batch never finds one open.
struct OpenTransaction {
    conn: PoolConnection<Sqlite>,
    open: bool,
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// Appends the two statements that write `batch`'s messages: the first advances each room's
/// counter and returns its new last number, the second inserts the messages. With a `fence`,
/// each writes only while it is still its session's current token.
fn push_message_statements<'a>(sql: &mut QueryBuilder<'a, Sqlite>, batch: &'a Numbering<'a>, fence: Option<&Fence>) {
    // The rows as `VALUES`, or, under a fence, selected from them `WHERE` it holds (the `WHERE`
    // also keeps SQLite from reading the upsert's `ON CONFLICT` as part of the `SELECT`).
    let open = |sql: &mut QueryBuilder<'a, Sqlite>| {
        if fence.is_some() {
            sql.push("SELECT * FROM (");
        }
    };
    let close = |sql: &mut QueryBuilder<'a, Sqlite>| {
        if let Some(fence) = fence {
            sql.push(") WHERE EXISTS (SELECT 1 FROM session_owners WHERE session_id = ")
                .push_bind(fence.session.0)
                .push(" AND fence = ")
                .push_bind(fence.token)
                .push(")");
        }
    };
    sql.push("INSERT INTO room_sequences (room_id, session_id, last_seq) ");
    open(sql);
    sql.push_values(&batch.counts, |mut row, (room, session, count)| {
        row.push_bind(room.0).push_bind(session.0).push_bind(*count);
    });
    close(sql);
    sql.push(ADVANCE_CONFLICT);
    sql.push("; INSERT INTO room_messages (id, session_id, room_id, seq, sender_id, client_msg_id, body, created_at) ");
    open(sql);
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
    close(sql);
}
