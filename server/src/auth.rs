//! Access tokens: verifying the JWTs clients present, and minting development tokens.
//!
//! Tokens follow Supabase Auth: `sub` is the user, `aud` is `authenticated`, the user's role and
//! organization come from `app_metadata`, which only the backend can set. Algorithms are pinned:
//! HS256 with the configured secret, and RS256 or ES256 with the keys of a configured JWKS, each key
//! bound to its own algorithm. `exp` and `nbf` are both checked, so a token whose `alg` is `none`,
//! or that is expired, not yet valid or signed with another key is refused. Token text is never
//! logged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use convene_protocol::{AppMetadata, Claims, OrgId, Role, SUPABASE_AUDIENCE, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use tracing::{info, warn};
use uuid::Uuid;

/// Clock skew tolerated on `exp` and `nbf`, between the issuer's clock and ours.
const CLOCK_LEEWAY: Duration = Duration::from_secs(5);
/// Supabase's database role for signed-in users; `anon` and `service_role` are refused.
const USER_DB_ROLE: &str = "authenticated";
/// Where dev mode keeps its generated secret, inside the data directory.
const DEV_SECRET_FILE: &str = "dev-jwt-secret";
/// A token naming a key the JWKS does not have triggers a refetch (keys rotate), at most this
/// often, so that tokens with made-up key ids cannot make the server hammer the issuer.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long fetching the JWKS may take.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Who a verified token speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
    pub organization_id: Option<OrgId>,
    /// The token's `exp`, in seconds since the epoch.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no access token was presented")]
    Missing,
    #[error("the access token is not valid: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("the token is not a signed-in user's (role {0:?})")]
    NotAUser(String),
    #[error("tokens signed with {0:?} are not accepted")]
    AlgorithmNotAccepted(Algorithm),
    #[error("the token's issuer (iss) is missing or not the configured one")]
    WrongIssuer,
    #[error("the token names no key id (kid)")]
    MissingKeyId,
    #[error("no key with that id is published")]
    UnknownKey,
    #[error("the JWKS could not be fetched: {0}")]
    JwksFetch(String),
    #[error("the dev secret could not be read or created at {path}: {source}")]
    DevSecret {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Verifies access tokens: HS256 against a secret, RS256 and ES256 against a JWKS.
pub struct Verifier {
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of debug output.
        f.debug_struct("Verifier")
            .field("hs256", &self.secret.is_some())
            .field("jwks", &self.jwks.as_ref().map(|jwks| &jwks.url))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier accepting HS256 tokens signed with `secret` (when given) and RS256/ES256 tokens
    /// signed with a key of `jwks` (when given), optionally requiring an issuer.
    pub fn new(secret: Option<&[u8]>, jwks: Option<Jwks>, issuer: Option<&str>) -> Self {
        Self { secret: secret.map(DecodingKey::from_secret), jwks, issuer: issuer.map(str::to_owned) }
    }

    /// A verifier for HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8], issuer: Option<&str>) -> Self {
        Self::new(Some(secret), None, issuer)
    }

    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token)?;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.clone().ok_or(AuthError::AlgorithmNotAccepted(header.alg))?,
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::AlgorithmNotAccepted(header.alg))?;
                let kid = header.kid.as_deref().ok_or(AuthError::MissingKeyId)?;
                jwks.key(kid, header.alg).await?
            }
            other => return Err(AuthError::AlgorithmNotAccepted(other)),
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation(header.alg))?.claims;
        // The library checks `iss` only when the token has one; a configured issuer must be there.
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(AuthError::WrongIssuer);
        }
        if claims.role != USER_DB_ROLE {
            return Err(AuthError::NotAUser(claims.role));
        }
        Ok(Identity {
            user_id: UserId(claims.sub),
            role: claims.app_metadata.role,
            organization_id: claims.app_metadata.organization_id.map(OrgId),
            expires_at: claims.exp,
        })
    }

    /// The checks for one pinned algorithm.
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[SUPABASE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = CLOCK_LEEWAY.as_secs();
        if let Some(issuer) = &self.issuer {
            validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
            validation.set_issuer(&[issuer]);
        }
        validation
    }
}

/// The keys published at a JWKS URL (Supabase: `/auth/v1/.well-known/jwks.json`), fetched at start
/// and again when a token names a key not yet known.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Jwks {
    pub fn new(url: &str) -> Result<Self, AuthError> {
        let client = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .build()
            .map_err(|err| AuthError::JwksFetch(err.to_string()))?;
        Ok(Self { url: url.to_owned(), client, keys: RwLock::default(), last_fetch: Mutex::default() })
    }

    /// Fetches the key set and replaces the known keys with it. Keys of unsupported types or
    /// algorithms are skipped.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let fetch = async {
            let response = self.client.get(&self.url).send().await?.error_for_status()?;
            response.json::<jsonwebtoken::jwk::JwkSet>().await
        };
        let set = fetch.await.map_err(|err| AuthError::JwksFetch(err.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            let Some(algorithm) = key_algorithm(jwk) else { continue };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, (algorithm, key));
                }
                Err(err) => warn!(kid, error = %err, "skipping a JWKS key"),
            }
        }
        let count = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(count)
    }

    /// The key `kid`, provided it is bound to `algorithm`; refetches the set (rate-limited) when
    /// the key is unknown, since keys rotate.
    async fn key(&self, kid: &str, algorithm: Algorithm) -> Result<DecodingKey, AuthError> {
        if let Some(found) = self.lookup(kid) {
            return pinned(found, algorithm);
        }
        // Only refetches caused by unknown keys count against the limit, so a key rotated just
        // after start is still picked up at once.
        let may_fetch = {
            let mut last = self.last_fetch.lock().unwrap_or_else(PoisonError::into_inner);
            let allowed = last.is_none_or(|at| at.elapsed() >= JWKS_REFETCH_INTERVAL);
            if allowed {
                *last = Some(Instant::now());
            }
            allowed
        };
        if may_fetch {
            self.refresh().await?;
            if let Some(found) = self.lookup(kid) {
                return pinned(found, algorithm);
            }
        }
        Err(AuthError::UnknownKey)
    }

    fn lookup(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).get(kid).cloned()
    }
}

/// A key is used only with the algorithm it is published for.
fn pinned((bound, key): (Algorithm, DecodingKey), algorithm: Algorithm) -> Result<DecodingKey, AuthError> {
    if bound == algorithm { Ok(key) } else { Err(AuthError::AlgorithmNotAccepted(algorithm)) }
}

/// The algorithm a published key is for: its `alg` when given, else what its type implies.
fn key_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm};
    let implied = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(Algorithm::ES256),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(Algorithm::RS256),
        Some(_) => None,
    }
}

/// Signs a token for `sub` with `secret`, valid for `ttl`: what `convene token` prints.
pub fn mint(
    secret: &[u8],
    sub: Uuid,
    role: Role,
    organization_id: Option<Uuid>,
    ttl: Duration,
) -> Result<String, AuthError> {
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = Claims {
        sub,
        role: USER_DB_ROLE.to_owned(),
        aud: SUPABASE_AUDIENCE.to_owned(),
        exp: now.saturating_add(ttl),
        nbf: None,
        iat: Some(now),
        iss: None,
        app_metadata: AppMetadata { role, organization_id },
    };
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))?)
}

/// The development secret in `data_dir`, created on first use. Returns the secret and whether it
/// was just created.
pub fn dev_secret(data_dir: &Path) -> Result<(Vec<u8>, bool), AuthError> {
    let path = data_dir.join(DEV_SECRET_FILE);
    let io_error = |source| AuthError::DevSecret { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(secret) => Ok((secret.trim().as_bytes().to_vec(), false)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io_error)?;
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let secret: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            write_private(&path, &secret).map_err(io_error)?;
            info!(path = %path.display(), "dev mode: created a random JWT secret");
            Ok((secret.into_bytes(), true))
        }
        Err(err) => Err(io_error(err)),
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(secret: &[u8], header: &Header, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).expect("encodes")
    }

    fn claims(exp_offset: i64, nbf_offset: Option<i64>, role: &str, aud: &str) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({
            "sub": Uuid::new_v4(), "role": role, "aud": aud, "exp": now + exp_offset,
            "app_metadata": { "role": "therapist" },
            "user_metadata": { "role": "admin" },
        });
        if let Some(nbf) = nbf_offset {
            claims["nbf"] = serde_json::json!(now + nbf);
        }
        claims
    }

    #[tokio::test]
    async fn accepts_a_supabase_style_token_and_ignores_user_metadata() {
        let verifier = Verifier::hs256(b"secret", None);
        let identity = verifier
            .verify(&token(b"secret", &Header::default(), &claims(60, None, "authenticated", "authenticated")))
            .await
            .expect("valid");
        assert_eq!(identity.role, Role::Therapist);
    }

    #[tokio::test]
    async fn refuses_tokens_that_must_not_pass() {
        let verifier = Verifier::hs256(b"secret", None);
        let unsigned = {
            let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
            let body = base64_url(claims(60, None, "authenticated", "authenticated").to_string().as_bytes());
            format!("{header}.{body}.")
        };
        let cases = [
            ("expired", token(b"secret", &Header::default(), &claims(-60, None, "authenticated", "authenticated"))),
            (
                "not yet valid",
                token(b"secret", &Header::default(), &claims(600, Some(300), "authenticated", "authenticated")),
            ),
            ("wrong key", token(b"other", &Header::default(), &claims(60, None, "authenticated", "authenticated"))),
            ("alg none", unsigned),
            (
                "wrong algorithm",
                token(b"secret", &Header::new(Algorithm::HS512), &claims(60, None, "authenticated", "authenticated")),
            ),
            ("anon role", token(b"secret", &Header::default(), &claims(60, None, "anon", "authenticated"))),
            ("service role", token(b"secret", &Header::default(), &claims(60, None, "service_role", "authenticated"))),
            (
                "wrong audience",
                token(b"secret", &Header::default(), &claims(60, None, "authenticated", "someone-else")),
            ),
            ("garbage", "not.a.token".to_owned()),
        ];
        for (name, token) in cases {
            assert!(verifier.verify(&token).await.is_err(), "{name} was accepted");
        }
    }

    #[tokio::test]
    async fn minted_tokens_verify_with_the_same_secret() {
        let user = Uuid::new_v4();
        let token = mint(b"s3cret", user, Role::Mentor, None, Duration::from_secs(60)).expect("mints");
        let identity = Verifier::hs256(b"s3cret", None).verify(&token).await.expect("verifies");
        assert_eq!((identity.user_id, identity.role), (UserId(user), Role::Mentor));
    }

    fn base64_url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}
