//! The writer, driven directly: how it numbers, stores and refuses the ops of a batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use convene_protocol::{MessageId, NodeId, Role, RoomId, SessionId, SessionStatus, SessionType};
use convene_server::store::{
    EditOutcome, Fence, HistoryQuery, InsertOutcome, MessageRecord, NewMessage, SessionRecord, Store, WriteFailed,
    WriteOp, Writer,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::common::{Backend, Outage, TestDb, TestUser};
use crate::on_both_backends;

on_both_backends!(current_thread:
    a_batch_numbers_each_rooms_messages_in_the_order_sent,
    a_send_whose_client_id_is_stored_gets_the_stored_message_and_the_rest_of_its_batch_is_stored,
    a_stale_owners_message_is_refused_and_the_rest_of_its_batch_is_stored,
    an_attempt_the_database_cut_short_leaves_nothing_open_for_the_next_write,
);

/// A migrated database and a running writer; the test submits ops through [`Batches::writer`]
/// for each session it opens. The tests run on a current-thread runtime, so the ops a test
/// submits without awaiting in between reach the writer as one batch.
struct Batches {
    _db: TestDb,
    store: Store,
    host: TestUser,
    writer: Writer,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

type Outcome = oneshot::Receiver<Result<InsertOutcome, WriteFailed>>;

impl Batches {
    async fn start(backend: Backend) -> Result<Self> {
        Self::start_on(TestDb::new(backend).await?, Duration::from_secs(10)).await
    }

    /// On `db`, answering each message within `request_timeout`, stored or not.
    async fn start_on(db: TestDb, request_timeout: Duration) -> Result<Self> {
        let store = db.store().await?;
        store.migrate().await?;
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let writer = Writer::spawn(store.clone(), Arc::default(), &tracker, shutdown.clone(), request_timeout);
        Ok(Self { _db: db, store, host: TestUser::new(Role::Therapist, None), writer, tracker, shutdown })
    }

    /// A new session, claimed by a node: the fence its owner's writes carry.
    async fn session(&self) -> Result<Fence> {
        let id = Uuid::new_v4();
        let session = SessionRecord {
            id: SessionId(id),
            organization_id: None,
            session_type: SessionType::Group,
            status: SessionStatus::Active,
            room_name: format!("batches {id}"),
            created_by: self.host.id,
            lobby_enabled: false,
            created_at: Utc::now(),
            started_at: None,
            ended_at: None,
            expires_at: None,
        };
        self.store.insert_session(&session, &[]).await?;
        self.store.claim_session(session.id, NodeId(1), Utc::now()).await?.context("no session to claim")
    }

    /// Queues the host's message to `room` of `fence`'s session, as that session's owner.
    fn post(&self, fence: Fence, room: RoomId, client_msg_id: &str) -> Result<Outcome> {
        let message = NewMessage {
            id: MessageId::new_v4(),
            session_id: fence.session,
            room_id: room,
            sender_id: self.host.id,
            client_msg_id: client_msg_id.to_owned(),
            body: format!("message {client_msg_id}"),
            created_at: Utc::now(),
        };
        let (done, outcome) = oneshot::channel();
        self.writer.fenced(fence).try_submit(WriteOp::InsertMessage { message, done })?;
        Ok(outcome)
    }

    /// The room's stored messages, oldest first: (number, client message id).
    async fn stored(&self, room: RoomId) -> Result<Vec<(i64, String)>> {
        let page = self.store.history(room, HistoryQuery::After(0), 100).await?;
        Ok(page.messages.into_iter().map(|m| (m.seq, m.client_msg_id.as_str().to_owned())).collect())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The message `outcome` answers as stored, or what it was answered instead.
async fn inserted(outcome: Outcome) -> Result<MessageRecord> {
    match outcome.await? {
        Ok(InsertOutcome::Inserted(stored)) => Ok(stored),
        other => bail!("not stored: {other:?}"),
    }
}

/// Messages of several rooms committed together are numbered room by room in the order they were
/// sent, each room's numbers continuing where it stood; each is acknowledged with the number it
/// is stored under.
async fn a_batch_numbers_each_rooms_messages_in_the_order_sent(backend: Backend) -> Result<()> {
    let batches = Batches::start(backend).await?;
    let fence = batches.session().await?;
    let (main, breakout) = (RoomId::from(fence.session), RoomId(Uuid::new_v4()));
    // The first batch starts the main room's sequence; the second interleaves both rooms.
    let rooms = [vec![main, main], vec![breakout, main, breakout, main, breakout]];
    let mut acked: HashMap<RoomId, Vec<(i64, String)>> = HashMap::new();
    for (b, rooms) in rooms.into_iter().enumerate() {
        let mut waiting = Vec::new();
        for (i, room) in rooms.into_iter().enumerate() {
            let client_msg_id = format!("b{b}m{i}");
            waiting.push((room, client_msg_id.clone(), batches.post(fence, room, &client_msg_id)?));
        }
        for (room, client_msg_id, outcome) in waiting {
            let stored = inserted(outcome).await.context("a message was not inserted")?;
            acked.entry(room).or_default().push((stored.seq, client_msg_id));
        }
    }
    let numbers = |room: RoomId| acked[&room].iter().map(|(seq, _)| *seq).collect::<Vec<_>>();
    assert_eq!(numbers(main), [1, 2, 3, 4], "the main room continues its sequence, in the order sent");
    assert_eq!(numbers(breakout), [1, 2, 3], "the breakout room starts its own");
    for room in [main, breakout] {
        assert_eq!(
            batches.stored(room).await?,
            acked[&room],
            "each message is stored under the number it was acknowledged with"
        );
    }
    batches.stop().await;
    Ok(())
}

/// A retried send that reaches the database (its sender's earlier send is no longer in memory)
/// fails its batch's statements; the batch is undone, and committed again op by op: the retry
/// is answered with the stored message, the others are stored, numbered without a gap, and the
/// writer goes on.
async fn a_send_whose_client_id_is_stored_gets_the_stored_message_and_the_rest_of_its_batch_is_stored(
    backend: Backend,
) -> Result<()> {
    let batches = Batches::start(backend).await?;
    let fence = batches.session().await?;
    let room = RoomId::from(fence.session);
    let first = inserted(batches.post(fence, room, "a")?).await.context("not inserted")?;

    let (before, retry, after) =
        (batches.post(fence, room, "b")?, batches.post(fence, room, "a")?, batches.post(fence, room, "c")?);
    let before = inserted(before).await.context("the message before the retry was not stored")?;
    let Ok(InsertOutcome::Duplicate(stored)) = retry.await? else { bail!("the retry was not answered as a duplicate") };
    let after = inserted(after).await.context("the message after the retry was not stored")?;
    assert_eq!((stored.id, stored.seq), (first.id, first.seq), "the retry is answered with the message first stored");
    assert_eq!((before.seq, after.seq), (2, 3), "the others are numbered on from the first");

    let next = inserted(batches.post(fence, room, "d")?).await.context("the next batch failed")?;
    assert_eq!(next.seq, 4);
    let stored = batches.stored(room).await?;
    let expected: Vec<(i64, String)> =
        [(1, "a"), (2, "b"), (3, "c"), (4, "d")].map(|(seq, id)| (seq, id.to_owned())).into();
    assert_eq!(stored, expected, "each message once, under the number it was acknowledged with");
    batches.stop().await;
    Ok(())
}

/// A batch holds one session's message from an owner that lost the session and another
/// session's from its current owner: the first is refused as fenced and writes nothing, the
/// second is stored; the session's new owner numbers on as if the refused one was never tried.
async fn a_stale_owners_message_is_refused_and_the_rest_of_its_batch_is_stored(backend: Backend) -> Result<()> {
    let batches = Batches::start(backend).await?;
    let (stale, current) = (batches.session().await?, batches.session().await?);
    let (stale_room, current_room) = (RoomId::from(stale.session), RoomId::from(current.session));
    let successor =
        batches.store.claim_session(stale.session, NodeId(2), Utc::now()).await?.context("no session to claim")?;

    let (refused, stored) =
        (batches.post(stale, stale_room, "stale")?, batches.post(current, current_room, "current")?);
    assert_eq!(refused.await?.err(), Some(WriteFailed::Fenced), "the stale owner's message is refused");
    let stored = inserted(stored).await.context("the current owner's message was not stored")?;
    assert_eq!(stored.seq, 1);
    assert_eq!(batches.stored(stale_room).await?, [], "the stale owner wrote nothing");

    let next = inserted(batches.post(successor, stale_room, "successor")?)
        .await
        .context("the successor's message was not stored")?;
    assert_eq!(next.seq, 1, "the successor numbers from the start");
    assert_eq!(batches.stored(current_room).await?, [(1, "current".to_owned())]);
    batches.stop().await;
    Ok(())
}

/// The database holds a message's attempt up (SQLite locked by another connection, Postgres
/// unreachable) until the writer gives up on it: the message is answered `unavailable`. Once the
/// database is back, whatever that attempt began on its connection is gone: a write of another
/// kind and the next message are both carried out, and nothing of the first was stored.
async fn an_attempt_the_database_cut_short_leaves_nothing_open_for_the_next_write(backend: Backend) -> Result<()> {
    let (db, mut outage) = Outage::database(backend).await?;
    let batches = Batches::start_on(db, Duration::from_millis(500)).await?;
    let fence = batches.session().await?;
    let room = RoomId::from(fence.session);

    outage.begin().await?;
    assert_eq!(batches.post(fence, room, "lost")?.await?.err(), Some(WriteFailed::Unavailable));
    outage.end().await?;

    let (done, edited) = oneshot::channel();
    let edit = WriteOp::EditMessage {
        room_id: room,
        message_id: MessageId::new_v4(),
        editor: batches.host.id,
        body: "no such message".into(),
        at: Utc::now(),
        done,
    };
    batches.writer.fenced(fence).try_submit(edit)?;
    assert_eq!(edited.await?, Ok(EditOutcome::NotFound), "an edit after the outage is carried out");
    let kept =
        inserted(batches.post(fence, room, "kept")?).await.context("the message after the outage was not stored")?;
    assert_eq!(kept.seq, 1, "numbered as the room's first");
    assert_eq!(batches.stored(room).await?, [(1, "kept".to_owned())]);
    batches.stop().await;
    Ok(())
}
