//! The service API: what the application's backend tells Convene (who users are, partner
//! programmes, therapists' patients, notifications to push) and reads from it (unread counts),
//! authenticated with the service key (`CONVENE_SERVICE_KEY`), never with a user's token.
//! Described by `docs/openapi.json`, served at `GET /v1/openapi.json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use convene_protocol::{ErrorCode, NotificationCounts, OrgId, ServerMessage, UserId};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use super::http::error;
use super::ws::bearer_token;
use crate::app::App;
use crate::store::{ChatProfile, NewNotification, PersonKind, Store, StoreError, Visibility};

/// The API's description, served as is.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Longest notification type, title and text, in bytes; and the largest `data`, encoded.
const MAX_TYPE_BYTES: usize = 64;
const MAX_TITLE_BYTES: usize = 200;
const MAX_MESSAGE_BYTES: usize = 2_000;
const MAX_DATA_BYTES: usize = 8_192;

/// Checks the service key and spends one request of the service API's budget; `Err` is the
/// response to send instead.
#[expect(clippy::result_large_err, reason = "the error is the response itself, built once per refusal")]
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = app.config.service_key.as_deref() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "the service API is off: set CONVENE_SERVICE_KEY",
        ));
    };
    match bearer_token(headers) {
        Some(key) if bool::from(key.as_bytes().ct_eq(expected.as_bytes())) => {
            if app.gate.spend_service() {
                Ok(())
            } else {
                Err(super::http::rate_limited(
                    app,
                    app.config.budgets.service,
                    "the service API takes no more requests for now; slow down",
                ))
            }
        }
        Some(_) => Err(error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "not the service key")),
        None => Err(error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "the service key is required")),
    }
}

fn store_failed(err: &StoreError) -> Response {
    tracing::warn!(error = %err, "a service API request could not reach the store");
    error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "the database is unavailable; retry")
}

#[expect(clippy::result_large_err, reason = "the error is the response itself, built once per refusal")]
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|err| error(StatusCode::BAD_REQUEST, ErrorCode::Invalid, err.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    organization_id: OrgId,
    kind: PersonKind,
    chat_enabled: bool,
    profile_visibility: Visibility,
}

/// `PUT /v1/service/users/{user_id}/profile`
pub async fn put_profile(
    State(app): State<Arc<App>>,
    Path(user): Path<Uuid>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = authorize(&app, &headers) {
        return refused;
    }
    let body: ProfileBody = match parse(&body) {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let profile = ChatProfile {
        user_id: UserId(user),
        organization_id: body.organization_id,
        kind: body.kind,
        chat_enabled: body.chat_enabled,
        visibility: body.profile_visibility,
    };
    match Store::within(app.config.db_timeout, app.store.put_chat_profile(&profile, Utc::now())).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => store_failed(&err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembershipBody {
    organization_id: OrgId,
    #[serde(default = "active")]
    active: bool,
}

fn active() -> bool {
    true
}

/// `PUT /v1/service/programmes/{programme_id}/members/{user_id}`
pub async fn put_programme_member(
    State(app): State<Arc<App>>,
    Path((programme, user)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = authorize(&app, &headers) {
        return refused;
    }
    let body: MembershipBody = match parse(&body) {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let put = app.store.put_programme_member(programme, UserId(user), body.organization_id, body.active);
    match Store::within(app.config.db_timeout, put).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => store_failed(&err),
    }
}

/// `DELETE /v1/service/programmes/{programme_id}/members/{user_id}`
pub async fn delete_programme_member(
    State(app): State<Arc<App>>,
    Path((programme, user)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&app, &headers) {
        return refused;
    }
    match Store::within(app.config.db_timeout, app.store.delete_programme_member(programme, UserId(user))).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such membership"),
        Err(err) => store_failed(&err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CareBody {
    organization_id: OrgId,
}

/// `PUT /v1/service/therapists/{therapist_id}/patients/{patient_id}`
pub async fn put_care(
    State(app): State<Arc<App>>,
    Path((therapist, patient)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = authorize(&app, &headers) {
        return refused;
    }
    let body: CareBody = match parse(&body) {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let put = app.store.put_care(UserId(therapist), UserId(patient), body.organization_id);
    match Store::within(app.config.db_timeout, put).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => store_failed(&err),
    }
}

/// `DELETE /v1/service/therapists/{therapist_id}/patients/{patient_id}`
pub async fn delete_care(
    State(app): State<Arc<App>>,
    Path((therapist, patient)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&app, &headers) {
        return refused;
    }
    match Store::within(app.config.db_timeout, app.store.delete_care(UserId(therapist), UserId(patient))).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such relationship"),
        Err(err) => store_failed(&err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationBody {
    user_id: UserId,
    #[serde(rename = "type")]
    kind: String,
    title: String,
    message: String,
    #[serde(default = "empty_object")]
    data: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl NotificationBody {
    fn check(&self) -> Result<(), &'static str> {
        if self.kind.is_empty() || self.kind.len() > MAX_TYPE_BYTES {
            return Err("type must be 1 to 64 bytes");
        }
        if self.title.len() > MAX_TITLE_BYTES {
            return Err("title is over 200 bytes");
        }
        if self.message.len() > MAX_MESSAGE_BYTES {
            return Err("message is over 2000 bytes");
        }
        if !self.data.is_object() {
            return Err("data must be a JSON object");
        }
        if self.data.to_string().len() > MAX_DATA_BYTES {
            return Err("data is over 8192 bytes");
        }
        Ok(())
    }
}

/// `POST /v1/service/notifications`: stores a notification and delivers it live to every
/// device of its user, on every node.
pub async fn push_notification(State(app): State<Arc<App>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(refused) = authorize(&app, &headers) {
        return refused;
    }
    let body: NotificationBody = match parse(&body) {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    if let Err(reason) = body.check() {
        return error(StatusCode::BAD_REQUEST, ErrorCode::Invalid, reason);
    }
    let new = NewNotification {
        user_id: body.user_id,
        kind: body.kind,
        title: body.title,
        message: body.message,
        data: body.data,
        created_at: Utc::now(),
    };
    match Store::within(app.config.db_timeout, app.store.insert_notification(&new)).await {
        Ok(notification) => {
            app.metrics.notifications_stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let event = ServerMessage::Notification { notification: notification.clone() };
            app.inboxes.publish_message(&[new.user_id], &event);
            (StatusCode::CREATED, Json(notification)).into_response()
        }
        Err(err) => store_failed(&err),
    }
}

#[derive(Serialize)]
struct Unread {
    notifications: NotificationCounts,
    /// Unread messages over all the user's conversations.
    messages: i64,
    /// Conversations with at least one unread message.
    conversations: i64,
}

/// `GET /v1/service/users/{user_id}/unread`: for emails and push notifications.
pub async fn unread(State(app): State<Arc<App>>, Path(user): Path<Uuid>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&app, &headers) {
        return refused;
    }
    let user = UserId(user);
    let counts = async {
        let notifications = app.store.notification_counts(user).await?;
        let (messages, conversations) = app.store.unread_messages(user).await?;
        Ok::<_, StoreError>(Unread { notifications, messages, conversations })
    };
    match Store::within(app.config.db_timeout, counts).await {
        Ok(unread) => Json(unread).into_response(),
        Err(err) => store_failed(&err),
    }
}
