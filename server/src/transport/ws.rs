//! WebSocket connections: authentication before the upgrade, then one task per connection that
//! reads requests, writes queued frames and watches the heartbeat.
//!
//! Guarantees:
//! - No socket without a valid token: the token is checked before the upgrade (401 otherwise).
//! - Every limit of the WebSocket library is set explicitly (frame and message size, buffers).
//! - Frames queued for the connection are written together and flushed once.
//! - A connection that stops answering for the heartbeat timeout is closed and leaves its
//!   sessions; a frame over the size limit closes it with 1009; shutdown closes it with 1012.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convene_protocol::{ClientMessage, ConnId, ErrorCode, PROTOCOL_VERSION, ServerMessage, SessionId};
use futures_util::SinkExt as _;
use serde::Deserialize;
use tokio::time::Instant;
use tracing::{Instrument as _, debug, info_span, warn};

use crate::admission::{Permit, Refusal};
use crate::app::App;
use crate::auth::Identity;
use crate::handlers::{ConnCtx, dispatch};
use crate::limits::{FrameBudget, FrameVerdict};
use crate::outbound::{CloseReason, ConnLink, ConnQueue, Frame, Signal};
use crate::session::Command;

/// Bytes read from the socket at a time. Small, because it is allocated for every connection and
/// zeroed before every read; client frames are small, and larger ones are read in pieces.
const READ_BUFFER_BYTES: usize = 1024;
/// Outgoing bytes gathered before a write is forced. Frames are flushed explicitly after each
/// batch, so this only caps how much one batch holds before going out.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Largest amount of outgoing data tungstenite may hold. Server frames can be large (the
/// snapshot of a thousand-member session is some 200 KB); what bounds a connection's outgoing
/// memory is its queue of frames and the write timeout, so this cap only catches a runaway frame.
const MAX_WRITE_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// Queued frames taken per batch: enough to amortise the write syscall, few enough that reading
/// is not starved while a busy room drains.
const OUTBOUND_BATCH: usize = 64;
/// How long writing one batch may take before the client counts as slow.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames read from a client closed for flooding while its close is awaited: a client that
/// listens answers within its frames in flight; one that does not is cut off.
const FLOOD_CLOSE_FRAMES: usize = 256;

#[derive(Deserialize)]
pub struct ConnectParams {
    access_token: Option<String>,
}

/// `GET /v1/ws`: checks the origin and the token, then upgrades.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    Query(params): Query<ConnectParams>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&app.config.allowed_origins, &headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let token = params.access_token.as_deref().or_else(|| bearer_token(&headers));
    let verified = match token {
        Some(token) => Some(app.verifier.verify(token).await),
        None => None,
    };
    let identity = match verified {
        Some(Ok(identity)) => identity,
        Some(Err(err)) => {
            debug!(reason = %err, "refused a connection");
            return (StatusCode::UNAUTHORIZED, "invalid access token").into_response();
        }
        None => return (StatusCode::UNAUTHORIZED, "an access token is required").into_response(),
    };
    let permit = match app.gate.admit(identity.user_id) {
        Ok(permit) => permit,
        Err(refusal) => {
            debug!(user_id = %identity.user_id, %refusal, "refused a connection");
            let status = refusal_status(refusal);
            if status == StatusCode::TOO_MANY_REQUESTS {
                // A client that retries at once is slowed to the delay; the socket waits in its
                // handshake, where the node's headroom bounds how many may.
                let delay = app.config.limits.refusal_delay;
                tokio::time::sleep(delay).await;
                let retry_after = delay.as_secs().max(1).to_string();
                return (status, [(header::RETRY_AFTER, retry_after)], refusal.to_string()).into_response();
            }
            return (status, refusal.to_string()).into_response();
        }
    };
    let conn_id = ConnId::new(app.node, app.conn_ids.fetch_add(1, Ordering::Relaxed));
    let max = app.config.max_frame_bytes;
    let tracker = app.conn_tracker.clone();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let span = info_span!("conn", conn_id = %conn_id, user_id = %identity.user_id);
            tracker.track_future(run(socket, permit, conn_id, identity, app, span))
        })
}

/// The HTTP status a refused upgrade is answered with.
fn refusal_status(refusal: Refusal) -> StatusCode {
    match refusal {
        Refusal::NodeFull => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::UserFull | Refusal::TooFast => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// The `Bearer` token of an `Authorization` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    headers
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .is_some_and(|origin| allowed.iter().any(|a| a == origin))
}

/// Serves one connection. Its span is entered where the connection handles a request or logs,
/// not around the whole task: the task wakes about once per frame it writes, and entering a
/// span on every wake-up is a measurable share of a delivery's cost.
async fn run(
    mut socket: WebSocket,
    permit: Permit,
    conn_id: ConnId,
    identity: Identity,
    app: Arc<App>,
    span: tracing::Span,
) {
    app.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    app.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    let (link, queue) = ConnLink::new(conn_id, identity.user_id);
    let hello = ServerMessage::Hello {
        conn_id,
        user_id: identity.user_id,
        role: identity.role,
        protocol_version: PROTOCOL_VERSION,
        heartbeat_interval_ms: u64::try_from(app.config.heartbeat_interval().as_millis()).unwrap_or(u64::MAX),
    };
    link.send(&hello);
    app.connections.insert(link.clone());
    // The node closes every registered connection when it shuts down; one registered after
    // that closes itself.
    if app.shutdown.is_cancelled() {
        link.close(CloseReason::Restarting);
    }
    let inbox = match app.inboxes.attach(link.clone(), &identity).await {
        Ok(inbox) => inbox,
        Err(err) => {
            debug!(parent: &span, error = %err, "closing a connection that found no inbox");
            drop(permit);
            app.connections.remove(conn_id);
            close(&mut socket, CloseReason::Restarting).await;
            app.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let mut ctx =
        ConnCtx { conn_id, identity, link, app: app.clone(), sessions: HashMap::new(), inbox, focused: false };
    let reason = serve(&mut socket, &mut ctx, queue, &permit.frames(), &span).await;
    // The place is given back before the client hears of the end (the close handshake or the
    // socket closing), so a client that reconnects at once is not refused for its old socket.
    drop(permit);
    app.connections.remove(conn_id);
    async {
        debug!(?reason, "connection ending");
        if reason == Some(CloseReason::Slow) {
            app.metrics.slow_disconnects.fetch_add(1, Ordering::Relaxed);
        }
        for handle in ctx.sessions.values() {
            if handle.send(Command::Disconnect { conn: conn_id }).await.is_err() {
                debug!(session_id = %handle.id(), "session already stopped");
            }
        }
        app.inboxes.detach(&ctx.inbox, conn_id).await;
        if ctx.focused {
            let forget = app.store.set_focus(conn_id, ctx.identity.user_id, None);
            if let Err(err) = crate::store::Store::within(app.config.db_timeout, forget).await {
                warn!(error = %err, "could not forget what a closed connection looked at; cleared when its node goes");
            }
        }
        if let Some(reason) = reason {
            close(&mut socket, reason).await;
        }
    }
    .instrument(span)
    .await;
    app.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
}

/// Closes the connection from the server's side with the close handshake: the close frame, then
/// the client's own close (or the timeout), so that the client reads everything queued before it.
/// A flooding client gets only [`FLOOD_CLOSE_FRAMES`] more frames read for its close to arrive:
/// waiting longer would mean reading its flood.
async fn close(socket: &mut WebSocket, reason: CloseReason) {
    let handshake = async {
        let frame = CloseFrame { code: reason.code(), reason: reason.text().into() };
        socket.send(Message::Close(Some(frame))).await?;
        let mut allowance = if reason == CloseReason::Flooding { FLOOD_CLOSE_FRAMES } else { usize::MAX };
        while let Some(message) = socket.recv().await {
            if matches!(message?, Message::Close(_)) || allowance == 0 {
                break;
            }
            allowance -= 1;
        }
        Ok::<(), axum::Error>(())
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, handshake).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => debug!(error = %err, "close handshake failed"),
        Err(_) => debug!("close handshake timed out"),
    }
}

/// Runs the connection until it ends; returns why the server is closing it, if it is.
async fn serve(
    socket: &mut WebSocket,
    ctx: &mut ConnCtx,
    mut queue: ConnQueue,
    frames: &Mutex<FrameBudget>,
    span: &tracing::Span,
) -> Option<CloseReason> {
    let app = ctx.app.clone();
    let timeout = app.config.heartbeat_timeout;
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + app.config.heartbeat_interval(), app.config.heartbeat_interval());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let token_expiry = token_deadline(ctx.identity.expires_at);
    // Polled on every wake-up: the connection's own signals (a close, including the node's
    // shutdown, and rechecks after cluster changes), no lock or waiter shared with others.
    let closer = queue.closer.clone();
    tokio::pin!(token_expiry);
    let mut batch = Vec::with_capacity(OUTBOUND_BATCH);
    let budget = app.config.budgets.frames;
    loop {
        tokio::select! {
            biased;
            signal = std::future::poll_fn(|cx| closer.poll_signal(cx)) => match signal {
                Signal::Close(reason) => {
                    if reason.delivers_queued() {
                        flush_queued(socket, &mut queue, &mut batch).instrument(span.clone()).await;
                    }
                    return Some(reason);
                }
                // Sessions that let the connection go, owned by a node that died, or whose
                // messages to this node were lost: the client is told, joins again on this
                // connection and resumes, and the join finds the session's owner afresh.
                Signal::Recheck => leave_changed_sessions(ctx, closer.take_interrupted()).instrument(span.clone()).await,
            },
            received = queue.rx.recv_many(&mut batch, OUTBOUND_BATCH) => {
                if received == 0 {
                    return None;
                }
                let write = write_batch(socket, &mut batch);
                tokio::select! {
                    result = tokio::time::timeout(WRITE_TIMEOUT, write) => match result {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            span.in_scope(|| log_write_error(&err));
                            return None;
                        }
                        Err(_) => return Some(CloseReason::Slow),
                    },
                    reason = std::future::poll_fn(|cx| closer.poll_closed(cx)) => return Some(reason),
                }
            }
            incoming = socket.recv() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        app.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                        let verdict =
                            frames.lock().unwrap_or_else(PoisonError::into_inner).take(budget, std::time::Instant::now());
                        if verdict == FrameVerdict::Close {
                            return Some(CloseReason::Flooding);
                        }
                        if verdict == FrameVerdict::Refuse {
                            app.metrics.frames_rate_limited.fetch_add(1, Ordering::Relaxed);
                            let request_id = ClientMessage::request_id_of(text.as_str());
                            ctx.reply(&ServerMessage::error(request_id, ErrorCode::RateLimited, "too many frames; slow down"));
                            continue;
                        }
                        // Boxed: the largest handler future would otherwise be part of every
                        // connection's task, idle or not.
                        Box::pin(dispatch(ctx, text.as_str())).instrument(span.clone()).await;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        ctx.reply(&ServerMessage::error(None, ErrorCode::Invalid, "binary frames are not supported; send JSON text"));
                    }
                    // Pings are answered by the library; pongs only prove the client is alive.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return None,
                    Some(Err(err)) => return classify(&err),
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= timeout {
                    return Some(CloseReason::Unresponsive);
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return None;
                }
            }
            () = &mut token_expiry => return Some(CloseReason::TokenExpired),
        }
    }
}

/// Leaves the sessions that changed owners and tells the client, which joins again: those
/// that let the connection go (`interrupted`, told by the session itself), and those whose
/// owner died or whose messages to this node were lost (found here).
async fn leave_changed_sessions(ctx: &mut ConnCtx, interrupted: Vec<SessionId>) {
    // A session that told us already let the connection go. Its handle stays: a late word from
    // before a rejoin must not undo the rejoin.
    let mut told: Vec<SessionId> = interrupted.into_iter().filter(|id| ctx.sessions.contains_key(id)).collect();
    // A stale handle is of no use any more. An owner that is still there lets the connection go
    // too (it may not know that its messages here were lost); a dead one cannot hear it.
    for (session_id, handle) in ctx.sessions.extract_if(|_, handle| handle.is_stale()).collect::<Vec<_>>() {
        if handle.send(Command::Disconnect { conn: ctx.conn_id }).await.is_err() {
            debug!(%session_id, "the session's owner did not take the departure");
        }
        told.push(session_id);
    }
    told.sort_unstable();
    told.dedup();
    for session_id in told {
        debug!(%session_id, "the connection left a session that changed owners; the client joins again");
        ctx.reply(&ServerMessage::SessionInterrupted { session_id });
    }
}

/// Writes what is already queued (within the write timeout), so that a connection the server
/// closes reads every reply queued before the close.
async fn flush_queued(socket: &mut WebSocket, queue: &mut ConnQueue, batch: &mut Vec<Frame>) {
    while let Ok(frame) = queue.rx.try_recv() {
        batch.push(frame);
    }
    match tokio::time::timeout(WRITE_TIMEOUT, write_batch(socket, batch)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log_write_error(&err),
        Err(_) => debug!("the client did not read its last frames in time"),
    }
}

async fn write_batch(socket: &mut WebSocket, batch: &mut Vec<Frame>) -> Result<(), axum::Error> {
    for frame in batch.drain(..) {
        socket.feed(Message::Text(frame.into_text())).await?;
    }
    socket.flush().await
}

/// A peer going away is routine; anything else failing a write is worth a warning.
fn log_write_error(err: &axum::Error) {
    use std::error::Error as _;
    match err.source().and_then(|source| source.downcast_ref::<tungstenite::Error>()) {
        Some(tungstenite::Error::Io(_) | tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)
        | None => {
            debug!(error = %err, "write failed; the client went away");
        }
        Some(other) => warn!(error = %other, "write failed; dropping the connection"),
    }
}

/// Sleeps until the token expires.
async fn token_deadline(expires_at: i64) {
    let now = chrono::Utc::now().timestamp();
    let remaining = u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(remaining)).await;
}

/// Maps a read error to the close the server owes the client.
fn classify(err: &axum::Error) -> Option<CloseReason> {
    use std::error::Error as _;
    match err.source().and_then(|source| source.downcast_ref::<tungstenite::Error>()) {
        Some(tungstenite::Error::Capacity(_)) => Some(CloseReason::TooBig),
        Some(tungstenite::Error::Protocol(_)) => Some(CloseReason::ProtocolError),
        Some(tungstenite::Error::Utf8(_)) => Some(CloseReason::InvalidText),
        _ => None,
    }
}
