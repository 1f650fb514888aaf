//! `update_breakout_room`: Hosts rename a breakout room or change its capacity.

use convene_protocol::UpdateBreakoutRoom;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: UpdateBreakoutRoom) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::UpdateRoom {
        conn: ctx.conn_id,
        request_id: request.request_id,
        room: request.room_id,
        name: request.name,
        max_participants: request.max_participants,
    };
    ctx.forward(session_id, command).await
}
