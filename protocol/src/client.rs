//! Messages a client sends. [`ClientMessage::parse`] is the one place where text becomes a typed
//! request; everything downstream works with these types and never sees JSON.

use serde::{Deserialize, Serialize};
use strum::{EnumDiscriminants, EnumIter, IntoStaticStr};

use crate::ErrorCode;
use crate::breakout::{
    AskForHelp, AssignParticipants, Broadcast, CloseBreakoutRooms, CreateBreakoutRooms, DeleteBreakoutRoom,
    MoveParticipant, OpenBreakouts, PlanBreakouts, ResolveHelp, SelectRoom, SetBreakoutOptions, SwapParticipants,
    UpdateBreakoutRoom,
};
use crate::ids::{ClientMsgId, MessageId, RequestId, RoomId, SessionId, UserId};
use crate::server::{PresenceStatus, SessionRole, SessionType};

/// Every request a client may send, tagged by `type`. [`ClientMessageKind`] names the kinds
/// without their payloads (and can list them all, so tests cover a kind the day it is added).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, EnumDiscriminants)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum_discriminants(name(ClientMessageKind), derive(Hash, EnumIter, IntoStaticStr))]
#[strum_discriminants(strum(serialize_all = "snake_case"))]
pub enum ClientMessage {
    Ping(Ping),
    CreateSession(CreateSession),
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
}

/// Asks for a `pong`; lets a client measure round trips through the server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

/// Creates a session; only hosts (therapist, mentor, admin) may.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_type: SessionType,
    /// Unique across the server; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_name: Option<String>,
    /// Users invited to an appointment session; only they (and hosts) may join it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invitees: Vec<UserId>,
    /// Whether joiners wait in a lobby; appointment sessions always have one.
    #[serde(default)]
    pub lobby_enabled: bool,
}

/// Where a reconnecting client stopped reading a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCursor {
    pub room_id: RoomId,
    /// The last sequence number the client saw in that room.
    pub last_seq: i64,
}

/// Joins a session (or rejoins it after a reconnect, with `resume`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    /// Rooms the client was in and the last sequence it saw in each; missed messages are replayed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume: Vec<RoomCursor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaveSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
}

/// Ends the session for everyone; hosts only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
}

/// Lets a user waiting in the lobby in; hosts only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdmitParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
}

/// Turns away a user waiting in the lobby; hosts only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenyParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
}

/// Makes a member of the session a co-host, or a co-host a participant again; hosts only. The
/// session's creator stays its host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetRole {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
    /// `co_host` or `participant`.
    pub role: SessionRole,
}

/// Removes someone from the session (all their devices); hosts only. They may come back only
/// through the lobby, when a host admits them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoveParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
}

/// Turns the lobby on or off for later joiners; hosts only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetLobby {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub enabled: bool,
}

/// Changes the caller's presence status in a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub status: PresenceStatus,
}

/// Posts a chat message to a room the caller is in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
    /// Makes the send idempotent: a retry with the same id returns the first acknowledgement.
    pub client_msg_id: ClientMsgId,
    pub body: String,
}

/// Replaces the body of one's own message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EditMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub body: String,
}

/// Deletes (softly) one's own message, or any message when the caller hosts the session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeleteMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
    pub message_id: MessageId,
}

/// Pages through a room's history: backwards from `before_seq`, or forwards from `after_seq`.
/// With neither, returns the latest messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FetchHistory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<i64>,
    /// At most 100; 50 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Says the caller started or stopped typing; ephemeral, never stored. Repeats of the same
/// state are coalesced: the room hears a change, and a refresh of `active` at most every few
/// seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Typing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
    pub active: bool,
}

/// Why a frame could not become a [`ClientMessage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The frame's `request_id`, when it had a readable one, so the error can name the request.
    pub request_id: Option<RequestId>,
    pub code: ErrorCode,
    /// What was wrong with the client's own input (serde's description of it).
    pub reason: String,
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        serde_json::from_str(text).map_err(|err| {
            // Only the failure path pays for a second, lenient read that recovers the request id.
            let request_id = Self::request_id_of(text);
            ParseError { request_id, code: ErrorCode::Invalid, reason: err.to_string() }
        })
    }

    /// The `request_id` of a frame, read leniently (the rest of the frame may be anything), so
    /// that a frame refused before it is parsed can still be answered by name.
    pub fn request_id_of(text: &str) -> Option<RequestId> {
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(default)]
            request_id: Option<serde_json::Value>,
        }
        serde_json::from_str::<Envelope>(text)
            .ok()
            .and_then(|envelope| envelope.request_id)
            .and_then(|value| value.as_str().and_then(RequestId::new))
    }

    /// The request id the client attached, if any.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            Self::Ping(m) => m.request_id.as_ref(),
            Self::CreateSession(m) => m.request_id.as_ref(),
            Self::JoinSession(m) => m.request_id.as_ref(),
            Self::LeaveSession(m) => m.request_id.as_ref(),
            Self::EndSession(m) => m.request_id.as_ref(),
            Self::AdmitParticipant(m) => m.request_id.as_ref(),
            Self::DenyParticipant(m) => m.request_id.as_ref(),
            Self::SetRole(m) => m.request_id.as_ref(),
            Self::RemoveParticipant(m) => m.request_id.as_ref(),
            Self::SetLobby(m) => m.request_id.as_ref(),
            Self::SetStatus(m) => m.request_id.as_ref(),
            Self::SendMessage(m) => m.request_id.as_ref(),
            Self::EditMessage(m) => m.request_id.as_ref(),
            Self::DeleteMessage(m) => m.request_id.as_ref(),
            Self::FetchHistory(m) => m.request_id.as_ref(),
            Self::Typing(m) => m.request_id.as_ref(),
            Self::CreateBreakoutRooms(m) => m.request_id.as_ref(),
            Self::UpdateBreakoutRoom(m) => m.request_id.as_ref(),
            Self::DeleteBreakoutRoom(m) => m.request_id.as_ref(),
            Self::SetBreakoutOptions(m) => m.request_id.as_ref(),
            Self::PlanBreakouts(m) => m.request_id.as_ref(),
            Self::OpenBreakouts(m) => m.request_id.as_ref(),
            Self::MoveParticipant(m) => m.request_id.as_ref(),
            Self::AssignParticipants(m) => m.request_id.as_ref(),
            Self::SwapParticipants(m) => m.request_id.as_ref(),
            Self::SelectRoom(m) => m.request_id.as_ref(),
            Self::CloseBreakoutRooms(m) => m.request_id.as_ref(),
            Self::Broadcast(m) => m.request_id.as_ref(),
            Self::AskForHelp(m) => m.request_id.as_ref(),
            Self::ResolveHelp(m) => m.request_id.as_ref(),
        }
    }

    /// The message's `type` tag, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        ClientMessageKind::from(self).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn parses_a_tagged_request() {
        let session = Uuid::new_v4();
        let text = format!(r#"{{"type":"join_session","request_id":"r1","session_id":"{session}"}}"#);
        let parsed = ClientMessage::parse(&text);
        assert_eq!(
            parsed,
            Ok(ClientMessage::JoinSession(JoinSession {
                request_id: RequestId::new("r1"),
                session_id: SessionId(session),
                resume: vec![],
            }))
        );
    }

    #[test]
    fn malformed_frames_are_invalid_and_keep_the_request_id_when_readable() {
        let cases = [
            (r#"{"type":"join_session","request_id":"r2","session_id":"nope"}"#, Some("r2")),
            (r#"{"type":"no_such_type","request_id":"r3"}"#, Some("r3")),
            (r#"{"type":"send_message","request_id":7}"#, None),
            ("not json at all", None),
            (r#"{"type":"ping","request_id":""}"#, None),
        ];
        for (text, request_id) in cases {
            let err = ClientMessage::parse(text).expect_err(text);
            assert_eq!(err.code, ErrorCode::Invalid, "{text}");
            assert_eq!(err.request_id.as_ref().map(RequestId::as_str), request_id, "{text}");
        }
    }

    #[test]
    fn kinds_are_the_wire_tags() {
        use strum::IntoEnumIterator as _;
        let kinds: Vec<&str> = ClientMessageKind::iter().map(<&str>::from).collect();
        assert_eq!(kinds.len(), 30);
        assert!(kinds.contains(&"join_session") && kinds.contains(&"resolve_help"));
        let ping = ClientMessage::parse(r#"{"type":"ping"}"#).expect("parses");
        assert_eq!(ping.kind(), "ping");
    }

    #[test]
    fn over_long_client_tokens_are_rejected() {
        let long = "x".repeat(65);
        let text = format!(r#"{{"type":"ping","request_id":"{long}"}}"#);
        assert!(ClientMessage::parse(&text).is_err());
    }
}
