//! Presence: who is in a session, on how many devices, in which room, with which status.
//!
//! A person on two devices is one member with a device count. Each change reports the diff
//! others must hear (joined, updated or left), so the session never resends the full list. It
//! also remembers which rooms gained or lost a device since it was last asked
//! ([`Presence::take_touched`]): the rooms whose video connections must be redrawn.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use convene_protocol::{ConnId, PresenceStatus, Role, RoomId, SessionRole, UserId};

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

/// What others must be told after a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diff {
    Joined,
    Updated,
    Left,
    Unchanged,
}

#[derive(Debug, Default)]
pub struct Presence {
    members: HashMap<UserId, Member>,
    /// Rooms whose devices changed since the last [`Presence::take_touched`].
    touched: HashSet<RoomId>,
}

impl Presence {
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
        if let Some(member) = self.members.get_mut(&user)
            && member.room != room
        {
            self.touched.extend([member.room, room]);
            member.room = room;
        }
    }

    /// Removes everyone, returning who was present.
    pub fn clear(&mut self) -> Vec<Member> {
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
        let mut presence = Presence::default();
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
