//! The bus between nodes: messages to a node, the leases that say which node owns a session, and
//! the heartbeats that say which nodes are alive.
//!
//! With `REDIS_URL` the bus is Redis ([`redis`], the only module that knows it). Without it the
//! node is alone and the same interface answers for one node: every lease is its own, every other
//! node is dead, and nothing is ever sent to another node because no connection lives on one.

pub mod message;
pub mod redis;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use convene_protocol::{ConnId, NodeId, SessionId};

use self::redis::{RedisBus, RedisError};
use crate::metrics::Metrics;
pub use message::{Control, DecodeError, NodeMessage, UserEventKind};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("a message could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("node {0} is not part of this cluster")]
    NoSuchNode(NodeId),
    #[error("this node's subscription to the bus is down")]
    Disconnected,
}

/// How long leases and heartbeats last.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// A session's lease lasts this long unless its owner renews it (every third of it).
    pub lease_ttl: Duration,
    /// How often a node records its heartbeat and looks at the others'.
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is dead: its connections leave their sessions and its
    /// leases may be taken over.
    pub node_timeout: Duration,
}

#[derive(Debug)]
enum Transport {
    Alone,
    Redis(RedisBus),
}

/// This node's view of the cluster.
#[derive(Debug)]
pub struct Bus {
    node: NodeId,
    transport: Transport,
    timing: Timing,
    /// The nodes heard from within the timeout at the last heartbeat.
    alive: RwLock<HashSet<NodeId>>,
    metrics: Arc<Metrics>,
}

impl Bus {
    /// The bus of a node that runs alone.
    pub fn alone(node: NodeId, timing: Timing, metrics: Arc<Metrics>) -> Self {
        let alive = RwLock::new(HashSet::from([node]));
        Self { node, transport: Transport::Alone, timing, alive, metrics }
    }

    /// The bus of a node in a cluster over Redis.
    pub fn redis(node: NodeId, bus: RedisBus, timing: Timing, metrics: Arc<Metrics>) -> Self {
        let alive = RwLock::new(HashSet::from([node]));
        Self { node, transport: Transport::Redis(bus), timing, alive, metrics }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Whether other nodes may exist.
    pub fn is_clustered(&self) -> bool {
        matches!(self.transport, Transport::Redis(_))
    }

    /// Sends a message to another node without waiting; messages to one node arrive in the
    /// order they were sent.
    pub fn send(&self, to: NodeId, message: &NodeMessage) -> Result<(), BusError> {
        let Transport::Redis(redis) = &self.transport else { return Err(BusError::NoSuchNode(to)) };
        let sent = message.encode().map_err(BusError::from).and_then(|payload| Ok(redis.publish(to, payload)?));
        self.count(sent.is_ok());
        sent
    }

    /// Sends a message to every other node (and this one, which ignores its own: see
    /// [`NodeMessage::Users`]); nothing for a node alone.
    pub fn send_all(&self, message: &NodeMessage) -> Result<(), BusError> {
        let Transport::Redis(redis) = &self.transport else { return Ok(()) };
        let sent = message.encode().map_err(BusError::from).and_then(|payload| Ok(redis.publish_all(payload)?));
        self.count(sent.is_ok());
        sent
    }

    /// Delivers one frame to connections of another node, all in one message.
    pub fn deliver(&self, to: NodeId, conns: &[ConnId], frame: &[u8]) -> Result<(), BusError> {
        let Transport::Redis(redis) = &self.transport else { return Err(BusError::NoSuchNode(to)) };
        let sent = redis.publish(to, message::encode_delivery(conns, frame));
        self.count(sent.is_ok());
        Ok(sent?)
    }

    fn count(&self, sent: bool) {
        let counter = if sent { &self.metrics.bus_sent } else { &self.metrics.bus_lost };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The node that owns `session`: this one if nobody held its lease (it holds it now), or if
    /// its holder's heartbeat stopped (it took the lease over).
    pub async fn owner(&self, session: SessionId) -> Result<NodeId, BusError> {
        let Transport::Redis(redis) = &self.transport else { return Ok(self.node) };
        let holder = redis.acquire(session, None, self.timing.lease_ttl).await?;
        if holder == self.node || self.is_alive(holder) {
            return Ok(holder);
        }
        // Not alive at our last heartbeat: dead, or started since. Only Redis can tell.
        let heard = redis.last_heard(holder).await?;
        if heard.is_some_and(|ago| ago < self.timing.node_timeout) {
            self.alive.write().unwrap_or_else(PoisonError::into_inner).insert(holder);
            return Ok(holder);
        }
        Ok(redis.acquire(session, Some(holder), self.timing.lease_ttl).await?)
    }

    /// Extends this node's leases; answers, per session, whether it still held the lease.
    pub async fn renew(&self, sessions: &[SessionId]) -> Result<Vec<bool>, BusError> {
        match &self.transport {
            Transport::Alone => Ok(vec![true; sessions.len()]),
            Transport::Redis(redis) => Ok(redis.renew(sessions, self.timing.lease_ttl).await?),
        }
    }

    /// Gives a lease up, so that another node may take the session at once.
    pub async fn release(&self, session: SessionId) -> Result<(), BusError> {
        match &self.transport {
            Transport::Alone => Ok(()),
            Transport::Redis(redis) => Ok(redis.release(session).await?),
        }
    }

    /// Records this node's heartbeat and refreshes the view of the others; answers the nodes
    /// that were alive at the last heartbeat and are not any more.
    pub async fn heartbeat(&self) -> Result<Vec<NodeId>, BusError> {
        let Transport::Redis(redis) = &self.transport else { return Ok(Vec::new()) };
        let mut now: HashSet<NodeId> = redis.heartbeat(self.timing.node_timeout).await?.into_iter().collect();
        now.insert(self.node);
        redis.settle_unheard(&now, self.timing.node_timeout);
        let mut alive = self.alive.write().unwrap_or_else(PoisonError::into_inner);
        let gone = alive.difference(&now).copied().collect();
        *alive = now;
        Ok(gone)
    }

    /// Leaves the cluster's heartbeats, so that the others see this node gone at once.
    pub async fn leave(&self) -> Result<(), BusError> {
        match &self.transport {
            Transport::Alone => Ok(()),
            Transport::Redis(redis) => Ok(redis.leave().await?),
        }
    }

    /// Every node alive at the last heartbeat, this one included.
    pub fn alive(&self) -> Vec<NodeId> {
        self.alive.read().unwrap_or_else(PoisonError::into_inner).iter().copied().collect()
    }

    /// Whether `node` was alive at the last heartbeat.
    pub fn is_alive(&self, node: NodeId) -> bool {
        node == self.node || self.alive.read().unwrap_or_else(PoisonError::into_inner).contains(&node)
    }

    /// How many times messages for this node were lost (its subscription dropped, or its inbox
    /// overflowed). A connection that relies on another node's session resumes after each.
    pub fn gaps(&self) -> u64 {
        match &self.transport {
            Transport::Alone => 0,
            Transport::Redis(redis) => redis.gaps(),
        }
    }

    /// Wakes at the next gap (never for a node alone).
    pub async fn gap(&self) {
        match &self.transport {
            Transport::Alone => std::future::pending().await,
            Transport::Redis(redis) => redis.gap_signal().notified().await,
        }
    }

    /// Whether the bus is up: always for a node alone.
    pub fn is_connected(&self) -> bool {
        match &self.transport {
            Transport::Alone => true,
            Transport::Redis(redis) => redis.is_subscribed(),
        }
    }

    /// Checks that the bus answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), BusError> {
        match &self.transport {
            Transport::Alone => Ok(()),
            Transport::Redis(redis) => Ok(redis.ping().await?),
        }
    }
}
