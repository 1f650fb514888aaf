//! Connections are authenticated before the upgrade.

use anyhow::Result;
use convene_protocol::Role;
use convene_server::limits::Budget;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use crate::common::{Backend, SECRET, TestServer, TestUser};
use crate::on_both_backends;

on_both_backends!(
    bad_tokens_get_401_and_no_socket,
    tokens_are_accepted_in_the_query_or_a_bearer_header,
    origins_outside_the_allow_list_get_403,
    connections_close_with_4001_when_their_token_expires,
    a_configured_issuer_is_required,
    oversized_request_headers_are_refused_with_431,
    sockets_per_user_are_capped_with_429,
    reconnecting_faster_than_the_budget_is_refused_with_429,
    connections_per_node_are_capped_with_503,
);

/// The HTTP status the upgrade was answered with (101 when it succeeded).
async fn upgrade_status(request: tokio_tungstenite::tungstenite::handshake::client::Request) -> u16 {
    upgrade_answer(request).await.0
}

/// The HTTP status the upgrade was answered with, and its `Retry-After`.
async fn upgrade_answer(request: tokio_tungstenite::tungstenite::handshake::client::Request) -> (u16, Option<String>) {
    let retry_after = |headers: &tokio_tungstenite::tungstenite::http::HeaderMap| {
        headers.get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => (response.status().as_u16(), retry_after(response.headers())),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), retry_after(response.headers()))
        }
        Err(_) => (0, None),
    }
}

fn signed(secret: &str, header: &Header, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap_or_default()
}

fn claims(exp_offset: i64, nbf_offset: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "sub": Uuid::new_v4(), "role": "authenticated", "aud": "authenticated",
        "exp": now + exp_offset, "nbf": now + nbf_offset, "app_metadata": {"role": "patient"},
    })
}

async fn bad_tokens_get_401_and_no_socket(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let unsigned = {
        let token = signed(SECRET, &Header::default(), &claims(600, -10));
        let mut parts = token.split('.');
        let (_, body) = (parts.next(), parts.next().unwrap_or_default());
        // {"alg":"none","typ":"JWT"}
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.")
    };
    let cases = [
        ("missing", None),
        ("expired", Some(signed(SECRET, &Header::default(), &claims(-600, -1200)))),
        ("not yet valid", Some(signed(SECRET, &Header::default(), &claims(1200, 600)))),
        ("wrongly signed", Some(signed("another-secret", &Header::default(), &claims(600, -10)))),
        ("alg none", Some(unsigned)),
        ("other algorithm", Some(signed(SECRET, &Header::new(Algorithm::HS384), &claims(600, -10)))),
    ];
    for (name, token) in cases {
        let url = match token {
            Some(token) => format!("{}?access_token={token}", server.ws_url()),
            None => server.ws_url(),
        };
        assert_eq!(upgrade_status(url.into_client_request()?).await, 401, "{name}");
    }
    Ok(())
}

async fn tokens_are_accepted_in_the_query_or_a_bearer_header(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let user = TestUser::new(Role::Patient, None);
    let query = format!("{}?access_token={}", server.ws_url(), user.token()).into_client_request()?;
    assert_eq!(upgrade_status(query).await, 101);
    let mut header = server.ws_url().into_client_request()?;
    header.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {}", user.token()))?);
    assert_eq!(upgrade_status(header).await, 101);
    Ok(())
}

async fn origins_outside_the_allow_list_get_403(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.allowed_origins = vec!["https://app.example".to_owned()];
    })
    .await?;
    let user = TestUser::new(Role::Patient, None);
    let request = |origin: &str| -> Result<_> {
        let mut request = format!("{}?access_token={}", server.ws_url(), user.token()).into_client_request()?;
        request.headers_mut().insert("origin", HeaderValue::from_str(origin)?);
        Ok(request)
    };
    assert_eq!(upgrade_status(request("https://evil.example")?).await, 403);
    assert_eq!(upgrade_status(request("https://app.example")?).await, 101);
    Ok(())
}

async fn connections_close_with_4001_when_their_token_expires(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let now = chrono::Utc::now().timestamp();
    // Valid for one more second (within the clock leeway either way).
    let token = signed(
        SECRET,
        &Header::default(),
        &serde_json::json!({"sub": Uuid::new_v4(), "role": "authenticated", "aud": "authenticated",
            "exp": now + 1, "app_metadata": {"role": "patient"}}),
    );
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}?access_token={token}", server.ws_url())).await?;
    let mut client = crate::common::Client { ws };
    assert_eq!(client.closed_with().await?, Some(4001));
    Ok(())
}

async fn a_configured_issuer_is_required(backend: Backend) -> Result<()> {
    const ISSUER: &str = "https://project.supabase.co/auth/v1";
    let server = TestServer::start_with(backend, |config| config.jwt_issuer = Some(ISSUER.to_owned())).await?;
    let with_iss = |iss: serde_json::Value| {
        let mut claims = claims(600, -10);
        claims["iss"] = iss;
        claims
    };
    let cases = [
        ("no iss", claims(600, -10), 401),
        ("null iss", with_iss(serde_json::Value::Null), 401),
        ("another iss", with_iss("https://elsewhere.example".into()), 401),
        ("iss as a list", with_iss(serde_json::json!([ISSUER])), 401),
        ("the configured iss", with_iss(ISSUER.into()), 101),
    ];
    for (name, claims, status) in cases {
        let url = format!("{}?access_token={}", server.ws_url(), signed(SECRET, &Header::default(), &claims));
        assert_eq!(upgrade_status(url.into_client_request()?).await, status, "{name}");
    }
    Ok(())
}

async fn oversized_request_headers_are_refused_with_431(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let user = TestUser::new(Role::Patient, None);
    let mut request = format!("{}?access_token={}", server.ws_url(), user.token()).into_client_request()?;
    request.headers_mut().insert("cookie", HeaderValue::from_str(&format!("c={}", "x".repeat(100 * 1024)))?);
    assert_eq!(upgrade_status(request).await, 431);
    // A normal upgrade still works.
    let request = format!("{}?access_token={}", server.ws_url(), user.token()).into_client_request()?;
    assert_eq!(upgrade_status(request).await, 101);
    Ok(())
}

async fn sockets_per_user_are_capped_with_429(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| config.limits.max_sockets_per_user = 3).await?;
    let user = TestUser::new(Role::Patient, None);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(crate::common::Client::connect(&server, &user).await?);
    }
    let url = format!("{}?access_token={}", server.ws_url(), user.token());
    assert_eq!(upgrade_status(url.clone().into_client_request()?).await, 429);
    // Another user is not affected, and a closed socket frees its place.
    crate::common::Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    // The server gives the place back before it answers the close, so once the close is
    // answered a new socket fits.
    let mut first = open.remove(0);
    first.ws.close(None).await?;
    first.closed_with().await?;
    assert_eq!(upgrade_status(url.into_client_request()?).await, 101);
    Ok(())
}

async fn reconnecting_faster_than_the_budget_is_refused_with_429(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| config.budgets.connect = Budget::new(0.1, 3)).await?;
    let user = TestUser::new(Role::Patient, None);
    // Closing a socket gives its place back but not its share of the budget.
    for _ in 0..3 {
        let mut client = crate::common::Client::connect(&server, &user).await?;
        client.ws.close(None).await?;
        client.closed_with().await?;
    }
    let url = format!("{}?access_token={}", server.ws_url(), user.token());
    let refused = upgrade_answer(url.into_client_request()?).await;
    assert_eq!(refused, (429, Some("1".to_owned())), "refused, and told when to come back");
    crate::common::Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    Ok(())
}

async fn connections_per_node_are_capped_with_503(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| config.limits.max_connections = 2).await?;
    let _a = crate::common::Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    let _b = crate::common::Client::connect(&server, &TestUser::new(Role::Patient, None)).await?;
    let url = format!("{}?access_token={}", server.ws_url(), TestUser::new(Role::Patient, None).token());
    assert_eq!(upgrade_status(url.into_client_request()?).await, 503);
    // Plain HTTP keeps working while the node is full.
    assert!(reqwest::get(server.http("/healthz")).await?.status().is_success());
    Ok(())
}
