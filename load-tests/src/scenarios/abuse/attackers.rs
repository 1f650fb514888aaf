//! The abusive clients of the `abuse` scenario, and the tally of what they did and met.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use convene_protocol::{Role, RoomId, SessionId};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use super::Options;
use crate::Common;
use crate::client::{connect_with, token};

/// The attackers' thread's niceness: the probe, on the default 0, gets the load generator's CPU
/// first, so that what it measures is the server and not the attack's own load.
const ATTACK_NICENESS: i32 = 10;

/// A runtime for the attackers, on its own thread of lower priority.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("attack")
        .on_thread_start(|| {
            let thread = rustix::thread::gettid();
            if let Err(err) = rustix::process::setpriority_process(Some(thread), ATTACK_NICENESS) {
                eprintln!("abuse: could not lower the attackers' priority: {err}");
            }
        })
        .enable_all()
        .build()
}

/// How long a refused flood task waits before it tries again.
const FLOOD_RETRY: Duration = Duration::from_millis(100);
/// How long any attacker waits after a failed connect.
const CONNECT_RETRY: Duration = Duration::from_millis(50);
/// How often a trickling socket sends another piece of its request head, and how big it is.
const TRICKLE_EVERY: Duration = Duration::from_millis(500);
const TRICKLE_PIECE: usize = 1024;
/// Frames an attacker sends before giving other tasks a turn.
const FRAMES_PER_YIELD: u64 = 32;
/// The close code of a connection closed for sending too many frames.
const CLOSE_FLOODING: u16 = 4029;

/// What the attack did and what the server answered it with.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    pub typing_frames_sent: AtomicU64,
    pub flapping_frames_sent: AtomicU64,
    /// Connections the attackers opened again after the server closed them.
    pub reconnects: AtomicU64,
    /// Reconnects refused with 429: the user's budget for new connections was spent.
    pub reconnects_refused_429: AtomicU64,
    /// Closes with 4029 (too many frames).
    pub closed_for_flooding: AtomicU64,
    pub trickle_sockets_opened: AtomicU64,
    /// Trickling sockets the server answered 431 (request head too large).
    pub trickle_refused_431: AtomicU64,
    /// Trickling sockets the server closed without an answer (handshake timeout).
    pub trickle_closed_silently: AtomicU64,
    /// Sockets the one-token flood got upgraded.
    pub flood_accepted: AtomicU64,
    pub flood_refused_429: AtomicU64,
    pub flood_refused_503: AtomicU64,
    pub connect_failures: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Starts every attacker on `runtime`; each runs until `stop` turns true.
#[expect(clippy::too_many_arguments, reason = "the scenario's setup, passed through once")]
pub fn launch(
    runtime: &tokio::runtime::Handle,
    common: &Common,
    secret: &str,
    options: &Options,
    session: SessionId,
    room: RoomId,
    stop: &watch::Receiver<bool>,
    tally: &Arc<Tally>,
) -> Result<Vec<JoinHandle<()>>> {
    let url = common.urls[0].clone();
    let mut tasks = Vec::new();
    for (kind, count) in [(Kind::Typing, options.typing), (Kind::Flapping, options.flappers)] {
        for _ in 0..count {
            let token = token(secret, Uuid::new_v4(), Role::Patient)?;
            let target = Target { url: url.clone(), token, session, room };
            tasks.push(runtime.spawn(flood_frames(target, kind, stop.clone(), tally.clone())));
        }
    }
    let address = authority(&url)?;
    for _ in 0..options.trickle {
        tasks.push(runtime.spawn(trickle(address.clone(), stop.clone(), tally.clone())));
    }
    let shared = token(secret, Uuid::new_v4(), Role::Patient)?;
    for _ in 0..options.flood {
        tasks.push(runtime.spawn(flood_sockets(url.clone(), shared.clone(), stop.clone(), tally.clone())));
    }
    Ok(tasks)
}

#[derive(Clone, Copy)]
enum Kind {
    Typing,
    Flapping,
}

impl Kind {
    /// The `n`th frame of this flood: typing on and off, or joining and leaving.
    fn frame(self, n: u64, session: SessionId, room: RoomId) -> serde_json::Value {
        match self {
            Self::Typing => {
                json!({"type": "typing", "session_id": session, "room_id": room, "active": n.is_multiple_of(2)})
            }
            Self::Flapping => {
                let kind = if n.is_multiple_of(2) { "join_session" } else { "leave_session" };
                json!({"type": kind, "session_id": session})
            }
        }
    }

    fn sent(self, tally: &Tally) -> &AtomicU64 {
        match self {
            Self::Typing => &tally.typing_frames_sent,
            Self::Flapping => &tally.flapping_frames_sent,
        }
    }
}

/// Where a flooding member connects, as whom, and the session it floods.
struct Target {
    url: String,
    token: String,
    session: SessionId,
    room: RoomId,
}

/// Joins the session and sends the flood's frames as fast as the socket takes them,
/// reconnecting (with the same token) whenever the server closes the connection.
async fn flood_frames(target: Target, kind: Kind, stop: watch::Receiver<bool>, tally: Arc<Tally>) {
    let Target { url, token, session, room } = target;
    let sent = kind.sent(&tally);
    let mut first = true;
    while !*stop.borrow() {
        let ws = match connect_with(&url, &token).await {
            Ok(ws) => ws,
            Err(err) => {
                match status_of(&err) {
                    Some(429) => count(&tally.reconnects_refused_429),
                    _ => count(&tally.connect_failures),
                }
                tokio::time::sleep(CONNECT_RETRY).await;
                continue;
            }
        };
        if !first {
            count(&tally.reconnects);
        }
        first = false;
        let (mut sink, stream) = ws.split();
        let reader = tokio::spawn(watch_close(stream, tally.clone()));
        let join = json!({"type": "join_session", "session_id": session}).to_string();
        let mut n = 0;
        let mut result = sink.send(Message::text(join)).await;
        while result.is_ok() && !*stop.borrow() {
            result = sink.send(Message::text(kind.frame(n, session, room).to_string())).await;
            count(sent);
            n += 1;
            if n % FRAMES_PER_YIELD == 0 {
                tokio::task::yield_now().await;
            }
        }
        reader.abort();
    }
}

/// Reads a connection to its end, counting a close for flooding.
async fn watch_close(mut stream: futures_util::stream::SplitStream<crate::client::Ws>, tally: Arc<Tally>) {
    while let Some(Ok(message)) = stream.next().await {
        if let Message::Close(Some(frame)) = message
            && u16::from(frame.code) == CLOSE_FLOODING
        {
            count(&tally.closed_for_flooding);
        }
    }
}

/// Opens a raw socket and sends a WebSocket request head that never ends, a piece at a time,
/// until the server answers or closes it; then opens another.
async fn trickle(address: String, mut stop: watch::Receiver<bool>, tally: Arc<Tally>) {
    while !*stop.borrow() {
        let Ok(socket) = tokio::net::TcpStream::connect(&address).await else {
            count(&tally.connect_failures);
            tokio::time::sleep(CONNECT_RETRY).await;
            continue;
        };
        count(&tally.trickle_sockets_opened);
        let (mut read, mut write) = socket.into_split();
        let head = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        if write.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut pieces = tokio::time::interval(TRICKLE_EVERY);
        let mut answer = [0u8; 64];
        let mut n = 0;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                read = read.read(&mut answer) => {
                    match read {
                        Ok(got) if got > 0 && answer[..got].starts_with(b"HTTP/1.1 431") => count(&tally.trickle_refused_431),
                        _ => count(&tally.trickle_closed_silently),
                    }
                    break;
                }
                _ = pieces.tick() => {
                    let piece = format!("X-Trickle-{n}: {}\r\n", "a".repeat(TRICKLE_PIECE));
                    n += 1;
                    if write.write_all(piece.as_bytes()).await.is_err() {
                        count(&tally.trickle_closed_silently);
                        break;
                    }
                }
            }
        }
    }
}

/// Opens sockets with the one shared token in a loop, holding each one it gets.
async fn flood_sockets(url: String, token: String, mut stop: watch::Receiver<bool>, tally: Arc<Tally>) {
    while !*stop.borrow() {
        match connect_with(&url, &token).await {
            Ok(ws) => {
                count(&tally.flood_accepted);
                let (_sink, mut stream) = ws.split();
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        next = stream.next() => if !matches!(next, Some(Ok(_))) { break },
                    }
                }
            }
            Err(err) => {
                match status_of(&err) {
                    Some(429) => count(&tally.flood_refused_429),
                    Some(503) => count(&tally.flood_refused_503),
                    _ => count(&tally.connect_failures),
                }
                tokio::time::sleep(FLOOD_RETRY).await;
            }
        }
    }
}

/// The HTTP status an upgrade was refused with, if that is why it failed.
fn status_of(err: &anyhow::Error) -> Option<u16> {
    match err.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Http(response)) => Some(response.status().as_u16()),
        _ => None,
    }
}

/// `host:port` of a `ws://` URL.
fn authority(url: &str) -> Result<String> {
    let rest = url.strip_prefix("ws://").context("the abuse scenario needs a ws:// URL")?;
    Ok(rest.split('/').next().unwrap_or(rest).to_owned())
}
