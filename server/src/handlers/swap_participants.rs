//! `swap_participants`: Hosts exchange the rooms of two people.

use convene_protocol::SwapParticipants;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: SwapParticipants) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command =
        Command::Swap { conn: ctx.conn_id, request_id: request.request_id, a: request.user_a, b: request.user_b };
    ctx.forward(session_id, command).await
}
