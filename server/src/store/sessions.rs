//! Queries on `video_sessions` and `session_participants` that are not on the hot path.

use chrono::{DateTime, Utc};
use convene_protocol::{SessionId, SessionStatus};

use super::records::{ParticipantRow, SessionRow};
use super::{BeginWrite as _, ParticipantRecord, SessionRecord, Store, StoreError, with_db};

impl Store {
    /// Stores a new session and its initial participants (creator and invitees) atomically.
    /// A taken `room_name` yields [`StoreError::Conflict`].
    pub async fn insert_session(
        &self,
        session: &SessionRecord,
        participants: &[ParticipantRecord],
    ) -> Result<(), StoreError> {
        with_db!(write &self.db, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO video_sessions (id, organization_id, session_type, status, room_name, \
                 created_by, lobby_enabled, created_at, started_at, ended_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(session.id.0)
            .bind(session.organization_id.map(|org| org.0))
            .bind(session.session_type.as_str())
            .bind(session.status.as_str())
            .bind(&session.room_name)
            .bind(session.created_by.0)
            .bind(session.lobby_enabled)
            .bind(session.created_at)
            .bind(session.started_at)
            .bind(session.ended_at)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
            for participant in participants {
                sqlx::query(
                    "INSERT INTO session_participants (session_id, user_id, role, invited, joined_at, left_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(session.id.0)
                .bind(participant.user_id.0)
                .bind(participant.role.as_str())
                .bind(participant.invited)
                .bind(participant.joined_at)
                .bind(participant.left_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Loads a session with its participants.
    pub async fn load_session(
        &self,
        id: SessionId,
    ) -> Result<Option<(SessionRecord, Vec<ParticipantRecord>)>, StoreError> {
        let (session, participants) = with_db!(&self.db, pool => {
            let session: Option<SessionRow> = sqlx::query_as(
                "SELECT id, organization_id, session_type, status, room_name, created_by, \
                 lobby_enabled, created_at, started_at, ended_at, expires_at \
                 FROM video_sessions WHERE id = $1",
            )
            .bind(id.0)
            .fetch_optional(pool)
            .await?;
            let Some(session) = session else { return Ok(None) };
            let participants: Vec<ParticipantRow> = sqlx::query_as(
                "SELECT user_id, role, invited, joined_at, left_at, removed_at \
                 FROM session_participants WHERE session_id = $1",
            )
            .bind(id.0)
            .fetch_all(pool)
            .await?;
            (session, participants)
        });
        let participants = participants.into_iter().map(ParticipantRecord::try_from).collect::<Result<_, _>>()?;
        Ok(Some((session.try_into()?, participants)))
    }

    /// Ends instant sessions that were never started and whose expiry has passed; returns how
    /// many it ended.
    pub async fn expire_instant_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = with_db!(&self.db, pool => {
            sqlx::query(
                "UPDATE video_sessions SET status = $1, ended_at = $2 \
                 WHERE status = $3 AND expires_at IS NOT NULL AND expires_at <= $2",
            )
            .bind(SessionStatus::Ended.as_str())
            .bind(now)
            .bind(SessionStatus::Scheduled.as_str())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done)
    }
}
