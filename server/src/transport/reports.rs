//! Reports for a session's hosts and its organization's admins: the transitions between rooms
//! with the time spent in each.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use convene_protocol::{ErrorCode, Role, SessionId};
use serde::Serialize;

use super::http::error;
use super::ws::bearer_token;
use crate::server::App;
use crate::store::Store;

/// Checks that the bearer of `headers` hosts session `id` or administers its organization.
/// Another organization's session, like a missing one, is `not_found`.
async fn authorize_host(app: &App, headers: &HeaderMap, id: SessionId) -> Result<(), Response> {
    let verified = match bearer_token(headers) {
        Some(token) => app.verifier.verify(token).await.ok(),
        None => None,
    };
    let Some(identity) = verified else {
        return Err(error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "a valid bearer token is required"));
    };
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
pub async fn transitions(State(app): State<Arc<App>>, Path(id): Path<uuid::Uuid>, headers: HeaderMap) -> Response {
    let session_id = SessionId(id);
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
