//! `select_room`: Participants pick a room or return to the main room, when the hosts allow it.

use convene_protocol::SelectRoom;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: SelectRoom) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::Select { conn: ctx.conn_id, request_id: request.request_id, room: request.room_id };
    ctx.forward(session_id, command).await
}
