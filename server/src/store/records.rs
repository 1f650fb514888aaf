//! What the store reads and writes, as plain data. Rows are decoded into these types here, so no
//! other module sees a column.

use chrono::{DateTime, Utc};
use convene_protocol::{MessageId, OrgId, RoomId, SessionId, SessionRole, SessionStatus, SessionType, UserId};
use uuid::Uuid;

use super::StoreError;

/// A row of `video_sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub organization_id: Option<OrgId>,
    pub session_type: SessionType,
    pub status: SessionStatus,
    pub room_name: String,
    pub created_by: UserId,
    pub lobby_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A row of `session_participants`: someone with a standing in the session (its creator, an
/// invitee, or anyone who joined).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantRecord {
    pub user_id: UserId,
    pub role: SessionRole,
    pub invited: bool,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    /// Set when a host removed them: they come back only through the lobby.
    pub removed_at: Option<DateTime<Utc>>,
}

/// A chat message to store; the writer gives it its sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub id: MessageId,
    pub session_id: SessionId,
    pub room_id: RoomId,
    pub sender_id: UserId,
    pub client_msg_id: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl NewMessage {
    /// The message as stored with sequence number `seq`.
    pub fn stored(&self, seq: i64) -> MessageRecord {
        MessageRecord {
            id: self.id,
            session_id: self.session_id,
            room_id: self.room_id,
            seq,
            sender_id: self.sender_id,
            client_msg_id: self.client_msg_id.clone(),
            body: self.body.clone(),
            created_at: self.created_at,
            edited_at: None,
            deleted_at: None,
        }
    }
}

/// A stored chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub session_id: SessionId,
    pub room_id: RoomId,
    pub seq: i64,
    pub sender_id: UserId,
    pub client_msg_id: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What became of a message insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored now, with its sequence number.
    Inserted(MessageRecord),
    /// The sender already stored a message with this client id; here it is, unchanged.
    Duplicate(MessageRecord),
}

/// What became of an edit or a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditOutcome {
    Changed(MessageRecord),
    /// No such message in that room, or it was already deleted.
    NotFound,
    /// The message exists but the caller may not change it.
    NotSender,
}

/// One page of history, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    pub messages: Vec<MessageRecord>,
    pub has_more: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    id: Uuid,
    organization_id: Option<Uuid>,
    session_type: String,
    status: String,
    room_name: String,
    created_by: Uuid,
    lobby_enabled: bool,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: SessionId(row.id),
            organization_id: row.organization_id.map(OrgId),
            session_type: parse_session_type(&row.session_type)?,
            status: parse_session_status(&row.status)?,
            room_name: row.room_name,
            created_by: UserId(row.created_by),
            lobby_enabled: row.lobby_enabled,
            created_at: row.created_at,
            started_at: row.started_at,
            ended_at: row.ended_at,
            expires_at: row.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ParticipantRow {
    user_id: Uuid,
    role: String,
    invited: bool,
    joined_at: Option<DateTime<Utc>>,
    left_at: Option<DateTime<Utc>>,
    removed_at: Option<DateTime<Utc>>,
}

impl TryFrom<ParticipantRow> for ParticipantRecord {
    type Error = StoreError;

    fn try_from(row: ParticipantRow) -> Result<Self, StoreError> {
        Ok(Self {
            user_id: UserId(row.user_id),
            role: parse_session_role(&row.role)?,
            invited: row.invited,
            joined_at: row.joined_at,
            left_at: row.left_at,
            removed_at: row.removed_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    id: Uuid,
    session_id: Uuid,
    room_id: Uuid,
    seq: i64,
    sender_id: Uuid,
    client_msg_id: String,
    body: String,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
}

impl From<MessageRow> for MessageRecord {
    fn from(row: MessageRow) -> Self {
        Self {
            id: MessageId(row.id),
            session_id: SessionId(row.session_id),
            room_id: RoomId(row.room_id),
            seq: row.seq,
            sender_id: UserId(row.sender_id),
            client_msg_id: row.client_msg_id,
            body: row.body,
            created_at: row.created_at,
            edited_at: row.edited_at,
            deleted_at: row.deleted_at,
        }
    }
}

/// The columns of `room_messages`, in [`MessageRow`]'s order.
pub(super) const MESSAGE_COLUMNS: &str =
    "id, session_id, room_id, seq, sender_id, client_msg_id, body, created_at, edited_at, deleted_at";

fn parse_session_type(value: &str) -> Result<SessionType, StoreError> {
    match value {
        "appointment" => Ok(SessionType::Appointment),
        "instant" => Ok(SessionType::Instant),
        "group" => Ok(SessionType::Group),
        other => Err(StoreError::Corrupt(format!("session_type {other:?}"))),
    }
}

fn parse_session_status(value: &str) -> Result<SessionStatus, StoreError> {
    match value {
        "scheduled" => Ok(SessionStatus::Scheduled),
        "active" => Ok(SessionStatus::Active),
        "ended" => Ok(SessionStatus::Ended),
        other => Err(StoreError::Corrupt(format!("status {other:?}"))),
    }
}

fn parse_session_role(value: &str) -> Result<SessionRole, StoreError> {
    match value {
        "host" => Ok(SessionRole::Host),
        "co_host" => Ok(SessionRole::CoHost),
        "participant" => Ok(SessionRole::Participant),
        other => Err(StoreError::Corrupt(format!("role {other:?}"))),
    }
}
