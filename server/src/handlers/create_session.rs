//! `create_session`: hosts create a session over the socket, as over `POST /v1/sessions`.

use convene_protocol::{CreateSession, ServerMessage};

use super::{ConnCtx, HandlerError};
use crate::session::wire::session_view;
use crate::session::{NewSessionSpec, create_session};

pub async fn handle(ctx: &mut ConnCtx, request: CreateSession) -> Result<(), HandlerError> {
    let spec = NewSessionSpec {
        session_type: request.session_type,
        room_name: request.room_name,
        invitees: request.invitees,
        lobby_enabled: request.lobby_enabled,
    };
    let app = &ctx.app;
    let session = create_session(
        &app.store,
        &ctx.identity,
        spec,
        app.config.instant_session_ttl,
        app.config.db_timeout,
        chrono::Utc::now(),
    )
    .await?;
    ctx.reply(&ServerMessage::SessionCreated { request_id: request.request_id, session: session_view(&session) });
    Ok(())
}
