//! `open_breakouts`: Hosts open the breakouts: everyone planned moves at once, all or nothing.

use convene_protocol::OpenBreakouts;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: OpenBreakouts) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::Open { conn: ctx.conn_id, request_id: request.request_id, timer_secs: request.timer_secs };
    ctx.forward(session_id, command).await
}
