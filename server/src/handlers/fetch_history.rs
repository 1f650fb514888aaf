//! `fetch_history`: pages through a room's messages by sequence number.

use convene_protocol::FetchHistory;

use super::{ConnCtx, HandlerError};
use crate::session::Command;
use crate::store::HistoryQuery;

/// Largest page a client may ask for.
pub const MAX_HISTORY_LIMIT: u32 = 100;
const DEFAULT_HISTORY_LIMIT: u32 = 50;

pub async fn handle(ctx: &mut ConnCtx, request: FetchHistory) -> Result<(), HandlerError> {
    let query = match (request.before_seq, request.after_seq) {
        (None, None) => HistoryQuery::Latest,
        (Some(before), None) => HistoryQuery::Before(before),
        (None, Some(after)) => HistoryQuery::After(after),
        (Some(_), Some(_)) => return Err(HandlerError::Invalid("give before_seq or after_seq, not both")),
    };
    let limit = request.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if limit == 0 || limit > MAX_HISTORY_LIMIT {
        return Err(HandlerError::Invalid("limit must be 1 to 100"));
    }
    let command = Command::FetchHistory {
        conn: ctx.conn_id,
        request_id: request.request_id,
        room: request.room_id,
        query,
        limit,
    };
    ctx.forward(request.session_id, command).await
}
