//! `delete_breakout_room`: Hosts delete an empty breakout room.

use convene_protocol::DeleteBreakoutRoom;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: DeleteBreakoutRoom) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::DeleteRoom { conn: ctx.conn_id, request_id: request.request_id, room: request.room_id };
    ctx.forward(session_id, command).await
}
