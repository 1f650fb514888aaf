//! The writer: one task that commits the server's hot-path writes in batches (group commit).
//!
//! Callers submit [`WriteOp`]s on a bounded queue. The writer takes whatever has queued up (at
//! most [`MAX_BATCH`] ops), commits it in one transaction, and only then answers each op. While one
//! batch commits the next one gathers, so the cost of a commit is shared by every op that arrived
//! during the previous one and throughput grows with load instead of collapsing under it.
//!
//! Guarantees:
//! - An op is answered `Ok` only after its transaction committed.
//! - Ops are committed in submission order; messages of a room get consecutive sequence numbers
//!   in that order, allocated in the same transaction, so sequences have no gaps.
//! - A batch that the database refuses is retried one op at a time, so one bad op fails alone.
//! - Every op has a deadline. An op someone waits on (a message, an edit, a room change) may take
//!   the writer's request timeout, a few seconds; bookkeeping may take [`RETRY_WINDOW`]. While
//!   the database is unreachable a batch is retried with backoff, each attempt bounded by the
//!   nearest deadline in it, and ops whose deadline passed are answered `Unavailable`: never
//!   acknowledged, so nothing acknowledged is lost. An op whose deadline passed before any
//!   attempt was certainly not stored; one whose attempt was cut short while committing may have
//!   been, which is why message sends are idempotent (`client_msg_id`).
//! - An op is never held up by older ones beyond its own deadline: ops that arrive while a batch
//!   is being retried join it (in submission order), and every attempt is bounded by the
//!   request timeout, so a request behind bookkeeping that keeps failing is still answered in time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use convene_protocol::{MessageId, RoomId, SessionId, SessionRole, SessionStatus, UserId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use super::records::{MESSAGE_COLUMNS, MessageRow};
use super::{EditOutcome, InsertOutcome, MessageRecord, NewMessage, Store, StoreError, with_db};
use crate::metrics::Metrics;

/// Ops waiting for the writer. Large enough to absorb a burst of several batches from every
/// session at once; when it is full, chat sends fail fast as `unavailable` rather than queueing
/// without bound behind a database that cannot keep up.
pub const WRITER_QUEUE_CAPACITY: usize = 16_384;
/// Most ops committed in one transaction. Each message binds 7 parameters, so a batch stays far
/// below the bind limits of Postgres (65,535) and SQLite (32,766).
pub const MAX_BATCH: usize = 1_000;
/// How long the writer keeps retrying bookkeeping (nobody waits on it) while the database is
/// unreachable.
pub const RETRY_WINDOW: Duration = Duration::from_secs(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
const INITIAL_BACKOFF: Duration = Duration::from_millis(25);
/// Most ops the writer holds while it retries, besides its queue: ops that arrive during an
/// outage are taken in so that their deadlines are kept. Bounded like the queue, so an outage
/// holds at most twice the queue's ops in memory.
const MAX_HELD: usize = WRITER_QUEUE_CAPACITY;
/// The shortest attempt worth making: below it a commit cannot finish, so the op just expires.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// Why a write was not carried out. Cheap to clone, so one failed batch can answer every op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteFailed {
    #[error("the database is unavailable")]
    Unavailable,
    #[error("the database refused the write")]
    Rejected,
}

/// One write. Ops with a `done` channel are answered after commit; the others are bookkeeping
/// whose failures are logged and counted.
#[derive(Debug)]
pub enum WriteOp {
    InsertMessage {
        message: NewMessage,
        done: oneshot::Sender<Result<InsertOutcome, WriteFailed>>,
    },
    EditMessage {
        room_id: RoomId,
        message_id: MessageId,
        editor: UserId,
        body: String,
        at: DateTime<Utc>,
        done: oneshot::Sender<Result<EditOutcome, WriteFailed>>,
    },
    DeleteMessage {
        room_id: RoomId,
        message_id: MessageId,
        deleted_by: UserId,
        /// Hosts may delete anyone's message; others only their own.
        any_sender: bool,
        at: DateTime<Utc>,
        /// The audit row to write, with the message's sender as its target, when the message
        /// deleted was someone else's.
        audit: Option<super::AuditRecord>,
        done: oneshot::Sender<Result<EditOutcome, WriteFailed>>,
    },
    ParticipantJoined {
        session_id: SessionId,
        user_id: UserId,
        role: SessionRole,
        at: DateTime<Utc>,
    },
    ParticipantLeft {
        session_id: SessionId,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    SessionStarted {
        session_id: SessionId,
        at: DateTime<Utc>,
    },
    SessionEnded {
        session_id: SessionId,
        at: DateTime<Utc>,
    },
    /// A session's row changes (rooms, transitions, participants, audit), committed together.
    Changes {
        changes: Vec<super::SessionWrite>,
        done: Option<oneshot::Sender<Result<(), WriteFailed>>>,
    },
    /// Answered once every op submitted before it has committed (or failed).
    Barrier {
        done: oneshot::Sender<()>,
    },
}

/// What a committed op produced, in the order of the ops.
#[derive(Debug)]
enum OpResult {
    Inserted(MessageRecord),
    /// An insert whose client message id the sender had used before: the stored message.
    Duplicate(MessageRecord),
    Changed(EditOutcome),
    Done,
}

#[derive(Debug)]
struct Queued {
    op: WriteOp,
    submitted: Instant,
    /// Past it, the op is answered `Unavailable` instead of being attempted again.
    deadline: Instant,
}

impl WriteOp {
    /// Whether someone waits on the outcome (and so on the request timeout).
    fn awaited(&self) -> bool {
        match self {
            Self::InsertMessage { .. } | Self::EditMessage { .. } | Self::DeleteMessage { .. } => true,
            Self::Changes { done, .. } => done.is_some(),
            _ => false,
        }
    }
}

/// The submitting side of the writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Queued>,
    /// How long an awaited op may take before it is answered `Unavailable`.
    request_timeout: Duration,
}

impl Writer {
    /// Starts the writer task on `tracker`. It runs until `shutdown` is cancelled and its queue is
    /// drained, or until every `Writer` handle is dropped. Awaited ops are answered within
    /// `request_timeout` (plus one backoff step), committed or not.
    pub fn spawn(
        store: Store,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        request_timeout: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE_CAPACITY);
        tracker.spawn(run(store, rx, metrics, shutdown, request_timeout));
        Self { tx, request_timeout }
    }

    fn queued(&self, op: WriteOp) -> Queued {
        let submitted = Instant::now();
        let allowed = if op.awaited() { self.request_timeout } else { RETRY_WINDOW };
        Queued { op, submitted, deadline: submitted + allowed }
    }

    /// Queues an op without waiting; fails when the queue is full or the writer has stopped.
    pub fn try_submit(&self, op: WriteOp) -> Result<(), StoreError> {
        self.tx.try_send(self.queued(op)).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => StoreError::WriterBusy,
            mpsc::error::TrySendError::Closed(_) => StoreError::WriterClosed,
        })
    }

    /// Queues an op, waiting for room in the queue.
    pub async fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        self.tx.send(self.queued(op)).await.map_err(|_| StoreError::WriterClosed)
    }
}

/// `attempt_limit` bounds every attempt at a commit, whatever the deadlines held: an op that
/// arrives during an attempt against a database that hangs waits at most that long for it.
async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Queued>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    attempt_limit: Duration,
) {
    let mut held = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            received = rx.recv_many(&mut held, MAX_BATCH) => received,
            () = shutdown.cancelled() => {
                // Refuse new ops and drain the ones already queued.
                rx.close();
                rx.recv_many(&mut held, MAX_BATCH).await
            }
        };
        if received == 0 {
            break;
        }
        commit_held(&store, &mut held, &mut rx, &metrics, &shutdown, attempt_limit).await;
    }
    debug!("writer drained and stopped");
}

/// Commits the held ops, oldest first, at most [`MAX_BATCH`] per transaction, and returns once
/// every one of them is answered. While the database is unreachable, ops that arrive between
/// attempts are held too, so each is answered by its own deadline instead of waiting behind a
/// batch that keeps failing; every attempt is bounded by the nearest deadline held.
async fn commit_held(
    store: &Store,
    held: &mut Vec<Queued>,
    rx: &mut mpsc::Receiver<Queued>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    attempt_limit: Duration,
) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        expire(held, metrics);
        let Some(nearest) = held.iter().map(|queued| queued.deadline).min() else { return };
        let take = held.len().min(MAX_BATCH);
        let budget = nearest.saturating_duration_since(Instant::now()).min(attempt_limit).max(MIN_ATTEMPT);
        let failure = match tokio::time::timeout(budget, store.commit(&held[..take])).await {
            Ok(Ok(results)) => {
                answer(held.drain(..take).zip(results.into_iter().map(Ok)), metrics);
                backoff = INITIAL_BACKOFF;
                continue;
            }
            Ok(Err(err)) if err.is_transient() => err,
            Err(_elapsed) => StoreError::TimedOut,
            Ok(Err(err)) => {
                warn!(error = %err, ops = take, "batch refused; committing its ops one by one");
                let refused: Vec<Queued> = held.drain(..take).collect();
                for queued in refused {
                    commit_alone(store, queued, metrics).await;
                }
                continue;
            }
        };
        if shutdown.is_cancelled() {
            error!(error = %failure, ops = held.len(), "database unavailable while stopping; failing batch");
            fail_all(held, WriteFailed::Unavailable, metrics);
            return;
        }
        let pause = backoff.min(nearest.saturating_duration_since(Instant::now()));
        warn!(error = %failure, ops = held.len(), retry_in = ?pause, "database unavailable; retrying batch");
        hold_arrivals_until(Instant::now() + pause, held, rx, shutdown).await;
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    }
}

/// Waits until `retry_at`, holding the ops that arrive meanwhile (up to [`MAX_HELD`] in all).
/// Someone may be waiting on an arrival, with a deadline shorter than the backoff: the next
/// attempt is brought forward to a first-retry pause after it, since the database may be back.
async fn hold_arrivals_until(
    mut retry_at: Instant,
    held: &mut Vec<Queued>,
    rx: &mut mpsc::Receiver<Queued>,
    shutdown: &CancellationToken,
) {
    loop {
        let room = MAX_HELD.saturating_sub(held.len());
        tokio::select! {
            () = tokio::time::sleep_until(retry_at) => return,
            () = shutdown.cancelled() => return,
            received = rx.recv_many(held, room), if room > 0 => {
                if received == 0 {
                    // Every sender is gone: nothing more will arrive.
                    tokio::time::sleep_until(retry_at).await;
                    return;
                }
                retry_at = retry_at.min(Instant::now() + INITIAL_BACKOFF);
            }
        }
    }
}

/// Answers `Unavailable` to every held op whose deadline has passed.
fn expire(batch: &mut Vec<Queued>, metrics: &Metrics) {
    let now = Instant::now();
    if batch.iter().all(|queued| queued.deadline > now) {
        return;
    }
    let (expired, waiting): (Vec<Queued>, Vec<Queued>) = batch.drain(..).partition(|queued| queued.deadline <= now);
    *batch = waiting;
    warn!(ops = expired.len(), "writes ran out of time; answering unavailable");
    answer(expired.into_iter().map(|queued| (queued, Err(WriteFailed::Unavailable))), metrics);
}

/// Commits one op in its own transaction, so that a refused op cannot take others down with it.
async fn commit_alone(store: &Store, queued: Queued, metrics: &Metrics) {
    let budget = queued.deadline.saturating_duration_since(Instant::now()).max(MIN_ATTEMPT);
    let result = match tokio::time::timeout(budget, commit_one(store, &queued)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(WriteFailed::Unavailable),
    };
    answer(std::iter::once((queued, result)), metrics);
}

async fn commit_one(store: &Store, queued: &Queued) -> Result<OpResult, WriteFailed> {
    let ops = std::slice::from_ref(queued);
    match store.commit(ops).await {
        Ok(mut results) => results.pop().ok_or(WriteFailed::Rejected),
        Err(StoreError::Conflict) => match &queued.op {
            // The sender already stored this client message id: answer with the stored message.
            WriteOp::InsertMessage { message, .. } => store
                .message_by_client_id(message.room_id, message.sender_id, &message.client_msg_id)
                .await
                .ok()
                .flatten()
                .map(OpResult::Duplicate)
                .ok_or(WriteFailed::Rejected),
            _ => Err(WriteFailed::Rejected),
        },
        Err(err) => {
            error!(error = %err, op = ?queued.op, "write refused");
            Err(if err.is_transient() { WriteFailed::Unavailable } else { WriteFailed::Rejected })
        }
    }
}

fn fail_all(batch: &mut Vec<Queued>, failure: WriteFailed, metrics: &Metrics) {
    answer(batch.drain(..).map(|queued| (queued, Err(failure))), metrics);
}

/// Hands each op its result.
fn answer(results: impl Iterator<Item = (Queued, Result<OpResult, WriteFailed>)>, metrics: &Metrics) {
    for (queued, result) in results {
        metrics.persist_latency.observe(queued.submitted.elapsed());
        if result.is_err() {
            metrics.write_failures.fetch_add(1, Ordering::Relaxed);
        }
        let delivered = match queued.op {
            WriteOp::InsertMessage { done, .. } => {
                let outcome = result.and_then(|result| match result {
                    OpResult::Inserted(record) => {
                        metrics.chat_messages_stored.fetch_add(1, Ordering::Relaxed);
                        Ok(InsertOutcome::Inserted(record))
                    }
                    OpResult::Duplicate(record) => Ok(InsertOutcome::Duplicate(record)),
                    other => {
                        error!(?other, "insert produced no message");
                        Err(WriteFailed::Rejected)
                    }
                });
                done.send(outcome).is_ok()
            }
            WriteOp::EditMessage { done, .. } | WriteOp::DeleteMessage { done, .. } => {
                let outcome = result.and_then(|result| match result {
                    OpResult::Changed(outcome) => Ok(outcome),
                    other => {
                        error!(?other, "edit produced no outcome");
                        Err(WriteFailed::Rejected)
                    }
                });
                done.send(outcome).is_ok()
            }
            WriteOp::Barrier { done } => done.send(()).is_ok(),
            WriteOp::Changes { done: Some(done), .. } => done.send(result.map(|_| ())).is_ok(),
            op => {
                if let Err(failure) = result {
                    error!(?op, %failure, "bookkeeping write failed");
                }
                true
            }
        };
        if !delivered {
            // The requester (a session actor) stopped before the commit; the write stands.
            debug!("write committed after its requester went away");
        }
    }
}

impl Store {
    /// Commits `ops` in one transaction and returns what each produced, in order.
    async fn commit(&self, ops: &[Queued]) -> Result<Vec<OpResult>, StoreError> {
        // Number the new messages room by room, in submission order.
        let mut per_room: HashMap<RoomId, (SessionId, i64)> = HashMap::new();
        for queued in ops {
            if let WriteOp::InsertMessage { message, .. } = &queued.op {
                per_room.entry(message.room_id).or_insert((message.session_id, 0)).1 += 1;
            }
        }
        with_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            // One statement advances every room's counter; the returned value is the room's new
            // last sequence, so this batch's messages take the numbers just below it.
            let mut next_seq: HashMap<RoomId, i64> = HashMap::with_capacity(per_room.len());
            if !per_room.is_empty() {
                let counts: Vec<(RoomId, SessionId, i64)> =
                    per_room.iter().map(|(room, (session, count))| (*room, *session, *count)).collect();
                for (room, last) in BatchRows::advance_sequences(&mut *tx, &counts).await? {
                    let count = per_room.get(&room).map_or(0, |(_, count)| *count);
                    next_seq.insert(room, last - count + 1);
                }
            }
            let mut results = Vec::with_capacity(ops.len());
            let mut inserts = Vec::new();
            for queued in ops {
                let result = match &queued.op {
                    WriteOp::InsertMessage { message, .. } => {
                        let Some(next) = next_seq.get_mut(&message.room_id) else {
                            return Err(StoreError::Corrupt(format!("no sequence returned for room {}", message.room_id)));
                        };
                        *next += 1;
                        let record = message.stored(*next - 1);
                        inserts.push(record.clone());
                        OpResult::Inserted(record)
                    }
                    WriteOp::EditMessage { room_id, message_id, editor, body, at, .. } => {
                        let sql = format!(
                            "UPDATE room_messages SET body = $1, edited_at = $2 \
                             WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL AND sender_id = $5 \
                             RETURNING {MESSAGE_COLUMNS}"
                        );
                        let row: Option<MessageRow> = sqlx::query_as(&sql)
                            .bind(body).bind(*at).bind(message_id.0).bind(room_id.0).bind(editor.0)
                            .fetch_optional(&mut *tx).await?;
                        OpResult::Changed(match row {
                            Some(row) => EditOutcome::Changed(row.into()),
                            None => {
                                let exists: Option<i64> = sqlx::query_scalar(
                                    "SELECT seq FROM room_messages WHERE id = $1 AND room_id = $2 AND deleted_at IS NULL",
                                )
                                .bind(message_id.0).bind(room_id.0)
                                .fetch_optional(&mut *tx).await?;
                                if exists.is_some() { EditOutcome::NotSender } else { EditOutcome::NotFound }
                            }
                        })
                    }
                    WriteOp::DeleteMessage { room_id, message_id, deleted_by, any_sender, at, audit, .. } => {
                        let sql = format!(
                            "UPDATE room_messages SET deleted_at = $1, deleted_by = $2 \
                             WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL AND ($5 OR sender_id = $2) \
                             RETURNING {MESSAGE_COLUMNS}"
                        );
                        let row: Option<MessageRow> = sqlx::query_as(&sql)
                            .bind(*at).bind(deleted_by.0).bind(message_id.0).bind(room_id.0).bind(*any_sender)
                            .fetch_optional(&mut *tx).await?;
                        OpResult::Changed(match row {
                            Some(row) => {
                                let message = MessageRecord::from(row);
                                if let Some(audit) = audit.as_ref().filter(|_| message.sender_id != *deleted_by) {
                                    let record = super::AuditRecord {
                                        target_user_id: Some(message.sender_id),
                                        ..audit.clone()
                                    };
                                    super::audit::insert_audit!(tx, &record);
                                }
                                EditOutcome::Changed(message)
                            }
                            None => {
                                let exists: Option<i64> = sqlx::query_scalar(
                                    "SELECT seq FROM room_messages WHERE id = $1 AND room_id = $2 AND deleted_at IS NULL",
                                )
                                .bind(message_id.0).bind(room_id.0)
                                .fetch_optional(&mut *tx).await?;
                                if exists.is_some() { EditOutcome::NotSender } else { EditOutcome::NotFound }
                            }
                        })
                    }
                    WriteOp::ParticipantJoined { session_id, user_id, role, at } => {
                        sqlx::query(
                            "INSERT INTO session_participants (session_id, user_id, role, invited, joined_at, left_at) \
                             VALUES ($1, $2, $3, $4, $5, NULL) \
                             ON CONFLICT (session_id, user_id) DO UPDATE SET \
                             joined_at = COALESCE(session_participants.joined_at, excluded.joined_at), left_at = NULL, removed_at = NULL",
                        )
                        .bind(session_id.0).bind(user_id.0).bind(role.as_str()).bind(false).bind(*at)
                        .execute(&mut *tx).await?;
                        OpResult::Done
                    }
                    WriteOp::ParticipantLeft { session_id, user_id, at } => {
                        sqlx::query("UPDATE session_participants SET left_at = $3 WHERE session_id = $1 AND user_id = $2")
                            .bind(session_id.0).bind(user_id.0).bind(*at)
                            .execute(&mut *tx).await?;
                        OpResult::Done
                    }
                    WriteOp::SessionStarted { session_id, at } => {
                        sqlx::query("UPDATE video_sessions SET status = $2, started_at = COALESCE(started_at, $3) WHERE id = $1")
                            .bind(session_id.0).bind(SessionStatus::Active.as_str()).bind(*at)
                            .execute(&mut *tx).await?;
                        OpResult::Done
                    }
                    WriteOp::SessionEnded { session_id, at } => {
                        sqlx::query("UPDATE video_sessions SET status = $2, ended_at = COALESCE(ended_at, $3) WHERE id = $1")
                            .bind(session_id.0).bind(SessionStatus::Ended.as_str()).bind(*at)
                            .execute(&mut *tx).await?;
                        OpResult::Done
                    }
                    WriteOp::Barrier { .. } => OpResult::Done,
                    WriteOp::Changes { changes, .. } => {
                        super::changes::apply_session_writes!(tx, changes);
                        OpResult::Done
                    }
                };
                results.push(result);
            }
            if !inserts.is_empty() {
                BatchRows::insert_messages(&mut *tx, &inserts).await?;
            }
            tx.commit().await?;
            Ok(results)
        })
    }
}

/// How each backend writes a batch's rows. Postgres binds whole columns as arrays, so one prepared
/// statement serves every batch size; SQLite, whose statements are cheap to prepare, takes
/// multi-row `VALUES`.
trait BatchRows {
    /// Adds each count to its room's counter; returns every room's new last sequence.
    async fn advance_sequences(
        &mut self,
        counts: &[(RoomId, SessionId, i64)],
    ) -> Result<Vec<(RoomId, i64)>, sqlx::Error>;
    async fn insert_messages(&mut self, messages: &[MessageRecord]) -> Result<(), sqlx::Error>;
}

const ADVANCE_CONFLICT: &str = " ON CONFLICT (room_id) DO UPDATE SET last_seq = room_sequences.last_seq + excluded.last_seq RETURNING room_id, last_seq";

impl BatchRows for sqlx::PgConnection {
    async fn advance_sequences(
        &mut self,
        counts: &[(RoomId, SessionId, i64)],
    ) -> Result<Vec<(RoomId, i64)>, sqlx::Error> {
        let rooms: Vec<uuid::Uuid> = counts.iter().map(|(room, _, _)| room.0).collect();
        let sessions: Vec<uuid::Uuid> = counts.iter().map(|(_, session, _)| session.0).collect();
        let added: Vec<i64> = counts.iter().map(|(_, _, count)| *count).collect();
        let sql = format!(
            "INSERT INTO room_sequences (room_id, session_id, last_seq) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]){ADVANCE_CONFLICT}"
        );
        let rows: Vec<(uuid::Uuid, i64)> =
            sqlx::query_as(&sql).bind(rooms).bind(sessions).bind(added).fetch_all(&mut *self).await?;
        Ok(rows.into_iter().map(|(room, last)| (RoomId(room), last)).collect())
    }

    async fn insert_messages(&mut self, messages: &[MessageRecord]) -> Result<(), sqlx::Error> {
        let column = |f: fn(&MessageRecord) -> uuid::Uuid| messages.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO room_messages (id, session_id, room_id, seq, sender_id, client_msg_id, body, created_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::uuid[], $6::text[], $7::text[], $8::timestamptz[])",
        )
        .bind(column(|m| m.id.0))
        .bind(column(|m| m.session_id.0))
        .bind(column(|m| m.room_id.0))
        .bind(messages.iter().map(|m| m.seq).collect::<Vec<_>>())
        .bind(column(|m| m.sender_id.0))
        .bind(messages.iter().map(|m| m.client_msg_id.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}

impl BatchRows for sqlx::SqliteConnection {
    async fn advance_sequences(
        &mut self,
        counts: &[(RoomId, SessionId, i64)],
    ) -> Result<Vec<(RoomId, i64)>, sqlx::Error> {
        let mut advance = sqlx::QueryBuilder::new("INSERT INTO room_sequences (room_id, session_id, last_seq) ");
        advance.push_values(counts, |mut row, (room, session, count)| {
            row.push_bind(room.0).push_bind(session.0).push_bind(*count);
        });
        advance.push(ADVANCE_CONFLICT);
        let rows: Vec<(uuid::Uuid, i64)> = advance.build_query_as().fetch_all(&mut *self).await?;
        Ok(rows.into_iter().map(|(room, last)| (RoomId(room), last)).collect())
    }

    async fn insert_messages(&mut self, messages: &[MessageRecord]) -> Result<(), sqlx::Error> {
        for chunk in messages.chunks(MAX_BATCH) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO room_messages (id, session_id, room_id, seq, sender_id, client_msg_id, body, created_at) ",
            );
            insert.push_values(chunk, |mut row, message| {
                row.push_bind(message.id.0)
                    .push_bind(message.session_id.0)
                    .push_bind(message.room_id.0)
                    .push_bind(message.seq)
                    .push_bind(message.sender_id.0)
                    .push_bind(message.client_msg_id.as_str())
                    .push_bind(message.body.as_str())
                    .push_bind(message.created_at);
            });
            insert.build().execute(&mut *self).await?;
        }
        Ok(())
    }
}
