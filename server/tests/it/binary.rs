//! The `convene` binary itself: dev mode with `convene token`, `convene migrate`, SIGTERM, and
//! settings refused at start.

use std::process::Stdio;

use anyhow::{Result, anyhow, bail, ensure};
use convene_protocol::ServerMessage;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::common::{Backend, Client, SECRET, TestDb, TestUser, create_session_at};

const BIN: &str = env!("CARGO_BIN_EXE_convene");

/// A `convene serve` process, with what it logged up to listening.
struct Started {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    /// Its log lines (JSON) up to `convene listening`, that one included.
    log: Vec<serde_json::Value>,
}

/// Starts `convene serve` with `envs`.
async fn start(envs: &[(&str, &str)]) -> Result<Started> {
    let mut command = Command::new(BIN);
    command.env_remove("CONVENE_JWT_SECRET").env_remove("DATABASE_URL");
    command.env("CONVENE_BIND", "127.0.0.1:0").env("CONVENE_LOG_JSON", "true");
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true).spawn()?;
    let mut lines = BufReader::new(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?).lines();
    let (addr, log) = tokio::time::timeout(crate::common::EVENT_TIMEOUT, async {
        let mut log = Vec::new();
        while let Some(line) = lines.next_line().await? {
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["fields"]["message"] == "convene listening" {
                let addr = entry["fields"]["addr"].as_str().unwrap_or_default().parse()?;
                log.push(entry);
                return Ok::<_, anyhow::Error>((addr, log));
            }
            log.push(entry);
        }
        bail!("the server exited before listening")
    })
    .await??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Started { child, addr, log })
}

/// Sends SIGTERM to `child`; every client is closed with 1012 and the process exits cleanly.
async fn terminate(mut child: tokio::process::Child, clients: &mut [&mut Client]) -> Result<()> {
    let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
    ensure!(status.success());
    for client in clients {
        assert_eq!(client.closed_with().await?, Some(1012));
    }
    let exit = tokio::time::timeout(crate::common::EVENT_TIMEOUT, child.wait()).await??;
    assert!(exit.success(), "exit status {exit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_tokens_from_convene_token_are_accepted_and_sigterm_closes_with_1012() -> Result<()> {
    let data = tempfile::tempdir()?;
    let data_dir = data.path().to_str().ok_or_else(|| anyhow!("path"))?;
    let Started { child, addr, .. } = start(&[("CONVENE_DATA_DIR", data_dir)]).await?;
    ensure!(data.path().join("dev-jwt-secret").exists(), "dev mode created no secret");
    ensure!(data.path().join("convene.db").exists(), "no embedded database");

    let user = uuid::Uuid::new_v4();
    let output = Command::new(BIN)
        .args(["token", "--sub", &user.to_string(), "--role", "therapist", "--ttl", "10m"])
        .env("CONVENE_DATA_DIR", data_dir)
        .env_remove("CONVENE_JWT_SECRET")
        .output()
        .await?;
    ensure!(output.status.success(), "convene token failed: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout)?.trim().to_owned();
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws?access_token={token}")).await?;
    let mut client = Client { ws };
    match client.recv().await? {
        ServerMessage::Hello { user_id, .. } => assert_eq!(user_id.0, user),
        other => bail!("expected hello, got {other:?}"),
    }

    terminate(child, &mut [&mut client]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_the_worker_threads_it_is_given_one_meaning_the_single_threaded_scheduler() -> Result<()> {
    for (threads, scheduler) in [(1, "CurrentThread"), (3, "MultiThread")] {
        let data = tempfile::tempdir()?;
        let data_dir = data.path().to_str().ok_or_else(|| anyhow!("path"))?;
        let threads_setting = threads.to_string();
        let Started { child, addr, log } = start(&[
            ("CONVENE_DATA_DIR", data_dir),
            ("CONVENE_JWT_SECRET", SECRET),
            ("CONVENE_WORKER_THREADS", &threads_setting),
        ])
        .await?;
        let runtime = log
            .iter()
            .find(|entry| entry["fields"]["message"] == "runtime started")
            .ok_or_else(|| anyhow!("{threads}: no runtime in the start-up log"))?;
        assert_eq!(runtime["fields"]["scheduler"], scheduler, "{threads} threads");
        assert_eq!(runtime["fields"]["worker_threads"], threads, "{threads} threads");

        // It serves: a message posted by one member reaches the other.
        let ws = format!("ws://{addr}/v1/ws");
        let host = TestUser::new(convene_protocol::Role::Therapist, Some(uuid::Uuid::new_v4()));
        let member = TestUser::new(convene_protocol::Role::Patient, host.org);
        let session = create_session_at(addr, &host, serde_json::json!({"session_type": "group"})).await?;
        let mut host_client = Client::connect_url(&ws, &host).await?;
        host_client.join(session.id).await?;
        let mut member_client = Client::connect_url(&ws, &member).await?;
        member_client.join(session.id).await?;
        member_client.post(session.id, session.main_room_id, "m1", "hello").await?;
        let body = host_client
            .recv_until(|m| match m {
                ServerMessage::Message { message } => Some(message.body),
                _ => None,
            })
            .await?;
        assert_eq!(body, "hello");
        terminate(child, &mut [&mut host_client, &mut member_client]).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convene_migrate_applies_migrations_and_exits() -> Result<()> {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await?;
        let output = Command::new(BIN).arg("migrate").env("DATABASE_URL", &db.url).output().await?;
        ensure!(output.status.success(), "{backend:?}: {}", String::from_utf8_lossy(&output.stderr));
        // The schema is there: a session lookup runs (and finds nothing).
        assert!(db.store().await?.load_session(convene_protocol::SessionId::new_v4()).await?.is_none());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_would_break_the_server_are_refused_at_start() -> Result<()> {
    // Each of these once started a server: a zero heartbeat timeout failed every connection,
    // a negative chat rate drained the chat budget for good and a NaN one lifted the limit, a
    // zero burst refused every message, a zero frame limit closed every connection at its first
    // frame and a gigabyte one let one socket hold that much, a zero message limit refused
    // every message. The cluster's waits are refused below half a second, which leaves a node no
    // room for one late heartbeat or one slow lease renewal before it is taken for dead.
    let cases = [
        ("CONVENE_HEARTBEAT_TIMEOUT", "0s", "--heartbeat-timeout"),
        ("CONVENE_WRITE_TIMEOUT", "0s", "--write-timeout"),
        ("CONVENE_DB_TIMEOUT", "0ms", "--db-timeout"),
        ("CONVENE_CHAT_RATE", "-1", "--chat-rate"),
        ("CONVENE_CHAT_RATE", "NaN", "--chat-rate"),
        ("CONVENE_CHAT_BURST", "0", "--chat-burst"),
        ("CONVENE_MAX_FRAME_BYTES", "0", "--max-frame-bytes"),
        ("CONVENE_MAX_FRAME_BYTES", "1073741824", "--max-frame-bytes"),
        ("CONVENE_MAX_MESSAGE_BYTES", "0", "--max-message-bytes"),
        ("CONVENE_WORKER_THREADS", "0", "--worker-threads"),
        ("CONVENE_LEASE_TTL", "200ms", "--lease-ttl"),
        ("CONVENE_NODE_TIMEOUT", "100ms", "--node-timeout"),
    ];
    for (variable, value, flag) in cases {
        let stderr = refused_at_start(&[(variable, value)]).await?;
        ensure!(stderr.contains(flag) && stderr.contains("invalid value"), "{variable}={value}: {stderr}");
    }
    // Each limit is valid alone; together, the largest chat message could never be sent.
    let stderr =
        refused_at_start(&[("CONVENE_MAX_FRAME_BYTES", "8192"), ("CONVENE_MAX_MESSAGE_BYTES", "8192")]).await?;
    ensure!(stderr.contains("must fit in a frame of --max-frame-bytes (8192)"), "{stderr}");
    Ok(())
}

/// Runs `convene serve` with `envs` and returns what it printed, failing if it started.
async fn refused_at_start(envs: &[(&str, &str)]) -> Result<String> {
    // Its own data directory: a server that does start must not write into the source tree.
    let data = tempfile::tempdir()?;
    let mut command = Command::new(BIN);
    command.env_remove("DATABASE_URL").env("CONVENE_DATA_DIR", data.path()).env("CONVENE_BIND", "127.0.0.1:0");
    command.envs(envs.iter().copied()).kill_on_drop(true);
    let output = tokio::time::timeout(crate::common::EVENT_TIMEOUT, command.output()).await??;
    ensure!(!output.status.success(), "{envs:?}: the server started");
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}
