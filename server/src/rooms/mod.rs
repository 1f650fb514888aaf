//! Rooms: what makes a breakout room (capacity, mode, timers) and how people are split between
//! rooms. Pure data and functions; the session state machine uses them.

pub mod attendance;
pub mod plan;

use std::time::Instant;

use chrono::{DateTime, Utc};
use convene_protocol::{AssignmentMode, RequestId, UserId};

/// Most breakout rooms a session may have at once (Zoom's limit too).
pub const MAX_BREAKOUT_ROOMS: usize = 100;
/// Largest capacity of one breakout room.
pub const MAX_ROOM_CAPACITY: u32 = 1_000;
/// Longest room name, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 100;

/// A point in time on both clocks: the monotonic one decides when it fires, the wall clock is
/// what people are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub wall: DateTime<Utc>,
}

/// A host and the request they acted under.
pub type Requester = (UserId, Option<RequestId>);

/// What makes a room a breakout room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breakout {
    pub name: String,
    pub max_participants: u32,
    pub mode: AssignmentMode,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    /// The room's timer, set when breakouts open with one.
    pub ends: Option<Deadline>,
    /// Set once the closing countdown started: members return to the main room then.
    pub closes: Option<Deadline>,
    /// The host who started that countdown, and under which request: the close is recorded in
    /// their name when it happens. `None` when the room's timer started it.
    pub closing_by: Option<Requester>,
}

/// Checks a room name given by a host (a session's or a breakout room's): trimmed, 1 to 100
/// characters, none of them control characters.
pub fn valid_room_name(name: &str) -> Option<String> {
    let name = name.trim();
    let ok = !name.is_empty() && name.chars().count() <= MAX_ROOM_NAME_CHARS && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}
