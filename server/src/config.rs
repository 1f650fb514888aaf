//! Server configuration, as the library sees it. The binary fills it from flags and environment
//! variables (see `docs/operations.md`); tests build it directly.

use std::path::PathBuf;
use std::time::Duration;

/// Everything [`crate::run`] needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the embedded SQLite database and the dev secret live.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite:…`; without it, SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// With it, the node joins a cluster of nodes over this Redis (which needs a Postgres
    /// `database_url`, the cluster's shared record).
    pub redis_url: Option<String>,
    /// The cluster's name and timing.
    pub cluster: ClusterConfig,
    /// How the embedded SQLite database syncs commits (ignored for Postgres).
    pub sqlite_durability: crate::store::SqliteDurability,
    /// HS256 secret; without it the server runs in dev mode with a generated one.
    pub jwt_secret: Option<String>,
    /// The key the application's backend presents to the service API (`/v1/service/…`);
    /// without it the service API is off.
    pub service_key: Option<String>,
    /// A JWKS URL (Supabase: `https://<project>.supabase.co/auth/v1/.well-known/jwks.json`):
    /// RS256 and ES256 tokens are verified with its keys.
    pub jwks_url: Option<String>,
    /// When set, tokens must carry this `iss`.
    pub jwt_issuer: Option<String>,
    /// Allowed `Origin` values for WebSocket upgrades; empty allows any (and requests without one).
    pub allowed_origins: Vec<String>,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub heartbeat_timeout: Duration,
    /// Time allowed for a client to send its HTTP request headers, upgrade included.
    pub handshake_timeout: Duration,
    /// A client that takes longer than this to take in one batch of frames is closed as slow
    /// (4008), together with what was still queued for it.
    pub write_timeout: Duration,
    /// Largest WebSocket frame or message accepted; larger ones close the connection with 1009.
    pub max_frame_bytes: usize,
    pub chat: ChatLimits,
    /// What members may spend on everything that fans out or writes.
    pub budgets: crate::limits::Budgets,
    /// How long someone a host denied must wait before knocking on the lobby again.
    pub deny_cooldown: Duration,
    /// How presence changes are coalesced, and which rooms are followed live.
    pub presence: PresenceConfig,
    /// How long a request waits for the database before it is answered `unavailable`.
    pub db_timeout: Duration,
    /// How many connections this node and each user may hold, and how large a request may be.
    pub limits: ConnectionLimits,
    /// How long a session with nobody connected stays loaded before it is released.
    pub session_idle_grace: Duration,
    /// Instant sessions not started within this time after creation expire.
    pub instant_session_ttl: Duration,
    /// How often expired instant sessions are swept.
    pub sweep_interval: Duration,
    /// The STUN and TURN servers handed to browsers for their peer connections.
    pub ice: crate::ice::IceConfig,
}

/// Limits on connections, checked before the WebSocket upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// WebSocket connections this node holds at most; beyond it upgrades get 503. Keep it below
    /// the process's open-file limit, which every socket (and the database pool) draws on.
    pub max_connections: usize,
    /// WebSocket connections one user may hold on this node at once; beyond it upgrades get 429.
    pub max_sockets_per_user: u32,
    /// Largest HTTP request head (request line and headers); larger ones get 431.
    pub max_header_bytes: usize,
    /// How long an upgrade refused with 429 (too many sockets, or opened too fast) is held before
    /// it is answered: a client retrying in a loop then costs one attempt per delay per socket.
    pub refusal_delay: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_sockets_per_user: 10,
            max_header_bytes: 16 * 1024,
            refusal_delay: Duration::from_secs(1),
        }
    }
}

/// A cluster of nodes over one Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Prefixes every Redis key and channel of the cluster, so clusters may share a Redis.
    pub name: String,
    /// How long a session's lease lasts unless renewed: how long a dead owner's sessions wait
    /// before another node takes them over.
    pub lease_ttl: Duration,
    /// How often a node records its heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a node may go unheard before it counts as dead and its connections leave.
    pub node_timeout: Duration,
    /// How long a request relayed to the node owning its session may wait for the answer; the
    /// relaying node then answers it `unavailable` (checked on the connection's heartbeat, so
    /// up to a heartbeat interval later). Every answer an owner gives is bounded well below it
    /// (its database waits by `db_timeout`; see [`ClusterConfig::answering_within`]): this
    /// catches an answer that was lost without any node dying or any message between nodes
    /// being missed.
    pub answer_timeout: Duration,
}

impl ClusterConfig {
    /// With owners whose database waits are bounded by `db_timeout`: the answer timeout is at
    /// least four such waits (a load, a write and their retries), so that an answer an owner is
    /// still working towards is not given up on.
    #[must_use]
    pub fn answering_within(mut self, db_timeout: Duration) -> Self {
        self.answer_timeout = self.answer_timeout.max(db_timeout.saturating_mul(4));
        self
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: "convene".to_owned(),
            lease_ttl: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(20),
        }
    }
}

/// Limits on room chat.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChatLimits {
    /// Largest message body, in bytes.
    pub max_body_bytes: usize,
    /// Messages per second a user may send in one session, sustained.
    pub rate_per_sec: f64,
    /// Messages a user may send in a burst above the sustained rate.
    pub burst: u32,
    /// Messages per room kept in memory for resuming clients; a gap wider than this is reported
    /// as not recovered.
    pub resume_window: usize,
}

/// How presence reaches members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceConfig {
    /// Presence changes within this window after the first reach each member as one frame.
    /// Zero publishes every change at once (one frame per command).
    pub window: Duration,
    /// A room with more members than this is not followed live by its participants (they see
    /// its hosts and count and page the rest); it is followed again once it has half as many.
    /// It bounds the largest roster frame (about 200 bytes a member), which matters beyond the
    /// frame: a connection's write buffer keeps the capacity of the largest frame it ever sent.
    pub roster_limit: usize,
    /// Room counts go out at most this often.
    pub counts_interval: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { window: Duration::from_millis(50), roster_limit: 250, counts_interval: Duration::from_secs(1) }
    }
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self { max_body_bytes: 4 * 1024, rate_per_sec: 10.0, burst: 20, resume_window: 500 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            cluster: ClusterConfig::default(),
            sqlite_durability: crate::store::SqliteDurability::Full,
            jwt_secret: None,
            service_key: None,
            jwks_url: None,
            jwt_issuer: None,
            allowed_origins: Vec::new(),
            heartbeat_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024,
            chat: ChatLimits::default(),
            budgets: crate::limits::Budgets::default(),
            db_timeout: Duration::from_secs(3),
            deny_cooldown: Duration::from_secs(5 * 60),
            presence: PresenceConfig::default(),
            limits: ConnectionLimits::default(),
            session_idle_grace: Duration::from_secs(60),
            instant_session_ttl: Duration::from_secs(24 * 60 * 60),
            sweep_interval: Duration::from_secs(60),
            ice: crate::ice::IceConfig::default(),
        }
    }
}

impl Config {
    /// How often the server pings each connection: three pings fit in the timeout, so one lost
    /// pong does not cost a connection.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_timeout / 3
    }
}

/// Parses durations written as `500ms`, `30s`, `5m`, `1h` or `2d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(value)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} has an unknown unit (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(value.saturating_mul(seconds)))
}

/// Parses a duration that bounds a wait (as [`parse_duration`]), which must be longer than
/// zero: a zero timeout would end every wait it bounds at once.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?} is zero; this bounds a wait, so it must be longer"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_with_units() {
        let cases = [("500ms", 500), ("30s", 30_000), ("30", 30_000), ("5m", 300_000), ("1h", 3_600_000)];
        for (text, millis) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(millis)), "{text}");
        }
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn a_timeout_must_be_longer_than_zero() {
        for zero in ["0", "0s", "0ms", "0m"] {
            assert!(parse_timeout(zero).is_err(), "{zero}");
        }
        assert_eq!(parse_timeout("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn relayed_requests_wait_longer_than_an_owner_may_wait_on_its_database() {
        let cases = [(3, 20), (5, 20), (6, 24), (30, 120)];
        for (db_timeout, answer_timeout) in cases {
            let cluster = ClusterConfig::default().answering_within(Duration::from_secs(db_timeout));
            assert_eq!(cluster.answer_timeout, Duration::from_secs(answer_timeout), "db timeout {db_timeout}s");
        }
    }
}
