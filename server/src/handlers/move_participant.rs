//! `move_participant`: Hosts move one person between rooms (or visit a room themselves).

use convene_protocol::MoveParticipant;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: MoveParticipant) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::Move {
        conn: ctx.conn_id,
        request_id: request.request_id,
        user: request.user_id,
        from: request.from_room_id,
        to: request.to_room_id,
    };
    ctx.forward(session_id, command).await
}
