//! `resolve_help`: Hosts mark a help request as handled.

use convene_protocol::ResolveHelp;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: ResolveHelp) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::ResolveHelp { conn: ctx.conn_id, request_id: request.request_id, user: request.user_id };
    ctx.forward(session_id, command).await
}
