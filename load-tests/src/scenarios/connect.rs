//! `connect`: opens N authenticated connections, holds them, and reports the server's memory per
//! connection.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use convene_protocol::Role;
use futures_util::StreamExt as _;

use super::{Report, parse_duration};
use crate::client::connect;
use crate::{Common, stats};

#[derive(Args, Debug)]
pub struct Options {
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// How long to hold them once all are open, before measuring.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    hold: Duration,
}

pub async fn run(common: &Common, secret: &str, options: Options) -> Result<Report> {
    let rss_before = common.server_pid().and_then(stats::rss_kb);
    let opened = futures_util::stream::iter(0..options.connections)
        .map(|i| {
            let url = common.urls[i % common.urls.len()].clone();
            async move {
                let started = Instant::now();
                let ws = connect(&url, secret, Role::Patient).await;
                (ws, started.elapsed())
            }
        })
        .buffer_unordered(common.connect_concurrency)
        .collect::<Vec<_>>()
        .await;
    let mut latencies = Vec::with_capacity(opened.len());
    let mut readers = Vec::with_capacity(opened.len());
    let mut errors = 0;
    for (ws, elapsed) in opened {
        match ws {
            Ok(mut ws) => {
                latencies.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                // Keep reading so pings are answered while the connections are held.
                readers.push(tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }));
            }
            Err(err) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("connect failed: {err:#}");
                }
            }
        }
    }
    tokio::time::sleep(options.hold).await;
    let rss_after = common.server_pid().and_then(stats::rss_kb);
    let open = readers.len();
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if open > 0 => Some(after.saturating_sub(before) as f64 / open as f64),
        _ => None,
    };
    for reader in readers {
        reader.abort();
    }
    Ok(Report {
        scenario: "connect",
        connections: open,
        latency: stats::summarize(latencies),
        errors,
        server_rss_kb: rss_after,
        server_rss_kb_per_connection: per_connection,
        ..Report::default()
    })
}
