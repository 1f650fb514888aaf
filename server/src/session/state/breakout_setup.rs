//! Setting breakout rooms up: creating, renaming, resizing and deleting them, their options,
//! and planning who goes where before they open.

use std::time::Duration;

use convene_protocol::{AssignmentMode, ConnId, RequestId, RoomId, UserId};

use serde_json::json;

use super::audit::Action;
use super::breakouts::MAX_TIMER_SECS;
use super::{Audience, Change, Effect, Event, Now, Reply, SessionError, SessionState, send};
use crate::chat::RoomChat;
use crate::rooms::plan::{Slot, SplitRequest, split};
use crate::rooms::{Breakout, MAX_BREAKOUT_ROOMS, MAX_ROOM_CAPACITY, valid_room_name};
use crate::store::{AuditAction, BreakoutRoomRecord, SessionWrite};

impl SessionState {
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
                closing_by: None,
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
        let ids: Vec<RoomId> = created.iter().map(|(id, _)| *id).collect();
        let action = Action::new(host, AuditAction::CreateRooms).with(json!({ "room_ids": ids }));
        let changes = vec![SessionWrite::CreateRooms(records), self.audited(action, &request_id, now)];
        self.stage(Change::CreateRooms(created), changes, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    /// Adds committed rooms and tells the hosts.
    pub(super) fn add_rooms(&mut self, rooms: Vec<(RoomId, Breakout)>, out: &mut Vec<Effect>) {
        let ids: Vec<RoomId> = rooms.iter().map(|(id, _)| *id).collect();
        for (id, breakout) in rooms {
            let chat = RoomChat::new(id, breakout.name.clone(), 0, Vec::new(), self.limits.resume_window);
            self.rooms.insert(id, super::Room::new(chat, Some(breakout)));
        }
        self.announce_breakouts(&ids, &[], out);
    }

    #[expect(clippy::too_many_arguments, reason = "the request's fields, then the clock and the effects")]
    pub(super) fn update_room(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        name: Option<String>,
        max_participants: Option<u32>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let host = self.host_of(conn)?.user_id;
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
        let detail = json!({ "room_id": room, "name": name, "max_participants": max_participants });
        let action = Action::new(host, AuditAction::UpdateRoom).with(detail);
        let changes = vec![
            SessionWrite::UpdateRoom { room, name: name.clone(), max_participants },
            self.audited(action, &request_id, now),
        ];
        let change = Change::UpdateRoom { room, name, max_participants };
        self.stage(change, changes, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    pub(super) fn delete_room(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let host = self.host_of(conn)?.user_id;
        let r = self.rooms.get(&room).filter(|r| r.breakout.is_some()).ok_or(SessionError::NoSuchRoom)?;
        if !r.members.is_empty() {
            return Err(SessionError::Conflict("only an empty room can be deleted"));
        }
        // Its chat would become unreadable, and a send still being committed unanswered.
        if r.chat.has_history() {
            return Err(SessionError::Conflict("a room with messages is closed, not deleted"));
        }
        let action = Action::new(host, AuditAction::DeleteRoom).with(json!({ "room_id": room }));
        let changes = vec![SessionWrite::DeleteRoom(room), self.audited(action, &request_id, now)];
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

    pub(super) fn planned_room(&self, user: UserId) -> Option<RoomId> {
        self.breakouts.manual.get(&user).or_else(|| self.breakouts.automatic.get(&user)).copied()
    }
}
