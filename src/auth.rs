//! Bearer tokens: HS256 JWTs whose `sub` is the user's UUID.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{config::JwtSecret, error::ApiError};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// The authenticated user of a request; every query is scoped to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser(pub Uuid);

impl fmt::Display for AuthUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A verified token: whose it is and until when it is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub user: AuthUser,
    pub expires_at: SystemTime,
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
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret.expose()),
            decoding: DecodingKey::from_secret(secret.expose()),
            validation,
        }
    }

    /// Mints a token for `user`, valid for `ttl` from now.
    pub fn mint(&self, user: Uuid, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let exp = jsonwebtoken::get_current_timestamp().saturating_add(ttl.as_secs());
        let claims = Claims { sub: user.to_string(), exp, nbf: None };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verifies a raw token and returns its user.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        self.verify_session(token).map(|session| session.user)
    }

    /// Verifies a raw token and returns its user and when it expires.
    pub fn verify_session(&self, token: &str) -> Result<Session, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| unauthenticated(&format!("invalid bearer token: {err}")))?;
        let user = Uuid::parse_str(&data.claims.sub)
            .map(AuthUser)
            .map_err(|_| unauthenticated("invalid bearer token: `sub` is not a UUID"))?;
        let expires_at =
            UNIX_EPOCH + Duration::from_secs(data.claims.exp.saturating_add(LEEWAY_SECS));
        Ok(Session { user, expires_at })
    }

    /// Authenticates a request from its `Authorization: Bearer <jwt>` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<AuthUser, ApiError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthenticated("missing `Authorization: Bearer <token>` header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
        self.verify(token)
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::Unauthenticated(message.to_owned())
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
        assert_eq!(keys.verify(&token)?, AuthUser(user));
        Ok(())
    }

    #[test]
    fn token_of_another_secret_is_refused() -> TestResult {
        let token = keys(&"z".repeat(40))?.mint(Uuid::new_v4(), Duration::from_secs(60))?;
        let verified = keys("0123456789abcdef0123456789abcdef")?.verify(&token);
        assert!(matches!(verified, Err(ApiError::Unauthenticated(_))));
        Ok(())
    }
}
