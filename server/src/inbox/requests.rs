//! A device's requests about its user's conversations and notifications. Each is checked
//! (budget, bounds, membership), carried out against the store, answered once, and only then
//! published to the devices concerned.

use std::sync::Arc;

use chrono::Utc;
use convene_protocol::{
    ConnId, ConversationId, ConversationView, DirectMessageId, ErrorCode, OpenConversation, RequestId, ServerMessage,
    UserId, UserRequest,
};
use tokio::sync::oneshot;
use tracing::debug;

use super::hub::message_event;
use super::policy::{self, Facts, Refusal};
use super::{HubCommand, Inbox, Inboxes, UserEvent};
use crate::auth::Identity;
use crate::limits::Budget;
use crate::outbound::{ConnLink, Frame};
use crate::store::{
    DirectEdit, DirectSent, HistoryQuery, NewConversation, NewDirectMessage, ReadSelection, Store, StoreError, WriteOp,
};

/// What a user's conversation requests spend, per user and node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirectSpend {
    /// Messages sent, edited or deleted.
    Send,
    Typing,
    /// Lists, pages and syncs read.
    Read,
    /// Everything else written: read marks, archiving, focus, blocks.
    Write,
}

/// The budgets of [`DirectSpend`].
#[derive(Clone, Copy, Debug)]
pub struct DirectBudgets {
    pub send: Budget,
    pub typing: Budget,
    pub read: Budget,
    pub write: Budget,
    pub max_body_bytes: usize,
}

impl DirectBudgets {
    fn of(&self, spend: DirectSpend) -> Budget {
        match spend {
            DirectSpend::Send => self.send,
            DirectSpend::Typing => self.typing,
            DirectSpend::Read => self.read,
            DirectSpend::Write => self.write,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("no such conversation")]
    NotFound,
    #[error("no such message")]
    NoSuchMessage,
    #[error("only the sender may change a message")]
    NotSender,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("too many requests; slow down")]
    RateLimited,
    #[error("the message is empty")]
    Empty,
    #[error("the message is over {0} bytes")]
    TooLarge(usize),
    #[error("the database is unavailable; retry")]
    Unavailable,
    #[error("you cannot block yourself")]
    Yourself,
}

impl DirectError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound | Self::NoSuchMessage => ErrorCode::NotFound,
            Self::NotSender => ErrorCode::Forbidden,
            Self::Refused(refusal) => refusal.code(),
            Self::RateLimited => ErrorCode::RateLimited,
            Self::Empty | Self::Yourself => ErrorCode::Invalid,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::Unavailable => ErrorCode::Unavailable,
        }
    }
}

impl From<StoreError> for DirectError {
    fn from(err: StoreError) -> Self {
        debug!(error = %err, "a conversation request could not reach the store");
        Self::Unavailable
    }
}

/// The connection a request came from.
#[derive(Debug)]
pub struct Caller<'a> {
    pub conn: ConnId,
    pub identity: &'a Identity,
    pub link: &'a ConnLink,
    pub inbox: &'a Arc<Inbox>,
    /// Whether this connection told the store which conversation it looks at.
    pub focused: &'a mut bool,
}

impl Caller<'_> {
    fn user(&self) -> UserId {
        self.identity.user_id
    }

    fn reply(&self, message: &ServerMessage) {
        self.link.send(message);
    }
}

/// Carries out one request; the caller answers the error, if one is returned.
pub async fn handle(inboxes: &Arc<Inboxes>, caller: Caller<'_>, request: UserRequest) -> Result<(), DirectError> {
    let spend = match &request {
        UserRequest::SendDirect(_) | UserRequest::EditDirect(_) | UserRequest::DeleteDirect(_) => DirectSpend::Send,
        UserRequest::DirectTyping(_) => DirectSpend::Typing,
        UserRequest::ListConversations(_)
        | UserRequest::FetchDirectHistory(_)
        | UserRequest::SyncConversations(_)
        | UserRequest::ListNotifications(_)
        | UserRequest::CountNotifications(_)
        | UserRequest::OpenConversation(_) => DirectSpend::Read,
        UserRequest::MarkConversationRead(_)
        | UserRequest::ArchiveConversation(_)
        | UserRequest::FocusConversation(_)
        | UserRequest::BlockUser(_)
        | UserRequest::UnblockUser(_)
        | UserRequest::MarkNotificationsRead(_) => DirectSpend::Write,
    };
    if !caller.inbox.spend(spend, inboxes.budgets.of(spend)) {
        return Err(DirectError::RateLimited);
    }
    let user = caller.user();
    match request {
        UserRequest::OpenConversation(open) => {
            let view = inboxes.open(&caller, &open).await?;
            caller.reply(&ServerMessage::Conversation { request_id: open.request_id, conversation: view });
        }
        UserRequest::ListConversations(list) => {
            let limit = list.limit.unwrap_or(convene_protocol::ListConversations::DEFAULT_LIMIT);
            let page = Store::within(
                inboxes.db_timeout,
                inboxes.store.list_conversations(user, list.archived, list.before, limit),
            )
            .await?;
            for summary in &page.conversations {
                caller.inbox.remember(&summary.conversation);
            }
            caller.reply(&ServerMessage::Conversations {
                request_id: list.request_id,
                conversations: page.conversations,
                next: page.next,
            });
        }
        UserRequest::SendDirect(send) => {
            let body_len = send.body.len();
            if send.body.trim().is_empty() {
                return Err(DirectError::Empty);
            }
            if body_len > inboxes.budgets.max_body_bytes {
                return Err(DirectError::TooLarge(inboxes.budgets.max_body_bytes));
            }
            let view = match (&send.conversation_id, &send.to) {
                (Some(id), _) => inboxes.member_of(&caller, *id).await?,
                (None, Some(to)) => inboxes.open(&caller, to).await?,
                (None, None) => return Err(DirectError::NotFound),
            };
            inboxes.send(&caller, view, send.request_id, send.client_msg_id, send.body).await?;
        }
        UserRequest::EditDirect(edit) => {
            inboxes.member_of(&caller, edit.conversation_id).await?;
            if edit.body.trim().is_empty() {
                return Err(DirectError::Empty);
            }
            if edit.body.len() > inboxes.budgets.max_body_bytes {
                return Err(DirectError::TooLarge(inboxes.budgets.max_body_bytes));
            }
            inboxes.change(&caller, edit.request_id, edit.conversation_id, edit.message_id, Some(&edit.body)).await?;
        }
        UserRequest::DeleteDirect(delete) => {
            inboxes.member_of(&caller, delete.conversation_id).await?;
            inboxes.change(&caller, delete.request_id, delete.conversation_id, delete.message_id, None).await?;
        }
        UserRequest::FetchDirectHistory(fetch) => {
            inboxes.member_of(&caller, fetch.conversation_id).await?;
            let query = match (fetch.before_seq, fetch.after_seq) {
                (Some(before), _) => HistoryQuery::Before(before),
                (None, Some(after)) => HistoryQuery::After(after),
                (None, None) => HistoryQuery::Latest,
            };
            let limit = fetch.limit.unwrap_or(convene_protocol::FetchDirectHistory::DEFAULT_LIMIT);
            let (messages, has_more) =
                Store::within(inboxes.db_timeout, inboxes.store.direct_history(fetch.conversation_id, query, limit))
                    .await?;
            caller.reply(&ServerMessage::DirectHistory {
                request_id: fetch.request_id,
                conversation_id: fetch.conversation_id,
                messages,
                has_more,
            });
        }
        UserRequest::SyncConversations(sync) => {
            let command = HubCommand::Sync(Box::new(super::SyncRequest { conn: caller.conn, request: sync }));
            // The inbox answers it, after the replayed messages, in order with live ones.
            let Some(tx) = caller.inbox.mailbox(inboxes) else { return Err(DirectError::Unavailable) };
            if tx.send(command).await.is_err() {
                return Err(DirectError::Unavailable);
            }
        }
        UserRequest::MarkConversationRead(read) => {
            let view = inboxes.member_of(&caller, read.conversation_id).await?;
            let position =
                Store::within(inboxes.db_timeout, inboxes.store.mark_conversation_read(view.id, user, read.seq))
                    .await?
                    .ok_or(DirectError::NotFound)?;
            caller.reply(&ServerMessage::Ok { request_id: read.request_id });
            let event = ServerMessage::ConversationRead {
                conversation_id: view.id,
                user_id: user,
                read_seq: position.read_seq,
                unread: (position.last_seq - position.read_seq).max(0),
            };
            inboxes.publish_message(&view.members, &event);
        }
        UserRequest::DirectTyping(typing) => {
            let view = inboxes.member_of(&caller, typing.conversation_id).await?;
            caller.reply(&ServerMessage::Ok { request_id: typing.request_id });
            let other: Vec<UserId> = view.members.iter().copied().filter(|member| *member != user).collect();
            let event =
                ServerMessage::ConversationTyping { conversation_id: view.id, user_id: user, active: typing.active };
            inboxes.publish_message(&other, &event);
        }
        UserRequest::ArchiveConversation(archive) => {
            let view = inboxes.member_of(&caller, archive.conversation_id).await?;
            Store::within(inboxes.db_timeout, inboxes.store.set_archived(view.id, user, archive.archived)).await?;
            caller.reply(&ServerMessage::Ok { request_id: archive.request_id });
            let event = ServerMessage::ConversationArchived { conversation_id: view.id, archived: archive.archived };
            inboxes.publish_message(&[user], &event);
        }
        UserRequest::FocusConversation(focus) => {
            if let Some(conversation) = focus.conversation_id {
                inboxes.member_of(&caller, conversation).await?;
            }
            Store::within(inboxes.db_timeout, inboxes.store.set_focus(caller.conn, user, focus.conversation_id))
                .await?;
            *caller.focused = focus.conversation_id.is_some();
            caller.reply(&ServerMessage::Ok { request_id: focus.request_id });
        }
        UserRequest::BlockUser(block) => {
            inboxes.block(&caller, block.request_id, block.user_id, true).await?;
        }
        UserRequest::UnblockUser(unblock) => {
            inboxes.block(&caller, unblock.request_id, unblock.user_id, false).await?;
        }
        UserRequest::ListNotifications(list) => {
            let limit = list.limit.unwrap_or(convene_protocol::ListNotifications::DEFAULT_LIMIT);
            let (notifications, has_more) = Store::within(
                inboxes.db_timeout,
                inboxes.store.list_notifications(user, list.unread_only, list.before_id, limit),
            )
            .await?;
            let counts = Store::within(inboxes.db_timeout, inboxes.store.notification_counts(user)).await?;
            caller.reply(&ServerMessage::Notifications {
                request_id: list.request_id,
                notifications,
                counts,
                has_more,
            });
        }
        UserRequest::MarkNotificationsRead(read) => {
            let (selection, all) =
                if read.all { (ReadSelection::All, true) } else { (ReadSelection::Ids(read.ids), false) };
            let ids =
                Store::within(inboxes.db_timeout, inboxes.store.mark_notifications_read(user, &selection, Utc::now()))
                    .await?;
            let counts = Store::within(inboxes.db_timeout, inboxes.store.notification_counts(user)).await?;
            caller.reply(&ServerMessage::Ok { request_id: read.request_id });
            inboxes.publish_message(&[user], &ServerMessage::NotificationsRead { ids, all, counts });
        }
        UserRequest::CountNotifications(count) => {
            let counts = Store::within(inboxes.db_timeout, inboxes.store.notification_counts(user)).await?;
            caller.reply(&ServerMessage::NotificationCounts { request_id: count.request_id, counts });
        }
    }
    Ok(())
}

impl Inboxes {
    /// The conversation, if the caller is one of its two members (admins included: nobody
    /// else reads it); anything else is `not_found`.
    async fn member_of(&self, caller: &Caller<'_>, id: ConversationId) -> Result<ConversationView, DirectError> {
        if let Some(view) = caller.inbox.known(id) {
            return Ok(view);
        }
        let record = Store::within(self.db_timeout, self.store.conversation(id)).await?.ok_or(DirectError::NotFound)?;
        let member = record.other(caller.user()).is_some();
        if !member || Some(record.view.organization_id) != caller.identity.organization_id {
            return Err(DirectError::NotFound);
        }
        caller.inbox.remember(&record.view);
        Ok(record.view)
    }

    /// Opens (or finds) the caller's conversation with another user, if the rules allow it.
    async fn open(
        self: &Arc<Self>,
        caller: &Caller<'_>,
        open: &OpenConversation,
    ) -> Result<ConversationView, DirectError> {
        let user = caller.user();
        let Some(organization) = caller.identity.organization_id else {
            return Err(Refusal::UnknownUser.into());
        };
        let other = Store::within(self.db_timeout, self.store.chat_profile(open.user_id)).await?;
        let mine = Store::within(self.db_timeout, self.store.chat_profile(user)).await?;
        let caller_kind = mine.map_or_else(|| policy::kind_of_role(caller.identity.role), |profile| profile.kind);
        let blocked = Store::within(self.db_timeout, self.store.blocked_either(user, open.user_id)).await?;
        let share_programme = Store::within(self.db_timeout, self.store.share_programme(user, open.user_id)).await?;
        let cares_for = match (caller_kind, other.map(|profile| profile.kind)) {
            (crate::store::PersonKind::Therapist, Some(_)) => {
                Store::within(self.db_timeout, self.store.cares_for(user, open.user_id)).await?
            }
            (crate::store::PersonKind::Patient, Some(_)) => {
                Store::within(self.db_timeout, self.store.cares_for(open.user_id, user)).await?
            }
            _ => false,
        };
        let facts = Facts {
            organization: Some(organization),
            caller: user,
            caller_kind,
            other,
            share_programme,
            cares_for,
            blocked,
        };
        policy::may_open(&facts)?;
        let new = NewConversation {
            organization_id: organization,
            created_by: user,
            other: open.user_id,
            subject: open.subject.clone().filter(|subject| !subject.is_empty()),
            context: open.context.clone(),
            at: Utc::now(),
        };
        let (record, created) = Store::within(self.db_timeout, self.store.open_conversation(&new)).await?;
        caller.inbox.remember(&record.view);
        if created {
            let event = ServerMessage::ConversationStarted { conversation: record.view.clone() };
            self.publish_message(&record.view.members, &event);
        }
        Ok(record.view)
    }

    /// Stores a message, acknowledges it, then delivers it (and its notification).
    async fn send(
        self: &Arc<Self>,
        caller: &Caller<'_>,
        view: ConversationView,
        request_id: Option<RequestId>,
        client_msg_id: convene_protocol::ClientMsgId,
        body: String,
    ) -> Result<(), DirectError> {
        let user = caller.user();
        let recipient = view.members.iter().copied().find(|member| *member != user).ok_or(DirectError::NotFound)?;
        let message = NewDirectMessage {
            id: DirectMessageId::new_v7(),
            conversation_id: view.id,
            sender_id: user,
            recipient_id: recipient,
            client_msg_id,
            body,
            created_at: Utc::now(),
        };
        let (done, outcome) = oneshot::channel();
        self.writer.try_submit(WriteOp::SendDirect { message, done }).map_err(DirectError::from)?;
        let sent = outcome.await.map_err(|_| DirectError::Unavailable)?.map_err(|_| DirectError::Unavailable)?;
        let (message, notification) = match sent {
            DirectSent::Stored { message, notification } => (message, notification),
            DirectSent::Duplicate(message) => {
                caller.reply(&ack(request_id, &message));
                return Ok(());
            }
            DirectSent::Blocked => return Err(Refusal::Blocked.into()),
        };
        caller.reply(&ack(request_id, &message));
        if let Some(event) = message_event(message) {
            self.publish(&view.members, &event);
        }
        if let Some(notification) = notification {
            self.metrics.notifications_stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.publish_message(&[recipient], &ServerMessage::Notification { notification });
        }
        Ok(())
    }

    async fn change(
        self: &Arc<Self>,
        caller: &Caller<'_>,
        request_id: Option<RequestId>,
        conversation: ConversationId,
        message: DirectMessageId,
        body: Option<&str>,
    ) -> Result<(), DirectError> {
        let view = self.member_of(caller, conversation).await?;
        let changed = Store::within(
            self.db_timeout,
            self.store.change_direct(conversation, message, caller.user(), body, Utc::now()),
        )
        .await?;
        let message = match changed {
            DirectEdit::Changed(message) => message,
            DirectEdit::NotSender => return Err(DirectError::NotSender),
            DirectEdit::NotFound => return Err(DirectError::NoSuchMessage),
        };
        caller.reply(&ServerMessage::Ok { request_id });
        let seq = message.seq;
        let event = if body.is_some() {
            ServerMessage::DirectMessageEdited { message }
        } else {
            ServerMessage::DirectMessageDeleted { message }
        };
        if let Some(frame) = Frame::encode(&event) {
            self.publish(&view.members, &UserEvent::Changed { conversation, seq, frame });
        }
        Ok(())
    }

    async fn block(
        &self,
        caller: &Caller<'_>,
        request_id: Option<RequestId>,
        other: UserId,
        block: bool,
    ) -> Result<(), DirectError> {
        if other == caller.user() {
            return Err(DirectError::Yourself);
        }
        Store::within(self.db_timeout, self.store.set_block(caller.user(), other, block, Utc::now())).await?;
        caller.reply(&ServerMessage::Ok { request_id });
        Ok(())
    }

    /// Publishes a message that needs no ordering.
    pub fn publish_message(self: &Arc<Self>, users: &[UserId], message: &ServerMessage) {
        if let Some(frame) = Frame::encode(message) {
            self.publish(users, &UserEvent::Other { frame });
        }
    }
}

fn ack(request_id: Option<RequestId>, message: &convene_protocol::DirectMessage) -> ServerMessage {
    ServerMessage::DirectAck {
        request_id,
        client_msg_id: message.client_msg_id.clone(),
        conversation_id: message.conversation_id,
        message_id: message.id,
        seq: message.seq,
        created_at: message.created_at,
    }
}
