//! Breakout rooms on the wire: host commands, participant commands, and what the server says.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{RequestId, RoomId, SessionId, UserId};

/// How a breakout room is filled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AssignmentMode {
    /// The server places people (a balanced random split; late joiners go to the least full room).
    #[default]
    Automatic,
    /// The host places people.
    Manual,
    /// Participants pick rooms themselves.
    SelfSelect,
}

impl AssignmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Manual => "manual",
            Self::SelfSelect => "self_select",
        }
    }
}

/// One person placed in one room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Assignment {
    pub user_id: UserId,
    pub room_id: RoomId,
}

/// Creates breakout rooms: `names` (one room each) or `count` rooms named "Room N".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CreateBreakoutRooms {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub max_participants: u32,
    #[serde(default)]
    pub assignment_mode: AssignmentMode,
}

/// Renames a room or changes its capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UpdateBreakoutRoom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<u32>,
}

/// Deletes an empty room.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DeleteBreakoutRoom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
}

/// What participants may do on their own, and how long closing counts down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SetBreakoutOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_self_select: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_return_to_main: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countdown_secs: Option<u32>,
}

/// Prepares (or edits) the assignment that `open_breakouts` carries out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PlanBreakouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    /// Manual choices, kept by the automatic split. A room id of the main room removes a choice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignments: Vec<Assignment>,
    /// Fill everyone present and not chosen manually with a balanced random split.
    #[serde(default)]
    pub automatic: bool,
    /// Pairs the automatic split keeps in one room (a mentor with their mentee).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_together: Vec<[UserId; 2]>,
    /// Pairs the automatic split keeps apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_apart: Vec<[UserId; 2]>,
    /// Start from an empty plan instead of editing the current one.
    #[serde(default)]
    pub reset: bool,
}

/// Moves everyone as planned, all or nothing; optionally with a timer on every room.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct OpenBreakouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_secs: Option<u32>,
}

/// Moves one person; `from_room_id` is where the host believes they are, so that of two hosts
/// moving the same person at once, the second is told `conflict`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MoveParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
    pub from_room_id: RoomId,
    pub to_room_id: RoomId,
}

/// Moves several people at once, all or nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AssignParticipants {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub assignments: Vec<Assignment>,
}

/// Exchanges the rooms of two people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SwapParticipants {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_a: UserId,
    pub user_b: UserId,
}

/// A participant picks a room (self-select), or returns to the main room, when allowed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SelectRoom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
}

/// Closes the given rooms (all breakout rooms when none are given) after a countdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CloseBreakoutRooms {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_ids: Vec<RoomId>,
    /// Seconds before members are returned; the session's countdown (60 s) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countdown_secs: Option<u32>,
}

/// A host's message to every room at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Broadcast {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub body: String,
}

/// A participant in a breakout room asks the hosts for help.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AskForHelp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
}

/// A host marks a help request as handled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ResolveHelp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub user_id: UserId,
}

/// Why someone changed rooms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// Placed by a plan or by late-joiner placement.
    Assigned,
    /// Moved by a host (or a host visiting).
    Moved,
    /// Picked the room themselves.
    Selected,
    /// Their room closed.
    RoomClosed,
}

/// A breakout room as hosts see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BreakoutRoomView {
    pub room_id: RoomId,
    pub name: String,
    pub max_participants: u32,
    pub assignment_mode: AssignmentMode,
    /// Everyone in the room, visiting hosts included.
    pub members: Vec<UserId>,
    /// Participants counted against `max_participants` (visiting hosts do not count).
    pub participants: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
}

/// Someone asking for help, and from where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HelpRequest {
    pub user_id: UserId,
    pub room_id: RoomId,
    pub since: DateTime<Utc>,
}

/// The options set with `set_breakout_options`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BreakoutOptions {
    pub allow_self_select: bool,
    pub allow_return_to_main: bool,
    pub countdown_secs: u32,
}

/// Everything about the breakouts, for hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BreakoutOverview {
    /// Whether the breakouts are open (people were sent to rooms and not yet all returned).
    pub open: bool,
    pub options: BreakoutOptions,
    pub rooms: Vec<BreakoutRoomView>,
    pub help_requests: Vec<HelpRequest>,
}
