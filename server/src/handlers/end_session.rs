//! `end_session`: a host ends the session for everyone.

use convene_protocol::EndSession;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: EndSession) -> Result<(), HandlerError> {
    let command = Command::End { conn: ctx.conn_id, request_id: request.request_id };
    ctx.forward(request.session_id, command).await
}
