//! Opening and closing breakout rooms: the closing countdown, timers, and the clock that fires
//! them.

use std::time::Duration;

use convene_protocol::{ConnId, MoveReason, RequestId, RoomId, UserId};

use serde_json::json;

use super::audit::Action;
use super::breakouts::MAX_TIMER_SECS;
use super::{Audience, Change, ClosedRoom, Effect, Event, Now, Reply, Room, SessionError, SessionState, send};
use crate::rooms::{Deadline, Requester};
use crate::store::{AuditAction, SessionWrite};

impl SessionState {
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
        let changes = vec![
            SessionWrite::Transitions(self.transitions_for(&moves, now)),
            self.audited_moves(host, AuditAction::OpenBreakouts, &moves, &request_id, now),
        ];
        self.stage(Change::Open { moves, ends }, changes, Some(Reply { conn, request_id }), Some(host), out);
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
        let host = self.host_of(conn)?.user_id;
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
            let mut changes = self.closing_rows(&rooms, now);
            let action = Action::new(host, AuditAction::CloseBreakouts).with(json!({ "room_ids": rooms }));
            changes.push(self.audited(action, &request_id, now));
            self.stage(Change::Close(rooms), changes, Some(Reply { conn, request_id }), None, out);
            return Ok(());
        }
        for room in &rooms {
            self.start_countdown(*room, countdown, Some((host, request_id.clone())), now, out);
        }
        self.announce_breakouts(&rooms, &[], out);
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    fn start_countdown(
        &mut self,
        room: RoomId,
        countdown: Duration,
        by: Option<Requester>,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let Some(breakout) = self.rooms.get_mut(&room).and_then(|r| r.breakout.as_mut()) else { return };
        if breakout.closing_by.is_none() {
            breakout.closing_by = by;
        }
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
    fn closing_rows(&self, rooms: &[RoomId], now: Now) -> Vec<SessionWrite> {
        let transitions = self.transitions_for(&self.closing_moves(rooms), now);
        vec![SessionWrite::CloseRooms { rooms: rooms.to_vec(), at: now.wall }, SessionWrite::Transitions(transitions)]
    }

    /// Closes committed rooms: their members return to the main room.
    pub(super) fn close_now(&mut self, rooms: &[RoomId], out: &mut Vec<Effect>) {
        let moves = self.closing_moves(rooms);
        self.relocate(&moves, MoveReason::RoomClosed, out);
        for id in rooms {
            if let Some(Room { mut chat, visited, .. }) = self.rooms.remove(id) {
                chat.close();
                self.closed.insert(*id, ClosedRoom { chat, visited });
            }
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

    /// Fires what is due: timers reaching their warning start the closing countdown, and rooms
    /// whose countdown ended close.
    pub(super) fn tick(&mut self, now: Now, out: &mut Vec<Effect>) {
        if self.is_staging() {
            // Room timers act on rooms, which wait for the change in flight; the deadline is
            // armed again once it committed.
            return;
        }
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
            self.start_countdown(room, left, None, now, out);
        }
        let mut due: Vec<RoomId> = self
            .rooms
            .values()
            .filter(|r| r.breakout.as_ref().and_then(|b| b.closes).is_some_and(|closes| closes.at <= now.mono))
            .map(|r| r.chat.id)
            .collect();
        due.sort();
        if !due.is_empty() {
            let mut changes = self.closing_rows(&due, now);
            changes.extend(self.audited_closes(&due, now));
            self.stage(Change::Close(due), changes, None, None, out);
        }
    }

    /// The audit rows of rooms closing at the end of a countdown a host started: one per
    /// request, naming the rooms it closes now.
    fn audited_closes(&self, due: &[RoomId], now: Now) -> Vec<SessionWrite> {
        let mut requests: Vec<(&Requester, Vec<RoomId>)> = Vec::new();
        for room in due {
            let Some(by) = self.rooms.get(room).and_then(|r| r.breakout.as_ref()).and_then(|b| b.closing_by.as_ref())
            else {
                continue;
            };
            match requests.iter_mut().find(|(requester, _)| *requester == by) {
                Some((_, rooms)) => rooms.push(*room),
                None => requests.push((by, vec![*room])),
            }
        }
        requests
            .into_iter()
            .map(|((host, request_id), rooms)| {
                let action = Action::new(*host, AuditAction::CloseBreakouts).with(json!({ "room_ids": rooms }));
                self.audited(action, request_id, now)
            })
            .collect()
    }

    /// When the session's clock next needs to run, if ever. Not while a change is in flight:
    /// the clock waits for its commit like any other change of rooms.
    pub fn next_deadline(&self) -> Option<std::time::Instant> {
        let presence = self.presence_deadline();
        if self.is_staging() {
            return presence;
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
            .chain(presence)
            .min()
    }
}
