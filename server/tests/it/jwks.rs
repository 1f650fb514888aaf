//! RS256/ES256 tokens verified against a JWKS, as newer Supabase projects sign them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use uuid::Uuid;

use crate::common::{Backend, SECRET, TestServer};

/// Test-only P-256 keys (PKCS#8), generated for these tests.
const KEY_ONE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFTFbWQ2dsa8Tzn/W
ShG4GCbUnnCFtGhALBJ/LQ4qoEuhRANCAARZj47wMFfChIfbXEbE8dcc22tIABfp
pg2uSnNZs8Dfr1Ibvfv9stjfzyEoY+3D1ilxcQMVQMjwi2nrgFpreZ7F
-----END PRIVATE KEY-----";
const KEY_TWO: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgcE9Lf0VupIQ3314K
rSH8QoRHlC0y0vJX1bSWUjTU2gahRANCAARMY6J8UrPun1bKmZh2tUMu4yB4xHce
J3+2hsQZe7DNKDpI55zOVRC9uHvasePGAbeVG0ryiH1fc7gewafbKBb0
-----END PRIVATE KEY-----";

fn jwk(pem: &str, kid: &str) -> Result<Jwk> {
    let mut jwk = Jwk::from_encoding_key(&EncodingKey::from_ec_pem(pem.as_bytes())?, Algorithm::ES256)?;
    jwk.common.key_id = Some(kid.to_owned());
    Ok(jwk)
}

fn token(pem: &str, header: &Header) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": Uuid::new_v4(), "role": "authenticated", "aud": "authenticated", "exp": now + 600,
        "app_metadata": {"role": "patient"},
    });
    Ok(jsonwebtoken::encode(header, &claims, &EncodingKey::from_ec_pem(pem.as_bytes())?)?)
}

fn es256(kid: Option<&str>) -> Header {
    Header { kid: kid.map(str::to_owned), ..Header::new(Algorithm::ES256) }
}

/// A JWKS endpoint whose keys the test can change, counting how often it is fetched.
async fn serve_jwks(keys: Arc<Mutex<JwkSet>>, fetches: Arc<AtomicUsize>) -> Result<String> {
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let (keys, fetches) = (keys.clone(), fetches.clone());
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let set = keys.lock().map(|set| set.clone()).unwrap_or(JwkSet { keys: vec![] });
                axum::Json(set)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/jwks.json", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn status(server: &TestServer, token: &str) -> Result<u16> {
    let request = format!("{}?access_token={token}", server.ws_url()).into_client_request()?;
    Ok(match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(err) => anyhow::bail!("{err}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_verify_against_the_jwks_and_rotated_keys_are_fetched() -> Result<()> {
    let keys = Arc::new(Mutex::new(JwkSet { keys: vec![jwk(KEY_ONE, "one")?] }));
    let fetches = Arc::new(AtomicUsize::new(0));
    let url = serve_jwks(keys.clone(), fetches.clone()).await?;
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.jwks_url = Some(url);
        config.jwt_secret = None;
    })
    .await?;
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched at start");

    assert_eq!(status(&server, &token(KEY_ONE, &es256(Some("one")))?).await?, 101);
    assert_eq!(status(&server, &token(KEY_TWO, &es256(Some("one")))?).await?, 401, "signed with another key");
    assert_eq!(status(&server, &token(KEY_ONE, &es256(None))?).await?, 401, "no kid");
    let hs256 = crate::common::TestUser::new(convene_protocol::Role::Patient, None).token();
    assert_eq!(status(&server, &hs256).await?, 401, "HS256 is off without a secret");
    let good = token(KEY_ONE, &es256(Some("one")))?;
    let (_, body, signature) = {
        let mut parts = good.splitn(3, '.');
        (parts.next(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default())
    };
    // {"alg":"RS256","kid":"one"}: the key is bound to ES256.
    let swapped = format!("eyJhbGciOiJSUzI1NiIsImtpZCI6Im9uZSJ9.{body}.{signature}");
    assert_eq!(status(&server, &swapped).await?, 401, "algorithm swapped in the header");

    // The issuer rotates in a second key: a token naming it triggers one refetch and passes.
    if let Ok(mut set) = keys.lock() {
        set.keys.push(jwk(KEY_TWO, "two")?);
    }
    assert_eq!(status(&server, &token(KEY_TWO, &es256(Some("two")))?).await?, 101);
    let after_rotation = fetches.load(Ordering::SeqCst);
    assert_eq!(after_rotation, 2);
    // Made-up key ids do not make the server fetch again and again.
    for n in 0..5 {
        assert_eq!(status(&server, &token(KEY_TWO, &es256(Some(&format!("made-up-{n}"))))?).await?, 401);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), after_rotation, "refetches are rate-limited");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_and_a_jwks_can_be_used_together() -> Result<()> {
    let keys = Arc::new(Mutex::new(JwkSet { keys: vec![jwk(KEY_ONE, "one")?] }));
    let url = serve_jwks(keys, Arc::new(AtomicUsize::new(0))).await?;
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.jwks_url = Some(url);
        config.jwt_secret = Some(SECRET.to_owned());
    })
    .await?;
    let hs256 = crate::common::TestUser::new(convene_protocol::Role::Patient, None).token();
    assert_eq!(status(&server, &hs256).await?, 101);
    assert_eq!(status(&server, &token(KEY_ONE, &es256(Some("one")))?).await?, 101);
    Ok(())
}
