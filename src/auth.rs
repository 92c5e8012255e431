//! Bearer tokens: HS256 JWTs whose `sub` is the user's UUID. One parser for
//! the `Bearer <token>` form serves the HTTP header and WebSocket
//! `connection_init` alike, and every refusal says why in `extensions.reason`.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::{HeaderMap, header};
use chrono::{DateTime, SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::error::TokenRefusal;
use crate::{config::JwtSecret, error::ApiError, ids::UserId};

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

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// Signs and verifies tokens with the configured secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    leeway: Duration,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtKeys([redacted])")
    }
}

impl JwtKeys {
    pub fn new(secret: &JwtSecret) -> Self {
        // `Validation::new` pins the algorithm list to HS256 alone, so a token
        // signed with any other algorithm (or `none`) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `exp` is checked here rather than by jsonwebtoken, so the refusal
        // can say when the token expired.
        validation.validate_exp = false;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        let mut keys = Self {
            encoding: EncodingKey::from_secret(secret.expose()),
            decoding: DecodingKey::from_secret(secret.expose()),
            validation,
            leeway: DEFAULT_LEEWAY,
        };
        keys.validation.leeway = keys.leeway.as_secs();
        keys
    }

    /// Sets the clock skew tolerated on `exp` and `nbf` (zero allowed).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// Mints a token for `user`, valid for `ttl` from now.
    pub fn mint(&self, user: Uuid, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let exp = jsonwebtoken::get_current_timestamp().saturating_add(ttl.as_secs());
        let claims = Claims { sub: user.to_string(), exp, nbf: None };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verifies a raw token and returns its user.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        self.verify_session(token).map(|session| session.user)
    }

    /// Verifies a raw token and returns its user and when it expires.
    pub fn verify_session(&self, token: &str) -> Result<Session, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| refusal_of(token, err.kind()))?;
        let user = Uuid::parse_str(&data.claims.sub).map(UserId).map_err(|_| {
            refused(TokenRefusal::Invalid, "the bearer token's `sub` is not a user id (a UUID)")
        })?;
        let expires_at =
            UNIX_EPOCH + Duration::from_secs(data.claims.exp).saturating_add(self.leeway);
        if SystemTime::now() >= expires_at {
            let at = DateTime::<Utc>::from(UNIX_EPOCH + Duration::from_secs(data.claims.exp));
            let message = format!(
                "the bearer token expired at {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            return Err(refused(TokenRefusal::Expired, &message));
        }
        Ok(Session { user, expires_at })
    }

    /// Authenticates a request from its `Authorization: Bearer <jwt>` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Session, ApiError> {
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            refused(TokenRefusal::Missing, "missing `Authorization: Bearer <token>` header")
        })?;
        let value = value.to_str().map_err(|_| not_bearer())?;
        self.verify_authorization(value)
    }

    /// Verifies an `authorization` value such as `Bearer <jwt>` (WebSocket
    /// `connection_init` payloads carry the same form as the HTTP header).
    pub fn verify_authorization(&self, value: &str) -> Result<Session, ApiError> {
        self.verify_session(bearer_token(value)?)
    }
}

/// Longest bearer token read; a JWT of ours is about 200 bytes.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The token of a `Bearer <token>` value (scheme in any case, per RFC 7235).
fn bearer_token(value: &str) -> Result<&str, ApiError> {
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
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json).is_ok()
            })
}

/// A plain sentence for each way jsonwebtoken can refuse a token.
fn refusal_of(token: &str, kind: &ErrorKind) -> ApiError {
    if !is_jwt(token) {
        return refused(TokenRefusal::Malformed, "the bearer token is not a well-formed JWT");
    }
    match kind {
        // The header was a JSON object: what did not parse is the claims,
        // or an algorithm jsonwebtoken does not know (`none`).
        ErrorKind::Json(_) if !header_names_known_algorithm(token) => {
            refused(TokenRefusal::Invalid, "the bearer token must be signed with HS256")
        }
        ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => refused(
            TokenRefusal::Invalid,
            "the bearer token's claims are invalid: `sub` must be a user id and `exp`, `nbf` numbers",
        ),
        ErrorKind::MissingRequiredClaim(claim) => {
            let message = format!("the bearer token has no `{claim}` claim");
            refused(TokenRefusal::Invalid, &message)
        }
        ErrorKind::ExpiredSignature => refused(TokenRefusal::Expired, "the bearer token expired"),
        ErrorKind::ImmatureSignature => {
            refused(TokenRefusal::Invalid, "the bearer token is not valid yet (`nbf`)")
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => {
            refused(TokenRefusal::Invalid, "the bearer token must be signed with HS256")
        }
        _ => refused(TokenRefusal::Invalid, "the bearer token's signature is not valid"),
    }
}

fn header_names_known_algorithm(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok()
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

    #[test]
    fn minted_token_verifies_as_its_user() -> TestResult {
        let (user, keys) = (Uuid::new_v4(), keys("0123456789abcdef0123456789abcdef")?);
        let token = keys.mint(user, Duration::from_secs(60))?;
        assert_eq!(keys.verify(&token)?, UserId(user));
        Ok(())
    }

    #[test]
    fn token_of_another_secret_is_refused() -> TestResult {
        let token = keys("another-secret-another-secret-another")?
            .mint(Uuid::new_v4(), Duration::from_secs(60))?;
        let verified = keys("0123456789abcdef0123456789abcdef")?.verify(&token);
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

    #[test]
    fn expired_token_says_when_it_expired() -> TestResult {
        let keys = keys("0123456789abcdef0123456789abcdef")?.with_leeway(Duration::ZERO);
        let exp = jsonwebtoken::get_current_timestamp() - 5;
        let claims = Claims { sub: Uuid::new_v4().to_string(), exp, nbf: None };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)?;
        match keys.verify(&token) {
            Err(ApiError::Unauthenticated { refusal: TokenRefusal::Expired, message }) => {
                assert!(message.starts_with("the bearer token expired at 20"), "{message}");
            }
            other => panic!("expected an expiry refusal, got {other:?}"),
        }
        Ok(())
    }
}
