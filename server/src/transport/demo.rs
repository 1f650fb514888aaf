//! The demo page at `/`: a plain page built from the TypeScript client (`clients/js`), embedded
//! in the binary so that a newcomer needs nothing but `convene` to see video in two windows.
//!
//! In dev mode (no JWT secret and no JWKS configured) on a loopback address, the page mints
//! its own tokens with `POST /v1/dev/token`. Anywhere else that endpoint does not exist (404):
//! a server that verifies real tokens never hands any out, and a dev server reachable from
//! other machines does not give them any role they ask for.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use convene_protocol::{ErrorCode, Role, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::http::error;
use crate::app::App;
use crate::auth;

// The page and its style are embedded as written; its script is the bundle `clients/js` builds
// (and checks to be current) from the demo and the client.
const INDEX_HTML: &str = include_str!("../../../clients/js/demo/index.html");
const DEMO_CSS: &str = include_str!("../../../clients/js/demo/demo.css");
const DEMO_JS: &str = include_str!("../../assets/demo.js");

/// Dev tokens last a working day: long enough for a demo, short enough not to linger.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The page is rebuilt with the binary; browsers check again rather than run a stale script.
const NO_CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-cache");

pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), NO_CACHE], INDEX_HTML).into_response()
}

pub async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), NO_CACHE], DEMO_JS).into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), NO_CACHE], DEMO_CSS).into_response()
}

/// The secret dev tokens are signed with, when this node may mint them.
#[derive(Clone)]
pub struct DevTokens {
    secret: Vec<u8>,
}

impl std::fmt::Debug for DevTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevTokens(..)")
    }
}

impl DevTokens {
    /// Dev tokens for a node in dev mode whose listener is on a loopback address; none otherwise.
    pub fn for_node(
        config: &crate::config::Config,
        listener: std::net::SocketAddr,
    ) -> Result<Option<Self>, auth::AuthError> {
        let dev_mode = config.jwt_secret.is_none() && config.jwks_url.is_none();
        if !dev_mode || !listener.ip().is_loopback() {
            return Ok(None);
        }
        let (secret, _created) = auth::dev_secret(&config.data_dir)?;
        Ok(Some(Self { secret }))
    }
}

#[derive(Deserialize)]
pub struct DevTokenRequest {
    role: Role,
    /// The organization; one shared by every dev token when absent, so that the people of a
    /// demo can join each other's sessions.
    #[serde(default)]
    organization_id: Option<Uuid>,
}

#[derive(Serialize)]
struct DevToken {
    access_token: String,
    user_id: UserId,
    expires_in: u64,
}

/// The organization of dev tokens that name none.
pub const DEV_ORGANIZATION: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0dec);

/// `POST /v1/dev/token` `{"role": "therapist"}`: a token for a new user with that role.
pub async fn dev_token(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let Some(dev) = &app.dev_tokens else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "dev tokens are minted only by a dev-mode server on loopback",
        );
    };
    let request: DevTokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return error(StatusCode::BAD_REQUEST, ErrorCode::Invalid, err.to_string()),
    };
    let user = Uuid::new_v4();
    let organization = request.organization_id.unwrap_or(DEV_ORGANIZATION);
    match auth::mint(&dev.secret, user, request.role, Some(organization), DEV_TOKEN_TTL) {
        Ok(access_token) => {
            Json(DevToken { access_token, user_id: UserId(user), expires_in: DEV_TOKEN_TTL.as_secs() }).into_response()
        }
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jwt_secret: Option<&str>, data_dir: &std::path::Path) -> crate::config::Config {
        crate::config::Config {
            jwt_secret: jwt_secret.map(str::to_owned),
            data_dir: data_dir.to_owned(),
            ..crate::config::Config::default()
        }
    }

    #[test]
    fn only_a_dev_mode_node_on_loopback_mints_tokens() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("an address");
        let loopback_v6: std::net::SocketAddr = "[::1]:8080".parse().expect("an address");
        let everywhere: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("an address");
        let public: std::net::SocketAddr = "192.0.2.7:8080".parse().expect("an address");
        let cases = [
            (None, loopback, true),
            (None, loopback_v6, true),
            (None, everywhere, false),
            (None, public, false),
            (Some("a real secret"), loopback, false),
        ];
        for (secret, addr, mints) in cases {
            let dev = DevTokens::for_node(&config(secret, dir.path()), addr).expect("the dev secret is readable");
            assert_eq!(dev.is_some(), mints, "secret {secret:?} on {addr}");
        }
    }
}
