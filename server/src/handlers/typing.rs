//! `typing`: an ephemeral indicator, relayed to the room and never stored; answered `ok`.

use convene_protocol::Typing;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: Typing) -> Result<(), HandlerError> {
    let command = Command::Typing {
        conn: ctx.conn_id,
        request_id: request.request_id,
        room: request.room_id,
        active: request.active,
    };
    ctx.forward(request.session_id, command).await
}
