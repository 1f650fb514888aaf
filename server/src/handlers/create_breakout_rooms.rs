//! `create_breakout_rooms`: Hosts create breakout rooms: named ones, or a count of numbered ones.

use convene_protocol::CreateBreakoutRooms;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: CreateBreakoutRooms) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::CreateRooms {
        conn: ctx.conn_id,
        request_id: request.request_id,
        names: request.names,
        count: request.count,
        max_participants: request.max_participants,
        mode: request.assignment_mode,
    };
    ctx.forward(session_id, command).await
}
