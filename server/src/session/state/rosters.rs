//! Rosters: which members each device is told about, and when.
//!
//! A participant follows the roster of the room they are in; hosts follow every room's. Changes
//! are not announced as they happen: presence notes them, and once the window after the first
//! has passed they are published together ([`SessionState::publish_presence`]), one diff per
//! changed room to that room's participants and one frame with every changed room to the hosts.
//! A device arriving in a room (joining, moved) is sent the room as last published, whole or as
//! a diff against the version it held, so the next publication applies to it like to everyone.
//!
//! A room with more members than the roster limit is *large*: its participants are told so once
//! and then follow only its count (and its hosts, as they were when told); they page the rest
//! with `fetch_roster`. It is followed live again, with the whole roster, once it has half as
//! many members as the limit, so a room hovering at the limit does not flap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use convene_protocol::{ConnId, FetchRoster, HeldRoster, RequestId, RoomId, UserId};

use super::{Audience, Effect, Event, RosterView, SessionError, SessionState, send};
use crate::config::PresenceConfig;
use crate::presence::Shown;

/// Where publishing stands: when the pending changes are due, which rooms are large, and the
/// counts last sent.
#[derive(Debug)]
pub(super) struct Publishing {
    config: PresenceConfig,
    /// When the changes noted so far are published; set by the first change of a window.
    due: Option<Instant>,
    /// Rooms too large to follow live.
    large: HashSet<RoomId>,
    /// The count of each room as last sent in `room_counts`.
    counts: HashMap<RoomId, u32>,
    /// Rooms whose count may have changed since.
    counts_dirty: HashSet<RoomId>,
    /// When the next `room_counts` goes out: an interval after the last one.
    counts_due: Option<Instant>,
    counts_sent: Option<Instant>,
}

impl Publishing {
    pub(super) fn new(config: PresenceConfig) -> Self {
        Self {
            config,
            due: None,
            large: HashSet::new(),
            counts: HashMap::new(),
            counts_dirty: HashSet::new(),
            counts_due: None,
            counts_sent: None,
        }
    }

    /// Arms the next `room_counts` when a count may have changed: at once, or an interval after
    /// the last one.
    fn arm_counts(&mut self, now: Instant) {
        if self.counts_dirty.is_empty() || self.counts_due.is_some() {
            return;
        }
        let interval = self.config.counts_interval;
        self.counts_due = Some(self.counts_sent.map_or(now, |sent| (sent + interval).max(now)));
    }
}

impl SessionState {
    /// When presence next has something to publish.
    pub(super) fn presence_deadline(&self) -> Option<Instant> {
        [self.publishing.due, self.publishing.counts_due].into_iter().flatten().min()
    }

    /// Publishes the presence changes whose window has passed, and room counts whose interval
    /// has; arms the window at the first change.
    pub(super) fn publish_presence(&mut self, now: super::Now, out: &mut Vec<Effect>) {
        if self.presence.rosters().has_pending() {
            let due = *self.publishing.due.get_or_insert(now.mono + self.publishing.config.window);
            if due <= now.mono {
                self.publish_rosters(&BTreeMap::new(), out);
            }
        } else {
            self.publishing.due = None;
        }
        self.publishing.arm_counts(now.mono);
        if self.publishing.counts_due.is_some_and(|due| due <= now.mono) {
            self.publishing.counts_due = None;
            self.publish_counts(now.mono, out);
        }
    }

    /// Publishes every change noted so far. `arrived` (per room, sorted) were just moved there
    /// and are sent the room as this publication leaves it: its diff of that room is not for
    /// them.
    pub(super) fn publish_rosters(&mut self, arrived: &BTreeMap<RoomId, Vec<UserId>>, out: &mut Vec<Effect>) {
        self.publishing.due = None;
        let changes = self.presence.publish();
        let epoch = self.presence.rosters().epoch();
        let limit = self.publishing.config.roster_limit;
        let mut for_hosts = Vec::with_capacity(changes.len());
        for (room, change) in changes {
            let Some(total) = self.rooms.get(&room).map(|r| r.members.len()) else {
                // The room closed or was deleted with these changes; hosts heard that.
                self.presence.forget_room(room);
                continue;
            };
            self.publishing.counts_dirty.insert(room);
            let diff = RosterView {
                epoch,
                room,
                version: self.presence.rosters().version(room),
                since: Some(change.since),
                members: change.upserts,
                left: change.left,
                total: count(total),
                live: true,
            };
            let was_large = self.publishing.large.contains(&room);
            let large = if was_large { total > limit / 2 } else { total > limit };
            let for_participants = match (was_large, large) {
                (false, false) => Some(diff.clone()),
                (false, true) => {
                    self.publishing.large.insert(room);
                    Some(self.large_roster(room))
                }
                (true, false) => {
                    self.publishing.large.remove(&room);
                    Some(self.whole_roster(room))
                }
                (true, true) => None,
            };
            if let Some(roster) = for_participants {
                let except = arrived.get(&room).cloned().unwrap_or_default();
                let audience = Audience::RoomParticipants(room, except);
                send(out, audience, Event::PresenceChanged { rosters: vec![roster] });
            }
            for_hosts.push(diff);
        }
        if !for_hosts.is_empty() {
            send(out, Audience::Hosts, Event::PresenceChanged { rosters: for_hosts });
        }
    }

    fn publish_counts(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let mut counts: Vec<(RoomId, u32)> = Vec::new();
        for room in std::mem::take(&mut self.publishing.counts_dirty) {
            let Some(members) = self.rooms.get(&room).map(|r| count(r.members.len())) else {
                self.publishing.counts.remove(&room);
                continue;
            };
            if self.publishing.counts.insert(room, members) != Some(members) {
                counts.push((room, members));
            }
        }
        if counts.is_empty() {
            return;
        }
        counts.sort();
        self.publishing.counts_sent = Some(now);
        send(out, Audience::Session, Event::RoomCounts { counts });
    }

    /// The roster of `room` a device arriving there is sent: for a participant in a large room
    /// its hosts; a diff against `held` while the log reaches back to it; the whole roster
    /// otherwise. All as last published.
    pub(super) fn roster_for(&self, room: RoomId, host: bool, held: Option<u64>) -> RosterView {
        if !host && self.publishing.large.contains(&room) {
            return self.large_roster(room);
        }
        let rosters = self.presence.rosters();
        match held.and_then(|since| Some((since, rosters.delta_since(room, since)?))) {
            Some((since, (members, left))) => RosterView {
                epoch: rosters.epoch(),
                room,
                version: rosters.version(room),
                since: Some(since),
                members,
                left,
                total: count(self.published_total(room)),
                live: true,
            },
            None => self.whole_roster(room),
        }
    }

    /// The rosters a joining device follows, as diffs against those it names where possible.
    pub(super) fn rosters_on_join(&self, room: RoomId, host: bool, held: &[HeldRoster]) -> Vec<RosterView> {
        let epoch = self.presence.rosters().epoch();
        let held_of =
            |room: RoomId| held.iter().find(|h| h.room_id == room && h.version.epoch == epoch).map(|h| h.version.seq);
        if !host {
            return vec![self.roster_for(room, false, held_of(room))];
        }
        self.rooms_main_first().into_iter().map(|room| self.roster_for(room, true, held_of(room))).collect()
    }

    /// Every room's whole roster, for a member who just became a host.
    pub(super) fn rosters_for_new_host(&self) -> Vec<RosterView> {
        self.rooms_main_first().into_iter().map(|room| self.whole_roster(room)).collect()
    }

    /// The open rooms in the order a host is sent their rosters: the main room, then by id.
    fn rooms_main_first(&self) -> Vec<RoomId> {
        let mut rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        rooms.sort_by_key(|r| (*r != self.main_room, *r));
        rooms
    }

    /// Remembers, for each of `user`'s devices, the roster of `room` they hold as they leave it:
    /// a participant's, of a room followed live.
    pub(super) fn hold_roster(&mut self, user: UserId, room: RoomId) {
        let Some(member) = self.presence.get(user) else { return };
        if member.session_role.is_host() || self.publishing.large.contains(&room) {
            return;
        }
        let conns = member.conns.clone();
        let version = self.presence.rosters().version(room);
        for conn in conns {
            self.presence.hold(conn, room, version);
        }
    }

    /// The roster `conn` holds of `room`, if it is remembered to hold one.
    pub(super) fn held_roster(&self, conn: ConnId, room: RoomId) -> Option<u64> {
        self.presence.held(conn, room)
    }

    /// `room`'s members as last published that `keep` picks, ordered by user id.
    fn published_members(&self, room: RoomId, keep: impl Fn(&Shown) -> bool) -> Vec<(UserId, Shown)> {
        let rosters = self.presence.rosters();
        let mut members: Vec<(UserId, Shown)> = self
            .rooms
            .get(&room)
            .map(|r| {
                r.members
                    .iter()
                    .filter(|user| rosters.published(**user).is_none())
                    .filter_map(|user| self.presence.get(*user))
                    .map(|member| (member.user_id, member.shown()))
                    .filter(|(_, shown)| keep(shown))
                    .collect()
            })
            .unwrap_or_default();
        members.extend(rosters.published_in(room).filter(|(_, shown)| keep(shown)));
        members.sort_by_key(|(user, _)| *user);
        members
    }

    /// How many members `room` had at its last publication.
    fn published_total(&self, room: RoomId) -> usize {
        let rosters = self.presence.rosters();
        let unchanged = self
            .rooms
            .get(&room)
            .map_or(0, |r| r.members.iter().filter(|user| rosters.published(**user).is_none()).count());
        unchanged + rosters.published_in(room).count()
    }

    fn whole_roster(&self, room: RoomId) -> RosterView {
        let rosters = self.presence.rosters();
        let members = self.published_members(room, |_| true);
        RosterView {
            epoch: rosters.epoch(),
            room,
            version: rosters.version(room),
            since: None,
            total: count(members.len()),
            members,
            left: Vec::new(),
            live: true,
        }
    }

    /// What a participant of a large room is shown: its hosts and its count. Costs a pass over
    /// the room, not a copy of it: every participant arriving in a large room is sent one.
    fn large_roster(&self, room: RoomId) -> RosterView {
        let rosters = self.presence.rosters();
        RosterView {
            epoch: rosters.epoch(),
            room,
            version: rosters.version(room),
            since: None,
            members: self.published_members(room, |shown| shown.session_role.is_host()),
            left: Vec::new(),
            total: count(self.published_total(room)),
            live: false,
        }
    }

    /// Answers `fetch_roster`: a page of `room`'s current members by user id, for a member of
    /// the room or a host.
    pub(super) fn fetch_roster(
        &self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        after: Option<UserId>,
        limit: Option<u32>,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let member = self.member_of(conn)?;
        let Some(members) = self.rooms.get(&room).map(|r| &r.members) else {
            return Err(SessionError::NoSuchRoom);
        };
        if member.room != room && !member.session_role.is_host() {
            return Err(SessionError::NotInRoom);
        }
        let limit = limit.unwrap_or(FetchRoster::DEFAULT_LIMIT).clamp(1, FetchRoster::MAX_LIMIT);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut ids: Vec<UserId> = members.iter().copied().filter(|user| after.is_none_or(|a| *user > a)).collect();
        ids.sort_unstable();
        let next = if ids.len() > limit { ids.get(limit - 1).copied() } else { None };
        ids.truncate(limit);
        let page = ids.iter().filter_map(|user| self.presence.get(*user).cloned()).collect();
        let total = count(members.len());
        send(out, Audience::Conn(conn), Event::RosterPage { request_id, room, members: page, next, total });
        Ok(())
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
