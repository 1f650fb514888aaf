//! Presence on the wire: rosters, their versions, the diffs that keep them current, room counts
//! and roster pages.
//!
//! A member follows the roster of the room they are in; hosts follow every room's. A roster
//! arrives once in full (on `joined`, or on `moved` into a room the device never held), then as
//! diffs (`presence_changed`), each naming the version it applies to (`since`) and the one it
//! brings the client to (`version`). Changes are coalesced: everything that changed within a
//! short window reaches a member as one frame. A client that held a room's roster before (it left
//! the room, or reconnected) is sent what changed since, not the whole roster again. A room
//! larger than the server's roster limit is not followed live by its participants: they see its
//! hosts and its count, and page the rest with `fetch_roster`.

use serde::{Deserialize, Serialize};

use crate::ids::{RequestId, RoomId, SessionId, UserId};
use crate::server::MemberView;

/// Names one state of a room's roster. `epoch` changes whenever the session is loaded anew (its
/// owner changed), so a version from before that never matches; `seq` grows with every change of
/// the session's presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RosterVersion {
    pub epoch: u64,
    pub seq: u64,
}

/// A room's roster: everyone in it, or what changed since a version the client holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Roster {
    pub room_id: RoomId,
    /// The roster this brings the client to. Keep it with the room's members; name it in
    /// `join_session`'s `rosters` after a reconnect to be sent only what changed.
    pub version: RosterVersion,
    /// Set when this is a diff: `members` (arrived or changed) and `left` apply to the roster the
    /// client holds at exactly this version. Absent when `members` is the whole roster shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<RosterVersion>,
    /// A diff's arrivals and changes (replace by `user_id`), or every member shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberView>,
    /// Members who are no longer in the room (diffs only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<UserId>,
    /// How many members the room has at `version`.
    pub total: u32,
    /// False for a room too large to follow live: `members` then shows only the room's hosts,
    /// no diffs follow for it, and `fetch_roster` pages everyone. A later roster with `live`
    /// set (in full) starts following it again.
    pub live: bool,
}

/// A roster the client holds, named when it joins again so that only what changed is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HeldRoster {
    pub room_id: RoomId,
    pub version: RosterVersion,
}

/// How many members one room has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RoomCount {
    pub room_id: RoomId,
    pub members: u32,
}

/// Pages through a room's current members, ordered by user id: the caller's own room, or any
/// room for hosts. The way to see everyone in a room too large to follow live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FetchRoster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub session_id: SessionId,
    pub room_id: RoomId,
    /// Start after this user id (the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<UserId>,
    /// At most 500; 200 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl FetchRoster {
    /// Largest page a client may ask for.
    pub const MAX_LIMIT: u32 = 500;
    /// The page size when the client names none.
    pub const DEFAULT_LIMIT: u32 = 200;
}
