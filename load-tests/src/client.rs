//! Connections and tokens for the load generator.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use convene_protocol::{AppMetadata, Claims, Role, SUPABASE_AUDIENCE, ServerMessage};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::Common;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long setup steps (connecting, joining) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The load generator's own read buffer per connection; small, so 20,000 connections fit.
const CLIENT_READ_BUFFER: usize = 8 * 1024;

pub fn resolve_secret(common: &Common) -> Result<String> {
    if let Some(secret) = &common.secret {
        return Ok(secret.clone());
    }
    let path = common.data_dir.join("dev-jwt-secret");
    let secret = std::fs::read_to_string(&path)
        .with_context(|| format!("no --secret and no dev secret at {}", path.display()))?;
    Ok(secret.trim().to_owned())
}

pub fn token(secret: &str, user: Uuid, role: Role) -> Result<String> {
    token_in(secret, user, role, None)
}

/// A token for `user` of `organization`.
pub fn token_in(secret: &str, user: Uuid, role: Role, organization: Option<Uuid>) -> Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        sub: user,
        role: "authenticated".into(),
        aud: SUPABASE_AUDIENCE.into(),
        exp: i64::try_from(now + 24 * 3600)?,
        nbf: None,
        iat: None,
        iss: None,
        app_metadata: AppMetadata { role, organization_id: organization },
    };
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Connects as a new user of `role` and reads the `hello`.
pub async fn connect(url: &str, secret: &str, role: Role) -> Result<Ws> {
    connect_with(url, &token(secret, Uuid::new_v4(), role)?).await
}

/// Connects with `token` and reads the `hello`.
pub async fn connect_with(url: &str, token: &str) -> Result<Ws> {
    let url = format!("{url}?access_token={token}");
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (mut ws, _) =
        tokio::time::timeout(SETUP_TIMEOUT, tokio_tungstenite::connect_async_with_config(url, Some(config), true))
            .await
            .map_err(|_| anyhow!("connect timed out"))??;
    match next_message(&mut ws).await? {
        ServerMessage::Hello { .. } => Ok(ws),
        other => bail!("expected hello, got {other:?}"),
    }
}

pub async fn send(ws: &mut Ws, value: &serde_json::Value) -> Result<()> {
    ws.send(Message::text(value.to_string())).await?;
    Ok(())
}

/// The next protocol message, fully decoded (setup only; the hot paths decode less). One
/// deadline for the whole wait: the server's pings must not keep extending it.
pub async fn next_message(ws: &mut Ws) -> Result<ServerMessage> {
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.map_err(|_| anyhow!("no reply in time"))?;
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Skips messages until `pick` accepts one.
pub async fn wait_for<T>(ws: &mut Ws, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> Result<T> {
    loop {
        let message = next_message(ws).await?;
        if let ServerMessage::Error(error) = &message {
            bail!("server error: {error:?}");
        }
        if let Some(found) = pick(message) {
            return Ok(found);
        }
    }
}
