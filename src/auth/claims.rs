//! What a token must claim: its issuer and audience when configured, a
//! validity window, and the claim that names the user.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use uuid::Uuid;

use super::{DEFAULT_LEEWAY, TokenRefusal, keys::ALGORITHMS, refused};
use crate::{config::UserClaim, error::ApiError, ids::UserId};

/// The claims rules of one configuration.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    user: UserClaim,
    leeway: Duration,
    validations: Vec<Validation>,
}

impl Default for ClaimRules {
    fn default() -> Self {
        Self::new(&[], &[], UserClaim::default())
    }
}

impl ClaimRules {
    /// `issuers` and `audiences`, when not empty, are the accepted `iss`
    /// and `aud` values, and the claims become required.
    pub fn new(issuers: &[String], audiences: &[String], user: UserClaim) -> Self {
        let issuers: Vec<&str> =
            issuers.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        let audiences: Vec<&str> =
            audiences.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        // One validation per algorithm a key may take, prepared once, so
        // verifying a token builds nothing.
        let validations = ALGORITHMS
            .iter()
            .map(|&algorithm| {
                let mut validation = Validation::new(algorithm);
                let mut required = vec!["exp"];
                // `exp` is checked after decoding rather than by
                // jsonwebtoken, so the refusal can say when it expired.
                validation.validate_exp = false;
                validation.validate_nbf = true;
                validation.validate_aud = !audiences.is_empty();
                if !issuers.is_empty() {
                    validation.set_issuer(&issuers);
                    required.push("iss");
                }
                if !audiences.is_empty() {
                    validation.set_audience(&audiences);
                    required.push("aud");
                }
                validation.set_required_spec_claims(&required);
                validation
            })
            .collect();
        Self { user, leeway: Duration::ZERO, validations }.with_leeway(DEFAULT_LEEWAY)
    }

    /// Sets the clock skew tolerated on `exp` and `nbf`.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        for validation in &mut self.validations {
            validation.leeway = leeway.as_secs();
        }
        self
    }

    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    pub fn user_claim(&self) -> &UserClaim {
        &self.user
    }

    /// The validation of tokens signed with `algorithm` (pinned to it alone).
    pub fn validation(&self, algorithm: Algorithm) -> &Validation {
        let index = ALGORITHMS.iter().position(|&a| a == algorithm).unwrap_or_default();
        &self.validations[index]
    }

    /// The user a token's claims name: the configured claim, holding a UUID.
    pub fn user_of(&self, claims: &Value) -> Result<UserId, ApiError> {
        let value = match &self.user {
            UserClaim::Name(name) => claims.get(name),
            UserClaim::Pointer(pointer) => claims.pointer(pointer),
        };
        let value = value.ok_or_else(|| {
            let message = format!("the bearer token has no `{}` claim", self.user);
            refused(TokenRefusal::Invalid, &message)
        })?;
        value.as_str().and_then(|id| Uuid::parse_str(id).ok()).map(UserId).ok_or_else(|| {
            let message =
                format!("the bearer token's `{}` claim is not a user id (a UUID)", self.user);
            refused(TokenRefusal::Invalid, &message)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(claim: &str) -> ClaimRules {
        ClaimRules::new(&[], &[], UserClaim::parse(claim).unwrap_or_default())
    }

    #[test]
    fn a_namespaced_top_level_claim_is_taken_literally() {
        let user = Uuid::new_v4();
        let claims = json!({ "sub": "auth0|123", "https://platform.example/user_id": user });
        assert_eq!(
            rules("https://platform.example/user_id").user_of(&claims).ok(),
            Some(UserId(user))
        );
        assert!(rules("sub").user_of(&claims).is_err());
    }

    #[test]
    fn a_json_pointer_reaches_into_nested_claims() {
        let user = Uuid::new_v4();
        let claims = json!({ "https://platform.example/claims": { "user_id": user.to_string() } });
        let rules = rules("/https:~1~1platform.example~1claims/user_id");
        assert_eq!(rules.user_of(&claims).ok(), Some(UserId(user)));
        assert!(rules.user_of(&json!({ "https://platform.example/claims": {} })).is_err());
    }

    #[test]
    fn a_user_claim_that_is_not_a_uuid_is_invalid() {
        for claims in [json!({ "sub": "alice" }), json!({ "sub": 42 }), json!({})] {
            assert!(matches!(
                rules("sub").user_of(&claims),
                Err(ApiError::Unauthenticated { refusal: TokenRefusal::Invalid, .. })
            ));
        }
    }

    #[test]
    fn every_algorithm_has_a_validation_pinned_to_it() {
        let rules = ClaimRules::new(&["https://idp".into()], &["api".into()], UserClaim::default());
        for algorithm in ALGORITHMS {
            assert_eq!(rules.validation(algorithm).algorithms, vec![algorithm]);
        }
    }
}
