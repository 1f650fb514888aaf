//! `drain`: the members of S sessions post messages, each keeping a window of them unanswered,
//! when the server (`--server-pid`) is sent SIGTERM. Reports how long the drain took, and checks
//! on every connection what the server promises: each request it read is answered exactly once
//! before the close, so the answered requests are the first ones sent, and the rest (never read)
//! go unanswered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use clap::Args;
use convene_protocol::{Role, RoomId, ServerMessage, SessionId};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use super::{Report, number_after, parse_duration};
use crate::Common;
use crate::client::{Ws, connect, send, wait_for};

#[derive(Args, Debug)]
pub struct Options {
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Members per session, its host included; every one of them posts.
    #[arg(long, default_value_t = 200)]
    members: usize,
    /// Messages each member keeps sent and unanswered.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// How long the members post before the server is sent SIGTERM.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    after: Duration,
}

/// What the drain looked like from the clients.
#[derive(Debug, Default, Serialize)]
pub struct DrainReport {
    /// From SIGTERM to the last connection's close frame.
    pub closed_ms: f64,
    /// From SIGTERM to the server's process gone.
    pub exited_ms: f64,
    /// Connections closed with 1012.
    pub closed_1012: usize,
    /// Requests answered once, of them refused (an error), and answered after SIGTERM.
    pub answered: u64,
    pub refused: u64,
    pub answered_after_sigterm: u64,
    /// Requests answered more than once: none, if the server keeps its promise.
    pub answered_twice: u64,
    /// Requests never answered: sent after the server stopped reading.
    pub unanswered: u64,
    /// Connections with a request answered after one that was not: one the server read and
    /// left unanswered. None, if the server keeps its promise.
    pub connections_with_gaps: usize,
}

/// What one member saw.
#[derive(Default)]
struct Seen {
    /// Answers to each request, by number.
    answers: Vec<u8>,
    refused: u64,
    /// Answers that came after SIGTERM was sent.
    late: u64,
    sent: u64,
    close: Option<(u16, Instant)>,
}

pub async fn run(common: &Common, secret: &str, options: Options) -> Result<Report> {
    // Members of other nodes would stay connected, and their readers would wait for good.
    anyhow::ensure!(common.urls.len() == 1, "drain stops one server: give it one --url");
    let pid = common.server_pid().context("drain needs --server-pid: the server to send SIGTERM")?;
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid)?).context("not a process id")?;
    let mut members = Vec::new();
    for index in 0..options.sessions {
        let url = &common.urls[index % common.urls.len()];
        let mut host = connect(url, secret, Role::Therapist).await?;
        send(&mut host, &json!({"type": "create_session", "session_type": "group"})).await?;
        let session = wait_for(&mut host, |m| match m {
            ServerMessage::SessionCreated { session, .. } => Some(session),
            _ => None,
        })
        .await?;
        members.push((join(host, session.id).await?, session.id, session.main_room_id));
        let joins = futures_util::stream::iter(1..options.members)
            .map(|i| async move {
                let ws = connect(&common.urls[i % common.urls.len()], secret, Role::Patient).await?;
                join(ws, session.id).await
            })
            .buffer_unordered(common.connect_concurrency)
            .collect::<Vec<_>>()
            .await;
        for ws in joins {
            members.push((ws?, session.id, session.main_room_id));
        }
    }
    let connections = members.len();
    eprintln!("drain: {connections} connections joined; posting for {:?} before SIGTERM", options.after);
    let start = Arc::new(Barrier::new(connections + 1));
    let terminating = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = members
        .into_iter()
        .map(|(ws, session, room)| {
            tokio::spawn(member(ws, session, room, options.window, start.clone(), terminating.clone()))
        })
        .collect();
    start.wait().await;
    tokio::time::sleep(options.after).await;
    terminating.store(true, Ordering::Release);
    let terminated = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    let mut seen = Vec::with_capacity(connections);
    for task in tasks {
        seen.push(task.await.map_err(|err| anyhow!("{err}"))??);
    }
    // Polled: the process is not this one's child, so there is nothing to wait on.
    while std::path::Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let exited = terminated.elapsed();
    Ok(report(connections, &seen, terminated, exited))
}

async fn join(mut ws: Ws, session: SessionId) -> Result<Ws> {
    send(&mut ws, &json!({"type": "join_session", "session_id": session})).await?;
    wait_for(&mut ws, |m| matches!(m, ServerMessage::Joined { .. }).then_some(())).await?;
    Ok(ws)
}

/// Posts `m0`, `m1`, … keeping `window` unanswered, until the server closes the connection.
async fn member(
    ws: Ws,
    session: SessionId,
    room: RoomId,
    window: usize,
    start: Arc<Barrier>,
    terminating: Arc<AtomicBool>,
) -> Result<Seen> {
    let (mut sink, mut stream) = ws.split();
    let permits = Arc::new(Semaphore::new(window));
    let sent = Arc::new(AtomicU64::new(0));
    start.wait().await;
    let sender = {
        let (permits, sent) = (permits.clone(), sent.clone());
        tokio::spawn(async move {
            for n in 0u64.. {
                permits.acquire().await?.forget();
                let frame = json!({"type": "send_message", "request_id": format!("m{n}"), "session_id": session,
                    "room_id": room, "client_msg_id": format!("m{n}"), "body": "drain"});
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                sent.store(n + 1, Ordering::Release);
            }
            Ok::<(), anyhow::Error>(())
        })
    };
    let mut seen = Seen::default();
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Message::Text(text)) => {
                let text = text.as_str();
                let Some(n) = number_after(text, r#""request_id":"m"#) else { continue };
                let n = usize::try_from(n)?;
                if seen.answers.len() <= n {
                    seen.answers.resize(n + 1, 0);
                }
                seen.answers[n] = seen.answers[n].saturating_add(1);
                if text.starts_with(r#"{"type":"error""#) {
                    seen.refused += 1;
                }
                seen.late += u64::from(terminating.load(Ordering::Acquire));
                permits.add_permits(1);
            }
            Ok(Message::Close(frame)) => {
                seen.close = Some((frame.map_or(0, |frame| u16::from(frame.code)), Instant::now()));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // A sender waiting for room in its window would wait for good.
    sender.abort();
    seen.sent = sent.load(Ordering::Acquire);
    Ok(seen)
}

fn report(connections: usize, seen: &[Seen], terminated: Instant, exited: Duration) -> Report {
    let mut drain = DrainReport { exited_ms: exited.as_secs_f64() * 1e3, ..DrainReport::default() };
    let mut sent = 0;
    for member in seen {
        if let Some((code, at)) = member.close {
            drain.closed_1012 += usize::from(code == 1012);
            drain.closed_ms = drain.closed_ms.max(at.saturating_duration_since(terminated).as_secs_f64() * 1e3);
        }
        // A send the server answered may not have been counted yet when the sender stopped.
        let member_sent = member.sent.max(member.answers.len() as u64);
        sent += member_sent;
        let answered = member.answers.iter().filter(|answers| **answers > 0).count() as u64;
        drain.answered += answered;
        drain.answered_twice += member.answers.iter().filter(|answers| **answers > 1).count() as u64;
        drain.refused += member.refused;
        drain.answered_after_sigterm += member.late;
        drain.unanswered += member_sent - answered;
        // `answers` ends with the last request answered: an unanswered one before it is a gap.
        drain.connections_with_gaps += usize::from(member.answers.contains(&0));
    }
    Report {
        scenario: "drain",
        connections,
        sent,
        delivered: drain.answered,
        errors: drain.answered_twice + drain.connections_with_gaps as u64,
        drain: Some(drain),
        ..Report::default()
    }
}
