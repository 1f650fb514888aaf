//! ICE servers for the browsers' peer connections: the configured STUN servers, and TURN servers
//! with time-limited credentials in the shared-secret scheme that coturn accepts with
//! `use-auth-secret` / `static-auth-secret`:
//!
//! - username: `<expiry>:<user_id>`, the expiry in seconds since the Unix epoch;
//! - password: base64(HMAC-SHA1(secret, username)).
//!
//! The TURN server checks both without asking Convene, so the secret is all they share.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use convene_protocol::{IceServer, IceServers, UserId};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// How long TURN credentials are accepted by default: longer than any session, so a relayed call
/// never loses its allocation midway, and short enough that a leaked one is soon useless.
pub const DEFAULT_TURN_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// Why the ICE configuration cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IceError {
    #[error("CONVENE_TURN_URLS needs CONVENE_TURN_SECRET: TURN servers refuse clients without credentials")]
    TurnWithoutSecret,
    #[error("CONVENE_TURN_SECRET is set but CONVENE_TURN_URLS is empty")]
    SecretWithoutTurn,
    #[error("an ICE server URL must start with stun:, stuns:, turn: or turns: ({0})")]
    NotAnIceUrl(String),
    #[error("the TURN credential lifetime must be at least a minute")]
    TtlTooShort,
}

/// The STUN and TURN servers, as configured.
#[derive(Clone, Debug, Default)]
pub struct IceConfig {
    stun_urls: Vec<String>,
    turn_urls: Vec<String>,
    turn_secret: Option<String>,
    turn_ttl: Duration,
}

impl IceConfig {
    /// Checks the configuration: TURN needs a secret and the other way round, and every URL
    /// names an ICE scheme.
    pub fn new(
        stun_urls: Vec<String>,
        turn_urls: Vec<String>,
        turn_secret: Option<String>,
        turn_ttl: Duration,
    ) -> Result<Self, IceError> {
        let turn_secret = turn_secret.filter(|secret| !secret.is_empty());
        match (turn_urls.is_empty(), &turn_secret) {
            (false, None) => return Err(IceError::TurnWithoutSecret),
            (true, Some(_)) => return Err(IceError::SecretWithoutTurn),
            _ => {}
        }
        if let Some(bad) = stun_urls
            .iter()
            .filter(|url| !url.starts_with("stun:") && !url.starts_with("stuns:"))
            .chain(turn_urls.iter().filter(|url| !url.starts_with("turn:") && !url.starts_with("turns:")))
            .next()
        {
            return Err(IceError::NotAnIceUrl(bad.clone()));
        }
        if turn_ttl < Duration::from_secs(60) {
            return Err(IceError::TtlTooShort);
        }
        Ok(Self { stun_urls, turn_urls, turn_secret, turn_ttl })
    }

    /// The servers for `user`'s devices at `now`, TURN credentials included.
    pub fn servers(&self, user: UserId, now: DateTime<Utc>) -> IceServers {
        let mut servers = IceServers::default();
        if !self.stun_urls.is_empty() {
            servers.ice_servers.push(IceServer { urls: self.stun_urls.clone(), username: None, credential: None });
        }
        if let Some(secret) = &self.turn_secret {
            let ttl = chrono::Duration::from_std(self.turn_ttl).unwrap_or(chrono::Duration::MAX);
            let expires_at = now.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC);
            let username = format!("{}:{user}", expires_at.timestamp());
            servers.ice_servers.push(IceServer {
                urls: self.turn_urls.clone(),
                credential: Some(turn_password(secret, &username)),
                username: Some(username),
            });
            servers.expires_at = Some(expires_at);
        }
        servers
    }
}

/// base64(HMAC-SHA1(secret, username)): what the TURN server computes to check a password.
pub fn turn_password(secret: &str, username: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC accepts keys of any length")
    };
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether a TURN server holding `secret` accepts `username` and `password` at `now`: the
/// password matches and the expiry in the username has not passed. What coturn checks.
pub fn turn_accepts(secret: &str, username: &str, password: &str, now: DateTime<Utc>) -> bool {
    let Some((expiry, _user)) = username.split_once(':') else { return false };
    let Ok(expiry) = expiry.parse::<i64>() else { return false };
    let expected = turn_password(secret, username);
    expiry > now.timestamp() && subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), password.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn config(turn_secret: Option<&str>) -> IceConfig {
        IceConfig::new(
            vec!["stun:stun.example.org:3478".to_owned()],
            if turn_secret.is_some() { vec!["turn:turn.example.org:3478?transport=udp".to_owned()] } else { vec![] },
            turn_secret.map(str::to_owned),
            Duration::from_secs(3600),
        )
        .expect("a valid configuration")
    }

    #[test]
    fn the_password_is_the_base64_hmac_sha1_of_the_username() {
        // Computed independently:
        // printf '1700000000:alice' | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(turn_password("north", "1700000000:alice"), "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }

    #[test]
    fn turn_credentials_name_the_user_and_expire_after_the_ttl() {
        let user = UserId(Uuid::new_v4());
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time");
        let servers = config(Some("north")).servers(user, now);
        assert_eq!(servers.ice_servers.len(), 2);
        assert_eq!(servers.ice_servers[0].urls, ["stun:stun.example.org:3478"]);
        assert!(servers.ice_servers[0].username.is_none() && servers.ice_servers[0].credential.is_none());
        let turn = &servers.ice_servers[1];
        let (username, password) =
            (turn.username.as_deref().expect("a username"), turn.credential.as_deref().expect("a password"));
        assert_eq!(username, format!("1800003600:{user}"));
        assert_eq!(servers.expires_at, DateTime::from_timestamp(1_800_003_600, 0));

        let cases = [
            ("north", username, password, now, true),
            ("north", username, password, now + chrono::Duration::seconds(3599), true),
            ("north", username, password, now + chrono::Duration::seconds(3600), false),
            ("south", username, password, now, false),
            ("north", &format!("1800003600:{}", Uuid::new_v4()), password, now, false),
            ("north", &format!("1900000000:{user}"), password, now, false),
        ];
        for (secret, username, password, at, accepted) in cases {
            assert_eq!(turn_accepts(secret, username, password, at), accepted, "{secret} {username} at {at}");
        }
    }

    #[test]
    fn stun_alone_has_no_credentials_and_no_expiry() {
        let servers = config(None).servers(UserId(Uuid::new_v4()), Utc::now());
        assert_eq!(servers.ice_servers.len(), 1);
        assert!(servers.expires_at.is_none());
        assert_eq!(IceConfig::default().servers(UserId(Uuid::new_v4()), Utc::now()), IceServers::default());
    }

    #[test]
    fn inconsistent_configurations_are_refused() {
        let turn = || vec!["turn:turn.example.org".to_owned()];
        let hour = Duration::from_secs(3600);
        let cases = [
            (vec![], turn(), None, hour, IceError::TurnWithoutSecret),
            (vec![], vec![], Some("s".to_owned()), hour, IceError::SecretWithoutTurn),
            (vec!["http://x".to_owned()], vec![], None, hour, IceError::NotAnIceUrl("http://x".to_owned())),
            (vec![], vec!["stun:x".to_owned()], Some("s".to_owned()), hour, IceError::NotAnIceUrl("stun:x".to_owned())),
            (vec![], turn(), Some("s".to_owned()), Duration::from_secs(5), IceError::TtlTooShort),
        ];
        for (stun, turn, secret, ttl, expected) in cases {
            assert_eq!(IceConfig::new(stun, turn, secret, ttl).err(), Some(expected));
        }
    }
}
