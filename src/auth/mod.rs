//! Bearer tokens: JWTs verified with a shared secret (HS256), an identity
//! provider's public key, or the provider's JWKS, whose configured claim
//! names the user. One parser for the `Bearer <token>` form serves the HTTP
//! header and WebSocket `connection_init` alike, and every refusal says why
//! in `extensions.reason`.

mod claims;
mod jwks;
mod keys;
mod verified;

pub use self::{claims::ClaimRules, jwks::Jwks, keys::KeySet};

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::{HeaderMap, header};
use chrono::{DateTime, SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header, errors::ErrorKind};
use serde_json::{Value, json};
use uuid::Uuid;

pub use crate::error::TokenRefusal;
use crate::{config::JwtSecret, error::ApiError, ids::UserId};

use self::{
    keys::{Lookup, VerifyingKey},
    verified::Verified,
};

/// Clock skew tolerated on `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// A verified token: whose it is and until when it is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub user: UserId,
    /// `exp` plus the leeway: past it, nothing this token carries may run.
    pub expires_at: SystemTime,
}

impl Session {
    pub fn is_expired(&self) -> bool {
        SystemTime::now() >= self.expires_at
    }
}

/// Why `deployql token` (or dev mode) cannot mint a token.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(
        "tokens come from the identity provider whose keys are configured \
         (JWT_PUBLIC_KEY_FILE or JWKS_URL); deployql mints HS256 tokens only with JWT_SECRET"
    )]
    NotTheSigner,
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// Where the verifying keys come from.
#[derive(Clone)]
enum KeySource {
    /// A shared secret or one provider key, fixed for the process' life.
    Fixed(Arc<KeySet>),
    /// A provider's key set, selected by `kid` and refreshed.
    Jwks(Arc<Jwks>),
}

/// Verifies tokens (and, with a shared secret, mints them).
#[derive(Clone)]
pub struct JwtKeys {
    source: KeySource,
    rules: ClaimRules,
    /// Present only with a shared secret: deployql signs nothing else.
    encoding: Option<EncodingKey>,
    /// Tokens verified under these rules; rebuilt when the rules change.
    verified: Arc<Verified>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtKeys([redacted])")
    }
}

impl JwtKeys {
    /// Shared-secret mode: HS256 only, `sub` names the user.
    pub fn new(secret: &JwtSecret) -> Self {
        Self {
            source: KeySource::Fixed(Arc::new(KeySet::secret(secret))),
            rules: ClaimRules::default(),
            encoding: Some(EncodingKey::from_secret(secret.expose())),
            verified: Arc::default(),
        }
    }

    /// One provider key, given as a PEM public key.
    pub fn public_key(pem: &str) -> Result<Self, String> {
        let keys = KeySet::from_pem(pem)?;
        Ok(Self::with_source(KeySource::Fixed(Arc::new(keys))))
    }

    /// A provider's key set (see [`Jwks::keep_fresh`]).
    pub fn jwks(jwks: Arc<Jwks>) -> Self {
        Self::with_source(KeySource::Jwks(jwks))
    }

    fn with_source(source: KeySource) -> Self {
        Self { source, rules: ClaimRules::default(), encoding: None, verified: Arc::default() }
    }

    /// Sets what tokens must claim: issuer, audience, the user's claim.
    #[must_use]
    pub fn with_rules(mut self, rules: ClaimRules) -> Self {
        self.rules = rules;
        self.verified = Arc::default();
        self
    }

    /// Sets the clock skew tolerated on `exp` and `nbf` (zero allowed).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.rules = self.rules.with_leeway(leeway);
        self.verified = Arc::default();
        self
    }

    /// Whether tokens can be verified yet: a JWKS must have been loaded once.
    pub fn is_ready(&self) -> bool {
        match &self.source {
            KeySource::Fixed(_) => true,
            KeySource::Jwks(jwks) => jwks.keys().is_some(),
        }
    }

    /// The provider's key set, when keys come from one (for `/metrics`).
    pub fn jwks_source(&self) -> Option<&Jwks> {
        match &self.source {
            KeySource::Fixed(_) => None,
            KeySource::Jwks(jwks) => Some(jwks),
        }
    }

    /// Mints an HS256 token for `user`, valid for `ttl` from now.
    pub fn mint(&self, user: Uuid, ttl: Duration) -> Result<String, MintError> {
        let encoding = self.encoding.as_ref().ok_or(MintError::NotTheSigner)?;
        let exp = jsonwebtoken::get_current_timestamp().saturating_add(ttl.as_secs());
        let claims = json!({ "sub": user.to_string(), "exp": exp });
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)?)
    }

    /// Verifies a raw token and returns its user.
    pub async fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        self.verify_session(token).await.map(|session| session.user)
    }

    /// Verifies a raw token and returns its user and when it expires; the
    /// same token again, under the same keys, is a lookup.
    pub async fn verify_session(&self, token: &str) -> Result<Session, ApiError> {
        let digest = verified::digest(token);
        let generation = match &self.source {
            KeySource::Fixed(keys) => Some(keys.generation()),
            KeySource::Jwks(jwks) => jwks.keys().map(|keys| keys.generation()),
        };
        if let Some(session) = generation.and_then(|g| self.verified.get(&digest, g)) {
            return Ok(session);
        }
        let session = self.verify_signed(token).await?;
        if let Some(generation) = generation {
            self.verified.insert(digest, session, generation);
        }
        Ok(session)
    }

    /// Checks a token's signature and claims.
    async fn verify_signed(&self, token: &str) -> Result<Session, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| refusal_of(token, err.kind(), &self.rules))?;
        // `jku`, `x5u`, `jwk` and `x5c` are never read: keys come only from
        // configuration, never from the token they would vouch for.
        let key = self.key_for(header.kid.as_deref()).await?;
        if !key.algorithms.contains(&header.alg) {
            return Err(must_be_signed_with(&key.algorithms));
        }
        let validation = self.rules.validation(header.alg);
        let claims = jsonwebtoken::decode::<Value>(token, &key.key, validation)
            .map_err(|err| refusal_of(token, err.kind(), &self.rules))?
            .claims;
        let user = self.rules.user_of(&claims)?;
        let exp = claims.get("exp").and_then(seconds).ok_or_else(|| {
            refused(TokenRefusal::Invalid, "the bearer token's `exp` is not a number of seconds")
        })?;
        let expires_at = UNIX_EPOCH + Duration::from_secs(exp).saturating_add(self.rules.leeway());
        if SystemTime::now() >= expires_at {
            let at = DateTime::<Utc>::from(UNIX_EPOCH + Duration::from_secs(exp));
            let message = format!(
                "the bearer token expired at {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            return Err(refused(TokenRefusal::Expired, &message));
        }
        Ok(Session { user, expires_at })
    }

    /// The key a token names, refreshing a JWKS once for a `kid` it lacks.
    async fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, ApiError> {
        let jwks = match &self.source {
            KeySource::Fixed(keys) => return keys.find(kid).found(kid),
            KeySource::Jwks(jwks) => jwks,
        };
        let keys = jwks.keys().ok_or(ApiError::KeysUnavailable)?;
        match (keys.find(kid), kid) {
            (Lookup::UnknownKid, Some(kid)) => match jwks.refresh_for(kid).await {
                Some(keys) => keys.find(Some(kid)).found(Some(kid)),
                None => Lookup::UnknownKid.found(Some(kid)),
            },
            (lookup, _) => lookup.found(kid),
        }
    }

    /// Authenticates a request from its `Authorization: Bearer <jwt>` header.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Session, ApiError> {
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            refused(TokenRefusal::Missing, "missing `Authorization: Bearer <token>` header")
        })?;
        let value = value.to_str().map_err(|_| not_bearer())?;
        self.verify_authorization(value).await
    }

    /// Verifies an `authorization` value such as `Bearer <jwt>` (WebSocket
    /// `connection_init` payloads carry the same form as the HTTP header).
    pub async fn verify_authorization(&self, value: &str) -> Result<Session, ApiError> {
        self.verify_session(bearer_token(value)?).await
    }
}

/// A whole number of seconds since the epoch (some issuers write `1.7e9`).
fn seconds(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        // Truncation is the point: fractions of a second are not honoured.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        value.as_f64().filter(|s| s.is_finite() && *s >= 0.0).map(|s| s as u64)
    })
}

/// Longest bearer token read; a provider's JWT is 1-2 KiB at most.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The token of a `Bearer <token>` value (scheme in any case, per RFC 7235).
pub fn bearer_token(value: &str) -> Result<&str, ApiError> {
    if value.len() > MAX_TOKEN_BYTES {
        let message = format!("the bearer token is longer than {MAX_TOKEN_BYTES} bytes");
        return Err(refused(TokenRefusal::Malformed, &message));
    }
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(not_bearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(not_bearer());
    }
    Ok(token)
}

fn not_bearer() -> ApiError {
    refused(TokenRefusal::Malformed, "the Authorization header must be `Bearer <token>`")
}

/// Three dot-separated parts whose first is a base64url JSON object: a JWT,
/// whatever it claims or however it is signed.
fn is_jwt(token: &str) -> bool {
    use base64::Engine;
    let mut parts = token.split('.');
    let header = parts.next().unwrap_or_default();
    parts.count() == 2
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header.trim_end_matches('='))
            .is_ok_and(|json| {
                serde_json::from_slice::<serde_json::Map<String, Value>>(&json).is_ok()
            })
}

/// A plain sentence for each way jsonwebtoken can refuse a token.
fn refusal_of(token: &str, kind: &ErrorKind, rules: &ClaimRules) -> ApiError {
    if !is_jwt(token) {
        return refused(TokenRefusal::Malformed, "the bearer token is not a well-formed JWT");
    }
    match kind {
        // The header was a JSON object but not a JWT header jsonwebtoken
        // reads: an algorithm it does not know (`none`), or no `alg`.
        ErrorKind::Json(_) if jsonwebtoken::decode_header(token).is_err() => refused(
            TokenRefusal::Invalid,
            "the bearer token's header names no algorithm deployql accepts",
        ),
        ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
            let message = format!(
                "the bearer token's claims are invalid: `{}` must be a user id and `exp`, `nbf` numbers",
                rules.user_claim()
            );
            refused(TokenRefusal::Invalid, &message)
        }
        ErrorKind::MissingRequiredClaim(claim) => {
            let message = format!("the bearer token has no `{claim}` claim");
            refused(TokenRefusal::Invalid, &message)
        }
        ErrorKind::InvalidIssuer => {
            refused(TokenRefusal::Invalid, "the bearer token's issuer (`iss`) is not accepted")
        }
        ErrorKind::InvalidAudience => {
            refused(TokenRefusal::Invalid, "the bearer token's audience (`aud`) is not accepted")
        }
        ErrorKind::ExpiredSignature => refused(TokenRefusal::Expired, "the bearer token expired"),
        ErrorKind::ImmatureSignature => {
            refused(TokenRefusal::Invalid, "the bearer token is not valid yet (`nbf`)")
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => {
            refused(TokenRefusal::Invalid, "the bearer token's algorithm does not match its key's")
        }
        _ => refused(TokenRefusal::Invalid, "the bearer token's signature is not valid"),
    }
}

/// The refusal of a token whose header names an algorithm its key does not take.
fn must_be_signed_with(algorithms: &[Algorithm]) -> ApiError {
    let names: Vec<String> = algorithms.iter().map(|alg| format!("{alg:?}")).collect();
    let message = format!("the bearer token must be signed with {}", names.join(" or "));
    refused(TokenRefusal::Invalid, &message)
}

fn refused(refusal: TokenRefusal, message: &str) -> ApiError {
    ApiError::Unauthenticated { refusal, message: message.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn keys(secret: &str) -> Result<JwtKeys, String> {
        JwtSecret::parse(secret).map(|secret| JwtKeys::new(&secret))
    }

    #[tokio::test]
    async fn minted_token_verifies_as_its_user() -> TestResult {
        let (user, keys) = (Uuid::new_v4(), keys("0123456789abcdef0123456789abcdef")?);
        let token = keys.mint(user, Duration::from_secs(60))?;
        assert_eq!(keys.verify(&token).await?, UserId(user));
        Ok(())
    }

    #[tokio::test]
    async fn token_of_another_secret_is_refused() -> TestResult {
        let token = keys("another-secret-another-secret-another")?
            .mint(Uuid::new_v4(), Duration::from_secs(60))?;
        let verified = keys("0123456789abcdef0123456789abcdef")?.verify(&token).await;
        assert!(matches!(
            verified,
            Err(ApiError::Unauthenticated { refusal: TokenRefusal::Invalid, .. })
        ));
        Ok(())
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token("Bearer abc").ok(), Some("abc"));
        assert_eq!(bearer_token("bearer  abc ").ok(), Some("abc"));
        assert_eq!(bearer_token("BEARER abc").ok(), Some("abc"));
        assert!(bearer_token("Bearer").is_err());
        assert!(bearer_token("Bearer   ").is_err());
        assert!(bearer_token("Basic abc").is_err());
    }

    #[tokio::test]
    async fn expired_token_says_when_it_expired() -> TestResult {
        let secret = "0123456789abcdef0123456789abcdef";
        let keys = keys(secret)?.with_leeway(Duration::ZERO);
        let exp = jsonwebtoken::get_current_timestamp() - 5;
        let claims = json!({ "sub": Uuid::new_v4().to_string(), "exp": exp });
        let encoding = EncodingKey::from_secret(secret.as_bytes());
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &encoding)?;
        match keys.verify(&token).await {
            Err(ApiError::Unauthenticated { refusal: TokenRefusal::Expired, message }) => {
                assert!(message.starts_with("the bearer token expired at 20"), "{message}");
            }
            other => panic!("expected an expiry refusal, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_provider_key_mints_nothing() -> TestResult {
        let pem = "-----BEGIN PUBLIC KEY-----\n\
                   MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
                   -----END PUBLIC KEY-----\n";
        let keys = JwtKeys::public_key(pem)?;
        assert!(matches!(
            keys.mint(Uuid::new_v4(), Duration::from_secs(60)),
            Err(MintError::NotTheSigner)
        ));
        Ok(())
    }
}
