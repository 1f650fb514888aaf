//! `send_message`: posts to a room. The session acknowledges after the message is committed.

use convene_protocol::SendMessage;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: SendMessage) -> Result<(), HandlerError> {
    let command = Command::Post {
        conn: ctx.conn_id,
        request_id: request.request_id,
        room: request.room_id,
        client_msg_id: request.client_msg_id,
        body: request.body,
    };
    ctx.forward(request.session_id, command).await
}
