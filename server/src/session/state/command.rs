//! What a session is asked to do: requests from connections, a connection's departure, and
//! what the session tells itself (its clock, the outcomes of its own writes).

use convene_protocol::{ClientMsgId, ConnId, NodeId, RequestId, RoomId, SessionRequest, UserId};

use super::*;

/// What a session is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A request from a connection, exactly as its client sent it. `identity` is who the
    /// connection authenticated as: a join is decided on it; every other request is checked
    /// against the connection's place in the session.
    Request {
        conn: ConnId,
        identity: Identity,
        request: SessionRequest,
    },
    /// A connection closed (or was closed as slow).
    Disconnect {
        conn: ConnId,
    },
    /// A node stopped answering: its connections are gone.
    NodeGone {
        node: NodeId,
    },
    /// Messages between `here` (this node) and the others were lost: connections of other
    /// nodes may have missed events, or their departures may never arrive. They leave, and
    /// their nodes tell them to join again, resuming.
    RemotesLost {
        here: NodeId,
    },
    Internal(Internal),
}

/// What the session tells itself: its clock, and the outcomes of its own writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Internal {
    /// Timers and countdowns that are due fire.
    Tick,
    /// The outcome of the [`Persist::Staged`] write of the change in flight.
    Committed { result: Result<(), WriteFailed> },
    /// The outcome of a [`Persist::Message`].
    Posted { room: RoomId, sender: UserId, client_msg_id: ClientMsgId, result: Result<InsertOutcome, WriteFailed> },
    /// The outcome of a [`Persist::Edit`] or [`Persist::Delete`].
    Changed {
        conn: ConnId,
        request_id: Option<RequestId>,
        deleted_by: Option<UserId>,
        result: Result<EditOutcome, WriteFailed>,
    },
}

impl From<Internal> for Command {
    fn from(internal: Internal) -> Self {
        Self::Internal(internal)
    }
}

impl Command {
    /// Whether carrying the command out leaves every room's members and their connections as
    /// they were, so the audiences remembered for rooms stay true (see [`super::audiences`]):
    /// posting a message, and the outcome of its write. Every other command may change them.
    pub fn keeps_audiences(&self) -> bool {
        matches!(
            self,
            Self::Request { request: SessionRequest::SendMessage(_), .. } | Self::Internal(Internal::Posted { .. })
        )
    }

    /// Which budget the command draws on, when it is charged before it runs.
    pub(super) fn spend(&self) -> Option<Spend> {
        let Self::Request { request, .. } = self else { return None };
        match request {
            SessionRequest::JoinSession(_) => Some(Spend::Join),
            SessionRequest::SetStatus(_) => Some(Spend::Status),
            SessionRequest::EditMessage(_) | SessionRequest::DeleteMessage(_) => Some(Spend::Chat),
            SessionRequest::FetchHistory(_) | SessionRequest::FetchRoster(_) => Some(Spend::History),
            SessionRequest::Broadcast(_) => Some(Spend::Broadcast),
            SessionRequest::AskForHelp(_) => Some(Spend::Help),
            SessionRequest::SendSignal(_) => Some(Spend::Signal),
            SessionRequest::EndSession(_)
            | SessionRequest::AdmitParticipant(_)
            | SessionRequest::DenyParticipant(_)
            | SessionRequest::SetLobby(_)
            | SessionRequest::SetRole(_)
            | SessionRequest::RemoveParticipant(_)
            | SessionRequest::CreateBreakoutRooms(_)
            | SessionRequest::UpdateBreakoutRoom(_)
            | SessionRequest::DeleteBreakoutRoom(_)
            | SessionRequest::SetBreakoutOptions(_)
            | SessionRequest::PlanBreakouts(_)
            | SessionRequest::OpenBreakouts(_)
            | SessionRequest::MoveParticipant(_)
            | SessionRequest::AssignParticipants(_)
            | SessionRequest::SwapParticipants(_)
            | SessionRequest::SelectRoom(_)
            | SessionRequest::CloseBreakoutRooms(_)
            | SessionRequest::ResolveHelp(_) => Some(Spend::Command),
            // Posts and typing spend in their own handlers, where retries and repeats are told
            // apart first; leaving costs nothing.
            SessionRequest::SendMessage(_) | SessionRequest::Typing(_) | SessionRequest::LeaveSession(_) => None,
        }
    }

    /// Whether this is the outcome of a write refused because the session has a newer owner.
    pub fn was_fenced(&self) -> bool {
        let fenced = Err(WriteFailed::Fenced);
        match self {
            Self::Internal(Internal::Committed { result }) => *result == fenced,
            Self::Internal(Internal::Posted { result, .. }) => result.as_ref().err() == Some(&WriteFailed::Fenced),
            Self::Internal(Internal::Changed { result, .. }) => result.as_ref().err() == Some(&WriteFailed::Fenced),
            _ => false,
        }
    }

    /// Whether this is a connection's `join_session`.
    pub fn is_join(&self) -> bool {
        matches!(self, Self::Request { request: SessionRequest::JoinSession(_), .. })
    }

    /// The connection that asked, and its request id, for error replies.
    pub fn origin(&self) -> (Option<ConnId>, Option<RequestId>) {
        match self {
            Self::Request { conn, request, .. } => (Some(*conn), request.request_id().cloned()),
            Self::Disconnect { .. } | Self::NodeGone { .. } | Self::RemotesLost { .. } | Self::Internal(_) => {
                (None, None)
            }
        }
    }
}
