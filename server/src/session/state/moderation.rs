//! What hosts decide about people and the session: the lobby (admit, deny, on or off), roles,
//! removal, and ending the session. Each decision is checked, staged with its audit row (see
//! [`super::staging`] and [`super::audit`]), and carried out and announced only once both are
//! committed.

use serde_json::json;

use super::audit::Action;
use super::*;
use crate::store::AuditAction;

/// What a host decides about someone waiting in the lobby.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Admit,
    Deny,
}

impl SessionState {
    /// A host's decision about someone waiting in the lobby, staged with its audit row.
    pub(super) fn decide(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        verdict: Verdict,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let host = self.host_of(conn)?.user_id;
        if !self.lobby.contains_key(&user) {
            return Err(SessionError::NotWaiting);
        }
        let (action, change) = match verdict {
            Verdict::Admit => (AuditAction::Admit, Change::Admit { user }),
            Verdict::Deny => (AuditAction::Deny, Change::Deny { user }),
        };
        let rows = vec![self.audited(Action::new(host, action).on(user), &request_id, now)];
        self.stage(change, rows, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    /// Carries out a committed admission: every device the person waits on joins.
    pub(super) fn apply_admit(&mut self, user: UserId, now: Now, out: &mut Vec<Effect>) {
        // The lobby cannot change while the admission is in flight: joins and departures wait.
        let Some(entry) = self.lobby.remove(&user) else {
            tracing::error!(user_id = %user, "an admission was committed for someone no longer waiting");
            return;
        };
        self.denied.remove(&user);
        if let Some(standing) = self.standing.get_mut(&user) {
            standing.removed = false;
        }
        let session_role = self.standing.get(&user).map_or(SessionRole::Participant, |s| s.role);
        send(out, Audience::Hosts, Event::LobbyLeft { user });
        for (waiting_conn, join_request, resume) in entry.conns {
            self.admit_conn(waiting_conn, user, entry.role, session_role, join_request, &resume, now, out);
        }
    }

    /// Carries out a committed denial: the person's waiting devices hear `denied` and leave, and
    /// the cool-down starts.
    pub(super) fn apply_deny(&mut self, user: UserId, now: Now, out: &mut Vec<Effect>) {
        let Some(entry) = self.lobby.remove(&user) else {
            tracing::error!(user_id = %user, "a denial was committed for someone no longer waiting");
            return;
        };
        self.denied.insert(user, now.mono);
        let denied: Vec<ConnId> = entry.conns.into_iter().map(|(c, _, _)| c).collect();
        for c in &denied {
            self.conns.remove(c);
        }
        send(out, Audience::Conns(denied.clone()), Event::Denied);
        out.extend(denied.into_iter().map(Effect::Detach));
        send(out, Audience::Hosts, Event::LobbyLeft { user });
    }

    pub(super) fn set_lobby(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        enabled: bool,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let host = self.host_of(conn)?.user_id;
        if self.session.session_type == SessionType::Appointment && !enabled {
            return Err(SessionError::Invalid("appointment sessions always have a lobby"));
        }
        if self.session.lobby_enabled == enabled {
            // Nothing changes, so nothing is written or recorded.
            send(out, Audience::Conn(conn), Event::Succeeded { request_id });
            return Ok(());
        }
        let action = Action::new(host, AuditAction::SetLobby).with(json!({ "enabled": enabled }));
        let rows = vec![
            SessionWrite::LobbyChanged { session: self.session.id, enabled },
            self.audited(action, &request_id, now),
        ];
        self.stage(Change::SetLobby { enabled }, rows, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    pub(super) fn apply_lobby(&mut self, enabled: bool, out: &mut Vec<Effect>) {
        self.session.lobby_enabled = enabled;
        send(out, Audience::Session, Event::SessionUpdated(Box::new(self.session.clone())));
    }

    /// Ends the session: written (the end, everyone's leave, the open rooms closed, the audit
    /// row) in one transaction, then announced to everyone, who are all detached.
    pub(super) fn end(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let by = self.host_of(conn)?.user_id;
        let transitions = self
            .presence
            .members()
            .map(|member| self.transition(member.user_id, Some(member.room), None, now))
            .collect();
        let open: Vec<RoomId> = self.rooms.values().filter(|r| r.breakout.is_some()).map(|r| r.chat.id).collect();
        let mut rows = vec![
            SessionWrite::SessionEnded { session: self.session.id, at: now.wall },
            SessionWrite::Transitions(transitions),
        ];
        if !open.is_empty() {
            rows.push(SessionWrite::CloseRooms { rooms: open, at: now.wall });
        }
        rows.push(self.audited(Action::new(by, AuditAction::EndSession), &request_id, now));
        self.stage(Change::End { by, at: now.wall }, rows, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    /// Carries out a committed end: everyone hears `session_ended` and is detached, and the
    /// session's actor stops.
    pub(super) fn apply_end(&mut self, by: UserId, at: DateTime<Utc>, out: &mut Vec<Effect>) {
        self.session.status = SessionStatus::Ended;
        self.session.ended_at = Some(at);
        let everyone: Vec<ConnId> = self.conns.keys().copied().collect();
        send(out, Audience::Conns(everyone.clone()), Event::SessionEnded { by });
        for member in self.presence.clear() {
            out.push(Effect::Persist(Persist::ParticipantLeft { user: member.user_id, at }));
        }
        for room in self.rooms.values_mut() {
            room.members.clear();
        }
        self.rooms.retain(|_, room| room.breakout.is_none());
        self.lobby.clear();
        self.conns.clear();
        out.extend(everyone.into_iter().map(Effect::Detach));
        out.push(Effect::Stop);
    }

    /// Removes someone from the session: written (their leave and the removal, a co-host's role
    /// taken back), then carried out on every device at once.
    pub(super) fn remove(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let by = self.host_of(conn)?.user_id;
        if user == self.session.created_by || user == by {
            return Err(SessionError::NotAllowed("the session's host, and you yourself, cannot be removed"));
        }
        let member = self.presence.get(user).ok_or(SessionError::NotPresent)?;
        let mut rows = vec![
            SessionWrite::Transitions(vec![self.transition(user, Some(member.room), None, now)]),
            SessionWrite::Removed { session: self.session.id, user, at: now.wall },
        ];
        if member.session_role == SessionRole::CoHost {
            rows.push(SessionWrite::SetRole { session: self.session.id, user, role: SessionRole::Participant });
        }
        rows.push(self.audited(Action::new(by, AuditAction::Remove).on(user), &request_id, now));
        self.stage(Change::Remove { user, by }, rows, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    /// Carries out a committed removal: the person's devices hear `removed` and leave the
    /// session; their departure is published with the window's other changes.
    pub(super) fn apply_removal(&mut self, user: UserId, by: UserId, out: &mut Vec<Effect>) {
        let Some(member) = self.presence.get(user).cloned() else { return };
        // Named by connection: audiences are resolved after the whole command, when the person
        // is no longer present.
        send(out, Audience::Conns(member.conns.clone()), Event::Removed { by });
        for conn in &member.conns {
            self.conns.remove(conn);
            self.presence.remove_device(user, *conn);
        }
        if let Some(room) = self.rooms.get_mut(&member.room) {
            room.members.remove(&user);
        }
        let standing = self.standing.entry(user).or_insert(Standing {
            role: SessionRole::Participant,
            invited: false,
            admitted: false,
            removed: true,
        });
        standing.admitted = false;
        standing.removed = true;
        if standing.role == SessionRole::CoHost {
            standing.role = SessionRole::Participant;
        }
        if self.breakouts.help.remove(&user).is_some() {
            send(out, Audience::Hosts, Event::HelpResolved { user });
        }
        self.announce_breakouts(&[member.room], &[], out);
        out.extend(member.conns.into_iter().map(Effect::Detach));
    }

    /// Makes a member a co-host or a participant again: written, then announced.
    pub(super) fn set_role(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        user: UserId,
        role: SessionRole,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let host = self.host_of(conn)?.user_id;
        if role == SessionRole::Host {
            return Err(SessionError::Invalid("a session has one host; make people co_host or participant"));
        }
        if user == self.session.created_by {
            return Err(SessionError::NotAllowed("the session's host stays its host"));
        }
        if self.presence.get(user).is_none() && !self.standing.contains_key(&user) {
            return Err(SessionError::NotPresent);
        }
        let action = Action::new(host, AuditAction::SetRole).on(user).with(json!({ "role": role }));
        let rows = vec![
            SessionWrite::SetRole { session: self.session.id, user, role },
            self.audited(action, &request_id, now),
        ];
        self.stage(Change::SetRole { user, role }, rows, Some(Reply { conn, request_id }), None, out);
        Ok(())
    }

    /// Applies a committed change of role: everyone sees the member's new role, and a new
    /// co-host learns what hosts know (the lobby and the breakout rooms).
    pub(super) fn apply_role(&mut self, user: UserId, role: SessionRole, out: &mut Vec<Effect>) {
        self.standing.entry(user).or_insert(Standing { role, invited: false, admitted: false, removed: false }).role =
            role;
        // The change itself is published with the window's other changes.
        if self.presence.set_session_role(user, role) == Diff::Updated && role.is_host() {
            // A host follows every room: here they are, as last published.
            send(out, Audience::User(user), Event::PresenceChanged { rosters: self.rosters_for_new_host() });
            for waiting in self.lobby_view() {
                send(out, Audience::User(user), Event::LobbyEntered(waiting));
            }
            let overview = self.overview();
            let rooms = overview.rooms;
            send(out, Audience::User(user), Event::BreakoutsChanged { open: overview.open, rooms, closed: vec![] });
        }
    }
}
