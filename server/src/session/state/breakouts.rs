//! Breakout rooms: creating and planning them, moving people between rooms, closing with a
//! countdown, timers, broadcasts and help requests.
//!
//! Every change of room goes through [`SessionState::relocate`], which moves presence with the
//! person (left the old room, joined the new one). A command's changes are checked in full first
//! ([`SessionState::check_moves`]), then staged (see [`super::staging`]): their transitions and
//! room rows are committed in one write, and only after that commit are they applied and
//! announced, all together or not at all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use convene_protocol::{AssignmentMode, ConnId, MoveReason, RequestId, RoomId, UserId};

use super::{
    Audience, BreakoutView, Change, Effect, Event, Help, Now, Overview, Reply, RoomSummary, SessionError, SessionState,
    send,
};
use crate::chat::RoomChat;
use crate::rooms::plan::{Slot, SplitRequest, split};
use crate::rooms::{Breakout, Deadline, MAX_BREAKOUT_ROOMS, MAX_ROOM_CAPACITY, valid_room_name};
use crate::store::{BreakoutChange, BreakoutRoomRecord, TransitionRecord, TransitionType};

/// Longest countdown or timer a host may set: a day.
const MAX_TIMER_SECS: u32 = 24 * 60 * 60;

impl SessionState {
    /// Where someone joining now lands: back in the room they were last in, if it is still
    /// open; else in their planned room or, in automatic mode, the least full room, while the
    /// breakouts are open; else the main room.
    pub(super) fn placement_for(&self, user: UserId, session_role: convene_protocol::SessionRole) -> RoomId {
        // Hosts do not count against capacity; for everyone else the room must have a place.
        let has_space = |room: &RoomId| {
            self.rooms
                .get(room)
                .and_then(|r| r.breakout.as_ref())
                .is_some_and(|b| session_role.is_host() || self.participants_in(*room) < b.max_participants)
        };
        if let Some(room) = self.breakouts.last_room.get(&user).filter(|room| has_space(room)) {
            return *room;
        }
        if !self.breakouts.open || session_role.is_host() {
            return self.main_room;
        }
        let planned = self.breakouts.manual.get(&user).or_else(|| self.breakouts.automatic.get(&user));
        if let Some(room) = planned.filter(|room| has_space(room)) {
            return *room;
        }
        self.rooms
            .values()
            .filter(|r| r.breakout.as_ref().is_some_and(|b| b.mode == AssignmentMode::Automatic))
            .map(|r| r.chat.id)
            .filter(|room| has_space(room))
            .min_by_key(|room| (self.participants_in(*room), *room))
            .unwrap_or(self.main_room)
    }

    pub(super) fn transition(
        &self,
        user: UserId,
        from: Option<RoomId>,
        to: Option<RoomId>,
        now: Now,
    ) -> TransitionRecord {
        let transition_type = match (from, to) {
            (None, _) => TransitionType::Join,
            (_, None) => TransitionType::Leave,
            _ => TransitionType::Move,
        };
        TransitionRecord {
            session_id: self.session.id,
            user_id: user,
            from_room: from,
            to_room: to,
            transition_type,
            at: now.wall,
        }
    }

    pub(super) fn room_summary(&self, room: RoomId) -> Option<RoomSummary> {
        let room = self.rooms.get(&room)?;
        Some(RoomSummary {
            id: room.chat.id,
            name: room.breakout.as_ref().map_or_else(|| room.chat.name.clone(), |b| b.name.clone()),
            last_seq: room.chat.last_seq(),
            max_participants: room.breakout.as_ref().map(|b| b.max_participants),
        })
    }

    /// Everything about the breakouts, as hosts see it.
    pub(super) fn overview(&self) -> Overview {
        let mut rooms: Vec<BreakoutView> = self.rooms.keys().filter_map(|room| self.breakout_view(*room)).collect();
        rooms.sort_by(|a, b| (a.breakout.created_at, &a.breakout.name).cmp(&(b.breakout.created_at, &b.breakout.name)));
        Overview {
            open: self.breakouts.open,
            options: self.breakouts.options,
            rooms,
            help: self.breakouts.help.values().cloned().collect(),
        }
    }

    fn breakout_view(&self, room: RoomId) -> Option<BreakoutView> {
        let r = self.rooms.get(&room)?;
        let breakout = r.breakout.clone()?;
        let mut members: Vec<UserId> = r.members.iter().copied().collect();
        members.sort();
        Some(BreakoutView { id: room, breakout, members, participants: self.participants_in(room) })
    }

    /// Tells hosts how the given breakout rooms look now, and which closed.
    pub(super) fn announce_breakouts(&self, rooms: &[RoomId], closed: &[RoomId], out: &mut Vec<Effect>) {
        let mut seen = HashSet::new();
        let views: Vec<BreakoutView> =
            rooms.iter().filter(|room| seen.insert(**room)).filter_map(|room| self.breakout_view(*room)).collect();
        if views.is_empty() && closed.is_empty() {
            return;
        }
        let event = Event::BreakoutsChanged { open: self.breakouts.open, rooms: views, closed: closed.to_vec() };
        send(out, Audience::Hosts, event);
    }

    /// Participants in a room, the ones its capacity counts (visiting hosts do not).
    fn participants_in(&self, room: RoomId) -> u32 {
        self.rooms.get(&room).map_or(0, |r| {
            let count = r
                .members
                .iter()
                .filter(|user| self.presence.get(**user).is_some_and(|m| !m.session_role.is_host()))
                .count();
            u32::try_from(count).unwrap_or(u32::MAX)
        })
    }

    /// Checks a set of moves as a whole: everyone present, named once, every room open, and no
    /// room beyond its capacity once all of them are applied.
    fn check_moves(&self, moves: &[(UserId, RoomId)]) -> Result<(), SessionError> {
        let mut seen = HashSet::new();
        let mut change: HashMap<RoomId, i64> = HashMap::new();
        for (user, to) in moves {
            if !seen.insert(*user) {
                return Err(SessionError::Invalid("a person is named twice"));
            }
            let member = self.presence.get(*user).ok_or(SessionError::NotPresent)?;
            let room = self.rooms.get(to).ok_or(SessionError::NoSuchRoom)?;
            if room.breakout.as_ref().is_some_and(|b| b.closes.is_some()) {
                return Err(SessionError::Conflict("that room is closing"));
            }
            if member.room != *to && !member.session_role.is_host() {
                *change.entry(member.room).or_default() -= 1;
                *change.entry(*to).or_default() += 1;
            }
        }
        for (room, delta) in change.into_iter().filter(|(_, delta)| *delta > 0) {
            let capacity = self.rooms.get(&room).and_then(|r| r.breakout.as_ref()).map(|b| b.max_participants);
            if let Some(capacity) = capacity
                && i64::from(self.participants_in(room)) + delta > i64::from(capacity)
            {
                return Err(SessionError::Full);
            }
        }
        Ok(())
    }

    /// Applies checked and committed moves: presence moves with each person, the moved hear
    /// `moved` with their new room's members, those who stayed in an affected room hear a
    /// presence diff, hosts hear how the rooms look now.
    pub(super) fn relocate(&mut self, moves: &[(UserId, RoomId)], reason: MoveReason, out: &mut Vec<Effect>) {
        let mut arrived: BTreeMap<RoomId, Vec<UserId>> = BTreeMap::new();
        let mut departed: BTreeMap<RoomId, Vec<UserId>> = BTreeMap::new();
        let mut moved = Vec::new();
        for (user, to) in moves {
            let Some(from) = self.presence.get(*user).map(|m| m.room) else { continue };
            if from == *to {
                continue;
            }
            self.presence.set_room(*user, *to);
            if let Some(room) = self.rooms.get_mut(&from) {
                room.members.remove(user);
            }
            if let Some(room) = self.rooms.get_mut(to) {
                room.members.insert(*user);
            }
            self.breakouts.last_room.insert(*user, *to);
            arrived.entry(*to).or_default().push(*user);
            departed.entry(from).or_default().push(*user);
            moved.push((*user, from, *to));
        }
        // A host arriving in a room answers its help requests.
        let helped: Vec<UserId> = self
            .breakouts
            .help
            .values()
            .filter(|help| {
                arrived.get(&help.room).is_some_and(|users| {
                    users.iter().any(|u| self.presence.get(*u).is_some_and(|m| m.session_role.is_host()))
                })
            })
            .map(|help| help.user)
            .collect();
        for user in helped {
            self.breakouts.help.remove(&user);
            send(out, Audience::Hosts, Event::HelpResolved { user });
        }
        // One frame per destination room: everyone a command moves into a room hears the same
        // thing, so a whole session returning to the main room costs one encoding, not one each.
        let mut movers: BTreeMap<RoomId, Vec<UserId>> = BTreeMap::new();
        for (user, _from, to) in moved {
            movers.entry(to).or_default().push(user);
        }
        for (to, users) in movers {
            let Some(room) = self.room_summary(to) else { continue };
            let members = self.room_members(to);
            let audience = match users.as_slice() {
                [user] => Audience::User(*user),
                _ => Audience::Users(users),
            };
            send(out, audience, Event::Moved { room, reason, members });
        }
        let affected: Vec<RoomId> = arrived.keys().chain(departed.keys()).copied().collect();
        for room in &affected {
            let joined_users = arrived.remove(room).unwrap_or_default();
            let joined = joined_users.iter().filter_map(|u| self.presence.get(*u).cloned()).collect();
            let left = departed.remove(room).unwrap_or_default();
            if self.rooms.get(room).is_none_or(|r| r.members.len() <= joined_users.len()) {
                continue;
            }
            send(
                out,
                Audience::RoomExceptUsers(*room, joined_users),
                Event::RoomPresence { room: *room, joined, left },
            );
        }
        self.announce_breakouts(&affected, &[], out);
    }

    /// The transitions `moves` will record, as [`SessionState::relocate`] will carry them out.
    fn transitions_for(&self, moves: &[(UserId, RoomId)], now: Now) -> Vec<TransitionRecord> {
        moves
            .iter()
            .filter_map(|(user, to)| {
                let from = self.presence.get(*user)?.room;
                (from != *to).then(|| self.transition(*user, Some(from), Some(*to), now))
            })
            .collect()
    }

    fn room_members(&self, room: RoomId) -> Vec<crate::presence::Member> {
        self.rooms
            .get(&room)
            .map(|r| r.members.iter().filter_map(|u| self.presence.get(*u).cloned()).collect())
            .unwrap_or_default()
    }

    /// Answers a retried host request with its first outcome; returns whether it was one.
    fn answered_before(
        &self,
        conn: ConnId,
        user: UserId,
        request_id: &Option<RequestId>,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(request_id) = request_id else { return false };
        let Some(outcome) = self.breakouts.recent.get(&(user, request_id.clone())) else { return false };
        let event = match outcome {
            Ok(()) => Event::Succeeded { request_id: Some(request_id.clone()) },
            Err(error) => Event::Failed { request_id: Some(request_id.clone()), error: error.clone() },
        };
        send(out, Audience::Conn(conn), event);
        true
    }

    fn remember(&mut self, user: UserId, request_id: &Option<RequestId>, outcome: &Result<(), SessionError>) {
        if let Some(request_id) = request_id {
            self.breakouts.recent.remember((user, request_id.clone()), outcome.clone());
        }
    }

    /// Checks a set of moves requested by a host and stages them, answering a retry of the same
    /// request with the first outcome instead of moving again. Refusals are remembered at once;
    /// success only once the moves are committed.
    fn host_moves(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        plan: impl FnOnce(&Self) -> Result<Vec<(UserId, RoomId)>, SessionError>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let host = self.host_of(conn)?.user_id;
        if self.answered_before(conn, host, &request_id, out) {
            return Ok(());
        }
        let moves = plan(self).and_then(|moves| self.check_moves(&moves).map(|()| moves));
        let moves = moves.inspect_err(|error| self.remember(host, &request_id, &Err(error.clone())))?;
        let transitions = self.transitions_for(&moves, now);
        let change = Change::Relocate { moves, reason: MoveReason::Moved };
        let reply = Reply { conn, request_id };
        self.stage(change, vec![BreakoutChange::Transitions(transitions)], Some(reply), Some(host), out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_rooms(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        names: &[String],
        count: Option<u32>,
        max_participants: u32,
        mode: AssignmentMode,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let host = self.host_of(conn)?.user_id;
        if max_participants == 0 || max_participants > MAX_ROOM_CAPACITY {
            return Err(SessionError::Invalid("max_participants must be 1 to 1000"));
        }
        let existing = self.rooms.values().filter(|r| r.breakout.is_some()).count();
        let names: Vec<String> = match (names.is_empty(), count) {
            (false, None) => names
                .iter()
                .map(|n| valid_room_name(n))
                .collect::<Option<_>>()
                .ok_or(SessionError::Invalid("room names must be 1 to 100 printable characters"))?,
            (true, Some(count)) if count > 0 => {
                (existing + 1..=existing + count as usize).map(|n| format!("Room {n}")).collect()
            }
            _ => return Err(SessionError::Invalid("give either names or a positive count")),
        };
        if existing + names.len() > MAX_BREAKOUT_ROOMS {
            return Err(SessionError::Invalid("a session has at most 100 breakout rooms"));
        }
        let mut records = Vec::with_capacity(names.len());
        let mut created = Vec::with_capacity(names.len());
        for name in names {
            let id = RoomId::new_v4();
            let breakout = Breakout {
                name: name.clone(),
                max_participants,
                mode,
                created_by: host,
                created_at: now.wall,
                ends: None,
                closes: None,
            };
            records.push(BreakoutRoomRecord {
                id,
                main_session_id: self.session.id,
                room_name: name,
                max_participants,
                assignment_mode: mode,
                created_by: host,
                created_at: now.wall,
            });
            created.push((id, breakout));
        }
        let changes = vec![BreakoutChange::CreateRooms(records)];
        self.stage(Change::CreateRooms(created), changes, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    /// Adds committed rooms and tells the hosts.
    pub(super) fn add_rooms(&mut self, rooms: Vec<(RoomId, Breakout)>, out: &mut Vec<Effect>) {
        let ids: Vec<RoomId> = rooms.iter().map(|(id, _)| *id).collect();
        for (id, breakout) in rooms {
            let chat = RoomChat::new(id, breakout.name.clone(), 0, Vec::new(), self.limits.resume_window);
            self.rooms.insert(id, super::Room { chat, members: HashSet::new(), breakout: Some(breakout) });
        }
        self.announce_breakouts(&ids, &[], out);
    }

    pub(super) fn update_room(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        name: Option<String>,
        max_participants: Option<u32>,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        let name = name
            .map(|n| {
                valid_room_name(&n).ok_or(SessionError::Invalid("room names must be 1 to 100 printable characters"))
            })
            .transpose()?;
        if max_participants.is_some_and(|m| m == 0 || m > MAX_ROOM_CAPACITY) {
            return Err(SessionError::Invalid("max_participants must be 1 to 1000"));
        }
        let participants = self.participants_in(room);
        let breakout = self.rooms.get(&room).and_then(|r| r.breakout.as_ref()).ok_or(SessionError::NoSuchRoom)?;
        if max_participants.is_some_and(|m| m < participants) {
            return Err(SessionError::Conflict("the room holds more participants than that"));
        }
        let name = name.unwrap_or_else(|| breakout.name.clone());
        let max_participants = max_participants.unwrap_or(breakout.max_participants);
        let changes = vec![BreakoutChange::UpdateRoom { room, name: name.clone(), max_participants }];
        let change = Change::UpdateRoom { room, name, max_participants };
        self.stage(change, changes, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    pub(super) fn delete_room(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        let r = self.rooms.get(&room).filter(|r| r.breakout.is_some()).ok_or(SessionError::NoSuchRoom)?;
        if !r.members.is_empty() {
            return Err(SessionError::Conflict("only an empty room can be deleted"));
        }
        let changes = vec![BreakoutChange::DeleteRoom(room)];
        self.stage(Change::DeleteRoom(room), changes, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    pub(super) fn set_breakout_options(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        allow_self_select: Option<bool>,
        allow_return_to_main: Option<bool>,
        countdown_secs: Option<u32>,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        if countdown_secs.is_some_and(|s| s > MAX_TIMER_SECS) {
            return Err(SessionError::Invalid("countdown_secs is at most a day"));
        }
        let options = &mut self.breakouts.options;
        if let Some(allow) = allow_self_select {
            options.allow_self_select = allow;
        }
        if let Some(allow) = allow_return_to_main {
            options.allow_return_to_main = allow;
        }
        if let Some(secs) = countdown_secs {
            options.countdown = Duration::from_secs(u64::from(secs));
        }
        send(
            out,
            Audience::Hosts,
            Event::BreakoutsChanged { open: self.breakouts.open, rooms: Vec::new(), closed: Vec::new() },
        );
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        assignments: Vec<(UserId, RoomId)>,
        automatic: bool,
        keep_together: Vec<[UserId; 2]>,
        keep_apart: Vec<[UserId; 2]>,
        reset: bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        if assignments
            .iter()
            .any(|(_, room)| *room != self.main_room && self.rooms.get(room).is_none_or(|r| r.breakout.is_none()))
        {
            return Err(SessionError::NoSuchRoom);
        }
        if reset {
            self.breakouts.manual.clear();
            self.breakouts.automatic.clear();
        }
        for (user, room) in assignments {
            self.breakouts.automatic.remove(&user);
            if room == self.main_room {
                self.breakouts.manual.remove(&user);
            } else {
                self.breakouts.manual.insert(user, room);
            }
        }
        if !keep_together.is_empty() {
            self.breakouts.keep_together = keep_together;
        }
        if !keep_apart.is_empty() {
            self.breakouts.keep_apart = keep_apart;
        }
        let present: Vec<UserId> = {
            let mut present: Vec<UserId> =
                self.presence.members().filter(|m| !m.session_role.is_host()).map(|m| m.user_id).collect();
            present.sort();
            present
        };
        if automatic {
            // Manual choices are passed as fixed: the split counts them against capacity itself.
            let rooms = self
                .rooms
                .values()
                .filter_map(|r| r.breakout.as_ref().map(|b| Slot { room: r.chat.id, capacity: b.max_participants }))
                .collect();
            let request = SplitRequest {
                rooms,
                fixed: self.breakouts.manual.clone(),
                people: present.clone(),
                keep_together: self.breakouts.keep_together.clone(),
                keep_apart: self.breakouts.keep_apart.clone(),
            };
            self.breakouts.automatic = split(&request, &mut rand::rng()).placed;
        }
        let mut planned: Vec<(UserId, RoomId)> = self
            .breakouts
            .manual
            .iter()
            .chain(self.breakouts.automatic.iter())
            .map(|(user, room)| (*user, *room))
            .collect();
        planned.sort();
        let unassigned = present.into_iter().filter(|user| self.planned_room(*user).is_none()).collect();
        send(out, Audience::Conn(conn), Event::PlanPrepared { request_id, assignments: planned, unassigned });
        Ok(())
    }

    fn planned_room(&self, user: UserId) -> Option<RoomId> {
        self.breakouts.manual.get(&user).or_else(|| self.breakouts.automatic.get(&user)).copied()
    }

    pub(super) fn open(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        timer_secs: Option<u32>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let host = self.host_of(conn)?.user_id;
        if self.answered_before(conn, host, &request_id, out) {
            return Ok(());
        }
        if !self.rooms.values().any(|r| r.breakout.is_some()) {
            return Err(SessionError::Conflict("create breakout rooms first"));
        }
        if timer_secs.is_some_and(|s| s == 0 || s > MAX_TIMER_SECS) {
            return Err(SessionError::Invalid("timer_secs must be 1 second to a day"));
        }
        let mut moves: Vec<(UserId, RoomId)> = self
            .presence
            .members()
            .filter(|m| !m.session_role.is_host())
            .filter_map(|m| self.planned_room(m.user_id).filter(|room| *room != m.room).map(|room| (m.user_id, room)))
            .collect();
        moves.sort();
        self.check_moves(&moves).inspect_err(|error| self.remember(host, &request_id, &Err(error.clone())))?;
        let ends = timer_secs.map(|secs| Deadline {
            at: now.mono + Duration::from_secs(u64::from(secs)),
            wall: now.wall + chrono::Duration::seconds(i64::from(secs)),
        });
        let changes = vec![BreakoutChange::Transitions(self.transitions_for(&moves, now))];
        self.stage(Change::Open { moves, ends }, changes, Some(Reply { conn, request_id }), Some(host), out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn move_participant(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        from: RoomId,
        to: RoomId,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_moves(
            conn,
            request_id,
            |state| {
                let current = state.presence.get(user).ok_or(SessionError::NotPresent)?.room;
                if current != from {
                    // Someone else moved them first: this request acted on a stale view.
                    return Err(SessionError::Conflict("the participant is no longer in that room"));
                }
                Ok(vec![(user, to)])
            },
            now,
            out,
        )
    }

    pub(super) fn assign(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        assignments: Vec<(UserId, RoomId)>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_moves(conn, request_id, |_| Ok(assignments), now, out)
    }

    pub(super) fn swap(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        a: UserId,
        b: UserId,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_moves(
            conn,
            request_id,
            |state| {
                let room_a = state.presence.get(a).ok_or(SessionError::NotPresent)?.room;
                let room_b = state.presence.get(b).ok_or(SessionError::NotPresent)?.room;
                if a == b || room_a == room_b {
                    return Err(SessionError::Invalid("swap two people in different rooms"));
                }
                Ok(vec![(a, room_b), (b, room_a)])
            },
            now,
            out,
        )
    }

    pub(super) fn select(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let member = self.member_of(conn)?;
        let (user, is_host) = (member.user_id, member.session_role.is_host());
        // Settings that lock participants in or out never lock the hosts.
        if !is_host {
            if room == self.main_room {
                if !self.breakouts.options.allow_return_to_main {
                    return Err(SessionError::NotAllowed("returning to the main room is not allowed now"));
                }
            } else {
                let self_select =
                    self.rooms.get(&room).and_then(|r| r.breakout.as_ref()).ok_or(SessionError::NoSuchRoom)?.mode
                        == AssignmentMode::SelfSelect;
                if !self.breakouts.open || !(self.breakouts.options.allow_self_select || self_select) {
                    return Err(SessionError::NotAllowed("picking a room is not allowed now"));
                }
            }
        }
        let moves = vec![(user, room)];
        self.check_moves(&moves)?;
        let reason = if is_host { MoveReason::Moved } else { MoveReason::Selected };
        let changes = vec![BreakoutChange::Transitions(self.transitions_for(&moves, now))];
        self.stage(Change::Relocate { moves, reason }, changes, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn close(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        rooms: Vec<RoomId>,
        countdown_secs: Option<u32>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        if countdown_secs.is_some_and(|s| s > MAX_TIMER_SECS) {
            return Err(SessionError::Invalid("countdown_secs is at most a day"));
        }
        let rooms: Vec<RoomId> = if rooms.is_empty() {
            self.rooms.values().filter(|r| r.breakout.is_some()).map(|r| r.chat.id).collect()
        } else {
            rooms
        };
        if rooms.is_empty() || rooms.iter().any(|room| self.rooms.get(room).is_none_or(|r| r.breakout.is_none())) {
            return Err(SessionError::NoSuchRoom);
        }
        let countdown = countdown_secs.map_or(self.breakouts.options.countdown, |s| Duration::from_secs(u64::from(s)));
        if countdown.is_zero() {
            let changes = self.closing_rows(&rooms, now);
            self.stage(Change::Close(rooms), changes, Some(Reply { conn, request_id }), None, out);
            return Ok(());
        }
        for room in &rooms {
            self.start_countdown(*room, countdown, now, out);
        }
        self.announce_breakouts(&rooms, &[], out);
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    fn start_countdown(&mut self, room: RoomId, countdown: Duration, now: Now, out: &mut Vec<Effect>) {
        let Some(breakout) = self.rooms.get_mut(&room).and_then(|r| r.breakout.as_mut()) else { return };
        let closes = Deadline {
            at: now.mono + countdown,
            wall: now.wall + chrono::Duration::from_std(countdown).unwrap_or(chrono::Duration::zero()),
        };
        // An earlier countdown already under way is not extended.
        let closes = match breakout.closes {
            Some(current) if current.at <= closes.at => current,
            _ => closes,
        };
        breakout.closes = Some(closes);
        let seconds_left = u32::try_from(closes.at.saturating_duration_since(now.mono).as_secs()).unwrap_or(u32::MAX);
        send(out, Audience::RoomAndHosts(room), Event::RoomClosing { room, seconds_left, closes_at: closes.wall });
    }

    /// Whom closing `rooms` returns to the main room.
    fn closing_moves(&self, rooms: &[RoomId]) -> Vec<(UserId, RoomId)> {
        let mut moves: Vec<(UserId, RoomId)> = rooms
            .iter()
            .filter_map(|room| self.rooms.get(room))
            .flat_map(|r| r.members.iter().map(|user| (*user, self.main_room)))
            .collect();
        moves.sort();
        moves
    }

    /// The rows that closing `rooms` now writes: the rooms closed, their members' transitions.
    fn closing_rows(&self, rooms: &[RoomId], now: Now) -> Vec<BreakoutChange> {
        let transitions = self.transitions_for(&self.closing_moves(rooms), now);
        vec![
            BreakoutChange::CloseRooms { rooms: rooms.to_vec(), at: now.wall },
            BreakoutChange::Transitions(transitions),
        ]
    }

    /// Closes committed rooms: their members return to the main room.
    pub(super) fn close_now(&mut self, rooms: &[RoomId], out: &mut Vec<Effect>) {
        let moves = self.closing_moves(rooms);
        self.relocate(&moves, MoveReason::RoomClosed, out);
        for room in rooms {
            self.rooms.remove(room);
        }
        self.breakouts.manual.retain(|_, r| !rooms.contains(r));
        self.breakouts.automatic.retain(|_, r| !rooms.contains(r));
        let resolved: Vec<UserId> =
            self.breakouts.help.values().filter(|h| rooms.contains(&h.room)).map(|h| h.user).collect();
        for user in resolved {
            self.breakouts.help.remove(&user);
            send(out, Audience::Hosts, Event::HelpResolved { user });
        }
        if !self.rooms.values().any(|r| r.breakout.is_some()) {
            self.breakouts.open = false;
        }
        self.announce_breakouts(&[], rooms, out);
    }

    pub(super) fn broadcast(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        body: String,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let from = self.host_of(conn)?.user_id;
        self.check_body(&body)?;
        send(out, Audience::Session, Event::Broadcast { from, body, at: now.wall });
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    pub(super) fn ask_for_help(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let member = self.member_of(conn)?;
        let (user, room) = (member.user_id, member.room);
        if room == self.main_room {
            return Err(SessionError::Invalid("help is asked for from a breakout room"));
        }
        let help = self.breakouts.help.entry(user).or_insert(Help { user, room, since: now.wall }).clone();
        send(out, Audience::Hosts, Event::HelpRequested(help));
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    pub(super) fn resolve_help(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.host_of(conn)?;
        self.breakouts.help.remove(&user).ok_or(SessionError::NoHelpRequest)?;
        send(out, Audience::Hosts, Event::HelpResolved { user });
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    /// Fires what is due: timers reaching their warning start the closing countdown, and rooms
    /// whose countdown ended close.
    pub(super) fn tick(&mut self, now: Now, out: &mut Vec<Effect>) {
        let countdown = self.breakouts.options.countdown;
        let warn: Vec<(RoomId, Duration)> = self
            .rooms
            .values()
            .filter_map(|r| {
                let breakout = r.breakout.as_ref()?;
                let ends = breakout.ends?;
                (breakout.closes.is_none() && ends.at.checked_sub(countdown).is_none_or(|warn_at| warn_at <= now.mono))
                    .then(|| (r.chat.id, ends.at.saturating_duration_since(now.mono)))
            })
            .collect();
        for (room, left) in warn {
            self.start_countdown(room, left, now, out);
        }
        let mut due: Vec<RoomId> = self
            .rooms
            .values()
            .filter(|r| r.breakout.as_ref().and_then(|b| b.closes).is_some_and(|closes| closes.at <= now.mono))
            .map(|r| r.chat.id)
            .collect();
        due.sort();
        if !due.is_empty() {
            let changes = self.closing_rows(&due, now);
            self.stage(Change::Close(due), changes, None, None, out);
        }
    }

    /// When the session's clock next needs to run, if ever. Not while a change is in flight:
    /// the clock waits for its commit like any other change of rooms.
    pub fn next_deadline(&self) -> Option<std::time::Instant> {
        if self.is_staging() {
            return None;
        }
        let countdown = self.breakouts.options.countdown;
        self.rooms
            .values()
            .filter_map(|r| r.breakout.as_ref())
            .filter_map(|b| match (b.closes, b.ends) {
                (Some(closes), _) => Some(closes.at),
                (None, Some(ends)) => Some(ends.at.checked_sub(countdown).unwrap_or(ends.at)),
                (None, None) => None,
            })
            .min()
    }
}
