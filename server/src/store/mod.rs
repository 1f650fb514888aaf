//! Persistence: the only module that knows sqlx and SQL.
//!
//! Convene runs on Postgres in production and on an embedded SQLite file by default. Both schemas
//! live under `migrations/`, applied at start. Query bodies are written once and expanded for each
//! backend by [`with_db!`], so the two cannot drift apart in what they do.
//!
//! Guarantees:
//! - Hot-path writes (chat messages and the bookkeeping that goes with them) go through the single
//!   [`writer`] task, which commits them in batches; a caller hears back only after commit.
//! - A room's sequence numbers are allocated inside the transaction that stores the messages, so
//!   they are gapless and survive restarts.

mod audit;
mod breakouts;
mod changes;
mod connect;
mod conversations;
mod directory;
mod messages;
mod notifications;
mod owners;
mod records;
mod sessions;
pub mod writer;

use convene_protocol::SessionId;
use sqlx::{PgPool, SqlitePool};

pub use audit::{AuditAction, AuditPage, AuditRecord};
pub use breakouts::{BreakoutRoomRecord, ClosedRoomRecord, TransitionRecord, TransitionType};
pub use changes::SessionWrite;
pub(crate) use connect::BeginWrite;
pub use connect::{SqliteDurability, postgres_options};
pub use conversations::{ConversationPage, ConversationRecord, DirectEdit, NewConversation, ReadPosition};
pub use directory::{ChatProfile, PersonKind, Visibility};
pub use messages::HistoryQuery;
pub use notifications::{NewNotification, ReadSelection};
pub(crate) use owners::CheckFence;
pub use owners::Fence;
pub use records::{
    EditOutcome, HistoryPage, InsertOutcome, MessageRecord, NewMessage, ParticipantRecord, SessionRecord,
};
pub use writer::{DirectSent, NewDirectMessage, WriteFailed, WriteOp, Writer};

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

#[derive(Clone, Debug)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePools),
}

/// SQLite's connections: a pool for reads and single statements, and one connection that every
/// write transaction takes in turn. SQLite lets one writer in at a time anyway; a connection
/// that alone writes keeps its page cache, where one taking turns with others reads the pages
/// they changed back from the file before each transaction.
#[derive(Clone, Debug)]
struct SqlitePools {
    pool: SqlitePool,
    writer: SqlitePool,
}

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Expands one query body for each backend. The body sees `$pool` as that backend's pool, so the
/// same SQL and bindings are type-checked against both drivers. `with_db!(write db, pool => …)`
/// is for a body that runs a write transaction: on SQLite it gets the writer's connection.
macro_rules! with_db {
    (write $db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Postgres($pool) => $body,
            $crate::store::Db::Sqlite(pools) => {
                let $pool = &pools.writer;
                $body
            }
        }
    };
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Postgres($pool) => $body,
            $crate::store::Db::Sqlite(pools) => {
                let $pool = &pools.pool;
                $body
            }
        }
    };
}
pub(crate) use with_db;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("the row conflicts with an existing one")]
    Conflict,
    #[error("a stored value is not valid: {0}")]
    Corrupt(String),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the writer has stopped")]
    WriterClosed,
    #[error("the writer's queue is full")]
    WriterBusy,
    #[error("the database did not answer in time")]
    TimedOut,
    /// The session was taken over by another owner: this one may not write it any more.
    #[error("session {0} has a newer owner")]
    Fenced(SessionId),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(err),
        }
    }
}

impl StoreError {
    /// Whether retrying the same statements later may succeed: the database was unreachable or
    /// the pool exhausted, as opposed to the statements themselves being refused.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(err) => {
                matches!(
                    err,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::Protocol(_)
                        | sqlx::Error::WorkerCrashed
                ) || matches!(err, sqlx::Error::Database(db) if is_transient_sqlstate(db.code().as_deref()))
            }
            Self::WriterBusy | Self::TimedOut => true,
            _ => false,
        }
    }
}

/// SQLSTATEs worth a retry: serialization failures, deadlocks, connection and shutdown classes,
/// and SQLite's busy/locked codes.
fn is_transient_sqlstate(code: Option<&str>) -> bool {
    match code {
        Some(code) => {
            matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "5" | "6") || code.starts_with("08")
        }
        None => false,
    }
}

impl Store {
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_db!(&self.db, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Runs `query`, giving up after `limit`: a request waits at most that long for the database.
    pub async fn within<T>(
        limit: std::time::Duration,
        query: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(limit, query).await.unwrap_or(Err(StoreError::TimedOut))
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.db {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pools) => {
                pools.writer.close().await;
                pools.pool.close().await;
            }
        }
    }
}
