//! `ask_for_help`: A participant in a breakout room asks the hosts for help.

use convene_protocol::AskForHelp;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: AskForHelp) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::AskForHelp { conn: ctx.conn_id, request_id: request.request_id };
    ctx.forward(session_id, command).await
}
