//! The `convene` binary: `serve` (the default), `token` and `migrate`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};
use convene_protocol::Role;
use convene_server::config::{ClusterConfig, PresenceConfig, parse_duration, parse_timeout};
use convene_server::ice::IceConfig;
use convene_server::limits::{Budget, Budgets, parse_rate};
use convene_server::{ChatLimits, Config, ConnectionLimits, auth, open_store, run};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "convene", version, about = "Realtime coordination server for live video sessions")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (the default).
    Serve,
    /// Print an access token signed with the server's secret (the dev secret without one).
    Token(TokenArgs),
    /// Apply database migrations and exit.
    Migrate,
}

#[derive(Args)]
struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    sub: Uuid,
    /// patient, therapist, mentor, mentee, admin or support.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// The organization id (`app_metadata.organization_id`).
    #[arg(long)]
    org: Option<Uuid>,
    /// How long the token is valid, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CONVENE_BIND", default_value = "127.0.0.1:8080", global = true)]
    bind: String,
    /// Directory for the embedded database and the dev secret.
    #[arg(long, env = "CONVENE_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    /// postgres://… or sqlite:…; without it, SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// SQLite commit durability: `full` (synced every commit) or `normal` (survives a killed
    /// process; a power loss may lose the latest commits).
    #[arg(long, env = "CONVENE_SQLITE_SYNC", default_value = "full", value_parser = parse_durability, global = true)]
    sqlite_sync: convene_server::store::SqliteDurability,
    /// redis://…: join a cluster of nodes over this Redis (needs a Postgres DATABASE_URL).
    #[arg(long, env = "REDIS_URL", global = true)]
    redis_url: Option<String>,
    /// The cluster's name, prefixing its Redis keys and channels (clusters may share a Redis).
    #[arg(long, env = "CONVENE_CLUSTER", default_value = "convene", global = true)]
    cluster: String,
    /// How long a session's lease lasts unless its owner renews it: a dead owner's sessions are
    /// taken over after at most this long.
    #[arg(long, env = "CONVENE_LEASE_TTL", default_value = "5s", value_parser = parse_cluster_wait, global = true)]
    lease_ttl: Duration,
    /// How long a node may go unheard before its connections are announced as gone.
    #[arg(long, env = "CONVENE_NODE_TIMEOUT", default_value = "5s", value_parser = parse_cluster_wait, global = true)]
    node_timeout: Duration,
    /// HS256 secret for access tokens (Supabase's JWT secret); without it, dev mode.
    #[arg(long, env = "CONVENE_JWT_SECRET", hide_env_values = true, global = true)]
    jwt_secret: Option<String>,
    /// Key of the server-to-server API (`/v1/service/…`) for the application's backend; the API
    /// is off without it.
    #[arg(long, env = "CONVENE_SERVICE_KEY", hide_env_values = true, global = true)]
    service_key: Option<String>,
    /// JWKS URL whose keys verify RS256/ES256 tokens (Supabase: …/auth/v1/.well-known/jwks.json).
    #[arg(long, env = "CONVENE_JWKS_URL", global = true)]
    jwks_url: Option<String>,
    /// Required `iss` of access tokens.
    #[arg(long, env = "CONVENE_JWT_ISSUER", global = true)]
    jwt_issuer: Option<String>,
    /// Comma-separated allowed Origin values; empty allows any.
    #[arg(long, env = "CONVENE_ALLOWED_ORIGINS", value_delimiter = ',', global = true)]
    allowed_origins: Vec<String>,
    /// Close connections silent for this long.
    #[arg(long, env = "CONVENE_HEARTBEAT_TIMEOUT", default_value = "30s", value_parser = parse_timeout, global = true)]
    heartbeat_timeout: Duration,
    /// Largest WebSocket frame or message, in bytes: 4 KiB to 16 MiB, and room for the largest
    /// chat message with its request around it.
    #[arg(long, env = "CONVENE_MAX_FRAME_BYTES", default_value_t = 64 * 1024, global = true,
        value_parser = RangedU64ValueParser::<usize>::new().range(MIN_FRAME_BYTES..=MAX_FRAME_BYTES))]
    max_frame_bytes: usize,
    /// Largest chat message body, in bytes (at least 1).
    #[arg(long, env = "CONVENE_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024, global = true,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    max_message_bytes: usize,
    /// Sustained chat messages per second per user and session.
    #[arg(long, env = "CONVENE_CHAT_RATE", default_value_t = 10.0, value_parser = parse_rate, global = true)]
    chat_rate: f64,
    /// Chat messages a user may send in a burst.
    #[arg(long, env = "CONVENE_CHAT_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    chat_burst: u32,
    /// Messages per room kept for resuming clients.
    #[arg(long, env = "CONVENE_RESUME_WINDOW", default_value_t = 500, global = true)]
    resume_window: usize,
    /// Budgets as rate/burst (per user and session; frames and connects per user and node). Typing, default 2/6.
    #[arg(long, env = "CONVENE_LIMIT_TYPING", global = true)]
    limit_typing: Option<Budget>,
    /// Typing announcements per room, whoever types. Default 10/20.
    #[arg(long, env = "CONVENE_LIMIT_ROOM_TYPING", global = true)]
    limit_room_typing: Option<Budget>,
    /// Joins of a session, reconnects included. Default 0.5/10.
    #[arg(long, env = "CONVENE_LIMIT_JOIN", global = true)]
    limit_join: Option<Budget>,
    /// Presence status changes. Default 1/5.
    #[arg(long, env = "CONVENE_LIMIT_STATUS", global = true)]
    limit_status: Option<Budget>,
    /// Host broadcasts. Default 0.5/5.
    #[arg(long, env = "CONVENE_LIMIT_BROADCAST", global = true)]
    limit_broadcast: Option<Budget>,
    /// Help requests. Default 0.2/3.
    #[arg(long, env = "CONVENE_LIMIT_HELP", global = true)]
    limit_help: Option<Budget>,
    /// Host commands and changes of room. Default 20/60.
    #[arg(long, env = "CONVENE_LIMIT_COMMAND", global = true)]
    limit_command: Option<Budget>,
    /// History and roster pages. Default 5/20.
    #[arg(long, env = "CONVENE_LIMIT_HISTORY", global = true)]
    limit_history: Option<Budget>,
    /// WebRTC signals relayed to other devices. Default 20/200.
    #[arg(long, env = "CONVENE_LIMIT_SIGNAL", global = true)]
    limit_signal: Option<Budget>,
    /// Frames of any kind per user and node, over all their connections. Default 50/200.
    #[arg(long, env = "CONVENE_LIMIT_FRAMES", global = true)]
    limit_frames: Option<Budget>,
    /// WebSocket connections one user may open per node, reconnects included. Default 1/10.
    #[arg(long, env = "CONVENE_LIMIT_CONNECT", global = true)]
    limit_connect: Option<Budget>,
    /// Requests to the HTTP API per user and node (sessions, reports, ICE servers). Default 5/30.
    #[arg(long, env = "CONVENE_LIMIT_HTTP", global = true)]
    limit_http: Option<Budget>,
    /// Requests to the service API per node, over every caller with the key. Default 200/1000.
    #[arg(long, env = "CONVENE_LIMIT_SERVICE", global = true)]
    limit_service: Option<Budget>,
    /// How long someone a host denied must wait before knocking on the lobby again.
    #[arg(long, env = "CONVENE_DENY_COOLDOWN", default_value = "5m", value_parser = parse_duration, global = true)]
    deny_cooldown: Duration,
    /// Presence changes within this window reach each member as one frame (0 sends each at once).
    #[arg(long, env = "CONVENE_PRESENCE_WINDOW", default_value = "50ms", value_parser = parse_duration, global = true)]
    presence_window: Duration,
    /// Rooms with more members than this are not followed live by participants (they see the
    /// hosts and the count, and page the rest); hosts follow every room.
    #[arg(long, env = "CONVENE_ROSTER_LIMIT", default_value_t = 250, global = true)]
    roster_limit: usize,
    /// How long a request waits for the database before it is answered `unavailable`.
    #[arg(long, env = "CONVENE_DB_TIMEOUT", default_value = "3s", value_parser = parse_timeout, global = true)]
    db_timeout: Duration,
    /// WebSocket connections this node holds at most (default: the open-file limit less a
    /// reserve for the database, Redis and sockets in their handshake).
    #[arg(long, env = "CONVENE_MAX_CONNECTIONS", global = true)]
    max_connections: Option<usize>,
    /// WebSocket connections one user may hold on this node at once.
    #[arg(long, env = "CONVENE_MAX_SOCKETS_PER_USER", default_value_t = 10, global = true)]
    max_sockets_per_user: u32,
    /// Largest HTTP request head (request line and headers), in bytes; at least 8192.
    #[arg(long, env = "CONVENE_MAX_HEADER_BYTES", default_value_t = 16 * 1024, global = true)]
    max_header_bytes: usize,
    /// How long an upgrade refused with 429 waits before its answer: a client retrying in a
    /// loop is slowed to one attempt per delay per socket.
    #[arg(long, env = "CONVENE_REFUSAL_DELAY", default_value = "1s", value_parser = parse_duration, global = true)]
    refusal_delay: Duration,
    /// Time a client has to send its HTTP request head, upgrade included.
    #[arg(long, env = "CONVENE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_timeout, global = true)]
    handshake_timeout: Duration,
    /// Time a client has to take in one batch of frames before it is closed as slow.
    #[arg(long, env = "CONVENE_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_timeout, global = true)]
    write_timeout: Duration,
    /// Comma-separated STUN server URLs (`stun:host:port`) for the browsers' peer connections.
    #[arg(long, env = "CONVENE_STUN_URLS", value_delimiter = ',', global = true)]
    stun_urls: Vec<String>,
    /// Comma-separated TURN server URLs (`turn:host:port?transport=udp`, `turns:…`); needs
    /// CONVENE_TURN_SECRET.
    #[arg(long, env = "CONVENE_TURN_URLS", value_delimiter = ',', global = true)]
    turn_urls: Vec<String>,
    /// The secret shared with the TURN servers (coturn's `static-auth-secret`).
    #[arg(long, env = "CONVENE_TURN_SECRET", hide_env_values = true, global = true)]
    turn_secret: Option<String>,
    /// How long TURN credentials are accepted after they are handed out.
    #[arg(long, env = "CONVENE_TURN_TTL", default_value = "12h", value_parser = parse_duration, global = true)]
    turn_ttl: Duration,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "CONVENE_LOG_JSON", global = true)]
    log_json: bool,
    /// Threads that run connections and sessions (default: the cores this process may use). With
    /// one, the server runs on the single-threaded scheduler.
    #[arg(long, env = "CONVENE_WORKER_THREADS", global = true,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_WORKER_THREADS))]
    worker_threads: Option<usize>,
}

/// More worker threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: u64 = 1024;

/// The smallest frame limit: a join that resumes in several rooms carries a cursor for each.
const MIN_FRAME_BYTES: u64 = 4 * 1024;
/// The largest frame limit: a client's frame is read whole into memory, so this bounds what
/// one socket can make the server hold.
const MAX_FRAME_BYTES: u64 = 16 * 1024 * 1024;
/// What a request adds to the chat message it carries (its type, ids and quoting), at most.
const CHAT_REQUEST_BYTES: usize = 1024;

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        anyhow::ensure!(
            self.max_message_bytes.saturating_add(CHAT_REQUEST_BYTES) <= self.max_frame_bytes,
            "a chat message of --max-message-bytes ({}) and its request ({CHAT_REQUEST_BYTES} bytes) \
             must fit in a frame of --max-frame-bytes ({}): raise the frame limit or lower the message limit",
            self.max_message_bytes,
            self.max_frame_bytes,
        );
        let urls = |urls: &[String]| urls.iter().filter(|url| !url.is_empty()).cloned().collect();
        let ice = IceConfig::new(urls(&self.stun_urls), urls(&self.turn_urls), self.turn_secret.clone(), self.turn_ttl)
            .context("the ICE servers")?;
        Ok(Config {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            cluster: ClusterConfig {
                name: self.cluster.clone(),
                lease_ttl: self.lease_ttl,
                heartbeat_interval: (self.node_timeout / 5).max(Duration::from_millis(100)),
                node_timeout: self.node_timeout,
                ..ClusterConfig::default()
            }
            .answering_within(self.db_timeout),
            sqlite_durability: self.sqlite_sync,
            jwt_secret: self.jwt_secret.clone(),
            service_key: self.service_key.clone(),
            jwks_url: self.jwks_url.clone(),
            jwt_issuer: self.jwt_issuer.clone(),
            allowed_origins: self.allowed_origins.iter().filter(|o| !o.is_empty()).cloned().collect(),
            heartbeat_timeout: self.heartbeat_timeout,
            handshake_timeout: self.handshake_timeout,
            write_timeout: self.write_timeout,
            db_timeout: self.db_timeout,
            deny_cooldown: self.deny_cooldown,
            presence: PresenceConfig {
                window: self.presence_window,
                roster_limit: self.roster_limit,
                ..PresenceConfig::default()
            },
            budgets: self.budgets(),
            limits: ConnectionLimits {
                max_connections: self.max_connections.unwrap_or_else(default_max_connections),
                max_sockets_per_user: self.max_sockets_per_user,
                max_header_bytes: self.max_header_bytes,
                refusal_delay: self.refusal_delay,
            },
            max_frame_bytes: self.max_frame_bytes,
            chat: ChatLimits {
                max_body_bytes: self.max_message_bytes,
                rate_per_sec: self.chat_rate,
                burst: self.chat_burst,
                resume_window: self.resume_window,
            },
            ice,
            ..Config::default()
        })
    }
}

impl ServeArgs {
    fn budgets(&self) -> Budgets {
        let default = Budgets::default();
        Budgets {
            typing: self.limit_typing.unwrap_or(default.typing),
            room_typing: self.limit_room_typing.unwrap_or(default.room_typing),
            join: self.limit_join.unwrap_or(default.join),
            status: self.limit_status.unwrap_or(default.status),
            broadcast: self.limit_broadcast.unwrap_or(default.broadcast),
            help: self.limit_help.unwrap_or(default.help),
            command: self.limit_command.unwrap_or(default.command),
            history: self.limit_history.unwrap_or(default.history),
            signal: self.limit_signal.unwrap_or(default.signal),
            frames: self.limit_frames.unwrap_or(default.frames),
            connect: self.limit_connect.unwrap_or(default.connect),
            http: self.limit_http.unwrap_or(default.http),
            service: self.limit_service.unwrap_or(default.service),
        }
    }
}

/// The shortest lease and node timeout. A lease is renewed every third of it and a node beats
/// every fifth of its timeout (never more often than every 100 ms): shorter, and one slow round
/// trip to Redis or one late beat would hand a live node's sessions over, or announce its
/// people as gone.
const MIN_CLUSTER_WAIT: Duration = Duration::from_millis(500);

fn parse_cluster_wait(text: &str) -> Result<Duration, String> {
    let wait = parse_timeout(text)?;
    if wait < MIN_CLUSTER_WAIT {
        return Err(format!(
            "{text:?} is shorter than {}ms: a live node would be taken for dead",
            MIN_CLUSTER_WAIT.as_millis()
        ));
    }
    Ok(wait)
}

fn parse_durability(text: &str) -> Result<convene_server::store::SqliteDurability, String> {
    match text {
        "full" => Ok(convene_server::store::SqliteDurability::Full),
        "normal" => Ok(convene_server::store::SqliteDurability::Normal),
        other => Err(format!("{other:?} is not full or normal")),
    }
}

fn parse_role(text: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is not one of patient, therapist, mentor, mentee, admin, support"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.serve.log_json);
    let config = cli.serve.config()?;
    let runtime = runtime(cli.serve.worker_threads).context("starting the runtime")?;
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => runtime.block_on(serve(&cli.serve.bind, config)),
        Cmd::Migrate => runtime.block_on(async {
            open_store(&config).await.context("applying migrations")?;
            info!("migrations applied");
            Ok(())
        }),
        Cmd::Token(args) => {
            let secret = convene_server::server::jwt_secret(&config).context("reading the JWT secret")?;
            let token = auth::mint(&secret, args.sub, args.role, args.org, args.ttl)?;
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            Ok(())
        }
    }
}

/// How the runtime schedules tasks.
#[derive(Debug, PartialEq, Eq)]
enum Scheduler {
    SingleThreaded,
    /// Work stealing over this many workers (tokio's default without one).
    WorkStealing(Option<usize>),
}

/// The scheduler for `setting` workers, by default one per core this process may use (`cores`).
/// On one core the work-stealing scheduler has nothing to balance, and its bookkeeping on every
/// task wake-up costs about 5 % of the CPU per delivery (docs/benchmarks.md): one worker gets the
/// single-threaded scheduler instead.
fn scheduler(setting: Option<usize>, cores: Option<usize>) -> Scheduler {
    match setting.or(cores) {
        Some(1) => Scheduler::SingleThreaded,
        workers => Scheduler::WorkStealing(workers),
    }
}

fn runtime(setting: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().ok().map(std::num::NonZero::get);
    let mut builder = match scheduler(setting, cores) {
        Scheduler::SingleThreaded => tokio::runtime::Builder::new_current_thread(),
        Scheduler::WorkStealing(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(workers) = workers {
                builder.worker_threads(workers);
            }
            builder
        }
    };
    builder.enable_all().build()
}

async fn serve(bind: &str, config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    info!(scheduler = ?runtime.runtime_flavor(), worker_threads = runtime.metrics().num_workers(), "runtime started");
    raise_fd_limit();
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("binding {bind}"))?;
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received; shutting down");
        signals.cancel();
    });
    run(listener, config, shutdown).await?;
    Ok(())
}

/// Descriptors kept for everything but WebSocket connections: the database pool, Redis, log
/// files, and sockets still in their HTTP handshake.
const RESERVED_DESCRIPTORS: u64 = 1024 + 512;

/// The open-file limit (raised to its hard limit) less the reserve.
fn default_max_connections() -> usize {
    raise_fd_limit();
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _hard)) => usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS).max(64)).unwrap_or(usize::MAX),
        Err(_) => ConnectionLimits::default().max_connections,
    }
}

/// Raises the soft open-file limit to the hard limit: every connection is a descriptor.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open file limit"),
        Err(err) => warn!(error = %err, "could not raise the open file limit"),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                warn!("could not install signal handlers; only Ctrl-C stops the server");
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CONVENE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use super::{Cli, Scheduler, scheduler};

    #[test]
    fn the_cluster_timings_follow_the_node_and_database_timeouts_given() {
        let cases: [(&[&str], u64, u64); 4] = [
            // (arguments, heartbeat interval in ms, relayed requests' answer timeout in s)
            (&[], 1_000, 20),
            (&["--node-timeout", "2s"], 400, 20),
            (&["--node-timeout", "500ms"], 100, 20),
            (&["--db-timeout", "10s"], 1_000, 40),
        ];
        for (args, heartbeat_ms, answer_s) in cases {
            let cli = Cli::try_parse_from(std::iter::once("convene").chain(args.iter().copied())).unwrap();
            let cluster = cli.serve.config().unwrap().cluster;
            assert_eq!(cluster.heartbeat_interval, Duration::from_millis(heartbeat_ms), "{args:?}");
            assert_eq!(cluster.answer_timeout, Duration::from_secs(answer_s), "{args:?}");
        }
    }

    #[test]
    fn one_worker_by_setting_or_by_cores_gets_the_single_threaded_scheduler() {
        let cases = [
            // (setting, cores the process may use, scheduler)
            (None, Some(1), Scheduler::SingleThreaded),
            (Some(1), Some(8), Scheduler::SingleThreaded),
            (None, Some(4), Scheduler::WorkStealing(Some(4))),
            (Some(3), Some(1), Scheduler::WorkStealing(Some(3))),
            (None, None, Scheduler::WorkStealing(None)),
        ];
        for (setting, cores, expected) in cases {
            assert_eq!(scheduler(setting, cores), expected, "setting {setting:?}, cores {cores:?}");
        }
    }
}
