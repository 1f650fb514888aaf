//! `broadcast`: Hosts send one message to every room at once.

use convene_protocol::Broadcast;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: Broadcast) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::Broadcast { conn: ctx.conn_id, request_id: request.request_id, body: request.body };
    ctx.forward(session_id, command).await
}
