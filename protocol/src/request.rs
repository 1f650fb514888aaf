//! [`SessionRequest`]: every request addressed to one session, as the client sent it.
//!
//! The typed request *is* the session's command: the server hands it to the session's owner
//! unchanged (on this node or, serialized, on another), and the owner matches on it once. Its
//! shape is checked when it is parsed ([`SessionRequest::validate`]), so the owner receives only
//! requests that make sense on their face.

use serde::{Deserialize, Serialize};
use strum::{EnumDiscriminants, EnumIter, IntoStaticStr};

use crate::breakout::{
    AskForHelp, AssignParticipants, Broadcast, CloseBreakoutRooms, CreateBreakoutRooms, DeleteBreakoutRoom,
    MoveParticipant, OpenBreakouts, PlanBreakouts, ResolveHelp, SelectRoom, SetBreakoutOptions, SwapParticipants,
    UpdateBreakoutRoom,
};
use crate::client::{
    AdmitParticipant, DeleteMessage, DenyParticipant, EditMessage, EndSession, FetchHistory, JoinSession, LeaveSession,
    RemoveParticipant, SendMessage, SetLobby, SetRole, SetStatus, Typing,
};
use crate::ids::{RequestId, SessionId};
use crate::media::SendSignal;
use crate::presence::FetchRoster;

/// A request to one session, tagged by `type` like every client message.
/// [`SessionRequestKind`] names the kinds without their payloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, EnumDiscriminants)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum_discriminants(name(SessionRequestKind), derive(Hash, EnumIter, IntoStaticStr))]
#[strum_discriminants(strum(serialize_all = "snake_case"))]
pub enum SessionRequest {
    JoinSession(JoinSession),
    LeaveSession(LeaveSession),
    EndSession(EndSession),
    AdmitParticipant(AdmitParticipant),
    DenyParticipant(DenyParticipant),
    SetRole(SetRole),
    RemoveParticipant(RemoveParticipant),
    SetLobby(SetLobby),
    SetStatus(SetStatus),
    SendMessage(SendMessage),
    EditMessage(EditMessage),
    DeleteMessage(DeleteMessage),
    FetchHistory(FetchHistory),
    FetchRoster(FetchRoster),
    Typing(Typing),
    CreateBreakoutRooms(CreateBreakoutRooms),
    UpdateBreakoutRoom(UpdateBreakoutRoom),
    DeleteBreakoutRoom(DeleteBreakoutRoom),
    SetBreakoutOptions(SetBreakoutOptions),
    PlanBreakouts(PlanBreakouts),
    OpenBreakouts(OpenBreakouts),
    MoveParticipant(MoveParticipant),
    AssignParticipants(AssignParticipants),
    SwapParticipants(SwapParticipants),
    SelectRoom(SelectRoom),
    CloseBreakoutRooms(CloseBreakoutRooms),
    Broadcast(Broadcast),
    AskForHelp(AskForHelp),
    ResolveHelp(ResolveHelp),
    SendSignal(SendSignal),
}

/// Applies `$body` to the payload of whichever request `$request` is (every payload names its
/// session and its request id in the same fields).
macro_rules! each_payload {
    ($request:expr, $payload:ident => $body:expr) => {
        match $request {
            SessionRequest::JoinSession($payload) => $body,
            SessionRequest::LeaveSession($payload) => $body,
            SessionRequest::EndSession($payload) => $body,
            SessionRequest::AdmitParticipant($payload) => $body,
            SessionRequest::DenyParticipant($payload) => $body,
            SessionRequest::SetRole($payload) => $body,
            SessionRequest::RemoveParticipant($payload) => $body,
            SessionRequest::SetLobby($payload) => $body,
            SessionRequest::SetStatus($payload) => $body,
            SessionRequest::SendMessage($payload) => $body,
            SessionRequest::EditMessage($payload) => $body,
            SessionRequest::DeleteMessage($payload) => $body,
            SessionRequest::FetchHistory($payload) => $body,
            SessionRequest::FetchRoster($payload) => $body,
            SessionRequest::Typing($payload) => $body,
            SessionRequest::CreateBreakoutRooms($payload) => $body,
            SessionRequest::UpdateBreakoutRoom($payload) => $body,
            SessionRequest::DeleteBreakoutRoom($payload) => $body,
            SessionRequest::SetBreakoutOptions($payload) => $body,
            SessionRequest::PlanBreakouts($payload) => $body,
            SessionRequest::OpenBreakouts($payload) => $body,
            SessionRequest::MoveParticipant($payload) => $body,
            SessionRequest::AssignParticipants($payload) => $body,
            SessionRequest::SwapParticipants($payload) => $body,
            SessionRequest::SelectRoom($payload) => $body,
            SessionRequest::CloseBreakoutRooms($payload) => $body,
            SessionRequest::Broadcast($payload) => $body,
            SessionRequest::AskForHelp($payload) => $body,
            SessionRequest::ResolveHelp($payload) => $body,
            SessionRequest::SendSignal($payload) => $body,
        }
    };
}

/// `From<Payload> for SessionRequest`, so a payload becomes a request with `.into()`.
macro_rules! from_payloads {
    ($($payload:ident),* $(,)?) => {
        $(impl From<$payload> for SessionRequest {
            fn from(payload: $payload) -> Self {
                Self::$payload(payload)
            }
        })*
    };
}

from_payloads!(
    JoinSession,
    LeaveSession,
    EndSession,
    AdmitParticipant,
    DenyParticipant,
    SetRole,
    RemoveParticipant,
    SetLobby,
    SetStatus,
    SendMessage,
    EditMessage,
    DeleteMessage,
    FetchHistory,
    FetchRoster,
    Typing,
    CreateBreakoutRooms,
    UpdateBreakoutRoom,
    DeleteBreakoutRoom,
    SetBreakoutOptions,
    PlanBreakouts,
    OpenBreakouts,
    MoveParticipant,
    AssignParticipants,
    SwapParticipants,
    SelectRoom,
    CloseBreakoutRooms,
    Broadcast,
    AskForHelp,
    ResolveHelp,
    SendSignal,
);

impl SessionRequest {
    /// The session the request is for.
    pub fn session_id(&self) -> SessionId {
        each_payload!(self, payload => payload.session_id)
    }

    /// The request id the client attached, if any.
    pub fn request_id(&self) -> Option<&RequestId> {
        each_payload!(self, payload => payload.request_id.as_ref())
    }

    /// The request's `type` tag, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        SessionRequestKind::from(self).into()
    }

    /// Checks what can be checked without the session: bounds and combinations of fields.
    /// [`crate::ClientMessage::parse`] refuses a request that fails, as `invalid`.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            Self::JoinSession(join) => {
                if join.resume.len() > JoinSession::MAX_RESUME_ROOMS {
                    return Err("resume names too many rooms (at most 64)");
                }
                if join.resume.iter().any(|cursor| cursor.last_seq < 0) {
                    return Err("last_seq must not be negative");
                }
                if join.rosters.len() > JoinSession::MAX_RESUME_ROOMS {
                    return Err("rosters names too many rooms (at most 64)");
                }
                Ok(())
            }
            Self::FetchHistory(fetch) => {
                if fetch.before_seq.is_some() && fetch.after_seq.is_some() {
                    return Err("give before_seq or after_seq, not both");
                }
                if fetch.limit.is_some_and(|limit| limit == 0 || limit > FetchHistory::MAX_LIMIT) {
                    return Err("limit must be 1 to 100");
                }
                Ok(())
            }
            Self::FetchRoster(fetch) => {
                if fetch.limit.is_some_and(|limit| limit == 0 || limit > FetchRoster::MAX_LIMIT) {
                    return Err("limit must be 1 to 500");
                }
                Ok(())
            }
            Self::SendSignal(send) => send.signal.validate(),
            _ => Ok(()),
        }
    }
}
