//! `deny_participant`: a host turns away someone waiting in the lobby.

use convene_protocol::DenyParticipant;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: DenyParticipant) -> Result<(), HandlerError> {
    let command = Command::Deny { conn: ctx.conn_id, request_id: request.request_id, user: request.user_id };
    ctx.forward(request.session_id, command).await
}
