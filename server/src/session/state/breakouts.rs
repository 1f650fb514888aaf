//! Breakout rooms as the session sees them: where someone lands, what hosts and members are
//! shown, broadcasts and help requests. Setting rooms up is in [`super::breakout_setup`],
//! moving people in [`super::moves`], opening and closing in [`super::lifecycle`].

use std::collections::HashSet;

use convene_protocol::{AssignmentMode, ConnId, RequestId, RoomId, UserId};

use super::{
    Audience, BreakoutView, Effect, Event, Help, Now, Overview, RoomSummary, SessionError, SessionState, send,
};
use crate::store::{TransitionRecord, TransitionType};

/// Longest countdown or timer a host may set: a day.
pub(super) const MAX_TIMER_SECS: u32 = 24 * 60 * 60;

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
            members: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
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
    pub(super) fn participants_in(&self, room: RoomId) -> u32 {
        self.rooms.get(&room).map_or(0, |r| {
            let count = r
                .members
                .iter()
                .filter(|user| self.presence.get(**user).is_some_and(|m| !m.session_role.is_host()))
                .count();
            u32::try_from(count).unwrap_or(u32::MAX)
        })
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
}
