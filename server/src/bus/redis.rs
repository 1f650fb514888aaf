//! Redis: the only module that speaks to it. It carries messages between nodes (one channel per
//! node, and one every node hears), holds the leases that say which node owns a session, and the nodes' heartbeats.
//!
//! Connections: one reconnecting connection (`ConnectionManager`) for commands and one for the
//! node's subscription. The subscription uses RESP3 pushes with the manager's automatic
//! resubscription, so after Redis restarts or the connection drops, the node subscribes again by
//! itself. Every drop is reported as a gap (messages published meanwhile were lost), and so is
//! the subscription's return: what was published while it was down is only in the store, and
//! reading it is only worth doing once nothing more can be missed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use convene_protocol::{NodeId, SessionId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo as _, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::metrics::Metrics;

/// How long a readiness probe waits for Redis.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages waiting to be published. A node publishes one message per event per other node with
/// recipients, so this absorbs bursts of a few thousand events across a few nodes; when it is
/// full, Redis is not keeping up and the message is refused (the caller decides what that costs).
pub const PUBLISH_QUEUE_CAPACITY: usize = 65_536;
/// Most messages published in one pipeline: one round trip for many, as Redis is fastest.
const PUBLISH_BATCH: usize = 512;
/// How long one Redis command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
    #[error("the publish queue is full")]
    Full,
    #[error("the bus has stopped")]
    Closed,
    #[error("redis answered something unexpected: {0}")]
    Unexpected(String),
}

/// Checks that Redis answers.
#[derive(Clone, Debug)]
pub struct RedisProbe {
    client: redis::Client,
}

impl RedisProbe {
    pub fn new(url: &str) -> Result<Self, RedisError> {
        Ok(Self { client: redis::Client::open(url)? })
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let probe = async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok::<(), RedisError>(())
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe).await.map_err(|_| RedisError::Timeout)?
    }
}

/// Takes the lease of a session for ARGV[1] when nobody holds it, when ARGV[1] does (refreshing
/// it), or when ARGV[3] does (a node known to be dead; empty for none); answers the holder.
const ACQUIRE: &str = r"
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] or holder == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder";
/// Extends the lease if this node still holds it: 1, or 0 when it was lost.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";
/// Gives the lease up if this node holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// This node's connection to the others through Redis.
#[derive(Debug)]
pub struct RedisBus {
    node: NodeId,
    /// Every key and channel starts with it, so that several clusters may share one Redis.
    prefix: String,
    commands: ConnectionManager,
    outgoing: mpsc::Sender<(Option<NodeId>, Vec<u8>)>,
    subscribed: Arc<Subscription>,
    /// Counts the times messages between this node and another were lost: the subscription
    /// dropped (or its inbox overflowed), or a message could not be published or found nobody
    /// listening.
    gaps: Arc<AtomicU64>,
    /// Woken at every gap.
    gap_signal: Arc<Notify>,
    lost: Lost,
}

impl RedisBus {
    /// Connects, subscribes to this node's channel and starts the publisher. Messages for this
    /// node are handed to `inbox`; `on_gap` is called (from Redis's reader, so it must not
    /// block) each time the subscription drops, with the number of drops so far.
    pub async fn connect(
        url: &str,
        cluster: &str,
        node: NodeId,
        inbox: mpsc::Sender<bytes::Bytes>,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, RedisError> {
        let info = url.into_connection_info()?;
        let resp3 = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3))?;
        let timeouts = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_max_delay(Duration::from_secs(1));
        let commands = within(client.get_connection_manager_with_config(timeouts.clone())).await?;

        let subscribed = Arc::new(Subscription::default());
        let gaps = Arc::new(AtomicU64::new(0));
        let gap_signal = Arc::new(Notify::new());
        let lost = Lost {
            gaps: gaps.clone(),
            signal: gap_signal.clone(),
            metrics: metrics.clone(),
            unheard: Arc::new(Mutex::new(HashMap::new())),
        };
        let pushes = {
            let (subscribed, lost) = (subscribed.clone(), lost.clone());
            move |push: PushInfo| -> Result<(), std::convert::Infallible> {
                receive_push(push, &inbox, &subscribed, &lost);
                Ok(())
            }
        };
        let mut subscriber = within(
            client.get_connection_manager_with_config(timeouts.set_push_sender(pushes).set_automatic_resubscription()),
        )
        .await?;
        let prefix = cluster.to_owned();
        within(subscriber.subscribe(vec![channel(&prefix, node), everyone(&prefix)])).await?;
        subscribed.up.store(true, Ordering::Relaxed);

        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE_CAPACITY);
        tracker.spawn(publish(commands.clone(), prefix.clone(), queue, subscriber, lost.clone(), shutdown));
        info!(%node, cluster = %prefix, "joined the cluster's bus");
        Ok(Self { node, prefix, commands, outgoing, subscribed, gaps, gap_signal, lost })
    }

    /// Queues a message for `to`, never waiting. Messages to one node are published in the
    /// order they were queued.
    pub fn publish(&self, to: NodeId, payload: Vec<u8>) -> Result<(), RedisError> {
        self.queue(Some(to), payload)
    }

    /// Queues a message for every node (this one included), in order with the others.
    pub fn publish_all(&self, payload: Vec<u8>) -> Result<(), RedisError> {
        self.queue(None, payload)
    }

    fn queue(&self, to: Option<NodeId>, payload: Vec<u8>) -> Result<(), RedisError> {
        self.outgoing.try_send((to, payload)).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => RedisError::Full,
            mpsc::error::TrySendError::Closed(_) => RedisError::Closed,
        })
    }

    /// Whether this node's subscription is up.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.up.load(Ordering::Relaxed)
    }

    /// How many times messages between this node and another were lost since it started.
    pub fn gaps(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }

    /// Wakes at the next gap.
    pub fn gap_signal(&self) -> Arc<Notify> {
        self.gap_signal.clone()
    }

    /// Decides, at a heartbeat, about the nodes whose messages found nobody listening: a node
    /// that is not `alive` any more is dead (its connections leave; nothing of it relies on what
    /// was lost), and one still alive `timeout` after the loss was alive then, so it missed
    /// messages: a gap.
    pub fn settle_unheard(&self, alive: &HashSet<NodeId>, timeout: Duration) {
        let mut missed = Vec::new();
        self.lost.unheard.lock().unwrap_or_else(PoisonError::into_inner).retain(|node, since| {
            if !alive.contains(node) {
                return false;
            }
            if since.elapsed() < timeout {
                return true;
            }
            missed.push(*node);
            false
        });
        if !missed.is_empty() {
            warn!(nodes = ?missed, "live nodes missed messages (their subscription was down); they resume");
            self.lost.gap(0);
        }
    }

    /// Takes `session`'s lease for `ttl` if nobody holds it, or if `dead` (a node whose
    /// heartbeat stopped) still does; answers who holds it now.
    pub async fn acquire(&self, session: SessionId, dead: Option<NodeId>, ttl: Duration) -> Result<NodeId, RedisError> {
        let dead = dead.map(|node| node.to_string()).unwrap_or_default();
        let holder: String = self
            .query(
                redis::cmd("EVAL")
                    .arg(ACQUIRE)
                    .arg(1)
                    .arg(self.lease_key(session))
                    .arg(self.node.to_string())
                    .arg(millis(ttl))
                    .arg(dead),
            )
            .await?;
        parse_node(&holder)
    }

    /// Extends this node's leases; answers, for each session, whether the lease was still ours.
    pub async fn renew(&self, sessions: &[SessionId], ttl: Duration) -> Result<Vec<bool>, RedisError> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for session in sessions {
            pipe.cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(self.lease_key(*session))
                .arg(self.node.to_string())
                .arg(millis(ttl));
        }
        let renewed: Vec<i64> = within(pipe.query_async(&mut self.commands.clone())).await?;
        Ok(renewed.into_iter().map(|kept| kept == 1).collect())
    }

    /// Gives up `session`'s lease if this node holds it.
    pub async fn release(&self, session: SessionId) -> Result<(), RedisError> {
        let _released: i64 = self
            .query(redis::cmd("EVAL").arg(RELEASE).arg(1).arg(self.lease_key(session)).arg(self.node.to_string()))
            .await?;
        Ok(())
    }

    /// Records this node's heartbeat and answers the nodes heard from within `timeout` (this
    /// one included). Entries silent for ten timeouts are swept.
    pub async fn heartbeat(&self, timeout: Duration) -> Result<Vec<NodeId>, RedisError> {
        let key = format!("{}:nodes", self.prefix);
        let now = millis(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default());
        let alive_since = now.saturating_sub(millis(timeout));
        let forgotten = now.saturating_sub(millis(timeout) * 10);
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD").arg(&key).arg(now).arg(self.node.to_string()).ignore();
        pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(format!("({forgotten}")).ignore();
        pipe.cmd("ZRANGEBYSCORE").arg(&key).arg(alive_since).arg("+inf");
        let (alive,): (Vec<String>,) = within(pipe.query_async(&mut self.commands.clone())).await?;
        alive.iter().map(|node| parse_node(node)).collect()
    }

    /// How long ago `node` last recorded its heartbeat, if it is in the heartbeats at all.
    pub async fn last_heard(&self, node: NodeId) -> Result<Option<Duration>, RedisError> {
        let score: Option<f64> =
            self.query(redis::cmd("ZSCORE").arg(format!("{}:nodes", self.prefix)).arg(node.to_string())).await?;
        let now = millis(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default());
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a score is a time in ms")]
        Ok(score.map(|at| Duration::from_millis(now.saturating_sub(at as u64))))
    }

    /// Removes this node from the heartbeats, so that others see it gone at once.
    pub async fn leave(&self) -> Result<(), RedisError> {
        let _removed: i64 =
            self.query(redis::cmd("ZREM").arg(format!("{}:nodes", self.prefix)).arg(self.node.to_string())).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let _pong: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        within(cmd.query_async(&mut self.commands.clone())).await
    }

    fn lease_key(&self, session: SessionId) -> String {
        format!("{}:lease:{session}", self.prefix)
    }
}

fn channel(prefix: &str, node: NodeId) -> String {
    format!("{prefix}:to:{node}")
}

/// The channel every node of the cluster subscribes to.
fn everyone(prefix: &str) -> String {
    format!("{prefix}:all")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn parse_node(text: &str) -> Result<NodeId, RedisError> {
    u64::from_str_radix(text, 16).map(NodeId).map_err(|_| RedisError::Unexpected(format!("a node id {text:?}")))
}

async fn within<T>(command: impl Future<Output = Result<T, redis::RedisError>>) -> Result<T, RedisError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(result) => Ok(result?),
        Err(_elapsed) => Err(RedisError::Timeout),
    }
}

/// The state of this node's subscription, as its pushes report it.
#[derive(Debug, Default)]
struct Subscription {
    /// Whether it is up.
    up: AtomicBool,
    /// Whether it dropped since it was last up: its return is then a gap of its own.
    dropped: AtomicBool,
}

/// Records that messages between this node and another were lost.
#[derive(Clone, Debug)]
struct Lost {
    gaps: Arc<AtomicU64>,
    signal: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Nodes that messages found not listening, since when: dead ones, or live ones whose
    /// subscription was down. Only the latter is a gap; heartbeats tell them apart
    /// ([`RedisBus::settle_unheard`]). Published to a dead node until its death is noticed,
    /// messages must not make every live node's connections resume.
    unheard: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl Lost {
    /// Messages to `nodes` found nobody listening.
    fn unheard(&self, nodes: &[NodeId], messages: u64) {
        self.metrics.bus_lost.fetch_add(messages, Ordering::Relaxed);
        let now = Instant::now();
        let mut unheard = self.unheard.lock().unwrap_or_else(PoisonError::into_inner);
        for node in nodes {
            unheard.entry(*node).or_insert(now);
        }
    }

    fn gap(&self, messages: u64) {
        self.metrics.bus_lost.fetch_add(messages, Ordering::Relaxed);
        self.gaps.fetch_add(1, Ordering::Relaxed);
        self.signal.notify_one();
    }
}

/// Handles one push from the subscription's connection. Runs on the connection's reader, so it
/// only queues: a full inbox means this node cannot keep up with the others, and the message is
/// lost, which is logged and counted as a gap like a dropped subscription.
fn receive_push(push: PushInfo, inbox: &mpsc::Sender<bytes::Bytes>, subscription: &Subscription, lost: &Lost) {
    match push.kind {
        PushKind::Message => {
            let Some(Value::BulkString(payload)) = push.data.into_iter().nth(1) else {
                warn!("a bus message without a payload");
                return;
            };
            if let Err(err) = inbox.try_send(bytes::Bytes::from(payload)) {
                error!(error = %err, "the bus inbox is full; a message is lost and counted as a gap");
                lost.gap(1);
            }
        }
        PushKind::Subscribe => {
            subscription.up.store(true, Ordering::Relaxed);
            // One push per channel: the first after a drop reports it.
            if subscription.dropped.swap(false, Ordering::AcqRel) {
                info!("the bus subscription is back; what was missed meanwhile is read from the store");
                lost.gap(0);
            } else {
                debug!("subscribed to the bus");
            }
        }
        PushKind::Disconnection => {
            warn!("the bus subscription dropped; messages published until it is back are lost");
            subscription.up.store(false, Ordering::Relaxed);
            subscription.dropped.store(true, Ordering::Release);
            lost.gap(0);
        }
        _ => {}
    }
}

/// Publishes queued messages in order, many per round trip. A message that could not be
/// published is lost: a gap, after which the connections relying on other nodes resume what
/// they missed. One that found nobody listening was lost to a dead node (nothing to resume) or
/// to a live one whose subscription is down (a gap): the heartbeats decide which.
async fn publish(
    mut commands: ConnectionManager,
    prefix: String,
    mut queue: mpsc::Receiver<(Option<NodeId>, Vec<u8>)>,
    // Kept here so that the subscription lives exactly as long as the bus's tasks.
    _subscriber: ConnectionManager,
    lost: Lost,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        let received = tokio::select! {
            received = queue.recv_many(&mut batch, PUBLISH_BATCH) => received,
            () = shutdown.cancelled() => {
                queue.close();
                queue.recv_many(&mut batch, PUBLISH_BATCH).await
            }
        };
        if received == 0 {
            break;
        }
        let mut pipe = redis::pipe();
        let mut destinations = Vec::with_capacity(batch.len());
        for (to, payload) in batch.drain(..) {
            let name = match to {
                Some(node) => channel(&prefix, node),
                None => everyone(&prefix),
            };
            pipe.cmd("PUBLISH").arg(name).arg(payload);
            destinations.push(to);
        }
        match within(pipe.query_async::<Vec<i64>>(&mut commands)).await {
            Ok(listeners) => {
                // A message for everyone is heard by whoever is there (this node at least).
                let mut unheard: Vec<NodeId> = destinations
                    .iter()
                    .zip(&listeners)
                    .filter(|(_, count)| **count == 0)
                    .filter_map(|(to, _)| *to)
                    .collect();
                if !unheard.is_empty() {
                    let messages = unheard.len() as u64;
                    unheard.dedup();
                    warn!(messages, nodes = ?unheard, "messages to other nodes found nobody listening; lost");
                    lost.unheard(&unheard, messages);
                }
            }
            Err(err) => {
                error!(error = %err, messages = received, "publishing to the bus failed; messages lost");
                lost.gap(received as u64);
            }
        }
    }
    debug!("bus publisher stopped");
}
