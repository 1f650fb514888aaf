//! Membership: joining, the lobby, leaving, ending, admitting, denying, roles and status.

use convene_protocol::{ConnId, PresenceStatus, RequestId, Role, RoomId, SessionRole, UserId};

use super::*;

impl SessionState {
    pub(super) fn join(
        &mut self,
        conn: ConnId,
        identity: Identity,
        request_id: Option<RequestId>,
        rejoin: Rejoin,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        if identity.organization_id != self.session.organization_id {
            // Another organization's session: indistinguishable from one that does not exist.
            return Err(SessionError::NotFound);
        }
        if self.conns.contains_key(&conn) {
            return Err(SessionError::AlreadyJoined);
        }
        self.check_open(now, out)?;
        let user = identity.user_id;
        let standing = self.standing.get(&user).copied();
        let session_role = self.session_role_of(&identity, standing);
        let invited = standing.is_some_and(|s| s.invited || s.role.is_host());
        if self.session.session_type == SessionType::Appointment && !session_role.is_host() && !invited {
            return Err(SessionError::NotInvited);
        }
        let lobby_applies = self.session.session_type == SessionType::Appointment || self.session.lobby_enabled;
        let already_admitted = standing.is_some_and(|s| s.admitted) || self.presence.get(user).is_some();
        // Someone a host removed comes back only through the lobby, whatever their role.
        let removed = standing.is_some_and(|s| s.removed) && user != self.session.created_by;
        if (removed || (lobby_applies && !session_role.is_host())) && !already_admitted {
            if self.denied.get(&user).is_some_and(|at| now.mono.saturating_duration_since(*at) < self.deny_cooldown) {
                return Err(SessionError::RecentlyDenied);
            }
            self.conns.insert(conn, Attachment { user, admitted: false });
            let entry = self.lobby.entry(user).or_insert_with(|| LobbyEntry {
                role: identity.role,
                since: now.wall,
                conns: Vec::new(),
            });
            entry.conns.push((conn, request_id.clone(), rejoin));
            let first = entry.conns.len() == 1;
            let waiting = Waiting { user, role: entry.role, since: entry.since };
            send(out, Audience::Conn(conn), Event::LobbyWaiting { request_id });
            if first {
                send(out, Audience::Hosts, Event::LobbyEntered(waiting));
            }
            return Ok(());
        }
        self.admit_conn(conn, user, identity.role, session_role, request_id, &rejoin, now, out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit_conn(
        &mut self,
        conn: ConnId,
        user: UserId,
        role: Role,
        session_role: SessionRole,
        request_id: Option<RequestId>,
        rejoin: &Rejoin,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        self.conns.insert(conn, Attachment { user, admitted: true });
        let standing = self.standing.entry(user).or_insert(Standing {
            role: session_role,
            invited: false,
            admitted: false,
            removed: false,
        });
        standing.admitted = true;
        let placement = match self.presence.get(user) {
            Some(member) => member.room,
            None => self.placement_for(user, session_role),
        };
        let diff = self.presence.add_device(user, conn, session_role, role, placement, now.wall);
        let Some(member) = self.presence.get(user).cloned() else { return };
        if let Some(room) = self.rooms.get_mut(&member.room) {
            room.enter(user);
        }
        match diff {
            Diff::Joined => {
                out.push(Effect::Persist(Persist::ParticipantJoined { user, role: session_role, at: now.wall }));
                self.breakouts.last_room.insert(user, member.room);
                let joined = self.transition(user, None, Some(member.room), now);
                out.push(Effect::Persist(Persist::Bookkeeping {
                    changes: vec![SessionWrite::Transitions(vec![joined])],
                }));
                self.announce_breakouts(&[member.room], &[], out);
            }
            Diff::Updated | Diff::Left | Diff::Unchanged => {}
        }
        if self.session.status == SessionStatus::Scheduled {
            self.session.status = SessionStatus::Active;
            self.session.started_at = Some(now.wall);
            out.push(Effect::Persist(Persist::SessionStarted { at: now.wall }));
            send(out, Audience::SessionExcept(user), Event::SessionUpdated(Box::new(self.session.clone())));
        }
        let mut replays = Vec::new();
        let resume = rejoin
            .resume
            .iter()
            .map(|cursor| {
                let Some(room) = self.rooms.get(&cursor.room_id).filter(|_| cursor.room_id == member.room) else {
                    // A room the member is no longer in: where it stands, for paging its history,
                    // provided they may read it.
                    let last_seq = self.readable_last_seq(&member, cursor.room_id).unwrap_or(0);
                    return Resumed { room: cursor.room_id, recovered: false, replayed: 0, last_seq };
                };
                let last_seq = room.chat.last_seq();
                match room.chat.since(cursor.last_seq) {
                    Ok(missed) => {
                        let missed: Vec<MessageRecord> = missed.cloned().collect();
                        let replayed = missed.len();
                        replays.push((room.chat.id, missed));
                        Resumed { room: cursor.room_id, recovered: true, replayed, last_seq }
                    }
                    Err(Gap::TooFarBehind | Gap::Ahead) => {
                        Resumed { room: cursor.room_id, recovered: false, replayed: 0, last_seq }
                    }
                }
            })
            .collect();
        let lobby = if session_role.is_host() { self.lobby_view() } else { Vec::new() };
        let rosters = self.rosters_on_join(member.room, session_role.is_host(), &rejoin.rosters);
        let snapshot = Snapshot {
            session: self.session.clone(),
            you: member,
            rosters,
            rooms: self.rooms.values().filter_map(|room| self.room_summary(room.chat.id)).collect(),
            lobby,
            resume,
            breakouts: session_role.is_host().then(|| self.overview()),
        };
        send(out, Audience::Conn(conn), Event::Joined { request_id, snapshot: Box::new(snapshot) });
        for (room, missed) in replays {
            for chunk in missed.chunks(REPLAY_CHUNK) {
                send(out, Audience::Conn(conn), Event::Replayed { room, messages: chunk.to_vec() });
            }
        }
    }

    pub(super) fn leave(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        if !self.conns.contains_key(&conn) {
            return Err(SessionError::NotMember);
        }
        send(out, Audience::Conn(conn), Event::Left { request_id });
        self.detach(conn, now, out);
        Ok(())
    }

    /// Removes a connection from the lobby or from presence, telling others what changed.
    pub(super) fn detach(&mut self, conn: ConnId, now: Now, out: &mut Vec<Effect>) {
        let Some(attachment) = self.conns.remove(&conn) else { return };
        self.mesh.leave(conn);
        let user = attachment.user;
        if attachment.admitted {
            let room = self.presence.get(user).map(|m| m.room);
            match self.presence.remove_device(user, conn) {
                Diff::Left => {
                    if let Some(room) = room.and_then(|room| self.rooms.get_mut(&room)) {
                        room.members.remove(&user);
                    }
                    out.push(Effect::Persist(Persist::ParticipantLeft { user, at: now.wall }));
                    let left = self.transition(user, room, None, now);
                    out.push(Effect::Persist(Persist::Bookkeeping {
                        changes: vec![SessionWrite::Transitions(vec![left])],
                    }));
                    if let Some(room) = room {
                        self.announce_breakouts(&[room], &[], out);
                    }
                }
                Diff::Updated | Diff::Joined | Diff::Unchanged => {}
            }
        } else if let Some(entry) = self.lobby.get_mut(&user) {
            entry.conns.retain(|(c, _, _)| *c != conn);
            if entry.conns.is_empty() {
                self.lobby.remove(&user);
                send(out, Audience::Hosts, Event::LobbyLeft { user });
            }
        }
        out.push(Effect::Detach(conn));
    }

    pub(super) fn set_status(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        status: PresenceStatus,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let user = self.member_of(conn)?.user_id;
        // Published with the window's other changes.
        self.presence.set_status(user, status);
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    /// Refuses joins to a session that ended, or to an instant session that expired unstarted.
    pub(super) fn check_open(&mut self, now: Now, out: &mut Vec<Effect>) -> Result<(), SessionError> {
        let expired =
            self.session.status == SessionStatus::Scheduled && self.session.expires_at.is_some_and(|at| at <= now.wall);
        if expired {
            self.session.status = SessionStatus::Ended;
            self.session.ended_at = Some(now.wall);
            out.push(Effect::Persist(Persist::SessionEnded { at: now.wall }));
        }
        if self.session.status == SessionStatus::Ended {
            return Err(SessionError::Ended);
        }
        Ok(())
    }

    pub(super) fn session_role_of(&self, identity: &Identity, standing: Option<Standing>) -> SessionRole {
        if identity.user_id == self.session.created_by {
            return SessionRole::Host;
        }
        match standing.map(|s| s.role) {
            Some(role) if role.is_host() => role,
            // Admins of the session's organization moderate all of its sessions.
            _ if identity.role == Role::Admin => SessionRole::CoHost,
            _ => SessionRole::Participant,
        }
    }

    pub(super) fn member_of(&self, conn: ConnId) -> Result<&Member, SessionError> {
        match self.conns.get(&conn) {
            Some(attachment) if attachment.admitted => {
                self.presence.get(attachment.user).ok_or(SessionError::NotMember)
            }
            _ => Err(SessionError::NotMember),
        }
    }

    pub(super) fn host_of(&self, conn: ConnId) -> Result<&Member, SessionError> {
        let member = self.member_of(conn)?;
        if member.session_role.is_host() { Ok(member) } else { Err(SessionError::NotHost) }
    }

    /// The member behind `conn`, provided they may read and write in `room`.
    pub(super) fn reader_of(&self, conn: ConnId, room: RoomId) -> Result<&Member, SessionError> {
        let member = self.member_of(conn)?;
        if !self.rooms.contains_key(&room) {
            return Err(SessionError::NoSuchRoom);
        }
        if member.room != room {
            return Err(SessionError::NotInRoom);
        }
        Ok(member)
    }

    pub(super) fn lobby_view(&self) -> Vec<Waiting> {
        self.lobby.iter().map(|(user, entry)| Waiting { user: *user, role: entry.role, since: entry.since }).collect()
    }
}
