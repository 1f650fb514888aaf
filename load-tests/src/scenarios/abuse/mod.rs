//! `abuse`: a well-behaved member chats and pings in a session while abusive clients attack it,
//! and the run reports how the member fared, quiet and under attack, and what the attack cost
//! the server (CPU, RSS).
//!
//! The attack, each part its own set of clients (see [`attackers`]):
//! - typing floods: members sending `typing` frames as fast as the socket takes them,
//!   reconnecting whenever the server closes them;
//! - join/leave flapping: members joining and leaving the session in a tight loop;
//! - header trickle: raw TCP sockets sending an endless request head a little at a time;
//! - a socket flood from one token: many tasks opening WebSockets as the same user.
//!
//! The member (the probe) posts a message every 200 ms (within the chat budget) and pings every
//! 100 ms; a second member (the listener) in the same room times the messages' delivery. Both
//! keep reading throughout, so they are never the slow consumers the server disconnects. The
//! attackers run on a runtime of their own, on a thread of lower priority, so that the attack's
//! load on the load generator does not delay the probe's own reads and inflate its figures.

mod attackers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Args;
use convene_protocol::{Role, ServerMessage};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{Report, number_after, parse_duration};
use crate::Common;
use crate::client::{Ws, connect, send, wait_for};
use crate::stats::{self, Latency};

#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Members flooding `typing`, each with their own token.
    #[arg(long, default_value_t = 10)]
    typing: usize,
    /// Members joining and leaving in a loop, each with their own token.
    #[arg(long, default_value_t = 10)]
    flappers: usize,
    /// Raw sockets trickling an endless request head.
    #[arg(long, default_value_t = 500)]
    trickle: usize,
    /// Tasks opening sockets with one and the same token.
    #[arg(long, default_value_t = 500)]
    flood: usize,
    /// How long the member is measured before the attack.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    quiet: Duration,
    /// How long the attack lasts, the member measured throughout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    attack: Duration,
}

/// How often the probe posts: 5 a second, half the default chat budget.
const POST_EVERY: Duration = Duration::from_millis(200);
/// How often the probe pings.
const PING_EVERY: Duration = Duration::from_millis(100);
/// How often the server's memory is sampled during the attack.
const RSS_EVERY: Duration = Duration::from_millis(100);
/// How long the probe waits for its last replies after it stops sending.
const GRACE: Duration = Duration::from_secs(2);

/// What the abuse run adds to the report.
#[derive(Debug, Default, Serialize)]
pub struct AbuseReport {
    pub quiet_chat: Latency,
    pub attack_chat: Latency,
    pub quiet_ping: Latency,
    pub attack_ping: Latency,
    /// Probe messages or pings that got no answer, or an error.
    pub probe_errors: u64,
    pub quiet_server_cpu_percent: Option<f64>,
    pub attack_server_cpu_percent: Option<f64>,
    pub rss_before_kb: Option<u64>,
    pub rss_peak_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    /// `typing` events the listener received per second of attack: what the floods amplified to.
    pub typing_events_at_listener_per_s: f64,
    pub attack: attackers::Tally,
}

/// One timed probe: when it was sent (nanoseconds since the start) and how long it took (µs).
type Sample = (u64, u32);

/// Samples the probe saw.
#[derive(Default)]
struct Samples {
    chat: Vec<Sample>,
    ping: Vec<Sample>,
    errors: u64,
}

pub async fn run(common: &Common, secret: &str, options: Options) -> Result<Report> {
    let url = common.urls[0].clone();
    let mut host = connect(&url, secret, Role::Therapist).await?;
    let room_name = format!("abuse-{}", uuid::Uuid::new_v4().simple());
    send(&mut host, &json!({"type": "create_session", "session_type": "group", "room_name": room_name})).await?;
    let session = wait_for(&mut host, |m| match m {
        ServerMessage::SessionCreated { session, .. } => Some(session),
        _ => None,
    })
    .await?;
    let (session_id, room) = (session.id, session.main_room_id);
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut ws = connect(&url, secret, Role::Patient).await?;
        send(&mut ws, &json!({"type": "join_session", "session_id": session_id})).await?;
        wait_for(&mut ws, |m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;
        members.push(ws);
    }
    let (Some(listener), Some(probe)) = (members.pop(), members.pop()) else { return Err(anyhow!("no members")) };
    // The host leaves the room to the others; its socket is only kept open.
    let host_reader = tokio::spawn(drain(host));

    let base = Instant::now();
    let total = options.quiet + options.attack;
    let typing_seen = Arc::new(AtomicU64::new(0));
    let listener = tokio::spawn(listen(listener, base, total + GRACE, typing_seen.clone()));
    let probing = tokio::spawn(probe_member(probe, session_id, room, base, total));

    let pid = common.server_pid();
    let cpu_at_start = pid.and_then(|pid| stats::cpu_micros(Some(pid)));
    tokio::time::sleep_until((base + options.quiet).into()).await;
    let cpu_at_attack = pid.and_then(|pid| stats::cpu_micros(Some(pid)));
    let rss_before_kb = pid.and_then(stats::rss_kb);
    let typing_before = typing_seen.load(Ordering::Relaxed);
    eprintln!("abuse: quiet phase done; attacking for {:?}", options.attack);

    let (stop, stopped) = watch::channel(false);
    let tally = Arc::new(attackers::Tally::default());
    let attack_runtime = attackers::runtime()?;
    let attack =
        attackers::launch(attack_runtime.handle(), common, secret, &options, session_id, room, &stopped, &tally)?;
    let mut rss_peak_kb = rss_before_kb;
    let mut rss_ticks = tokio::time::interval(RSS_EVERY);
    let attack_ends = tokio::time::Instant::from(base + total);
    while tokio::time::Instant::now() < attack_ends {
        tokio::select! {
            _ = rss_ticks.tick() => {
                let now = pid.and_then(stats::rss_kb);
                rss_peak_kb = rss_peak_kb.max(now);
            }
            () = tokio::time::sleep_until(attack_ends) => {}
        }
    }
    let cpu_at_end = pid.and_then(|pid| stats::cpu_micros(Some(pid)));
    let typing_during = typing_seen.load(Ordering::Relaxed) - typing_before;
    stop.send_replace(true);
    for attacker in attack {
        attacker.await.map_err(|e| anyhow!("attacker panicked: {e}"))?;
    }
    // Its tasks have all ended; what it still holds (readers of closed sockets) goes with it.
    attack_runtime.shutdown_background();
    eprintln!("abuse: attack over");
    let samples = probing.await.map_err(|e| anyhow!("probe panicked: {e}"))??;
    let delivered = listener.await.map_err(|e| anyhow!("listener panicked: {e}"))??;
    host_reader.abort();
    // Let the server close what the attack left behind before its memory is read again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_kb = pid.and_then(stats::rss_kb);

    let attack_from = u64::try_from(options.quiet.as_nanos()).unwrap_or(u64::MAX);
    let chat: Vec<Sample> = delivered;
    let (quiet_chat, attack_chat) = split_at(&chat, attack_from);
    let (quiet_ping, attack_ping) = split_at(&samples.ping, attack_from);
    let posted = samples.chat.len() as u64;
    let percent = |from: Option<u64>, to: Option<u64>, over: Duration| {
        from.zip(to).map(|(a, b)| (b - a) as f64 / 1e4 / over.as_secs_f64())
    };
    let abuse = AbuseReport {
        quiet_chat,
        attack_chat,
        quiet_ping,
        attack_ping,
        probe_errors: samples.errors + posted.saturating_sub(chat.len() as u64),
        quiet_server_cpu_percent: percent(cpu_at_start, cpu_at_attack, options.quiet),
        attack_server_cpu_percent: percent(cpu_at_attack, cpu_at_end, options.attack),
        rss_before_kb,
        rss_peak_kb,
        rss_after_kb,
        typing_events_at_listener_per_s: typing_during as f64 / options.attack.as_secs_f64(),
        attack: Arc::try_unwrap(tally).unwrap_or_default(),
    };
    Ok(Report {
        scenario: "abuse",
        connections: 3,
        sent: posted,
        delivered: chat.len() as u64,
        latency: stats::summarize(chat.iter().map(|s| s.1).collect()),
        errors: abuse.probe_errors,
        server_rss_kb: rss_after_kb,
        abuse: Some(abuse),
        ..Report::default()
    })
}

/// Latencies of the samples sent before `at`, and of those sent after.
fn split_at(samples: &[Sample], at: u64) -> (Latency, Latency) {
    let (before, after): (Vec<&Sample>, Vec<&Sample>) = samples.iter().partition(|(sent, _)| *sent < at);
    let micros = |part: Vec<&Sample>| part.into_iter().map(|(_, micros)| *micros).collect();
    (stats::summarize(micros(before)), stats::summarize(micros(after)))
}

/// The well-behaved member: posts and pings on a steady clock for `duration`, reading its
/// replies throughout; returns ping round trips and the posts it made.
async fn probe_member(
    ws: Ws,
    session: convene_protocol::SessionId,
    room: convene_protocol::RoomId,
    base: Instant,
    duration: Duration,
) -> Result<Samples> {
    let (mut sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move {
        let mut samples = Samples::default();
        let deadline = tokio::time::Instant::from(base + duration + GRACE);
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, stream.next()).await {
            let Message::Text(text) = frame else { continue };
            let text = text.as_str();
            let now = base.elapsed().as_nanos() as u64;
            if text.starts_with(r#"{"type":"pong""#) {
                if let Some(sent) = number_after(text, r#""request_id":"p"#) {
                    samples.ping.push((sent, u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX)));
                }
            } else if text.starts_with(r#"{"type":"error""#) {
                samples.errors += 1;
            }
        }
        samples
    });
    let mut pings = tokio::time::interval(PING_EVERY);
    let mut posts = tokio::time::interval(POST_EVERY);
    let mut posted = Vec::new();
    let ends = tokio::time::Instant::from(base + duration);
    loop {
        let frame = tokio::select! {
            () = tokio::time::sleep_until(ends) => break,
            _ = pings.tick() => json!({"type": "ping", "request_id": format!("p{}", base.elapsed().as_nanos())}),
            _ = posts.tick() => {
                let sent = base.elapsed().as_nanos() as u64;
                posted.push((sent, 0));
                json!({"type": "send_message", "session_id": session, "room_id": room,
                    "client_msg_id": format!("c{sent}"), "body": format!("t={sent}")})
            }
        };
        sink.send(Message::text(frame.to_string())).await?;
    }
    let mut samples = reader.await.map_err(|e| anyhow!("probe reader panicked: {e}"))?;
    samples.chat = posted;
    Ok(samples)
}

/// The listener: times each of the probe's messages from send to receipt, and counts the
/// `typing` events the attack made it receive.
async fn listen(ws: Ws, base: Instant, until: Duration, typing: Arc<AtomicU64>) -> Result<Vec<Sample>> {
    let (_sink, mut stream) = ws.split();
    let mut delivered = Vec::new();
    let deadline = tokio::time::Instant::from(base + until);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, stream.next()).await {
        let Message::Text(text) = frame? else { continue };
        let text = text.as_str();
        if text.starts_with(r#"{"type":"typing""#) {
            typing.fetch_add(1, Ordering::Relaxed);
        } else if text.starts_with(r#"{"type":"message","#) {
            let now = base.elapsed().as_nanos() as u64;
            if let Some(sent) = number_after(text, r#""body":"t="#) {
                delivered.push((sent, u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX)));
            }
        }
    }
    Ok(delivered)
}

/// Reads and discards whatever a connection receives, so that it never falls behind.
async fn drain(ws: Ws) {
    let (_sink, mut stream) = ws.split();
    while let Some(Ok(_)) = stream.next().await {}
}
