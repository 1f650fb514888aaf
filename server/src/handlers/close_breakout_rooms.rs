//! `close_breakout_rooms`: Hosts close some or all breakout rooms, after a countdown.

use convene_protocol::CloseBreakoutRooms;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: CloseBreakoutRooms) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::Close {
        conn: ctx.conn_id,
        request_id: request.request_id,
        rooms: request.room_ids,
        countdown_secs: request.countdown_secs,
    };
    ctx.forward(session_id, command).await
}
