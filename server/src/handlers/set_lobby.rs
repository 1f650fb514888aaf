//! `set_lobby`: a host turns the lobby on or off for later joiners.

use convene_protocol::SetLobby;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: SetLobby) -> Result<(), HandlerError> {
    let command = Command::SetLobby { conn: ctx.conn_id, request_id: request.request_id, enabled: request.enabled };
    ctx.forward(request.session_id, command).await
}
