//! Verifying keys, each with the algorithms it may verify: a token whose
//! header names another algorithm is refused before its signature is read,
//! so no key is ever used as another kind of key (RS256's public key as an
//! HS256 secret, say).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use serde::Deserialize;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned, der::DecodePem};

use super::{TokenRefusal, refused};
use crate::{config::JwtSecret, error::ApiError};

/// Every algorithm a verifying key may take: HS256 (the shared secret), the
/// RSA family, ES256, ES384 and EdDSA.
pub(super) const ALGORITHMS: [Algorithm; 10] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The algorithms an RSA key verifies (PKCS#1 v1.5 and PSS).
fn rsa_family() -> &'static [Algorithm] {
    &ALGORITHMS[1..7]
}

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// One key and the algorithms it verifies.
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Numbers each key set built, so a cached verification can tell whether
/// the keys it was made with are still the ones in use.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// The keys tokens may be signed with.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    generation: u64,
    /// A single configured key verifies whatever `kid` a token names.
    ignores_kid: bool,
}

/// What a token's `kid` found.
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<VerifyingKey>),
    /// The set holds several keys and the token names none.
    NoKid,
    UnknownKid,
}

impl Lookup {
    /// The key, or the refusal of a token it cannot verify.
    pub fn found(self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, ApiError> {
        match self {
            Self::Found(key) => Ok(key),
            Self::NoKid => Err(refused(
                TokenRefusal::Invalid,
                "the bearer token names no signing key (`kid`), and the provider publishes several",
            )),
            Self::UnknownKid => {
                let kid = crate::error::echo(kid.unwrap_or_default());
                let message =
                    format!("the bearer token's signing key `{kid}` is not the provider's");
                Err(refused(TokenRefusal::Invalid, &message))
            }
        }
    }
}

impl KeySet {
    /// The shared secret, for HS256 alone.
    pub fn secret(secret: &JwtSecret) -> Self {
        let key = DecodingKey::from_secret(secret.expose());
        Self::single(VerifyingKey { kid: None, key, algorithms: vec![Algorithm::HS256] })
    }

    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`); its type fixes the
    /// algorithm: RSA RS256, EC P-256 ES256, P-384 ES384, Ed25519 EdDSA.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let info = SubjectPublicKeyInfoOwned::from_pem(pem.trim().as_bytes()).map_err(|err| {
            format!("not a `-----BEGIN PUBLIC KEY-----` PEM (SubjectPublicKeyInfo): {err}")
        })?;
        let raw = info.subject_public_key.raw_bytes();
        let (key, algorithm) = match info.algorithm.oid {
            RSA_ENCRYPTION => (DecodingKey::from_rsa_der(raw), Algorithm::RS256),
            EC_PUBLIC_KEY => match info.algorithm.parameters.as_ref().map(|p| p.decode_as()) {
                Some(Ok(P256)) => (DecodingKey::from_ec_der(raw), Algorithm::ES256),
                Some(Ok(P384)) => (DecodingKey::from_ec_der(raw), Algorithm::ES384),
                _ => return Err("an EC key must be on P-256 or P-384".to_owned()),
            },
            ED25519 => (DecodingKey::from_ed_der(raw), Algorithm::EdDSA),
            other => {
                return Err(format!(
                    "a key of type {other} is not supported: use RSA, EC P-256/P-384 or Ed25519"
                ));
            }
        };
        Ok(Self::single(VerifyingKey { kid: None, key, algorithms: vec![algorithm] }))
    }

    /// The signing keys of a JWKS document (RFC 7517). Keys deployql cannot
    /// use are skipped: encryption keys, symmetric keys (a published secret
    /// is no secret), other curves, and keys whose `alg` contradicts their
    /// type. Returns the set and how many keys were skipped.
    pub fn from_jwks(document: &[u8]) -> Result<(Self, usize), String> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(document)
            .map_err(|err| format!("not a JWKS document (`{{\"keys\": [...]}}`): {err}"))?;
        let total = document.keys.len();
        let keys: Vec<Arc<VerifyingKey>> = document
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| verifying_key(&jwk))
            .map(Arc::new)
            .collect();
        if keys.is_empty() {
            return Err(format!("none of its {total} keys is a signing key deployql can use"));
        }
        let skipped = total - keys.len();
        Ok((Self { keys, generation: next_generation(), ignores_kid: false }, skipped))
    }

    fn single(key: VerifyingKey) -> Self {
        Self { keys: vec![Arc::new(key)], generation: next_generation(), ignores_kid: true }
    }

    /// Different for every key set built.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token's `kid`; a token without one may use the only key.
    pub fn find(&self, kid: Option<&str>) -> Lookup {
        match (kid, self.keys.as_slice()) {
            (_, [only]) if self.ignores_kid => Lookup::Found(only.clone()),
            (None, [only]) => Lookup::Found(only.clone()),
            (None, _) => Lookup::NoKid,
            (Some(kid), keys) => keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .map_or(Lookup::UnknownKid, |key| Lookup::Found(key.clone())),
        }
    }

    /// Whether a key of this set has `kid`.
    pub fn knows(&self, kid: &str) -> bool {
        matches!(self.find(Some(kid)), Lookup::Found(_)) && !self.ignores_kid
    }
}

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

/// A JWK as a verifying key, with the algorithms its type (and `alg`, when
/// given) allow; `None` for a key deployql must not use.
fn verifying_key(jwk: &Jwk) -> Option<VerifyingKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)))
    {
        return None;
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => rsa_family().to_vec(),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return None,
        },
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family,
        Some(alg) => {
            let alg = alg.to_string().parse::<Algorithm>().ok()?;
            family.contains(&alg).then(|| vec![alg])?
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey { kid: jwk.common.key_id.clone(), key, algorithms })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
        -----END PUBLIC KEY-----\n";

    fn algorithms(keys: &KeySet, kid: &str) -> Option<Vec<Algorithm>> {
        match keys.find(Some(kid)) {
            Lookup::Found(key) => Some(key.algorithms.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_pem_key_type_fixes_the_algorithm() -> Result<(), String> {
        let keys = KeySet::from_pem(ED25519_PEM)?;
        assert_eq!(algorithms(&keys, "any"), Some(vec![Algorithm::EdDSA]));
        assert!(
            KeySet::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
        assert!(KeySet::from_pem("not a key").is_err());
        Ok(())
    }

    #[test]
    fn jwks_keys_take_the_algorithms_of_their_type_and_alg() -> Result<(), String> {
        let rsa = json!({ "kty": "RSA", "kid": "r", "n": "sXch", "e": "AQAB" });
        let rsa_pinned =
            json!({ "kty": "RSA", "kid": "p", "alg": "PS256", "n": "sXch", "e": "AQAB" });
        let ed = json!({ "kty": "OKP", "kid": "e", "crv": "Ed25519",
                         "x": "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE" });
        let document = json!({ "keys": [rsa, rsa_pinned, ed] }).to_string();
        let (keys, skipped) = KeySet::from_jwks(document.as_bytes())?;
        assert_eq!((keys.len(), skipped), (3, 0));
        assert_eq!(algorithms(&keys, "r"), Some(rsa_family().to_vec()));
        assert_eq!(algorithms(&keys, "p"), Some(vec![Algorithm::PS256]));
        assert_eq!(algorithms(&keys, "e"), Some(vec![Algorithm::EdDSA]));
        assert!(algorithms(&keys, "missing").is_none());
        assert!(matches!(keys.find(None), Lookup::NoKid));
        Ok(())
    }

    #[test]
    fn unusable_jwks_keys_are_skipped() -> Result<(), String> {
        let document = json!({ "keys": [
            // A published secret, an encryption key, an alg that contradicts
            // the key type, a curve jsonwebtoken does not verify, garbage.
            { "kty": "oct", "kid": "s", "k": "c2VjcmV0" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB" },
            { "kty": "RSA", "kid": "confused", "alg": "HS256", "n": "sXch", "e": "AQAB" },
            { "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" },
            { "kid": "garbage" },
            { "kty": "OKP", "kid": "ok", "crv": "Ed25519",
              "x": "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE" },
        ]})
        .to_string();
        let (keys, skipped) = KeySet::from_jwks(document.as_bytes())?;
        assert_eq!((keys.len(), skipped), (1, 5));
        assert!(keys.knows("ok"));
        assert!(!keys.knows("s"));
        assert!(KeySet::from_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        assert!(KeySet::from_jwks(b"[]").is_err());
        Ok(())
    }
}
