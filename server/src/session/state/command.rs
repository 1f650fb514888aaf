//! What a session is asked to do: commands from connections and outcomes of its own writes.

use convene_protocol::{
    AssignmentMode, ClientMsgId, ConnId, MessageId, PresenceStatus, RequestId, RoomCursor, RoomId, SessionRole, UserId,
};

use super::*;

/// What a session is asked to do, by a connection or by the outcome of its own writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Join {
        conn: ConnId,
        identity: Identity,
        request_id: Option<RequestId>,
        resume: Vec<RoomCursor>,
    },
    Leave {
        conn: ConnId,
        request_id: Option<RequestId>,
    },
    Disconnect {
        conn: ConnId,
    },
    End {
        conn: ConnId,
        request_id: Option<RequestId>,
    },
    Admit {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
    },
    Deny {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
    },
    SetLobby {
        conn: ConnId,
        request_id: Option<RequestId>,
        enabled: bool,
    },
    SetRole {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        role: SessionRole,
    },
    Remove {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
    },
    SetStatus {
        conn: ConnId,
        request_id: Option<RequestId>,
        status: PresenceStatus,
    },
    Post {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        client_msg_id: ClientMsgId,
        body: String,
    },
    Edit {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        body: String,
    },
    Delete {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
    },
    Typing {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        active: bool,
    },
    FetchHistory {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        query: HistoryQuery,
        limit: u32,
    },
    CreateRooms {
        conn: ConnId,
        request_id: Option<RequestId>,
        names: Vec<String>,
        count: Option<u32>,
        max_participants: u32,
        mode: AssignmentMode,
    },
    UpdateRoom {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        name: Option<String>,
        max_participants: Option<u32>,
    },
    DeleteRoom {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
    },
    SetBreakoutOptions {
        conn: ConnId,
        request_id: Option<RequestId>,
        allow_self_select: Option<bool>,
        allow_return_to_main: Option<bool>,
        countdown_secs: Option<u32>,
    },
    Plan {
        conn: ConnId,
        request_id: Option<RequestId>,
        assignments: Vec<(UserId, RoomId)>,
        automatic: bool,
        keep_together: Vec<[UserId; 2]>,
        keep_apart: Vec<[UserId; 2]>,
        reset: bool,
    },
    Open {
        conn: ConnId,
        request_id: Option<RequestId>,
        timer_secs: Option<u32>,
    },
    Move {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        from: RoomId,
        to: RoomId,
    },
    Assign {
        conn: ConnId,
        request_id: Option<RequestId>,
        assignments: Vec<(UserId, RoomId)>,
    },
    Swap {
        conn: ConnId,
        request_id: Option<RequestId>,
        a: UserId,
        b: UserId,
    },
    Select {
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
    },
    Close {
        conn: ConnId,
        request_id: Option<RequestId>,
        rooms: Vec<RoomId>,
        countdown_secs: Option<u32>,
    },
    Broadcast {
        conn: ConnId,
        request_id: Option<RequestId>,
        body: String,
    },
    AskForHelp {
        conn: ConnId,
        request_id: Option<RequestId>,
    },
    ResolveHelp {
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
    },
    /// The session's clock: timers and countdowns that are due fire.
    Tick,
    /// The outcome of the [`Persist::Staged`] write of the change in flight.
    Committed {
        result: Result<(), WriteFailed>,
    },
    /// The outcome of a [`Persist::Message`].
    Posted {
        room: RoomId,
        sender: UserId,
        client_msg_id: ClientMsgId,
        result: Result<InsertOutcome, WriteFailed>,
    },
    /// The outcome of a [`Persist::Edit`] or [`Persist::Delete`].
    Changed {
        conn: ConnId,
        request_id: Option<RequestId>,
        deleted_by: Option<UserId>,
        result: Result<EditOutcome, WriteFailed>,
    },
}

impl Command {
    /// Which budget the command draws on, when it is charged before it runs.
    pub(super) fn spend(&self) -> Option<Spend> {
        match self {
            Self::Join { .. } => Some(Spend::Join),
            Self::SetStatus { .. } => Some(Spend::Status),
            Self::Edit { .. } | Self::Delete { .. } => Some(Spend::Chat),
            Self::FetchHistory { .. } => Some(Spend::History),
            Self::Broadcast { .. } => Some(Spend::Broadcast),
            Self::AskForHelp { .. } => Some(Spend::Help),
            Self::End { .. }
            | Self::Admit { .. }
            | Self::Deny { .. }
            | Self::SetLobby { .. }
            | Self::SetRole { .. }
            | Self::Remove { .. }
            | Self::CreateRooms { .. }
            | Self::UpdateRoom { .. }
            | Self::DeleteRoom { .. }
            | Self::SetBreakoutOptions { .. }
            | Self::Plan { .. }
            | Self::Open { .. }
            | Self::Move { .. }
            | Self::Assign { .. }
            | Self::Swap { .. }
            | Self::Select { .. }
            | Self::Close { .. }
            | Self::ResolveHelp { .. } => Some(Spend::Command),
            Self::Post { .. } | Self::Typing { .. } => None,
            Self::Leave { .. }
            | Self::Disconnect { .. }
            | Self::Tick
            | Self::Committed { .. }
            | Self::Posted { .. }
            | Self::Changed { .. } => None,
        }
    }

    /// The connection that asked, and its request id, for error replies.
    pub(super) fn origin(&self) -> (Option<ConnId>, Option<RequestId>) {
        match self {
            Self::Join { conn, request_id, .. }
            | Self::Leave { conn, request_id }
            | Self::End { conn, request_id }
            | Self::Admit { conn, request_id, .. }
            | Self::Deny { conn, request_id, .. }
            | Self::SetLobby { conn, request_id, .. }
            | Self::SetRole { conn, request_id, .. }
            | Self::Remove { conn, request_id, .. }
            | Self::SetStatus { conn, request_id, .. }
            | Self::Post { conn, request_id, .. }
            | Self::Edit { conn, request_id, .. }
            | Self::Delete { conn, request_id, .. }
            | Self::FetchHistory { conn, request_id, .. } => (Some(*conn), request_id.clone()),
            Self::CreateRooms { conn, request_id, .. }
            | Self::UpdateRoom { conn, request_id, .. }
            | Self::DeleteRoom { conn, request_id, .. }
            | Self::SetBreakoutOptions { conn, request_id, .. }
            | Self::Plan { conn, request_id, .. }
            | Self::Open { conn, request_id, .. }
            | Self::Move { conn, request_id, .. }
            | Self::Assign { conn, request_id, .. }
            | Self::Swap { conn, request_id, .. }
            | Self::Select { conn, request_id, .. }
            | Self::Close { conn, request_id, .. }
            | Self::Broadcast { conn, request_id, .. }
            | Self::AskForHelp { conn, request_id }
            | Self::ResolveHelp { conn, request_id, .. } => (Some(*conn), request_id.clone()),
            Self::Typing { conn, request_id, .. } => (Some(*conn), request_id.clone()),
            Self::Disconnect { .. }
            | Self::Posted { .. }
            | Self::Changed { .. }
            | Self::Tick
            | Self::Committed { .. } => (None, None),
        }
    }
}
