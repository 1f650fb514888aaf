//! Opening the database and applying migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Db, SqlitePools, Store, StoreError};

/// Connections to Postgres. The writer uses one; the rest serve joins, history and HTTP.
const PG_POOL_SIZE: u32 = 10;
/// SQLite has one writer at a time, with a connection of its own; reads and single statements
/// share these, and under WAL they proceed beside it.
const SQLITE_POOL_SIZE: u32 = 4;
/// How long a query waits for a pooled connection (opening one if needed) before it fails. Short,
/// so that while the database is unreachable each attempt fails fast and the caller's own
/// deadline (the request timeout, the writer's retries) decides what happens.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// A pooled Postgres connection idle at least this long is pinged before it is handed out; one
/// used more recently is not. The pool also pings every connection as it comes back, so a
/// connection handed out unchecked was answering less than this long ago, and a ping before each
/// use would add a round trip to every transaction and read of a busy server for nothing.
/// Should the database drop connections within this window (a restart), a transaction on one
/// fails and the writer retries it; a read is answered `unavailable`.
const PG_CHECK_AFTER_IDLE: Duration = Duration::from_millis(500);
/// How long a Postgres transaction may wait on Convene between its statements before the
/// database aborts it. Convene sends a transaction's statements back to back, so one that sits
/// this long belongs to a stalled process (paused, swapped out, cut off) and holds rows that
/// others need: above all its session's ownership row, which a successor must claim to take the
/// session over. Aborting it loses nothing acknowledged (nothing is acknowledged before commit);
/// should a healthy node ever be this slow, its writer retries the batch.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long SQLite waits on a lock held by another connection before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl Store {
    /// Opens `database_url` (a `postgres://` or `sqlite:` URL) or, without one, the embedded
    /// SQLite database `convene.db` in `data_dir`, creating the directory and file as needed.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        Self::connect_with(database_url, data_dir, SqliteDurability::default()).await
    }

    /// Like [`Store::connect`], choosing how SQLite syncs its commits.
    pub async fn connect_with(
        database_url: Option<&str>,
        data_dir: &Path,
        durability: SqliteDurability,
    ) -> Result<Self, StoreError> {
        let db = match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let pool = PgPoolOptions::new()
                    .max_connections(PG_POOL_SIZE)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PG_CHECK_AFTER_IDLE {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(postgres_options(url)?)
                    .await?;
                Db::Postgres(pool)
            }
            Some(url) => Db::Sqlite(open_sqlite(SqliteConnectOptions::from_str(url)?, durability).await?),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|err| StoreError::Database(err.into()))?;
                let options = SqliteConnectOptions::new().filename(data_dir.join("convene.db"));
                Db::Sqlite(open_sqlite(options, durability).await?)
            }
        };
        Ok(Self { db })
    }

    /// Applies pending migrations. On Postgres the migrator holds an advisory lock while it
    /// works, so several nodes starting at once apply each migration exactly once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => PG_MIGRATOR.run(pool).await?,
            Db::Sqlite(pools) => SQLITE_MIGRATOR.run(&pools.writer).await?,
        }
        Ok(())
    }
}

/// How Convene connects to Postgres at `url`: the URL's settings, plus a bound on how long a
/// transaction may sit idle ([`IDLE_IN_TRANSACTION_TIMEOUT`]).
pub fn postgres_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let idle = IDLE_IN_TRANSACTION_TIMEOUT.as_millis().to_string();
    Ok(PgConnectOptions::from_str(url)?.options([("idle_in_transaction_session_timeout", idle)]))
}

/// How SQLite makes commits durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteDurability {
    /// Every commit is synced to disk before it is acknowledged: it survives a killed process and
    /// a lost machine. The default.
    #[default]
    Full,
    /// Commits reach the operating system before they are acknowledged and are synced at
    /// checkpoints: they survive a killed process, but a power loss may take the latest ones.
    /// Much lower commit latency.
    Normal,
}

async fn open_sqlite(options: SqliteConnectOptions, durability: SqliteDurability) -> Result<SqlitePools, StoreError> {
    // WAL lets readers proceed during a commit.
    let synchronous = match durability {
        SqliteDurability::Full => SqliteSynchronous::Full,
        SqliteDurability::Normal => SqliteSynchronous::Normal,
    };
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        // A transaction of several statements keeps each statement's undo pages in a journal of
        // its own, so that one failing statement can be undone alone. On disk that journal is
        // a file created, written and deleted by every such transaction; in memory it is a
        // buffer of at most the pages one statement changes.
        .pragma("temp_store", "memory");
    // No ping before each use: the database is a file this process opened, so a pooled
    // connection does not break the way a network one does, and the ping is a round trip to the
    // connection's thread before every transaction and read.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        // A write transaction waits for the one before it as long as it would wait for SQLite's
        // lock held by another connection.
        .acquire_timeout(SQLITE_BUSY_TIMEOUT)
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await?;
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    Ok(SqlitePools { pool, writer })
}

/// Starting a transaction that writes.
pub(crate) trait BeginWrite {
    type Database: sqlx::Database;

    /// Begins a transaction that will write.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl BeginWrite for sqlx::PgPool {
    type Database = sqlx::Postgres;

    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>> + Send {
        self.begin()
    }
}

impl BeginWrite for sqlx::SqlitePool {
    type Database = sqlx::Sqlite;

    /// Takes SQLite's write lock as the transaction begins. A deferred transaction (SQLite's
    /// default) takes it only at its first write, after it has read; if another connection
    /// holds it then, SQLite fails the upgrade at once with `SQLITE_BUSY` rather than waiting
    /// out the busy timeout, because the reads already made could be stale. Taking the lock
    /// first makes a concurrent write something to wait for, not a failed request.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_sqlite_connection_is_opened_with_the_settings_the_store_relies_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(None, dir.path()).await.unwrap();
        let Db::Sqlite(pools) = &store.db else { panic!("no database URL opens SQLite") };
        // (pragma, value): write-ahead log, a sync per commit, enforced references, and
        // statement journals in memory rather than a file per transaction.
        let expected = [("journal_mode", "wal"), ("synchronous", "2"), ("foreign_keys", "1"), ("temp_store", "2")];
        for (name, pool) in [("writer", &pools.writer), ("readers", &pools.pool)] {
            for (pragma, value) in expected {
                let got: String =
                    sqlx::query_scalar(&format!("SELECT CAST(p.{pragma} AS TEXT) FROM pragma_{pragma} AS p"))
                        .fetch_one(pool)
                        .await
                        .unwrap();
                assert_eq!(got, value, "{name}: {pragma}");
            }
        }
    }
}
