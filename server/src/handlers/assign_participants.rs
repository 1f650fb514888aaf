//! `assign_participants`: Hosts move several people at once, all or nothing.

use convene_protocol::AssignParticipants;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: AssignParticipants) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::Assign {
        conn: ctx.conn_id,
        request_id: request.request_id,
        assignments: request.assignments.iter().map(|a| (a.user_id, a.room_id)).collect(),
    };
    ctx.forward(session_id, command).await
}
