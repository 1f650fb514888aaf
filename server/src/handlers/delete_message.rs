//! `delete_message`: soft-deletes a message (the sender's own, or any for a host).

use convene_protocol::DeleteMessage;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: DeleteMessage) -> Result<(), HandlerError> {
    let command = Command::Delete {
        conn: ctx.conn_id,
        request_id: request.request_id,
        room: request.room_id,
        message_id: request.message_id,
    };
    ctx.forward(request.session_id, command).await
}
