//! Room chat commands: posting (acknowledged after commit), editing, deleting, typing.

use convene_protocol::{ClientMsgId, ConnId, MessageId, RequestId, RoomId, UserId};

use super::{Audience, Effect, Event, Now, Persist, SessionError, SessionState, send};
use crate::chat::{Known, RateLimiter, Waiter};
use crate::store::{EditOutcome, InsertOutcome, NewMessage, WriteFailed};

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
        // Hosts moderate: they may delete anyone's message.
        let (by, any_sender) = (member.user_id, member.session_role.is_host());
        out.push(Effect::Persist(Persist::Delete { conn, request_id, room, message_id, by, any_sender, at: now.wall }));
        Ok(())
    }

    pub(super) fn typing(
        &mut self,
        conn: ConnId,
        request_id: Option<RequestId>,
        room: RoomId,
        active: bool,
        out: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let user = self.reader_of(conn, room)?.user_id;
        send(out, Audience::RoomExcept(room, user), Event::Typed { room, user, active });
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
        let room = self.rooms.get_mut(&room_id).ok_or(SessionError::NoSuchRoom)?;
        match room.chat.known(sender, &client_msg_id) {
            Known::Committed(message) => {
                let event = Event::MessageAcked { request_id, client_msg_id, message: message.clone() };
                send(out, Audience::Conn(conn), event);
                return Ok(());
            }
            Known::Pending => {
                room.chat.wait(sender, client_msg_id, Waiter { conn, request_id });
                return Ok(());
            }
            Known::New => {}
        }
        let limits = self.limits;
        let limiter = self.rate.entry(sender).or_insert_with(|| RateLimiter::new(limits.burst, now.mono));
        if !limiter.try_take(limits.rate_per_sec, limits.burst, now.mono) {
            return Err(SessionError::RateLimited);
        }
        let message = NewMessage {
            id: MessageId::new_v4(),
            session_id: self.session.id,
            room_id,
            sender_id: sender,
            client_msg_id: client_msg_id.as_str().to_owned(),
            body,
            created_at: now.wall,
        };
        room.chat.wait(sender, client_msg_id, Waiter { conn, request_id });
        out.push(Effect::Persist(Persist::Message(message)));
        Ok(())
    }

    pub(super) fn posted(
        &mut self,
        room_id: RoomId,
        sender: UserId,
        client_msg_id: &ClientMsgId,
        result: Result<InsertOutcome, WriteFailed>,
        out: &mut Vec<Effect>,
    ) {
        let Some(room) = self.rooms.get_mut(&room_id) else { return };
        let waiters = room.chat.settle(sender, client_msg_id);
        let (message, fresh) = match result {
            Ok(InsertOutcome::Inserted(message)) => (message, true),
            // A send whose first attempt was cut short while committing may have been stored
            // after all: if it is newer than anything announced, it is announced now.
            Ok(InsertOutcome::Duplicate(message)) => {
                let unseen = message.seq > room.chat.last_seq();
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
            room.chat.committed(message.clone());
        }
        for waiter in waiters {
            let event = Event::MessageAcked {
                request_id: waiter.request_id,
                client_msg_id: client_msg_id.clone(),
                message: message.clone(),
            };
            send(out, Audience::Conn(waiter.conn), event);
        }
        if fresh {
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
