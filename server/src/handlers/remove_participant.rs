//! `remove_participant`: a host removes someone from the session, every device at once.

use convene_protocol::RemoveParticipant;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: RemoveParticipant) -> Result<(), HandlerError> {
    let command = Command::Remove { conn: ctx.conn_id, request_id: request.request_id, user: request.user_id };
    ctx.forward(request.session_id, command).await
}
