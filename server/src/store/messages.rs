//! Reads of room chat. Writes go through the [`writer`](super::writer).

use convene_protocol::{RoomId, UserId};

use super::records::{MESSAGE_COLUMNS, MessageRow};
use super::{HistoryPage, MessageRecord, Store, StoreError, with_db};

/// Which slice of a room's history to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest messages.
    Latest,
    /// Messages with a smaller sequence number, newest of them first in the scan.
    Before(i64),
    /// Messages with a larger sequence number.
    After(i64),
}

impl Store {
    /// Reads up to `limit` messages of a room, returned oldest first.
    pub async fn history(&self, room: RoomId, query: HistoryQuery, limit: u32) -> Result<HistoryPage, StoreError> {
        // One row more than asked tells whether another page exists.
        let fetch = i64::from(limit) + 1;
        let (bound, sql) = match query {
            HistoryQuery::Latest => (i64::MAX, "seq < $2 ORDER BY seq DESC"),
            HistoryQuery::Before(seq) => (seq, "seq < $2 ORDER BY seq DESC"),
            HistoryQuery::After(seq) => (seq, "seq > $2 ORDER BY seq ASC"),
        };
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE room_id = $1 AND {sql} LIMIT $3");
        let rows: Vec<MessageRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(room.0).bind(bound).bind(fetch).fetch_all(pool).await?
        });
        let has_more = rows.len() as i64 > i64::from(limit);
        let mut messages: Vec<MessageRecord> = rows.into_iter().take(limit as usize).map(MessageRecord::from).collect();
        if !matches!(query, HistoryQuery::After(_)) {
            messages.reverse();
        }
        Ok(HistoryPage { messages, has_more })
    }

    /// The message a sender stored under a client message id, if any.
    pub async fn message_by_client_id(
        &self,
        room: RoomId,
        sender: UserId,
        client_msg_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM room_messages \
             WHERE room_id = $1 AND sender_id = $2 AND client_msg_id = $3"
        );
        let row: Option<MessageRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(room.0).bind(sender.0).bind(client_msg_id).fetch_optional(pool).await?
        });
        Ok(row.map(MessageRecord::from))
    }

    /// The latest sequence number of a room (0 when it has no messages).
    pub async fn last_seq(&self, room: RoomId) -> Result<i64, StoreError> {
        let last: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT last_seq FROM room_sequences WHERE room_id = $1")
                .bind(room.0)
                .fetch_optional(pool)
                .await?
        });
        Ok(last.unwrap_or(0))
    }
}
