//! Convene's wire format, version 2.
//!
//! This crate is the only place that knows what travels over the socket: the messages a client
//! sends ([`ClientMessage`]), the messages the server sends ([`ServerMessage`]), the stable error
//! codes ([`ErrorCode`]), the ids they carry and the claims of the access tokens clients present.
//! It depends on serde alone, so the server, the load generator and browser tooling can share it.
//! Browser clients get the same types in TypeScript: `clients/js/src/wire.ts` is generated from
//! these (with `ts-rs`, in test builds only), and a test fails when it is out of date.
//!
//! Every message is a JSON object whose `type` field names its kind in snake_case. Text becomes a
//! typed [`ClientMessage`] exactly once, through [`ClientMessage::parse`], which also decides which
//! error code a malformed frame earns. Requests addressed to a session form their own enum,
//! [`SessionRequest`]: the server hands it, unchanged, to whichever node owns the session.
//! Requests about the caller's own 1:1 conversations and notifications form [`UserRequest`].

mod breakout;
mod claims;
mod client;
mod direct;
mod error;
mod ids;
mod media;
mod presence;
mod request;
mod server;
#[cfg(test)]
mod typescript;

pub use breakout::{
    AskForHelp, AssignParticipants, Assignment, AssignmentMode, BreakoutOptions, BreakoutOverview, BreakoutRoomView,
    Broadcast, CloseBreakoutRooms, CreateBreakoutRooms, DeleteBreakoutRoom, HelpRequest, MoveParticipant, MoveReason,
    OpenBreakouts, PlanBreakouts, ResolveHelp, SelectRoom, SetBreakoutOptions, SwapParticipants, UpdateBreakoutRoom,
};
pub use claims::{AppMetadata, Claims, Role, SUPABASE_AUDIENCE};
pub use client::{
    AdmitParticipant, ClientMessage, CreateSession, DeleteMessage, DenyParticipant, EditMessage, EndSession,
    FetchHistory, JoinSession, LeaveSession, ParseError, Ping, RemoveParticipant, RoomCursor, SendMessage, SetLobby,
    SetRole, SetStatus, Typing,
};
pub use direct::{
    ArchiveConversation, BlockUser, ConversationContext, ConversationCursor, ConversationPosition, ConversationSummary,
    ConversationView, CountNotifications, DeleteDirect, DirectMessage, DirectTyping, EditDirect, FetchDirectHistory,
    FocusConversation, ListConversations, ListNotifications, MAX_SUBJECT_BYTES, MarkConversationRead,
    MarkNotificationsRead, Notification, NotificationCounts, OpenConversation, SendDirect, SyncConversations,
    SyncOutcome, UnblockUser, UserRequest, UserRequestKind,
};
pub use error::ErrorCode;
pub use ids::{
    ClientMsgId, ConnId, ConversationId, DirectMessageId, MessageId, NodeId, NotificationId, OrgId, RequestId, RoomId,
    SessionId, UserId,
};
pub use media::{IceServer, IceServers, Peer, PeerGone, SendSignal, Signal};
pub use presence::{FetchRoster, HeldRoster, RoomCount, Roster, RosterVersion};
pub use request::{SessionRequest, SessionRequestKind};
pub use server::{
    ChatMessage, ErrorReply, LobbyEntry, MemberView, PresenceStatus, ResumeOutcome, RoomView, ServerMessage,
    SessionRole, SessionStatus, SessionType, SessionView,
};

/// The protocol version this crate describes; the server announces it in `hello`.
pub const PROTOCOL_VERSION: u32 = 2;
