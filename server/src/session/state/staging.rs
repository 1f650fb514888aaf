//! The write contract for changes of rooms: check, write, and only then apply and announce.
//!
//! A command that changes rooms (creating, renaming or deleting a room, opening the breakouts,
//! moving, assigning, swapping, selecting, closing) is first checked against the session as it
//! stands. If it passes, the state machine *stages* it: the change is described as a [`Change`],
//! its rows (transitions, room changes) go to the writer as one transaction, and nothing in
//! memory moves yet. When the commit comes back ([`super::Internal::Committed`]) the change is
//! applied and announced, the request is answered `ok` and remembered for retries. When the
//! write fails, the requester alone hears why, and nothing changed: a retry runs again.
//!
//! One change is staged at a time. Commands that could see or disturb what it changes (joins,
//! leaves, disconnects, other room changes, the session's clock) wait in a bounded queue until
//! the commit is settled, then run in arrival order against the new state; this is how a change
//! in flight is reserved. Everything else (chat, typing, status, history) runs at once.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use convene_protocol::{MoveReason, RequestId, RoomId, SessionRequest, SessionRole, UserId};

use super::{Audience, Command, Effect, Event, Internal, Now, Persist, Reply, SessionError, SessionState, send};
use crate::rooms::{Breakout, Deadline};
use crate::store::{SessionWrite, WriteFailed};

/// Commands that may wait behind a change in flight. A session's mailbox holds 1,024; this
/// holds as many again, so a burst that arrives during one commit waits rather than fails.
pub const DEFERRED_CAPACITY: usize = 1024;

/// A checked change of rooms, to apply once stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Relocate { moves: Vec<(UserId, RoomId)>, reason: MoveReason },
    CreateRooms(Vec<(RoomId, Breakout)>),
    UpdateRoom { room: RoomId, name: String, max_participants: u32 },
    DeleteRoom(RoomId),
    Open { moves: Vec<(UserId, RoomId)>, ends: Option<Deadline> },
    Close(Vec<RoomId>),
    SetRole { user: UserId, role: SessionRole },
    Remove { user: UserId, by: UserId },
    Admit { user: UserId },
    Deny { user: UserId },
    SetLobby { enabled: bool },
    End { by: UserId, at: DateTime<Utc> },
}

/// The change in flight: what to apply, whom to answer, and under which request to remember it.
#[derive(Debug)]
struct Staged {
    change: Change,
    reply: Option<Reply>,
    remember: Option<(UserId, RequestId)>,
}

#[derive(Debug, Default)]
pub(super) struct Staging {
    in_flight: Option<Staged>,
    deferred: VecDeque<Command>,
}

impl Command {
    /// Whether the command must wait while a change of rooms is in flight.
    pub(super) fn waits_for_commit(&self) -> bool {
        match self {
            Self::Request { request, .. } => matches!(
                request,
                SessionRequest::JoinSession(_)
                    | SessionRequest::LeaveSession(_)
                    | SessionRequest::EndSession(_)
                    | SessionRequest::AdmitParticipant(_)
                    | SessionRequest::DenyParticipant(_)
                    | SessionRequest::SetLobby(_)
                    | SessionRequest::SetRole(_)
                    | SessionRequest::RemoveParticipant(_)
                    | SessionRequest::CreateBreakoutRooms(_)
                    | SessionRequest::UpdateBreakoutRoom(_)
                    | SessionRequest::DeleteBreakoutRoom(_)
                    | SessionRequest::PlanBreakouts(_)
                    | SessionRequest::OpenBreakouts(_)
                    | SessionRequest::MoveParticipant(_)
                    | SessionRequest::AssignParticipants(_)
                    | SessionRequest::SwapParticipants(_)
                    | SessionRequest::SelectRoom(_)
                    | SessionRequest::CloseBreakoutRooms(_)
            ),
            Self::Disconnect { .. } | Self::NodeGone { .. } | Self::RemotesLost { .. } => true,
            // The clock runs in flight too: presence is published on time, and the room timers
            // wait for the commit on their own (see `tick`).
            Self::Internal(
                Internal::Tick | Internal::Committed { .. } | Internal::Posted { .. } | Internal::Changed { .. },
            ) => false,
        }
    }
}

impl SessionState {
    /// Whether a change of rooms waits for its commit.
    pub fn is_staging(&self) -> bool {
        self.staging.in_flight.is_some()
    }

    /// Holds `command` back while a change is in flight; returns it when it may run now.
    pub(super) fn defer(&mut self, command: Command, out: &mut Vec<Effect>) -> Option<Command> {
        if self.staging.in_flight.is_none() || !command.waits_for_commit() {
            return Some(command);
        }
        // A departure is never refused: the connection is gone whatever the queue holds, and
        // there is at most one per connection (or node).
        let departure =
            matches!(command, Command::Disconnect { .. } | Command::NodeGone { .. } | Command::RemotesLost { .. });
        if self.staging.deferred.len() >= DEFERRED_CAPACITY && !departure {
            let (conn, request_id) = command.origin();
            tracing::warn!(capacity = DEFERRED_CAPACITY, "deferred commands full; refusing one as unavailable");
            if let Some(conn) = conn {
                let error = SessionError::Busy;
                send(out, Audience::Conn(conn), Event::Failed { request_id, error });
            }
            return None;
        }
        self.staging.deferred.push_back(command);
        None
    }

    /// Writes `changes` and keeps `change` to apply once they are committed.
    pub(super) fn stage(
        &mut self,
        change: Change,
        changes: Vec<SessionWrite>,
        reply: Option<Reply>,
        remember: Option<UserId>,
        out: &mut Vec<Effect>,
    ) {
        debug_assert!(self.staging.in_flight.is_none(), "a change was staged over another in flight");
        let remember = remember.zip(reply.as_ref().and_then(|r| r.request_id.clone()));
        self.staging.in_flight = Some(Staged { change, reply, remember });
        out.push(Effect::Persist(Persist::Staged { changes }));
    }

    /// The staged change's write came back: apply and announce it, or tell the requester why
    /// not. Then the commands that waited run.
    pub(super) fn committed(&mut self, result: Result<(), WriteFailed>, now: Now, out: &mut Vec<Effect>) {
        let Some(staged) = self.staging.in_flight.take() else {
            tracing::error!("a commit came back with no change staged");
            return;
        };
        match result {
            Ok(()) => {
                self.apply_change(staged.change, now, out);
                if let Some((user, request_id)) = staged.remember {
                    self.breakouts.recent.remember((user, request_id), Ok(()));
                }
                if let Some(reply) = staged.reply {
                    send(out, Audience::Conn(reply.conn), Event::Succeeded { request_id: reply.request_id });
                }
            }
            Err(failure) => {
                if let Some(reply) = staged.reply {
                    let event = Event::Failed { request_id: reply.request_id, error: failure.into() };
                    send(out, Audience::Conn(reply.conn), event);
                }
            }
        }
        while self.staging.in_flight.is_none() {
            let Some(command) = self.staging.deferred.pop_front() else { break };
            self.apply(command, now, out);
        }
    }

    fn apply_change(&mut self, change: Change, now: Now, out: &mut Vec<Effect>) {
        match change {
            Change::Relocate { moves, reason } => {
                self.relocate(&moves, reason, out);
            }
            Change::CreateRooms(rooms) => self.add_rooms(rooms, out),
            Change::UpdateRoom { room, name, max_participants } => {
                if let Some(breakout) = self.rooms.get_mut(&room).and_then(|r| r.breakout.as_mut()) {
                    breakout.name = name;
                    breakout.max_participants = max_participants;
                }
                self.announce_breakouts(&[room], &[], out);
            }
            Change::DeleteRoom(room) => {
                self.rooms.remove(&room);
                self.breakouts.manual.retain(|_, r| *r != room);
                self.breakouts.automatic.retain(|_, r| *r != room);
                self.announce_breakouts(&[], &[room], out);
            }
            Change::Open { moves, ends } => {
                self.breakouts.open = true;
                if let Some(ends) = ends {
                    for room in self.rooms.values_mut() {
                        if let Some(breakout) = room.breakout.as_mut() {
                            breakout.ends = Some(ends);
                        }
                    }
                }
                self.relocate(&moves, MoveReason::Assigned, out);
                let all: Vec<RoomId> = self.rooms.keys().copied().collect();
                self.announce_breakouts(&all, &[], out);
            }
            Change::Close(rooms) => self.close_now(&rooms, out),
            Change::SetRole { user, role } => self.apply_role(user, role, out),
            Change::Remove { user, by } => self.apply_removal(user, by, out),
            Change::Admit { user } => self.apply_admit(user, now, out),
            Change::Deny { user } => self.apply_deny(user, now, out),
            Change::SetLobby { enabled } => self.apply_lobby(enabled, out),
            Change::End { by, at } => self.apply_end(by, at, out),
        }
    }
}
