//! `admit_participant`: a host lets someone in from the lobby.

use convene_protocol::AdmitParticipant;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: AdmitParticipant) -> Result<(), HandlerError> {
    let command = Command::Admit { conn: ctx.conn_id, request_id: request.request_id, user: request.user_id };
    ctx.forward(request.session_id, command).await
}
