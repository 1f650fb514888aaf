//! `join_session`: joins (or, with `resume`, rejoins) a session. The session's actor decides
//! between admitting, the lobby and refusal, and answers the connection itself.

use convene_protocol::JoinSession;

use super::{ConnCtx, HandlerError};
use crate::session::{Mail, SessionError};

/// Rooms a resume may name: far more than a session has, few enough to bound the work.
const MAX_RESUME_ROOMS: usize = 64;

pub async fn handle(ctx: &mut ConnCtx, request: JoinSession) -> Result<(), HandlerError> {
    if request.resume.len() > MAX_RESUME_ROOMS {
        return Err(HandlerError::Invalid("resume names too many rooms (at most 64)"));
    }
    if request.resume.iter().any(|cursor| cursor.last_seq < 0) {
        return Err(HandlerError::Invalid("last_seq must not be negative"));
    }
    let mut mail = Mail::Join {
        link: ctx.link.clone(),
        identity: ctx.identity,
        request_id: request.request_id,
        resume: request.resume,
    };
    // An actor that stops just as the mail arrives hands back the mail; the next one takes it.
    for _attempt in 0..2 {
        let handle = ctx.app.registry.get(request.session_id).await?;
        if handle.organization_id != ctx.identity.organization_id {
            // Another organization's session: indistinguishable from one that does not exist.
            return Err(SessionError::NotFound.into());
        }
        match handle.send(mail).await {
            Ok(()) => {
                ctx.sessions.insert(request.session_id, handle);
                return Ok(());
            }
            Err(returned) => mail = returned,
        }
    }
    Err(HandlerError::Unavailable)
}
