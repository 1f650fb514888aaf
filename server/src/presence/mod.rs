//! Presence: who is in a session, on how many devices, in which room, with which status.
//!
//! A person on two devices is one member with a device count. Every change is noted in the
//! session's [`Rosters`] with how the member stood before, and published later, coalesced with
//! the others of its window, as per-room diffs ([`Presence::publish`]). Presence also remembers
//! which rooms gained or lost a device since it was last asked ([`Presence::take_touched`]): the
//! rooms whose video connections must be redrawn; and, per device, the rosters it held of rooms
//! it left ([`Presence::held`]), so that coming back costs a diff.

mod roster;

pub use roster::{Delta, Placed, RoomChange, Rosters};

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use convene_protocol::{ConnId, PresenceStatus, Role, RoomId, SessionRole, UserId};

/// Rooms whose roster a device is remembered to hold after leaving them: the main room and the
/// few breakouts a person passes through in one sitting.
const HELD_ROSTERS: usize = 4;

/// One person present in a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub session_role: SessionRole,
    pub role: Role,
    pub room: RoomId,
    /// The member's connections; never empty while the member is present.
    pub conns: Vec<ConnId>,
    pub status: PresenceStatus,
    pub joined_at: DateTime<Utc>,
}

impl Member {
    /// How the member looks in a roster.
    pub fn shown(&self) -> Shown {
        Shown {
            session_role: self.session_role,
            role: self.role,
            devices: u32::try_from(self.conns.len()).unwrap_or(u32::MAX),
            status: self.status,
            joined_at: self.joined_at,
        }
    }

    pub fn placed(&self) -> Placed {
        (self.room, self.shown())
    }
}

/// A member as a roster shows them, apart from who and where: what a change may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    pub session_role: SessionRole,
    pub role: Role,
    pub devices: u32,
    pub status: PresenceStatus,
    pub joined_at: DateTime<Utc>,
}

/// What a change did to the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diff {
    Joined,
    Updated,
    Left,
    Unchanged,
}

#[derive(Debug)]
pub struct Presence {
    members: HashMap<UserId, Member>,
    /// Rooms whose devices changed since the last [`Presence::take_touched`].
    touched: HashSet<RoomId>,
    rosters: Rosters,
    /// Per device, the rooms it left and the version of their roster it held then.
    held: HashMap<ConnId, Vec<(RoomId, u64)>>,
}

impl Presence {
    /// Empty presence; `epoch` tells this load of the session's roster versions from others.
    pub fn new(epoch: u64) -> Self {
        Self { members: HashMap::new(), touched: HashSet::new(), rosters: Rosters::new(epoch), held: HashMap::new() }
    }

    pub fn rosters(&self) -> &Rosters {
        &self.rosters
    }

    /// Publishes the changes noted since the last publication, per room.
    pub fn publish(&mut self) -> Vec<(RoomId, RoomChange)> {
        let members = &self.members;
        self.rosters.publish(|user| members.get(&user).map(Member::placed), members.len())
    }

    /// Forgets a room that closed or was deleted.
    pub fn forget_room(&mut self, room: RoomId) {
        self.rosters.forget_room(room);
    }

    /// Remembers that `conn` held `room`'s roster at `version` as it left the room.
    pub fn hold(&mut self, conn: ConnId, room: RoomId, version: u64) {
        let held = self.held.entry(conn).or_default();
        held.retain(|(r, _)| *r != room);
        if held.len() == HELD_ROSTERS {
            held.remove(0);
        }
        held.push((room, version));
    }

    /// The version of `room`'s roster `conn` holds, if it is remembered to hold one.
    pub fn held(&self, conn: ConnId, room: RoomId) -> Option<u64> {
        self.held.get(&conn)?.iter().find(|(r, _)| *r == room).map(|(_, version)| *version)
    }

    fn note(&mut self, user: UserId) {
        self.rosters.note(user, self.members.get(&user).map(Member::placed));
    }

    pub fn get(&self, user: UserId) -> Option<&Member> {
        self.members.get(&user)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Adds a device of `user`, making them a member in `room` if they were not one.
    pub fn add_device(
        &mut self,
        user: UserId,
        conn: ConnId,
        session_role: SessionRole,
        role: Role,
        room: RoomId,
        now: DateTime<Utc>,
    ) -> Diff {
        if self.members.get(&user).is_none_or(|member| !member.conns.contains(&conn)) {
            self.note(user);
        }
        match self.members.get_mut(&user) {
            Some(member) if member.conns.contains(&conn) => Diff::Unchanged,
            Some(member) => {
                member.conns.push(conn);
                self.touched.insert(member.room);
                Diff::Updated
            }
            None => {
                self.touched.insert(room);
                self.members.insert(
                    user,
                    Member {
                        user_id: user,
                        session_role,
                        role,
                        room,
                        conns: vec![conn],
                        status: PresenceStatus::Active,
                        joined_at: now,
                    },
                );
                Diff::Joined
            }
        }
    }

    /// Removes one device; the member leaves with their last one.
    pub fn remove_device(&mut self, user: UserId, conn: ConnId) -> Diff {
        self.held.remove(&conn);
        if self.members.get(&user).is_some_and(|member| member.conns.contains(&conn)) {
            self.note(user);
        }
        let Some(member) = self.members.get_mut(&user) else { return Diff::Unchanged };
        let before = member.conns.len();
        member.conns.retain(|c| *c != conn);
        if member.conns.len() < before {
            self.touched.insert(member.room);
        }
        if member.conns.is_empty() {
            self.members.remove(&user);
            Diff::Left
        } else if member.conns.len() < before {
            Diff::Updated
        } else {
            Diff::Unchanged
        }
    }

    pub fn set_status(&mut self, user: UserId, status: PresenceStatus) -> Diff {
        if self.members.get(&user).is_some_and(|member| member.status != status) {
            self.note(user);
        }
        match self.members.get_mut(&user) {
            Some(member) if member.status != status => {
                member.status = status;
                Diff::Updated
            }
            _ => Diff::Unchanged,
        }
    }

    /// Changes a member's role in the session.
    pub fn set_session_role(&mut self, user: UserId, role: SessionRole) -> Diff {
        if self.members.get(&user).is_some_and(|member| member.session_role != role) {
            self.note(user);
        }
        match self.members.get_mut(&user) {
            Some(member) if member.session_role != role => {
                member.session_role = role;
                Diff::Updated
            }
            _ => Diff::Unchanged,
        }
    }

    /// Moves a member to another room.
    pub fn set_room(&mut self, user: UserId, room: RoomId) {
        if self.members.get(&user).is_some_and(|member| member.room != room) {
            self.note(user);
        }
        if let Some(member) = self.members.get_mut(&user)
            && member.room != room
        {
            self.touched.extend([member.room, room]);
            member.room = room;
        }
    }

    /// Removes everyone, returning who was present.
    pub fn clear(&mut self) -> Vec<Member> {
        let users: Vec<UserId> = self.members.keys().copied().collect();
        for user in users {
            self.note(user);
        }
        self.held.clear();
        let members: Vec<Member> = self.members.drain().map(|(_, member)| member).collect();
        self.touched.extend(members.iter().map(|member| member.room));
        members
    }

    /// The rooms whose devices changed since the last call: a device arrived or left, or a
    /// member changed room.
    pub fn take_touched(&mut self) -> HashSet<RoomId> {
        std::mem::take(&mut self.touched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convene_protocol::NodeId;
    use uuid::Uuid;

    fn conn_id(local: u64) -> ConnId {
        ConnId::new(NodeId(1), local)
    }

    #[test]
    fn a_second_device_updates_and_the_last_device_leaves() {
        let mut presence = Presence::new(1);
        let user = UserId(Uuid::new_v4());
        let room = RoomId(Uuid::new_v4());
        let now = Utc::now();
        let steps = [
            (true, conn_id(1), Diff::Joined, 1),
            (true, conn_id(2), Diff::Updated, 2),
            (true, conn_id(2), Diff::Unchanged, 2),
            (false, conn_id(3), Diff::Unchanged, 2),
            (false, conn_id(1), Diff::Updated, 1),
            (false, conn_id(2), Diff::Left, 0),
        ];
        for (add, conn, expected, devices) in steps {
            let diff = if add {
                presence.add_device(user, conn, SessionRole::Participant, Role::Patient, room, now)
            } else {
                presence.remove_device(user, conn)
            };
            assert_eq!(diff, expected, "{add} {conn:?}");
            assert_eq!(presence.get(user).map_or(0, |m| m.conns.len()), devices);
        }
    }
}
