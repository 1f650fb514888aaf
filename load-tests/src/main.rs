//! `convene-load`: drives a Convene server over real WebSocket connections and reports what it
//! measured as one JSON line.
//!
//! Scenarios:
//! - `connect`: open N authenticated connections and hold them; with `--server-pid`, report the
//!   server's memory per connection.
//! - `fanout`: R sessions of M members; each session's sender posts at a set rate and every member
//!   measures send-to-receive latency and checks that sequence numbers arrive gapless, in order.
//! - `chat`: S senders post as fast as their window of unacknowledged messages allows; measures
//!   acknowledged (committed) messages per second and acknowledgement latency.
//! - `breakout`: one session of P participants; the host opens an automatic plan into R rooms,
//!   moves people one at a time, then closes all rooms; reports how long each phase took to
//!   reach the last participant's `moved` event, and checks the stored transitions.
//! - `presence`: N participants join one session at a set rate, the host opens breakouts and
//!   closes them all, everyone leaves; per phase, the frames, bytes and server CPU per
//!   participant and each participant's latency, and the server's peak memory.
//! - `dm`: U users in one-to-one conversations, each sending at a set rate; measures delivery
//!   and acknowledgement latency, acknowledged messages per second, and checks the order.
//! - `abuse`: a well-behaved member's latency, quiet and while typing floods, join/leave
//!   flapping, header trickles and a one-token socket flood attack its session; reports the
//!   server's CPU and memory during the attack.

mod client;
mod scenarios;
mod stats;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "convene-load", about = "Load generator for Convene")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Clone, Debug)]
pub struct Common {
    /// WebSocket endpoint; repeat to spread connections over several servers.
    #[arg(long = "url", global = true, default_value = "ws://127.0.0.1:8080/v1/ws")]
    urls: Vec<String>,
    /// The server's JWT secret; defaults to CONVENE_JWT_SECRET, then the dev secret in --data-dir.
    #[arg(long, env = "CONVENE_JWT_SECRET", hide_env_values = true, global = true)]
    secret: Option<String>,
    /// The server's data directory, for its dev secret.
    #[arg(long, env = "CONVENE_DATA_DIR", default_value = "./data", global = true)]
    data_dir: std::path::PathBuf,
    /// The server's process id: its CPU time and memory are reported. Repeat it for every node
    /// of a cluster (`fanout` reports each node's CPU; the other scenarios the first node's).
    #[arg(long = "server-pid", global = true)]
    server_pids: Vec<u32>,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 256, global = true)]
    connect_concurrency: usize,
}

impl Common {
    /// The (first) server's process id.
    pub fn server_pid(&self) -> Option<u32> {
        self.server_pids.first().copied()
    }
}

#[derive(Subcommand)]
enum Scenario {
    Connect(scenarios::connect::Options),
    Fanout(scenarios::fanout::Options),
    Chat(scenarios::chat::Options),
    Breakout(scenarios::breakout::Options),
    Abuse(scenarios::abuse::Options),
    Dm(scenarios::dm::Options),
    Drain(scenarios::drain::Options),
    Presence(scenarios::presence::Options),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("runtime")?;
    let secret = client::resolve_secret(&cli.common)?;
    let report = runtime.block_on(async {
        match cli.scenario {
            Scenario::Connect(options) => scenarios::connect::run(&cli.common, &secret, options).await,
            Scenario::Fanout(options) => scenarios::fanout::run(&cli.common, &secret, options).await,
            Scenario::Chat(options) => scenarios::chat::run(&cli.common, &secret, options).await,
            Scenario::Breakout(options) => scenarios::breakout::run(&cli.common, &secret, options).await,
            Scenario::Abuse(options) => scenarios::abuse::run(&cli.common, &secret, options).await,
            Scenario::Dm(options) => scenarios::dm::run(&cli.common, &secret, options).await,
            Scenario::Drain(options) => scenarios::drain::run(&cli.common, &secret, options).await,
            Scenario::Presence(options) => scenarios::presence::run(&cli.common, &secret, options).await,
        }
    })?;
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string(&report)?);
    }
    // Thousands of sockets close faster with the process than one by one.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Raises the soft open-file limit to the hard one: every connection is a descriptor.
fn raise_fd_limit() {
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the open file limit: {err}");
    }
}
