//! The demo page at `/`: a plain page built from the TypeScript client (`clients/js`), embedded
//! in the binary so that a newcomer needs nothing but `convene` to see video in two windows.
//!
//! In dev mode (no JWT secret and no JWKS configured) on a loopback address, the page mints
//! its own tokens with `POST /v1/dev/token`. Anywhere else that endpoint does not exist (404):
//! a server that verifies real tokens never hands any out, and a dev server reachable from
//! other machines does not give them any role they ask for. Even on loopback, a request that
//! came through a proxy (it carries forwarding headers) or names another host (a DNS-rebinding
//! page) is refused: only a browser on this machine, talking to it directly, gets a token.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

/// The page loads nothing but its own script and style and talks only to its own origin; it may
/// not be framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// One of the page's files, with headers that keep browsers from guessing its type and, being
/// rebuilt with the binary, from running a stale copy.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DEMO_JS)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", DEMO_CSS)
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
    /// Dev tokens, signed with `secret` (dev mode's generated one), for a node in dev mode whose
    /// listener is on a loopback address; none otherwise.
    pub fn for_node(
        config: &crate::config::Config,
        listener: std::net::SocketAddr,
        secret: Option<Vec<u8>>,
    ) -> Option<Self> {
        let dev_mode = config.jwt_secret.is_none() && config.jwks_url.is_none();
        if !dev_mode || !listener.ip().is_loopback() {
            return None;
        }
        secret.map(|secret| Self { secret })
    }
}

#[derive(Deserialize)]
struct DevTokenRequest {
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
const DEV_ORGANIZATION: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0dec);

/// Headers a proxy adds: a request carrying one did not come straight from this machine.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Whether the request came straight from a browser on this machine, naming this machine.
fn from_this_machine(headers: &HeaderMap) -> bool {
    let forwarded = FORWARDING_HEADERS.iter().any(|name| headers.contains_key(*name));
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok()).unwrap_or_default();
    let name = match host.rsplit_once(':') {
        // `[::1]:8080`, `localhost:8080`; a bare `[::1]` or `localhost` has no port.
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    let loopback_name =
        name.eq_ignore_ascii_case("localhost") || literal.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !forwarded && loopback_name
}

/// `POST /v1/dev/token` `{"role": "therapist"}`: a token for a new user with that role.
pub async fn dev_token(State(app): State<Arc<App>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Some(dev) = &app.dev_tokens else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "dev tokens are minted only by a dev-mode server on loopback",
        );
    };
    if !from_this_machine(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "dev tokens go only to requests made on this machine, to a loopback host, without a proxy",
        );
    }
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

    fn config(jwt_secret: Option<&str>) -> crate::config::Config {
        crate::config::Config { jwt_secret: jwt_secret.map(str::to_owned), ..crate::config::Config::default() }
    }

    #[test]
    fn only_direct_requests_naming_this_machine_count_as_local() {
        let cases: [(&[(&str, &str)], bool); 9] = [
            (&[("host", "127.0.0.1:8080")], true),
            (&[("host", "localhost:8080")], true),
            (&[("host", "LOCALHOST")], true),
            (&[("host", "[::1]:8080")], true),
            (&[("host", "127.0.0.1:8080"), ("x-forwarded-for", "203.0.113.9")], false),
            (&[("host", "localhost"), ("forwarded", "for=203.0.113.9")], false),
            (&[("host", "rebound.example:8080")], false),
            (&[("host", "10.0.0.5:8080")], false),
            (&[], false),
        ];
        for (pairs, local) in cases {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(
                    header::HeaderName::from_static(name),
                    HeaderValue::from_str(value).expect("a header value"),
                );
            }
            assert_eq!(from_this_machine(&headers), local, "{pairs:?}");
        }
    }

    #[test]
    fn only_a_dev_mode_node_on_loopback_mints_tokens() {
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
            let dev = DevTokens::for_node(&config(secret), addr, Some(b"the secret".to_vec()));
            assert_eq!(dev.is_some(), mints, "secret {secret:?} on {addr}");
        }
    }
}
