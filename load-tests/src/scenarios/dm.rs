//! `dm`: U users in U/2 one-to-one conversations, connections spread over the `--url`s. Every
//! user sends at a set rate; the other member measures send-to-receive latency and checks that
//! sequence numbers arrive gapless and in order; the sender measures the time to its
//! acknowledgement (the message committed). Users need an organization, so tokens carry one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use clap::Args;
use convene_protocol::{Role, ServerMessage};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::{Phase, Report, number_after, parse_duration};
use crate::client::{Ws, connect_with, send, token_in, wait_for};
use crate::{Common, stats};

#[derive(Args, Debug)]
pub struct Options {
    /// Users, two per conversation.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Messages per second each user sends.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Nobody looks at the conversation, so every message also makes a notification (by
    /// default both members have it open, as in a live chat).
    #[arg(long)]
    unfocused: bool,
}

/// What one user's connection saw.
#[derive(Default)]
struct Seen {
    delivered: u64,
    acked: u64,
    errors: u64,
    delivery: Vec<u32>,
    ack: Vec<u32>,
}

pub async fn run(common: &Common, secret: &str, options: Options) -> Result<Report> {
    let pairs = options.users / 2;
    let org = Uuid::new_v4();
    let per_user = (options.rate * options.duration.as_secs_f64()).round() as u64;
    // Everyone connects first (each user is known once connected), then one of each pair opens
    // the conversation.
    let people: Vec<(Uuid, Role)> =
        (0..pairs).flat_map(|_| [(Uuid::new_v4(), Role::Mentor), (Uuid::new_v4(), Role::Mentee)]).collect();
    let urls = &common.urls;
    let connections = futures_util::stream::iter(people.iter().enumerate())
        .map(|(i, (user, role))| {
            let url = urls[i % urls.len()].clone();
            let token = token_in(secret, *user, *role, Some(org));
            async move { connect_with(&url, &token?).await }
        })
        .buffered(common.connect_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<Ws>>>()?;
    let mut connections = connections.into_iter();
    let mut pairs_ready = Vec::with_capacity(pairs);
    for (pair, people) in people.chunks(2).enumerate() {
        let (Some(mut mentor), Some(mentee)) = (connections.next(), connections.next()) else { break };
        send(&mut mentor, &json!({"type": "open_conversation", "user_id": people[1].0})).await?;
        let conversation = wait_for(&mut mentor, |m| match m {
            ServerMessage::Conversation { conversation, .. } => Some(conversation.id),
            _ => None,
        })
        .await
        .with_context(|| format!("opening conversation {pair}"))?;
        let (mut mentor, mut mentee) = (mentor, mentee);
        if !options.unfocused {
            for ws in [&mut mentor, &mut mentee] {
                send(
                    ws,
                    &json!({"type": "focus_conversation", "request_id": "focus", "conversation_id": conversation}),
                )
                .await?;
                wait_for(ws, |m| matches!(m, ServerMessage::Ok { .. }).then_some(()))
                    .await
                    .with_context(|| format!("focusing conversation {pair}"))?;
            }
        }
        pairs_ready.push((conversation, (mentor, mentee), (people[0].0, people[1].0)));
    }
    let users = pairs_ready.len() * 2;
    eprintln!("dm: {users} users connected in {} conversations; sending for {:?}", pairs_ready.len(), options.duration);

    let base = Instant::now();
    let start = Arc::new(Barrier::new(users + 1));
    let mut tasks = Vec::with_capacity(users);
    let padding = "x".repeat(options.size.saturating_sub(24));
    for (conversation, (mentor, mentee), (mentor_id, mentee_id)) in pairs_ready {
        for (ws, me) in [(mentor, mentor_id), (mentee, mentee_id)] {
            let (start, padding) = (start.clone(), padding.clone());
            // Each conversation gets every message of both members: twice what one sends.
            tasks.push(tokio::spawn(user(
                ws,
                me,
                conversation,
                per_user,
                options.rate,
                per_user * 2,
                padding,
                start,
                base,
                tasks.len() as f64 / users as f64,
            )));
        }
    }
    let cpu_of = || common.server_pids.iter().map(|pid| stats::cpu_micros(Some(*pid))).collect::<Vec<_>>();
    let servers_cpu_before = cpu_of();
    start.wait().await;
    let started = Instant::now();
    let mut seen = Seen::default();
    for task in tasks {
        let one = task.await.map_err(|e| anyhow!("a user panicked: {e}"))??;
        seen.delivered += one.delivered;
        seen.acked += one.acked;
        seen.errors += one.errors;
        seen.delivery.extend(one.delivery);
        seen.ack.extend(one.ack);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu: Option<u64> = servers_cpu_before
        .iter()
        .zip(cpu_of())
        .map(|(before, after)| before.zip(after).map(|(before, after)| after - before))
        .sum();
    let sent = per_user * users as u64;
    let expected_deliveries = sent;
    Ok(Report {
        scenario: "dm",
        connections: users,
        sent,
        delivered: seen.delivered,
        delivered_per_s: seen.delivered as f64 / elapsed.max(f64::EPSILON),
        latency: stats::summarize(seen.delivery),
        errors: seen.errors + expected_deliveries.saturating_sub(seen.delivered) + sent.saturating_sub(seen.acked),
        acked_per_s: Some(seen.acked as f64 / elapsed.max(f64::EPSILON)),
        phases: vec![Phase {
            name: "ack",
            events: seen.acked as usize,
            latency: stats::summarize(seen.ack),
            ..Phase::default()
        }],
        server_cpu_us_per_delivery: server_cpu
            .filter(|_| seen.delivered > 0)
            .map(|us| us as f64 / seen.delivered as f64),
        server_cpu_percent: server_cpu.map(|us| us as f64 / 1e4 / elapsed.max(f64::EPSILON)),
        ..Report::default()
    })
}

/// One user: sends `count` messages at `rate` per second and reads until its own acks and
/// `expected` conversation messages (its own and the other member's) arrived, or it stalls.
#[expect(clippy::too_many_arguments, reason = "one task's whole setup, passed once")]
async fn user(
    ws: Ws,
    me: Uuid,
    conversation: convene_protocol::ConversationId,
    count: u64,
    rate: f64,
    expected: u64,
    padding: String,
    start: Arc<Barrier>,
    base: Instant,
    phase: f64,
) -> Result<Seen> {
    /// A user that hears nothing for this long gives up.
    const STALL: Duration = Duration::from_secs(15);
    let (mut sink, mut stream) = ws.split();
    let sender = tokio::spawn(async move {
        start.wait().await;
        // The users' first sends are spread over one period, so they do not all send at once.
        let period = Duration::from_secs_f64(1.0 / rate);
        tokio::time::sleep(period.mul_f64(phase)).await;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..count {
            ticks.tick().await;
            let t = base.elapsed().as_nanos();
            let frame = json!({"type": "send_direct", "conversation_id": conversation,
                "client_msg_id": format!("t{t}"), "body": format!("t={t};{padding}")});
            sink.send(Message::text(frame.to_string())).await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    let mut seen = Seen {
        delivery: Vec::with_capacity(count as usize),
        ack: Vec::with_capacity(count as usize),
        ..Seen::default()
    };
    let mut last_seq = 0;
    let mut mine = 0;
    let own = format!(r#""sender_id":"{me}""#);
    // Pings do not count as progress: a user hears its messages by `stalled` or gives up.
    let mut stalled = tokio::time::Instant::now() + STALL;
    while seen.acked < count || seen.delivered + mine < expected {
        let text = match tokio::time::timeout_at(stalled, stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            _ => break,
        };
        stalled = tokio::time::Instant::now() + STALL;
        let text = text.as_str();
        let now = base.elapsed().as_nanos() as u64;
        if text.starts_with(r#"{"type":"direct_ack","#) {
            if let Some(sent) = number_after(text, r#""client_msg_id":"t"#) {
                seen.acked += 1;
                seen.ack.push(u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX));
            }
        } else if text.starts_with(r#"{"type":"direct_message","#) {
            let (Some(seq), Some(sent)) = (number_after(text, r#""seq":"#), number_after(text, r#""body":"t="#)) else {
                seen.errors += 1;
                continue;
            };
            if seq != last_seq + 1 {
                seen.errors += 1;
            }
            last_seq = seq;
            // Its own messages come back too (for its other devices); only the other's count.
            if text.contains(&own) {
                mine += 1;
            } else {
                seen.delivered += 1;
                seen.delivery.push(u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX));
            }
        } else if text.starts_with(r#"{"type":"error""#) {
            seen.errors += 1;
        }
    }
    sender.await.map_err(|e| anyhow!("a sender panicked: {e}"))??;
    Ok(seen)
}
