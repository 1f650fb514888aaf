//! `set_role`: a host makes a member co-host, or a co-host a participant again.

use convene_protocol::SetRole;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: SetRole) -> Result<(), HandlerError> {
    let command = Command::SetRole {
        conn: ctx.conn_id,
        request_id: request.request_id,
        user: request.user_id,
        role: request.role,
    };
    ctx.forward(request.session_id, command).await
}
