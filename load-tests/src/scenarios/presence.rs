//! `presence`: what a large session's presence costs. N participants join one session at a set
//! rate (spread over the `--url`s), the host opens an automatic plan into R rooms, closes all
//! of them, and everyone leaves. For each phase: the latency of each participant's own event
//! (`joined`, `moved`, `moved` back, `left`), the frames and bytes the server sent per
//! participant, and the server's CPU per participant; at the end the server's peak RSS.
//!
//! A phase ends only when every participant has read everything the server sent it during the
//! phase: each answers a `ping` sent after the phase's last event, and a connection's frames
//! arrive in order, so its `pong` comes after all of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use convene_protocol::{Role, ServerMessage};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Phase, Report};
use crate::client::{Ws, connect, send, wait_for};
use crate::{Common, stats};

/// Events from every participant's reader to the coordinator: at most one per participant
/// and phase is in flight, so this never makes a reader wait long.
const EVENT_CHANNEL: usize = 8192;
/// How long one phase may take before its missing events count as errors.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

const PHASES: [&str; 4] = ["join", "open", "close", "leave"];

#[derive(Args, Debug)]
pub struct Options {
    #[arg(long, default_value_t = 1000)]
    participants: usize,
    /// Joins per second.
    #[arg(long, default_value_t = 200)]
    join_rate: u32,
    /// Breakout rooms; a tenth of the participants when absent.
    #[arg(long)]
    rooms: Option<usize>,
}

/// What a participant's reader reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Joined,
    Moved,
    Left,
    Pong,
}

/// Frames and bytes the participants received, by phase.
#[derive(Debug, Default)]
struct Received {
    phase: AtomicUsize,
    frames: [AtomicU64; PHASES.len()],
    bytes: [AtomicU64; PHASES.len()],
}

impl Received {
    fn count(&self, bytes: usize) {
        let phase = self.phase.load(Ordering::Relaxed);
        self.frames[phase].fetch_add(1, Ordering::Relaxed);
        self.bytes[phase].fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

type Sink = SplitSink<Ws, Message>;

pub async fn run(common: &Common, secret: &str, options: Options) -> Result<Report> {
    let participants = options.participants;
    let rooms = options.rooms.unwrap_or((participants / 10).max(1));
    let url = &common.urls[0];
    let mut host = connect(url, secret, Role::Therapist).await.context("host connecting")?;
    send(&mut host, &json!({"type": "create_session", "session_type": "group"})).await?;
    let session = wait_for(&mut host, |m| match m {
        ServerMessage::SessionCreated { session, .. } => Some(session),
        _ => None,
    })
    .await?;
    send(&mut host, &json!({"type": "join_session", "session_id": session.id})).await?;
    wait_for(&mut host, |m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await.context("host joining")?;
    // The host reads everything from here on, or the server would close it as too slow.
    let (mut host_sink, mut host_stream) = host.split();
    let (host_tx, mut host_rx) = mpsc::channel::<ServerMessage>(EVENT_CHANNEL);
    let host_reader = tokio::spawn(async move {
        // Pings (and anything else not text) are answered by the socket itself; keep reading.
        while let Some(Ok(frame)) = host_stream.next().await {
            let Message::Text(text) = frame else { continue };
            let important = [r#"{"type":"ok""#, r#"{"type":"error""#, r#"{"type":"breakout_plan""#];
            if !important.iter().any(|start| text.as_str().starts_with(start)) {
                continue;
            }
            let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) else { continue };
            if host_tx.send(message).await.is_err() {
                break;
            }
        }
    });

    // Connect everyone first (not measured), then join at the set rate.
    let received = Arc::new(Received::default());
    let (events_tx, mut events) = mpsc::channel::<(usize, Seen, Instant)>(EVENT_CHANNEL);
    let connected =
        futures_util::stream::iter(0..participants)
            .map(|i| {
                let url = common.urls[i % common.urls.len()].clone();
                async move {
                    connect(&url, secret, Role::Patient).await.with_context(|| format!("participant {i} connecting"))
                }
            })
            .buffered(common.connect_concurrency)
            .collect::<Vec<_>>()
            .await;
    let mut sinks: Vec<Sink> = Vec::with_capacity(participants);
    let mut readers = Vec::with_capacity(participants);
    for (i, ws) in connected.into_iter().enumerate() {
        let (sink, stream) = ws?.split();
        sinks.push(sink);
        readers.push(tokio::spawn(read(i, stream, events_tx.clone(), received.clone())));
    }
    drop(events_tx);
    eprintln!("presence: {participants} participants connected");

    let pid = common.server_pid();
    let mut phases = Vec::new();
    let mut errors = 0u64;

    // Join, at the set rate.
    let cpu = stats::cpu_micros(pid);
    let mut sent_at = vec![Instant::now(); participants];
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / options.join_rate.max(1));
    let join = json!({"type": "join_session", "session_id": session.id}).to_string();
    let started = Instant::now();
    let host_ping = json!({"type": "ping"}).to_string();
    let per_second = usize::try_from(options.join_rate.max(1)).unwrap_or(usize::MAX);
    for (i, sink) in sinks.iter_mut().enumerate() {
        ticks.tick().await;
        sent_at[i] = Instant::now();
        sink.send(Message::text(join.clone())).await?;
        // The host has nothing to say while people join; a ping a second keeps it from
        // looking dead to the server's heartbeat in a join phase longer than its timeout.
        if i % per_second == 0 {
            host_sink.send(Message::text(host_ping.clone())).await?;
        }
    }
    let latencies = collect(&mut events, Seen::Joined, participants, &sent_at, &mut errors).await;
    let join_took = started.elapsed();
    phases.push(end_phase(0, latencies, &mut sinks, &mut events, &received, pid, cpu, &mut errors).await?);
    eprintln!("presence: joined in {join_took:?}");

    // Open an automatic plan into the rooms.
    let capacity = participants.div_ceil(rooms) + 2;
    request(
        &mut host_sink,
        &mut host_rx,
        json!({"type": "create_breakout_rooms", "session_id": session.id,
        "count": rooms, "max_participants": capacity}),
    )
    .await?;
    request(
        &mut host_sink,
        &mut host_rx,
        json!({"type": "plan_breakouts", "session_id": session.id, "automatic": true}),
    )
    .await?;
    let cpu = stats::cpu_micros(pid);
    let started = vec![Instant::now(); participants];
    request(&mut host_sink, &mut host_rx, json!({"type": "open_breakouts", "session_id": session.id})).await?;
    let latencies = collect(&mut events, Seen::Moved, participants, &started, &mut errors).await;
    phases.push(end_phase(1, latencies, &mut sinks, &mut events, &received, pid, cpu, &mut errors).await?);

    // Close every room at once: everyone returns to the main room.
    let cpu = stats::cpu_micros(pid);
    let started = vec![Instant::now(); participants];
    request(
        &mut host_sink,
        &mut host_rx,
        json!({"type": "close_breakout_rooms", "session_id": session.id,
        "countdown_secs": 0}),
    )
    .await?;
    let latencies = collect(&mut events, Seen::Moved, participants, &started, &mut errors).await;
    phases.push(end_phase(2, latencies, &mut sinks, &mut events, &received, pid, cpu, &mut errors).await?);

    // Everyone leaves, at once.
    let cpu = stats::cpu_micros(pid);
    let leave = json!({"type": "leave_session", "request_id": "leave", "session_id": session.id}).to_string();
    let mut sent_at = vec![Instant::now(); participants];
    for (i, sink) in sinks.iter_mut().enumerate() {
        sent_at[i] = Instant::now();
        sink.send(Message::text(leave.clone())).await?;
    }
    let latencies = collect(&mut events, Seen::Left, participants, &sent_at, &mut errors).await;
    phases.push(end_phase(3, latencies, &mut sinks, &mut events, &received, pid, cpu, &mut errors).await?);

    for reader in readers {
        reader.abort();
    }
    host_reader.abort();
    let delivered = phases.iter().map(|phase| phase.events as u64).sum();
    Ok(Report {
        scenario: "presence",
        connections: participants + 1,
        sent: participants as u64 * 2 + 4,
        delivered,
        errors,
        phases,
        server_rss_kb: pid.and_then(stats::rss_kb),
        server_peak_rss_kb: pid.and_then(stats::peak_rss_kb),
        ..Report::default()
    })
}

/// One participant's reader: counts every frame, reports its own events.
async fn read(
    i: usize,
    mut stream: futures_util::stream::SplitStream<Ws>,
    events: mpsc::Sender<(usize, Seen, Instant)>,
    received: Arc<Received>,
) {
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let text = text.as_str();
        // A `pong` closes a phase; it is not presence and is not counted.
        let pong = text.starts_with(r#"{"type":"pong""#);
        if !pong {
            received.count(text.len());
        }
        // Only the type matters here; a roster is not worth decoding.
        let seen = if pong {
            Seen::Pong
        } else if text.starts_with(r#"{"type":"joined""#) {
            Seen::Joined
        } else if text.starts_with(r#"{"type":"moved""#) {
            Seen::Moved
        } else if text.starts_with(r#"{"type":"left""#) {
            Seen::Left
        } else {
            continue;
        };
        if events.send((i, seen, Instant::now())).await.is_err() {
            break;
        }
    }
}

/// Waits for each participant's `wanted` event; latencies from each one's start, in µs.
async fn collect(
    events: &mut mpsc::Receiver<(usize, Seen, Instant)>,
    wanted: Seen,
    count: usize,
    started: &[Instant],
    errors: &mut u64,
) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some((i, seen, at))) if seen == wanted => {
                latencies.push(u32::try_from(at.duration_since(started[i]).as_micros()).unwrap_or(u32::MAX));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                *errors += (count - latencies.len()) as u64;
                break;
            }
        }
    }
    latencies
}

/// Ends phase `index`: waits until every participant has read all the phase sent it, then
/// reads its counters and the server's CPU, and moves the counters on to the next phase.
#[expect(clippy::too_many_arguments, reason = "one phase's measurements, gathered in one place")]
async fn end_phase(
    index: usize,
    latencies: Vec<u32>,
    sinks: &mut [Sink],
    events: &mut mpsc::Receiver<(usize, Seen, Instant)>,
    received: &Received,
    pid: Option<u32>,
    cpu_before: Option<u64>,
    errors: &mut u64,
) -> Result<Phase> {
    let ping = json!({"type": "ping", "request_id": "sync"}).to_string();
    for sink in sinks.iter_mut() {
        sink.send(Message::text(ping.clone())).await?;
    }
    let synced = collect(events, Seen::Pong, sinks.len(), &vec![Instant::now(); sinks.len()], errors).await;
    if synced.len() < sinks.len() {
        bail!("{} participants did not answer after phase {}", sinks.len() - synced.len(), PHASES[index]);
    }
    let cpu = match (cpu_before, stats::cpu_micros(pid)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / sinks.len() as f64),
        _ => None,
    };
    let frames = received.frames[index].load(Ordering::Relaxed);
    let bytes = received.bytes[index].load(Ordering::Relaxed);
    if index + 1 < PHASES.len() {
        received.phase.store(index + 1, Ordering::Relaxed);
    }
    let per = sinks.len() as f64;
    Ok(Phase {
        name: PHASES[index],
        events: latencies.len(),
        latency: stats::summarize(latencies),
        frames_per_participant: Some(frames as f64 / per),
        bytes_per_participant: Some(bytes as f64 / per),
        server_cpu_us_per_participant: cpu,
    })
}

/// Sends a host request and waits for its reply (`ok`, or a `breakout_plan`).
async fn request(
    sink: &mut Sink,
    replies: &mut mpsc::Receiver<ServerMessage>,
    mut body: serde_json::Value,
) -> Result<()> {
    let id = format!("r{}", uuid::Uuid::new_v4().simple());
    body["request_id"] = json!(id);
    sink.send(Message::text(body.to_string())).await?;
    loop {
        let reply = tokio::time::timeout(PHASE_TIMEOUT, replies.recv()).await.context("no reply from the server")?;
        match reply {
            Some(
                ServerMessage::Ok { request_id: Some(r) } | ServerMessage::BreakoutPlan { request_id: Some(r), .. },
            ) if r.as_str() == id => {
                return Ok(());
            }
            Some(ServerMessage::Error(e)) if e.request_id.as_ref().is_some_and(|r| r.as_str() == id) => {
                bail!("{} refused: {:?}", body["type"], e.code)
            }
            Some(_) => {}
            None => bail!("the host's connection closed"),
        }
    }
}
