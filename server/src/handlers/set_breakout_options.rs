//! `set_breakout_options`: Hosts decide whether participants may pick rooms or return to the main room, and how long closing counts down.

use convene_protocol::SetBreakoutOptions;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: SetBreakoutOptions) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::SetBreakoutOptions {
        conn: ctx.conn_id,
        request_id: request.request_id,
        allow_self_select: request.allow_self_select,
        allow_return_to_main: request.allow_return_to_main,
        countdown_secs: request.countdown_secs,
    };
    ctx.forward(session_id, command).await
}
