//! Moving people between rooms: checking a set of moves as a whole, carrying them out with
//! presence following the person, and the host's and participants' move commands.
//!
//! Every change of room goes through [`SessionState::relocate`]. A command's moves are checked in
//! full first ([`SessionState::check_moves`]), then staged (see [`super::staging`]): their
//! transitions are committed in one write, and only after that commit are they applied and
//! announced, all together or not at all.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use convene_protocol::{AssignmentMode, ConnId, MoveReason, RequestId, RoomId, UserId};

use super::{Audience, Change, Effect, Event, Now, Reply, SessionError, SessionState, send};
use crate::store::{AuditAction, SessionWrite, TransitionRecord};

impl SessionState {
    /// Checks a set of moves as a whole: everyone present, named once, every room open, and no
    /// room beyond its capacity once all of them are applied.
    pub(super) fn check_moves(&self, moves: &[(UserId, RoomId)]) -> Result<(), SessionError> {
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
    /// `moved` with their new room's roster, those who stayed in an affected room hear it with
    /// the window's other presence changes, hosts hear how the rooms look now.
    pub(super) fn relocate(&mut self, moves: &[(UserId, RoomId)], reason: MoveReason, out: &mut Vec<Effect>) {
        let mut affected: BTreeSet<RoomId> = BTreeSet::new();
        let mut moved = Vec::new();
        for (user, to) in moves {
            let Some(from) = self.presence.get(*user).map(|m| m.room) else { continue };
            if from == *to {
                continue;
            }
            self.hold_roster(*user, from);
            self.presence.set_room(*user, *to);
            if let Some(room) = self.rooms.get_mut(&from) {
                room.members.remove(user);
            }
            if let Some(room) = self.rooms.get_mut(to) {
                room.enter(*user);
            }
            self.breakouts.last_room.insert(*user, *to);
            affected.extend([from, *to]);
            moved.push((*user, *to));
        }
        // A host arriving in a room answers its help requests.
        let helped: Vec<UserId> = self
            .breakouts
            .help
            .values()
            .filter(|help| {
                moved.iter().any(|(user, to)| {
                    *to == help.room && self.presence.get(*user).is_some_and(|m| m.session_role.is_host())
                })
            })
            .map(|help| help.user)
            .collect();
        for user in helped {
            self.breakouts.help.remove(&user);
            send(out, Audience::Hosts, Event::HelpResolved { user });
        }
        // Several people moved at once are published at once, and each is sent their new room
        // as that publication leaves it: a whole session returning to the main room then hears
        // only what changed while it was away, instead of every arrival but its own. (One
        // person's move waits for the window like any change, and their arrival reaches them in
        // its diff.)
        if moved.len() > 1 {
            let mut arrived: BTreeMap<RoomId, Vec<UserId>> = BTreeMap::new();
            for (user, to) in &moved {
                arrived.entry(*to).or_default().push(*user);
            }
            arrived.values_mut().for_each(|users| users.sort_unstable());
            self.publish_rosters(&arrived, out);
        }
        // One frame per destination room and roster held: everyone a command moves back into a
        // room they left at the same point hears the same thing, so a whole session returning
        // to the main room costs one encoding, not one each.
        let mut frames: BTreeMap<(RoomId, bool, Option<u64>), Vec<ConnId>> = BTreeMap::new();
        for (user, to) in moved {
            let Some(member) = self.presence.get(user) else { continue };
            let host = member.session_role.is_host();
            for conn in &member.conns {
                // A host follows every room already: nothing changed for them since.
                let held = if host { Some(self.presence.rosters().version(to)) } else { self.held_roster(*conn, to) };
                frames.entry((to, host, held)).or_default().push(*conn);
            }
        }
        for ((to, host, held), conns) in frames {
            let Some(room) = self.room_summary(to) else { continue };
            let roster = self.roster_for(to, host, held);
            send(out, Audience::Conns(conns), Event::Moved { room, reason, roster });
        }
        let affected: Vec<RoomId> = affected.into_iter().collect();
        self.announce_breakouts(&affected, &[], out);
    }

    /// The transitions `moves` will record, as [`SessionState::relocate`] will carry them out.
    pub(super) fn transitions_for(&self, moves: &[(UserId, RoomId)], now: Now) -> Vec<TransitionRecord> {
        moves
            .iter()
            .filter_map(|(user, to)| {
                let from = self.presence.get(*user)?.room;
                (from != *to).then(|| self.transition(*user, Some(from), Some(*to), now))
            })
            .collect()
    }

    /// Answers a retried host request with its first outcome; returns whether it was one.
    pub(super) fn answered_before(
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

    pub(super) fn remember(
        &mut self,
        user: UserId,
        request_id: &Option<RequestId>,
        outcome: &Result<(), SessionError>,
    ) {
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
        action: AuditAction,
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
        let changes = vec![
            SessionWrite::Transitions(self.transitions_for(&moves, now)),
            self.audited_moves(host, action, &moves, &request_id, now),
        ];
        let change = Change::Relocate { moves, reason: MoveReason::Moved };
        self.stage(change, changes, Some(Reply { conn, request_id }), Some(host), out);
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
            AuditAction::Move,
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
        self.host_moves(conn, request_id, AuditAction::Assign, |_| Ok(assignments), now, out)
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
            AuditAction::Swap,
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
        let changes = vec![SessionWrite::Transitions(self.transitions_for(&moves, now))];
        self.stage(Change::Relocate { moves, reason }, changes, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }
}
