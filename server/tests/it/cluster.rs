//! Several nodes behave as one server: a session is owned by one node, and its members on any
//! node see the same rooms, presence and messages, in the same order.

use anyhow::{Context as _, Result, ensure};
use convene_protocol::{Role, ServerMessage, SessionView};
use convene_server::Config;
use convene_server::store::{HistoryQuery, NewNotification};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::{Backend, Client, EVENT_TIMEOUT, Joined, SECRET, TcpProxy, TestDb, TestServer, TestUser};
use crate::nodes::{TestCluster, redis_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_share_presence_and_chat() -> Result<()> {
    let cluster = TestCluster::start(2).await?;
    let (a, b) = (cluster.node(0), cluster.node(1));
    // The host joins on node A, which takes the session; a mentee joins on node B.
    let Across { session, host, mut on_a, mentee, mut on_b, joined_on_b } = Across::start(a, b).await?;
    let room = session.main_room_id;
    ensure!(joined_on_b.members.iter().any(|m| m.user_id == host.id), "B's snapshot holds A's host: {joined_on_b:?}");
    on_a.recv_presence_of(mentee.id).await?;

    // Messages cross both ways, acknowledged to their senders, in one sequence.
    ensure!(on_b.post(session.id, room, "from-b", "hello from B").await? == 1);
    let seen_on_a = on_a
        .recv_until(|m| match m {
            ServerMessage::Message { message } => Some(message),
            _ => None,
        })
        .await?;
    ensure!(seen_on_a.body == "hello from B" && seen_on_a.seq == 1);
    ensure!(on_a.post(session.id, room, "from-a", "hello from A").await? == 2);
    let seen_on_b = on_b
        .recv_until(|m| match m {
            ServerMessage::Message { message } if message.seq == 2 => Some(message),
            _ => None,
        })
        .await?;
    ensure!(seen_on_b.body == "hello from A");

    // A history read from B is answered by the owner on A.
    ensure!(on_b.history(session.id, room).await? == Ok(vec![1, 2]));

    // Stored once each, by the owner.
    let stored = cluster.db.store().await?.history(room, HistoryQuery::Latest, 10).await?.messages;
    ensure!(stored.iter().map(|m| m.seq).collect::<Vec<_>>() == [1, 2], "{stored:?}");

    // One actor, on A; B only relayed.
    ensure!(a.metric("convene_sessions_active").await? == 1.0);
    ensure!(b.metric("convene_sessions_active").await? == 0.0);
    ensure!(b.metric("convene_bus_received_total").await? >= 4.0, "B received its frames over the bus");
    ensure!(b.metric("convene_bus_sent_total").await? >= 3.0, "B forwarded its requests over the bus");

    // Leaving on B is seen on A.
    drop(on_b);
    on_a.recv_departure_of(mentee.id).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_an_sqlite_database_is_refused_at_start() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let config = Config {
        database_url: Some(db.url.clone()),
        redis_url: Some(redis_url()),
        jwt_secret: Some(SECRET.to_owned()),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let started = convene_server::run(listener, config, CancellationToken::new()).await;
    let refusal = started.err().map(|err| err.to_string()).unwrap_or_default();
    ensure!(refusal.contains("Postgres"), "the node refuses to start, saying why: {refusal:?}");
    Ok(())
}

/// Redis goes away under a running cluster and comes back: readiness says so, the nodes
/// subscribe again by themselves, connections that relied on the other node resume, and
/// messages cross nodes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_resubscribe_after_redis_comes_back_and_clients_resume() -> Result<()> {
    let redis = TcpProxy::start(redis_addr()?).await?;
    let cluster = TestCluster::start_with(2, format!("redis://{}", redis.addr), |_| {}).await?;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let ready = readiness(b).await?;
    ensure!(ready["status"] == "healthy" && ready["checks"]["redis"]["status"] == "healthy", "{ready}");

    let Across { session, mut on_a, mut on_b, .. } = Across::start(a, b).await?;
    let room = session.main_room_id;
    ensure!(on_a.post(session.id, room, "before", "before the outage").await? == 1);

    redis.cut();
    // B's connection relied on A through Redis: it stays connected and is told to join again.
    on_b.interrupted(session.id).await.context("B's member is told to join again")?;
    let degraded = wait_for(|| readiness(b), |ready| ready["status"] == "degraded")
        .await
        .context("readiness during the outage")?;
    ensure!(degraded["checks"]["redis"]["status"] == "unhealthy", "{degraded}");
    // A's session has only A's host left: it keeps working without Redis.
    let during =
        on_a.post(session.id, room, "during", "while Redis is away").await.context("posting during the outage")?;
    ensure!(during == 2);

    redis.restore();
    for node in [a, b] {
        wait_for(|| readiness(node), |ready| ready["status"] == "healthy")
            .await
            .context("readiness after the outage")?;
    }
    // It joins again on the same connection, resuming.
    let mut again = on_b;
    again
        .send_json(json!({"type": "join_session", "request_id": "resume", "session_id": session.id,
            "resume": [{"room_id": room, "last_seq": 1}]}))
        .await?;
    let replayed = again
        .recv_until(|m| match m {
            ServerMessage::Replay { messages, .. } => messages.into_iter().find(|m| m.seq == 2).map(|m| m.body),
            _ => None,
        })
        .await
        .context("the resume's replay")?;
    ensure!(replayed == "while Redis is away", "the resume replays what B's member missed");
    ensure!(on_a.post(session.id, room, "after", "after the outage").await? == 3);
    // As a client does, it joins again whenever told to (the owner may report the outage's
    // losses after the rejoin); the new message arrives live or in the replay.
    loop {
        match again.recv().await? {
            ServerMessage::Message { message } if message.seq == 3 => break,
            ServerMessage::Replay { messages, .. } if messages.iter().any(|m| m.seq == 3) => break,
            ServerMessage::SessionInterrupted { session_id } if session_id == session.id => {
                again
                    .send_json(json!({"type": "join_session", "session_id": session.id,
                        "resume": [{"room_id": room, "last_seq": 2}]}))
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A group session created on `a` whose host joined on `a` (so `a` owns it) and a mentee on `b`.
struct Across {
    session: SessionView,
    host: TestUser,
    on_a: Client,
    mentee: TestUser,
    on_b: Client,
    joined_on_b: Joined,
}

impl Across {
    async fn start(a: &TestServer, b: &TestServer) -> Result<Self> {
        let org = Some(uuid::Uuid::new_v4());
        let host = TestUser::new(Role::Therapist, org);
        let session = a.create_session(&host, json!({"session_type": "group"})).await?;
        let mut on_a = Client::connect(a, &host).await?;
        on_a.join(session.id).await?;
        let mentee = TestUser::new(Role::Mentee, org);
        let mut on_b = Client::connect(b, &mentee).await?;
        let joined_on_b = on_b.join(session.id).await?;
        Ok(Self { session, host, on_a, mentee, on_b, joined_on_b })
    }
}

/// 1:1 messages sent while Redis is away are stored and acknowledged; the other node's device
/// gets them once Redis is back, in order and once, without asking: its node reads what its
/// devices missed from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_messages_sent_while_redis_is_away_arrive_when_it_is_back() -> Result<()> {
    let redis = TcpProxy::start(redis_addr()?).await?;
    let cluster = TestCluster::start_with(2, format!("redis://{}", redis.addr), |_| {}).await?;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let org = Some(uuid::Uuid::new_v4());
    let (mentor, mentee) = (TestUser::new(Role::Mentor, org), TestUser::new(Role::Mentee, org));
    let mut mentee_device = Client::connect(b, &mentee).await?;
    let mut mentor_device = Client::connect(a, &mentor).await?;
    let conversation = mentor_device.open_with(mentee.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;
    ensure!(mentor_device.send_dm(conversation.id, "1", "before").await? == Ok(1));
    ensure!(mentee_device.next_dm().await?.seq == 1);

    redis.cut();
    for node in [a, b] {
        wait_for(|| readiness(node), |ready| ready["status"] == "degraded").await.context("during the outage")?;
    }
    for seq in 2..=3 {
        let sent = mentor_device.send_dm(conversation.id, &seq.to_string(), "while Redis is away").await?;
        ensure!(sent == Ok(seq), "sending during the outage: {sent:?}");
    }
    redis.restore();
    for node in [a, b] {
        wait_for(|| readiness(node), |ready| ready["status"] == "healthy").await.context("after the outage")?;
    }
    let caught_up = [mentee_device.next_dm().await?.seq, mentee_device.next_dm().await?.seq];
    ensure!(caught_up == [2, 3], "{caught_up:?}");
    ensure!(mentor_device.send_dm(conversation.id, "4", "after").await? == Ok(4));
    ensure!(mentee_device.next_dm().await?.seq == 4);
    ensure!(mentee_device.dms_so_far().await?.is_empty(), "nothing twice");
    Ok(())
}

/// After Redis comes back, an idle user's inbox catches up without starting a task: its device
/// is sent the notification counts, a notification it was not told of included. One whose
/// conversation moved meanwhile starts its task and sends its device what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gap_only_inboxes_that_missed_messages_start_their_task() -> Result<()> {
    let redis = TcpProxy::start(redis_addr()?).await?;
    let cluster = TestCluster::start_with(2, format!("redis://{}", redis.addr), |_| {}).await?;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let org = Some(uuid::Uuid::new_v4());
    let (mentor, mentee, idle) =
        (TestUser::new(Role::Mentor, org), TestUser::new(Role::Mentee, org), TestUser::new(Role::Patient, org));
    let mut mentee_device = Client::connect(b, &mentee).await?;
    let mut idle_device = Client::connect(b, &idle).await?;
    let mut mentor_device = Client::connect(a, &mentor).await?;
    for device in [&mut mentee_device, &mut idle_device, &mut mentor_device] {
        device.sync().await?;
    }
    ensure!(b.metric("convene_inbox_tasks").await? == 0.0, "nobody on B was sent anything yet");

    redis.cut();
    for node in [a, b] {
        wait_for(|| readiness(node), |ready| ready["status"] == "degraded").await.context("during the outage")?;
    }
    // Through A: a message to the mentee in a new conversation (whose event may or may not reach
    // B once Redis is back). And a notification for the idle user that no node hears of, as
    // one whose event to B was lost: stored directly, so that nothing but the catching up can
    // tell its device.
    let conversation = mentor_device.open_with(mentee.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;
    ensure!(mentor_device.send_dm(conversation.id, "1", "while Redis is away").await? == Ok(1));
    let notification = NewNotification {
        user_id: idle.id,
        kind: "reminder".into(),
        title: "Tomorrow".into(),
        message: "10:00".into(),
        data: json!({}),
        created_at: chrono::Utc::now(),
    };
    cluster.db.store().await?.insert_notification(&notification).await?;
    redis.restore();

    ensure!(mentee_device.next_dm().await?.seq == 1, "the mentee's inbox sends what it missed");
    // Counts come after each gap: when the subscription dropped, and when it was back.
    idle_device
        .recv_until(|m| match m {
            ServerMessage::NotificationCounts { request_id: None, counts } if counts.total == 1 => Some(()),
            _ => None,
        })
        .await
        .context("the idle user hears of the notification pushed meanwhile")?;
    let (inboxes, tasks) = (b.metric("convene_inboxes_active").await?, b.metric("convene_inbox_tasks").await?);
    ensure!((inboxes, tasks) == (2.0, 1.0), "only the mentee's inbox runs: {inboxes} inboxes, {tasks} tasks");
    Ok(())
}

/// What `node` answers at `/readyz`.
async fn readiness(node: &TestServer) -> Result<serde_json::Value> {
    Ok(reqwest::get(node.http("/readyz")).await?.json().await?)
}

/// Polls `probe` until `done` holds of its answer (within the harness's event timeout).
async fn wait_for<F, T>(mut probe: impl FnMut() -> F, done: impl Fn(&T) -> bool) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let answer = probe().await?;
        if done(&answer) {
            return Ok(answer);
        }
        ensure!(tokio::time::Instant::now() < deadline, "the condition never held");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn redis_addr() -> Result<std::net::SocketAddr> {
    let url = redis_url();
    let authority = url.trim_start_matches("redis://").split('/').next().unwrap_or_default().to_owned();
    Ok(authority.parse()?)
}
