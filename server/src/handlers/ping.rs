//! `ping`: answered by the connection itself, to measure round trips.

use convene_protocol::{Ping, ServerMessage};

use super::{ConnCtx, HandlerError};

pub fn handle(ctx: &mut ConnCtx, ping: Ping) -> Result<(), HandlerError> {
    ctx.reply(&ServerMessage::Pong { request_id: ping.request_id });
    Ok(())
}
