//! How bearer tokens are verified: a shared secret (HS256), an identity
//! provider's public key, or its JWKS endpoint, and what a token must claim.

use std::{fmt, path::PathBuf};

/// The JWT signing secret; never printed.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl JwtSecret {
    pub const MIN_BYTES: usize = 32;

    pub fn parse(value: &str) -> Result<Self, String> {
        let first = value.bytes().next();
        if value.trim().is_empty() || value.bytes().all(|b| Some(b) == first) {
            return Err("JWT_SECRET must be random, not one repeated character or blanks; \
                 generate one with `openssl rand -hex 32`"
                .to_owned());
        }
        if value.len() < Self::MIN_BYTES {
            return Err(format!(
                "JWT_SECRET must be at least {} bytes, got {}; generate one with `openssl rand -hex 32`",
                Self::MIN_BYTES,
                value.len()
            ));
        }
        Ok(Self(value.as_bytes().to_vec()))
    }

    /// A fresh random secret for dev mode.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = vec![0; Self::MIN_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret([redacted])")
    }
}

/// Where an identity provider publishes its signing keys (RFC 7517): an
/// `https://` URL, `http://` only on a loopback host (a sidecar or a test),
/// or a `file://` path (keys mounted from a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksUrl {
    Http(String),
    File(PathBuf),
}

impl JwksUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = value.trim();
        if let Some(path) = url.strip_prefix("file://") {
            return if path.starts_with('/') {
                Ok(Self::File(PathBuf::from(path)))
            } else {
                Err(format!("JWKS_URL `{url}` must name an absolute path: file:///etc/jwks.json"))
            };
        }
        if let Some(rest) = url.strip_prefix("http://") {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit_once(':').map_or(host, |(host, _port)| host);
            return if ["localhost", "127.0.0.1", "[::1]"].contains(&host) {
                Ok(Self::Http(url.to_owned()))
            } else {
                Err(format!(
                    "JWKS_URL `{url}` must use https:// (plain http:// only for localhost): \
                     keys fetched in the clear could be swapped on the way"
                ))
            };
        }
        match url.strip_prefix("https://") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
                Ok(Self::Http(url.to_owned()))
            }
            _ => Err(format!(
                "JWKS_URL `{url}` is not a JWKS location: give https://..., http://localhost..., or file:///path"
            )),
        }
    }
}

impl fmt::Display for JwksUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(url) => f.write_str(url),
            Self::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// Which claim of a token holds the user's id: a top-level claim named
/// literally (`sub`, `https://platform.example/user_id`), or, written with a
/// leading `/`, a JSON Pointer (RFC 6901) into nested claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserClaim {
    Name(String),
    Pointer(String),
}

impl UserClaim {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("JWT_USER_CLAIM must name a claim, e.g. `sub`".to_owned());
        }
        if !value.starts_with('/') {
            return Ok(Self::Name(value.to_owned()));
        }
        // RFC 6901: `~` only as `~0` (a `~`) or `~1` (a `/`).
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "JWT_USER_CLAIM `{value}` is not a JSON Pointer: write `~` as `~0` and a `/` inside a name as `~1`"
                ));
            }
        }
        Ok(Self::Pointer(value.to_owned()))
    }
}

impl Default for UserClaim {
    fn default() -> Self {
        Self::Name("sub".to_owned())
    }
}

impl fmt::Display for UserClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) | Self::Pointer(name) => f.write_str(name),
        }
    }
}

/// The configured way of verifying tokens: at most one of them.
#[derive(Debug, Clone, Copy)]
pub enum TokenKeys<'a> {
    /// `JWT_SECRET`: HS256 tokens minted by whoever shares the secret.
    Secret(&'a JwtSecret),
    /// `JWT_PUBLIC_KEY_FILE`: one provider key, its type fixing the algorithm.
    PublicKeyFile(&'a std::path::Path),
    /// `JWKS_URL`: the provider's key set, selected by `kid`, kept fresh.
    Jwks(&'a JwksUrl),
    /// None configured: dev mode, if the database allows it.
    Unset,
}

impl TokenKeys<'_> {
    /// Whether tokens are signed by someone else's private key.
    pub fn is_public_key(self) -> bool {
        matches!(self, Self::PublicKeyFile(_) | Self::Jwks(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_of_one_repeated_character_or_blanks_is_refused() {
        assert!(JwtSecret::parse(&" ".repeat(40)).is_err());
        assert!(JwtSecret::parse(&"a".repeat(40)).is_err());
        assert!(JwtSecret::parse(&"\t".repeat(40)).is_err());
        assert!(JwtSecret::parse("0123456789abcdef0123456789abcdef").is_ok());
    }

    #[test]
    fn short_secret_is_refused_and_never_printed() {
        assert!(JwtSecret::parse("short").is_err());
        let secret = JwtSecret::parse("0123456789abcdef0123456789abcdef");
        assert_eq!(format!("{secret:?}"), "Ok(JwtSecret([redacted]))");
    }

    #[test]
    fn jwks_url_needs_https_except_on_loopback() {
        assert!(JwksUrl::parse("https://tenant.auth0.com/.well-known/jwks.json").is_ok());
        assert!(JwksUrl::parse("http://127.0.0.1:8080/jwks").is_ok());
        assert!(JwksUrl::parse("http://localhost/jwks").is_ok());
        assert!(JwksUrl::parse("http://[::1]:9000/jwks").is_ok());
        assert!(JwksUrl::parse("http://idp.example.com/jwks").is_err());
        assert!(JwksUrl::parse("http://localhost.evil.example/jwks").is_err());
        assert!(JwksUrl::parse("ftp://idp.example.com/jwks").is_err());
        assert!(JwksUrl::parse("https://").is_err());
    }

    #[test]
    fn jwks_file_url_is_an_absolute_path() {
        assert_eq!(
            JwksUrl::parse("file:///etc/deployql/jwks.json"),
            Ok(JwksUrl::File(PathBuf::from("/etc/deployql/jwks.json")))
        );
        assert!(JwksUrl::parse("file://jwks.json").is_err());
    }

    #[test]
    fn user_claim_is_a_name_or_a_json_pointer() {
        assert_eq!(UserClaim::parse("sub"), Ok(UserClaim::Name("sub".into())));
        assert_eq!(
            UserClaim::parse("https://platform.example/user_id"),
            Ok(UserClaim::Name("https://platform.example/user_id".into()))
        );
        assert_eq!(
            UserClaim::parse("/https:~1~1platform.example~1claims/user_id"),
            Ok(UserClaim::Pointer("/https:~1~1platform.example~1claims/user_id".into()))
        );
        assert!(UserClaim::parse("/a~2b").is_err());
        assert!(UserClaim::parse("/a~").is_err());
        assert!(UserClaim::parse("").is_err());
    }
}
