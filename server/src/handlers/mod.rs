//! Request handlers: one file per client message kind, all dispatched from [`dispatch`], which
//! parses the frame (the only place text becomes a [`ClientMessage`]), opens a tracing span
//! for the request and turns a handler's error into an error reply naming the request.
//!
//! Handlers run on the connection's task. Session-scoped requests are forwarded to the session's
//! actor, which replies through the connection's outbound queue; a handler replies itself only
//! to what it settles on its own (parse errors, `ping`, `create_session`, requests for a session
//! the connection is not in).

mod admit_participant;
mod ask_for_help;
mod assign_participants;
mod broadcast;
mod close_breakout_rooms;
mod create_breakout_rooms;
mod create_session;
mod delete_breakout_room;
mod delete_message;
mod deny_participant;
mod edit_message;
mod end_session;
mod fetch_history;
mod join_session;
mod leave_session;
mod move_participant;
mod open_breakouts;
mod ping;
mod plan_breakouts;
mod remove_participant;
mod resolve_help;
mod select_room;
mod send_message;
mod set_breakout_options;
mod set_lobby;
mod set_role;
mod set_status;
mod swap_participants;
mod typing;
mod update_breakout_room;

use std::collections::HashMap;
use std::sync::Arc;

use convene_protocol::{ClientMessage, ConnId, ErrorCode, ServerMessage, SessionId};
use tracing::{Instrument as _, debug_span};

use crate::app::App;
use crate::auth::Identity;
use crate::outbound::ConnLink;
use crate::session::{Command, CreateError, Mail, RegistryError, SessionError, SessionHandle};

/// What a handler knows about the connection it serves.
#[derive(Debug)]
pub struct ConnCtx {
    pub conn_id: ConnId,
    pub identity: Identity,
    pub link: ConnLink,
    pub app: Arc<App>,
    /// Sessions this connection asked to join; each hears of the connection's departure.
    pub sessions: HashMap<SessionId, SessionHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the session could not be loaded; retry")]
    Unavailable,
}

impl HandlerError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Session(err) => err.code(),
            Self::Create(err) => err.code(),
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::Unavailable => ErrorCode::Unavailable,
        }
    }
}

impl From<RegistryError> for HandlerError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::NotFound => Self::Session(SessionError::NotFound),
            RegistryError::Store(_) => Self::Unavailable,
        }
    }
}

/// Handles one text frame from the client.
pub async fn dispatch(ctx: &mut ConnCtx, text: &str) {
    let message = match ClientMessage::parse(text) {
        Ok(message) => message,
        Err(err) => {
            ctx.reply(&ServerMessage::error(err.request_id, err.code, err.reason));
            return;
        }
    };
    let request_id = message.request_id().cloned();
    let span = debug_span!("request", kind = message.kind(), conn_id = %ctx.conn_id, user_id = %ctx.identity.user_id, request_id = request_id.as_ref().map(|r| r.as_str()));
    let result = async {
        match message {
            ClientMessage::Ping(m) => ping::handle(ctx, m),
            ClientMessage::CreateSession(m) => create_session::handle(ctx, m).await,
            ClientMessage::JoinSession(m) => join_session::handle(ctx, m).await,
            ClientMessage::LeaveSession(m) => leave_session::handle(ctx, m).await,
            ClientMessage::EndSession(m) => end_session::handle(ctx, m).await,
            ClientMessage::AdmitParticipant(m) => admit_participant::handle(ctx, m).await,
            ClientMessage::DenyParticipant(m) => deny_participant::handle(ctx, m).await,
            ClientMessage::SetLobby(m) => set_lobby::handle(ctx, m).await,
            ClientMessage::SetRole(m) => set_role::handle(ctx, m).await,
            ClientMessage::RemoveParticipant(m) => remove_participant::handle(ctx, m).await,
            ClientMessage::SetStatus(m) => set_status::handle(ctx, m).await,
            ClientMessage::SendMessage(m) => send_message::handle(ctx, m).await,
            ClientMessage::EditMessage(m) => edit_message::handle(ctx, m).await,
            ClientMessage::DeleteMessage(m) => delete_message::handle(ctx, m).await,
            ClientMessage::FetchHistory(m) => fetch_history::handle(ctx, m).await,
            ClientMessage::Typing(m) => typing::handle(ctx, m).await,
            ClientMessage::CreateBreakoutRooms(m) => create_breakout_rooms::handle(ctx, m).await,
            ClientMessage::UpdateBreakoutRoom(m) => update_breakout_room::handle(ctx, m).await,
            ClientMessage::DeleteBreakoutRoom(m) => delete_breakout_room::handle(ctx, m).await,
            ClientMessage::SetBreakoutOptions(m) => set_breakout_options::handle(ctx, m).await,
            ClientMessage::PlanBreakouts(m) => plan_breakouts::handle(ctx, m).await,
            ClientMessage::OpenBreakouts(m) => open_breakouts::handle(ctx, m).await,
            ClientMessage::MoveParticipant(m) => move_participant::handle(ctx, m).await,
            ClientMessage::AssignParticipants(m) => assign_participants::handle(ctx, m).await,
            ClientMessage::SwapParticipants(m) => swap_participants::handle(ctx, m).await,
            ClientMessage::SelectRoom(m) => select_room::handle(ctx, m).await,
            ClientMessage::CloseBreakoutRooms(m) => close_breakout_rooms::handle(ctx, m).await,
            ClientMessage::Broadcast(m) => broadcast::handle(ctx, m).await,
            ClientMessage::AskForHelp(m) => ask_for_help::handle(ctx, m).await,
            ClientMessage::ResolveHelp(m) => resolve_help::handle(ctx, m).await,
        }
    }
    .instrument(span)
    .await;
    if let Err(err) = result {
        ctx.reply(&ServerMessage::error(request_id, err.code(), err.to_string()));
    }
}

impl ConnCtx {
    /// Queues a reply to this connection, behind whatever is already queued for it.
    pub fn reply(&self, message: &ServerMessage) {
        // A full queue closes the connection as slow; there is nobody left to tell.
        self.link.send(message);
    }

    /// Hands a command to the session's actor, which answers it. Sessions of another
    /// organization are answered here: they do not exist for this caller.
    async fn forward(&mut self, session_id: SessionId, command: Command) -> Result<(), HandlerError> {
        let handle = match self.sessions.get(&session_id) {
            Some(handle) => handle.clone(),
            None => self.app.registry.get(session_id).await?,
        };
        if handle.organization_id != self.identity.organization_id {
            return Err(SessionError::NotFound.into());
        }
        if handle.send(Mail::Command(command)).await.is_err() {
            // The actor stopped: the session ended, or it was released with nobody attached.
            self.sessions.remove(&session_id);
            return Err(SessionError::NotMember.into());
        }
        Ok(())
    }
}
