//! The integration-test harness: a fresh database per test, a real server on 127.0.0.1:0, and a
//! WebSocket client that speaks the protocol's own types.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use convene_protocol::{
    ErrorCode, MemberView, Role, RoomId, Roster, RosterVersion, ServerMessage, SessionId, SessionView, UserId,
};
use convene_server::config::PresenceConfig;
use convene_server::store::Store;
use convene_server::{Config, auth};
use futures_util::{SinkExt as _, StreamExt as _};
use sqlx::Connection as _;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a test waits for an expected event before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
pub const SECRET: &str = "integration-test-secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// Postgres with two nodes over Redis: fixtures that support it put the session's owner on
    /// one node and everyone else on the other.
    TwoNodes,
}

/// How long dropping a test's Postgres database may take (it waits for a checkpoint).
const DROP_DATABASE_TIMEOUT: Duration = Duration::from_secs(60);

/// A database no other test uses, removed when its last handle is dropped.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub url: String,
    _dir: Option<std::sync::Arc<tempfile::TempDir>>,
    _pg: Option<std::sync::Arc<PgDatabase>>,
}

/// A Postgres database created for one test: dropped, with whatever is still connected to it,
/// when the test lets go of it.
#[derive(Debug)]
struct PgDatabase {
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped inside the test's runtime, which cannot wait on a future of its own here: the
        // database is dropped on a thread with a runtime of its own, and the test waits for it.
        let dropped = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let drop_it = async {
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await?;
                    conn.close().await?;
                    Ok(())
                };
                tokio::time::timeout(DROP_DATABASE_TIMEOUT, drop_it).await.context("timed out")?
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            // Left for the test script, which drops every test database before a run.
            Ok(Err(err)) => eprintln!("could not drop the test database {}: {err:#}", self.name),
            Err(_) => eprintln!("dropping the test database {} panicked", self.name),
        }
    }
}

impl TestDb {
    pub async fn new(backend: Backend) -> Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("convene.db").display());
                Ok(Self { url, _dir: Some(std::sync::Arc::new(dir)), _pg: None })
            }
            Backend::Postgres | Backend::TwoNodes => {
                let admin = std::env::var("CONVENE_TEST_POSTGRES")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
                let name = format!("convene_test_{}", Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.context("connecting to the test Postgres")?;
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
                conn.close().await?;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                let url = format!("{base}/{name}");
                Ok(Self { url, _dir: None, _pg: Some(std::sync::Arc::new(PgDatabase { admin, name })) })
            }
        }
    }

    /// Where a Postgres database's server listens: the `host:port` of its URL.
    pub fn server_addr(&self) -> Result<SocketAddr> {
        let authority = self.authority().context("not a Postgres URL")?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        host_port.parse().with_context(|| format!("{host_port} is not an ip:port"))
    }

    /// The same database reached through `proxy` (Postgres only).
    pub fn through(&self, proxy: &TcpProxy) -> Result<Self> {
        let authority = self.authority().context("not a Postgres URL")?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let url = self.url.replacen(host_port, &proxy.addr.to_string(), 1);
        Ok(Self { url, _dir: self._dir.clone(), _pg: self._pg.clone() })
    }

    fn authority(&self) -> Option<&str> {
        let rest = self.url.strip_prefix("postgres://")?;
        rest.split('/').next()
    }

    /// Ends every other session on this Postgres database, as a restart of the database would;
    /// returns how many there were.
    pub async fn drop_connections(&self) -> Result<i64> {
        let mut conn = sqlx::PgConnection::connect(&self.url).await?;
        let dropped: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        Ok(dropped)
    }

    /// A store on this database, for checking what the server persisted.
    pub async fn store(&self) -> Result<Store> {
        Store::connect(Some(&self.url), std::path::Path::new(".")).await.map_err(|e| anyhow!("{e}"))
    }
}

/// A user with a token signed by the test secret.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: UserId,
    pub role: Role,
    pub org: Option<Uuid>,
}

impl TestUser {
    pub fn new(role: Role, org: Option<Uuid>) -> Self {
        Self { id: UserId(Uuid::new_v4()), role, org }
    }

    pub fn token(&self) -> String {
        auth::mint(SECRET.as_bytes(), self.id.0, self.role, self.org, Duration::from_secs(3600)).unwrap_or_default()
    }
}

/// A server running in-process until dropped or stopped.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), convene_server::ServerError>>>,
    /// What it was started with, to start it again.
    config: Config,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Result<Self> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Result<Self> {
        let db = TestDb::new(backend).await?;
        Self::start_on(db, configure).await
    }

    pub async fn start_on(db: TestDb, configure: impl FnOnce(&mut Config)) -> Result<Self> {
        // `CONVENE_TEST_LOG=debug` (any filter) shows the servers' logs with the test's output.
        if let Ok(filter) = std::env::var("CONVENE_TEST_LOG") {
            let installed = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
            // Only the first test of a process installs it; later ones find it there.
            drop(installed);
        }
        let mut config = Config {
            database_url: Some(db.url.clone()),
            jwt_secret: Some(SECRET.to_owned()),
            // Each command's presence changes are published as it ends, so that tests of other
            // things read them in a fixed order; the presence tests set a window of their own.
            presence: PresenceConfig { window: Duration::ZERO, ..PresenceConfig::default() },
            ..Config::default()
        };
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(convene_server::run(listener, config.clone(), shutdown.clone()));
        let server = Self { addr, db, shutdown, task: Some(task), config };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Stops the server gracefully and starts it again on the same address and configuration:
    /// a new node, as after a deploy.
    pub async fn restart(&mut self) -> Result<()> {
        self.halt().await?;
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.shutdown = CancellationToken::new();
        self.task = Some(tokio::spawn(convene_server::run(listener, self.config.clone(), self.shutdown.clone())));
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Ok(response) = reqwest::get(self.http("/healthz")).await
                && response.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("server did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// Stops the server gracefully, waits for it, and hands back its database.
    pub async fn stop(mut self) -> Result<TestDb> {
        self.halt().await
    }

    /// [`Self::stop`], leaving the stopped server's handle in place.
    pub async fn halt(&mut self) -> Result<TestDb> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await?.map_err(|e| anyhow!("{e}"))?;
        }
        Ok(self.db.clone())
    }

    /// The value of one unlabelled series at `GET /metrics`.
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let text = reqwest::get(self.http("/metrics")).await?.text().await?;
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .with_context(|| format!("no series {name} in /metrics"))?
            .trim()
            .parse()
            .with_context(|| format!("the value of {name}"))
    }

    /// Creates a session over HTTP as `host`.
    pub async fn create_session(&self, host: &TestUser, body: serde_json::Value) -> Result<SessionView> {
        create_session_at(self.addr, host, body).await
    }
}

/// Creates a session over HTTP as `host` on the server listening at `addr`.
pub async fn create_session_at(addr: SocketAddr, host: &TestUser, body: serde_json::Value) -> Result<SessionView> {
    let url = format!("http://{addr}/v1/sessions");
    let response = reqwest::Client::new().post(url).bearer_auth(host.token()).json(&body).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("create session: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client over a real WebSocket.
#[derive(Debug)]
pub struct Client {
    pub ws: Ws,
}

impl Client {
    /// Connects and consumes the `hello`.
    pub async fn connect(server: &TestServer, user: &TestUser) -> Result<Self> {
        Self::connect_url(&server.ws_url(), user).await
    }

    /// Connects to the WebSocket endpoint at `ws_url` and reads the `hello`.
    pub async fn connect_url(ws_url: &str, user: &TestUser) -> Result<Self> {
        let url = format!("{ws_url}?access_token={}", user.token());
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let mut client = Self { ws };
        match client.recv().await? {
            ServerMessage::Hello { user_id, .. } if user_id == user.id => Ok(client),
            other => bail!("expected hello, got {other:?}"),
        }
    }

    pub async fn send_json(&mut self, value: serde_json::Value) -> Result<()> {
        self.send_raw(&value.to_string()).await
    }

    pub async fn send_raw(&mut self, text: &str) -> Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// The next server message, within [`EVENT_TIMEOUT`].
    /// The next message, but `room_counts`: counts go out on their own clock (at most one a
    /// second), so tests of anything else would otherwise find them wherever a second ends.
    /// [`Client::recv_any`] returns them too.
    pub async fn recv(&mut self) -> Result<ServerMessage> {
        loop {
            match self.recv_any().await? {
                ServerMessage::RoomCounts { .. } => {}
                message => return Ok(message),
            }
        }
    }

    /// The next message, whatever it is.
    pub async fn recv_any(&mut self) -> Result<ServerMessage> {
        let text = self.next_text(tokio::time::Instant::now() + EVENT_TIMEOUT, "message from the server").await?;
        serde_json::from_str(&text).with_context(|| format!("decoding {text}"))
    }

    /// The next text frame before `deadline` (one deadline for the whole wait: the server's pings
    /// must not keep extending it), failing on any frame but text and pings.
    async fn next_text(&mut self, deadline: tokio::time::Instant, awaited: &str) -> Result<String> {
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no {awaited} within {EVENT_TIMEOUT:?}"))?;
            match next {
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => bail!("unexpected frame {other:?}"),
                Some(Err(err)) => bail!("socket error: {err}"),
                None => bail!("the server closed the connection"),
            }
        }
    }

    /// Skips messages until one that `pick` accepts.
    pub async fn recv_until<T>(&mut self, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> Result<T> {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            if tokio::time::Instant::now() > deadline {
                bail!("the expected message did not arrive within {EVENT_TIMEOUT:?}");
            }
            if let Some(found) = pick(self.recv().await?) {
                return Ok(found);
            }
        }
    }

    /// The next message, which must be an error with `code`.
    pub async fn expect_error(&mut self, code: ErrorCode) -> Result<convene_protocol::ErrorReply> {
        match self.recv().await? {
            ServerMessage::Error(reply) if reply.code == code => Ok(reply),
            other => bail!("expected a {code:?} error, got {other:?}"),
        }
    }

    /// Round-trips a ping: every message queued before it has been received by then.
    pub async fn sync(&mut self) -> Result<Vec<ServerMessage>> {
        let id = format!("sync-{}", Uuid::new_v4().simple());
        self.send_json(serde_json::json!({"type": "ping", "request_id": id})).await?;
        let mut before = Vec::new();
        loop {
            match self.recv().await? {
                ServerMessage::Pong { request_id: Some(r) } if r.as_str() == id => return Ok(before),
                other => before.push(other),
            }
        }
    }

    /// Waits for a `presence_changed` showing `user` arrived or changed; returns how they look.
    pub async fn recv_presence_of(&mut self, user: UserId) -> Result<convene_protocol::MemberView> {
        self.recv_until(|m| arrivals(&m).into_iter().find(|view| view.user_id == user)).await
    }

    /// Waits for a `presence_changed` showing `user` left.
    pub async fn recv_departure_of(&mut self, user: UserId) -> Result<()> {
        self.recv_until(|m| departures(&m).contains(&user).then_some(())).await
    }

    /// Joins and returns the `joined` reply, failing on anything else. It returns once the
    /// device's own arrival reached it too (in the room's next diff, unless the room is too large
    /// to follow), so that what the test reads next is what others did.
    pub async fn join(&mut self, session: SessionId) -> Result<Joined> {
        self.send_json(serde_json::json!({"type": "join_session", "request_id": "join", "session_id": session}))
            .await?;
        self.joined().await
    }

    /// Joins as a device that takes part in its room's video.
    pub async fn join_video(&mut self, session: SessionId) -> Result<Joined> {
        self.send_json(
            serde_json::json!({"type": "join_session", "request_id": "join", "session_id": session, "video": true}),
        )
        .await?;
        self.joined().await
    }

    async fn joined(&mut self) -> Result<Joined> {
        let mut joined = match self.recv().await? {
            ServerMessage::Joined { rosters, you, rooms, session, .. } => Joined::new(rosters, you, rooms, session),
            other => bail!("expected joined, got {other:?}"),
        };
        if joined.rosters.iter().any(|roster| roster.room_id == joined.you.room_id && roster.live) {
            let me = joined.you.user_id;
            loop {
                let message = self.recv().await?;
                // The room may instead have grown too large to follow, which it says.
                let mine = arrivals(&message).iter().any(|view| view.user_id == me)
                    || matches!(&message, ServerMessage::PresenceChanged { rosters, .. }
                        if rosters.iter().any(|roster| !roster.live));
                joined.followed.push(message);
                if mine {
                    break;
                }
            }
        }
        Ok(joined)
    }

    /// Sends a request and waits for its own reply (`ok`, or an error), skipping events.
    pub async fn request(&mut self, mut body: serde_json::Value) -> Result<std::result::Result<(), ErrorCode>> {
        let id = format!("r-{}", Uuid::new_v4().simple());
        body["request_id"] = serde_json::json!(id);
        self.send_json(body).await?;
        self.recv_until(|m| match m {
            ServerMessage::Ok { request_id: Some(r) } if r.as_str() == id => Some(Ok(())),
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == id) => Some(Err(e.code)),
            _ => None,
        })
        .await
    }

    /// Pages the newest history of a room: the sequence numbers read, or the error code.
    pub async fn history(
        &mut self,
        session: SessionId,
        room: RoomId,
    ) -> Result<std::result::Result<Vec<i64>, ErrorCode>> {
        let id = format!("h-{}", Uuid::new_v4().simple());
        self.send_json(
            serde_json::json!({"type": "fetch_history", "request_id": id, "session_id": session, "room_id": room}),
        )
        .await?;
        self.recv_until(|m| match m {
            ServerMessage::History { request_id: Some(r), messages, .. } if r.as_str() == id => {
                Some(Ok(messages.iter().map(|m| m.seq).collect()))
            }
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == id) => Some(Err(e.code)),
            _ => None,
        })
        .await
    }

    /// Sends a chat message and waits for its acknowledgement, returning its sequence number.
    pub async fn post(&mut self, session: SessionId, room: RoomId, client_msg_id: &str, body: &str) -> Result<i64> {
        self.send_json(serde_json::json!({
            "type": "send_message", "request_id": client_msg_id, "session_id": session,
            "room_id": room, "client_msg_id": client_msg_id, "body": body,
        }))
        .await?;
        self.recv_until(|m| match m {
            ServerMessage::MessageAck { client_msg_id: c, seq, .. } if c.as_str() == client_msg_id => Some(Ok(seq)),
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == client_msg_id) => {
                Some(Err(anyhow!("send failed: {e:?}")))
            }
            _ => None,
        })
        .await?
    }

    /// Waits for `session_interrupted` for `session`; failing if the connection closes first.
    pub async fn interrupted(&mut self, session: SessionId) -> Result<()> {
        self.recv_until(|m| {
            matches!(m, ServerMessage::SessionInterrupted { session_id } if session_id == session).then_some(())
        })
        .await
    }

    /// Every text frame up to and including the reply to `request`, decoded as JSON.
    pub async fn read_until_reply_to(&mut self, request: &str) -> Result<Vec<serde_json::Value>> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let frame: serde_json::Value =
                serde_json::from_str(&self.next_text(deadline, &format!("reply to {request}")).await?)?;
            let answers = frame.get("request_id").and_then(|id| id.as_str()) == Some(request);
            frames.push(frame);
            if answers {
                return Ok(frames);
            }
        }
    }

    /// Every text frame until the server closes the connection, decoded as JSON, and the close
    /// code (`None` when the socket ended without a close frame).
    pub async fn read_to_close(&mut self) -> Result<(Vec<serde_json::Value>, Option<u16>)> {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(EVENT_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| anyhow!("the connection stayed open"))?;
            match next {
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(text.as_str())?),
                Some(Ok(Message::Close(frame))) => return Ok((frames, frame.map(|f| u16::from(f.code)))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok((frames, None)),
            }
        }
    }

    /// The close code once the server closes the connection, skipping what comes before.
    pub async fn closed_with(&mut self) -> Result<Option<u16>> {
        Ok(self.read_to_close().await?.1)
    }
}

/// The parts of `joined` tests look at.
#[derive(Debug)]
pub struct Joined {
    pub session: SessionView,
    pub you: convene_protocol::MemberView,
    /// Everyone the rosters show (a participant's room; every room for a host).
    pub members: Vec<convene_protocol::MemberView>,
    pub rosters: Vec<Roster>,
    pub rooms: Vec<convene_protocol::RoomView>,
    /// What came after `joined`, up to and with the diff that shows the device's own arrival.
    pub followed: Vec<ServerMessage>,
}

impl Joined {
    fn new(
        rosters: Vec<Roster>,
        you: convene_protocol::MemberView,
        rooms: Vec<convene_protocol::RoomView>,
        session: SessionView,
    ) -> Self {
        let members = rosters.iter().flat_map(|roster| roster.members.iter().cloned()).collect();
        Self { session, you, members, rosters, rooms, followed: Vec::new() }
    }
}

/// A client's rosters, kept as the protocol says: a whole roster replaces what the client held,
/// and a diff applies only to the version it names. Every step checks that the result has the
/// roster's `total`, so a test that feeds it everything a client received checks the diffs add
/// up.
#[derive(Debug, Default)]
pub struct RosterBook {
    rooms: std::collections::HashMap<RoomId, (RosterVersion, bool, std::collections::BTreeMap<UserId, MemberView>)>,
}

impl RosterBook {
    /// Takes in whatever rosters `message` carries.
    pub fn observe(&mut self, message: &ServerMessage) -> Result<()> {
        match message {
            ServerMessage::Joined { rosters, .. } | ServerMessage::PresenceChanged { rosters, .. } => {
                rosters.iter().try_for_each(|roster| self.apply(roster))
            }
            ServerMessage::Moved { roster, .. } => self.apply(roster),
            _ => Ok(()),
        }
    }

    pub fn apply(&mut self, roster: &Roster) -> Result<()> {
        let entry = match roster.since {
            None => {
                let members = roster.members.iter().map(|m| (m.user_id, m.clone())).collect();
                self.rooms.insert(roster.room_id, (roster.version, roster.live, members));
                return Ok(());
            }
            Some(since) => {
                if since.seq == 0 {
                    // Every room starts empty at 0.
                    self.rooms.entry(roster.room_id).or_insert((since, true, Default::default()));
                }
                let entry = self.rooms.get_mut(&roster.room_id).context("a diff of a roster never held")?;
                anyhow::ensure!(entry.0 == since, "a diff since {since:?} for a roster held at {:?}", entry.0);
                entry
            }
        };
        for member in &roster.members {
            entry.2.insert(member.user_id, member.clone());
        }
        for user in &roster.left {
            entry.2.remove(user);
        }
        entry.0 = roster.version;
        entry.1 = roster.live;
        anyhow::ensure!(
            !entry.1 || entry.2.len() == roster.total as usize,
            "{} members after the diff, {} at its version",
            entry.2.len(),
            roster.total
        );
        Ok(())
    }

    /// Who the client holds in `room`.
    pub fn members(&self, room: RoomId) -> Vec<UserId> {
        self.rooms.get(&room).map(|(_, _, members)| members.keys().copied().collect()).unwrap_or_default()
    }
}

/// The members a `presence_changed` shows arriving or changing, over all its rosters.
pub fn arrivals(message: &ServerMessage) -> Vec<convene_protocol::MemberView> {
    match message {
        ServerMessage::PresenceChanged { rosters, .. } => {
            rosters.iter().filter(|r| r.since.is_some()).flat_map(|r| r.members.iter().cloned()).collect()
        }
        _ => Vec::new(),
    }
}

/// The members a `presence_changed` shows leaving, over all its rosters.
pub fn departures(message: &ServerMessage) -> Vec<UserId> {
    match message {
        ServerMessage::PresenceChanged { rosters, .. } => rosters.iter().flat_map(|r| r.left.iter().copied()).collect(),
        _ => Vec::new(),
    }
}

/// A group session with a connected, joined host.
pub async fn group_session(server: &TestServer) -> Result<(TestUser, Client, SessionView)> {
    let org = Some(Uuid::new_v4());
    let host = TestUser::new(Role::Therapist, org);
    let session = server.create_session(&host, serde_json::json!({"session_type": "group"})).await?;
    let mut client = Client::connect(server, &host).await?;
    client.join(session.id).await?;
    Ok((host, client, session))
}

/// A group session, its host's client, and a member whose client joined and will read
/// nothing more (so it answers no ping either).
pub async fn session_with_silent_member(server: &TestServer) -> Result<(Client, SessionView, TestUser, Client)> {
    let (host, mut host_client, session) = group_session(server).await?;
    let member = TestUser::new(Role::Patient, host.org);
    let mut silent = Client::connect(server, &member).await?;
    silent.join(session.id).await?;
    host_client.recv_presence_of(member.id).await?;
    Ok((host_client, session, member, silent))
}

/// Lets a member send [`flood_room`]'s messages: bodies of 32 KB, and chat limits far above
/// what the flood needs.
pub fn allow_flooding(config: &mut Config) {
    config.chat.max_body_bytes = 32 * 1024;
    config.chat.burst = 1_000;
    config.chat.rate_per_sec = 1_000.0;
}

/// Sends the session's main room 200 messages of 30 KB and waits for their acknowledgements
/// (the server needs [`allow_flooding`]). Some 6 MB: more than the sockets to a member who reads
/// nothing hold, in fewer frames than that member's queue takes, so the server's writer to such
/// a member is left waiting on its socket.
pub async fn flood_room(client: &mut Client, session: &SessionView) -> Result<()> {
    const MESSAGES: usize = 200;
    let body = "w".repeat(30 * 1024);
    for i in 0..MESSAGES {
        client
            .send_json(serde_json::json!({"type": "send_message", "session_id": session.id,
                "room_id": session.main_room_id, "client_msg_id": format!("flood-{i}"), "body": body}))
            .await?;
    }
    let mut acked = 0;
    while acked < MESSAGES {
        if let ServerMessage::MessageAck { .. } = client.recv().await? {
            acked += 1;
        }
    }
    Ok(())
}

/// Defines each listed test once per backend: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    // On a current-thread runtime: what the test does between two awaits runs before any task
    // it started, such as a writer that would otherwise take its ops one at a time.
    (current_thread: $($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@modules tokio::test; $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@modules tokio::test(flavor = "multi_thread", worker_threads = 2); $($name),*);
    };
    (@modules $test:meta; $($name:ident),*) => {
        mod sqlite {
            $(
                #[$test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[$test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Defines each listed test once more, with its people on two nodes: `across_nodes::name`.
#[macro_export]
macro_rules! across_nodes {
    ($($name:ident),* $(,)?) => {
        mod across_nodes {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::common::Backend::TwoNodes).await
                }
            )*
        }
    };
}

/// A TCP proxy between the server and its database, which a test can cut (every connection
/// through it closed, new ones refused) and restore: a database outage that the shared
/// Postgres, still serving the other tests, does not notice.
#[derive(Debug)]
pub struct TcpProxy {
    pub addr: SocketAddr,
    state: std::sync::Arc<ProxyState>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    cut: std::sync::atomic::AtomicBool,
    /// Cancelled on every cut: every pipe open at that moment ends.
    pipes: std::sync::Mutex<CancellationToken>,
    /// Cancelled on a stall: every pipe stops passing bytes on, its sockets held open.
    stall: std::sync::Mutex<CancellationToken>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = std::sync::Arc::new(ProxyState::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if shared.cut.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let token = shared.pipes.lock().map(|t| t.clone()).unwrap_or_default();
                let stall = shared.stall.lock().map(|t| t.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    if stall.is_cancelled() {
                        // Accepted, and never answered until the proxy is cut.
                        token.cancelled().await;
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = token.cancelled() => {}
                        () = stall.cancelled() => token.cancelled().await,
                    }
                });
            }
        });
        Ok(Self { addr, state, _task: tokio_util::task::AbortOnDropHandle::new(task) })
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.state.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut pipes) = self.state.pipes.lock() {
            pipes.cancel();
            *pipes = CancellationToken::new();
        }
    }

    /// Keeps every connection through the proxy open but passes nothing on, and answers no new
    /// one: a database that hangs instead of failing. [`Self::cut`] ends it.
    pub fn stall(&self) {
        if let Ok(stall) = self.state.stall.lock() {
            stall.cancel();
        }
    }

    /// Takes new connections again, after a cut or a stall.
    pub fn restore(&self) {
        if let Ok(mut stall) = self.state.stall.lock() {
            *stall = CancellationToken::new();
        }
        self.state.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A database the test can make unreachable and bring back: Postgres through a [`TcpProxy`] it
/// cuts; SQLite by holding the database's write lock from a connection of its own.
#[derive(Debug)]
pub enum Outage {
    Proxy(TcpProxy),
    Lock { url: String, held: Option<sqlx::SqliteConnection> },
}

impl Outage {
    /// A server on a fresh database that this outage controls.
    pub async fn server(backend: Backend, configure: impl FnOnce(&mut Config)) -> Result<(TestServer, Self)> {
        let (db, outage) = Self::database(backend).await?;
        Ok((TestServer::start_on(db, configure).await?, outage))
    }

    /// A fresh database, as the code under test reaches it, and an outage that controls it.
    pub async fn database(backend: Backend) -> Result<(TestDb, Self)> {
        let db = TestDb::new(backend).await?;
        match backend {
            Backend::Postgres | Backend::TwoNodes => {
                let proxy = TcpProxy::start(db.server_addr()?).await?;
                Ok((db.through(&proxy)?, Self::Proxy(proxy)))
            }
            Backend::Sqlite => {
                let url = db.url.clone();
                Ok((db, Self::Lock { url, held: None }))
            }
        }
    }

    pub async fn begin(&mut self) -> Result<()> {
        match self {
            Self::Proxy(proxy) => proxy.cut(),
            Self::Lock { url, held } => {
                let mut conn = sqlx::SqliteConnection::connect(url).await?;
                sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await?;
                *held = Some(conn);
            }
        }
        Ok(())
    }

    pub async fn end(&mut self) -> Result<()> {
        match self {
            Self::Proxy(proxy) => proxy.restore(),
            Self::Lock { held, .. } => {
                if let Some(mut conn) = held.take() {
                    sqlx::query("ROLLBACK").execute(&mut conn).await?;
                    conn.close().await?;
                }
            }
        }
        Ok(())
    }
}
