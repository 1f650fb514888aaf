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

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use convene_protocol::{MessageId, RoomId, SessionId, SessionRole, UserId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use super::{EditOutcome, Fence, InsertOutcome, MessageRecord, NewMessage, Store, StoreError};
use crate::metrics::Metrics;

/// Ops waiting for the writer. Large enough to absorb a burst of several batches from every
/// session at once; when it is full, chat sends fail fast as `unavailable` rather than queueing
/// without bound behind a database that cannot keep up.
pub const WRITER_QUEUE_CAPACITY: usize = 16_384;
/// Most ops committed in one transaction. On SQLite each message binds 9 parameters and each
/// room 3 (Postgres binds whole columns), so a batch stays far below SQLite's bind limit (32,766).
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
    /// The session has a newer owner; the write was not made and never will be by this one.
    #[error("the session is owned elsewhere now")]
    Fenced,
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
    /// A 1:1 message, numbered in its conversation.
    SendDirect {
        message: NewDirectMessage,
        done: oneshot::Sender<Result<DirectSent, WriteFailed>>,
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
    Direct(DirectSent),
    Done,
}

#[derive(Debug)]
struct Queued {
    op: WriteOp,
    /// The session owner's token, checked in the op's transaction.
    fence: Option<Fence>,
    submitted: Instant,
    /// Past it, the op is answered `Unavailable` instead of being attempted again.
    deadline: Instant,
}

impl WriteOp {
    /// Whether someone waits on the outcome (and so on the request timeout).
    fn awaited(&self) -> bool {
        match self {
            Self::InsertMessage { .. }
            | Self::EditMessage { .. }
            | Self::DeleteMessage { .. }
            | Self::SendDirect { .. } => true,
            Self::Changes { done, .. } => done.is_some(),
            _ => false,
        }
    }
}

/// The submitting side of the writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Queued>,
    /// Set on a session owner's writer: every op it submits is fenced with it.
    fence: Option<Fence>,
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
        Self { tx, fence: None, request_timeout }
    }

    /// The same writer, for a session's owner: each op it submits commits only while `fence` is
    /// still the session's current token, and fails as [`WriteFailed::Fenced`] after that.
    pub fn fenced(&self, fence: Fence) -> Self {
        Self { fence: Some(fence), ..self.clone() }
    }

    fn queued(&self, op: WriteOp) -> Queued {
        let submitted = Instant::now();
        let allowed = if op.awaited() { self.request_timeout } else { RETRY_WINDOW };
        Queued { op, fence: self.fence, submitted, deadline: submitted + allowed }
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

/// What a message that conflicted on its client message id is answered: the message stored
/// under that id. A conflict with no such message is some other constraint, so a refusal; a
/// failed lookup is the database failing, so the sender may retry.
fn duplicate<T>(
    found: Result<Option<T>, StoreError>,
    answer: impl FnOnce(T) -> OpResult,
) -> Result<OpResult, WriteFailed> {
    match found {
        Ok(Some(stored)) => Ok(answer(stored)),
        Ok(None) => Err(WriteFailed::Rejected),
        Err(err) => {
            warn!(error = %err, "the message a retry duplicates could not be read");
            Err(WriteFailed::Unavailable)
        }
    }
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
            WriteOp::InsertMessage { message, .. } => duplicate(
                store.message_by_client_id(message.room_id, message.sender_id, &message.client_msg_id).await,
                OpResult::Duplicate,
            ),
            // The same for a 1:1 message.
            WriteOp::SendDirect { message, .. } => duplicate(
                store
                    .direct_by_client_id(message.conversation_id, message.sender_id, message.client_msg_id.as_str())
                    .await,
                |stored| OpResult::Direct(DirectSent::Duplicate(stored)),
            ),
            _ => Err(WriteFailed::Rejected),
        },
        Err(StoreError::Fenced(session)) => {
            warn!(%session, "write of a session owned elsewhere refused");
            Err(WriteFailed::Fenced)
        }
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
    // Bookkeeping nobody waits on is reported once per batch: a failing database fails every
    // op of every batch, and a line per op (with its rows) buried the log under load.
    let mut bookkeeping_failed: Option<(usize, WriteFailed)> = None;
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
            WriteOp::SendDirect { done, .. } => {
                let outcome = result.and_then(|result| match result {
                    OpResult::Direct(sent) => {
                        if matches!(sent, DirectSent::Stored { .. }) {
                            metrics.direct_messages_stored.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(sent)
                    }
                    other => {
                        error!(?other, "a 1:1 send produced no outcome");
                        Err(WriteFailed::Rejected)
                    }
                });
                done.send(outcome).is_ok()
            }
            WriteOp::Barrier { done } => done.send(()).is_ok(),
            WriteOp::Changes { done: Some(done), .. } => done.send(result.map(|_| ())).is_ok(),
            _ => {
                if let Err(failure) = result {
                    let (count, _) = bookkeeping_failed.get_or_insert((0, failure));
                    *count += 1;
                }
                true
            }
        };
        if !delivered {
            // The requester (a session actor) stopped before the commit; the write stands.
            debug!("write committed after its requester went away");
        }
    }
    if let Some((count, failure)) = bookkeeping_failed {
        error!(count, %failure, "bookkeeping writes failed (joins, leaves, transitions; nobody waited on them)");
    }
}

mod commit;
mod direct;
mod sqlite;

pub use direct::{DirectSent, NewDirectMessage};
