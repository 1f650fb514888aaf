//! Messages a client sends. [`ClientMessage::parse`] is the one place where text becomes a typed
//! request; everything downstream works with these types and never sees JSON.

use serde::{Deserialize, Serialize, Serializer};

use crate::ErrorCode;
use crate::direct::{UserRequest, UserRequestKind};
use crate::ids::{ClientMsgId, MessageId, RequestId, RoomId, SessionId, UserId};
use crate::presence::HeldRoster;
use crate::request::{SessionRequest, SessionRequestKind};
use crate::server::{PresenceStatus, SessionRole, SessionType};

/// Every request a client may send, tagged by `type`: the two the node answers itself, the
/// requests addressed to a session ([`SessionRequest`]), which go to that session's owner, and
/// those about the caller's own conversations and notifications ([`UserRequest`]).
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    Ping(Ping),
    CreateSession(CreateSession),
    Session(SessionRequest),
    User(UserRequest),
}

/// The kinds the node answers itself, tagged as on the wire.
#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum NodeRequest {
    Ping(Ping),
    CreateSession(CreateSession),
}

/// Which enum a frame's `type` belongs to.
enum Family {
    Node,
    Session,
    User,
}

/// Borrowing twin of [`NodeRequest`], to serialize without cloning.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum NodeRequestRef<'a> {
    Ping(&'a Ping),
    CreateSession(&'a CreateSession),
}

impl Serialize for ClientMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Ping(ping) => NodeRequestRef::Ping(ping).serialize(serializer),
            Self::CreateSession(create) => NodeRequestRef::CreateSession(create).serialize(serializer),
            Self::Session(request) => request.serialize(serializer),
            Self::User(request) => request.serialize(serializer),
        }
    }
}

/// Asks for a `pong`; lets a client measure round trips through the server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Ping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

/// Creates a session; only hosts (therapist, mentor, admin) may.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RoomCursor {
    pub room_id: RoomId,
    /// The last sequence number the client saw in that room.
    pub last_seq: i64,
}

/// Joins a session (or rejoins it after a reconnect, with `resume`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct JoinSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    /// Rooms the client was in and the last sequence it saw in each; missed messages are replayed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume: Vec<RoomCursor>,
    /// Rosters the client holds (the version of each, from `joined`, `moved` or
    /// `presence_changed`): a roster named here is answered with what changed since, when the
    /// server can still tell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rosters: Vec<HeldRoster>,
    /// This device takes part in its room's video: it is told which peer connections to open
    /// and close (`peers_changed`), and the others' devices connect to it. A device that only
    /// chats (or a load generator) leaves it out, and nobody tries to reach it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub video: bool,
}

impl JoinSession {
    /// Rooms a resume may name: far more than a session has, few enough to bound the work.
    pub const MAX_RESUME_ROOMS: usize = 64;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LeaveSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
}

/// Ends the session for everyone; hosts only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EndSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
}

/// Lets a user waiting in the lobby in; hosts only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AdmitParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
}

/// Turns away a user waiting in the lobby; hosts only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DenyParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
}

/// Makes a member of the session a co-host, or a co-host a participant again; hosts only. The
/// session's creator stays its host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RemoveParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
}

/// Turns the lobby on or off for later joiners; hosts only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SetLobby {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub enabled: bool,
}

/// Changes the caller's presence status in a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub status: PresenceStatus,
}

/// Posts a chat message to a room the caller is in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
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

impl FetchHistory {
    /// Largest page a client may ask for.
    pub const MAX_LIMIT: u32 = 100;
    /// The page size when the client names none.
    pub const DEFAULT_LIMIT: u32 = 50;
}

/// Says the caller started or stopped typing; ephemeral, never stored. Repeats of the same
/// state are coalesced: the room hears a change, and a refresh of `active` at most every few
/// seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
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
    ///
    /// Session requests, nearly all traffic, are read in one pass; only a frame that is not one
    /// pays for a look at its tag and a second read (`ping`, `create_session`, a request about
    /// the caller's conversations or notifications, or an error).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let invalid = |err: serde_json::Error| {
            // Only the failure path pays for a lenient read that recovers the request id.
            let request_id = Self::request_id_of(text);
            ParseError { request_id, code: ErrorCode::Invalid, reason: err.to_string() }
        };
        match serde_json::from_str::<SessionRequest>(text) {
            Ok(request) => match request.validate() {
                Ok(()) => Ok(Self::Session(request)),
                Err(reason) => Err(ParseError {
                    request_id: request.request_id().cloned(),
                    code: ErrorCode::Invalid,
                    reason: reason.to_owned(),
                }),
            },
            Err(err) => match Self::family(text) {
                Family::Node => match serde_json::from_str::<NodeRequest>(text) {
                    Ok(NodeRequest::Ping(ping)) => Ok(Self::Ping(ping)),
                    Ok(NodeRequest::CreateSession(create)) => Ok(Self::CreateSession(create)),
                    Err(node_err) => Err(invalid(node_err)),
                },
                Family::User => match serde_json::from_str::<UserRequest>(text) {
                    Ok(request) => match request.validate() {
                        Ok(()) => Ok(Self::User(request)),
                        Err(reason) => Err(ParseError {
                            request_id: request.request_id().cloned(),
                            code: ErrorCode::Invalid,
                            reason: reason.to_owned(),
                        }),
                    },
                    Err(user_err) => Err(invalid(user_err)),
                },
                Family::Session => Err(invalid(err)),
            },
        }
    }

    /// Which family a frame's `type` belongs to (a session's, when it names none it knows).
    fn family(text: &str) -> Family {
        #[derive(Deserialize)]
        struct Tag<'a> {
            #[serde(rename = "type", borrow, default)]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        let Ok(Tag { kind: Some(kind) }) = serde_json::from_str::<Tag<'_>>(text) else { return Family::Session };
        if matches!(kind.as_ref(), "ping" | "create_session") {
            return Family::Node;
        }
        use strum::IntoEnumIterator as _;
        if UserRequestKind::iter().any(|user| <&str>::from(user) == kind.as_ref()) {
            return Family::User;
        }
        Family::Session
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
            Self::Ping(ping) => ping.request_id.as_ref(),
            Self::CreateSession(create) => create.request_id.as_ref(),
            Self::Session(request) => request.request_id(),
            Self::User(request) => request.request_id(),
        }
    }

    /// The message's `type` tag, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ping(_) => "ping",
            Self::CreateSession(_) => "create_session",
            Self::Session(request) => request.kind(),
            Self::User(request) => request.kind(),
        }
    }

    /// Every `type` a client may send.
    pub fn kinds() -> impl Iterator<Item = &'static str> {
        use strum::IntoEnumIterator as _;
        ["ping", "create_session"]
            .into_iter()
            .chain(SessionRequestKind::iter().map(<&str>::from))
            .chain(UserRequestKind::iter().map(<&str>::from))
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
            Ok(ClientMessage::Session(SessionRequest::JoinSession(JoinSession {
                request_id: RequestId::new("r1"),
                session_id: SessionId(session),
                resume: vec![],
                rosters: vec![],
                video: false,
            })))
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
            (r#"{"type":"ping","request_id":5}"#, None),
            (r#"{"type":"create_session","request_id":"r4"}"#, Some("r4")),
            (
                r#"{"type":"fetch_history","request_id":"r5","session_id":"00000000-0000-0000-0000-000000000000","room_id":"00000000-0000-0000-0000-000000000000","limit":0}"#,
                Some("r5"),
            ),
        ];
        for (text, request_id) in cases {
            let err = ClientMessage::parse(text).expect_err(text);
            assert_eq!(err.code, ErrorCode::Invalid, "{text}");
            assert_eq!(err.request_id.as_ref().map(RequestId::as_str), request_id, "{text}");
        }
    }

    #[test]
    fn kinds_are_the_wire_tags() {
        let kinds: Vec<&str> = ClientMessage::kinds().collect();
        assert_eq!(kinds.len(), 48);
        for kind in ["join_session", "resolve_help", "send_signal", "fetch_roster", "ping"] {
            assert!(kinds.contains(&kind), "{kind}");
        }
        let ping = ClientMessage::parse(r#"{"type":"ping"}"#).expect("parses");
        assert_eq!(ping.kind(), "ping");
    }

    #[test]
    fn every_kind_serializes_with_its_tag_and_parses_back() {
        let session = SessionId(Uuid::new_v4());
        let messages = [
            ClientMessage::Ping(Ping { request_id: RequestId::new("p") }),
            ClientMessage::CreateSession(CreateSession {
                request_id: None,
                session_type: SessionType::Group,
                room_name: None,
                invitees: vec![],
                lobby_enabled: true,
            }),
            ClientMessage::Session(LeaveSession { request_id: RequestId::new("l"), session_id: session }.into()),
            ClientMessage::Session(
                crate::SendSignal {
                    request_id: RequestId::new("s"),
                    session_id: session,
                    to_user_id: crate::UserId(Uuid::new_v4()),
                    to_device: None,
                    signal: Box::new(crate::Signal::Answer { sdp: "v=0".to_owned() }),
                }
                .into(),
            ),
        ];
        for message in messages {
            let text = serde_json::to_string(&message).expect("encodes");
            assert!(text.contains(&format!(r#""type":"{}""#, message.kind())), "{text}");
            assert_eq!(ClientMessage::parse(&text), Ok(message));
        }
    }

    #[test]
    fn over_long_client_tokens_are_rejected() {
        let long = "x".repeat(65);
        let text = format!(r#"{{"type":"ping","request_id":"{long}"}}"#);
        assert!(ClientMessage::parse(&text).is_err());
    }
}
