//! What every connection and request handler shares: the node's state, built by
//! [`crate::run`]. Its own module, so that the transport and the handlers depend on it and not
//! on the server that assembles it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use convene_protocol::NodeId;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Gate;
use crate::auth::Verifier;
use crate::bus::Bus;
use crate::bus::redis::RedisProbe;
use crate::config::Config;
use crate::inbox::Inboxes;
use crate::metrics::Metrics;
use crate::outbound::Connections;
use crate::session::Registry;
use crate::store::Store;

/// What every connection shares.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub verifier: Verifier,
    pub store: Store,
    pub registry: Arc<Registry>,
    /// This node's inboxes: users' conversations and notifications.
    pub inboxes: Arc<Inboxes>,
    pub metrics: Arc<Metrics>,
    pub redis: Option<RedisProbe>,
    /// This run of this process: the first half of every connection id it hands out.
    pub node: NodeId,
    /// The cluster this node is part of (or the node alone).
    pub bus: Arc<Bus>,
    /// This node's connections by id; also how node-wide events (shutdown, a node that died,
    /// messages between nodes lost) reach each of them.
    pub connections: Arc<Connections>,
    /// The second half: connections numbered in the order they were accepted.
    pub conn_ids: AtomicU64,
    /// Admission of WebSocket connections (per node, per user).
    pub gate: Arc<Gate>,
    /// TCP sockets accepted and not yet closed, upgraded or not.
    pub sockets: Arc<AtomicUsize>,
    /// Accepted sockets and WebSocket connections.
    pub conn_tracker: TaskTracker,
    /// WebSocket connections that may still read requests, or wait for other nodes to answer
    /// what they read: shutting down waits for each to stop before it stops the sessions, so
    /// that every request read is answered.
    pub readers: TaskTracker,
    /// Fires when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Set when the demo page may mint its own tokens (dev mode, on loopback).
    pub dev_tokens: Option<crate::transport::DevTokens>,
}
