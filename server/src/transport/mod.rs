//! The network edge: the accept loop, HTTP routes and WebSocket connections.
//!
//! Every accepted TCP connection runs on the connection tracker; its HTTP request must arrive
//! within the handshake timeout, so a client that opens a socket and sends nothing cannot hold
//! it. WebSocket connections continue on the same tracker after the upgrade.

mod demo;
mod http;
mod reports;
mod service;
mod ws;

pub use demo::DevTokens;
pub use service::OPENAPI;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use axum::routing::{get, post, put};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{debug, warn};

use crate::app::App;

/// Pause after a failed accept (typically: out of file descriptors) before trying again, so the
/// loop does not spin while descriptors are exhausted.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Sockets still in their HTTP handshake, beyond the WebSocket cap, that the node accepts at
/// once. Each holds at most one request head for at most the handshake timeout; a flood of
/// half-open sockets beyond this is closed on accept instead of exhausting file descriptors.
const HANDSHAKE_HEADROOM: usize = 1024;
/// hyper refuses read buffers under 8 KiB.
const MIN_HEADER_BUFFER: usize = 8 * 1024;

/// Largest body the service API reads: a notification with its data is well under it.
const SERVICE_BODY_LIMIT: usize = 64 * 1024;
/// How long browsers may cache a preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(10 * 60);

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/sessions", post(http::create_session))
        .route("/v1/ice-servers", get(http::ice_servers))
        .route("/v1/sessions/{id}/transitions", get(reports::transitions))
        .route("/v1/sessions/{id}/audit", get(reports::audit))
        .layer(cors(&app.config.allowed_origins));
    // Server to server: no CORS, small bodies.
    let service = Router::new()
        .route("/v1/service/users/{user_id}/profile", put(service::put_profile))
        .route("/v1/service/users/{user_id}/unread", get(service::unread))
        .route(
            "/v1/service/programmes/{programme_id}/members/{user_id}",
            put(service::put_programme_member).delete(service::delete_programme_member),
        )
        .route(
            "/v1/service/therapists/{therapist_id}/patients/{patient_id}",
            put(service::put_care).delete(service::delete_care),
        )
        .route("/v1/service/notifications", post(service::push_notification))
        .layer(DefaultBodyLimit::max(SERVICE_BODY_LIMIT));
    Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .merge(api)
        .merge(service)
        .route("/v1/openapi.json", get(service::openapi))
        .route("/", get(demo::index))
        .route("/demo.js", get(demo::script))
        .route("/demo.css", get(demo::style))
        .route("/v1/dev/token", post(demo::dev_token))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/metrics", get(http::metrics))
        .with_state(app)
}

/// CORS for the HTTP API, following the same allow-list as WebSocket `Origin` checks: the listed
/// origins (any origin when the list is empty) may call it with a bearer token. Credentials
/// (cookies) are not used, so none are allowed.
fn cors(allowed: &[String]) -> CorsLayer {
    let origins = if allowed.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(allowed.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()))
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(CORS_MAX_AGE)
}

/// Accepts connections until shutdown.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    let router = router(app.clone());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = app.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let sockets = Arc::clone(&app.sockets);
        if sockets.fetch_add(1, Ordering::AcqRel) >= app.config.limits.max_connections + HANDSHAKE_HEADROOM {
            sockets.fetch_sub(1, Ordering::AcqRel);
            app.metrics.sockets_refused.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "too many sockets; closing on accept");
            continue;
        }
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, %peer, "could not disable Nagle");
        }
        let service = TowerToHyperService::new(router.clone());
        let shutdown = app.shutdown.clone();
        let handshake_timeout = app.config.handshake_timeout;
        let max_head = app.config.limits.max_header_bytes.max(MIN_HEADER_BUFFER);
        app.conn_tracker.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(handshake_timeout).max_buf_size(max_head);
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                debug!(error = %err, %peer, "http connection ended with an error");
            }
            sockets.fetch_sub(1, Ordering::AcqRel);
        });
    }
}
