//! What a connection does with a client's frame: [`dispatch`] parses it (the only place text
//! becomes a [`ClientMessage`]), opens a tracing span for the request and sees that it is
//! answered.
//!
//! The node answers `ping` and `create_session` itself. Every other request is a
//! [`SessionRequest`] and goes, unchanged, to the session's actor, which answers it through the
//! connection's outbound queue; the connection replies itself only when the session cannot be
//! reached (it does not exist for the caller, or cannot be loaded).

mod create_session;

use std::collections::HashMap;
use std::sync::Arc;

use convene_protocol::{ClientMessage, ConnId, ErrorCode, RequestId, ServerMessage, SessionId, SessionRequest};
use tracing::{Instrument as _, debug_span, warn};

use crate::app::App;
use crate::auth::Identity;
use crate::inbox::{Caller, DirectError, Inbox};
use crate::outbound::ConnLink;
use crate::session::{Command, CreateError, RegistryError, SessionError, SessionHandle, Undelivered};

/// What a handler knows about the connection it serves.
#[derive(Debug)]
pub struct ConnCtx {
    pub conn_id: ConnId,
    pub identity: Identity,
    pub link: ConnLink,
    pub app: Arc<App>,
    /// Sessions this connection asked to join; each hears of the connection's departure.
    pub sessions: HashMap<SessionId, SessionHandle>,
    /// The user's inbox on this node: their conversations and notifications.
    pub inbox: Arc<Inbox>,
    /// Whether this connection said which conversation it looks at (forgotten when it closes).
    pub focused: bool,
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
    #[error("too many requests wait for another node's answer; read their answers first")]
    TooManyWaiting,
    #[error(transparent)]
    Direct(#[from] DirectError),
}

impl HandlerError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Session(err) => err.code(),
            Self::Create(err) => err.code(),
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::TooManyWaiting => ErrorCode::RateLimited,
            Self::Direct(err) => err.code(),
        }
    }
}

impl From<RegistryError> for HandlerError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::NotFound => Self::Session(SessionError::NotFound),
            RegistryError::Store(_) | RegistryError::Bus(_) => Self::Unavailable,
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
    if let Some(request_id) = &request_id {
        ctx.link.reuse_request_id(request_id);
    }
    let span = debug_span!("request", kind = message.kind(), conn_id = %ctx.conn_id, user_id = %ctx.identity.user_id, request_id = request_id.as_ref().map(|r| r.as_str()));
    let result = async {
        match message {
            ClientMessage::Ping(ping) => {
                ctx.reply(&ServerMessage::Pong { request_id: ping.request_id });
                Ok(())
            }
            ClientMessage::CreateSession(create) => create_session::handle(ctx, create).await,
            ClientMessage::Session(request) => ctx.forward(request).await,
            ClientMessage::User(request) => {
                let caller = Caller {
                    conn: ctx.conn_id,
                    identity: &ctx.identity,
                    link: &ctx.link,
                    inbox: &ctx.inbox,
                    focused: &mut ctx.focused,
                };
                Ok(crate::inbox::handle(&ctx.app.inboxes, caller, request).await?)
            }
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

    /// Hands a request to its session's actor, here or on its owner node, which answers it.
    async fn forward(&mut self, request: SessionRequest) -> Result<(), HandlerError> {
        let session_id = request.session_id();
        let request_id = request.request_id().cloned();
        let joining = matches!(request, SessionRequest::JoinSession(_));
        let leaving = matches!(request, SessionRequest::LeaveSession(_));
        let command = Command::Request { conn: self.conn_id, identity: self.identity, request };
        if joining {
            return self.join(session_id, request_id.as_ref(), command).await;
        }
        let mut command = command;
        let mut handle = match self.sessions.get(&session_id) {
            Some(handle) => handle.clone(),
            None => self.app.registry.get(session_id).await?,
        };
        // The actor this connection knew may have stopped (the session was released, or lost
        // to another owner) and handed the connection on: the session's next actor answers.
        for attempt in 0..2 {
            match self.send(&handle, request_id.as_ref(), command).await? {
                Ok(()) => break,
                Err(Undelivered::Stopped(returned)) if attempt == 0 => {
                    command = *returned;
                    handle = self.app.registry.get(session_id).await?;
                    if self.sessions.contains_key(&session_id) {
                        self.sessions.insert(session_id, handle.clone());
                    }
                }
                Err(Undelivered::Stopped(_)) => return Err(HandlerError::Unavailable),
                Err(Undelivered::Unreachable(err)) => {
                    warn!(error = %err, %session_id, "the session's owner is out of reach");
                    return Err(HandlerError::Unavailable);
                }
            }
        }
        if leaving {
            self.sessions.remove(&session_id);
        }
        Ok(())
    }

    /// Joins (or, with `resume`, rejoins) a session. The session's actor decides between
    /// admitting, the lobby and refusal, and answers the connection itself.
    async fn join(
        &mut self,
        session_id: SessionId,
        request_id: Option<&RequestId>,
        command: Command,
    ) -> Result<(), HandlerError> {
        let mut command = command;
        // An actor that stops just as the join arrives hands it back; the next one takes it.
        for _attempt in 0..2 {
            let handle = self.app.registry.get(session_id).await?;
            match self.send(&handle, request_id, command).await? {
                Ok(()) => {
                    self.sessions.insert(session_id, handle);
                    return Ok(());
                }
                Err(Undelivered::Stopped(returned)) => command = *returned,
                Err(Undelivered::Unreachable(err)) => {
                    warn!(error = %err, %session_id, "the session's owner is out of reach");
                    return Err(HandlerError::Unavailable);
                }
            }
        }
        Err(HandlerError::Unavailable)
    }

    /// Sends a request to its session. One sent to another node is noted first, so that it
    /// is answered even if that node is lost before it answers (see [`crate::awaiting`]).
    async fn send(
        &self,
        handle: &SessionHandle,
        request_id: Option<&RequestId>,
        command: Command,
    ) -> Result<Result<(), Undelivered>, HandlerError> {
        let awaited = match (handle, request_id) {
            (SessionHandle::Remote(remote), Some(request_id)) => {
                if !self.link.expect_answer(request_id, remote.waiter()) {
                    return Err(HandlerError::TooManyWaiting);
                }
                Some(request_id)
            }
            _ => None,
        };
        let sent = handle.send(command).await;
        if let (Err(_), Some(request_id)) = (&sent, awaited) {
            self.link.forget_answer(request_id);
        }
        Ok(sent)
    }
}
