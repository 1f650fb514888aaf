//! `chat`: S senders, each in its own session, post as fast as a window of unacknowledged
//! messages allows. Reports acknowledged (durably committed) messages per second and the
//! latency from send to acknowledgement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Args;
use convene_protocol::{Role, ServerMessage};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use super::{Report, number_after, parse_duration};
use crate::client::{connect, send, wait_for};
use crate::{Common, stats};

#[derive(Args, Debug)]
pub struct Options {
    /// Sending connections, each in its own session.
    #[arg(long, default_value_t = 50)]
    senders: usize,
    /// Messages each sender may have awaiting acknowledgement.
    #[arg(long, default_value_t = 32)]
    window: usize,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 100)]
    size: usize,
}

pub async fn run(common: &Common, secret: &str, options: Options) -> Result<Report> {
    let mut sessions = Vec::new();
    for i in 0..options.senders {
        let mut ws = connect(&common.urls[i % common.urls.len()], secret, Role::Therapist).await?;
        send(&mut ws, &json!({"type": "create_session", "session_type": "group"})).await?;
        let session = wait_for(&mut ws, |m| match m {
            ServerMessage::SessionCreated { session, .. } => Some(session),
            _ => None,
        })
        .await?;
        send(&mut ws, &json!({"type": "join_session", "session_id": session.id})).await?;
        wait_for(&mut ws, |m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;
        sessions.push((ws, session));
    }
    let base = Instant::now();
    let deadline = base + options.duration;
    let server_cpu_before = common.server_pid().and_then(|pid| stats::cpu_micros(Some(pid)));
    let mut tasks = Vec::new();
    for (ws, session) in sessions {
        let (mut sink, mut stream) = ws.split();
        let window = Arc::new(Semaphore::new(options.window));
        let padding = "c".repeat(options.size);
        let permits = window.clone();
        let sender = tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let permit = permits.acquire().await.map_err(|_| anyhow!("window closed"))?;
                permit.forget();
                // The client message id carries the send time, so the ack alone gives the latency.
                let t = base.elapsed().as_nanos();
                let frame = json!({"type": "send_message", "session_id": session.id, "room_id": session.main_room_id, "client_msg_id": format!("{t}-{n}"), "body": padding});
                sink.send(Message::text(frame.to_string())).await?;
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        });
        let receiver = tokio::spawn(async move {
            let (mut acked, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            loop {
                let frame = match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => text,
                    Ok(Some(Ok(_))) => continue,
                    _ => break,
                };
                let text = frame.as_str();
                if text.starts_with(r#"{"type":"message_ack""#) {
                    let now = base.elapsed().as_nanos() as u64;
                    if let Some(sent) = number_after(text, r#""client_msg_id":""#) {
                        latencies.push(u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX));
                    }
                    acked += 1;
                    window.add_permits(1);
                } else if text.starts_with(r#"{"type":"error""#) {
                    errors += 1;
                    window.add_permits(1);
                }
                if Instant::now() > deadline + Duration::from_secs(5) {
                    break;
                }
            }
            (acked, errors, latencies)
        });
        tasks.push((sender, receiver));
    }
    let (mut sent, mut acked, mut errors, mut latencies) = (0, 0, 0, Vec::new());
    for (sender, receiver) in tasks {
        sent += sender.await.map_err(|e| anyhow!("{e}"))??;
        let (a, e, l) = receiver.await.map_err(|e| anyhow!("{e}"))?;
        acked += a;
        errors += e;
        latencies.extend(l);
    }
    errors += sent.saturating_sub(acked);
    let elapsed = options.duration.as_secs_f64();
    let server_cpu = server_cpu_before.and_then(|before| {
        common.server_pid().and_then(|pid| stats::cpu_micros(Some(pid))).map(|after| after - before)
    });
    Ok(Report {
        scenario: "chat",
        connections: options.senders,
        sent,
        delivered: acked,
        delivered_per_s: acked as f64 / elapsed,
        latency: stats::summarize(latencies),
        errors,
        server_cpu_percent: server_cpu.map(|us| us as f64 / 1e4 / elapsed),
        ..Report::default()
    })
}
