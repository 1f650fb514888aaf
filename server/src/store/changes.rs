//! The row changes a session commits in one transaction: room changes, transitions, roles and
//! removals. The writer applies them with [`apply_session_writes`].

use chrono::{DateTime, Utc};
use convene_protocol::{RoomId, SessionId, UserId};

use super::{AuditRecord, BreakoutRoomRecord, TransitionRecord};

/// One change of a session's rows; the changes of one command commit together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionWrite {
    CreateRooms(Vec<BreakoutRoomRecord>),
    UpdateRoom {
        room: RoomId,
        name: String,
        max_participants: u32,
    },
    DeleteRoom(RoomId),
    CloseRooms {
        rooms: Vec<RoomId>,
        at: DateTime<Utc>,
    },
    Transitions(Vec<TransitionRecord>),
    /// A host removed the person from the session.
    Removed {
        session: SessionId,
        user: UserId,
        at: DateTime<Utc>,
    },
    /// The session's lobby was turned on or off.
    LobbyChanged {
        session: SessionId,
        enabled: bool,
    },
    /// A host ended the session.
    SessionEnded {
        session: SessionId,
        at: DateTime<Utc>,
    },
    /// A row of the audit trail, for the host action the other changes carry out.
    Audit(AuditRecord),
    /// A member's role in the session (`session_participants.role`).
    SetRole {
        session: SessionId,
        user: UserId,
        role: convene_protocol::SessionRole,
    },
}

/// Applies a session's row changes inside the writer's transaction.
macro_rules! apply_session_writes {
    ($tx:expr, $changes:expr) => {
        for change in $changes {
            match change {
                $crate::store::SessionWrite::CreateRooms(rooms) => {
                    for room in rooms {
                        sqlx::query(
                            "INSERT INTO breakout_rooms (id, main_session_id, room_name, max_participants, \
                             assignment_mode, status, created_by, created_at) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7)",
                        )
                        .bind(room.id.0)
                        .bind(room.main_session_id.0)
                        .bind(&room.room_name)
                        .bind(i32::try_from(room.max_participants).unwrap_or(i32::MAX))
                        .bind(room.assignment_mode.as_str())
                        .bind(room.created_by.0)
                        .bind(room.created_at)
                        .execute(&mut *$tx)
                        .await?;
                    }
                }
                $crate::store::SessionWrite::UpdateRoom { room, name, max_participants } => {
                    sqlx::query("UPDATE breakout_rooms SET room_name = $2, max_participants = $3 WHERE id = $1")
                        .bind(room.0)
                        .bind(name)
                        .bind(i32::try_from(max_participants.to_owned()).unwrap_or(i32::MAX))
                        .execute(&mut *$tx)
                        .await?;
                }
                $crate::store::SessionWrite::DeleteRoom(room) => {
                    sqlx::query("DELETE FROM breakout_rooms WHERE id = $1").bind(room.0).execute(&mut *$tx).await?;
                }
                $crate::store::SessionWrite::CloseRooms { rooms, at } => {
                    for room in rooms {
                        sqlx::query("UPDATE breakout_rooms SET status = 'closed', closed_at = $2 WHERE id = $1")
                            .bind(room.0)
                            .bind(at.to_owned())
                            .execute(&mut *$tx)
                            .await?;
                    }
                }
                $crate::store::SessionWrite::Removed { session, user, at } => {
                    sqlx::query(
                        "UPDATE session_participants SET removed_at = $3, left_at = $3 \
                         WHERE session_id = $1 AND user_id = $2",
                    )
                    .bind(session.0)
                    .bind(user.0)
                    .bind(at.to_owned())
                    .execute(&mut *$tx)
                    .await?;
                }
                $crate::store::SessionWrite::SetRole { session, user, role } => {
                    sqlx::query(
                        "INSERT INTO session_participants (session_id, user_id, role, invited, joined_at, left_at) \
                         VALUES ($1, $2, $3, $4, NULL, NULL) \
                         ON CONFLICT (session_id, user_id) DO UPDATE SET role = excluded.role",
                    )
                    .bind(session.0)
                    .bind(user.0)
                    .bind(role.as_str())
                    .bind(false)
                    .execute(&mut *$tx)
                    .await?;
                }
                $crate::store::SessionWrite::LobbyChanged { session, enabled } => {
                    sqlx::query("UPDATE video_sessions SET lobby_enabled = $2 WHERE id = $1")
                        .bind(session.0)
                        .bind(*enabled)
                        .execute(&mut *$tx)
                        .await?;
                }
                $crate::store::SessionWrite::SessionEnded { session, at } => {
                    sqlx::query(
                        "UPDATE video_sessions SET status = 'ended', ended_at = COALESCE(ended_at, $2) WHERE id = $1",
                    )
                    .bind(session.0)
                    .bind(*at)
                    .execute(&mut *$tx)
                    .await?;
                }
                $crate::store::SessionWrite::Audit(record) => {
                    $crate::store::audit::insert_audit!($tx, record);
                }
                $crate::store::SessionWrite::Transitions(rows) => {
                    for chunk in rows.chunks(1000) {
                        let mut insert = sqlx::QueryBuilder::new(
                            "INSERT INTO breakout_room_transitions (session_id, user_id, from_room_id, to_room_id, \
                             transition_type, transitioned_at) ",
                        );
                        insert.push_values(chunk, |mut row, t| {
                            row.push_bind(t.session_id.0)
                                .push_bind(t.user_id.0)
                                .push_bind(t.from_room.map(|r| r.0))
                                .push_bind(t.to_room.map(|r| r.0))
                                .push_bind(t.transition_type.as_str())
                                .push_bind(t.at);
                        });
                        insert.build().execute(&mut *$tx).await?;
                    }
                }
            }
        }
    };
}
pub(super) use apply_session_writes;
