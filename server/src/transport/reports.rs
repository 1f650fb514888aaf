//! Reports for a session's hosts and its organization's admins: the transitions between rooms
//! with the time spent in each, and the audit trail of host actions.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use convene_protocol::{ErrorCode, Role, SessionId};
use serde::{Deserialize, Serialize};

use super::http::{authenticate, error};
use crate::app::App;
use crate::store::Store;

/// Checks that the bearer of `headers` hosts session `id` or administers its organization.
/// Another organization's session, like a missing one, is `not_found`.
async fn authorize_host(app: &App, headers: &HeaderMap, id: SessionId) -> Result<(), Response> {
    let identity = authenticate(app, headers).await?;
    let (session, participants) = match Store::within(app.config.db_timeout, app.store.load_session(id)).await {
        Ok(Some(found)) if found.0.organization_id == identity.organization_id => found,
        Ok(_) => return Err(error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "session not found")),
        Err(_) => return Err(unavailable()),
    };
    let hosts_it = session.created_by == identity.user_id
        || participants.iter().any(|p| p.user_id == identity.user_id && p.role.is_host());
    if !hosts_it && identity.role != Role::Admin {
        return Err(error(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "only the session's hosts and admins may read this",
        ));
    }
    Ok(())
}

/// The session id of the path, when it is a uuid.
fn session_in(path: Result<Path<uuid::Uuid>, PathRejection>) -> Option<SessionId> {
    path.ok().map(|Path(id)| SessionId(id))
}

fn not_a_session_id() -> Response {
    error(StatusCode::BAD_REQUEST, ErrorCode::Invalid, "the session id is not a uuid")
}

fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "the database is unavailable")
}

#[derive(Serialize)]
struct TransitionView {
    user_id: convene_protocol::UserId,
    from_room_id: Option<convene_protocol::RoomId>,
    to_room_id: Option<convene_protocol::RoomId>,
    transition_type: &'static str,
    transitioned_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct AttendanceView {
    user_id: convene_protocol::UserId,
    room_id: convene_protocol::RoomId,
    seconds: f64,
}

#[derive(Serialize)]
struct TransitionsReply {
    session_id: convene_protocol::SessionId,
    transitions: Vec<TransitionView>,
    attendance: Vec<AttendanceView>,
}

/// `GET /v1/sessions/{id}/transitions`: every change of room in the session and the time each
/// person spent in each room.
pub async fn transitions(
    State(app): State<Arc<App>>,
    path: Result<Path<uuid::Uuid>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Some(session_id) = session_in(path) else {
        return not_a_session_id();
    };
    if let Err(refused) = authorize_host(&app, &headers, session_id).await {
        return refused;
    }
    let Ok(transitions) = Store::within(app.config.db_timeout, app.store.transitions(session_id)).await else {
        return unavailable();
    };
    let attendance = crate::rooms::attendance::attendance(&transitions, chrono::Utc::now())
        .into_iter()
        .map(|a| AttendanceView { user_id: a.user, room_id: a.room, seconds: a.seconds })
        .collect();
    let transitions = transitions
        .into_iter()
        .map(|t| TransitionView {
            user_id: t.user_id,
            from_room_id: t.from_room,
            to_room_id: t.to_room,
            transition_type: t.transition_type.as_str(),
            transitioned_at: t.at,
        })
        .collect();
    Json(TransitionsReply { session_id, transitions, attendance }).into_response()
}

/// Audit rows per page when the caller does not say.
const DEFAULT_AUDIT_PAGE: u32 = 50;
/// Most audit rows one page may hold.
const MAX_AUDIT_PAGE: u32 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Rows older than this id (the previous page's `next_before`); the newest when absent.
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct AuditEntryView {
    id: i64,
    actor_id: convene_protocol::UserId,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_user_id: Option<convene_protocol::UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    detail: serde_json::Value,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct AuditReply {
    session_id: SessionId,
    entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<i64>,
}

/// `GET /v1/sessions/{id}/audit?before=&limit=`: the session's audit trail, newest first, paged.
pub async fn audit(
    State(app): State<Arc<App>>,
    path: Result<Path<uuid::Uuid>, PathRejection>,
    query: Result<Query<AuditQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Some(session_id) = session_in(path) else {
        return not_a_session_id();
    };
    if let Err(refused) = authorize_host(&app, &headers, session_id).await {
        return refused;
    }
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, ErrorCode::Invalid, "query parameters are before (an id) and limit");
    };
    let limit = query.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
    if limit == 0 || limit > MAX_AUDIT_PAGE || query.before.is_some_and(|before| before <= 0) {
        return error(StatusCode::BAD_REQUEST, ErrorCode::Invalid, "limit is 1 to 200; before is a positive id");
    }
    let read = app.store.audit_trail(session_id, query.before, limit);
    let Ok(page) = Store::within(app.config.db_timeout, read).await else {
        return unavailable();
    };
    let next_before = if page.has_more { page.entries.last().map(|(id, _)| *id) } else { None };
    let entries = page
        .entries
        .into_iter()
        .map(|(id, record)| AuditEntryView {
            id,
            actor_id: record.actor_id,
            action: record.action.as_str(),
            target_user_id: record.target_user_id,
            request_id: record.request_id,
            detail: record.detail,
            created_at: record.at,
        })
        .collect();
    Json(AuditReply { session_id, entries, next_before }).into_response()
}
