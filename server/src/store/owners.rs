//! Session ownership in the store: the fencing token a node receives when it takes a session's
//! actor, and the check every transaction of that session's writes makes against it.

use chrono::{DateTime, Utc};
use convene_protocol::{NodeId, SessionId};

use super::{Store, StoreError, with_db};

/// The right to write a session's rows: the session and the token its owner was given. Tokens
/// only grow, one per claim, so a later owner always holds a larger one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub session: SessionId,
    pub token: i64,
}

impl Store {
    /// Takes `session` for `node`: the next fencing token, which fences off every earlier owner
    /// (`None` when there is no such session). On Postgres this waits for a transaction of the
    /// previous owner that is committing, so whatever it wrote is in the store before the new
    /// owner loads the session.
    pub async fn claim_session(
        &self,
        session: SessionId,
        node: NodeId,
        at: DateTime<Utc>,
    ) -> Result<Option<Fence>, StoreError> {
        let token: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "INSERT INTO session_owners (session_id, fence, node, claimed_at) \
                 SELECT $1, 1, $2, $3 WHERE EXISTS (SELECT 1 FROM video_sessions WHERE id = $1) \
                 ON CONFLICT (session_id) DO UPDATE SET fence = session_owners.fence + 1, node = excluded.node, \
                 claimed_at = excluded.claimed_at RETURNING fence",
            )
            .bind(session.0)
            .bind(node.to_string())
            .bind(at)
            .fetch_optional(pool)
            .await?
        });
        Ok(token.map(|token| Fence { session, token }))
    }
}

/// Checks, inside a transaction begun with [`BeginWrite::begin_write`](super::BeginWrite), that
/// a fence is still its session's current token, in such a way that no claim can slip in before
/// the transaction commits.
pub(crate) trait CheckFence {
    async fn holds(&mut self, fence: &Fence) -> Result<bool, sqlx::Error>;
}

/// Locks the owner's row until the transaction ends: a claim waits for the commit.
impl CheckFence for sqlx::PgConnection {
    async fn holds(&mut self, fence: &Fence) -> Result<bool, sqlx::Error> {
        let checked = sqlx::query("UPDATE session_owners SET fence = fence WHERE session_id = $1 AND fence = $2")
            .bind(fence.session.0)
            .bind(fence.token)
            .execute(&mut *self)
            .await?;
        Ok(checked.rows_affected() == 1)
    }
}

/// A read: the transaction began `IMMEDIATE`, so it holds the database's write lock and a claim
/// (a write) waits for its commit. An update would add the row's page to every commit for
/// nothing.
impl CheckFence for sqlx::SqliteConnection {
    async fn holds(&mut self, fence: &Fence) -> Result<bool, sqlx::Error> {
        let held: Option<i64> = sqlx::query_scalar("SELECT 1 FROM session_owners WHERE session_id = $1 AND fence = $2")
            .bind(fence.session.0)
            .bind(fence.token)
            .fetch_optional(&mut *self)
            .await?;
        Ok(held.is_some())
    }
}
