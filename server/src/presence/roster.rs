//! Roster versions: what changed in which room, coalesced and numbered, and what changed since
//! a version a client holds.
//!
//! Presence notes every member it is about to change, with how they stood at the last
//! publication ([`Rosters::note`]). Publishing ([`Rosters::publish`]) compares each noted member
//! with how they stand now, drops those who ended where they started, numbers what is left with
//! one new `seq`, and logs it per room. Between two publications, then, every member a client was
//! told about stands as the last publication says; snapshots sent mid-window show that state
//! (the members noted since are shown as they stood), so the next publication's diff applies to
//! them exactly.
//!
//! The log lets a device that held a room's roster at some version be sent the net change since
//! (a member who left and came back unchanged is not mentioned at all). It is bounded by the
//! session's size, and a version older than what it still holds gets the full roster instead.

use std::collections::{HashMap, VecDeque};

use convene_protocol::{RoomId, UserId};

use super::Shown;

/// Changes the log keeps per member present, beyond [`LOG_BASE`]: a round of breakouts logs two
/// changes per person (out of the main room, then back), and four leave room for a round on top
/// of a reconnect or two, so a device coming back still gets a diff.
const LOG_PER_MEMBER: usize = 4;
/// Changes the log keeps however small the session: a small session's churn stays diffable.
const LOG_BASE: usize = 1_024;

/// Where a member stood, and how they looked there.
pub type Placed = (RoomId, Shown);

/// One member's change in one room, as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Logged {
    seq: u64,
    room: RoomId,
    user: UserId,
    before: Option<Shown>,
    after: Option<Shown>,
}

/// What one publication changed in one room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomChange {
    /// The room's version before this publication.
    pub since: u64,
    /// Members who arrived or changed, as they look now.
    pub upserts: Vec<(UserId, Shown)>,
    pub left: Vec<UserId>,
}

/// What changed in a room since some version: arrivals and changes, and departures.
pub type Delta = (Vec<(UserId, Shown)>, Vec<UserId>);

/// The numbered history of the session's rosters.
#[derive(Debug)]
pub struct Rosters {
    /// Changes whenever the session is loaded anew, so that versions of an earlier owner never
    /// match.
    epoch: u64,
    /// The last publication's number.
    seq: u64,
    /// Members changed since the last publication, with how they stood at it.
    pending: HashMap<UserId, Option<Placed>>,
    /// Each room's version: the publication that last changed it.
    versions: HashMap<RoomId, u64>,
    /// Published changes, oldest first.
    log: VecDeque<Logged>,
    /// Diffs may start only from this version or later: older changes were dropped.
    floor: u64,
}

impl Rosters {
    pub fn new(epoch: u64) -> Self {
        Self { epoch, seq: 0, pending: HashMap::new(), versions: HashMap::new(), log: VecDeque::new(), floor: 0 }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Remembers how `user` stood before a change, unless a change since the last publication
    /// already did.
    pub fn note(&mut self, user: UserId, before: Option<Placed>) {
        self.pending.entry(user).or_insert(before);
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// How `user` stood at the last publication, if they changed since (`Some(None)`: absent).
    pub fn published(&self, user: UserId) -> Option<Option<Placed>> {
        self.pending.get(&user).copied()
    }

    /// Members changed since the last publication who then stood in `room`, as they stood.
    pub fn published_in(&self, room: RoomId) -> impl Iterator<Item = (UserId, Shown)> + '_ {
        self.pending.iter().filter_map(move |(user, before)| match before {
            Some((was, shown)) if *was == room => Some((*user, *shown)),
            _ => None,
        })
    }

    /// The version of `room`'s roster as last published (0 before its first change).
    pub fn version(&self, room: RoomId) -> u64 {
        self.versions.get(&room).copied().unwrap_or(0)
    }

    /// Publishes what changed since the last publication: each noted member compared with how
    /// they stand now (`current`), by room. Returns the rooms that changed, in room order, and
    /// bounds the log by `members` (how many people the session holds).
    pub fn publish(&mut self, current: impl Fn(UserId) -> Option<Placed>, members: usize) -> Vec<(RoomId, RoomChange)> {
        let pending = std::mem::take(&mut self.pending);
        let mut entries = Vec::new();
        for (user, before) in pending {
            let after = current(user);
            if before == after {
                continue;
            }
            match (before, after) {
                (Some((from, was)), Some((to, now))) if from == to => {
                    entries.push((from, user, Some(was), Some(now)));
                }
                (before, after) => {
                    if let Some((from, was)) = before {
                        entries.push((from, user, Some(was), None));
                    }
                    if let Some((to, now)) = after {
                        entries.push((to, user, None, Some(now)));
                    }
                }
            }
        }
        if entries.is_empty() {
            return Vec::new();
        }
        entries.sort_by_key(|(room, user, _, _)| (*room, *user));
        self.seq += 1;
        let seq = self.seq;
        let mut changes: Vec<(RoomId, RoomChange)> = Vec::new();
        for (room, user, before, after) in entries {
            self.log.push_back(Logged { seq, room, user, before, after });
            if changes.last().is_none_or(|(last, _)| *last != room) {
                let since = self.versions.insert(room, seq).unwrap_or(0);
                changes.push((room, RoomChange { since, ..RoomChange::default() }));
            }
            if let Some((_, change)) = changes.last_mut() {
                match after {
                    Some(shown) => change.upserts.push((user, shown)),
                    None => change.left.push(user),
                }
            }
        }
        let cap = LOG_BASE + LOG_PER_MEMBER * members;
        while self.log.len() > cap {
            if let Some(dropped) = self.log.pop_front() {
                self.floor = dropped.seq;
            }
        }
        changes
    }

    /// What changed in `room` between version `since` and the last publication, netted per
    /// member; `None` when the log no longer reaches back that far (or `since` was never
    /// published), so the caller sends the whole roster.
    pub fn delta_since(&self, room: RoomId, since: u64) -> Option<Delta> {
        if since < self.floor || since > self.seq || since > self.version(room) {
            return None;
        }
        let start = self.log.partition_point(|logged| logged.seq <= since);
        // Per member: how they stood at `since` (the first change's `before`) and now (the last
        // change's `after`).
        let mut net: HashMap<UserId, (Option<Shown>, Option<Shown>)> = HashMap::new();
        let mut order = Vec::new();
        for logged in self.log.range(start..).filter(|logged| logged.room == room) {
            net.entry(logged.user).and_modify(|(_, after)| *after = logged.after).or_insert_with(|| {
                order.push(logged.user);
                (logged.before, logged.after)
            });
        }
        let mut upserts = Vec::new();
        let mut left = Vec::new();
        for user in order {
            let Some((before, after)) = net.get(&user).copied() else { continue };
            if before == after {
                continue;
            }
            match after {
                Some(shown) => upserts.push((user, shown)),
                None => left.push(user),
            }
        }
        Some((upserts, left))
    }

    /// Forgets a room that closed or was deleted: nobody can be in it again.
    pub fn forget_room(&mut self, room: RoomId) {
        self.versions.remove(&room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use convene_protocol::{PresenceStatus, Role, SessionRole};
    use uuid::Uuid;

    fn shown(devices: u32) -> Shown {
        Shown {
            session_role: SessionRole::Participant,
            role: Role::Patient,
            devices,
            status: PresenceStatus::Active,
            joined_at: chrono::DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn user() -> UserId {
        UserId(Uuid::new_v4())
    }

    fn room() -> RoomId {
        RoomId(Uuid::new_v4())
    }

    /// Applies `moves` (user, where they stand now) as one publication.
    fn publish(rosters: &mut Rosters, now: &mut HashMap<UserId, Option<Placed>>, moves: &[(UserId, Option<Placed>)]) {
        for (user, to) in moves {
            rosters.note(*user, now.get(user).copied().flatten());
            now.insert(*user, *to);
        }
        let snapshot = now.clone();
        let present = snapshot.values().filter(|placed| placed.is_some()).count();
        rosters.publish(|user| snapshot.get(&user).copied().flatten(), present);
    }

    #[test]
    fn a_member_who_leaves_and_returns_unchanged_is_not_in_the_delta() {
        let (main, breakout) = (room(), room());
        let (a, b, c) = (user(), user(), user());
        let (sa, sb, sc) = (shown(1), shown(1), shown(1));
        let mut rosters = Rosters::new(7);
        let mut now = HashMap::new();
        publish(&mut rosters, &mut now, &[(a, Some((main, sa))), (b, Some((main, sb))), (c, Some((main, sc)))]);
        let held = rosters.version(main);
        // Everyone goes to a breakout, then everyone but c comes back, and b on a second device.
        publish(
            &mut rosters,
            &mut now,
            &[(a, Some((breakout, sa))), (b, Some((breakout, sb))), (c, Some((breakout, sc)))],
        );
        let sb2 = Shown { devices: 2, ..sb };
        publish(&mut rosters, &mut now, &[(a, Some((main, sa))), (b, Some((main, sb2)))]);
        let (upserts, left) = rosters.delta_since(main, held).expect("the log reaches back");
        assert_eq!(upserts, vec![(b, sb2)]);
        assert_eq!(left, vec![c]);
        // From the version in between, everyone in main arrived.
        let between = held + 1;
        let (upserts, left) = rosters.delta_since(main, between).expect("the log reaches back");
        assert_eq!(upserts.len(), 2);
        assert!(left.is_empty());
        assert_eq!(rosters.delta_since(main, rosters.version(main)), Some((vec![], vec![])));
    }

    #[test]
    fn changes_undone_within_a_window_publish_nothing() {
        let main = room();
        let a = user();
        let mut rosters = Rosters::new(1);
        let mut now = HashMap::new();
        publish(&mut rosters, &mut now, &[(a, Some((main, shown(1))))]);
        let version = rosters.version(main);
        publish(&mut rosters, &mut now, &[(a, None), (a, Some((main, shown(1))))]);
        assert_eq!(rosters.version(main), version, "a leave and a return in one window change nothing");
    }

    #[test]
    fn a_version_the_log_no_longer_reaches_gets_no_delta() {
        let main = room();
        let mut rosters = Rosters::new(1);
        let mut now = HashMap::new();
        let first = user();
        publish(&mut rosters, &mut now, &[(first, Some((main, shown(1))))]);
        let held = rosters.version(main);
        // One member present: the log keeps LOG_BASE + LOG_PER_MEMBER changes.
        for _ in 0..LOG_BASE + 2 * LOG_PER_MEMBER {
            let passer = user();
            publish(&mut rosters, &mut now, &[(passer, Some((main, shown(1))))]);
            publish(&mut rosters, &mut now, &[(passer, None)]);
        }
        assert_eq!(rosters.delta_since(main, held), None);
        assert!(rosters.delta_since(main, rosters.version(main)).is_some());
        // A version never published is not trusted either.
        assert_eq!(rosters.delta_since(main, rosters.version(main) + 1), None);
    }
}
