//! 1:1 conversations and notifications: [`UserRequest`], every request addressed to the caller's
//! own conversations and notifications rather than to a session, and the views the server sends
//! back.
//!
//! A conversation belongs to two users of one organization and follows them wherever they are:
//! in a session, in a breakout room, or in none. Its messages are numbered per conversation
//! (`seq`, gapless), stored before they are acknowledged, and delivered once, in order, to every
//! connected device of both users.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strum::{EnumDiscriminants, EnumIter, IntoStaticStr};

use crate::ids::{ClientMsgId, ConversationId, DirectMessageId, NotificationId, OrgId, RequestId, UserId};

/// A request about the caller's conversations or notifications, tagged by `type`.
/// [`UserRequestKind`] names the kinds without their payloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, EnumDiscriminants)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum_discriminants(name(UserRequestKind), derive(Hash, EnumIter, IntoStaticStr))]
#[strum_discriminants(strum(serialize_all = "snake_case"))]
pub enum UserRequest {
    OpenConversation(OpenConversation),
    ListConversations(ListConversations),
    SendDirect(SendDirect),
    EditDirect(EditDirect),
    DeleteDirect(DeleteDirect),
    FetchDirectHistory(FetchDirectHistory),
    SyncConversations(SyncConversations),
    MarkConversationRead(MarkConversationRead),
    DirectTyping(DirectTyping),
    ArchiveConversation(ArchiveConversation),
    FocusConversation(FocusConversation),
    BlockUser(BlockUser),
    UnblockUser(UnblockUser),
    ListNotifications(ListNotifications),
    MarkNotificationsRead(MarkNotificationsRead),
    CountNotifications(CountNotifications),
}

/// What tells two conversations of the same pair apart: an appointment, a session, a case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConversationContext {
    /// What the context is, as the application names it (`appointment`, `session`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl ConversationContext {
    pub const MAX_KIND_BYTES: usize = 32;
    pub const MAX_ID_BYTES: usize = 64;
}

/// Opens the caller's conversation with `user_id` (creating it the first time): one per pair
/// and organization, unless a subject or a context distinguishes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct OpenConversation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ConversationContext>,
}

/// Longest subject, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 200;

/// Where a page of conversations ends: the next page starts below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConversationCursor {
    pub last_activity_at: DateTime<Utc>,
    pub id: ConversationId,
}

/// Lists the caller's conversations, newest activity first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ListConversations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The archived ones instead of the others.
    #[serde(default)]
    pub archived: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<ConversationCursor>,
    /// At most 100; 30 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl ListConversations {
    pub const MAX_LIMIT: u32 = 100;
    pub const DEFAULT_LIMIT: u32 = 30;
}

/// Sends a message: to a conversation, or to a user (opening the conversation on the first
/// message, as [`OpenConversation`] would). Idempotent by `client_msg_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SendDirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    /// Instead of `conversation_id`: the other user, with the conversation's subject and context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<OpenConversation>,
    pub client_msg_id: ClientMsgId,
    pub body: String,
}

/// Replaces the body of one's own message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EditDirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub conversation_id: ConversationId,
    pub message_id: DirectMessageId,
    pub body: String,
}

/// Deletes (softly) one's own message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DeleteDirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub conversation_id: ConversationId,
    pub message_id: DirectMessageId,
}

/// Pages through a conversation: backwards from `before_seq`, forwards from `after_seq`, or the
/// latest messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FetchDirectHistory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub conversation_id: ConversationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<i64>,
    /// At most 100; 50 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl FetchDirectHistory {
    pub const MAX_LIMIT: u32 = 100;
    pub const DEFAULT_LIMIT: u32 = 50;
}

/// Where a device stopped reading a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConversationPosition {
    pub conversation_id: ConversationId,
    pub last_seq: i64,
}

/// Says where this device is in each conversation it shows; it gets what it missed (as
/// `direct_message` frames, before the reply), or, past the resume window, a `gap` to page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SyncConversations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub positions: Vec<ConversationPosition>,
}

impl SyncConversations {
    pub const MAX_POSITIONS: usize = 200;
}

/// Marks the conversation read up to `seq` for the caller (on all their devices).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MarkConversationRead {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub conversation_id: ConversationId,
    pub seq: i64,
}

/// Says the caller started or stopped typing; ephemeral, never stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DirectTyping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub conversation_id: ConversationId,
    pub active: bool,
}

/// Archives or unarchives a conversation for the caller alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ArchiveConversation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub conversation_id: ConversationId,
    pub archived: bool,
}

/// Says which conversation this device shows (none with `null`): new messages there make no
/// notification for the caller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FocusConversation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub conversation_id: Option<ConversationId>,
}

/// Blocks a user: neither may open a conversation with the other or send in one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BlockUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub user_id: UserId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UnblockUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub user_id: UserId,
}

/// Lists the caller's notifications, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ListNotifications {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    #[serde(default)]
    pub unread_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_id: Option<NotificationId>,
    /// At most 100; 30 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl ListNotifications {
    pub const MAX_LIMIT: u32 = 100;
    pub const DEFAULT_LIMIT: u32 = 30;
}

/// Marks some notifications read (`ids`), or all of them (`all`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct MarkNotificationsRead {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<NotificationId>,
    #[serde(default)]
    pub all: bool,
}

impl MarkNotificationsRead {
    pub const MAX_IDS: usize = 100;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CountNotifications {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

/// Applies `$body` to the payload of whichever request `$request` is.
macro_rules! each_payload {
    ($request:expr, $payload:ident => $body:expr) => {
        match $request {
            UserRequest::OpenConversation($payload) => $body,
            UserRequest::ListConversations($payload) => $body,
            UserRequest::SendDirect($payload) => $body,
            UserRequest::EditDirect($payload) => $body,
            UserRequest::DeleteDirect($payload) => $body,
            UserRequest::FetchDirectHistory($payload) => $body,
            UserRequest::SyncConversations($payload) => $body,
            UserRequest::MarkConversationRead($payload) => $body,
            UserRequest::DirectTyping($payload) => $body,
            UserRequest::ArchiveConversation($payload) => $body,
            UserRequest::FocusConversation($payload) => $body,
            UserRequest::BlockUser($payload) => $body,
            UserRequest::UnblockUser($payload) => $body,
            UserRequest::ListNotifications($payload) => $body,
            UserRequest::MarkNotificationsRead($payload) => $body,
            UserRequest::CountNotifications($payload) => $body,
        }
    };
}

impl UserRequest {
    /// The request id the client attached, if any.
    pub fn request_id(&self) -> Option<&RequestId> {
        each_payload!(self, payload => payload.request_id.as_ref())
    }

    /// The request's `type` tag, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        UserRequestKind::from(self).into()
    }

    /// Checks what can be checked without the store: bounds and combinations of fields.
    pub fn validate(&self) -> Result<(), &'static str> {
        let limit = |limit: Option<u32>, max: u32| {
            if limit.is_some_and(|limit| limit == 0 || limit > max) { Err("limit must be 1 to 100") } else { Ok(()) }
        };
        match self {
            Self::OpenConversation(open) => open.validate(),
            Self::SendDirect(send) => match (&send.conversation_id, &send.to) {
                (Some(_), None) => Ok(()),
                (None, Some(to)) => to.validate(),
                _ => Err("give conversation_id or to, not both"),
            },
            Self::ListConversations(list) => limit(list.limit, ListConversations::MAX_LIMIT),
            Self::FetchDirectHistory(fetch) => {
                if fetch.before_seq.is_some() && fetch.after_seq.is_some() {
                    return Err("give before_seq or after_seq, not both");
                }
                limit(fetch.limit, FetchDirectHistory::MAX_LIMIT)
            }
            Self::SyncConversations(sync) => {
                if sync.positions.len() > SyncConversations::MAX_POSITIONS {
                    return Err("positions names too many conversations (at most 200)");
                }
                if sync.positions.iter().any(|position| position.last_seq < 0) {
                    return Err("last_seq must not be negative");
                }
                Ok(())
            }
            Self::MarkConversationRead(read) if read.seq < 0 => Err("seq must not be negative"),
            Self::ListNotifications(list) => limit(list.limit, ListNotifications::MAX_LIMIT),
            Self::MarkNotificationsRead(read) => {
                if read.all != read.ids.is_empty() {
                    return Err("give ids or all, not both");
                }
                if read.ids.len() > MarkNotificationsRead::MAX_IDS {
                    return Err("ids names too many notifications (at most 100)");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl OpenConversation {
    fn validate(&self) -> Result<(), &'static str> {
        if self.subject.as_ref().is_some_and(|subject| subject.len() > MAX_SUBJECT_BYTES) {
            return Err("subject is over 200 bytes");
        }
        if let Some(context) = &self.context {
            if context.kind.is_empty() || context.kind.len() > ConversationContext::MAX_KIND_BYTES {
                return Err("context type must be 1 to 32 bytes");
            }
            if context.id.is_empty() || context.id.len() > ConversationContext::MAX_ID_BYTES {
                return Err("context id must be 1 to 64 bytes");
            }
        }
        Ok(())
    }
}

/// A conversation as both its members see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConversationView {
    pub id: ConversationId,
    pub organization_id: OrgId,
    /// Its two members, in a fixed order.
    pub members: [UserId; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ConversationContext>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
}

/// One entry of the caller's conversation list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConversationSummary {
    pub conversation: ConversationView,
    pub other_user_id: UserId,
    /// The sequence of its latest message (0 when none).
    pub last_seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<DirectMessage>,
    pub last_activity_at: DateTime<Utc>,
    /// How far the caller has read.
    pub read_seq: i64,
    /// Messages after `read_seq`.
    pub unread: i64,
    pub archived: bool,
}

/// A message of a conversation. A deleted message keeps its place with an empty body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DirectMessage {
    pub id: DirectMessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub sender_id: UserId,
    pub client_msg_id: ClientMsgId,
    pub body: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What a `sync_conversations` found for one conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SyncOutcome {
    pub conversation_id: ConversationId,
    /// Messages sent again, just before the reply.
    pub replayed: u32,
    /// The conversation's latest sequence when the reply was made.
    pub last_seq: i64,
    /// More were missed than the resume window holds: none were replayed; page with
    /// `fetch_direct_history` from the position given.
    pub gap: bool,
}

/// A notification stored for a user until read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Notification {
    pub id: NotificationId,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    /// Whatever the sender attached (a JSON object).
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
}

/// Unread notifications: in all, and by type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct NotificationCounts {
    pub total: i64,
    pub by_type: BTreeMap<String, i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<UserRequest, String> {
        let request: UserRequest = serde_json::from_str(text).map_err(|err| err.to_string())?;
        request.validate().map_err(str::to_owned)?;
        Ok(request)
    }

    #[test]
    fn requests_out_of_bounds_are_refused() {
        let conversation = ConversationId::new_v4();
        let user = UserId::new_v4();
        let long_subject = "s".repeat(MAX_SUBJECT_BYTES + 1);
        let refused = [
            r#"{"type":"send_direct","client_msg_id":"c","body":"x"}"#.to_owned(),
            format!(
                r#"{{"type":"send_direct","conversation_id":"{conversation}","to":{{"user_id":"{user}"}},"client_msg_id":"c","body":"x"}}"#
            ),
            format!(r#"{{"type":"open_conversation","user_id":"{user}","subject":"{long_subject}"}}"#),
            format!(r#"{{"type":"open_conversation","user_id":"{user}","context":{{"type":"","id":"1"}}}}"#),
            r#"{"type":"list_conversations","limit":0}"#.to_owned(),
            format!(
                r#"{{"type":"fetch_direct_history","conversation_id":"{conversation}","before_seq":3,"after_seq":1}}"#
            ),
            format!(r#"{{"type":"mark_conversation_read","conversation_id":"{conversation}","seq":-1}}"#),
            r#"{"type":"mark_notifications_read"}"#.to_owned(),
            r#"{"type":"mark_notifications_read","ids":[1],"all":true}"#.to_owned(),
        ];
        for text in refused {
            assert!(parse(&text).is_err(), "{text}");
        }
        let accepted = [
            format!(r#"{{"type":"send_direct","conversation_id":"{conversation}","client_msg_id":"c","body":"x"}}"#),
            format!(
                r#"{{"type":"send_direct","to":{{"user_id":"{user}","subject":"plan"}},"client_msg_id":"c","body":"x"}}"#
            ),
            r#"{"type":"mark_notifications_read","all":true}"#.to_owned(),
            r#"{"type":"focus_conversation","conversation_id":null}"#.to_owned(),
        ];
        for text in accepted {
            assert!(parse(&text).is_ok(), "{text}");
        }
    }
}
