//! Who a room's events reach, remembered between the commands that cannot change it.
//!
//! In a busy session nearly every command is a message posted or its commit, and each commit
//! sends one event to a room. Finding that room's connections walks its members and looks each
//! up in presence: a hash lookup per member, a cache miss each in a large room. The connections
//! found are kept until a command that may change who is in which room, or who has which
//! devices: [`SessionState::apply`] forgets them before every command but those
//! [`Command::keeps_audiences`] names. Forgetting is the default, so a new kind of command can
//! only cost a walk, never reach the wrong people. Debug builds check every remembered audience
//! against a fresh walk.

use std::collections::HashMap;

use convene_protocol::{ConnId, RoomId};

use super::{Audience, SessionState};

/// The connections each room's events reached, since the last command that could change them.
#[derive(Debug, Default)]
pub(super) struct RoomAudiences {
    rooms: HashMap<RoomId, Vec<ConnId>>,
}

impl RoomAudiences {
    /// Forgets every room's connections: the next event to each walks its members again.
    pub(super) fn forget(&mut self) {
        self.rooms.clear();
    }
}

impl SessionState {
    /// Appends the connections `audience` reaches to `out`. A whole room's are remembered for
    /// the next event to it; other audiences are walked each time.
    pub fn resolve(&mut self, audience: &Audience, out: &mut Vec<ConnId>) {
        let Audience::Room(room) = audience else {
            self.for_each_conn(audience, |conn| out.push(conn));
            return;
        };
        if let Some(conns) = self.audiences.rooms.get(room) {
            if cfg!(debug_assertions) {
                self.check_remembered(*room, conns);
            }
            out.extend_from_slice(conns);
            return;
        }
        let start = out.len();
        self.for_each_conn(audience, |conn| out.push(conn));
        self.audiences.rooms.insert(*room, out[start..].to_vec());
    }

    /// Panics if a room's remembered connections are not the ones a walk finds now: a command
    /// that changes them was let through without forgetting.
    fn check_remembered(&self, room: RoomId, remembered: &[ConnId]) {
        let mut walked = Vec::with_capacity(remembered.len());
        self.for_each_conn(&Audience::Room(room), |conn| walked.push(conn));
        let mut remembered = remembered.to_vec();
        walked.sort_unstable();
        remembered.sort_unstable();
        assert_eq!(remembered, walked, "room {room}'s remembered audience is stale");
    }
}
