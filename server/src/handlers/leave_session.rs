//! `leave_session`: the connection leaves; others see the member leave with their last device.

use convene_protocol::LeaveSession;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: LeaveSession) -> Result<(), HandlerError> {
    let command = Command::Leave { conn: ctx.conn_id, request_id: request.request_id };
    ctx.forward(request.session_id, command).await?;
    ctx.sessions.remove(&request.session_id);
    Ok(())
}
