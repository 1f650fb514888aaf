//! What nodes say to each other, and how it is laid out on the bus.
//!
//! A delivery (one frame for some of a node's connections) is the bulk of the traffic, so it is
//! laid out by hand: a tag, the recipients, then the frame's bytes exactly as the connections
//! will send them, neither escaped nor copied into a wrapper. Everything else is rare and goes
//! as JSON behind its own tag.

use convene_protocol::{ConnId, ConversationId, NodeId, SessionId, SessionRequest, UserId};
use serde::{Deserialize, Serialize};

use crate::auth::Identity;

const DELIVER: u8 = b'D';
const CONTROL: u8 = b'J';
const USERS: u8 = b'U';
/// Bytes of a user id, and of a conversation id.
const UUID_BYTES: usize = 16;
/// Bytes per recipient in a delivery: node and number, big-endian.
const CONN_BYTES: usize = 16;

/// One message from one node to another.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeMessage {
    /// Queue `frame` (an encoded server message) to each of `conns`, all of them on the
    /// receiving node.
    Deliver {
        conns: Vec<ConnId>,
        frame: bytes::Bytes,
    },
    /// An event for the devices of `users`, wherever they are: what the receiving node's
    /// inboxes deliver (see [`crate::inbox`]). Sent to every node; `origin` delivered it to its
    /// own inboxes already and ignores it.
    Users {
        origin: NodeId,
        users: Vec<UserId>,
        kind: UserEventKind,
        frame: bytes::Bytes,
    },
    Control(Control),
}

/// How a user event is ordered: a conversation's message or a change to one (with its
/// sequence), or anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserEventKind {
    Message { conversation: ConversationId, seq: i64 },
    Changed { conversation: ConversationId, seq: i64 },
    Other,
}

/// The rarer messages: what crosses to a session's owner, and what the owner asks of the
/// connections' node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// A connection's request, for the session's owner. `hops` counts forwards, so a request
    /// caught between two nodes that each think the other owns the session is answered, not
    /// passed back and forth.
    Request { session: SessionId, hops: u8, conn: ConnId, identity: Identity, request: SessionRequest },
    /// A connection of the sender closed; it leaves the session.
    Disconnect { session: SessionId, conn: ConnId },
    /// The session let these connections of the receiving node go: they are told
    /// `session_interrupted` and join again.
    Interrupt { session: SessionId, conns: Vec<ConnId> },
}

/// A delivery of `frame` to `conns`, laid out as [`NodeMessage::decode`] reads it.
pub fn encode_delivery(conns: &[ConnId], frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + conns.len() * CONN_BYTES + frame.len());
    out.push(DELIVER);
    let count = u32::try_from(conns.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for conn in conns.iter().take(count as usize) {
        out.extend_from_slice(&conn.node.0.to_be_bytes());
        out.extend_from_slice(&conn.local.to_be_bytes());
    }
    out.extend_from_slice(frame);
    out
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("an empty bus message")]
    Empty,
    #[error("unknown bus message tag {0}")]
    UnknownTag(u8),
    #[error("a delivery cut short")]
    Truncated,
    #[error("a control message is malformed: {0}")]
    Control(#[from] serde_json::Error),
}

impl NodeMessage {
    /// The bus form of a user event for `users`.
    pub fn users(origin: NodeId, users: &[UserId], event: &crate::inbox::UserEvent) -> Self {
        use crate::inbox::UserEvent;
        let (kind, frame) = match event {
            UserEvent::Message { conversation, seq, frame } => {
                (UserEventKind::Message { conversation: *conversation, seq: *seq }, frame)
            }
            UserEvent::Changed { conversation, seq, frame } => {
                (UserEventKind::Changed { conversation: *conversation, seq: *seq }, frame)
            }
            UserEvent::Other { frame } => (UserEventKind::Other, frame),
        };
        Self::Users { origin, users: users.to_vec(), kind, frame: bytes::Bytes::copy_from_slice(frame.as_bytes()) }
    }

    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            Self::Deliver { conns, frame } => Ok(encode_delivery(conns, frame)),
            Self::Users { origin, users, kind, frame } => {
                // Tag, origin, kind, conversation, sequence, user count, users, frame.
                let mut out = Vec::with_capacity(2 + 8 + UUID_BYTES + 8 + 4 + users.len() * UUID_BYTES + frame.len());
                out.push(USERS);
                out.extend_from_slice(&origin.0.to_be_bytes());
                let (tag, conversation, seq) = match kind {
                    UserEventKind::Message { conversation, seq } => (b'M', conversation.0, *seq),
                    UserEventKind::Changed { conversation, seq } => (b'C', conversation.0, *seq),
                    UserEventKind::Other => (b'O', uuid::Uuid::nil(), 0),
                };
                out.push(tag);
                out.extend_from_slice(conversation.as_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                let count = u32::try_from(users.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                for user in users.iter().take(count as usize) {
                    out.extend_from_slice(user.0.as_bytes());
                }
                out.extend_from_slice(frame);
                Ok(out)
            }
            Self::Control(control) => {
                let mut out = vec![CONTROL];
                serde_json::to_writer(&mut out, control)?;
                Ok(out)
            }
        }
    }

    /// Reads a message; `payload` is shared, so a delivery's frame is not copied (nor checked:
    /// the receiving node checks it is text once, when it makes it a frame).
    pub fn decode(payload: &bytes::Bytes) -> Result<Self, DecodeError> {
        let (&tag, rest) = payload.split_first().ok_or(DecodeError::Empty)?;
        match tag {
            DELIVER => {
                let count = rest.get(..4).ok_or(DecodeError::Truncated)?;
                let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]) as usize;
                let header = 1 + 4 + count.checked_mul(CONN_BYTES).ok_or(DecodeError::Truncated)?;
                let ids = payload.get(5..header).ok_or(DecodeError::Truncated)?;
                let conns = ids
                    .chunks_exact(CONN_BYTES)
                    .map(|id| {
                        let (node, local) = id.split_at(8);
                        let word = |bytes: &[u8]| bytes.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
                        ConnId::new(NodeId(word(node)), word(local))
                    })
                    .collect();
                Ok(Self::Deliver { conns, frame: payload.slice(header..) })
            }
            USERS => {
                let header = rest.get(..8 + 1 + UUID_BYTES + 8 + 4).ok_or(DecodeError::Truncated)?;
                let (origin, header) = header.split_at(8);
                let origin = NodeId(u64::from_be_bytes(origin.try_into().map_err(|_| DecodeError::Truncated)?));
                let (tag, header) = header.split_at(1);
                let (conversation, header) = header.split_at(UUID_BYTES);
                let (seq, count) = header.split_at(8);
                let conversation =
                    ConversationId(uuid::Uuid::from_slice(conversation).map_err(|_| DecodeError::Truncated)?);
                let seq = i64::from_be_bytes(seq.try_into().map_err(|_| DecodeError::Truncated)?);
                let count = u32::from_be_bytes(count.try_into().map_err(|_| DecodeError::Truncated)?) as usize;
                let kind = match tag {
                    [b'M'] => UserEventKind::Message { conversation, seq },
                    [b'C'] => UserEventKind::Changed { conversation, seq },
                    [b'O'] => UserEventKind::Other,
                    _ => return Err(DecodeError::Truncated),
                };
                let start = 1 + 8 + 1 + UUID_BYTES + 8 + 4;
                let end = count
                    .checked_mul(UUID_BYTES)
                    .and_then(|ids| ids.checked_add(start))
                    .ok_or(DecodeError::Truncated)?;
                let ids = payload.get(start..end).ok_or(DecodeError::Truncated)?;
                let users = ids
                    .chunks_exact(UUID_BYTES)
                    .map(|id| uuid::Uuid::from_slice(id).map(UserId).map_err(|_| DecodeError::Truncated))
                    .collect::<Result<_, _>>()?;
                Ok(Self::Users { origin, users, kind, frame: payload.slice(end..) })
            }
            CONTROL => Ok(Self::Control(serde_json::from_slice(rest)?)),
            other => Err(DecodeError::UnknownTag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convene_protocol::{LeaveSession, OrgId, Role, UserId};

    #[test]
    fn every_message_reads_back_as_written() {
        let conn = ConnId::new(NodeId(u64::MAX - 3), 1 << 40);
        let session = SessionId::new_v4();
        let identity = Identity {
            user_id: UserId::new_v4(),
            role: Role::Mentor,
            organization_id: Some(OrgId::new_v4()),
            expires_at: 1_900_000_000,
        };
        let messages = [
            NodeMessage::Deliver {
                conns: vec![conn, ConnId::new(NodeId(1), 2)],
                frame: bytes::Bytes::from_static(br#"{"type":"pong","note":"\u00e9 \" ok"}"#),
            },
            NodeMessage::Deliver { conns: vec![], frame: bytes::Bytes::new() },
            NodeMessage::Control(Control::Request {
                session,
                hops: 1,
                conn,
                identity,
                request: LeaveSession { request_id: None, session_id: session }.into(),
            }),
            NodeMessage::Control(Control::Disconnect { session, conn }),
            NodeMessage::Users {
                origin: NodeId(3),
                users: vec![UserId::new_v4(), UserId::new_v4()],
                kind: UserEventKind::Message { conversation: ConversationId::new_v4(), seq: 7 },
                frame: bytes::Bytes::from_static(br#"{"type":"direct_message"}"#),
            },
            NodeMessage::Users {
                origin: NodeId(u64::MAX),
                users: vec![UserId::new_v4()],
                kind: UserEventKind::Changed { conversation: ConversationId::new_v4(), seq: -1 },
                frame: bytes::Bytes::new(),
            },
            NodeMessage::Users {
                origin: NodeId(0),
                users: vec![],
                kind: UserEventKind::Other,
                frame: bytes::Bytes::from_static(b"{}"),
            },
            NodeMessage::Control(Control::Interrupt { session, conns: vec![conn] }),
        ];
        for message in messages {
            let encoded = message.encode().expect("encodes");
            assert_eq!(NodeMessage::decode(&encoded.into()).expect("decodes"), message);
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let cases: [&[u8]; 7] = [
            b"",
            b"X{}",
            b"D\x00\x00",
            b"D\x00\x00\x00\x02abc",
            b"J{\"type\":\"nope\"}",
            b"U\x00\x00\x00\x00\x00\x00\x00\x00M\x00",
            b"U\x00\x00\x00\x00\x00\x00\x00\x00X\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ];
        for case in cases {
            assert!(NodeMessage::decode(&bytes::Bytes::copy_from_slice(case)).is_err(), "{case:?}");
        }
    }
}
