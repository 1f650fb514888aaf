//! Breakout rooms and room transitions: rows, reads, and the changes the writer commits.

use chrono::{DateTime, Utc};
use convene_protocol::{AssignmentMode, RoomId, SessionId, UserId};
use uuid::Uuid;

use super::{Store, StoreError, with_db};

/// A row of `breakout_rooms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakoutRoomRecord {
    pub id: RoomId,
    pub main_session_id: SessionId,
    pub room_name: String,
    pub max_participants: u32,
    pub assignment_mode: AssignmentMode,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
}

/// A breakout room that has closed, with where its chat ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedRoomRecord {
    pub id: RoomId,
    pub room_name: String,
    pub closed_at: Option<DateTime<Utc>>,
    /// The room's last message sequence number (0 when nobody wrote in it).
    pub last_seq: i64,
}

/// What kind of change of room a transition records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransitionType {
    Join,
    Leave,
    Move,
}

impl TransitionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Move => "move",
        }
    }
}

/// A row of `breakout_room_transitions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionRecord {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub from_room: Option<RoomId>,
    pub to_room: Option<RoomId>,
    pub transition_type: TransitionType,
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RoomRow {
    id: Uuid,
    main_session_id: Uuid,
    room_name: String,
    max_participants: i32,
    assignment_mode: String,
    created_by: Uuid,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ClosedRoomRow {
    id: Uuid,
    room_name: String,
    closed_at: Option<DateTime<Utc>>,
    last_seq: i64,
}

#[derive(sqlx::FromRow)]
struct TransitionRow {
    session_id: Uuid,
    user_id: Uuid,
    from_room_id: Option<Uuid>,
    to_room_id: Option<Uuid>,
    transition_type: String,
    transitioned_at: DateTime<Utc>,
}

fn parse_mode(value: &str) -> Result<AssignmentMode, StoreError> {
    match value {
        "automatic" => Ok(AssignmentMode::Automatic),
        "manual" => Ok(AssignmentMode::Manual),
        "self_select" => Ok(AssignmentMode::SelfSelect),
        other => Err(StoreError::Corrupt(format!("assignment_mode {other:?}"))),
    }
}

fn parse_transition(value: &str) -> Result<TransitionType, StoreError> {
    match value {
        "join" => Ok(TransitionType::Join),
        "leave" => Ok(TransitionType::Leave),
        "move" => Ok(TransitionType::Move),
        other => Err(StoreError::Corrupt(format!("transition_type {other:?}"))),
    }
}

impl Store {
    /// The session's breakout rooms that are not closed, oldest first.
    pub async fn active_breakout_rooms(&self, session: SessionId) -> Result<Vec<BreakoutRoomRecord>, StoreError> {
        let rows: Vec<RoomRow> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT id, main_session_id, room_name, max_participants, assignment_mode, created_by, created_at \
                 FROM breakout_rooms WHERE main_session_id = $1 AND status = 'active' ORDER BY created_at, room_name",
            )
            .bind(session.0)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(BreakoutRoomRecord {
                    id: RoomId(row.id),
                    main_session_id: SessionId(row.main_session_id),
                    room_name: row.room_name,
                    max_participants: u32::try_from(row.max_participants).unwrap_or(1),
                    assignment_mode: parse_mode(&row.assignment_mode)?,
                    created_by: UserId(row.created_by),
                    created_at: row.created_at,
                })
            })
            .collect()
    }

    /// The session's closed breakout rooms, in the order they closed, with their chat's last
    /// sequence number.
    pub async fn closed_breakout_rooms(&self, session: SessionId) -> Result<Vec<ClosedRoomRecord>, StoreError> {
        let rows: Vec<ClosedRoomRow> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT b.id, b.room_name, b.closed_at, COALESCE(s.last_seq, 0) AS last_seq \
                 FROM breakout_rooms b LEFT JOIN room_sequences s ON s.room_id = b.id \
                 WHERE b.main_session_id = $1 AND b.status = 'closed' ORDER BY b.closed_at, b.room_name",
            )
            .bind(session.0)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|row| ClosedRoomRecord {
                id: RoomId(row.id),
                room_name: row.room_name,
                closed_at: row.closed_at,
                last_seq: row.last_seq,
            })
            .collect())
    }

    /// Every transition of a session, in the order they happened.
    pub async fn transitions(&self, session: SessionId) -> Result<Vec<TransitionRecord>, StoreError> {
        let rows: Vec<TransitionRow> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT session_id, user_id, from_room_id, to_room_id, transition_type, transitioned_at \
                 FROM breakout_room_transitions WHERE session_id = $1 ORDER BY id",
            )
            .bind(session.0)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(TransitionRecord {
                    session_id: SessionId(row.session_id),
                    user_id: UserId(row.user_id),
                    from_room: row.from_room_id.map(RoomId),
                    to_room: row.to_room_id.map(RoomId),
                    transition_type: parse_transition(&row.transition_type)?,
                    at: row.transitioned_at,
                })
            })
            .collect()
    }
}
