//! Newtype ids. Each id is its own type so that a room id can never be passed where a session id
//! is expected; on the wire they are plain strings (uuids) or numbers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(test, derive(ts_rs::TS))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new_v4() -> Self {
                Self(Uuid::new_v4())
            }

            /// A fresh id that sorts after every one this process made before it (a UUID v7:
            /// the time first, then random bits). Rows keyed by such ids are added at the end of
            /// their index instead of on a random page of it.
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(
    /// A video session (`video_sessions.id`).
    SessionId
);
uuid_id!(
    /// A room inside a session. The main room of a session has the session's own id.
    RoomId
);
uuid_id!(
    /// A user, as named by the `sub` claim of their access token.
    UserId
);
uuid_id!(
    /// An organization (tenant), from `app_metadata.organization_id`.
    OrgId
);
uuid_id!(
    /// A chat message.
    MessageId
);
uuid_id!(
    /// A 1:1 conversation between two users (`conversations.id`).
    ConversationId
);
uuid_id!(
    /// A message of a 1:1 conversation.
    DirectMessageId
);

/// A notification (`notifications.id`): numbered in the order they were stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(transparent)]
pub struct NotificationId(pub i64);

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<SessionId> for RoomId {
    /// The main room of a session shares the session's id.
    fn from(id: SessionId) -> Self {
        Self(id.0)
    }
}

/// One run of one server process. Drawn at random when the process starts, so a restarted node
/// is a new node: nothing addressed to its previous run can reach, or be mistaken for, its
/// connections now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One WebSocket connection: the node that accepted it and its number there. On the wire it is
/// a string, `"<node>-<number>"` (the node in 16 hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(ts_rs::TS), ts(type = "string"))]
pub struct ConnId {
    pub node: NodeId,
    pub local: u64,
}

impl ConnId {
    pub const fn new(node: NodeId, local: u64) -> Self {
        Self { node, local }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.node, self.local)
    }
}

impl std::str::FromStr for ConnId {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const MALFORMED: &str = "a connection id is <16 hex digits>-<number>";
        let (node, local) = text.split_once('-').ok_or(MALFORMED)?;
        if node.len() != 16 {
            return Err(MALFORMED);
        }
        let node = u64::from_str_radix(node, 16).map_err(|_| MALFORMED)?;
        let local = local.parse().map_err(|_| MALFORMED)?;
        Ok(Self::new(NodeId(node), local))
    }
}

impl Serialize for ConnId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConnId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Longest request id or client message id accepted, in bytes.
pub const MAX_CLIENT_TOKEN_LEN: usize = 64;

macro_rules! client_token {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[cfg_attr(test, derive(ts_rs::TS))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks the length bound that deserialization enforces.
            pub fn new(value: impl Into<String>) -> Option<Self> {
                let value = value.into();
                (!value.is_empty() && value.len() <= MAX_CLIENT_TOKEN_LEN).then_some(Self(value))
            }

            /// The id as the client wrote it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::new(value).ok_or_else(|| {
                    de::Error::custom(concat!(
                        stringify!($name),
                        " must be 1 to 64 bytes"
                    ))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

client_token!(
    /// Chosen by the client to match a reply (or an error) to the request that caused it.
    RequestId
);
client_token!(
    /// Chosen by the client per chat message; a retried send with the same id is not a new message.
    ClientMsgId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<MessageId> = (0..10_000).map(|_| MessageId::new_v7()).collect();
        assert!(ids.is_sorted_by(|a, b| a < b), "a later id sorted before an earlier one");
        assert!(ids.iter().all(|id| id.0.get_version_num() == 7));
    }

    #[test]
    fn connection_ids_name_their_node_and_read_back() {
        let conn = ConnId::new(NodeId(0xfeed), 42);
        let text = serde_json::to_string(&conn).expect("encodes");
        assert_eq!(text, r#""000000000000feed-42""#);
        assert_eq!(serde_json::from_str::<ConnId>(&text).expect("decodes"), conn);
        for bad in [r#""feed-42""#, r#""000000000000feed""#, r#""000000000000feed-x""#, "42"] {
            assert!(serde_json::from_str::<ConnId>(bad).is_err(), "{bad}");
        }
    }
}
