//! HTTP endpoints: health, readiness, metrics and session creation. Host reports are in
//! [`super::reports`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convene_protocol::{CreateSession, ErrorCode};
use serde::Serialize;

use super::ws::bearer_token;
use crate::app::App;
use crate::limits::Budget;
use crate::session::wire::session_view;
use crate::session::{NewSessionSpec, create_session as create};

/// 200 while the process serves requests.
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize)]
struct Check {
    status: &'static str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    checks: std::collections::BTreeMap<&'static str, Check>,
}

/// How long each readiness check may take: checks run side by side, so `/readyz` answers within
/// a second whatever its dependencies do.
const READY_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// Readiness: `healthy` when every dependency answers, `degraded` when only Redis does not,
/// `unhealthy` (503) when the database does not.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    let started = Instant::now();
    let database = tokio::time::timeout(READY_CHECK_TIMEOUT, app.store.ping());
    let redis = async {
        match &app.redis {
            // Redis answers, and this node's subscription to the other nodes is up.
            Some(redis) => Some(
                tokio::time::timeout(READY_CHECK_TIMEOUT, redis.ping()).await.is_ok_and(|r| r.is_ok())
                    && app.bus.is_connected(),
            ),
            None => None,
        }
    };
    let (database, redis) = tokio::join!(database, redis);
    let database_ok = database.is_ok_and(|r| r.is_ok());
    let mut checks = std::collections::BTreeMap::new();
    checks.insert("database", check(database_ok, started, "the database did not answer"));
    if let Some(redis_ok) = redis {
        checks.insert("redis", check(redis_ok, started, "redis did not answer, or the bus subscription is down"));
    }
    let (status, code) = match (database_ok, redis.unwrap_or(true)) {
        (true, true) => ("healthy", StatusCode::OK),
        (true, false) => ("degraded", StatusCode::OK),
        (false, _) => ("unhealthy", StatusCode::SERVICE_UNAVAILABLE),
    };
    (code, Json(Readiness { status, checks })).into_response()
}

fn check(ok: bool, started: Instant, error: &'static str) -> Check {
    Check {
        status: if ok { "healthy" } else { "unhealthy" },
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        error: (!ok).then_some(error),
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

#[derive(Serialize)]
struct HttpError {
    code: ErrorCode,
    message: String,
}

pub(super) fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    (status, Json(HttpError { code, message: message.into() })).into_response()
}

/// The caller, from the request's bearer token, having spent one request of their HTTP
/// budget: 401 without a valid token, 429 when the budget is spent.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<crate::auth::Identity, Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "a bearer token is required"));
    };
    let identity = app
        .verifier
        .verify(token)
        .await
        .map_err(|_| error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "the token is not valid"))?;
    if !app.gate.spend_request(identity.user_id) {
        return Err(rate_limited(app, app.config.budgets.http, "too many requests from this user; slow down"));
    }
    Ok(identity)
}

/// The `Retry-After` of a budget that does not refill (a rate of 0, as an operator may set to
/// stop a caller): a minute, so that clients back off without being told to give up.
const NO_REFILL_RETRY_AFTER_SECS: u64 = 60;

/// 429 `rate_limited`, with `Retry-After` as long as the budget takes to refill one request.
pub(super) fn rate_limited(app: &App, budget: Budget, message: &'static str) -> Response {
    app.metrics.http_rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let retry_after = if budget.per_sec > 0.0 {
        // Saturates for absurdly slow rates; at least a second.
        (1.0 / budget.per_sec).ceil().max(1.0) as u64
    } else {
        NO_REFILL_RETRY_AFTER_SECS
    };
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// `POST /v1/sessions` with the same body as the `create_session` message (without `type`).
pub async fn create_session(State(app): State<Arc<App>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let identity = match authenticate(&app, &headers).await {
        Ok(identity) => identity,
        Err(refused) => return refused,
    };
    let request: CreateSession = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return error(StatusCode::BAD_REQUEST, ErrorCode::Invalid, err.to_string()),
    };
    let spec = NewSessionSpec {
        session_type: request.session_type,
        room_name: request.room_name,
        invitees: request.invitees,
        lobby_enabled: request.lobby_enabled,
    };
    let (ttl, bound) = (app.config.instant_session_ttl, app.config.db_timeout);
    match create(&app.store, &identity, spec, ttl, bound, chrono::Utc::now()).await {
        Ok(session) => (StatusCode::CREATED, Json(session_view(&session))).into_response(),
        Err(err) => {
            let status = match err.code() {
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::Conflict => StatusCode::CONFLICT,
                ErrorCode::Invalid => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, err.code(), err.to_string())
        }
    }
}

/// `GET /v1/ice-servers`: the STUN and TURN servers for the caller's peer connections, TURN
/// credentials included (the same list `joined` carries).
pub async fn ice_servers(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match authenticate(&app, &headers).await {
        Ok(identity) => Json(app.config.ice.servers(identity.user_id, chrono::Utc::now())).into_response(),
        Err(refused) => refused,
    }
}
