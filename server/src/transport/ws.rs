//! WebSocket connections: authentication before the upgrade, then two tasks per connection: a
//! reader that handles requests and watches the heartbeat and the token, and a writer that
//! writes queued frames and pings.
//!
//! Guarantees:
//! - No socket without a valid token: the token is checked before the upgrade (401 otherwise).
//! - Every limit of the WebSocket library is set explicitly (frame and message size, buffers).
//! - Frames queued for the connection are written together and flushed once; writing never
//!   waits for a request being handled, nor reading for a slow client's socket.
//! - A connection that stops answering for the heartbeat timeout is closed and leaves its
//!   sessions; a frame over the size limit closes it with 1009; shutdown closes it with 1012,
//!   after answering every request it read (it stops reading first; see `server::run`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convene_protocol::{ClientMessage, ConnId, ErrorCode, PROTOCOL_VERSION, ServerMessage, SessionId};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::task::JoinError;
use tokio::time::Instant;
use tracing::{Instrument as _, debug, error, info_span, warn};

use crate::admission::{Permit, Refusal};
use crate::app::App;
use crate::auth::Identity;
use crate::handlers::{ConnCtx, dispatch};
use crate::limits::{FrameBudget, FrameVerdict};
use crate::outbound::{CloseReason, ConnLink, ConnQueue, Frame, Signal, WriterSignal};
use crate::session::Command;

/// Bytes read from the socket at a time. Small, because it is allocated for every connection and
/// zeroed before every read; client frames are small, and larger ones are read in pieces.
const READ_BUFFER_BYTES: usize = 1024;
/// How long a connection of a node that is shutting down waits for the answers to its requests
/// relayed to other nodes. An owner answers after a round trip and its commit; one that takes
/// longer is not waited for (the close answers `unavailable`), so that a deploy is not held up.
const RELAYED_ANSWERS_GRACE: Duration = Duration::from_secs(2);
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
            tracker.track_future(run(Box::new(socket), permit, conn_id, identity, app, span))
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

/// Serves one connection. Its span is entered where the connection handles a request, writes or
/// logs, not around its tasks: the writer wakes about once per batch of frames, and entering a
/// span on every wake-up is a measurable share of a delivery's cost.
async fn run(
    mut socket: Socket,
    permit: Permit,
    conn_id: ConnId,
    identity: Identity,
    app: Arc<App>,
    span: tracing::Span,
) {
    app.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    app.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    let (link, queue) = ConnLink::new(conn_id, identity.user_id, app.connections.awaiting());
    link.send(&ServerMessage::Hello {
        conn_id,
        user_id: identity.user_id,
        role: identity.role,
        protocol_version: PROTOCOL_VERSION,
        heartbeat_interval_ms: u64::try_from(app.config.heartbeat_interval().as_millis()).unwrap_or(u64::MAX),
    });
    app.connections.insert(link.clone());
    // The node closes every registered connection when it shuts down; one registered after
    // that closes itself.
    if app.shutdown.is_cancelled() {
        link.close(CloseReason::Restarting);
    }
    // The steps before and after serving are boxed, like request handling: the task otherwise
    // holds the largest of them (store calls, the close handshake) for as long as it lives.
    let inbox = match Box::pin(app.inboxes.attach(link.clone(), &identity)).await {
        Ok(inbox) => inbox,
        Err(err) => {
            debug!(parent: &span, error = %err, "closing a connection that found no inbox");
            drop(permit);
            app.connections.remove(conn_id);
            Box::pin(close(&mut socket, CloseReason::Restarting)).await;
            app.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let mut ctx =
        ConnCtx { conn_id, identity, link, app: app.clone(), sessions: HashMap::new(), inbox, focused: false };
    let (reason, remains) = serve(socket, &mut ctx, queue, &permit.frames(), &span).await;
    // The place is given back before the client hears of the end (the close handshake or the
    // socket closing), so a client that reconnects at once is not refused for its old socket.
    drop(permit);
    app.connections.remove(conn_id);
    Box::pin(async {
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
        if let (Some(reason), Remains::Whole(mut socket)) = (reason, remains) {
            close(&mut socket, reason).await;
        }
    }
    .instrument(span))
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

/// How the reader stopped.
enum Ending {
    /// The server closes the connection, for this reason.
    Close(CloseReason),
    /// The client went away (or closed the connection itself).
    Gone,
    /// The writer stopped first: writing failed, or took too long.
    Writer(Result<Option<Sink>, JoinError>),
}

/// Runs the connection until it ends. This task reads requests and keeps the heartbeat; a
/// writer task of the connection's own writes its queued frames, so that a frame wakes the
/// writer alone and never polls the reading side or its timers. Returns why the server is
/// closing the connection, if it is, with what remains of the socket.
async fn serve(
    socket: Socket,
    ctx: &mut ConnCtx,
    queue: ConnQueue,
    frames: &Mutex<FrameBudget>,
    span: &tracing::Span,
) -> (Option<CloseReason>, Remains) {
    let app = ctx.app.clone();
    // Held while the connection may read requests, and then until what it read is answered
    // outside this node's sessions; the node's shutdown waits for its release.
    let reading = app.readers.token();
    let timeout = app.config.heartbeat_timeout;
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + app.config.heartbeat_interval(), app.config.heartbeat_interval());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let token_expiry = token_deadline(ctx.identity.expires_at);
    // The connection's own signals (a close, including the node's shutdown, and rechecks after
    // cluster changes), no lock or waiter shared with others.
    let closer = queue.closer.clone();
    tokio::pin!(token_expiry);
    let budget = app.config.budgets.frames;
    let (sink, mut stream) = socket.split();
    let mut writer = app.conn_tracker.spawn(write_frames(sink, queue, app.config.write_timeout, span.clone()));
    let ending = loop {
        tokio::select! {
            biased;
            signal = std::future::poll_fn(|cx| closer.poll_signal(cx)) => match signal {
                Signal::Close(reason) => break Ending::Close(reason),
                // The node is shutting down: the connection closes once what it read is answered.
                Signal::StopReading => {
                    break Box::pin(await_close(ctx, reading, &closer, &mut writer).instrument(span.clone())).await;
                }
                // Sessions that let the connection go, owned by a node that died, or whose
                // messages to this node were lost: the client is told, joins again on this
                // connection and resumes, and the join finds the session's owner afresh.
                Signal::Recheck => Box::pin(leave_changed_sessions(ctx, closer.take_interrupted()).instrument(span.clone())).await,
            },
            written = &mut writer => break Ending::Writer(written),
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        app.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                        let verdict =
                            frames.lock().unwrap_or_else(PoisonError::into_inner).take(budget, std::time::Instant::now());
                        if verdict == FrameVerdict::Close {
                            break Ending::Close(CloseReason::Flooding);
                        }
                        if verdict == FrameVerdict::Refuse {
                            app.metrics.frames_rate_limited.fetch_add(1, Ordering::Relaxed);
                            let request_id = ClientMessage::request_id_of(text.as_str());
                            ctx.reply(&ServerMessage::error(request_id, ErrorCode::RateLimited, "too many frames; slow down"));
                            continue;
                        }
                        // Boxed: the largest handler future would otherwise be part of every
                        // connection's reader, idle or not.
                        Box::pin(dispatch(ctx, text.as_str())).instrument(span.clone()).await;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        ctx.reply(&ServerMessage::error(None, ErrorCode::Invalid, "binary frames are not supported; send JSON text"));
                    }
                    // Pings are answered by the library; pongs only prove the client is alive.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break Ending::Gone,
                    Some(Err(err)) => break classify(&err).map_or(Ending::Gone, Ending::Close),
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= timeout {
                    break Ending::Close(CloseReason::Unresponsive);
                }
                closer.ping();
                // A request whose answer never came, though no node died and nothing between
                // nodes went missing, is answered here, once, all the same.
                let answer_timeout = app.config.cluster.answer_timeout;
                ctx.link.abandon_requests(
                    |waiter| waiter.sent.elapsed() >= answer_timeout,
                    "the session's node did not answer in time; retry",
                );
            }
            () = &mut token_expiry => break Ending::Close(CloseReason::TokenExpired),
        }
    };
    // The writer stops on the close (writing first what the reason delivers), and at once when
    // the client is gone.
    let (written, reason) = match ending {
        Ending::Writer(written) => (written, closer.reason()),
        Ending::Close(reason) => {
            closer.close(reason);
            ((&mut writer).await, closer.reason())
        }
        Ending::Gone => {
            writer.abort();
            ((&mut writer).await, None)
        }
    };
    let sink = match written {
        Ok(sink) => sink,
        Err(err) if err.is_cancelled() => None,
        Err(err) => {
            error!(parent: span, error = %err, "the connection's writer failed");
            None
        }
    };
    let remains = match sink {
        Some(sink) => match sink.reunite(stream) {
            Ok(socket) => Remains::Whole(socket),
            Err(err) => {
                error!(parent: span, error = %err, "the connection's halves did not fit together");
                Remains::Reading(err.1)
            }
        },
        None => Remains::Reading(stream),
    };
    (reason, remains)
}

/// What is left of the socket once serving ends: whole, for the close handshake, or only its
/// reading half when the writer stopped without handing back its own. Either keeps the socket
/// open until the connection's place is given back, so a client that sees its socket end can
/// connect again at once.
enum Remains {
    Whole(Socket),
    Reading(#[expect(dead_code, reason = "held only to keep the socket open until it is dropped")] SplitStream<Socket>),
}

/// A connection's socket. Boxed: it is moved into each step of the connection (an async
/// function's arguments stay part of its future), and it is large.
type Socket = Box<WebSocket>;

/// The sending half of a connection's socket, which its writer owns.
type Sink = SplitSink<Socket, Message>;

/// How one write ended.
enum Wrote {
    Done,
    /// The client went away.
    Failed,
    /// The connection is closing: told so while writing, or too slow to read.
    Stopped,
}

/// Writes the connection's queued frames, flushing once per batch, and the heartbeat's pings,
/// until the connection closes (returning the sending half for the close handshake) or writing
/// fails (the client is gone). A batch that takes longer than `timeout` closes the connection
/// as slow.
async fn write_frames(mut sink: Sink, mut queue: ConnQueue, timeout: Duration, span: tracing::Span) -> Option<Sink> {
    let closer = queue.closer.clone();
    let mut batch = Vec::with_capacity(OUTBOUND_BATCH);
    loop {
        let ping = tokio::select! {
            biased;
            signal = std::future::poll_fn(|cx| closer.poll_writer(cx)) => match signal {
                WriterSignal::Close(reason) => {
                    if reason.delivers_queued() {
                        flush_queued(&mut sink, &mut queue, &mut batch, timeout).instrument(span.clone()).await;
                    }
                    return Some(sink);
                }
                WriterSignal::Ping => true,
            },
            received = queue.rx.recv_many(&mut batch, OUTBOUND_BATCH) => {
                if received == 0 {
                    // Nobody can queue anything any more: the reader is ending.
                    return Some(sink);
                }
                false
            }
        };
        match write_in_time(&mut sink, &closer, &mut batch, ping, timeout, &span).await {
            Wrote::Done => {}
            Wrote::Failed => return None,
            Wrote::Stopped => return Some(sink),
        }
    }
}

/// Writes one batch within `timeout`. A close that drops queued frames stops the write
/// at once; one that delivers them lets it finish.
///
/// Nearly every write completes at once, into the socket's buffer. Such a write is polled once
/// and done: the timer and the watch on the close are set up only for a write that waits.
async fn write_in_time(
    sink: &mut Sink,
    closer: &crate::outbound::Closer,
    batch: &mut Vec<Frame>,
    ping: bool,
    timeout: Duration,
    span: &tracing::Span,
) -> Wrote {
    let mut write = std::pin::pin!(write_batch(sink, batch, ping));
    let written = match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        Poll::Ready(written) => Ok(written),
        Poll::Pending => tokio::select! {
            biased;
            result = tokio::time::timeout(timeout, write) => result,
            _ = std::future::poll_fn(|cx| match closer.poll_closed(cx) {
                Poll::Ready(reason) if !reason.delivers_queued() => Poll::Ready(()),
                _ => Poll::Pending,
            }) => return Wrote::Stopped,
        },
    };
    match written {
        Ok(Ok(())) => Wrote::Done,
        Ok(Err(err)) => {
            span.in_scope(|| log_write_error(&err));
            Wrote::Failed
        }
        Err(_elapsed) => {
            closer.close(CloseReason::Slow);
            Wrote::Stopped
        }
    }
}

/// Waits, no longer reading, for the close that ends the node's shutdown, while the answers to
/// what the connection read are queued to it. First its inbox handles what the connection sent
/// it, and the other nodes answer what it relayed to them (for [`RELAYED_ANSWERS_GRACE`] at
/// most); then `reading` is let go, and the node's sessions answer as they stop. The close
/// answers what still waits on another node ([`crate::outbound::Connections::close_all`]).
/// Sessions that change owners meanwhile are told of as usual. Ends early if the writer stops
/// (the client went away, or reads too slowly).
async fn await_close(
    ctx: &mut ConnCtx,
    reading: tokio_util::task::task_tracker::TaskTrackerToken,
    closer: &crate::outbound::Closer,
    writer: &mut tokio::task::JoinHandle<Option<Sink>>,
) -> Ending {
    ctx.app.inboxes.settle(&ctx.inbox).await;
    if tokio::time::timeout(RELAYED_ANSWERS_GRACE, ctx.link.answered_by_other_nodes()).await.is_err() {
        debug!("other nodes did not answer every relayed request in time; the close answers the rest");
    }
    drop(reading);
    loop {
        tokio::select! {
            biased;
            signal = std::future::poll_fn(|cx| closer.poll_signal(cx)) => match signal {
                Signal::Close(reason) => return Ending::Close(reason),
                Signal::Recheck => leave_changed_sessions(ctx, closer.take_interrupted()).await,
                Signal::StopReading => {}
            },
            written = &mut *writer => return Ending::Writer(written),
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
    // Requests sent to a node that is lost for them are answered here, before the client hears
    // that it left the session, and only once: a late answer from that node is dropped.
    let bus = &ctx.app.bus;
    ctx.link.abandon_requests(
        |waiter| {
            told.binary_search(&waiter.session).is_ok() || !bus.is_alive(waiter.owner) || bus.gaps() != waiter.gaps
        },
        "the session's node was lost before it answered; join again and retry",
    );
    for session_id in told {
        debug!(%session_id, "the connection left a session that changed owners; the client joins again");
        ctx.reply(&ServerMessage::SessionInterrupted { session_id });
    }
}

/// Writes what is already queued (within the write timeout), so that a connection the server
/// closes reads every reply queued before the close.
async fn flush_queued(sink: &mut Sink, queue: &mut ConnQueue, batch: &mut Vec<Frame>, timeout: Duration) {
    while let Ok(frame) = queue.rx.try_recv() {
        batch.push(frame);
    }
    match tokio::time::timeout(timeout, write_batch(sink, batch, false)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log_write_error(&err),
        Err(_) => debug!("the client did not read its last frames in time"),
    }
}

async fn write_batch(sink: &mut Sink, batch: &mut Vec<Frame>, ping: bool) -> Result<(), axum::Error> {
    if ping {
        sink.feed(Message::Ping(Default::default())).await?;
    }
    for frame in batch.drain(..) {
        sink.feed(Message::Text(frame.into_text())).await?;
    }
    sink.flush().await
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
