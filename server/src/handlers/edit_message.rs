//! `edit_message`: the sender replaces a message's body.

use convene_protocol::EditMessage;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: EditMessage) -> Result<(), HandlerError> {
    let command = Command::Edit {
        conn: ctx.conn_id,
        request_id: request.request_id,
        room: request.room_id,
        message_id: request.message_id,
        body: request.body,
    };
    ctx.forward(request.session_id, command).await
}
