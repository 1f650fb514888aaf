//! `set_status`: a member marks themselves active or away.

use convene_protocol::SetStatus;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: SetStatus) -> Result<(), HandlerError> {
    let command = Command::SetStatus { conn: ctx.conn_id, request_id: request.request_id, status: request.status };
    ctx.forward(request.session_id, command).await
}
