//! The demo page served at `/`, and the dev tokens it mints in dev mode only.

use anyhow::{Context, Result, bail, ensure};
use convene_protocol::{Role, ServerMessage};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Backend, TestServer};

/// A server in dev mode: no JWT secret, no JWKS, its generated secret in `data_dir`.
async fn dev_server(data_dir: &tempfile::TempDir) -> Result<TestServer> {
    let data_dir = data_dir.path().to_owned();
    TestServer::start_with(Backend::Sqlite, move |config| {
        config.jwt_secret = None;
        config.data_dir = data_dir;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_and_its_script_are_served_from_the_binary() -> Result<()> {
    let server = TestServer::start(Backend::Sqlite).await?;
    let page = reqwest::get(server.http("/")).await?;
    ensure!(page.status() == reqwest::StatusCode::OK);
    ensure!(page.headers()["content-type"].to_str()?.starts_with("text/html"));
    let html = page.text().await?;
    ensure!(html.contains(r#"<script type="module" src="/demo.js">"#), "{html}");
    // Served with a policy that loads only its own files and forbids framing.
    let policy = reqwest::get(server.http("/")).await?.headers()["content-security-policy"].to_str()?.to_owned();
    ensure!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    let script = reqwest::get(server.http("/demo.js")).await?;
    ensure!(script.headers()["content-type"].to_str()?.starts_with("text/javascript"));
    let script = script.text().await?;
    ensure!(script.contains("peers_changed") && script.contains("send_signal"), "the page carries the video helper");
    let style = reqwest::get(server.http("/demo.css")).await?;
    ensure!(style.headers()["content-type"].to_str()?.starts_with("text/css"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_mode_server_on_loopback_mints_tokens_that_it_accepts() -> Result<()> {
    let data_dir = tempfile::tempdir()?;
    let server = dev_server(&data_dir).await?;
    let http = reqwest::Client::new();
    let minted: serde_json::Value = http
        .post(server.http("/v1/dev/token"))
        .body(r#"{"role": "therapist"}"#)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = minted["access_token"].as_str().context("a token")?;
    let user = minted["user_id"].as_str().context("its user")?;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?access_token={token}", server.ws_url())).await?;
    let Some(Ok(Message::Text(hello))) = ws.next().await else { bail!("no hello") };
    match serde_json::from_str(hello.as_str())? {
        ServerMessage::Hello { user_id, role, .. } => {
            ensure!(user_id.to_string() == user && role == Role::Therapist, "{user_id} {role:?}");
        }
        other => bail!("expected hello, got {other:?}"),
    }

    // Through a proxy, or to a name that is not this machine (a DNS-rebinding page): refused.
    for (name, value) in [("x-forwarded-for", "203.0.113.9"), ("host", "rebound.example")] {
        let refused =
            http.post(server.http("/v1/dev/token")).header(name, value).body(r#"{"role": "admin"}"#).send().await?;
        ensure!(refused.status() == reqwest::StatusCode::FORBIDDEN, "{name}: {}", refused.status());
    }

    let bad = http.post(server.http("/v1/dev/token")).body(r#"{"role": "emperor"}"#).send().await?;
    ensure!(bad.status() == reqwest::StatusCode::BAD_REQUEST, "{}", bad.status());
    let body: serde_json::Value = bad.json().await?;
    ensure!(body["code"] == "invalid", "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_real_secret_mints_no_tokens() -> Result<()> {
    let server = TestServer::start(Backend::Sqlite).await?;
    let refused = reqwest::Client::new().post(server.http("/v1/dev/token")).body(r#"{"role": "admin"}"#).send().await?;
    ensure!(refused.status() == reqwest::StatusCode::NOT_FOUND, "{}", refused.status());
    Ok(())
}
