//! `breakout`: one session of P participants. The host opens an automatic plan into R rooms,
//! moves M people one at a time, then closes all rooms. For each phase: the time from the host's
//! command until each affected participant has its `moved` event. Finally the session's stored
//! transitions are read back over HTTP and compared with what the phases should have written.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use convene_protocol::{Role, RoomId, ServerMessage, UserId};
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Phase, Report};
use crate::client::{connect, next_message, send, wait_for};
use crate::{Common, stats};

/// `moved` events in flight from participants to the coordinator; far more than one phase
/// produces at once, so receivers never wait.
const MOVED_CHANNEL: usize = 4096;

#[derive(Args, Debug)]
pub struct Options {
    #[arg(long, default_value_t = 1000)]
    participants: usize,
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Single moves after opening.
    #[arg(long, default_value_t = 100)]
    moves: usize,
}

pub async fn run(common: &Common, secret: &str, options: Options) -> Result<Report> {
    let url = &common.urls[0];
    let host_user = uuid::Uuid::new_v4();
    let mut host = connect_as(url, secret, host_user).await?;
    send(&mut host, &json!({"type": "create_session", "session_type": "group"})).await?;
    let session = wait_for(&mut host, |m| match m {
        ServerMessage::SessionCreated { session, .. } => Some(session),
        _ => None,
    })
    .await?;
    // Participants join first and read from the moment they joined, so that nobody (the host
    // included) sits on a thousand arrivals unread; each reports its `moved` events.
    let (moved_tx, mut moved_rx) = mpsc::channel::<(usize, RoomId, Instant)>(MOVED_CHANNEL);
    let joined = futures_util::stream::iter(0..options.participants)
        .map(|i| {
            let url = url.clone();
            let moved_tx = moved_tx.clone();
            async move {
                let mut ws = connect(&url, secret, Role::Patient)
                    .await
                    .with_context(|| format!("participant {i} connecting"))?;
                send(&mut ws, &json!({"type": "join_session", "session_id": session.id})).await?;
                let you = wait_for(&mut ws, |m| match m {
                    ServerMessage::Joined { you, .. } => Some(you.user_id),
                    _ => None,
                })
                .await
                .with_context(|| format!("participant {i} joining"))?;
                let reader = tokio::spawn(async move {
                    while let Some(Ok(frame)) = ws.next().await {
                        let Message::Text(text) = frame else { continue };
                        if !text.as_str().starts_with(r#"{"type":"moved""#) {
                            continue;
                        }
                        // Only the room id is needed: a `moved` into a large room carries its whole
                        // member list, which is not worth decoding here.
                        let Some(room_id) = room_id_of(text.as_str()) else { continue };
                        if moved_tx.send((i, room_id, Instant::now())).await.is_err() {
                            break;
                        }
                    }
                });
                Ok::<_, anyhow::Error>((i, you, reader))
            }
        })
        .buffer_unordered(common.connect_concurrency)
        .collect::<Vec<_>>()
        .await;
    let mut users = vec![UserId(uuid::Uuid::nil()); options.participants];
    let mut readers = Vec::new();
    for result in joined {
        let (i, user, reader) = result?;
        users[i] = user;
        readers.push(reader);
    }
    send(&mut host, &json!({"type": "join_session", "session_id": session.id})).await?;
    wait_for(&mut host, |m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await.context("host joining")?;
    let index: HashMap<UserId, usize> = users.iter().enumerate().map(|(i, u)| (*u, i)).collect();
    eprintln!("breakout: {} participants joined", options.participants);

    // Rooms and an automatic plan.
    let capacity = options.participants.div_ceil(options.rooms) + 2;
    request(&mut host, json!({"type": "create_breakout_rooms", "session_id": session.id, "count": options.rooms, "max_participants": capacity}))
        .await
        .context("creating rooms")?;
    send(
        &mut host,
        &json!({"type": "plan_breakouts", "request_id": "plan", "session_id": session.id, "automatic": true}),
    )
    .await?;
    let plan = wait_for(&mut host, |m| match m {
        ServerMessage::BreakoutPlan { assignments, .. } => Some(assignments),
        _ => None,
    })
    .await?;
    let mut room_of: HashMap<usize, RoomId> =
        plan.iter().filter_map(|a| index.get(&a.user_id).map(|i| (*i, a.room_id))).collect();
    let mut counts: HashMap<RoomId, usize> = HashMap::new();
    for room in room_of.values() {
        *counts.entry(*room).or_default() += 1;
    }
    let mut errors = 0u64;

    // Phase 1: open.
    let started = Instant::now();
    request(&mut host, json!({"type": "open_breakouts", "session_id": session.id})).await?;
    let open = collect(&mut moved_rx, room_of.len(), started, &mut errors).await;

    // Phase 2: single moves, one at a time, each to the least full other room.
    let mut move_latencies = Vec::new();
    let people: Vec<usize> = (0..options.participants).filter(|i| room_of.contains_key(i)).collect();
    for n in 0..options.moves {
        let person = people[(n * 7919) % people.len()];
        let from = room_of[&person];
        let Some(to) = counts
            .iter()
            .filter(|(r, c)| **r != from && **c < capacity)
            .min_by_key(|(r, c)| (**c, **r))
            .map(|(r, _)| *r)
        else {
            bail!("no room has space for a move");
        };
        let started = Instant::now();
        request(&mut host, json!({"type": "move_participant", "session_id": session.id, "user_id": users[person], "from_room_id": from, "to_room_id": to})).await?;
        let latency = collect(&mut moved_rx, 1, started, &mut errors).await;
        move_latencies.extend(latency);
        *counts.entry(from).or_default() -= 1;
        *counts.entry(to).or_default() += 1;
        room_of.insert(person, to);
    }

    // Phase 3: close everything now.
    let started = Instant::now();
    request(&mut host, json!({"type": "close_breakout_rooms", "session_id": session.id, "countdown_secs": 0})).await?;
    let close = collect(&mut moved_rx, room_of.len(), started, &mut errors).await;

    // The stored history: every move of every phase.
    let expected = (open.len() + move_latencies.len() + close.len()) as u64;
    let stored = stored_moves(url, secret, host_user, session.id.0).await?;
    if stored != expected {
        errors += 1;
    }
    for reader in readers {
        reader.abort();
    }
    let delivered = (open.len() + move_latencies.len() + close.len()) as u64;
    let mut all = open.clone();
    all.extend(&move_latencies);
    all.extend(&close);
    Ok(Report {
        scenario: "breakout",
        connections: options.participants + 1,
        sent: (3 + options.moves) as u64,
        delivered,
        latency: stats::summarize(all),
        errors,
        phases: vec![
            Phase { name: "open", events: open.len(), latency: stats::summarize(open), ..Phase::default() },
            Phase {
                name: "moves",
                events: move_latencies.len(),
                latency: stats::summarize(move_latencies),
                ..Phase::default()
            },
            Phase { name: "close", events: close.len(), latency: stats::summarize(close), ..Phase::default() },
        ],
        transitions_stored: Some(stored),
        transitions_expected: Some(expected),
        server_rss_kb: common.server_pid().and_then(stats::rss_kb),
        ..Report::default()
    })
}

async fn connect_as(url: &str, secret: &str, user: uuid::Uuid) -> Result<crate::client::Ws> {
    let token = crate::client::token(secret, user, Role::Therapist)?;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?access_token={token}")).await?;
    next_message(&mut ws).await?;
    Ok(ws)
}

/// Sends a host request and waits for its `ok`.
async fn request(host: &mut crate::client::Ws, mut body: serde_json::Value) -> Result<()> {
    let id = format!("r{}", uuid::Uuid::new_v4().simple());
    body["request_id"] = json!(id);
    send(host, &body).await?;
    wait_for(host, |m| matches!(m, ServerMessage::Ok { request_id: Some(ref r) } if r.as_str() == id).then_some(()))
        .await
}

/// Waits for `count` moved events (at most 30 s) and returns their latencies in microseconds.
async fn collect(
    rx: &mut mpsc::Receiver<(usize, RoomId, Instant)>,
    count: usize,
    started: Instant,
    errors: &mut u64,
) -> Vec<u32> {
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some((_, _, at))) => {
                latencies.push(u32::try_from(at.duration_since(started).as_micros()).unwrap_or(u32::MAX))
            }
            _ => {
                *errors += (count - latencies.len()) as u64;
                break;
            }
        }
    }
    latencies
}

/// Counts the session's stored `move` transitions via `GET /v1/sessions/{id}/transitions`.
async fn stored_moves(ws_url: &str, secret: &str, host: uuid::Uuid, session: uuid::Uuid) -> Result<u64> {
    let authority = ws_url.trim_start_matches("ws://").split('/').next().ok_or_else(|| anyhow!("bad url"))?;
    let token = crate::client::token(secret, host, Role::Therapist)?;
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!(
        "GET /v1/sessions/{session}/transitions HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).context("no HTTP body")?;
    let body: serde_json::Value = serde_json::from_str(body).context("transitions reply")?;
    Ok(body["transitions"].as_array().into_iter().flatten().filter(|t| t["transition_type"] == "move").count() as u64)
}

/// The `room.room_id` of a `moved` frame, read from the text: the server writes `room` right after
/// `session_id`, and `room_id` first within it.
fn room_id_of(text: &str) -> Option<RoomId> {
    const KEY: &str = r#""room":{"room_id":""#;
    let start = text.find(KEY)? + KEY.len();
    let id = text.get(start..start + 36)?;
    uuid::Uuid::parse_str(id).ok().map(RoomId)
}
