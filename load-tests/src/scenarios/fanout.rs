//! `fanout`: R sessions of M members. Each session's host posts at a set rate; every member
//! measures the time from send to receipt and checks that sequence numbers arrive gapless and in
//! order. The per-frame work on the receiving side is kept to what that needs: two numbers read
//! out of the text, no full decode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Args;
use convene_protocol::{Role, ServerMessage};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

use super::{Report, number_after, parse_duration};
use crate::client::{Ws, connect, send, wait_for};
use crate::{Common, stats};

#[derive(Args, Debug)]
pub struct Options {
    /// Sessions (each one room).
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Members per session, the host included.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Messages per second posted in each room.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
}

/// What one receiving member saw.
#[derive(Default)]
struct Received {
    delivered: u64,
    errors: u64,
    latencies: Vec<u32>,
    last_at: Option<Instant>,
}

pub async fn run(common: &Common, secret: &str, options: Options) -> Result<Report> {
    let per_room = u64::from(options.rate) * options.duration.as_secs();
    let mut hosts = Vec::new();
    let mut members: Vec<Ws> = Vec::new();
    let mut url_index = 0;
    let mut next_url = || {
        url_index += 1;
        common.urls[url_index % common.urls.len()].clone()
    };
    for room in 0..options.rooms {
        let mut host = connect(&next_url(), secret, Role::Therapist).await?;
        send(&mut host, &json!({"type": "create_session", "session_type": "group", "room_name": format!("fanout-{}-{room}", uuid::Uuid::new_v4().simple())})).await?;
        let session = wait_for(&mut host, |m| match m {
            ServerMessage::SessionCreated { session, .. } => Some(session),
            _ => None,
        })
        .await?;
        send(&mut host, &json!({"type": "join_session", "session_id": session.id})).await?;
        wait_for(&mut host, |m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;
        let joins = futures_util::stream::iter(1..options.members)
            .map(|_| {
                let url = next_url();
                async move {
                    let mut ws = connect(&url, secret, Role::Patient).await?;
                    send(&mut ws, &json!({"type": "join_session", "session_id": session.id})).await?;
                    wait_for(&mut ws, |m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;
                    Ok::<_, anyhow::Error>(ws)
                }
            })
            .buffer_unordered(common.connect_concurrency)
            .collect::<Vec<_>>()
            .await;
        for ws in joins {
            members.push(ws?);
        }
        hosts.push((host, session.id, session.main_room_id));
    }
    let connections = hosts.len() + members.len();
    eprintln!("fanout: {connections} connections joined; sending for {:?}", options.duration);

    let base = Instant::now();
    let start = Arc::new(Barrier::new(hosts.len() + 1));
    let mut receivers = Vec::new();
    for ws in members {
        let (_, stream) = ws.split();
        receivers.push(tokio::spawn(receive(stream, per_room, base)));
    }
    let mut senders = Vec::new();
    for (ws, session, room) in hosts {
        let (mut sink, stream) = ws.split();
        receivers.push(tokio::spawn(receive(stream, per_room, base)));
        let start = start.clone();
        let padding = "x".repeat(options.size.saturating_sub(24));
        let rate = options.rate;
        senders.push(tokio::spawn(async move {
            start.wait().await;
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for n in 0..per_room {
                ticks.tick().await;
                let t = base.elapsed().as_nanos();
                let body = format!("t={t};{padding}");
                let frame = json!({"type": "send_message", "session_id": session, "room_id": room, "client_msg_id": format!("f{n}"), "body": body});
                sink.send(Message::text(frame.to_string())).await?;
            }
            Ok::<u64, anyhow::Error>(per_room)
        }));
    }
    let cpu_of = || common.server_pids.iter().map(|pid| stats::cpu_micros(Some(*pid))).collect::<Vec<_>>();
    let servers_cpu_before = cpu_of();
    let own_cpu_before = stats::cpu_micros(None);
    start.wait().await;
    let sending_started = Instant::now();
    let mut sent = 0;
    for sender in senders {
        sent += sender.await.map_err(|e| anyhow!("sender panicked: {e}"))??;
    }
    let mut delivered = 0;
    let mut errors = 0;
    let mut latencies = Vec::new();
    let mut last = sending_started;
    for receiver in receivers {
        let received = receiver.await.map_err(|e| anyhow!("receiver panicked: {e}"))?;
        delivered += received.delivered;
        errors += received.errors + (per_room - received.delivered.min(per_room));
        latencies.extend(received.latencies);
        last = last.max(received.last_at.unwrap_or(last));
    }
    let elapsed = last.duration_since(sending_started).as_secs_f64();
    let servers_cpu: Vec<Option<u64>> = servers_cpu_before
        .iter()
        .zip(cpu_of())
        .map(|(before, after)| before.zip(after).map(|(before, after)| after - before))
        .collect();
    // All nodes together: a delivery costs the owner's fan-out plus, across nodes, the relay.
    let server_cpu = servers_cpu.iter().copied().sum::<Option<u64>>().filter(|_| !servers_cpu.is_empty());
    let own_cpu = own_cpu_before.and_then(|before| stats::cpu_micros(None).map(|after| after - before));
    let per_delivery = |cpu: Option<u64>| cpu.filter(|_| delivered > 0).map(|us| us as f64 / delivered as f64);
    Ok(Report {
        scenario: "fanout",
        connections,
        sent,
        delivered,
        delivered_per_s: if elapsed > 0.0 { delivered as f64 / elapsed } else { 0.0 },
        latency: stats::summarize(latencies),
        errors,
        server_cpu_us_per_delivery: per_delivery(server_cpu),
        node_cpu_us_per_delivery: if servers_cpu.len() > 1 {
            servers_cpu.iter().map(|cpu| per_delivery(*cpu)).collect::<Option<Vec<_>>>().unwrap_or_default()
        } else {
            Vec::new()
        },
        loadgen_cpu_us_per_delivery: per_delivery(own_cpu),
        server_cpu_percent: server_cpu.map(|us| us as f64 / 1e4 / elapsed.max(f64::EPSILON)),
        server_rss_kb: common.server_pid().and_then(stats::rss_kb),
        ..Report::default()
    })
}

/// Reads until `expected` messages arrived (or the stream stalls), checking their order.
async fn receive(mut stream: futures_util::stream::SplitStream<Ws>, expected: u64, base: Instant) -> Received {
    /// A member that hears nothing for this long after sending stopped gives up.
    const STALL: Duration = Duration::from_secs(10);
    let mut received = Received { latencies: Vec::with_capacity(expected as usize), ..Received::default() };
    let mut last_seq = 0;
    while received.delivered < expected {
        let frame = match tokio::time::timeout(STALL, stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            _ => break,
        };
        let text = frame.as_str();
        if !text.starts_with(r#"{"type":"message","#) {
            if text.starts_with(r#"{"type":"error""#) {
                received.errors += 1;
            }
            continue;
        }
        let now = base.elapsed().as_nanos() as u64;
        let (Some(seq), Some(sent)) = (number_after(text, r#""seq":"#), number_after(text, r#""body":"t="#)) else {
            received.errors += 1;
            continue;
        };
        if seq != last_seq + 1 {
            received.errors += 1;
        }
        last_seq = seq;
        received.delivered += 1;
        received.latencies.push(u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX));
        received.last_at = Some(Instant::now());
    }
    received
}
