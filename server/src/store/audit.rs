//! The audit trail of host actions: its rows and the paged read. Rows are written by the
//! writer, inside the transaction of the change they record (see [`super::SessionWrite::Audit`]).

use chrono::{DateTime, Utc};
use convene_protocol::{SessionId, UserId};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Store, StoreError, with_db};

/// What a host did. Stored as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum AuditAction {
    Admit,
    Deny,
    Remove,
    SetRole,
    SetLobby,
    CreateRooms,
    UpdateRoom,
    DeleteRoom,
    OpenBreakouts,
    CloseBreakouts,
    Move,
    Assign,
    Swap,
    EndSession,
    DeleteMessage,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One host action: who, what, whom, when, and under which request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub session_id: SessionId,
    pub actor_id: UserId,
    pub action: AuditAction,
    /// The person acted on, when the action has exactly one.
    pub target_user_id: Option<UserId>,
    pub request_id: Option<String>,
    /// What else the action names (rooms, moves, a role), as a JSON object.
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// A page of the audit trail, newest first.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditPage {
    /// Each row with its id, the cursor for the next page.
    pub entries: Vec<(i64, AuditRecord)>,
    pub has_more: bool,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    session_id: Uuid,
    actor_id: Uuid,
    action: String,
    target_user_id: Option<Uuid>,
    request_id: Option<String>,
    detail: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl Store {
    /// Up to `limit` rows of a session's audit trail older than `before` (an id; the newest when
    /// `None`), newest first.
    pub async fn audit_trail(
        &self,
        session: SessionId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<AuditPage, StoreError> {
        // One row more than asked tells whether another page exists.
        let fetch = i64::from(limit) + 1;
        let rows: Vec<AuditRow> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT id, session_id, actor_id, action, target_user_id, request_id, detail, created_at \
                 FROM session_audit_log WHERE session_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(session.0)
            .bind(before.unwrap_or(i64::MAX))
            .bind(fetch)
            .fetch_all(pool)
            .await?
        });
        let has_more = rows.len() as i64 > i64::from(limit);
        let entries = rows
            .into_iter()
            .take(limit as usize)
            .map(|row| {
                let action =
                    row.action.parse().map_err(|_| StoreError::Corrupt(format!("audit action {:?}", row.action)))?;
                let record = AuditRecord {
                    session_id: SessionId(row.session_id),
                    actor_id: UserId(row.actor_id),
                    action,
                    target_user_id: row.target_user_id.map(UserId),
                    request_id: row.request_id,
                    detail: row.detail.0,
                    at: row.created_at,
                };
                Ok((row.id, record))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(AuditPage { entries, has_more })
    }
}

/// Inserts an audit row inside the writer's transaction.
macro_rules! insert_audit {
    ($tx:expr, $record:expr) => {{
        let record: &$crate::store::AuditRecord = $record;
        sqlx::query(
            "INSERT INTO session_audit_log (session_id, actor_id, action, target_user_id, request_id, detail, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(record.session_id.0)
        .bind(record.actor_id.0)
        .bind(record.action.as_str())
        .bind(record.target_user_id.map(|user| user.0))
        .bind(record.request_id.as_deref())
        .bind(sqlx::types::Json(&record.detail))
        .bind(record.at)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(super) use insert_audit;
