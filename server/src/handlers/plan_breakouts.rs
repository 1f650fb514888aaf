//! `plan_breakouts`: Hosts prepare, preview and edit the assignment that opening carries out.

use convene_protocol::PlanBreakouts;

use super::{ConnCtx, HandlerError};
use crate::session::Command;

pub async fn handle(ctx: &mut ConnCtx, request: PlanBreakouts) -> Result<(), HandlerError> {
    let session_id = request.session_id;
    let command = Command::Plan {
        conn: ctx.conn_id,
        request_id: request.request_id,
        assignments: request.assignments.iter().map(|a| (a.user_id, a.room_id)).collect(),
        automatic: request.automatic,
        keep_together: request.keep_together,
        keep_apart: request.keep_apart,
        reset: request.reset,
    };
    ctx.forward(session_id, command).await
}
