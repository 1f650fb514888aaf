//! Assembling and running the server: [`run`] starts everything on a listener and, when the
//! shutdown token fires, stops it in dependency order.
//!
//! Shutdown order: stop accepting; make every connection stop reading requests; stop the session
//! actors, which carry out what they were sent, record this node's connections as departed and
//! see their writes through (answering each request); hand their leases over; close every
//! connection with 1012, after the answers queued to it; then let the writer drain its queue and
//! close the database. Everything acknowledged is on disk when `run` returns, and every request
//! a connection read was answered before its close.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use convene_protocol::{NodeId, SessionId};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admission::Gate;
use crate::app::App;
use crate::auth::{self, AuthError, Verifier};
use crate::bus::redis::{RedisBus, RedisError, RedisProbe};
use crate::bus::{Bus, Timing};
use crate::cluster::{self, Cluster};
use crate::config::Config;
use crate::inbox::{DirectBudgets, Inboxes};
use crate::limits::Budget;
use crate::metrics::Metrics;
use crate::outbound::{CloseReason, Connections};
use crate::session::{Registry, Rules, SessionDeps};
use crate::store::{Backend, Store, StoreError, Writer};
use crate::transport;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("{0}")]
    Config(&'static str),
}

/// The HS256 secret from the configuration or, in dev mode, from the data directory.
pub fn jwt_secret(config: &Config) -> Result<Vec<u8>, AuthError> {
    match &config.jwt_secret {
        Some(secret) => Ok(secret.as_bytes().to_vec()),
        None => {
            let (secret, _created) = auth::dev_secret(&config.data_dir)?;
            warn!(data_dir = %config.data_dir.display(), "dev mode: no CONVENE_JWT_SECRET set; using the generated secret in the data directory");
            Ok(secret)
        }
    }
}

/// The HS256 secret tokens are verified with: the configured one; dev mode's generated one when
/// neither a secret nor a JWKS is configured; none with a JWKS alone.
fn hs256_secret(config: &Config) -> Result<Option<Vec<u8>>, AuthError> {
    match (&config.jwt_secret, &config.jwks_url) {
        (None, Some(_)) => Ok(None),
        _ => jwt_secret(config).map(Some),
    }
}

/// The token verifier: HS256 with `secret`, RS256/ES256 with the configured JWKS.
async fn verifier(config: &Config, secret: Option<&[u8]>) -> Result<Verifier, AuthError> {
    let jwks = match &config.jwks_url {
        Some(url) => {
            let jwks = auth::Jwks::new(url)?;
            // An issuer briefly unreachable must not keep the server down: keys are fetched again
            // when a token needs them.
            match jwks.refresh().await {
                Ok(keys) => info!(keys, "fetched the JWKS"),
                Err(err) => warn!(error = %err, "could not fetch the JWKS at start; will retry on demand"),
            }
            Some(jwks)
        }
        None => None,
    };
    Ok(Verifier::new(secret, jwks, config.jwt_issuer.as_deref()))
}

/// Opens the database and applies migrations: what `convene migrate` does.
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    let store = Store::connect_with(config.database_url.as_deref(), &config.data_dir, config.sqlite_durability).await?;
    store.migrate().await?;
    Ok(store)
}

/// Serves on `listener` until `shutdown` is cancelled, then shuts down gracefully.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<(), ServerError> {
    let store = open_store(&config).await?;
    if config.redis_url.is_some() && store.backend() != Backend::Postgres {
        return Err(ServerError::Config(
            "REDIS_URL makes this node one of a cluster, whose nodes share one database: \
             set DATABASE_URL to a Postgres database (an SQLite file belongs to a single node)",
        ));
    }
    // Read once: the verifier checks tokens with it, and dev mode's demo page mints them with it.
    let secret = hs256_secret(&config)?;
    let verifier = verifier(&config, secret.as_deref()).await?;
    let redis = config.redis_url.as_deref().map(RedisProbe::new).transpose()?;
    let metrics = Arc::new(Metrics::default());
    let node = NodeId(rand::random());

    // The bus first: sessions reach other nodes' connections through it.
    let bus_tracker = TaskTracker::new();
    let bus_shutdown = CancellationToken::new();
    let (inbox, inbox_rx) = mpsc::channel(cluster::INBOX_CAPACITY);
    let timing = Timing {
        lease_ttl: config.cluster.lease_ttl,
        heartbeat_interval: config.cluster.heartbeat_interval,
        node_timeout: config.cluster.node_timeout,
    };
    let bus = Arc::new(match &config.redis_url {
        Some(url) => {
            let redis = RedisBus::connect(
                url,
                &config.cluster.name,
                node,
                inbox,
                metrics.clone(),
                &bus_tracker,
                bus_shutdown.clone(),
            )
            .await?;
            Bus::redis(node, redis, timing, metrics.clone())
        }
        None => Bus::alone(node, timing, metrics.clone()),
    });

    let writer_tracker = TaskTracker::new();
    let writer_shutdown = CancellationToken::new();
    let writer =
        Writer::spawn(store.clone(), metrics.clone(), &writer_tracker, writer_shutdown.clone(), config.db_timeout);

    let connections = Arc::new(Connections::default());
    let session_tracker = TaskTracker::new();
    let session_shutdown = CancellationToken::new();
    let inbox_shutdown = CancellationToken::new();
    let inboxes = Inboxes::new(
        store.clone(),
        writer.clone(),
        bus.clone(),
        metrics.clone(),
        inbox_shutdown.clone(),
        config.db_timeout,
        DirectBudgets {
            send: Budget::new(config.chat.rate_per_sec, config.chat.burst),
            typing: config.budgets.typing,
            read: config.budgets.history,
            write: config.budgets.command,
            max_body_bytes: config.chat.max_body_bytes,
        },
    );
    let registry = Registry::new(SessionDeps {
        store: store.clone(),
        writer,
        metrics: metrics.clone(),
        connections: connections.clone(),
        bus: bus.clone(),
        rules: Rules {
            chat: config.chat,
            budgets: config.budgets,
            deny_cooldown: config.deny_cooldown,
            presence: config.presence,
        },
        ice: config.ice.clone(),
        db_timeout: config.db_timeout,
        idle_grace: config.session_idle_grace,
        tracker: session_tracker.clone(),
        shutdown: session_shutdown.clone(),
    });
    session_tracker.spawn(sweep_expired_sessions(store.clone(), config.sweep_interval, session_shutdown.clone()));

    let cluster = Arc::new(Cluster {
        bus: bus.clone(),
        registry: registry.clone(),
        connections: connections.clone(),
        inboxes: inboxes.clone(),
        metrics: metrics.clone(),
    });
    if bus.is_clustered() {
        // Heard from before serving: no other node may take this one for dead.
        if let Err(err) = bus.heartbeat().await {
            warn!(error = %err, "the first heartbeat failed; the heartbeat task retries");
        }
        cluster.spawn(inbox_rx, &bus_tracker, &bus_shutdown);
    }
    // Devices of nodes that are gone (this one's earlier runs included) look at nothing.
    inboxes.forget_focus_except(&bus.alive()).await;

    let gate = Gate::new(config.limits, &config.budgets);
    let local_addr = listener.local_addr();
    let dev_tokens = match &local_addr {
        Ok(addr) => transport::DevTokens::for_node(&config, *addr, secret),
        Err(err) => {
            warn!(error = %err, "the listener has no local address; the demo page will not mint tokens");
            None
        }
    };
    if dev_tokens.is_some() {
        info!("dev mode: the demo page at / mints its own tokens (POST /v1/dev/token)");
    }
    let app = Arc::new(App {
        config,
        verifier,
        store: store.clone(),
        registry,
        inboxes: inboxes.clone(),
        metrics,
        redis,
        node,
        bus: bus.clone(),
        connections,
        conn_ids: AtomicU64::new(1),
        gate,
        sockets: Arc::new(AtomicUsize::new(0)),
        conn_tracker: TaskTracker::new(),
        readers: TaskTracker::new(),
        shutdown,
        dev_tokens,
    });
    if let Ok(addr) = local_addr {
        info!(%addr, %node, backend = ?store.backend(), "convene listening");
    }
    transport::serve(listener, app.clone()).await;

    info!("shutting down: connections stop reading");
    // A connection registered after this sees the shutdown itself (see `transport::ws::run`).
    app.connections.stop_reading_all();
    app.readers.close();
    app.readers.wait().await;
    info!("stopping sessions");
    let owned: Vec<SessionId> = app.registry.all_running().iter().map(|local| local.id).collect();
    session_shutdown.cancel();
    session_tracker.close();
    session_tracker.wait().await;
    // The sessions' writes are committed: another node may take them over at once.
    for session in owned {
        if let Err(err) = bus.release(session).await {
            warn!(error = %err, %session, "could not release a session's lease; it runs out instead");
        }
    }
    info!("closing connections");
    // Every request they read is answered by now, the answers queued ahead of the close.
    app.connections.close_all(CloseReason::Restarting);
    app.conn_tracker.close();
    app.conn_tracker.wait().await;
    inbox_shutdown.cancel();
    inboxes.wait().await;
    if let Err(err) = bus.leave().await {
        warn!(error = %err, "could not leave the cluster's heartbeats; the others notice after the timeout");
    }
    bus_shutdown.cancel();
    bus_tracker.close();
    bus_tracker.wait().await;
    drop(cluster);
    drop(app);
    info!("flushing writes");
    writer_shutdown.cancel();
    writer_tracker.close();
    writer_tracker.wait().await;
    store.close().await;
    info!("stopped");
    Ok(())
}

/// Ends instant sessions that expired unstarted, periodically.
async fn sweep_expired_sessions(store: Store, every: std::time::Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => match store.expire_instant_sessions(chrono::Utc::now()).await {
                Ok(0) => {}
                Ok(ended) => info!(ended, "expired unstarted instant sessions"),
                Err(err) => warn!(error = %err, "expiry sweep failed"),
            },
            () = shutdown.cancelled() => break,
        }
    }
}
