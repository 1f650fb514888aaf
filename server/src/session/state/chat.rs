//! Room chat commands: posting (acknowledged after commit), editing, deleting, typing.

use convene_protocol::{ClientMsgId, ConnId, FetchHistory, MessageId, RequestId, RoomId, UserId};

use serde_json::json;
use tracing::warn;

use super::audit::Action;
use super::{Audience, Effect, Event, Now, Persist, SessionError, SessionState, send};
use crate::chat::{Known, Waiter};
use crate::limits::Spend;
use crate::presence::Member;
use crate::store::{AuditAction, EditOutcome, HistoryQuery, InsertOutcome, NewMessage, WriteFailed};

/// How often a member who keeps typing is announced as typing again. Clients re-send `active`
/// every few seconds so a late arrival learns of it; more often than this is coalesced.
const TYPING_REFRESH: std::time::Duration = std::time::Duration::from_secs(3);

impl SessionState {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn edit(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        body: String,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let editor = self.reader_of(conn, room)?.user_id;
        self.check_body(&body)?;
        out.push(Effect::Persist(Persist::Edit { conn, request_id, room, message_id, editor, body, at: now.wall }));
        Ok(())
    }

    pub(super) fn delete(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        message_id: MessageId,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let member = self.reader_of(conn, room)?;
        // Hosts moderate: they may delete anyone's message, and doing so is audited.
        let (by, any_sender) = (member.user_id, member.session_role.is_host());
        let audit = any_sender.then(|| {
            let action =
                Action::new(by, AuditAction::DeleteMessage).with(json!({ "room_id": room, "message_id": message_id }));
            Box::new(self.audit_record(action, &request_id, now))
        });
        let at = now.wall;
        out.push(Effect::Persist(Persist::Delete { conn, request_id, room, message_id, by, any_sender, at, audit }));
        Ok(())
    }

    pub(super) fn typing(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        active: bool,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let user = self.reader_of(conn, room)?.user_id;
        // Repeats of the state the room already knows cost nothing and reach nobody; `active`
        // is announced again only after the refresh interval, as clients re-send it.
        let repeat = match self.typing.get(&(user, room)) {
            Some(&(was, at)) => was == active && (!active || now.mono.saturating_duration_since(at) < TYPING_REFRESH),
            None => !active,
        };
        if !repeat {
            self.spend(user, Spend::Typing, now)?;
            // A room's announcements have a budget of their own, however many type at once. Past
            // it a change is not announced, nor remembered as announced: typing is a hint, and the
            // client's next change or refresh carries the state.
            if self.room_typing.try_spend(room, self.budgets.room_typing, now.mono) {
                self.typing.insert((user, room), (active, now.mono));
                send(out, Audience::RoomExcept(room, user), Event::Typed { room, user, active });
            }
        }
        send(out, Audience::Conn(conn), Event::Succeeded { request_id });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn post(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room_id: RoomId,
        client_msg_id: ClientMsgId,
        body: String,
        now: Now,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let sender = self.reader_of(conn, room_id)?.user_id;
        self.check_body(&body)?;
        let room = self.rooms.get(&room_id).ok_or(SessionError::NoSuchRoom)?;
        match room.chat.known(sender, &client_msg_id) {
            Known::Committed(message) => {
                let event = Event::MessageAcked { request_id, client_msg_id, message: message.clone() };
                send(out, Audience::Conn(conn), event);
                return Ok(());
            }
            Known::Pending => {
                self.wait_for_post(room_id, sender, client_msg_id, Waiter { conn, request_id });
                return Ok(());
            }
            Known::New => {}
        }
        self.spend(sender, Spend::Chat, now)?;
        let message = NewMessage {
            id: MessageId::new_v7(),
            session_id: self.session.id,
            room_id,
            sender_id: sender,
            client_msg_id: client_msg_id.as_str().to_owned(),
            body,
            created_at: now.wall,
        };
        self.wait_for_post(room_id, sender, client_msg_id, Waiter { conn, request_id });
        out.push(Effect::Persist(Persist::Message(message)));
        Ok(())
    }

    fn wait_for_post(&mut self, room: RoomId, sender: UserId, client_msg_id: ClientMsgId, waiter: Waiter) {
        if let Some(room) = self.rooms.get_mut(&room) {
            room.chat.wait(sender, client_msg_id, waiter);
        }
    }

    pub(super) fn posted(
        &mut self,
        room_id: RoomId,
        sender: UserId,
        client_msg_id: &ClientMsgId,
        result: Result<InsertOutcome, WriteFailed>,
        out: &mut Vec<Effect>,
    ) {
        // The room may have closed while the send was being committed: its sender is still
        // answered, and the message stays in the closed room's history.
        let (chat, open) = match (self.rooms.get_mut(&room_id), self.closed.get_mut(&room_id)) {
            (Some(room), _) => (&mut room.chat, true),
            (None, Some(closed)) => (&mut closed.chat, false),
            (None, None) => {
                warn!(room_id = %room_id, "a send was committed for a room this session does not know");
                return;
            }
        };
        let waiters = chat.settle(sender, client_msg_id);
        let (message, fresh) = match result {
            Ok(InsertOutcome::Inserted(message)) => (message, true),
            // A send whose first attempt was cut short while committing may have been stored
            // after all: if it is newer than anything announced, it is announced now.
            Ok(InsertOutcome::Duplicate(message)) => {
                let unseen = message.seq > chat.last_seq();
                (message, unseen)
            }
            Err(failure) => {
                let error = SessionError::from(failure);
                for waiter in waiters {
                    send(
                        out,
                        Audience::Conn(waiter.conn),
                        Event::Failed { request_id: waiter.request_id, error: error.clone() },
                    );
                }
                return;
            }
        };
        if fresh {
            chat.committed(message.clone());
        }
        for waiter in waiters {
            let event = Event::MessageAcked {
                request_id: waiter.request_id,
                client_msg_id: client_msg_id.clone(),
                message: message.clone(),
            };
            send(out, Audience::Conn(waiter.conn), event);
        }
        if fresh && open {
            send(out, Audience::Room(room_id), Event::MessagePosted(message));
        }
    }

    pub(super) fn changed(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        deleted_by: Option<UserId>,
        result: Result<EditOutcome, WriteFailed>,
        out: &mut Vec<Effect>,
    ) {
        let error = match result {
            Ok(EditOutcome::Changed(message)) => {
                let room = message.room_id;
                if let Some(room) = self.rooms.get_mut(&room) {
                    room.chat.changed(&message);
                }
                let event = match deleted_by {
                    Some(by) => Event::MessageDeleted { message, by },
                    None => Event::MessageEdited(message),
                };
                send(out, Audience::Room(room), event);
                send(out, Audience::Conn(conn), Event::Succeeded { request_id });
                return;
            }
            Ok(EditOutcome::NotFound) => SessionError::NoSuchMessage,
            Ok(EditOutcome::NotSender) => SessionError::NotSender,
            Err(failure) => failure.into(),
        };
        send(out, Audience::Conn(conn), Event::Failed { request_id, error });
    }

    /// Pages a room's history for `conn`: checked here, read by the actor off its task.
    pub(super) fn fetch_history(
        &self,
        conn: ConnId,
        fetch: FetchHistory,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let query = match (fetch.before_seq, fetch.after_seq) {
            (None, None) => HistoryQuery::Latest,
            (Some(before), None) => HistoryQuery::Before(before),
            (None, Some(after)) => HistoryQuery::After(after),
            // Refused when the request was parsed; a session checks what it is given all the same.
            (Some(_), Some(_)) => return Err(SessionError::Invalid("give before_seq or after_seq, not both")),
        };
        let limit = fetch.limit.unwrap_or(FetchHistory::DEFAULT_LIMIT).clamp(1, FetchHistory::MAX_LIMIT);
        self.history_of(conn, fetch.room_id)?;
        out.push(Effect::ReadHistory { conn, request_id: fetch.request_id, room: fetch.room_id, query, limit });
        Ok(())
    }

    /// Checks that the member behind `conn` may page `room`'s history: the room they are in, any
    /// open room of the session for a host (supervision), and a closed breakout room for a host or
    /// anyone who was in it.
    pub(super) fn history_of(&self, conn: ConnId, room: RoomId) -> Result<i64, SessionError> {
        let member = self.member_of(conn)?;
        self.readable_last_seq(member, room)
    }

    /// Where `room`'s chat stands, provided `member` may read it (see [`Self::history_of`]).
    pub(super) fn readable_last_seq(&self, member: &Member, room: RoomId) -> Result<i64, SessionError> {
        let host = member.session_role.is_host();
        if let Some(open) = self.rooms.get(&room) {
            return if host || member.room == room { Ok(open.chat.last_seq()) } else { Err(SessionError::NotInRoom) };
        }
        let closed = self.closed.get(&room).ok_or(SessionError::NoSuchRoom)?;
        if host || closed.visited.contains(&member.user_id) {
            Ok(closed.chat.last_seq())
        } else {
            Err(SessionError::NotInRoom)
        }
    }

    pub(super) fn check_body(&self, body: &str) -> Result<(), SessionError> {
        if body.trim().is_empty() {
            return Err(SessionError::Invalid("the message body is empty"));
        }
        if body.len() > self.limits.max_body_bytes {
            return Err(SessionError::TooLarge(self.limits.max_body_bytes));
        }
        Ok(())
    }
}
