//! Several nodes of one cluster, started in this process: one fresh Postgres database and one
//! cluster name (so one Redis serves every test without crosstalk) per test.

use std::time::Duration;

use anyhow::{Result, bail};
use convene_server::Config;
use uuid::Uuid;

use crate::common::{Backend, TestDb, TestServer};

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("CONVENE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Nodes sharing a database and a Redis.
pub struct TestCluster {
    pub nodes: Vec<TestServer>,
    pub db: TestDb,
}

impl TestCluster {
    pub async fn start(count: usize) -> Result<Self> {
        Self::start_with(count, redis_url(), |_| {}).await
    }

    /// Starts `count` nodes on `redis`, all at once (migrations and all), each configured by
    /// `configure` after the cluster's own settings (short leases and heartbeats, so failures
    /// show within a test's patience).
    pub async fn start_with(count: usize, redis: String, configure: impl Fn(&mut Config)) -> Result<Self> {
        let db = TestDb::new(Backend::Postgres).await?;
        let name = format!("test-{}", Uuid::new_v4().simple());
        let starts = (0..count).map(|_| {
            TestServer::start_on(db.clone(), |config| {
                join_cluster(config, &redis, &name);
                configure(config);
            })
        });
        let nodes = futures_util::future::try_join_all(starts).await?;
        Ok(Self { nodes, db })
    }

    pub fn node(&self, index: usize) -> &TestServer {
        &self.nodes[index]
    }
}

/// Makes `config` a node of cluster `name` on `redis`, with short leases and heartbeats, so that
/// failures show within a test's patience.
pub fn join_cluster(config: &mut Config, redis: &str, name: &str) {
    config.redis_url = Some(redis.to_owned());
    config.cluster.name = name.to_owned();
    config.cluster.lease_ttl = Duration::from_secs(2);
    config.cluster.heartbeat_interval = Duration::from_millis(200);
    config.cluster.node_timeout = Duration::from_secs(2);
}

/// A node of a cluster running as its own `convene` process, so that it can be killed, paused
/// and terminated like a real one.
pub struct NodeProcess {
    child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    /// The node's log lines (JSON), as they come.
    pub logs: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
}

impl NodeProcess {
    /// Starts a node of cluster `name` on `db` and the test Redis, with the cluster's test timing.
    pub async fn spawn(db: &TestDb, name: &str) -> Result<Self> {
        use tokio::io::AsyncBufReadExt as _;
        let data_dir = std::env::temp_dir();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_convene"))
            .env("CONVENE_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", redis_url())
            .env("CONVENE_CLUSTER", name)
            .env("CONVENE_LEASE_TTL", "2s")
            .env("CONVENE_NODE_TIMEOUT", "2s")
            .env("CONVENE_JWT_SECRET", crate::common::SECRET)
            .env("CONVENE_DATA_DIR", data_dir)
            .env("CONVENE_LOG_JSON", "true")
            .env("CONVENE_LOG", "convene_server=info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let (sender, mut logs) = tokio::sync::mpsc::unbounded_channel();
        // Keep reading, so the node never blocks on a full pipe, and hand every line on.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
                    && sender.send(entry).is_err()
                {
                    break;
                }
            }
        });
        let addr = tokio::time::timeout(crate::common::EVENT_TIMEOUT, async {
            while let Some(entry) = logs.recv().await {
                if entry["fields"]["message"] == "convene listening" {
                    return Ok(entry["fields"]["addr"].as_str().unwrap_or_default().parse()?);
                }
            }
            anyhow::bail!("the node exited before listening")
        })
        .await??;
        Ok(Self { child, addr, logs })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends the process a signal: KILL (no goodbye), STOP and CONT (a pause), TERM (drain).
    pub fn signal(&self, signal: rustix::process::Signal) -> Result<()> {
        let pid = self.child.id().and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?));
        let pid = pid.ok_or_else(|| anyhow::anyhow!("the node has exited"))?;
        Ok(rustix::process::kill_process(pid, signal)?)
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub async fn wait(&mut self) -> Result<bool> {
        Ok(tokio::time::timeout(crate::common::EVENT_TIMEOUT, self.child.wait()).await??.success())
    }

    /// Waits for a log line whose message contains `text`.
    pub async fn logged(&mut self, text: &str) -> Result<serde_json::Value> {
        tokio::time::timeout(crate::common::EVENT_TIMEOUT, async {
            while let Some(entry) = self.logs.recv().await {
                if entry["fields"]["message"].as_str().is_some_and(|message| message.contains(text)) {
                    return Ok(entry);
                }
            }
            anyhow::bail!("the node exited without logging {text:?}")
        })
        .await?
    }
}

/// A fresh Postgres database and cluster name for nodes run as processes.
pub async fn process_cluster() -> Result<(TestDb, String)> {
    Ok((TestDb::new(Backend::Postgres).await?, format!("test-{}", Uuid::new_v4().simple())))
}

/// The servers a test on `backend` talks to: with [`Backend::TwoNodes`], the node that will own
/// the session (whoever joins there first makes it so) and another; otherwise one server.
pub async fn owner_and_other(backend: Backend) -> Result<(Option<TestServer>, TestServer)> {
    owner_and_other_with(backend, |_| {}).await
}

/// [`owner_and_other`], every node configured by `configure`.
pub async fn owner_and_other_with(
    backend: Backend,
    configure: impl Fn(&mut Config),
) -> Result<(Option<TestServer>, TestServer)> {
    match backend {
        Backend::TwoNodes => {
            let mut nodes = TestCluster::start_with(2, redis_url(), configure).await?.nodes.into_iter();
            let (Some(owner), Some(other)) = (nodes.next(), nodes.next()) else { bail!("two nodes started") };
            Ok((Some(owner), other))
        }
        Backend::Sqlite | Backend::Postgres => Ok((None, TestServer::start_with(backend, configure).await?)),
    }
}
